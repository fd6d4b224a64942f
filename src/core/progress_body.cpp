#include "core/progress_body.hpp"

#include <simdjson.h>

#include <cstring>

namespace async {

namespace {

// One parser per process, as in json_body.cpp; workers are single-threaded.
simdjson::dom::parser &progress_parser() noexcept
{
    static simdjson::dom::parser parser;
    return parser;
}

} // namespace

progress_body_status parse_progress_body(const char *data, size_t len,
                                         progress_body *out) noexcept
{
    out->percent = 0;
    out->message_len = 0;
    if (len > progress_body_max) {
        return progress_body_status::too_large;
    }
    if (data == nullptr || len == 0) {
        return progress_body_status::not_json;
    }
    simdjson::dom::element doc;
    if (progress_parser().parse(data, len, true).get(doc)
        != simdjson::SUCCESS) {
        return progress_body_status::not_json;
    }
    simdjson::dom::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) {
        return progress_body_status::not_json;
    }

    simdjson::dom::element percent;
    if (obj["percent"].get(percent) != simdjson::SUCCESS) {
        return progress_body_status::bad_percent;
    }
    int64_t p = -1;
    // 50.0 is a number JSON allows, but not an integer here
    if (!percent.is_int64() || percent.get_int64().get(p) != simdjson::SUCCESS
        || p < 0 || p > progress_percent_max) {
        return progress_body_status::bad_percent;
    }
    out->percent = static_cast<uint8_t>(p);

    simdjson::dom::element message;
    auto err = obj["message"].get(message);
    if (err == simdjson::NO_SUCH_FIELD) {
        return progress_body_status::ok;
    }
    std::string_view text;
    if (err != simdjson::SUCCESS
        || message.get_string().get(text) != simdjson::SUCCESS
        || text.size() > progress_message_max) {
        return progress_body_status::bad_message;
    }
    if (!text.empty()) {
        std::memcpy(out->message, text.data(), text.size());
    }
    out->message_len = text.size();
    return progress_body_status::ok;
}

std::string_view progress_body_error(progress_body_status s) noexcept
{
    switch (s) {
        case progress_body_status::ok:
            return "";
        case progress_body_status::not_json:
            return "the body must be a JSON object";
        case progress_body_status::bad_percent:
            return "percent must be an integer from 0 to 100";
        case progress_body_status::bad_message:
            return "message must be a string of at most 256 bytes";
        case progress_body_status::too_large:
            return "the body is too large";
    }
    return "";
}

} // namespace async
