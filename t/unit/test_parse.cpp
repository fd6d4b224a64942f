#include "core/parse.hpp"

#include "unit.hpp"

using async::parse_count;
using async::parse_duration_ms;
using async::parse_key_value;
using async::parse_size;
using async::parse_zone_spec;

static void expect_ms(const char *s, uint64_t ms)
{
    auto v = parse_duration_ms(s);
    if (!v) {
        fail_msg("\"%s\" rejected", s);
    }
    assert_int_equal(*v, ms);
}

static void expect_bad_duration(const char *s)
{
    if (parse_duration_ms(s)) {
        fail_msg("\"%s\" accepted", s);
    }
}

static void test_duration_single_units(void **)
{
    expect_ms("500ms", 500);
    expect_ms("0ms", 0);
    expect_ms("10s", 10000);
    expect_ms("1m", 60000);
    expect_ms("2h", 7200000);
    expect_ms("1d", 86400000);
    expect_ms("1w", 604800000);
    expect_ms("1M", 2592000000ULL);
    expect_ms("1y", 31536000000ULL);
}

static void test_duration_plain_number_is_seconds(void **)
{
    expect_ms("10", 10000);
    expect_ms("0", 0);
    expect_ms("007", 7000);
}

static void test_duration_combinations(void **)
{
    expect_ms("1m30s", 90000);
    expect_ms("1h30m", 5400000);
    expect_ms("1d2h3m4s5ms", 93784005);
    expect_ms("1s500ms", 1500);
    expect_ms("1y1M1w1d1h1m1s1ms", 31536000000ULL + 2592000000ULL + 604800000
                                       + 86400000 + 3600000 + 60000 + 1000 + 1);
}

static void test_duration_trailing_number_is_seconds(void **)
{
    expect_ms("1m30", 90000);
    expect_ms("1h 5", 3605000);
}

static void test_duration_spaces_between_components(void **)
{
    expect_ms("1m 30s", 90000);
    expect_ms("1h  30m", 5400000);
    expect_ms("10s ", 10000);
}

static void test_duration_rejects_empty(void **)
{
    expect_bad_duration("");
    expect_bad_duration(" ");
}

static void test_duration_rejects_garbage(void **)
{
    expect_bad_duration("abc");
    expect_bad_duration("s");
    expect_bad_duration("ms");
    expect_bad_duration("10x");
    expect_bad_duration("10 s");
    expect_bad_duration(" 10s");
    expect_bad_duration("-1s");
    expect_bad_duration("+1s");
    expect_bad_duration("1.5s");
    expect_bad_duration("10S");
    expect_bad_duration("1H");
    expect_bad_duration("1sm");
    expect_bad_duration("1mss");
    expect_bad_duration("1s\n");
    expect_bad_duration("1s\t");
}

static void test_duration_rejects_wrong_order(void **)
{
    expect_bad_duration("30s1m");
    expect_bad_duration("1s1s");
    expect_bad_duration("1m1m");
    expect_bad_duration("500ms1s");
    expect_bad_duration("1ms1ms");
    expect_bad_duration("1d1w");
}

static void test_duration_rejects_number_after_seconds(void **)
{
    expect_bad_duration("1s30");
    expect_bad_duration("500ms30");
}

static void test_duration_rejects_embedded_nul(void **)
{
    assert_false(parse_duration_ms(bytes("1s\0")).has_value());
    assert_false(parse_duration_ms(bytes("1\0s")).has_value());
}

static void test_duration_rejects_overflow(void **)
{
    // 2^64 - 1 ms is the largest representable value
    expect_ms("18446744073709551615ms", UINT64_MAX);
    expect_bad_duration("18446744073709551616ms");
    expect_bad_duration("99999999999999999999999ms");
    // fits as a number, overflows once scaled
    expect_bad_duration("18446744073709552s");
    expect_ms("18446744073709551s", 18446744073709551000ULL);
    expect_ms("18446744073709551", 18446744073709551000ULL);
    expect_bad_duration("18446744073709552"); // plain seconds
    expect_bad_duration("600000000y");
    // each part fits, the sum does not
    expect_ms("584942417y4M", 18446744062512000000ULL + 4 * 2592000000ULL);
    expect_bad_duration("584942417y5M");
    expect_ms("18446744073709551s615ms", UINT64_MAX);
    expect_bad_duration("18446744073709551s616ms");
}

static void expect_size(const char *s, uint64_t n)
{
    auto v = parse_size(s);
    if (!v) {
        fail_msg("\"%s\" rejected", s);
    }
    assert_int_equal(*v, n);
}

static void test_size_plain_bytes(void **)
{
    expect_size("0", 0);
    expect_size("10", 10);
    expect_size("4096", 4096);
}

static void test_size_suffixes_either_case(void **)
{
    expect_size("512k", 512 * 1024);
    expect_size("512K", 512 * 1024);
    expect_size("1m", 1024 * 1024);
    expect_size("1M", 1024 * 1024);
    expect_size("1g", 1024ULL * 1024 * 1024);
    expect_size("3G", 3ULL * 1024 * 1024 * 1024);
}

static void test_size_rejects_garbage(void **)
{
    const char *bad[] = {"",   "k",   "1kb", "1 k", " 1",  "1k ", "-1",
                         "+1", "1.5", "1t",  "1b",  "0x1", "1kk"};
    for (const char *s : bad) {
        if (parse_size(s)) {
            fail_msg("\"%s\" accepted", s);
        }
    }
}

static void test_size_rejects_overflow(void **)
{
    expect_size("18446744073709551615", UINT64_MAX);
    assert_false(parse_size("18446744073709551616").has_value());
    expect_size("17179869183g", 17179869183ULL << 30);
    assert_false(parse_size("17179869184g").has_value());
    assert_false(parse_size("18014398509481984k").has_value());
}

static void test_count_accepts_decimal(void **)
{
    assert_int_equal(*parse_count("0"), 0);
    assert_int_equal(*parse_count("42"), 42);
    assert_int_equal(*parse_count("000123"), 123);
    assert_int_equal(*parse_count("18446744073709551615"), UINT64_MAX);
}

static void test_count_rejects_sign_and_garbage(void **)
{
    const char *bad[] = {"",   "-1",   "+1",  " 1", "1 ",
                         "1k", "0x10", "1e3", "1.0"};
    for (const char *s : bad) {
        if (parse_count(s)) {
            fail_msg("\"%s\" accepted", s);
        }
    }
}

static void test_count_rejects_overflow(void **)
{
    assert_false(parse_count("18446744073709551616").has_value());
    assert_false(parse_count("99999999999999999999").has_value());
}

static void test_key_value_returns_value(void **)
{
    auto v = parse_key_value("max=10", "max");
    assert_true(v.has_value());
    assert_sv_equal(*v, "10");
    v = parse_key_value("timeout=1m=2", "timeout");
    assert_sv_equal(*v, "1m=2");
}

static void test_key_value_allows_empty_value(void **)
{
    auto v = parse_key_value("key=", "key");
    assert_true(v.has_value());
    assert_true(v->empty());
}

static void test_key_value_requires_exact_key(void **)
{
    assert_false(parse_key_value("maxx=1", "max").has_value());
    assert_false(parse_key_value("ma=1", "max").has_value());
    assert_false(parse_key_value("MAX=1", "max").has_value());
    assert_false(parse_key_value("max", "max").has_value());
    assert_false(parse_key_value("max 1", "max").has_value());
    assert_false(parse_key_value("", "max").has_value());
    assert_false(parse_key_value("=1", "").has_value());
}

void test_zone_spec_splits_at_the_last_colon(void **)
{
    auto z = parse_zone_spec("a:b:10m", 1ULL << 40);
    assert_true(z.has_value());
    assert_sv_equal(z->name, "a:b");
    assert_int_equal(z->size, 10ULL << 20);
}

void test_zone_spec_rejects_missing_parts_and_bounds(void **)
{
    assert_false(parse_zone_spec("name", 1000).has_value());
    assert_false(parse_zone_spec(":1m", 1ULL << 40).has_value());
    assert_false(parse_zone_spec("name:", 1000).has_value());
    assert_false(parse_zone_spec("name:0", 1000).has_value());
    assert_false(parse_zone_spec("name:1x", 1000).has_value());
    assert_false(parse_zone_spec("name:2k", 1000).has_value());
    assert_true(parse_zone_spec("name:1000", 1000).has_value());
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_single_units),
        cmocka_unit_test(test_duration_plain_number_is_seconds),
        cmocka_unit_test(test_duration_combinations),
        cmocka_unit_test(test_duration_trailing_number_is_seconds),
        cmocka_unit_test(test_duration_spaces_between_components),
        cmocka_unit_test(test_duration_rejects_empty),
        cmocka_unit_test(test_duration_rejects_garbage),
        cmocka_unit_test(test_duration_rejects_wrong_order),
        cmocka_unit_test(test_duration_rejects_number_after_seconds),
        cmocka_unit_test(test_duration_rejects_embedded_nul),
        cmocka_unit_test(test_duration_rejects_overflow),
        cmocka_unit_test(test_size_plain_bytes),
        cmocka_unit_test(test_size_suffixes_either_case),
        cmocka_unit_test(test_size_rejects_garbage),
        cmocka_unit_test(test_size_rejects_overflow),
        cmocka_unit_test(test_count_accepts_decimal),
        cmocka_unit_test(test_count_rejects_sign_and_garbage),
        cmocka_unit_test(test_count_rejects_overflow),
        cmocka_unit_test(test_key_value_returns_value),
        cmocka_unit_test(test_key_value_allows_empty_value),
        cmocka_unit_test(test_key_value_requires_exact_key),
        cmocka_unit_test(test_zone_spec_splits_at_the_last_colon),
        cmocka_unit_test(test_zone_spec_rejects_missing_parts_and_bounds),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
