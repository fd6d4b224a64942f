// Declarations shared by the module shell and the glue files of each concern.
#pragma once

#include "ngx_async.hpp"

extern "C" {
extern ngx_module_t ngx_http_async_module;
}

constexpr ngx_int_t NGX_HTTP_ASYNC_RETRY_AFTER_AUTO = -2;
constexpr ngx_int_t NGX_HTTP_ASYNC_RETRY_AFTER_OFF = -3;

struct ngx_http_async_main_conf_t {
    ngx_array_t queue_zones;     // ngx_http_async_queue_zone_t *
    ngx_array_t job_zones;       // ngx_http_async_job_zone_t *
    ngx_array_t status_sections; // const ngx_http_async_status_section_t *
    ngx_shm_zone_t *stats_zone;  // module-wide counters (stats.cpp)
    ngx_flag_t stats_used;       // a location uses the module
};

struct ngx_http_async_job_loc_t;

struct ngx_http_async_loc_conf_t {
    ngx_flag_t status;                        // async_status
    ngx_shm_zone_t *queue;                    // async_queue; nullptr: off
    ngx_http_complex_value_t *queue_priority; // priority=; nullptr: 0
    ngx_int_t queue_status;                   // async_queue_status
    ngx_int_t queue_retry_after;              // seconds, or _AUTO / _OFF

    ngx_array_t *fanout; // async_fetch: ngx_http_async_fetch_t
    u_char *fanout_file; // where the first async_fetch is
    ngx_uint_t fanout_line;
    ngx_msec_t fetch_timeout;  // async_fetch_timeout
    ngx_msec_t fanout_timeout; // async_timeout; 0: off
    ngx_uint_t aggregate;      // async_aggregate (fanout_aggregate)
    size_t fetch_max_size;     // async_fetch_max_size

    ngx_http_async_job_loc_t *job; // async_job*; not inherited
    ngx_msec_t job_max_wait;       // async_job_max_wait
};

// status (ngx_http_async_status.cpp)
char *ngx_http_async_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                      void *conf);

// admission queue (ngx_http_async_queue*.cpp)
char *ngx_http_async_queue_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                          void *conf);
char *ngx_http_async_queue_zone_ref(ngx_conf_t *cf, ngx_str_t *name,
                                    const ngx_str_t &directive,
                                    ngx_shm_zone_t **out);
char *ngx_http_async_queue_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);
char *ngx_http_async_queue_retry_after_directive(ngx_conf_t *cf,
                                                 ngx_command_t *cmd,
                                                 void *conf);
ngx_int_t ngx_http_async_queue_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_async_queue_init(ngx_conf_t *cf);
ngx_int_t ngx_http_async_queue_init_process(ngx_cycle_t *cycle);

// parallel fan-out (ngx_http_async_fanout*.cpp)
char *ngx_http_async_fetch_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                     void *conf);
char *ngx_http_async_timeout_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                       void *conf);
char *ngx_http_async_fanout_merge(ngx_conf_t *cf,
                                  ngx_http_async_loc_conf_t *conf);
ngx_int_t ngx_http_async_fanout_add_variables(ngx_conf_t *cf);
