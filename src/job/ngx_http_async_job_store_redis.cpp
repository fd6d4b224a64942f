// store=redis: the job store mirrored on Redis, so that any node answers
// for any job. The owner (the node that accepted a job) runs it from its
// shared-memory zone as with store=shm, and writes every state change and
// the final result to Redis; the status location of every node reads and
// deletes through Redis; pub/sub wakes the long-polls of every node and
// carries a DELETE to the owner.
//
// Keys (one hash tag per job, Redis-Cluster-safe), PREFIX is redis_prefix:
//   PREFIX{ID}:meta    hash: rank state reason created started finished
//                      result_status content_type owner; expires ttl after
//                      the end (and ttl after the last renewal before it)
//   PREFIX{ID}:result  the body of a completed job; same expiry
//   PREFIX{ID}:lease   the owner's lease while the job is queued or running
// Channel PREFIX events: "F<ID>\nSTATE REASON CREATED STARTED FINISHED
// RESULT_STATUS" a job reached a final state (what a long-poll answers,
// without reading the job again), "C<ID>" a DELETE asks the owner to
// cancel the run.
//
// Each script is atomic; the rank (0 queued, 1 running, 2 final) only goes
// up and the first final state wins, so writes from several connections
// cannot take a job back. One exception: owner_lost, which a reader sets
// when the lease ran out, gives way to the owner itself (the same
// hostname:pid) when it comes back after an outage longer than the lease.
#include "job/ngx_http_async_job.hpp"
#include "common/ngx_http_async_event.hpp"

#include <hiredis/hiredis.h>
#include <openssl/rand.h>

static constexpr ngx_msec_t lease_renewal = 1000;
// The ends a worker heard of last: a read's reply and the job's "F"
// message come on two connections, in either order.
static constexpr ngx_uint_t recent_finals = 64;
static constexpr ngx_msec_t lease_ms = 3 * lease_renewal;

static const char write_script[] =
    "local old = tonumber(redis.call('HGET', KEYS[1], 'rank') or '-1')\n"
    "local rank = tonumber(ARGV[1])\n"
    "if old == 2 then\n"
    "  local m = redis.call('HMGET', KEYS[1], 'reason', 'owner')\n"
    "  if m[1] ~= 'owner_lost' or m[2] ~= ARGV[12] then return 0 end\n"
    "elseif old > rank then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'rank', ARGV[1], 'state', ARGV[6],\n"
    "  'reason', ARGV[7], 'created', ARGV[8], 'started', ARGV[9],\n"
    "  'finished', ARGV[10], 'result_status', ARGV[11], 'owner', ARGV[12])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "if rank == 2 then\n"
    "  if ARGV[15] == '1' then\n"
    "    redis.call('SET', KEYS[2], ARGV[14], 'PX', ARGV[2])\n"
    "    redis.call('HSET', KEYS[1], 'content_type', ARGV[13])\n"
    "  end\n"
    "  redis.call('DEL', KEYS[3])\n"
    "  redis.call('PUBLISH', ARGV[4], 'F' .. ARGV[5] .. '\\n' .. ARGV[6]\n"
    "    .. ' ' .. (ARGV[7] ~= '' and ARGV[7] or '-') .. ' ' .. ARGV[8]\n"
    "    .. ' ' .. ARGV[9] .. ' ' .. ARGV[10] .. ' ' .. ARGV[11])\n"
    "else\n"
    "  redis.call('SET', KEYS[3], ARGV[12], 'PX', ARGV[3])\n"
    "end\n"
    "return 1\n";

// A job whose lease ran out before it ended is failed/owner_lost, for
// every reader at once.
static const char read_script[] =
    "local rank = redis.call('HGET', KEYS[1], 'rank')\n"
    "if not rank then return {} end\n"
    "if rank ~= '2' and redis.call('EXISTS', KEYS[3]) == 0 then\n"
    "  redis.call('HSET', KEYS[1], 'rank', '2', 'state', 'failed',\n"
    "    'reason', 'owner_lost', 'finished', ARGV[1])\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  local f = redis.call('HMGET', KEYS[1], 'created', 'started')\n"
    "  redis.call('PUBLISH', ARGV[3], 'F' .. ARGV[4]\n"
    "    .. '\\nfailed owner_lost ' .. (f[1] or '0') .. ' '\n"
    "    .. (f[2] or '0') .. ' ' .. ARGV[1] .. ' 0')\n"
    "end\n"
    "local m = redis.call('HGETALL', KEYS[1])\n"
    "if ARGV[5] == '1' then\n"
    "  return {m, redis.call('GET', KEYS[2]) or ''}\n"
    "end\n"
    "return {m}\n";

// -1: no such job; 0: a final job deleted; 1: cancelled while queued;
// the record: cancelled while running (its owner stops the run).
static const char delete_script[] =
    "local st = redis.call('HGET', KEYS[1], 'state')\n"
    "if not st then return -1 end\n"
    "if redis.call('HGET', KEYS[1], 'rank') == '2' then\n"
    "  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'rank', '2', 'state', 'cancelled',\n"
    "  'reason', 'cancelled', 'finished', ARGV[1])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('DEL', KEYS[3])\n"
    "redis.call('PUBLISH', ARGV[3], 'C' .. ARGV[4])\n"
    "local f = redis.call('HMGET', KEYS[1], 'created', 'started')\n"
    "redis.call('PUBLISH', ARGV[3], 'F' .. ARGV[4]\n"
    "  .. '\\ncancelled cancelled ' .. (f[1] or '0') .. ' '\n"
    "  .. (f[2] or '0') .. ' ' .. ARGV[1] .. ' 0')\n"
    "if st == 'running' then return redis.call('HGETALL', KEYS[1]) end\n"
    "return 1\n";

// Progress of a running job, as two fields of its meta hash: -1 no such
// job; 1 written; the record: the job does not run (409).
static const char progress_script[] =
    "local rank = redis.call('HGET', KEYS[1], 'rank')\n"
    "if not rank then return -1 end\n"
    "if rank ~= '1' then return redis.call('HGETALL', KEYS[1]) end\n"
    "redis.call('HSET', KEYS[1], 'progress_percent', ARGV[1],\n"
    "  'progress_message', ARGV[2])\n"
    "return 1\n";

// An Idempotency-Key's claim: PREFIX{idem:KEYHEX}:job holds "ID FPHEX
// CREATED" (no spaces) of the first submit; the value that is there now
// is returned, ARGV[1] when this claim won. ARGV[3], when not empty, is a
// claim whose job is gone from Redis, which this one may replace.
static const char claim_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and v ~= ARGV[3] then return v end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return ARGV[1]\n";
// The claim's expiry beyond ttl: a job that runs longer loses its key. A
// claim whose job is gone (deleted, expired, never stored) is replaced by
// the next submit with the key, so a long expiry only takes memory.
static constexpr uint64_t claim_run_ms = 24 * 3600 * 1000;
static constexpr size_t fingerprint_hex = 2 * async::fingerprint_bytes;
static constexpr size_t claim_max = async::id_chars + fingerprint_hex + 24;

// The data of a zone's renewal timer (connection-shaped, see _event.hpp).
struct ngx_http_async_job_redis_tick_t {
    async::event_ident ident;
    ngx_http_async_job_zone_t *zone;
};

enum class redis_op_kind : uint8_t {
    submit,
    status,
    result,
    remove,
    poll,
    progress,
    idem
};

// A request waiting for Redis (or parked for a pub/sub wake-up). Heap
// memory: a reply may come after the request is gone (cln clears r).
struct ngx_http_async_job_redis_op_t {
    async::event_ident ident; // the timer's data
    ngx_http_request_t *r;
    ngx_http_async_job_zone_t *zone;
    ngx_pool_cleanup_t *cln;
    ngx_queue_t link; // in zone->remote_waiters while parked
    ngx_event_t timer;
    ngx_msec_t wait; // submit: wait= for the result; poll: ?wait=
    uint32_t index;  // submit
    uint32_t generation;
    redis_op_kind kind;
    bool parked;
    bool preference_applied;
    bool retried; // idem: a stale claim was replaced once
    char id[async::id_chars];
    // idem: the key, the id this submit claims, its claim and the one seen
    ngx_http_async_job_idem_t idem;
    uint8_t raw[async::id_bytes];
    char claim[claim_max];
    char seen[claim_max];
    size_t claim_len, seen_len;
};

static void ngx_http_async_job_redis_op_timeout(ngx_event_t *ev);

// --- keys and records
// ----------------------------------------------------------

struct ngx_http_async_job_redis_keys_t {
    char meta[256], result[256], lease[256];
    size_t meta_len, result_len, lease_len;
};

size_t ngx_http_async_job_redis_key(const ngx_http_async_job_zone_t *zone,
                                    std::string_view tag,
                                    std::string_view suffix, char *buf,
                                    size_t cap)
{
    const ngx_str_t &p = zone->redis_conf->prefix;
    size_t len = p.len + tag.size() + suffix.size() + 3;
    if (len >= cap) {
        return 0;
    }
    u_char *last = ngx_cpymem(buf, p.data, p.len);
    *last++ = '{';
    last = ngx_cpymem(last, tag.data(), tag.size());
    *last++ = '}';
    *last++ = ':';
    last = ngx_cpymem(last, suffix.data(), suffix.size());
    *last = '\0';
    return len;
}

static void ngx_http_async_job_redis_keys(const ngx_http_async_job_zone_t *z,
                                          const char id[async::id_chars],
                                          ngx_http_async_job_redis_keys_t *k)
{
    std::string_view tag(id, async::id_chars);
    k->meta_len =
        ngx_http_async_job_redis_key(z, tag, "meta", k->meta, sizeof(k->meta));
    k->result_len = ngx_http_async_job_redis_key(z, tag, "result", k->result,
                                                 sizeof(k->result));
    k->lease_len = ngx_http_async_job_redis_key(z, tag, "lease", k->lease,
                                                sizeof(k->lease));
}

static std::string_view ngx_http_async_job_redis_num(char *buf, uint64_t n)
{
    u_char *last = ngx_sprintf(reinterpret_cast<u_char *>(buf), "%uL", n);
    return {buf, static_cast<size_t>(last - reinterpret_cast<u_char *>(buf))};
}

static int ngx_http_async_job_redis_rank(async::job_state s)
{
    if (async::job_final(s)) {
        return 2;
    }
    return s == async::job_state::running ? 1 : 0;
}

static async::job_state ngx_http_async_job_redis_state(std::string_view name)
{
    for (auto s : {async::job_state::queued, async::job_state::running,
                   async::job_state::completed, async::job_state::failed,
                   async::job_state::cancelled}) {
        if (async::job_state_name(s) == name) {
            return s;
        }
    }
    return async::job_state::failed;
}

static async::job_reason ngx_http_async_job_redis_reason(std::string_view n)
{
    for (int i = 1; i <= static_cast<int>(async::job_reason::store_unavailable);
         i++) {
        auto reason = static_cast<async::job_reason>(i);
        if (async::job_reason_name(reason) == n) {
            return reason;
        }
    }
    return async::job_reason::none;
}

static uint64_t ngx_http_async_job_redis_u64(const redisReply *r)
{
    uint64_t n = 0;
    for (size_t i = 0; i < r->len && r->str[i] >= '0' && r->str[i] <= '9';
         i++) {
        n = n * 10 + static_cast<uint64_t>(r->str[i] - '0');
    }
    return n;
}

// A view of the job from its meta hash (HGETALL's flat array).
static bool ngx_http_async_job_redis_view(const redisReply *m,
                                          const char id[async::id_chars],
                                          ngx_http_async_job_view_t *v,
                                          ngx_str_t *content_type,
                                          ngx_pool_t *pool)
{
    if (m == nullptr || m->type != REDIS_REPLY_ARRAY || m->elements < 2) {
        return false;
    }
    ngx_memzero(v, sizeof(*v));
    ngx_memcpy(v->id, id, async::id_chars);
    bool has_state = false;
    for (size_t i = 0; i + 1 < m->elements; i += 2) {
        const redisReply *k = m->element[i], *val = m->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || val->type != REDIS_REPLY_STRING) {
            continue;
        }
        std::string_view key(k->str, k->len), text(val->str, val->len);
        if (key == "state") {
            v->rec.state = ngx_http_async_job_redis_state(text);
            has_state = true;
        } else if (key == "reason") {
            v->rec.reason = ngx_http_async_job_redis_reason(text);
        } else if (key == "created") {
            v->rec.created_ms = ngx_http_async_job_redis_u64(val);
        } else if (key == "started") {
            v->rec.started_ms = ngx_http_async_job_redis_u64(val);
        } else if (key == "finished") {
            v->rec.finished_ms = ngx_http_async_job_redis_u64(val);
        } else if (key == "result_status") {
            v->rec.result_status =
                static_cast<uint16_t>(ngx_http_async_job_redis_u64(val));
        } else if (key == "progress_percent") {
            v->progress.has = true;
            v->progress.percent =
                static_cast<uint8_t>(ngx_http_async_job_redis_u64(val));
        } else if (key == "progress_message") {
            size_t n = ngx_min(text.size(), sizeof(v->progress.message));
            ngx_memcpy(v->progress.message, text.data(), n);
            v->progress.message_len = static_cast<uint16_t>(n);
        } else if (key == "content_type" && content_type != nullptr) {
            content_type->data =
                static_cast<u_char *>(ngx_pnalloc(pool, text.size() + 1));
            if (content_type->data != nullptr) {
                ngx_memcpy(content_type->data, text.data(), text.size());
                content_type->len = text.size();
            }
        }
    }
    // shown while the job runs, as with store=shm
    v->progress.has =
        v->progress.has && v->rec.state == async::job_state::running;
    return has_state;
}

// --- writes from the owner
// -------------------------------------------------------

struct ngx_http_async_job_redis_write_t {
    ngx_http_async_job_zone_t *zone;
    ngx_http_async_job_redis_op_t *op; // a submit waiting for this write
    uint32_t index;
    uint32_t generation;
};

static void
ngx_http_async_job_redis_submit_stored(ngx_http_async_job_redis_op_t *op,
                                       bool stored);

static void ngx_http_async_job_redis_written(void *reply, void *data)
{
    auto *w = static_cast<ngx_http_async_job_redis_write_t *>(data);
    auto *rep = static_cast<redisReply *>(reply);
    bool ok = rep != nullptr && rep->type == REDIS_REPLY_INTEGER;
    ngx_http_async_job_zone_t *zone = w->zone;
    if (!ok) {
        if (rep != nullptr && rep->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "async_job_zone \"%V\": redis refused a job "
                          "write: %*s",
                          &zone->name, rep->len, rep->str);
        }
        // taken again by the next sync, once Redis is back
        ngx_shmtx_lock(&zone->shpool->mutex);
        if (zone->table->records()[w->index].generation == w->generation) {
            async::job_table_mark_dirty(zone->table, w->index);
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
    if (w->op != nullptr) {
        ngx_http_async_job_redis_submit_stored(w->op, ok);
    }
    ngx_free(w);
}

// Sends the record at index (and its result once final) to Redis; the
// record is clean from now on unless the write fails.
static ngx_int_t
ngx_http_async_job_redis_write(ngx_http_async_job_zone_t *zone, uint32_t index,
                               ngx_http_async_job_redis_op_t *op)
{
    if (!ngx_http_async_redis_ready(zone->redis)) {
        return NGX_DECLINED;
    }
    ngx_http_async_job_view_t v;
    u_char *result = nullptr;
    bool has_result = false;

    ngx_shmtx_lock(&zone->shpool->mutex);
    const async::job_record &rec = zone->table->records()[index];
    if (rec.state == async::job_state::free) {
        async::job_table_mark_clean(zone->table, index);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }
    v.rec = rec;
    v.index = index;
    if (rec.state == async::job_state::completed && rec.result_offset != 0) {
        result = static_cast<u_char *>(
            ngx_alloc(ngx_max(rec.result_bytes, 1u), ngx_cycle->log));
        if (result != nullptr) {
            ngx_memcpy(result,
                       reinterpret_cast<u_char *>(zone->shpool)
                           + rec.result_offset,
                       rec.result_bytes);
            has_result = true;
        }
    }
    async::job_table_mark_clean(zone->table, index);
    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (v.rec.state == async::job_state::completed && !has_result) {
        // no memory for the copy: the next sync tries again
        ngx_shmtx_lock(&zone->shpool->mutex);
        async::job_table_mark_dirty(zone->table, index);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_ERROR;
    }
    async::encode_id(v.rec.id, v.id);

    ngx_http_async_job_redis_keys_t k;
    ngx_http_async_job_redis_keys(zone, v.id, &k);
    char n[8][NGX_INT64_LEN + 1];
    char owner[128];
    u_char *olast =
        ngx_snprintf(reinterpret_cast<u_char *>(owner), sizeof(owner), "%V:%P",
                     &ngx_cycle->hostname, ngx_pid);
    std::string_view rank = ngx_http_async_job_redis_num(
        n[0],
        static_cast<uint64_t>(ngx_http_async_job_redis_rank(v.rec.state)));
    std::string_view ttl = ngx_http_async_job_redis_num(n[1], zone->ttl);
    std::string_view lease = ngx_http_async_job_redis_num(n[2], lease_ms);
    std::string_view created =
        ngx_http_async_job_redis_num(n[3], v.rec.created_ms);
    std::string_view started =
        ngx_http_async_job_redis_num(n[4], v.rec.started_ms);
    std::string_view finished =
        ngx_http_async_job_redis_num(n[5], v.rec.finished_ms);
    std::string_view status =
        ngx_http_async_job_redis_num(n[6], v.rec.result_status);
    std::string_view state = async::job_state_name(v.rec.state);
    std::string_view reason = async::job_reason_name(v.rec.reason);
    size_t ct = has_result ? v.rec.content_type_len : 0;
    size_t body = has_result ? v.rec.result_bytes - ct : 0;
    const char *type_arg = "";
    const char *body_arg = "";
    if (result != nullptr) {
        type_arg = reinterpret_cast<char *>(result);
        body_arg = type_arg + ct;
    }

    const char *argv[] = {"EVAL",
                          write_script,
                          "3",
                          k.meta,
                          k.result,
                          k.lease,
                          rank.data(),
                          ttl.data(),
                          lease.data(),
                          reinterpret_cast<char *>(zone->redis_channel.data),
                          v.id,
                          state.data(),
                          reason.data(),
                          created.data(),
                          started.data(),
                          finished.data(),
                          status.data(),
                          owner,
                          type_arg,
                          body_arg,
                          has_result ? "1" : "0"};
    size_t len[] = {
        4,
        sizeof(write_script) - 1,
        1,
        k.meta_len,
        k.result_len,
        k.lease_len,
        rank.size(),
        ttl.size(),
        lease.size(),
        zone->redis_channel.len,
        async::id_chars,
        state.size(),
        reason.size(),
        created.size(),
        started.size(),
        finished.size(),
        status.size(),
        static_cast<size_t>(olast - reinterpret_cast<u_char *>(owner)),
        ct,
        body,
        1};
    auto *w = static_cast<ngx_http_async_job_redis_write_t *>(
        ngx_alloc(sizeof(ngx_http_async_job_redis_write_t), ngx_cycle->log));
    ngx_int_t rc = NGX_ERROR;
    if (w != nullptr) {
        *w = {zone, op, index, v.rec.generation};
        // hiredis formats the command now: the buffers may go after this
        rc = ngx_http_async_redis_command(
            zone->redis, ngx_http_async_job_redis_written, w, 21, argv, len);
        if (rc != NGX_OK) {
            ngx_free(w);
        }
    }
    if (result != nullptr) {
        ngx_free(result);
    }
    if (rc != NGX_OK) {
        ngx_shmtx_lock(&zone->shpool->mutex);
        if (zone->table->records()[index].generation == v.rec.generation) {
            async::job_table_mark_dirty(zone->table, index);
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
    return rc;
}

void ngx_http_async_job_local_cancel(ngx_http_async_job_zone_t *zone,
                                     uint32_t index, uint32_t generation,
                                     async::job_state state,
                                     async::job_reason reason)
{
    uint64_t now = ngx_http_async_job_now_ms();
    async::wake_set wake{};
    uint64_t watchers = 0;
    ngx_pid_t owner = 0;
    bool changed = false;

    ngx_shmtx_lock(&zone->shpool->mutex);
    async::job_record &rec = zone->table->records()[index];
    if (rec.generation == generation
        && (rec.state == async::job_state::queued
            || rec.state == async::job_state::running)) {
        if (rec.queue_node != async::no_node) {
            async::ticket_queue_leave(zone->q, rec.queue_node,
                                      async::leave_reason::cancelled, &wake);
        }
        changed = async::job_table_finish(zone->table, index, state, reason, 0,
                                          now, zone->sh->ttl_ms);
        watchers = rec.watchers;
        owner = static_cast<ngx_pid_t>(rec.owner_pid);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
    if (owner != 0) {
        ngx_http_async_wake_pid(owner); // its run stops at once
    }
    ngx_http_async_job_wake_watchers(zone, watchers);
    if (changed) {
        ngx_http_async_job_store_changed(zone, index);
    }
}

void ngx_http_async_job_store_changed(ngx_http_async_job_zone_t *zone,
                                      uint32_t index)
{
    if (zone->redis != nullptr) {
        (void) ngx_http_async_job_redis_write(zone, index, nullptr);
    }
}

// Every record not yet in Redis (a write failed, or Redis was down), and
// the leases of this worker's unfinished jobs.
static void ngx_http_async_job_redis_sync(ngx_http_async_job_zone_t *zone,
                                          bool renew, bool rewrite)
{
    if (!ngx_http_async_redis_ready(zone->redis)) {
        return;
    }
    ngx_pool_t *pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == nullptr) {
        return;
    }
    ngx_array_t dirty, own;
    if (ngx_array_init(&dirty, pool, 16, sizeof(uint32_t)) != NGX_OK
        || ngx_array_init(&own, pool, 16, sizeof(ngx_http_async_job_view_t))
               != NGX_OK) {
        ngx_destroy_pool(pool);
        return;
    }
    auto slot = static_cast<uint32_t>(ngx_process_slot);
    ngx_shmtx_lock(&zone->shpool->mutex);
    const async::job_record *recs = zone->table->records();
    bool scan = zone->table->store_dirty > 0 || renew || rewrite;
    for (uint32_t i = 0; scan && i < zone->table->capacity; i++) {
        const async::job_record &rec = recs[i];
        if (rec.state == async::job_state::free) {
            continue;
        }
        if (rec.store_dirty) {
            auto *p = static_cast<uint32_t *>(ngx_array_push(&dirty));
            if (p != nullptr) {
                *p = i;
            }
        }
        bool mine = rec.owner == slot && rec.owner_pid == ngx_pid
                    && !async::job_final(rec.state);
        if (rewrite && mine && !rec.store_dirty) {
            // back after an outage: the whole record, lease included
            async::job_table_mark_dirty(zone->table, i);
            auto *p = static_cast<uint32_t *>(ngx_array_push(&dirty));
            if (p != nullptr) {
                *p = i;
            }
            continue;
        }
        if (renew && mine) {
            auto *p =
                static_cast<ngx_http_async_job_view_t *>(ngx_array_push(&own));
            if (p != nullptr) {
                p->rec = rec;
                async::encode_id(rec.id, p->id);
            }
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);

    auto *idx = static_cast<uint32_t *>(dirty.elts);
    for (ngx_uint_t i = 0; i < dirty.nelts; i++) {
        if (ngx_http_async_job_redis_write(zone, idx[i], nullptr) != NGX_OK) {
            break;
        }
    }
    auto *views = static_cast<ngx_http_async_job_view_t *>(own.elts);
    char ttl_buf[NGX_INT64_LEN + 1], lease_buf[NGX_INT64_LEN + 1];
    std::string_view ttl = ngx_http_async_job_redis_num(ttl_buf, zone->ttl);
    std::string_view lease = ngx_http_async_job_redis_num(lease_buf, lease_ms);
    for (ngx_uint_t i = 0; i < own.nelts; i++) {
        ngx_http_async_job_redis_keys_t k;
        ngx_http_async_job_redis_keys(zone, views[i].id, &k);
        const char *set[] = {"SET", k.lease, "1", "PX", lease.data()};
        size_t set_len[] = {3, k.lease_len, 1, 2, lease.size()};
        const char *exp[] = {"PEXPIRE", k.meta, ttl.data()};
        size_t exp_len[] = {7, k.meta_len, ttl.size()};
        if (ngx_http_async_redis_command(zone->redis, nullptr, nullptr, 5, set,
                                         set_len)
                != NGX_OK
            || ngx_http_async_redis_command(zone->redis, nullptr, nullptr, 3,
                                            exp, exp_len)
                   != NGX_OK) {
            break;
        }
    }
    ngx_destroy_pool(pool);
}

static void ngx_http_async_job_redis_tick(ngx_event_t *ev)
{
    ngx_http_async_job_zone_t *zone =
        static_cast<ngx_http_async_job_redis_tick_t *>(ev->data)->zone;
    ngx_http_async_job_redis_sync(zone, true, false);
    // an exiting worker (reload) renews the leases of the jobs it still
    // runs; the timer is cancelable, so it never holds the worker
    ngx_add_timer(ev, lease_renewal);
}

// --- answering requests
// -------------------------------------------------------

static ngx_int_t ngx_http_async_job_redis_unavailable(ngx_http_request_t *r)
{
    static const ngx_str_t body =
        ngx_string("{\"error\":\"job store unavailable\"}\n");
    return ngx_http_async_job_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE, body,
                                        true);
}

ngx_int_t ngx_http_async_job_store_check(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone)
{
    if (zone->redis_conf == nullptr
        || ngx_http_async_redis_ready(zone->redis)) {
        return NGX_OK;
    }
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }
    return ngx_http_async_job_redis_unavailable(r);
}

static void ngx_http_async_job_redis_op_cleanup(void *data)
{
    auto *op = static_cast<ngx_http_async_job_redis_op_t *>(data);
    op->r = nullptr;
    if (op->parked) {
        op->parked = false;
        ngx_queue_remove(&op->link);
        if (op->timer.timer_set) {
            ngx_del_timer(&op->timer);
        }
        ngx_free(op);
    }
}

static ngx_http_async_job_redis_op_t *
ngx_http_async_job_redis_op(ngx_http_request_t *r,
                            ngx_http_async_job_zone_t *zone, redis_op_kind kind,
                            const char id[async::id_chars])
{
    auto *op = static_cast<ngx_http_async_job_redis_op_t *>(
        ngx_calloc(sizeof(ngx_http_async_job_redis_op_t), r->connection->log));
    ngx_pool_cleanup_t *cln = ngx_pool_cleanup_add(r->pool, 0);
    if (op == nullptr || cln == nullptr) {
        ngx_free(op);
        return nullptr;
    }
    op->r = r;
    op->zone = zone;
    op->kind = kind;
    op->cln = cln;
    ngx_memcpy(op->id, id, async::id_chars);
    cln->handler = ngx_http_async_job_redis_op_cleanup;
    cln->data = op;
    async::event_init(&op->timer, op, ngx_http_async_job_redis_op_timeout,
                      r->connection->log);
    return op;
}

// Ends the op: answers with rc (when the request is still there).
static void ngx_http_async_job_redis_op_done(ngx_http_async_job_redis_op_t *op,
                                             ngx_int_t rc)
{
    ngx_http_request_t *r = op->r;
    if (r != nullptr) {
        op->cln->handler = nullptr;
        ngx_connection_t *c = r->connection;
        ngx_http_finalize_request(r, rc);
        ngx_http_run_posted_requests(c);
    }
    ngx_free(op);
}

static void ngx_http_async_job_redis_read(ngx_http_async_job_redis_op_t *op);

// The op a Redis reply is for; nullptr (the op freed) when its request
// went away while the command was in flight.
static ngx_http_async_job_redis_op_t *
ngx_http_async_job_redis_live_op(void *data)
{
    auto *op = static_cast<ngx_http_async_job_redis_op_t *>(data);
    if (op->r == nullptr) {
        ngx_free(op);
        return nullptr;
    }
    return op;
}

static void ngx_http_async_job_redis_park(ngx_http_async_job_redis_op_t *op)
{
    ngx_http_request_t *r = op->r;
    op->parked = true;
    ngx_queue_insert_tail(&op->zone->remote_waiters, &op->link);
    ngx_add_timer(&op->timer, op->wait);
    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
    if (r->connection->read->ready) {
        ngx_post_event(r->connection->read, &ngx_posted_events);
    } else {
        (void) ngx_handle_read_event(r->connection->read, 0);
    }
}

static void ngx_http_async_job_redis_unpark(ngx_http_async_job_redis_op_t *op)
{
    if (op->parked) {
        op->parked = false;
        ngx_queue_remove(&op->link);
    }
    if (op->timer.timer_set) {
        ngx_del_timer(&op->timer);
    }
    if (op->r != nullptr) {
        op->r->read_event_handler = ngx_http_block_reading;
    }
}

static void ngx_http_async_job_redis_op_timeout(ngx_event_t *ev)
{
    auto *op = static_cast<ngx_http_async_job_redis_op_t *>(ev->data);
    ngx_http_async_job_redis_unpark(op);
    op->wait = 0; // answer with the state now
    op->kind = redis_op_kind::status;
    ngx_http_async_job_redis_read(op);
}

static bool ngx_http_async_job_redis_recent(ngx_http_async_job_zone_t *zone,
                                            const char id[async::id_chars])
{
    for (ngx_uint_t i = 0; i < recent_finals; i++) {
        if (ngx_memcmp(zone->recent_final[i], id, async::id_chars) == 0) {
            return true;
        }
    }
    return false;
}

static void
ngx_http_async_job_redis_idem_found(ngx_http_async_job_redis_op_t *op,
                                    const ngx_http_async_job_view_t *v);

static void ngx_http_async_job_redis_read_done(void *reply, void *data)
{
    ngx_http_async_job_redis_op_t *op = ngx_http_async_job_redis_live_op(data);
    if (op == nullptr) {
        return;
    }
    auto *rep = static_cast<redisReply *>(reply);
    ngx_http_request_t *r = op->r;
    if (rep == nullptr || rep->type != REDIS_REPLY_ARRAY) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    ngx_http_async_job_view_t v;
    ngx_str_t type{0, nullptr};
    bool found = rep->elements > 0
                 && ngx_http_async_job_redis_view(rep->element[0], op->id, &v,
                                                  &type, r->pool);
    if (op->kind == redis_op_kind::idem) {
        ngx_http_async_job_redis_idem_found(op, found ? &v : nullptr);
        return;
    }
    if (!found) {
        ngx_http_async_job_redis_op_done(op,
                                         ngx_http_async_job_send_not_found(r));
        return;
    }
    if (op->kind == redis_op_kind::result) {
        const redisReply *body = rep->elements > 1 ? rep->element[1] : nullptr;
        if (v.rec.state != async::job_state::completed || body == nullptr
            || body->type != REDIS_REPLY_STRING) {
            ngx_http_async_job_redis_op_done(
                op, ngx_http_async_job_send_status(r, op->zone, &v,
                                                   NGX_HTTP_CONFLICT));
            return;
        }
        ngx_str_t b{body->len,
                    static_cast<u_char *>(ngx_pnalloc(r->pool, body->len + 1))};
        if (b.data == nullptr) {
            ngx_http_async_job_redis_op_done(op,
                                             NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
        ngx_memcpy(b.data, body->str, body->len);
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_send_stored(r, &v, v.rec.result_status, type,
                                               b));
        return;
    }
    if (op->wait > 0 && !async::job_final(v.rec.state)
        && ngx_http_async_redis_subscribed(op->zone->redis)) {
        if (ngx_http_async_job_redis_recent(op->zone, op->id)) {
            // its "F" came before this reply: read the final state
            op->wait = 0;
            ngx_http_async_job_redis_read(op);
            return;
        }
        // woken by the job's "F" message, or answered at the timeout
        ngx_http_async_job_redis_park(op);
        return;
    }
    ngx_http_async_job_redis_op_done(
        op, ngx_http_async_job_send_status(r, op->zone, &v, NGX_HTTP_OK));
}

// EVAL of the read or the delete script on one job: its three keys, now,
// the ttl, the channel and the id, then the read's flag ("1": with the
// result) when flag is not nullptr.
static ngx_int_t ngx_http_async_job_redis_eval_job(
    ngx_http_async_job_zone_t *zone, const char id[async::id_chars],
    const char *script, size_t script_len, const char *flag,
    ngx_http_async_redis_reply_pt handler, void *data)
{
    ngx_http_async_job_redis_keys_t k;
    ngx_http_async_job_redis_keys(zone, id, &k);
    char now_buf[NGX_INT64_LEN + 1], ttl_buf[NGX_INT64_LEN + 1];
    std::string_view now =
        ngx_http_async_job_redis_num(now_buf, ngx_http_async_job_now_ms());
    std::string_view ttl = ngx_http_async_job_redis_num(ttl_buf, zone->ttl);
    const char *argv[] = {"EVAL",
                          script,
                          "3",
                          k.meta,
                          k.result,
                          k.lease,
                          now.data(),
                          ttl.data(),
                          reinterpret_cast<char *>(zone->redis_channel.data),
                          id,
                          flag};
    size_t len[] = {4,
                    script_len,
                    1,
                    k.meta_len,
                    k.result_len,
                    k.lease_len,
                    now.size(),
                    ttl.size(),
                    zone->redis_channel.len,
                    async::id_chars,
                    flag != nullptr ? ngx_strlen(flag) : 0};
    return ngx_http_async_redis_command(zone->redis, handler, data,
                                        flag != nullptr ? 11 : 10, argv, len);
}

static void ngx_http_async_job_redis_read(ngx_http_async_job_redis_op_t *op)
{
    ngx_http_async_job_zone_t *zone = op->zone;
    bool result = op->kind == redis_op_kind::result;
    if (ngx_http_async_job_redis_eval_job(
            zone, op->id, read_script, sizeof(read_script) - 1,
            result ? "1" : "0", ngx_http_async_job_redis_read_done, op)
        != NGX_OK) {
        if (op->r != nullptr) {
            ngx_http_async_job_redis_op_done(
                op, ngx_http_async_job_redis_unavailable(op->r));
        } else {
            ngx_free(op);
        }
    }
}

static void ngx_http_async_job_redis_deleted(void *reply, void *data)
{
    ngx_http_async_job_redis_op_t *op = ngx_http_async_job_redis_live_op(data);
    if (op == nullptr) {
        return;
    }
    auto *rep = static_cast<redisReply *>(reply);
    ngx_http_request_t *r = op->r;
    if (rep == nullptr || rep->type == REDIS_REPLY_ERROR
        || (rep->type != REDIS_REPLY_INTEGER
            && rep->type != REDIS_REPLY_ARRAY)) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    if (rep->type == REDIS_REPLY_INTEGER && rep->integer < 0) {
        ngx_http_async_job_redis_op_done(op,
                                         ngx_http_async_job_send_not_found(r));
        return;
    }
    ngx_http_async_job_view_t v;
    if (rep->type == REDIS_REPLY_ARRAY
        && ngx_http_async_job_redis_view(rep, op->id, &v, nullptr, r->pool)) {
        ngx_http_async_job_redis_op_done(
            op,
            ngx_http_async_job_send_status(r, op->zone, &v, NGX_HTTP_ACCEPTED));
        return;
    }
    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->header_only = 1;
    r->headers_out.content_length_n = 0;
    ngx_http_async_job_redis_op_done(op, ngx_http_send_header(r));
}

// The status location with store=redis: every answer comes from Redis.
ngx_int_t ngx_http_async_job_redis_serve(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const char id[async::id_chars],
                                         bool result, ngx_msec_t wait)
{
    if (!ngx_http_async_redis_ready(zone->redis)) {
        return ngx_http_async_job_redis_unavailable(r);
    }
    redis_op_kind kind = (r->method & NGX_HTTP_DELETE) ? redis_op_kind::remove
                         : result                      ? redis_op_kind::result
                                                       : redis_op_kind::status;
    ngx_http_async_job_redis_op_t *op =
        ngx_http_async_job_redis_op(r, zone, kind, id);
    if (op == nullptr) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    op->wait = wait;
    if (kind != redis_op_kind::remove) {
        ngx_http_async_job_redis_read(op);
    } else {
        if (ngx_http_async_job_redis_eval_job(
                zone, id, delete_script, sizeof(delete_script) - 1, nullptr,
                ngx_http_async_job_redis_deleted, op)
            != NGX_OK) {
            op->cln->handler = nullptr;
            ngx_free(op);
            return ngx_http_async_job_redis_unavailable(r);
        }
    }
    r->main->count++;
    return NGX_DONE;
}

// --- submits
// ---------------------------------------------------------------------

// The job is in Redis (or not): answer the submit as store=shm does, or
// fail the job with store_unavailable and answer 503.
static void
ngx_http_async_job_redis_submit_stored(ngx_http_async_job_redis_op_t *op,
                                       bool stored)
{
    ngx_http_request_t *r = op->r;
    ngx_http_async_job_zone_t *zone = op->zone;
    if (!stored) {
        ngx_http_async_job_local_cancel(zone, op->index, op->generation,
                                        async::job_state::failed,
                                        async::job_reason::store_unavailable);
    }
    if (r == nullptr) {
        ngx_free(op);
        return;
    }
    if (!stored) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    ngx_http_async_job_view_t v;
    if (!ngx_http_async_job_lookup_index(zone, op->index, op->generation, &v)) {
        ngx_http_async_job_redis_op_done(op,
                                         ngx_http_async_job_send_not_found(r));
        return;
    }
    if (op->wait > 0) {
        ngx_int_t rc = ngx_http_async_job_park(r, zone, &v, op->wait,
                                               job_wait_kind::submit,
                                               op->preference_applied);
        if (rc == NGX_OK) {
            // the parked waiter finalizes r; this op is done
            op->cln->handler = nullptr;
            ngx_free(op);
            return;
        }
    }
    ngx_http_async_job_redis_op_done(
        op,
        ngx_http_async_job_send_accepted(r, zone, &v, op->preference_applied));
}

void ngx_http_async_job_redis_submitted(ngx_http_request_t *r,
                                        ngx_http_async_job_zone_t *zone,
                                        const ngx_http_async_job_view_t *v,
                                        ngx_msec_t wait,
                                        bool preference_applied)
{
    auto *ctx = ngx_http_async_job_ctx(r, true);
    if (ctx != nullptr) {
        ngx_memcpy(ctx->id, v->id, async::id_chars);
        ctx->has_id = true;
        ctx->state = v->rec.state;
    }
    ngx_http_async_job_redis_op_t *op =
        ngx_http_async_job_redis_op(r, zone, redis_op_kind::submit, v->id);
    if (op == nullptr) {
        ngx_http_async_job_local_cancel(zone, v->index, v->rec.generation,
                                        async::job_state::failed,
                                        async::job_reason::internal_error);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    op->index = v->index;
    op->generation = v->rec.generation;
    op->wait = wait;
    op->preference_applied = preference_applied;
    if (ngx_http_async_job_redis_write(zone, v->index, op) != NGX_OK) {
        ngx_http_async_job_redis_submit_stored(op, false);
    }
    // the reply answers; the body handler's reference is given back then
}

// --- progress
// --------------------------------------------------------------------

static void ngx_http_async_job_redis_progressed(void *reply, void *data)
{
    ngx_http_async_job_redis_op_t *op = ngx_http_async_job_redis_live_op(data);
    if (op == nullptr) {
        return;
    }
    auto *rep = static_cast<redisReply *>(reply);
    ngx_http_request_t *r = op->r;
    ngx_http_async_job_view_t v;
    if (rep != nullptr && rep->type == REDIS_REPLY_INTEGER) {
        if (rep->integer < 0) {
            ngx_http_async_job_redis_op_done(
                op, ngx_http_async_job_send_not_found(r));
            return;
        }
        r->headers_out.status = NGX_HTTP_NO_CONTENT;
        r->header_only = 1;
        r->headers_out.content_length_n = 0;
        ngx_http_async_job_redis_op_done(op, ngx_http_send_header(r));
        return;
    }
    if (rep != nullptr && rep->type == REDIS_REPLY_ARRAY
        && ngx_http_async_job_redis_view(rep, op->id, &v, nullptr, r->pool)) {
        // queued or final: the answer says which
        auto *ctx = ngx_http_async_job_ctx(r, false);
        if (ctx != nullptr) {
            ctx->state = v.rec.state;
        }
        ngx_http_async_job_redis_op_done(
            op,
            ngx_http_async_job_send_status(r, op->zone, &v, NGX_HTTP_CONFLICT));
        return;
    }
    ngx_http_async_job_redis_op_done(op,
                                     ngx_http_async_job_redis_unavailable(r));
}

void ngx_http_async_job_redis_progress(ngx_http_request_t *r,
                                       ngx_http_async_job_zone_t *zone,
                                       const char id[async::id_chars],
                                       uint8_t percent,
                                       std::string_view message)
{
    if (!ngx_http_async_redis_ready(zone->redis)) {
        ngx_http_finalize_request(r, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    ngx_http_async_job_redis_op_t *op =
        ngx_http_async_job_redis_op(r, zone, redis_op_kind::progress, id);
    if (op == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_http_async_job_redis_keys_t k;
    ngx_http_async_job_redis_keys(zone, id, &k);
    char pbuf[NGX_INT64_LEN + 1];
    std::string_view pct = ngx_http_async_job_redis_num(pbuf, percent);
    const char *argv[] = {"EVAL", progress_script, "1",
                          k.meta, pct.data(),      message.data()};
    size_t len[] = {4,          sizeof(progress_script) - 1,
                    1,          k.meta_len,
                    pct.size(), message.size()};
    if (ngx_http_async_redis_command(
            zone->redis, ngx_http_async_job_redis_progressed, op, 6, argv, len)
        != NGX_OK) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(r));
    }
    // the reply finalizes r: the body handler's reference is given back then
}

// --- idempotent submits
// ----------------------------------------------------------

static void
ngx_http_async_job_redis_idem_send(ngx_http_async_job_redis_op_t *op);

// Ends an idem op without finalizing: r goes on elsewhere.
static ngx_http_request_t *
ngx_http_async_job_redis_idem_release(ngx_http_async_job_redis_op_t *op)
{
    ngx_http_request_t *r = op->r;
    op->cln->handler = nullptr;
    ngx_free(op);
    return r;
}

// A claim of this submit: its id, the request's fingerprint, now.
static void
ngx_http_async_job_redis_idem_value(ngx_http_async_job_redis_op_t *op)
{
    async::encode_id(op->raw, op->claim);
    u_char *p = reinterpret_cast<u_char *>(op->claim) + async::id_chars;
    p = ngx_hex_dump(p, op->idem.fingerprint, sizeof(op->idem.fingerprint));
    p = ngx_sprintf(p, "%uL", ngx_http_async_job_now_ms());
    op->claim_len =
        static_cast<size_t>(p - reinterpret_cast<u_char *>(op->claim));
}

static void ngx_http_async_job_redis_idem_conflict(ngx_http_request_t *r)
{
    // draft-ietf-httpapi-idempotency-key-header: a repeat while the first
    // request is still being processed
    static const ngx_str_t busy =
        ngx_string("{\"error\":\"a request with this Idempotency-Key is "
                   "still being processed\"}\n");
    ngx_http_finalize_request(
        r, ngx_http_async_job_send_json(r, NGX_HTTP_CONFLICT, busy, false));
}

static void ngx_http_async_job_redis_idem_claimed(void *reply, void *data)
{
    ngx_http_async_job_redis_op_t *op = ngx_http_async_job_redis_live_op(data);
    if (op == nullptr) {
        return;
    }
    auto *rep = static_cast<redisReply *>(reply);
    ngx_http_request_t *r = op->r;
    if (rep == nullptr || rep->type != REDIS_REPLY_STRING
        || rep->len < async::id_chars + fingerprint_hex
        || rep->len >= claim_max) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    ngx_connection_t *c = r->connection;
    std::string_view value(rep->str, rep->len);
    if (value == std::string_view(op->claim, op->claim_len)) {
        // won: the job is made with the claimed id
        ngx_http_async_job_idem_t idem = op->idem;
        uint8_t raw[async::id_bytes];
        ngx_memcpy(raw, op->raw, sizeof(raw));
        ngx_msec_t wait = op->wait;
        bool applied = op->preference_applied;
        ngx_http_async_job_redis_idem_release(op);
        ngx_http_async_job_submit_new(r, &idem, wait, applied, raw);
        ngx_http_run_posted_requests(c);
        return;
    }
    if (value.substr(async::id_chars, fingerprint_hex)
        != std::string_view(op->claim + async::id_chars, fingerprint_hex)) {
        ngx_http_async_job_view_t v;
        ngx_http_async_job_zone_t *zone = op->zone;
        ngx_http_async_job_redis_idem_release(op);
        ngx_http_async_job_idem_answer(r, zone, &v, false, 0, false);
        ngx_http_run_posted_requests(c);
        return;
    }
    // the same request was submitted first, maybe on another node: its job
    ngx_memcpy(op->seen, rep->str, rep->len);
    op->seen_len = rep->len;
    ngx_memcpy(op->id, rep->str, async::id_chars);
    ngx_http_async_job_redis_read(op);
}

static void
ngx_http_async_job_redis_idem_found(ngx_http_async_job_redis_op_t *op,
                                    const ngx_http_async_job_view_t *v)
{
    ngx_http_request_t *r = op->r;
    if (v != nullptr) {
        auto *ctx = ngx_http_async_job_ctx(r, true);
        if (ctx != nullptr) {
            ngx_memcpy(ctx->id, v->id, async::id_chars);
            ctx->has_id = true;
            ctx->state = v->rec.state;
        }
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_send_accepted(r, op->zone, v,
                                                 op->preference_applied));
        return;
    }
    // the claim's job is not in Redis: not yet (its node is storing it), or
    // no more (deleted, expired, or never made): then this submit takes
    // the key over, once
    uint64_t created = 0;
    for (size_t i = async::id_chars + fingerprint_hex; i < op->seen_len; i++) {
        created = created * 10 + static_cast<uint64_t>(op->seen[i] - '0');
    }
    uint64_t grace = 2 * op->zone->redis_conf->timeout + lease_renewal;
    if (op->retried || ngx_http_async_job_now_ms() < created + grace) {
        ngx_connection_t *c = r->connection;
        ngx_http_async_job_redis_idem_release(op);
        ngx_http_async_job_redis_idem_conflict(r);
        ngx_http_run_posted_requests(c);
        return;
    }
    op->retried = true;
    ngx_http_async_job_redis_idem_value(op);
    ngx_http_async_job_redis_idem_send(op);
}

static void
ngx_http_async_job_redis_idem_send(ngx_http_async_job_redis_op_t *op)
{
    ngx_http_async_job_zone_t *zone = op->zone;
    char tag[5 + 2 * async::key_digest_bytes];
    ngx_memcpy(tag, "idem:", 5);
    ngx_hex_dump(reinterpret_cast<u_char *>(tag) + 5, op->idem.key,
                 sizeof(op->idem.key));
    char key[256];
    size_t key_len = ngx_http_async_job_redis_key(
        zone, std::string_view(tag, sizeof(tag)), "job", key, sizeof(key));
    char px_buf[NGX_INT64_LEN + 1];
    std::string_view px =
        ngx_http_async_job_redis_num(px_buf, zone->ttl + claim_run_ms);
    const char *argv[] = {"EVAL",    claim_script, "1",     key,
                          op->claim, px.data(),    op->seen};
    size_t len[] = {4,
                    sizeof(claim_script) - 1,
                    1,
                    key_len,
                    op->claim_len,
                    px.size(),
                    op->seen_len};
    if (key_len == 0
        || ngx_http_async_redis_command(zone->redis,
                                        ngx_http_async_job_redis_idem_claimed,
                                        op, 7, argv, len)
               != NGX_OK) {
        ngx_http_async_job_redis_op_done(
            op, ngx_http_async_job_redis_unavailable(op->r));
    }
}

void ngx_http_async_job_redis_idem_claim(ngx_http_request_t *r,
                                         ngx_http_async_job_zone_t *zone,
                                         const ngx_http_async_job_idem_t *idem,
                                         ngx_msec_t wait,
                                         bool preference_applied)
{
    if (!ngx_http_async_redis_ready(zone->redis)) {
        ngx_http_finalize_request(r, ngx_http_async_job_redis_unavailable(r));
        return;
    }
    uint8_t raw[async::id_bytes];
    char id[async::id_chars];
    ngx_http_async_job_redis_op_t *op = nullptr;
    if (RAND_bytes(raw, sizeof(raw)) == 1) {
        async::encode_id(raw, id);
        op = ngx_http_async_job_redis_op(r, zone, redis_op_kind::idem, id);
    }
    if (op == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_memcpy(op->raw, raw, sizeof(raw));
    op->idem = *idem;
    op->wait = wait;
    op->preference_applied = preference_applied;
    ngx_http_async_job_redis_idem_value(op);
    ngx_http_async_job_redis_idem_send(op);
    // the reply finalizes r (or goes on with the submit)
}

// --- pub/sub
// -------------------------------------------------------------------------

// A lease expired (keyspace notifications, when the operator enabled
// them: notify-keyspace-events Ex): the long-polls of this worker on that
// job read it now; the read marks it owner_lost and publishes its end.
static void ngx_http_async_job_redis_expired(ngx_http_async_job_zone_t *zone,
                                             std::string_view key)
{
    std::string_view prefix = async::view(zone->redis_conf->prefix);
    std::string_view suffix = "}:lease";
    if (key.size() != prefix.size() + 1 + async::id_chars + suffix.size()
        || key.substr(0, prefix.size()) != prefix || key[prefix.size()] != '{'
        || key.substr(key.size() - suffix.size()) != suffix) {
        return;
    }
    std::string_view id = key.substr(prefix.size() + 1, async::id_chars);
    for (ngx_queue_t *q = ngx_queue_head(&zone->remote_waiters);
         q != ngx_queue_sentinel(&zone->remote_waiters);
         q = ngx_queue_next(q)) {
        auto *op = ngx_queue_data(q, ngx_http_async_job_redis_op_t, link);
        if (std::string_view(op->id, async::id_chars) == id) {
            // one read is enough: its "F" wakes every waiter of the job
            (void) ngx_http_async_job_redis_eval_job(zone, op->id, read_script,
                                                     sizeof(read_script) - 1,
                                                     "0", nullptr, nullptr);
            return;
        }
    }
}

// "\nSTATE REASON CREATED STARTED FINISHED RESULT_STATUS" of an "F"
// message into a view; false when it is not that.
static bool ngx_http_async_job_redis_final(std::string_view s,
                                           std::string_view id,
                                           ngx_http_async_job_view_t *v)
{
    if (s.empty() || s.front() != '\n') {
        return false;
    }
    s.remove_prefix(1);
    std::string_view f[6];
    for (auto &field : f) {
        size_t sp = s.find(' ');
        field = s.substr(0, sp);
        s = sp == std::string_view::npos ? std::string_view()
                                         : s.substr(sp + 1);
    }
    if (f[5].empty()) {
        return false;
    }
    auto num = [](std::string_view t) {
        uint64_t n = 0;
        for (char c : t) {
            if (c < '0' || c > '9') {
                break;
            }
            n = n * 10 + static_cast<uint64_t>(c - '0');
        }
        return n;
    };
    ngx_memzero(v, sizeof(*v));
    ngx_memcpy(v->id, id.data(), async::id_chars);
    v->rec.state = ngx_http_async_job_redis_state(f[0]);
    v->rec.reason = f[1] == "-" ? async::job_reason::none
                                : ngx_http_async_job_redis_reason(f[1]);
    v->rec.created_ms = num(f[2]);
    v->rec.started_ms = num(f[3]);
    v->rec.finished_ms = num(f[4]);
    v->rec.result_status = static_cast<uint16_t>(num(f[5]));
    return async::job_final(v->rec.state);
}

static void
ngx_http_async_job_redis_zone_message(ngx_http_async_job_zone_t *zone,
                                      std::string_view msg)
{
    if (msg.size() < 1 + async::id_chars) {
        return;
    }
    std::string_view id = msg.substr(1, async::id_chars);
    if (msg[0] == 'C') {
        // a DELETE on any node: the owner stops the run
        uint8_t raw[async::id_bytes];
        ngx_http_async_job_view_t v;
        if (async::decode_id(id, raw)
            && ngx_http_async_job_lookup(zone, raw, &v)
            && !async::job_final(v.rec.state)) {
            ngx_http_async_job_local_cancel(zone, v.index, v.rec.generation,
                                            async::job_state::cancelled,
                                            async::job_reason::cancelled);
        }
        return;
    }
    if (msg[0] != 'F') {
        return;
    }
    ngx_memcpy(zone->recent_final[zone->recent_next], id.data(),
               async::id_chars);
    zone->recent_next = (zone->recent_next + 1) % recent_finals;
    ngx_queue_t ready;
    ngx_queue_init(&ready);
    for (ngx_queue_t *q = ngx_queue_head(&zone->remote_waiters);
         q != ngx_queue_sentinel(&zone->remote_waiters);) {
        auto *op = ngx_queue_data(q, ngx_http_async_job_redis_op_t, link);
        q = ngx_queue_next(q);
        if (std::string_view(op->id, async::id_chars) == id) {
            ngx_queue_remove(&op->link);
            ngx_queue_insert_tail(&ready, &op->link);
        }
    }
    ngx_http_async_job_view_t v;
    bool final =
        ngx_http_async_job_redis_final(msg.substr(1 + async::id_chars), id, &v);
    while (!ngx_queue_empty(&ready)) {
        auto *op = ngx_queue_data(ngx_queue_head(&ready),
                                  ngx_http_async_job_redis_op_t, link);
        ngx_queue_remove(&op->link);
        op->parked = false;
        ngx_http_async_job_redis_unpark(op);
        op->wait = 0;
        if (final && op->r != nullptr) {
            // the message is the answer: no read of the job
            ngx_http_async_job_redis_op_done(
                op,
                ngx_http_async_job_send_status(op->r, zone, &v, NGX_HTTP_OK));
        } else {
            ngx_http_async_job_redis_read(op);
        }
    }
}

// --- endpoints: one client per worker per Redis ------------------------------

// The zones of one endpoint (address, db, password, timeout) share this
// worker's client: one command and one subscriber connection.
struct ngx_http_async_job_redis_endpoint_t {
    ngx_http_async_redis_t client;
    ngx_array_t zones;    // ngx_http_async_job_zone_t *
    ngx_array_t channels; // ngx_str_t
};

static ngx_array_t *ngx_http_async_job_redis_endpoints; // this worker's

static bool ngx_http_async_job_redis_same(const ngx_http_async_redis_conf_t *a,
                                          const ngx_http_async_redis_conf_t *b)
{
    return async::view(a->address) == async::view(b->address) && a->db == b->db
           && a->timeout == b->timeout
           && async::view(a->password) == async::view(b->password);
}

template <class F>
static void ngx_http_async_job_redis_zones(void *data, F &&f)
{
    auto *ep = static_cast<ngx_http_async_job_redis_endpoint_t *>(data);
    auto **zones = static_cast<ngx_http_async_job_zone_t **>(ep->zones.elts);
    for (ngx_uint_t i = 0; i < ep->zones.nelts; i++) {
        f(zones[i]);
    }
}

static void ngx_http_async_job_redis_message(void *data,
                                             std::string_view channel,
                                             std::string_view msg)
{
    bool expired = channel.substr(0, 11) == "__keyevent@";
    ngx_http_async_job_redis_zones(data, [&](ngx_http_async_job_zone_t *z) {
        if (expired) {
            ngx_http_async_job_redis_expired(z, msg);
        } else if (channel == async::view(z->redis_channel)) {
            ngx_http_async_job_redis_zone_message(z, msg);
        }
    });
}

static void ngx_http_async_job_redis_ready(void *data)
{
    ngx_http_async_job_redis_zones(data, [](ngx_http_async_job_zone_t *z) {
        ngx_http_async_job_redis_sync(z, false, true);
    });
}

ngx_int_t ngx_http_async_job_redis_check(ngx_conf_t *cf)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    auto **zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        for (ngx_uint_t j = 0; j < i; j++) {
            const ngx_http_async_redis_conf_t *a = zones[i]->redis_conf;
            const ngx_http_async_redis_conf_t *b = zones[j]->redis_conf;
            if (a != nullptr && b != nullptr
                && async::view(a->address) == async::view(b->address)
                && a->db == b->db
                && async::view(a->prefix) == async::view(b->prefix)) {
                ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                              "async_job_zone \"%V\" and \"%V\" share redis "
                              "%V, redis_db and redis_prefix: give each its "
                              "own redis_prefix",
                              &zones[j]->name, &zones[i]->name, &a->address);
                return NGX_ERROR;
            }
        }
    }
    return NGX_OK;
}

// --- a worker's start and exit
// ---------------------------------------------------------

ngx_int_t ngx_http_async_job_redis_init_process(ngx_cycle_t *cycle,
                                                ngx_http_async_job_zone_t *zone)
{
    ngx_queue_init(&zone->remote_waiters);
    if (zone->redis_conf == nullptr) {
        return NGX_OK;
    }
    zone->recent_final = static_cast<char(*)[async::id_chars]>(
        ngx_pcalloc(cycle->pool, recent_finals * async::id_chars));
    auto *tick =
        async::pool_calloc<ngx_http_async_job_redis_tick_t>(cycle->pool);
    const ngx_str_t &prefix = zone->redis_conf->prefix;
    zone->redis_channel.data =
        static_cast<u_char *>(ngx_pnalloc(cycle->pool, prefix.len + 8));
    if (zone->recent_final == nullptr || tick == nullptr
        || zone->redis_channel.data == nullptr) {
        return NGX_ERROR;
    }
    zone->redis_channel.len = static_cast<size_t>(
        ngx_sprintf(zone->redis_channel.data, "%Vevents%Z", &prefix)
        - zone->redis_channel.data - 1);

    if (ngx_http_async_job_redis_endpoints == nullptr) {
        ngx_http_async_job_redis_endpoints = ngx_array_create(
            cycle->pool, 2, sizeof(ngx_http_async_job_redis_endpoint_t *));
        if (ngx_http_async_job_redis_endpoints == nullptr) {
            return NGX_ERROR;
        }
    }
    auto **eps = static_cast<ngx_http_async_job_redis_endpoint_t **>(
        ngx_http_async_job_redis_endpoints->elts);
    ngx_http_async_job_redis_endpoint_t *ep = nullptr;
    for (ngx_uint_t i = 0; i < ngx_http_async_job_redis_endpoints->nelts; i++) {
        if (ngx_http_async_job_redis_same(eps[i]->client.conf,
                                          zone->redis_conf)) {
            ep = eps[i];
        }
    }
    if (ep == nullptr) {
        ep = async::pool_calloc<ngx_http_async_job_redis_endpoint_t>(
            cycle->pool);
        auto **slot = static_cast<ngx_http_async_job_redis_endpoint_t **>(
            ngx_array_push(ngx_http_async_job_redis_endpoints));
        if (ep == nullptr || slot == nullptr
            || ngx_array_init(&ep->zones, cycle->pool, 2,
                              sizeof(ngx_http_async_job_zone_t *))
                   != NGX_OK
            || ngx_array_init(&ep->channels, cycle->pool, 3, sizeof(ngx_str_t))
                   != NGX_OK) {
            return NGX_ERROR;
        }
        *slot = ep;
        ngx_http_async_redis_t *client = &ep->client;
        client->conf = zone->redis_conf;
        client->name = zone->name;
        client->log = cycle->log;
        // the endpoint's numbers are kept in its first zone
        client->stats = &zone->sh->redis;
        client->on_message = ngx_http_async_job_redis_message;
        client->on_ready = ngx_http_async_job_redis_ready;
        client->data = ep;
        // "__keyevent@DB__:expired": a lease that ran out wakes long-polls
        auto *expired = static_cast<ngx_str_t *>(ngx_array_push(&ep->channels));
        if (expired == nullptr) {
            return NGX_ERROR;
        }
        expired->data = static_cast<u_char *>(ngx_pnalloc(cycle->pool, 64));
        if (expired->data == nullptr) {
            return NGX_ERROR;
        }
        expired->len = static_cast<size_t>(
            ngx_sprintf(expired->data, "__keyevent@%ui__:expired%Z",
                        zone->redis_conf->db)
            - expired->data - 1);
    }
    auto **z =
        static_cast<ngx_http_async_job_zone_t **>(ngx_array_push(&ep->zones));
    auto *channel = static_cast<ngx_str_t *>(ngx_array_push(&ep->channels));
    if (z == nullptr || channel == nullptr) {
        return NGX_ERROR;
    }
    *z = zone;
    *channel = zone->redis_channel;
    zone->redis = &ep->client;

    tick->zone = zone;
    async::event_init(&zone->redis_tick, tick, ngx_http_async_job_redis_tick,
                      cycle->log);
    zone->redis_tick.cancelable = 1;
    ngx_add_timer(&zone->redis_tick, lease_renewal);
    return NGX_OK;
}

ngx_int_t ngx_http_async_job_redis_start(ngx_cycle_t *cycle)
{
    (void) cycle;
    if (ngx_http_async_job_redis_endpoints == nullptr) {
        return NGX_OK;
    }
    auto **eps = static_cast<ngx_http_async_job_redis_endpoint_t **>(
        ngx_http_async_job_redis_endpoints->elts);
    for (ngx_uint_t i = 0; i < ngx_http_async_job_redis_endpoints->nelts; i++) {
        ngx_http_async_redis_t *client = &eps[i]->client;
        client->channels = static_cast<ngx_str_t *>(eps[i]->channels.elts);
        client->nchannels = eps[i]->channels.nelts;
        if (ngx_http_async_redis_start(client) != NGX_OK) {
            return NGX_ERROR;
        }
    }
    return NGX_OK;
}

void ngx_http_async_job_redis_exit_process(ngx_http_async_job_zone_t *zone)
{
    if (zone->redis == nullptr) {
        return;
    }
    if (zone->redis_tick.timer_set) {
        ngx_del_timer(&zone->redis_tick);
    }
    if (!zone->redis->stopped) { // once per endpoint
        ngx_http_async_redis_stop(zone->redis);
    }
}
