// async_job_status: GET <prefix>/<id> (?wait=SECONDS long-poll),
// GET <prefix>/<id>/result, DELETE <prefix>/<id>. The answers themselves
// are in ngx_http_async_job_answer.cpp.
#include "job/ngx_http_async_job.hpp"

#include "core/query.hpp"

static ngx_int_t ngx_http_async_job_status_handler(ngx_http_request_t *r);

// Larger waits are not numbers this module takes: 400.
static constexpr uint32_t wait_arg_max = 1000000000;

// --- the status location -------------------------------------------------

// Splits the URI after the location's prefix into the id and whether the
// result is asked for. Anything else is not a job.
static bool ngx_http_async_job_parse_path(ngx_http_request_t *r,
                                          std::string_view *id, bool *result,
                                          bool *progress)
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
    *progress = false;
    size_t slash = rest.find('/');
    if (slash != std::string_view::npos) {
        *progress = rest.substr(slash) == "/progress";
        if (rest.substr(slash) != "/result" && !*progress) {
            return false;
        }
        *result = !*progress;
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

    std::string_view id_text;
    bool result = false, progress = false;
    bool path_ok =
        ngx_http_async_job_parse_path(r, &id_text, &result, &progress);
    if (path_ok && progress) {
        // the job's backend reports (ngx_http_async_job_progress.cpp)
        if (r->method & NGX_HTTP_PUT) {
            return ngx_http_async_job_progress_put(r, zone, id_text);
        }
        if (ngx_http_async_job_add_header(r, async::literal("Allow"),
                                          async::literal("PUT"))
            != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return NGX_HTTP_NOT_ALLOWED;
    }
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

    uint8_t id[async::id_bytes];
    ngx_http_async_job_view_t v;
    // only a well-formed id reaches the shared table
    if (!path_ok || !async::decode_id(id_text, id)) {
        return ngx_http_async_job_send_not_found(r);
    }
    if (zone->redis_conf != nullptr) {
        // store=redis hook: every node answers from Redis
        if ((r->method & NGX_HTTP_DELETE) && result) {
            if (ngx_http_async_job_add_header(r, async::literal("Allow"),
                                              async::literal("GET, HEAD"))
                != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
            return NGX_HTTP_NOT_ALLOWED;
        }
        ngx_msec_t timeout = 0;
        if (wait.status == async::wait_status::ok && !result) {
            timeout = ngx_min(static_cast<ngx_msec_t>(wait.seconds) * 1000,
                              alcf->job_max_wait);
        }
        return ngx_http_async_job_redis_serve(r, zone, id_text.data(), result,
                                              timeout);
    }
    if (!ngx_http_async_job_lookup(zone, id, &v)) {
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

// limit_except in an async_job_status location (to keep progress reports,
// PUT, to the backends' addresses) makes a location of its own: it runs
// the same handler.
void ngx_http_async_job_status_merge_limit_except(
    ngx_conf_t *cf, ngx_http_async_loc_conf_t *prev,
    ngx_http_async_loc_conf_t *conf)
{
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (!clcf->lmt_excpt || clcf->handler != nullptr || conf->job != nullptr
        || prev->job == nullptr || prev->job->status == nullptr) {
        return;
    }
    conf->job = prev->job;
    clcf->handler = ngx_http_async_job_status_handler;
}
