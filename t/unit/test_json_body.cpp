#include "core/json_body.hpp"

#include <cstdlib>

#include "unit.hpp"

using async::body_kind;
using async::classify_body;
using async::is_json_media_type;
using async::is_valid_json;
using async::padding_needed;

namespace {

body_kind classify(std::string_view body, std::string_view ct)
{
    return classify_body(body.data(), body.size(), ct);
}

// Copies s into a heap block of exactly s.size() bytes so ASan-style
// tools (and the test) catch any read past the end.
bool valid_exact(std::string_view s)
{
    char *copy = static_cast<char *>(std::malloc(s.size() ? s.size() : 1));
    std::memcpy(copy, s.data(), s.size());
    bool ok = is_valid_json(copy, s.size(), s.size());
    std::free(copy);
    return ok;
}

} // namespace

static void test_media_type_application_json(void **)
{
    assert_true(is_json_media_type("application/json"));
    assert_true(is_json_media_type("Application/JSON"));
    assert_true(is_json_media_type("APPLICATION/JSON"));
}

static void test_media_type_plus_json_suffix(void **)
{
    assert_true(is_json_media_type("application/problem+json"));
    assert_true(is_json_media_type("application/vnd.api+JSON"));
    assert_true(is_json_media_type("text/x.custom+json"));
}

static void test_media_type_parameters_allowed(void **)
{
    assert_true(is_json_media_type("application/json; charset=utf-8"));
    assert_true(is_json_media_type("application/json;charset=UTF-8"));
    assert_true(is_json_media_type("application/json ; charset=\"utf-8\""));
    assert_true(is_json_media_type("application/ld+json;profile=x"));
    assert_true(is_json_media_type("  application/json  "));
    assert_true(is_json_media_type("application/json\t;q=1"));
}

static void test_media_type_rejects_non_json(void **)
{
    const char *bad[] = {
        "",
        "text/plain",
        "text/html; charset=utf-8",
        "application/jsonp",
        "application/json-seq",
        "application/javascript",
        "application/x-json",
        "json",
        "application/",
        "/json",
        "application/+json",
        "application/json+xml",
        "application/json x",
        "application /json",
        "application/ json",
        "application/json,text/plain",
        "application\\json",
        "*/*",
    };
    for (const char *ct : bad) {
        if (is_json_media_type(ct)) {
            fail_msg("accepted \"%s\"", ct);
        }
    }
    assert_false(is_json_media_type(bytes("application/json\0")));
}

static void test_body_json_when_type_and_syntax_agree(void **)
{
    assert_true(classify("{\"a\":1}", "application/json") == body_kind::json);
    assert_true(classify("[1,2,3]", "application/vnd.x+json")
                == body_kind::json);
    assert_true(classify(" \"str\" \n", "application/json") == body_kind::json);
    assert_true(classify("42", "application/json") == body_kind::json);
    assert_true(classify("null", "application/json") == body_kind::json);
}

static void test_body_text_when_type_is_not_json(void **)
{
    assert_true(classify("{\"a\":1}", "text/plain") == body_kind::text);
    assert_true(classify("{\"a\":1}", "") == body_kind::text);
}

static void test_body_text_when_json_is_invalid(void **)
{
    const char *bad[] = {
        "{",           "{\"a\":1",         "{'a':1}",      "{\"a\":1}}",
        "{\"a\":1} x", "{\"a\":1}{}",      "[1,]",         "NaN",
        "01",          "\"unterminated",   "   ",          "{\"a\":\"\x01\"}",
        "\"\xFF\"",    "\"\xED\xA0\x80\"", "\"\xC0\x80\"",
    };
    for (const char *b : bad) {
        if (classify(b, "application/json") != body_kind::text) {
            fail_msg("accepted \"%s\"", b);
        }
    }
}

static void test_body_empty_is_never_json(void **)
{
    assert_true(classify_body("", 0, "application/json") == body_kind::text);
    assert_true(classify_body(nullptr, 0, "application/json")
                == body_kind::text);
    char padded[128] = {};
    assert_true(classify_body(padded, 0, "application/json", sizeof(padded))
                == body_kind::text);
}

static void test_body_embedded_nul_is_invalid(void **)
{
    auto b = bytes("{\"a\":1}\0");
    assert_true(classify(b, "application/json") == body_kind::text);
}

static void test_body_deep_nesting_is_text(void **)
{
    static char deep[4096];
    for (size_t i = 0; i < 2048; ++i) {
        deep[i] = '[';
        deep[4095 - i] = ']';
    }
    assert_true(classify({deep, sizeof(deep)}, "application/json")
                == body_kind::text);
}

static void test_padded_input_validated_in_place(void **)
{
    const char json[] = "{\"k\":[true,false,null]}";
    size_t len = sizeof(json) - 1;
    char buf[sizeof(json) + 64];
    static_assert(sizeof(buf) - (sizeof(json) - 1) >= padding_needed());
    std::memcpy(buf, json, len);
    std::memset(buf + len, 'x', sizeof(buf) - len); // padding content
    assert_true(classify_body(buf, len, "application/json", sizeof(buf))
                == body_kind::json);
    // garbage in the padding must not matter, a truncated length must
    buf[len] = '}';
    assert_true(classify_body(buf, len - 1, "application/json", sizeof(buf))
                == body_kind::text);
}

static void test_unpadded_input_is_copied(void **)
{
    assert_true(valid_exact("{\"a\":[1,2,{\"b\":\"c\"}]}"));
    assert_true(valid_exact("1"));
    assert_false(valid_exact("{"));
    // readable smaller than needed padding: still correct
    const char json[] = "[1]";
    assert_true(is_valid_json(json, 3, 3 + padding_needed() - 1));
}

static void test_large_body_round_trips(void **)
{
    static char big[1 << 20];
    size_t n = 0;
    big[n++] = '[';
    while (n + 8 < sizeof(big)) {
        std::memcpy(big + n, "123456,", 7);
        n += 7;
    }
    big[n++] = '0';
    big[n++] = ']';
    assert_true(classify({big, n}, "application/json") == body_kind::json);
    big[n - 1] = ',';
    assert_true(classify({big, n}, "application/json") == body_kind::text);
}

// simdjson never shrinks its buffers: a large document would pin about
// 12 times its size for the worker's life.
static void test_parser_releases_capacity_after_large_document(void **)
{
    assert_true(is_valid_json("[1]", 3, 3));
    size_t small = async::json_parser_capacity();
    assert_true(small > 0); // kept for the next small document
    assert_true(small <= async::json_parser_max_kept_capacity());

    size_t n = async::json_parser_max_kept_capacity() * 2 + 1; // [0,0,...0]
    char *big = static_cast<char *>(std::malloc(n + padding_needed()));
    big[0] = '[';
    for (size_t i = 1; i + 1 < n; i += 2) {
        big[i] = '0';
        big[i + 1] = ',';
    }
    big[n - 2] = '0';
    big[n - 1] = ']';
    std::memset(big + n, 0, padding_needed());
    assert_true(is_valid_json(big, n, n + padding_needed()));
    assert_true(async::json_parser_capacity() == 0);
    big[n - 1] = ','; // invalid documents are released as well
    assert_false(is_valid_json(big, n, n + padding_needed()));
    assert_true(async::json_parser_capacity() == 0);
    std::free(big);

    assert_true(is_valid_json("{}", 2, 2));
    assert_true(async::json_parser_capacity() <= small);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_media_type_application_json),
        cmocka_unit_test(test_media_type_plus_json_suffix),
        cmocka_unit_test(test_media_type_parameters_allowed),
        cmocka_unit_test(test_media_type_rejects_non_json),
        cmocka_unit_test(test_body_json_when_type_and_syntax_agree),
        cmocka_unit_test(test_body_text_when_type_is_not_json),
        cmocka_unit_test(test_body_text_when_json_is_invalid),
        cmocka_unit_test(test_body_empty_is_never_json),
        cmocka_unit_test(test_body_embedded_nul_is_invalid),
        cmocka_unit_test(test_body_deep_nesting_is_text),
        cmocka_unit_test(test_padded_input_validated_in_place),
        cmocka_unit_test(test_unpadded_input_is_copied),
        cmocka_unit_test(test_large_body_round_trips),
        cmocka_unit_test(test_parser_releases_capacity_after_large_document),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
