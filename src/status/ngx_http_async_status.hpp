// async_status: what the handler copies out of every zone (under each
// zone's lock), shared by the JSON and the Prometheus formatting.
#pragma once

#include "queue/ngx_http_async_queue.hpp"
#include "common/ngx_http_async_stats.hpp"

#include "core/json_writer.hpp"
#include "core/prometheus_writer.hpp"

// One job zone's numbers, in the status page's terms.
struct ngx_http_async_status_job_t {
    ngx_str_t name;
    uint64_t queued; // jobs held now, by state
    uint64_t running;
    uint64_t completed;
    uint64_t failed;
    uint64_t cancelled;
    uint64_t expired;      // results dropped after their retention, total
    uint64_t stored_bytes; // result bytes held in the zone now
    uint64_t max_result;   // the largest result a job may store
    uint64_t submitted;    // totals since the zone was created
    uint64_t rejected;
    uint64_t completed_total;
    uint64_t failed_total;
    uint64_t cancelled_total;
};

struct ngx_http_async_status_snapshot_t {
    ngx_http_async_queue_snapshot_t *queues;
    ngx_uint_t nqueues;
    ngx_http_async_status_job_t *jobs;
    ngx_uint_t njobs;
    uint64_t fanout[fanout_stat_count];
};

bool ngx_http_async_status_json(async::json_writer &w,
                                const ngx_http_async_status_snapshot_t &s);
bool ngx_http_async_status_prometheus(
    async::prometheus_writer &w, const ngx_http_async_status_snapshot_t &s);
