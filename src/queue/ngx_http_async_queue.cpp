// async_queue: admission of requests through a queue zone. A request takes
// a slot and proceeds, or parks (holding only its connection) until a slot
// is handed to it (by priority class, FIFO within a class), or is answered
// with async_queue_status: queue full, timed out, evicted by a request of a
// higher class, or dropped by CoDel.
#include "queue/ngx_http_async_queue.hpp"
#include "common/ngx_http_async_event.hpp"

#include "common/ngx_http_async_conf.hpp"

#include <ctime>

enum class queue_outcome : ngx_uint_t {
    passed,
    parked,
    queued,
    rejected,
    timed_out,
    cancelled,
    evicted,
    dropped
};

// One request's passage through one zone. It lives in the request pool and
// is found again through its pool cleanup, which survives internal
// redirects (module contexts do not).
struct ngx_http_async_queue_entry_t {
    async::event_ident ident; // the timer's data
    ngx_http_request_t *r;
    ngx_http_async_queue_zone_t *zone;
    ngx_event_t timer;
    ngx_msec_t entered;
    ngx_msec_t waited;
    uint64_t admitted_us; // monotonic, for the adaptive limit's samples
    uint32_t node;
    uint32_t priority;
    queue_outcome outcome;
    bool holds_slot;
    ngx_http_post_subrequest_t *parent_ps; // a subrequest's own handler
    ngx_http_post_subrequest_t ps;
};

static void ngx_http_async_queue_cleanup(void *data);
static void ngx_http_async_queue_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_async_queue_subrequest_done(ngx_http_request_t *r,
                                                      void *data, ngx_int_t rc);

static ngx_http_async_queue_entry_t *
ngx_http_async_queue_find(ngx_http_request_t *r,
                          ngx_http_async_queue_zone_t *zone)
{
    for (ngx_pool_cleanup_t *cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler != ngx_http_async_queue_cleanup) {
            continue;
        }
        auto *entry = static_cast<ngx_http_async_queue_entry_t *>(cln->data);
        if (entry->r == r && (zone == nullptr || entry->zone == zone)) {
            return entry;
        }
    }
    return nullptr;
}

static uint64_t ngx_http_async_queue_now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000
           + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

// Gives the slot back; with active=auto its service time is a sample of
// the zone's limit first, so that a lower limit holds the next waiter back.
static void ngx_http_async_queue_release(ngx_http_async_queue_entry_t *entry)
{
    if (!entry->holds_slot) {
        return;
    }
    entry->holds_slot = false;
    ngx_http_async_queue_zone_t *zone = entry->zone;
    async::wake_set wake{};
    // measured always: a reload may have turned active=auto on since this
    // request's configuration was read
    uint64_t now = ngx_http_async_queue_now_us();
    uint64_t service_us =
        now > entry->admitted_us ? now - entry->admitted_us : 0;

    ngx_shmtx_lock(&zone->shpool->mutex);
    if (zone->sh->adaptive
        && async::adaptive_limit_sample(&zone->sh->limit, service_us,
                                        zone->q->active, ngx_current_msec)) {
        async::ticket_queue_set_limits(zone->q, zone->sh->limit.limit,
                                       zone->q->length, &wake);
    }
    async::ticket_queue_release(zone->q,
                                static_cast<uint32_t>(ngx_process_slot),
                                ngx_current_msec, &wake);
    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
}

static void ngx_http_async_queue_unpark(ngx_http_async_queue_entry_t *entry)
{
    if (entry->timer.timer_set) {
        ngx_del_timer(&entry->timer);
    }
    ngx_http_async_queue_zone_t *zone = entry->zone;
    if (zone->parked[entry->node] == entry) {
        zone->parked[entry->node] = nullptr;
        zone->parked_count--;
    }
}

// The request is gone (finalized, client left, or its subrequest ended).
static void ngx_http_async_queue_cleanup(void *data)
{
    auto *entry = static_cast<ngx_http_async_queue_entry_t *>(data);

    if (entry->outcome == queue_outcome::parked) {
        ngx_http_async_queue_unpark(entry);
        entry->outcome = queue_outcome::cancelled;
        entry->waited = ngx_current_msec - entry->entered;
        ngx_http_async_queue_zone_t *zone = entry->zone;
        async::wake_set wake{};
        ngx_shmtx_lock(&zone->shpool->mutex);
        async::ticket_queue_leave(zone->q, entry->node,
                                  async::leave_reason::cancelled, &wake);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
        return;
    }
    ngx_http_async_queue_release(entry);
}

static ngx_int_t ngx_http_async_queue_subrequest_done(ngx_http_request_t *r,
                                                      void *data, ngx_int_t rc)
{
    auto *entry = static_cast<ngx_http_async_queue_entry_t *>(data);
    // a subrequest shares its parent's pool, so its slot is given back when
    // its content is finished rather than when the whole request ends
    if (rc != NGX_AGAIN) {
        ngx_http_async_queue_release(entry);
    }
    if (entry->parent_ps != nullptr && entry->parent_ps->handler != nullptr) {
        return entry->parent_ps->handler(r, entry->parent_ps->data, rc);
    }
    return rc;
}

static ngx_int_t ngx_http_async_queue_add_retry_after(ngx_http_request_t *r,
                                                      ngx_int_t seconds)
{
    if (seconds < 0) {
        return NGX_OK;
    }
    auto *h =
        static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    auto *value = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT_T_LEN));
    if (h == nullptr || value == nullptr) {
        return NGX_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = value;
    h->value.len = ngx_sprintf(value, "%i", seconds) - value;
    h->lowcase_key = nullptr;
#if (nginx_version >= 1023000)
    h->next = nullptr;
#endif
    return NGX_OK;
}

// Seconds for Retry-After, or -1 for none. Called under the zone's lock.
static ngx_int_t
ngx_http_async_queue_retry_after(ngx_http_async_loc_conf_t *alcf,
                                 ngx_http_async_queue_zone_t *zone)
{
    if (alcf->queue_retry_after == NGX_HTTP_ASYNC_RETRY_AFTER_OFF) {
        return -1;
    }
    if (alcf->queue_retry_after != NGX_HTTP_ASYNC_RETRY_AFTER_AUTO) {
        return alcf->queue_retry_after;
    }
    return static_cast<ngx_int_t>(async::retry_after_seconds(
        zone->sh->rate, zone->q->waiting, ngx_current_msec));
}

static ngx_int_t ngx_http_async_queue_refuse(ngx_http_request_t *r,
                                             ngx_http_async_loc_conf_t *alcf,
                                             ngx_int_t retry_after)
{
    if (ngx_http_async_queue_add_retry_after(r, retry_after) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    return static_cast<ngx_int_t>(alcf->queue_status);
}

static ngx_int_t ngx_http_async_queue_park(ngx_http_request_t *r,
                                           ngx_http_async_queue_entry_t *entry)
{
    ngx_http_async_queue_zone_t *zone = entry->zone;
    entry->outcome = queue_outcome::parked;
    zone->parked[entry->node] = entry;
    zone->parked_count++;

    async::event_init(&entry->timer, entry, ngx_http_async_queue_timeout,
                      r->connection->log);
    ngx_add_timer(&entry->timer, zone->timeout);

    if (r == r->main) {
        // notice a client that goes away while parked
        if (r->connection->read->ready) {
            ngx_post_event(r->connection->read, &ngx_posted_events);
        } else if (ngx_handle_read_event(r->connection->read, 0) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        r->read_event_handler = ngx_http_test_reading;
    }
    r->write_event_handler = ngx_http_request_empty_handler;
    return NGX_AGAIN;
}

static ngx_http_async_queue_entry_t *
ngx_http_async_queue_new_entry(ngx_http_request_t *r,
                               ngx_http_async_queue_zone_t *zone)
{
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    auto *entry = async::pool_calloc<ngx_http_async_queue_entry_t>(r->pool);
    if (cln == nullptr || entry == nullptr) {
        return nullptr;
    }
    entry->r = r;
    entry->zone = zone;
    entry->entered = ngx_current_msec;
    entry->node = async::no_node;
    cln->handler = ngx_http_async_queue_cleanup;
    cln->data = entry;

    if (r != r->main) {
        entry->parent_ps = r->post_subrequest;
        entry->ps.handler = ngx_http_async_queue_subrequest_done;
        entry->ps.data = entry;
        r->post_subrequest = &entry->ps;
    }
    return entry;
}

// The request's class: priority= evaluated, 0 when absent or invalid (an
// invalid value is logged once per zone, not per request).
static uint32_t ngx_http_async_queue_priority(ngx_http_request_t *r,
                                              ngx_http_async_loc_conf_t *alcf,
                                              ngx_http_async_queue_zone_t *zone)
{
    if (alcf->queue_priority == nullptr) {
        return 0;
    }
    ngx_str_t value;
    if (ngx_http_complex_value(r, alcf->queue_priority, &value) != NGX_OK) {
        return 0;
    }
    ngx_int_t n = ngx_atoi(value.data, value.len);
    if (n >= 0 && n < static_cast<ngx_int_t>(async::queue_classes)) {
        return static_cast<uint32_t>(n);
    }
    if (__atomic_exchange_n(&zone->sh->priority_warned, 1, __ATOMIC_RELAXED)
        == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "async_queue \"%V\": invalid priority \"%V\" counted "
                      "as 0 (further invalid values are not logged)",
                      &zone->name, &value);
    }
    return 0;
}

static ngx_int_t ngx_http_async_queue_handler(ngx_http_request_t *r)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    if (alcf->queue == nullptr) {
        return NGX_DECLINED;
    }
    auto *zone = static_cast<ngx_http_async_queue_zone_t *>(alcf->queue->data);
    if (zone == nullptr || zone->q == nullptr) {
        return NGX_DECLINED;
    }

    ngx_http_async_queue_entry_t *entry = ngx_http_async_queue_find(r, zone);
    if (entry != nullptr) {
        // at most one slot per zone, also across internal redirects
        return entry->outcome == queue_outcome::parked ? NGX_AGAIN
                                                       : NGX_DECLINED;
    }

    entry = ngx_http_async_queue_new_entry(r, zone);
    if (entry == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    entry->priority = ngx_http_async_queue_priority(r, alcf, zone);

    ngx_int_t retry_after = -1;
    async::wake_set wake{};
    ngx_shmtx_lock(&zone->shpool->mutex);
    async::admission a = async::ticket_queue_enter(
        zone->q, static_cast<uint32_t>(ngx_process_slot), entry->priority,
        ngx_current_msec, &entry->node, &wake);
    if (a == async::admission::passed) {
        async::admission_rate_note(zone->sh->rate, ngx_current_msec);
        async::histogram_record(zone->sh->wait, 0);
        async::histogram_record(zone->sh->class_wait[entry->priority], 0);
    } else if (a != async::admission::parked) {
        retry_after = ngx_http_async_queue_retry_after(alcf, zone);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    // the owner of a waiter this arrival evicted answers it
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);

    switch (a) {
        case async::admission::passed:
            entry->outcome = queue_outcome::passed;
            entry->holds_slot = true;
            entry->admitted_us = ngx_http_async_queue_now_us();
            return NGX_DECLINED;

        case async::admission::parked:
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "async_queue \"%V\": parked as node %uD",
                           &zone->name, entry->node);
            return ngx_http_async_queue_park(r, entry);

        case async::admission::no_room:
            if (ngx_time() != zone->last_no_room_log) {
                zone->last_no_room_log = ngx_time();
                ngx_log_error(
                    NGX_LOG_ERR, r->connection->log, 0,
                    "async_queue_zone \"%V\" has no room left in shared "
                    "memory; request rejected as if the queue were full",
                    &zone->name);
            }
            break;

        case async::admission::rejected:
            break;
    }

    entry->outcome = queue_outcome::rejected;
    return ngx_http_async_queue_refuse(r, alcf, retry_after);
}

static void ngx_http_async_queue_timeout(ngx_event_t *ev)
{
    auto *entry = static_cast<ngx_http_async_queue_entry_t *>(ev->data);
    ngx_http_async_queue_zone_t *zone = entry->zone;
    ngx_http_request_t *r = entry->r;
    ngx_connection_t *c = r->connection;

    async::wake_set wake{};
    ngx_int_t retry_after = -1;
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));

    ngx_shmtx_lock(&zone->shpool->mutex);
    // granted, evicted or dropped: the wake-up that tells so is on its way
    bool decided =
        zone->q->nodes()[entry->node].state != async::node_state::waiting;
    if (!decided) {
        async::ticket_queue_leave(zone->q, entry->node,
                                  async::leave_reason::timed_out, &wake);
        retry_after = ngx_http_async_queue_retry_after(alcf, zone);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (decided) {
        // decided just in time: take that instead of timing out
        ngx_http_async_queue_resume_granted(
            const_cast<ngx_cycle_t *>(ngx_cycle));
        return;
    }

    ngx_http_async_queue_unpark(entry);
    entry->outcome = queue_outcome::timed_out;
    entry->waited = ngx_current_msec - entry->entered;
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "async_queue \"%V\": request timed out after %M ms in queue",
                  &zone->name, entry->waited);
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_finalize_request(
        r, ngx_http_async_queue_refuse(r, alcf, retry_after));
    ngx_http_run_posted_requests(c);
}

static void ngx_http_async_queue_resume(ngx_http_async_queue_entry_t *entry)
{
    ngx_http_request_t *r = entry->r;
    ngx_connection_t *c = r->connection;

    ngx_http_async_queue_unpark(entry);
    entry->outcome = queue_outcome::queued;
    entry->holds_slot = true;
    entry->admitted_us = ngx_http_async_queue_now_us();

    if (r == r->main) {
        r->read_event_handler = ngx_http_block_reading;
    }
    r->write_event_handler = ngx_http_core_run_phases;
    if (ngx_http_post_request(r, nullptr) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
    ngx_http_run_posted_requests(c);
}

// A parked request evicted or dropped: answered at once, like a timeout.
static void ngx_http_async_queue_answer(ngx_http_async_queue_entry_t *entry,
                                        queue_outcome outcome)
{
    ngx_http_request_t *r = entry->r;
    ngx_connection_t *c = r->connection;
    ngx_http_async_queue_zone_t *zone = entry->zone;
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));

    ngx_http_async_queue_unpark(entry);
    entry->outcome = outcome;

    ngx_shmtx_lock(&zone->shpool->mutex);
    ngx_int_t retry_after = ngx_http_async_queue_retry_after(alcf, zone);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  outcome == queue_outcome::evicted
                      ? "async_queue \"%V\": request evicted by one of a "
                        "higher priority after %M ms in queue"
                      : "async_queue \"%V\": request dropped by CoDel after "
                        "%M ms in queue",
                  &zone->name, entry->waited);
    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_finalize_request(
        r, ngx_http_async_queue_refuse(r, alcf, retry_after));
    ngx_http_run_posted_requests(c);
}

// Answers this worker's requests that were evicted or dropped.
static void ngx_http_async_queue_answer_zone(ngx_cycle_t *cycle,
                                             ngx_http_async_queue_zone_t *zone)
{
    for (;;) {
        uint64_t waited = 0;
        async::node_state state = async::node_state::free;
        ngx_shmtx_lock(&zone->shpool->mutex);
        uint32_t node = async::ticket_queue_take_answered(
            zone->q, static_cast<uint32_t>(ngx_process_slot), ngx_current_msec,
            &waited, &state);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        if (node == async::no_node) {
            return;
        }
        ngx_http_async_queue_entry_t *entry = zone->parked[node];
        if (entry == nullptr) {
            ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                          "async_queue \"%V\": answered node %uD has no "
                          "request",
                          &zone->name, node);
            continue;
        }
        entry->waited = static_cast<ngx_msec_t>(waited);
        ngx_http_async_queue_answer(entry, state == async::node_state::evicted
                                               ? queue_outcome::evicted
                                               : queue_outcome::dropped);
    }
}

void ngx_http_async_queue_resume_granted(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr) {
        return;
    }
    auto *zones =
        static_cast<ngx_http_async_queue_zone_t **>(amcf->queue_zones.elts);

    for (ngx_uint_t i = 0; i < amcf->queue_zones.nelts; i++) {
        ngx_http_async_queue_zone_t *zone = zones[i];
        if (zone->q == nullptr || zone->parked == nullptr) {
            continue;
        }
        // one at a time: resuming a request may end others of this worker
        for (;;) {
            uint64_t waited = 0;
            ngx_shmtx_lock(&zone->shpool->mutex);
            uint32_t node = async::ticket_queue_take_granted(
                zone->q, static_cast<uint32_t>(ngx_process_slot),
                ngx_current_msec, &waited);
            if (node != async::no_node) {
                async::histogram_record(zone->sh->wait, waited);
                async::histogram_record(
                    zone->sh->class_wait[zone->q->nodes()[node].priority],
                    waited);
                async::admission_rate_note(zone->sh->rate, ngx_current_msec);
            }
            ngx_shmtx_unlock(&zone->shpool->mutex);

            if (node == async::no_node) {
                break;
            }
            ngx_http_async_queue_entry_t *entry = zone->parked[node];
            if (entry == nullptr) {
                // cannot happen: a leaving entry takes its node out first
                ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                              "async_queue \"%V\": granted node %uD has no "
                              "request",
                              &zone->name, node);
                continue;
            }
            entry->waited = static_cast<ngx_msec_t>(waited);
            ngx_http_async_queue_resume(entry);
        }
        ngx_http_async_queue_answer_zone(cycle, zone);
    }
}

// --- directives ---------------------------------------------------------

// priority=VALUE: 0..7, or a complex value checked per request.
static char *ngx_http_async_queue_priority_param(
    ngx_conf_t *cf, ngx_http_async_loc_conf_t *alcf, ngx_str_t *arg)
{
    static constexpr std::string_view key = "priority=";
    std::string_view a = async::view(*arg);
    if (a.substr(0, key.size()) != key || a.size() == key.size()) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"async_queue\"", arg);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_str_t value = {arg->len - key.size(), arg->data + key.size()};

    auto *cv = async::pool_calloc<ngx_http_complex_value_t>(cf->pool);
    if (cv == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_http_compile_complex_value_t ccv;
    ngx_memzero(&ccv, sizeof(ccv));
    ccv.cf = cf;
    ccv.value = &value;
    ccv.complex_value = cv;
    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (cv->lengths == nullptr) {
        ngx_int_t n = ngx_atoi(value.data, value.len);
        if (n < 0 || n >= static_cast<ngx_int_t>(async::queue_classes)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid priority \"%V\" in \"async_queue\": "
                               "must be between 0 and 7 or a variable",
                               &value);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }
    alcf->queue_priority = cv;
    return NGX_CONF_OK;
}

char *ngx_http_async_queue_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    if (alcf->queue != NGX_CONF_UNSET_PTR) {
        return const_cast<char *>("is duplicate");
    }
    if (async::view(value[1]) == "off") {
        if (cf->args->nelts > 2) {
            return const_cast<char *>("takes no priority= with \"off\"");
        }
        alcf->queue = nullptr;
        return NGX_CONF_OK;
    }
    if (cf->args->nelts > 2
        && ngx_http_async_queue_priority_param(cf, alcf, &value[2])
               != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_shm_zone_t *shm_zone = nullptr;
    if (ngx_http_async_queue_zone_ref(cf, &value[1], cmd->name, &shm_zone)
        != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    alcf->queue = shm_zone;
    return NGX_CONF_OK;
}

char *ngx_http_async_queue_retry_after_directive(ngx_conf_t *cf,
                                                 ngx_command_t *cmd, void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    (void) cmd;

    if (alcf->queue_retry_after != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }
    std::string_view arg = async::view(value[1]);
    if (arg == "auto") {
        alcf->queue_retry_after = NGX_HTTP_ASYNC_RETRY_AFTER_AUTO;
    } else if (arg == "off") {
        alcf->queue_retry_after = NGX_HTTP_ASYNC_RETRY_AFTER_OFF;
    } else {
        auto ms = ngx_http_async_parse_msec(arg);
        if (!ms || *ms > 86400 * 1000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid value \"%V\" in "
                               "\"async_queue_retry_after\"",
                               &value[1]);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        // Retry-After carries whole seconds; round a partial second up
        alcf->queue_retry_after = static_cast<ngx_int_t>((*ms + 999) / 1000);
    }
    return NGX_CONF_OK;
}

// --- variables ----------------------------------------------------------

static ngx_int_t ngx_http_async_queue_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data)
{
    (void) data;
    ngx_http_async_queue_entry_t *entry = ngx_http_async_queue_find(r, nullptr);
    if (entry == nullptr) {
        v->not_found = 1;
        return NGX_OK;
    }
    static const ngx_str_t names[] = {
        ngx_string("PASSED"),   ngx_string("QUEUED"),  ngx_string("QUEUED"),
        ngx_string("REJECTED"), ngx_string("TIMEOUT"), ngx_string("CANCELLED"),
        ngx_string("EVICTED"),  ngx_string("DROPPED"),
    };
    const ngx_str_t &name = names[static_cast<ngx_uint_t>(entry->outcome)];
    v->data = name.data;
    v->len = name.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

static ngx_int_t
ngx_http_async_queue_time_variable(ngx_http_request_t *r,
                                   ngx_http_variable_value_t *v, uintptr_t data)
{
    (void) data;
    ngx_http_async_queue_entry_t *entry = ngx_http_async_queue_find(r, nullptr);
    if (entry == nullptr) {
        v->not_found = 1;
        return NGX_OK;
    }
    ngx_msec_t ms = entry->outcome == queue_outcome::parked
                        ? ngx_current_msec - entry->entered
                        : entry->waited;
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4));
    if (p == nullptr) {
        return NGX_ERROR;
    }
    v->len =
        ngx_sprintf(p, "%T.%03M", static_cast<time_t>(ms / 1000), ms % 1000)
        - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

// The zone's concurrency limit now (with active=auto, the learned one).
static ngx_int_t ngx_http_async_queue_limit_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data)
{
    (void) data;
    ngx_http_async_queue_zone_t *zone = nullptr;
    ngx_http_async_queue_entry_t *entry = ngx_http_async_queue_find(r, nullptr);
    if (entry != nullptr) {
        zone = entry->zone;
    } else {
        auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_http_async_module));
        if (alcf->queue != nullptr) {
            zone =
                static_cast<ngx_http_async_queue_zone_t *>(alcf->queue->data);
        }
    }
    if (zone == nullptr || zone->q == nullptr) {
        v->not_found = 1;
        return NGX_OK;
    }
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT32_LEN));
    if (p == nullptr) {
        return NGX_ERROR;
    }
    ngx_shmtx_lock(&zone->shpool->mutex);
    uint32_t limit = zone->q->max_active;
    ngx_shmtx_unlock(&zone->shpool->mutex);
    v->len = ngx_sprintf(p, "%uD", limit) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

static ngx_http_variable_t ngx_http_async_queue_variables[] = {
    {ngx_string("async_queue_status"), nullptr,
     ngx_http_async_queue_status_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("async_queue_time"), nullptr,
     ngx_http_async_queue_time_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("async_queue_limit"), nullptr,
     ngx_http_async_queue_limit_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    ngx_http_null_variable};

ngx_int_t ngx_http_async_queue_add_variables(ngx_conf_t *cf)
{
    return async::add_variables(cf, ngx_http_async_queue_variables);
}

ngx_int_t ngx_http_async_queue_init(ngx_conf_t *cf)
{
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto *h = static_cast<ngx_http_handler_pt *>(
        ngx_array_push(&cmcf->phases[NGX_HTTP_PREACCESS_PHASE].handlers));
    if (h == nullptr) {
        return NGX_ERROR;
    }
    *h = ngx_http_async_queue_handler;

    // every zone named by async_queue must be defined by async_queue_zone
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    return ngx_http_async_zones_check_defined<ngx_http_async_queue_zone_t>(
        cf, &amcf->queue_zones, "async_queue_zone");
}
