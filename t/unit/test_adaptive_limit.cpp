// Rules of the adaptive concurrency limit (src/core/adaptive_limit.hpp).
#include "core/adaptive_limit.hpp"

#include "unit.hpp"

using namespace async;

namespace {

// One window of identical samples at the given concurrency.
bool window(adaptive_limit *l, uint64_t us, uint32_t inflight,
            uint64_t now = 1000)
{
    bool changed = false;
    for (uint32_t i = 0; i < adaptive_window_samples; i++) {
        changed = adaptive_limit_sample(l, us, inflight, now) || changed;
    }
    return changed;
}

void test_starts_at_min(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 3, 50);
    assert_int_equal(l.limit, 3);
    assert_int_equal(l.min_us, 0);
}

void test_first_window_measures_no_load_time(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    assert_false(window(&l, 2000, 1));
    assert_int_equal(l.min_us, 2000);
    assert_int_equal(l.sampled_us, 2000);
    assert_int_equal(l.limit, 1);
}

void test_no_queue_grows_by_beta(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    window(&l, 2000, 1);
    assert_true(window(&l, 2000, 1));
    assert_int_equal(l.limit, 7); // 1 + 6 * max(1, log10(1))
    assert_int_equal(l.adjustments, 1);
}

void test_large_queue_shrinks_by_log(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    l.limit = 40;
    window(&l, 1000, 40);
    // twice the no-load time: queue = 40 * (1 - 1/2) = 20 > beta = 6
    assert_true(window(&l, 2000, 40));
    assert_int_equal(l.limit, 39);
}

void test_moderate_queue_holds(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    l.limit = 20;
    window(&l, 1000, 20);
    // queue = ceil(20 * (1 - 1000/1250)) = 4: between alpha 3 and beta 6
    assert_false(window(&l, 1250, 20));
    assert_int_equal(l.limit, 20);
}

void test_small_queue_grows_by_log(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    l.limit = 20;
    window(&l, 1000, 20);
    // queue = ceil(20 * (1 - 1000/1100)) = 2: below alpha
    assert_true(window(&l, 1100, 20));
    assert_int_equal(l.limit, 21);
}

void test_limit_stays_within_bounds(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 8, 12);
    window(&l, 1000, 8);
    for (int i = 0; i < 10; i++) {
        window(&l, 1000, 12);
    }
    assert_int_equal(l.limit, 12);
    // Vegas alone would settle at 6 (queue = beta)
    for (int i = 0; i < 20; i++) {
        window(&l, 50000, 12);
    }
    assert_int_equal(l.limit, 8);
}

void test_app_limited_window_changes_nothing(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    l.limit = 30;
    window(&l, 1000, 30);
    assert_false(window(&l, 1000, 10)); // 10 * 2 < 30
    assert_int_equal(l.limit, 30);
}

// The limit follows a backend of capacity C: service time base when at most
// C requests run, base * n / C beyond.
void test_converges_between_capacity_and_twice_it(void **)
{
    for (uint32_t capacity : {5u, 20u, 80u}) {
        adaptive_limit l;
        adaptive_limit_init(&l, 1, 1000);
        for (int i = 0; i < 400; i++) {
            uint32_t n = l.limit;
            uint64_t us = n <= capacity ? 10000 : 10000ULL * n / capacity;
            window(&l, us, n);
        }
        assert_in_range(l.limit, capacity, 2 * capacity);
    }
}

void test_reload_bounds_keep_learned_limit_clamped(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 1, 100);
    l.limit = 42;
    adaptive_limit_set_bounds(&l, 1, 200);
    assert_int_equal(l.limit, 42);
    adaptive_limit_set_bounds(&l, 1, 30);
    assert_int_equal(l.limit, 30);
    adaptive_limit_set_bounds(&l, 35, 60);
    assert_int_equal(l.limit, 35);
}

void test_probe_measures_no_load_time_again(void **)
{
    adaptive_limit l;
    adaptive_limit_init(&l, 2, 100);
    l.limit = 30;
    window(&l, 5000, 30, 0); // a too-high first measurement
    assert_int_equal(l.min_us, 5000);
    // probe due: the limit drops to min for one window
    assert_true(window(&l, 5000, 30, adaptive_probe_ms));
    assert_int_equal(l.limit, 2);
    // requests admitted before the probe do not count
    assert_false(window(&l, 9000, 30, adaptive_probe_ms));
    assert_true(window(&l, 1000, 2, adaptive_probe_ms));
    assert_int_equal(l.min_us, 1000);
    assert_int_equal(l.limit, 30);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_at_min),
        cmocka_unit_test(test_first_window_measures_no_load_time),
        cmocka_unit_test(test_no_queue_grows_by_beta),
        cmocka_unit_test(test_large_queue_shrinks_by_log),
        cmocka_unit_test(test_moderate_queue_holds),
        cmocka_unit_test(test_small_queue_grows_by_log),
        cmocka_unit_test(test_limit_stays_within_bounds),
        cmocka_unit_test(test_app_limited_window_changes_nothing),
        cmocka_unit_test(test_converges_between_capacity_and_twice_it),
        cmocka_unit_test(test_reload_bounds_keep_learned_limit_clamped),
        cmocka_unit_test(test_probe_measures_no_load_time_again),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
