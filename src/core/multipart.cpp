#include "core/multipart.hpp"

#include <cstring>

namespace async {

void format_boundary(const unsigned char *random, char *out) noexcept
{
    static constexpr char hex[] = "0123456789abcdef";
    constexpr std::string_view prefix = "async-";
    static_assert(boundary_length == prefix.size() + 2 * boundary_random_bytes,
                  "boundary_length counts the prefix and two hex digits");
    char *p = out + prefix.copy(out, prefix.size());
    for (size_t i = 0; i < boundary_random_bytes; i++) {
        *p++ = hex[random[i] >> 4];
        *p++ = hex[random[i] & 0x0f];
    }
}

bool contains_boundary(std::string_view body,
                       std::string_view boundary) noexcept
{
    if (boundary.empty() || body.size() < boundary.size()) {
        return false;
    }
    // memchr on the first byte, then compare: bodies are up to
    // async_fetch_max_size, the boundary is short
    const char *p = body.data();
    const char *end = body.data() + body.size() - boundary.size() + 1;
    while (p < end) {
        const void *hit = std::memchr(p, boundary[0], end - p);
        if (hit == nullptr) {
            return false;
        }
        p = static_cast<const char *>(hit);
        if (std::memcmp(p, boundary.data(), boundary.size()) == 0) {
            return true;
        }
        p++;
    }
    return false;
}

} // namespace async
