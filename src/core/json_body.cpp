#include "core/json_body.hpp"

#include "core/ascii.hpp"

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

namespace async {

static_assert(padding_needed() >= simdjson::SIMDJSON_PADDING,
              "padding_needed() must cover simdjson's padding");

namespace {

bool is_ows(char c) noexcept
{
    return c == ' ' || c == '\t';
}

size_t token_end(std::string_view s, size_t pos) noexcept
{
    while (pos < s.size() && is_tchar(s[pos])) {
        ++pos;
    }
    return pos;
}

// One parser per process: it keeps its buffers between calls, so steady
// state validation does not allocate. nginx workers are single-threaded.
simdjson::dom::parser &json_parser() noexcept
{
    static simdjson::dom::parser parser;
    return parser;
}

// simdjson sizes its buffers (about 12 bytes per input byte: structural
// indexes, tape, string buffer) to the largest document it has parsed and
// never shrinks them; past this capacity they go back to the heap at once.
constexpr size_t json_parser_kept_capacity = 1 << 20;

} // namespace

bool is_json_media_type(std::string_view content_type) noexcept
{
    size_t pos = 0;
    while (pos < content_type.size() && is_ows(content_type[pos])) {
        ++pos;
    }
    size_t type_start = pos;
    pos = token_end(content_type, pos);
    std::string_view type = content_type.substr(type_start, pos - type_start);
    if (type.empty() || pos >= content_type.size()
        || content_type[pos] != '/') {
        return false;
    }
    size_t sub_start = ++pos;
    pos = token_end(content_type, pos);
    std::string_view subtype = content_type.substr(sub_start, pos - sub_start);
    if (subtype.empty()) {
        return false;
    }
    while (pos < content_type.size() && is_ows(content_type[pos])) {
        ++pos;
    }
    // Parameters are not inspected: charset is irrelevant, JSON is UTF-8.
    if (pos < content_type.size() && content_type[pos] != ';') {
        return false;
    }

    if (iequals(type, "application") && iequals(subtype, "json")) {
        return true;
    }
    constexpr std::string_view suffix = "+json";
    return subtype.size() > suffix.size()
           && iequals(subtype.substr(subtype.size() - suffix.size()), suffix);
}

bool is_valid_json(const char *data, size_t len, size_t readable) noexcept
{
    if (data == nullptr || len == 0) {
        return false;
    }
    bool padded = readable >= len && readable - len >= padding_needed();
    simdjson::dom::parser &parser = json_parser();
    bool ok = parser.parse(data, len, !padded).error() == simdjson::SUCCESS;
    if (parser.capacity() > json_parser_kept_capacity) {
        // a fresh parser allocates nothing until its next document
        parser = simdjson::dom::parser{};
    }
    return ok;
}

size_t json_parser_capacity() noexcept
{
    return json_parser().capacity();
}

size_t json_parser_max_kept_capacity() noexcept
{
    return json_parser_kept_capacity;
}

body_kind classify_body(const char *data, size_t len,
                        std::string_view content_type, size_t readable) noexcept
{
    if (len == 0 || !is_json_media_type(content_type)
        || !is_valid_json(data, len, readable)) {
        return body_kind::text;
    }
    return body_kind::json;
}

} // namespace async
