// A non-blocking Redis client on nginx's event loop: hiredis's async API
// (Debian's libhiredis-dev) with an adapter of our own onto nginx's
// events. Each hiredis socket is wrapped in an ngx_connection_t whose read
// and write handlers call redisAsyncHandleRead/Write (level-triggered, as
// hiredis's adapters expect); timers bound the connect and every command
// (redis_timeout), and a lost connection comes back with backoff.
//
// One client per worker per endpoint: a command connection (pipelined,
// AUTH and SELECT on connect) and, when channels are set, one subscriber
// connection for all of them. The client knows nothing of jobs.
#pragma once

#include "ngx_http_async_module.hpp"
#include "core/histogram.hpp"

#include <atomic>
#include <string_view>

struct redisAsyncContext;

// The redis* parameters of a zone, read at configuration time.
struct ngx_http_async_redis_conf_t {
    ngx_str_t address; // as written, for logs and the status page
    ngx_str_t host;    // NUL-terminated literal IP; empty for unix:
    ngx_str_t path;    // NUL-terminated socket path of unix:
    int port;
    ngx_uint_t db;
    ngx_str_t prefix;   // of every key
    ngx_msec_t timeout; // connect and every command
    ngx_str_t password; // from redis_password_file; never logged
};

// Reads ADDRESS of redis=: IPv4:port, [IPv6]:port or unix:/path. A host
// name is refused (no name is resolved in a worker). false: invalid.
bool ngx_http_async_redis_parse_address(ngx_pool_t *pool, ngx_str_t value,
                                        ngx_http_async_redis_conf_t *conf);
// Reads redis_password_file= (one line; a final newline is dropped).
// NGX_CONF_ERROR with an [emerg] naming the file, never its content.
char *ngx_http_async_redis_read_password(ngx_conf_t *cf, ngx_str_t path,
                                         ngx_http_async_redis_conf_t *conf);

enum class redis_link_state : uint8_t { down, connecting, ready };

// Numbers every worker adds to, in the zone's shared memory (relaxed
// atomics, no lock).
struct ngx_http_async_redis_stats_t {
    std::atomic<uint64_t> commands;
    std::atomic<uint64_t> failures;   // no reply: down, timed out, error
    std::atomic<uint64_t> outages;    // connections lost or never made
    std::atomic<uint32_t> connected;  // workers with a ready command link
    std::atomic<uint32_t> subscribed; // workers with a ready subscriber
    async::histogram latency;         // of every command's reply
};

struct ngx_http_async_redis_t;

// One hiredis connection of a client.
struct ngx_http_async_redis_link_t {
    ngx_http_async_redis_t *client;
    redisAsyncContext *ac;
    ngx_connection_t *c; // wraps ac's fd
    ngx_event_t timer;   // connect or command timeout, or the next try
    ngx_event_t retry;   // backoff before the next connect
    ngx_msec_t backoff;
    ngx_msec_t progress; // when a reply last came or the oldest was sent
    ngx_uint_t pending;  // commands without a reply yet
    const char *why;     // of the close we asked for
    redis_link_state state;
    bool subscriber;
    bool counted; // in stats->connected / subscribed
};

using ngx_http_async_redis_message_pt = void (*)(void *data,
                                                 std::string_view channel,
                                                 std::string_view message);
using ngx_http_async_redis_ready_pt = void (*)(void *data);

struct ngx_http_async_redis_t {
    const ngx_http_async_redis_conf_t *conf;
    ngx_str_t name; // of the zone, for logs
    ngx_log_t *log;
    ngx_http_async_redis_stats_t *stats; // may be nullptr
    ngx_http_async_redis_link_t cmd;
    ngx_http_async_redis_link_t sub;
    ngx_str_t *channels; // subscribed when any (NUL-terminated)
    ngx_uint_t nchannels;
    ngx_http_async_redis_message_pt on_message;
    ngx_http_async_redis_ready_pt on_ready; // command link ready (again)
    void *data;
    bool outage_logged; // one [error] per outage
    bool stopped;
};

// A command's reply handler; reply is nullptr when there is none (down,
// timed out, the worker exits); it is a redisReply * otherwise.
using ngx_http_async_redis_reply_pt = void (*)(void *reply, void *data);

// Starts connecting (worker start). NGX_ERROR only when out of memory.
ngx_int_t ngx_http_async_redis_start(ngx_http_async_redis_t *client);
// Closes both links; pending handlers get nullptr (worker exit).
void ngx_http_async_redis_stop(ngx_http_async_redis_t *client);
bool ngx_http_async_redis_ready(const ngx_http_async_redis_t *client);
bool ngx_http_async_redis_subscribed(const ngx_http_async_redis_t *client);
// Queues a command (argv form, binary-safe) on the command link.
// NGX_DECLINED: the link is not ready, handler not called.
ngx_int_t ngx_http_async_redis_command(ngx_http_async_redis_t *client,
                                       ngx_http_async_redis_reply_pt handler,
                                       void *data, int argc, const char **argv,
                                       const size_t *argvlen);
// "up", "connecting" or "down", for the status page.
std::string_view ngx_http_async_redis_state_name(redis_link_state s);
