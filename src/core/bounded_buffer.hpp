// Appends into a caller-owned buffer of fixed capacity: a write either fits
// whole or is refused, and after the first refusal every write is refused.
#pragma once

#include <cstddef>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace async {

class bounded_buffer {
  public:
    // A null buffer has no room, whatever capacity says.
    bounded_buffer(char *buf, size_t capacity) noexcept
        : data_(buf), capacity_(buf == nullptr ? 0 : capacity)
    {
    }

    bool append(std::string_view s) noexcept
    {
        if (!make_room(s.size())) {
            return false;
        }
        if (!s.empty()) {
            std::memcpy(data_ + length_, s.data(), s.size());
            length_ += s.size();
        }
        return true;
    }

    bool append(char c) noexcept { return append(std::string_view(&c, 1)); }

    // The next n (> 0) bytes, counted as written, for the caller to fill;
    // null when they do not fit.
    char *claim(size_t n) noexcept
    {
        if (!make_room(n)) {
            return nullptr;
        }
        char *out = data_ + length_;
        length_ += n;
        return out;
    }

    size_t length() const noexcept { return length_; }
    size_t capacity() const noexcept { return capacity_; }
    size_t remaining() const noexcept { return capacity_ - length_; }
    const char *data() const noexcept { return data_; }
    std::string_view view() const noexcept { return {data_, length_}; }
    bool overflowed() const noexcept { return overflowed_; }

  private:
    bool make_room(size_t n) noexcept
    {
        if (overflowed_ || n > capacity_ - length_) {
            overflowed_ = true;
            return false;
        }
        return true;
    }

    char *data_;
    size_t capacity_;
    size_t length_ = 0;
    bool overflowed_ = false;
};

// Owns no bytes: a writer holding one needs no cleanup, as nginx expects.
static_assert(std::is_trivially_destructible_v<bounded_buffer>);

} // namespace async
