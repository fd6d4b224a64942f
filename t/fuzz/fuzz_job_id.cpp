// decode_id accepts exactly the canonical encodings: whatever it accepts
// re-encodes to the same text, and every 16 bytes survive a round trip.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/base64url.hpp"

using namespace async;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string_view s(reinterpret_cast<const char *>(data), size);
    uint8_t id[id_bytes];
    char text[id_chars];

    if (decode_id(s, id)) {
        encode_id(id, text);
        if (size != id_chars || std::memcmp(text, data, id_chars) != 0) {
            std::abort();
        }
    } else {
        for (uint8_t b : id) {
            if (b != 0) {
                std::abort();
            }
        }
    }

    if (size >= id_bytes) {
        uint8_t back[id_bytes];
        encode_id(data, text);
        if (!decode_id({text, id_chars}, back)
            || std::memcmp(back, data, id_bytes) != 0
            || !ct_equal(back, data)) {
            std::abort();
        }
        if (size >= 2 * id_bytes
            && ct_equal(data, data + id_bytes)
                   != (std::memcmp(data, data + id_bytes, id_bytes) == 0)) {
            std::abort();
        }
    }
    return 0;
}
