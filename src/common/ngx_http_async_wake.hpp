// Wake-up between worker processes (ngx_http_async_wake.cpp): a worker that
// hands a queue slot to a request parked in another worker, or finishes
// something another worker waits for, wakes that worker. A woken worker
// runs every concern's wake handler (see ngx_http_async_wake_run).
#pragma once

#include "ngx_http_async_module.hpp"
#include "core/ticket_queue.hpp"

ngx_int_t ngx_http_async_wake_init_process(ngx_cycle_t *cycle);
void ngx_http_async_wake_exit_process(ngx_cycle_t *cycle);

// Wakes the worker with this pid; this very worker is woken through a
// posted event, never from inside the caller's stack.
void ngx_http_async_wake_pid(ngx_pid_t pid);

// Wakes the owners a ticket queue dispatch named. The lock of shpool must
// not be held; it is taken only when the set overflowed.
void ngx_http_async_wake_owners(ngx_slab_pool_t *shpool,
                                const async::ticket_queue *q,
                                const async::wake_set &wake);

// Gives one slot of q held by this worker back, under shpool's lock, and
// wakes the worker of the waiter it went to.
void ngx_http_async_release_slot(ngx_slab_pool_t *shpool,
                                 async::ticket_queue *q);
