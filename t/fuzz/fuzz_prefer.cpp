// Prefer parsing: lines of the input are fed as separate headers; the
// result respects the cap and does not depend on how the first valid wait
// is followed.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/prefer.hpp"

using namespace async;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint32_t cap = data[0];
    std::string_view rest(reinterpret_cast<const char *>(data + 1), size - 1);

    prefer_state acc;
    while (!rest.empty()) {
        size_t nl = rest.find('\n');
        prefer_feed(acc, rest.substr(0, nl), cap);
        rest = nl == std::string_view::npos ? std::string_view{}
                                            : rest.substr(nl + 1);
        if (acc.wait_s > cap || (!acc.has_wait && acc.wait_s != 0)) {
            std::abort();
        }
    }

    // a later header cannot undo what an earlier one set
    prefer_state again = acc;
    prefer_feed(again, "wait=1, respond-async", cap);
    if (!again.respond_async || !again.has_wait
        || (acc.has_wait && again.wait_s != acc.wait_s)) {
        std::abort();
    }
    return 0;
}
