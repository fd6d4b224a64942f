// The copy of the client's request into a job's own pool: creating a run.
// The request becomes HTTP/1.1 text (its head) and a body kept where nginx
// put it: in memory (at most client_body_buffer_size), or in the temp file
// nginx spooled it to, through a dup()ed descriptor (nginx has unlinked
// the file; the descriptor keeps it until the run ends).
#include "job/ngx_http_async_job_run.hpp"

#include "core/ascii.hpp"

#include <fcntl.h>

// --- the copy of the request --------------------------------------------

static void ngx_http_async_job_close_body(void *data)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(data);
    if (run->body_fd != NGX_INVALID_FILE) {
        ngx_close_file(run->body_fd);
        run->body_fd = NGX_INVALID_FILE;
    }
}

static bool ngx_http_async_job_copy_body(ngx_http_request_t *r,
                                         ngx_http_async_job_run_t *run)
{
    ngx_http_request_body_t *rb = r->request_body;
    if (rb == nullptr || rb->bufs == nullptr) {
        return true;
    }
    run->body =
        ngx_array_create(run->pool, 2, sizeof(ngx_http_async_job_body_seg_t));
    if (run->body == nullptr) {
        return false;
    }
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if ((b->in_file ? b->file_last - b->file_pos : b->last - b->pos) == 0) {
            continue; // send() must never be asked for nothing
        }
        auto *seg = static_cast<ngx_http_async_job_body_seg_t *>(
            ngx_array_push(run->body));
        if (seg == nullptr) {
            return false;
        }
        ngx_memzero(seg, sizeof(*seg));
        if (b->in_file && b->file != nullptr
            && (run->body_fd == NGX_INVALID_FILE || rb->temp_file == nullptr
                || b->file->fd == rb->temp_file->file.fd)) {
            seg->file_pos = b->file_pos;
            seg->len = static_cast<size_t>(b->file_last - b->file_pos);
            if (run->body_fd == NGX_INVALID_FILE) {
                ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(run->pool, 0);
                if (cln == nullptr) {
                    return false;
                }
                run->body_fd = fcntl(b->file->fd, F_DUPFD_CLOEXEC, 0);
                if (run->body_fd == NGX_INVALID_FILE) {
                    ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                                  "async_job: cannot keep the request body's "
                                  "temp file");
                    return false;
                }
                cln->handler = ngx_http_async_job_close_body;
                cln->data = run;
            }
        } else if (b->in_file) {
            // a second file (nginx spools to one): read it into memory
            seg->len = static_cast<size_t>(b->file_last - b->file_pos);
            seg->data = static_cast<u_char *>(ngx_pnalloc(run->pool, seg->len));
            if (seg->data == nullptr
                || ngx_read_file(b->file, seg->data, seg->len, b->file_pos)
                       != static_cast<ssize_t>(seg->len)) {
                return false;
            }
        } else {
            seg->len = static_cast<size_t>(b->last - b->pos);
            seg->data = static_cast<u_char *>(ngx_pnalloc(run->pool, seg->len));
            if (seg->data == nullptr && seg->len != 0) {
                return false;
            }
            ngx_memcpy(seg->data, b->pos, seg->len);
        }
        run->body_len += seg->len;
    }
    return true;
}

// Hop-by-hop headers and the body's framing: the job's stream has its own.
static bool ngx_http_async_job_hop_header(std::string_view name)
{
    static constexpr std::string_view hop[] = {
        "Connection",     "Keep-Alive", "Proxy-Connection", "Transfer-Encoding",
        "Content-Length", "Expect",     "Upgrade",          "TE"};
    for (std::string_view h : hop) {
        if (async::iequals(name, h)) {
            return true;
        }
    }
    return false;
}

static ngx_str_t ngx_http_async_job_head(ngx_http_request_t *r,
                                         ngx_http_async_job_run_t *run,
                                         ngx_str_t uri, ngx_str_t args)
{
    ngx_str_t out{0, nullptr};
    size_t escape =
        2 * ngx_escape_uri(nullptr, uri.data, uri.len, NGX_ESCAPE_URI);
    bool has_host = r->headers_in.host != nullptr;
    bool had_body = run->body_len > 0 || r->headers_in.content_length != nullptr
                    || r->headers_in.chunked;
    ngx_str_t host = r->headers_in.server;
    if (host.len == 0) {
        auto *cscf = static_cast<ngx_http_core_srv_conf_t *>(
            ngx_http_get_module_srv_conf(r, ngx_http_core_module));
        host = cscf->server_name;
    }
    if (host.len == 0) {
        ngx_str_set(&host, "localhost");
    }

    size_t len = r->method_name.len + 1 + uri.len + escape
                 + (args.len ? 1 + args.len : 0) + sizeof(" HTTP/1.1\r\n") - 1
                 + sizeof("Host: \r\n") - 1 + host.len
                 + sizeof("Content-Length: \r\n") - 1 + NGX_OFF_T_LEN
                 + sizeof("Connection: close\r\n\r\n") - 1;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            len += h.key.len + 2 + h.value.len + 2;
            return true;
        });

    auto *p = static_cast<u_char *>(ngx_pnalloc(run->pool, len));
    if (p == nullptr) {
        return out;
    }
    u_char *last = ngx_cpymem(p, r->method_name.data, r->method_name.len);
    *last++ = ' ';
    if (escape) {
        last = reinterpret_cast<u_char *>(
            ngx_escape_uri(last, uri.data, uri.len, NGX_ESCAPE_URI));
    } else {
        last = ngx_cpymem(last, uri.data, uri.len);
    }
    if (args.len) {
        *last++ = '?';
        last = ngx_cpymem(last, args.data, args.len);
    }
    last = ngx_cpymem(last, " HTTP/1.1\r\n", sizeof(" HTTP/1.1\r\n") - 1);
    if (!has_host) {
        last = ngx_sprintf(last, "Host: %V\r\n", &host);
    }
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            // X-Async-Job-Id is set by the module alone (progress)
            if (h.hash == 0 || ngx_http_async_job_hop_header(async::view(h.key))
                || ngx_http_async_job_progress_own_header(h)) {
                return true;
            }
            last = ngx_sprintf(last, "%V: %V\r\n", &h.key, &h.value);
            return true;
        });
    if (had_body) {
        last = ngx_sprintf(last, "Content-Length: %uz\r\n", run->body_len);
    }
    last = ngx_cpymem(last, "Connection: close\r\n\r\n",
                      sizeof("Connection: close\r\n\r\n") - 1);
    out.data = p;
    out.len = static_cast<size_t>(last - p);
    run->host = async::pool_copy(run->pool, async::view(host));
    return out;
}

static bool ngx_http_async_job_copy_address(ngx_http_request_t *r,
                                            ngx_http_async_job_run_t *run)
{
    ngx_connection_t *c = r->connection;
    if (r->http_connection == nullptr || c->listening == nullptr
        || c->sockaddr == nullptr || c->socklen == 0
        || ngx_connection_local_sockaddr(c, nullptr, 0) != NGX_OK) {
        return false;
    }
    run->listening = c->listening;
    run->addr_conf = r->http_connection->addr_conf;
    run->sockaddr =
        static_cast<struct sockaddr *>(ngx_palloc(run->pool, c->socklen));
    // aligned: nginx reads them as struct sockaddr_in
    run->local_sockaddr =
        static_cast<struct sockaddr *>(ngx_palloc(run->pool, c->local_socklen));
    if (run->sockaddr == nullptr || run->local_sockaddr == nullptr) {
        return false;
    }
    ngx_memcpy(run->sockaddr, c->sockaddr, c->socklen);
    run->socklen = c->socklen;
    ngx_memcpy(run->local_sockaddr, c->local_sockaddr, c->local_socklen);
    run->local_socklen = c->local_socklen;
    run->addr_text = async::pool_copy(run->pool, async::view(c->addr_text));
    return c->addr_text.len == 0 || run->addr_text.data != nullptr;
}

// Parses a URI of a complex value into path and arguments.
static bool ngx_http_async_job_target(ngx_http_request_t *r,
                                      ngx_http_complex_value_t *cv,
                                      ngx_str_t *uri, ngx_str_t *args)
{
    if (ngx_http_complex_value(r, cv, uri) != NGX_OK) {
        return false;
    }
    ngx_str_null(args);
    ngx_uint_t flags = NGX_HTTP_LOG_UNSAFE;
    if (ngx_http_parse_unsafe_uri(r, uri, args, &flags) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_job: unsafe URI \"%V\"", uri);
        return false;
    }
    return true;
}

ngx_http_async_job_run_t *
ngx_http_async_job_run_create(ngx_http_request_t *r,
                              ngx_http_async_job_zone_t *zone,
                              ngx_http_async_job_loc_t *jlcf)
{
    ngx_str_t uri, args;
    if (!ngx_http_async_job_target(r, &jlcf->uri, &uri, &args)) {
        return nullptr;
    }
    if (args.len == 0) {
        args = r->args;
    }

    ngx_pool_t *pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == nullptr) {
        return nullptr;
    }
    auto *run = async::pool_calloc<ngx_http_async_job_run_t>(pool);
    if (run == nullptr) {
        ngx_destroy_pool(pool);
        return nullptr;
    }
    run->pool = pool;
    run->zone = zone;
    run->jlcf = jlcf;
    run->node = async::no_node;
    run->index = async::no_job;
    run->phase = run_phase::ready;
    run->method = r->method;
    run->body_fd = NGX_INVALID_FILE;
    ngx_queue_init(&run->link);

    bool ok = ngx_http_async_job_copy_body(r, run)
              && ngx_http_async_job_copy_address(r, run);
    if (ok) {
        run->head = ngx_http_async_job_head(r, run, uri, args);
        ok = run->head.len != 0 && run->host.data != nullptr;
    }
    if (!ok) {
        ngx_destroy_pool(pool);
        return nullptr;
    }

    ngx_log_t *log = ngx_cycle->log;
    async::event_init(&run->start_ev, run, ngx_http_async_job_start, log);
    async::event_init(&run->kick_ev, run, ngx_http_async_job_kick, log);
    async::event_init(&run->hold_ev, run, ngx_http_async_job_hold, log);
    return run;
}

// The callback's URI, with the submit's variables ($async_job_id is set).
void ngx_http_async_job_run_callback_uri(ngx_http_request_t *r,
                                         ngx_http_async_job_run_t *run)
{
    if (run->jlcf->callback == nullptr) {
        return;
    }
    ngx_str_t uri, args;
    if (!ngx_http_async_job_target(r, run->jlcf->callback, &uri, &args)) {
        return;
    }
    run->callback_uri = async::pool_copy(run->pool, async::view(uri));
    run->callback_args = async::pool_copy(run->pool, async::view(args));
}
