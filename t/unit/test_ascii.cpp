#include "core/ascii.hpp"

#include "unit.hpp"

using async::ascii_lower;
using async::iequals;
using async::is_tchar;

static void test_tchar_accepts_exactly_the_token_set(void **)
{
    constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
    for (unsigned c = 0; c < 256; ++c) {
        char ch = static_cast<char>(c);
        bool want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                    || (c >= '0' && c <= '9')
                    || (c != 0 && extra.find(ch) != std::string_view::npos);
        if (is_tchar(ch) != want) {
            fail_msg("byte %02x", c);
        }
    }
}

static void test_lower_changes_only_ascii_uppercase(void **)
{
    for (unsigned c = 0; c < 256; ++c) {
        char ch = static_cast<char>(c);
        char want = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : ch;
        assert_int_equal(ascii_lower(ch), want);
    }
}

static void test_iequals_ignores_ascii_case_only(void **)
{
    assert_true(iequals("", ""));
    assert_true(iequals("Respond-Async", "respond-ASYNC"));
    assert_false(iequals("wait", "wai"));
    assert_false(iequals("wait", "waiT "));
    assert_false(iequals("\xC3\xA9", "\xC3\x89")); // no Unicode folding
    assert_false(iequals("[", "{")); // 0x5B vs 0x7B differ by 0x20 too
    assert_false(iequals("@", "`"));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tchar_accepts_exactly_the_token_set),
        cmocka_unit_test(test_lower_changes_only_ascii_uppercase),
        cmocka_unit_test(test_iequals_ignores_ascii_case_only),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
