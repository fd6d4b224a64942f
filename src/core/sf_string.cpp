#include "core/sf_string.hpp"

namespace async {

sf_string_status parse_sf_string(std::string_view value, char *out, size_t cap,
                                 size_t *len) noexcept
{
    *len = 0;
    while (!value.empty() && value.front() == ' ') {
        value.remove_prefix(1);
    }
    while (!value.empty() && value.back() == ' ') {
        value.remove_suffix(1);
    }
    if (value.size() < 2 || value.front() != '"') {
        return sf_string_status::not_string;
    }
    size_t n = 0;
    bool too_long = false;
    size_t i = 1;
    for (;; i++) {
        if (i >= value.size()) {
            return sf_string_status::not_string; // unterminated
        }
        auto c = static_cast<unsigned char>(value[i]);
        if (c == '"') {
            break;
        }
        if (c == '\\') {
            if (++i >= value.size()) {
                return sf_string_status::not_string;
            }
            c = static_cast<unsigned char>(value[i]);
            if (c != '"' && c != '\\') {
                return sf_string_status::not_string;
            }
        } else if (c < 0x20 || c > 0x7e) {
            return sf_string_status::not_string;
        }
        if (n < cap) {
            out[n] = static_cast<char>(c);
        } else {
            too_long = true;
        }
        n++;
    }
    if (i + 1 != value.size()) {
        return sf_string_status::not_string; // parameters or garbage
    }
    if (n == 0) {
        return sf_string_status::empty;
    }
    if (too_long) {
        return sf_string_status::too_long;
    }
    *len = n;
    return sf_string_status::ok;
}

} // namespace async
