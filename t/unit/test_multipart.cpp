#include "core/multipart.hpp"

#include <string>

#include "unit.hpp"

using async::boundary_length;
using async::contains_boundary;
using async::format_boundary;

static void test_boundary_is_hex_of_all_random_bytes(void **)
{
    unsigned char random[async::boundary_random_bytes];
    for (size_t i = 0; i < sizeof(random); i++) {
        random[i] = static_cast<unsigned char>(i * 17 + 1);
    }
    char out[boundary_length];
    format_boundary(random, out);
    assert_true(std::string_view(out, boundary_length)
                == "async-0112233445566778899aabbccddeef00");
}

static void test_boundaries_differ_in_any_random_bit(void **)
{
    unsigned char a[async::boundary_random_bytes] = {0};
    unsigned char b[async::boundary_random_bytes] = {0};
    b[async::boundary_random_bytes - 1] = 1;
    char x[boundary_length], y[boundary_length];
    format_boundary(a, x);
    format_boundary(b, y);
    assert_false(std::string_view(x, boundary_length)
                 == std::string_view(y, boundary_length));
}

static void test_contains_boundary_anywhere(void **)
{
    std::string_view bd = "async-0123";
    assert_true(contains_boundary("async-0123", bd));
    assert_true(contains_boundary("x\r\n--async-0123--\r\n", bd));
    assert_true(contains_boundary("no line break async-0123 inside", bd));
    assert_true(contains_boundary("aasync-async-0123", bd)); // restart
    assert_false(contains_boundary("async-012", bd));        // a prefix
    assert_false(contains_boundary("async-0124 async-123", bd));
    assert_false(contains_boundary("", bd));
    assert_false(contains_boundary("anything", ""));
}

// A body may hold NUL bytes and the boundary at its very end.
static void test_contains_boundary_binary_and_at_end(void **)
{
    std::string body("\0\0async-01\0", 11);
    body += "async-0123";
    assert_true(contains_boundary(body, "async-0123"));
    body.pop_back();
    assert_false(contains_boundary(body, "async-0123"));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_boundary_is_hex_of_all_random_bytes),
        cmocka_unit_test(test_boundaries_differ_in_any_random_bit),
        cmocka_unit_test(test_contains_boundary_anywhere),
        cmocka_unit_test(test_contains_boundary_binary_and_at_end),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
