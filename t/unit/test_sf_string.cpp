#include "core/sf_string.hpp"

#include "unit.hpp"

using async::parse_sf_string;
using async::sf_string_status;

namespace {

sf_string_status parse(std::string_view v, std::string_view *out = nullptr)
{
    static char buf[async::idempotency_key_max];
    size_t len = 0;
    sf_string_status s = parse_sf_string(v, buf, sizeof(buf), &len);
    if (out != nullptr) {
        *out = std::string_view(buf, len);
    }
    return s;
}

} // namespace

static void test_sf_string_plain_key_is_its_content(void **)
{
    std::string_view key;
    assert_int_equal(parse("\"8e03978e-40d5\"", &key), sf_string_status::ok);
    assert_sv_equal(key, "8e03978e-40d5");
}

static void test_sf_string_escapes_quote_and_backslash(void **)
{
    std::string_view key;
    assert_int_equal(parse("\"a\\\"b\\\\c\"", &key), sf_string_status::ok);
    assert_sv_equal(key, "a\"b\\c");
}

static void test_sf_string_other_escapes_are_invalid(void **)
{
    assert_int_equal(parse("\"a\\nb\""), sf_string_status::not_string);
    assert_int_equal(parse("\"a\\\""), sf_string_status::not_string);
}

static void test_sf_string_unquoted_is_invalid(void **)
{
    assert_int_equal(parse("8e03978e-40d5"), sf_string_status::not_string);
    assert_int_equal(parse("\"abc"), sf_string_status::not_string);
    assert_int_equal(parse("abc\""), sf_string_status::not_string);
    assert_int_equal(parse("\""), sf_string_status::not_string);
    assert_int_equal(parse(""), sf_string_status::not_string);
}

static void test_sf_string_empty_is_refused(void **)
{
    assert_int_equal(parse("\"\""), sf_string_status::empty);
}

static void test_sf_string_surrounding_spaces_are_stripped(void **)
{
    std::string_view key;
    assert_int_equal(parse("  \"k\"  ", &key), sf_string_status::ok);
    assert_sv_equal(key, "k");
}

static void test_sf_string_trailing_parameters_are_refused(void **)
{
    assert_int_equal(parse("\"k\";a=1"), sf_string_status::not_string);
    assert_int_equal(parse("\"k\" x"), sf_string_status::not_string);
    assert_int_equal(parse("\"k\", \"l\""), sf_string_status::not_string);
}

static void test_sf_string_control_and_non_ascii_are_invalid(void **)
{
    assert_int_equal(parse("\"a\tb\""), sf_string_status::not_string);
    assert_int_equal(parse("\"caf\xc3\xa9\""), sf_string_status::not_string);
    assert_int_equal(parse("\"\x7f\""), sf_string_status::not_string);
}

static void test_sf_string_length_limit_is_255_unescaped_bytes(void **)
{
    char v[300];
    v[0] = '"';
    for (size_t i = 1; i <= 255; i++) {
        v[i] = 'k';
    }
    v[256] = '"';
    std::string_view key;
    assert_int_equal(parse(std::string_view(v, 257), &key),
                     sf_string_status::ok);
    assert_int_equal(key.size(), 255);
    v[256] = 'k';
    v[257] = '"';
    assert_int_equal(parse(std::string_view(v, 258)),
                     sf_string_status::too_long);
    // escapes count once: 255 \" pairs are 255 bytes
    char e[600];
    e[0] = '"';
    for (size_t i = 0; i < 255; i++) {
        e[1 + 2 * i] = '\\';
        e[2 + 2 * i] = '"';
    }
    e[511] = '"';
    assert_int_equal(parse(std::string_view(e, 512)), sf_string_status::ok);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sf_string_plain_key_is_its_content),
        cmocka_unit_test(test_sf_string_escapes_quote_and_backslash),
        cmocka_unit_test(test_sf_string_other_escapes_are_invalid),
        cmocka_unit_test(test_sf_string_unquoted_is_invalid),
        cmocka_unit_test(test_sf_string_empty_is_refused),
        cmocka_unit_test(test_sf_string_surrounding_spaces_are_stripped),
        cmocka_unit_test(test_sf_string_trailing_parameters_are_refused),
        cmocka_unit_test(test_sf_string_control_and_non_ascii_are_invalid),
        cmocka_unit_test(test_sf_string_length_limit_is_255_unescaped_bytes),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
