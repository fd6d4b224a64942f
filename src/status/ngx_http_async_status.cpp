// async_status: a read-only report of every zone of the module, like
// stub_status. Counters are copied under each zone's lock, then formatted
// without any lock held, as JSON or as Prometheus text
// (ngx_http_async_status_prometheus.cpp).
#include "status/ngx_http_async_status.hpp"
#include "job/ngx_http_async_job.hpp"

#include "core/ascii.hpp"

enum class status_format { json, prometheus, unknown };

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

// --- snapshot -----------------------------------------------------------

static ngx_int_t
ngx_http_async_status_snapshot(ngx_http_request_t *r,
                               ngx_http_async_status_snapshot_t *s)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_async_module));

    ngx_memzero(s, sizeof(*s));
    ngx_uint_t n = amcf->queue_zones.nelts;
    if (n > 0) {
        s->queues = async::pool_calloc_array<ngx_http_async_queue_snapshot_t>(
            r->pool, n);
        if (s->queues == nullptr) {
            return NGX_ERROR;
        }
        auto *zones =
            static_cast<ngx_http_async_queue_zone_t **>(amcf->queue_zones.elts);
        for (ngx_uint_t i = 0; i < n; i++) {
            if (ngx_http_async_queue_snapshot(zones[i], &s->queues[s->nqueues])
                == NGX_OK) {
                s->nqueues++;
            }
        }
    }

    n = amcf->job_zones.nelts;
    if (n > 0) {
        s->jobs =
            async::pool_calloc_array<ngx_http_async_status_job_t>(r->pool, n);
        if (s->jobs == nullptr) {
            return NGX_ERROR;
        }
        auto *zones =
            static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
        for (ngx_uint_t i = 0; i < n; i++) {
            ngx_http_async_job_snapshot_t j;
            if (ngx_http_async_job_snapshot(zones[i], &j) != NGX_OK) {
                continue;
            }
            ngx_http_async_status_job_t &out = s->jobs[s->njobs++];
            out.name = j.name;
            out.queued = j.queued;
            out.running = j.running;
            out.completed = j.completed;
            out.failed = j.failed;
            out.cancelled = j.cancelled;
            out.expired = j.expired;
            out.stored_bytes = j.stored_bytes;
            out.max_result = j.max_result;
            out.submitted = j.counters.submitted;
            out.rejected = j.counters.rejected;
            out.completed_total = j.counters.completed;
            out.failed_total = j.counters.failed;
            out.cancelled_total = j.counters.cancelled;
        }
    }

    ngx_http_async_stats_fanout_snapshot(s->fanout);
    return NGX_OK;
}

// --- JSON ---------------------------------------------------------------

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

static void ngx_http_async_status_field(async::json_writer &w,
                                        std::string_view name, uint64_t v)
{
    w.key(name);
    w.number_u64(v);
}

static void ngx_http_async_status_counters(async::json_writer &w,
                                           const async::queue_counters &c)
{
    ngx_http_async_status_field(w, "passed", c.passed);
    ngx_http_async_status_field(w, "queued", c.queued);
    ngx_http_async_status_field(w, "rejected", c.rejected);
    ngx_http_async_status_field(w, "timed_out", c.timed_out);
    ngx_http_async_status_field(w, "cancelled", c.cancelled);
    ngx_http_async_status_field(w, "evicted", c.evicted);
    ngx_http_async_status_field(w, "dropped", c.dropped);
}

// The adaptive limit, CoDel and the priority classes of one queue zone.
static void
ngx_http_async_status_queue_tuning(async::json_writer &w,
                                   const ngx_http_async_queue_snapshot_t &q)
{
    ngx_http_async_status_field(w, "evicted", q.counters.evicted);
    ngx_http_async_status_field(w, "dropped", q.counters.dropped);
    if (q.tuning.adaptive) {
        w.key("adaptive_limit");
        w.begin_object();
        ngx_http_async_status_field(w, "limit", q.limit.limit);
        ngx_http_async_status_field(w, "min", q.limit.min_limit);
        ngx_http_async_status_field(w, "max", q.limit.max_limit);
        w.key("sampled_ms");
        w.number_double(static_cast<double>(q.limit.sampled_us) / 1000.0, 3);
        w.key("min_ms");
        w.number_double(static_cast<double>(q.limit.min_us) / 1000.0, 3);
        ngx_http_async_status_field(w, "adjustments", q.limit.adjustments);
        w.end_object();
    }
    w.key("discipline");
    w.string(q.tuning.codel ? "codel" : "fifo");
    if (q.tuning.codel) {
        w.key("codel");
        w.begin_object();
        ngx_http_async_status_field(w, "target_ms", q.codel.target_ms);
        ngx_http_async_status_field(w, "interval_ms", q.codel.interval_ms);
        w.key("dropping");
        w.boolean(q.codel.dropping != 0);
        ngx_http_async_status_field(w, "count", q.codel.count);
        ngx_http_async_status_field(w, "sojourn_ms", q.codel.sojourn_ms);
        w.end_object();
    }
    // only the classes that saw requests, to keep the page short
    w.key("priorities");
    w.begin_object();
    for (uint32_t c = 0; c < async::queue_classes; c++) {
        const async::queue_counters &k = q.class_counters[c];
        if (k.passed + k.queued + k.rejected + k.timed_out + k.cancelled
                + k.evicted + k.dropped
            == 0) {
            continue;
        }
        char name[2] = {static_cast<char>('0' + c), '\0'};
        w.key(std::string_view(name, 1));
        w.begin_object();
        ngx_http_async_status_counters(w, k);
        w.key("wait_seconds");
        ngx_http_async_status_histogram(w, q.class_wait[c]);
        w.end_object();
    }
    w.end_object();
}

static void
ngx_http_async_status_queue_zones(async::json_writer &w,
                                  const ngx_http_async_status_snapshot_t &s)
{
    w.key("queue_zones");
    w.begin_object();
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        w.key(async::view(q.name));
        w.begin_object();
        ngx_http_async_status_field(w, "active", q.active);
        ngx_http_async_status_field(w, "max_active", q.max_active);
        ngx_http_async_status_field(w, "waiting", q.waiting);
        ngx_http_async_status_field(w, "length", q.length);
        ngx_http_async_status_field(w, "timeout_ms", q.timeout);
        ngx_http_async_status_field(w, "passed", q.counters.passed);
        ngx_http_async_status_field(w, "queued", q.counters.queued);
        ngx_http_async_status_field(w, "rejected", q.counters.rejected);
        ngx_http_async_status_field(w, "timed_out", q.counters.timed_out);
        ngx_http_async_status_field(w, "cancelled", q.counters.cancelled);
        w.key("wait_seconds");
        ngx_http_async_status_histogram(w, q.wait);
        ngx_http_async_status_queue_tuning(w, q);
        w.end_object();
    }
    w.end_object();
}

static void
ngx_http_async_status_job_zones(async::json_writer &w,
                                const ngx_http_async_status_snapshot_t &s)
{
    w.key("job_zones");
    w.begin_object();
    for (ngx_uint_t i = 0; i < s.njobs; i++) {
        const ngx_http_async_status_job_t &j = s.jobs[i];
        w.key(async::view(j.name));
        w.begin_object();
        ngx_http_async_status_field(w, "queued", j.queued);
        ngx_http_async_status_field(w, "running", j.running);
        ngx_http_async_status_field(w, "completed", j.completed);
        ngx_http_async_status_field(w, "failed", j.failed);
        ngx_http_async_status_field(w, "cancelled", j.cancelled);
        ngx_http_async_status_field(w, "expired", j.expired);
        ngx_http_async_status_field(w, "stored_bytes", j.stored_bytes);
        ngx_http_async_status_field(w, "max_result", j.max_result);
        w.key("totals");
        w.begin_object();
        ngx_http_async_status_field(w, "submitted", j.submitted);
        ngx_http_async_status_field(w, "rejected", j.rejected);
        ngx_http_async_status_field(w, "completed", j.completed_total);
        ngx_http_async_status_field(w, "failed", j.failed_total);
        ngx_http_async_status_field(w, "cancelled", j.cancelled_total);
        w.end_object();
        w.end_object();
    }
    w.end_object();
}

bool ngx_http_async_status_json(async::json_writer &w,
                                const ngx_http_async_status_snapshot_t &s)
{
    w.begin_object();
    w.key("module");
    w.string("ngx_http_async_module");
    w.key("version");
    w.string(async::module_version);
    w.key("nginx_version");
    w.string(NGINX_VERSION);
    ngx_http_async_status_queue_zones(w, s);
    ngx_http_async_status_job_zones(w, s);
    w.key("fanout");
    w.begin_object();
    for (ngx_uint_t i = 0; i < fanout_stat_count; i++) {
        ngx_http_async_status_field(
            w, ngx_http_async_stats_fanout_name(static_cast<fanout_stat>(i)),
            s.fanout[i]);
    }
    w.end_object();
    w.end_object();
    return w.complete();
}

// --- handler ------------------------------------------------------------

// ?format=json|prometheus wins; otherwise the Accept header decides.
static status_format ngx_http_async_status_format(ngx_http_request_t *r)
{
    ngx_str_t arg;
    if (ngx_http_arg(
            r, const_cast<u_char *>(reinterpret_cast<const u_char *>("format")),
            6, &arg)
        == NGX_OK) {
        if (async::iequals(async::view(arg), "json")) {
            return status_format::json;
        }
        if (async::iequals(async::view(arg), "prometheus")) {
            return status_format::prometheus;
        }
        return status_format::unknown;
    }

    status_format format = status_format::json;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            if (h.hash != 0 && async::iequals(async::view(h.key), "Accept")
                && async::prometheus_text_accepted(async::view(h.value))) {
                format = status_format::prometheus;
                return false;
            }
            return true;
        });
    return format;
}

// Formats into a pool buffer, doubling it when the report does not fit.
static ngx_buf_t *
ngx_http_async_status_render(ngx_http_request_t *r, status_format format,
                             const ngx_http_async_status_snapshot_t &s)
{
    size_t cap = (format == status_format::prometheus ? 8192 : 4096)
                 + (s.nqueues + s.njobs) * 4096
                 + s.nqueues * async::queue_classes * 4096;
    for (int attempt = 0; attempt < 4; attempt++, cap *= 2) {
        ngx_buf_t *b = ngx_create_temp_buf(r->pool, cap);
        if (b == nullptr) {
            return nullptr;
        }
        auto *p = reinterpret_cast<char *>(b->pos);
        if (format == status_format::prometheus) {
            async::prometheus_writer w(p, cap);
            if (ngx_http_async_status_prometheus(w, s)) {
                b->last = b->pos + w.length();
                return b;
            }
            if (w.misused()) {
                break;
            }
        } else {
            async::json_writer w(p, cap - 1);
            if (ngx_http_async_status_json(w, s)) {
                b->last = b->pos + w.length();
                *b->last++ = '\n';
                return b;
            }
            if (w.misused()) {
                break;
            }
        }
        ngx_pfree(r->pool, b->start);
    }
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "async_status: cannot format the report (%uz bytes)", cap);
    return nullptr;
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

    status_format format = ngx_http_async_status_format(r);
    if (format == status_format::unknown) {
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_http_async_status_snapshot_t s;
    if (ngx_http_async_status_snapshot(r, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_buf_t *b = ngx_http_async_status_render(r, format, s);
    if (b == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (format == status_format::prometheus) {
        r->headers_out.content_type =
            async::ngx_string_of(async::prometheus_content_type);
        // the media type without its parameters, for charset_types & co
        r->headers_out.content_type_len = sizeof("text/plain") - 1;
    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
    }
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    // the same URI answers in two formats, chosen by Accept
    ngx_table_elt_t *vary =
        static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (vary == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    vary->hash = 1;
    ngx_str_set(&vary->key, "Vary");
    ngx_str_set(&vary->value, "Accept");

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}
