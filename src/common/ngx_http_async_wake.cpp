// Wake-up between worker processes. Each worker binds a datagram socket in
// the abstract UNIX namespace, named after its pid, and registers it in its
// own event loop; a worker that hands a slot to another worker's waiter
// sends it one byte. A slow safety timer covers a lost datagram and slots
// of processes that vanished.
#include "common/ngx_http_async_wake.hpp"
#include "job/ngx_http_async_job.hpp"
#include "queue/ngx_http_async_queue.hpp"

#include <sys/socket.h>
#include <sys/un.h>

static constexpr ngx_msec_t safety_interval = 1000;

static ngx_connection_t *ngx_http_async_wake_conn;
static ngx_event_t ngx_http_async_wake_local; // a wake of this very worker
static ngx_event_t ngx_http_async_wake_safety;

static socklen_t ngx_http_async_wake_address(ngx_pid_t pid,
                                             struct sockaddr_un *sun)
{
    ngx_memzero(sun, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    // abstract name: leading NUL, never a file, gone with the process
    u_char *p = reinterpret_cast<u_char *>(sun->sun_path) + 1;
    u_char *last = ngx_sprintf(p, "ngx_http_async/%P", pid);
    return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1
                                  + (last - p));
}

// Every concern's reaction to a wake-up.
static void ngx_http_async_wake_run(ngx_cycle_t *cycle)
{
    ngx_http_async_queue_resume_granted(cycle);
    ngx_http_async_job_wake(cycle);
}

static void ngx_http_async_wake_read(ngx_event_t *rev)
{
    auto *c = static_cast<ngx_connection_t *>(rev->data);
    u_char buf[64];
    // the socket is edge-triggered: drain it before looking at the queues
    for (int i = 0; i < 1024; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0) {
            break;
        }
    }
    ngx_http_async_wake_run(const_cast<ngx_cycle_t *>(ngx_cycle));
    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "async: cannot re-arm the wake-up socket");
    }
}

static void ngx_http_async_wake_local_handler(ngx_event_t *ev)
{
    (void) ev;
    ngx_http_async_wake_run(const_cast<ngx_cycle_t *>(ngx_cycle));
}

static void ngx_http_async_wake_safety_handler(ngx_event_t *ev)
{
    auto *cycle = const_cast<ngx_cycle_t *>(ngx_cycle);
    ngx_http_async_queue_reap(cycle);
    ngx_http_async_job_reap(cycle);
    ngx_http_async_wake_run(cycle);
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, safety_interval);
    }
}

static void ngx_http_async_wake_send(ngx_pid_t pid)
{
    if (ngx_http_async_wake_conn == nullptr) {
        return;
    }
    struct sockaddr_un sun;
    socklen_t len = ngx_http_async_wake_address(pid, &sun);
    // EAGAIN means a wake-up is already pending; a vanished worker is
    // reaped by the safety timer
    (void) sendto(ngx_http_async_wake_conn->fd, "w", 1, MSG_DONTWAIT,
                  reinterpret_cast<struct sockaddr *>(&sun), len);
}

void ngx_http_async_wake_pid(ngx_pid_t pid)
{
    if (pid == ngx_pid) {
        if (ngx_http_async_wake_local.handler != nullptr
            && !ngx_http_async_wake_local.posted) {
            ngx_post_event(&ngx_http_async_wake_local, &ngx_posted_events);
        }
        return;
    }
    if (pid > 0) {
        ngx_http_async_wake_send(pid);
    }
}

void ngx_http_async_wake_owners(ngx_slab_pool_t *shpool,
                                const async::ticket_queue *q,
                                const async::wake_set &wake)
{
    if (!wake.overflow) {
        for (uint32_t i = 0; i < wake.count; i++) {
            ngx_http_async_wake_pid(static_cast<ngx_pid_t>(wake.pids[i]));
        }
        return;
    }

    ngx_pid_t pids[async::max_queue_owners];
    ngx_uint_t npids = 0;
    ngx_shmtx_lock(&shpool->mutex);
    for (const async::queue_owner &o : q->owners) {
        if (o.granted.head != async::no_node && o.pid != 0) {
            pids[npids++] = static_cast<ngx_pid_t>(o.pid);
        }
    }
    ngx_shmtx_unlock(&shpool->mutex);
    for (ngx_uint_t i = 0; i < npids; i++) {
        ngx_http_async_wake_pid(pids[i]);
    }
}

void ngx_http_async_release_slot(ngx_slab_pool_t *shpool,
                                 async::ticket_queue *q)
{
    async::wake_set wake{};
    ngx_shmtx_lock(&shpool->mutex);
    async::ticket_queue_release(q, static_cast<uint32_t>(ngx_process_slot),
                                &wake);
    ngx_shmtx_unlock(&shpool->mutex);
    ngx_http_async_wake_owners(shpool, q, wake);
}

ngx_int_t ngx_http_async_wake_init_process(ngx_cycle_t *cycle)
{
    ngx_http_async_wake_local.handler = ngx_http_async_wake_local_handler;
    ngx_http_async_wake_local.log = cycle->log;
    ngx_http_async_wake_local.data = cycle;

    ngx_http_async_wake_safety.handler = ngx_http_async_wake_safety_handler;
    ngx_http_async_wake_safety.log = cycle->log;
    ngx_http_async_wake_safety.data = cycle;
    ngx_http_async_wake_safety.cancelable = 1;
    ngx_add_timer(&ngx_http_async_wake_safety, safety_interval);

    ngx_socket_t fd =
        socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "async: socket() for wake-ups failed");
        return NGX_ERROR;
    }
    struct sockaddr_un sun;
    socklen_t len = ngx_http_async_wake_address(ngx_pid, &sun);
    if (bind(fd, reinterpret_cast<struct sockaddr *>(&sun), len) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "async: bind() of the wake-up socket failed");
        close(fd);
        return NGX_ERROR;
    }

    ngx_connection_t *c = ngx_get_connection(fd, cycle->log);
    if (c == nullptr) {
        close(fd);
        return NGX_ERROR;
    }
    c->read->handler = ngx_http_async_wake_read;
    c->read->log = cycle->log;
    c->write->log = cycle->log;
    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }
    ngx_http_async_wake_conn = c;
    return NGX_OK;
}

void ngx_http_async_wake_exit_process(ngx_cycle_t *cycle)
{
    (void) cycle;
    if (ngx_http_async_wake_safety.timer_set) {
        ngx_del_timer(&ngx_http_async_wake_safety);
    }
    if (ngx_http_async_wake_local.posted) {
        ngx_delete_posted_event(&ngx_http_async_wake_local);
    }
    if (ngx_http_async_wake_conn != nullptr) {
        ngx_close_connection(ngx_http_async_wake_conn);
        ngx_http_async_wake_conn = nullptr;
    }
}
