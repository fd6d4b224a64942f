#include "core/job_extras.hpp"
#include "core/progress_body.hpp"

#include <vector>

#include "unit.hpp"

using namespace async;

namespace {

constexpr uint64_t ttl = 1000;

struct arena {
    std::vector<uint64_t> tmem, kmem, pmem;
    job_table *t;
    job_keys *k;
    job_progress *p;

    arena(uint32_t capacity, uint32_t slots)
        : tmem(job_table_bytes(capacity) / 8 + 1),
          kmem(job_keys_bytes(capacity) / 8 + 1),
          pmem(job_progress_bytes(capacity, slots) / 8 + 1)
    {
        t = reinterpret_cast<job_table *>(tmem.data());
        k = reinterpret_cast<job_keys *>(kmem.data());
        p = reinterpret_cast<job_progress *>(pmem.data());
        job_table_init(t, capacity);
        job_keys_init(k, capacity);
        job_progress_init(p, capacity, slots);
    }

    uint32_t insert(uint8_t tag, uint64_t now = 1)
    {
        uint8_t id[id_bytes] = {tag, 1, 2, 3};
        return job_table_insert(t, id, 0, 1, now);
    }
};

void digest(uint8_t out[32], uint8_t tag)
{
    std::memset(out, 0, 32);
    out[0] = tag;
    out[key_digest_bytes - 1] = tag;
}

} // namespace

static void test_key_binds_and_finds_its_job(void **)
{
    arena a(8, 2);
    uint8_t k[32], f[32];
    digest(k, 7);
    digest(f, 9);
    assert_int_equal(job_key_find(a.k, a.t, k, 1), no_job);
    uint32_t i = a.insert(1);
    job_key_bind(a.k, a.t, i, k, f);
    assert_int_equal(job_key_find(a.k, a.t, k, 1), i);
    assert_true(job_key_same_request(a.k, i, f));
    uint8_t g[32];
    digest(g, 10);
    assert_false(job_key_same_request(a.k, i, g));
}

static void test_key_lives_as_long_as_its_job(void **)
{
    arena a(8, 2);
    uint8_t k[32], f[32];
    digest(k, 7);
    digest(f, 9);
    uint32_t i = a.insert(1);
    job_key_bind(a.k, a.t, i, k, f);
    job_table_start(a.t, i, 2);
    job_table_finish(a.t, i, job_state::completed, job_reason::none, 200, 10,
                     ttl);
    assert_int_equal(job_key_find(a.k, a.t, k, 10 + ttl - 1), i);
    // expired: not found even before the expiry removes it
    assert_int_equal(job_key_find(a.k, a.t, k, 10 + ttl), no_job);
}

static void test_key_of_a_removed_and_reused_record_is_gone(void **)
{
    arena a(1, 1);
    uint8_t k[32], f[32];
    digest(k, 7);
    digest(f, 9);
    uint32_t i = a.insert(1);
    job_key_bind(a.k, a.t, i, k, f);
    job_table_remove(a.t, i);
    assert_int_equal(job_key_find(a.k, a.t, k, 1), no_job);
    uint32_t j = a.insert(2);
    assert_int_equal(j, i); // the same record, another generation
    assert_int_equal(job_key_find(a.k, a.t, k, 1), no_job);
    uint8_t k2[32];
    digest(k2, 8);
    job_key_bind(a.k, a.t, j, k2, f);
    assert_int_equal(job_key_find(a.k, a.t, k2, 1), j);
    assert_int_equal(job_key_find(a.k, a.t, k, 1), no_job);
}

static void test_keys_sharing_a_bucket_are_told_apart(void **)
{
    arena a(4, 1);
    uint8_t k1[32], k2[32], f[32];
    digest(k1, 4); // the same first bytes: the same bucket
    digest(k2, 4);
    k2[key_digest_bytes - 1] = 99;
    digest(f, 1);
    uint32_t i = a.insert(1), j = a.insert(2);
    job_key_bind(a.k, a.t, i, k1, f);
    job_key_bind(a.k, a.t, j, k2, f);
    assert_int_equal(job_key_find(a.k, a.t, k1, 1), i);
    assert_int_equal(job_key_find(a.k, a.t, k2, 1), j);
}

static void test_progress_only_while_running(void **)
{
    arena a(4, 1);
    uint32_t i = a.insert(1);
    assert_int_equal(job_progress_set(a.p, a.t, i, 5, "x"),
                     progress_result::not_running);
    job_table_start(a.t, i, 2);
    assert_int_equal(job_progress_set(a.p, a.t, i, 40, "half way"),
                     progress_result::ok);
    progress_view v;
    job_progress_get(a.p, a.t, i, &v);
    assert_true(v.has);
    assert_int_equal(v.percent, 40);
    assert_sv_equal(std::string_view(v.message, v.message_len), "half way");
    job_table_finish(a.t, i, job_state::completed, job_reason::none, 200, 3,
                     ttl);
    job_progress_get(a.p, a.t, i, &v);
    assert_false(v.has);
    assert_int_equal(job_progress_set(a.p, a.t, i, 50, ""),
                     progress_result::not_running);
}

static void test_progress_slot_is_taken_over_when_its_job_ends(void **)
{
    arena a(4, 1);
    uint32_t i = a.insert(1), j = a.insert(2);
    job_table_start(a.t, i, 2);
    job_table_start(a.t, j, 2);
    assert_int_equal(job_progress_set(a.p, a.t, i, 1, "i"),
                     progress_result::ok);
    assert_int_equal(job_progress_set(a.p, a.t, j, 2, "j"),
                     progress_result::no_slot);
    job_table_finish(a.t, i, job_state::failed, job_reason::upstream_error, 0,
                     3, ttl);
    assert_int_equal(job_progress_set(a.p, a.t, j, 2, "j"),
                     progress_result::ok);
    progress_view v;
    job_progress_get(a.p, a.t, j, &v);
    assert_true(v.has);
    assert_int_equal(v.percent, 2);
    job_progress_get(a.p, a.t, i, &v);
    assert_false(v.has);
}

static void test_progress_body_accepts_percent_and_message(void **)
{
    progress_body b;
    const char ok[] = "{\"percent\":42,\"message\":\"r\\u00e9sum\\u00e9\"}";
    assert_int_equal(parse_progress_body(ok, sizeof(ok) - 1, &b),
                     progress_body_status::ok);
    assert_int_equal(b.percent, 42);
    assert_sv_equal(std::string_view(b.message, b.message_len),
                    "r\xc3\xa9sum\xc3\xa9");
    const char bare[] = "{\"percent\":100,\"other\":[1]}";
    assert_int_equal(parse_progress_body(bare, sizeof(bare) - 1, &b),
                     progress_body_status::ok);
    assert_int_equal(b.percent, 100);
    assert_int_equal(b.message_len, 0);
}

static void test_progress_body_refuses_what_is_not_a_report(void **)
{
    progress_body b;
    auto st = [&](std::string_view s) {
        return parse_progress_body(s.data(), s.size(), &b);
    };
    assert_int_equal(st(""), progress_body_status::not_json);
    assert_int_equal(st("{"), progress_body_status::not_json);
    assert_int_equal(st("[1]"), progress_body_status::not_json);
    assert_int_equal(st("{}"), progress_body_status::bad_percent);
    assert_int_equal(st("{\"percent\":101}"),
                     progress_body_status::bad_percent);
    assert_int_equal(st("{\"percent\":-1}"), progress_body_status::bad_percent);
    assert_int_equal(st("{\"percent\":5.5}"),
                     progress_body_status::bad_percent);
    assert_int_equal(st("{\"percent\":\"5\"}"),
                     progress_body_status::bad_percent);
    assert_int_equal(st("{\"percent\":5,\"message\":7}"),
                     progress_body_status::bad_message);
    char big[400];
    std::memset(big, 'm', sizeof(big));
    std::memcpy(big, "{\"percent\":5,\"message\":\"", 24);
    std::memcpy(big + 24 + 257, "\"}", 2);
    assert_int_equal(st(std::string_view(big, 24 + 257 + 2)),
                     progress_body_status::bad_message);
    std::memcpy(big + 24 + 256, "\"}", 2);
    assert_int_equal(st(std::string_view(big, 24 + 256 + 2)),
                     progress_body_status::ok);
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_binds_and_finds_its_job),
        cmocka_unit_test(test_key_lives_as_long_as_its_job),
        cmocka_unit_test(test_key_of_a_removed_and_reused_record_is_gone),
        cmocka_unit_test(test_keys_sharing_a_bucket_are_told_apart),
        cmocka_unit_test(test_progress_only_while_running),
        cmocka_unit_test(test_progress_slot_is_taken_over_when_its_job_ends),
        cmocka_unit_test(test_progress_body_accepts_percent_and_message),
        cmocka_unit_test(test_progress_body_refuses_what_is_not_a_report),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
