// Parallel fan-out (async_fetch): the types shared by the state machine
// (ngx_http_async_fanout.cpp), the capture filter
// (ngx_http_async_fanout_capture.cpp) and the aggregation of the answers
// (ngx_http_async_fanout_aggregate.cpp).
#pragma once

#include "ngx_http_async_module.hpp"
#include "common/ngx_http_async_event.hpp"

extern "C" {
extern ngx_module_t ngx_http_async_fanout_filter_module;
}

enum class fanout_aggregate : ngx_uint_t { json, concat, multipart };

// One async_fetch line.
struct ngx_http_async_fetch_t {
    ngx_str_t name;
    ngx_http_complex_value_t uri;
    ngx_msec_t timeout; // NGX_CONF_UNSET_MSEC: async_fetch_timeout
    ngx_msec_t hedge;   // 0: no hedged request
    bool optional;
};

enum class fanout_reason : uint8_t {
    none,
    timeout,
    cancelled,
    too_large,
    status
};

struct ngx_http_async_call_t;
struct ngx_http_async_fanout_t;
struct ngx_http_async_attempt_t;
struct ngx_http_async_piece_t;

// One request of a call's tree: the call's own subrequest, or a subrequest
// nested in it (SSI include, echo_location, auth_request...). nginx orders
// nested output through the connection's active request (c->data), which a
// background call never is: the capture keeps each request's output that
// cannot go yet as pieces, in document order, as the postpone filter does.
struct ngx_http_async_node_t {
    ngx_http_request_t *r;
    ngx_http_async_attempt_t *attempt;
    ngx_http_async_node_t *next;    // the attempt's nested nodes
    ngx_http_async_piece_t *pieces; // output waiting for what comes before
    ngx_http_async_piece_t **last;  // nullptr: no piece yet
    ngx_http_post_subrequest_t ps;  // nested: ours, wrapping `creator`
    ngx_http_post_subrequest_t *creator;
    ngx_http_event_handler_pt write_handler; // see capture_run_active
    bool header_seen;
    bool done; // the request ended
};

// Queued output: bytes, or the place of a nested request's whole output.
struct ngx_http_async_piece_t {
    ngx_http_async_piece_t *next;
    ngx_http_async_node_t *child;
    u_char *data;
    size_t len;
};

// One subrequest of a call: the first one, or its hedged twin.
struct ngx_http_async_attempt_t {
    ngx_http_async_call_t *call;
    ngx_http_request_t *sr;
    ngx_http_post_subrequest_t ps;
    ngx_http_async_node_t root;    // sr itself
    ngx_http_async_node_t *nested; // its nested requests, newest first
    size_t queued;                 // bytes in pieces, not in body yet
    ngx_uint_t root_status;        // sr's status, recorded when sr ends
    u_char *body; // capture buffer, cap + async::padding_needed() bytes
    size_t len;
    size_t cap;
    off_t content_length; // announced by the response, -1: unknown
    ngx_str_t content_type;
    ngx_uint_t status;
    bool header_seen;
    bool finished;  // the subrequest ended (post-subrequest handler ran)
    bool cancelled; // we gave up on it; its output is discarded
    bool too_large;
    bool nested_failed; // a nested request failed: the body is incomplete
    bool inline_json;   // json aggregation: the body is valid JSON
};

enum class call_state : uint8_t { running, ok, failed };

struct ngx_http_async_call_t {
    async::event_ident ident; // the hedge timer's data
    ngx_http_async_fanout_t *fanout;
    ngx_http_async_fetch_t *conf;
    ngx_str_t uri; // as the first attempt asked for it
    ngx_str_t args;
    ngx_msec_t timeout;      // timeout= or async_fetch_timeout, from launch
    ngx_event_t hedge_timer; // hedge=
    ngx_http_async_attempt_t attempts[2];
    ngx_uint_t nattempts;
    ngx_http_async_attempt_t *winner;
    ngx_uint_t status; // fanout_reason::status: the failing status code
    ngx_uint_t seq;    // order of resolution (multipart streams in it)
    call_state state;
    fanout_reason reason;
    bool emitted; // streamed to the client (concat, multipart)
};

// The fan-out of one request, in its pool.
struct ngx_http_async_fanout_t {
    async::event_ident ident; // the data of its timers
    ngx_http_request_t *r;
    ngx_http_async_loc_conf_t *alcf;
    ngx_http_async_call_t *calls;
    ngx_uint_t ncalls;
    ngx_uint_t unresolved; // calls still running: the fan-in counter
    ngx_uint_t resolved;   // calls resolved so far
    ngx_uint_t next_part;  // concat: the next call to stream
    ngx_msec_t launched;   // ngx_current_msec when the calls started
    ngx_event_t timeouts;  // the earliest timeout of the running calls
    ngx_event_t deadline;  // async_timeout
    ngx_str_t boundary;    // multipart
    time_t start_sec;
    ngx_msec_t start_msec;
    time_t end_sec;
    ngx_msec_t end_msec;
    bool posted;    // the request is in the posted queue
    bool decided;   // the outcome is known: no call changes any more
    bool streaming; // concat/multipart header sent, parts follow
    bool trailers;  // the outcome goes into trailers
    bool finished;  // the last buffer went out, or the request ended
};

// state machine (ngx_http_async_fanout.cpp)
ngx_http_async_fanout_t *ngx_http_async_fanout_of(ngx_http_request_t *r);
ngx_http_async_attempt_t *
ngx_http_async_fanout_attempt_of(ngx_http_request_t *sr);
void ngx_http_async_fanout_post(ngx_http_async_fanout_t *fo);
// A call's subrequest, i.e. the root of an attempt's tree: recognizes the
// attempt's post-subrequest handler.
bool ngx_http_async_fanout_is_call(ngx_http_post_subrequest_t *ps);

// capture (ngx_http_async_fanout_capture.cpp)
// The attempt's request ended: its whole tree may be complete now.
void ngx_http_async_capture_root_done(ngx_http_async_attempt_t *a);
// The request's upstream response ended short of its body.
bool ngx_http_async_capture_upstream_short(ngx_http_request_t *sr);

// aggregation (ngx_http_async_fanout_aggregate.cpp)
// multipart: the call's captured body contains the boundary already chosen
bool ngx_http_async_fanout_part_has_boundary(ngx_http_async_fanout_t *fo,
                                             ngx_http_async_call_t *call);
bool ngx_http_async_fanout_completed(ngx_http_async_fanout_t *fo);
ngx_str_t ngx_http_async_fanout_failed_text(ngx_http_async_fanout_t *fo,
                                            ngx_pool_t *pool);
// Sends what the calls' state allows; finalizes the request at the end.
void ngx_http_async_fanout_output(ngx_http_async_fanout_t *fo);
// A required call failed before any output: 502/504 with a JSON body.
void ngx_http_async_fanout_fail(ngx_http_async_fanout_t *fo,
                                ngx_http_async_call_t *call);
