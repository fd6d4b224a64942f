// async_status: a read-only report of every zone of the module, like
// stub_status. Counters are copied under each zone's lock, then formatted
// without any lock held.
#include "ngx_http_async_module.hpp"
#include "ngx_http_async_queue.hpp"

#include "core/json_writer.hpp"

static ngx_int_t ngx_http_async_status_handler(ngx_http_request_t *r);

char *ngx_http_async_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                      void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    (void) cmd;

    if (alcf->status != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }
    alcf->status = 1;

    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = ngx_http_async_status_handler;
    return NGX_CONF_OK;
}

static void ngx_http_async_status_histogram(async::json_writer &w,
                                            const async::histogram &h)
{
    async::histogram_cumulative cum = async::histogram_cumulate(h);
    w.begin_object();
    w.key("buckets");
    w.begin_object();
    for (size_t i = 0; i < async::histogram_buckets; i++) {
        w.key(async::histogram_le_seconds(i));
        w.number_u64(cum.le[i]);
    }
    w.end_object();
    w.key("sum");
    w.number_double(static_cast<double>(cum.sum_ms) / 1000.0, 3);
    w.key("count");
    w.number_u64(cum.count);
    w.end_object();
}

static void ngx_http_async_status_queue_zones(async::json_writer &w,
                                              ngx_http_async_main_conf_t *amcf)
{
    w.key("queue_zones");
    w.begin_object();
    auto *zones =
        static_cast<ngx_http_async_queue_zone_t **>(amcf->queue_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->queue_zones.nelts; i++) {
        ngx_http_async_queue_snapshot_t s;
        if (ngx_http_async_queue_snapshot(zones[i], &s) != NGX_OK) {
            continue;
        }
        w.key(async::view(s.name));
        w.begin_object();
        w.key("active");
        w.number_u64(s.active);
        w.key("max_active");
        w.number_u64(s.max_active);
        w.key("waiting");
        w.number_u64(s.waiting);
        w.key("length");
        w.number_u64(s.length);
        w.key("timeout_ms");
        w.number_u64(s.timeout);
        w.key("passed");
        w.number_u64(s.counters.passed);
        w.key("queued");
        w.number_u64(s.counters.queued);
        w.key("rejected");
        w.number_u64(s.counters.rejected);
        w.key("timed_out");
        w.number_u64(s.counters.timed_out);
        w.key("cancelled");
        w.number_u64(s.counters.cancelled);
        w.key("wait_seconds");
        ngx_http_async_status_histogram(w, s.wait);
        w.end_object();
    }
    w.end_object();
}

static bool ngx_http_async_status_write(async::json_writer &w,
                                        ngx_http_async_main_conf_t *amcf)
{
    w.begin_object();
    w.key("module");
    w.string("ngx_http_async_module");
    w.key("version");
    w.string(async::module_version);
    w.key("nginx_version");
    w.string(NGINX_VERSION);
    ngx_http_async_status_queue_zones(w, amcf);
    w.end_object();
    return w.complete();
}

static ngx_int_t ngx_http_async_status_handler(ngx_http_request_t *r)
{
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_async_module));

    ngx_buf_t *b = nullptr;
    size_t cap = 4096 + amcf->queue_zones.nelts * 2048;
    for (int attempt = 0; attempt < 4; attempt++, cap *= 2) {
        b = ngx_create_temp_buf(r->pool, cap);
        if (b == nullptr) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        async::json_writer w(reinterpret_cast<char *>(b->pos), cap - 1);
        if (ngx_http_async_status_write(w, amcf)) {
            b->last = b->pos + w.length();
            *b->last++ = '\n';
            break;
        }
        b = nullptr;
    }
    if (b == nullptr) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_status: report does not fit in %uz bytes", cap);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}
