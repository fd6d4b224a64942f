#include "core/json_writer.hpp"

#include <cmath>
#include <cstdio>
#include <cstring>

namespace async {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr char replacement_char[] = "\xEF\xBF\xBD"; // U+FFFD

// Length of the UTF-8 sequence starting at p[0] (n > 0 bytes available).
// Sets valid; when invalid, the length is the maximal subpart to replace
// (at least 1), following the Unicode "substitution of maximal subparts".
size_t utf8_sequence(const unsigned char *p, size_t n, bool &valid) noexcept
{
    unsigned c = p[0];
    unsigned lo = 0x80;
    unsigned hi = 0xBF;
    size_t need;

    if (c < 0x80) {
        valid = true;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c == 0xE0) {
        need = 2;
        lo = 0xA0; // below is overlong
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        need = 2;
    } else if (c == 0xED) {
        need = 2;
        hi = 0x9F; // above are surrogates
    } else if (c == 0xF0) {
        need = 3;
        lo = 0x90; // below is overlong
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 3;
    } else if (c == 0xF4) {
        need = 3;
        hi = 0x8F; // above is beyond U+10FFFF
    } else {
        valid = false; // continuation byte, C0, C1, F5..FF
        return 1;
    }

    for (size_t i = 1; i <= need; ++i) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            valid = false;
            return i;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    valid = true;
    return need + 1;
}

// Short escape for c, or 0 when c needs \u00xx or no escape at all.
char short_escape(unsigned char c) noexcept
{
    switch (c) {
        case '"':
            return '"';
        case '\\':
            return '\\';
        case '\b':
            return 'b';
        case '\f':
            return 'f';
        case '\n':
            return 'n';
        case '\r':
            return 'r';
        case '\t':
            return 't';
        default:
            return 0;
    }
}

enum byte_class : unsigned char { plain, escaped, non_ascii };

// One load per byte decides whether it passes through unchanged.
constexpr struct byte_class_table {
    byte_class of[256]{};

    constexpr byte_class_table() noexcept
    {
        for (unsigned c = 0; c < 256; ++c) {
            of[c] = c >= 0x80                           ? non_ascii
                    : c < 0x20 || c == '"' || c == '\\' ? escaped
                                                        : plain;
        }
    }
} byte_classes;

constexpr uint64_t byte_ones = 0x0101010101010101ULL;
constexpr uint64_t byte_highs = 0x8080808080808080ULL;

// Whether the 8 bytes of w all pass through unchanged (plain). For bytes
// below 0x80, x - n * ones sets a high bit exactly when some byte is < n.
inline bool word_is_plain(uint64_t w) noexcept
{
    uint64_t quote = w ^ (byte_ones * '"');
    uint64_t backslash = w ^ (byte_ones * '\\');
    return ((w | (w - byte_ones * 0x20) | (quote - byte_ones)
             | (backslash - byte_ones))
            & byte_highs)
           == 0;
}

// Walks s once, handing the output to out: copy(piece, len) for bytes that
// pass through, short_escape(e), unicode_escape(c), replacement(). Length
// and escaping share this walk, so they cannot disagree.
template <class Out>
void escape_walk(std::string_view s, Out &out) noexcept
{
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    size_t n = s.size();
    size_t i = 0;
    size_t run = 0; // start of bytes to copy verbatim

    while (i < n) {
        // most text needs no escaping: skip it a word at a time, then look
        // at the bytes of the word that is not plain one by one
        while (n - i >= sizeof(uint64_t)) {
            uint64_t w;
            std::memcpy(&w, p + i, sizeof(w));
            if (!word_is_plain(w)) {
                break;
            }
            i += sizeof(w);
        }
        size_t stop = n - i > sizeof(uint64_t) ? i + sizeof(uint64_t) : n;
        while (i < stop) {
            unsigned char c = p[i];
            byte_class cls = byte_classes.of[c];
            if (cls == plain) {
                ++i;
                continue;
            }
            if (cls == non_ascii) {
                bool valid;
                size_t len = utf8_sequence(p + i, n - i, valid);
                if (!valid) {
                    out.copy(s.data() + run, i - run);
                    out.replacement();
                    run = i + len;
                }
                i += len;
                continue;
            }
            out.copy(s.data() + run, i - run);
            char e = short_escape(c);
            if (e != 0) {
                out.short_escape(e);
            } else {
                out.unicode_escape(c);
            }
            ++i;
            run = i;
        }
    }
    out.copy(s.data() + run, n - run);
}

struct escape_counter {
    size_t total = 0;

    void copy(const char * /* from */, size_t len) noexcept { total += len; }
    void short_escape(char /* c */) noexcept { total += 2; }
    void unicode_escape(unsigned char /* c */) noexcept { total += 6; }
    void replacement() noexcept { total += 3; }
};

struct escape_writer {
    char *out;

    void copy(const char *piece, size_t len) noexcept
    {
        if (len != 0) {
            std::memcpy(out, piece, len);
            out += len;
        }
    }
    void short_escape(char e) noexcept
    {
        out[0] = '\\';
        out[1] = e;
        out += 2;
    }
    void unicode_escape(unsigned char c) noexcept
    {
        std::memcpy(out, "\\u00", 4);
        out[4] = hex_digits[c >> 4];
        out[5] = hex_digits[c & 0xF];
        out += 6;
    }
    void replacement() noexcept
    {
        std::memcpy(out, replacement_char, 3);
        out += 3;
    }
};

// Caller guarantees out has room for json_escaped_length(s) bytes.
size_t escape_into(std::string_view s, char *out) noexcept
{
    escape_writer w{out};
    escape_walk(s, w);
    return static_cast<size_t>(w.out - out);
}

} // namespace

size_t json_escaped_length(std::string_view s) noexcept
{
    escape_counter counter;
    escape_walk(s, counter);
    return counter.total;
}

size_t json_escape(std::string_view s, char *out, size_t cap) noexcept
{
    size_t need = json_escaped_length(s);
    if (need <= cap) {
        escape_into(s, out);
    }
    return need;
}

json_writer::json_writer(char *buf, size_t capacity) noexcept
    : out_(buf, capacity)
{
}

bool json_writer::append(std::string_view s) noexcept
{
    return !misuse_ && out_.append(s);
}

bool json_writer::append_quoted(std::string_view s) noexcept
{
    if (!ok()) {
        return false;
    }
    size_t need = json_escaped_length(s);
    // a need + 2 that wraps is more than any buffer holds: refuse it as such
    char *out = out_.claim(need > SIZE_MAX - 2 ? SIZE_MAX : need + 2);
    if (out == nullptr) {
        return false;
    }
    out[0] = '"';
    escape_into(s, out + 1);
    out[need + 1] = '"';
    return true;
}

bool json_writer::before_value() noexcept
{
    if (!ok()) {
        return false;
    }
    if (depth_ == 0) {
        if (done_) {
            misuse_ = true;
            return false;
        }
        return true;
    }
    if (in_object()) {
        if (!after_key_) {
            misuse_ = true;
            return false;
        }
        after_key_ = false;
        return true;
    }
    uint64_t bit = uint64_t{1} << (depth_ - 1);
    if ((nonempty_bits_ & bit) != 0 && !append(",")) {
        return false;
    }
    nonempty_bits_ |= bit;
    return true;
}

void json_writer::after_value() noexcept
{
    if (depth_ == 0 && ok()) {
        done_ = true;
    }
}

void json_writer::open(char c, bool object) noexcept
{
    if (depth_ >= max_depth) {
        misuse_ = true;
        return;
    }
    if (!before_value() || !append(std::string_view(&c, 1))) {
        return;
    }
    uint64_t bit = uint64_t{1} << depth_;
    if (object) {
        object_bits_ |= bit;
    } else {
        object_bits_ &= ~bit;
    }
    nonempty_bits_ &= ~bit;
    ++depth_;
}

void json_writer::close(char c, bool object) noexcept
{
    if (!ok()) {
        return;
    }
    if (depth_ == 0 || in_object() != object || after_key_) {
        misuse_ = true;
        return;
    }
    if (!append(std::string_view(&c, 1))) {
        return;
    }
    --depth_;
    after_value();
}

void json_writer::begin_object() noexcept
{
    open('{', true);
}

void json_writer::end_object() noexcept
{
    close('}', true);
}

void json_writer::begin_array() noexcept
{
    open('[', false);
}

void json_writer::end_array() noexcept
{
    close(']', false);
}

void json_writer::key(std::string_view name) noexcept
{
    if (!ok()) {
        return;
    }
    if (!in_object() || after_key_) {
        misuse_ = true;
        return;
    }
    uint64_t bit = uint64_t{1} << (depth_ - 1);
    if ((nonempty_bits_ & bit) != 0 && !append(",")) {
        return;
    }
    nonempty_bits_ |= bit;
    if (append_quoted(name) && append(":")) {
        after_key_ = true;
    }
}

void json_writer::string(std::string_view s) noexcept
{
    if (before_value() && append_quoted(s)) {
        after_value();
    }
}

void json_writer::number_u64(uint64_t v) noexcept
{
    char tmp[20];
    size_t pos = sizeof(tmp);
    do {
        tmp[--pos] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (before_value() && append({tmp + pos, sizeof(tmp) - pos})) {
        after_value();
    }
}

void json_writer::number_i64(int64_t v) noexcept
{
    // magnitude computed unsigned so INT64_MIN does not overflow
    uint64_t mag = v < 0 ? uint64_t{0} - static_cast<uint64_t>(v)
                         : static_cast<uint64_t>(v);
    char tmp[21];
    size_t pos = sizeof(tmp);
    do {
        tmp[--pos] = static_cast<char>('0' + mag % 10);
        mag /= 10;
    } while (mag != 0);
    if (v < 0) {
        tmp[--pos] = '-';
    }
    if (before_value() && append({tmp + pos, sizeof(tmp) - pos})) {
        after_value();
    }
}

void json_writer::number_double(double v, unsigned decimals) noexcept
{
    if (!std::isfinite(v)) {
        null();
        return;
    }
    if (decimals > max_decimals) {
        decimals = max_decimals;
    }
    // 309 integer digits at most for a finite double, plus sign, point,
    // decimals and the terminator.
    char tmp[352];
    int n =
        std::snprintf(tmp, sizeof(tmp), "%.*f", static_cast<int>(decimals), v);
    if (n <= 0 || static_cast<size_t>(n) >= sizeof(tmp)) {
        misuse_ = true;
        return;
    }
    for (int i = 0; i < n; ++i) {
        if (tmp[i] == ',') { // a locale's decimal comma
            tmp[i] = '.';
        }
    }
    if (before_value() && append({tmp, static_cast<size_t>(n)})) {
        after_value();
    }
}

void json_writer::boolean(bool v) noexcept
{
    if (before_value() && append(v ? "true" : "false")) {
        after_value();
    }
}

void json_writer::null() noexcept
{
    if (before_value() && append("null")) {
        after_value();
    }
}

void json_writer::raw(std::string_view json) noexcept
{
    if (json.empty()) {
        misuse_ = true;
        return;
    }
    if (before_value() && append(json)) {
        after_value();
    }
}

} // namespace async
