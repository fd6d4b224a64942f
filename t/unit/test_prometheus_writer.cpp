#include "core/prometheus_writer.hpp"

#include <string>

#include "unit.hpp"

using namespace async;

namespace {

struct out_buf {
    char data[4096];
};

} // namespace

static void test_counter_family_named_with_total_as_in_0_0_4(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("nginx_async_x_total", metric_type::counter, "Things done.");
    w.sample("nginx_async_x_total", {}, 42);
    assert_true(w.ok());
    assert_sv_equal(w.view(), "# HELP nginx_async_x_total Things done.\n"
                              "# TYPE nginx_async_x_total counter\n"
                              "nginx_async_x_total 42\n");
}

static void test_counter_name_must_end_in_total(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("nginx_async_x", metric_type::counter, "no suffix");
    assert_true(w.misused());
    assert_int_equal(w.length(), 0);
}

static void test_gauge_with_labels_in_order(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("g", metric_type::gauge, "A gauge.");
    w.sample("g", {{"zone", "q"}, {"outcome", "passed"}}, 0);
    w.sample("g", {{"zone", "r"}}, UINT64_MAX);
    assert_true(w.ok());
    assert_sv_equal(w.view(), "# HELP g A gauge.\n# TYPE g gauge\n"
                              "g{zone=\"q\",outcome=\"passed\"} 0\n"
                              "g{zone=\"r\"} 18446744073709551615\n");
}

static void test_label_values_are_escaped(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("g", metric_type::gauge, "back\\slash\nnewline \"quoted\"");
    w.sample("g", {{"zone", "a\"b\\c\nd"}}, 1);
    assert_true(w.ok());
    // HELP escapes backslash and newline only; label values also quotes
    assert_sv_equal(w.view(), "# HELP g back\\\\slash\\nnewline \"quoted\"\n"
                              "# TYPE g gauge\n"
                              "g{zone=\"a\\\"b\\\\c\\nd\"} 1\n");
}

static void test_thousandths_are_exact(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("s", metric_type::gauge, "h");
    w.sample_thousandths("s", {}, 0);
    w.sample_thousandths("s", {}, 7);
    w.sample_thousandths("s", {}, 1050);
    w.sample_thousandths("s", {}, 123456789);
    assert_true(w.ok());
    assert_sv_equal(w.view(), "# HELP s h\n# TYPE s gauge\n"
                              "s 0.000\ns 0.007\ns 1.050\ns 123456.789\n");
}

static void test_histogram_is_cumulative_with_inf_equal_to_count(void **)
{
    histogram h{};
    histogram_record(h, 0);
    histogram_record(h, 3);
    histogram_record(h, 700);
    histogram_record(h, 120000);
    histogram_cumulative c = histogram_cumulate(h);

    static char big[8192];
    prometheus_writer w(big, sizeof(big));
    w.family("w_seconds", metric_type::histogram, "Waits.");
    w.histogram_seconds({{"zone", "q"}}, c);
    assert_true(w.ok());
    std::string text(w.view());
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"0.001\"} 1\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"0.005\"} 2\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"0.5\"} 2\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"1\"} 3\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"60\"} 3\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_bucket{zone=\"q\",le=\"+Inf\"} 4\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_sum{zone=\"q\"} 120.703\n")
                != std::string::npos);
    assert_true(text.find("w_seconds_count{zone=\"q\"} 4\n")
                != std::string::npos);
    // one line per bucket, plus _sum, _count and the two comment lines
    size_t lines = 0;
    for (char ch : text) {
        lines += ch == '\n';
    }
    assert_int_equal(lines, histogram_buckets + 2 + 2);
}

static void test_sample_of_another_family_is_misuse(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("a", metric_type::gauge, "h");
    w.sample("b", {}, 1);
    assert_true(w.misused());
}

static void test_sample_before_any_family_is_misuse(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.sample("a", {}, 1);
    assert_true(w.misused());
}

static void test_histogram_suffixes_only_for_histograms(void **)
{
    out_buf b;
    prometheus_writer w(b.data, sizeof(b.data));
    w.family("h", metric_type::histogram, "x");
    w.sample("h_count", {}, 1);
    w.sample("h_sum", {}, 1);
    assert_true(w.ok());
    w.sample("h", {}, 1);
    assert_true(w.misused());

    prometheus_writer g(b.data, sizeof(b.data));
    g.family("g", metric_type::gauge, "x");
    g.sample("g_count", {}, 1);
    assert_true(g.misused());
}

static void test_invalid_names_are_misuse(void **)
{
    out_buf b;
    for (std::string_view bad : {"", "9lives", "a-b", "a b", "é"}) {
        prometheus_writer w(b.data, sizeof(b.data));
        w.family(bad, metric_type::gauge, "x");
        assert_true(w.misused());
    }
    for (std::string_view bad : {"", "9z", "a:b", "__reserved", "le"}) {
        prometheus_writer w(b.data, sizeof(b.data));
        w.family("g", metric_type::gauge, "x");
        w.sample("g", {{bad, "v"}}, 1);
        assert_true(w.misused());
    }
    assert_true(prometheus_metric_name_valid("nginx:async_x_1"));
    assert_true(prometheus_label_name_valid("_zone1"));
}

static void test_overflow_never_writes_past_capacity(void **)
{
    char buf[64];
    for (size_t cap = 0; cap < 60; ++cap) {
        std::memset(buf, 'X', sizeof(buf));
        prometheus_writer w(buf, cap);
        w.family("nginx_async_gauge", metric_type::gauge, "Some help.");
        w.sample("nginx_async_gauge", {{"zone", "q"}}, 123);
        assert_true(w.overflowed());
        assert_true(w.length() <= cap);
        for (size_t i = cap; i < sizeof(buf); ++i) {
            assert_int_equal(buf[i], 'X');
        }
    }
    prometheus_writer none(nullptr, 100);
    none.family("g", metric_type::gauge, "x");
    assert_true(none.overflowed());
}

static void test_accept_prometheus_scraper(void **)
{
    // what Prometheus 2.x sends
    assert_true(prometheus_text_accepted(
        "application/openmetrics-text;version=1.0.0,application/"
        "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,"
        "*/*;q=0.1"));
    assert_true(prometheus_text_accepted("text/plain; version=0.0.4"));
    assert_true(prometheus_text_accepted("text/plain"));
    assert_true(prometheus_text_accepted("TEXT/Plain ; Version=\"0.0.4\""));
    assert_true(prometheus_text_accepted("application/json;q=0.5, text/plain"));
}

// RFC 9110 12.5.1: equal q values carry no order, so a tie is the server's
// choice; asking for text/plain as strongly as for JSON gets the text
// format, whichever comes first.
static void test_accept_tie_gets_text(void **)
{
    assert_true(prometheus_text_accepted("text/plain, application/json"));
    assert_true(prometheus_text_accepted("application/json, text/plain"));
    assert_true(prometheus_text_accepted(
        "application/json;q=0.5, text/plain;version=0.0.4;q=0.5"));
    assert_true(prometheus_text_accepted(
        "text/plain;q=0.7, application/json;q=0.7, */*;q=0.9"));
}

static void test_accept_others_get_json(void **)
{
    assert_false(prometheus_text_accepted(""));
    assert_false(prometheus_text_accepted("*/*"));
    assert_false(prometheus_text_accepted("application/json"));
    assert_false(prometheus_text_accepted(
        "text/html,application/xhtml+xml,application/xml;q=0.9,"
        "image/avif,image/webp,*/*;q=0.8"));
    assert_false(prometheus_text_accepted("text/plain;q=0"));
    assert_false(prometheus_text_accepted("text/plain;version=1.0.0"));
    assert_false(
        prometheus_text_accepted("text/plain;q=0.5, application/json"));
    assert_false(prometheus_text_accepted("text/plain;q=2"));
    assert_false(prometheus_text_accepted("text/plain;q=0.5x"));
    assert_false(prometheus_text_accepted("text/plainx"));
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_family_named_with_total_as_in_0_0_4),
        cmocka_unit_test(test_counter_name_must_end_in_total),
        cmocka_unit_test(test_gauge_with_labels_in_order),
        cmocka_unit_test(test_label_values_are_escaped),
        cmocka_unit_test(test_thousandths_are_exact),
        cmocka_unit_test(test_histogram_is_cumulative_with_inf_equal_to_count),
        cmocka_unit_test(test_sample_of_another_family_is_misuse),
        cmocka_unit_test(test_sample_before_any_family_is_misuse),
        cmocka_unit_test(test_histogram_suffixes_only_for_histograms),
        cmocka_unit_test(test_invalid_names_are_misuse),
        cmocka_unit_test(test_overflow_never_writes_past_capacity),
        cmocka_unit_test(test_accept_prometheus_scraper),
        cmocka_unit_test(test_accept_tie_gets_text),
        cmocka_unit_test(test_accept_others_get_json),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
