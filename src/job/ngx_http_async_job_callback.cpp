// The completion callback: a POST of the job's status once it is final,
// sent as the job's request is, over a socketpair to a real connection.
#include "job/ngx_http_async_job_run.hpp"

// --- the callback ----------------------------------------------------------

static ngx_int_t ngx_http_async_job_callback(ngx_http_async_job_run_t *run)
{
    ngx_http_async_job_view_t v;
    if (run->callback_uri.len == 0
        || !ngx_http_async_job_lookup_index(run->zone, run->index,
                                            run->generation, &v)) {
        return NGX_DECLINED;
    }
    if (v.rec.reason == async::job_reason::shutdown) {
        // the worker is leaving (worker_shutdown_timeout): no new requests
        return NGX_DECLINED;
    }
    ngx_str_t body = ngx_http_async_job_status_json(run->pool, run->zone, &v);
    if (body.len == 0) {
        return NGX_ERROR;
    }
    ngx_str_t uri = run->callback_uri;
    ngx_str_t args = run->callback_args;
    size_t escape =
        2 * ngx_escape_uri(nullptr, uri.data, uri.len, NGX_ESCAPE_URI);
    size_t len = sizeof("POST ") - 1 + uri.len + escape + 1 + args.len
                 + sizeof(" HTTP/1.1\r\nHost: \r\n") - 1 + run->host.len
                 + sizeof("Content-Type: application/json\r\n") - 1
                 + sizeof("Content-Length: \r\n") - 1 + NGX_SIZE_T_LEN
                 + sizeof("Connection: close\r\n\r\n") - 1;
    auto *p = static_cast<u_char *>(ngx_pnalloc(run->pool, len));
    ngx_array_t *segs =
        ngx_array_create(run->pool, 1, sizeof(ngx_http_async_job_body_seg_t));
    if (p == nullptr || segs == nullptr) {
        return NGX_ERROR;
    }
    u_char *last = ngx_cpymem(p, "POST ", sizeof("POST ") - 1);
    last = reinterpret_cast<u_char *>(
        ngx_escape_uri(last, uri.data, uri.len, NGX_ESCAPE_URI));
    if (args.len) {
        last = ngx_sprintf(last, "?%V", &args);
    }
    last = ngx_sprintf(last,
                       " HTTP/1.1\r\nHost: %V\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: %uz\r\n"
                       "Connection: close\r\n\r\n",
                       &run->host, body.len);
    auto *seg =
        static_cast<ngx_http_async_job_body_seg_t *>(ngx_array_push(segs));
    ngx_memzero(seg, sizeof(*seg));
    seg->data = body.data;
    seg->len = body.len;
    ngx_str_t head{static_cast<size_t>(last - p), p};
    return ngx_http_async_job_exchange(run, head, segs, false, false, true,
                                       v.rec.state);
}

// The callback's answer is in: log a failure, end the run.
void ngx_http_async_job_callback_end(ngx_http_async_job_run_t *run)
{
    ngx_http_async_job_exchange_t *ex = run->ex;
    ngx_uint_t status = ex->failed || ex->truncated ? 0 : ex->status;
    if (status == 0 || status >= 400) {
        char id[async::id_chars];
        async::encode_id(run->id, id);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "async_job_callback for job %*s failed: status %ui",
                      async::id_chars, id, status);
    }
    ngx_http_async_job_run_destroy(run);
}

// The job has its final state: call back, or end the run.
void ngx_http_async_job_after_final(ngx_http_async_job_run_t *run)
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
    }
    ngx_http_async_job_run_destroy(run);
}
