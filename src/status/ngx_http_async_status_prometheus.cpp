// async_status in the Prometheus text exposition format 0.0.4: one family
// at a time, every zone's sample inside it, names nginx_async_*. The zones'
// families come from the registered sections.
#include "status/ngx_http_async_status.hpp"

using async::metric_type;

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
    if (s.server_tokens) {
        w.sample("nginx_async_info",
                 {{"version", async::module_version},
                  {"nginx_version", NGINX_VERSION}},
                 1);
    } else {
        w.sample("nginx_async_info", {{"version", async::module_version}}, 1);
    }
    for (ngx_uint_t i = 0; i < s.nparts; i++) {
        s.parts[i].section->prometheus(w, s.parts[i].data);
    }
    ngx_http_async_status_prom_fanout(w, s);
    return w.ok();
}
