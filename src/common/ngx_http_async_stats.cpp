// The module-wide statistics zone. Fan-out state lives in request pools,
// so its totals for the status page need a place all workers share: one
// small zone with a fixed internal name, added when the module is used,
// kept across reloads (same name and size) and worker restarts.
#include "common/ngx_http_async_stats.hpp"

struct ngx_http_async_stats_shared_t {
    uint64_t fanout[fanout_stat_count];
};

struct ngx_http_async_stats_zone_t {
    ngx_http_async_stats_shared_t *sh;
};

static ngx_int_t ngx_http_async_stats_init_zone(ngx_shm_zone_t *shm_zone,
                                                void *data);

// The zone's tag: other zones of the module are tagged with the module.
static ngx_uint_t ngx_http_async_stats_tag;

static ngx_str_t ngx_http_async_stats_zone_name =
    ngx_string("ngx_http_async_stats");

static constexpr std::string_view ngx_http_async_stats_fanout_names[] = {
    "started",         "completed",       "partial",      "failed",
    "timed_out_calls", "cancelled_calls", "hedged_calls", "hedge_wins"};

static_assert(sizeof(ngx_http_async_stats_fanout_names)
                  / sizeof(ngx_http_async_stats_fanout_names[0])
              == fanout_stat_count);

std::string_view ngx_http_async_stats_fanout_name(fanout_stat which)
{
    auto i = static_cast<ngx_uint_t>(which);
    return i < fanout_stat_count ? ngx_http_async_stats_fanout_names[i]
                                 : std::string_view{};
}

static ngx_http_async_stats_shared_t *ngx_http_async_stats_shared()
{
    auto *cycle = const_cast<ngx_cycle_t *>(ngx_cycle);
    if (cycle->conf_ctx[ngx_http_module.index] == nullptr) {
        return nullptr;
    }
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    if (amcf == nullptr || amcf->stats_zone == nullptr) {
        return nullptr;
    }
    auto *zone =
        static_cast<ngx_http_async_stats_zone_t *>(amcf->stats_zone->data);
    return zone->sh;
}

void ngx_http_async_stats_bump(fanout_stat which)
{
    ngx_http_async_stats_shared_t *sh = ngx_http_async_stats_shared();
    auto i = static_cast<ngx_uint_t>(which);
    if (sh != nullptr && i < fanout_stat_count) {
        __atomic_fetch_add(&sh->fanout[i], 1, __ATOMIC_RELAXED);
    }
}

void ngx_http_async_stats_fanout_snapshot(uint64_t out[fanout_stat_count])
{
    ngx_http_async_stats_shared_t *sh = ngx_http_async_stats_shared();
    for (ngx_uint_t i = 0; i < fanout_stat_count; i++) {
        out[i] = sh != nullptr
                     ? __atomic_load_n(&sh->fanout[i], __ATOMIC_RELAXED)
                     : 0;
    }
}

void ngx_http_async_stats_note_use(ngx_conf_t *cf,
                                   ngx_http_async_loc_conf_t *conf)
{
    if (conf->status == 1 || conf->fanout != nullptr
        || conf->queue != nullptr) {
        auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
            ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
        amcf->stats_used = 1;
    }
}

ngx_int_t ngx_http_async_stats_init(ngx_conf_t *cf)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_async_module));
    if (!amcf->stats_used && amcf->queue_zones.nelts == 0
        && amcf->job_zones.nelts == 0) {
        return NGX_OK;
    }

    ngx_shm_zone_t *shm_zone =
        ngx_shared_memory_add(cf, &ngx_http_async_stats_zone_name,
                              8 * ngx_pagesize, &ngx_http_async_stats_tag);
    if (shm_zone == nullptr) {
        return NGX_ERROR;
    }
    auto *zone = async::pool_calloc<ngx_http_async_stats_zone_t>(cf->pool);
    if (zone == nullptr) {
        return NGX_ERROR;
    }
    shm_zone->init = ngx_http_async_stats_init_zone;
    shm_zone->data = zone;
    amcf->stats_zone = shm_zone;
    return NGX_OK;
}

static ngx_int_t ngx_http_async_stats_init_zone(ngx_shm_zone_t *shm_zone,
                                                void *data)
{
    auto *zone = static_cast<ngx_http_async_stats_zone_t *>(shm_zone->data);
    auto *old = static_cast<ngx_http_async_stats_zone_t *>(data);

    if (old != nullptr) {
        // reload: the counters go on
        zone->sh = old->sh;
        return NGX_OK;
    }
    auto *shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    if (shm_zone->shm.exists) {
        zone->sh = static_cast<ngx_http_async_stats_shared_t *>(shpool->data);
        return NGX_OK;
    }
    zone->sh = static_cast<ngx_http_async_stats_shared_t *>(
        ngx_slab_calloc(shpool, sizeof(ngx_http_async_stats_shared_t)));
    if (zone->sh == nullptr) {
        return NGX_ERROR;
    }
    shpool->data = zone->sh;
    return NGX_OK;
}
