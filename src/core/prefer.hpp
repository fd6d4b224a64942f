// RFC 7240 Prefer header: the respond-async and wait preferences.
#pragma once

#include <cstdint>
#include <string_view>

namespace async {

// Accumulates over every Prefer header of a request; zero-initialised
// means "no preference seen".
struct prefer_state {
    bool respond_async = false;
    bool has_wait = false;
    uint32_t wait_s = 0;
};

// Feeds one Prefer field value. Preference names are case-insensitive;
// whitespace, quoted values, parameters after ';' and unknown preferences
// are tolerated, and a malformed element is skipped up to the next comma.
// `wait` takes delta-seconds (token or quoted), saturated at max_wait_s;
// as RFC 7240 asks, only the first valid wait counts, also across headers.
// Parameters (respond-async; wait=1) are not preferences and are ignored.
void prefer_feed(prefer_state &state, std::string_view value,
                 uint32_t max_wait_s) noexcept;

} // namespace async
