// Byte-level helpers shared by the header and argument parsers; ASCII only,
// independent of the C locale.
#pragma once

#include <string_view>

namespace async {

// RFC 9110 tchar: the characters of a token.
bool is_tchar(char c) noexcept;

char ascii_lower(char c) noexcept;

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b) noexcept;

} // namespace async
