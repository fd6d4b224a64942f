// Directive argument shapes with no nginx dependency. The values themselves
// (times, sizes, numbers) are read by nginx's own parsers in the glue
// (common/ngx_http_async_conf.hpp), so that they mean what they mean
// everywhere else in nginx.
#pragma once

#include <optional>
#include <string_view>

namespace async {

// For directive parameters written "key=value": the value when arg starts
// with exactly key and '=', which may be empty. Keys are case-sensitive.
std::optional<std::string_view> parse_key_value(std::string_view arg,
                                                std::string_view key) noexcept;

} // namespace async
