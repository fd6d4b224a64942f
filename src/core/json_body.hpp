// Decides whether a captured response body can be embedded as JSON.
#pragma once

#include <cstddef>
#include <string_view>

namespace async {

enum class body_kind { json, text };

// Bytes that must be readable after a body for in-place validation;
// allocate capture buffers with len + padding_needed() to avoid a copy.
constexpr size_t padding_needed() noexcept
{
    return 64;
}

// application/json or any type/subtype+json, case-insensitive, with
// optional parameters; surrounding whitespace tolerated.
bool is_json_media_type(std::string_view content_type) noexcept;

// Full RFC 8259 validation (strict UTF-8, one value, nothing trailing).
// `readable` is how many bytes from data may be read (>= len); with at least
// len + padding_needed() the body is validated in place, otherwise it is
// copied into a padded buffer first. Empty input is not JSON.
// simdjson works in heap memory of its own (one parser per process, kept
// and reused), the exception to the no-allocation rule of src/core. While
// it validates, it holds about 12 bytes per input byte (the caller bounds
// body sizes); afterwards it keeps at most json_parser_max_kept_capacity()
// bytes of input capacity, and releases everything after a larger body.
bool is_valid_json(const char *data, size_t len, size_t readable) noexcept;

// The input capacity the parser keeps now (0: nothing allocated), and the
// most it keeps between documents.
size_t json_parser_capacity() noexcept;
size_t json_parser_max_kept_capacity() noexcept;

// json only for a JSON media type with a valid, non-empty JSON body.
body_kind classify_body(const char *data, size_t len,
                        std::string_view content_type,
                        size_t readable = 0) noexcept;

} // namespace async
