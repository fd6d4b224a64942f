// The queue zones' section of the async_status report: each zone's numbers
// copied under its lock, then written as JSON ("queue_zones") or as
// Prometheus families (nginx_async_queue_*) from the same tables.
#include "queue/ngx_http_async_queue.hpp"

#include "core/histogram.hpp"

using async::metric_type;

// A copy of one zone's numbers, taken under the lock.
struct ngx_http_async_queue_snapshot_t {
    ngx_str_t name;
    uint32_t active;
    uint32_t max_active;
    uint32_t waiting;
    uint32_t length;
    ngx_msec_t timeout;
    async::queue_counters counters;
    async::histogram wait;
    async::queue_counters class_counters[async::queue_classes];
    async::histogram class_wait[async::queue_classes];
    ngx_http_async_queue_tuning_t tuning;
    async::adaptive_limit limit;
    async::codel_state codel;
};

using ngx_http_async_queue_report_t =
    ngx_http_async_zone_rows_t<ngx_http_async_queue_snapshot_t>;

// The gauges: JSON key, Prometheus family, its help.
static constexpr struct {
    std::string_view key;
    std::string_view family;
    std::string_view help;
    uint32_t ngx_http_async_queue_snapshot_t::*field;
} gauges[] = {
    {"active", "nginx_async_queue_active",
     "Requests holding a slot of the zone.",
     &ngx_http_async_queue_snapshot_t::active},
    {"max_active", "nginx_async_queue_max_active",
     "Slots of the zone (active= or per_cpu= times CPUs).",
     &ngx_http_async_queue_snapshot_t::max_active},
    {"waiting", "nginx_async_queue_waiting",
     "Requests parked in the zone's queue.",
     &ngx_http_async_queue_snapshot_t::waiting},
    {"length", "nginx_async_queue_length",
     "Places in the zone's queue (length=).",
     &ngx_http_async_queue_snapshot_t::length},
};

// The outcomes of requests: JSON keys and Prometheus outcome labels.
static constexpr struct {
    std::string_view outcome;
    uint64_t async::queue_counters::*field;
} outcomes[] = {
    {"passed", &async::queue_counters::passed},
    {"queued", &async::queue_counters::queued},
    {"rejected", &async::queue_counters::rejected},
    {"timed_out", &async::queue_counters::timed_out},
    {"cancelled", &async::queue_counters::cancelled},
    {"evicted", &async::queue_counters::evicted},
    {"dropped", &async::queue_counters::dropped},
};

static ngx_int_t ngx_http_async_queue_snapshot(ngx_http_request_t *r,
                                               void **data, ngx_uint_t *items)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_async_module));
    auto *rep = ngx_http_async_zones_copy<ngx_http_async_queue_zone_t,
                                          ngx_http_async_queue_snapshot_t>(
        r->pool, amcf->queue_zones,
        [](ngx_http_async_queue_zone_t *zone,
           ngx_http_async_queue_snapshot_t &out) {
            out.name = zone->name;
            out.active = zone->q->active;
            out.max_active = zone->q->max_active;
            out.waiting = zone->q->waiting;
            out.length = zone->q->length;
            out.timeout = zone->sh->timeout;
            out.counters = zone->q->counters;
            out.wait = zone->sh->wait;
            ngx_memcpy(out.class_counters, zone->q->class_counters,
                       sizeof(out.class_counters));
            ngx_memcpy(out.class_wait, zone->sh->class_wait,
                       sizeof(out.class_wait));
            out.tuning = zone->tuning;
            out.limit = zone->sh->limit;
            out.codel = zone->q->codel;
        });
    if (rep == nullptr) {
        return NGX_ERROR;
    }
    *data = rep;
    // a zone's priority classes weigh about as much as a zone each
    *items = rep->n * (1 + async::queue_classes);
    return NGX_OK;
}

static void ngx_http_async_queue_json_histogram(async::json_writer &w,
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

// The adaptive limit, CoDel and the priority classes of one zone.
static void
ngx_http_async_queue_json_policy(async::json_writer &w,
                                 const ngx_http_async_queue_snapshot_t &q)
{
    if (q.tuning.adaptive) {
        w.key("adaptive_limit");
        w.begin_object();
        const struct {
            std::string_view key;
            uint64_t value;
        } limits[] = {{"limit", q.limit.limit},
                      {"min", q.limit.min_limit},
                      {"max", q.limit.max_limit}};
        for (const auto &l : limits) {
            w.key(l.key);
            w.number_u64(l.value);
        }
        w.key("sampled_ms");
        w.number_double(static_cast<double>(q.limit.sampled_us) / 1000.0, 3);
        w.key("min_ms");
        w.number_double(static_cast<double>(q.limit.min_us) / 1000.0, 3);
        w.key("adjustments");
        w.number_u64(q.limit.adjustments);
        w.end_object();
    }
    w.key("discipline");
    w.string(q.tuning.codel ? "codel" : "fifo");
    if (q.tuning.codel) {
        w.key("codel");
        w.begin_object();
        w.key("target_ms");
        w.number_u64(q.codel.target_ms);
        w.key("interval_ms");
        w.number_u64(q.codel.interval_ms);
        w.key("dropping");
        w.boolean(q.codel.dropping != 0);
        w.key("count");
        w.number_u64(q.codel.count);
        w.key("sojourn_ms");
        w.number_u64(q.codel.sojourn_ms);
        w.end_object();
    }
    // only the classes that saw requests, to keep the page short
    w.key("priorities");
    w.begin_object();
    for (uint32_t c = 0; c < async::queue_classes; c++) {
        const async::queue_counters &k = q.class_counters[c];
        uint64_t seen = 0;
        for (const auto &o : outcomes) {
            seen += k.*o.field;
        }
        if (seen == 0) {
            continue;
        }
        char name = static_cast<char>('0' + c);
        w.key(std::string_view(&name, 1));
        w.begin_object();
        for (const auto &o : outcomes) {
            w.key(o.outcome);
            w.number_u64(k.*o.field);
        }
        w.key("wait_seconds");
        ngx_http_async_queue_json_histogram(w, q.class_wait[c]);
        w.end_object();
    }
    w.end_object();
}

static void ngx_http_async_queue_json(async::json_writer &w, const void *data)
{
    const auto *rep = static_cast<const ngx_http_async_queue_report_t *>(data);
    w.key("queue_zones");
    w.begin_object();
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep->rows[i];
        w.key(async::view(q.name));
        w.begin_object();
        for (const auto &g : gauges) {
            w.key(g.key);
            w.number_u64(q.*g.field);
        }
        w.key("timeout_ms");
        w.number_u64(q.timeout);
        for (const auto &o : outcomes) {
            w.key(o.outcome);
            w.number_u64(q.counters.*o.field);
        }
        w.key("wait_seconds");
        ngx_http_async_queue_json_histogram(w, q.wait);
        ngx_http_async_queue_json_policy(w, q);
        w.end_object();
    }
    w.end_object();
}

// Per priority class (label priority), the adaptive limit and CoDel.
static void
ngx_http_async_queue_prometheus_policy(async::prometheus_writer &w,
                                       const ngx_http_async_queue_report_t &rep)
{
    static constexpr std::string_view classes[] = {"0", "1", "2", "3",
                                                   "4", "5", "6", "7"};
    static constexpr std::string_view requests =
        "nginx_async_queue_class_requests_total";
    w.family(requests, metric_type::counter,
             "Requests that went through the zone, by priority class and "
             "outcome (as nginx_async_queue_requests_total).");
    for (ngx_uint_t i = 0; i < rep.n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep.rows[i];
        for (uint32_t c = 0; c < async::queue_classes; c++) {
            for (const auto &o : outcomes) {
                w.sample(requests,
                         {{"zone", async::view(q.name)},
                          {"priority", classes[c]},
                          {"outcome", o.outcome}},
                         q.class_counters[c].*o.field);
            }
        }
    }

    w.family("nginx_async_queue_class_wait_seconds", metric_type::histogram,
             "Time admitted requests waited for a slot, by priority class.");
    for (ngx_uint_t i = 0; i < rep.n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep.rows[i];
        for (uint32_t c = 0; c < async::queue_classes; c++) {
            w.histogram_seconds(
                {{"zone", async::view(q.name)}, {"priority", classes[c]}},
                async::histogram_cumulate(q.class_wait[c]));
        }
    }

    static constexpr struct {
        std::string_view family;
        std::string_view help;
        uint64_t async::adaptive_limit::*field;
        bool micros; // written as seconds
    } limits[] = {
        {"nginx_async_queue_limit_sampled_seconds",
         "active=auto: average service time of the last window.",
         &async::adaptive_limit::sampled_us, true},
        {"nginx_async_queue_limit_min_seconds",
         "active=auto: least service time seen (no-load estimate).",
         &async::adaptive_limit::min_us, true},
        {"nginx_async_queue_limit_adjustments_total",
         "active=auto: times the limit changed.",
         &async::adaptive_limit::adjustments, false},
    };
    for (const auto &l : limits) {
        w.family(l.family, l.micros ? metric_type::gauge : metric_type::counter,
                 l.help);
        for (ngx_uint_t i = 0; i < rep.n; i++) {
            const ngx_http_async_queue_snapshot_t &q = rep.rows[i];
            if (!q.tuning.adaptive) {
                continue;
            }
            if (l.micros) {
                w.sample_thousandths(l.family, {{"zone", async::view(q.name)}},
                                     q.limit.*l.field / 1000);
            } else {
                w.sample(l.family, {{"zone", async::view(q.name)}},
                         q.limit.*l.field);
            }
        }
    }

    w.family("nginx_async_queue_codel_dropping", metric_type::gauge,
             "discipline=codel: 1 while the queue is judged overloaded.");
    for (ngx_uint_t i = 0; i < rep.n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep.rows[i];
        if (q.tuning.codel) {
            w.sample("nginx_async_queue_codel_dropping",
                     {{"zone", async::view(q.name)}}, q.codel.dropping);
        }
    }
}

static void ngx_http_async_queue_prometheus(async::prometheus_writer &w,
                                            const void *data)
{
    const auto *rep = static_cast<const ngx_http_async_queue_report_t *>(data);
    if (rep->n == 0) {
        return;
    }
    for (const auto &g : gauges) {
        w.family(g.family, metric_type::gauge, g.help);
        for (ngx_uint_t i = 0; i < rep->n; i++) {
            const ngx_http_async_queue_snapshot_t &q = rep->rows[i];
            w.sample(g.family, {{"zone", async::view(q.name)}}, q.*g.field);
        }
    }

    w.family("nginx_async_queue_timeout_seconds", metric_type::gauge,
             "How long a request may wait in the zone's queue (timeout=).");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep->rows[i];
        w.sample_thousandths("nginx_async_queue_timeout_seconds",
                             {{"zone", async::view(q.name)}}, q.timeout);
    }

    static constexpr std::string_view requests =
        "nginx_async_queue_requests_total";
    w.family(requests, metric_type::counter,
             "Requests that went through the zone, by outcome: passed "
             "(admitted at once), queued (admitted after waiting), rejected "
             "(queue full), timed_out, cancelled (client left while "
             "waiting), evicted (made room for a higher priority), dropped "
             "(CoDel).");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep->rows[i];
        for (const auto &o : outcomes) {
            w.sample(requests,
                     {{"zone", async::view(q.name)}, {"outcome", o.outcome}},
                     q.counters.*o.field);
        }
    }

    w.family("nginx_async_queue_wait_seconds", metric_type::histogram,
             "Time admitted requests waited for a slot (0 for passed).");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const ngx_http_async_queue_snapshot_t &q = rep->rows[i];
        w.histogram_seconds({{"zone", async::view(q.name)}},
                            async::histogram_cumulate(q.wait));
    }
    ngx_http_async_queue_prometheus_policy(w, *rep);
}

const ngx_http_async_status_section_t ngx_http_async_queue_status_section = {
    ngx_http_async_queue_snapshot, ngx_http_async_queue_json,
    ngx_http_async_queue_prometheus};
