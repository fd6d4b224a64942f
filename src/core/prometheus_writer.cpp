#include "core/prometheus_writer.hpp"

#include "core/ascii.hpp"

#include <cstring>

namespace async {

namespace {

constexpr std::string_view suffix_bucket = "_bucket";
constexpr std::string_view suffix_sum = "_sum";
constexpr std::string_view suffix_count = "_count";
constexpr std::string_view suffix_total = "_total";

std::string_view trim_ows(std::string_view s) noexcept
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool ends_with(std::string_view s, std::string_view suffix) noexcept
{
    return s.size() >= suffix.size()
           && s.substr(s.size() - suffix.size()) == suffix;
}

// RFC 9110 qvalue as thousandths: "0", "0.5", "1", "1.000"; -1 if invalid.
int parse_qvalue(std::string_view v) noexcept
{
    if (v.empty() || (v[0] != '0' && v[0] != '1')) {
        return -1;
    }
    int whole = v[0] - '0';
    if (v.size() == 1) {
        return whole * 1000;
    }
    if (v[1] != '.' || v.size() > 5) {
        return -1;
    }
    int frac = 0;
    int scale = 100;
    for (size_t i = 2; i < v.size(); ++i) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        frac += (v[i] - '0') * scale;
        scale /= 10;
    }
    if (whole == 1 && frac != 0) {
        return -1;
    }
    return whole * 1000 + frac;
}

std::string_view unquote(std::string_view v) noexcept
{
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        return v.substr(1, v.size() - 2);
    }
    return v;
}

// One element of an Accept list: the media range and the q that applies
// to it; q is -1 when the element is malformed or a text/plain range names
// another version of the format.
struct accept_element {
    std::string_view range;
    int q;
};

accept_element parse_accept_element(std::string_view element) noexcept
{
    size_t semi = element.find(';');
    accept_element out{trim_ows(element.substr(0, semi)), 1000};
    bool text = iequals(out.range, "text/plain");
    while (semi != std::string_view::npos) {
        element.remove_prefix(semi + 1);
        semi = element.find(';');
        std::string_view param = trim_ows(element.substr(0, semi));
        size_t eq = param.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        std::string_view name = trim_ows(param.substr(0, eq));
        std::string_view value = unquote(trim_ows(param.substr(eq + 1)));
        if (iequals(name, "q")) {
            out.q = parse_qvalue(value);
            if (out.q < 0) {
                return out;
            }
        } else if (text && iequals(name, "version") && value != "0.0.4") {
            out.q = -1;
            return out;
        }
    }
    return out;
}

bool name_char(char c, bool first, bool colon) noexcept
{
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return alpha || (colon && c == ':') || (!first && c >= '0' && c <= '9');
}

} // namespace

bool prometheus_text_accepted(std::string_view accept) noexcept
{
    int text_q = -1;
    int json_q = -1;
    while (!accept.empty()) {
        size_t comma = accept.find(',');
        accept_element e = parse_accept_element(accept.substr(0, comma));
        if (e.q >= 0) {
            if (iequals(e.range, "text/plain")) {
                text_q = e.q > text_q ? e.q : text_q;
            } else if (iequals(e.range, "application/json")) {
                json_q = e.q > json_q ? e.q : json_q;
            }
        }
        if (comma == std::string_view::npos) {
            break;
        }
        accept.remove_prefix(comma + 1);
    }
    return text_q > 0 && text_q >= json_q;
}

bool prometheus_metric_name_valid(std::string_view name) noexcept
{
    if (name.empty()) {
        return false;
    }
    for (size_t i = 0; i < name.size(); ++i) {
        if (!name_char(name[i], i == 0, true)) {
            return false;
        }
    }
    return true;
}

bool prometheus_label_name_valid(std::string_view name) noexcept
{
    if (name.empty() || name.substr(0, 2) == "__") {
        return false;
    }
    for (size_t i = 0; i < name.size(); ++i) {
        if (!name_char(name[i], i == 0, false)) {
            return false;
        }
    }
    return true;
}

prometheus_writer::prometheus_writer(char *buf, size_t capacity) noexcept
    : out_(buf, capacity)
{
}

bool prometheus_writer::append(std::string_view s) noexcept
{
    return !misuse_ && out_.append(s);
}

// Label values escape '\\', '"' and newline; HELP text '\\' and newline.
bool prometheus_writer::append_escaped(std::string_view s, bool quotes) noexcept
{
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        std::string_view esc;
        if (s[i] == '\\') {
            esc = "\\\\";
        } else if (s[i] == '\n') {
            esc = "\\n";
        } else if (quotes && s[i] == '"') {
            esc = "\\\"";
        } else {
            continue;
        }
        if (!append(s.substr(start, i - start)) || !append(esc)) {
            return false;
        }
        start = i + 1;
    }
    return append(s.substr(start));
}

bool prometheus_writer::append_u64(uint64_t v) noexcept
{
    char tmp[20];
    size_t pos = sizeof(tmp);
    do {
        tmp[--pos] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return append({tmp + pos, sizeof(tmp) - pos});
}

void prometheus_writer::family(std::string_view name, metric_type type,
                               std::string_view help) noexcept
{
    if (!ok()) {
        return;
    }
    if (!prometheus_metric_name_valid(name)
        || (type == metric_type::counter && !ends_with(name, suffix_total))) {
        misuse_ = true;
        return;
    }
    // in the 0.0.4 format a counter's # TYPE names it with its _total
    // (OpenMetrics, unlike it, names the family without)
    std::string_view base = name;
    const char *type_name = type == metric_type::counter ? "counter"
                            : type == metric_type::gauge ? "gauge"
                                                         : "histogram";
    if (append("# HELP ") && append(base) && append(" ")
        && append_escaped(help, false) && append("\n# TYPE ") && append(base)
        && append(" ") && append(type_name) && append("\n")) {
        family_ = name;
        type_ = type;
    }
}

bool prometheus_writer::sample_name_ok(std::string_view name) const noexcept
{
    if (family_.empty()) {
        return false;
    }
    if (type_ != metric_type::histogram) {
        return name == family_;
    }
    for (std::string_view suffix : {suffix_bucket, suffix_sum, suffix_count}) {
        if (name.size() == family_.size() + suffix.size()
            && name.substr(0, family_.size()) == family_
            && ends_with(name, suffix)) {
            return true;
        }
    }
    return false;
}

bool prometheus_writer::begin_sample(std::string_view name,
                                     metric_labels labels,
                                     metric_label extra) noexcept
{
    if (!ok()) {
        return false;
    }
    if (!sample_name_ok(name)) {
        misuse_ = true;
        return false;
    }
    for (const metric_label &l : labels) {
        if (!prometheus_label_name_valid(l.name) || l.name == "le") {
            misuse_ = true;
            return false;
        }
    }
    if (!append(name)) {
        return false;
    }
    bool any = labels.size() > 0 || !extra.name.empty();
    if (any && !append("{")) {
        return false;
    }
    bool first = true;
    for (const metric_label &l : labels) {
        if ((!first && !append(",")) || !append(l.name) || !append("=\"")
            || !append_escaped(l.value, true) || !append("\"")) {
            return false;
        }
        first = false;
    }
    if (!extra.name.empty()) {
        if ((!first && !append(",")) || !append(extra.name) || !append("=\"")
            || !append_escaped(extra.value, true) || !append("\"")) {
            return false;
        }
    }
    return (!any || append("}")) && append(" ");
}

void prometheus_writer::sample(std::string_view name, metric_labels labels,
                               uint64_t value) noexcept
{
    if (begin_sample(name, labels, {}) && append_u64(value)) {
        append("\n");
    }
}

void prometheus_writer::sample_thousandths(std::string_view name,
                                           metric_labels labels,
                                           uint64_t thousandths) noexcept
{
    if (!begin_sample(name, labels, {}) || !append_u64(thousandths / 1000)) {
        return;
    }
    char frac[5] = {'.', static_cast<char>('0' + thousandths % 1000 / 100),
                    static_cast<char>('0' + thousandths % 100 / 10),
                    static_cast<char>('0' + thousandths % 10), '\n'};
    append({frac, sizeof(frac)});
}

void prometheus_writer::histogram_seconds(
    metric_labels labels, const histogram_cumulative &h) noexcept
{
    if (!ok()) {
        return;
    }
    if (type_ != metric_type::histogram) {
        misuse_ = true;
        return;
    }
    // names live on the stack for the duration of each call only
    char name[256];
    if (family_.size() + suffix_bucket.size() > sizeof(name)) {
        misuse_ = true;
        return;
    }
    std::memcpy(name, family_.data(), family_.size());
    auto with = [&](std::string_view suffix) {
        std::memcpy(name + family_.size(), suffix.data(), suffix.size());
        return std::string_view{name, family_.size() + suffix.size()};
    };

    std::string_view bucket = with(suffix_bucket);
    for (size_t i = 0; i < histogram_buckets; ++i) {
        if (!begin_sample(bucket, labels, {"le", histogram_le_seconds(i)})
            || !append_u64(h.le[i]) || !append("\n")) {
            return;
        }
    }
    sample_thousandths(with(suffix_sum), labels, h.sum_ms);
    sample(with(suffix_count), labels, h.count);
}

} // namespace async
