// The one seam to nginx: every glue file includes nginx through this header.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <cstddef>
#include <cstdint>
#include <new>
#include <string_view>
#include <type_traits>

namespace async {

inline std::string_view view(const ngx_str_t &s)
{
    return {reinterpret_cast<const char *>(s.data), s.len};
}

inline ngx_str_t ngx_string_of(std::string_view s)
{
    return {s.size(), reinterpret_cast<u_char *>(const_cast<char *>(s.data()))};
}

// Zeroed, trivially destructible object from a pool: pools free memory
// without running destructors.
template <class T>
T *pool_calloc(ngx_pool_t *pool)
{
    static_assert(std::is_trivially_destructible_v<T>,
                  "pool objects must be trivially destructible");
    return static_cast<T *>(ngx_pcalloc(pool, sizeof(T)));
}

template <class T>
T *pool_calloc_array(ngx_pool_t *pool, size_t n)
{
    static_assert(std::is_trivially_destructible_v<T>,
                  "pool objects must be trivially destructible");
    return static_cast<T *>(ngx_pcalloc(pool, sizeof(T) * n));
}

// Copies a view into pool memory; an empty view gives an empty string.
inline ngx_str_t pool_copy(ngx_pool_t *pool, std::string_view s)
{
    ngx_str_t out{0, nullptr};
    if (s.empty()) {
        return out;
    }
    out.data = static_cast<u_char *>(ngx_pnalloc(pool, s.size()));
    if (out.data != nullptr) {
        ngx_memcpy(out.data, s.data(), s.size());
        out.len = s.size();
    }
    return out;
}

// Visits the elements of an nginx list in order until f returns false.
template <class T, class F>
void list_each(ngx_list_t &list, F &&f)
{
    for (ngx_list_part_t *part = &list.part; part != nullptr;
         part = part->next) {
        auto *elts = static_cast<T *>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; i++) {
            if (!f(elts[i])) {
                return;
            }
        }
    }
}

// Registers a null-terminated table of variables (preconfiguration).
inline ngx_int_t add_variables(ngx_conf_t *cf, const ngx_http_variable_t *vars)
{
    for (const ngx_http_variable_t *v = vars; v->name.len; v++) {
        ngx_str_t name = v->name;
        ngx_http_variable_t *var = ngx_http_add_variable(cf, &name, v->flags);
        if (var == nullptr) {
            return NGX_ERROR;
        }
        var->get_handler = v->get_handler;
        var->data = v->data;
    }
    return NGX_OK;
}

// A variable's value found for this request only (NGX_HTTP_VAR_NOCACHEABLE).
inline ngx_int_t variable_value(ngx_http_variable_value_t *v, ngx_str_t s)
{
    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

// A duration as seconds with milliseconds ("1.250"), as $request_time
// reads; data is nullptr when the pool is out of memory.
inline ngx_str_t msec_text(ngx_pool_t *pool, ngx_msec_t ms)
{
    ngx_str_t s{0,
                static_cast<u_char *>(ngx_pnalloc(pool, NGX_TIME_T_LEN + 4))};
    if (s.data != nullptr) {
        s.len = ngx_sprintf(s.data, "%T.%03M", static_cast<time_t>(ms / 1000),
                            ms % 1000)
                - s.data;
    }
    return s;
}

// A connection of the module's own reads and writes its socket with the
// event module's I/O, as ngx_event_accept() sets it up.
inline void socket_io(ngx_connection_t *c)
{
    c->recv = ngx_recv;
    c->send = ngx_send;
    c->recv_chain = ngx_recv_chain;
    c->send_chain = ngx_send_chain;
}

// Appends handler to a phase of the http core (postconfiguration).
inline ngx_int_t add_phase_handler(ngx_conf_t *cf, ngx_http_phases phase,
                                   ngx_http_handler_pt handler)
{
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto *h = static_cast<ngx_http_handler_pt *>(
        ngx_array_push(&cmcf->phases[phase].handlers));
    if (h == nullptr) {
        return NGX_ERROR;
    }
    *h = handler;
    return NGX_OK;
}

// An address's configuration for a job's plain HTTP/1.1 stream: no TLS,
// no HTTP/2 preface, no PROXY protocol header, no QUIC (nginx 1.25+).
inline void plain_http_addr_conf(ngx_http_addr_conf_t *conf)
{
    conf->ssl = 0;
    conf->http2 = 0;
    conf->proxy_protocol = 0;
#if (nginx_version >= 1025000)
    conf->quic = 0;
#endif
}

// Appends KEY: VALUE to a list of headers or trailers; nullptr when out of
// memory. next links headers of one name since nginx 1.23.0.
inline ngx_table_elt_t *push_header(ngx_list_t *list, std::string_view key,
                                    ngx_str_t value)
{
    auto *h = static_cast<ngx_table_elt_t *>(ngx_list_push(list));
    if (h == nullptr) {
        return nullptr;
    }
    h->hash = 1;
    h->key = ngx_string_of(key);
    h->value = value;
    h->lowcase_key = nullptr;
#if (nginx_version >= 1023000)
    h->next = nullptr;
#endif
    return h;
}

// ngx_http_parse_chunked(), whose trailers argument came with nginx 1.27.2
// (proxy_pass_trailers); trailers are skipped.
inline ngx_int_t parse_chunked(ngx_http_request_t *r, ngx_buf_t *b,
                               ngx_http_chunked_t *ctx)
{
#if (nginx_version >= 1027002)
    return ngx_http_parse_chunked(r, b, ctx, 0);
#else
    return ngx_http_parse_chunked(r, b, ctx);
#endif
}

constexpr std::string_view module_version = "0.1.0";

} // namespace async
