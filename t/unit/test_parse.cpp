#include "core/parse.hpp"

#include "unit.hpp"

using async::parse_key_value;

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

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_value_returns_value),
        cmocka_unit_test(test_key_value_allows_empty_value),
        cmocka_unit_test(test_key_value_requires_exact_key),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
