#include "core/query.hpp"

#include "unit.hpp"

using async::find_query_arg;
using async::parse_query_wait;
using async::wait_arg;
using async::wait_status;

namespace {

constexpr uint32_t max_wait = 300;

wait_arg wait_of(std::string_view query)
{
    return parse_query_wait(query, "wait", max_wait);
}

void expect_status(std::string_view query, wait_status want)
{
    wait_arg w = wait_of(query);
    if (w.status != want) {
        fail_msg("\"%.*s\": status %d, want %d", static_cast<int>(query.size()),
                 query.data(), static_cast<int>(w.status),
                 static_cast<int>(want));
    }
}

} // namespace

static void test_find_arg_in_any_position(void **)
{
    assert_sv_equal(*find_query_arg("wait=5", "wait"), "5");
    assert_sv_equal(*find_query_arg("a=1&wait=5", "wait"), "5");
    assert_sv_equal(*find_query_arg("wait=5&a=1", "wait"), "5");
    assert_sv_equal(*find_query_arg("a=1&wait=5&b=2", "wait"), "5");
}

static void test_find_arg_first_occurrence_wins(void **)
{
    assert_sv_equal(*find_query_arg("wait=1&wait=2", "wait"), "1");
}

static void test_find_arg_name_is_case_insensitive(void **)
{
    assert_sv_equal(*find_query_arg("WAIT=3", "wait"), "3");
    assert_sv_equal(*find_query_arg("Wait=4", "wait"), "4");
}

static void test_find_arg_requires_exact_name_and_equals(void **)
{
    assert_false(find_query_arg("await=5", "wait").has_value());
    assert_false(find_query_arg("waited=5", "wait").has_value());
    assert_false(find_query_arg("wait", "wait").has_value());
    assert_false(find_query_arg("a=wait=5", "wait").has_value());
    assert_false(find_query_arg("", "wait").has_value());
    assert_false(find_query_arg("&&&", "wait").has_value());
    assert_false(find_query_arg("=5", "").has_value());
    assert_sv_equal(*find_query_arg("wait&wait=2", "wait"), "2");
}

static void test_find_arg_value_may_be_empty_or_contain_equals(void **)
{
    auto v = find_query_arg("a=1&wait=&b=2", "wait");
    assert_true(v.has_value());
    assert_true(v->empty());
    assert_sv_equal(*find_query_arg("wait=a=b", "wait"), "a=b");
}

static void test_wait_absent(void **)
{
    wait_arg w = wait_of("a=1&b=2");
    assert_true(w.status == wait_status::absent);
    assert_int_equal(w.seconds, 0);
    expect_status("", wait_status::absent);
    expect_status("wait", wait_status::absent);
}

static void test_wait_valid_seconds(void **)
{
    wait_arg w = wait_of("a=1&wait=5");
    assert_true(w.status == wait_status::ok);
    assert_int_equal(w.seconds, 5);
    w = wait_of("wait=0");
    assert_true(w.status == wait_status::ok);
    assert_int_equal(w.seconds, 0);
    w = wait_of("wait=0300");
    assert_true(w.status == wait_status::ok);
    assert_int_equal(w.seconds, 300);
}

static void test_wait_rejects_non_numeric(void **)
{
    const char *bad[] = {"wait=",    "wait=abc", "wait=5s", "wait=1.5",
                         "wait=+5",  "wait= 5",  "wait=5 ", "wait=0x10",
                         "wait=%35", "wait=1e2", "wait=5;"};
    for (const char *q : bad) {
        expect_status(q, wait_status::invalid);
    }
    expect_status(bytes("wait=5\0"), wait_status::invalid);
}

static void test_wait_rejects_negative(void **)
{
    expect_status("wait=-1", wait_status::invalid);
    expect_status("wait=-0", wait_status::invalid);
}

static void test_wait_too_large_is_distinct_error(void **)
{
    wait_arg w = wait_of("wait=301");
    assert_true(w.status == wait_status::too_large);
    assert_int_equal(w.seconds, max_wait);
    expect_status("wait=99999999999999999999999999", wait_status::too_large);
    expect_status("wait=18446744073709551616", wait_status::too_large);
    // junk after a huge number is still junk
    expect_status("wait=99999999999999999999999x", wait_status::invalid);
}

static void test_wait_bound_extremes(void **)
{
    wait_arg w = parse_query_wait("wait=0", "wait", 0);
    assert_true(w.status == wait_status::ok);
    w = parse_query_wait("wait=1", "wait", 0);
    assert_true(w.status == wait_status::too_large);
    w = parse_query_wait("wait=4294967295", "wait", UINT32_MAX);
    assert_true(w.status == wait_status::ok);
    assert_int_equal(w.seconds, UINT32_MAX);
    w = parse_query_wait("wait=4294967296", "wait", UINT32_MAX);
    assert_true(w.status == wait_status::too_large);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_arg_in_any_position),
        cmocka_unit_test(test_find_arg_first_occurrence_wins),
        cmocka_unit_test(test_find_arg_name_is_case_insensitive),
        cmocka_unit_test(test_find_arg_requires_exact_name_and_equals),
        cmocka_unit_test(test_find_arg_value_may_be_empty_or_contain_equals),
        cmocka_unit_test(test_wait_absent),
        cmocka_unit_test(test_wait_valid_seconds),
        cmocka_unit_test(test_wait_rejects_non_numeric),
        cmocka_unit_test(test_wait_rejects_negative),
        cmocka_unit_test(test_wait_too_large_is_distinct_error),
        cmocka_unit_test(test_wait_bound_extremes),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
