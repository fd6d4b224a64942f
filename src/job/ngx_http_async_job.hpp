// Request-reply jobs (async_job*): the types shared by the zone and store
// (ngx_http_async_job_store.cpp), a worker's start, wake-ups and exit
// (_job_process.cpp), the submit handler (_job_submit.cpp), the background
// runner (_job_run.cpp, _job_copy.cpp, _job_conn.cpp, _job_client.cpp,
// _job_callback.cpp; its own types in _job_run.hpp), the status location
// (_job_status.cpp), the answers (_job_answer.cpp), the parked waiters
// (_job_wait.cpp) and the async_status section (_job_report.cpp).
//
// The job concern owns the request ctx slot of ngx_http_async_module.
#pragma once

#include "ngx_http_async_module.hpp"
#include "common/ngx_http_async_redis.hpp"
#include "common/ngx_http_async_status_section.hpp"
#include "common/ngx_http_async_wake.hpp"
#include "common/ngx_http_async_zone.hpp"
#include "core/base64url.hpp"
#include "core/job_extras.hpp"
#include "core/job_table.hpp"
#include "core/json_writer.hpp"
#include "core/retry_after.hpp"
#include "core/ticket_queue.hpp"

namespace async {

// An ngx_str_t over a string literal.
template <size_t N>
inline ngx_str_t literal(const char (&s)[N])
{
    return {N - 1, reinterpret_cast<u_char *>(const_cast<char *>(s))};
}

} // namespace async

// Lives at the start of the zone's shared memory; the ticket queue and the
// job table follow it in the same allocation.
struct ngx_http_async_job_shared_t {
    async::admission_rate rate;
    uint64_t ttl_ms;          // of the newest configuration
    uint64_t max_result;      // idem
    uint64_t table_offset;    // of the job table from the slab pool's start
    uint64_t progress_offset; // of the progress slots; 0: none yet
    uint64_t keys_offset;     // of the idempotency keys; 0: none yet
    ngx_http_async_redis_stats_t redis; // store=redis
};

struct ngx_http_async_job_run_t;
struct ngx_http_async_job_waiter_t;

// This worker's waiters on one job record.
struct ngx_http_async_job_watch_t {
    ngx_queue_t waiters; // ngx_http_async_job_waiter_t
    ngx_queue_t link;    // in the zone's watched list while not empty
    uint32_t index;
};

struct ngx_http_async_job_zone_t : ngx_http_async_zone_t {
    size_t size;
    ngx_msec_t ttl;
    size_t max_result;
    ngx_str_t status_prefix; // of the first async_job_status location
    bool has_submit;         // an async_job location uses it

    // set up by the zone's init in every cycle
    ngx_http_async_job_shared_t *sh;
    async::job_table *table;

    // this worker's jobs and waiters
    ngx_queue_t runs;                    // ngx_http_async_job_run_t
    ngx_http_async_job_run_t **by_node;  // parked runs, by queue node
    ngx_http_async_job_watch_t *watches; // by job index
    ngx_queue_t watched;                 // watches with waiters
    ngx_uint_t nwaiters;
    uint64_t seen_changes;     // of the table, by the waiters' scan
    uint64_t run_seen_changes; // of the table, by the runs' scan
    time_t last_full_log;

    // store=redis (ngx_http_async_job_store_redis.cpp)
    ngx_http_async_redis_conf_t *redis_conf; // nullptr: store=shm
    ngx_http_async_redis_t *redis;           // this worker's client (shared
                                             // by zones of one endpoint)
    ngx_str_t redis_channel;                 // PREFIXevents
    ngx_queue_t remote_waiters;              // long-polls woken by pub/sub
    char (*recent_final)[async::id_chars];   // ring of the last "F" ids
    ngx_uint_t recent_next;
    ngx_event_t redis_tick; // lease renewal and resync
};

// One async_job / async_job_status / async_job_callback location.
struct ngx_http_async_job_loc_t {
    ngx_http_async_job_zone_t *zone; // async_job
    ngx_http_complex_value_t uri;
    ngx_msec_t wait;                    // wait=; 0: answer 202 at once
    bool idempotency;                   // idempotency=on
    ngx_http_async_job_zone_t *status;  // async_job_status
    ngx_http_complex_value_t *callback; // async_job_callback
    u_char *callback_file;
    ngx_uint_t callback_line;
};

// A copy of one record, taken under the lock.
struct ngx_http_async_job_view_t {
    async::job_record rec;
    uint32_t index;
    char id[async::id_chars];
    async::progress_view progress; // while it runs, if its backend reported
};

// What a request of the job concern keeps in the module's ctx slot: the
// id and state for $async_job_id and $async_job_status.
struct ngx_http_async_job_ctx_t {
    char id[async::id_chars];
    async::job_state state;
    bool has_id;
};

// The job zones' part of the async_status report
// (ngx_http_async_job_report.cpp), registered by the module shell.
extern const ngx_http_async_status_section_t ngx_http_async_job_status_section;

// --- zone and store (ngx_http_async_job_store.cpp) -----------------------

uint64_t ngx_http_async_job_now_ms();
// The record of id if it is alive; copied into *view. Takes the lock.
bool ngx_http_async_job_lookup(ngx_http_async_job_zone_t *zone,
                               const uint8_t id[async::id_bytes],
                               ngx_http_async_job_view_t *view);
// The record at index if it still has this generation. Takes the lock.
bool ngx_http_async_job_lookup_index(ngx_http_async_job_zone_t *zone,
                                     uint32_t index, uint32_t generation,
                                     ngx_http_async_job_view_t *view);
// Copies the record at index into *view; the lock is held.
void ngx_http_async_job_view_fill_locked(ngx_http_async_job_zone_t *zone,
                                         uint32_t index,
                                         ngx_http_async_job_view_t *view);
// Frees a stored result; the lock is held.
void ngx_http_async_job_free_result_locked(ngx_http_async_job_zone_t *zone,
                                           uint64_t offset);
// Wakes the workers a record's watchers name; the lock is not held.
void ngx_http_async_job_wake_watchers(ngx_http_async_job_zone_t *zone,
                                      uint64_t watchers);
void ngx_http_async_job_wake_all(ngx_http_async_job_zone_t *zone);
// Removes expired jobs; the lock is held.
uint32_t ngx_http_async_job_expire_locked(ngx_http_async_job_zone_t *zone,
                                          uint64_t now);
ngx_http_async_job_zone_t *ngx_http_async_job_zone_ref(ngx_conf_t *cf,
                                                       ngx_str_t *name,
                                                       ngx_str_t directive);

// --- store=redis (ngx_http_async_job_store_redis.cpp) --------------------

// "PREFIX{TAG}:SUFFIX" (NUL-terminated) into buf: a job's keys have its
// id as TAG (meta, result, lease); other features may add their own keys
// and tags. The length; 0 when it does not fit in cap.
size_t ngx_http_async_job_redis_key(const ngx_http_async_job_zone_t *zone,
                                    std::string_view tag,
                                    std::string_view suffix, char *buf,
                                    size_t cap);
// Hook: the record at index changed state (insert, start, final); with
// store=redis it goes to Redis now (or at the next sync if it cannot).
void ngx_http_async_job_store_changed(ngx_http_async_job_zone_t *zone,
                                      uint32_t index);
// Hook for job locations: NGX_OK, or a 503 + Retry-After was sent (the
// store is Redis and it is unavailable); returns what sending returned.
ngx_int_t ngx_http_async_job_store_check(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone);
// Hook of the status location with store=redis: status, ?wait= long-poll,
// /result and DELETE answered from Redis. NGX_DONE or an answer's rc.
ngx_int_t ngx_http_async_job_redis_serve(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const char id[async::id_chars],
                                         bool result, ngx_msec_t wait);
// Hook of the submit with store=redis: the job is attached; the 202 (or the
// wait) follows once Redis has the job, a 503 if it cannot take it.
void ngx_http_async_job_redis_submitted(ngx_http_request_t *r,
                                        ngx_http_async_job_zone_t *zone,
                                        const ngx_http_async_job_view_t *v,
                                        ngx_msec_t wait,
                                        bool preference_applied);
struct ngx_http_async_job_idem_t;
// idempotency=on with store=redis: claims the key in Redis for a new id
// and finalizes r: a repeat gets the claimed job's 202 (or 422 for another
// request, 409 while the claim's job is not in Redis yet); a claim won
// goes on with ngx_http_async_job_submit_new.
void ngx_http_async_job_redis_idem_claim(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         ngx_msec_t wait,
                                         bool preference_applied);
// PUT .../progress with store=redis: written to the job's meta hash while
// it runs; finalizes r (204, 404, 409 or 503).
void ngx_http_async_job_redis_progress(ngx_http_request_t *r,
                                       ngx_http_async_job_zone_t *zone,
                                       const char id[async::id_chars],
                                       uint8_t percent,
                                       std::string_view message);
// Ends an unfinished job with state/reason (as a local DELETE does) and
// wakes its owner, which stops the run.
void ngx_http_async_job_local_cancel(ngx_http_async_job_zone_t *zone,
                                     uint32_t index, uint32_t generation,
                                     async::job_state state,
                                     async::job_reason reason);
// A worker's start: each zone joins the client of its endpoint (address,
// db, password, timeout); then the clients connect.
ngx_int_t
ngx_http_async_job_redis_init_process(ngx_cycle_t *cycle,
                                      ngx_http_async_job_zone_t *zone);
ngx_int_t ngx_http_async_job_redis_start(ngx_cycle_t *cycle);
// Two store=redis zones on one endpoint with one prefix would share keys.
ngx_int_t ngx_http_async_job_redis_check(ngx_conf_t *cf);
void ngx_http_async_job_redis_exit_process(ngx_http_async_job_zone_t *zone);

// --- runner (_job_run.cpp, _job_copy.cpp, _job_conn.cpp) ----------------

// Takes a copy of r's request for a job; the run is parked or ready.
ngx_http_async_job_run_t *
ngx_http_async_job_run_create(ngx_http_request_t *r,
                              ngx_http_async_job_zone_t *zone,
                              ngx_http_async_job_loc_t *jlcf);
void ngx_http_async_job_run_attach(ngx_http_async_job_run_t *run,
                                   uint32_t index, uint32_t generation,
                                   const uint8_t id[async::id_bytes],
                                   uint32_t node);
// Starts a run that holds a slot, after the current handler returns.
void ngx_http_async_job_run_post_start(ngx_http_async_job_run_t *run);
void ngx_http_async_job_run_destroy(ngx_http_async_job_run_t *run);
// Wake-up: granted slots, cancellations, for every zone.
// Calls f on every job zone of the cycle (none without an http block).
template <class F>
void ngx_http_async_job_zones_each(ngx_cycle_t *cycle, F &&f)
{
    for (ngx_http_async_job_zone_t *zone :
         ngx_http_async_zones<ngx_http_async_job_zone_t>(
             cycle, &ngx_http_async_main_conf_t::job_zones)) {
        f(zone);
    }
}

void ngx_http_async_job_runs_wake(ngx_cycle_t *cycle);
void ngx_http_async_job_runs_exit(ngx_cycle_t *cycle);
// Registers the POST_READ handler that marks a job's own requests.
ngx_int_t ngx_http_async_job_conn_init(ngx_conf_t *cf);
// The id and state of the job whose request runs on c, if it is a job's.
bool ngx_http_async_job_conn_id(ngx_connection_t *c, char id[async::id_chars],
                                async::job_state *state);
// Evaluates async_job_callback's URI with the submit's variables.
void ngx_http_async_job_run_callback_uri(ngx_http_request_t *r,
                                         ngx_http_async_job_run_t *run);
ngx_http_async_job_ctx_t *ngx_http_async_job_ctx(ngx_http_request_t *r,
                                                 bool create);

// --- answers (ngx_http_async_job_answer.cpp) -----------------------------

ngx_int_t ngx_http_async_job_add_header(ngx_http_request_t *r, ngx_str_t key,
                                        ngx_str_t value);

ngx_int_t ngx_http_async_job_send_json(ngx_http_request_t *r, ngx_uint_t status,
                                       ngx_str_t body, bool retry_after);
ngx_str_t ngx_http_async_job_status_json(ngx_pool_t *pool,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v);
ngx_int_t ngx_http_async_job_send_status(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v,
                                         ngx_uint_t status);
ngx_int_t ngx_http_async_job_send_accepted(ngx_http_request_t *r,
                                           ngx_http_async_job_zone_t *zone,
                                           const ngx_http_async_job_view_t *v,
                                           bool preference_applied);
// Replays a stored result; 409 with the status when there is none.
ngx_int_t ngx_http_async_job_send_result(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v);
ngx_int_t ngx_http_async_job_send_not_found(ngx_http_request_t *r);
// A result read from elsewhere (store=redis) replayed as send_result does.
ngx_int_t ngx_http_async_job_send_stored(ngx_http_request_t *r,
                                         const ngx_http_async_job_view_t *v,
                                         ngx_uint_t status, ngx_str_t type,
                                         ngx_str_t body);

// --- idempotent submits (ngx_http_async_job_idempotency.cpp) -------------

// The Idempotency-Key of one submit, hashed.
struct ngx_http_async_job_idem_t {
    bool on; // idempotency=on and the request carries a key
    uint8_t key[async::key_digest_bytes];
    uint8_t fingerprint[async::fingerprint_bytes];
};

// Reads and checks the key and hashes the request (its body too), and
// makes the zone's key table on its first key; NGX_OK, or NGX_DONE when r
// was answered (400, or 503 when the zone has no room) and finalized.
ngx_int_t ngx_http_async_job_idem_prepare(ngx_http_request_t *r,
                                          ngx_http_async_job_zone_t *zone,
                                          ngx_http_async_job_loc_t *jlcf,
                                          ngx_http_async_job_idem_t *idem);
// The live job this key names, copied into *view, or false; *same: the
// request is the one it was submitted with. The lock is held.
bool ngx_http_async_job_idem_find_locked(ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         ngx_http_async_job_view_t *view,
                                         bool *same);
// Binds the key to the job just inserted at index; the lock is held.
void ngx_http_async_job_idem_bind_locked(ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         uint32_t index);
// Answers a repeated submit and finalizes r: the job's 202 (or, with a
// wait, whatever a new submit would get), or 422 for another request.
void ngx_http_async_job_idem_answer(ngx_http_request_t *r,
                                    ngx_http_async_job_zone_t *zone,
                                    ngx_http_async_job_view_t *view, bool same,
                                    ngx_msec_t wait, bool preference_applied);
// Before a run is made: answers a repeat at once; true when it did.
bool ngx_http_async_job_idem_replay(ngx_http_request_t *r,
                                    ngx_http_async_job_zone_t *zone,
                                    const ngx_http_async_job_idem_t *idem,
                                    ngx_msec_t wait, bool preference_applied);

// The rest of a submit once its body is read and its key (if any) is not
// a repeat: makes the job, with claimed_id when the key was claimed in
// Redis for it, and finalizes r.
void ngx_http_async_job_submit_new(ngx_http_request_t *r,
                                   const ngx_http_async_job_idem_t *claimed,
                                   ngx_msec_t wait, bool applied,
                                   const uint8_t claimed_id[async::id_bytes]);

// --- progress (ngx_http_async_job_progress.cpp) --------------------------

// PUT <status-prefix>/<id>/progress from the job's backend.
ngx_int_t ngx_http_async_job_progress_put(ngx_http_request_t *r,
                                          ngx_http_async_job_zone_t *zone,
                                          std::string_view id);
// The zone's progress slots (core/job_extras.hpp), made on its first
// report (create), or nullptr; the lock is held.
async::job_progress *
ngx_http_async_job_progress_locked(ngx_http_async_job_zone_t *zone,
                                   bool create);
// Adds "progress" to a status answer being written (the view's, if any).
void ngx_http_async_job_progress_json(async::json_writer &w,
                                      const ngx_http_async_job_view_t *v);
// The bytes the progress of v may take in a status answer.
size_t
ngx_http_async_job_progress_json_bytes(const ngx_http_async_job_view_t *v);
// The X-Async-Job-Id the job's own request carries: added to the head of
// the copied request (HTTP/1.1 text) once the job has its id.
bool ngx_http_async_job_progress_add_id_header(
    ngx_pool_t *pool, ngx_str_t *head, const uint8_t id[async::id_bytes]);
// Whether a client's header is one the job's request sets itself.
bool ngx_http_async_job_progress_own_header(const ngx_table_elt_t &h);

// --- waiters (ngx_http_async_job_wait.cpp) -------------------------------

enum class job_wait_kind : uint8_t { status, submit };

// Parks r until the job at (index, generation) is final or timeout passes;
// NGX_OK: parked; NGX_DECLINED: final already (nothing parked).
ngx_int_t ngx_http_async_job_park(ngx_http_request_t *r,
                                  ngx_http_async_job_zone_t *zone,
                                  const ngx_http_async_job_view_t *v,
                                  ngx_msec_t timeout, job_wait_kind kind,
                                  bool preference_applied);
void ngx_http_async_job_waiters_wake(ngx_cycle_t *cycle);

// --- shell entry points ----------------------------------------------------

char *ngx_http_async_job_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                        void *conf);
char *ngx_http_async_job_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                   void *conf);
char *ngx_http_async_job_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf);
char *ngx_http_async_job_callback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                            void *conf);
char *ngx_http_async_job_merge(ngx_conf_t *cf, ngx_http_async_loc_conf_t *conf);
// limit_except inside an async_job_status location (_job_status.cpp).
void ngx_http_async_job_status_merge_limit_except(
    ngx_conf_t *cf, ngx_http_async_loc_conf_t *prev,
    ngx_http_async_loc_conf_t *conf);
ngx_int_t ngx_http_async_job_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_async_job_init(ngx_conf_t *cf);
ngx_int_t ngx_http_async_job_init_process(ngx_cycle_t *cycle);
void ngx_http_async_job_exit_process(ngx_cycle_t *cycle);
// A worker's life (ngx_http_async_job_process.cpp): start, exit, and the
// wake-up handler and safety timer parts (called by ngx_http_async_wake.cpp).
void ngx_http_async_job_wake(ngx_cycle_t *cycle);
void ngx_http_async_job_reap(ngx_cycle_t *cycle);
