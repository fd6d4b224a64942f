// The admission queue's glue: zone, per-request entry, wake-up.
#pragma once

#include "ngx_http_async_module.hpp"
#include "common/ngx_http_async_status_section.hpp"
#include "common/ngx_http_async_wake.hpp"
#include "common/ngx_http_async_zone.hpp"
#include "core/adaptive_limit.hpp"
#include "core/histogram.hpp"
#include "core/retry_after.hpp"
#include "core/ticket_queue.hpp"

// Lives at the start of the zone's shared memory; the ticket queue and its
// nodes follow it in the same allocation.
struct ngx_http_async_queue_shared_t {
    async::histogram wait;
    async::admission_rate rate;
    ngx_msec_t timeout; // of the newest configuration, for the status page
    uint32_t configured_length;
    async::histogram class_wait[async::queue_classes];
    uint32_t adaptive;        // active=auto: limit below drives max_active
    uint32_t priority_warned; // a bad priority= value was logged once
    async::adaptive_limit limit;
};

// The parameters of async_queue_zone beyond fixed limits (see
// ngx_http_async_queue_tuning_params).
struct ngx_http_async_queue_tuning_t {
    ngx_flag_t adaptive; // active=auto
    ngx_uint_t min;
    ngx_uint_t max;
    ngx_flag_t codel; // discipline=codel
    ngx_msec_t codel_target;
    ngx_msec_t codel_interval;
};

struct ngx_http_async_queue_entry_t;

struct ngx_http_async_queue_zone_t : ngx_http_async_zone_t {
    ngx_msec_t timeout;
    ngx_http_async_queue_tuning_t tuning;

    // set up by the zone's init in every cycle
    ngx_http_async_queue_shared_t *sh;

    // this worker's parked requests, indexed by queue node
    ngx_http_async_queue_entry_t **parked;
    ngx_uint_t parked_count;
    time_t last_no_room_log;
};

// The queue zones' part of the async_status report
// (ngx_http_async_queue_report.cpp), registered by the module shell.
extern const ngx_http_async_status_section_t
    ngx_http_async_queue_status_section;

// Takes the parameters of ngx_http_async_queue_tuning_t out of the
// arguments of async_queue_zone (active=auto becomes active=MAX for the
// rest of the parsing), checking them.
char *ngx_http_async_queue_tuning_params(ngx_conf_t *cf,
                                         ngx_http_async_queue_tuning_t *t);

// Applies a zone's tuning to its shared memory, under the zone's lock: at
// creation and on reload (which keeps a learned limit); sets
// zone->max_active to the limit in force.
void ngx_http_async_queue_tune(ngx_http_async_queue_zone_t *zone, bool fresh);

// Resumes this worker's requests that were handed a slot (wake handler).
void ngx_http_async_queue_resume_granted(ngx_cycle_t *cycle);

// The safety timer's part for queue zones: slots of vanished processes.
void ngx_http_async_queue_reap(ngx_cycle_t *cycle);
