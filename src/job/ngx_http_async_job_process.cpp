// The job concern's part of a worker's life: what it does with the job
// zones when it starts (claims its process slot, fails the jobs of a
// crashed predecessor), on every wake-up and safety tick, and when it
// exits. The store itself is ngx_http_async_job_store.cpp.
#include "job/ngx_http_async_job.hpp"

static void ngx_http_async_job_log_lost(ngx_cycle_t *cycle,
                                        ngx_http_async_job_zone_t *zone,
                                        uint32_t lost)
{
    if (lost > 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "async_job_zone \"%V\": %uD jobs of exited worker "
                      "processes failed (worker_lost)",
                      &zone->name, lost);
    }
}

// This worker's tables of runs and waiters for one zone.
static ngx_int_t
ngx_http_async_job_worker_tables(ngx_cycle_t *cycle,
                                 ngx_http_async_job_zone_t *zone)
{
    ngx_queue_init(&zone->runs);
    ngx_queue_init(&zone->watched);
    zone->by_node = async::pool_calloc_array<ngx_http_async_job_run_t *>(
        cycle->pool, zone->q->capacity + 1);
    zone->watches = async::pool_calloc_array<ngx_http_async_job_watch_t>(
        cycle->pool, zone->table->capacity);
    if (zone->by_node == nullptr || zone->watches == nullptr) {
        return NGX_ERROR;
    }
    for (uint32_t k = 0; k < zone->table->capacity; k++) {
        ngx_queue_init(&zone->watches[k].waiters);
        zone->watches[k].index = k;
    }
    return NGX_OK;
}

// A worker starts: take over this process slot (a crashed predecessor's
// jobs fail with worker_lost, its queue places and slots are given back)
// and set up this worker's tables.
ngx_int_t ngx_http_async_job_init_process(ngx_cycle_t *cycle)
{
    ngx_int_t rc = NGX_OK;
    ngx_http_async_job_zones_each(cycle, [&](ngx_http_async_job_zone_t *zone) {
        if (zone->table == nullptr || rc != NGX_OK) {
            return;
        }
        if (ngx_http_async_job_worker_tables(cycle, zone) != NGX_OK
            || ngx_http_async_job_redis_init_process(cycle, zone) != NGX_OK) {
            rc = NGX_ERROR;
            return;
        }
        uint64_t now = ngx_http_async_job_now_ms();
        uint32_t lost = 0;
        ngx_http_async_zone_reclaim(zone, true, [&] {
            lost = async::job_table_lose_owner(
                zone->table, static_cast<uint32_t>(ngx_process_slot), ngx_pid,
                now, zone->sh->ttl_ms);
            lost += async::job_table_lose_dead(
                zone->table, ngx_http_async_pid_alive, now, zone->sh->ttl_ms);
            zone->seen_changes = zone->table->changes;
        });
        ngx_http_async_job_log_lost(cycle, zone, lost);
        if (lost > 0) {
            ngx_http_async_job_wake_all(zone);
        }
    });
    if (rc == NGX_OK) {
        rc = ngx_http_async_job_redis_start(cycle);
    }
    return rc;
}

void ngx_http_async_job_exit_process(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr || amcf->job_zones.nelts == 0) {
        return;
    }
    ngx_http_async_job_runs_exit(cycle);
    ngx_http_async_job_zones_each(cycle, ngx_http_async_job_redis_exit_process);
}

// Safety timer: jobs and slots of processes that vanished, expired jobs.
void ngx_http_async_job_reap(ngx_cycle_t *cycle)
{
    ngx_http_async_job_zones_each(cycle, [&](ngx_http_async_job_zone_t *zone) {
        if (zone->table == nullptr) {
            return;
        }
        uint64_t now = ngx_http_async_job_now_ms();
        uint32_t lost = 0;
        ngx_http_async_zone_reclaim(zone, false, [&] {
            lost = async::job_table_lose_dead(
                zone->table, ngx_http_async_pid_alive, now, zone->sh->ttl_ms);
            ngx_http_async_job_expire_locked(zone, now);
        });
        ngx_http_async_job_log_lost(cycle, zone, lost);
        if (lost > 0) {
            ngx_http_async_job_wake_all(zone);
        }
    });
}

void ngx_http_async_job_wake(ngx_cycle_t *cycle)
{
    ngx_http_async_job_runs_wake(cycle);
    ngx_http_async_job_waiters_wake(cycle);
}
