#include "core/bounded_buffer.hpp"

// last: cmocka defines fail() and skip() macros that break C++ headers
#include "unit.hpp"

using async::bounded_buffer;

namespace {

// Bytes past the capacity handed to the buffer; none may change.
constexpr size_t guard = 8;

void assert_guard_untouched(const char *buf, size_t cap, size_t size)
{
    for (size_t i = cap; i < size; ++i) {
        if (buf[i] != '#') {
            fail_msg("cap %zu: byte %zu written", cap, i);
        }
    }
}

} // namespace

static void test_appends_are_kept_in_order(void **)
{
    char buf[16];
    bounded_buffer b(buf, sizeof(buf));
    assert_true(b.append("ab"));
    assert_true(b.append('c'));
    assert_true(b.append(""));
    assert_true(b.append("de"));
    assert_sv_equal(b.view(), "abcde");
    assert_int_equal(b.length(), 5);
    assert_int_equal(b.capacity(), sizeof(buf));
    assert_int_equal(b.remaining(), sizeof(buf) - 5);
    assert_ptr_equal(b.data(), buf);
    assert_false(b.overflowed());
}

static void test_fills_exactly_to_capacity(void **)
{
    char buf[4];
    bounded_buffer b(buf, sizeof(buf));
    assert_true(b.append("abc"));
    assert_true(b.append('d'));
    assert_int_equal(b.remaining(), 0);
    assert_false(b.overflowed());
    assert_true(b.append(""));
    assert_sv_equal(b.view(), "abcd");
}

static void test_never_writes_past_capacity(void **)
{
    constexpr std::string_view text = "0123456789abcdef";
    for (size_t cap = 0; cap <= text.size() + 1; ++cap) {
        char buf[text.size() + 1 + guard];
        std::memset(buf, '#', sizeof(buf));
        bounded_buffer b(buf, cap);
        for (size_t i = 0; i < text.size(); i += 3) {
            b.append(text.substr(i, 3));
        }
        assert_true(b.length() <= cap);
        assert_guard_untouched(buf, cap, sizeof(buf));
        // what was written is a prefix of the text
        assert_memory_equal(buf, text.data(), b.length());
        assert_int_equal(b.overflowed(), cap < text.size());
    }
}

static void test_refused_append_writes_nothing_of_it(void **)
{
    char buf[8];
    std::memset(buf, '#', sizeof(buf));
    bounded_buffer b(buf, 6);
    assert_true(b.append("ab"));
    assert_false(b.append("cdefg"));
    assert_true(b.overflowed());
    assert_sv_equal(b.view(), "ab");
    assert_int_equal(buf[2], '#');
}

static void test_stays_overflowed_after_a_refusal(void **)
{
    char buf[8];
    bounded_buffer b(buf, sizeof(buf));
    assert_false(b.append("toolong!!"));
    // even writes that would fit are refused from then on
    assert_false(b.append("a"));
    assert_false(b.append('a'));
    assert_false(b.append(""));
    assert_null(b.claim(1));
    assert_true(b.overflowed());
    assert_int_equal(b.length(), 0);
}

static void test_null_buffer_has_zero_capacity(void **)
{
    bounded_buffer b(nullptr, 100);
    assert_int_equal(b.capacity(), 0);
    assert_int_equal(b.remaining(), 0);
    assert_true(b.append(""));
    assert_false(b.overflowed());
    assert_false(b.append('x'));
    assert_true(b.overflowed());
    assert_int_equal(b.length(), 0);
}

static void test_zero_capacity_refuses_any_byte(void **)
{
    char buf[1] = {'#'};
    bounded_buffer b(buf, 0);
    assert_false(b.append('x'));
    assert_true(b.overflowed());
    assert_int_equal(buf[0], '#');
}

static void test_claim_counts_the_bytes_as_written(void **)
{
    char buf[8];
    bounded_buffer b(buf, sizeof(buf));
    b.append('[');
    char *out = b.claim(3);
    assert_ptr_equal(out, buf + 1);
    std::memcpy(out, "abc", 3);
    b.append(']');
    assert_sv_equal(b.view(), "[abc]");
}

static void test_claim_past_capacity_is_refused_for_good(void **)
{
    char buf[8];
    bounded_buffer b(buf, sizeof(buf));
    b.append("abcde");
    assert_null(b.claim(4));
    assert_true(b.overflowed());
    assert_int_equal(b.length(), 5);
    assert_false(b.append('f'));
}

static void test_huge_lengths_do_not_wrap(void **)
{
    char buf[8];
    bounded_buffer b(buf, sizeof(buf));
    b.append('a');
    assert_null(b.claim(SIZE_MAX));
    assert_true(b.overflowed());
    assert_int_equal(b.length(), 1);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_appends_are_kept_in_order),
        cmocka_unit_test(test_fills_exactly_to_capacity),
        cmocka_unit_test(test_never_writes_past_capacity),
        cmocka_unit_test(test_refused_append_writes_nothing_of_it),
        cmocka_unit_test(test_stays_overflowed_after_a_refusal),
        cmocka_unit_test(test_null_buffer_has_zero_capacity),
        cmocka_unit_test(test_zero_capacity_refuses_any_byte),
        cmocka_unit_test(test_claim_counts_the_bytes_as_written),
        cmocka_unit_test(test_claim_past_capacity_is_refused_for_good),
        cmocka_unit_test(test_huge_lengths_do_not_wrap),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
