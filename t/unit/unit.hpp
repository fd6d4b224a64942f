// Shared glue for the cmocka unit tests (not a test program itself).
// Include it after every other header: cmocka defines fail() and skip()
// macros that break C++ and simdjson headers included later.
#pragma once

#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <csetjmp>
#include <cstring>
#include <string_view>

extern "C" {
#include <cmocka.h>
}

// Compares two string views, printing both on mismatch.
#define assert_sv_equal(a, b)                                                  \
    do {                                                                       \
        std::string_view a_ = (a);                                             \
        std::string_view b_ = (b);                                             \
        if (a_ != b_) {                                                        \
            fail_msg("\"%.*s\" != \"%.*s\"", static_cast<int>(a_.size()),      \
                     a_.data(), static_cast<int>(b_.size()), b_.data());       \
        }                                                                      \
    } while (0)

// std::string_view from a byte array literal that may hold NUL bytes.
template <size_t N>
constexpr std::string_view bytes(const char (&s)[N])
{
    return {s, N - 1};
}
