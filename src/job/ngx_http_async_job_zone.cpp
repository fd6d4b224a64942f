// async_job_zone: the shared memory behind request-reply jobs (the job
// table, an admission queue for active=/length=, the stored results), its
// configuration, and what a worker process does with it when it starts,
// wakes up and exits.
#include "job/ngx_http_async_job.hpp"

#include "core/parse.hpp"

#include <cerrno>
#include <csignal>

static ngx_int_t ngx_http_async_job_init_zone(ngx_shm_zone_t *shm_zone,
                                              void *data);

// Job zones have a tag of their own: a name cannot be both a queue zone and
// a job zone, and the queue's check of unknown zones leaves them alone.
static char ngx_http_async_job_zone_tag;

static constexpr uint64_t default_ttl_ms = 3600 * 1000;
static constexpr size_t default_max_result = 1024 * 1024;
static constexpr ngx_uint_t default_active = 16;
static constexpr ngx_uint_t default_length = 1000;

// One record per this many bytes of zone: records take about a fifth of it.
static constexpr size_t zone_bytes_per_record = 512;

static uint32_t ngx_http_async_job_records_for(size_t size, ngx_uint_t active,
                                               ngx_uint_t length)
{
    size_t records = size / zone_bytes_per_record;
    size_t least = active + length + 16;
    return static_cast<uint32_t>(ngx_max(records, least));
}

static size_t ngx_http_async_job_block_bytes(uint32_t records,
                                             ngx_uint_t length)
{
    size_t head = sizeof(ngx_http_async_job_shared_t);
    size_t queue = async::ticket_queue_bytes(static_cast<uint32_t>(length));
    queue = (queue + 7) / 8 * 8;
    return head + queue + async::job_table_bytes(records);
}

uint64_t ngx_http_async_job_now_ms()
{
    ngx_time_t *tp = ngx_timeofday();
    return static_cast<uint64_t>(tp->sec) * 1000 + tp->msec;
}

static ngx_http_async_main_conf_t *ngx_http_async_job_main(ngx_cycle_t *cycle)
{
    return static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
}

// --- configuration --------------------------------------------------------

static ngx_http_async_job_zone_t *
ngx_http_async_job_zone_get(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t *shm_zone =
        ngx_shared_memory_add(cf, name, size, &ngx_http_async_job_zone_tag);
    if (shm_zone == nullptr) {
        return nullptr;
    }
    if (shm_zone->data != nullptr) {
        return static_cast<ngx_http_async_job_zone_t *>(shm_zone->data);
    }
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    auto *zone = async::pool_calloc<ngx_http_async_job_zone_t>(cf->pool);
    auto **slot = static_cast<ngx_http_async_job_zone_t **>(
        ngx_array_push(&amcf->job_zones));
    if (zone == nullptr || slot == nullptr) {
        return nullptr;
    }
    zone->name = *name;
    zone->shm_zone = shm_zone;
    *slot = zone;
    shm_zone->init = ngx_http_async_job_init_zone;
    shm_zone->data = zone;
    return zone;
}

ngx_http_async_job_zone_t *ngx_http_async_job_zone_ref(ngx_conf_t *cf,
                                                       ngx_str_t *name,
                                                       ngx_str_t directive)
{
    ngx_http_async_job_zone_t *zone = ngx_http_async_job_zone_get(cf, name, 0);
    if (zone != nullptr && zone->ref_directive.len == 0) {
        zone->ref_directive = directive;
        zone->ref_file = cf->conf_file->file.name.data;
        zone->ref_line = cf->conf_file->line;
    }
    return zone;
}

static char *ngx_http_async_job_zone_bad(ngx_conf_t *cf, ngx_str_t *value)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"async_job_zone\"", value);
    return static_cast<char *>(NGX_CONF_ERROR);
}

char *ngx_http_async_job_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                        void *conf)
{
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    (void) cmd;
    (void) conf;

    ngx_str_t name = ngx_null_string;
    size_t size = 0;
    uint64_t ttl = default_ttl_ms, max_result = default_max_result;
    uint64_t active = default_active, length = default_length;

    for (ngx_uint_t i = 1; i < cf->args->nelts; i++) {
        std::string_view arg = async::view(value[i]);
        if (auto z = async::parse_key_value(arg, "zone")) {
            auto spec = async::parse_zone_spec(*z, NGX_MAX_SIZE_T_VALUE / 2);
            if (!spec) {
                return ngx_http_async_job_zone_bad(cf, &value[i]);
            }
            name = async::ngx_string_of(spec->name);
            size = static_cast<size_t>(spec->size);
        } else if (auto v = async::parse_key_value(arg, "ttl")) {
            auto ms = async::parse_duration_ms(*v);
            if (!ms || *ms == 0 || *ms > 366ULL * 86400 * 1000) {
                return ngx_http_async_job_zone_bad(cf, &value[i]);
            }
            ttl = *ms;
        } else if (auto v = async::parse_key_value(arg, "max_result")) {
            auto n = async::parse_size(*v);
            if (!n || *n == 0 || *n > UINT32_MAX / 2) {
                return ngx_http_async_job_zone_bad(cf, &value[i]);
            }
            max_result = *n;
        } else if (auto v = async::parse_key_value(arg, "active")) {
            auto n = async::parse_count(*v);
            if (!n || *n == 0 || *n > 1000000) {
                return ngx_http_async_job_zone_bad(cf, &value[i]);
            }
            active = *n;
        } else if (auto v = async::parse_key_value(arg, "length")) {
            auto n = async::parse_count(*v);
            if (!n || *n > 1000000) {
                return ngx_http_async_job_zone_bad(cf, &value[i]);
            }
            length = *n;
        } else {
            return ngx_http_async_job_zone_bad(cf, &value[i]);
        }
    }
    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job_zone\" needs zone=NAME:SIZE");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    uint32_t records = ngx_http_async_job_records_for(size, active, length);
    size_t need = ngx_http_async_job_block_bytes(records, length);
    // the slab allocator keeps a header and a page descriptor per page
    if (need + need / 8 + 8 * ngx_pagesize > size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" of \"async_job_zone\" is too small "
                           "for active=%uL length=%uL: %uz bytes needed",
                           &name, active, length,
                           need + need / 8 + 8 * ngx_pagesize);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_http_async_job_zone_t *zone =
        ngx_http_async_job_zone_get(cf, &name, size);
    if (zone == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (zone->defined) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "async_job_zone \"%V\" is already defined", &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    zone->defined = true;
    zone->size = size;
    zone->ttl = static_cast<ngx_msec_t>(ttl);
    zone->max_result = static_cast<size_t>(max_result);
    zone->max_active = active;
    zone->length = length;
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_async_job_init_zone(ngx_shm_zone_t *shm_zone,
                                              void *data)
{
    auto *zone = static_cast<ngx_http_async_job_zone_t *>(shm_zone->data);
    auto *old = static_cast<ngx_http_async_job_zone_t *>(data);

    if (old != nullptr) {
        // reload with the same name and size: keep every job and result
        zone->shpool = old->shpool;
        zone->sh = old->sh;
        zone->q = old->q;
        zone->table = old->table;
        async::wake_set wake{};
        ngx_shmtx_lock(&zone->shpool->mutex);
        zone->sh->ttl_ms = zone->ttl;
        zone->sh->max_result = zone->max_result;
        ngx_uint_t length = ngx_min(zone->length, zone->q->capacity);
        async::ticket_queue_set_limits(zone->q,
                                       static_cast<uint32_t>(zone->max_active),
                                       static_cast<uint32_t>(length), &wake);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_OK;
    }

    zone->shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    if (shm_zone->shm.exists) {
        zone->sh =
            static_cast<ngx_http_async_job_shared_t *>(zone->shpool->data);
        zone->q = reinterpret_cast<async::ticket_queue *>(zone->sh + 1);
        zone->table = reinterpret_cast<async::job_table *>(
            reinterpret_cast<u_char *>(zone->shpool) + zone->sh->table_offset);
        return NGX_OK;
    }

    uint32_t records = ngx_http_async_job_records_for(
        shm_zone->shm.size, zone->max_active, zone->length);
    size_t bytes = ngx_http_async_job_block_bytes(records, zone->length);
    void *mem = ngx_slab_alloc(zone->shpool, bytes);
    if (mem == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "async_job_zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }
    ngx_memzero(mem, sizeof(ngx_http_async_job_shared_t));
    zone->sh = static_cast<ngx_http_async_job_shared_t *>(mem);
    zone->sh->ttl_ms = zone->ttl;
    zone->sh->max_result = zone->max_result;
    zone->q = reinterpret_cast<async::ticket_queue *>(zone->sh + 1);
    async::ticket_queue_init(zone->q, static_cast<uint32_t>(zone->length),
                             static_cast<uint32_t>(zone->max_active),
                             static_cast<uint32_t>(zone->length));
    size_t queue =
        async::ticket_queue_bytes(static_cast<uint32_t>(zone->length));
    queue = (queue + 7) / 8 * 8;
    zone->table = reinterpret_cast<async::job_table *>(
        reinterpret_cast<u_char *>(zone->q) + queue);
    async::job_table_init(zone->table, records);
    zone->sh->table_offset =
        static_cast<uint64_t>(reinterpret_cast<u_char *>(zone->table)
                              - reinterpret_cast<u_char *>(zone->shpool));
    zone->shpool->data = zone->sh;

    size_t len = sizeof(" in async_job_zone \"\"") + shm_zone->shm.name.len;
    zone->shpool->log_ctx =
        static_cast<u_char *>(ngx_slab_alloc(zone->shpool, len));
    if (zone->shpool->log_ctx != nullptr) {
        ngx_sprintf(zone->shpool->log_ctx, " in async_job_zone \"%V\"%Z",
                    &shm_zone->shm.name);
    }
    // running out of room for a result is an answer (zone_full), not an
    // error line per job
    zone->shpool->log_nomem = 0;
    return NGX_OK;
}

// Every zone named by async_job or async_job_status must be defined, and
// async_job needs a status location to point its clients to.
ngx_int_t ngx_http_async_job_init(ngx_conf_t *cf)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    auto *zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        ngx_http_async_job_zone_t *zone = zones[i];
        if (!zone->defined) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown async_job_zone \"%V\" in \"%V\" in %s:%ui",
                          &zone->name, &zone->ref_directive, zone->ref_file,
                          zone->ref_line);
            return NGX_ERROR;
        }
        if (zone->has_submit && zone->status_prefix.data == nullptr) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "async_job_zone \"%V\" is used by \"async_job\" "
                          "but has no \"async_job_status\" location",
                          &zone->name);
            return NGX_ERROR;
        }
    }
    if (amcf->job_zones.nelts == 0) {
        return NGX_OK;
    }
    return ngx_http_async_job_conn_init(cf);
}

// --- store ---------------------------------------------------------------

static void ngx_http_async_job_view_fill(ngx_http_async_job_zone_t *zone,
                                         uint32_t index,
                                         ngx_http_async_job_view_t *view)
{
    view->rec = zone->table->records()[index];
    view->index = index;
    async::encode_id(view->rec.id, view->id);
}

bool ngx_http_async_job_lookup(ngx_http_async_job_zone_t *zone,
                               const uint8_t id[async::id_bytes],
                               ngx_http_async_job_view_t *view)
{
    uint64_t now = ngx_http_async_job_now_ms();
    ngx_shmtx_lock(&zone->shpool->mutex);
    uint32_t index = async::job_table_find(zone->table, id, now);
    if (index != async::no_job) {
        ngx_http_async_job_view_fill(zone, index, view);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    return index != async::no_job;
}

bool ngx_http_async_job_lookup_index(ngx_http_async_job_zone_t *zone,
                                     uint32_t index, uint32_t generation,
                                     ngx_http_async_job_view_t *view)
{
    if (index >= zone->table->capacity) {
        return false;
    }
    uint64_t now = ngx_http_async_job_now_ms();
    ngx_shmtx_lock(&zone->shpool->mutex);
    const async::job_record &rec = zone->table->records()[index];
    bool alive = rec.generation == generation
                 && rec.state != async::job_state::free
                 && !(async::job_final(rec.state) && rec.expires_ms <= now);
    if (alive) {
        ngx_http_async_job_view_fill(zone, index, view);
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    return alive;
}

void ngx_http_async_job_free_result_locked(ngx_http_async_job_zone_t *zone,
                                           uint64_t offset)
{
    if (offset != 0) {
        ngx_slab_free_locked(zone->shpool,
                             reinterpret_cast<u_char *>(zone->shpool) + offset);
    }
}

static void ngx_http_async_job_free_cb(void *ctx, uint64_t offset)
{
    ngx_http_async_job_free_result_locked(
        static_cast<ngx_http_async_job_zone_t *>(ctx), offset);
}

void ngx_http_async_job_wake_watchers(ngx_http_async_job_zone_t *zone,
                                      uint64_t watchers)
{
    if (watchers == 0) {
        return;
    }
    ngx_pid_t pids[64];
    ngx_uint_t n = 0;
    ngx_shmtx_lock(&zone->shpool->mutex);
    for (uint32_t s = 0; s < async::max_queue_owners && n < 64; s++) {
        int64_t pid = zone->q->owners[s].pid;
        if (pid != 0 && (watchers >> (s % 64) & 1) != 0) {
            pids[n++] = static_cast<ngx_pid_t>(pid);
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    for (ngx_uint_t i = 0; i < n; i++) {
        ngx_http_async_wake_pid(pids[i]);
    }
}

void ngx_http_async_job_wake_all(ngx_http_async_job_zone_t *zone)
{
    ngx_http_async_job_wake_watchers(zone, ~uint64_t{0});
}

ngx_int_t ngx_http_async_job_snapshot(ngx_http_async_job_zone_t *zone,
                                      ngx_http_async_job_snapshot_t *out)
{
    if (zone->table == nullptr) {
        return NGX_DECLINED;
    }
    out->name = zone->name;
    ngx_shmtx_lock(&zone->shpool->mutex);
    const async::job_table *t = zone->table;
    out->queued = t->count[static_cast<size_t>(async::job_state::queued)];
    out->running = t->count[static_cast<size_t>(async::job_state::running)];
    out->completed = t->count[static_cast<size_t>(async::job_state::completed)];
    out->failed = t->count[static_cast<size_t>(async::job_state::failed)];
    out->cancelled = t->count[static_cast<size_t>(async::job_state::cancelled)];
    out->expired = t->counters.expired;
    out->stored_bytes = t->stored_bytes;
    out->max_result = zone->sh->max_result;
    out->max_active = zone->q->max_active;
    out->length = zone->q->length;
    out->capacity = t->capacity;
    out->counters = t->counters;
    ngx_shmtx_unlock(&zone->shpool->mutex);
    return NGX_OK;
}

// --- processes -------------------------------------------------------------

static bool ngx_http_async_job_pid_alive(int64_t pid)
{
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}

static void ngx_http_async_job_log_lost(ngx_cycle_t *cycle,
                                        ngx_http_async_job_zone_t *zone,
                                        uint32_t lost)
{
    if (lost > 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "async_job_zone \"%V\": %uD jobs of exited worker "
                      "processes failed (worker_lost)",
                      &zone->name, lost);
    }
}

// A worker starts: take over this process slot (a crashed predecessor's
// jobs fail with worker_lost, its queue places and slots are given back)
// and set up this worker's tables.
ngx_int_t ngx_http_async_job_init_process(ngx_cycle_t *cycle)
{
    ngx_http_async_main_conf_t *amcf = ngx_http_async_job_main(cycle);
    auto *zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        ngx_http_async_job_zone_t *zone = zones[i];
        if (zone->table == nullptr) {
            continue;
        }
        ngx_queue_init(&zone->runs);
        ngx_queue_init(&zone->watched);
        zone->by_node = async::pool_calloc_array<ngx_http_async_job_run_t *>(
            cycle->pool, zone->q->capacity + 1);
        zone->watches = async::pool_calloc_array<ngx_http_async_job_watch_t>(
            cycle->pool, zone->table->capacity);
        if (zone->by_node == nullptr || zone->watches == nullptr) {
            return NGX_ERROR;
        }
        for (uint32_t k = 0; k < zone->table->capacity; k++) {
            ngx_queue_init(&zone->watches[k].waiters);
            zone->watches[k].index = k;
        }

        async::wake_set wake{};
        uint64_t now = ngx_http_async_job_now_ms();
        ngx_shmtx_lock(&zone->shpool->mutex);
        async::ticket_queue_claim(
            zone->q, static_cast<uint32_t>(ngx_process_slot), ngx_pid, &wake);
        async::ticket_queue_reap(zone->q, ngx_http_async_job_pid_alive, &wake);
        uint32_t lost = async::job_table_lose_owner(
            zone->table, static_cast<uint32_t>(ngx_process_slot), ngx_pid, now,
            zone->sh->ttl_ms);
        lost += async::job_table_lose_dead(
            zone->table, ngx_http_async_job_pid_alive, now, zone->sh->ttl_ms);
        zone->seen_changes = zone->table->changes;
        ngx_shmtx_unlock(&zone->shpool->mutex);

        ngx_http_async_job_log_lost(cycle, zone, lost);
        ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
        if (lost > 0) {
            ngx_http_async_job_wake_all(zone);
        }
    }
    return NGX_OK;
}

void ngx_http_async_job_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_async_main_conf_t *amcf = ngx_http_async_job_main(cycle);
    if (amcf == nullptr || amcf->job_zones.nelts == 0) {
        return;
    }
    ngx_http_async_job_runs_exit(cycle);
}

// Safety timer: jobs and slots of processes that vanished, expired jobs.
void ngx_http_async_job_reap(ngx_cycle_t *cycle)
{
    ngx_http_async_main_conf_t *amcf = ngx_http_async_job_main(cycle);
    auto *zones =
        static_cast<ngx_http_async_job_zone_t **>(amcf->job_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->job_zones.nelts; i++) {
        ngx_http_async_job_zone_t *zone = zones[i];
        if (zone->table == nullptr) {
            continue;
        }
        async::wake_set wake{};
        uint64_t now = ngx_http_async_job_now_ms();
        ngx_shmtx_lock(&zone->shpool->mutex);
        async::ticket_queue_reap(zone->q, ngx_http_async_job_pid_alive, &wake);
        uint32_t lost = async::job_table_lose_dead(
            zone->table, ngx_http_async_job_pid_alive, now, zone->sh->ttl_ms);
        async::job_table_expire(zone->table, now, ngx_http_async_job_free_cb,
                                zone);
        ngx_shmtx_unlock(&zone->shpool->mutex);
        ngx_http_async_job_log_lost(cycle, zone, lost);
        ngx_http_async_wake_owners(zone->shpool, zone->q, wake);
        if (lost > 0) {
            ngx_http_async_job_wake_all(zone);
        }
    }
}

void ngx_http_async_job_wake(ngx_cycle_t *cycle)
{
    ngx_http_async_job_runs_wake(cycle);
    ngx_http_async_job_waiters_wake(cycle);
}

// Used by the expiry on demand when the table is full.
uint32_t ngx_http_async_job_expire_locked(ngx_http_async_job_zone_t *zone,
                                          uint64_t now)
{
    return async::job_table_expire(zone->table, now, ngx_http_async_job_free_cb,
                                   zone);
}
