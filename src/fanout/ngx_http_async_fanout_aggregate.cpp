// The answer of a fan-out: one JSON object, the bodies concatenated in
// declaration order, or multipart/mixed in completion order; the two
// streamed forms send each part as soon as it may go.
#include "fanout/ngx_http_async_fanout.hpp"

#include "core/json_body.hpp"
#include "core/json_writer.hpp"
#include "core/multipart.hpp"

#include <openssl/rand.h>

static constexpr std::string_view reason_names[] = {"", "timeout", "cancelled",
                                                    "too_large", ""};

static std::string_view
ngx_http_async_fanout_reason(ngx_http_async_call_t *call, u_char *num)
{
    if (call->reason == fanout_reason::status) {
        u_char *end = ngx_sprintf(num, "%ui", call->status);
        return {reinterpret_cast<const char *>(num),
                static_cast<size_t>(end - num)};
    }
    return reason_names[static_cast<ngx_uint_t>(call->reason)];
}

bool ngx_http_async_fanout_part_has_boundary(ngx_http_async_fanout_t *fo,
                                             ngx_http_async_call_t *call)
{
    ngx_http_async_attempt_t *a = call->winner;
    if (fo->boundary.len == 0 || call->state != call_state::ok
        || a == nullptr) {
        return false;
    }
    return async::contains_boundary(
        {reinterpret_cast<const char *>(a->body), a->len},
        async::view(fo->boundary));
}

bool ngx_http_async_fanout_completed(ngx_http_async_fanout_t *fo)
{
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        if (fo->calls[i].state != call_state::ok) {
            return false;
        }
    }
    return true;
}

// "NAME=REASON, ..." over the failed calls, in declaration order.
ngx_str_t ngx_http_async_fanout_failed_text(ngx_http_async_fanout_t *fo,
                                            ngx_pool_t *pool)
{
    ngx_str_t out{0, nullptr};
    size_t len = 0;
    u_char num[NGX_INT_T_LEN];
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state == call_state::failed) {
            len += call->conf->name.len + 3
                   + ngx_http_async_fanout_reason(call, num).size();
        }
    }
    if (len == 0) {
        return out;
    }
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, len));
    if (p == nullptr) {
        return out;
    }
    out.data = p;
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state != call_state::failed) {
            continue;
        }
        if (p != out.data) {
            *p++ = ',';
            *p++ = ' ';
        }
        p = ngx_cpymem(p, call->conf->name.data, call->conf->name.len);
        *p++ = '=';
        std::string_view reason = ngx_http_async_fanout_reason(call, num);
        p = ngx_cpymem(p, reason.data(), reason.size());
    }
    out.len = p - out.data;
    return out;
}

static ngx_table_elt_t *ngx_http_async_fanout_header(ngx_list_t *list,
                                                     std::string_view key,
                                                     ngx_str_t value)
{
    auto *h = static_cast<ngx_table_elt_t *>(ngx_list_push(list));
    if (h == nullptr) {
        return nullptr;
    }
    h->hash = 1;
    h->key = async::ngx_string_of(key);
    h->value = value;
    h->lowcase_key = nullptr;
#if (nginx_version >= 1023000)
    h->next = nullptr;
#endif
    return h;
}

// X-Async-Completed and X-Async-Failed, as headers or as trailers.
static ngx_int_t ngx_http_async_fanout_outcome(ngx_http_async_fanout_t *fo,
                                               ngx_list_t *list)
{
    ngx_str_t value;
    bool completed = ngx_http_async_fanout_completed(fo);
    if (completed) {
        ngx_str_set(&value, "true");
    } else {
        ngx_str_set(&value, "false");
    }
    if (ngx_http_async_fanout_header(list, "X-Async-Completed", value)
        == nullptr) {
        return NGX_ERROR;
    }
    if (completed) {
        return NGX_OK;
    }
    value = ngx_http_async_fanout_failed_text(fo, fo->r->pool);
    if (value.len != 0
        && ngx_http_async_fanout_header(list, "X-Async-Failed", value)
               == nullptr) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

static void ngx_http_async_fanout_stop_clock(ngx_http_async_fanout_t *fo)
{
    ngx_time_t *tp = ngx_timeofday();
    fo->end_sec = tp->sec;
    fo->end_msec = tp->msec;
}

// Sends a complete, non-streamed answer and finalizes the request.
static void ngx_http_async_fanout_send(ngx_http_async_fanout_t *fo,
                                       ngx_uint_t status, u_char *body,
                                       size_t len)
{
    ngx_http_request_t *r = fo->r;
    fo->finished = true;

    r->headers_out.status = status;
    r->headers_out.content_length_n = static_cast<off_t>(len);
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = nullptr;
    if (ngx_http_async_fanout_outcome(fo, &r->headers_out.headers) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_async_fanout_stop_clock(fo);
        ngx_http_finalize_request(r, rc);
        return;
    }
    auto *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
    if (b == nullptr) {
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }
    b->pos = body;
    b->last = body + len;
    b->memory = len != 0;
    b->last_buf = 1;
    b->last_in_chain = 1;
    ngx_chain_t out{b, nullptr};
    rc = ngx_http_output_filter(r, &out);
    ngx_http_async_fanout_stop_clock(fo);
    ngx_http_finalize_request(r, rc);
}

void ngx_http_async_fanout_fail(ngx_http_async_fanout_t *fo,
                                ngx_http_async_call_t *call)
{
    u_char num[NGX_INT_T_LEN];
    std::string_view reason = ngx_http_async_fanout_reason(call, num);
    std::string_view name = async::view(call->conf->name);
    size_t cap = 64 + async::json_escaped_length(name) + reason.size();
    auto *buf = static_cast<char *>(ngx_pnalloc(fo->r->pool, cap));
    if (buf == nullptr) {
        ngx_http_finalize_request(fo->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    async::json_writer w(buf, cap);
    w.begin_object();
    w.key("error");
    w.string("async_fetch failed");
    w.key("call");
    w.string(name);
    w.key("reason");
    w.string(reason);
    w.end_object();
    if (!w.complete()) {
        ngx_http_finalize_request(fo->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_log_error(NGX_LOG_INFO, fo->r->connection->log, 0,
                  "async_fetch \"%V\" failed (%*s): fan-out ends",
                  &call->conf->name, reason.size(), reason.data());
    ngx_uint_t status = call->reason == fanout_reason::timeout
                            ? NGX_HTTP_GATEWAY_TIME_OUT
                            : NGX_HTTP_BAD_GATEWAY;
    ngx_http_async_fanout_send(fo, status, reinterpret_cast<u_char *>(buf),
                               w.length());
}

// {"NAME": VALUE, ...}: a JSON body inlined, anything else a string,
// null for a failed optional call.
static void ngx_http_async_fanout_json(ngx_http_async_fanout_t *fo)
{
    size_t cap = 2;
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        cap += 4 + async::json_escaped_length(async::view(call->conf->name));
        ngx_http_async_attempt_t *a = call->winner;
        if (call->state != call_state::ok || a == nullptr) {
            cap += 4;
            continue;
        }
        const char *body = reinterpret_cast<const char *>(a->body);
        std::string_view type = async::view(a->content_type);
        if (async::classify_body(body, a->len, type,
                                 a->cap + async::padding_needed())
            == async::body_kind::json) {
            a->inline_json = true;
            cap += a->len;
        } else {
            a->inline_json = false;
            cap += 2 + async::json_escaped_length({body, a->len});
        }
    }
    auto *buf = static_cast<char *>(ngx_pnalloc(fo->r->pool, cap));
    if (buf == nullptr) {
        ngx_http_finalize_request(fo->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    async::json_writer w(buf, cap);
    w.begin_object();
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        w.key(async::view(call->conf->name));
        ngx_http_async_attempt_t *a = call->winner;
        if (call->state != call_state::ok || a == nullptr) {
            w.null();
            continue;
        }
        std::string_view body{reinterpret_cast<const char *>(a->body), a->len};
        if (a->inline_json) {
            w.raw(body);
        } else {
            w.string(body);
        }
    }
    w.end_object();
    if (!w.complete()) {
        ngx_log_error(NGX_LOG_ALERT, fo->r->connection->log, 0,
                      "async_aggregate json: writer failed");
        ngx_http_finalize_request(fo->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_http_async_fanout_send(fo, NGX_HTTP_OK, reinterpret_cast<u_char *>(buf),
                               w.length());
}

// --- streamed forms ------------------------------------------------------

static ngx_chain_t **ngx_http_async_fanout_append(ngx_pool_t *pool,
                                                  ngx_chain_t **last, u_char *p,
                                                  size_t len)
{
    if (len == 0) {
        return last;
    }
    ngx_chain_t *cl = ngx_alloc_chain_link(pool);
    auto *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(pool));
    if (cl == nullptr || b == nullptr) {
        return nullptr;
    }
    b->pos = p;
    b->last = p + len;
    b->memory = 1;
    cl->buf = b;
    cl->next = nullptr;
    *last = cl;
    return &cl->next;
}

static ngx_http_async_call_t *
ngx_http_async_fanout_required_failure(ngx_http_async_fanout_t *fo)
{
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state == call_state::failed && !call->conf->optional
            && call->reason != fanout_reason::cancelled) {
            return call;
        }
    }
    return nullptr;
}

// A boundary from the system's CSPRNG: neither a call's backend nor a
// client can predict it from earlier answers. It must not occur in a part
// already captured (drawn again; with 128 random bits only a broken RNG
// repeats); a part that ends later is checked when its call resolves.
static ngx_int_t ngx_http_async_fanout_boundary(ngx_http_async_fanout_t *fo)
{
    auto *p =
        static_cast<u_char *>(ngx_pnalloc(fo->r->pool, async::boundary_length));
    if (p == nullptr) {
        return NGX_ERROR;
    }
    fo->boundary.data = p;
    fo->boundary.len = async::boundary_length;
    for (ngx_uint_t attempt = 0; attempt < 4; attempt++) {
        u_char random[async::boundary_random_bytes];
        if (RAND_bytes(random, sizeof(random)) != 1) {
            ngx_log_error(NGX_LOG_ALERT, fo->r->connection->log, 0,
                          "async_aggregate multipart: RAND_bytes() failed");
            return NGX_ERROR;
        }
        async::format_boundary(random, reinterpret_cast<char *>(p));
        bool clash = false;
        for (ngx_uint_t i = 0; i < fo->ncalls && !clash; i++) {
            clash = ngx_http_async_fanout_part_has_boundary(fo, &fo->calls[i]);
        }
        if (!clash) {
            return NGX_OK;
        }
    }
    ngx_log_error(NGX_LOG_ALERT, fo->r->connection->log, 0,
                  "async_aggregate multipart: no boundary outside the parts");
    return NGX_ERROR;
}

static ngx_int_t
ngx_http_async_fanout_stream_header(ngx_http_async_fanout_t *fo, bool multipart)
{
    ngx_http_request_t *r = fo->r;
    fo->streaming = true;
    r->headers_out.status = NGX_HTTP_OK;
    ngx_http_clear_content_length(r);
    ngx_http_clear_accept_ranges(r);

    if (multipart) {
        u_char *type = static_cast<u_char *>(
            ngx_pnalloc(r->pool, sizeof("multipart/mixed; boundary=")
                                     + async::boundary_length));
        if (type == nullptr || ngx_http_async_fanout_boundary(fo) != NGX_OK) {
            return NGX_ERROR;
        }
        r->headers_out.content_type.data = type;
        r->headers_out.content_type.len =
            ngx_sprintf(type, "multipart/mixed; boundary=%V", &fo->boundary)
            - type;
        r->headers_out.content_type_len = sizeof("multipart/mixed") - 1;
        r->headers_out.content_type_lowcase = nullptr;
    } else if (ngx_http_set_content_type(r) != NGX_OK) {
        return NGX_ERROR;
    }

    if (fo->decided) {
        if (ngx_http_async_fanout_outcome(fo, &r->headers_out.headers)
            != NGX_OK) {
            return NGX_ERROR;
        }
    } else {
        // the outcome is known only at the end: announce trailers
        fo->trailers = true;
        r->expect_trailers = 1;
        ngx_str_t names = ngx_string("X-Async-Completed, X-Async-Failed");
        if (ngx_http_async_fanout_header(&r->headers_out.headers, "Trailer",
                                         names)
            == nullptr) {
            return NGX_ERROR;
        }
    }
    return ngx_http_send_header(r);
}

static ngx_chain_t **ngx_http_async_fanout_part(ngx_http_async_fanout_t *fo,
                                                ngx_http_async_call_t *call,
                                                ngx_chain_t **last,
                                                bool multipart)
{
    ngx_pool_t *pool = fo->r->pool;
    call->emitted = true;
    ngx_http_async_attempt_t *a = call->winner;
    if (call->state != call_state::ok || a == nullptr) {
        return last;
    }
    if (multipart) {
        ngx_str_t type = a->content_type;
        if (type.len == 0) {
            ngx_str_set(&type, "application/octet-stream");
        }
        size_t len = fo->boundary.len + type.len + call->conf->name.len + 64;
        auto *p = static_cast<u_char *>(ngx_pnalloc(pool, len));
        if (p == nullptr) {
            return nullptr;
        }
        u_char *end = ngx_sprintf(p,
                                  "--%V\r\nContent-Type: %V\r\n"
                                  "X-Async-Name: %V\r\n\r\n",
                                  &fo->boundary, &type, &call->conf->name);
        last = ngx_http_async_fanout_append(pool, last, p, end - p);
        if (last == nullptr) {
            return nullptr;
        }
    }
    last = ngx_http_async_fanout_append(pool, last, a->body, a->len);
    if (last != nullptr && multipart) {
        static u_char crlf[] = "\r\n";
        last = ngx_http_async_fanout_append(pool, last, crlf, 2);
    }
    return last;
}

static void ngx_http_async_fanout_stream(ngx_http_async_fanout_t *fo,
                                         bool multipart)
{
    ngx_http_request_t *r = fo->r;
    ngx_connection_t *c = r->connection;

    if (fo->decided && ngx_http_async_fanout_required_failure(fo) != nullptr
        && fo->streaming) {
        // the status line is gone: end the connection rather than let a
        // required part silently miss from a complete-looking answer
        ngx_log_error(NGX_LOG_WARN, c->log, 0,
                      "async_fetch: a required call failed after the "
                      "response started, closing the connection");
        fo->finished = true;
        ngx_http_async_fanout_stop_clock(fo);
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }

    if (!fo->streaming) {
        bool ready = fo->decided;
        for (ngx_uint_t i = 0; i < fo->ncalls && !ready; i++) {
            call_state st = fo->calls[i].state;
            ready = multipart ? st == call_state::ok
                              : i == 0 && st != call_state::running;
        }
        if (!ready) {
            return;
        }
        ngx_int_t rc = ngx_http_async_fanout_stream_header(fo, multipart);
        if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
            fo->finished = true;
            ngx_http_async_fanout_stop_clock(fo);
            ngx_http_finalize_request(r, rc);
            return;
        }
    }

    // the parts that may go now
    ngx_chain_t *out = nullptr;
    ngx_chain_t **last = &out;
    if (multipart) {
        for (;;) {
            ngx_http_async_call_t *next = nullptr;
            for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
                ngx_http_async_call_t *call = &fo->calls[i];
                if (call->state != call_state::running && !call->emitted
                    && (next == nullptr || call->seq < next->seq)) {
                    next = call;
                }
            }
            if (next == nullptr) {
                break;
            }
            last = ngx_http_async_fanout_part(fo, next, last, true);
            if (last == nullptr) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }
        }
    } else {
        while (fo->next_part < fo->ncalls
               && fo->calls[fo->next_part].state != call_state::running) {
            ngx_http_async_call_t *call = &fo->calls[fo->next_part++];
            last = ngx_http_async_fanout_part(fo, call, last, false);
            if (last == nullptr) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }
        }
    }

    bool end = fo->decided;
    if (end) {
        if (multipart) {
            size_t len = fo->boundary.len + 8;
            auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, len));
            if (p == nullptr) {
                ngx_http_finalize_request(r, NGX_ERROR);
                return;
            }
            u_char *e = ngx_sprintf(p, "--%V--\r\n", &fo->boundary);
            last = ngx_http_async_fanout_append(r->pool, last, p, e - p);
        }
        if (last != nullptr && fo->trailers
            && ngx_http_async_fanout_outcome(fo, &r->headers_out.trailers)
                   != NGX_OK) {
            last = nullptr;
        }
        ngx_chain_t *cl = last ? ngx_alloc_chain_link(r->pool) : nullptr;
        auto *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
        if (cl == nullptr || b == nullptr) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
        b->last_buf = 1;
        b->last_in_chain = 1;
        cl->buf = b;
        cl->next = nullptr;
        *last = cl;
    } else if (out == nullptr) {
        return;
    } else {
        // send what there is now rather than wait for more
        ngx_chain_t *cl = out;
        while (cl->next != nullptr) {
            cl = cl->next;
        }
        cl->buf->flush = 1;
    }

    ngx_int_t rc = ngx_http_output_filter(r, out);
    if (end) {
        fo->finished = true;
        ngx_http_async_fanout_stop_clock(fo);
        ngx_http_finalize_request(r, rc);
        return;
    }
    if (rc == NGX_ERROR) {
        fo->finished = true;
        ngx_http_async_fanout_stop_clock(fo);
        ngx_http_finalize_request(r, NGX_ERROR);
        return;
    }
    if (c->buffered) {
        auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_http_core_module));
        if (ngx_handle_write_event(c->write, clcf->send_lowat) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_ERROR);
            return;
        }
        if (!c->write->ready && !c->write->delayed) {
            ngx_add_timer(c->write, clcf->send_timeout);
        }
    }
}

void ngx_http_async_fanout_output(ngx_http_async_fanout_t *fo)
{
    if (fo->finished) {
        return;
    }
    switch (static_cast<fanout_aggregate>(fo->alcf->aggregate)) {
        case fanout_aggregate::json:
            if (fo->decided) {
                ngx_http_async_fanout_json(fo);
            }
            return;
        case fanout_aggregate::concat:
            ngx_http_async_fanout_stream(fo, false);
            return;
        case fanout_aggregate::multipart:
            ngx_http_async_fanout_stream(fo, true);
            return;
    }
}
