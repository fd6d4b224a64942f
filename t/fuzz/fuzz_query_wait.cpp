// Query wait parsing: the status agrees with the raw argument and the
// seconds stay within the bound.
#include <cstdint>
#include <cstdlib>

#include "core/query.hpp"

using namespace async;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint32_t max = data[0] * 1000u;
    std::string_view q(reinterpret_cast<const char *>(data + 1), size - 1);

    wait_arg w = parse_query_wait(q, "wait", max);
    auto raw = find_query_arg(q, "wait");
    if (w.seconds > max || (w.status == wait_status::absent) != !raw) {
        std::abort();
    }
    if (w.status == wait_status::ok || w.status == wait_status::too_large) {
        if (raw->empty()) {
            std::abort();
        }
        uint64_t n = 0;
        for (char c : *raw) {
            if (c < '0' || c > '9') {
                std::abort();
            }
            n = n > max ? n : n * 10 + static_cast<uint64_t>(c - '0');
        }
        if ((w.status == wait_status::ok) != (n <= max)
            || (w.status == wait_status::ok && n != w.seconds)) {
            std::abort();
        }
    }
    return 0;
}
