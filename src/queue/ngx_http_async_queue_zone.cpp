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
    return mem;
}

static const ngx_http_async_zone_ops_t ngx_http_async_queue_zone_ops = {
    "async_queue_zone", ngx_http_async_queue_attach,
    ngx_http_async_queue_reconfigure, ngx_http_async_queue_create};

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
