// The shared admission queue under arbitrary sequences of operations:
// arrivals of any class, releases, wake-ups taken, leaves, worker respawns,
// new limits, CoDel on and off, time going forward. After every step the
// books balance: each node is in exactly one place, the counts match the
// lists, and every arrival is accounted for exactly once.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "core/ticket_queue.hpp"

using namespace async;

namespace {

constexpr uint32_t capacity = 16;
constexpr uint32_t owners = 4;

void check(const ticket_queue *q, uint64_t arrivals, uint64_t parked)
{
    const queue_node *nodes = q->nodes();
    uint32_t waiting = 0, granted = 0, answered = 0, free = 0;
    std::vector<int> seen(capacity, 0);

    for (uint32_t n = q->free_head; n != no_node; n = nodes[n].next) {
        if (n >= capacity || seen[n]++ || nodes[n].state != node_state::free) {
            std::abort();
        }
        free++;
    }
    for (uint32_t c = 0; c < queue_classes; c++) {
        uint32_t in_class = 0;
        for (uint32_t n = q->waiters[c].head; n != no_node; n = nodes[n].next) {
            if (n >= capacity || seen[n]++ || nodes[n].priority != c
                || nodes[n].state != node_state::waiting) {
                std::abort();
            }
            in_class++;
        }
        if (in_class != q->class_waiting[c]) {
            std::abort();
        }
        waiting += in_class;
    }
    uint32_t active = 0;
    for (uint32_t o = 0; o < owners; o++) {
        const queue_owner &w = q->owners[o];
        uint32_t own_waiting = 0;
        for (uint32_t n = w.granted.head; n != no_node; n = nodes[n].next) {
            if (n >= capacity || seen[n]++ || nodes[n].owner != o
                || nodes[n].state != node_state::granted) {
                std::abort();
            }
            granted++;
        }
        for (uint32_t n = w.answered.head; n != no_node; n = nodes[n].next) {
            if (n >= capacity || seen[n]++ || nodes[n].owner != o
                || (nodes[n].state != node_state::evicted
                    && nodes[n].state != node_state::dropped)) {
                std::abort();
            }
            answered++;
        }
        for (uint32_t n = 0; n < capacity; n++) {
            own_waiting +=
                nodes[n].state == node_state::waiting && nodes[n].owner == o;
        }
        if (own_waiting != w.waiting) {
            std::abort();
        }
        active += w.active;
    }
    if (waiting != q->waiting || active != q->active
        || waiting + granted + answered + free != capacity) {
        std::abort();
    }
    const queue_counters &k = q->counters;
    // every parked request ends once: admitted, timed out, cancelled,
    // evicted, dropped, or it is still somewhere in the queue
    if (k.passed + parked + k.rejected != arrivals
        || k.queued + k.timed_out + k.cancelled + k.evicted + k.dropped
                   + waiting + granted
               != parked) {
        std::abort();
    }
    queue_counters sum{};
    for (const queue_counters &c : q->class_counters) {
        sum.passed += c.passed;
        sum.queued += c.queued;
        sum.rejected += c.rejected;
        sum.timed_out += c.timed_out;
        sum.cancelled += c.cancelled;
        sum.evicted += c.evicted;
        sum.dropped += c.dropped;
    }
    if (std::memcmp(&sum, &k, sizeof(sum)) != 0) {
        std::abort();
    }
}

bool always_dead(int64_t)
{
    return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    alignas(ticket_queue) static unsigned char
        mem[sizeof(ticket_queue) + capacity * sizeof(queue_node)];
    auto *q = reinterpret_cast<ticket_queue *>(mem);
    ticket_queue_init(q, capacity, 2, 8);
    for (uint32_t o = 0; o < owners; o++) {
        wake_set w{};
        ticket_queue_claim(q, o, 100 + o, &w);
    }
    uint64_t now = 1, arrivals = 0, parked = 0;
    int64_t next_pid = 200;
    // nodes counted as cancelled by a reclaim were parked; a reclaimed
    // answered node was counted when it was evicted or dropped

    for (size_t i = 0; i + 1 < size; i += 2) {
        uint8_t op = data[i] & 0x0f, arg = data[i + 1];
        uint32_t owner = (data[i] >> 4) % owners;
        wake_set w{};
        uint32_t node = no_node;
        uint64_t waited = 0;
        node_state state;
        switch (op) {
            case 0:
            case 1:
            case 2: {
                arrivals++;
                admission a =
                    ticket_queue_enter(q, owner, arg % 9, now, &node, &w);
                parked += a == admission::parked;
                break;
            }
            case 3:
            case 4:
                ticket_queue_release(q, owner, now, &w);
                break;
            case 5:
                ticket_queue_take_granted(q, owner, now, &waited);
                break;
            case 6:
                ticket_queue_take_answered(q, owner, now, &waited, &state);
                break;
            case 7:
                ticket_queue_leave(q, arg % capacity,
                                   arg & 0x80 ? leave_reason::timed_out
                                              : leave_reason::cancelled,
                                   &w);
                break;
            case 8:
                now += arg;
                break;
            case 9:
                ticket_queue_set_limits(q, 1 + arg % 4, arg % 12, &w);
                break;
            case 10:
                ticket_queue_set_codel(q, arg % 2 ? 0 : 1 + arg % 8,
                                       arg % 2 ? 0 : 10 + arg);
                break;
            case 11:
                ticket_queue_claim(q, owner, next_pid++, &w);
                break;
            case 12:
                if (arg == 0x5a) {
                    ticket_queue_reap(q, always_dead, &w);
                }
                break;
            default:
                ticket_queue_release(q, owner, &w);
                break;
        }
        check(q, arrivals, parked);
    }
    return 0;
}
