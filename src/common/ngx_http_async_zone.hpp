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
