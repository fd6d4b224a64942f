#include "core/histogram.hpp"

namespace async {

namespace {

constexpr std::string_view le_ms[histogram_buckets] = {
    "1",    "5",    "10",   "25",    "50",    "100",   "250", "500",
    "1000", "2500", "5000", "10000", "30000", "60000", "+Inf"};

constexpr std::string_view le_seconds[histogram_buckets] = {
    "0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
    "1",     "2.5",   "5",    "10",    "30",   "60",  "+Inf"};

} // namespace

size_t histogram_bucket(uint64_t ms) noexcept
{
    size_t i = 0;
    while (i < histogram_buckets - 1 && ms > histogram_bounds_ms[i]) {
        ++i;
    }
    return i;
}

void histogram_record(histogram &h, uint64_t ms) noexcept
{
    __atomic_fetch_add(&h.buckets[histogram_bucket(ms)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h.sum_ms, ms, __ATOMIC_RELAXED);
}

uint64_t histogram_count(const histogram &h) noexcept
{
    uint64_t total = 0;
    for (const uint64_t &bucket : h.buckets) {
        total += __atomic_load_n(&bucket, __ATOMIC_RELAXED);
    }
    return total;
}

histogram histogram_snapshot(const histogram &h) noexcept
{
    histogram copy;
    for (size_t i = 0; i < histogram_buckets; ++i) {
        copy.buckets[i] = __atomic_load_n(&h.buckets[i], __ATOMIC_RELAXED);
    }
    copy.sum_ms = __atomic_load_n(&h.sum_ms, __ATOMIC_RELAXED);
    return copy;
}

histogram_cumulative histogram_cumulate(const histogram &h) noexcept
{
    histogram snap = histogram_snapshot(h);
    histogram_cumulative out;
    uint64_t running = 0;
    for (size_t i = 0; i < histogram_buckets; ++i) {
        running += snap.buckets[i];
        out.le[i] = running;
    }
    out.count = running;
    out.sum_ms = snap.sum_ms;
    return out;
}

std::string_view histogram_le_ms(size_t i) noexcept
{
    return i < histogram_buckets ? le_ms[i] : std::string_view{};
}

std::string_view histogram_le_seconds(size_t i) noexcept
{
    return i < histogram_buckets ? le_seconds[i] : std::string_view{};
}

} // namespace async
