// nginx's conventions for the events and timers the module arms.
//
// nginx reads every timer's ev->data as an ngx_connection_t when it writes
// its debug log: ngx_event_ident() in the "event timer add/del" lines of
// ngx_event_timer.h prints the connection's fd. An object that is the data
// of a timer therefore starts with an event_ident, as ngx_resolver_ctx_t
// starts with three pointers and an ident of -1: the log reads fd -1 there,
// and never the memory past a small object.
#pragma once

#include "ngx_async.hpp"

namespace async {

struct event_ident {
    void *unused[3]; // ngx_connection_t's data, read and write
    ngx_socket_t fd; // -1: no connection
};

static_assert(offsetof(event_ident, fd) == offsetof(ngx_connection_t, fd),
              "event_ident must read as an ngx_connection_t");

// The fd nginx's debug log prints for a timer of the module.
constexpr ngx_socket_t no_connection = static_cast<ngx_socket_t>(-1);

// Makes ev a timer (or posted event) of owner, whose first member is its
// event_ident `ident`; the handler finds owner in ev->data.
template <class T>
void event_init(ngx_event_t *ev, T *owner, ngx_event_handler_pt handler,
                ngx_log_t *log)
{
    static_assert(std::is_standard_layout_v<T>,
                  "an event's owner must have a C layout");
    static_assert(offsetof(T, ident) == 0,
                  "an event's owner must start with its event_ident");
    owner->ident.fd = no_connection;
    ev->data = owner;
    ev->handler = handler;
    ev->log = log;
}

// The same for an event whose handler needs no owner: its data is a
// connection-shaped object of its own.
inline void event_init(ngx_event_t *ev, event_ident *ident,
                       ngx_event_handler_pt handler, ngx_log_t *log)
{
    ident->fd = no_connection;
    ev->data = ident;
    ev->handler = handler;
    ev->log = log;
}

} // namespace async
