// A run's fake connection and main request: creation and close.
#include "job/ngx_http_async_job_run.hpp"

// --- the fake connection and request ---------------------------------------

ngx_int_t ngx_http_async_job_fake(ngx_http_async_job_run_t *run)
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

void ngx_http_async_job_close_fake(ngx_http_async_job_run_t *run)
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
