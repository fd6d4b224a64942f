// A non-blocking Redis client on nginx's event loop (see the header).
#include "common/ngx_http_async_redis.hpp"
#include "common/ngx_http_async_event.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

static constexpr ngx_msec_t first_backoff = 100;
static constexpr ngx_msec_t max_backoff = 2000;
static constexpr size_t max_password = 512;

// --- configuration ---------------------------------------------------------

static ngx_str_t ngx_http_async_redis_cstr(ngx_pool_t *pool, std::string_view s)
{
    ngx_str_t out{0, nullptr};
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, s.size() + 1));
    if (p != nullptr) {
        ngx_memcpy(p, s.data(), s.size());
        p[s.size()] = '\0';
        out.data = p;
        out.len = s.size();
    }
    return out;
}

bool ngx_http_async_redis_parse_address(ngx_pool_t *pool, ngx_str_t value,
                                        ngx_http_async_redis_conf_t *conf)
{
    std::string_view v = async::view(value);
    conf->address = value;
    if (v.substr(0, 5) == "unix:") {
        std::string_view path = v.substr(5);
        if (path.empty() || path.front() != '/' || path.size() > 107) {
            return false;
        }
        conf->path = ngx_http_async_redis_cstr(pool, path);
        return conf->path.data != nullptr;
    }
    std::string_view host, port;
    if (!v.empty() && v.front() == '[') {
        size_t close = v.find("]:");
        if (close == std::string_view::npos) {
            return false;
        }
        host = v.substr(1, close - 1);
        port = v.substr(close + 2);
    } else {
        size_t colon = v.rfind(':');
        if (colon == std::string_view::npos) {
            return false;
        }
        host = v.substr(0, colon);
        port = v.substr(colon + 1);
    }
    ngx_int_t n =
        ngx_atoi(reinterpret_cast<u_char *>(const_cast<char *>(port.data())),
                 port.size());
    if (host.empty() || n < 1 || n > 65535) {
        return false;
    }
    // a literal address only: nothing resolves names in a worker
    auto *h = reinterpret_cast<u_char *>(const_cast<char *>(host.data()));
    bool literal = ngx_inet_addr(h, host.size()) != INADDR_NONE;
#if (NGX_HAVE_INET6)
    u_char addr6[16];
    if (!literal && v.front() == '[') {
        literal = ngx_inet6_addr(h, host.size(), addr6) == NGX_OK;
    }
#endif
    if (!literal) {
        return false;
    }
    conf->host = ngx_http_async_redis_cstr(pool, host);
    conf->port = static_cast<int>(n);
    return conf->host.data != nullptr;
}

char *ngx_http_async_redis_read_password(ngx_conf_t *cf, ngx_str_t path,
                                         ngx_http_async_redis_conf_t *conf)
{
    ngx_str_t name = path;
    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_fd_t fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "redis_password_file \"%V\" cannot be opened",
                           &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    u_char buf[max_password + 1];
    ssize_t n = read(fd, buf, sizeof(buf));
    ngx_err_t err = ngx_errno;
    ngx_close_file(fd);
    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, err,
                           "redis_password_file \"%V\" cannot be read", &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    auto len = static_cast<size_t>(n);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    if (len == 0 || len > max_password) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "redis_password_file \"%V\" must hold one line of "
                           "1 to %uz bytes",
                           &name, max_password);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    conf->password = ngx_http_async_redis_cstr(
        cf->pool, std::string_view(reinterpret_cast<char *>(buf), len));
    ngx_explicit_memzero(buf, sizeof(buf));
    return conf->password.data != nullptr ? NGX_CONF_OK
                                          : static_cast<char *>(NGX_CONF_ERROR);
}

// --- links -------------------------------------------------------------------

static void ngx_http_async_redis_connect(ngx_http_async_redis_link_t *link);

std::string_view ngx_http_async_redis_state_name(redis_link_state s)
{
    switch (s) {
        case redis_link_state::ready:
            return "up";
        case redis_link_state::connecting:
            return "connecting";
        case redis_link_state::down:
            break;
    }
    return "down";
}

bool ngx_http_async_redis_ready(const ngx_http_async_redis_t *client)
{
    return client != nullptr && client->cmd.state == redis_link_state::ready;
}

bool ngx_http_async_redis_subscribed(const ngx_http_async_redis_t *client)
{
    return client != nullptr && client->sub.state == redis_link_state::ready;
}

// One [error] per outage: the first failure after the link was up.
static void ngx_http_async_redis_outage(ngx_http_async_redis_link_t *link,
                                        const char *why)
{
    ngx_http_async_redis_t *client = link->client;
    if (client->stopped) {
        return;
    }
    if (client->stats != nullptr) {
        client->stats->outages.fetch_add(1, std::memory_order_relaxed);
    }
    if (!client->outage_logged) {
        client->outage_logged = true;
        ngx_log_error(NGX_LOG_ERR, client->log, 0,
                      "async_job_zone \"%V\": redis %V unavailable (%s); "
                      "job locations answer 503 until it is back",
                      &client->name, &client->conf->address, why);
    }
}

static void ngx_http_async_redis_set_ready(ngx_http_async_redis_link_t *link)
{
    ngx_http_async_redis_t *client = link->client;
    link->state = redis_link_state::ready;
    link->backoff = 0;
    if (link->timer.timer_set && link->pending == 0) {
        ngx_del_timer(&link->timer);
    }
    if (client->stats != nullptr && !link->counted) {
        link->counted = true;
        (link->subscriber ? client->stats->subscribed
                          : client->stats->connected)
            .fetch_add(1, std::memory_order_relaxed);
    }
    if (!link->subscriber) {
        if (client->outage_logged) {
            client->outage_logged = false;
            ngx_log_error(NGX_LOG_NOTICE, client->log, 0,
                          "async_job_zone \"%V\": redis %V is back",
                          &client->name, &client->conf->address);
        }
        if (client->on_ready != nullptr) {
            client->on_ready(client->data);
        }
    }
}

// Closes the link's connection: hiredis runs every pending handler with no
// reply, then its cleanup hook frees our connection and plans the retry.
static void ngx_http_async_redis_fail(ngx_http_async_redis_link_t *link,
                                      const char *why)
{
    if (link->ac == nullptr) {
        return;
    }
    link->why = why;
    redisAsyncFree(link->ac); // now, or when the running handler returns
}

// Timers: ev->data is a connection-shaped ident followed by the link.
struct ngx_http_async_redis_ident_t {
    async::event_ident ident;
    ngx_http_async_redis_link_t *link;
};

static ngx_http_async_redis_link_t *
ngx_http_async_redis_timer_link(ngx_event_t *ev)
{
    return static_cast<ngx_http_async_redis_ident_t *>(ev->data)->link;
}

static void ngx_http_async_redis_reconnect(ngx_event_t *ev)
{
    ngx_http_async_redis_link_t *link = ngx_http_async_redis_timer_link(ev);
    // an exiting worker reconnects too: its jobs still write their ends
    if (!link->client->stopped && link->ac == nullptr) {
        ngx_http_async_redis_connect(link);
    }
}

static void ngx_http_async_redis_timeout(ngx_event_t *ev)
{
    ngx_http_async_redis_link_t *link = ngx_http_async_redis_timer_link(ev);
    ngx_msec_t timeout = link->client->conf->timeout;
    if (link->state == redis_link_state::connecting) {
        ngx_http_async_redis_fail(link, "connect timed out");
        return;
    }
    if (link->pending == 0) {
        return;
    }
    ngx_msec_t waited = ngx_current_msec - link->progress;
    if (waited >= timeout) {
        ngx_http_async_redis_fail(link, "a command timed out");
        return;
    }
    ngx_add_timer(&link->timer, timeout - waited);
}

static void ngx_http_async_redis_schedule(ngx_http_async_redis_link_t *link)
{
    if (link->client->stopped) {
        return;
    }
    link->backoff = link->backoff == 0
                        ? first_backoff
                        : ngx_min(link->backoff * 2, max_backoff);
    ngx_add_timer(&link->retry, link->backoff);
}

// --- the adapter: hiredis's event hooks onto nginx's events ------------------

static void ngx_http_async_redis_read(ngx_event_t *ev)
{
    auto *c = static_cast<ngx_connection_t *>(ev->data);
    auto *link = static_cast<ngx_http_async_redis_link_t *>(c->data);
    redisAsyncHandleRead(link->ac); // may close the link: c is gone then
}

static void ngx_http_async_redis_write(ngx_event_t *ev)
{
    auto *c = static_cast<ngx_connection_t *>(ev->data);
    auto *link = static_cast<ngx_http_async_redis_link_t *>(c->data);
    redisAsyncHandleWrite(link->ac);
}

static void ngx_http_async_redis_add_read(void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (link->c != nullptr && !link->c->read->active) {
        // level-triggered, as hiredis expects of its event library
        ngx_add_event(link->c->read, NGX_READ_EVENT, 0);
    }
}

static void ngx_http_async_redis_del_read(void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (link->c != nullptr && link->c->read->active) {
        ngx_del_event(link->c->read, NGX_READ_EVENT, 0);
    }
}

static void ngx_http_async_redis_add_write(void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (link->c != nullptr && !link->c->write->active) {
        ngx_add_event(link->c->write, NGX_WRITE_EVENT, 0);
    }
}

static void ngx_http_async_redis_del_write(void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (link->c != nullptr && link->c->write->active) {
        ngx_del_event(link->c->write, NGX_WRITE_EVENT, 0);
    }
}

// hiredis frees the context (and closes the fd right after): give the
// connection back and plan the next try.
static void ngx_http_async_redis_cleanup(void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    ngx_http_async_redis_t *client = link->client;
    ngx_connection_t *c = link->c;
    if (c != nullptr) {
        ngx_http_async_redis_del_read(link);
        ngx_http_async_redis_del_write(link);
        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }
        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }
        c->fd = static_cast<ngx_socket_t>(-1); // hiredis closes it
        ngx_free_connection(c);
        link->c = nullptr;
    }
    if (link->why != nullptr) {
        ngx_http_async_redis_outage(link, link->why);
    } else if (link->ac != nullptr && link->ac->err != 0) {
        ngx_http_async_redis_outage(link, link->ac->errstr);
    } else {
        ngx_http_async_redis_outage(link, "connection closed");
    }
    link->why = nullptr;
    link->ac = nullptr;
    if (link->counted && client->stats != nullptr) {
        (link->subscriber ? client->stats->subscribed
                          : client->stats->connected)
            .fetch_sub(1, std::memory_order_relaxed);
    }
    link->counted = false;
    link->state = redis_link_state::down;
    link->pending = 0;
    if (link->timer.timer_set) {
        ngx_del_timer(&link->timer);
    }
    ngx_http_async_redis_schedule(link);
}

// --- commands
// ------------------------------------------------------------------

struct ngx_http_async_redis_call_t {
    ngx_http_async_redis_link_t *link;
    ngx_http_async_redis_reply_pt handler;
    void *data;
    ngx_msec_t sent;
};

static void ngx_http_async_redis_replied(redisAsyncContext *ac, void *reply,
                                         void *privdata)
{
    (void) ac;
    auto *call = static_cast<ngx_http_async_redis_call_t *>(privdata);
    ngx_http_async_redis_link_t *link = call->link;
    ngx_http_async_redis_t *client = link->client;
    if (link->pending > 0) {
        link->pending--;
    }
    link->progress = ngx_current_msec;
    if (client->stats != nullptr) {
        if (reply != nullptr) {
            async::histogram_record(client->stats->latency,
                                    ngx_current_msec - call->sent);
        } else {
            client->stats->failures.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if (link->pending == 0 && link->timer.timer_set
        && link->state == redis_link_state::ready) {
        ngx_del_timer(&link->timer);
    }
    ngx_http_async_redis_reply_pt handler = call->handler;
    void *data = call->data;
    ngx_free(call);
    if (handler != nullptr) {
        handler(reply, data);
    }
}

static ngx_int_t ngx_http_async_redis_send(ngx_http_async_redis_link_t *link,
                                           ngx_http_async_redis_reply_pt h,
                                           void *data, int argc,
                                           const char **argv,
                                           const size_t *argvlen)
{
    auto *call = static_cast<ngx_http_async_redis_call_t *>(
        ngx_alloc(sizeof(ngx_http_async_redis_call_t), link->client->log));
    if (call == nullptr) {
        return NGX_ERROR;
    }
    *call = {link, h, data, ngx_current_msec};
    if (redisAsyncCommandArgv(link->ac, ngx_http_async_redis_replied, call,
                              argc, argv, argvlen)
        != REDIS_OK) {
        ngx_free(call);
        return NGX_ERROR;
    }
    if (link->client->stats != nullptr) {
        link->client->stats->commands.fetch_add(1, std::memory_order_relaxed);
    }
    if (link->pending++ == 0) {
        link->progress = ngx_current_msec;
    }
    if (!link->timer.timer_set) {
        ngx_add_timer(&link->timer, link->client->conf->timeout);
    }
    return NGX_OK;
}

ngx_int_t ngx_http_async_redis_command(ngx_http_async_redis_t *client,
                                       ngx_http_async_redis_reply_pt handler,
                                       void *data, int argc, const char **argv,
                                       const size_t *argvlen)
{
    if (!ngx_http_async_redis_ready(client)) {
        return NGX_DECLINED;
    }
    return ngx_http_async_redis_send(&client->cmd, handler, data, argc, argv,
                                     argvlen);
}

// --- connecting: AUTH, SELECT, SUBSCRIBE
// ----------------------------------------

static bool ngx_http_async_redis_reply_ok(void *reply)
{
    auto *r = static_cast<redisReply *>(reply);
    return r != nullptr && r->type != REDIS_REPLY_ERROR;
}

// The last setup command of a command link answered.
static void ngx_http_async_redis_setup_done(void *reply, void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (reply == nullptr) {
        return; // the link closed meanwhile
    }
    if (!ngx_http_async_redis_reply_ok(reply)) {
        ngx_http_async_redis_fail(link, "AUTH or SELECT refused");
        return;
    }
    if (!link->subscriber) {
        ngx_http_async_redis_set_ready(link);
    }
}

static void ngx_http_async_redis_auth_done(void *reply, void *data)
{
    auto *link = static_cast<ngx_http_async_redis_link_t *>(data);
    if (reply != nullptr && !ngx_http_async_redis_reply_ok(reply)) {
        // the reply names no password; ours is never logged
        ngx_http_async_redis_fail(link, "AUTH failed");
    }
}

// Subscriber: the subscribe confirmation, then every message.
static void ngx_http_async_redis_message(redisAsyncContext *ac, void *reply,
                                         void *privdata)
{
    (void) ac;
    auto *link = static_cast<ngx_http_async_redis_link_t *>(privdata);
    auto *r = static_cast<redisReply *>(reply);
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 3) {
        if (r != nullptr && r->type == REDIS_REPLY_ERROR) {
            ngx_http_async_redis_fail(link, "SUBSCRIBE refused");
        }
        return;
    }
    std::string_view kind(r->element[0]->str, r->element[0]->len);
    if (kind == "subscribe") {
        ngx_http_async_redis_set_ready(link);
        if (link->timer.timer_set) {
            ngx_del_timer(&link->timer);
        }
        return;
    }
    ngx_http_async_redis_t *client = link->client;
    if (kind == "message" && r->element[1]->type == REDIS_REPLY_STRING
        && r->element[2]->type == REDIS_REPLY_STRING
        && client->on_message != nullptr) {
        client->on_message(
            client->data,
            std::string_view(r->element[1]->str, r->element[1]->len),
            std::string_view(r->element[2]->str, r->element[2]->len));
    }
}

static void ngx_http_async_redis_connect(ngx_http_async_redis_link_t *link)
{
    ngx_http_async_redis_t *client = link->client;
    const ngx_http_async_redis_conf_t *conf = client->conf;

    redisAsyncContext *ac =
        conf->path.len > 0
            ? redisAsyncConnectUnix(reinterpret_cast<char *>(conf->path.data))
            : redisAsyncConnect(reinterpret_cast<char *>(conf->host.data),
                                conf->port);
    if (ac == nullptr || ac->err != 0) {
        ngx_http_async_redis_outage(link, ac != nullptr ? ac->errstr
                                                        : "out of memory");
        if (ac != nullptr) {
            redisAsyncFree(ac);
        }
        ngx_http_async_redis_schedule(link);
        return;
    }
    ngx_connection_t *c = ngx_get_connection(ac->c.fd, client->log);
    if (c == nullptr) {
        redisAsyncFree(ac);
        ngx_http_async_redis_schedule(link);
        return;
    }
    c->data = link;
    c->read->handler = ngx_http_async_redis_read;
    c->write->handler = ngx_http_async_redis_write;
    c->read->log = client->log;
    c->write->log = client->log;
    c->log = client->log;

    link->ac = ac;
    link->c = c;
    link->pending = 0;
    link->state = redis_link_state::connecting;
    ac->data = link;
    ac->ev.data = link;
    ac->ev.addRead = ngx_http_async_redis_add_read;
    ac->ev.delRead = ngx_http_async_redis_del_read;
    ac->ev.addWrite = ngx_http_async_redis_add_write;
    ac->ev.delWrite = ngx_http_async_redis_del_write;
    ac->ev.cleanup = ngx_http_async_redis_cleanup;
    // the first write event completes the connect (hiredis's adapters
    // start with both events too)
    ngx_http_async_redis_add_read(link);
    ngx_http_async_redis_add_write(link);
    ngx_add_timer(&link->timer, conf->timeout);

    // queued before the connect completes; sent as soon as it does
    if (conf->password.len > 0) {
        const char *argv[] = {"AUTH",
                              reinterpret_cast<char *>(conf->password.data)};
        size_t len[] = {4, conf->password.len};
        if (ngx_http_async_redis_send(link, ngx_http_async_redis_auth_done,
                                      link, 2, argv, len)
            != NGX_OK) {
            ngx_http_async_redis_fail(link, "out of memory");
            return;
        }
    }
    if (link->subscriber) {
        ngx_uint_t n = client->nchannels + 1;
        auto *argv = static_cast<const char **>(
            ngx_alloc(n * sizeof(char *), client->log));
        auto *len =
            static_cast<size_t *>(ngx_alloc(n * sizeof(size_t), client->log));
        if (argv == nullptr || len == nullptr) {
            ngx_free(argv);
            ngx_free(len);
            ngx_http_async_redis_fail(link, "out of memory");
            return;
        }
        argv[0] = "SUBSCRIBE";
        len[0] = 9;
        for (ngx_uint_t i = 0; i < client->nchannels; i++) {
            argv[i + 1] = reinterpret_cast<char *>(client->channels[i].data);
            len[i + 1] = client->channels[i].len;
        }
        redisAsyncCommandArgv(ac, ngx_http_async_redis_message, link,
                              static_cast<int>(n), argv, len);
        ngx_free(argv);
        ngx_free(len);
        return;
    }
    char db[NGX_INT_T_LEN + 1];
    u_char *last = ngx_sprintf(reinterpret_cast<u_char *>(db), "%ui", conf->db);
    *last = '\0';
    const char *select[] = {"SELECT", db};
    size_t select_len[] = {
        6, static_cast<size_t>(last - reinterpret_cast<u_char *>(db))};
    if (ngx_http_async_redis_send(link, ngx_http_async_redis_setup_done, link,
                                  2, select, select_len)
        != NGX_OK) {
        ngx_http_async_redis_fail(link, "out of memory");
    }
}

static void ngx_http_async_redis_link_init(ngx_http_async_redis_t *client,
                                           ngx_http_async_redis_link_t *link,
                                           bool subscriber)
{
    link->client = client;
    link->subscriber = subscriber;
    link->state = redis_link_state::down;
    for (ngx_event_t *ev : {&link->timer, &link->retry}) {
        auto *ident =
            async::pool_calloc<ngx_http_async_redis_ident_t>(ngx_cycle->pool);
        if (ident == nullptr) {
            continue;
        }
        ident->link = link;
        async::event_init(ev, ident,
                          ev == &link->timer ? ngx_http_async_redis_timeout
                                             : ngx_http_async_redis_reconnect,
                          client->log);
        // a Redis link never keeps an exiting worker alive
        ev->cancelable = 1;
    }
}

ngx_int_t ngx_http_async_redis_start(ngx_http_async_redis_t *client)
{
    ngx_http_async_redis_link_init(client, &client->cmd, false);
    ngx_http_async_redis_link_init(client, &client->sub, true);
    if (client->cmd.timer.data == nullptr || client->cmd.retry.data == nullptr
        || client->sub.timer.data == nullptr
        || client->sub.retry.data == nullptr) {
        return NGX_ERROR;
    }
    ngx_http_async_redis_connect(&client->cmd);
    if (client->nchannels > 0) {
        ngx_http_async_redis_connect(&client->sub);
    }
    return NGX_OK;
}

void ngx_http_async_redis_stop(ngx_http_async_redis_t *client)
{
    client->stopped = true;
    for (ngx_http_async_redis_link_t *link : {&client->cmd, &client->sub}) {
        if (link->retry.timer_set) {
            ngx_del_timer(&link->retry);
        }
        if (link->timer.timer_set) {
            ngx_del_timer(&link->timer);
        }
        if (link->ac != nullptr) {
            redisAsyncFree(link->ac);
        }
    }
}
