// Rules of the shared admission queue (src/core/ticket_queue.hpp).
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <csetjmp>
#include <cstdlib>
#include <cstring>

extern "C" {
#include <cmocka.h>
}

#include "core/ticket_queue.hpp"

using namespace async;

namespace {

ticket_queue *make_queue(uint32_t capacity, uint32_t active, uint32_t length)
{
    void *mem = std::aligned_alloc(
        alignof(ticket_queue), (ticket_queue_bytes(capacity) + 63) / 64 * 64);
    auto *q = static_cast<ticket_queue *>(mem);
    ticket_queue_init(q, capacity, active, length);
    return q;
}

wake_set no_wake()
{
    wake_set w{};
    return w;
}

uint32_t park(ticket_queue *q, uint32_t owner, uint64_t now)
{
    uint32_t n = no_node;
    assert_int_equal(static_cast<int>(ticket_queue_enter(q, owner, now, &n)),
                     static_cast<int>(admission::parked));
    assert_int_not_equal(n, no_node);
    return n;
}

void test_free_slots_pass_at_once(void **)
{
    ticket_queue *q = make_queue(8, 2, 8);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    assert_true(ticket_queue_enter(q, 1, 0, &n) == admission::passed);
    assert_int_equal(q->active, 2);
    assert_int_equal(q->counters.passed, 2);
    assert_int_equal(q->owners[0].active, 1);
    assert_int_equal(q->owners[1].active, 1);
    std::free(q);
}

void test_full_slots_park_then_reject_past_length(void **)
{
    ticket_queue *q = make_queue(8, 1, 2);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    park(q, 0, 1);
    park(q, 1, 2);
    assert_true(ticket_queue_enter(q, 0, 3, &n) == admission::rejected);
    assert_int_equal(q->waiting, 2);
    assert_int_equal(q->counters.rejected, 1);
    std::free(q);
}

void test_zero_length_rejects_when_busy(void **)
{
    ticket_queue *q = make_queue(8, 1, 0);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::rejected);
    std::free(q);
}

void test_release_grants_oldest_waiter_across_owners(void **)
{
    ticket_queue *q = make_queue(8, 1, 8);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint32_t first = park(q, 2, 10);  // worker 2 arrived first
    uint32_t second = park(q, 1, 11); // worker 1 second

    wake_set wake = no_wake();
    ticket_queue_release(q, 0, &wake);
    assert_int_equal(wake.count, 1);
    assert_int_equal(wake.owners[0], 2);
    assert_int_equal(q->active, 1);
    assert_int_equal(q->owners[2].active, 1);
    assert_int_equal(q->owners[0].active, 0);

    uint64_t waited = 0;
    assert_int_equal(ticket_queue_take_granted(q, 1, 30, &waited), no_node);
    assert_int_equal(ticket_queue_take_granted(q, 2, 30, &waited), first);
    assert_int_equal(waited, 20);
    assert_int_equal(q->counters.queued, 1);

    wake = no_wake();
    ticket_queue_release(q, 2, &wake);
    assert_int_equal(wake.owners[0], 1);
    assert_int_equal(ticket_queue_take_granted(q, 1, 40, &waited), second);
    assert_int_equal(q->waiting, 0);
    std::free(q);
}

void test_newcomer_never_overtakes_a_waiter(void **)
{
    ticket_queue *q = make_queue(8, 1, 8);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    park(q, 1, 1);
    wake_set wake = no_wake();
    ticket_queue_release(q, 0, &wake); // slot granted to the waiter
    // the slot is taken by the granted waiter, so a newcomer parks
    park(q, 0, 2);
    assert_int_equal(q->active, 1);
    std::free(q);
}

void test_fifo_order_matches_arrival(void **)
{
    ticket_queue *q = make_queue(16, 1, 16);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint32_t order[10];
    for (uint32_t i = 0; i < 10; i++) {
        order[i] = park(q, i % 3, i);
    }
    uint64_t waited = 0;
    for (uint32_t i = 0; i < 10; i++) {
        wake_set wake = no_wake();
        uint32_t holder = i == 0 ? 0 : (i - 1) % 3;
        ticket_queue_release(q, holder, &wake);
        assert_int_equal(wake.count, 1);
        assert_int_equal(wake.owners[0], i % 3);
        assert_int_equal(ticket_queue_take_granted(q, i % 3, 100, &waited),
                         order[i]);
    }
    std::free(q);
}

void test_leaving_waiter_frees_its_place(void **)
{
    ticket_queue *q = make_queue(2, 1, 2);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint32_t a = park(q, 0, 0);
    park(q, 0, 0);
    wake_set wake = no_wake();
    ticket_queue_leave(q, a, leave_reason::cancelled, &wake);
    assert_int_equal(q->waiting, 1);
    assert_int_equal(q->counters.cancelled, 1);
    park(q, 0, 0); // the node is reusable
    ticket_queue_leave(q, a, leave_reason::timed_out, &wake);
    assert_int_equal(q->counters.timed_out, 1);
    assert_int_equal(wake.count, 0);
    std::free(q);
}

void test_granted_waiter_leaving_passes_slot_on(void **)
{
    ticket_queue *q = make_queue(4, 1, 4);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint32_t a = park(q, 1, 0);
    uint32_t b = park(q, 2, 0);
    wake_set wake = no_wake();
    ticket_queue_release(q, 0, &wake); // a is granted
    wake = no_wake();
    ticket_queue_leave(q, a, leave_reason::cancelled, &wake);
    assert_int_equal(wake.count, 1);
    assert_int_equal(wake.owners[0], 2);
    uint64_t waited = 0;
    assert_int_equal(ticket_queue_take_granted(q, 2, 0, &waited), b);
    assert_int_equal(q->active, 1);
    assert_int_equal(q->owners[1].active, 0);
    assert_int_equal(q->owners[2].active, 1);
    std::free(q);
}

void test_leave_of_free_node_is_ignored(void **)
{
    ticket_queue *q = make_queue(2, 1, 2);
    wake_set wake = no_wake();
    ticket_queue_leave(q, 0, leave_reason::cancelled, &wake);
    ticket_queue_leave(q, 99, leave_reason::cancelled, &wake);
    assert_int_equal(q->counters.cancelled, 0);
    std::free(q);
}

void test_no_room_when_nodes_run_out(void **)
{
    ticket_queue *q = make_queue(1, 1, 10);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    park(q, 0, 0);
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::no_room);
    std::free(q);
}

void test_respawned_worker_reclaims_dead_predecessor(void **)
{
    ticket_queue *q = make_queue(8, 2, 8);
    wake_set wake = no_wake();
    ticket_queue_claim(q, 0, 100, &wake);
    ticket_queue_claim(q, 1, 200, &wake);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    park(q, 0, 0);                  // worker 0's waiter
    uint32_t other = park(q, 1, 0); // worker 1's waiter

    // worker 0 (pid 100) dies; its successor in slot 0 is pid 101
    wake = no_wake();
    assert_int_equal(ticket_queue_claim(q, 0, 101, &wake), 3);
    assert_int_equal(q->counters.cancelled, 1);
    // both freed slots: one goes to worker 1's waiter, one stays free
    assert_int_equal(wake.count, 1);
    assert_int_equal(wake.owners[0], 1);
    uint64_t waited = 0;
    assert_int_equal(ticket_queue_take_granted(q, 1, 0, &waited), other);
    assert_int_equal(q->active, 1);
    assert_int_equal(q->waiting, 0);
    assert_int_equal(q->owners[0].active, 0);
    std::free(q);
}

void test_claim_by_same_pid_keeps_holdings(void **)
{
    ticket_queue *q = make_queue(8, 2, 8);
    wake_set wake = no_wake();
    ticket_queue_claim(q, 0, 100, &wake);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    assert_int_equal(ticket_queue_claim(q, 0, 100, &wake), 0);
    assert_int_equal(q->active, 1);
    std::free(q);
}

bool only_pid_200_alive(int64_t pid)
{
    return pid == 200;
}

void test_reap_gives_back_holdings_of_dead_processes(void **)
{
    ticket_queue *q = make_queue(8, 1, 8);
    wake_set wake = no_wake();
    ticket_queue_claim(q, 3, 300, &wake);
    ticket_queue_claim(q, 4, 200, &wake);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 3, 0, &n) == admission::passed);
    uint32_t w = park(q, 4, 0);
    wake = no_wake();
    assert_int_equal(ticket_queue_reap(q, only_pid_200_alive, &wake), 1);
    assert_int_equal(wake.owners[0], 4);
    uint64_t waited = 0;
    assert_int_equal(ticket_queue_take_granted(q, 4, 0, &waited), w);
    assert_int_equal(q->owners[3].pid, 0);
    std::free(q);
}

void test_raising_max_active_admits_waiters(void **)
{
    ticket_queue *q = make_queue(8, 1, 8);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    park(q, 1, 0);
    park(q, 1, 0);
    wake_set wake = no_wake();
    ticket_queue_set_limits(q, 3, 8, &wake);
    assert_int_equal(q->active, 3);
    assert_int_equal(q->waiting, 0);
    assert_int_equal(wake.count, 1);
    std::free(q);
}

void test_capacity_for_inverts_bytes(void **)
{
    assert_int_equal(ticket_queue_capacity_for(ticket_queue_bytes(1000)), 1000);
    assert_int_equal(ticket_queue_capacity_for(10), 0);
}

void test_wake_set_overflow_is_flagged(void **)
{
    ticket_queue *q = make_queue(200, 1, 200);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    for (uint32_t i = 0; i < 100; i++) {
        park(q, i + 1, 0);
    }
    wake_set wake = no_wake();
    ticket_queue_set_limits(q, 101, 200, &wake);
    assert_int_equal(wake.count, wake_set::cap);
    assert_true(wake.overflow);
    std::free(q);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_free_slots_pass_at_once),
        cmocka_unit_test(test_full_slots_park_then_reject_past_length),
        cmocka_unit_test(test_zero_length_rejects_when_busy),
        cmocka_unit_test(test_release_grants_oldest_waiter_across_owners),
        cmocka_unit_test(test_newcomer_never_overtakes_a_waiter),
        cmocka_unit_test(test_fifo_order_matches_arrival),
        cmocka_unit_test(test_leaving_waiter_frees_its_place),
        cmocka_unit_test(test_granted_waiter_leaving_passes_slot_on),
        cmocka_unit_test(test_leave_of_free_node_is_ignored),
        cmocka_unit_test(test_no_room_when_nodes_run_out),
        cmocka_unit_test(test_respawned_worker_reclaims_dead_predecessor),
        cmocka_unit_test(test_claim_by_same_pid_keeps_holdings),
        cmocka_unit_test(test_reap_gives_back_holdings_of_dead_processes),
        cmocka_unit_test(test_raising_max_active_admits_waiters),
        cmocka_unit_test(test_capacity_for_inverts_bytes),
        cmocka_unit_test(test_wake_set_overflow_is_flagged),
    };
    return cmocka_run_group_tests_name("ticket_queue", tests, nullptr, nullptr);
}
