// async_status: the sections the module shell registered (one per concern,
// common/ngx_http_async_status_section.hpp) and the module-wide fan-out
// counters, copied under their locks, then formatted as JSON or as
// Prometheus text.
#pragma once

#include "common/ngx_http_async_stats.hpp"
#include "common/ngx_http_async_status_section.hpp"

// One registered section and its snapshot.
struct ngx_http_async_status_part_t {
    const ngx_http_async_status_section_t *section;
    void *data;
};

struct ngx_http_async_status_snapshot_t {
    ngx_http_async_status_part_t *parts;
    ngx_uint_t nparts;
    ngx_uint_t items; // zones of every section, for the buffer's size
    uint64_t fanout[fanout_stat_count];
    bool server_tokens; // name the nginx version
};

bool ngx_http_async_status_json(async::json_writer &w,
                                const ngx_http_async_status_snapshot_t &s);
bool ngx_http_async_status_prometheus(
    async::prometheus_writer &w, const ngx_http_async_status_snapshot_t &s);
