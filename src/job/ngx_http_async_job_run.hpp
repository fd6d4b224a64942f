// A job's background run: its state and the functions its files share.
#pragma once

#include "common/ngx_http_async_event.hpp"
#include "job/ngx_http_async_job.hpp"

// The background run of a job: a copy of the client's request (its head
// as HTTP/1.1 text, its body in memory or as a dup()ed descriptor of the
// temp file nginx spooled it to), replayed over a socketpair inside the
// worker. One end becomes a connection nginx accepted (its listening is a
// copy of the client's, see _job_conn.cpp), so the request runs through
// nginx's own code paths: phases, filters, timers, subrequests. The other
// end is the job's own client (_job_client.cpp): it writes the request and
// parses the response with nginx's parsers. Nothing refers to the client's
// connection, so the job outlives it.
enum class run_phase : uint8_t { parked, ready, running, ending, callback };

// One segment of a copied request body.
struct ngx_http_async_job_body_seg_t {
    u_char *data;   // in memory, or
    off_t file_pos; // in the run's body file
    size_t len;
};

// How a response body is delimited.
enum class job_body_mode : uint8_t { none, length, chunked, close };
enum class job_read_phase : uint8_t { status_line, headers, body, done };

// One HTTP/1.1 exchange over a socketpair: the job's request, then the
// callback. Its events are those of its connection c (data is c).
struct ngx_http_async_job_exchange_t {
    ngx_http_async_job_run_t *run;
    ngx_connection_t *c; // our end; nullptr once closed
    bool keep_body;      // the job's result; a callback's body is dropped
    bool done;
    bool too_large;
    bool truncated; // the body ended before its announced end
    bool failed;    // no complete response head
    bool head_only; // HEAD: no body whatever the headers say

    // the request
    ngx_str_t head;
    size_t head_sent;
    ngx_array_t *segs; // ngx_http_async_job_body_seg_t, may be nullptr
    ngx_uint_t seg;
    size_t seg_sent;
    u_char *stage; // file body, read a piece at a time
    size_t stage_len;
    size_t stage_sent;
    bool written;

    // the response
    ngx_http_request_t parser; // state of nginx's parsers only
    ngx_http_status_t st;
    ngx_buf_t in;
    ngx_http_chunked_t chunked;
    job_read_phase phase;
    job_body_mode mode;
    off_t remaining;
    ngx_uint_t status;
    ngx_str_t content_type;
    off_t content_length;
    bool chunked_te;
};

struct ngx_http_async_job_run_t {
    async::event_ident ident; // the run is its events' data (event.hpp)

    ngx_http_async_job_zone_t *zone;
    ngx_http_async_job_loc_t *jlcf;
    ngx_pool_t *pool; // the run, its request copy, its exchanges
    ngx_queue_t link; // in zone->runs
    uint32_t index;
    uint32_t generation;
    uint32_t node; // queue node while parked
    uint8_t id[async::id_bytes];
    run_phase phase;
    bool holds_slot;
    bool cancelled;
    bool flagged; // by the cancellation scan

    // the request, copied
    ngx_uint_t method;
    ngx_str_t head;    // request line and headers, HTTP/1.1
    ngx_array_t *body; // ngx_http_async_job_body_seg_t
    ngx_fd_t body_fd;  // dup() of the temp file, or NGX_INVALID_FILE
    size_t body_len;
    ngx_str_t callback_uri; // evaluated at submit
    ngx_str_t callback_args;
    ngx_str_t host;
    ngx_listening_t *listening;
    ngx_http_addr_conf_t *addr_conf;
    struct sockaddr *sockaddr;
    socklen_t socklen;
    struct sockaddr *local_sockaddr;
    socklen_t local_socklen;
    ngx_str_t addr_text;

    ngx_http_async_job_exchange_t *ex; // the job's, then the callback's
    ngx_event_t start_ev;
    ngx_event_t kick_ev;
    ngx_event_t hold_ev; // keeps an exiting worker alive while parked
    ngx_msec_t exiting_since;

    // the response, once the job's exchange ended
    ngx_uint_t status;
    ngx_str_t content_type;
    u_char *buf;
    size_t len;
    size_t cap;
};

// --- the run (ngx_http_async_job_run.cpp) --------------------------------

void ngx_http_async_job_post(ngx_event_t *ev);
// The run's event handlers, set when the run is created.
void ngx_http_async_job_start(ngx_event_t *ev);
void ngx_http_async_job_kick(ngx_event_t *ev);
void ngx_http_async_job_hold(ngx_event_t *ev);

// --- the nginx side (ngx_http_async_job_conn.cpp) ------------------------

// Makes fd the nginx end of a job's socketpair: a connection accepted on
// a copy of the client's listening, handed to ngx_http_init_connection().
ngx_int_t ngx_http_async_job_accept(ngx_http_async_job_run_t *run,
                                    ngx_socket_t fd, async::job_state state);

// --- the job's client end (ngx_http_async_job_client.cpp) ----------------

// Sends head and body (segs, from run->body_fd for file segments) over a
// new socketpair and parses the answer; run->kick_ev is posted at its end.
ngx_int_t ngx_http_async_job_exchange(ngx_http_async_job_run_t *run,
                                      ngx_str_t head, ngx_array_t *segs,
                                      bool keep_body, bool head_only,
                                      bool callback, async::job_state state);
// Closes the client end: nginx sees its client leave.
void ngx_http_async_job_exchange_close(ngx_http_async_job_exchange_t *ex);

// --- the callback (ngx_http_async_job_callback.cpp) ----------------------

void ngx_http_async_job_after_final(ngx_http_async_job_run_t *run);
void ngx_http_async_job_callback_end(ngx_http_async_job_run_t *run);
