// Escaping any bytes gives a valid JSON string of the predicted length that
// decodes to the input whenever the input is valid UTF-8.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "core/json_writer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static simdjson::dom::parser parser;
    std::string_view in(reinterpret_cast<const char *>(data), size);

    size_t predicted = async::json_escaped_length(in);
    // exact-size buffer: ASan reports any write past the prediction
    char *out = static_cast<char *>(std::malloc(predicted + 2));
    size_t written = async::json_escape(in, out + 1, predicted);
    if (written != predicted) {
        std::abort();
    }
    out[0] = '"';
    out[predicted + 1] = '"';

    simdjson::padded_string quoted(out, predicted + 2);
    std::string_view decoded;
    if (parser.parse(quoted).get_string().get(decoded) != simdjson::SUCCESS) {
        std::abort();
    }
    if (simdjson::validate_utf8(in.data(), in.size()) && decoded != in) {
        std::abort();
    }

    // too small by one: nothing may be written
    if (predicted > 0) {
        std::memset(out, 0, predicted + 2);
        if (async::json_escape(in, out, predicted - 1) != predicted
            || out[0] != 0) {
            std::abort();
        }
    }
    std::free(out);
    return 0;
}
