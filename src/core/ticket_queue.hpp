// A bounded admission queue shared by all worker processes: at most
// max_active requests in service, up to length more parked. Waiters are
// admitted by priority class, highest first, FIFO within a class; a full
// queue makes room for a higher class by evicting the newest waiter of the
// lowest class below it. With CoDel on, a queue that stays above its target
// sojourn time for an interval answers its waiters past the target at once
// (RFC 8289's state machine, see codel_state). The whole structure is one
// trivially copyable block that lives in shared memory; links are node
// indices, never pointers. The caller holds the zone's lock around every
// call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace async {

constexpr uint32_t no_node = UINT32_MAX;
constexpr uint32_t max_queue_owners = 1024; // nginx's NGX_MAX_PROCESSES
constexpr uint32_t queue_classes = 8;       // priority 0 (least) .. 7

enum class admission { passed, parked, rejected, no_room };

enum class leave_reason { timed_out, cancelled };

// evicted and dropped nodes wait on their owner's answered list until the
// owner's worker takes them and answers their requests
enum class node_state : uint32_t { free, waiting, granted, evicted, dropped };

struct queue_node {
    uint32_t prev;
    uint32_t next;
    uint32_t owner;
    node_state state;
    uint64_t ticket;
    uint64_t enqueued_ms;
    uint32_t priority;
    uint32_t reserved;
};

struct node_list {
    uint32_t head;
    uint32_t tail;
};

// What one worker process slot holds; a respawned worker in the same slot
// finds its dead predecessor's pid here and gives its holdings back.
struct queue_owner {
    int64_t pid;
    uint32_t active;
    uint32_t waiting;
    node_list granted;  // parked nodes handed a slot, not yet resumed
    node_list answered; // evicted or dropped nodes, not yet answered
};

struct queue_counters {
    uint64_t passed;    // admitted at once
    uint64_t queued;    // admitted after parking
    uint64_t rejected;  // queue full
    uint64_t timed_out; // parked longer than the timeout
    uint64_t cancelled; // client left, or its worker died, while parked
    uint64_t evicted;   // made room for a higher class
    uint64_t dropped;   // past the CoDel target while the queue was overloaded
};

// CoDel (RFC 8289) over the waiters: the sojourn time of the waiter a slot
// goes to is measured at each dispatch. Above target for a whole interval,
// the queue enters the dropping state, where each dispatch first answers
// every waiter whose sojourn is past the target; it leaves the state when a
// dispatch finds its waiter below target or the queue empty. count and
// drop_next follow the RFC's control law (next = t + interval / sqrt(count))
// and tell how persistent the overload is. interval_ms == 0: plain FIFO.
struct codel_state {
    uint64_t target_ms;
    uint64_t interval_ms;
    uint64_t first_above_time; // 0: below target (or not measured yet)
    uint64_t drop_next;
    uint64_t sojourn_ms; // of the last dispatched waiter
    uint32_t count;
    uint32_t lastcount;
    uint32_t dropping;
    uint32_t reserved;
};

struct ticket_queue {
    uint32_t max_active;
    uint32_t length;
    uint32_t capacity; // nodes allocated after this header
    uint32_t active;
    uint32_t waiting;
    uint64_t next_ticket;
    uint64_t now_ms; // latest time a caller passed in, for CoDel
    node_list waiters[queue_classes];
    uint32_t class_waiting[queue_classes];
    uint32_t free_head;
    queue_counters counters;
    queue_counters class_counters[queue_classes];
    codel_state codel;
    queue_owner owners[max_queue_owners];

    queue_node *nodes() { return reinterpret_cast<queue_node *>(this + 1); }
    const queue_node *nodes() const
    {
        return reinterpret_cast<const queue_node *>(this + 1);
    }
};

static_assert(std::is_trivially_copyable_v<ticket_queue>);
static_assert(alignof(queue_node) <= alignof(ticket_queue));

// Owners a dispatch must wake, deduplicated, with their pids as recorded
// at the time, so the caller can wake them after dropping the lock.
struct wake_set {
    static constexpr uint32_t cap = 64;
    uint32_t owners[cap];
    int64_t pids[cap];
    uint32_t count;
    bool overflow; // more owners than fit: wake them all
};

size_t ticket_queue_bytes(uint32_t capacity);

// Largest capacity that fits in bytes (0 if not even the header fits).
uint32_t ticket_queue_capacity_for(size_t bytes);

void ticket_queue_init(ticket_queue *q, uint32_t capacity, uint32_t max_active,
                       uint32_t length);

// Applies new limits (reload); a larger max_active may admit waiters.
void ticket_queue_set_limits(ticket_queue *q, uint32_t max_active,
                             uint32_t length, wake_set *wake);

// Turns CoDel on (interval_ms > 0) or off; the controller starts afresh.
void ticket_queue_set_codel(ticket_queue *q, uint64_t target_ms,
                            uint64_t interval_ms);

// A request arrives: takes a slot (passed), parks (parked, *node set),
// or is turned away (rejected: queue full; no_room: no node left).
admission ticket_queue_enter(ticket_queue *q, uint32_t owner, uint64_t now_ms,
                             uint32_t *node);

// The same for a request of class priority (0..7, clamped). A full queue
// evicts the newest waiter of the lowest class below priority, if any, to
// park the arrival; the evicted node's owner is added to wake.
admission ticket_queue_enter(ticket_queue *q, uint32_t owner, uint32_t priority,
                             uint64_t now_ms, uint32_t *node, wake_set *wake);

// A request that held a slot is done; the slot goes to the next waiter.
void ticket_queue_release(ticket_queue *q, uint32_t owner, wake_set *wake);

// The same at time now_ms, which CoDel measures the next waiter's sojourn
// against.
void ticket_queue_release(ticket_queue *q, uint32_t owner, uint64_t now_ms,
                          wake_set *wake);

// Next node of owner's that was handed a slot, or no_node. The node is freed
// and counted as queued; *waited_ms is how long it was parked.
uint32_t ticket_queue_take_granted(ticket_queue *q, uint32_t owner,
                                   uint64_t now_ms, uint64_t *waited_ms);

// Next node of owner's that was evicted or dropped, or no_node; *state says
// which. The node is freed; *waited_ms is how long it was parked.
uint32_t ticket_queue_take_answered(ticket_queue *q, uint32_t owner,
                                    uint64_t now_ms, uint64_t *waited_ms,
                                    node_state *state);

// A parked request gives up. If it had just been handed a slot, the slot
// passes on to the next waiter.
void ticket_queue_leave(ticket_queue *q, uint32_t node, leave_reason why,
                        wake_set *wake);

// A worker process starts in slot owner: whatever a dead predecessor in
// that slot held is given back. Returns the number of slots and queue
// places reclaimed.
uint32_t ticket_queue_claim(ticket_queue *q, uint32_t owner, int64_t pid,
                            wake_set *wake);

// Gives back everything held by owner slots whose process is gone.
using pid_alive_fn = bool (*)(int64_t pid);
uint32_t ticket_queue_reap(ticket_queue *q, pid_alive_fn alive, wake_set *wake);

} // namespace async
