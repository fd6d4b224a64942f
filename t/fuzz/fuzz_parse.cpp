// Directive value parsing against reference arithmetic in 128 bits.
#include <cstdint>
#include <cstdlib>

#include "core/parse.hpp"

using namespace async;

namespace {

// Value of an all-digit string, or -1 when not all digits or above 2^64-1.
__int128 reference_count(std::string_view s)
{
    if (s.empty()) {
        return -1;
    }
    __int128 v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
        if (v > static_cast<__int128>(UINT64_MAX)) {
            return -1;
        }
    }
    return v;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string_view s(reinterpret_cast<const char *>(data), size);

    auto count = parse_count(s);
    __int128 ref = reference_count(s);
    if (count.has_value() != (ref >= 0)
        || (count && static_cast<__int128>(*count) != ref)) {
        std::abort();
    }

    auto size_v = parse_size(s);
    if (!s.empty()) {
        char last = s.back();
        __int128 scale = 0;
        if (last == 'k' || last == 'K')
            scale = 1024;
        if (last == 'm' || last == 'M')
            scale = 1024 * 1024;
        if (last == 'g' || last == 'G')
            scale = 1024 * 1024 * 1024;
        __int128 want = -1;
        if (scale != 0) {
            __int128 n = reference_count(s.substr(0, s.size() - 1));
            if (n >= 0 && n * scale <= static_cast<__int128>(UINT64_MAX)) {
                want = n * scale;
            }
        } else {
            want = ref;
        }
        if (size_v.has_value() != (want >= 0)
            || (size_v && static_cast<__int128>(*size_v) != want)) {
            std::abort();
        }
    }

    auto ms = parse_duration_ms(s);
    if (ms && ref >= 0) {
        // a plain number is seconds
        if (static_cast<__int128>(*ms) != ref * 1000) {
            std::abort();
        }
    }
    if (ms && s.empty()) {
        std::abort();
    }

    auto kv = parse_key_value(s, "key");
    if (kv && (s.substr(0, 4) != "key=" || *kv != s.substr(4))) {
        std::abort();
    }
    return 0;
}
