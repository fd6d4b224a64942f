// Retry-After for refused requests: how long the current waiters take to
// drain at the recently observed admission rate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace async {

constexpr size_t admission_window_s = 10;
constexpr uint32_t retry_after_min_s = 1;
constexpr uint32_t retry_after_max_s = 60;

// Admissions per second over the last admission_window_s seconds, as a
// ring of per-second counters. All zero is the valid initial state, so it
// can sit in zeroed shared memory; it is not synchronised, callers update
// it under the lock that guards the queue.
struct admission_rate {
    uint64_t start_ms; // time of the first admission ever noted
    uint64_t head_sec; // second counted by the newest slot
    uint32_t started;
    uint32_t slots[admission_window_s]; // slot = second % window
};

static_assert(std::is_trivially_copyable_v<admission_rate>);

// Notes n admissions at now_ms (a monotonic millisecond clock). A clock
// going backwards counts into the newest second.
void admission_rate_note(admission_rate &r, uint64_t now_ms,
                         uint32_t n = 1) noexcept;

// Admissions per 1000 seconds over the window ending at now_ms; the span is
// at least one second and starts no earlier than the first admission.
uint64_t admission_rate_milli(const admission_rate &r,
                              uint64_t now_ms) noexcept;

// ceil(waiting / rate) clamped to retry_after_min_s..retry_after_max_s:
// min when nobody waits, max when waiters exist but nothing was admitted
// within the window.
uint32_t retry_after_seconds(const admission_rate &r, uint64_t waiting,
                             uint64_t now_ms) noexcept;

} // namespace async
