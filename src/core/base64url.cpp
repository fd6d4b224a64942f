#include "core/base64url.hpp"

namespace async {

namespace {

constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// All-ones when lo <= c <= hi, else zero, without branches: c - lo and
// hi - c are both non-negative exactly when c is in range, so their sign
// bits (bit 31 of the wrapped differences) are both clear.
uint32_t range_mask(uint32_t c, uint32_t lo, uint32_t hi) noexcept
{
    uint32_t outside = ((c - lo) | (hi - c)) >> 31;
    return outside - 1;
}

// 6-bit value of c in bits 0..5, or bit 8 set when c is not in the alphabet.
uint32_t sextet(uint8_t byte) noexcept
{
    uint32_t c = byte;
    uint32_t upper = range_mask(c, 'A', 'Z');
    uint32_t lower = range_mask(c, 'a', 'z');
    uint32_t digit = range_mask(c, '0', '9');
    uint32_t dash = range_mask(c, '-', '-');
    uint32_t under = range_mask(c, '_', '_');
    uint32_t value = (upper & (c - 'A')) | (lower & (c - 'a' + 26))
                     | (digit & (c - '0' + 52)) | (dash & 62) | (under & 63);
    uint32_t valid = upper | lower | digit | dash | under;
    return (value & 0x3F) | (~valid & 0x100);
}

} // namespace

void encode_id(const uint8_t in[id_bytes], char out[id_chars]) noexcept
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= id_bytes; i += 3) {
        uint32_t v = uint32_t{in[i]} << 16 | uint32_t{in[i + 1]} << 8
                     | uint32_t{in[i + 2]};
        out[o++] = alphabet[v >> 18 & 0x3F];
        out[o++] = alphabet[v >> 12 & 0x3F];
        out[o++] = alphabet[v >> 6 & 0x3F];
        out[o++] = alphabet[v & 0x3F];
    }
    // 16 = 5 * 3 + 1: one byte left, two characters
    uint32_t v = in[i];
    out[o++] = alphabet[v >> 2];
    out[o] = alphabet[(v & 0x3) << 4];
}

bool decode_id(std::string_view s, uint8_t out[id_bytes]) noexcept
{
    if (s.size() != id_chars) {
        for (size_t i = 0; i < id_bytes; ++i) {
            out[i] = 0;
        }
        return false;
    }
    uint32_t bad = 0;
    size_t o = 0;
    size_t c = 0;
    for (; c + 4 <= 20; c += 4) {
        uint32_t a = sextet(static_cast<uint8_t>(s[c]));
        uint32_t b = sextet(static_cast<uint8_t>(s[c + 1]));
        uint32_t d = sextet(static_cast<uint8_t>(s[c + 2]));
        uint32_t e = sextet(static_cast<uint8_t>(s[c + 3]));
        bad |= a | b | d | e;
        uint32_t v =
            (a & 0x3F) << 18 | (b & 0x3F) << 12 | (d & 0x3F) << 6 | (e & 0x3F);
        out[o++] = static_cast<uint8_t>(v >> 16);
        out[o++] = static_cast<uint8_t>(v >> 8);
        out[o++] = static_cast<uint8_t>(v);
    }
    uint32_t a = sextet(static_cast<uint8_t>(s[20]));
    uint32_t b = sextet(static_cast<uint8_t>(s[21]));
    bad |= a | b;
    bad |= (b & 0x0F) << 8; // trailing bits must be zero
    out[o] = static_cast<uint8_t>((a & 0x3F) << 2 | (b & 0x3F) >> 4);

    // Turn "any bit of bad above the sextet" into an all-ones keep mask.
    uint32_t failed = ((bad >> 8) | (0u - (bad >> 8))) >> 31;
    uint8_t keep = static_cast<uint8_t>(failed - 1);
    for (size_t i = 0; i < id_bytes; ++i) {
        out[i] &= keep;
    }
    return failed == 0;
}

bool ct_equal(const uint8_t a[id_bytes], const uint8_t b[id_bytes]) noexcept
{
    // volatile keeps the compiler from turning the loop into an early exit
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < id_bytes; ++i) {
        diff = static_cast<uint8_t>(diff | (a[i] ^ b[i]));
    }
    return diff == 0;
}

} // namespace async
