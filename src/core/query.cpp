#include "core/query.hpp"

#include "core/ascii.hpp"

namespace async {

std::optional<std::string_view> find_query_arg(std::string_view query,
                                               std::string_view name) noexcept
{
    if (name.empty()) {
        return std::nullopt;
    }
    while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view arg = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{}
                                              : query.substr(amp + 1);
        size_t eq = arg.find('=');
        if (eq != std::string_view::npos && iequals(arg.substr(0, eq), name)) {
            return arg.substr(eq + 1);
        }
    }
    return std::nullopt;
}

wait_arg parse_query_wait(std::string_view query, std::string_view name,
                          uint32_t max_s) noexcept
{
    auto value = find_query_arg(query, name);
    if (!value) {
        return {wait_status::absent, 0};
    }
    if (value->empty()) {
        return {wait_status::invalid, 0};
    }
    uint64_t n = 0;
    for (char c : *value) {
        if (c < '0' || c > '9') {
            return {wait_status::invalid, 0};
        }
        if (n <= max_s) { // stays far below overflow
            n = n * 10 + static_cast<uint64_t>(c - '0');
        }
    }
    if (n > max_s) {
        return {wait_status::too_large, max_s};
    }
    return {wait_status::ok, static_cast<uint32_t>(n)};
}

} // namespace async
