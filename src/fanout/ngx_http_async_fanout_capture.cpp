// The capture filter of async_fetch calls: keeps a call's status, type and
// body in the fan-out's pool instead of writing them to the client. It is
// its own HTTP filter module so that nginx places it right above the
// postpone filter: below every body filter a client's response passes
// (SSI, sub_filter, charset, the copy filter that reads files into memory),
// and above the filter that would join a call's output to the client's
// response. A call's nested subrequests (SSI include, echo_location) are
// ordered here, as the postpone filter orders them for the active request.
#include "fanout/ngx_http_async_fanout.hpp"

#include "core/json_body.hpp"

static ngx_int_t ngx_http_async_capture_init(ngx_conf_t *cf);

static ngx_http_module_t ngx_http_async_fanout_filter_module_ctx = {
    nullptr,                     // preconfiguration
    ngx_http_async_capture_init, // postconfiguration
    nullptr,                     // create main configuration
    nullptr,                     // init main configuration
    nullptr,                     // create server configuration
    nullptr,                     // merge server configuration
    nullptr,                     // create location configuration
    nullptr                      // merge location configuration
};

extern "C" {
ngx_module_t ngx_http_async_fanout_filter_module = {
    NGX_MODULE_V1,
    &ngx_http_async_fanout_filter_module_ctx, // module context
    nullptr,                                  // module directives
    NGX_HTTP_MODULE,                          // module type
    nullptr,                                  // init master
    nullptr,                                  // init module
    nullptr,                                  // init process
    nullptr,                                  // init thread
    nullptr,                                  // exit thread
    nullptr,                                  // exit process
    nullptr,                                  // exit master
    NGX_MODULE_V1_PADDING};
}

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt ngx_http_next_body_filter;

static ngx_int_t ngx_http_async_capture_nested_done(ngx_http_request_t *sr,
                                                    void *data, ngx_int_t rc);

// --- the tree of a call ------------------------------------------------

static bool ngx_http_async_capture_queue(ngx_http_request_t *r,
                                         ngx_http_async_node_t *node,
                                         ngx_http_async_node_t *child,
                                         const u_char *p, size_t n)
{
    auto *piece = async::pool_calloc<ngx_http_async_piece_t>(r->pool);
    if (piece == nullptr) {
        return false;
    }
    piece->child = child;
    if (n != 0) {
        piece->data = static_cast<u_char *>(ngx_pnalloc(r->pool, n));
        if (piece->data == nullptr) {
            return false;
        }
        ngx_memcpy(piece->data, p, n);
        piece->len = n;
        node->attempt->queued += n;
    }
    if (node->last == nullptr) {
        node->last = &node->pieces;
    }
    *node->last = piece;
    node->last = &piece->next;
    return true;
}

// Takes over the subrequests nginx queued behind `node`'s request: each
// becomes background (it ends on its own, as the call itself does, instead
// of waiting to become the connection's active request) and takes its
// place among node's pieces, at the point of its creation: every byte node
// sent before it is a piece already, every byte after it comes later.
static bool ngx_http_async_capture_adopt(ngx_http_async_node_t *node)
{
    ngx_http_request_t *r = node->r;
    ngx_http_postponed_request_t **pp = &r->postponed;
    while (*pp != nullptr) {
        ngx_http_postponed_request_t *pr = *pp;
        if (pr->request == nullptr) {
            pp = &pr->next; // output of a request outside our filter
            continue;
        }
        ngx_http_request_t *sr = pr->request;
        auto *child = async::pool_calloc<ngx_http_async_node_t>(r->pool);
        if (child == nullptr
            || !ngx_http_async_capture_queue(r, node, child, nullptr, 0)) {
            return false;
        }
        ngx_http_async_attempt_t *a = node->attempt;
        child->r = sr;
        child->attempt = a;
        child->next = a->nested;
        a->nested = child;
        child->creator = sr->post_subrequest;
        child->ps.handler = ngx_http_async_capture_nested_done;
        child->ps.data = child;
        sr->post_subrequest = &child->ps;
        sr->background = 1;
        if (!sr->subrequest_in_memory) {
            sr->filter_need_in_memory = 1;
        }
        *pp = pr->next;
        if (sr->done) {
            // a waited subrequest that ended while not active: nginx
            // finalizes it again once active; as a background one, now
            ngx_http_post_request(sr, nullptr);
        }
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "async_fetch: nested \"%V?%V\" taken over", &sr->uri,
                       &sr->args);
    }
    return true;
}

// The node of r when r belongs to a call's tree, its new nested
// subrequests taken over on the way down from the call.
static ngx_http_async_node_t *
ngx_http_async_capture_node_of(ngx_http_request_t *r)
{
    ngx_http_post_subrequest_t *ps = r->post_subrequest;
    if (ps != nullptr && ps->handler == ngx_http_async_capture_nested_done) {
        auto *node = static_cast<ngx_http_async_node_t *>(ps->data);
        return ngx_http_async_capture_adopt(node) ? node : nullptr;
    }
    ngx_http_async_node_t *node = nullptr;
    // a call (also while async_queue wraps its handler), or nested in one
    ngx_http_async_attempt_t *a = ngx_http_async_fanout_attempt_of(r);
    if (a != nullptr) {
        node = &a->root;
    } else if (r->parent != nullptr && r->parent != r->main) {
        ngx_http_async_node_t *parent =
            ngx_http_async_capture_node_of(r->parent);
        ps = r->post_subrequest;
        if (parent != nullptr && ps != nullptr
            && ps->handler == ngx_http_async_capture_nested_done) {
            node = static_cast<ngx_http_async_node_t *>(ps->data);
        }
    }
    if (node != nullptr && !ngx_http_async_capture_adopt(node)) {
        return nullptr;
    }
    return node;
}

// --- capture -----------------------------------------------------------

// Appends to the capture buffer, which keeps the padding simdjson reads
// past the end. The first buffer holds the announced Content-Length, or
// else just the first piece (most bodies come in one: a page-sized guess
// would be a heap allocation of its own per call); it grows by doubling,
// giving the old buffer back.
static bool ngx_http_async_capture_append(ngx_http_request_t *r,
                                          ngx_http_async_attempt_t *a,
                                          const u_char *p, size_t n)
{
    size_t need = a->len + n;
    if (need > a->cap) {
        size_t max = a->call->fanout->alcf->fetch_max_size;
        size_t cap = a->cap != 0 ? a->cap : need;
        if (a->cap == 0 && a->content_length > 0) {
            cap = ngx_max(cap, static_cast<size_t>(a->content_length));
        }
        while (cap < need) {
            cap *= 2;
        }
        cap = ngx_min(cap, max);
        auto *body = static_cast<u_char *>(
            ngx_palloc(r->pool, cap + async::padding_needed()));
        if (body == nullptr) {
            return false;
        }
        if (a->len != 0) {
            ngx_memcpy(body, a->body, a->len);
        }
        if (a->body != nullptr) {
            ngx_pfree(r->pool, a->body);
        }
        a->body = body;
        a->cap = cap;
    }
    ngx_memcpy(a->body + a->len, p, n);
    a->len += n;
    // simdjson reads the padding: it must hold defined bytes
    ngx_memzero(a->body + a->len, async::padding_needed());
    return true;
}

// Moves node's pieces into the body in document order, up to the first
// nested request still running. True when node's whole output is in.
static bool ngx_http_async_capture_flush(ngx_http_request_t *r,
                                         ngx_http_async_node_t *node)
{
    ngx_http_async_attempt_t *a = node->attempt;
    while (node->pieces != nullptr) {
        ngx_http_async_piece_t *piece = node->pieces;
        if (piece->child != nullptr) {
            if (!ngx_http_async_capture_flush(r, piece->child)) {
                return false;
            }
        } else {
            a->queued -= piece->len;
            bool keep = !a->cancelled && !a->too_large && !a->nested_failed;
            if (keep
                && !ngx_http_async_capture_append(r, a, piece->data,
                                                  piece->len)) {
                a->nested_failed = true; // no memory: the call fails
            }
            ngx_pfree(r->pool, piece->data);
        }
        node->pieces = piece->next;
    }
    node->last = nullptr;
    return node->done;
}

// The attempt ends when its request and every nested one have ended and
// their output is in the body.
static void ngx_http_async_capture_try_finish(ngx_http_request_t *r,
                                              ngx_http_async_attempt_t *a)
{
    if (a->finished || !ngx_http_async_capture_flush(r, &a->root)) {
        return;
    }
    a->finished = true;
    // A body cut short is reported by nginx itself: an upstream that closes
    // early or a file read short finalize the request with an error. The
    // Content-Length a subrequest carries here is no measure: filters that
    // change a body (SSI, sub_filter) clear it for the main request only.
    if (a->nested_failed && !a->too_large && !a->cancelled) {
        // a nested request failed: the body misses its part
        a->status = NGX_HTTP_BAD_GATEWAY;
    }
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "async_fetch \"%V\" done: status:%ui", &a->call->conf->name,
                   a->status);
    if (!a->cancelled) {
        ngx_http_async_fanout_post(a->call->fanout);
    }
}

void ngx_http_async_capture_root_done(ngx_http_async_attempt_t *a)
{
    a->root.done = true;
    // subrequests created since the last output are part of the call too
    if (!ngx_http_async_capture_adopt(&a->root)) {
        a->nested_failed = true;
    }
    ngx_http_async_capture_try_finish(a->sr, a);
}

// nginx ends an upstream response cut short after its header like a
// complete one (ngx_http_upstream_finalize_request then flushes instead of
// sending the last buffer, and a client learns it from the closed
// connection): the call reads the upstream's own accounting, with the
// conditions nginx uses to tell the two apart.
bool ngx_http_async_capture_upstream_short(ngx_http_request_t *sr)
{
    ngx_http_upstream_t *u = sr->upstream;
    if (u == nullptr || !u->header_sent || sr->header_only || sr->cached) {
        return false;
    }
    if (u->buffering) {
        // ngx_http_upstream_process_request
        ngx_event_pipe_t *p = u->pipe;
        return p != nullptr && !p->upstream_done
               && !(p->upstream_eof && p->length == -1);
    }
    // ngx_http_upstream_process_non_buffered_request: bytes still due
    return u->length > 0;
}

// The write handler of a request of a call's tree that a nested request
// woke: it runs as the connection's active request, which nginx's
// handlers that wait for a subrequest check (SSI's `wait`), and the
// connection's real active request is restored afterwards.
static void ngx_http_async_capture_run_active(ngx_http_request_t *r)
{
    ngx_http_async_node_t *node = ngx_http_async_capture_node_of(r);
    ngx_connection_t *c = r->connection;
    if (node == nullptr || node->write_handler == nullptr) {
        return; // cannot happen: the handler is set with the node
    }
    r->write_event_handler = node->write_handler;
    node->write_handler = nullptr;
    // a reference of ours keeps the main request, and so the active one,
    // alive through the handler, which may end the last of the tree
    ngx_http_request_t *mr = r->main;
    mr->count++;
    void *active = c->data;
    c->data = r;
    r->write_event_handler(r);
    if (c->destroyed) {
        return; // terminated: the connection is gone with our reference
    }
    c->data = active;
    ngx_http_finalize_request(mr, NGX_DONE);
}

static void ngx_http_async_capture_wake(ngx_http_async_node_t *node)
{
    ngx_http_request_t *r = node->r;
    if (r->done || ngx_http_post_request(r, nullptr) != NGX_OK) {
        return;
    }
    if (r->write_event_handler != ngx_http_async_capture_run_active) {
        node->write_handler = r->write_event_handler;
        r->write_event_handler = ngx_http_async_capture_run_active;
    }
}

// Post-subrequest handler of a nested request: runs its creator's
// handler, then records the end and wakes the creator, as nginx does for a
// subrequest that ends while not active (a background one wakes nobody).
static ngx_int_t ngx_http_async_capture_nested_done(ngx_http_request_t *sr,
                                                    void *data, ngx_int_t rc)
{
    auto *node = static_cast<ngx_http_async_node_t *>(data);
    if (node->creator != nullptr && node->creator->handler != nullptr) {
        rc = node->creator->handler(sr, node->creator->data, rc);
    }
    if (rc == NGX_AGAIN || node->done) {
        return rc;
    }
    bool response = (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_HTTP_CREATED
                     || rc == NGX_HTTP_NO_CONTENT)
                    && rc != NGX_HTTP_CLOSE && rc != NGX_HTTP_REQUEST_TIME_OUT
                    && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST;
    if (response && !node->header_seen) {
        return rc; // its error page, as in a direct request; called again
    }
    node->done = true;
    ngx_http_async_attempt_t *a = node->attempt;
    if (rc == NGX_ERROR || response || rc >= NGX_HTTP_SPECIAL_RESPONSE
        || ngx_http_async_capture_upstream_short(sr)) {
        // a direct request would end here, cut short: the call fails
        ngx_log_error(NGX_LOG_INFO, sr->connection->log, 0,
                      "async_fetch \"%V\": nested \"%V\" failed (%i)",
                      &a->call->conf->name, &sr->uri, rc);
        a->nested_failed = true;
        rc = NGX_OK;
    }
    ngx_http_async_capture_adopt(node);
    ngx_http_async_node_t *parent = ngx_http_async_capture_node_of(sr->parent);
    if (parent != nullptr && !a->finished) {
        ngx_http_async_capture_wake(parent);
    }
    ngx_http_async_capture_try_finish(sr, a);
    return rc;
}

// --- filters -----------------------------------------------------------

static ngx_int_t ngx_http_async_capture_header_filter(ngx_http_request_t *r)
{
    if (r == r->main) {
        return ngx_http_next_header_filter(r);
    }
    // taken over before it ends (its creator may wait for it: SSI set=,
    // auth_request), although its output stays nginx's in-memory one
    ngx_http_async_node_t *node = ngx_http_async_capture_node_of(r);
    if (r->subrequest_in_memory) {
        return ngx_http_next_header_filter(r);
    }
    if (node == nullptr) {
        return ngx_http_next_header_filter(r);
    }
    if (node->header_seen) {
        return NGX_OK; // an error page after a header: the first one counts
    }
    node->header_seen = true;
    ngx_http_async_attempt_t *a = node->attempt;
    if (node != &a->root) {
        // a nested response is only body within the call's, as in SSI
        return NGX_OK;
    }
    a->header_seen = true;
    // an upstream without a valid status line is passed on as HTTP/0.9
    // with no status at all: for a call, that is a bad gateway
    a->status = r->headers_out.status != 0 ? r->headers_out.status
                                           : NGX_HTTP_BAD_GATEWAY;
    a->content_type = r->headers_out.content_type;
    a->content_length = r->headers_out.content_length_n;

    size_t max = a->call->fanout->alcf->fetch_max_size;
    if (a->content_length > static_cast<off_t>(max) && !a->cancelled) {
        a->too_large = true;
        ngx_http_async_fanout_post(a->call->fanout);
    }
    // a call's response goes nowhere but into its capture buffer
    return NGX_OK;
}

static ngx_int_t ngx_http_async_capture_body_filter(ngx_http_request_t *r,
                                                    ngx_chain_t *in)
{
    if (r == r->main || r->subrequest_in_memory) {
        return ngx_http_next_body_filter(r, in);
    }
    ngx_http_async_node_t *node = ngx_http_async_capture_node_of(r);
    if (node == nullptr) {
        return ngx_http_next_body_filter(r, in);
    }
    ngx_http_async_attempt_t *a = node->attempt;
    size_t max = a->call->fanout->alcf->fetch_max_size;
    // straight into the body when nothing before it is still pending
    bool direct = node == &a->root && node->pieces == nullptr;

    for (ngx_chain_t *cl = in; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        bool keep =
            !a->cancelled && !a->too_large && !a->finished && !a->nested_failed;

        if (ngx_buf_in_memory(b)) {
            size_t n = static_cast<size_t>(b->last - b->pos);
            if (keep && n != 0) {
                if (a->len + a->queued + n > max) {
                    // over the cap: the call fails, nothing is truncated
                    a->too_large = true;
                    ngx_http_async_fanout_post(a->call->fanout);
                } else if (direct
                               ? !ngx_http_async_capture_append(r, a, b->pos, n)
                               : !ngx_http_async_capture_queue(r, node, nullptr,
                                                               b->pos, n)) {
                    return NGX_ERROR;
                }
            }
            b->pos = b->last;
        } else if (b->in_file && b->file_last > b->file_pos) {
            // the copy filter reads files for us (filter_need_in_memory)
            if (keep) {
                ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                              "async_fetch \"%V\": file buffer not in memory",
                              &a->call->conf->name);
                return NGX_ERROR;
            }
        }
        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }
    if (!direct) {
        ngx_http_async_capture_try_finish(r, a);
    }
    return NGX_OK;
}

static ngx_int_t ngx_http_async_capture_init(ngx_conf_t *cf)
{
    (void) cf;
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_async_capture_header_filter;
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_async_capture_body_filter;
    return NGX_OK;
}
