// The capture filter: keeps a job subrequest's response in the run's pool.
#include "job/ngx_http_async_job_run.hpp"

// --- the capture filter ----------------------------------------------------

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
