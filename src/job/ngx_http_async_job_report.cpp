// The job zones' section of the async_status report: each zone's numbers
// copied under its lock, then written as JSON ("job_zones") or as
// Prometheus families (nginx_async_job_*) from the same tables; state
// names are the job table's own (async::job_state_name).
#include "job/ngx_http_async_job.hpp"

using async::job_state;
using async::metric_type;

// A copy of one zone's numbers: jobs held now by state, totals since the
// zone was created.
struct ngx_http_async_job_snapshot_t {
    ngx_str_t name;
    uint64_t count[async::job_states];
    uint64_t stored_bytes; // result bytes held in the zone now
    uint64_t max_result;   // the largest result a job may store
    async::job_counters counters;
    // store=redis
    bool redis;
    ngx_str_t address;
    redis_link_state state; // of this worker's command link
    uint64_t connected;     // workers with a ready command link
    uint64_t subscribed;    // workers with a ready subscriber link
    uint64_t commands;
    uint64_t failures;
    uint64_t outages;
    async::histogram latency;
};

using ngx_http_async_job_report_t =
    ngx_http_async_zone_rows_t<ngx_http_async_job_snapshot_t>;

using snapshot = ngx_http_async_job_snapshot_t;

static constexpr job_state held[] = {job_state::queued, job_state::running,
                                     job_state::completed, job_state::failed,
                                     job_state::cancelled};

// Jobs that ended, by final state.
static constexpr struct {
    job_state state;
    uint64_t async::job_counters::*field;
} finished[] = {{job_state::completed, &async::job_counters::completed},
                {job_state::failed, &async::job_counters::failed},
                {job_state::cancelled, &async::job_counters::cancelled}};

static uint64_t held_count(const snapshot &j, job_state s)
{
    return j.count[static_cast<size_t>(s)];
}

static ngx_int_t ngx_http_async_job_snapshot(ngx_http_request_t *r, void **data,
                                             ngx_uint_t *items)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_async_module));
    auto *rep = ngx_http_async_zones_copy<ngx_http_async_job_zone_t, snapshot>(
        r->pool, amcf->job_zones,
        [](ngx_http_async_job_zone_t *zone, snapshot &out) {
            const async::job_table *t = zone->table;
            out.name = zone->name;
            for (size_t s = 0; s < async::job_states; s++) {
                out.count[s] = t->count[s];
            }
            out.stored_bytes = t->stored_bytes;
            out.max_result = zone->sh->max_result;
            out.counters = t->counters;
            out.redis = zone->redis_conf != nullptr;
            if (out.redis) {
                // zones of one endpoint share their first zone's numbers
                const ngx_http_async_redis_stats_t &rs =
                    zone->redis != nullptr && zone->redis->stats != nullptr
                        ? *zone->redis->stats
                        : zone->sh->redis;
                out.address = zone->redis_conf->address;
                out.state = zone->redis != nullptr ? zone->redis->cmd.state
                                                   : redis_link_state::down;
                out.connected = rs.connected.load(std::memory_order_relaxed);
                out.subscribed = rs.subscribed.load(std::memory_order_relaxed);
                out.commands = rs.commands.load(std::memory_order_relaxed);
                out.failures = rs.failures.load(std::memory_order_relaxed);
                out.outages = rs.outages.load(std::memory_order_relaxed);
                out.latency = async::histogram_snapshot(rs.latency);
            }
        });
    if (rep == nullptr) {
        return NGX_ERROR;
    }
    *data = rep;
    *items = rep->n;
    return NGX_OK;
}

static void ngx_http_async_job_json_field(async::json_writer &w,
                                          std::string_view key, uint64_t v)
{
    w.key(key);
    w.number_u64(v);
}

static void ngx_http_async_job_json(async::json_writer &w, const void *data)
{
    const auto *rep = static_cast<const ngx_http_async_job_report_t *>(data);
    w.key("job_zones");
    w.begin_object();
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const snapshot &j = rep->rows[i];
        w.key(async::view(j.name));
        w.begin_object();
        for (job_state s : held) {
            ngx_http_async_job_json_field(w, async::job_state_name(s),
                                          held_count(j, s));
        }
        ngx_http_async_job_json_field(w, "expired", j.counters.expired);
        ngx_http_async_job_json_field(w, "stored_bytes", j.stored_bytes);
        ngx_http_async_job_json_field(w, "max_result", j.max_result);
        w.key("store");
        w.string(j.redis ? "redis" : "shm");
        if (j.redis) {
            w.key("redis");
            w.begin_object();
            w.key("address");
            w.string(async::view(j.address));
            w.key("state");
            w.string(ngx_http_async_redis_state_name(j.state));
            ngx_http_async_job_json_field(w, "workers_connected", j.connected);
            ngx_http_async_job_json_field(w, "workers_subscribed",
                                          j.subscribed);
            ngx_http_async_job_json_field(w, "commands", j.commands);
            ngx_http_async_job_json_field(w, "failures", j.failures);
            ngx_http_async_job_json_field(w, "outages", j.outages);
            ngx_http_async_job_json_field(w, "latency_count",
                                          async::histogram_count(j.latency));
            ngx_http_async_job_json_field(w, "latency_sum_ms",
                                          j.latency.sum_ms);
            w.end_object();
        }
        w.key("totals");
        w.begin_object();
        ngx_http_async_job_json_field(w, "submitted", j.counters.submitted);
        ngx_http_async_job_json_field(w, "rejected", j.counters.rejected);
        for (const auto &f : finished) {
            ngx_http_async_job_json_field(w, async::job_state_name(f.state),
                                          j.counters.*f.field);
        }
        w.end_object();
        w.end_object();
    }
    w.end_object();
}

static uint64_t stored_bytes(const snapshot &j)
{
    return j.stored_bytes;
}

static uint64_t max_result(const snapshot &j)
{
    return j.max_result;
}

static uint64_t submitted(const snapshot &j)
{
    return j.counters.submitted;
}

static uint64_t rejected(const snapshot &j)
{
    return j.counters.rejected;
}

static uint64_t expired(const snapshot &j)
{
    return j.counters.expired;
}

static void ngx_http_async_job_prometheus(async::prometheus_writer &w,
                                          const void *data)
{
    const auto *rep = static_cast<const ngx_http_async_job_report_t *>(data);
    if (rep->n == 0) {
        return;
    }

    static constexpr std::string_view jobs = "nginx_async_job_jobs";
    w.family(jobs, metric_type::gauge, "Jobs held in the zone now, by state.");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const snapshot &j = rep->rows[i];
        for (job_state s : held) {
            w.sample(jobs,
                     {{"zone", async::view(j.name)},
                      {"state", async::job_state_name(s)}},
                     held_count(j, s));
        }
    }

    static constexpr std::string_view ended = "nginx_async_job_finished_total";
    w.family(ended, metric_type::counter,
             "Jobs that ended, by outcome, since the zone was created.");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        const snapshot &j = rep->rows[i];
        for (const auto &f : finished) {
            w.sample(ended,
                     {{"zone", async::view(j.name)},
                      {"outcome", async::job_state_name(f.state)}},
                     j.counters.*f.field);
        }
    }

    static constexpr struct {
        std::string_view name;
        metric_type type;
        std::string_view help;
        uint64_t (*value)(const snapshot &);
    } metrics[] = {
        {"nginx_async_job_submitted_total", metric_type::counter,
         "Jobs accepted (202) since the zone was created.", submitted},
        {"nginx_async_job_rejected_total", metric_type::counter,
         "Jobs turned away (zone or queue full).", rejected},
        {"nginx_async_job_expired_total", metric_type::counter,
         "Job results dropped after their retention time.", expired},
        {"nginx_async_job_stored_bytes", metric_type::gauge,
         "Result bytes held in the zone now.", stored_bytes},
        {"nginx_async_job_max_result_bytes", metric_type::gauge,
         "The largest result a job may store.", max_result},
    };
    for (const auto &m : metrics) {
        w.family(m.name, m.type, m.help);
        for (ngx_uint_t i = 0; i < rep->n; i++) {
            w.sample(m.name, {{"zone", async::view(rep->rows[i].name)}},
                     m.value(rep->rows[i]));
        }
    }

    // store=redis zones only
    static constexpr struct {
        std::string_view name;
        metric_type type;
        std::string_view help;
        uint64_t (*value)(const snapshot &);
    } redis_metrics[] = {
        {"nginx_async_job_redis_up", metric_type::gauge,
         "1 when the answering worker's Redis command link is up.",
         [](const snapshot &j) -> uint64_t {
             return j.state == redis_link_state::ready ? 1 : 0;
         }},
        {"nginx_async_job_redis_connected_workers", metric_type::gauge,
         "Workers whose Redis command link is up.",
         [](const snapshot &j) { return j.connected; }},
        {"nginx_async_job_redis_subscribed_workers", metric_type::gauge,
         "Workers whose Redis subscriber link is up.",
         [](const snapshot &j) { return j.subscribed; }},
        {"nginx_async_job_redis_commands_total", metric_type::counter,
         "Redis commands sent.", [](const snapshot &j) { return j.commands; }},
        {"nginx_async_job_redis_failures_total", metric_type::counter,
         "Redis commands without a reply (down, timed out).",
         [](const snapshot &j) { return j.failures; }},
        {"nginx_async_job_redis_outages_total", metric_type::counter,
         "Redis connections lost or not made.",
         [](const snapshot &j) { return j.outages; }},
    };
    bool any = false;
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        any = any || rep->rows[i].redis;
    }
    if (!any) {
        return;
    }
    for (const auto &m : redis_metrics) {
        w.family(m.name, m.type, m.help);
        for (ngx_uint_t i = 0; i < rep->n; i++) {
            if (rep->rows[i].redis) {
                w.sample(m.name, {{"zone", async::view(rep->rows[i].name)}},
                         m.value(rep->rows[i]));
            }
        }
    }
    w.family("nginx_async_job_redis_command_seconds", metric_type::histogram,
             "Latency of Redis commands, from send to reply.");
    for (ngx_uint_t i = 0; i < rep->n; i++) {
        if (rep->rows[i].redis) {
            w.histogram_seconds(
                {{"zone", async::view(rep->rows[i].name)}},
                async::histogram_cumulate(rep->rows[i].latency));
        }
    }
}

const ngx_http_async_status_section_t ngx_http_async_job_status_section = {
    ngx_http_async_job_snapshot, ngx_http_async_job_json,
    ngx_http_async_job_prometheus};
