// Fixed-bucket latency histogram made of plain counters, so that it can
// live in shared memory and be updated by every worker without a lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace async {

constexpr size_t histogram_buckets = 15;

// Inclusive upper bounds in ms; the last bucket (+Inf) has no bound.
constexpr uint64_t histogram_bounds_ms[histogram_buckets - 1] = {
    1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000};

// Per-bucket (not cumulative) counts; all zero is an empty histogram.
struct histogram {
    uint64_t buckets[histogram_buckets];
    uint64_t sum_ms;
};

static_assert(std::is_trivially_copyable_v<histogram>);
static_assert(std::is_standard_layout_v<histogram>);

// Index of the bucket a latency falls into.
size_t histogram_bucket(uint64_t ms) noexcept;

// Counts one observation; relaxed atomic increments, safe to call
// concurrently from several processes on shared memory.
void histogram_record(histogram &h, uint64_t ms) noexcept;

// Number of observations: the sum of the buckets, so it always agrees
// with them.
uint64_t histogram_count(const histogram &h) noexcept;

// Consistent-enough copy read with atomic loads.
histogram histogram_snapshot(const histogram &h) noexcept;

// Prometheus view: le[i] counts observations <= bound i, le[last] (+Inf)
// equals count.
struct histogram_cumulative {
    uint64_t le[histogram_buckets];
    uint64_t count;
    uint64_t sum_ms;
};

histogram_cumulative histogram_cumulate(const histogram &h) noexcept;

// `le` label values for bucket i: in milliseconds ("1", ..., "60000",
// "+Inf") and in seconds ("0.001", ..., "60", "+Inf").
std::string_view histogram_le_ms(size_t i) noexcept;
std::string_view histogram_le_seconds(size_t i) noexcept;

} // namespace async
