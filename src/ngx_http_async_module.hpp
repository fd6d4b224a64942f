// Declarations shared by the module shell and the glue files of each concern.
#pragma once

#include "ngx_async.hpp"

extern "C" {
extern ngx_module_t ngx_http_async_module;
}

struct ngx_http_async_main_conf_t {
    ngx_array_t queue_zones; // ngx_shm_zone_t *, one per async_queue_zone
};

struct ngx_http_async_loc_conf_t {
    ngx_flag_t status; // async_status
};

// status concern (ngx_http_async_status.cpp)
char *ngx_http_async_status_directive(ngx_conf_t *cf, ngx_command_t *cmd,
                                      void *conf);
