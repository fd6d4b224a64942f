// What queue zones and job zones share: an admission queue
// (core/ticket_queue) in a slab pool of shared memory, with one owner
// record per nginx process slot, set up by a zone's init in every cycle and
// claimed by every worker when it starts.
#pragma once

#include "ngx_http_async_module.hpp"
#include "common/ngx_http_async_wake.hpp"
#include "core/ticket_queue.hpp"

// The part of a zone every kind has; a kind's zone derives from it.
struct ngx_http_async_zone_t {
    ngx_str_t name;
    ngx_uint_t max_active;
    ngx_uint_t length;
    ngx_shm_zone_t *shm_zone;
    bool defined;            // by its directive; else only referenced
    ngx_str_t ref_directive; // the first reference, for "unknown zone"
    u_char *ref_file;
    ngx_uint_t ref_line;

    // set up by the zone's init in every cycle
    ngx_slab_pool_t *shpool;
    async::ticket_queue *q;
};

// How one kind of zone lays out its block of shared memory.
struct ngx_http_async_zone_ops_t {
    const char *directive; // in the slab pool's log lines
    // Points zone at a block an earlier cycle set up (reload, or the
    // memory exists already).
    void (*attach)(ngx_http_async_zone_t *zone, void *block);
    // Reload, under the lock: the new configuration's values other than
    // max_active and length.
    void (*reconfigure)(ngx_http_async_zone_t *zone);
    // New memory: allocates and sets up the block, and attaches zone to
    // it; nullptr (and an [emerg]) when it does not fit.
    void *(*create)(ngx_http_async_zone_t *zone, ngx_shm_zone_t *shm_zone);
};

// The zone named name of one kind (its shared memory tag), created at its
// first definition or reference (size 0) and then pushed to zones, an
// array of Z *: a location may name a zone before the http block defines
// it.
template <class Z>
Z *ngx_http_async_zone_get(ngx_conf_t *cf, ngx_str_t *name, size_t size,
                           void *tag, ngx_array_t *zones,
                           ngx_shm_zone_init_pt init)
{
    ngx_shm_zone_t *shm_zone = ngx_shared_memory_add(cf, name, size, tag);
    if (shm_zone == nullptr) {
        return nullptr;
    }
    if (shm_zone->data != nullptr) {
        return static_cast<Z *>(shm_zone->data);
    }
    auto *zone = async::pool_calloc<Z>(cf->pool);
    auto **slot = static_cast<Z **>(ngx_array_push(zones));
    if (zone == nullptr || slot == nullptr) {
        return nullptr;
    }
    zone->name = *name;
    zone->shm_zone = shm_zone;
    *slot = zone;
    shm_zone->init = init;
    shm_zone->data = zone;
    return zone;
}

// The zones of one kind in the cycle's http block (none without one), as a
// range: for (Z *zone : ngx_http_async_zones<Z>(cycle, &...::queue_zones)).
template <class Z>
struct ngx_http_async_zone_range_t {
    Z **first;
    Z **last;
    Z **begin() const { return first; }
    Z **end() const { return last; }
};

template <class Z>
ngx_http_async_zone_range_t<Z>
ngx_http_async_zones(ngx_cycle_t *cycle,
                     ngx_array_t ngx_http_async_main_conf_t::*zones)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr) {
        return {nullptr, nullptr};
    }
    auto *z = static_cast<Z **>((amcf->*zones).elts);
    return {z, z + (amcf->*zones).nelts};
}

// A location's directive names zone: remembered for "unknown zone".
void ngx_http_async_zone_note_ref(ngx_conf_t *cf, ngx_http_async_zone_t *zone,
                                  const ngx_str_t &directive);

// The zone's own directive: once per name.
char *ngx_http_async_zone_define(ngx_conf_t *cf, ngx_http_async_zone_t *zone,
                                 const char *directive);

// postconfiguration: every zone a location named must be defined.
ngx_int_t ngx_http_async_zone_check_defined(ngx_conf_t *cf,
                                            ngx_http_async_zone_t *zone,
                                            const char *directive);

template <class Z>
ngx_int_t ngx_http_async_zones_check_defined(ngx_conf_t *cf, ngx_array_t *zones,
                                             const char *directive)
{
    auto *z = static_cast<Z **>(zones->elts);
    for (ngx_uint_t i = 0; i < zones->nelts; i++) {
        if (ngx_http_async_zone_check_defined(cf, z[i], directive) != NGX_OK) {
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

// Rows of S, one per zone whose memory is set up: a report's copy.
template <class S>
struct ngx_http_async_zone_rows_t {
    S *rows;
    ngx_uint_t n;
};

// Copies every zone of zones (an array of Z *) whose memory is set up into
// a row, with copy(zone, row) under that zone's lock; nullptr: no memory.
template <class Z, class S, class F>
ngx_http_async_zone_rows_t<S> *
ngx_http_async_zones_copy(ngx_pool_t *pool, const ngx_array_t &zones, F &&copy)
{
    auto *out = async::pool_calloc<ngx_http_async_zone_rows_t<S>>(pool);
    if (out == nullptr) {
        return nullptr;
    }
    if (zones.nelts > 0) {
        out->rows = async::pool_calloc_array<S>(pool, zones.nelts);
        if (out->rows == nullptr) {
            return nullptr;
        }
    }
    auto *z = static_cast<Z **>(zones.elts);
    for (ngx_uint_t i = 0; i < zones.nelts; i++) {
        Z *zone = z[i];
        if (zone->q == nullptr) {
            continue;
        }
        S &row = out->rows[out->n++];
        ngx_shmtx_lock(&zone->shpool->mutex);
        copy(zone, row);
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
    return out;
}

// The shm_zone->init of a zone of the module. A reload with the same name
// and size keeps the block and everything in it, and takes the new limits
// (waiters a larger max_active admitted belong to old workers, whose safety
// timer picks them up).
ngx_int_t ngx_http_async_zone_init(ngx_shm_zone_t *shm_zone, void *data,
                                   const ngx_http_async_zone_ops_t &ops);

// Whether the process with this pid may still exist.
bool ngx_http_async_pid_alive(int64_t pid);

// Gives back, under the zone's lock, what processes that vanished held,
// after this worker took over its process slot (claim) or not; locked()
// runs under the same lock. Wakes the workers whose waiters got what was
// given back. Returns how many slots and places were given back.
template <class F>
uint32_t ngx_http_async_zone_reclaim(ngx_http_async_zone_t *zone, bool claim,
                                     F &&locked)
{
    async::wake_set wake{};
    uint32_t n = 0;
    ngx_shmtx_lock(&zone->shpool->mutex);
    if (claim) {
        n += async::ticket_queue_claim(
            zone->q, static_cast<uint32_t>(ngx_process_slot), ngx_pid, &wake);
    }
    n += async::ticket_queue_reap(zone->q, ngx_http_async_pid_alive, &wake);
    locked();
    ngx_shmtx_unlock(&zone->shpool->mutex);
    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
    return n;
}
