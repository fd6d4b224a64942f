#include "core/adaptive_limit.hpp"

#include <cmath>

namespace async {

namespace {

uint32_t clamp_limit(const adaptive_limit *l, int64_t limit)
{
    if (limit < static_cast<int64_t>(l->min_limit)) {
        return l->min_limit;
    }
    if (limit > static_cast<int64_t>(l->max_limit)) {
        return l->max_limit;
    }
    return static_cast<uint32_t>(limit);
}

int64_t log10_root(uint32_t limit)
{
    auto v = static_cast<int64_t>(std::log10(static_cast<double>(limit)));
    return v < 1 ? 1 : v;
}

// Vegas: the queue the backend holds, from how much slower than rtt0 the
// window was.
uint32_t vegas(const adaptive_limit *l, uint64_t rtt)
{
    uint32_t limit = l->limit;
    double ratio = static_cast<double>(l->min_us) / static_cast<double>(rtt);
    auto queue = static_cast<int64_t>(
        std::ceil(static_cast<double>(limit) * (1 - ratio)));
    int64_t log = log10_root(limit);
    int64_t alpha = 3 * log, beta = 6 * log, threshold = log;

    int64_t next = limit;
    if (queue <= threshold) {
        next = limit + beta;
    } else if (queue < alpha) {
        next = limit + log;
    } else if (queue > beta) {
        next = limit - log;
    }
    return clamp_limit(l, next);
}

} // namespace

void adaptive_limit_init(adaptive_limit *l, uint32_t min_limit,
                         uint32_t max_limit)
{
    *l = adaptive_limit{};
    l->min_limit = min_limit;
    l->max_limit = max_limit;
    l->limit = min_limit;
}

void adaptive_limit_set_bounds(adaptive_limit *l, uint32_t min_limit,
                               uint32_t max_limit)
{
    l->min_limit = min_limit;
    l->max_limit = max_limit;
    l->limit = clamp_limit(l, l->limit);
    if (l->probe_restore != 0) {
        l->probe_restore = clamp_limit(l, l->probe_restore);
    }
}

bool adaptive_limit_sample(adaptive_limit *l, uint64_t service_us,
                           uint32_t inflight, uint64_t now_ms)
{
    // while probing, only requests admitted under the lowered limit count
    if (l->probe_restore != 0 && inflight > l->min_limit) {
        return false;
    }
    l->window_sum_us += service_us;
    l->window_count++;
    if (inflight > l->window_max_inflight) {
        l->window_max_inflight = inflight;
    }
    if (l->window_count < adaptive_window_samples) {
        return false;
    }

    uint64_t rtt = l->window_sum_us / l->window_count;
    rtt = rtt == 0 ? 1 : rtt;
    uint32_t max_inflight = l->window_max_inflight;
    l->window_sum_us = 0;
    l->window_count = 0;
    l->window_max_inflight = 0;
    l->sampled_us = rtt;

    uint32_t before = l->limit;
    if (l->probe_restore != 0) {
        l->min_us = rtt;
        l->limit = l->probe_restore;
        l->probe_restore = 0;
        l->next_probe_ms = now_ms + adaptive_probe_ms;
        return l->limit != before;
    }
    if (l->min_us == 0) {
        l->min_us = rtt;
        l->next_probe_ms = now_ms + adaptive_probe_ms;
        return false;
    }
    if (now_ms >= l->next_probe_ms && l->limit > l->min_limit) {
        l->probe_restore = l->limit;
        l->limit = l->min_limit;
        return true;
    }
    if (rtt < l->min_us) {
        l->min_us = rtt;
    }
    if (static_cast<uint64_t>(max_inflight) * 2 < l->limit) {
        return false;
    }
    l->limit = vegas(l, rtt);
    if (l->limit == before) {
        return false;
    }
    l->adjustments++;
    return true;
}

} // namespace async
