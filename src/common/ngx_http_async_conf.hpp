// Directive values read with nginx's own parsers (ngx_parse_time,
// ngx_parse_size, ngx_atoi), so that "1y", "1g" and the rest mean here what
// they mean everywhere else in nginx. Single-value directives use nginx's
// setters directly (the shell's command table); this is for the key=value
// parameters of the directives that have them, and the bounds the setters
// lack.
#pragma once

#include "ngx_http_async_module.hpp"
#include "core/parse.hpp"

#include <optional>

// A time in milliseconds as ngx_conf_set_msec_slot reads it
// (ngx_parse_time(s, 0): no y or M, components in descending order).
std::optional<ngx_msec_t> ngx_http_async_parse_msec(std::string_view s);

// The kind of a key=value parameter, read with nginx's parser of that kind.
enum class conf_param_kind : uint8_t {
    flag,   // the bare word KEY, no "=": ngx_flag_t set to 1
    number, // ngx_atoi: ngx_uint_t
    msec,   // ngx_parse_time(s, 0): ngx_msec_t
    size,   // ngx_parse_size: size_t
    zone,   // NAME:SIZE as limit_req_zone reads it: ngx_http_async_zone_spec_t
    string  // the text after "=", min..max bytes long: ngx_str_t
};

struct ngx_http_async_zone_spec_t {
    ngx_str_t name;
    size_t size;
};

// One parameter: where its value goes (offsetof in the caller's struct),
// the range it must be in (size for zone=), and the words of its error
// line (nullptr: "invalid parameter").
struct ngx_http_async_conf_param_t {
    std::string_view key;
    conf_param_kind kind;
    size_t offset;
    uint64_t min;
    uint64_t max;
    const char *invalid;
};

// Reads the arguments of the current directive from index first on into
// out: each must be one of params (a later one overrides an earlier of the
// same key). Anything else is an [emerg] `invalid parameter "ARG" in
// "DIRECTIVE"`.
char *ngx_http_async_conf_params(ngx_conf_t *cf, ngx_uint_t first,
                                 const ngx_http_async_conf_param_t *params,
                                 size_t n, void *out);

template <size_t N>
char *ngx_http_async_conf_params(ngx_conf_t *cf, ngx_uint_t first,
                                 const ngx_http_async_conf_param_t (&p)[N],
                                 void *out)
{
    return ngx_http_async_conf_params(cf, first, p, N, out);
}

// Post handlers for ngx_conf_set_msec_slot and ngx_conf_set_size_slot, the
// bounds nginx checks only for numbers (ngx_conf_check_num_bounds).
struct ngx_http_async_conf_bounds_t {
    ngx_conf_post_handler_pt post_handler;
    uint64_t low;
    uint64_t high;
};

char *ngx_http_async_conf_msec_bounds(ngx_conf_t *cf, void *post, void *data);
char *ngx_http_async_conf_size_bounds(ngx_conf_t *cf, void *post, void *data);
