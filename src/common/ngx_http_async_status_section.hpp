// A part of the async_status report that one concern writes. The module
// shell registers each concern's section in postconfiguration; the status
// location walks the registered sections and knows no concern (as nginx's
// phase handlers and filter chains are registered, not called by name).
#pragma once

#include "ngx_http_async_module.hpp"
#include "core/json_writer.hpp"
#include "core/prometheus_writer.hpp"

struct ngx_http_async_status_section_t {
    // Copies the concern's numbers, under its locks, into r's pool;
    // *items: how many zones or rows, for the size of the report buffer.
    ngx_int_t (*snapshot)(ngx_http_request_t *r, void **data,
                          ngx_uint_t *items);
    // Format a snapshot without any lock; may run again on a larger
    // buffer. The JSON part writes its key(s) into the report's object.
    void (*json)(async::json_writer &w, const void *data);
    void (*prometheus)(async::prometheus_writer &w, const void *data);
};

inline ngx_int_t
ngx_http_async_status_section_add(ngx_conf_t *cf,
                                  const ngx_http_async_status_section_t *s)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    auto **slot = static_cast<const ngx_http_async_status_section_t **>(
        ngx_array_push(&amcf->status_sections));
    if (slot == nullptr) {
        return NGX_ERROR;
    }
    *slot = s;
    return NGX_OK;
}
