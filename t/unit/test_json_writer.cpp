#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "core/json_writer.hpp"

// last: cmocka defines fail() and skip() macros that break C++ headers
#include "unit.hpp"

using async::json_escape;
using async::json_escaped_length;
using async::json_writer;

namespace {

simdjson::dom::parser &parser()
{
    static simdjson::dom::parser p;
    return p;
}

bool valid_json(std::string_view s)
{
    simdjson::padded_string padded(s);
    return parser().parse(padded).error() == simdjson::SUCCESS;
}

// Escapes s into buf (asserting the predicted length), returns the view.
std::string_view escape(std::string_view s, char *buf, size_t cap)
{
    size_t predicted = json_escaped_length(s);
    assert_true(predicted <= cap);
    size_t n = json_escape(s, buf, cap);
    assert_int_equal(n, predicted);
    return {buf, n};
}

// Escapes s, checks the result is a JSON string that decodes to `decoded`.
void expect_escape(std::string_view s, std::string_view escaped,
                   std::string_view decoded)
{
    char buf[256];
    std::string_view out = escape(s, buf, sizeof(buf));
    assert_sv_equal(out, escaped);

    char quoted[260];
    quoted[0] = '"';
    std::memcpy(quoted + 1, out.data(), out.size());
    quoted[out.size() + 1] = '"';
    simdjson::padded_string padded(quoted, out.size() + 2);
    std::string_view back;
    auto err = parser().parse(padded).get_string().get(back);
    if (err != simdjson::SUCCESS) {
        fail_msg("not a JSON string: %.*s", static_cast<int>(out.size()),
                 out.data());
    }
    assert_sv_equal(back, decoded);
}

constexpr std::string_view fffd = "\xEF\xBF\xBD";

// Expects each input to become `n` replacement characters.
void expect_replaced(std::string_view s, size_t n)
{
    char want[64] = {};
    for (size_t i = 0; i < n; ++i) {
        std::memcpy(want + 3 * i, fffd.data(), 3);
    }
    expect_escape(s, {want, 3 * n}, {want, 3 * n});
}

} // namespace

static void test_escape_passes_plain_ascii(void **)
{
    expect_escape("hello, world/~", "hello, world/~", "hello, world/~");
    expect_escape("", "", "");
}

static void test_escape_quote_and_backslash(void **)
{
    expect_escape("a\"b\\c", "a\\\"b\\\\c", "a\"b\\c");
}

static void test_escape_short_forms(void **)
{
    expect_escape("\b\f\n\r\t", "\\b\\f\\n\\r\\t", "\b\f\n\r\t");
}

static void test_escape_every_control_char(void **)
{
    for (unsigned c = 0; c < 0x20; ++c) {
        char in = static_cast<char>(c);
        char want[8];
        switch (c) {
            case '\b':
                std::strcpy(want, "\\b");
                break;
            case '\f':
                std::strcpy(want, "\\f");
                break;
            case '\n':
                std::strcpy(want, "\\n");
                break;
            case '\r':
                std::strcpy(want, "\\r");
                break;
            case '\t':
                std::strcpy(want, "\\t");
                break;
            default:
                std::snprintf(want, sizeof(want), "\\u%04x", c);
                break;
        }
        expect_escape({&in, 1}, want, {&in, 1});
    }
}

static void test_escape_nul_byte(void **)
{
    expect_escape(bytes("a\0b"), "a\\u0000b", bytes("a\0b"));
}

static void test_escape_del_passes_through(void **)
{
    expect_escape("\x7f", "\x7f", "\x7f");
}

static void test_escape_passes_valid_utf8_boundaries(void **)
{
    const std::string_view valid[] = {
        "\xC2\x80",         // U+0080
        "\xDF\xBF",         // U+07FF
        "\xE0\xA0\x80",     // U+0800
        "\xED\x9F\xBF",     // U+D7FF, last before surrogates
        "\xEE\x80\x80",     // U+E000, first after surrogates
        "\xEF\xBF\xBF",     // U+FFFF
        "\xEF\xBF\xBD",     // U+FFFD itself
        "\xF0\x90\x80\x80", // U+10000
        "\xF3\xBF\xBF\xBF", // U+FFFFF
        "\xF4\x8F\xBF\xBF", // U+10FFFF
        "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80",
    };
    for (auto s : valid) {
        expect_escape(s, s, s);
    }
}

static void test_escape_replaces_overlong_sequences(void **)
{
    expect_replaced("\xC0\x80", 2); // C0 and C1 never start a sequence
    expect_replaced("\xC1\xBF", 2);
    expect_replaced("\xE0\x80\x80", 3);
    expect_replaced("\xE0\x9F\xBF", 3);
    expect_replaced("\xF0\x80\x80\x80", 4);
    expect_replaced("\xF0\x8F\xBF\xBF", 4);
}

static void test_escape_replaces_surrogates(void **)
{
    expect_replaced("\xED\xA0\x80", 3); // U+D800
    expect_replaced("\xED\xAF\xBF", 3); // U+DBFF
    expect_replaced("\xED\xB0\x80", 3); // U+DC00
    expect_replaced("\xED\xBF\xBF", 3); // U+DFFF
    // CESU-8 style pair
    expect_replaced("\xED\xA0\xBD\xED\xB8\x80", 6);
}

static void test_escape_replaces_above_max_code_point(void **)
{
    expect_replaced("\xF4\x90\x80\x80", 4); // U+110000
    expect_replaced("\xF5\x80\x80\x80", 4);
    expect_replaced("\xF7\xBF\xBF\xBF", 4);
    expect_replaced("\xF8\x88\x80\x80\x80", 5);
    expect_replaced("\xFC\x84\x80\x80\x80\x80", 6);
    expect_replaced("\xFE", 1);
    expect_replaced("\xFF", 1);
}

static void test_escape_replaces_truncated_sequences(void **)
{
    // a truncated sequence is one maximal subpart: one replacement
    expect_replaced("\xC3", 1);
    expect_replaced("\xE2\x82", 1);
    expect_replaced("\xE2", 1);
    expect_replaced("\xF0\x9F\x98", 1);
    expect_replaced("\xF0\x9F", 1);
    expect_replaced("\xF0", 1);
    expect_escape("\xE2\x82"
                  "A",
                  "\xEF\xBF\xBD"
                  "A",
                  "\xEF\xBF\xBD"
                  "A");
    expect_escape("\xF0\x9F\x98\"", "\xEF\xBF\xBD\\\"", "\xEF\xBF\xBD\"");
    expect_escape("\xC3\n", "\xEF\xBF\xBD\\n", "\xEF\xBF\xBD\n");
    // a new lead byte ends the truncated sequence before it
    expect_escape("\xE2\xC3\xA9", "\xEF\xBF\xBD\xC3\xA9",
                  "\xEF\xBF\xBD\xC3\xA9");
}

static void test_escape_replaces_stray_continuation_bytes(void **)
{
    expect_replaced("\x80", 1);
    expect_replaced("\xBF", 1);
    expect_replaced("\x80\x80\xBF", 3);
    // one too many continuation bytes after a valid sequence
    expect_escape("\xC3\xA9\xA9", "\xC3\xA9\xEF\xBF\xBD",
                  "\xC3\xA9\xEF\xBF\xBD");
}

static void test_escape_keeps_text_around_replacements(void **)
{
    expect_escape("a\xFF"
                  "b\x80"
                  "c",
                  "a\xEF\xBF\xBD"
                  "b\xEF\xBF\xBD"
                  "c",
                  "a\xEF\xBF\xBD"
                  "b\xEF\xBF\xBD"
                  "c");
}

static void test_escape_writes_nothing_when_short(void **)
{
    char buf[8];
    std::memset(buf, 'X', sizeof(buf));
    assert_int_equal(json_escape("a\nb", buf, 3), 4);
    for (char c : buf) {
        assert_int_equal(c, 'X');
    }
    assert_int_equal(json_escape("abcd", buf, 4), 4);
    assert_memory_equal(buf, "abcd", 4);
    assert_int_equal(buf[4], 'X');
}

static void test_escaped_length_is_exact(void **)
{
    assert_int_equal(json_escaped_length(""), 0);
    assert_int_equal(json_escaped_length("abc"), 3);
    assert_int_equal(json_escaped_length("\""), 2);
    assert_int_equal(json_escaped_length(bytes("\0")), 6);
    assert_int_equal(json_escaped_length("\x1f"), 6);
    assert_int_equal(json_escaped_length("\xFF"), 3);
    assert_int_equal(json_escaped_length("\xF0\x9F\x98\x80"), 4);
    assert_int_equal(json_escaped_length("\xF0\x9F\x98"), 3);
}

// Text is scanned a word at a time: any byte at any offset of a longer
// text is escaped exactly as on its own.
static void test_escape_any_byte_at_any_offset_of_long_text(void **)
{
    constexpr size_t len = 21;
    for (unsigned b = 0; b < 256; ++b) {
        char one = static_cast<char>(b);
        char alone[8];
        size_t alone_len = json_escape({&one, 1}, alone, sizeof(alone));
        for (size_t pos = 0; pos < len; ++pos) {
            char in[len];
            std::memset(in, 'a', len);
            in[pos] = one;
            char want[len + 8];
            std::memset(want, 'a', sizeof(want));
            std::memcpy(want + pos, alone, alone_len);
            size_t want_len = len - 1 + alone_len;

            char out[len + 8];
            size_t n = json_escape({in, len}, out, sizeof(out));
            assert_int_equal(n, json_escaped_length({in, len}));
            if (n != want_len || std::memcmp(out, want, n) != 0) {
                fail_msg("byte %02x at %zu", b, pos);
            }
        }
    }
}

// Every one- and two-byte input: output is valid UTF-8 JSON, and valid
// UTF-8 input without characters to escape comes out unchanged.
static void test_escape_all_two_byte_inputs(void **)
{
    char in[2];
    char out[16];
    for (unsigned a = 0; a < 256; ++a) {
        for (unsigned b = 0; b < 257; ++b) {
            in[0] = static_cast<char>(a);
            in[1] = static_cast<char>(b);
            std::string_view s(in, b == 256 ? 1 : 2);
            size_t n = json_escape(s, out + 1, sizeof(out) - 2);
            assert_int_equal(n, json_escaped_length(s));
            out[0] = '"';
            out[n + 1] = '"';
            if (!valid_json({out, n + 2})) {
                fail_msg("%02x %02x", a, b);
            }
            bool plain = true;
            for (char c : s) {
                auto u = static_cast<unsigned char>(c);
                plain = plain && u >= 0x20 && c != '"' && c != '\\';
            }
            if (plain && simdjson::validate_utf8(s.data(), s.size())) {
                assert_sv_equal(std::string_view(out + 1, n), s);
            }
        }
    }
}

// Every three-byte input with a three-byte lead: valid ones pass through,
// invalid ones are replaced, and the output is always valid UTF-8.
static void test_escape_all_three_byte_sequences(void **)
{
    char in[3];
    char out[16];
    for (unsigned a = 0xE0; a <= 0xEF; ++a) {
        for (unsigned b = 0; b < 256; ++b) {
            for (unsigned c = 0x7F; c < 0xC1; ++c) {
                in[0] = static_cast<char>(a);
                in[1] = static_cast<char>(b);
                in[2] = static_cast<char>(c);
                size_t n = json_escape({in, 3}, out, sizeof(out));
                assert_true(simdjson::validate_utf8(out, n));
                bool valid = simdjson::validate_utf8(in, 3);
                bool same = n == 3 && std::memcmp(in, out, 3) == 0;
                bool ctl = b < 0x20 || b == '"' || b == '\\';
                if (valid != same && !ctl) {
                    fail_msg("%02x %02x %02x", a, b, c);
                }
            }
        }
    }
}

static void test_writer_empty_containers(void **)
{
    char buf[16];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.end_object();
    assert_true(w.complete());
    assert_sv_equal(w.view(), "{}");

    json_writer a(buf, sizeof(buf));
    a.begin_array();
    a.end_array();
    assert_sv_equal(a.view(), "[]");
    assert_true(a.complete());
}

static void test_writer_inserts_commas_and_colons(void **)
{
    char buf[256];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.key("a");
    w.number_i64(1);
    w.key("b");
    w.begin_array();
    w.number_i64(1);
    w.string("x");
    w.begin_object();
    w.end_object();
    w.begin_array();
    w.null();
    w.end_array();
    w.boolean(true);
    w.end_array();
    w.key("c");
    w.begin_object();
    w.key("d");
    w.boolean(false);
    w.end_object();
    w.key("e");
    w.null();
    w.end_object();
    assert_true(w.complete());
    assert_sv_equal(w.view(), "{\"a\":1,\"b\":[1,\"x\",{},[null],true],"
                              "\"c\":{\"d\":false},\"e\":null}");
    assert_true(valid_json(w.view()));
}

static void test_writer_escapes_keys_and_strings(void **)
{
    char buf[128];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.key("k\"\n\xFF");
    w.string(bytes("v\\\0"));
    w.end_object();
    assert_true(w.complete());
    assert_sv_equal(w.view(), "{\"k\\\"\\n\xEF\xBF\xBD\":\"v\\\\\\u0000\"}");
    assert_true(valid_json(w.view()));
}

static void test_writer_integer_extremes(void **)
{
    char buf[128];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.number_i64(0);
    w.number_i64(-1);
    w.number_i64(std::numeric_limits<int64_t>::min());
    w.number_i64(std::numeric_limits<int64_t>::max());
    w.number_u64(0);
    w.number_u64(std::numeric_limits<uint64_t>::max());
    w.end_array();
    assert_sv_equal(w.view(), "[0,-1,-9223372036854775808,"
                              "9223372036854775807,0,"
                              "18446744073709551615]");
    assert_true(valid_json(w.view()));
}

static void test_writer_double_fixed_precision(void **)
{
    char buf[128];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.number_double(3.14159, 2);
    w.number_double(1.5, 3);
    w.number_double(2.7, 0);
    w.number_double(-0.126, 2);
    w.number_double(0.0, 1);
    w.number_double(123456.0, 1);
    w.end_array();
    assert_sv_equal(w.view(), "[3.14,1.500,3,-0.13,0.0,123456.0]");
    assert_true(valid_json(w.view()));
}

static void test_writer_double_non_finite_is_null(void **)
{
    char buf[64];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.number_double(std::numeric_limits<double>::quiet_NaN(), 3);
    w.number_double(std::numeric_limits<double>::infinity(), 3);
    w.number_double(-std::numeric_limits<double>::infinity(), 3);
    w.end_array();
    assert_sv_equal(w.view(), "[null,null,null]");
}

static void test_writer_double_extremes_stay_valid(void **)
{
    char buf[1024];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.number_double(std::numeric_limits<double>::max(), 99);
    w.number_double(-std::numeric_limits<double>::max(), 17);
    w.number_double(std::numeric_limits<double>::denorm_min(), 17);
    w.number_double(-0.0, 2);
    w.end_array();
    assert_true(w.complete());
    assert_true(valid_json(w.view()));
    // decimals are capped at max_decimals
    auto v = w.view();
    size_t dot = v.find('.');
    assert_int_equal(v.find(',') - dot - 1, json_writer::max_decimals);
}

static void test_writer_raw_is_verbatim(void **)
{
    char buf[64];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.key("r");
    w.raw("{\"x\":[1,2]}");
    w.key("s");
    w.raw("7");
    w.end_object();
    assert_sv_equal(w.view(), "{\"r\":{\"x\":[1,2]},\"s\":7}");
    assert_true(valid_json(w.view()));
}

static void test_writer_raw_empty_is_misuse(void **)
{
    char buf[16];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.raw("");
    assert_true(w.misused());
}

static void test_writer_top_level_scalar(void **)
{
    char buf[16];
    json_writer w(buf, sizeof(buf));
    assert_false(w.complete());
    w.string("x");
    assert_true(w.complete());
    assert_sv_equal(w.view(), "\"x\"");
}

static void write_sample(json_writer &w)
{
    w.begin_object();
    w.key("name");
    w.string("caf\xC3\xA9\n");
    w.key("list");
    w.begin_array();
    w.number_u64(12345);
    w.number_i64(-7);
    w.number_double(0.5, 3);
    w.boolean(false);
    w.null();
    w.raw("[1]");
    w.end_array();
    w.end_object();
}

static void test_writer_overflow_never_writes_past_capacity(void **)
{
    char full[256];
    json_writer ref(full, sizeof(full));
    write_sample(ref);
    assert_true(ref.complete());
    size_t need = ref.length();

    for (size_t cap = 0; cap <= need + 2; ++cap) {
        char buf[300];
        std::memset(buf, '#', sizeof(buf));
        json_writer w(buf, cap);
        write_sample(w);
        assert_true(w.length() <= cap);
        for (size_t i = cap; i < sizeof(buf); ++i) {
            if (buf[i] != '#') {
                fail_msg("cap %zu: byte %zu written", cap, i);
            }
        }
        if (cap < need) {
            assert_true(w.overflowed());
            assert_false(w.ok());
            assert_false(w.complete());
            // what was written is a prefix of the full output
            assert_memory_equal(buf, full, w.length());
        } else {
            assert_true(w.complete());
            assert_sv_equal(w.view(), ref.view());
        }
    }
}

static void test_writer_overflow_inside_string_writes_nothing_of_it(void **)
{
    char buf[8];
    std::memset(buf, '#', sizeof(buf));
    json_writer w(buf, 6);
    w.string("abcdefgh");
    assert_true(w.overflowed());
    assert_int_equal(w.length(), 0);
    assert_int_equal(buf[0], '#');
}

static void test_writer_stops_after_overflow(void **)
{
    char buf[4];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.string("toolong");
    assert_true(w.overflowed());
    size_t len = w.length();
    w.number_i64(1);
    w.end_array();
    assert_int_equal(w.length(), len);
}

static void test_writer_null_buffer_overflows(void **)
{
    json_writer w(nullptr, 100);
    assert_int_equal(w.capacity(), 0);
    w.null();
    assert_true(w.overflowed());
    assert_int_equal(w.length(), 0);
}

static void test_writer_key_outside_object_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.key("k");
    assert_true(w.misused());
    assert_false(w.ok());

    json_writer top(buf, sizeof(buf));
    top.key("k");
    assert_true(top.misused());
}

static void test_writer_value_without_key_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.number_i64(1);
    assert_true(w.misused());
}

static void test_writer_two_keys_in_a_row_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.key("a");
    w.key("b");
    assert_true(w.misused());
}

static void test_writer_mismatched_end_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.end_array();
    assert_true(w.misused());

    json_writer a(buf, sizeof(buf));
    a.begin_array();
    a.end_object();
    assert_true(a.misused());

    json_writer b(buf, sizeof(buf));
    b.end_array();
    assert_true(b.misused());
}

static void test_writer_end_after_key_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_object();
    w.key("a");
    w.end_object();
    assert_true(w.misused());
}

static void test_writer_second_top_level_value_is_misuse(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.null();
    w.null();
    assert_true(w.misused());
    assert_sv_equal(w.view(), "null");
}

static void test_writer_unclosed_is_not_complete(void **)
{
    char buf[32];
    json_writer w(buf, sizeof(buf));
    w.begin_array();
    w.begin_object();
    w.end_object();
    assert_true(w.ok());
    assert_false(w.complete());
}

static void test_writer_depth_limit(void **)
{
    char buf[512];
    json_writer w(buf, sizeof(buf));
    for (unsigned i = 0; i < json_writer::max_depth; ++i) {
        w.begin_array();
    }
    assert_true(w.ok());
    w.begin_array();
    assert_true(w.misused());

    json_writer d(buf, sizeof(buf));
    for (unsigned i = 0; i < json_writer::max_depth; ++i) {
        d.begin_object();
        d.key("k");
    }
    d.null();
    for (unsigned i = 0; i < json_writer::max_depth; ++i) {
        d.end_object();
    }
    assert_true(d.complete());
    assert_true(valid_json(d.view()));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_passes_plain_ascii),
        cmocka_unit_test(test_escape_quote_and_backslash),
        cmocka_unit_test(test_escape_short_forms),
        cmocka_unit_test(test_escape_every_control_char),
        cmocka_unit_test(test_escape_nul_byte),
        cmocka_unit_test(test_escape_del_passes_through),
        cmocka_unit_test(test_escape_passes_valid_utf8_boundaries),
        cmocka_unit_test(test_escape_replaces_overlong_sequences),
        cmocka_unit_test(test_escape_replaces_surrogates),
        cmocka_unit_test(test_escape_replaces_above_max_code_point),
        cmocka_unit_test(test_escape_replaces_truncated_sequences),
        cmocka_unit_test(test_escape_replaces_stray_continuation_bytes),
        cmocka_unit_test(test_escape_keeps_text_around_replacements),
        cmocka_unit_test(test_escape_writes_nothing_when_short),
        cmocka_unit_test(test_escaped_length_is_exact),
        cmocka_unit_test(test_escape_any_byte_at_any_offset_of_long_text),
        cmocka_unit_test(test_escape_all_two_byte_inputs),
        cmocka_unit_test(test_escape_all_three_byte_sequences),
        cmocka_unit_test(test_writer_empty_containers),
        cmocka_unit_test(test_writer_inserts_commas_and_colons),
        cmocka_unit_test(test_writer_escapes_keys_and_strings),
        cmocka_unit_test(test_writer_integer_extremes),
        cmocka_unit_test(test_writer_double_fixed_precision),
        cmocka_unit_test(test_writer_double_non_finite_is_null),
        cmocka_unit_test(test_writer_double_extremes_stay_valid),
        cmocka_unit_test(test_writer_raw_is_verbatim),
        cmocka_unit_test(test_writer_raw_empty_is_misuse),
        cmocka_unit_test(test_writer_top_level_scalar),
        cmocka_unit_test(test_writer_overflow_never_writes_past_capacity),
        cmocka_unit_test(
            test_writer_overflow_inside_string_writes_nothing_of_it),
        cmocka_unit_test(test_writer_stops_after_overflow),
        cmocka_unit_test(test_writer_null_buffer_overflows),
        cmocka_unit_test(test_writer_key_outside_object_is_misuse),
        cmocka_unit_test(test_writer_value_without_key_is_misuse),
        cmocka_unit_test(test_writer_two_keys_in_a_row_is_misuse),
        cmocka_unit_test(test_writer_mismatched_end_is_misuse),
        cmocka_unit_test(test_writer_end_after_key_is_misuse),
        cmocka_unit_test(test_writer_second_top_level_value_is_misuse),
        cmocka_unit_test(test_writer_unclosed_is_not_complete),
        cmocka_unit_test(test_writer_depth_limit),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
