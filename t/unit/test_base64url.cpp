#include "core/base64url.hpp"

#include "unit.hpp"

using async::ct_equal;
using async::decode_id;
using async::encode_id;
using async::id_bytes;
using async::id_chars;

namespace {

constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string_view encode(const uint8_t *in, char *out)
{
    encode_id(in, out);
    return {out, id_chars};
}

bool all_zero(const uint8_t *b)
{
    for (size_t i = 0; i < id_bytes; ++i) {
        if (b[i] != 0) {
            return false;
        }
    }
    return true;
}

} // namespace

static void test_encode_known_vectors(void **)
{
    uint8_t zero[id_bytes] = {};
    char out[id_chars];
    assert_sv_equal(encode(zero, out), "AAAAAAAAAAAAAAAAAAAAAA");

    uint8_t ones[id_bytes];
    std::memset(ones, 0xFF, sizeof(ones));
    assert_sv_equal(encode(ones, out), "_____________________w");

    uint8_t seq[id_bytes];
    for (size_t i = 0; i < id_bytes; ++i) {
        seq[i] = static_cast<uint8_t>(i);
    }
    assert_sv_equal(encode(seq, out), "AAECAwQFBgcICQoLDA0ODw");

    // 0xFB 0xFF produce '-' and '_' where standard base64 has '+' and '/'
    uint8_t url[id_bytes] = {0xFB, 0xFF, 0xBF};
    assert_sv_equal(encode(url, out), "-_-_AAAAAAAAAAAAAAAAAA");
}

static void test_encode_writes_exactly_22_chars(void **)
{
    uint8_t id[id_bytes] = {1, 2, 3};
    char out[id_chars + 4];
    std::memset(out, '#', sizeof(out));
    encode_id(id, out);
    for (size_t i = id_chars; i < sizeof(out); ++i) {
        assert_int_equal(out[i], '#');
    }
}

static void test_decode_round_trips(void **)
{
    uint8_t id[id_bytes];
    uint8_t back[id_bytes];
    char text[id_chars];
    uint32_t x = 0x12345678;
    for (int round = 0; round < 1000; ++round) {
        for (auto &b : id) {
            x = x * 1103515245 + 12345;
            b = static_cast<uint8_t>(x >> 24);
        }
        encode_id(id, text);
        assert_true(decode_id({text, id_chars}, back));
        assert_memory_equal(id, back, id_bytes);
    }
}

static void test_decode_every_alphabet_char_in_every_position(void **)
{
    uint8_t out[id_bytes];
    uint8_t again[id_bytes];
    char text[id_chars + 1] = "AAAAAAAAAAAAAAAAAAAAAA";
    char re[id_chars];
    for (size_t pos = 0; pos < id_chars - 1; ++pos) {
        for (size_t v = 0; v < 64; ++v) {
            text[pos] = alphabet[v];
            assert_true(decode_id({text, id_chars}, out));
            encode_id(out, re);
            assert_memory_equal(re, text, id_chars);
            assert_true(decode_id({re, id_chars}, again));
            assert_memory_equal(out, again, id_bytes);
        }
        text[pos] = 'A';
    }
}

static void test_decode_alphabet_values(void **)
{
    // char k at position 0 sets the top six bits of byte 0 to k
    uint8_t out[id_bytes];
    char text[id_chars + 1] = "AAAAAAAAAAAAAAAAAAAAAA";
    for (unsigned v = 0; v < 64; ++v) {
        text[0] = alphabet[v];
        assert_true(decode_id({text, id_chars}, out));
        assert_int_equal(out[0], v << 2);
    }
}

static void test_decode_rejects_every_byte_outside_alphabet(void **)
{
    uint8_t out[id_bytes];
    for (unsigned c = 0; c < 256; ++c) {
        bool in_alphabet = c != 0 && std::strchr(alphabet, static_cast<int>(c));
        for (size_t pos : {size_t{0}, size_t{7}, size_t{20}, size_t{21}}) {
            char text[id_chars + 1] = "AAAAAAAAAAAAAAAAAAAAAA";
            text[pos] = static_cast<char>(c);
            bool ok = decode_id({text, id_chars}, out);
            if (!in_alphabet && ok) {
                fail_msg("accepted byte %02x at %zu", c, pos);
            }
            if (!ok) {
                assert_true(all_zero(out));
            }
        }
    }
}

static void test_decode_rejects_standard_base64_chars(void **)
{
    uint8_t out[id_bytes];
    assert_false(decode_id("+AAAAAAAAAAAAAAAAAAAAA", out));
    assert_false(decode_id("/AAAAAAAAAAAAAAAAAAAAA", out));
    assert_false(decode_id("AAAAAAAAAAAAAAAAAAAA==", out));
    assert_false(decode_id("AAAAAAAAAAAAAAAAAAAAA=", out));
}

static void test_decode_rejects_nonzero_trailing_bits(void **)
{
    uint8_t out[id_bytes];
    char text[id_chars + 1] = "AAAAAAAAAAAAAAAAAAAAAA";
    for (unsigned v = 0; v < 64; ++v) {
        text[21] = alphabet[v];
        bool ok = decode_id({text, id_chars}, out);
        assert_int_equal(ok, (v & 0x0F) == 0);
        if (ok) {
            assert_int_equal(out[15], v >> 4);
        }
    }
}

static void test_decode_rejects_wrong_length(void **)
{
    uint8_t out[id_bytes];
    std::memset(out, 0xAA, sizeof(out));
    assert_false(decode_id("", out));
    assert_true(all_zero(out));
    assert_false(decode_id("AAAAAAAAAAAAAAAAAAAAA", out));
    assert_false(decode_id("AAAAAAAAAAAAAAAAAAAAAAA", out));
    assert_false(decode_id("AAAAAAAAAAAAAAAAAAAAAAAA", out));
    assert_false(decode_id(bytes("AAAAAAAAAAAAAAAAAAAAAA\0"), out));
}

// The length alone decides: a short id is refused even when the bytes after
// it in memory would complete a valid one (the decoder must not read them).
static void test_decode_rejects_short_prefix_of_valid_id(void **)
{
    const char text[] = "AAECAwQFBgcICQoLDA0ODwAA"; // a valid id, then more
    uint8_t out[id_bytes];
    for (size_t len = 0; len < id_chars; ++len) {
        std::memset(out, 0xAA, sizeof(out));
        assert_false(decode_id(std::string_view(text, len), out));
        assert_true(all_zero(out));
    }
    assert_true(decode_id(std::string_view(text, id_chars), out));
    assert_false(decode_id(std::string_view(text, id_chars + 1), out));
}

static void test_decode_failure_zeroes_output(void **)
{
    uint8_t out[id_bytes];
    assert_false(decode_id("_____________________x", out));
    assert_true(all_zero(out));
    assert_false(decode_id("____________ _________w", out));
    assert_true(all_zero(out));
}

static void test_ct_equal_compares_all_bytes(void **)
{
    uint8_t a[id_bytes];
    uint8_t b[id_bytes];
    for (size_t i = 0; i < id_bytes; ++i) {
        a[i] = static_cast<uint8_t>(i * 17);
    }
    std::memcpy(b, a, sizeof(a));
    assert_true(ct_equal(a, b));
    for (size_t i = 0; i < id_bytes; ++i) {
        for (unsigned bit = 0; bit < 8; ++bit) {
            b[i] = static_cast<uint8_t>(b[i] ^ (1u << bit));
            assert_false(ct_equal(a, b));
            b[i] = a[i];
        }
    }
    assert_true(ct_equal(a, b));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_known_vectors),
        cmocka_unit_test(test_encode_writes_exactly_22_chars),
        cmocka_unit_test(test_decode_round_trips),
        cmocka_unit_test(test_decode_every_alphabet_char_in_every_position),
        cmocka_unit_test(test_decode_alphabet_values),
        cmocka_unit_test(test_decode_rejects_every_byte_outside_alphabet),
        cmocka_unit_test(test_decode_rejects_standard_base64_chars),
        cmocka_unit_test(test_decode_rejects_nonzero_trailing_bits),
        cmocka_unit_test(test_decode_rejects_wrong_length),
        cmocka_unit_test(test_decode_rejects_short_prefix_of_valid_id),
        cmocka_unit_test(test_decode_failure_zeroes_output),
        cmocka_unit_test(test_ct_equal_compares_all_bytes),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
