// The job store: async_job_zone, the shared memory behind request-reply
// jobs (the job table, an admission queue for active=/length=, the stored
// results), and the access to its records. What a worker does with it when
// it starts, wakes up and exits is in ngx_http_async_job_process.cpp.
#include "job/ngx_http_async_job.hpp"

#include "common/ngx_http_async_conf.hpp"

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

// --- configuration --------------------------------------------------------

static ngx_http_async_job_zone_t *
ngx_http_async_job_zone_get(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    return ngx_http_async_zone_get<ngx_http_async_job_zone_t>(
        cf, name, size, &ngx_http_async_job_zone_tag, &amcf->job_zones,
        ngx_http_async_job_init_zone);
}

ngx_http_async_job_zone_t *ngx_http_async_job_zone_ref(ngx_conf_t *cf,
                                                       ngx_str_t *name,
                                                       ngx_str_t directive)
{
    ngx_http_async_job_zone_t *zone = ngx_http_async_job_zone_get(cf, name, 0);
    if (zone != nullptr) {
        ngx_http_async_zone_note_ref(cf, zone, directive);
    }
    return zone;
}

// The parameters of async_job_zone, read by ngx_http_async_conf_params.
struct ngx_http_async_job_zone_conf_t {
    ngx_http_async_zone_spec_t zone;
    ngx_msec_t ttl;
    size_t max_result;
    ngx_uint_t active;
    ngx_uint_t length;
    ngx_str_t store;
    ngx_str_t redis;
    ngx_uint_t redis_db;
    ngx_str_t redis_prefix;
    ngx_msec_t redis_timeout;
    ngx_str_t redis_password_file;
};

static const ngx_http_async_conf_param_t ngx_http_async_job_zone_params[] = {
    {"zone", conf_param_kind::zone,
     offsetof(ngx_http_async_job_zone_conf_t, zone), 1,
     NGX_MAX_SIZE_T_VALUE / 2, nullptr},
    {"ttl", conf_param_kind::msec,
     offsetof(ngx_http_async_job_zone_conf_t, ttl), 1, 366ULL * 86400 * 1000,
     nullptr},
    {"max_result", conf_param_kind::size,
     offsetof(ngx_http_async_job_zone_conf_t, max_result), 1, UINT32_MAX / 2,
     nullptr},
    {"active", conf_param_kind::number,
     offsetof(ngx_http_async_job_zone_conf_t, active), 1, 1000000, nullptr},
    {"length", conf_param_kind::number,
     offsetof(ngx_http_async_job_zone_conf_t, length), 0, 1000000, nullptr},
    {"store", conf_param_kind::string,
     offsetof(ngx_http_async_job_zone_conf_t, store), 1, 16, nullptr},
    {"redis", conf_param_kind::string,
     offsetof(ngx_http_async_job_zone_conf_t, redis), 1, 256, nullptr},
    {"redis_db", conf_param_kind::number,
     offsetof(ngx_http_async_job_zone_conf_t, redis_db), 0, 1000000, nullptr},
    {"redis_prefix", conf_param_kind::string,
     offsetof(ngx_http_async_job_zone_conf_t, redis_prefix), 0, 64, nullptr},
    {"redis_timeout", conf_param_kind::msec,
     offsetof(ngx_http_async_job_zone_conf_t, redis_timeout), 1, 3600 * 1000,
     nullptr},
    {"redis_password_file", conf_param_kind::string,
     offsetof(ngx_http_async_job_zone_conf_t, redis_password_file), 1, 4096,
     nullptr},
};

static constexpr ngx_msec_t default_redis_timeout = 1000;

// store=, redis= and the rest: a Redis configuration, or nullptr for shm.
static char *ngx_http_async_job_store_conf(ngx_conf_t *cf,
                                           ngx_http_async_job_zone_conf_t *p,
                                           ngx_http_async_redis_conf_t **out)
{
    *out = nullptr;
    std::string_view store = async::view(p->store);
    bool redis_params = p->redis.data != nullptr
                        || p->redis_db != NGX_CONF_UNSET_UINT
                        || p->redis_prefix.data != nullptr
                        || p->redis_timeout != NGX_CONF_UNSET_MSEC
                        || p->redis_password_file.data != nullptr;
    if (store.empty() || store == "shm") {
        if (redis_params) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "redis parameters of \"async_job_zone\" need "
                               "store=redis");
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        return NGX_CONF_OK;
    }
    if (store != "redis") {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid store \"%V\" in \"async_job_zone\": "
                           "shm or redis",
                           &p->store);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (p->redis.data == nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_job_zone\" with store=redis needs "
                           "redis=ADDRESS");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    auto *conf = async::pool_calloc<ngx_http_async_redis_conf_t>(cf->pool);
    if (conf == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (!ngx_http_async_redis_parse_address(cf->pool, p->redis, conf)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis address \"%V\" in "
                           "\"async_job_zone\": IPv4:port, [IPv6]:port or "
                           "unix:/path (no host names)",
                           &p->redis);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_conf_init_uint_value(p->redis_db, 0);
    ngx_conf_init_msec_value(p->redis_timeout, default_redis_timeout);
    conf->db = p->redis_db;
    conf->timeout = p->redis_timeout;
    if (p->redis_prefix.data != nullptr) {
        conf->prefix = p->redis_prefix;
    } else {
        ngx_str_set(&conf->prefix, "async:");
    }
    if (p->redis_password_file.data != nullptr
        && ngx_http_async_redis_read_password(cf, p->redis_password_file, conf)
               != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    *out = conf;
    return NGX_CONF_OK;
}

char *ngx_http_async_job_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                        void *conf)
{
    (void) cmd;
    (void) conf;

    ngx_http_async_job_zone_conf_t p;
    ngx_memzero(&p, sizeof(p));
    p.ttl = NGX_CONF_UNSET_MSEC;
    p.max_result = NGX_CONF_UNSET_SIZE;
    p.active = NGX_CONF_UNSET_UINT;
    p.length = NGX_CONF_UNSET_UINT;
    p.redis_db = NGX_CONF_UNSET_UINT;
    p.redis_timeout = NGX_CONF_UNSET_MSEC;
    ngx_http_async_redis_conf_t *redis = nullptr;
    if (ngx_http_async_conf_params(cf, 1, ngx_http_async_job_zone_params, &p)
            != NGX_CONF_OK
        || ngx_http_async_job_store_conf(cf, &p, &redis) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_conf_init_msec_value(p.ttl, default_ttl_ms);
    ngx_conf_init_size_value(p.max_result, default_max_result);
    ngx_conf_init_uint_value(p.active, default_active);
    ngx_conf_init_uint_value(p.length, default_length);

    ngx_str_t name = p.zone.name;
    size_t size = p.zone.size;
    uint64_t active = p.active, length = p.length;
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
    if (zone == nullptr
        || ngx_http_async_zone_define(cf, zone, "async_job_zone")
               != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    zone->size = size;
    zone->ttl = p.ttl;
    zone->max_result = p.max_result;
    zone->max_active = active;
    zone->length = length;
    zone->redis_conf = redis;
    return NGX_CONF_OK;
}

static void ngx_http_async_job_attach(ngx_http_async_zone_t *base, void *block)
{
    auto *zone = static_cast<ngx_http_async_job_zone_t *>(base);
    zone->sh = static_cast<ngx_http_async_job_shared_t *>(block);
    zone->q = reinterpret_cast<async::ticket_queue *>(zone->sh + 1);
    zone->table = reinterpret_cast<async::job_table *>(
        reinterpret_cast<u_char *>(zone->shpool) + zone->sh->table_offset);
}

static void ngx_http_async_job_reconfigure(ngx_http_async_zone_t *base)
{
    auto *zone = static_cast<ngx_http_async_job_zone_t *>(base);
    zone->sh->ttl_ms = zone->ttl;
    zone->sh->max_result = zone->max_result;
}

static void *ngx_http_async_job_create(ngx_http_async_zone_t *base,
                                       ngx_shm_zone_t *shm_zone)
{
    auto *zone = static_cast<ngx_http_async_job_zone_t *>(base);
    uint32_t records = ngx_http_async_job_records_for(
        shm_zone->shm.size, zone->max_active, zone->length);
    size_t bytes = ngx_http_async_job_block_bytes(records, zone->length);
    void *mem = ngx_slab_alloc(zone->shpool, bytes);
    if (mem == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "async_job_zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return nullptr;
    }
    ngx_memzero(mem, sizeof(ngx_http_async_job_shared_t));
    zone->sh = static_cast<ngx_http_async_job_shared_t *>(mem);
    ngx_http_async_job_reconfigure(zone);
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
    // running out of room for a result is an answer (zone_full), not an
    // error line per job
    zone->shpool->log_nomem = 0;
    return mem;
}

static const ngx_http_async_zone_ops_t ngx_http_async_job_zone_ops = {
    "async_job_zone", ngx_http_async_job_attach, ngx_http_async_job_reconfigure,
    ngx_http_async_job_create};

static ngx_int_t ngx_http_async_job_init_zone(ngx_shm_zone_t *shm_zone,
                                              void *data)
{
    return ngx_http_async_zone_init(shm_zone, data,
                                    ngx_http_async_job_zone_ops);
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
        if (ngx_http_async_zone_check_defined(cf, zone, "async_job_zone")
            != NGX_OK) {
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
    if (ngx_http_async_job_redis_check(cf) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_job_conn_init(cf);
}

// --- store ---------------------------------------------------------------

void ngx_http_async_job_view_fill_locked(ngx_http_async_job_zone_t *zone,
                                         uint32_t index,
                                         ngx_http_async_job_view_t *view)
{
    view->rec = zone->table->records()[index];
    view->index = index;
    async::encode_id(view->rec.id, view->id);
    const async::job_progress *p =
        ngx_http_async_job_progress_locked(zone, false);
    if (p != nullptr) {
        async::job_progress_get(p, zone->table, index, &view->progress);
    } else {
        view->progress.has = false;
    }
}

bool ngx_http_async_job_lookup(ngx_http_async_job_zone_t *zone,
                               const uint8_t id[async::id_bytes],
                               ngx_http_async_job_view_t *view)
{
    uint64_t now = ngx_http_async_job_now_ms();
    ngx_shmtx_lock(&zone->shpool->mutex);
    uint32_t index = async::job_table_find(zone->table, id, now);
    if (index != async::no_job) {
        ngx_http_async_job_view_fill_locked(zone, index, view);
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
        ngx_http_async_job_view_fill_locked(zone, index, view);
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

// Used by the expiry on demand when the table is full.
uint32_t ngx_http_async_job_expire_locked(ngx_http_async_job_zone_t *zone,
                                          uint64_t now)
{
    return async::job_table_expire(zone->table, now, ngx_http_async_job_free_cb,
                                   zone);
}
