#include "core/retry_after.hpp"

namespace async {

namespace {

constexpr uint64_t window = admission_window_s;

struct window_sum {
    uint64_t admissions;
    uint64_t span_ms;
};

window_sum sum_window(const admission_rate &r, uint64_t now_ms) noexcept
{
    if (r.started == 0) {
        return {0, 1000};
    }
    if (now_ms < r.head_sec * 1000) {
        now_ms = r.head_sec * 1000;
    }
    uint64_t now_sec = now_ms / 1000;
    uint64_t first_sec = now_sec >= window - 1 ? now_sec - (window - 1) : 0;

    uint64_t total = 0;
    for (uint64_t s = first_sec; s <= r.head_sec; ++s) {
        total += r.slots[s % window];
    }

    uint64_t from_ms = first_sec * 1000;
    if (r.start_ms > from_ms) {
        from_ms = r.start_ms;
    }
    uint64_t span = now_ms > from_ms ? now_ms - from_ms : 0;
    if (span < 1000) {
        span = 1000;
    }
    return {total, span};
}

} // namespace

void admission_rate_note(admission_rate &r, uint64_t now_ms,
                         uint32_t n) noexcept
{
    uint64_t sec = now_ms / 1000;
    if (r.started == 0) {
        r.started = 1;
        r.start_ms = now_ms;
        r.head_sec = sec;
        for (auto &slot : r.slots) {
            slot = 0;
        }
    } else if (sec > r.head_sec) {
        uint64_t gap = sec - r.head_sec;
        if (gap > window) {
            gap = window;
        }
        for (uint64_t i = 1; i <= gap; ++i) {
            r.slots[(sec - gap + i) % window] = 0;
        }
        r.head_sec = sec;
    }
    uint32_t &slot = r.slots[r.head_sec % window];
    slot = slot > UINT32_MAX - n ? UINT32_MAX : slot + n;
}

uint64_t admission_rate_milli(const admission_rate &r, uint64_t now_ms) noexcept
{
    window_sum w = sum_window(r, now_ms);
    return w.admissions * 1000 * 1000 / w.span_ms;
}

uint32_t retry_after_seconds(const admission_rate &r, uint64_t waiting,
                             uint64_t now_ms) noexcept
{
    if (waiting == 0) {
        return retry_after_min_s;
    }
    window_sum w = sum_window(r, now_ms);
    if (w.admissions == 0) {
        return retry_after_max_s;
    }
    // Bounds keep the products below 2^64; results past the clamp are
    // the same anyway.
    if (waiting > UINT32_MAX) {
        waiting = UINT32_MAX;
    }
    uint64_t num = waiting * w.span_ms;
    uint64_t den = w.admissions * 1000;
    uint64_t seconds = (num + den - 1) / den;
    if (seconds < retry_after_min_s) {
        return retry_after_min_s;
    }
    if (seconds > retry_after_max_s) {
        return retry_after_max_s;
    }
    return static_cast<uint32_t>(seconds);
}

} // namespace async
