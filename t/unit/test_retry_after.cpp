#include "core/retry_after.hpp"

#include <type_traits>

#include "unit.hpp"

using namespace async;

namespace {

// n admissions in each second [from_s, to_s), at the half second.
void steady(admission_rate &r, uint64_t from_s, uint64_t to_s, uint32_t n)
{
    for (uint64_t s = from_s; s < to_s; ++s) {
        admission_rate_note(r, s * 1000 + 500, n);
    }
}

} // namespace

static void test_rate_is_shared_memory_friendly(void **)
{
    static_assert(std::is_trivially_copyable_v<admission_rate>);
    static_assert(std::is_trivially_default_constructible_v<admission_rate>);
    admission_rate r{};
    assert_int_equal(admission_rate_milli(r, 123456), 0);
}

static void test_retry_after_is_min_when_nobody_waits(void **)
{
    admission_rate r{};
    assert_int_equal(retry_after_seconds(r, 0, 0), retry_after_min_s);
    steady(r, 100, 110, 5);
    assert_int_equal(retry_after_seconds(r, 0, 110000), 1);
}

static void test_retry_after_is_max_without_admissions(void **)
{
    admission_rate r{};
    assert_int_equal(retry_after_seconds(r, 1, 5000), retry_after_max_s);
    assert_int_equal(retry_after_seconds(r, 1000, 5000), 60);
}

static void test_retry_after_is_max_when_admissions_are_stale(void **)
{
    admission_rate r{};
    steady(r, 0, 10, 100);
    assert_true(retry_after_seconds(r, 10, 10000) < 60);
    // everything noted is now older than the window
    assert_int_equal(retry_after_seconds(r, 10, 20000), 60);
    assert_int_equal(admission_rate_milli(r, 20000), 0);
}

static void test_retry_after_waiters_over_rate(void **)
{
    admission_rate r{};
    steady(r, 1000, 1010, 10); // 10 per second
    uint64_t now = 1010 * 1000;
    assert_int_equal(admission_rate_milli(r, now), 10000);
    assert_int_equal(retry_after_seconds(r, 50, now), 5);
    assert_int_equal(retry_after_seconds(r, 10, now), 1);
}

static void test_retry_after_rounds_up(void **)
{
    admission_rate r{};
    steady(r, 1000, 1010, 10);
    uint64_t now = 1010 * 1000;
    assert_int_equal(retry_after_seconds(r, 51, now), 6);
    assert_int_equal(retry_after_seconds(r, 1, now), 1);
    assert_int_equal(retry_after_seconds(r, 11, now), 2);
}

static void test_retry_after_clamped_to_max(void **)
{
    admission_rate r{};
    steady(r, 1000, 1010, 1);
    uint64_t now = 1010 * 1000;
    assert_int_equal(retry_after_seconds(r, 30, now), 30);
    assert_int_equal(retry_after_seconds(r, 61, now), 60);
    assert_int_equal(retry_after_seconds(r, 100000, now), 60);
    assert_int_equal(retry_after_seconds(r, UINT64_MAX, now), 60);
}

static void test_retry_after_huge_rate_stays_in_range(void **)
{
    admission_rate r{};
    steady(r, 1000, 1010, UINT32_MAX);
    admission_rate_note(r, 1009 * 1000 + 600, UINT32_MAX); // saturates
    uint64_t now = 1010 * 1000;
    assert_int_equal(retry_after_seconds(r, 1, now), 1);
    assert_int_equal(retry_after_seconds(r, UINT64_MAX, now), 1);
}

static void test_rate_young_history_uses_elapsed_time(void **)
{
    admission_rate r{};
    // 20 admissions over the first two seconds of life: 10/s, not 2/s
    admission_rate_note(r, 50000, 10);
    admission_rate_note(r, 51000, 10);
    assert_int_equal(admission_rate_milli(r, 52000), 10000);
    assert_int_equal(retry_after_seconds(r, 40, 52000), 4);
}

static void test_rate_span_is_at_least_one_second(void **)
{
    admission_rate r{};
    admission_rate_note(r, 50000, 5);
    // 5 admissions in 10 ms count as 5/s, not 500/s
    assert_int_equal(admission_rate_milli(r, 50010), 5000);
    assert_int_equal(retry_after_seconds(r, 10, 50010), 2);
}

static void test_rate_window_slides(void **)
{
    admission_rate r{};
    steady(r, 0, 10, 100);
    steady(r, 10, 20, 1);
    // only the last ten seconds count: 1/s
    assert_int_equal(admission_rate_milli(r, 20000), 1000);
    assert_int_equal(retry_after_seconds(r, 5, 20000), 5);
}

static void test_rate_gap_clears_old_slots(void **)
{
    admission_rate r{};
    steady(r, 0, 10, 100);
    admission_rate_note(r, 25500, 2); // long idle gap, then activity
    // window at 26.0 s: seconds 17..25 in full, nothing of second 26 yet
    assert_int_equal(admission_rate_milli(r, 26000), 2 * 1000 * 1000 / 9000);
    admission_rate_note(r, 27500, 3);
    assert_int_equal(admission_rate_milli(r, 28000), 5 * 1000 * 1000 / 9000);
}

static void test_rate_partial_gap_keeps_recent_slots(void **)
{
    admission_rate r{};
    steady(r, 100, 110, 10);
    admission_rate_note(r, 113500, 10); // seconds 110..112 idle
    // window at 114.0 s covers seconds 105..113: 5*10 + 10 admissions
    assert_int_equal(admission_rate_milli(r, 114000), 60 * 1000 * 1000 / 9000);
}

static void test_rate_clock_going_backwards_counts_in_newest_second(void **)
{
    admission_rate r{};
    admission_rate_note(r, 10500, 1);
    admission_rate_note(r, 9000, 1);
    assert_int_equal(r.slots[10 % admission_window_s], 2);
    assert_int_equal(admission_rate_milli(r, 11500), 2000);
    // asking with an older clock behaves as asking at the newest second
    assert_int_equal(retry_after_seconds(r, 2, 5000), 1);
}

static void test_rate_slot_counts_saturate(void **)
{
    admission_rate r{};
    admission_rate_note(r, 1000, UINT32_MAX);
    admission_rate_note(r, 1100, 5);
    assert_int_equal(r.slots[1], UINT32_MAX);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_is_shared_memory_friendly),
        cmocka_unit_test(test_retry_after_is_min_when_nobody_waits),
        cmocka_unit_test(test_retry_after_is_max_without_admissions),
        cmocka_unit_test(test_retry_after_is_max_when_admissions_are_stale),
        cmocka_unit_test(test_retry_after_waiters_over_rate),
        cmocka_unit_test(test_retry_after_rounds_up),
        cmocka_unit_test(test_retry_after_clamped_to_max),
        cmocka_unit_test(test_retry_after_huge_rate_stays_in_range),
        cmocka_unit_test(test_rate_young_history_uses_elapsed_time),
        cmocka_unit_test(test_rate_span_is_at_least_one_second),
        cmocka_unit_test(test_rate_window_slides),
        cmocka_unit_test(test_rate_gap_clears_old_slots),
        cmocka_unit_test(test_rate_partial_gap_keeps_recent_slots),
        cmocka_unit_test(
            test_rate_clock_going_backwards_counts_in_newest_second),
        cmocka_unit_test(test_rate_slot_counts_saturate),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
