// Query-string arguments, such as ?wait=SECONDS on a job poll.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace async {

// Value of the first "name=value" argument in an '&'-separated query
// (without the leading '?'). Names compare case-insensitively, as nginx's
// $arg_name does; the value is returned raw (not percent-decoded) and may
// be empty. An argument without '=' does not match.
std::optional<std::string_view> find_query_arg(std::string_view query,
                                               std::string_view name) noexcept;

enum class wait_status {
    absent,    // no such argument
    ok,        // seconds holds the value
    invalid,   // empty, not a plain decimal (sign, fraction, junk)
    too_large, // above the bound; seconds holds the bound
};

struct wait_arg {
    wait_status status;
    uint32_t seconds;
};

// Parses argument `name` of the query as whole seconds in 0..max_s.
wait_arg parse_query_wait(std::string_view query, std::string_view name,
                          uint32_t max_s) noexcept;

} // namespace async
