// Body classification on arbitrary bytes and content types: padded and
// unpadded inputs must agree and nothing may be read out of bounds.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/json_body.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    // layout: content type, '\n', body (no '\n': the whole input is a body
    // with a JSON content type)
    const char *p = reinterpret_cast<const char *>(data);
    const void *nl = std::memchr(p, '\n', size);
    std::string_view ct = "application/json";
    const char *body = p;
    size_t len = size;
    if (nl != nullptr) {
        size_t ct_len = static_cast<size_t>(static_cast<const char *>(nl) - p);
        ct = std::string_view(p, ct_len);
        body = p + ct_len + 1;
        len = size - ct_len - 1;
    }

    char *exact = static_cast<char *>(std::malloc(len ? len : 1));
    std::memcpy(exact, body, len);
    size_t padded_size = len + async::padding_needed();
    char *padded = static_cast<char *>(std::malloc(padded_size));
    std::memcpy(padded, body, len);
    std::memset(padded + len, '}', async::padding_needed());

    auto a = async::classify_body(exact, len, ct, len);
    auto b = async::classify_body(padded, len, ct, padded_size);
    if (a != b) {
        std::abort();
    }
    if (a == async::body_kind::json
        && (len == 0 || !async::is_json_media_type(ct))) {
        std::abort();
    }
    std::free(exact);
    std::free(padded);
    return 0;
}
