// The key=value split of directive parameters: the value is exactly what
// follows "key=", and nothing else matches. (Times and sizes are read by
// nginx's own parsers; t/003-grammar.t compares them with nginx's.)
#include <cstdint>
#include <cstdlib>

#include "core/parse.hpp"

using namespace async;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    std::string_view s(reinterpret_cast<const char *>(data), size);

    auto kv = parse_key_value(s, "key");
    bool want = s.size() >= 4 && s.substr(0, 4) == "key=";
    if (kv.has_value() != want || (kv && *kv != s.substr(4))) {
        std::abort();
    }
    return 0;
}
