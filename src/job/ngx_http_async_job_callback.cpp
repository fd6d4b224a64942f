// The completion callback: a POST of the job's status once it is final.
#include "job/ngx_http_async_job_run.hpp"

// --- the callback ----------------------------------------------------------

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
        if (run->cb_sr != nullptr) {
            return; // it was created and runs; its end ends the run
        }
    }
    ngx_http_async_job_run_destroy(run);
}
