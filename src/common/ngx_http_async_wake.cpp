// Wake-up between worker processes.
//
// The master creates one private directory per nginx instance (mkdtemp
// under $TMPDIR or /tmp: a random name, mode 0700, owned by the workers'
// user) and keeps it across reloads; it removes it when it exits. Each
// worker binds a datagram socket there named after its pid and registers
// it in its own event loop; a worker that hands a slot to another worker's
// waiter sends it one byte. The pid names cannot collide across PID
// namespaces (each instance has its own directory), and no other uid can
// bind, connect or send there: the kernel checks the directory's search
// permission on every connect and send to a path. The receiver also drops
// datagrams whose kernel-attested sender (SCM_CREDENTIALS) is another uid.
//
// A slow safety timer covers a lost datagram, slots of processes that
// vanished, and every failure to set the sockets up: those log one [alert]
// and never stop a worker.
#include "common/ngx_http_async_wake.hpp"
#include "common/ngx_http_async_event.hpp"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static constexpr ngx_msec_t safety_interval = 1000;
static constexpr ngx_uint_t max_concerns = 4;
static constexpr int max_reads = 1024;

struct ngx_http_async_wake_concern_t {
    ngx_http_async_wake_handler_pt on_wake;
    ngx_http_async_wake_handler_pt on_reap;
};

static ngx_http_async_wake_concern_t ngx_http_async_wake_concerns[max_concerns];
static ngx_uint_t ngx_http_async_wake_nconcerns;

// The instance's directory: set in the master, inherited by every worker
// it forks, kept across reloads; "" when it could not be created.
static char ngx_http_async_wake_dir[sizeof(sockaddr_un::sun_path)];

static ngx_connection_t *ngx_http_async_wake_conn; // bound, in the event loop
static ngx_socket_t ngx_http_async_wake_fd = -1;   // sends (bound or not)
static bool ngx_http_async_wake_bound;
static uid_t ngx_http_async_wake_uid; // the only uid whose datagrams count

static async::event_ident ngx_http_async_wake_ident;
static ngx_event_t ngx_http_async_wake_local; // a wake of this very worker
static ngx_event_t ngx_http_async_wake_safety;

// --- addresses ------------------------------------------------------------

// dir/<pid>; false when it does not fit in sun_path.
static bool ngx_http_async_wake_address(ngx_pid_t pid, struct sockaddr_un *sun,
                                        socklen_t *len)
{
    ngx_memzero(sun, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    size_t dlen = ngx_strlen(ngx_http_async_wake_dir);
    if (dlen == 0 || dlen + 1 + NGX_INT64_LEN + 1 > sizeof(sun->sun_path)) {
        return false;
    }
    auto *p = reinterpret_cast<u_char *>(sun->sun_path);
    u_char *last = ngx_sprintf(p, "%s/%P", ngx_http_async_wake_dir, pid);
    *last = '\0';
    *len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path)
                                  + (last - p) + 1);
    return true;
}

// --- handlers -------------------------------------------------------------

static void ngx_http_async_wake_run(ngx_cycle_t *cycle)
{
    for (ngx_uint_t i = 0; i < ngx_http_async_wake_nconcerns; i++) {
        if (ngx_http_async_wake_concerns[i].on_wake != nullptr) {
            ngx_http_async_wake_concerns[i].on_wake(cycle);
        }
    }
}

// Whether a datagram comes from this instance's uid, as the kernel saw it.
static bool ngx_http_async_wake_sender_ok(struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm != nullptr;
         cm = CMSG_NXTHDR(msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS
            && cm->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            ngx_memcpy(&cred, CMSG_DATA(cm), sizeof(cred));
            return cred.uid == ngx_http_async_wake_uid;
        }
    }
    return false;
}

static void ngx_http_async_wake_read(ngx_event_t *rev)
{
    auto *c = static_cast<ngx_connection_t *>(rev->data);
    ngx_uint_t accepted = 0;
    ngx_uint_t refused = 0;
    // the socket is edge-triggered: drain it before looking at the queues
    for (int i = 0; i < max_reads; i++) {
        u_char buf[16];
        union {
            struct cmsghdr align;
            u_char space[CMSG_SPACE(sizeof(struct ucred))];
        } control;
        struct iovec iov = {buf, sizeof(buf)};
        struct msghdr msg;
        ngx_memzero(&msg, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = &control;
        msg.msg_controllen = sizeof(control);
        if (recvmsg(c->fd, &msg, MSG_CMSG_CLOEXEC) < 0) {
            break;
        }
        if (ngx_http_async_wake_sender_ok(&msg)) {
            accepted++;
        } else {
            refused++;
        }
    }
    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rev->log, 0,
                   "async wake-up: %ui received, %ui refused", accepted,
                   refused);
    if (accepted > 0) {
        ngx_http_async_wake_run(const_cast<ngx_cycle_t *>(ngx_cycle));
    }
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
    for (ngx_uint_t i = 0; i < ngx_http_async_wake_nconcerns; i++) {
        if (ngx_http_async_wake_concerns[i].on_reap != nullptr) {
            ngx_http_async_wake_concerns[i].on_reap(cycle);
        }
    }
    ngx_http_async_wake_run(cycle);
    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, safety_interval);
    }
}

// --- sending --------------------------------------------------------------

static void ngx_http_async_wake_send(ngx_pid_t pid)
{
    if (ngx_http_async_wake_fd == -1) {
        return;
    }
    struct sockaddr_un sun;
    socklen_t len;
    if (!ngx_http_async_wake_address(pid, &sun, &len)) {
        return;
    }
    // EAGAIN means a wake-up is already pending; a vanished worker is
    // reaped by the safety timer
    (void) sendto(ngx_http_async_wake_fd, "w", 1, MSG_DONTWAIT,
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

// --- registration ---------------------------------------------------------

ngx_int_t ngx_http_async_wake_register(ngx_http_async_wake_handler_pt on_wake,
                                       ngx_http_async_wake_handler_pt on_reap)
{
    for (ngx_uint_t i = 0; i < ngx_http_async_wake_nconcerns; i++) {
        if (ngx_http_async_wake_concerns[i].on_wake == on_wake
            && ngx_http_async_wake_concerns[i].on_reap == on_reap) {
            return NGX_OK;
        }
    }
    if (ngx_http_async_wake_nconcerns == max_concerns) {
        return NGX_ERROR;
    }
    ngx_http_async_wake_concerns[ngx_http_async_wake_nconcerns++] = {on_wake,
                                                                     on_reap};
    return NGX_OK;
}

// --- the master: the instance's directory --------------------------------

// The directory is usable as it stands: a directory (not a link), owned
// by uid, closed to everyone else.
static bool ngx_http_async_wake_dir_ok(uid_t uid)
{
    struct stat st;
    return lstat(ngx_http_async_wake_dir, &st) == 0 && S_ISDIR(st.st_mode)
           && st.st_uid == uid && (st.st_mode & 077) == 0;
}

ngx_int_t ngx_http_async_wake_init_module(ngx_cycle_t *cycle)
{
    if (ngx_test_config || ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_OK;
    }
    auto *ccf = reinterpret_cast<ngx_core_conf_t *>(
        ngx_get_conf(cycle->conf_ctx, ngx_core_module));
    // workers switch to `user` only when the master runs as root
    bool root = geteuid() == 0;
    bool switch_user = root && ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT;
    uid_t uid = switch_user ? ccf->user : geteuid();
    gid_t gid = switch_user ? ccf->group : getegid();

    if (ngx_http_async_wake_dir[0] != '\0') {
        // a reload: the same directory, so old and new workers, which
        // share the queue zones, still wake each other
        if (ngx_http_async_wake_dir_ok(uid)) {
            return NGX_OK;
        }
        struct stat st;
        if (root && lstat(ngx_http_async_wake_dir, &st) == 0
            && S_ISDIR(st.st_mode)
            && chown(ngx_http_async_wake_dir, uid, gid) == 0
            && ngx_http_async_wake_dir_ok(uid)) {
            // `user` changed: the old workers cannot reach the new ones
            // any more, and wait for the safety timer until they exit
            return NGX_OK;
        }
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "async: wake-up directory \"%s\" is gone or changed, "
                      "creating another one",
                      ngx_http_async_wake_dir);
        ngx_http_async_wake_dir[0] = '\0';
    }

    const char *base = getenv("TMPDIR");
    if (base == nullptr || base[0] == '\0') {
        base = "/tmp";
    }
    char path[sizeof(ngx_http_async_wake_dir)];
    size_t blen = ngx_strlen(base);
    static constexpr char suffix[] = "/nginx-async-XXXXXX";
    // room for "/<pid>" and the NUL after the directory
    if (blen + sizeof(suffix) + 1 + NGX_INT64_LEN > sizeof(path)) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "async: TMPDIR \"%s\" is too long for wake-up sockets; "
                      "workers wake each other only every %Ms",
                      base, safety_interval / 1000);
        return NGX_OK;
    }
    ngx_memcpy(path, base, blen);
    ngx_memcpy(path + blen, suffix, sizeof(suffix));

    if (mkdtemp(path) == nullptr) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "async: cannot create a wake-up directory in \"%s\"; "
                      "workers wake each other only every %Ms",
                      base, safety_interval / 1000);
        return NGX_OK;
    }
    // mkdtemp's 0700 went through the umask; and the workers bind there
    if (chmod(path, S_IRWXU) == -1
        || (uid != geteuid() && chown(path, uid, gid) == -1)) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "async: cannot hand the wake-up directory \"%s\" to "
                      "the workers' user; workers wake each other only "
                      "every %Ms",
                      path, safety_interval / 1000);
        (void) rmdir(path);
        return NGX_OK;
    }
    ngx_memcpy(ngx_http_async_wake_dir, path, ngx_strlen(path) + 1);
    ngx_log_debug1(NGX_LOG_DEBUG_CORE, cycle->log, 0,
                   "async wake-up directory \"%s\"", ngx_http_async_wake_dir);
    return NGX_OK;
}

void ngx_http_async_wake_exit_master(ngx_cycle_t *cycle)
{
    if (ngx_http_async_wake_dir[0] == '\0') {
        return;
    }
    // sockets of workers that crashed are still there
    DIR *dir = opendir(ngx_http_async_wake_dir);
    if (dir != nullptr) {
        char path[sizeof(ngx_http_async_wake_dir) + NAME_MAX + 2];
        for (struct dirent *de = readdir(dir); de != nullptr;
             de = readdir(dir)) {
            if (ngx_strcmp(de->d_name, ".") == 0
                || ngx_strcmp(de->d_name, "..") == 0) {
                continue;
            }
            u_char *last =
                ngx_snprintf(reinterpret_cast<u_char *>(path), sizeof(path) - 1,
                             "%s/%s", ngx_http_async_wake_dir, de->d_name);
            *last = '\0';
            (void) unlink(path);
        }
        closedir(dir);
    }
    if (rmdir(ngx_http_async_wake_dir) == -1) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                      "async: cannot remove the wake-up directory \"%s\"",
                      ngx_http_async_wake_dir);
    }
    ngx_http_async_wake_dir[0] = '\0';
}

// --- the worker -----------------------------------------------------------

// Binds this worker's socket and adds it to the event loop; on failure,
// logs one [alert] and leaves the worker to the safety timer.
static void ngx_http_async_wake_open(ngx_cycle_t *cycle)
{
    if (ngx_http_async_wake_dir[0] == '\0') {
        // the master logged why
        return;
    }
    struct sockaddr_un sun;
    socklen_t len;
    if (!ngx_http_async_wake_address(ngx_pid, &sun, &len)) {
        return;
    }
    ngx_http_async_wake_uid = geteuid();

    ngx_socket_t fd =
        socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "async: socket() for wake-ups failed; this worker "
                      "wakes and is woken only every %Ms",
                      safety_interval / 1000);
        return;
    }
    ngx_http_async_wake_fd = fd;

    const char *err = nullptr;
    int on = 1;
    // a socket of a dead process whose pid this worker got
    (void) unlink(sun.sun_path);
    if (bind(fd, reinterpret_cast<struct sockaddr *>(&sun), len) == -1) {
        err = "bind()";
    } else {
        ngx_http_async_wake_bound = true;
        if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == -1) {
            err = "setsockopt(SO_PASSCRED)";
        }
    }
    if (err != nullptr) {
        // still a socket to wake the others with
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_socket_errno,
                      "async: %s of the wake-up socket \"%s\" failed; this "
                      "worker is woken only every %Ms",
                      err, sun.sun_path, safety_interval / 1000);
        return;
    }

    ngx_connection_t *c = ngx_get_connection(fd, cycle->log);
    if (c == nullptr) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "async: no connection for the wake-up socket; this "
                      "worker is woken only every %Ms",
                      safety_interval / 1000);
        return;
    }
    c->read->handler = ngx_http_async_wake_read;
    c->read->log = cycle->log;
    c->write->log = cycle->log;
    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "async: cannot watch the wake-up socket; this worker "
                      "is woken only every %Ms",
                      safety_interval / 1000);
        // closes fd too
        ngx_close_connection(c);
        ngx_http_async_wake_fd = -1;
        return;
    }
    ngx_http_async_wake_conn = c;
}

ngx_int_t ngx_http_async_wake_init_process(ngx_cycle_t *cycle)
{
    async::event_init(&ngx_http_async_wake_local, &ngx_http_async_wake_ident,
                      ngx_http_async_wake_local_handler, cycle->log);
    async::event_init(&ngx_http_async_wake_safety, &ngx_http_async_wake_ident,
                      ngx_http_async_wake_safety_handler, cycle->log);
    ngx_http_async_wake_safety.cancelable = 1;
    ngx_add_timer(&ngx_http_async_wake_safety, safety_interval);

    ngx_http_async_wake_open(cycle);
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
    if (ngx_http_async_wake_bound) {
        struct sockaddr_un sun;
        socklen_t len;
        if (ngx_http_async_wake_address(ngx_pid, &sun, &len)) {
            (void) unlink(sun.sun_path);
        }
        ngx_http_async_wake_bound = false;
    }
    if (ngx_http_async_wake_conn != nullptr) {
        ngx_close_connection(ngx_http_async_wake_conn);
        ngx_http_async_wake_conn = nullptr;
    } else if (ngx_http_async_wake_fd != -1) {
        (void) close(ngx_http_async_wake_fd);
    }
    ngx_http_async_wake_fd = -1;
}
