// An adaptive concurrency limit: Netflix concurrency-limits' Vegas limit,
// fed with the service times (admission to slot release) of a queue zone's
// own requests. One trivially copyable block in the zone's shared memory;
// the caller holds the zone's lock.
//
// Samples are averaged over windows of adaptive_window_samples. Per window,
// with L the limit, rtt the window's average and rtt0 the least window
// average seen (the no-load service time):
//
//   queue     = ceil(L * (1 - rtt0 / rtt))   requests queued at the backend
//   log       = max(1, floor(log10(L)))
//   alpha = 3 * log, beta = 6 * log, threshold = log
//   queue <= threshold: L += beta     (no queue: grow fast)
//   queue <  alpha:     L += log
//   queue >  beta:      L -= log
//   otherwise unchanged; then clamped to [min, max].
//
// A window whose largest in-flight count is below L / 2 leaves L alone
// (the load, not the backend, bounds the concurrency). rtt0 is measured
// again every adaptive_probe_ms: the limit drops to min for one window of
// requests admitted under it (as Envoy's gradient controller does), then
// the previous limit comes back.
#pragma once

#include <cstdint>
#include <type_traits>

namespace async {

constexpr uint32_t adaptive_window_samples = 8;
constexpr uint64_t adaptive_probe_ms = 60000;

struct adaptive_limit {
    uint32_t limit;
    uint32_t min_limit;
    uint32_t max_limit;
    uint32_t probe_restore; // limit to restore after a probe; 0: no probe
    uint32_t window_count;
    uint32_t window_max_inflight;
    uint64_t window_sum_us;
    uint64_t sampled_us; // average service time of the last window
    uint64_t min_us;     // rtt0; 0 until the first window
    uint64_t adjustments;
    uint64_t next_probe_ms;
};

static_assert(std::is_trivially_copyable_v<adaptive_limit>);

// Starts at min: like a TCP slow start, the limit grows while there is no
// queue at the backend.
void adaptive_limit_init(adaptive_limit *l, uint32_t min_limit,
                         uint32_t max_limit);

// New bounds (reload): the learned limit is kept, clamped into them.
void adaptive_limit_set_bounds(adaptive_limit *l, uint32_t min_limit,
                               uint32_t max_limit);

// One request's service time; inflight counts the requests in service when
// it ended, itself included. Returns true when the limit changed.
bool adaptive_limit_sample(adaptive_limit *l, uint64_t service_us,
                           uint32_t inflight, uint64_t now_ms);

} // namespace async
