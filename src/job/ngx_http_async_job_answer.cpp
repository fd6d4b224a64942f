// The answers every part of the job concern sends: the status JSON of a
// job, 202 Accepted, a stored result replayed, 404; with their headers.
#include "job/ngx_http_async_job.hpp"

#include "core/json_writer.hpp"

static const ngx_str_t not_found_body =
    ngx_string("{\"error\":\"job not found\"}\n");

ngx_int_t ngx_http_async_job_add_header(ngx_http_request_t *r, ngx_str_t key,
                                        ngx_str_t value)
{
    return async::push_header(&r->headers_out.headers, async::view(key), value)
                   == nullptr
               ? NGX_ERROR
               : NGX_OK;
}

static ngx_int_t ngx_http_async_job_send_body(ngx_http_request_t *r,
                                              ngx_uint_t status, ngx_str_t type,
                                              ngx_str_t body)
{
    r->headers_out.status = status;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = static_cast<off_t>(body.len);
    if (body.len == 0) {
        r->header_only = 1;
    }
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }
    auto *b = async::pool_calloc<ngx_buf_t>(r->pool);
    if (b == nullptr) {
        return NGX_ERROR;
    }
    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}

ngx_int_t ngx_http_async_job_send_json(ngx_http_request_t *r, ngx_uint_t status,
                                       ngx_str_t body, bool retry_after)
{
    if (retry_after
        && ngx_http_async_job_add_header(r, async::literal("Retry-After"),
                                         async::literal("1"))
               != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_job_send_body(
        r, status, async::literal("application/json"), body);
}

ngx_int_t ngx_http_async_job_send_not_found(ngx_http_request_t *r)
{
    return ngx_http_async_job_send_json(r, NGX_HTTP_NOT_FOUND, not_found_body,
                                        false);
}

static ngx_str_t ngx_http_async_job_href(ngx_pool_t *pool,
                                         ngx_http_async_job_zone_t *zone,
                                         const char id[async::id_chars],
                                         bool result)
{
    size_t len = zone->status_prefix.len + 1 + async::id_chars
                 + (result ? sizeof("/result") - 1 : 0);
    ngx_str_t out{0, nullptr};
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, len));
    if (p == nullptr) {
        return out;
    }
    u_char *last =
        ngx_cpymem(p, zone->status_prefix.data, zone->status_prefix.len);
    *last++ = '/';
    last = ngx_cpymem(last, id, async::id_chars);
    if (result) {
        last = ngx_cpymem(last, "/result", sizeof("/result") - 1);
    }
    out.data = p;
    out.len = static_cast<size_t>(last - p);
    return out;
}

static void ngx_http_async_job_time(async::json_writer &w, uint64_t ms)
{
    if (ms == 0) {
        w.null();
    } else {
        w.number_double(static_cast<double>(ms) / 1000.0, 3);
    }
}

ngx_str_t ngx_http_async_job_status_json(ngx_pool_t *pool,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v)
{
    ngx_str_t out{0, nullptr};
    size_t cap = 512 + 2 * zone->status_prefix.len
                 + ngx_http_async_job_progress_json_bytes(v);
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, cap));
    if (p == nullptr) {
        return out;
    }
    const async::job_record &rec = v->rec;
    std::string_view id(v->id, async::id_chars);
    async::json_writer w(reinterpret_cast<char *>(p), cap - 1);
    w.begin_object();
    w.key("id");
    w.string(id);
    w.key("status");
    w.string(async::job_state_name(rec.state));
    w.key("created");
    ngx_http_async_job_time(w, rec.created_ms);
    w.key("started");
    ngx_http_async_job_time(w, rec.started_ms);
    w.key("finished");
    ngx_http_async_job_time(w, rec.finished_ms);
    w.key("result_status");
    if (rec.state == async::job_state::completed) {
        w.number_u64(rec.result_status);
    } else {
        w.null();
    }
    w.key("href_result");
    if (rec.state == async::job_state::completed) {
        w.string(async::view(ngx_http_async_job_href(pool, zone, v->id, true)));
    } else {
        w.null();
    }
    w.key("reason");
    if (rec.reason != async::job_reason::none) {
        w.string(async::job_reason_name(rec.reason));
    } else {
        w.null();
    }
    ngx_http_async_job_progress_json(w, v);
    w.end_object();
    if (!w.complete()) {
        return out;
    }
    p[w.length()] = '\n';
    out.data = p;
    out.len = w.length() + 1;
    return out;
}

ngx_int_t ngx_http_async_job_send_status(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v,
                                         ngx_uint_t status)
{
    ngx_str_t body = ngx_http_async_job_status_json(r->pool, zone, v);
    if (body.len == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    return ngx_http_async_job_send_json(r, status, body,
                                        !async::job_final(v->rec.state));
}

ngx_int_t ngx_http_async_job_send_accepted(ngx_http_request_t *r,
                                           ngx_http_async_job_zone_t *zone,
                                           const ngx_http_async_job_view_t *v,
                                           bool preference_applied)
{
    ngx_str_t href = ngx_http_async_job_href(r->pool, zone, v->id, false);
    size_t cap = 128 + 2 * href.len;
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, cap));
    if (href.len == 0 || p == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    async::json_writer w(reinterpret_cast<char *>(p), cap - 1);
    w.begin_object();
    w.key("id");
    w.string(std::string_view(v->id, async::id_chars));
    w.key("status");
    w.string(async::job_state_name(v->rec.state));
    w.key("href");
    w.string(async::view(href));
    w.end_object();
    if (!w.complete()) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    p[w.length()] = '\n';
    ngx_str_t body{w.length() + 1, p};

    if (ngx_http_async_job_add_header(r, async::literal("Location"), href)
            != NGX_OK
        || (preference_applied
            && ngx_http_async_job_add_header(
                   r, async::literal("Preference-Applied"),
                   async::literal("respond-async"))
                   != NGX_OK)) {
        return NGX_ERROR;
    }
    return ngx_http_async_job_send_json(r, NGX_HTTP_ACCEPTED, body, true);
}

ngx_int_t ngx_http_async_job_send_result(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v)
{
    ngx_str_t type{0, nullptr}, body{0, nullptr};
    ngx_uint_t status = 0;
    bool have = false;
    u_char *copy = nullptr;

    // the record may have changed since v was taken: copy it again with
    // its result, under the lock
    if (v->rec.state == async::job_state::completed) {
        copy = static_cast<u_char *>(
            ngx_pnalloc(r->pool, ngx_max(v->rec.result_bytes, 1u)));
        if (copy == nullptr) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_shmtx_lock(&zone->shpool->mutex);
        const async::job_record &rec = zone->table->records()[v->index];
        if (rec.generation == v->rec.generation
            && rec.state == async::job_state::completed
            && rec.result_offset != 0
            && rec.result_bytes == v->rec.result_bytes) {
            ngx_memcpy(copy,
                       reinterpret_cast<u_char *>(zone->shpool)
                           + rec.result_offset,
                       rec.result_bytes);
            have = true;
            status = rec.result_status;
            type.data = copy;
            type.len = rec.content_type_len;
            body.data = copy + rec.content_type_len;
            body.len = rec.result_bytes - rec.content_type_len;
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
    if (!have) {
        return ngx_http_async_job_send_status(r, zone, v, NGX_HTTP_CONFLICT);
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    return ngx_http_async_job_send_body(r, status, type, body);
}

ngx_int_t ngx_http_async_job_send_stored(ngx_http_request_t *r,
                                         const ngx_http_async_job_view_t *v,
                                         ngx_uint_t status, ngx_str_t type,
                                         ngx_str_t body)
{
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    return ngx_http_async_job_send_body(r, status, type, body);
}
