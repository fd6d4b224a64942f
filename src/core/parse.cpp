#include "core/parse.hpp"

namespace async {

std::optional<std::string_view> parse_key_value(std::string_view arg,
                                                std::string_view key) noexcept
{
    if (key.empty() || arg.size() <= key.size()
        || arg.substr(0, key.size()) != key || arg[key.size()] != '=') {
        return std::nullopt;
    }
    return arg.substr(key.size() + 1);
}

} // namespace async
