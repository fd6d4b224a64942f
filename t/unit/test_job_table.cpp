// Rules of the job table (src/core/job_table.hpp).
#include "core/job_table.hpp"

#include <cstdlib>
#include <vector>

#include "unit.hpp"

using namespace async;

namespace {

constexpr uint64_t ttl = 1000;

job_table *make_table(uint32_t capacity)
{
    size_t bytes = (job_table_bytes(capacity) + 63) / 64 * 64;
    auto *t = static_cast<job_table *>(std::aligned_alloc(64, bytes));
    job_table_init(t, capacity);
    return t;
}

void make_id(uint8_t id[id_bytes], uint32_t n)
{
    for (size_t i = 0; i < id_bytes; i++) {
        id[i] = static_cast<uint8_t>(n * 131 + i * 7);
    }
    // same first bytes for every id: one hash chain
    id[0] = id[1] = id[2] = id[3] = 0;
    id[15] = static_cast<uint8_t>(n);
    id[14] = static_cast<uint8_t>(n >> 8);
}

uint32_t count(const job_table *t, job_state s)
{
    return t->count[static_cast<size_t>(s)];
}

std::vector<uint64_t> freed;

void record_free(void *, uint64_t offset)
{
    freed.push_back(offset);
}

bool dead_if_odd(int64_t pid)
{
    return pid % 2 == 0;
}

} // namespace

static void test_inserted_job_is_found_queued(void **)
{
    job_table *t = make_table(8);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 3, 100, 5000);
    assert_int_not_equal(i, no_job);
    assert_int_equal(job_table_find(t, id, 5000), i);
    const job_record &rec = t->records()[i];
    assert_int_equal(static_cast<int>(rec.state),
                     static_cast<int>(job_state::queued));
    assert_int_equal(rec.owner, 3);
    assert_int_equal(rec.created_ms, 5000);
    assert_int_equal(count(t, job_state::queued), 1);
    assert_int_equal(count(t, job_state::free), 7);
    std::free(t);
}

static void test_unknown_id_is_not_found_among_colliding_ids(void **)
{
    job_table *t = make_table(64);
    uint8_t id[id_bytes];
    for (uint32_t n = 0; n < 50; n++) {
        make_id(id, n);
        assert_int_not_equal(job_table_insert(t, id, 0, 1, 1), no_job);
    }
    for (uint32_t n = 0; n < 50; n++) {
        make_id(id, n);
        uint32_t i = job_table_find(t, id, 1);
        assert_int_not_equal(i, no_job);
        assert_memory_equal(t->records()[i].id, id, id_bytes);
    }
    make_id(id, 77);
    assert_int_equal(job_table_find(t, id, 1), no_job);
    std::free(t);
}

static void test_full_table_rejects_new_jobs(void **)
{
    job_table *t = make_table(2);
    uint8_t id[id_bytes];
    make_id(id, 1);
    assert_int_not_equal(job_table_insert(t, id, 0, 1, 1), no_job);
    make_id(id, 2);
    assert_int_not_equal(job_table_insert(t, id, 0, 1, 1), no_job);
    make_id(id, 3);
    assert_int_equal(job_table_insert(t, id, 0, 1, 1), no_job);
    assert_int_equal(t->counters.rejected, 1);
    assert_int_equal(t->counters.submitted, 2);
    std::free(t);
}

static void test_states_move_forward_only(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    assert_true(job_table_start(t, i, 20));
    assert_false(job_table_start(t, i, 21));
    assert_int_equal(t->records()[i].started_ms, 20);
    assert_int_equal(count(t, job_state::running), 1);
    assert_false(job_table_finish(t, i, job_state::running, job_reason::none, 0,
                                  30, ttl));
    assert_true(job_table_finish(t, i, job_state::completed, job_reason::none,
                                 201, 30, ttl));
    assert_false(job_table_finish(t, i, job_state::cancelled,
                                  job_reason::cancelled, 0, 31, ttl));
    const job_record &rec = t->records()[i];
    assert_int_equal(rec.result_status, 201);
    assert_int_equal(rec.finished_ms, 30);
    assert_int_equal(rec.expires_ms, 30 + ttl);
    assert_int_equal(count(t, job_state::completed), 1);
    assert_int_equal(count(t, job_state::running), 0);
    assert_int_equal(t->counters.completed, 1);
    std::free(t);
}

static void test_cancelled_queued_job_never_starts(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    assert_true(job_table_finish(t, i, job_state::cancelled,
                                 job_reason::cancelled, 0, 11, ttl));
    assert_false(job_table_start(t, i, 12));
    assert_int_equal(t->counters.cancelled, 1);
    std::free(t);
}

static void test_expired_job_is_invisible_then_removed(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    job_table_start(t, i, 10);
    job_table_finish(t, i, job_state::completed, job_reason::none, 200, 100,
                     ttl);
    job_table_set_result(t, i, 4096, 300, 10);
    assert_int_equal(t->stored_bytes, 300);
    assert_int_equal(job_table_find(t, id, 100 + ttl - 1), i);
    assert_int_equal(job_table_find(t, id, 100 + ttl), no_job);

    freed.clear();
    assert_int_equal(job_table_expire(t, 100 + ttl - 1, record_free, nullptr),
                     0);
    assert_int_equal(job_table_expire(t, 100 + ttl, record_free, nullptr), 1);
    assert_int_equal(freed.size(), 1);
    assert_int_equal(freed[0], 4096);
    assert_int_equal(t->stored_bytes, 0);
    assert_int_equal(t->counters.expired, 1);
    assert_int_equal(t->used, 0);
    assert_int_equal(count(t, job_state::free), 4);
    assert_int_equal(job_table_find(t, id, 0), no_job);
    std::free(t);
}

static void test_unfinished_jobs_never_expire(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t a = job_table_insert(t, id, 0, 1, 10);
    make_id(id, 2);
    uint32_t b = job_table_insert(t, id, 0, 1, 10);
    job_table_start(t, b, 11);
    assert_int_equal(job_table_expire(t, UINT64_MAX, nullptr, nullptr), 0);
    assert_int_equal(t->records()[a].state, job_state::queued);
    assert_int_equal(t->records()[b].state, job_state::running);
    std::free(t);
}

static void test_reused_record_gets_a_new_generation(void **)
{
    job_table *t = make_table(1);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    uint32_t g = t->records()[i].generation;
    job_table_remove(t, i);
    make_id(id, 2);
    uint32_t j = job_table_insert(t, id, 0, 1, 10);
    assert_int_equal(i, j);
    assert_int_not_equal(t->records()[j].generation, g);
    make_id(id, 1);
    assert_int_equal(job_table_find(t, id, 10), no_job);
    std::free(t);
}

static void test_lost_owner_fails_only_its_unfinished_jobs(void **)
{
    job_table *t = make_table(8);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t mine_queued = job_table_insert(t, id, 2, 500, 10);
    make_id(id, 2);
    uint32_t mine_running = job_table_insert(t, id, 2, 500, 10);
    job_table_start(t, mine_running, 11);
    make_id(id, 3);
    uint32_t mine_done = job_table_insert(t, id, 2, 500, 10);
    job_table_finish(t, mine_done, job_state::completed, job_reason::none, 200,
                     12, ttl);
    make_id(id, 4);
    uint32_t other = job_table_insert(t, id, 3, 600, 10);
    make_id(id, 5);
    uint32_t successor = job_table_insert(t, id, 2, 700, 10);

    assert_int_equal(job_table_lose_owner(t, 2, 700, 20, ttl), 2);
    const job_record *recs = t->records();
    assert_int_equal(recs[mine_queued].state, job_state::failed);
    assert_int_equal(recs[mine_queued].reason, job_reason::worker_lost);
    assert_int_equal(recs[mine_running].state, job_state::failed);
    assert_int_equal(recs[mine_done].state, job_state::completed);
    assert_int_equal(recs[other].state, job_state::queued);
    assert_int_equal(recs[successor].state, job_state::queued);
    std::free(t);
}

static void test_dead_processes_lose_their_jobs(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t dead = job_table_insert(t, id, 0, 501, 10);
    make_id(id, 2);
    uint32_t alive = job_table_insert(t, id, 1, 502, 10);
    assert_int_equal(job_table_lose_dead(t, dead_if_odd, 20, ttl), 1);
    assert_int_equal(t->records()[dead].state, job_state::failed);
    assert_int_equal(t->records()[alive].state, job_state::queued);
    std::free(t);
}

static void test_changes_count_final_transitions_and_removals(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    uint64_t c0 = t->changes;
    job_table_start(t, i, 11);
    assert_int_equal(t->changes, c0);
    job_table_finish(t, i, job_state::failed, job_reason::zone_full, 0, 12,
                     ttl);
    assert_int_equal(t->changes, c0 + 1);
    job_table_remove(t, i);
    assert_int_equal(t->changes, c0 + 2);
    std::free(t);
}

static void test_every_transition_marks_the_record_for_the_store(void **)
{
    job_table *t = make_table(4);
    uint8_t id[id_bytes];
    make_id(id, 1);
    uint32_t i = job_table_insert(t, id, 0, 1, 10);
    assert_int_equal(t->records()[i].store_dirty, 1);
    assert_int_equal(t->store_dirty, 1);
    job_table_mark_clean(t, i);
    job_table_mark_clean(t, i); // twice: counted once
    assert_int_equal(t->store_dirty, 0);
    job_table_start(t, i, 11);
    assert_int_equal(t->store_dirty, 1);
    job_table_mark_clean(t, i);
    job_table_finish(t, i, job_state::completed, job_reason::none, 200, 12,
                     ttl);
    job_table_mark_dirty(t, i); // a failed write marks it again: once
    assert_int_equal(t->records()[i].store_dirty, 1);
    assert_int_equal(t->store_dirty, 1);
    job_table_remove(t, i); // a removed record is nothing to send
    assert_int_equal(t->store_dirty, 0);
    std::free(t);
}

static void test_names_of_states_and_reasons(void **)
{
    assert_sv_equal(job_state_name(job_state::queued), "queued");
    assert_sv_equal(job_state_name(job_state::cancelled), "cancelled");
    assert_sv_equal(job_reason_name(job_reason::result_too_large),
                    "result_too_large");
    assert_sv_equal(job_reason_name(job_reason::worker_lost), "worker_lost");
    assert_sv_equal(job_reason_name(job_reason::none), "");
    assert_sv_equal(job_reason_name(job_reason::owner_lost), "owner_lost");
    assert_sv_equal(job_reason_name(job_reason::store_unavailable),
                    "store_unavailable");
}

static void test_bytes_leave_records_aligned(void **)
{
    for (uint32_t cap = 1; cap < 100; cap++) {
        assert_int_equal(job_table_bytes(cap) % 8, 0);
        assert_true(job_table_bytes(cap) >= cap * sizeof(job_record));
    }
}

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inserted_job_is_found_queued),
        cmocka_unit_test(test_unknown_id_is_not_found_among_colliding_ids),
        cmocka_unit_test(test_full_table_rejects_new_jobs),
        cmocka_unit_test(test_states_move_forward_only),
        cmocka_unit_test(test_cancelled_queued_job_never_starts),
        cmocka_unit_test(test_expired_job_is_invisible_then_removed),
        cmocka_unit_test(test_unfinished_jobs_never_expire),
        cmocka_unit_test(test_reused_record_gets_a_new_generation),
        cmocka_unit_test(test_lost_owner_fails_only_its_unfinished_jobs),
        cmocka_unit_test(test_dead_processes_lose_their_jobs),
        cmocka_unit_test(test_changes_count_final_transitions_and_removals),
        cmocka_unit_test(test_every_transition_marks_the_record_for_the_store),
        cmocka_unit_test(test_names_of_states_and_reasons),
        cmocka_unit_test(test_bytes_leave_records_aligned),
    };
    return cmocka_run_group_tests_name("job_table", tests, nullptr, nullptr);
}
