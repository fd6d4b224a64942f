// Job ids: 16 random bytes carried as 22 base64url characters (RFC 4648
// section 5, no padding).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace async {

constexpr size_t id_bytes = 16;
constexpr size_t id_chars = 22;

// Writes exactly id_chars characters to out (no terminator).
void encode_id(const uint8_t in[id_bytes], char out[id_chars]) noexcept;

// Accepts exactly id_chars characters of the base64url alphabet whose last
// character carries zero trailing bits, so every id has one spelling. The
// time taken depends only on s.size(), not on the content. On failure out
// is zeroed.
bool decode_id(std::string_view s, uint8_t out[id_bytes]) noexcept;

// Constant-time comparison of two ids.
bool ct_equal(const uint8_t a[id_bytes], const uint8_t b[id_bytes]) noexcept;

} // namespace async
