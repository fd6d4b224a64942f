// Module shell: directive table, module context, conf create/merge and the
// process hooks. Each concern's behaviour lives in its own glue file.
#include "ngx_http_async_module.hpp"

static void *ngx_http_async_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_async_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_async_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                           void *child);

static ngx_command_t ngx_http_async_commands[] = {

    {ngx_string("async_status"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_async_status_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},

    ngx_null_command};

static ngx_http_module_t ngx_http_async_module_ctx = {
    nullptr,                         // preconfiguration
    nullptr,                         // postconfiguration
    ngx_http_async_create_main_conf, // create main configuration
    nullptr,                         // init main configuration
    nullptr,                         // create server configuration
    nullptr,                         // merge server configuration
    ngx_http_async_create_loc_conf,  // create location configuration
    ngx_http_async_merge_loc_conf    // merge location configuration
};

extern "C" {
ngx_module_t ngx_http_async_module = {
    NGX_MODULE_V1,
    &ngx_http_async_module_ctx, // module context
    ngx_http_async_commands,    // module directives
    NGX_HTTP_MODULE,            // module type
    nullptr,                    // init master
    nullptr,                    // init module
    nullptr,                    // init process
    nullptr,                    // init thread
    nullptr,                    // exit thread
    nullptr,                    // exit process
    nullptr,                    // exit master
    NGX_MODULE_V1_PADDING};
}

static void *ngx_http_async_create_main_conf(ngx_conf_t *cf)
{
    auto *amcf = async::pool_calloc<ngx_http_async_main_conf_t>(cf->pool);
    if (amcf == nullptr) {
        return nullptr;
    }
    if (ngx_array_init(&amcf->queue_zones, cf->pool, 4,
                       sizeof(ngx_shm_zone_t *))
        != NGX_OK)
    {
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
    return alcf;
}

static char *ngx_http_async_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                           void *child)
{
    auto *prev = static_cast<ngx_http_async_loc_conf_t *>(parent);
    auto *conf = static_cast<ngx_http_async_loc_conf_t *>(child);

    (void) cf;
    (void) prev;
    // async_status is a content handler of its own location: not inherited
    if (conf->status == NGX_CONF_UNSET) {
        conf->status = 0;
    }
    return NGX_CONF_OK;
}
