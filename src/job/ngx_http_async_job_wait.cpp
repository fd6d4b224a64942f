// Parked waiters: long-polls of the status location (?wait=) and submits
// with wait= or Prefer: wait. A waiter holds only its connection, a timer
// and a list link; the worker that finishes a job wakes the workers its
// record names, and each one answers its own waiters.
#include "job/ngx_http_async_job.hpp"
#include "common/ngx_http_async_event.hpp"

struct ngx_http_async_job_waiter_t {
    async::event_ident ident; // the timer's data
    ngx_http_request_t *r;
    ngx_http_async_job_zone_t *zone;
    ngx_queue_t link;  // in its watch
    ngx_queue_t ready; // in a wake-up's list of waiters to answer
    ngx_event_t timer;
    uint32_t index;
    uint32_t generation;
    job_wait_kind kind;
    bool preference_applied;
    bool parked;
    bool in_ready;
};

static void ngx_http_async_job_waiter_cleanup(void *data);
static void ngx_http_async_job_waiter_timeout(ngx_event_t *ev);

static uint64_t ngx_http_async_job_slot_bit()
{
    return uint64_t{1} << (static_cast<uint32_t>(ngx_process_slot) % 64);
}

static bool ngx_http_async_job_watch_has(ngx_http_async_job_watch_t *watch,
                                         uint32_t generation)
{
    for (ngx_queue_t *q = ngx_queue_head(&watch->waiters);
         q != ngx_queue_sentinel(&watch->waiters); q = ngx_queue_next(q)) {
        auto *w = ngx_queue_data(q, ngx_http_async_job_waiter_t, link);
        if (w->generation == generation) {
            return true;
        }
    }
    return false;
}

static void ngx_http_async_job_unpark(ngx_http_async_job_waiter_t *w)
{
    if (!w->parked) {
        return;
    }
    w->parked = false;
    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }
    if (w->in_ready) {
        w->in_ready = false;
        ngx_queue_remove(&w->ready);
    }
    ngx_http_async_job_zone_t *zone = w->zone;
    ngx_http_async_job_watch_t *watch = &zone->watches[w->index];
    // a parked waiter is always linked in its watch
    ngx_queue_remove(&w->link); // NOLINT(clang-analyzer-core.NullDereference)
    zone->nwaiters--;
    if (ngx_queue_empty(&watch->waiters)) {
        ngx_queue_remove(&watch->link);
    }

    // A watch may hold waiters of an older job that had the record (they
    // come first); the bit belongs to the current job's waiters only.
    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[w->index];
    if (rec.generation == w->generation
        && !ngx_http_async_job_watch_has(watch, rec.generation)) {
        rec.watchers &= ~ngx_http_async_job_slot_bit();
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
}

static void ngx_http_async_job_waiter_cleanup(void *data)
{
    ngx_http_async_job_unpark(static_cast<ngx_http_async_job_waiter_t *>(data));
}

ngx_int_t ngx_http_async_job_park(ngx_http_request_t *r,
                                  ngx_http_async_job_zone_t *zone,
                                  const ngx_http_async_job_view_t *v,
                                  ngx_msec_t timeout, job_wait_kind kind,
                                  bool preference_applied)
{
    if (zone->watches == nullptr) {
        return NGX_ERROR;
    }
    auto *w = async::pool_calloc<ngx_http_async_job_waiter_t>(r->pool);
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    if (w == nullptr || cln == nullptr) {
        return NGX_ERROR;
    }

    bool waits = false;
    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[v->index];
    if (rec.generation == v->rec.generation
        && (rec.state == async::job_state::queued
            || rec.state == async::job_state::running)) {
        rec.watchers |= ngx_http_async_job_slot_bit();
        waits = true;
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    if (!waits) {
        return NGX_DECLINED;
    }

    w->r = r;
    w->zone = zone;
    w->index = v->index;
    w->generation = v->rec.generation;
    w->kind = kind;
    w->preference_applied = preference_applied;
    w->parked = true;
    cln->handler = ngx_http_async_job_waiter_cleanup;
    cln->data = w;

    ngx_http_async_job_watch_t *watch = &zone->watches[v->index];
    if (ngx_queue_empty(&watch->waiters)) {
        ngx_queue_insert_tail(&zone->watched, &watch->link);
    }
    ngx_queue_insert_tail(&watch->waiters, &w->link);
    zone->nwaiters++;

    async::event_init(&w->timer, w, ngx_http_async_job_waiter_timeout,
                      r->connection->log);
    ngx_add_timer(&w->timer, timeout);

    // notice a client that goes away while parked
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);
    } else if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
        ngx_http_async_job_unpark(w);
        return NGX_ERROR;
    }
    return NGX_OK;
}

// The job is final, gone, or the wait is over: answer.
static void ngx_http_async_job_answer(ngx_http_async_job_waiter_t *w)
{
    ngx_http_request_t *r = w->r;
    ngx_connection_t *c = r->connection;
    ngx_http_async_job_unpark(w);
    r->read_event_handler = ngx_http_block_reading;

    ngx_http_async_job_view_t v;
    ngx_int_t rc;
    if (!ngx_http_async_job_lookup_index(w->zone, w->index, w->generation,
                                         &v)) {
        rc = ngx_http_async_job_send_not_found(r);
    } else if (w->kind == job_wait_kind::status) {
        rc = ngx_http_async_job_send_status(r, w->zone, &v, NGX_HTTP_OK);
    } else if (v.rec.state == async::job_state::completed) {
        rc = ngx_http_async_job_send_result(r, w->zone, &v);
    } else {
        rc = ngx_http_async_job_send_accepted(r, w->zone, &v,
                                              w->preference_applied);
    }
    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}

static void ngx_http_async_job_waiter_timeout(ngx_event_t *ev)
{
    ngx_http_async_job_answer(
        static_cast<ngx_http_async_job_waiter_t *>(ev->data));
}

// A wake-up: answer the waiters whose job reached a final state or went.
// Each waiter is judged by its own generation: a record that was freed and
// taken by a new job can hold waiters of both, and only the old job's
// waiters are due. A waiter parks only on the record's current generation,
// so a watch lists older generations first.
static void ngx_http_async_job_zone_waiters(ngx_http_async_job_zone_t *zone)
{
    if (zone->nwaiters == 0 || zone->watches == nullptr) {
        return;
    }
    ngx_queue_t ready;
    ngx_queue_init(&ready);

    ngx_shmtx_lock(&zone->shpool->mutex);
    if (zone->table->changes == zone->seen_changes) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }
    zone->seen_changes = zone->table->changes;
    for (ngx_queue_t *q = ngx_queue_head(&zone->watched);
         q != ngx_queue_sentinel(&zone->watched); q = ngx_queue_next(q)) {
        auto *watch = ngx_queue_data(q, ngx_http_async_job_watch_t, link);
        const async::job_record &rec = zone->table->records()[watch->index];
        bool unfinished = rec.state == async::job_state::queued
                          || rec.state == async::job_state::running;
        for (ngx_queue_t *wq = ngx_queue_head(&watch->waiters);
             wq != ngx_queue_sentinel(&watch->waiters);
             wq = ngx_queue_next(wq)) {
            auto *w = ngx_queue_data(wq, ngx_http_async_job_waiter_t, link);
            if (rec.generation == w->generation && unfinished) {
                break; // waiters join at the tail: the rest are of this job
            }
            w->in_ready = true;
            ngx_queue_insert_tail(&ready, &w->ready);
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    // an answer unlinks its waiter from both lists
    while (!ngx_queue_empty(&ready)) {
        ngx_http_async_job_answer(ngx_queue_data(
            ngx_queue_head(&ready), ngx_http_async_job_waiter_t, ready));
    }
}

void ngx_http_async_job_waiters_wake(ngx_cycle_t *cycle)
{
    ngx_http_async_job_zones_each(cycle, ngx_http_async_job_zone_waiters);
}
