// The background run of a job: a copy of the client's request in the job's
// own pool, a fake connection and main request (as timer-driven modules
// make them), and a background subrequest to the job's URI whose response
// a capture filter keeps. Nothing refers to the client's connection, so
// the job outlives it.
#include "ngx_http_async_job.hpp"

#include "core/ascii.hpp"

enum class run_phase : uint8_t { parked, ready, running, ending, callback };

struct ngx_http_async_job_run_t {
    ngx_http_async_job_zone_t *zone;
    ngx_http_async_job_loc_t *jlcf;
    ngx_pool_t *pool; // the run, its request copy, the fake connection
    ngx_queue_t link; // in zone->runs
    uint32_t index;
    uint32_t generation;
    uint32_t node; // queue node while parked
    uint8_t id[async::id_bytes];
    run_phase phase;
    bool holds_slot;
    bool cancelled;
    bool sr_done;
    bool cb_done;
    bool flagged; // by the cancellation scan

    // the request, copied
    ngx_uint_t method;
    ngx_str_t method_name;
    ngx_str_t request_line;
    ngx_uint_t http_version;
    ngx_str_t uri;
    ngx_str_t args;
    ngx_list_t headers;
    ngx_table_elt_t *host;
    ngx_table_elt_t *user_agent;
    ngx_table_elt_t *referer;
    ngx_table_elt_t *content_type_in;
    ngx_table_elt_t *content_length_in;
    ngx_table_elt_t *authorization;
    ngx_str_t server;
    ngx_str_t body;
    void **main_conf;
    void **srv_conf;
    ngx_http_addr_conf_t *addr_conf;
    ngx_http_conf_ctx_t *conf_ctx;
    ngx_listening_t *listening;
    struct sockaddr *sockaddr;
    socklen_t socklen;
    struct sockaddr *local_sockaddr;
    socklen_t local_socklen;
    ngx_str_t addr_text;

    // the background request
    ngx_connection_t *fc;
    ngx_http_request_t *fr;
    ngx_http_request_t *sr;
    ngx_http_request_t *cb_sr;
    ngx_http_post_subrequest_t ps;
    ngx_http_post_subrequest_t cb_ps;
    ngx_event_t start_ev;
    ngx_event_t kick_ev;
    ngx_event_t hold_ev; // keeps an exiting worker alive while parked
    ngx_msec_t exiting_since;
    ngx_int_t rc;
    ngx_uint_t cb_status;

    // the captured response
    ngx_uint_t status;
    ngx_str_t content_type;
    off_t content_length;
    u_char *buf;
    size_t len;
    size_t cap;
    bool header_seen;
    bool too_large;
};

static void ngx_http_async_job_start(ngx_event_t *ev);
static void ngx_http_async_job_kick(ngx_event_t *ev);
static void ngx_http_async_job_hold(ngx_event_t *ev);
static ngx_int_t ngx_http_async_job_sr_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc);
static ngx_int_t ngx_http_async_job_cb_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc);
static void ngx_http_async_job_end(ngx_http_async_job_run_t *run);
static void ngx_http_async_job_after_final(ngx_http_async_job_run_t *run);

static constexpr ngx_msec_t hold_interval = 1000;

ngx_http_async_job_ctx_t *ngx_http_async_job_ctx(ngx_http_request_t *r,
                                                 bool create)
{
    auto *ctx = static_cast<ngx_http_async_job_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_async_module));
    if (ctx == nullptr && create) {
        ctx = async::pool_calloc<ngx_http_async_job_ctx_t>(r->pool);
        if (ctx != nullptr) {
            ngx_http_set_ctx(r, ctx, ngx_http_async_module);
        }
    }
    return ctx;
}

static void ngx_http_async_job_post(ngx_event_t *ev)
{
    if (!ev->posted) {
        ngx_post_event(ev, &ngx_posted_events);
    }
}

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
            if (h.hash == 0) {
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

void ngx_http_async_job_run_attach(ngx_http_async_job_run_t *run,
                                   uint32_t index, uint32_t generation,
                                   const uint8_t id[async::id_bytes],
                                   uint32_t node)
{
    run->index = index;
    run->generation = generation;
    ngx_memcpy(run->id, id, async::id_bytes);
    ngx_queue_insert_tail(&run->zone->runs, &run->link);
    if (node != async::no_node) {
        run->node = node;
        run->phase = run_phase::parked;
        run->zone->by_node[node] = run;
        ngx_add_timer(&run->hold_ev, hold_interval);
    }
}

void ngx_http_async_job_run_post_start(ngx_http_async_job_run_t *run)
{
    run->holds_slot = true;
    run->phase = run_phase::ready;
    ngx_http_async_job_post(&run->start_ev);
}

// --- the fake connection and request ---------------------------------------

static ngx_int_t ngx_http_async_job_fake(ngx_http_async_job_run_t *run)
{
    if (run->fc != nullptr) {
        return NGX_OK;
    }
    // ngx_get_connection() wants a valid fd; the slot of fd 0 is restored
    ngx_connection_t *saved = ngx_cycle->files ? ngx_cycle->files[0] : nullptr;
    ngx_connection_t *c = ngx_get_connection(0, ngx_cycle->log);
    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }
    if (c == nullptr) {
        return NGX_ERROR;
    }
    c->fd = static_cast<ngx_socket_t>(-1);
    c->pool = run->pool;
    auto *log = async::pool_calloc<ngx_log_t>(run->pool);
    auto *r = async::pool_calloc<ngx_http_request_t>(run->pool);
    auto *hc = async::pool_calloc<ngx_http_connection_t>(run->pool);
    auto *rb = async::pool_calloc<ngx_http_request_body_t>(run->pool);
    auto *lctx = async::pool_calloc<ngx_http_log_ctx_t>(run->pool);
    if (log == nullptr || r == nullptr || hc == nullptr || rb == nullptr
        || lctx == nullptr) {
        ngx_free_connection(c);
        return NGX_ERROR;
    }
    run->fc = c;
    *log = *ngx_cycle->log;
    c->log = log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    log->connection = c->number;
    // ngx_http_set_log_request() writes to the log's context
    lctx->connection = c;
    lctx->request = r;
    lctx->current_request = r;
    log->handler = nullptr;
    log->data = lctx;
    log->action = const_cast<char *>("running an async job");
    c->read->log = log;
    c->write->log = log;
    c->log_error = NGX_ERROR_INFO;
    // no fd behind it: nothing may add it to the event loop, as the
    // upstream's client checks do unless the events look active already
    c->read->active = 1;
    c->write->active = 1;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;
    c->listening = run->listening;
    c->sockaddr = run->sockaddr;
    c->socklen = run->socklen;
    c->local_sockaddr = run->local_sockaddr;
    c->local_socklen = run->local_socklen;
    c->addr_text = run->addr_text;
    c->requests = 1;

    r->signature = NGX_HTTP_MODULE;
    r->connection = c;
    r->pool = run->pool;
    r->main = r;
    r->count = 1; // ours: only ngx_http_async_job_run_destroy() frees it
    r->ctx = async::pool_calloc_array<void *>(run->pool, ngx_http_max_module);
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(
        run->main_conf[ngx_http_core_module.ctx_index]);
    r->variables = async::pool_calloc_array<ngx_http_variable_value_t>(
        run->pool, cmcf->variables.nelts);
    auto *ctx = async::pool_calloc<ngx_http_async_job_ctx_t>(run->pool);
    if (r->ctx == nullptr || r->variables == nullptr || ctx == nullptr
        || ngx_list_init(&r->headers_out.headers, run->pool, 4,
                         sizeof(ngx_table_elt_t))
               != NGX_OK
        || ngx_list_init(&r->headers_out.trailers, run->pool, 1,
                         sizeof(ngx_table_elt_t))
               != NGX_OK) {
        return NGX_ERROR;
    }
    ctx->run = run;
    ctx->has_id = true;
    async::encode_id(run->id, ctx->id);
    ctx->state = async::job_state::running;
    r->ctx[ngx_http_async_module.ctx_index] = ctx;

    auto *cscf = static_cast<ngx_http_core_srv_conf_t *>(
        run->srv_conf[ngx_http_core_module.ctx_index]);
    r->main_conf = cscf->ctx->main_conf;
    r->srv_conf = cscf->ctx->srv_conf;
    r->loc_conf = cscf->ctx->loc_conf;

    hc->addr_conf = run->addr_conf;
    hc->conf_ctx = run->conf_ctx;
    r->http_connection = hc;

    r->headers_in.headers = run->headers;
    r->headers_in.host = run->host;
    r->headers_in.user_agent = run->user_agent;
    r->headers_in.referer = run->referer;
    r->headers_in.content_type = run->content_type_in;
    r->headers_in.content_length = run->content_length_in;
    r->headers_in.authorization = run->authorization;
    r->headers_in.server = run->server;
    r->headers_in.content_length_n = run->content_length_in != nullptr
                                         ? static_cast<off_t>(run->body.len)
                                         : -1;
    r->headers_in.keep_alive_n = -1;

    if (run->body.len > 0) {
        auto *b = async::pool_calloc<ngx_buf_t>(run->pool);
        ngx_chain_t *cl = ngx_alloc_chain_link(run->pool);
        if (b == nullptr || cl == nullptr) {
            return NGX_ERROR;
        }
        b->pos = b->start = run->body.data;
        b->last = b->end = run->body.data + run->body.len;
        b->memory = 1;
        b->last_buf = 1;
        b->last_in_chain = 1;
        cl->buf = b;
        cl->next = nullptr;
        rb->bufs = cl;
    }
    r->request_body = rb;

    r->method = run->method;
    r->method_name = run->method_name;
    r->request_line = run->request_line;
    r->http_version = run->http_version;
    ngx_str_set(&r->http_protocol, "HTTP/1.1");
    r->uri = run->uri;
    r->args = run->args;
    r->unparsed_uri = run->uri;
    ngx_time_t *tp = ngx_timeofday();
    r->start_sec = tp->sec;
    r->start_msec = tp->msec;
    r->http_state = NGX_HTTP_PROCESS_REQUEST_STATE;
    r->uri_changes = NGX_HTTP_MAX_URI_CHANGES + 1;
    r->subrequests = NGX_HTTP_MAX_SUBREQUESTS + 1;
    r->read_event_handler = ngx_http_request_empty_handler;
    r->write_event_handler = ngx_http_request_empty_handler;
    r->internal = 1;

    c->data = r;
    run->fr = r;
    return NGX_OK;
}

static void ngx_http_async_job_close_fake(ngx_http_async_job_run_t *run)
{
    ngx_http_request_t *r = run->fr;
    ngx_connection_t *c = run->fc;
    if (r != nullptr) {
        ngx_http_cleanup_t *cln = r->cleanup;
        r->cleanup = nullptr;
        for (; cln; cln = cln->next) {
            if (cln->handler) {
                cln->handler(cln->data);
            }
        }
    }
    if (c == nullptr) {
        return;
    }
    c->destroyed = 1;
    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }
    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }
    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }
    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }
    c->read->closed = 1;
    c->write->closed = 1;
    // ngx_free_connection() clears the files slot of c->fd
    ngx_connection_t *saved = ngx_cycle->files ? ngx_cycle->files[0] : nullptr;
    c->fd = 0;
    ngx_free_connection(c);
    c->fd = static_cast<ngx_socket_t>(-1);
    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }
    run->fc = nullptr;
    run->fr = nullptr;
}

void ngx_http_async_job_run_destroy(ngx_http_async_job_run_t *run)
{
    if (!ngx_queue_empty(&run->link)) {
        ngx_queue_remove(&run->link);
        ngx_queue_init(&run->link);
    }
    if (run->node != async::no_node && run->zone->by_node[run->node] == run) {
        run->zone->by_node[run->node] = nullptr;
    }
    ngx_event_t *evs[] = {&run->start_ev, &run->kick_ev, &run->hold_ev};
    for (ngx_event_t *ev : evs) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }
    }
    ngx_http_async_job_close_fake(run);
    ngx_destroy_pool(run->pool);
}

// --- slots ------------------------------------------------------------------

static void ngx_http_async_job_release(ngx_http_async_job_run_t *run)
{
    if (!run->holds_slot) {
        return;
    }
    run->holds_slot = false;
    ngx_http_async_job_zone_t *zone = run->zone;
    ngx_http_async_release_slot(zone->shpool, zone->q);
}

// Sets a final state unless the job has one; wakes its watchers.
static void ngx_http_async_job_finish(ngx_http_async_job_run_t *run,
                                      async::job_state state,
                                      async::job_reason reason, uint16_t status,
                                      bool store)
{
    ngx_http_async_job_zone_t *zone = run->zone;
    uint64_t watchers = 0;
    bool zone_full = false;
    uint64_t now = ngx_http_async_job_now_ms();

    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[run->index];
    if (rec.generation == run->generation
        && (rec.state == async::job_state::queued
            || rec.state == async::job_state::running)) {
        if (store) {
            size_t ct = ngx_min(run->content_type.len, size_t{65535});
            size_t size = ct + run->len;
            auto *p = static_cast<u_char *>(
                ngx_slab_alloc_locked(zone->shpool, ngx_max(size, size_t{1})));
            if (p == nullptr) {
                zone_full = true;
                state = async::job_state::failed;
                reason = async::job_reason::zone_full;
                status = 0;
            } else {
                ngx_memcpy(p, run->content_type.data, ct);
                if (run->len > 0) {
                    ngx_memcpy(p + ct, run->buf, run->len);
                }
                async::job_table_set_result(
                    zone->table, run->index,
                    static_cast<uint64_t>(
                        p - reinterpret_cast<u_char *>(zone->shpool)),
                    static_cast<uint32_t>(size), static_cast<uint16_t>(ct));
            }
        }
        async::job_table_finish(zone->table, run->index, state, reason, status,
                                now, zone->sh->ttl_ms);
        watchers = rec.watchers;
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (zone_full && ngx_time() != zone->last_full_log) {
        zone->last_full_log = ngx_time();
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "async_job_zone \"%V\" has no room for a result of "
                      "%uz bytes; the job failed (zone_full)",
                      &zone->name, run->len);
    }
    ngx_http_async_job_wake_watchers(zone, watchers);
}

// --- start ------------------------------------------------------------------

static void ngx_http_async_job_start(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);
    ngx_http_async_job_zone_t *zone = run->zone;

    if (run->hold_ev.timer_set) {
        ngx_del_timer(&run->hold_ev);
    }
    uint64_t now = ngx_http_async_job_now_ms();
    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[run->index];
    bool started = rec.generation == run->generation
                   && async::job_table_start(zone->table, run->index, now);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!started) {
        // cancelled (or lost) while it waited
        ngx_http_async_job_release(run);
        ngx_http_async_job_after_final(run);
        return;
    }
    run->phase = run_phase::running;

    ngx_http_request_t *sr = nullptr;
    if (ngx_http_async_job_fake(run) != NGX_OK) {
        goto failed;
    }
    run->ps.handler = ngx_http_async_job_sr_done;
    run->ps.data = run;
    if (ngx_http_subrequest(run->fr, &run->uri, &run->args, &sr, &run->ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK) {
        goto failed;
    }
    sr->method = run->method;
    sr->method_name = run->method_name;
    run->sr = sr;
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, run->fc->log, 0,
                   "async_job: started \"%V?%V\"", &run->uri, &run->args);
    ngx_http_run_posted_requests(run->fc);
    return;

failed:
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "async_job: cannot start a job in zone \"%V\"", &zone->name);
    run->sr_done = true;
    ngx_http_async_job_finish(run, async::job_state::failed,
                              async::job_reason::internal_error, 0, false);
    ngx_http_async_job_release(run);
    ngx_http_async_job_after_final(run);
}

// An exiting worker stays alive for its parked jobs, up to
// worker_shutdown_timeout; then they fail with reason shutdown.
static void ngx_http_async_job_hold(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);
    if (run->phase != run_phase::parked) {
        return;
    }
    if (ngx_exiting) {
        if (run->exiting_since == 0) {
            run->exiting_since = ngx_current_msec;
        }
        auto *ccf = reinterpret_cast<ngx_core_conf_t *>(
            ngx_get_conf(ngx_cycle->conf_ctx, ngx_core_module));
        ngx_msec_t limit =
            ccf->shutdown_timeout ? ccf->shutdown_timeout : 60000;
        if (ngx_current_msec - run->exiting_since >= limit) {
            ngx_http_async_job_zone_t *zone = run->zone;
            async::wake_set wake{};
            ngx_shmtx_lock(&zone->shpool->mutex);
            async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation == run->generation
                && rec.queue_node == run->node) {
                async::ticket_queue_leave(
                    zone->q, run->node, async::leave_reason::cancelled, &wake);
                rec.queue_node = async::no_node;
            }
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
            ngx_http_async_job_finish(run, async::job_state::failed,
                                      async::job_reason::shutdown, 0, false);
            ngx_http_async_job_run_destroy(run);
            return;
        }
    }
    ngx_add_timer(ev, hold_interval);
}

// --- the end of the subrequest -----------------------------------------------

static ngx_int_t ngx_http_async_job_sr_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(data);
    (void) sr;
    if (rc == NGX_AGAIN) {
        return rc;
    }
    if (!run->header_seen && !run->cancelled && !run->too_large
        && rc >= NGX_HTTP_SPECIAL_RESPONSE && rc < 600
        && rc != NGX_HTTP_REQUEST_TIME_OUT && rc != NGX_HTTP_CLOSE
        && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST) {
        // nginx answers with its error page, which the capture keeps, and
        // calls us again: the job gets that answer, as a client would
        return rc;
    }
    if (!run->sr_done) {
        run->sr_done = true;
        run->rc = rc;
        ngx_http_async_job_post(&run->kick_ev);
    }
    // a job's error is its own: no error page, never the fake request's end
    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }
    return rc;
}

// Stops a running subrequest: a proxied one through its upstream cleanup,
// which closes the upstream connection at once; other handlers run to
// their end and their output is dropped.
static void ngx_http_async_job_stop(ngx_http_async_job_run_t *run)
{
    ngx_http_request_t *sr = run->sr;
    if (sr == nullptr || run->sr_done) {
        return;
    }
    ngx_http_upstream_t *u = sr->upstream;
    if (u != nullptr && u->cleanup != nullptr && *u->cleanup != nullptr) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, run->fc->log, 0,
                       "async_job: closing upstream");
        (*u->cleanup)(sr);
        run->sr_done = true;
        run->rc = NGX_ERROR;
        ngx_http_run_posted_requests(run->fc);
    }
}

static void ngx_http_async_job_kick(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);

    if (run->phase == run_phase::running) {
        if (!run->sr_done && (run->too_large || run->cancelled)) {
            ngx_http_async_job_stop(run);
        }
        if (!run->sr_done) {
            return;
        }
        if (run->fr != nullptr && run->fr->count > 1) {
            ngx_add_timer(ev, 10); // the subrequest is still being closed
            return;
        }
        ngx_http_async_job_end(run);
        return;
    }
    if (run->phase == run_phase::callback && run->cb_done) {
        if (run->fr != nullptr && run->fr->count > 1) {
            ngx_add_timer(ev, 10);
            return;
        }
        ngx_http_async_job_run_destroy(run);
    }
}

static void ngx_http_async_job_end(ngx_http_async_job_run_t *run)
{
    run->phase = run_phase::ending;
    if (run->cancelled) {
        // the final state is already set by the cancellation
    } else if (run->too_large) {
        ngx_http_async_job_finish(run, async::job_state::failed,
                                  async::job_reason::result_too_large, 0,
                                  false);
    } else if (!run->header_seen || run->rc == NGX_ERROR
               || (run->content_length >= 0
                   && run->content_length != static_cast<off_t>(run->len))) {
        ngx_http_async_job_finish(run, async::job_state::failed,
                                  async::job_reason::upstream_error, 0, false);
    } else {
        ngx_uint_t status = run->status != 0 ? run->status : NGX_HTTP_OK;
        ngx_http_async_job_finish(
            run, async::job_state::completed, async::job_reason::none,
            static_cast<uint16_t>(ngx_min(status, 999)), true);
    }
    ngx_http_async_job_release(run);
    ngx_http_async_job_after_final(run);
}

// --- the callback
// --------------------------------------------------------------

static ngx_int_t ngx_http_async_job_cb_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(data);
    (void) sr;
    if (rc == NGX_AGAIN) {
        return rc;
    }
    if (!run->cb_done) {
        run->cb_done = true;
        ngx_uint_t status = run->cb_status;
        if (status == 0 && rc >= NGX_HTTP_OK && rc < 600) {
            status = static_cast<ngx_uint_t>(rc);
        }
        if (rc == NGX_ERROR || status == 0 || status >= 400) {
            char id[async::id_chars];
            async::encode_id(run->id, id);
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "async_job_callback for job %*s failed: status %ui",
                          async::id_chars, id, status);
        }
        ngx_http_async_job_post(&run->kick_ev);
    }
    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }
    return rc;
}

static ngx_int_t ngx_http_async_job_callback(ngx_http_async_job_run_t *run)
{
    ngx_http_async_job_view_t v;
    if (!ngx_http_async_job_lookup_index(run->zone, run->index, run->generation,
                                         &v)) {
        return NGX_DECLINED;
    }
    if (ngx_http_async_job_fake(run) != NGX_OK) {
        return NGX_ERROR;
    }
    ngx_http_request_t *fr = run->fr;
    ngx_str_t body = ngx_http_async_job_status_json(run->pool, run->zone, &v);
    ngx_str_t uri, args;
    if (body.len == 0
        || ngx_http_complex_value(fr, run->jlcf->callback, &uri) != NGX_OK) {
        return NGX_ERROR;
    }
    ngx_str_null(&args);
    ngx_uint_t flags = NGX_HTTP_LOG_UNSAFE;
    if (ngx_http_parse_unsafe_uri(fr, &uri, &args, &flags) != NGX_OK) {
        return NGX_ERROR;
    }

    auto *rb = async::pool_calloc<ngx_http_request_body_t>(run->pool);
    auto *b = async::pool_calloc<ngx_buf_t>(run->pool);
    ngx_chain_t *cl = ngx_alloc_chain_link(run->pool);
    auto *ct = async::pool_calloc<ngx_table_elt_t>(run->pool);
    auto *cl_h = async::pool_calloc<ngx_table_elt_t>(run->pool);
    auto *len = static_cast<u_char *>(ngx_pnalloc(run->pool, NGX_OFF_T_LEN));
    if (rb == nullptr || b == nullptr || cl == nullptr || ct == nullptr
        || cl_h == nullptr || len == nullptr) {
        return NGX_ERROR;
    }
    b->pos = b->start = body.data;
    b->last = b->end = body.data + body.len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    cl->buf = b;
    cl->next = nullptr;
    rb->bufs = cl;

    run->cb_ps.handler = ngx_http_async_job_cb_done;
    run->cb_ps.data = run;
    ngx_http_request_t *sr;
    if (ngx_http_subrequest(fr, &uri, &args, &sr, &run->cb_ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK) {
        return NGX_ERROR;
    }
    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");
    sr->request_body = rb;

    ngx_str_t server = sr->headers_in.server;
    ngx_memzero(&sr->headers_in, sizeof(sr->headers_in));
    if (ngx_list_init(&sr->headers_in.headers, run->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK) {
        return NGX_ERROR;
    }
    sr->headers_in.server = server;
    sr->headers_in.keep_alive_n = -1;
    ct->hash = 1;
    ngx_str_set(&ct->key, "Content-Type");
    ngx_str_set(&ct->value, "application/json");
    ct->lowcase_key =
        reinterpret_cast<u_char *>(const_cast<char *>("content-type"));
    cl_h->hash = 1;
    ngx_str_set(&cl_h->key, "Content-Length");
    cl_h->value.data = len;
    cl_h->value.len = ngx_sprintf(len, "%uz", body.len) - len;
    cl_h->lowcase_key =
        reinterpret_cast<u_char *>(const_cast<char *>("content-length"));
    auto *h1 =
        static_cast<ngx_table_elt_t *>(ngx_list_push(&sr->headers_in.headers));
    if (h1 == nullptr) {
        return NGX_ERROR;
    }
    *h1 = *ct;
    sr->headers_in.content_type = h1;
    sr->headers_in.content_length = cl_h;
    sr->headers_in.content_length_n = static_cast<off_t>(body.len);
    run->cb_sr = sr;
    ngx_http_run_posted_requests(run->fc);
    return NGX_OK;
}

// The job has its final state: call back, or end the run.
static void ngx_http_async_job_after_final(ngx_http_async_job_run_t *run)
{
    if (run->jlcf->callback != nullptr) {
        run->phase = run_phase::callback;
        ngx_int_t rc = ngx_http_async_job_callback(run);
        if (rc == NGX_OK) {
            return;
        }
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "async_job_callback could not be started");
        }
        if (run->cb_sr != nullptr) {
            return; // it was created and runs; its end ends the run
        }
    }
    ngx_http_async_job_run_destroy(run);
}

// --- the capture filter
// ----------------------------------------------------------

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt ngx_http_next_body_filter;

static ngx_http_async_job_run_t *
ngx_http_async_job_run_of(ngx_http_request_t *r)
{
    if (r == r->main) {
        return nullptr;
    }
    auto *ctx = static_cast<ngx_http_async_job_ctx_t *>(
        ngx_http_get_module_ctx(r->main, ngx_http_async_module));
    return ctx != nullptr ? ctx->run : nullptr;
}

static bool ngx_http_async_job_keep_type(ngx_http_async_job_run_t *run,
                                         ngx_http_request_t *r)
{
    ngx_str_t ct = r->headers_out.content_type;
    ngx_str_t cs = r->headers_out.charset;
    size_t len = ct.len;
    bool add_charset = cs.len != 0 && r->headers_out.content_type_len == ct.len;
    if (add_charset) {
        len += sizeof("; charset=") - 1 + cs.len;
    }
    if (len == 0) {
        return true;
    }
    auto *p = static_cast<u_char *>(ngx_pnalloc(run->pool, len));
    if (p == nullptr) {
        return false;
    }
    u_char *last = ngx_cpymem(p, ct.data, ct.len);
    if (add_charset) {
        last = ngx_cpymem(last, "; charset=", sizeof("; charset=") - 1);
        last = ngx_cpymem(last, cs.data, cs.len);
    }
    run->content_type.data = p;
    run->content_type.len = static_cast<size_t>(last - p);
    return true;
}

static ngx_int_t ngx_http_async_job_header_filter(ngx_http_request_t *r)
{
    ngx_http_async_job_run_t *run = ngx_http_async_job_run_of(r);
    if (run == nullptr) {
        return ngx_http_next_header_filter(r);
    }
    if (r == run->cb_sr) {
        run->cb_status = r->headers_out.status;
        return NGX_OK;
    }
    if (r != run->sr || run->header_seen || run->cancelled) {
        return NGX_OK;
    }
    run->header_seen = true;
    run->status = r->headers_out.status;
    run->content_length = r->headers_out.content_length_n;
    if (!ngx_http_async_job_keep_type(run, r)) {
        return NGX_ERROR;
    }
    if (run->content_length > static_cast<off_t>(run->zone->max_result)) {
        run->too_large = true;
        ngx_http_async_job_post(&run->kick_ev);
    }
    // a job's response goes into its capture buffer, nowhere else
    return NGX_OK;
}

static bool ngx_http_async_job_append(ngx_http_async_job_run_t *run,
                                      ngx_buf_t *b)
{
    size_t n = b->in_file && !ngx_buf_in_memory(b)
                   ? static_cast<size_t>(b->file_last - b->file_pos)
                   : static_cast<size_t>(b->last - b->pos);
    if (n == 0) {
        return true;
    }
    if (run->len + n > run->zone->max_result) {
        // over the cap: the job fails, nothing is truncated
        run->too_large = true;
        ngx_http_async_job_post(&run->kick_ev);
        return true;
    }
    if (run->len + n > run->cap) {
        size_t cap = run->cap != 0 ? run->cap : 4096;
        if (run->cap == 0 && run->content_length > 0) {
            cap = static_cast<size_t>(run->content_length);
        }
        while (cap < run->len + n) {
            cap *= 2;
        }
        cap = ngx_min(cap, run->zone->max_result);
        auto *p = static_cast<u_char *>(ngx_palloc(run->pool, cap));
        if (p == nullptr) {
            return false;
        }
        if (run->len != 0) {
            ngx_memcpy(p, run->buf, run->len);
        }
        if (run->buf != nullptr) {
            ngx_pfree(run->pool, run->buf);
        }
        run->buf = p;
        run->cap = cap;
    }
    if (b->in_file && !ngx_buf_in_memory(b)) {
        ssize_t got =
            ngx_read_file(b->file, run->buf + run->len, n, b->file_pos);
        if (got != static_cast<ssize_t>(n)) {
            return false;
        }
    } else {
        ngx_memcpy(run->buf + run->len, b->pos, n);
    }
    run->len += n;
    return true;
}

static ngx_int_t ngx_http_async_job_body_filter(ngx_http_request_t *r,
                                                ngx_chain_t *in)
{
    ngx_http_async_job_run_t *run = ngx_http_async_job_run_of(r);
    if (run == nullptr) {
        return ngx_http_next_body_filter(r, in);
    }
    bool keep =
        r == run->sr && !run->cancelled && !run->too_large && !run->sr_done;
    for (ngx_chain_t *cl = in; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if (keep && !run->too_large && !ngx_http_async_job_append(run, b)) {
            return NGX_ERROR;
        }
        b->pos = b->last;
        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }
    return NGX_OK;
}

ngx_int_t ngx_http_async_job_capture_init(ngx_conf_t *cf)
{
    (void) cf;
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_async_job_header_filter;
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_async_job_body_filter;
    return NGX_OK;
}

// --- wake-ups
// -----------------------------------------------------------------------

static void ngx_http_async_job_take_granted(ngx_http_async_job_zone_t *zone)
{
    for (;;) {
        uint64_t waited = 0;
        ngx_http_async_job_run_t *run = nullptr;
        ngx_shmtx_lock(&zone->shpool->mutex);
        uint32_t node = async::ticket_queue_take_granted(
            zone->q, static_cast<uint32_t>(ngx_process_slot), ngx_current_msec,
            &waited);
        if (node != async::no_node) {
            run = zone->by_node[node];
            zone->by_node[node] = nullptr;
            if (run != nullptr) {
                async::job_record &rec = zone->table->records()[run->index];
                if (rec.generation == run->generation) {
                    rec.queue_node = async::no_node;
                }
                async::admission_rate_note(zone->sh->rate, ngx_current_msec);
            }
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
        if (node == async::no_node) {
            return;
        }
        if (run == nullptr) {
            // cannot happen: a leaving run takes its node out first
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "async_job_zone \"%V\": granted node %uD has no "
                          "job",
                          &zone->name, node);
            async::wake_set wake{};
            ngx_shmtx_lock(&zone->shpool->mutex);
            async::ticket_queue_release(
                zone->q, static_cast<uint32_t>(ngx_process_slot), &wake);
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
            continue;
        }
        run->node = async::no_node;
        ngx_http_async_job_run_post_start(run);
    }
}

// Runs whose job was cancelled (DELETE, in any worker) stop.
static void ngx_http_async_job_scan_cancelled(ngx_http_async_job_zone_t *zone)
{
    bool any = false;
    async::wake_set wake{};
    ngx_shmtx_lock(&zone->shpool->mutex);
    if (zone->table->changes != zone->run_seen_changes) {
        zone->run_seen_changes = zone->table->changes;
        for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
             q != ngx_queue_sentinel(&zone->runs); q = ngx_queue_next(q)) {
            auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
            if (run->cancelled || run->phase == run_phase::ending
                || run->phase == run_phase::callback) {
                continue;
            }
            const async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation != run->generation || async::job_final(rec.state)
                || rec.state == async::job_state::free) {
                run->flagged = true;
                any = true;
                if (run->phase == run_phase::parked
                    && rec.generation == run->generation
                    && rec.queue_node == run->node) {
                    // a lost job still holds its place: give it back
                    async::ticket_queue_leave(zone->q, run->node,
                                              async::leave_reason::cancelled,
                                              &wake);
                }
            }
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
    if (!any) {
        return;
    }
    ngx_queue_t *next;
    for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
         q != ngx_queue_sentinel(&zone->runs); q = next) {
        next = ngx_queue_next(q);
        auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
        if (!run->flagged) {
            continue;
        }
        run->flagged = false;
        run->cancelled = true;
        switch (run->phase) {
            case run_phase::parked:
                if (run->hold_ev.timer_set) {
                    ngx_del_timer(&run->hold_ev);
                }
                if (zone->by_node[run->node] == run) {
                    zone->by_node[run->node] = nullptr;
                }
                run->node = async::no_node;
                ngx_http_async_job_after_final(run);
                break;
            case run_phase::ready:
                break; // the start sees it and gives the slot back
            case run_phase::running:
                if (run->sr_done) {
                    break;
                }
                ngx_http_async_job_stop(run);
                ngx_http_async_job_post(&run->kick_ev);
                break;
            default:
                break;
        }
    }
}

void ngx_http_async_job_runs_wake(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    auto *zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        ngx_http_async_job_zone_t *zone = zones[i];
        if (zone->table == nullptr || zone->by_node == nullptr) {
            continue;
        }
        ngx_http_async_job_take_granted(zone);
        ngx_http_async_job_scan_cancelled(zone);
    }
}

// The worker exits: its unfinished jobs fail (shutdown), their places and
// slots go back to the queue.
void ngx_http_async_job_runs_exit(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    auto *zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        ngx_http_async_job_zone_t *zone = zones[i];
        if (zone->table == nullptr || zone->by_node == nullptr) {
            continue;
        }
        uint64_t now = ngx_http_async_job_now_ms();
        uint64_t watchers = 0;
        async::wake_set wake{};
        ngx_shmtx_lock(&zone->shpool->mutex);
        for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
             q != ngx_queue_sentinel(&zone->runs); q = ngx_queue_next(q)) {
            auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
            async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation != run->generation) {
                continue;
            }
            if (run->phase == run_phase::parked
                && rec.queue_node == run->node) {
                async::ticket_queue_leave(
                    zone->q, run->node, async::leave_reason::cancelled, &wake);
            }
            if (run->holds_slot) {
                async::ticket_queue_release(
                    zone->q, static_cast<uint32_t>(ngx_process_slot), &wake);
                run->holds_slot = false;
            }
            if (async::job_table_finish(
                    zone->table, run->index, async::job_state::failed,
                    async::job_reason::shutdown, 0, now, zone->sh->ttl_ms)) {
                watchers |= rec.watchers;
            }
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
        ngx_http_async_job_wake_watchers(zone, watchers);
    }
}
