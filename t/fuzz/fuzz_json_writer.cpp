// Drives the writer with a byte-coded sequence of calls into a buffer of a
// fuzzed size: it never writes past capacity, and a complete result is
// valid JSON.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "core/json_writer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static simdjson::dom::parser parser;
    if (size < 1) {
        return 0;
    }
    size_t cap = data[0] * 4u;
    char *buf = static_cast<char *>(std::malloc(cap ? cap : 1));
    async::json_writer w(buf, cap);

    size_t i = 1;
    auto take = [&](size_t n) {
        n = n < size - i ? n : size - i;
        std::string_view s(reinterpret_cast<const char *>(data + i), n);
        i += n;
        return s;
    };
    while (i < size) {
        uint8_t op = data[i++];
        size_t n = op >> 4;
        switch (op & 0x0F) {
            case 0:
                w.begin_object();
                break;
            case 1:
                w.end_object();
                break;
            case 2:
                w.begin_array();
                break;
            case 3:
                w.end_array();
                break;
            case 4:
                w.key(take(n));
                break;
            case 5:
                w.string(take(n));
                break;
            case 6:
                w.number_i64(static_cast<int64_t>(op) * -1234567);
                break;
            case 7:
                w.number_u64(static_cast<uint64_t>(op) << 56);
                break;
            case 8:
                w.number_double(static_cast<double>(op) / 7.0, n);
                break;
            case 9:
                w.boolean(n & 1);
                break;
            case 10:
                w.null();
                break;
            case 11:
                w.raw("{\"r\":[1]}");
                break;
            default:
                break;
        }
        if (w.length() > cap) {
            std::abort();
        }
    }
    if (w.complete()) {
        simdjson::padded_string out(w.data(), w.length());
        if (parser.parse(out).error() != simdjson::SUCCESS) {
            std::abort();
        }
    }
    std::free(buf);
    return 0;
}
