// What queue zones and job zones share (see the header).
#include "common/ngx_http_async_zone.hpp"

#include <cerrno>
#include <csignal>

ngx_int_t ngx_http_async_zone_init(ngx_shm_zone_t *shm_zone, void *data,
                                   const ngx_http_async_zone_ops_t &ops)
{
    auto *zone = static_cast<ngx_http_async_zone_t *>(shm_zone->data);

    // a reload reuses the old cycle's memory at the same address
    zone->shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    if (data != nullptr || shm_zone->shm.exists) {
        ops.attach(zone, zone->shpool->data);
        if (data != nullptr) {
            async::wake_set wake{};
            ngx_shmtx_lock(&zone->shpool->mutex);
            ops.reconfigure(zone);
            ngx_uint_t length = ngx_min(zone->length, zone->q->capacity);
            async::ticket_queue_set_limits(
                zone->q, static_cast<uint32_t>(zone->max_active),
                static_cast<uint32_t>(length), &wake);
            ngx_shmtx_unlock(&zone->shpool->mutex);
        }
        return NGX_OK;
    }

    void *block = ops.create(zone, shm_zone);
    if (block == nullptr) {
        return NGX_ERROR;
    }
    zone->shpool->data = block;

    size_t len = sizeof(" in  \"\"") + ngx_strlen(ops.directive)
                 + shm_zone->shm.name.len;
    zone->shpool->log_ctx =
        static_cast<u_char *>(ngx_slab_alloc(zone->shpool, len));
    if (zone->shpool->log_ctx != nullptr) {
        ngx_sprintf(zone->shpool->log_ctx, " in %s \"%V\"%Z", ops.directive,
                    &shm_zone->shm.name);
    }
    return NGX_OK;
}

void ngx_http_async_zone_note_ref(ngx_conf_t *cf, ngx_http_async_zone_t *zone,
                                  const ngx_str_t &directive)
{
    if (zone->ref_directive.len == 0) {
        zone->ref_directive = directive;
        zone->ref_file = cf->conf_file->file.name.data;
        zone->ref_line = cf->conf_file->line;
    }
}

char *ngx_http_async_zone_define(ngx_conf_t *cf, ngx_http_async_zone_t *zone,
                                 const char *directive)
{
    if (zone->defined) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\" is already defined",
                           directive, &zone->name);
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    zone->defined = true;
    return NGX_CONF_OK;
}

ngx_int_t ngx_http_async_zone_check_defined(ngx_conf_t *cf,
                                            ngx_http_async_zone_t *zone,
                                            const char *directive)
{
    if (zone->defined) {
        return NGX_OK;
    }
    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "unknown %s \"%V\" in \"%V\" in %s:%ui", directive,
                  &zone->name, &zone->ref_directive, zone->ref_file,
                  zone->ref_line);
    return NGX_ERROR;
}

bool ngx_http_async_pid_alive(int64_t pid)
{
    return kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH;
}
