#include "core/histogram.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "unit.hpp"

using namespace async;

static void test_histogram_is_shared_memory_friendly(void **)
{
    static_assert(std::is_trivially_copyable_v<histogram>);
    static_assert(std::is_trivially_copyable_v<histogram_cumulative>);
    static_assert(std::is_trivially_default_constructible_v<histogram>);
    static_assert(sizeof(histogram)
                  == (histogram_buckets + 1) * sizeof(uint64_t));
    histogram h{};
    assert_int_equal(histogram_count(h), 0);
    assert_int_equal(h.sum_ms, 0);
}

static void test_histogram_bounds_are_increasing(void **)
{
    for (size_t i = 1; i < histogram_buckets - 1; ++i) {
        assert_true(histogram_bounds_ms[i] > histogram_bounds_ms[i - 1]);
    }
    assert_int_equal(histogram_bounds_ms[0], 1);
    assert_int_equal(histogram_bounds_ms[histogram_buckets - 2], 60000);
}

static void test_histogram_bound_is_inclusive(void **)
{
    assert_int_equal(histogram_bucket(0), 0);
    assert_int_equal(histogram_bucket(1), 0);
    assert_int_equal(histogram_bucket(2), 1);
    assert_int_equal(histogram_bucket(5), 1);
    assert_int_equal(histogram_bucket(6), 2);
    for (size_t i = 0; i < histogram_buckets - 1; ++i) {
        assert_int_equal(histogram_bucket(histogram_bounds_ms[i]), i);
        assert_int_equal(histogram_bucket(histogram_bounds_ms[i] + 1), i + 1);
    }
}

static void test_histogram_overflow_bucket_is_inf(void **)
{
    assert_int_equal(histogram_bucket(60001), histogram_buckets - 1);
    assert_int_equal(histogram_bucket(UINT64_MAX), histogram_buckets - 1);
}

static void test_histogram_record_counts_and_sums(void **)
{
    histogram h{};
    histogram_record(h, 0);
    histogram_record(h, 3);
    histogram_record(h, 3);
    histogram_record(h, 100);
    histogram_record(h, 70000);
    assert_int_equal(histogram_count(h), 5);
    assert_int_equal(h.sum_ms, 70106);
    assert_int_equal(h.buckets[0], 1);
    assert_int_equal(h.buckets[1], 2);
    assert_int_equal(h.buckets[5], 1);
    assert_int_equal(h.buckets[histogram_buckets - 1], 1);
}

static void test_histogram_cumulative_view(void **)
{
    histogram h{};
    histogram_record(h, 1);    // le 1
    histogram_record(h, 7);    // le 10
    histogram_record(h, 7);    // le 10
    histogram_record(h, 2000); // le 2500
    histogram_record(h, 1000000);
    histogram_cumulative c = histogram_cumulate(h);
    const uint64_t want[histogram_buckets] = {1, 1, 3, 3, 3, 3, 3, 3,
                                              3, 4, 4, 4, 4, 4, 5};
    for (size_t i = 0; i < histogram_buckets; ++i) {
        assert_int_equal(c.le[i], want[i]);
    }
    assert_int_equal(c.count, 5);
    assert_int_equal(c.le[histogram_buckets - 1], c.count);
    assert_int_equal(c.sum_ms, 1 + 7 + 7 + 2000 + 1000000);
}

static void test_histogram_snapshot_is_a_copy(void **)
{
    histogram h{};
    histogram_record(h, 10);
    histogram s = histogram_snapshot(h);
    histogram_record(h, 10);
    assert_int_equal(histogram_count(s), 1);
    assert_int_equal(histogram_count(h), 2);
    assert_int_equal(s.sum_ms, 10);
}

static void test_histogram_le_labels(void **)
{
    assert_sv_equal(histogram_le_ms(0), "1");
    assert_sv_equal(histogram_le_ms(13), "60000");
    assert_sv_equal(histogram_le_ms(14), "+Inf");
    assert_sv_equal(histogram_le_seconds(0), "0.001");
    assert_sv_equal(histogram_le_seconds(9), "2.5");
    assert_sv_equal(histogram_le_seconds(13), "60");
    assert_sv_equal(histogram_le_seconds(14), "+Inf");
    assert_true(histogram_le_ms(15).empty());
    assert_true(histogram_le_seconds(99).empty());
}

static void test_histogram_labels_match_bounds(void **)
{
    for (size_t i = 0; i < histogram_buckets - 1; ++i) {
        char buf[24];
        int n = std::snprintf(
            buf, sizeof(buf), "%llu",
            static_cast<unsigned long long>(histogram_bounds_ms[i]));
        assert_sv_equal(histogram_le_ms(i),
                        std::string_view(buf, static_cast<size_t>(n)));
        double seconds =
            std::strtod(std::string(histogram_le_seconds(i)).c_str(), nullptr);
        assert_true(seconds * 1000 > histogram_bounds_ms[i] - 0.001);
        assert_true(seconds * 1000 < histogram_bounds_ms[i] + 0.001);
    }
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_histogram_is_shared_memory_friendly),
        cmocka_unit_test(test_histogram_bounds_are_increasing),
        cmocka_unit_test(test_histogram_bound_is_inclusive),
        cmocka_unit_test(test_histogram_overflow_bucket_is_inf),
        cmocka_unit_test(test_histogram_record_counts_and_sums),
        cmocka_unit_test(test_histogram_cumulative_view),
        cmocka_unit_test(test_histogram_snapshot_is_a_copy),
        cmocka_unit_test(test_histogram_le_labels),
        cmocka_unit_test(test_histogram_labels_match_bounds),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
