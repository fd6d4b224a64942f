// The multipart boundary check against the obvious search: a part's body
// contains its boundary exactly when std::string_view::find finds it, and
// nothing is read outside the body.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "core/multipart.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // layout: one byte n, then a boundary of n % 48 bytes, then the body
    if (size == 0) {
        return 0;
    }
    size_t n = std::min<size_t>(data[0] % 48, size - 1);
    char *boundary = static_cast<char *>(std::malloc(n ? n : 1));
    std::memcpy(boundary, data + 1, n);
    size_t len = size - 1 - n;
    char *body = static_cast<char *>(std::malloc(len ? len : 1));
    std::memcpy(body, data + 1 + n, len);

    std::string_view b(boundary, n), s(body, len);
    bool expected = !b.empty() && s.find(b) != std::string_view::npos;
    if (async::contains_boundary(s, b) != expected) {
        std::abort();
    }

    // a boundary made of these bytes is hex after the prefix
    if (size >= async::boundary_random_bytes) {
        char out[async::boundary_length];
        async::format_boundary(data, out);
        for (size_t i = 6; i < async::boundary_length; i++) {
            if (!((out[i] >= '0' && out[i] <= '9')
                  || (out[i] >= 'a' && out[i] <= 'f'))) {
                std::abort();
            }
        }
    }
    std::free(boundary);
    std::free(body);
    return 0;
}
