// async_job: a request becomes a job. Its body is read completely, the job
// gets a random id and a record in the zone, takes a slot or a queue place
// (or is refused with 503), and the client gets 202 Accepted, or the
// result itself when the job ends within wait= / Prefer: wait.
#include "job/ngx_http_async_job.hpp"

#include "core/ascii.hpp"
#include "common/ngx_http_async_conf.hpp"
#include "core/prefer.hpp"

#include <openssl/rand.h>

static ngx_int_t ngx_http_async_job_submit_handler(ngx_http_request_t *r);
static void ngx_http_async_job_submit_body(ngx_http_request_t *r);

static ngx_int_t ngx_http_async_job_submit_handler(ngx_http_request_t *r)
{
    if (ngx_http_async_job_ctx(r, true) == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    if (alcf->job->zone->redis_conf != nullptr
        && !ngx_http_async_redis_ready(alcf->job->zone->redis)) {
        return ngx_http_async_job_store_check(r, alcf->job->zone); // hook
    }
    ngx_int_t rc =
        ngx_http_read_client_request_body(r, ngx_http_async_job_submit_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }
    return NGX_DONE;
}

// Milliseconds to wait for the result: the client's Prefer header wins
// over the location's wait=; async_job_max_wait caps both.
static ngx_msec_t ngx_http_async_job_wait_for(ngx_http_request_t *r,
                                              ngx_http_async_loc_conf_t *alcf,
                                              bool *preference_applied)
{
    uint32_t max_s = static_cast<uint32_t>(alcf->job_max_wait / 1000);
    async::prefer_state prefer;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            if (h.hash != 0 && async::iequals(async::view(h.key), "Prefer")) {
                async::prefer_feed(prefer, async::view(h.value), max_s);
            }
            return true;
        });
    ngx_msec_t wait = alcf->job->wait;
    *preference_applied = prefer.respond_async;
    if (prefer.has_wait) {
        wait = static_cast<ngx_msec_t>(prefer.wait_s) * 1000;
    } else if (prefer.respond_async) {
        wait = 0;
    }
    return ngx_min(wait, alcf->job_max_wait);
}

static void ngx_http_async_job_refuse(ngx_http_request_t *r,
                                      ngx_uint_t retry_after)
{
    u_char *p = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT_T_LEN));
    auto *h =
        static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (p == nullptr || h == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%ui", retry_after) - p;
    h->lowcase_key = nullptr;
#if (nginx_version >= 1023000)
    h->next = nullptr;
#endif
    static const ngx_str_t body = ngx_string("{\"error\":\"too many jobs\"}\n");
    ngx_http_finalize_request(
        r, ngx_http_async_job_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, body,
                                        false));
}

static void ngx_http_async_job_submit_body(ngx_http_request_t *r)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    ngx_http_async_job_zone_t *zone = alcf->job->zone;
    if (zone->table == nullptr || zone->by_node == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_SERVICE_UNAVAILABLE);
        return;
    }

    bool applied = false;
    ngx_msec_t wait = ngx_http_async_job_wait_for(r, alcf, &applied);

    // idempotency=on: a repeated key is answered before a run is made
    ngx_http_async_job_idem_t idem;
    if (ngx_http_async_job_idem_prepare(r, zone, alcf->job, &idem) != NGX_OK) {
        return;
    }
    if (idem.on && zone->redis_conf != nullptr) {
        // store=redis: the key is claimed in Redis first, so that a repeat
        // on any node finds it; the reply goes on with submit_new. The
        // zone's own key table is not used: a DELETE on another node would
        // leave it naming a job Redis no longer has.
        ngx_http_async_job_redis_idem_claim(r, zone, &idem, wait, applied);
        return;
    }
    if (ngx_http_async_job_idem_replay(r, zone, &idem, wait, applied)) {
        return;
    }
    ngx_http_async_job_submit_new(r, &idem, wait, applied, nullptr);
}

void ngx_http_async_job_submit_new(ngx_http_request_t *r,
                                   const ngx_http_async_job_idem_t *claimed,
                                   ngx_msec_t wait, bool applied,
                                   const uint8_t claimed_id[async::id_bytes])
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_async_module));
    ngx_http_async_job_zone_t *zone = alcf->job->zone;
    ngx_http_async_job_idem_t idem = *claimed;
    // a key claimed in Redis is bound there, not in the zone's key table
    idem.on = idem.on && claimed_id == nullptr;
    ngx_http_async_job_run_t *run =
        ngx_http_async_job_run_create(r, zone, alcf->job);
    uint8_t id[async::id_bytes];
    if (claimed_id != nullptr) {
        ngx_memcpy(id, claimed_id, sizeof(id));
    }
    if (run == nullptr
        || (claimed_id == nullptr && RAND_bytes(id, sizeof(id)) != 1)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_job: cannot create a job in zone \"%V\"",
                      &zone->name);
        if (run != nullptr) {
            ngx_http_async_job_run_destroy(run);
        }
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    uint64_t now = ngx_http_async_job_now_ms();
    uint32_t node = async::no_node;
    auto slot = static_cast<uint32_t>(ngx_process_slot);
    async::admission a = async::admission::rejected;
    ngx_http_async_job_view_t v;
    ngx_uint_t retry_after = 1;
    bool table_full = false;

    ngx_shmtx_lock(&zone->shpool->mutex);
    // a racing repeat of the key got its job in first: that one is the job
    bool same = false;
    if (idem.on
        && ngx_http_async_job_idem_find_locked(zone, &idem, &v, &same)) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_async_job_run_destroy(run);
        ngx_http_async_job_idem_answer(r, zone, &v, same, wait, applied);
        return;
    }
    uint32_t index =
        async::job_table_insert(zone->table, id, slot, ngx_pid, now);
    if (index == async::no_job
        && ngx_http_async_job_expire_locked(zone, now) > 0) {
        index = async::job_table_insert(zone->table, id, slot, ngx_pid, now);
    }
    if (index == async::no_job) {
        table_full = true;
    } else {
        a = async::ticket_queue_enter(zone->q, slot, ngx_current_msec, &node);
        if (a == async::admission::passed) {
            async::admission_rate_note(zone->sh->rate, ngx_current_msec);
        } else if (a == async::admission::parked) {
            zone->table->records()[index].queue_node = node;
        } else {
            async::job_table_remove(zone->table, index);
            zone->table->counters.submitted--;
            zone->table->counters.rejected++;
        }
        if (a == async::admission::passed || a == async::admission::parked) {
            if (idem.on) {
                ngx_http_async_job_idem_bind_locked(zone, &idem, index);
            }
            v.rec = zone->table->records()[index];
            v.index = index;
            async::encode_id(id, v.id);
        }
    }
    if (table_full
        || (a != async::admission::passed && a != async::admission::parked)) {
        retry_after = async::retry_after_seconds(
            zone->sh->rate, zone->q->waiting, ngx_current_msec);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (table_full
        || (a != async::admission::passed && a != async::admission::parked)) {
        ngx_http_async_job_run_destroy(run);
        if ((table_full || a == async::admission::no_room)
            && ngx_time() != zone->last_full_log) {
            zone->last_full_log = ngx_time();
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "async_job_zone \"%V\" is full; job refused",
                          &zone->name);
        }
        ngx_http_async_job_refuse(r, retry_after);
        return;
    }

    ngx_http_async_job_run_attach(run, index, v.rec.generation, id, node);
    if (a == async::admission::passed) {
        ngx_http_async_job_run_post_start(run);
    }
    if (zone->redis_conf != nullptr) {
        // store=redis hook: the answer follows once Redis has the job
        ngx_http_async_job_redis_submitted(r, zone, &v, wait, applied);
        return;
    }

    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v.id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v.rec.state;
    }
    ngx_http_async_job_run_callback_uri(r, run);

    if (wait > 0) {
        ngx_int_t rc = ngx_http_async_job_park(r, zone, &v, wait,
                                               job_wait_kind::submit, applied);
        if (rc == NGX_OK) {
            return;
        }
    }
    ngx_http_finalize_request(
        r, ngx_http_async_job_send_accepted(r, zone, &v, applied));
}

// --- directives ----------------------------------------------------------

static ngx_http_async_job_loc_t *
ngx_http_async_job_loc(ngx_conf_t *cf, ngx_http_async_loc_conf_t *alcf)
{
    if (alcf->job == nullptr) {
        alcf->job = async::pool_calloc<ngx_http_async_job_loc_t>(cf->pool);
    }
    return alcf->job;
}

char *ngx_http_async_job_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                   void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));

    if (alcf->job != nullptr && alcf->job->zone != nullptr) {
        return const_cast<char *>("is duplicate");
    }
    if (alcf->fanout != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job\" \"%V\" and \"async_fetch\" cannot "
                           "be in the same location \"%V\"",
                           &value[1], &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (clcf->handler != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job\" \"%V\" in location \"%V\" conflicts "
                           "with another content handler",
                           &value[1], &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_http_async_job_loc_t *job = ngx_http_async_job_loc(cf, alcf);
    if (job == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    job->zone = ngx_http_async_job_zone_ref(cf, &value[1], cmd->name);
    if (job->zone == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    job->zone->has_submit = true;

    ngx_http_compile_complex_value_t ccv;
    ngx_memzero(&ccv, sizeof(ccv));
    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &job->uri;
    if (value[2].len == 0 || value[2].data[0] != '/'
        || ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URI \"%V\" in \"async_job\"", &value[2]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    for (ngx_uint_t i = 3; i < cf->args->nelts; i++) {
        auto idem =
            async::parse_key_value(async::view(value[i]), "idempotency");
        if (idem && (*idem == "on" || *idem == "off")) {
            job->idempotency = *idem == "on";
            continue;
        }
        auto w = async::parse_key_value(async::view(value[i]), "wait");
        auto ms = w ? ngx_http_async_parse_msec(*w) : std::nullopt;
        if (!ms || *ms > 86400ULL * 1000) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\" in \"async_job\"",
                               &value[i]);
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        job->wait = static_cast<ngx_msec_t>(*ms);
    }
    clcf->handler = ngx_http_async_job_submit_handler;
    return NGX_CONF_OK;
}

char *ngx_http_async_job_callback_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                            void *conf)
{
    auto *alcf = static_cast<ngx_http_async_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    (void) cmd;

    ngx_http_async_job_loc_t *job = ngx_http_async_job_loc(cf, alcf);
    if (job == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (job->callback != nullptr) {
        return const_cast<char *>("is duplicate");
    }
    job->callback = async::pool_calloc<ngx_http_complex_value_t>(cf->pool);
    if (job->callback == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_http_compile_complex_value_t ccv;
    ngx_memzero(&ccv, sizeof(ccv));
    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = job->callback;
    if (value[1].len == 0 || value[1].data[0] != '/'
        || ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URI \"%V\" in \"async_job_callback\"",
                           &value[1]);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    job->callback_file = cf->conf_file->file.name.data;
    job->callback_line = cf->conf_file->line;
    return NGX_CONF_OK;
}

// After parsing a location: the combinations that cannot work.
char *ngx_http_async_job_merge(ngx_conf_t *cf, ngx_http_async_loc_conf_t *conf)
{
    ngx_http_async_job_loc_t *job = conf->job;
    if (job == nullptr) {
        return NGX_CONF_OK;
    }
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (job->zone != nullptr && conf->fanout != nullptr) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_job\" \"%V\" and \"async_fetch\" cannot be in "
                      "the same location \"%V\"",
                      &job->zone->name, &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (job->callback != nullptr && job->zone == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_job_callback\" in location \"%V\" needs "
                      "\"async_job\" in %s:%ui",
                      &clcf->name, job->callback_file, job->callback_line);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (job->zone != nullptr && job->status != nullptr) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"async_job\" \"%V\" and \"async_job_status\" cannot "
                      "be in the same location \"%V\"",
                      &job->zone->name, &clcf->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

// --- variables -----------------------------------------------------------

static ngx_int_t ngx_http_async_job_variable(ngx_http_request_t *r,
                                             ngx_http_variable_value_t *v,
                                             uintptr_t data)
{
    ngx_http_async_job_ctx_t *ctx = ngx_http_async_job_ctx(r->main, false);
    if (ctx == nullptr || !ctx->has_id) {
        // a job's own request after an internal redirect wiped its ctx
        char id[async::id_chars];
        async::job_state state;
        if (!ngx_http_async_job_conn_id(r->connection, id, &state)
            || (ctx = ngx_http_async_job_ctx(r->main, true)) == nullptr) {
            v->not_found = 1;
            return NGX_OK;
        }
        ngx_memcpy(ctx->id, id, async::id_chars);
        ctx->has_id = true;
        ctx->state = state;
    }
    if (data == 0) {
        v->data = reinterpret_cast<u_char *>(ctx->id);
        v->len = async::id_chars;
    } else {
        std::string_view name = async::job_state_name(ctx->state);
        v->data = reinterpret_cast<u_char *>(const_cast<char *>(name.data()));
        v->len = static_cast<unsigned>(name.size());
    }
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

ngx_int_t ngx_http_async_job_add_variables(ngx_conf_t *cf)
{
    static ngx_str_t names[] = {ngx_string("async_job_id"),
                                ngx_string("async_job_status")};
    for (uintptr_t i = 0; i < 2; i++) {
        ngx_http_variable_t *var =
            ngx_http_add_variable(cf, &names[i], NGX_HTTP_VAR_NOCACHEABLE);
        if (var == nullptr) {
            return NGX_ERROR;
        }
        var->get_handler = ngx_http_async_job_variable;
        var->data = i;
    }
    return NGX_OK;
}
