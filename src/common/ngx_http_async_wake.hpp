// Wake-up between worker processes (ngx_http_async_wake.cpp): a worker that
// hands a queue slot to a request parked in another worker, or finishes
// something another worker waits for, wakes that worker. A woken worker
// runs the wake handler of every concern that registered one; a slow
// safety timer runs their reap handlers, then their wake handlers.
//
// wake knows no concern: the module shell registers their handlers.
#pragma once

#include "ngx_http_async_module.hpp"
#include "core/ticket_queue.hpp"

using ngx_http_async_wake_handler_pt = void (*)(ngx_cycle_t *cycle);

// Adds one concern's handlers (either may be nullptr), before
// ngx_http_async_wake_init_process, in every process that serves requests.
ngx_int_t ngx_http_async_wake_register(ngx_http_async_wake_handler_pt on_wake,
                                       ngx_http_async_wake_handler_pt on_reap);

// In the master (init module, every cycle): the instance's private
// directory of wake-up sockets. Never fails the cycle: a failure logs one
// [alert], and workers then wake each other only by the safety timer.
ngx_int_t ngx_http_async_wake_init_module(ngx_cycle_t *cycle);
// In the master on exit: removes that directory.
void ngx_http_async_wake_exit_master(ngx_cycle_t *cycle);

// Never fails the worker either (one [alert], then the safety timer only).
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
