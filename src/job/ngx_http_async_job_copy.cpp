// The copy of the client's request into a job's own pool: creating a run.
#include "job/ngx_http_async_job_run.hpp"

#include "core/ascii.hpp"

// --- the copy of the request --------------------------------------------

static bool ngx_http_async_job_copy_str(ngx_pool_t *pool, ngx_str_t *dst,
                                        const ngx_str_t &src)
{
    *dst = async::pool_copy(pool, async::view(src));
    return src.len == 0 || dst->data != nullptr;
}

static bool ngx_http_async_job_copy_body(ngx_http_request_t *r,
                                         ngx_http_async_job_run_t *run)
{
    ngx_http_request_body_t *rb = r->request_body;
    if (rb == nullptr || rb->bufs == nullptr) {
        return true;
    }
    size_t total = 0;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        total += b->in_file ? static_cast<size_t>(b->file_last - b->file_pos)
                            : static_cast<size_t>(b->last - b->pos);
    }
    if (total == 0) {
        return true;
    }
    auto *p = static_cast<u_char *>(ngx_pnalloc(run->pool, total));
    if (p == nullptr) {
        return false;
    }
    size_t off = 0;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if (b->in_file) {
            size_t n = static_cast<size_t>(b->file_last - b->file_pos);
            ssize_t got = ngx_read_file(b->file, p + off, n, b->file_pos);
            if (got != static_cast<ssize_t>(n)) {
                return false;
            }
            off += n;
        } else {
            size_t n = static_cast<size_t>(b->last - b->pos);
            ngx_memcpy(p + off, b->pos, n);
            off += n;
        }
    }
    run->body.data = p;
    run->body.len = off;
    return true;
}

static bool ngx_http_async_job_copy_headers(ngx_http_request_t *r,
                                            ngx_http_async_job_run_t *run)
{
    if (ngx_list_init(&run->headers, run->pool, 16, sizeof(ngx_table_elt_t))
        != NGX_OK) {
        return false;
    }
    bool had_length = false;
    bool ok = true;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            // progress hook: X-Async-Job-Id is set by the module alone
            if (h.hash == 0 || ngx_http_async_job_progress_own_header(h)) {
                return true;
            }
            // the body is passed whole: its length is ours to announce
            if (async::iequals(async::view(h.key), "Content-Length")
                || async::iequals(async::view(h.key), "Transfer-Encoding")) {
                had_length = true;
                return true;
            }
            auto *c =
                static_cast<ngx_table_elt_t *>(ngx_list_push(&run->headers));
            if (c == nullptr) {
                return ok = false;
            }
            *c = h;
            if (!ngx_http_async_job_copy_str(run->pool, &c->key, h.key)
                || !ngx_http_async_job_copy_str(run->pool, &c->value,
                                                h.value)) {
                return ok = false;
            }
            c->lowcase_key =
                static_cast<u_char *>(ngx_pnalloc(run->pool, c->key.len + 1));
            if (c->lowcase_key == nullptr) {
                return ok = false;
            }
            ngx_strlow(c->lowcase_key, c->key.data, c->key.len);
            c->lowcase_key[c->key.len] = '\0';
#if (nginx_version >= 1023000)
            c->next = nullptr;
#endif
            if (&h == r->headers_in.host) {
                run->host = c;
            } else if (&h == r->headers_in.user_agent) {
                run->user_agent = c;
            } else if (&h == r->headers_in.referer) {
                run->referer = c;
            } else if (&h == r->headers_in.content_type) {
                run->content_type_in = c;
            } else if (&h == r->headers_in.authorization) {
                run->authorization = c;
            }
            return true;
        });
    if (!ok) {
        return false;
    }

    // for $content_length only: proxy_pass and friends announce the
    // length themselves and would repeat a header of the list
    if (had_length || run->body.len > 0) {
        auto *c = async::pool_calloc<ngx_table_elt_t>(run->pool);
        auto *p = static_cast<u_char *>(ngx_pnalloc(run->pool, NGX_OFF_T_LEN));
        if (c == nullptr || p == nullptr) {
            return false;
        }
        ngx_memzero(c, sizeof(*c));
        c->hash = 1;
        ngx_str_set(&c->key, "Content-Length");
        c->lowcase_key =
            reinterpret_cast<u_char *>(const_cast<char *>("content-length"));
        c->value.data = p;
        c->value.len = ngx_sprintf(p, "%uz", run->body.len) - p;
        run->content_length_in = c;
    }
    return true;
}

static bool ngx_http_async_job_copy_address(ngx_http_request_t *r,
                                            ngx_http_async_job_run_t *run)
{
    ngx_connection_t *c = r->connection;
    run->listening = c->listening;
    if (c->sockaddr != nullptr && c->socklen > 0) {
        run->sockaddr =
            static_cast<struct sockaddr *>(ngx_pnalloc(run->pool, c->socklen));
        if (run->sockaddr == nullptr) {
            return false;
        }
        ngx_memcpy(run->sockaddr, c->sockaddr, c->socklen);
        run->socklen = c->socklen;
    }
    if (c->local_sockaddr != nullptr && c->local_socklen > 0) {
        run->local_sockaddr = static_cast<struct sockaddr *>(
            ngx_pnalloc(run->pool, c->local_socklen));
        if (run->local_sockaddr == nullptr) {
            return false;
        }
        ngx_memcpy(run->local_sockaddr, c->local_sockaddr, c->local_socklen);
        run->local_socklen = c->local_socklen;
    }
    if (r->http_connection != nullptr) {
        run->addr_conf = r->http_connection->addr_conf;
        run->conf_ctx = r->http_connection->conf_ctx;
    }
    return ngx_http_async_job_copy_str(run->pool, &run->addr_text,
                                       c->addr_text);
}

ngx_http_async_job_run_t *
ngx_http_async_job_run_create(ngx_http_request_t *r,
                              ngx_http_async_job_zone_t *zone,
                              ngx_http_async_job_loc_t *jlcf)
{
    ngx_str_t uri, args;
    if (ngx_http_complex_value(r, &jlcf->uri, &uri) != NGX_OK) {
        return nullptr;
    }
    ngx_str_null(&args);
    ngx_uint_t flags = NGX_HTTP_LOG_UNSAFE;
    if (ngx_http_parse_unsafe_uri(r, &uri, &args, &flags) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_job: unsafe URI \"%V\"", &uri);
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
    run->http_version = r->http_version;
    run->main_conf = r->main_conf;
    run->srv_conf = r->srv_conf;
    run->content_length = -1;
    ngx_queue_init(&run->link);

    bool ok =
        ngx_http_async_job_copy_str(pool, &run->method_name, r->method_name)
        && ngx_http_async_job_copy_str(pool, &run->request_line,
                                       r->request_line)
        && ngx_http_async_job_copy_str(pool, &run->uri, uri)
        && ngx_http_async_job_copy_str(pool, &run->args, args)
        && ngx_http_async_job_copy_str(pool, &run->server, r->headers_in.server)
        && ngx_http_async_job_copy_body(r, run)
        && ngx_http_async_job_copy_headers(r, run)
        && ngx_http_async_job_copy_address(r, run);
    if (!ok) {
        ngx_destroy_pool(pool);
        return nullptr;
    }

    ngx_log_t *log = ngx_cycle->log;
    run->start_ev.handler = ngx_http_async_job_start;
    run->start_ev.data = run;
    run->start_ev.log = log;
    run->kick_ev.handler = ngx_http_async_job_kick;
    run->kick_ev.data = run;
    run->kick_ev.log = log;
    run->hold_ev.handler = ngx_http_async_job_hold;
    run->hold_ev.data = run;
    run->hold_ev.log = log;
    return run;
}
