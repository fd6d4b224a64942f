// Prometheus text exposition format 0.0.4 into a caller-owned buffer, and
// the content negotiation that picks it.
#pragma once

#include "core/bounded_buffer.hpp"
#include "core/histogram.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace async {

constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

enum class metric_type { counter, gauge, histogram };

struct metric_label {
    std::string_view name;
    std::string_view value;
};

using metric_labels = std::initializer_list<metric_label>;

// True when an Accept header asks for the text format: a `text/plain`
// range (without a version, or version=0.0.4) with a q above zero and at
// least the q of `application/json`. `*/*`, browsers' lists and an empty
// header do not.
bool prometheus_text_accepted(std::string_view accept) noexcept;

// Writes families in order: family() writes # HELP and # TYPE, then the
// samples of that family follow. A sample's name must be the family's (a
// counter's name ends in _total, # TYPE included, as 0.0.4 has it), or for a
// histogram the family's name plus _bucket, _sum or _count. Never writes past
// capacity; after an overflow or a misuse (invalid metric or label name, a
// sample of another family, a sample before any family) it stops and reports
// the failure.
class prometheus_writer {
  public:
    prometheus_writer(char *buf, size_t capacity) noexcept;

    void family(std::string_view name, metric_type type,
                std::string_view help) noexcept;

    void sample(std::string_view name, metric_labels labels,
                uint64_t value) noexcept;
    // value / 1000 written exactly with three decimals: milliseconds as
    // seconds without floating-point rounding.
    void sample_thousandths(std::string_view name, metric_labels labels,
                            uint64_t thousandths) noexcept;

    // A whole histogram family member: NAME_bucket{...,le="..."} for every
    // bucket (cumulative, bounds in seconds), NAME_sum in seconds and
    // NAME_count, for the current histogram family.
    void histogram_seconds(metric_labels labels,
                           const histogram_cumulative &h) noexcept;

    size_t length() const noexcept { return out_.length(); }
    std::string_view view() const noexcept { return out_.view(); }
    bool overflowed() const noexcept { return out_.overflowed(); }
    bool misused() const noexcept { return misuse_; }
    bool ok() const noexcept { return !out_.overflowed() && !misuse_; }

  private:
    bool sample_name_ok(std::string_view name) const noexcept;
    bool begin_sample(std::string_view name, metric_labels labels,
                      metric_label extra) noexcept;
    bool append(std::string_view s) noexcept;
    bool append_escaped(std::string_view s, bool quotes) noexcept;
    bool append_u64(uint64_t v) noexcept;

    bounded_buffer out_;
    std::string_view family_;
    metric_type type_ = metric_type::gauge;
    bool misuse_ = false;
};

// [a-zA-Z_:][a-zA-Z0-9_:]*
bool prometheus_metric_name_valid(std::string_view name) noexcept;
// [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__" (reserved)
bool prometheus_label_name_valid(std::string_view name) noexcept;

} // namespace async
