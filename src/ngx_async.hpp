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
