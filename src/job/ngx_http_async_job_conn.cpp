// The nginx end of a job's socketpair: a connection as ngx_event_accept()
// makes one, on a copy of the client's listening, so that the job's request
// runs through ngx_http_init_connection() and every phase and filter, as a
// client's would. A POST_READ handler recognises these connections by their
// listening and marks the request internal (job targets are usually
// "internal;" locations) with the job's id for $async_job_id.
#include "job/ngx_http_async_job_run.hpp"

// Lives in the nginx end's pool: exactly as long as that connection.
struct ngx_http_async_job_link_t {
    ngx_listening_t ls; // a copy of the client's; servers is port
    ngx_http_port_t port;
    ngx_http_in_addr_t in;
#if (NGX_HAVE_INET6)
    ngx_http_in6_addr_t in6;
#endif
    char id[async::id_chars];
    async::job_state state;
};

// The handler of a copied listening: nginx never accepts on it (it has no
// socket), so it only marks the connection as a job's.
static void ngx_http_async_job_listening_handler(ngx_connection_t *c)
{
    ngx_http_init_connection(c);
}

static ngx_http_async_job_link_t *
ngx_http_async_job_link_of(ngx_connection_t *c)
{
    if (c == nullptr || c->listening == nullptr
        || c->listening->handler != ngx_http_async_job_listening_handler) {
        return nullptr;
    }
    return reinterpret_cast<ngx_http_async_job_link_t *>(c->listening);
}

bool ngx_http_async_job_conn_id(ngx_connection_t *c, char id[async::id_chars],
                                async::job_state *state)
{
    ngx_http_async_job_link_t *link = ngx_http_async_job_link_of(c);
    if (link == nullptr) {
        return false;
    }
    ngx_memcpy(id, link->id, async::id_chars);
    *state = link->state;
    return true;
}

static ngx_int_t ngx_http_async_job_post_read(ngx_http_request_t *r)
{
    ngx_http_async_job_link_t *link = ngx_http_async_job_link_of(r->connection);
    if (link == nullptr || r != r->main) {
        return NGX_DECLINED;
    }
    // what the old subrequest was: internal locations are reachable
    r->internal = 1;
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_memcpy(ctx->id, link->id, async::id_chars);
    ctx->has_id = true;
    ctx->state = link->state;
    return NGX_DECLINED;
}

ngx_int_t ngx_http_async_job_conn_init(ngx_conf_t *cf)
{
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto *h = static_cast<ngx_http_handler_pt *>(
        ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers));
    if (h == nullptr) {
        return NGX_ERROR;
    }
    *h = ngx_http_async_job_post_read;
    return NGX_OK;
}

// Undoes a half-made connection (ngx_close_accepted_connection is static).
static void ngx_http_async_job_unaccept(ngx_connection_t *c)
{
    ngx_pool_t *pool = c->pool;
    ngx_close_connection(c);
    if (pool != nullptr) {
        ngx_destroy_pool(pool);
    }
#if (NGX_STAT_STUB)
    (void) ngx_atomic_fetch_add(ngx_stat_active, -1);
#endif
}

ngx_int_t ngx_http_async_job_accept(ngx_http_async_job_run_t *run,
                                    ngx_socket_t fd, async::job_state state)
{
    ngx_listening_t *ols = run->listening;
#if (NGX_STAT_STUB)
    (void) ngx_atomic_fetch_add(ngx_stat_accepted, 1);
#endif
    ngx_connection_t *c = ngx_get_connection(fd, ngx_cycle->log);
    if (c == nullptr) {
        ngx_close_socket(fd);
        return NGX_ERROR;
    }
    c->type = SOCK_STREAM;
#if (NGX_STAT_STUB)
    (void) ngx_atomic_fetch_add(ngx_stat_active, 1);
#endif
    c->pool = ngx_create_pool(ols->pool_size, ngx_cycle->log);
    if (c->pool == nullptr) {
        ngx_http_async_job_unaccept(c);
        return NGX_ERROR;
    }
    auto *link = async::pool_calloc<ngx_http_async_job_link_t>(c->pool);
    auto *log = async::pool_calloc<ngx_log_t>(c->pool);
    auto *sa = static_cast<struct sockaddr *>(
        ngx_palloc(c->pool, run->socklen ? run->socklen : 1));
    auto *lsa = static_cast<struct sockaddr *>(
        ngx_palloc(c->pool, run->local_socklen ? run->local_socklen : 1));
    auto *text = static_cast<u_char *>(
        ngx_pnalloc(c->pool, run->addr_text.len ? run->addr_text.len : 1));
    if (link == nullptr || log == nullptr || sa == nullptr || lsa == nullptr
        || text == nullptr) {
        ngx_http_async_job_unaccept(c);
        return NGX_ERROR;
    }

    // the listening and its one address: the client's server block
    // selection (default server, virtual names), without the transport
    // layers the job's plain HTTP/1.1 stream does not have
    link->ls = *ols;
    link->ls.handler = ngx_http_async_job_listening_handler;
    link->ls.servers = &link->port;
    link->ls.type = SOCK_STREAM;
    link->port.naddrs = 1;
    ngx_http_addr_conf_t conf = *run->addr_conf;
    async::plain_http_addr_conf(&conf);
    int family = run->local_socklen ? run->local_sockaddr->sa_family : AF_INET;
#if (NGX_HAVE_INET6)
    if (family == AF_INET6) {
        link->in6.addr6 =
            reinterpret_cast<struct sockaddr_in6 *>(run->local_sockaddr)
                ->sin6_addr;
        link->in6.conf = conf;
        link->port.addrs = &link->in6;
    } else
#endif
    {
        if (family == AF_INET) {
            link->in.addr =
                reinterpret_cast<struct sockaddr_in *>(run->local_sockaddr)
                    ->sin_addr.s_addr;
        }
        link->in.conf = conf;
        link->port.addrs = &link->in;
    }
    async::encode_id(run->id, link->id);
    link->state = state;

    ngx_memcpy(sa, run->sockaddr, run->socklen);
    ngx_memcpy(lsa, run->local_sockaddr, run->local_socklen);
    ngx_memcpy(text, run->addr_text.data, run->addr_text.len);
    *log = ols->log;
    c->recv = ngx_recv;
    c->send = ngx_send;
    c->recv_chain = ngx_recv_chain;
    c->send_chain = ngx_send_chain;
    c->log = log;
    c->pool->log = log;
    c->sockaddr = sa;
    c->socklen = run->socklen;
    c->local_sockaddr = lsa;
    c->local_socklen = run->local_socklen;
    c->addr_text.data = text;
    c->addr_text.len = run->addr_text.len;
    c->listening = &link->ls;
    // an AF_UNIX stream: no TCP options (ngx_event_accept() does the same
    // for a UNIX listening; here the peer address says otherwise)
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->write->ready = 1;
    c->read->log = log;
    c->write->log = log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->start_time = ngx_current_msec;
#if (NGX_STAT_STUB)
    (void) ngx_atomic_fetch_add(ngx_stat_handled, 1);
#endif
    log->data = nullptr;
    log->handler = nullptr;

    ngx_http_init_connection(c);
    return NGX_OK;
}
