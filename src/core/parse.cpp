#include "core/parse.hpp"

#include <limits>

namespace async {

namespace {

constexpr uint64_t u64_max = std::numeric_limits<uint64_t>::max();

bool is_digit(char c) noexcept
{
    return c >= '0' && c <= '9';
}

// Reads a run of digits at s[pos]; nullopt when there is none or it does
// not fit in 64 bits.
std::optional<uint64_t> read_number(std::string_view s, size_t &pos) noexcept
{
    size_t start = pos;
    uint64_t value = 0;
    while (pos < s.size() && is_digit(s[pos])) {
        uint64_t digit = static_cast<uint64_t>(s[pos] - '0');
        if (value > (u64_max - digit) / 10) {
            return std::nullopt;
        }
        value = value * 10 + digit;
        ++pos;
    }
    if (pos == start) {
        return std::nullopt;
    }
    return value;
}

std::optional<uint64_t> mul(uint64_t a, uint64_t b) noexcept
{
    if (b != 0 && a > u64_max / b) {
        return std::nullopt;
    }
    return a * b;
}

std::optional<uint64_t> add(uint64_t a, uint64_t b) noexcept
{
    if (a > u64_max - b) {
        return std::nullopt;
    }
    return a + b;
}

struct time_unit {
    std::string_view name;
    uint64_t ms;
};

// Longest-first where names share a prefix ("ms" before "m"); the index
// gives the order components must follow.
constexpr time_unit time_units[] = {
    {"y", 365ULL * 24 * 3600 * 1000},
    {"M", 30ULL * 24 * 3600 * 1000},
    {"w", 7ULL * 24 * 3600 * 1000},
    {"d", 24ULL * 3600 * 1000},
    {"h", 3600ULL * 1000},
    {"ms", 1},
    {"m", 60ULL * 1000},
    {"s", 1000},
};

constexpr size_t n_time_units = sizeof(time_units) / sizeof(time_units[0]);
constexpr size_t ms_index = 5;
constexpr size_t sec_order = 7;

constexpr size_t unit_order(size_t index) noexcept
{
    // "ms" is listed before "m" for matching but comes after "s" in order.
    return index == ms_index ? sec_order + 1 : index;
}

} // namespace

std::optional<uint64_t> parse_duration_ms(std::string_view s) noexcept
{
    if (s.empty()) {
        return std::nullopt;
    }
    uint64_t total = 0;
    size_t pos = 0;
    size_t next_order = 0; // smallest unit order still allowed
    while (pos < s.size()) {
        auto value = read_number(s, pos);
        if (!value) {
            return std::nullopt;
        }
        if (pos == s.size()) {
            // bare trailing number: seconds, unless seconds were given
            if (next_order > sec_order) {
                return std::nullopt;
            }
            auto ms = mul(*value, 1000);
            return ms ? add(total, *ms) : std::nullopt;
        }
        size_t found = n_time_units;
        for (size_t i = 0; i < n_time_units; ++i) {
            if (s.substr(pos, time_units[i].name.size())
                == time_units[i].name) {
                found = i;
                break;
            }
        }
        if (found == n_time_units) {
            return std::nullopt;
        }
        size_t order = unit_order(found);
        if (order < next_order) {
            return std::nullopt;
        }
        next_order = order + 1;
        pos += time_units[found].name.size();

        auto ms = mul(*value, time_units[found].ms);
        if (!ms) {
            return std::nullopt;
        }
        auto sum = add(total, *ms);
        if (!sum) {
            return std::nullopt;
        }
        total = *sum;

        while (pos < s.size() && s[pos] == ' ') {
            ++pos;
        }
    }
    return total;
}

std::optional<uint64_t> parse_size(std::string_view s) noexcept
{
    size_t pos = 0;
    auto value = read_number(s, pos);
    if (!value) {
        return std::nullopt;
    }
    if (pos == s.size()) {
        return value;
    }
    if (pos + 1 != s.size()) {
        return std::nullopt;
    }
    uint64_t scale;
    switch (s[pos]) {
        case 'k':
        case 'K':
            scale = 1024;
            break;
        case 'm':
        case 'M':
            scale = 1024 * 1024;
            break;
        case 'g':
        case 'G':
            scale = 1024 * 1024 * 1024;
            break;
        default:
            return std::nullopt;
    }
    return mul(*value, scale);
}

std::optional<uint64_t> parse_count(std::string_view s) noexcept
{
    size_t pos = 0;
    auto value = read_number(s, pos);
    if (!value || pos != s.size()) {
        return std::nullopt;
    }
    return value;
}

std::optional<std::string_view> parse_key_value(std::string_view arg,
                                                std::string_view key) noexcept
{
    if (key.empty() || arg.size() <= key.size()
        || arg.substr(0, key.size()) != key || arg[key.size()] != '=') {
        return std::nullopt;
    }
    return arg.substr(key.size() + 1);
}

std::optional<zone_spec> parse_zone_spec(std::string_view value,
                                         uint64_t max_size) noexcept
{
    size_t colon = value.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        return std::nullopt;
    }
    auto size = parse_size(value.substr(colon + 1));
    if (!size || *size == 0 || *size > max_size) {
        return std::nullopt;
    }
    return zone_spec{value.substr(0, colon), *size};
}

} // namespace async
