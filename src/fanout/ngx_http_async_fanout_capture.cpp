// The capture filter of async_fetch calls: keeps a call's status, type and
// body in the fan-out's pool instead of writing them to the client. It is
// its own HTTP filter module so that nginx places it below the copy filter
// (file buffers arrive in memory) and above the postpone filter (a call's
// output never joins the client's response).
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

static ngx_int_t ngx_http_async_capture_header_filter(ngx_http_request_t *r)
{
    if (r == r->main) {
        return ngx_http_next_header_filter(r);
    }
    ngx_http_async_attempt_t *a = ngx_http_async_fanout_attempt_of(r);
    if (a == nullptr) {
        return ngx_http_next_header_filter(r);
    }
    if (a->header_seen) {
        return NGX_OK; // an error page after a header: the first one counts
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

static ngx_int_t ngx_http_async_capture_body_filter(ngx_http_request_t *r,
                                                    ngx_chain_t *in)
{
    if (r == r->main) {
        return ngx_http_next_body_filter(r, in);
    }
    ngx_http_async_attempt_t *a = ngx_http_async_fanout_attempt_of(r);
    if (a == nullptr) {
        return ngx_http_next_body_filter(r, in);
    }
    size_t max = a->call->fanout->alcf->fetch_max_size;

    for (ngx_chain_t *cl = in; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        bool keep = !a->cancelled && !a->too_large && !a->finished;

        if (ngx_buf_in_memory(b)) {
            size_t n = static_cast<size_t>(b->last - b->pos);
            if (keep && n != 0) {
                if (a->len + n > max) {
                    // over the cap: the call fails, nothing is truncated
                    a->too_large = true;
                    ngx_http_async_fanout_post(a->call->fanout);
                } else if (!ngx_http_async_capture_append(r, a, b->pos, n)) {
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
