// Directive argument parsing with nginx's syntax and no nginx dependency.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace async {

// nginx time syntax: components in descending order, each unit at most
// once, optional spaces between them: y (365d), M (30d), w, d, h, m, s, ms.
// A bare trailing number counts as seconds ("1m30" == 90 s, "10" == 10 s).
// Returns milliseconds; empty input, unknown units and overflow are rejected.
std::optional<uint64_t> parse_duration_ms(std::string_view s) noexcept;

// Byte size: a decimal number with an optional k/K, m/M or g/G suffix
// (powers of 1024).
std::optional<uint64_t> parse_size(std::string_view s) noexcept;

// Plain decimal number: digits only, no sign, no spaces.
std::optional<uint64_t> parse_count(std::string_view s) noexcept;

// For directive parameters written "key=value": the value when arg starts
// with exactly key and '=', which may be empty. Keys are case-sensitive.
std::optional<std::string_view> parse_key_value(std::string_view arg,
                                                std::string_view key) noexcept;

// The NAME:SIZE of a zone= parameter: a non-empty name, the last ':', and a
// size (parse_size) above zero and at most max_size.
struct zone_spec {
    std::string_view name;
    uint64_t size;
};
std::optional<zone_spec> parse_zone_spec(std::string_view value,
                                         uint64_t max_size) noexcept;

} // namespace async
