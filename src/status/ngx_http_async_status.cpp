// async_status: a read-only report of every zone of the module, like
// stub_status. Each registered section copies its counters under its
// zones' locks; then the report is formatted without any lock held, as JSON
// or as Prometheus text (ngx_http_async_status_prometheus.cpp).
#include "status/ngx_http_async_status.hpp"

#include "core/ascii.hpp"

enum class status_format { json, prometheus, unknown };

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

// --- snapshot -----------------------------------------------------------

static ngx_int_t
ngx_http_async_status_snapshot(ngx_http_request_t *r,
                               ngx_http_async_status_snapshot_t *s)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_async_module));
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_core_module));

    ngx_memzero(s, sizeof(*s));
    s->server_tokens = clcf->server_tokens != NGX_HTTP_SERVER_TOKENS_OFF;

    ngx_uint_t n = amcf->status_sections.nelts;
    auto **sections = static_cast<const ngx_http_async_status_section_t **>(
        amcf->status_sections.elts);
    s->parts =
        async::pool_calloc_array<ngx_http_async_status_part_t>(r->pool, n + 1);
    if (s->parts == nullptr) {
        return NGX_ERROR;
    }
    for (ngx_uint_t i = 0; i < n; i++) {
        ngx_http_async_status_part_t &part = s->parts[s->nparts++];
        ngx_uint_t items = 0;
        part.section = sections[i];
        if (part.section->snapshot(r, &part.data, &items) != NGX_OK) {
            return NGX_ERROR;
        }
        s->items += items;
    }

    ngx_http_async_stats_fanout_snapshot(s->fanout);
    return NGX_OK;
}

// --- JSON ---------------------------------------------------------------

bool ngx_http_async_status_json(async::json_writer &w,
                                const ngx_http_async_status_snapshot_t &s)
{
    w.begin_object();
    w.key("module");
    w.string("ngx_http_async_module");
    w.key("version");
    w.string(async::module_version);
    if (s.server_tokens) {
        w.key("nginx_version");
        w.string(NGINX_VERSION);
    }
    for (ngx_uint_t i = 0; i < s.nparts; i++) {
        s.parts[i].section->json(w, s.parts[i].data);
    }
    w.key("fanout");
    w.begin_object();
    for (ngx_uint_t i = 0; i < fanout_stat_count; i++) {
        w.key(ngx_http_async_stats_fanout_name(static_cast<fanout_stat>(i)));
        w.number_u64(s.fanout[i]);
    }
    w.end_object();
    w.end_object();
    return w.complete();
}

// --- handler ------------------------------------------------------------

// ?format=json|prometheus wins; otherwise the Accept header decides.
static status_format ngx_http_async_status_format(ngx_http_request_t *r)
{
    ngx_str_t arg;
    if (ngx_http_arg(
            r, const_cast<u_char *>(reinterpret_cast<const u_char *>("format")),
            6, &arg)
        == NGX_OK) {
        if (async::iequals(async::view(arg), "json")) {
            return status_format::json;
        }
        if (async::iequals(async::view(arg), "prometheus")) {
            return status_format::prometheus;
        }
        return status_format::unknown;
    }

    status_format format = status_format::json;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            if (h.hash != 0 && async::iequals(async::view(h.key), "Accept")
                && async::prometheus_text_accepted(async::view(h.value))) {
                format = status_format::prometheus;
                return false;
            }
            return true;
        });
    return format;
}

// Formats into a pool buffer, doubling it when the report does not fit.
static ngx_buf_t *
ngx_http_async_status_render(ngx_http_request_t *r, status_format format,
                             const ngx_http_async_status_snapshot_t &s)
{
    size_t cap =
        (format == status_format::prometheus ? 8192 : 4096) + s.items * 4096;
    for (int attempt = 0; attempt < 4; attempt++, cap *= 2) {
        ngx_buf_t *b = ngx_create_temp_buf(r->pool, cap);
        if (b == nullptr) {
            return nullptr;
        }
        auto *p = reinterpret_cast<char *>(b->pos);
        if (format == status_format::prometheus) {
            async::prometheus_writer w(p, cap);
            if (ngx_http_async_status_prometheus(w, s)) {
                b->last = b->pos + w.length();
                return b;
            }
            if (w.misused()) {
                break;
            }
        } else {
            async::json_writer w(p, cap - 1);
            if (ngx_http_async_status_json(w, s)) {
                b->last = b->pos + w.length();
                *b->last++ = '\n';
                return b;
            }
            if (w.misused()) {
                break;
            }
        }
        ngx_pfree(r->pool, b->start);
    }
    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "async_status: cannot format the report (%uz bytes)", cap);
    return nullptr;
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

    status_format format = ngx_http_async_status_format(r);
    if (format == status_format::unknown) {
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_http_async_status_snapshot_t s;
    if (ngx_http_async_status_snapshot(r, &s) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_buf_t *b = ngx_http_async_status_render(r, format, s);
    if (b == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (format == status_format::prometheus) {
        r->headers_out.content_type =
            async::ngx_string_of(async::prometheus_content_type);
        // the media type without its parameters, for charset_types & co
        r->headers_out.content_type_len = sizeof("text/plain") - 1;
    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
    }
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    // the same URI answers in two formats, chosen by Accept
    ngx_str_t accept = ngx_string("Accept");
    if (async::push_header(&r->headers_out.headers, "Vary", accept)
        == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}
