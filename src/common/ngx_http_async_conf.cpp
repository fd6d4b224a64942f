// Directive parameters with nginx's parsers (see the header).
#include "common/ngx_http_async_conf.hpp"

std::optional<ngx_msec_t> ngx_http_async_parse_msec(std::string_view s)
{
    ngx_str_t str = async::ngx_string_of(s);
    ngx_int_t ms = ngx_parse_time(&str, 0);
    if (ms == NGX_ERROR) {
        return std::nullopt;
    }
    return static_cast<ngx_msec_t>(ms);
}

// NAME:SIZE split at the first ':' and sized by ngx_parse_size, as
// limit_req_zone and limit_conn_zone read their zone=.
static bool ngx_http_async_conf_zone(std::string_view v,
                                     ngx_http_async_zone_spec_t *out)
{
    size_t colon = v.find(':');
    if (colon == 0 || colon == std::string_view::npos) {
        return false;
    }
    ngx_str_t size = async::ngx_string_of(v.substr(colon + 1));
    ssize_t n = ngx_parse_size(&size);
    if (n == NGX_ERROR) {
        return false;
    }
    out->name = async::ngx_string_of(v.substr(0, colon));
    out->size = static_cast<size_t>(n);
    return true;
}

// Reads v as p says into base + p.offset; false when it is not valid.
static bool ngx_http_async_conf_read(const ngx_http_async_conf_param_t &p,
                                     std::string_view v, u_char *base)
{
    void *field = base + p.offset;
    ngx_str_t s = async::ngx_string_of(v);
    uint64_t n = 0;

    switch (p.kind) {
        case conf_param_kind::flag:
            *static_cast<ngx_flag_t *>(field) = 1;
            return true;
        case conf_param_kind::number: {
            ngx_int_t i = ngx_atoi(s.data, s.len);
            if (i == NGX_ERROR) {
                return false;
            }
            n = static_cast<uint64_t>(i);
            if (n < p.min || n > p.max) {
                return false;
            }
            *static_cast<ngx_uint_t *>(field) = static_cast<ngx_uint_t>(n);
            return true;
        }
        case conf_param_kind::msec: {
            auto ms = ngx_http_async_parse_msec(v);
            if (!ms || *ms < p.min || *ms > p.max) {
                return false;
            }
            *static_cast<ngx_msec_t *>(field) = *ms;
            return true;
        }
        case conf_param_kind::size: {
            ssize_t size = ngx_parse_size(&s);
            if (size == NGX_ERROR) {
                return false;
            }
            n = static_cast<uint64_t>(size);
            if (n < p.min || n > p.max) {
                return false;
            }
            *static_cast<size_t *>(field) = static_cast<size_t>(n);
            return true;
        }
        case conf_param_kind::string:
            if (v.size() < p.min || v.size() > p.max) {
                return false;
            }
            *static_cast<ngx_str_t *>(field) = s;
            return true;
        case conf_param_kind::zone: {
            auto *zone = static_cast<ngx_http_async_zone_spec_t *>(field);
            ngx_http_async_zone_spec_t spec;
            if (!ngx_http_async_conf_zone(v, &spec) || spec.size < p.min
                || spec.size > p.max) {
                return false;
            }
            *zone = spec;
            return true;
        }
    }
    return false;
}

char *ngx_http_async_conf_params(ngx_conf_t *cf, ngx_uint_t first,
                                 const ngx_http_async_conf_param_t *params,
                                 size_t n, void *out)
{
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    for (ngx_uint_t i = first; i < cf->args->nelts; i++) {
        std::string_view arg = async::view(value[i]);
        const ngx_http_async_conf_param_t *p = params;
        const ngx_http_async_conf_param_t *end = params + n;
        std::optional<std::string_view> v;
        for (; p != end; p++) {
            v = p->kind == conf_param_kind::flag
                    ? (arg == p->key ? std::optional(arg) : std::nullopt)
                    : async::parse_key_value(arg, p->key);
            if (v) {
                break;
            }
        }
        if (p == end
            || !ngx_http_async_conf_read(*p, *v, static_cast<u_char *>(out))) {
            const char *what = p != end && p->invalid != nullptr
                                   ? p->invalid
                                   : "invalid parameter";
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\" in \"%V\"",
                               what, &value[i], &value[0]);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }
    return NGX_CONF_OK;
}

// The value's words and range for a bounds post handler's error line.
static char *ngx_http_async_conf_bounds(ngx_conf_t *cf, void *post, uint64_t v,
                                        const char *unit)
{
    auto *b = static_cast<ngx_http_async_conf_bounds_t *>(post);
    if (v >= b->low && v <= b->high) {
        return NGX_CONF_OK;
    }
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid value \"%V\" in \"%V\": must be between %uL "
                       "and %uL %s",
                       &value[1], &value[0], b->low, b->high, unit);
    return static_cast<char *>(NGX_CONF_ERROR);
}

char *ngx_http_async_conf_msec_bounds(ngx_conf_t *cf, void *post, void *data)
{
    return ngx_http_async_conf_bounds(cf, post,
                                      *static_cast<ngx_msec_t *>(data), "ms");
}

char *ngx_http_async_conf_size_bounds(ngx_conf_t *cf, void *post, void *data)
{
    return ngx_http_async_conf_bounds(cf, post, *static_cast<size_t *>(data),
                                      "bytes");
}
