// The body of a progress report, PUT <status-prefix>/<id>/progress:
// {"percent":0..100,"message":"..."}.
#pragma once

#include "core/job_extras.hpp"

#include <cstddef>
#include <string_view>

namespace async {

// The largest report body taken; a valid one is far smaller.
constexpr size_t progress_body_max = 4096;

enum class progress_body_status {
    ok,
    not_json,    // not one valid JSON value, or not an object
    bad_percent, // missing, not an integer, or outside 0..100
    bad_message, // not a string, or over progress_message_max bytes
    too_large    // over progress_body_max
};

struct progress_body {
    uint8_t percent;
    size_t message_len;
    char message[progress_message_max];
};

// Validates and reads a report: "percent" is required, "message" optional
// (absent: empty); other members are ignored, so backends may add their
// own. The message is UTF-8 as JSON decoded it, cut at no byte.
progress_body_status parse_progress_body(const char *data, size_t len,
                                         progress_body *out) noexcept;

std::string_view progress_body_error(progress_body_status s) noexcept;

} // namespace async
