// async_fetch: a location whose content is the parallel fan-out of
// subrequests. Each call runs as a background subrequest whose response the
// capture filter keeps; post-subrequest handlers and timers only record
// what happened and post the request, which then decides (fan-in).
#include "fanout/ngx_http_async_fanout.hpp"
#include "common/ngx_http_async_stats.hpp"

#include "core/json_body.hpp"
#include "common/ngx_http_async_conf.hpp"

static ngx_int_t ngx_http_async_fanout_handler(ngx_http_request_t *r);
static void ngx_http_async_fanout_start(ngx_http_request_t *r);
static void ngx_http_async_fanout_wake(ngx_http_request_t *r);
static void ngx_http_async_fanout_progress(ngx_http_async_fanout_t *fo);
static void ngx_http_async_fanout_cleanup(void *data);
static void ngx_http_async_fanout_pool_cleanup(void *data);
static void ngx_http_async_fanout_timeouts(ngx_event_t *ev);
static void ngx_http_async_fanout_hedge(ngx_event_t *ev);
static void ngx_http_async_fanout_deadline(ngx_event_t *ev);
static ngx_int_t ngx_http_async_fanout_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc);

static constexpr ngx_msec_t max_msec = NGX_MAX_INT32_VALUE;

// --- lookup -------------------------------------------------------------

// The fan-out of r, also after an internal redirect wiped r's contexts.
ngx_http_async_fanout_t *ngx_http_async_fanout_of(ngx_http_request_t *r)
{
    auto *fo = static_cast<ngx_http_async_fanout_t *>(
        ngx_http_get_module_ctx(r, ngx_http_async_fanout_filter_module));
    if (fo != nullptr) {
        return fo;
    }
    for (ngx_pool_cleanup_t *cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_async_fanout_pool_cleanup) {
            continue;
        }
        fo = static_cast<ngx_http_async_fanout_t *>(cln->data);
        if (fo->r == r) {
            return fo;
        }
    }
    return nullptr;
}

// A call is found from its post-subrequest handler, which carries the
// attempt; a module that wrapped the handler (async_queue does, while the
// call is parked) leaves the search among the parent's calls.
ngx_http_async_attempt_t *
ngx_http_async_fanout_attempt_of(ngx_http_request_t *sr)
{
    ngx_http_post_subrequest_t *ps = sr->post_subrequest;
    if (ps != nullptr && ps->handler == ngx_http_async_fanout_done) {
        return static_cast<ngx_http_async_attempt_t *>(ps->data);
    }
    if (sr->parent == nullptr) {
        return nullptr;
    }
    ngx_http_async_fanout_t *fo = ngx_http_async_fanout_of(sr->parent);
    if (fo == nullptr) {
        return nullptr;
    }
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        for (ngx_uint_t k = 0; k < call->nattempts; k++) {
            if (call->attempts[k].sr == sr) {
                return &call->attempts[k];
            }
        }
    }
    return nullptr;
}

// Wakes the fan-out's request once, however many calls ended meanwhile.
void ngx_http_async_fanout_post(ngx_http_async_fanout_t *fo)
{
    if (fo->posted || fo->finished) {
        return;
    }
    if (ngx_http_post_request(fo->r, nullptr) == NGX_OK) {
        fo->posted = true;
    }
}

// --- calls --------------------------------------------------------------

static void ngx_http_async_fanout_stop_timers(ngx_http_async_call_t *call)
{
    if (call->hedge_timer.timer_set) {
        ngx_del_timer(&call->hedge_timer);
    }
}

// Gives up on a running subrequest. A proxied one is ended at once through
// its upstream cleanup, which closes the upstream connection; other
// content handlers cannot be stopped from outside, so they run to their end
// and the capture filter drops their output.
static void ngx_http_async_fanout_cancel(ngx_http_async_attempt_t *a)
{
    if (a->sr == nullptr || a->finished || a->cancelled) {
        return;
    }
    a->cancelled = true;
    ngx_http_upstream_t *u = a->sr->upstream;
    if (u != nullptr && u->cleanup != nullptr && *u->cleanup != nullptr) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, a->sr->connection->log, 0,
                       "async_fetch \"%V\": closing upstream",
                       &a->call->conf->name);
        (*u->cleanup)(a->sr);
    }
}

// The calls start together, so one timer serves all their timeouts: it
// waits for the earliest timeout among the calls still running.
static ngx_msec_t ngx_http_async_fanout_earliest(ngx_http_async_fanout_t *fo)
{
    ngx_msec_t earliest = max_msec;
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state == call_state::running) {
            earliest = ngx_min(earliest, call->timeout);
        }
    }
    return earliest;
}

static void ngx_http_async_fanout_arm(ngx_http_async_fanout_t *fo)
{
    if (fo->unresolved == 0) {
        return;
    }
    ngx_msec_t earliest = ngx_http_async_fanout_earliest(fo);
    auto left =
        static_cast<ngx_msec_int_t>(fo->launched + earliest - ngx_current_msec);
    ngx_add_timer(&fo->timeouts, static_cast<ngx_msec_t>(ngx_max(left, 0)));
}

static void ngx_http_async_fanout_resolve(ngx_http_async_call_t *call,
                                          call_state state,
                                          fanout_reason reason,
                                          ngx_uint_t status,
                                          bool stop_attempts = true)
{
    if (call->state != call_state::running) {
        return;
    }
    call->state = state;
    call->reason = reason;
    call->status = status;
    ngx_http_async_fanout_t *fo = call->fanout;
    if (--fo->unresolved == 0 && fo->timeouts.timer_set) {
        ngx_del_timer(&fo->timeouts);
    }
    ngx_http_async_fanout_stop_timers(call);
    for (ngx_uint_t k = 0; k < call->nattempts; k++) {
        ngx_http_async_attempt_t *a = &call->attempts[k];
        if (a == call->winner) {
            continue;
        }
        if (stop_attempts) {
            ngx_http_async_fanout_cancel(a);
        } else {
            a->cancelled = true;
        }
    }
    call->seq = ++fo->resolved;
    if (state == call_state::failed) {
        if (reason == fanout_reason::timeout) {
            ngx_http_async_stats_bump(fanout_stat::timed_out_calls);
        } else if (reason == fanout_reason::cancelled) {
            ngx_http_async_stats_bump(fanout_stat::cancelled_calls);
        }
    }
}

static ngx_int_t ngx_http_async_fanout_launch(ngx_http_async_fanout_t *fo,
                                              ngx_http_async_call_t *call)
{
    ngx_http_request_t *r = fo->r;
    ngx_http_async_attempt_t *a = &call->attempts[call->nattempts];
    ngx_str_t uri, args;
    ngx_uint_t flags = NGX_HTTP_LOG_UNSAFE;

    a->call = call;
    a->content_length = -1;
    a->ps.handler = ngx_http_async_fanout_done;
    a->ps.data = a;
    a->root.attempt = a;

    if (call->nattempts == 0) {
        if (ngx_http_complex_value(r, &call->conf->uri, &uri) != NGX_OK) {
            return NGX_ERROR;
        }
        ngx_str_null(&args);
        if (ngx_http_parse_unsafe_uri(r, &uri, &args, &flags) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "async_fetch \"%V\": unsafe URI \"%V\"",
                          &call->conf->name, &uri);
            return NGX_ERROR;
        }
        call->uri = uri;
        call->args = args;
    } else {
        // a hedged request is the same request again
        uri = call->uri;
        args = call->args;
    }

    ngx_http_request_t *sr;
    if (ngx_http_subrequest(r, &uri, &args, &sr, &a->ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK) {
        return NGX_ERROR;
    }
    // the copy filter reads file buffers into memory for the capture
    sr->filter_need_in_memory = 1;
    a->sr = sr;
    a->root.r = sr;
    call->nattempts++;
    return NGX_OK;
}

// --- handlers -----------------------------------------------------------

static ngx_int_t ngx_http_async_fanout_handler(ngx_http_request_t *r)
{
    if (ngx_http_async_fanout_of(r) != nullptr) {
        // an internal redirect back into the fan-out location
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    // a request body is read once and shared by reference with the calls
    ngx_int_t rc =
        ngx_http_read_client_request_body(r, ngx_http_async_fanout_start);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;
}

static ngx_http_async_fanout_t *
ngx_http_async_fanout_create(ngx_http_request_t *r,
                             ngx_http_async_loc_conf_t *alcf)
{
    auto *fo = async::pool_calloc<ngx_http_async_fanout_t>(r->pool);
    ngx_pool_cleanup_t *pcln = ngx_pool_cleanup_add(r->pool, 0);
    ngx_http_cleanup_t *cln = ngx_http_cleanup_add(r, 0);
    if (fo == nullptr || pcln == nullptr || cln == nullptr) {
        return nullptr;
    }
    fo->r = r;
    fo->alcf = alcf;
    fo->ncalls = alcf->fanout->nelts;
    fo->calls =
        async::pool_calloc_array<ngx_http_async_call_t>(r->pool, fo->ncalls);
    if (fo->calls == nullptr) {
        return nullptr;
    }
    pcln->handler = ngx_http_async_fanout_pool_cleanup;
    pcln->data = fo;
    cln->handler = ngx_http_async_fanout_cleanup;
    cln->data = fo;
    ngx_http_set_ctx(r, fo, ngx_http_async_fanout_filter_module);
    return fo;
}

static void ngx_http_async_fanout_start(ngx_http_request_t *r)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    ngx_connection_t *c = r->connection;

    ngx_http_async_fanout_t *fo = ngx_http_async_fanout_create(r, alcf);
    if (fo == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_time_t *tp = ngx_timeofday();
    fo->start_sec = tp->sec;
    fo->start_msec = tp->msec;
    fo->unresolved = fo->ncalls;
    fo->launched = ngx_current_msec;
    ngx_http_async_stats_bump(fanout_stat::started);

    r->write_event_handler = ngx_http_async_fanout_wake;
    if (r == r->main) {
        // notice a client that goes away while the calls run
        r->read_event_handler = ngx_http_test_reading;
        if (c->read->ready) {
            ngx_post_event(c->read, &ngx_posted_events);
        } else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    auto *fetches = static_cast<ngx_http_async_fetch_t *>(alcf->fanout->elts);
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        call->fanout = fo;
        call->conf = &fetches[i];
        call->timeout = call->conf->timeout != NGX_CONF_UNSET_MSEC
                            ? call->conf->timeout
                            : alcf->fetch_timeout;
        async::event_init(&call->hedge_timer, call, ngx_http_async_fanout_hedge,
                          c->log);

        if (ngx_http_async_fanout_launch(fo, call) != NGX_OK) {
            ngx_http_async_fanout_resolve(call, call_state::failed,
                                          fanout_reason::status,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR);
            continue;
        }
        if (call->conf->hedge != 0 && call->conf->hedge < call->timeout) {
            ngx_add_timer(&call->hedge_timer, call->conf->hedge);
        }
    }
    async::event_init(&fo->timeouts, fo, ngx_http_async_fanout_timeouts,
                      c->log);
    ngx_http_async_fanout_arm(fo);

    if (alcf->fanout_timeout != 0) {
        async::event_init(&fo->deadline, fo, ngx_http_async_fanout_deadline,
                          c->log);
        ngx_add_timer(&fo->deadline, alcf->fanout_timeout);
    }

    // the calls are posted and run after this handler returns
    ngx_http_async_fanout_progress(fo);
}

// The request's write handler: posted by the calls and timers, and called
// on write events while a streamed answer is on its way.
static void ngx_http_async_fanout_wake(ngx_http_request_t *r)
{
    ngx_http_async_fanout_t *fo = ngx_http_async_fanout_of(r);
    if (fo == nullptr) {
        return;
    }
    fo->posted = false;

    ngx_event_t *wev = r->connection->write;
    if (wev->timedout) {
        wev->timedout = 0;
        if (fo->streaming) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, NGX_ETIMEDOUT,
                          "client timed out");
            r->connection->timedout = 1;
            ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
            return;
        }
    }
    ngx_http_async_fanout_progress(fo);
}

// Decides from what the calls recorded: picks winners, fails calls, ends
// the fan-out when a required call failed or no call runs any more.
static void ngx_http_async_fanout_progress(ngx_http_async_fanout_t *fo)
{
    if (fo->finished) {
        return;
    }
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state != call_state::running) {
            continue;
        }
        ngx_http_async_attempt_t *failed = nullptr;
        bool running = false;
        for (ngx_uint_t k = 0; k < call->nattempts; k++) {
            ngx_http_async_attempt_t *a = &call->attempts[k];
            if (a->too_large) {
                ngx_http_async_fanout_cancel(a);
                failed = a;
            } else if (!a->finished) {
                running = true;
            } else if (a->status >= NGX_HTTP_OK
                       && a->status < NGX_HTTP_SPECIAL_RESPONSE) {
                call->winner = a;
                if (k == 1) {
                    ngx_http_async_stats_bump(fanout_stat::hedge_wins);
                }
                break;
            } else {
                failed = a;
            }
        }
        if (call->winner != nullptr) {
            ngx_http_async_fanout_resolve(call, call_state::ok,
                                          fanout_reason::none, 0);
            if (ngx_http_async_fanout_part_has_boundary(fo, call)) {
                // the part would end early for the client: a bad answer
                // of its backend, never a broken frame
                ngx_log_error(NGX_LOG_ERR, fo->r->connection->log, 0,
                              "async_fetch \"%V\": body contains the "
                              "multipart boundary",
                              &call->conf->name);
                call->state = call_state::failed;
                call->reason = fanout_reason::status;
                call->status = NGX_HTTP_BAD_GATEWAY;
            }
        } else if (!running && failed != nullptr) {
            // a hedge only races a slow answer, it does not retry errors
            ngx_http_async_fanout_resolve(call, call_state::failed,
                                          failed->too_large
                                              ? fanout_reason::too_large
                                              : fanout_reason::status,
                                          failed->status);
        }
    }

    if (!fo->decided) {
        for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
            ngx_http_async_call_t *call = &fo->calls[i];
            if (call->state == call_state::failed && !call->conf->optional) {
                // a required call failed: nothing else is worth waiting for
                fo->decided = true;
                for (ngx_uint_t k = 0; k < fo->ncalls; k++) {
                    ngx_http_async_fanout_resolve(&fo->calls[k],
                                                  call_state::failed,
                                                  fanout_reason::cancelled, 0);
                }
                if (fo->deadline.timer_set) {
                    ngx_del_timer(&fo->deadline);
                }
                if (!fo->streaming) {
                    ngx_http_async_fanout_fail(fo, call);
                    return;
                }
                break;
            }
        }
        if (fo->unresolved == 0) {
            fo->decided = true;
            if (fo->deadline.timer_set) {
                ngx_del_timer(&fo->deadline);
            }
        }
    }
    ngx_http_async_fanout_output(fo);
}

// The earliest timeout is due: those calls fail and one decision step
// follows, as if each call had a timer of its own; a later timeout that is
// due as well fires in the same pass over the timers (re-armed with 0).
static void ngx_http_async_fanout_timeouts(ngx_event_t *ev)
{
    auto *fo = static_cast<ngx_http_async_fanout_t *>(ev->data);
    ngx_connection_t *c = fo->r->connection;

    ngx_msec_t earliest = ngx_http_async_fanout_earliest(fo);
    auto late =
        static_cast<ngx_msec_int_t>(ngx_current_msec - fo->launched - earliest);
    // late < 0: the calls the timer was armed for have ended since
    for (ngx_uint_t i = 0; late >= 0 && i < fo->ncalls; i++) {
        ngx_http_async_call_t *call = &fo->calls[i];
        if (call->state != call_state::running || call->timeout != earliest) {
            continue;
        }
        ngx_log_error(NGX_LOG_INFO, c->log, 0, "async_fetch \"%V\" timed out",
                      &call->conf->name);
        ngx_http_async_fanout_resolve(call, call_state::failed,
                                      fanout_reason::timeout, 0);
    }
    ngx_http_async_fanout_arm(fo);
    ngx_http_async_fanout_progress(fo);
    ngx_http_run_posted_requests(c);
}

static void ngx_http_async_fanout_deadline(ngx_event_t *ev)
{
    auto *fo = static_cast<ngx_http_async_fanout_t *>(ev->data);
    ngx_connection_t *c = fo->r->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "async_timeout: %ui of %ui calls still running",
                  fo->unresolved, fo->ncalls);
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_fanout_resolve(&fo->calls[i], call_state::failed,
                                      fanout_reason::timeout, 0);
    }
    ngx_http_async_fanout_progress(fo);
    ngx_http_run_posted_requests(c);
}

static void ngx_http_async_fanout_hedge(ngx_event_t *ev)
{
    auto *call = static_cast<ngx_http_async_call_t *>(ev->data);
    ngx_http_async_fanout_t *fo = call->fanout;
    ngx_connection_t *c = fo->r->connection;

    if (call->state == call_state::running && call->nattempts == 1
        && !call->attempts[0].finished) {
        if (ngx_http_async_fanout_launch(fo, call) == NGX_OK) {
            ngx_http_async_stats_bump(fanout_stat::hedged_calls);
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "async_fetch \"%V\": hedged", &call->conf->name);
        }
    }
    ngx_http_run_posted_requests(c);
}

bool ngx_http_async_fanout_is_call(ngx_http_post_subrequest_t *ps)
{
    return ps != nullptr && ps->handler == ngx_http_async_fanout_done;
}

// A status nginx turns into a response of the request itself (its error
// page, or error_page's redirect, named locations included), as for a
// client: the call's part is then that response. The ones that would
// terminate the whole connection are the call's failure instead.
static bool ngx_http_async_fanout_makes_response(ngx_int_t rc)
{
    return (rc >= NGX_HTTP_SPECIAL_RESPONSE || rc == NGX_HTTP_CREATED
            || rc == NGX_HTTP_NO_CONTENT)
           && rc != NGX_HTTP_CLOSE && rc != NGX_HTTP_REQUEST_TIME_OUT
           && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST;
}

// Post-subrequest handler: records the end of the call's own request; the
// capture ends the attempt once its nested requests are complete too.
static ngx_int_t ngx_http_async_fanout_done(ngx_http_request_t *sr, void *data,
                                            ngx_int_t rc)
{
    auto *a = static_cast<ngx_http_async_attempt_t *>(data);
    if (rc == NGX_AGAIN) {
        return rc;
    }
    if (!a->header_seen && !a->cancelled
        && ngx_http_async_fanout_makes_response(rc)) {
        // nginx finalizes the request again after that response
        return rc;
    }
    if (!a->root.done) {
        if (!a->header_seen) {
            a->status = rc >= NGX_HTTP_OK && rc <= 599
                            ? static_cast<ngx_uint_t>(rc)
                            : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        if ((rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE)
            && a->status < NGX_HTTP_SPECIAL_RESPONSE) {
            a->status = rc == NGX_ERROR ? NGX_HTTP_BAD_GATEWAY
                                        : static_cast<ngx_uint_t>(rc);
        } else if (!a->cancelled && ngx_http_async_capture_upstream_short(sr)) {
            a->status = NGX_HTTP_BAD_GATEWAY;
        }
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, sr->connection->log, 0,
                       "async_fetch \"%V\" request done: rc:%i status:%ui",
                       &a->call->conf->name, rc, a->status);
        ngx_http_async_capture_root_done(a);
    }
    // an error of a call is its own, never the whole request's: no
    // termination of the request it belongs to
    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }
    return rc;
}

// The request ends (normally, or terminated because the client went
// away): running calls count as cancelled; their upstreams are closed by
// their own cleanups, which run before this one.
static void ngx_http_async_fanout_cleanup(void *data)
{
    auto *fo = static_cast<ngx_http_async_fanout_t *>(data);
    if (!fo->finished) {
        ngx_time_t *tp = ngx_timeofday();
        fo->end_sec = tp->sec;
        fo->end_msec = tp->msec;
    }
    fo->finished = true;
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        // their upstreams were closed by their own cleanups just before
        ngx_http_async_fanout_resolve(&fo->calls[i], call_state::failed,
                                      fanout_reason::cancelled, 0, false);
    }
    if (fo->deadline.timer_set) {
        ngx_del_timer(&fo->deadline);
    }
    // the outcome, once per fan-out: every call is resolved by now
    fanout_stat outcome = fanout_stat::completed;
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        if (fo->calls[i].state != call_state::ok) {
            outcome = fo->calls[i].conf->optional ? fanout_stat::partial
                                                  : fanout_stat::failed;
            if (outcome == fanout_stat::failed) {
                break;
            }
        }
    }
    ngx_http_async_stats_bump(outcome);
}

static void ngx_http_async_fanout_pool_cleanup(void *data)
{
    auto *fo = static_cast<ngx_http_async_fanout_t *>(data);
    for (ngx_uint_t i = 0; i < fo->ncalls; i++) {
        ngx_http_async_fanout_stop_timers(&fo->calls[i]);
    }
    if (fo->timeouts.timer_set) {
        ngx_del_timer(&fo->timeouts);
    }
    if (fo->deadline.timer_set) {
        ngx_del_timer(&fo->deadline);
    }
}

// --- directives ---------------------------------------------------------

static bool ngx_http_async_fanout_valid_name(std::string_view name)
{
    if (name.empty()) {
        return false;
    }
    for (char ch : name) {
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
                  || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

// The parameters after NAME and URI, read by ngx_http_async_conf_params.
struct ngx_http_async_fetch_conf_t {
    ngx_msec_t timeout;
    ngx_msec_t hedge;
    ngx_flag_t optional;
};

static const ngx_http_async_conf_param_t ngx_http_async_fetch_params[] = {
    {"timeout", conf_param_kind::msec,
     offsetof(ngx_http_async_fetch_conf_t, timeout), 1, max_msec,
     "invalid time"},
    {"hedge", conf_param_kind::msec,
     offsetof(ngx_http_async_fetch_conf_t, hedge), 1, max_msec, "invalid time"},
    {"optional", conf_param_kind::flag,
     offsetof(ngx_http_async_fetch_conf_t, optional), 0, 0, nullptr},
};

static char *ngx_http_async_fanout_conflict(ngx_conf_t *cf)
{
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"async_fetch\" in location \"%V\" conflicts with "
                       "another content handler (proxy_pass, fastcgi_pass, "
                       "echo, root file serving modules...)",
                       &clcf->name);
    return static_cast<char *>(NGX_CONF_ERROR);
}

char *ngx_http_async_fetch_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    (void) cmd;

    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler != nullptr
        && clcf->handler != ngx_http_async_fanout_handler) {
        return ngx_http_async_fanout_conflict(cf);
    }

    if (!ngx_http_async_fanout_valid_name(async::view(value[1]))) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid name \"%V\" in \"async_fetch\": use "
                           "letters, digits, \"_\" and \"-\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (alcf->fanout == nullptr) {
        alcf->fanout =
            ngx_array_create(cf->pool, 4, sizeof(ngx_http_async_fetch_t));
        if (alcf->fanout == nullptr) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        alcf->fanout_file = cf->conf_file->file.name.data;
        alcf->fanout_line = cf->conf_file->line;
    }
    auto *fetches = static_cast<ngx_http_async_fetch_t *>(alcf->fanout->elts);
    for (ngx_uint_t i = 0; i < alcf->fanout->nelts; i++) {
        if (async::view(fetches[i].name) == async::view(value[1])) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate name \"%V\" in \"async_fetch\"",
                               &value[1]);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }

    auto *fetch =
        static_cast<ngx_http_async_fetch_t *>(ngx_array_push(alcf->fanout));
    if (fetch == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_memzero(fetch, sizeof(*fetch));
    fetch->name = value[1];
    fetch->timeout = NGX_CONF_UNSET_MSEC;

    ngx_http_compile_complex_value_t ccv;
    ngx_memzero(&ccv, sizeof(ccv));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &fetch->uri;
    if (value[2].len == 0 || ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URI \"%V\" in \"async_fetch\"", &value[2]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_http_async_fetch_conf_t p{NGX_CONF_UNSET_MSEC, 0, 0};
    if (ngx_http_async_conf_params(cf, 3, ngx_http_async_fetch_params, &p)
        != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    fetch->timeout = p.timeout;
    fetch->hedge = p.hedge;
    fetch->optional = p.optional != 0;

    clcf->handler = ngx_http_async_fanout_handler;
    return NGX_CONF_OK;
}

char *ngx_http_async_timeout_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                       void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    (void) cmd;

    if (alcf->fanout_timeout != NGX_CONF_UNSET_MSEC) {
        return const_cast<char *>("is duplicate");
    }
    if (async::view(value[1]) == "off") {
        alcf->fanout_timeout = 0;
        return NGX_CONF_OK;
    }
    auto ms = ngx_http_async_parse_msec(async::view(value[1]));
    if (!ms || *ms == 0 || *ms > max_msec) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid time \"%V\" in \"async_timeout\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    alcf->fanout_timeout = *ms;
    return NGX_CONF_OK;
}

// After parsing: a directive later in the location (proxy_pass, ...) may
// have replaced the fan-out as the location's content handler.
char *ngx_http_async_fanout_merge(ngx_conf_t *cf,
                                  ngx_http_async_loc_conf_t *conf)
{
    if (conf->fanout == nullptr) {
        return NGX_CONF_OK;
    }
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler != ngx_http_async_fanout_handler) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_fetch\" in location \"%V\" conflicts with "
                      "another content handler set in the same location "
                      "in %s:%ui",
                      &clcf->name, conf->fanout_file, conf->fanout_line);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

// --- variables ----------------------------------------------------------

static ngx_int_t ngx_http_async_fanout_variable(ngx_http_request_t *r,
                                                ngx_http_variable_value_t *v,
                                                uintptr_t data)
{
    ngx_http_async_fanout_t *fo = ngx_http_async_fanout_of(r->main);
    if (fo == nullptr) {
        v->not_found = 1;
        return NGX_OK;
    }
    ngx_str_t s;
    switch (data) {
        case 0:
            if (ngx_http_async_fanout_completed(fo)) {
                ngx_str_set(&s, "true");
            } else {
                ngx_str_set(&s, "false");
            }
            break;
        case 1:
            s = ngx_http_async_fanout_failed_text(fo, r->pool);
            break;
        default: {
            time_t sec = fo->end_sec;
            ngx_msec_t msec = fo->end_msec;
            // while the answer is being sent (headers included), the clock runs
            if (!fo->finished || fo->end_sec == 0) {
                ngx_time_t *tp = ngx_timeofday();
                sec = tp->sec;
                msec = tp->msec;
            }
            ngx_msec_int_t ms = static_cast<ngx_msec_int_t>(
                (sec - fo->start_sec) * 1000 + (msec - fo->start_msec));
            ms = ngx_max(ms, 0);
            s.data =
                static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4));
            if (s.data == nullptr) {
                return NGX_ERROR;
            }
            s.len =
                ngx_sprintf(s.data, "%T.%03M", static_cast<time_t>(ms / 1000),
                            static_cast<ngx_msec_t>(ms % 1000))
                - s.data;
        }
    }
    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

static ngx_http_variable_t ngx_http_async_fanout_variables[] = {
    {ngx_string("async_completed"), nullptr, ngx_http_async_fanout_variable, 0,
     NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("async_failed"), nullptr, ngx_http_async_fanout_variable, 1,
     NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("async_fetch_time"), nullptr, ngx_http_async_fanout_variable, 2,
     NGX_HTTP_VAR_NOCACHEABLE, 0},
    ngx_http_null_variable};

ngx_int_t ngx_http_async_fanout_add_variables(ngx_conf_t *cf)
{
    return async::add_variables(cf, ngx_http_async_fanout_variables);
}
