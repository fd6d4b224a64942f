// A job's run: its start, slots, the end of its subrequest, wake-ups, destroy.
#include "job/ngx_http_async_job_run.hpp"

static void ngx_http_async_job_end(ngx_http_async_job_run_t *run);

static constexpr ngx_msec_t hold_interval = 1000;

ngx_http_async_job_ctx_t *ngx_http_async_job_ctx(ngx_http_request_t *r,
                                                 bool create)
{
    auto *ctx = static_cast<ngx_http_async_job_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_async_module));
    if (ctx == nullptr && create) {
        ctx = async::pool_calloc<ngx_http_async_job_ctx_t>(r->pool);
        if (ctx != nullptr) {
            ngx_http_set_ctx(r, ctx, ngx_http_async_module);
        }
    }
    return ctx;
}

void ngx_http_async_job_post(ngx_event_t *ev)
{
    if (!ev->posted) {
        ngx_post_event(ev, &ngx_posted_events);
    }
}

void ngx_http_async_job_run_attach(ngx_http_async_job_run_t *run,
                                   uint32_t index, uint32_t generation,
                                   const uint8_t id[async::id_bytes],
                                   uint32_t node)
{
    run->index = index;
    run->generation = generation;
    ngx_memcpy(run->id, id, async::id_bytes);
    // progress hook: the job's request names its job
    if (!ngx_http_async_job_progress_add_id_header(run->pool, &run->head, id)) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "async_job: no memory for X-Async-Job-Id");
    }
    ngx_queue_insert_tail(&run->zone->runs, &run->link);
    if (node != async::no_node) {
        run->node = node;
        run->phase = run_phase::parked;
        run->zone->by_node[node] = run;
        ngx_add_timer(&run->hold_ev, hold_interval);
    }
}

void ngx_http_async_job_run_post_start(ngx_http_async_job_run_t *run)
{
    run->holds_slot = true;
    run->phase = run_phase::ready;
    ngx_http_async_job_post(&run->start_ev);
}

void ngx_http_async_job_run_destroy(ngx_http_async_job_run_t *run)
{
    if (!ngx_queue_empty(&run->link)) {
        ngx_queue_remove(&run->link);
        ngx_queue_init(&run->link);
    }
    if (run->node != async::no_node && run->zone->by_node[run->node] == run) {
        run->zone->by_node[run->node] = nullptr;
    }
    ngx_event_t *evs[] = {&run->start_ev, &run->kick_ev, &run->hold_ev};
    for (ngx_event_t *ev : evs) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
        if (ev->posted) {
            ngx_delete_posted_event(ev);
        }
    }
    if (run->ex != nullptr) {
        ngx_http_async_job_exchange_close(run->ex);
        if (run->kick_ev.posted) {
            ngx_delete_posted_event(&run->kick_ev);
        }
    }
    ngx_destroy_pool(run->pool); // its cleanup closes the body's descriptor
}

// --- slots ------------------------------------------------------------------

static void ngx_http_async_job_release(ngx_http_async_job_run_t *run)
{
    if (!run->holds_slot) {
        return;
    }
    run->holds_slot = false;
    ngx_http_async_job_zone_t *zone = run->zone;
    ngx_http_async_release_slot(zone->shpool, zone->q);
}

// Sets a final state unless the job has one; wakes its watchers.
static void ngx_http_async_job_finish(ngx_http_async_job_run_t *run,
                                      async::job_state state,
                                      async::job_reason reason, uint16_t status,
                                      bool store)
{
    ngx_http_async_job_zone_t *zone = run->zone;
    uint64_t watchers = 0;
    bool zone_full = false;
    bool changed = false;
    uint64_t now = ngx_http_async_job_now_ms();

    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[run->index];
    if (rec.generation == run->generation
        && (rec.state == async::job_state::queued
            || rec.state == async::job_state::running)) {
        if (store) {
            size_t ct = ngx_min(run->content_type.len, size_t{65535});
            size_t size = ct + run->len;
            auto *p = static_cast<u_char *>(
                ngx_slab_alloc_locked(zone->shpool, ngx_max(size, size_t{1})));
            if (p == nullptr) {
                zone_full = true;
                state = async::job_state::failed;
                reason = async::job_reason::zone_full;
                status = 0;
            } else {
                ngx_memcpy(p, run->content_type.data, ct);
                if (run->len > 0) {
                    ngx_memcpy(p + ct, run->buf, run->len);
                }
                async::job_table_set_result(
                    zone->table, run->index,
                    static_cast<uint64_t>(
                        p - reinterpret_cast<u_char *>(zone->shpool)),
                    static_cast<uint32_t>(size), static_cast<uint16_t>(ct));
            }
        }
        changed =
            async::job_table_finish(zone->table, run->index, state, reason,
                                    status, now, zone->sh->ttl_ms);
        watchers = rec.watchers;
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    if (changed) {
        ngx_http_async_job_store_changed(zone, run->index); // store hook
    }

    if (zone_full && ngx_time() != zone->last_full_log) {
        zone->last_full_log = ngx_time();
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "async_job_zone \"%V\" has no room for a result of "
                      "%uz bytes; the job failed (zone_full)",
                      &zone->name, run->len);
    }
    ngx_http_async_job_wake_watchers(zone, watchers);
}

// --- start ------------------------------------------------------------------

void ngx_http_async_job_start(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);
    ngx_http_async_job_zone_t *zone = run->zone;

    if (run->hold_ev.timer_set) {
        ngx_del_timer(&run->hold_ev);
    }
    uint64_t now = ngx_http_async_job_now_ms();
    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[run->index];
    bool started = rec.generation == run->generation
                   && async::job_table_start(zone->table, run->index, now);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!started) {
        // cancelled (or lost) while it waited
        ngx_http_async_job_release(run);
        ngx_http_async_job_after_final(run);
        return;
    }
    run->phase = run_phase::running;
    ngx_http_async_job_store_changed(zone, run->index); // store hook

    if (ngx_http_async_job_exchange(run, run->head, run->body, true,
                                    run->method == NGX_HTTP_HEAD, false,
                                    async::job_state::running)
        != NGX_OK) {
        goto failed;
    }
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "async_job: started job %uD", run->index);
    return;

failed:
    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "async_job: cannot start a job in zone \"%V\"", &zone->name);
    ngx_http_async_job_finish(run, async::job_state::failed,
                              async::job_reason::internal_error, 0, false);
    ngx_http_async_job_release(run);
    ngx_http_async_job_after_final(run);
}

// An exiting worker stays alive for its parked jobs, up to
// worker_shutdown_timeout; then they fail with reason shutdown.
void ngx_http_async_job_hold(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);
    if (run->phase != run_phase::parked) {
        return;
    }
    if (ngx_exiting) {
        if (run->exiting_since == 0) {
            run->exiting_since = ngx_current_msec;
        }
        auto *ccf = reinterpret_cast<ngx_core_conf_t *>(
            ngx_get_conf(ngx_cycle->conf_ctx, ngx_core_module));
        ngx_msec_t limit =
            ccf->shutdown_timeout ? ccf->shutdown_timeout : 60000;
        if (ngx_current_msec - run->exiting_since >= limit) {
            ngx_http_async_job_zone_t *zone = run->zone;
            async::wake_set wake{};
            ngx_shmtx_lock(&zone->shpool->mutex);
            async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation == run->generation
                && rec.queue_node == run->node) {
                async::ticket_queue_leave(
                    zone->q, run->node, async::leave_reason::cancelled, &wake);
                rec.queue_node = async::no_node;
            }
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
            ngx_http_async_job_finish(run, async::job_state::failed,
                                      async::job_reason::shutdown, 0, false);
            ngx_http_async_job_run_destroy(run);
            return;
        }
    }
    ngx_add_timer(ev, hold_interval);
}

// --- the end of the exchange ---------------------------------------------

// The job's client end leaves: nginx sees its client go, as with a real
// one (a proxied request's upstream connection closes at once).
static void ngx_http_async_job_stop(ngx_http_async_job_run_t *run)
{
    ngx_http_async_job_exchange_close(run->ex);
}

void ngx_http_async_job_kick(ngx_event_t *ev)
{
    auto *run = static_cast<ngx_http_async_job_run_t *>(ev->data);
    if (run->ex == nullptr || !run->ex->done) {
        return;
    }
    if (run->phase == run_phase::running) {
        ngx_http_async_job_end(run);
    } else if (run->phase == run_phase::callback) {
        ngx_http_async_job_callback_end(run);
    }
}

static void ngx_http_async_job_end(ngx_http_async_job_run_t *run)
{
    run->phase = run_phase::ending;
    ngx_http_async_job_exchange_t *ex = run->ex;
    if (run->cancelled) {
        // the final state is already set by the cancellation
    } else if (ex->too_large) {
        ngx_http_async_job_finish(run, async::job_state::failed,
                                  async::job_reason::result_too_large, 0,
                                  false);
    } else if (ex->failed || ex->truncated) {
        async::job_reason reason = async::job_reason::upstream_error;
        if (ngx_exiting) {
            reason = async::job_reason::shutdown;
        } else if (ex->truncated) {
            reason = async::job_reason::truncated;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "async_job: an answer ended before its announced "
                          "end; the job failed (truncated)");
        }
        ngx_http_async_job_finish(run, async::job_state::failed, reason, 0,
                                  false);
    } else {
        run->status = ex->status;
        run->content_type = ex->content_type;
        ngx_uint_t status = run->status != 0 ? run->status : NGX_HTTP_OK;
        ngx_http_async_job_finish(
            run, async::job_state::completed, async::job_reason::none,
            static_cast<uint16_t>(ngx_min(status, 999)), true);
    }
    ngx_http_async_job_release(run);
    ngx_http_async_job_after_final(run);
}

// --- wake-ups --------------------------------------------------------------

static void ngx_http_async_job_take_granted(ngx_http_async_job_zone_t *zone)
{
    for (;;) {
        uint64_t waited = 0;
        ngx_http_async_job_run_t *run = nullptr;
        ngx_shmtx_lock(&zone->shpool->mutex);
        uint32_t node = async::ticket_queue_take_granted(
            zone->q, static_cast<uint32_t>(ngx_process_slot), ngx_current_msec,
            &waited);
        if (node != async::no_node) {
            run = zone->by_node[node];
            zone->by_node[node] = nullptr;
            if (run != nullptr) {
                async::job_record &rec = zone->table->records()[run->index];
                if (rec.generation == run->generation) {
                    rec.queue_node = async::no_node;
                }
                async::admission_rate_note(zone->sh->rate, ngx_current_msec);
            }
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
        if (node == async::no_node) {
            return;
        }
        if (run == nullptr) {
            // cannot happen: a leaving run takes its node out first
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                          "async_job_zone \"%V\": granted node %uD has no "
                          "job",
                          &zone->name, node);
            async::wake_set wake{};
            ngx_shmtx_lock(&zone->shpool->mutex);
            async::ticket_queue_release(
                zone->q, static_cast<uint32_t>(ngx_process_slot), &wake);
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
            continue;
        }
        run->node = async::no_node;
        ngx_http_async_job_run_post_start(run);
    }
}

// Runs whose job was cancelled (DELETE, in any worker) stop.
static void ngx_http_async_job_scan_cancelled(ngx_http_async_job_zone_t *zone)
{
    bool any = false;
    async::wake_set wake{};
    ngx_shmtx_lock(&zone->shpool->mutex);
    if (zone->table->changes != zone->run_seen_changes) {
        zone->run_seen_changes = zone->table->changes;
        for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
             q != ngx_queue_sentinel(&zone->runs); q = ngx_queue_next(q)) {
            auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
            if (run->cancelled || run->phase == run_phase::ending
                || run->phase == run_phase::callback) {
                continue;
            }
            const async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation != run->generation || async::job_final(rec.state)
                || rec.state == async::job_state::free) {
                run->flagged = true;
                any = true;
                if (run->phase == run_phase::parked
                    && rec.generation == run->generation
                    && rec.queue_node == run->node) {
                    // a lost job still holds its place: give it back
                    async::ticket_queue_leave(zone->q, run->node,
                                              async::leave_reason::cancelled,
                                              &wake);
                }
            }
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
    if (!any) {
        return;
    }
    ngx_queue_t *next;
    for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
         q != ngx_queue_sentinel(&zone->runs); q = next) {
        next = ngx_queue_next(q);
        auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
        if (!run->flagged) {
            continue;
        }
        run->flagged = false;
        run->cancelled = true;
        switch (run->phase) {
            case run_phase::parked:
                if (run->hold_ev.timer_set) {
                    ngx_del_timer(&run->hold_ev);
                }
                if (zone->by_node[run->node] == run) {
                    zone->by_node[run->node] = nullptr;
                }
                run->node = async::no_node;
                ngx_http_async_job_after_final(run);
                break;
            case run_phase::ready:
                break; // the start sees it and gives the slot back
            case run_phase::running:
                ngx_http_async_job_stop(run);
                break;
            default:
                break;
        }
    }
}

void ngx_http_async_job_runs_wake(ngx_cycle_t *cycle)
{
    ngx_http_async_job_zones_each(cycle, [](ngx_http_async_job_zone_t *zone) {
        if (zone->table == nullptr || zone->by_node == nullptr) {
            return;
        }
        ngx_http_async_job_take_granted(zone);
        ngx_http_async_job_scan_cancelled(zone);
    });
}

// The worker exits: its unfinished jobs fail (shutdown), their places and
// slots go back to the queue.
void ngx_http_async_job_runs_exit(ngx_cycle_t *cycle)
{
    ngx_http_async_job_zones_each(cycle, [](ngx_http_async_job_zone_t *zone) {
        if (zone->table == nullptr || zone->by_node == nullptr) {
            return;
        }
        uint64_t now = ngx_http_async_job_now_ms();
        uint64_t watchers = 0;
        async::wake_set wake{};
        ngx_shmtx_lock(&zone->shpool->mutex);
        for (ngx_queue_t *q = ngx_queue_head(&zone->runs);
             q != ngx_queue_sentinel(&zone->runs); q = ngx_queue_next(q)) {
            auto *run = ngx_queue_data(q, ngx_http_async_job_run_t, link);
            async::job_record &rec = zone->table->records()[run->index];
            if (rec.generation != run->generation) {
                continue;
            }
            if (run->phase == run_phase::parked
                && rec.queue_node == run->node) {
                async::ticket_queue_leave(
                    zone->q, run->node, async::leave_reason::cancelled, &wake);
            }
            if (run->ex != nullptr && run->ex->c != nullptr) {
                // no socket may be left open when the worker exits
                ngx_close_connection(run->ex->c);
                run->ex->c = nullptr;
            }
            if (run->holds_slot) {
                async::ticket_queue_release(
                    zone->q, static_cast<uint32_t>(ngx_process_slot), &wake);
                run->holds_slot = false;
            }
            if (async::job_table_finish(
                    zone->table, run->index, async::job_state::failed,
                    async::job_reason::shutdown, 0, now, zone->sh->ttl_ms)) {
                watchers |= rec.watchers;
            }
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
        ngx_http_async_job_wake_watchers(zone, watchers);
    });
}
