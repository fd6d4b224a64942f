// Job progress: the job's own request carries X-Async-Job-Id, and its
// backend reports with PUT <status-prefix>/<id>/progress and a body
// {"percent":0..100,"message":"..."}; the status answer then shows
// "progress" while the job runs. Reports are kept in a progress slot beside
// the job record (core/job_extras.hpp). A report wakes no long-poll: those
// wait for a final state, and a backend reporting often would turn each
// into a polling loop. With store=redis the report goes to the job's meta
// hash in Redis instead (ngx_http_async_job_store_redis.cpp).
#include "job/ngx_http_async_job.hpp"

#include "core/ascii.hpp"
#include "core/progress_body.hpp"

static void ngx_http_async_job_progress_body(ngx_http_request_t *r);

static const ngx_str_t id_header = ngx_string("X-Async-Job-Id");

// Slots: one per job that may run at once, and a margin for the runs of
// old workers during a reload.
static constexpr uint32_t extra_slots = 16;

async::job_progress *
ngx_http_async_job_progress_locked(ngx_http_async_job_zone_t *zone, bool create)
{
    if (zone->sh->progress_offset != 0) {
        return reinterpret_cast<async::job_progress *>(
            reinterpret_cast<u_char *>(zone->shpool)
            + zone->sh->progress_offset);
    }
    if (!create) {
        return nullptr;
    }
    // made on the first report: zones whose backends never report pay
    // nothing
    uint32_t capacity = zone->table->capacity;
    auto slots = static_cast<uint32_t>(zone->max_active + extra_slots);
    auto *p = static_cast<async::job_progress *>(ngx_slab_alloc_locked(
        zone->shpool, async::job_progress_bytes(capacity, slots)));
    if (p == nullptr) {
        return nullptr;
    }
    async::job_progress_init(p, capacity, slots);
    zone->sh->progress_offset =
        static_cast<uint64_t>(reinterpret_cast<u_char *>(p)
                              - reinterpret_cast<u_char *>(zone->shpool));
    return p;
}

static ngx_int_t ngx_http_async_job_progress_error(ngx_http_request_t *r,
                                                   ngx_uint_t status,
                                                   std::string_view text)
{
    size_t cap = text.size() + 32;
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, cap));
    if (p == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    async::json_writer w(reinterpret_cast<char *>(p), cap - 1);
    w.begin_object();
    w.key("error");
    w.string(text);
    w.end_object();
    if (!w.complete()) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    p[w.length()] = '\n';
    ngx_str_t body{w.length() + 1, p};
    return ngx_http_async_job_send_json(r, status, body, false);
}

ngx_int_t ngx_http_async_job_progress_put(ngx_http_request_t *r,
                                          ngx_http_async_job_zone_t *zone,
                                          std::string_view id_text)
{
    uint8_t id[async::id_bytes];
    if (zone->table == nullptr || !async::decode_id(id_text, id)) {
        ngx_int_t rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
        return zone->table == nullptr ? NGX_HTTP_SERVICE_UNAVAILABLE
                                      : ngx_http_async_job_send_not_found(r);
    }
    if (r->headers_in.content_length_n
        > static_cast<off_t>(async::progress_body_max)) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_memcpy(ctx->id, id_text.data(), async::id_chars);
    ctx->has_id = true;
    ngx_int_t rc =
        ngx_http_read_client_request_body(r, ngx_http_async_job_progress_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;
}

// The body in one piece, at most progress_body_max bytes; a chunked body
// may arrive without a length, so the size is checked here again.
static bool ngx_http_async_job_progress_read(ngx_http_request_t *r,
                                             ngx_str_t *out, bool *too_large)
{
    *too_large = false;
    ngx_str_null(out);
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
    if (total > async::progress_body_max) {
        *too_large = true;
        return true;
    }
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, total + 1));
    if (p == nullptr) {
        return false;
    }
    size_t off = 0;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if (b->in_file) {
            size_t n = static_cast<size_t>(b->file_last - b->file_pos);
            if (ngx_read_file(b->file, p + off, n, b->file_pos)
                != static_cast<ssize_t>(n)) {
                return false;
            }
            off += n;
        } else {
            off = ngx_cpymem(p + off, b->pos, b->last - b->pos) - p;
        }
    }
    out->data = p;
    out->len = off;
    return true;
}

static void ngx_http_async_job_progress_body(ngx_http_request_t *r)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    ngx_http_async_job_zone_t *zone = alcf->job->status;
    auto *ctx = ngx_http_async_job_ctx(r, false);
    uint8_t id[async::id_bytes];
    if (ctx == nullptr
        || !async::decode_id(std::string_view(ctx->id, async::id_chars), id)) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_str_t body;
    bool too_large = false;
    if (!ngx_http_async_job_progress_read(r, &body, &too_large)) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    if (too_large) {
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        return;
    }
    async::progress_body report;
    async::progress_body_status st = async::parse_progress_body(
        reinterpret_cast<const char *>(body.data), body.len, &report);
    if (st != async::progress_body_status::ok) {
        ngx_http_finalize_request(
            r, ngx_http_async_job_progress_error(
                   r, NGX_HTTP_BAD_REQUEST, async::progress_body_error(st)));
        return;
    }

    if (zone->redis_conf != nullptr) {
        // store=redis: kept in Redis, so that every node shows it
        ngx_http_async_job_redis_progress(
            r, zone, ctx->id, report.percent,
            std::string_view(report.message, report.message_len));
        return;
    }

    uint64_t now = ngx_http_async_job_now_ms();
    ngx_http_async_job_view_t v;
    async::progress_result res = async::progress_result::not_running;
    ngx_shmtx_lock(&zone->shpool->mutex);
    uint32_t index = async::job_table_find(zone->table, id, now);
    if (index != async::no_job) {
        async::job_progress *slots =
            ngx_http_async_job_progress_locked(zone, true);
        res = slots == nullptr
                  ? async::progress_result::no_slot
                  : async::job_progress_set(
                      slots, zone->table, index, report.percent,
                      std::string_view(report.message, report.message_len));
        ngx_http_async_job_view_fill_locked(zone, index, &v);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (index == async::no_job) {
        ngx_http_finalize_request(r, ngx_http_async_job_send_not_found(r));
        return;
    }
    ctx->state = v.rec.state;
    switch (res) {
        case async::progress_result::ok:
            r->headers_out.status = NGX_HTTP_NO_CONTENT;
            r->header_only = 1;
            r->headers_out.content_length_n = 0;
            ngx_http_finalize_request(r, ngx_http_send_header(r));
            return;
        case async::progress_result::not_running:
            // queued (its backend has not been called) or final: the
            // answer says which
            ngx_http_finalize_request(r, ngx_http_async_job_send_status(
                                             r, zone, &v, NGX_HTTP_CONFLICT));
            return;
        case async::progress_result::no_slot:
            break;
    }
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "async_job_zone \"%V\" has no room for progress",
                  &zone->name);
    ngx_http_finalize_request(
        r, ngx_http_async_job_progress_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "no room for progress"));
}

size_t
ngx_http_async_job_progress_json_bytes(const ngx_http_async_job_view_t *v)
{
    // an escaped byte takes at most six (\u00XX)
    return v->progress.has ? 48 + 6 * size_t{v->progress.message_len} : 0;
}

void ngx_http_async_job_progress_json(async::json_writer &w,
                                      const ngx_http_async_job_view_t *v)
{
    if (!v->progress.has) {
        return;
    }
    w.key("progress");
    w.begin_object();
    w.key("percent");
    w.number_u64(v->progress.percent);
    w.key("message");
    w.string(std::string_view(v->progress.message, v->progress.message_len));
    w.end_object();
}

bool ngx_http_async_job_progress_add_id_header(
    ngx_pool_t *pool, ngx_str_t *head, const uint8_t id[async::id_bytes])
{
    // the head ends with the empty line: the header goes before it
    static constexpr std::string_view end = "\r\n\r\n";
    std::string_view text = async::view(*head);
    if (text.size() < end.size()
        || text.substr(text.size() - end.size()) != end) {
        return false;
    }
    size_t keep = text.size() - 2;
    size_t len = keep + id_header.len + 2 + async::id_chars + 2 + 2;
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, len));
    if (p == nullptr) {
        return false;
    }
    u_char *last = ngx_cpymem(p, head->data, keep);
    last = ngx_cpymem(last, id_header.data, id_header.len);
    *last++ = ':';
    *last++ = ' ';
    async::encode_id(id, reinterpret_cast<char *>(last));
    last += async::id_chars;
    last = ngx_cpymem(last, "\r\n\r\n", 4);
    head->data = p;
    head->len = static_cast<size_t>(last - p);
    return true;
}

bool ngx_http_async_job_progress_own_header(const ngx_table_elt_t &h)
{
    return async::iequals(async::view(h.key), async::view(id_header));
}
