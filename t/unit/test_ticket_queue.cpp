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

uint32_t park_class(ticket_queue *q, uint32_t owner, uint32_t priority,
                    uint64_t now, wake_set *wake)
{
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, owner, priority, now, &n, wake)
                == admission::parked);
    return n;
}

uint32_t take(ticket_queue *q, uint32_t owner, uint64_t now)
{
    uint64_t waited = 0;
    return ticket_queue_take_granted(q, owner, now, &waited);
}

void test_higher_class_is_admitted_first_fifo_within_class(void **)
{
    ticket_queue *q = make_queue(16, 1, 16);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    uint32_t low1 = park_class(q, 1, 0, 1, &wake);
    uint32_t high1 = park_class(q, 1, 7, 2, &wake);
    uint32_t mid = park_class(q, 1, 3, 3, &wake);
    uint32_t high2 = park_class(q, 1, 7, 4, &wake);
    uint32_t low2 = park_class(q, 1, 0, 5, &wake);
    assert_int_equal(q->class_waiting[7], 2);
    assert_int_equal(q->class_waiting[0], 2);

    uint32_t expected[] = {high1, high2, mid, low1, low2};
    uint32_t owner = 0;
    for (uint32_t want : expected) {
        ticket_queue_release(q, owner, &wake);
        owner = 1;
        assert_int_equal(take(q, 1, 10), want);
    }
    assert_int_equal(q->waiting, 0);
    assert_int_equal(q->class_counters[7].queued, 2);
    assert_int_equal(q->class_counters[0].queued, 2);
    assert_int_equal(q->class_counters[0].passed, 1);
    std::free(q);
}

void test_full_queue_evicts_newest_of_lowest_class_below_arrival(void **)
{
    ticket_queue *q = make_queue(16, 1, 3);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    park_class(q, 1, 2, 1, &wake);
    uint32_t old0 = park_class(q, 2, 0, 2, &wake);
    uint32_t new0 = park_class(q, 3, 0, 3, &wake);

    wake = no_wake();
    uint32_t high = park_class(q, 1, 5, 4, &wake);
    assert_int_equal(wake.count, 1);
    assert_int_equal(wake.owners[0], 3);
    assert_int_equal(q->waiting, 3);
    assert_int_equal(q->counters.evicted, 1);
    assert_int_equal(q->class_counters[0].evicted, 1);
    assert_int_equal(q->owners[3].waiting, 0);

    uint64_t waited = 0;
    node_state state = node_state::free;
    assert_int_equal(ticket_queue_take_answered(q, 3, 13, &waited, &state),
                     new0);
    assert_true(state == node_state::evicted);
    assert_int_equal(waited, 10);
    assert_int_equal(ticket_queue_take_answered(q, 3, 13, &waited, &state),
                     no_node);
    (void) old0;
    (void) high;
    std::free(q);
}

void test_full_queue_rejects_arrival_without_lower_class(void **)
{
    ticket_queue *q = make_queue(16, 1, 2);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    park_class(q, 1, 4, 1, &wake);
    park_class(q, 1, 6, 2, &wake);
    // same class as the lowest waiter: no eviction
    assert_true(ticket_queue_enter(q, 2, 4, 3, &n, &wake)
                == admission::rejected);
    assert_true(ticket_queue_enter(q, 2, 0, 3, &n, &wake)
                == admission::rejected);
    assert_int_equal(q->counters.evicted, 0);
    assert_int_equal(q->class_counters[4].rejected, 1);
    assert_int_equal(q->class_counters[0].rejected, 1);
    std::free(q);
}

void test_out_of_range_class_counts_as_highest(void **)
{
    ticket_queue *q = make_queue(8, 1, 8);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    n = park_class(q, 1, 99, 1, &wake);
    assert_int_equal(q->nodes()[n].priority, queue_classes - 1);
    std::free(q);
}

void test_answered_node_left_by_its_client_is_freed_once(void **)
{
    ticket_queue *q = make_queue(8, 1, 1);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    uint32_t low = park_class(q, 1, 0, 1, &wake);
    park_class(q, 2, 1, 2, &wake);
    assert_true(q->nodes()[low].state == node_state::evicted);
    ticket_queue_leave(q, low, leave_reason::cancelled, &wake);
    assert_true(q->nodes()[low].state == node_state::free);
    assert_int_equal(q->counters.cancelled, 0);
    assert_int_equal(q->owners[1].answered.head, no_node);
    std::free(q);
}

void test_reclaim_frees_answered_nodes_of_dead_owner(void **)
{
    ticket_queue *q = make_queue(8, 1, 1);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    ticket_queue_claim(q, 1, 100, &wake);
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    uint32_t low = park_class(q, 1, 0, 1, &wake);
    park_class(q, 2, 1, 2, &wake);
    ticket_queue_claim(q, 1, 101, &wake);
    assert_true(q->nodes()[low].state == node_state::free);
    assert_int_equal(q->counters.cancelled, 0);
    std::free(q);
}

// CoDel: below target, or above it for less than an interval, nothing is
// dropped; above it for an interval, every waiter past the target is.
void test_codel_without_standing_queue_behaves_as_fifo(void **)
{
    ticket_queue *q = make_queue(16, 1, 16);
    ticket_queue_set_codel(q, 5, 100);
    wake_set wake = no_wake();
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, 0, &n, &wake) == admission::passed);
    // each waiter waits 50 ms (above target) but only for 90 ms in a row
    uint64_t now = 0;
    for (int i = 0; i < 3; i++) {
        park_class(q, 1, 0, now, &wake);
        now += 50;
        wake = no_wake();
        ticket_queue_release(q, i == 0 ? 0 : 1, now, &wake);
        assert_int_not_equal(take(q, 1, now), no_node);
        if (i == 1) {
            // the queue ran empty: the interval starts again
            assert_int_equal(q->codel.first_above_time, 0);
        }
    }
    assert_int_equal(q->counters.dropped, 0);
    assert_int_equal(q->codel.dropping, 0);
    std::free(q);
}

// Four arrivals per 10 ms step, the last right before one release: a
// standing queue that never runs empty.
void overload_step(ticket_queue *q, uint64_t *now, uint32_t holder)
{
    wake_set wake = no_wake();
    for (uint64_t at = 7; at <= 10; at++) {
        park_class(q, 1, 0, *now + at, &wake);
    }
    *now += 10;
    ticket_queue_release(q, holder, *now, &wake);
    if (take(q, 1, *now) == no_node) {
        fail_msg("nothing granted at %lu", static_cast<unsigned long>(*now));
    }
    uint64_t waited = 0;
    node_state state;
    while (ticket_queue_take_answered(q, 1, *now, &waited, &state) != no_node) {
        assert_true(state == node_state::dropped);
        assert_true(waited > q->codel.target_ms);
    }
}

void test_codel_drops_waiters_past_target_after_an_interval(void **)
{
    ticket_queue *q = make_queue(256, 1, 256);
    ticket_queue_set_codel(q, 5, 100);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint64_t now = 0;
    for (int i = 0; i < 20; i++) {
        overload_step(q, &now, i == 0 ? 0 : 1);
        if (now <= 100) {
            assert_int_equal(q->counters.dropped, 0);
        }
    }
    assert_true(q->counters.dropped > 0);
    assert_int_equal(q->class_counters[0].dropped, q->counters.dropped);
    assert_int_equal(q->codel.dropping, 1);
    assert_true(q->codel.count >= 1);
    // nobody left waiting is past the target
    uint32_t head = q->waiters[0].head;
    assert_int_not_equal(head, no_node);
    assert_true(now - q->nodes()[head].enqueued_ms <= 5);
    std::free(q);
}

void test_codel_leaves_dropping_state_below_target(void **)
{
    ticket_queue *q = make_queue(256, 1, 256);
    ticket_queue_set_codel(q, 5, 100);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint64_t now = 0;
    for (int i = 0; i < 30; i++) {
        overload_step(q, &now, i == 0 ? 0 : 1);
    }
    assert_int_equal(q->codel.dropping, 1);
    uint64_t dropped = q->counters.dropped;
    // the overload ends: waiters are served within the target
    wake_set wake = no_wake();
    while (q->waiting > 0) {
        now += 1;
        ticket_queue_release(q, 1, now, &wake);
        take(q, 1, now);
        if (q->codel.dropping == 0) {
            break;
        }
    }
    assert_int_equal(q->codel.dropping, 0);
    assert_int_equal(q->counters.dropped, dropped);
    std::free(q);
}

void test_codel_survives_a_long_quiet_spell_while_dropping(void **)
{
    ticket_queue *q = make_queue(256, 1, 256);
    ticket_queue_set_codel(q, 5, 100);
    uint32_t n = no_node;
    assert_true(ticket_queue_enter(q, 0, 0, &n) == admission::passed);
    uint64_t now = 0;
    for (int i = 0; i < 20; i++) {
        overload_step(q, &now, i == 0 ? 0 : 1);
    }
    assert_int_equal(q->codel.dropping, 1);
    uint32_t count = q->codel.count;
    // hours later (a fuzzer found the RFC's catch-up loop spinning here)
    now += 10ULL * 3600 * 1000;
    wake_set wake = no_wake();
    ticket_queue_release(q, 1, now, &wake);
    assert_int_equal(q->codel.count, count + 1);
    assert_true(q->codel.drop_next > now);
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
        cmocka_unit_test(test_higher_class_is_admitted_first_fifo_within_class),
        cmocka_unit_test(
            test_full_queue_evicts_newest_of_lowest_class_below_arrival),
        cmocka_unit_test(test_full_queue_rejects_arrival_without_lower_class),
        cmocka_unit_test(test_out_of_range_class_counts_as_highest),
        cmocka_unit_test(test_answered_node_left_by_its_client_is_freed_once),
        cmocka_unit_test(test_reclaim_frees_answered_nodes_of_dead_owner),
        cmocka_unit_test(test_codel_without_standing_queue_behaves_as_fifo),
        cmocka_unit_test(
            test_codel_drops_waiters_past_target_after_an_interval),
        cmocka_unit_test(test_codel_leaves_dropping_state_below_target),
        cmocka_unit_test(test_codel_survives_a_long_quiet_spell_while_dropping),
    };
    return cmocka_run_group_tests_name("ticket_queue", tests, nullptr, nullptr);
}
