// The module-wide statistics zone: counters of every worker together, for
// concerns that have no shared memory of their own (fan-out). Created
// automatically, only when the module is used; plain atomic counters.
#pragma once

#include "ngx_http_async_module.hpp"

enum class fanout_stat : ngx_uint_t {
    started,         // fan-outs begun
    completed,       // ended with every call answered
    partial,         // ended 200 with some optional calls failed
    failed,          // ended without an answer of every required call
    timed_out_calls, // calls failed by timeout= or async_timeout
    cancelled_calls, // calls given up (failed required call, client gone)
    hedged_calls,    // hedged attempts started
    hedge_wins,      // calls won by their hedged attempt
    count
};

constexpr ngx_uint_t fanout_stat_count =
    static_cast<ngx_uint_t>(fanout_stat::count);

// Counts one event in this cycle's stats zone; nothing without the zone.
void ngx_http_async_stats_bump(fanout_stat which);

// A copy of the fan-out counters (zeros without the zone).
void ngx_http_async_stats_fanout_snapshot(uint64_t out[fanout_stat_count]);

// Names of the counters as the status page shows them.
std::string_view ngx_http_async_stats_fanout_name(fanout_stat which);

// merge_loc_conf: a location that uses the module needs the zone.
void ngx_http_async_stats_note_use(ngx_conf_t *cf,
                                   ngx_http_async_loc_conf_t *conf);

// postconfiguration: adds the zone when the module is used.
ngx_int_t ngx_http_async_stats_init(ngx_conf_t *cf);
