// The job's own client: one end of a socketpair in the worker's event
// loop. It writes the copied request (head, then the body from memory or
// from the spooled temp file) and reads the answer with nginx's parsers
// (status line, header lines, chunked), as the upstream module does. A
// body that ends before its Content-Length or its last chunk is truncated,
// never a result.
#include "job/ngx_http_async_job_run.hpp"

#include "core/ascii.hpp"

#include <sys/socket.h>

static void ngx_http_async_job_ex_write(ngx_event_t *wev);
static void ngx_http_async_job_ex_read(ngx_event_t *rev);

static constexpr size_t head_buffer = 32768;  // the answer's status and headers
static constexpr size_t stage_buffer = 65536; // a piece of a file body
// A running exchange keeps a timer: an exiting worker (reload) leaves only
// when no timer is left, and the job's answer must be read before that.
// It never times the job out: nginx's own timeouts on the other end do.
static constexpr ngx_msec_t hold_timer = 60000;

// The exchange is over: the client end closes and the run takes over from
// a posted event (never inside this connection's own handler).
static void ngx_http_async_job_ex_end(ngx_http_async_job_exchange_t *ex)
{
    ex->done = true;
    ex->phase = job_read_phase::done;
    if (ex->c != nullptr) {
        ngx_close_connection(ex->c);
        ex->c = nullptr;
    }
    ngx_http_async_job_post(&ex->run->kick_ev);
}

void ngx_http_async_job_exchange_close(ngx_http_async_job_exchange_t *ex)
{
    if (ex != nullptr && !ex->done) {
        ngx_http_async_job_ex_end(ex);
    }
}

ngx_int_t ngx_http_async_job_exchange(ngx_http_async_job_run_t *run,
                                      ngx_str_t head, ngx_array_t *segs,
                                      bool keep_body, bool head_only,
                                      bool callback, async::job_state state)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds)
        == -1) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_socket_errno,
                      "async_job: socketpair() failed");
        return NGX_ERROR;
    }
    auto *ex = async::pool_calloc<ngx_http_async_job_exchange_t>(run->pool);
    auto *log = async::pool_calloc<ngx_log_t>(run->pool);
    auto *in = static_cast<u_char *>(ngx_palloc(run->pool, head_buffer));
    ngx_connection_t *c =
        ex && log && in ? ngx_get_connection(fds[1], ngx_cycle->log) : nullptr;
    if (c == nullptr) {
        ngx_close_socket(fds[0]);
        ngx_close_socket(fds[1]);
        return NGX_ERROR;
    }
    if (ngx_http_async_job_accept(run, fds[0], state) != NGX_OK) {
        ngx_close_connection(c);
        return NGX_ERROR;
    }

    ex->run = run;
    ex->c = c;
    ex->keep_body = keep_body;
    ex->head_only = head_only;
    ex->head = head;
    ex->segs = segs;
    ex->content_length = -1;
    ex->in.start = ex->in.pos = ex->in.last = in;
    ex->in.end = in + head_buffer;
    ex->in.temporary = 1;
    ex->parser.connection = c; // nginx's parsers log through it
    run->ex = ex;

    *log = *ngx_cycle->log;
    log->action = const_cast<char *>(callback ? "calling back for an async job"
                                              : "running an async job");
    c->log = log;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    log->connection = c->number;
    c->type = SOCK_STREAM;
    c->recv = ngx_recv;
    c->send = ngx_send;
    c->recv_chain = ngx_recv_chain;
    c->send_chain = ngx_send_chain;
    c->data = ex;
    c->read->log = log;
    c->write->log = log;
    c->read->handler = ngx_http_async_job_ex_read;
    c->write->handler = ngx_http_async_job_ex_write;
    c->write->ready = 1;
    c->tcp_nodelay = NGX_TCP_NODELAY_DISABLED;
    c->tcp_nopush = NGX_TCP_NOPUSH_DISABLED;

    ngx_add_timer(c->read, hold_timer);
    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_close_connection(c);
        ex->c = nullptr;
        return NGX_ERROR;
    }
    ngx_http_async_job_ex_write(c->write);
    return NGX_OK;
}

// --- the request ---------------------------------------------------------

static void ngx_http_async_job_ex_write(ngx_event_t *wev)
{
    auto *c = static_cast<ngx_connection_t *>(wev->data);
    auto *ex = static_cast<ngx_http_async_job_exchange_t *>(c->data);
    ngx_http_async_job_run_t *run = ex->run;

    while (!ex->written && !ex->done) {
        u_char *p;
        size_t n;
        ngx_http_async_job_body_seg_t *seg = nullptr;
        if (ex->head_sent < ex->head.len) {
            p = ex->head.data + ex->head_sent;
            n = ex->head.len - ex->head_sent;
        } else if (ex->segs != nullptr && ex->seg < ex->segs->nelts) {
            seg = static_cast<ngx_http_async_job_body_seg_t *>(ex->segs->elts)
                  + ex->seg;
            if (seg->data != nullptr) {
                p = seg->data + ex->seg_sent;
                n = seg->len - ex->seg_sent;
            } else {
                if (ex->stage == nullptr) {
                    ex->stage = static_cast<u_char *>(
                        ngx_palloc(run->pool, stage_buffer));
                    if (ex->stage == nullptr) {
                        ngx_http_async_job_ex_end(ex);
                        return;
                    }
                }
                if (ex->stage_sent == ex->stage_len) {
                    size_t want =
                        ngx_min(stage_buffer, seg->len - ex->seg_sent);
                    ssize_t got =
                        pread(run->body_fd, ex->stage, want,
                              seg->file_pos + static_cast<off_t>(ex->seg_sent));
                    if (got <= 0) {
                        ngx_log_error(NGX_LOG_ERR, c->log, ngx_errno,
                                      "async_job: cannot read the request "
                                      "body's temp file");
                        ex->failed = true;
                        ngx_http_async_job_ex_end(ex);
                        return;
                    }
                    ex->stage_len = static_cast<size_t>(got);
                    ex->stage_sent = 0;
                }
                p = ex->stage + ex->stage_sent;
                n = ex->stage_len - ex->stage_sent;
            }
        } else {
            ex->written = true;
            break;
        }

        ssize_t sent = c->send(c, p, n);
        if (sent == NGX_AGAIN) {
            if (ngx_handle_write_event(wev, 0) != NGX_OK) {
                ex->failed = true;
                ngx_http_async_job_ex_end(ex);
            }
            return;
        }
        if (sent == NGX_ERROR) {
            // nginx stopped reading (it answered early): read its answer
            ex->written = true;
            break;
        }
        auto k = static_cast<size_t>(sent);
        if (seg == nullptr) {
            ex->head_sent += k;
            continue;
        }
        if (seg->data == nullptr) {
            ex->stage_sent += k;
        }
        ex->seg_sent += k;
        if (ex->seg_sent == seg->len) {
            ex->seg++;
            ex->seg_sent = 0;
            ex->stage_len = ex->stage_sent = 0;
        }
    }
}

// --- the answer ------------------------------------------------------------

// Keeps n bytes of the job's body; over max_result the job fails at once.
static bool ngx_http_async_job_ex_keep(ngx_http_async_job_exchange_t *ex,
                                       const u_char *p, size_t n)
{
    ngx_http_async_job_run_t *run = ex->run;
    if (!ex->keep_body || n == 0) {
        return true;
    }
    size_t max = run->zone->max_result;
    if (run->len + n > max) {
        ex->too_large = true;
        return false;
    }
    if (run->len + n > run->cap) {
        size_t cap = run->cap != 0 ? run->cap : 4096;
        if (run->cap == 0 && ex->content_length > 0) {
            cap = static_cast<size_t>(ex->content_length);
        }
        while (cap < run->len + n) {
            cap *= 2;
        }
        cap = ngx_min(cap, max);
        auto *buf = static_cast<u_char *>(ngx_palloc(run->pool, cap));
        if (buf == nullptr) {
            ex->failed = true;
            return false;
        }
        if (run->len != 0) {
            ngx_memcpy(buf, run->buf, run->len);
        }
        if (run->buf != nullptr) {
            ngx_pfree(run->pool, run->buf);
        }
        run->buf = buf;
        run->cap = cap;
    }
    ngx_memcpy(run->buf + run->len, p, n);
    run->len += n;
    return true;
}

static bool ngx_http_async_job_ex_header(ngx_http_async_job_exchange_t *ex)
{
    ngx_http_request_t *pr = &ex->parser;
    std::string_view name(
        reinterpret_cast<const char *>(pr->header_name_start),
        static_cast<size_t>(pr->header_name_end - pr->header_name_start));
    ngx_str_t value;
    value.data = pr->header_start;
    value.len = static_cast<size_t>(pr->header_end - pr->header_start);
    if (async::iequals(name, "Content-Type")) {
        ex->content_type = async::pool_copy(ex->run->pool, async::view(value));
        return value.len == 0 || ex->content_type.data != nullptr;
    }
    if (async::iequals(name, "Content-Length")) {
        ex->content_length = ngx_atoof(value.data, value.len);
        return ex->content_length != NGX_ERROR;
    }
    if (async::iequals(name, "Transfer-Encoding")) {
        ex->chunked_te = value.len >= 7
                         && ngx_strlcasestrn(value.data, value.data + value.len,
                                             (u_char *) "chunked", 7 - 1)
                                != nullptr;
    }
    return true;
}

// The head is complete: how the body is delimited.
static void ngx_http_async_job_ex_body_mode(ngx_http_async_job_exchange_t *ex)
{
    ngx_uint_t s = ex->status;
    if (ex->head_only || s < 200 || s == NGX_HTTP_NO_CONTENT
        || s == NGX_HTTP_NOT_MODIFIED) {
        ex->mode = job_body_mode::none;
    } else if (ex->chunked_te) {
        ex->mode = job_body_mode::chunked;
    } else if (ex->content_length >= 0) {
        ex->mode = job_body_mode::length;
        ex->remaining = ex->content_length;
    } else {
        ex->mode = job_body_mode::close;
    }
}

// Parses what ex->in holds; false once the exchange has ended.
static bool ngx_http_async_job_ex_parse(ngx_http_async_job_exchange_t *ex)
{
    ngx_buf_t *b = &ex->in;
    for (;;) {
        ngx_int_t rc;
        switch (ex->phase) {
            case job_read_phase::status_line:
                rc = ngx_http_parse_status_line(&ex->parser, b, &ex->st);
                if (rc == NGX_AGAIN) {
                    return true;
                }
                if (rc != NGX_OK) {
                    ex->failed = true;
                    ngx_http_async_job_ex_end(ex);
                    return false;
                }
                ex->status = ex->st.code;
                ex->phase = job_read_phase::headers;
                break;

            case job_read_phase::headers:
                rc = ngx_http_parse_header_line(&ex->parser, b, 1);
                if (rc == NGX_OK) {
                    if (!ngx_http_async_job_ex_header(ex)) {
                        ex->failed = true;
                        ngx_http_async_job_ex_end(ex);
                        return false;
                    }
                    break;
                }
                if (rc == NGX_AGAIN) {
                    return true;
                }
                if (rc != NGX_HTTP_PARSE_HEADER_DONE) {
                    ex->failed = true;
                    ngx_http_async_job_ex_end(ex);
                    return false;
                }
                if (ex->status >= 100 && ex->status < 200
                    && ex->status != 101) {
                    // an interim answer (103 Early Hints): the real one follows
                    ex->phase = job_read_phase::status_line;
                    ex->content_type.len = 0;
                    ex->content_length = -1;
                    ex->chunked_te = false;
                    break;
                }
                ngx_http_async_job_ex_body_mode(ex);
                if (ex->keep_body && ex->mode == job_body_mode::length
                    && ex->content_length
                           > static_cast<off_t>(ex->run->zone->max_result)) {
                    ex->too_large = true;
                    ngx_http_async_job_ex_end(ex);
                    return false;
                }
                // the head is parsed and copied: the buffer is the body's now
                {
                    size_t rest = static_cast<size_t>(b->last - b->pos);
                    ngx_memmove(b->start, b->pos, rest);
                    b->pos = b->start;
                    b->last = b->start + rest;
                }
                ex->phase = job_read_phase::body;
                if (ex->mode == job_body_mode::none
                    || (ex->mode == job_body_mode::length
                        && ex->remaining == 0)) {
                    ngx_http_async_job_ex_end(ex);
                    return false;
                }
                break;

            case job_read_phase::body: {
                if (ex->mode == job_body_mode::chunked) {
                    for (;;) {
                        rc = async::parse_chunked(&ex->parser, b, &ex->chunked);
                        if (rc == NGX_OK) {
                            size_t n = static_cast<size_t>(
                                ngx_min(ex->chunked.size,
                                        static_cast<off_t>(b->last - b->pos)));
                            if (!ngx_http_async_job_ex_keep(ex, b->pos, n)) {
                                ngx_http_async_job_ex_end(ex);
                                return false;
                            }
                            b->pos += n;
                            ex->chunked.size -= static_cast<off_t>(n);
                            continue;
                        }
                        if (rc == NGX_DONE) {
                            ngx_http_async_job_ex_end(ex);
                            return false;
                        }
                        if (rc == NGX_AGAIN) {
                            break;
                        }
                        ex->truncated = true; // not a valid chunked body
                        ngx_http_async_job_ex_end(ex);
                        return false;
                    }
                } else {
                    size_t n = static_cast<size_t>(b->last - b->pos);
                    if (ex->mode == job_body_mode::length) {
                        n = static_cast<size_t>(
                            ngx_min(static_cast<off_t>(n), ex->remaining));
                        ex->remaining -= static_cast<off_t>(n);
                    }
                    if (!ngx_http_async_job_ex_keep(ex, b->pos, n)) {
                        ngx_http_async_job_ex_end(ex);
                        return false;
                    }
                    b->pos += n;
                    if (ex->mode == job_body_mode::length
                        && ex->remaining == 0) {
                        ngx_http_async_job_ex_end(ex);
                        return false;
                    }
                }
                b->pos = b->last = b->start;
                return true;
            }

            case job_read_phase::done:
                return false;
        }
    }
}

// nginx closed the stream (or reset it): complete only when the body was
// delimited by the close.
static void ngx_http_async_job_ex_eof(ngx_http_async_job_exchange_t *ex,
                                      bool reset)
{
    if (ex->phase != job_read_phase::body) {
        ex->failed = true;
    } else if (ex->mode != job_body_mode::close || reset) {
        ex->truncated = true;
    }
    ngx_http_async_job_ex_end(ex);
}

static void ngx_http_async_job_ex_read(ngx_event_t *rev)
{
    auto *c = static_cast<ngx_connection_t *>(rev->data);
    auto *ex = static_cast<ngx_http_async_job_exchange_t *>(c->data);

    if (c->close) {
        // the worker is shutting down (worker_shutdown_timeout)
        ex->failed = true;
        ngx_http_async_job_ex_end(ex);
        return;
    }
    if (rev->timedout) {
        rev->timedout = 0;
        ngx_add_timer(rev, hold_timer);
    }
    for (;;) {
        ngx_buf_t *b = &ex->in;
        if (b->last == b->end) {
            // a head larger than the buffer (the body never fills it)
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "async_job: the answer's header is too large");
            ex->failed = true;
            ngx_http_async_job_ex_end(ex);
            return;
        }
        ssize_t n = c->recv(c, b->last, static_cast<size_t>(b->end - b->last));
        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ex->failed = true;
                ngx_http_async_job_ex_end(ex);
            }
            return;
        }
        if (n == 0 || n == NGX_ERROR) {
            ngx_http_async_job_ex_eof(ex, n == NGX_ERROR);
            return;
        }
        b->last += n;
        if (!ngx_http_async_job_ex_parse(ex)) {
            return;
        }
    }
}
