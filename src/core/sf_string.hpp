// RFC 8941 sf-string, the form of an Idempotency-Key
// (draft-ietf-httpapi-idempotency-key-header): a quoted string of printable
// ASCII where only \" and \\ are escapes.
#pragma once

#include <cstddef>
#include <string_view>

namespace async {

// The draft's limit on a key, in bytes of the unescaped value.
constexpr size_t idempotency_key_max = 255;

enum class sf_string_status {
    ok,
    not_string, // unquoted, unterminated, a bad escape or byte, or trailing
    empty,      // ""
    too_long    // over cap bytes
};

// Parses a whole field value (surrounding spaces allowed, as RFC 8941's
// parser strips them) into out[0..cap); *len gets the unescaped length.
// Parameters after the string (;a=1) are refused as not_string: the draft
// defines none.
sf_string_status parse_sf_string(std::string_view value, char *out, size_t cap,
                                 size_t *len) noexcept;

} // namespace async
