// The boundary of a multipart/mixed fan-out answer (RFC 2046): random,
// and never contained in a part it frames.
#pragma once

#include <cstddef>
#include <string_view>

namespace async {

// Random bytes behind one boundary: 128 bits, as many as a UUID.
constexpr size_t boundary_random_bytes = 16;

// "async-" and two hex digits per random byte.
constexpr size_t boundary_length = 6 + 2 * boundary_random_bytes;

// Writes the boundary made from `random` (boundary_random_bytes bytes) to
// out (boundary_length bytes, no terminating NUL).
void format_boundary(const unsigned char *random, char *out) noexcept;

// A part may not contain its boundary anywhere: a line "--boundary" in it
// would end the part early for the client. Stricter than RFC 2046 (which
// forbids it only after a line break), and simpler to be sure of.
bool contains_boundary(std::string_view body,
                       std::string_view boundary) noexcept;

} // namespace async
