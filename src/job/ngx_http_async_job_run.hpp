// A job's background run: its state and the functions its files share.
#pragma once

#include "job/ngx_http_async_job.hpp"

// The background run of a job: a copy of the client's request in the job's
// own pool, a fake connection and main request (as timer-driven modules
// make them), and a background subrequest to the job's URI whose response
// a capture filter keeps. Nothing refers to the client's connection, so
// the job outlives it.
enum class run_phase : uint8_t { parked, ready, running, ending, callback };

struct ngx_http_async_job_run_t {
    ngx_http_async_job_zone_t *zone;
    ngx_http_async_job_loc_t *jlcf;
    ngx_pool_t *pool; // the run, its request copy, the fake connection
    ngx_queue_t link; // in zone->runs
    uint32_t index;
    uint32_t generation;
    uint32_t node; // queue node while parked
    uint8_t id[async::id_bytes];
    run_phase phase;
    bool holds_slot;
    bool cancelled;
    bool sr_done;
    bool cb_done;
    bool flagged; // by the cancellation scan

    // the request, copied
    ngx_uint_t method;
    ngx_str_t method_name;
    ngx_str_t request_line;
    ngx_uint_t http_version;
    ngx_str_t uri;
    ngx_str_t args;
    ngx_list_t headers;
    ngx_table_elt_t *host;
    ngx_table_elt_t *user_agent;
    ngx_table_elt_t *referer;
    ngx_table_elt_t *content_type_in;
    ngx_table_elt_t *content_length_in;
    ngx_table_elt_t *authorization;
    ngx_str_t server;
    ngx_str_t body;
    void **main_conf;
    void **srv_conf;
    ngx_http_addr_conf_t *addr_conf;
    ngx_http_conf_ctx_t *conf_ctx;
    ngx_listening_t *listening;
    struct sockaddr *sockaddr;
    socklen_t socklen;
    struct sockaddr *local_sockaddr;
    socklen_t local_socklen;
    ngx_str_t addr_text;

    // the background request
    ngx_connection_t *fc;
    ngx_http_request_t *fr;
    ngx_http_request_t *sr;
    ngx_http_request_t *cb_sr;
    ngx_http_post_subrequest_t ps;
    ngx_http_post_subrequest_t cb_ps;
    ngx_event_t start_ev;
    ngx_event_t kick_ev;
    ngx_event_t hold_ev; // keeps an exiting worker alive while parked
    ngx_msec_t exiting_since;
    ngx_int_t rc;
    ngx_uint_t cb_status;

    // the captured response
    ngx_uint_t status;
    ngx_str_t content_type;
    off_t content_length;
    u_char *buf;
    size_t len;
    size_t cap;
    bool header_seen;
    bool too_large;
};

// --- the run (ngx_http_async_job_run.cpp) --------------------------------

void ngx_http_async_job_post(ngx_event_t *ev);
// The run's event handlers, set when the run is created.
void ngx_http_async_job_start(ngx_event_t *ev);
void ngx_http_async_job_kick(ngx_event_t *ev);
void ngx_http_async_job_hold(ngx_event_t *ev);

// --- the fake connection and request (ngx_http_async_job_fake.cpp) -------

ngx_int_t ngx_http_async_job_fake(ngx_http_async_job_run_t *run);
void ngx_http_async_job_close_fake(ngx_http_async_job_run_t *run);

// --- the callback (ngx_http_async_job_callback.cpp) ----------------------

void ngx_http_async_job_after_final(ngx_http_async_job_run_t *run);
