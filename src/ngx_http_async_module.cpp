// Module shell: directive table, module context, conf create/merge and the
// process hooks. Each concern's behaviour lives in its own glue file; the
// shell is the one place that knows them all and wires them together.
#include "ngx_http_async_module.hpp"
#include "common/ngx_http_async_conf.hpp"
#include "common/ngx_http_async_stats.hpp"
#include "common/ngx_http_async_wake.hpp"
#include "common/ngx_http_async_status_section.hpp"
#include "fanout/ngx_http_async_fanout.hpp"
#include "job/ngx_http_async_job.hpp"
#include "queue/ngx_http_async_queue.hpp"
#include "status/ngx_http_async_status.hpp"

static ngx_int_t ngx_http_async_preconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_async_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_async_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_async_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_async_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                           void *child);
static ngx_int_t ngx_http_async_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_async_init_process(ngx_cycle_t *cycle);
static void ngx_http_async_exit_process(ngx_cycle_t *cycle);
static void ngx_http_async_exit_master(ngx_cycle_t *cycle);

static ngx_conf_num_bounds_t ngx_http_async_queue_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599};

// A call's budget must fit a timer (ngx_msec_int_t on every platform).
static ngx_http_async_conf_bounds_t ngx_http_async_fetch_timeout_bounds = {
    ngx_http_async_conf_msec_bounds, 1, NGX_MAX_INT32_VALUE};

// The capture buffer grows by doubling: keep that far from overflow.
static ngx_http_async_conf_bounds_t ngx_http_async_fetch_max_size_bounds = {
    ngx_http_async_conf_size_bounds, 0, NGX_MAX_SIZE_T_VALUE / 8};

static ngx_http_async_conf_bounds_t ngx_http_async_job_max_wait_bounds = {
    ngx_http_async_conf_msec_bounds, 0, 86400 * 1000};

static ngx_conf_enum_t ngx_http_async_aggregate_values[] = {
    {ngx_string("json"), static_cast<ngx_uint_t>(fanout_aggregate::json)},
    {ngx_string("concat"), static_cast<ngx_uint_t>(fanout_aggregate::concat)},
    {ngx_string("multipart"),
     static_cast<ngx_uint_t>(fanout_aggregate::multipart)},
    {ngx_null_string, 0}};

static ngx_command_t ngx_http_async_commands[] = {

    {ngx_string("async_queue_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
     ngx_http_async_queue_zone_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0,
     nullptr},

    {ngx_string("async_queue"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE12,
     ngx_http_async_queue_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_queue_status"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_async_loc_conf_t, queue_status),
     &ngx_http_async_queue_status_bounds},

    {ngx_string("async_queue_retry_after"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_http_async_queue_retry_after_directive, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},

    {ngx_string("async_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_async_status_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_fetch"), NGX_HTTP_LOC_CONF | NGX_CONF_2MORE,
     ngx_http_async_fetch_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_fetch_timeout"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_async_loc_conf_t, fetch_timeout),
     &ngx_http_async_fetch_timeout_bounds},

    {ngx_string("async_timeout"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_http_async_timeout_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_aggregate"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_async_loc_conf_t, aggregate),
     ngx_http_async_aggregate_values},

    {ngx_string("async_fetch_max_size"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_async_loc_conf_t, fetch_max_size),
     &ngx_http_async_fetch_max_size_bounds},

    {ngx_string("async_job_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
     ngx_http_async_job_zone_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_job"), NGX_HTTP_LOC_CONF | NGX_CONF_2MORE,
     ngx_http_async_job_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_job_status"), NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_http_async_job_status_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    {ngx_string("async_job_callback"), NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_http_async_job_callback_directive, NGX_HTTP_LOC_CONF_OFFSET, 0,
     nullptr},

    {ngx_string("async_job_max_wait"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF
         | NGX_CONF_TAKE1,
     ngx_conf_set_msec_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_async_loc_conf_t, job_max_wait),
     &ngx_http_async_job_max_wait_bounds},

    ngx_null_command};

static ngx_http_module_t ngx_http_async_module_ctx = {
    ngx_http_async_preconfiguration,  // preconfiguration
    ngx_http_async_postconfiguration, // postconfiguration
    ngx_http_async_create_main_conf,  // create main configuration
    nullptr,                          // init main configuration
    nullptr,                          // create server configuration
    nullptr,                          // merge server configuration
    ngx_http_async_create_loc_conf,   // create location configuration
    ngx_http_async_merge_loc_conf     // merge location configuration
};

extern "C" {
ngx_module_t ngx_http_async_module = {
    NGX_MODULE_V1,
    &ngx_http_async_module_ctx,  // module context
    ngx_http_async_commands,     // module directives
    NGX_HTTP_MODULE,             // module type
    nullptr,                     // init master
    ngx_http_async_init_module,  // init module
    ngx_http_async_init_process, // init process
    nullptr,                     // init thread
    nullptr,                     // exit thread
    ngx_http_async_exit_process, // exit process
    ngx_http_async_exit_master,  // exit master
    NGX_MODULE_V1_PADDING};
}

static ngx_int_t ngx_http_async_preconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_async_fanout_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_async_job_add_variables(cf) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_queue_add_variables(cf);
}

static ngx_int_t ngx_http_async_postconfiguration(ngx_conf_t *cf)
{
    // async_status reports the sections in this order
    if (ngx_http_async_status_section_add(cf,
                                          &ngx_http_async_queue_status_section)
            != NGX_OK
        || ngx_http_async_status_section_add(cf,
                                             &ngx_http_async_job_status_section)
               != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_async_stats_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_async_job_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_queue_init(cf);
}

static void *ngx_http_async_create_main_conf(ngx_conf_t *cf)
{
    auto *amcf = async::pool_calloc<ngx_http_async_main_conf_t>(cf->pool);
    if (amcf == nullptr) {
        return nullptr;
    }
    if (ngx_array_init(&amcf->queue_zones, cf->pool, 4,
                       sizeof(ngx_http_async_queue_zone_t *))
        != NGX_OK) {
        return nullptr;
    }
    if (ngx_array_init(&amcf->job_zones, cf->pool, 2,
                       sizeof(ngx_http_async_job_zone_t *))
        != NGX_OK) {
        return nullptr;
    }
    if (ngx_array_init(&amcf->status_sections, cf->pool, 2,
                       sizeof(const ngx_http_async_status_section_t *))
        != NGX_OK) {
        return nullptr;
    }
    return amcf;
}

static void *ngx_http_async_create_loc_conf(ngx_conf_t *cf)
{
    auto *alcf = async::pool_calloc<ngx_http_async_loc_conf_t>(cf->pool);
    if (alcf == nullptr) {
        return nullptr;
    }
    alcf->status = NGX_CONF_UNSET;
    alcf->queue = static_cast<ngx_shm_zone_t *>(NGX_CONF_UNSET_PTR);
    alcf->queue_status = NGX_CONF_UNSET;
    alcf->queue_retry_after = NGX_CONF_UNSET;
    alcf->fetch_timeout = NGX_CONF_UNSET_MSEC;
    alcf->fanout_timeout = NGX_CONF_UNSET_MSEC;
    alcf->aggregate = NGX_CONF_UNSET_UINT;
    alcf->fetch_max_size = NGX_CONF_UNSET_SIZE;
    alcf->job_max_wait = NGX_CONF_UNSET_MSEC;
    return alcf;
}

static char *ngx_http_async_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                           void *child)
{
    auto *prev = static_cast<ngx_http_async_loc_conf_t *>(parent);
    auto *conf = static_cast<ngx_http_async_loc_conf_t *>(child);

    // async_status is a content handler of its own location: not inherited
    if (conf->status == NGX_CONF_UNSET) {
        conf->status = 0;
    }
    if (conf->queue == NGX_CONF_UNSET_PTR) {
        conf->queue_priority = prev->queue_priority; // set with the queue
    }
    ngx_conf_merge_ptr_value(conf->queue, prev->queue, nullptr);
    ngx_conf_merge_value(conf->queue_status, prev->queue_status,
                         NGX_HTTP_SERVICE_UNAVAILABLE);
    ngx_conf_merge_value(conf->queue_retry_after, prev->queue_retry_after,
                         NGX_HTTP_ASYNC_RETRY_AFTER_AUTO);
    // async_fetch lines belong to their location: not inherited
    ngx_conf_merge_msec_value(conf->fetch_timeout, prev->fetch_timeout, 60000);
    ngx_conf_merge_msec_value(conf->fanout_timeout, prev->fanout_timeout, 0);
    ngx_conf_merge_uint_value(conf->aggregate, prev->aggregate, 0);
    ngx_conf_merge_size_value(conf->fetch_max_size, prev->fetch_max_size,
                              1024 * 1024);
    ngx_http_async_stats_note_use(cf, conf);
    ngx_conf_merge_msec_value(conf->job_max_wait, prev->job_max_wait, 60000);
    ngx_http_async_job_status_merge_limit_except(cf, prev, conf);
    if (ngx_http_async_job_merge(cf, conf) != NGX_CONF_OK) {
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return ngx_http_async_fanout_merge(cf, conf);
}

static bool ngx_http_async_serves_requests()
{
    return ngx_process == NGX_PROCESS_WORKER
           || ngx_process == NGX_PROCESS_SINGLE;
}

// Whether this cycle has zones whose workers wake each other.
static bool ngx_http_async_uses_wake(ngx_cycle_t *cycle)
{
    auto *amcf = static_cast<ngx_http_async_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_async_module));
    return amcf != nullptr
           && (amcf->queue_zones.nelts != 0 || amcf->job_zones.nelts != 0);
}

static ngx_int_t ngx_http_async_init_module(ngx_cycle_t *cycle)
{
    if (!ngx_http_async_uses_wake(cycle)) {
        return NGX_OK;
    }
    return ngx_http_async_wake_init_module(cycle);
}

static ngx_int_t ngx_http_async_init_process(ngx_cycle_t *cycle)
{
    if (!ngx_http_async_serves_requests() || !ngx_http_async_uses_wake(cycle)) {
        return NGX_OK;
    }
    // wake-ups reach each concern through the handlers it registers here;
    // reap handlers run first, on the safety timer
    if (ngx_http_async_wake_register(ngx_http_async_queue_resume_granted,
                                     ngx_http_async_queue_reap)
            != NGX_OK
        || ngx_http_async_wake_register(ngx_http_async_job_wake,
                                        ngx_http_async_job_reap)
               != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_async_wake_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }
    if (ngx_http_async_job_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_async_queue_init_process(cycle);
}

static void ngx_http_async_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_http_async_serves_requests()) {
        ngx_http_async_job_exit_process(cycle);
        ngx_http_async_wake_exit_process(cycle);
    }
}

static void ngx_http_async_exit_master(ngx_cycle_t *cycle)
{
    ngx_http_async_wake_exit_master(cycle);
}
