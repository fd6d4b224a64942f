// async_queue_zone: the shared memory behind an admission queue, its
// configuration, and what a worker process does with it when it starts.
#include "queue/ngx_http_async_queue.hpp"

#include "common/ngx_http_async_conf.hpp"

static ngx_int_t ngx_http_async_queue_init_zone(ngx_shm_zone_t *shm_zone,
                                                void *data);

static ngx_http_async_queue_zone_t *
ngx_http_async_queue_zone_get(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    return ngx_http_async_zone_get<ngx_http_async_queue_zone_t>(
        cf, name, size, &ngx_http_async_module, &amcf->queue_zones,
        ngx_http_async_queue_init_zone);
}

// ngx_slab_init keeps about one page descriptor per page plus its header.
static constexpr size_t slab_page_overhead = 64;

static uint32_t ngx_http_async_queue_capacity_for_zone(size_t zone_size)
{
    size_t page = ngx_pagesize;
    if (zone_size < 4 * page) {
        return 0;
    }
    size_t pages = (zone_size - 2 * page) / (page + slab_page_overhead);
    if (pages < 1) {
        return 0;
    }
    size_t usable = pages * page;
    if (usable < sizeof(ngx_http_async_queue_shared_t)) {
        return 0;
    }
    return async::ticket_queue_capacity_for(
        usable - sizeof(ngx_http_async_queue_shared_t));
}

// The parameters of async_queue_zone, read by ngx_http_async_conf_params.
struct ngx_http_async_queue_zone_conf_t {
    ngx_http_async_zone_spec_t zone;
    ngx_uint_t active;
    ngx_uint_t per_cpu;
    ngx_uint_t length;
    ngx_msec_t timeout;
};

static constexpr uint64_t max_count = UINT32_MAX / 2;

static const ngx_http_async_conf_param_t ngx_http_async_queue_zone_params[] = {
    {"zone", conf_param_kind::zone,
     offsetof(ngx_http_async_queue_zone_conf_t, zone), 1,
     NGX_MAX_SIZE_T_VALUE / 2, nullptr},
    {"active", conf_param_kind::number,
     offsetof(ngx_http_async_queue_zone_conf_t, active), 1, max_count, nullptr},
    {"per_cpu", conf_param_kind::number,
     offsetof(ngx_http_async_queue_zone_conf_t, per_cpu), 1, 1000000, nullptr},
    {"length", conf_param_kind::number,
     offsetof(ngx_http_async_queue_zone_conf_t, length), 0, max_count, nullptr},
    {"timeout", conf_param_kind::msec,
     offsetof(ngx_http_async_queue_zone_conf_t, timeout), 1,
     NGX_MAX_INT32_VALUE, nullptr},
};

char *ngx_http_async_queue_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf)
{
    (void) cmd;
    (void) conf;

    // takes its own parameters out of cf->args first
    ngx_http_async_queue_tuning_t tuning;
    if (ngx_http_async_queue_tuning_params(cf, &tuning) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    ngx_http_async_queue_zone_conf_t p;
    ngx_memzero(&p, sizeof(p));
    p.active = NGX_CONF_UNSET_UINT;
    p.per_cpu = NGX_CONF_UNSET_UINT;
    p.length = NGX_CONF_UNSET_UINT;
    p.timeout = NGX_CONF_UNSET_MSEC;
    if (ngx_http_async_conf_params(cf, 1, ngx_http_async_queue_zone_params, &p)
        != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_conf_init_uint_value(p.length, 1000);
    ngx_conf_init_msec_value(p.timeout, 60000);

    ngx_str_t name = p.zone.name;
    ssize_t size = static_cast<ssize_t>(p.zone.size);
    bool have_active = p.active != NGX_CONF_UNSET_UINT;
    bool have_per_cpu = p.per_cpu != NGX_CONF_UNSET_UINT;
    uint64_t active = p.active, length = p.length;

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\" needs zone=NAME:SIZE");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (have_active == have_per_cpu) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\" \"%V\" needs exactly one of "
                           "active=N or per_cpu=N",
                           &name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (have_per_cpu) {
        active = p.per_cpu * static_cast<uint64_t>(ngx_ncpu > 0 ? ngx_ncpu : 1);
    }

    uint32_t capacity =
        ngx_http_async_queue_capacity_for_zone(static_cast<size_t>(size));
    if (capacity < length || capacity == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" of \"async_queue_zone\" is too small "
                           "for length=%uL: %z bytes hold %uD waiting "
                           "requests",
                           &name, length, size, capacity);
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    auto *zone = ngx_http_async_queue_zone_get(cf, &name, size);
    if (zone == nullptr
        || ngx_http_async_zone_define(cf, zone, "async_queue_zone")
               != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    zone->max_active = active;
    zone->length = length;
    zone->timeout = p.timeout;
    zone->tuning = tuning;
    return NGX_CONF_OK;
}

// A zone named by async_queue, before or without its definition.
char *ngx_http_async_queue_zone_ref(ngx_conf_t *cf, ngx_str_t *name,
                                    const ngx_str_t &directive,
                                    ngx_shm_zone_t **out)
{
    auto *zone = ngx_http_async_queue_zone_get(cf, name, 0);
    if (zone == nullptr) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    ngx_http_async_zone_note_ref(cf, zone, directive);
    *out = zone->shm_zone;
    return NGX_CONF_OK;
}

static void ngx_http_async_queue_attach(ngx_http_async_zone_t *base,
                                        void *block)
{
    auto *zone = static_cast<ngx_http_async_queue_zone_t *>(base);
    zone->sh = static_cast<ngx_http_async_queue_shared_t *>(block);
    zone->q = reinterpret_cast<async::ticket_queue *>(zone->sh + 1);
}

static void ngx_http_async_queue_reconfigure(ngx_http_async_zone_t *base)
{
    auto *zone = static_cast<ngx_http_async_queue_zone_t *>(base);
    zone->sh->timeout = zone->timeout;
    zone->sh->configured_length = static_cast<uint32_t>(zone->length);
}

// Reload, under the lock: the learned limit and CoDel go on.
static void ngx_http_async_queue_reload(ngx_http_async_zone_t *base)
{
    auto *zone = static_cast<ngx_http_async_queue_zone_t *>(base);
    ngx_http_async_queue_reconfigure(zone);
    ngx_http_async_queue_tune(zone, false);
}

static void *ngx_http_async_queue_create(ngx_http_async_zone_t *base,
                                         ngx_shm_zone_t *shm_zone)
{
    auto *zone = static_cast<ngx_http_async_queue_zone_t *>(base);
    uint32_t capacity =
        ngx_http_async_queue_capacity_for_zone(shm_zone->shm.size);
    void *mem = nullptr;
    // the estimate of slab overhead may be off by a page or two
    while (capacity >= zone->length && capacity > 0) {
        size_t bytes = sizeof(ngx_http_async_queue_shared_t)
                       + async::ticket_queue_bytes(capacity);
        mem = ngx_slab_alloc(zone->shpool, bytes);
        if (mem != nullptr) {
            break;
        }
        uint32_t less =
            static_cast<uint32_t>(ngx_pagesize / sizeof(async::queue_node));
        capacity = capacity > less ? capacity - less : 0;
    }
    if (mem == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "async_queue_zone \"%V\" is too small for length=%ui",
                      &shm_zone->shm.name, zone->length);
        return nullptr;
    }

    ngx_memzero(mem, sizeof(ngx_http_async_queue_shared_t));
    ngx_http_async_queue_attach(zone, mem);
    ngx_http_async_queue_reconfigure(zone);
    async::ticket_queue_init(zone->q, capacity,
                             static_cast<uint32_t>(zone->max_active),
                             static_cast<uint32_t>(zone->length));
    ngx_http_async_queue_tune(zone, true);
    async::wake_set none{}; // nobody waits yet
    async::ticket_queue_set_limits(zone->q,
                                   static_cast<uint32_t>(zone->max_active),
                                   static_cast<uint32_t>(zone->length), &none);
    return mem;
}

static const ngx_http_async_zone_ops_t ngx_http_async_queue_zone_ops = {
    "async_queue_zone", ngx_http_async_queue_attach,
    ngx_http_async_queue_reload, ngx_http_async_queue_create};

static ngx_int_t ngx_http_async_queue_init_zone(ngx_shm_zone_t *shm_zone,
                                                void *data)
{
    return ngx_http_async_zone_init(shm_zone, data,
                                    ngx_http_async_queue_zone_ops);
}

static void ngx_http_async_queue_log_reclaimed(
    ngx_cycle_t *cycle, ngx_http_async_queue_zone_t *zone, uint32_t reclaimed)
{
    if (reclaimed > 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "async_queue_zone \"%V\": reclaimed %uD slots and "
                      "queue places of exited worker processes",
                      &zone->name, reclaimed);
    }
}

// A worker starts: take over this process slot in every zone (giving back
// what a crashed predecessor held) and give back what any other vanished
// process held.
ngx_int_t ngx_http_async_queue_init_process(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr) {
        return NGX_OK;
    }

    auto *zones =
        static_cast<ngx_http_async_queue_zone_t **>(amcf->queue_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->queue_zones.nelts; i++) {
        ngx_http_async_queue_zone_t *zone = zones[i];
        if (zone->q == nullptr) {
            continue;
        }
        zone->parked = async::pool_calloc_array<ngx_http_async_queue_entry_t *>(
            cycle->pool, zone->q->capacity);
        if (zone->parked == nullptr) {
            return NGX_ERROR;
        }

        uint32_t reclaimed = ngx_http_async_zone_reclaim(zone, true, [] {});
        ngx_http_async_queue_log_reclaimed(cycle, zone, reclaimed);
    }
    return NGX_OK;
}

// Periodic check from the safety timer: slots of processes that vanished.
void ngx_http_async_queue_reap(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr) {
        return;
    }
    auto *zones =
        static_cast<ngx_http_async_queue_zone_t **>(amcf->queue_zones.elts);
    for (ngx_uint_t i = 0; i < amcf->queue_zones.nelts; i++) {
        ngx_http_async_queue_zone_t *zone = zones[i];
        if (zone->q == nullptr) {
            continue;
        }
        uint32_t reclaimed = ngx_http_async_zone_reclaim(zone, false, [] {});
        ngx_http_async_queue_log_reclaimed(cycle, zone, reclaimed);
    }
}

// --- active=auto, discipline= ---------------------------------------------

static char *ngx_http_async_queue_tuning_bad(ngx_conf_t *cf, ngx_str_t *value)
{
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" in \"async_queue_zone\"",
                       value);
    return static_cast<char *>(NGX_CONF_ERROR);
}

// The value of KEY=VALUE, or nullptr when arg is not of that key.
static bool ngx_http_async_queue_tuning_key(ngx_str_t *arg,
                                            std::string_view key,
                                            ngx_str_t *value)
{
    std::string_view a = async::view(*arg);
    if (a.size() <= key.size() || a.substr(0, key.size()) != key
        || a[key.size()] != '=') {
        return false;
    }
    value->data = arg->data + key.size() + 1;
    value->len = arg->len - key.size() - 1;
    return true;
}

char *ngx_http_async_queue_tuning_params(ngx_conf_t *cf,
                                         ngx_http_async_queue_tuning_t *t)
{
    auto *args = static_cast<ngx_str_t *>(cf->args->elts);
    t->adaptive = 0;
    t->min = 1;
    t->max = 1000;
    t->codel = 0;
    t->codel_target = 5;
    t->codel_interval = 100;
    bool have_bounds = false, have_codel_times = false;
    bool have_per_cpu = false, have_active = false;

    ngx_uint_t kept = 1;
    for (ngx_uint_t i = 1; i < cf->args->nelts; i++) {
        ngx_str_t *arg = &args[i];
        ngx_str_t v;
        if (async::view(*arg) == "active=auto") {
            t->adaptive = 1;
        } else if (ngx_http_async_queue_tuning_key(arg, "min", &v)
                   || ngx_http_async_queue_tuning_key(arg, "max", &v)) {
            ngx_int_t n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n == 0 || n > UINT32_MAX / 2) {
                return ngx_http_async_queue_tuning_bad(cf, arg);
            }
            (arg->data[1] == 'i' ? t->min : t->max) =
                static_cast<ngx_uint_t>(n);
            have_bounds = true;
        } else if (ngx_http_async_queue_tuning_key(arg, "discipline", &v)) {
            std::string_view d = async::view(v);
            if (d != "fifo" && d != "codel") {
                return ngx_http_async_queue_tuning_bad(cf, arg);
            }
            t->codel = d == "codel";
        } else if (ngx_http_async_queue_tuning_key(arg, "codel_target", &v)
                   || ngx_http_async_queue_tuning_key(arg, "codel_interval",
                                                      &v)) {
            ngx_int_t ms = ngx_parse_time(&v, 0);
            if (ms == NGX_ERROR || ms == 0 || ms > NGX_MAX_INT32_VALUE) {
                return ngx_http_async_queue_tuning_bad(cf, arg);
            }
            (arg->data[6] == 't' ? t->codel_target : t->codel_interval) =
                static_cast<ngx_msec_t>(ms);
            have_codel_times = true;
        } else {
            std::string_view a = async::view(*arg);
            have_per_cpu = have_per_cpu || a.substr(0, 8) == "per_cpu=";
            have_active = have_active || a.substr(0, 7) == "active=";
            args[kept++] = *arg;
        }
    }
    cf->args->nelts = kept;

    if (have_bounds && !t->adaptive) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\": min= and max= need "
                           "active=auto");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (t->adaptive && (have_per_cpu || have_active)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\": active=auto excludes %s",
                           have_per_cpu ? "per_cpu=N" : "active=N");
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (t->min > t->max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\": min=%ui is above max=%ui",
                           t->min, t->max);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    if (have_codel_times && !t->codel) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"async_queue_zone\": codel_target= and "
                           "codel_interval= need discipline=codel");
        return static_cast<char *>(NGX_CONF_ERROR);
    }

    if (t->adaptive) {
        // the fixed-limit parsing that follows sees active=MAX
        auto *arg = static_cast<ngx_str_t *>(ngx_array_push(cf->args));
        auto *p = static_cast<u_char *>(
            ngx_pnalloc(cf->pool, sizeof("active=") + NGX_INT_T_LEN));
        if (arg == nullptr || p == nullptr) {
            return static_cast<char *>(NGX_CONF_ERROR);
        }
        arg->data = p;
        arg->len = ngx_sprintf(p, "active=%ui", t->max) - p;
    }
    return NGX_CONF_OK;
}

void ngx_http_async_queue_tune(ngx_http_async_queue_zone_t *zone, bool fresh)
{
    ngx_http_async_queue_shared_t *sh = zone->sh;
    const ngx_http_async_queue_tuning_t &t = zone->tuning;

    if (t.adaptive) {
        auto min = static_cast<uint32_t>(t.min);
        auto max = static_cast<uint32_t>(t.max);
        if (fresh || !sh->adaptive) {
            async::adaptive_limit_init(&sh->limit, min, max);
        } else {
            // reload: the learned limit goes on within the new bounds
            async::adaptive_limit_set_bounds(&sh->limit, min, max);
        }
        sh->adaptive = 1;
        zone->max_active = sh->limit.limit;
    } else {
        sh->adaptive = 0;
    }

    uint64_t target = t.codel ? t.codel_target : 0;
    uint64_t interval = t.codel ? t.codel_interval : 0;
    if (zone->q->codel.target_ms != target
        || zone->q->codel.interval_ms != interval) {
        async::ticket_queue_set_codel(zone->q, target, interval);
    }
}
