#include "core/prefer.hpp"

#include "unit.hpp"

using async::prefer_feed;
using async::prefer_state;

namespace {

constexpr uint32_t cap = 3600;

prefer_state parse(std::string_view v, uint32_t max = cap)
{
    prefer_state p;
    prefer_feed(p, v, max);
    return p;
}

void expect_wait(std::string_view v, uint32_t seconds)
{
    prefer_state p = parse(v);
    if (!p.has_wait || p.wait_s != seconds) {
        fail_msg("\"%.*s\": has_wait %d wait %u", static_cast<int>(v.size()),
                 v.data(), p.has_wait, p.wait_s);
    }
}

void expect_no_wait(std::string_view v)
{
    prefer_state p = parse(v);
    if (p.has_wait) {
        fail_msg("\"%.*s\": wait %u", static_cast<int>(v.size()), v.data(),
                 p.wait_s);
    }
}

} // namespace

static void test_prefer_initial_state_is_empty(void **)
{
    prefer_state p;
    assert_false(p.respond_async);
    assert_false(p.has_wait);
    assert_int_equal(p.wait_s, 0);
    prefer_feed(p, "", cap);
    assert_false(p.respond_async);
    assert_false(p.has_wait);
}

static void test_prefer_respond_async(void **)
{
    assert_true(parse("respond-async").respond_async);
    assert_true(parse("Respond-Async").respond_async);
    assert_true(parse("RESPOND-ASYNC").respond_async);
    assert_true(parse("  respond-async  ").respond_async);
    assert_false(parse("respond-async-x").respond_async);
    assert_false(parse("respond").respond_async);
    assert_false(parse("xrespond-async").respond_async);
}

static void test_prefer_wait_token(void **)
{
    expect_wait("wait=10", 10);
    expect_wait("wait=0", 0);
    expect_wait("WAIT=7", 7);
    expect_wait("wait=007", 7);
}

static void test_prefer_wait_and_respond_async_together(void **)
{
    prefer_state p = parse("respond-async, wait=100");
    assert_true(p.respond_async);
    assert_true(p.has_wait);
    assert_int_equal(p.wait_s, 100);

    p = parse("wait=5,respond-async");
    assert_true(p.respond_async);
    assert_int_equal(p.wait_s, 5);
}

static void test_prefer_tolerates_whitespace(void **)
{
    expect_wait("wait = 10", 10);
    expect_wait("\twait\t=\t10\t", 10);
    expect_wait(" , ,wait=3 , ", 3);
    prefer_state p = parse("respond-async\t,\twait=2");
    assert_true(p.respond_async);
    assert_int_equal(p.wait_s, 2);
}

static void test_prefer_wait_quoted(void **)
{
    expect_wait("wait=\"15\"", 15);
    expect_wait("wait=\"1\\5\"", 15); // quoted-pair
    expect_no_wait("wait=\"\"");
    expect_no_wait("wait=\"1 5\"");
    expect_no_wait("wait=\"15");
}

static void test_prefer_ignores_other_preferences(void **)
{
    prefer_state p = parse("return=minimal, handling=lenient, "
                           "foo=\"a,b;wait=9\", respond-async, wait=4");
    assert_true(p.respond_async);
    assert_int_equal(p.wait_s, 4);
    expect_no_wait("return=minimal");
    expect_no_wait("waiting=5");
    expect_no_wait("xwait=5");
}

static void test_prefer_parameters_are_not_preferences(void **)
{
    prefer_state p = parse("respond-async; wait=10");
    assert_true(p.respond_async);
    assert_false(p.has_wait);

    p = parse("return=minimal; foo=\"x,y\"; bar, wait=3; baz=1");
    assert_true(p.has_wait);
    assert_int_equal(p.wait_s, 3);

    p = parse("respond-async;;  ;x=\"\\\"\"");
    assert_true(p.respond_async);
}

static void test_prefer_wait_rejects_non_numeric(void **)
{
    expect_no_wait("wait");
    expect_no_wait("wait=");
    expect_no_wait("wait=-1");
    expect_no_wait("wait=+1");
    expect_no_wait("wait=1.5");
    expect_no_wait("wait=1e3");
    expect_no_wait("wait=abc");
    expect_no_wait("wait=0x10");
}

static void test_prefer_wait_saturates_at_cap(void **)
{
    expect_wait("wait=3600", 3600);
    expect_wait("wait=3601", 3600);
    expect_wait("wait=99999999999999999999999999999", 3600);
    prefer_state p = parse("wait=5", 2);
    assert_int_equal(p.wait_s, 2);
    p = parse("wait=4294967296", UINT32_MAX);
    assert_int_equal(p.wait_s, UINT32_MAX);
    p = parse("wait=4294967294", UINT32_MAX);
    assert_int_equal(p.wait_s, 4294967294u);
}

static void test_prefer_first_wait_wins(void **)
{
    expect_wait("wait=1, wait=2", 1);
    expect_wait("wait=x, wait=2", 2); // an invalid wait does not count
}

static void test_prefer_accumulates_across_headers(void **)
{
    prefer_state p;
    prefer_feed(p, "return=minimal", cap);
    prefer_feed(p, "wait=30", cap);
    prefer_feed(p, "respond-async", cap);
    prefer_feed(p, "wait=40", cap);
    assert_true(p.respond_async);
    assert_true(p.has_wait);
    assert_int_equal(p.wait_s, 30);
}

static void test_prefer_skips_malformed_elements(void **)
{
    prefer_state p = parse("=5, respond-async");
    assert_true(p.respond_async);
    expect_wait("foo bar, wait=6", 6);
    expect_wait("\"quoted\", wait=6", 6);
    expect_wait("a=\"x,y\" junk, wait=6", 6);
    expect_wait("{}, wait=6", 6);
    expect_no_wait("wait=6 7");
    expect_no_wait("wait=\"6\"7");
    expect_no_wait("wait==6");
    expect_no_wait("foo=\"unterminated, wait=6");
    p = parse(bytes("wait=1\0, respond-async"));
    assert_false(p.has_wait);
    assert_true(p.respond_async);
}

static void test_prefer_respond_async_with_value_still_counts(void **)
{
    assert_true(parse("respond-async=1").respond_async);
    assert_true(parse("respond-async=\"\"").respond_async);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefer_initial_state_is_empty),
        cmocka_unit_test(test_prefer_respond_async),
        cmocka_unit_test(test_prefer_wait_token),
        cmocka_unit_test(test_prefer_wait_and_respond_async_together),
        cmocka_unit_test(test_prefer_tolerates_whitespace),
        cmocka_unit_test(test_prefer_wait_quoted),
        cmocka_unit_test(test_prefer_ignores_other_preferences),
        cmocka_unit_test(test_prefer_parameters_are_not_preferences),
        cmocka_unit_test(test_prefer_wait_rejects_non_numeric),
        cmocka_unit_test(test_prefer_wait_saturates_at_cap),
        cmocka_unit_test(test_prefer_first_wait_wins),
        cmocka_unit_test(test_prefer_accumulates_across_headers),
        cmocka_unit_test(test_prefer_skips_malformed_elements),
        cmocka_unit_test(test_prefer_respond_async_with_value_still_counts),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
