// Idempotent submits (async_job ... idempotency=on), after
// draft-ietf-httpapi-idempotency-key-header: a submit that carries
// Idempotency-Key: "<sf-string>" is bound to its job for as long as the job
// lives; a repeat with the same method, URI and body gets that job again,
// one with another request gets 422. The key and the request's fingerprint
// are SHA-256 digests kept beside the job record (core/job_extras.hpp), so
// the check and the insert of a new job happen under one lock: two racing
// repeats make one job. With store=redis the key is claimed in Redis
// instead, so that every node finds it (ngx_http_async_job_store_redis.cpp).
#include "job/ngx_http_async_job.hpp"

#include "core/ascii.hpp"
#include "core/sf_string.hpp"

#include <openssl/evp.h>

static constexpr size_t body_chunk = 16384;
// nginx has no name for 422 (RFC 9110's Unprocessable Content)
static constexpr ngx_uint_t status_unprocessable = 422;

static void ngx_http_async_job_idem_refuse(ngx_http_request_t *r,
                                           ngx_uint_t status, ngx_str_t body)
{
    if (status == status_unprocessable) {
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Content");
    }
    ngx_http_finalize_request(
        r, ngx_http_async_job_send_json(r, status, body, false));
}

static bool ngx_http_async_job_idem_digest_str(EVP_MD_CTX *md, ngx_str_t s)
{
    // length-prefixed, so no two splits of the same bytes hash alike
    uint64_t len = s.len;
    return EVP_DigestUpdate(md, &len, sizeof(len)) == 1
           && (s.len == 0 || EVP_DigestUpdate(md, s.data, s.len) == 1);
}

// The body as the job will get it, from memory or streamed from the temp
// file in chunks.
static bool ngx_http_async_job_idem_digest_body(ngx_http_request_t *r,
                                                EVP_MD_CTX *md)
{
    ngx_http_request_body_t *rb = r->request_body;
    uint64_t total = 0;
    if (rb != nullptr) {
        for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
            ngx_buf_t *b = cl->buf;
            total += b->in_file ? b->file_last - b->file_pos : b->last - b->pos;
        }
    }
    if (EVP_DigestUpdate(md, &total, sizeof(total)) != 1) {
        return false;
    }
    if (total == 0) {
        return true;
    }
    u_char *chunk = nullptr;
    for (ngx_chain_t *cl = rb->bufs; cl; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if (!b->in_file) {
            if (b->last > b->pos
                && EVP_DigestUpdate(md, b->pos, b->last - b->pos) != 1) {
                return false;
            }
            continue;
        }
        if (chunk == nullptr) {
            chunk = static_cast<u_char *>(ngx_palloc(r->pool, body_chunk));
            if (chunk == nullptr) {
                return false;
            }
        }
        for (off_t pos = b->file_pos; pos < b->file_last;) {
            size_t n = static_cast<size_t>(
                ngx_min(b->file_last - pos, static_cast<off_t>(body_chunk)));
            ssize_t got = ngx_read_file(b->file, chunk, n, pos);
            if (got != static_cast<ssize_t>(n)
                || EVP_DigestUpdate(md, chunk, n) != 1) {
                return false;
            }
            pos += static_cast<off_t>(n);
        }
    }
    return true;
}

static bool ngx_http_async_job_idem_fingerprint(ngx_http_request_t *r,
                                                ngx_http_async_job_idem_t *idem)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == nullptr) {
        return false;
    }
    u_char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    bool ok = EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1
              && ngx_http_async_job_idem_digest_str(md, r->method_name)
              && ngx_http_async_job_idem_digest_str(md, r->uri)
              && ngx_http_async_job_idem_digest_str(md, r->args)
              && ngx_http_async_job_idem_digest_body(r, md)
              && EVP_DigestFinal_ex(md, digest, &len) == 1
              && len >= sizeof(idem->fingerprint);
    EVP_MD_CTX_free(md);
    if (ok) {
        // 128 bits of SHA-256 keep collisions out of reach at half the room
        ngx_memcpy(idem->fingerprint, digest, sizeof(idem->fingerprint));
    }
    return ok;
}

// The zone's keys, made on its first idempotent submit (zones that never
// see a key pay nothing); they stay for the zone's life. The lock is held.
static async::job_keys *
ngx_http_async_job_idem_keys_locked(ngx_http_async_job_zone_t *zone,
                                    bool create)
{
    if (zone->sh->keys_offset != 0) {
        return reinterpret_cast<async::job_keys *>(
            reinterpret_cast<u_char *>(zone->shpool) + zone->sh->keys_offset);
    }
    if (!create) {
        return nullptr;
    }
    uint32_t capacity = zone->table->capacity;
    auto *keys = static_cast<async::job_keys *>(
        ngx_slab_alloc_locked(zone->shpool, async::job_keys_bytes(capacity)));
    if (keys == nullptr) {
        return nullptr;
    }
    async::job_keys_init(keys, capacity);
    zone->sh->keys_offset =
        static_cast<uint64_t>(reinterpret_cast<u_char *>(keys)
                              - reinterpret_cast<u_char *>(zone->shpool));
    return keys;
}

ngx_int_t ngx_http_async_job_idem_prepare(ngx_http_request_t *r,
                                          ngx_http_async_job_zone_t *zone,
                                          ngx_http_async_job_loc_t *jlcf,
                                          ngx_http_async_job_idem_t *idem)
{
    idem->on = false;
    if (!jlcf->idempotency) {
        return NGX_OK;
    }
    const ngx_table_elt_t *key = nullptr;
    ngx_uint_t nkeys = 0;
    async::list_each<ngx_table_elt_t>(
        r->headers_in.headers, [&](ngx_table_elt_t &h) {
            if (h.hash != 0
                && async::iequals(async::view(h.key), "Idempotency-Key")) {
                key = &h;
                nkeys++;
            }
            return true;
        });
    if (nkeys == 0) {
        return NGX_OK;
    }

    char text[async::idempotency_key_max];
    size_t len = 0;
    async::sf_string_status st =
        nkeys > 1 ? async::sf_string_status::not_string
                  : async::parse_sf_string(async::view(key->value), text,
                                           sizeof(text), &len);
    if (st != async::sf_string_status::ok) {
        static const ngx_str_t bad = ngx_string(
            "{\"error\":\"Idempotency-Key must be one quoted string of 1 to "
            "255 bytes\"}\n");
        ngx_http_async_job_idem_refuse(r, NGX_HTTP_BAD_REQUEST, bad);
        return NGX_DONE;
    }

    u_char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_Digest(text, len, digest, &dlen, EVP_sha256(), nullptr) != 1
        || dlen < sizeof(idem->key)
        || !ngx_http_async_job_idem_fingerprint(r, idem)) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "async_job: cannot hash the request for its "
                      "Idempotency-Key");
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }
    ngx_memcpy(idem->key, digest, sizeof(idem->key));
    if (zone->redis_conf != nullptr) {
        // store=redis keeps keys in Redis (ngx_http_async_job_store_redis)
        idem->on = true;
        return NGX_OK;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_keys *keys = ngx_http_async_job_idem_keys_locked(zone, true);
    ngx_shmtx_unlock(&zone->shpool->mutex);
    if (keys == nullptr) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "async_job_zone \"%V\" has no room for the "
                      "Idempotency-Key table",
                      &zone->name);
        static const ngx_str_t full =
            ngx_string("{\"error\":\"no room for idempotency keys\"}\n");
        ngx_http_async_job_idem_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE, full);
        return NGX_DONE;
    }
    idem->on = true;
    return NGX_OK;
}

bool ngx_http_async_job_idem_find_locked(ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         ngx_http_async_job_view_t *view,
                                         bool *same)
{
    async::job_keys *keys = ngx_http_async_job_idem_keys_locked(zone, false);
    if (keys == nullptr) {
        return false;
    }
    uint32_t index = async::job_key_find(keys, zone->table, idem->key,
                                         ngx_http_async_job_now_ms());
    if (index == async::no_job) {
        return false;
    }
    *same = async::job_key_same_request(keys, index, idem->fingerprint);
    if (*same) {
        keys->replayed++;
    } else {
        keys->conflicts++;
    }
    ngx_http_async_job_view_fill_locked(zone, index, view);
    return true;
}

void ngx_http_async_job_idem_bind_locked(ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         uint32_t index)
{
    async::job_keys *keys = ngx_http_async_job_idem_keys_locked(zone, false);
    if (keys != nullptr) {
        async::job_key_bind(keys, zone->table, index, idem->key,
                            idem->fingerprint);
    }
}

void ngx_http_async_job_idem_answer(ngx_http_request_t *r,
                                    ngx_http_async_job_zone_t *zone,
                                    ngx_http_async_job_view_t *view, bool same,
                                    ngx_msec_t wait, bool preference_applied)
{
    if (!same) {
        static const ngx_str_t conflict = ngx_string(
            "{\"error\":\"Idempotency-Key was used for another request\"}\n");
        ngx_http_async_job_idem_refuse(r, status_unprocessable, conflict);
        return;
    }
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, view->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = view->rec.state;
    }
    if (wait > 0 && !async::job_final(view->rec.state)) {
        ngx_int_t rc = ngx_http_async_job_park(
            r, zone, view, wait, job_wait_kind::submit, preference_applied);
        if (rc == NGX_OK) {
            return;
        }
    }
    ngx_http_finalize_request(
        r, ngx_http_async_job_send_accepted(r, zone, view, preference_applied));
}

bool ngx_http_async_job_idem_replay(ngx_http_request_t *r,
                                    ngx_http_async_job_zone_t *zone,
                                    const ngx_http_async_job_idem_t *idem,
                                    ngx_msec_t wait, bool preference_applied)
{
    if (!idem->on) {
        return false;
    }
    ngx_http_async_job_view_t v;
    bool same = false;
    ngx_shmtx_lock(&zone->shpool->mutex);
    bool found = ngx_http_async_job_idem_find_locked(zone, idem, &v, &same);
    ngx_shmtx_unlock(&zone->shpool->mutex);
    if (!found) {
        return false;
    }
    ngx_http_async_job_idem_answer(r, zone, &v, same, wait, preference_applied);
    return true;
}
