// async_status: a read-only JSON report of the module, like stub_status.
#include "ngx_http_async_module.hpp"

static ngx_int_t ngx_http_async_status_handler(ngx_http_request_t *r);

char *ngx_http_async_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                      void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    (void) cmd;

    if (alcf->status != NGX_CONF_UNSET) {
        return const_cast<char *>("is duplicate");
    }
    alcf->status = 1;

    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = ngx_http_async_status_handler;
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_async_status_handler(ngx_http_request_t *r)
{
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    static const char body_fmt[] = "{\"module\":\"ngx_http_async_module\","
                                   "\"version\":\"%*s\","
                                   "\"nginx_version\":\"%s\"}\n";
    size_t cap = sizeof(body_fmt) + async::module_version.size()
                 + sizeof(NGINX_VERSION);

    ngx_buf_t *b = ngx_create_temp_buf(r->pool, cap);
    if (b == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last = ngx_sprintf(b->last, body_fmt, async::module_version.size(),
                          async::module_version.data(), NGINX_VERSION);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}
