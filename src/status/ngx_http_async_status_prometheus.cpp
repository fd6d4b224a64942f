// async_status in the Prometheus text exposition format 0.0.4: one family
// at a time, every zone's sample inside it, names nginx_async_*.
#include "status/ngx_http_async_status.hpp"

using async::metric_type;

// Per priority class (label priority), the adaptive limit and CoDel.
static void ngx_http_async_status_prom_queue_tuning(
    async::prometheus_writer &w, const ngx_http_async_status_snapshot_t &s)
{
    static constexpr std::string_view classes[] = {"0", "1", "2", "3",
                                                   "4", "5", "6", "7"};
    static constexpr std::string_view requests =
        "nginx_async_queue_class_requests_total";
    w.family(requests, metric_type::counter,
             "Requests that went through the zone, by priority class and "
             "outcome (as nginx_async_queue_requests_total).");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        std::string_view zone = async::view(q.name);
        for (uint32_t c = 0; c < async::queue_classes; c++) {
            const async::queue_counters &k = q.class_counters[c];
            const struct {
                std::string_view outcome;
                uint64_t value;
            } rows[] = {{"passed", k.passed},       {"queued", k.queued},
                        {"rejected", k.rejected},   {"timed_out", k.timed_out},
                        {"cancelled", k.cancelled}, {"evicted", k.evicted},
                        {"dropped", k.dropped}};
            for (const auto &row : rows) {
                w.sample(requests,
                         {{"zone", zone},
                          {"priority", classes[c]},
                          {"outcome", row.outcome}},
                         row.value);
            }
        }
    }

    w.family("nginx_async_queue_class_wait_seconds", metric_type::histogram,
             "Time admitted requests waited for a slot, by priority class.");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        for (uint32_t c = 0; c < async::queue_classes; c++) {
            w.histogram_seconds(
                {{"zone", async::view(q.name)}, {"priority", classes[c]}},
                async::histogram_cumulate(q.class_wait[c]));
        }
    }

    struct gauge {
        std::string_view name;
        std::string_view help;
        uint64_t (*get)(const ngx_http_async_queue_snapshot_t &q);
        bool thousandths;
    };
    static constexpr gauge gauges[] = {
        {"nginx_async_queue_limit_sampled_seconds",
         "active=auto: average service time of the last window.",
         [](const ngx_http_async_queue_snapshot_t &q) {
             return q.limit.sampled_us / 1000;
         },
         true},
        {"nginx_async_queue_limit_min_seconds",
         "active=auto: least service time seen (no-load estimate).",
         [](const ngx_http_async_queue_snapshot_t &q) {
             return q.limit.min_us / 1000;
         },
         true},
        {"nginx_async_queue_limit_adjustments_total",
         "active=auto: times the limit changed.",
         [](const ngx_http_async_queue_snapshot_t &q) {
             return q.limit.adjustments;
         },
         false},
    };
    for (const gauge &g : gauges) {
        w.family(g.name,
                 g.thousandths ? metric_type::gauge : metric_type::counter,
                 g.help);
        for (ngx_uint_t i = 0; i < s.nqueues; i++) {
            const ngx_http_async_queue_snapshot_t &q = s.queues[i];
            if (!q.tuning.adaptive) {
                continue;
            }
            if (g.thousandths) {
                w.sample_thousandths(g.name, {{"zone", async::view(q.name)}},
                                     g.get(q));
            } else {
                w.sample(g.name, {{"zone", async::view(q.name)}}, g.get(q));
            }
        }
    }

    w.family("nginx_async_queue_codel_dropping", metric_type::gauge,
             "discipline=codel: 1 while the queue is judged overloaded.");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        if (q.tuning.codel) {
            w.sample("nginx_async_queue_codel_dropping",
                     {{"zone", async::view(q.name)}}, q.codel.dropping);
        }
    }
}

static void
ngx_http_async_status_prom_queues(async::prometheus_writer &w,
                                  const ngx_http_async_status_snapshot_t &s)
{
    if (s.nqueues == 0) {
        return;
    }
    struct gauge {
        std::string_view name;
        std::string_view help;
        uint32_t ngx_http_async_queue_snapshot_t::*field;
    };
    static constexpr gauge gauges[] = {
        {"nginx_async_queue_active", "Requests holding a slot of the zone.",
         &ngx_http_async_queue_snapshot_t::active},
        {"nginx_async_queue_max_active",
         "Slots of the zone (active= or per_cpu= times CPUs).",
         &ngx_http_async_queue_snapshot_t::max_active},
        {"nginx_async_queue_waiting", "Requests parked in the zone's queue.",
         &ngx_http_async_queue_snapshot_t::waiting},
        {"nginx_async_queue_length", "Places in the zone's queue (length=).",
         &ngx_http_async_queue_snapshot_t::length},
    };
    for (const gauge &g : gauges) {
        w.family(g.name, metric_type::gauge, g.help);
        for (ngx_uint_t i = 0; i < s.nqueues; i++) {
            const ngx_http_async_queue_snapshot_t &q = s.queues[i];
            w.sample(g.name, {{"zone", async::view(q.name)}}, q.*g.field);
        }
    }

    w.family("nginx_async_queue_timeout_seconds", metric_type::gauge,
             "How long a request may wait in the zone's queue (timeout=).");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        w.sample_thousandths("nginx_async_queue_timeout_seconds",
                             {{"zone", async::view(q.name)}}, q.timeout);
    }

    static constexpr std::string_view requests =
        "nginx_async_queue_requests_total";
    w.family(requests, metric_type::counter,
             "Requests that went through the zone, by outcome: passed "
             "(admitted at once), queued (admitted after waiting), rejected "
             "(queue full), timed_out, cancelled (client left while "
             "waiting).");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        std::string_view zone = async::view(q.name);
        w.sample(requests, {{"zone", zone}, {"outcome", "passed"}},
                 q.counters.passed);
        w.sample(requests, {{"zone", zone}, {"outcome", "queued"}},
                 q.counters.queued);
        w.sample(requests, {{"zone", zone}, {"outcome", "rejected"}},
                 q.counters.rejected);
        w.sample(requests, {{"zone", zone}, {"outcome", "timed_out"}},
                 q.counters.timed_out);
        w.sample(requests, {{"zone", zone}, {"outcome", "cancelled"}},
                 q.counters.cancelled);
        w.sample(requests, {{"zone", zone}, {"outcome", "evicted"}},
                 q.counters.evicted);
        w.sample(requests, {{"zone", zone}, {"outcome", "dropped"}},
                 q.counters.dropped);
    }

    w.family("nginx_async_queue_wait_seconds", metric_type::histogram,
             "Time admitted requests waited for a slot (0 for passed).");
    for (ngx_uint_t i = 0; i < s.nqueues; i++) {
        const ngx_http_async_queue_snapshot_t &q = s.queues[i];
        w.histogram_seconds({{"zone", async::view(q.name)}},
                            async::histogram_cumulate(q.wait));
    }
    ngx_http_async_status_prom_queue_tuning(w, s);
}

static void
ngx_http_async_status_prom_jobs(async::prometheus_writer &w,
                                const ngx_http_async_status_snapshot_t &s)
{
    if (s.njobs == 0) {
        return;
    }
    using job = ngx_http_async_status_job_t;

    static constexpr std::string_view jobs = "nginx_async_job_jobs";
    w.family(jobs, metric_type::gauge, "Jobs held in the zone now, by state.");
    static constexpr struct {
        std::string_view state;
        uint64_t job::*field;
    } states[] = {{"queued", &job::queued},
                  {"running", &job::running},
                  {"completed", &job::completed},
                  {"failed", &job::failed},
                  {"cancelled", &job::cancelled}};
    for (ngx_uint_t i = 0; i < s.njobs; i++) {
        for (const auto &st : states) {
            w.sample(
                jobs,
                {{"zone", async::view(s.jobs[i].name)}, {"state", st.state}},
                s.jobs[i].*st.field);
        }
    }

    static constexpr std::string_view finished =
        "nginx_async_job_finished_total";
    w.family(finished, metric_type::counter,
             "Jobs that ended, by outcome, since the zone was created.");
    static constexpr struct {
        std::string_view outcome;
        uint64_t job::*field;
    } outcomes[] = {{"completed", &job::completed_total},
                    {"failed", &job::failed_total},
                    {"cancelled", &job::cancelled_total}};
    for (ngx_uint_t i = 0; i < s.njobs; i++) {
        for (const auto &o : outcomes) {
            w.sample(
                finished,
                {{"zone", async::view(s.jobs[i].name)}, {"outcome", o.outcome}},
                s.jobs[i].*o.field);
        }
    }

    static constexpr struct {
        std::string_view name;
        metric_type type;
        std::string_view help;
        uint64_t job::*field;
    } metrics[] = {
        {"nginx_async_job_submitted_total", metric_type::counter,
         "Jobs accepted (202) since the zone was created.", &job::submitted},
        {"nginx_async_job_rejected_total", metric_type::counter,
         "Jobs turned away (zone or queue full).", &job::rejected},
        {"nginx_async_job_expired_total", metric_type::counter,
         "Job results dropped after their retention time.", &job::expired},
        {"nginx_async_job_stored_bytes", metric_type::gauge,
         "Result bytes held in the zone now.", &job::stored_bytes},
        {"nginx_async_job_max_result_bytes", metric_type::gauge,
         "The largest result a job may store.", &job::max_result},
    };
    for (const auto &m : metrics) {
        w.family(m.name, m.type, m.help);
        for (ngx_uint_t i = 0; i < s.njobs; i++) {
            w.sample(m.name, {{"zone", async::view(s.jobs[i].name)}},
                     s.jobs[i].*m.field);
        }
    }
}

static void
ngx_http_async_status_prom_fanout(async::prometheus_writer &w,
                                  const ngx_http_async_status_snapshot_t &s)
{
    auto at = [&](fanout_stat which) {
        return s.fanout[static_cast<ngx_uint_t>(which)];
    };
    w.family("nginx_async_fanout_started_total", metric_type::counter,
             "Fan-outs (async_fetch locations) begun.");
    w.sample("nginx_async_fanout_started_total", {}, at(fanout_stat::started));

    static constexpr std::string_view finished =
        "nginx_async_fanout_finished_total";
    w.family(finished, metric_type::counter,
             "Fan-outs ended, by outcome: completed (every call answered), "
             "partial (optional calls failed), failed (a required call "
             "failed, or the client left).");
    w.sample(finished, {{"outcome", "completed"}}, at(fanout_stat::completed));
    w.sample(finished, {{"outcome", "partial"}}, at(fanout_stat::partial));
    w.sample(finished, {{"outcome", "failed"}}, at(fanout_stat::failed));

    static constexpr std::string_view failed_calls =
        "nginx_async_fanout_calls_failed_total";
    w.family(failed_calls, metric_type::counter,
             "Calls given up, by reason: timed_out (timeout= or "
             "async_timeout), cancelled (a required call failed, a hedge "
             "lost, the client left).");
    w.sample(failed_calls, {{"reason", "timed_out"}},
             at(fanout_stat::timed_out_calls));
    w.sample(failed_calls, {{"reason", "cancelled"}},
             at(fanout_stat::cancelled_calls));

    w.family("nginx_async_fanout_hedged_calls_total", metric_type::counter,
             "Hedged attempts started (hedge=).");
    w.sample("nginx_async_fanout_hedged_calls_total", {},
             at(fanout_stat::hedged_calls));
    w.family("nginx_async_fanout_hedge_wins_total", metric_type::counter,
             "Calls answered first by their hedged attempt.");
    w.sample("nginx_async_fanout_hedge_wins_total", {},
             at(fanout_stat::hedge_wins));
}

bool ngx_http_async_status_prometheus(async::prometheus_writer &w,
                                      const ngx_http_async_status_snapshot_t &s)
{
    w.family("nginx_async_info", metric_type::gauge,
             "ngx_http_async_module and nginx versions.");
    w.sample(
        "nginx_async_info",
        {{"version", async::module_version}, {"nginx_version", NGINX_VERSION}},
        1);
    ngx_http_async_status_prom_queues(w, s);
    ngx_http_async_status_prom_jobs(w, s);
    ngx_http_async_status_prom_fanout(w, s);
    return w.ok();
}
