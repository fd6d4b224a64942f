#include "core/prefer.hpp"

#include "core/ascii.hpp"

#include <optional>

namespace async {

namespace {

class scanner {
  public:
    explicit scanner(std::string_view s) noexcept : s_(s) {}

    bool at_end() const noexcept { return pos_ >= s_.size(); }
    char peek() const noexcept { return s_[pos_]; }
    void advance() noexcept { ++pos_; }

    void skip_ows() noexcept
    {
        while (!at_end() && (peek() == ' ' || peek() == '\t')) {
            ++pos_;
        }
    }

    std::string_view token() noexcept
    {
        size_t start = pos_;
        while (!at_end() && is_tchar(peek())) {
            ++pos_;
        }
        return s_.substr(start, pos_ - start);
    }

    // A quoted-string including its quotes; empty when unterminated.
    std::string_view quoted() noexcept
    {
        size_t start = pos_;
        ++pos_;
        while (!at_end()) {
            char c = peek();
            if (c == '"') {
                ++pos_;
                return s_.substr(start, pos_ - start);
            }
            if (c == '\\') {
                ++pos_;
                if (at_end()) {
                    break;
                }
            }
            ++pos_;
        }
        return {};
    }

    // token / quoted-string; empty when missing or malformed.
    std::string_view word() noexcept
    {
        if (!at_end() && peek() == '"') {
            return quoted();
        }
        return token();
    }

    // Past the next comma outside quotes, or to the end.
    void skip_element() noexcept
    {
        while (!at_end()) {
            char c = peek();
            if (c == ',') {
                ++pos_;
                return;
            }
            if (c == '"') {
                quoted();
                continue;
            }
            ++pos_;
        }
    }

  private:
    std::string_view s_;
    size_t pos_ = 0;
};

// delta-seconds from a token or a quoted-string, saturated at max.
std::optional<uint32_t> delta_seconds(std::string_view word,
                                      uint32_t max) noexcept
{
    if (word.size() >= 2 && word.front() == '"') {
        word = word.substr(1, word.size() - 2);
    }
    uint64_t value = 0;
    bool digits = false;
    for (size_t i = 0; i < word.size(); ++i) {
        char c = word[i];
        if (c == '\\' && i + 1 < word.size()) { // quoted-pair
            c = word[++i];
        }
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        digits = true;
        if (value <= max) {
            value = value * 10 + static_cast<uint64_t>(c - '0');
        }
    }
    if (!digits) {
        return std::nullopt;
    }
    return value > max ? max : static_cast<uint32_t>(value);
}

// Parses the parameters after a preference; false on malformed syntax.
bool skip_parameters(scanner &sc) noexcept
{
    for (;;) {
        sc.skip_ows();
        if (sc.at_end() || sc.peek() == ',') {
            return true;
        }
        if (sc.peek() != ';') {
            return false;
        }
        sc.advance();
        sc.skip_ows();
        if (sc.at_end() || sc.peek() == ',' || sc.peek() == ';') {
            continue; // empty parameter
        }
        if (sc.token().empty()) {
            return false;
        }
        sc.skip_ows();
        if (!sc.at_end() && sc.peek() == '=') {
            sc.advance();
            sc.skip_ows();
            if (sc.word().empty()) {
                return false;
            }
        }
    }
}

} // namespace

void prefer_feed(prefer_state &state, std::string_view value,
                 uint32_t max_wait_s) noexcept
{
    scanner sc(value);
    while (!sc.at_end()) {
        sc.skip_ows();
        if (sc.at_end()) {
            break;
        }
        if (sc.peek() == ',') {
            sc.advance();
            continue;
        }
        std::string_view name = sc.token();
        std::string_view word;
        bool has_value = false;
        bool valid = !name.empty();
        if (valid) {
            sc.skip_ows();
            if (!sc.at_end() && sc.peek() == '=') {
                sc.advance();
                sc.skip_ows();
                word = sc.word();
                has_value = true;
                valid = !word.empty();
            }
        }
        valid = valid && skip_parameters(sc);
        if (!valid) {
            sc.skip_element();
            continue;
        }

        if (iequals(name, "respond-async")) {
            state.respond_async = true;
        } else if (iequals(name, "wait") && has_value && !state.has_wait) {
            auto seconds = delta_seconds(word, max_wait_s);
            if (seconds) {
                state.has_wait = true;
                state.wait_s = *seconds;
            }
        }
    }
}

} // namespace async
