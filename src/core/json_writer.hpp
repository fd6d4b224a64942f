// JSON output into a caller-owned buffer, with string escaping that turns
// any byte sequence into a valid JSON string.
#pragma once

#include "core/bounded_buffer.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace async {

// Exact number of bytes json_escape() produces for s, quotes excluded.
// Invalid UTF-8 is counted as its U+FFFD replacements.
size_t json_escaped_length(std::string_view s) noexcept;

// Writes the escaped form of s (without quotes) to out when it fits in cap
// bytes; writes nothing otherwise. Returns json_escaped_length(s) either way.
//
// '"', '\\' and control characters are escaped (\b \f \n \r \t, else
// \u00xx); valid UTF-8 passes through; each maximal ill-formed subsequence
// (overlong, surrogate, above U+10FFFF, truncated, stray continuation byte)
// becomes one U+FFFD.
size_t json_escape(std::string_view s, char *out, size_t cap) noexcept;

// Streaming writer: inserts commas and colons itself, never writes past
// capacity. After an overflow or a structural misuse (key outside an
// object, unbalanced end, a second top-level value, nesting deeper than
// max_depth) it stops writing and reports the failure.
class json_writer {
  public:
    static constexpr unsigned max_depth = 64;
    static constexpr unsigned max_decimals = 17;

    json_writer(char *buf, size_t capacity) noexcept;

    void begin_object() noexcept;
    void end_object() noexcept;
    void begin_array() noexcept;
    void end_array() noexcept;

    void key(std::string_view name) noexcept;

    void string(std::string_view s) noexcept;
    void number_i64(int64_t v) noexcept;
    void number_u64(uint64_t v) noexcept;
    // Fixed-point with `decimals` digits (capped at max_decimals); NaN and
    // infinities are not JSON and are written as null.
    void number_double(double v, unsigned decimals) noexcept;
    void boolean(bool v) noexcept;
    void null() noexcept;
    // Already valid JSON value, copied verbatim; empty counts as misuse.
    void raw(std::string_view json) noexcept;

    size_t length() const noexcept { return out_.length(); }
    size_t capacity() const noexcept { return out_.capacity(); }
    const char *data() const noexcept { return out_.data(); }
    std::string_view view() const noexcept { return out_.view(); }

    bool overflowed() const noexcept { return out_.overflowed(); }
    bool misused() const noexcept { return misuse_; }
    bool ok() const noexcept { return !out_.overflowed() && !misuse_; }
    // One complete top-level value written without any failure.
    bool complete() const noexcept { return ok() && depth_ == 0 && done_; }

  private:
    bool before_value() noexcept;
    void after_value() noexcept;
    void open(char c, bool object) noexcept;
    void close(char c, bool object) noexcept;
    bool append(std::string_view s) noexcept;
    bool append_quoted(std::string_view s) noexcept;

    bool in_object() const noexcept
    {
        return depth_ > 0 && (object_bits_ >> (depth_ - 1) & 1) != 0;
    }

    bounded_buffer out_;
    uint64_t object_bits_ = 0;   // level i is an object (else an array)
    uint64_t nonempty_bits_ = 0; // level i already holds an element
    unsigned depth_ = 0;
    bool after_key_ = false;
    bool done_ = false;
    bool misuse_ = false;
};

} // namespace async
