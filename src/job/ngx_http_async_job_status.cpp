// async_job_status: GET <prefix>/<id> (?wait=SECONDS long-poll),
// GET <prefix>/<id>/result, DELETE <prefix>/<id>; and the JSON answers
// every part of the job concern sends.
#include "job/ngx_http_async_job.hpp"

#include "core/json_writer.hpp"
#include "core/query.hpp"

static ngx_int_t ngx_http_async_job_status_handler(ngx_http_request_t *r);

// Larger waits are not numbers this module takes: 400.
static constexpr uint32_t wait_arg_max = 1000000000;

static const ngx_str_t not_found_body =
    ngx_string("{\"error\":\"job not found\"}\n");

// --- answers -------------------------------------------------------------

static ngx_int_t ngx_http_async_job_add_header(ngx_http_request_t *r,
                                               ngx_str_t key, ngx_str_t value)
{
    auto *h =
        static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == nullptr) {
        return NGX_ERROR;
    }
    h->hash = 1;
    h->key = key;
    h->value = value;
    h->lowcase_key = nullptr;
#if (nginx_version >= 1023000)
    h->next = nullptr;
#endif
    return NGX_OK;
}

static ngx_int_t ngx_http_async_job_send_body(ngx_http_request_t *r,
                                              ngx_uint_t status, ngx_str_t type,
                                              ngx_str_t body)
{
    r->headers_out.status = status;
    r->headers_out.content_type = type;
    r->headers_out.content_type_len = type.len;
    r->headers_out.content_length_n = static_cast<off_t>(body.len);
    if (body.len == 0) {
        r->header_only = 1;
    }
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }
    auto *b = async::pool_calloc<ngx_buf_t>(r->pool);
    if (b == nullptr) {
        return NGX_ERROR;
    }
    b->pos = body.data;
    b->last = body.data + body.len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out{b, nullptr};
    return ngx_http_output_filter(r, &out);
}

ngx_int_t ngx_http_async_job_send_json(ngx_http_request_t *r, ngx_uint_t status,
                                       ngx_str_t body, bool retry_after)
{
    if (retry_after
        && ngx_http_async_job_add_header(r, async::literal("Retry-After"),
                                         async::literal("1"))
               != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_job_send_body(
        r, status, async::literal("application/json"), body);
}

ngx_int_t ngx_http_async_job_send_not_found(ngx_http_request_t *r)
{
    return ngx_http_async_job_send_json(r, NGX_HTTP_NOT_FOUND, not_found_body,
                                        false);
}

static ngx_str_t ngx_http_async_job_href(ngx_pool_t *pool,
                                         ngx_http_async_job_zone_t *zone,
                                         const char id[async::id_chars],
                                         bool result)
{
    size_t len = zone->status_prefix.len + 1 + async::id_chars
                 + (result ? sizeof("/result") - 1 : 0);
    ngx_str_t out{0, nullptr};
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, len));
    if (p == nullptr) {
        return out;
    }
    u_char *last =
        ngx_cpymem(p, zone->status_prefix.data, zone->status_prefix.len);
    *last++ = '/';
    last = ngx_cpymem(last, id, async::id_chars);
    if (result) {
        last = ngx_cpymem(last, "/result", sizeof("/result") - 1);
    }
    out.data = p;
    out.len = static_cast<size_t>(last - p);
    return out;
}

static void ngx_http_async_job_time(async::json_writer &w, uint64_t ms)
{
    if (ms == 0) {
        w.null();
    } else {
        w.number_double(static_cast<double>(ms) / 1000.0, 3);
    }
}

ngx_str_t ngx_http_async_job_status_json(ngx_pool_t *pool,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v)
{
    ngx_str_t out{0, nullptr};
    size_t cap = 512 + 2 * zone->status_prefix.len;
    auto *p = static_cast<u_char *>(ngx_pnalloc(pool, cap));
    if (p == nullptr) {
        return out;
    }
    const async::job_record &rec = v->rec;
    std::string_view id(v->id, async::id_chars);
    async::json_writer w(reinterpret_cast<char *>(p), cap - 1);
    w.begin_object();
    w.key("id");
    w.string(id);
    w.key("status");
    w.string(async::job_state_name(rec.state));
    w.key("created");
    ngx_http_async_job_time(w, rec.created_ms);
    w.key("started");
    ngx_http_async_job_time(w, rec.started_ms);
    w.key("finished");
    ngx_http_async_job_time(w, rec.finished_ms);
    w.key("result_status");
    if (rec.state == async::job_state::completed) {
        w.number_u64(rec.result_status);
    } else {
        w.null();
    }
    w.key("href_result");
    if (rec.state == async::job_state::completed) {
        w.string(async::view(ngx_http_async_job_href(pool, zone, v->id, true)));
    } else {
        w.null();
    }
    w.key("reason");
    if (rec.reason != async::job_reason::none) {
        w.string(async::job_reason_name(rec.reason));
    } else {
        w.null();
    }
    w.end_object();
    if (!w.complete()) {
        return out;
    }
    p[w.length()] = '\n';
    out.data = p;
    out.len = w.length() + 1;
    return out;
}

ngx_int_t ngx_http_async_job_send_status(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v,
                                         ngx_uint_t status)
{
    ngx_str_t body = ngx_http_async_job_status_json(r->pool, zone, v);
    if (body.len == 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    return ngx_http_async_job_send_json(r, status, body,
                                        !async::job_final(v->rec.state));
}

ngx_int_t ngx_http_async_job_send_accepted(ngx_http_request_t *r,
                                           ngx_http_async_job_zone_t *zone,
                                           const ngx_http_async_job_view_t *v,
                                           bool preference_applied)
{
    ngx_str_t href = ngx_http_async_job_href(r->pool, zone, v->id, false);
    size_t cap = 128 + 2 * href.len;
    auto *p = static_cast<u_char *>(ngx_pnalloc(r->pool, cap));
    if (href.len == 0 || p == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    async::json_writer w(reinterpret_cast<char *>(p), cap - 1);
    w.begin_object();
    w.key("id");
    w.string(std::string_view(v->id, async::id_chars));
    w.key("status");
    w.string(async::job_state_name(v->rec.state));
    w.key("href");
    w.string(async::view(href));
    w.end_object();
    if (!w.complete()) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    p[w.length()] = '\n';
    ngx_str_t body{w.length() + 1, p};

    if (ngx_http_async_job_add_header(r, async::literal("Location"), href)
            != NGX_OK
        || (preference_applied
            && ngx_http_async_job_add_header(
                   r, async::literal("Preference-Applied"),
                   async::literal("respond-async"))
                   != NGX_OK)) {
        return NGX_ERROR;
    }
    return ngx_http_async_job_send_json(r, NGX_HTTP_ACCEPTED, body, true);
}

ngx_int_t ngx_http_async_job_send_result(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_view_t *v)
{
    ngx_str_t type{0, nullptr}, body{0, nullptr};
    ngx_uint_t status = 0;
    bool have = false;
    u_char *copy = nullptr;

    // the record may have changed since v was taken: copy it again with
    // its result, under the lock
    if (v->rec.state == async::job_state::completed) {
        copy = static_cast<u_char *>(
            ngx_pnalloc(r->pool, ngx_max(v->rec.result_bytes, 1u)));
        if (copy == nullptr) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_shmtx_lock(&zone->shpool->mutex);
        const async::job_record &rec = zone->table->records()[v->index];
        if (rec.generation == v->rec.generation
            && rec.state == async::job_state::completed
            && rec.result_offset != 0
            && rec.result_bytes == v->rec.result_bytes) {
            ngx_memcpy(copy,
                       reinterpret_cast<u_char *>(zone->shpool)
                           + rec.result_offset,
                       rec.result_bytes);
            have = true;
            status = rec.result_status;
            type.data = copy;
            type.len = rec.content_type_len;
            body.data = copy + rec.content_type_len;
            body.len = rec.result_bytes - rec.content_type_len;
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
    if (!have) {
        return ngx_http_async_job_send_status(r, zone, v, NGX_HTTP_CONFLICT);
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    return ngx_http_async_job_send_body(r, status, type, body);
}

// --- the status location -------------------------------------------------

// Splits the URI after the location's prefix into the id and whether the
// result is asked for. Anything else is not a job.
static bool ngx_http_async_job_parse_path(ngx_http_request_t *r,
                                          std::string_view *id, bool *result)
{
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_core_module));
    std::string_view uri = async::view(r->uri);
    std::string_view prefix = async::view(clcf->name);
    if (uri.size() < prefix.size() || uri.substr(0, prefix.size()) != prefix) {
        return false;
    }
    std::string_view rest = uri.substr(prefix.size());
    if (prefix.empty() || prefix.back() != '/') {
        if (rest.empty() || rest.front() != '/') {
            return false;
        }
        rest.remove_prefix(1);
    }
    *result = false;
    size_t slash = rest.find('/');
    if (slash != std::string_view::npos) {
        if (rest.substr(slash) != "/result") {
            return false;
        }
        *result = true;
        rest = rest.substr(0, slash);
    }
    *id = rest;
    return true;
}

static ngx_int_t ngx_http_async_job_cancel(ngx_http_request_t *r,
                                           ngx_http_async_job_zone_t *zone,
                                           ngx_http_async_job_view_t *v)
{
    uint64_t now = ngx_http_async_job_now_ms();
    async::wake_set wake{};
    uint64_t watchers = 0;
    ngx_pid_t owner = 0;
    ngx_uint_t answer = NGX_HTTP_NO_CONTENT;

    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[v->index];
    if (rec.generation != v->rec.generation
        || rec.state == async::job_state::free) {
        answer = NGX_HTTP_NOT_FOUND;
    } else if (async::job_final(rec.state)) {
        // a finished job and its result are deleted
        ngx_http_async_job_free_result_locked(zone, rec.result_offset);
        async::job_table_remove(zone->table, v->index);
    } else {
        if (rec.state == async::job_state::running) {
            answer = NGX_HTTP_ACCEPTED; // its worker stops it
        }
        uint32_t node = rec.queue_node;
        if (node != async::no_node) {
            async::ticket_queue_leave(zone->q, node,
                                      async::leave_reason::cancelled, &wake);
        }
        async::job_table_finish(
            zone->table, v->index, async::job_state::cancelled,
            async::job_reason::cancelled, 0, now, zone->sh->ttl_ms);
        watchers = rec.watchers;
        owner = static_cast<ngx_pid_t>(rec.owner_pid);
        v->rec = rec;
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
    if (owner != 0) {
        ngx_http_async_wake_pid(owner);
    }
    ngx_http_async_job_wake_watchers(zone, watchers);

    if (answer == NGX_HTTP_NOT_FOUND) {
        return ngx_http_async_job_send_not_found(r);
    }
    if (answer == NGX_HTTP_ACCEPTED) {
        return ngx_http_async_job_send_status(r, zone, v, NGX_HTTP_ACCEPTED);
    }
    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->header_only = 1;
    r->headers_out.content_length_n = 0;
    return ngx_http_send_header(r);
}

static ngx_int_t ngx_http_async_job_status_handler(ngx_http_request_t *r)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    ngx_http_async_job_zone_t *zone = alcf->job->status;

    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD | NGX_HTTP_DELETE))) {
        if (ngx_http_async_job_add_header(r, async::literal("Allow"),
                                          async::literal("GET, HEAD, DELETE"))
            != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return NGX_HTTP_NOT_ALLOWED;
    }
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    if (zone->table == nullptr) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    async::wait_arg wait =
        async::parse_query_wait(async::view(r->args), "wait", wait_arg_max);
    if (wait.status == async::wait_status::invalid
        || wait.status == async::wait_status::too_large) {
        static const ngx_str_t bad =
            ngx_string("{\"error\":\"wait must be whole seconds\"}\n");
        return ngx_http_async_job_send_json(r, NGX_HTTP_BAD_REQUEST, bad,
                                            false);
    }

    std::string_view id_text;
    bool result = false;
    uint8_t id[async::id_bytes];
    ngx_http_async_job_view_t v;
    // only a well-formed id reaches the shared table
    if (!ngx_http_async_job_parse_path(r, &id_text, &result)
        || !async::decode_id(id_text, id)
        || !ngx_http_async_job_lookup(zone, id, &v)) {
        return ngx_http_async_job_send_not_found(r);
    }

    if (r->method & NGX_HTTP_DELETE) {
        if (result) {
            if (ngx_http_async_job_add_header(r, async::literal("Allow"),
                                              async::literal("GET, HEAD"))
                != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            return NGX_HTTP_NOT_ALLOWED;
        }
        return ngx_http_async_job_cancel(r, zone, &v);
    }
    if (result) {
        return ngx_http_async_job_send_result(r, zone, &v);
    }

    if (wait.status == async::wait_status::ok && wait.seconds > 0
        && !async::job_final(v.rec.state)) {
        ngx_msec_t timeout = ngx_min(
            static_cast<ngx_msec_t>(wait.seconds) * 1000, alcf->job_max_wait);
        if (timeout > 0) {
            rc = ngx_http_async_job_park(r, zone, &v, timeout,
                                         job_wait_kind::status, false);
            if (rc == NGX_OK) {
                r->main->count++;
                return NGX_DONE;
            }
            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            // final meanwhile: answer with the fresh state
            if (!ngx_http_async_job_lookup_index(zone, v.index,
                                                 v.rec.generation, &v)) {
                return ngx_http_async_job_send_not_found(r);
            }
        }
    }
    return ngx_http_async_job_send_status(r, zone, &v, NGX_HTTP_OK);
}

char *ngx_http_async_job_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));

    if (alcf->job != nullptr && alcf->job->status != nullptr) {
        return const_cast<char *>("is duplicate");
    }
    if (clcf->handler != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job_status\" \"%V\" in location \"%V\" "
                           "conflicts with another content handler",
                           &value[1], &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
#if (NGX_PCRE)
    if (clcf->regex != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job_status\" \"%V\" needs a prefix "
                           "location, not \"%V\"",
                           &value[1], &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
#endif
    if (clcf->exact_match || clcf->named) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job_status\" \"%V\" needs a prefix "
                           "location, not \"%V\"",
                           &value[1], &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_http_async_job_zone_t *zone =
        ngx_http_async_job_zone_ref(cf, &value[1], cmd->name);
    if (zone == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (alcf->job == nullptr) {
        alcf->job = async::pool_calloc<ngx_http_async_job_loc_t>(cf->pool);
        if (alcf->job == nullptr) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
    }
    alcf->job->status = zone;
    if (zone->status_prefix.len == 0) {
        ngx_str_t prefix = clcf->name;
        while (prefix.len > 0 && prefix.data[prefix.len - 1] == '/') {
            prefix.len--;
        }
        zone->status_prefix = prefix;
    }
    clcf->handler = ngx_http_async_job_status_handler;
    return NGX_CONF_OK;
}
