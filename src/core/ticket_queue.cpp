#include "core/ticket_queue.hpp"

#include <cmath>

namespace async {

namespace {

void list_push_back(ticket_queue *q, node_list *list, uint32_t n)
{
    queue_node *nodes = q->nodes();
    nodes[n].prev = list->tail;
    nodes[n].next = no_node;
    if (list->tail == no_node) {
        list->head = n;
    } else {
        nodes[list->tail].next = n;
    }
    list->tail = n;
}

void list_unlink(ticket_queue *q, node_list *list, uint32_t n)
{
    queue_node *nodes = q->nodes();
    uint32_t prev = nodes[n].prev;
    uint32_t next = nodes[n].next;
    if (prev == no_node) {
        list->head = next;
    } else {
        nodes[prev].next = next;
    }
    if (next == no_node) {
        list->tail = prev;
    } else {
        nodes[next].prev = prev;
    }
    nodes[n].prev = no_node;
    nodes[n].next = no_node;
}

void free_node(ticket_queue *q, uint32_t n)
{
    queue_node &node = q->nodes()[n];
    node.state = node_state::free;
    node.next = q->free_head;
    node.prev = no_node;
    q->free_head = n;
}

void wake_add(wake_set *wake, uint32_t owner, int64_t pid)
{
    for (uint32_t i = 0; i < wake->count; i++) {
        if (wake->owners[i] == owner) {
            return;
        }
    }
    if (wake->count == wake_set::cap) {
        wake->overflow = true;
        return;
    }
    wake->owners[wake->count] = owner;
    wake->pids[wake->count] = pid;
    wake->count++;
}

uint32_t clamp_class(uint32_t priority)
{
    return priority < queue_classes ? priority : queue_classes - 1;
}

// Head of the highest class that has waiters, or no_node.
uint32_t next_waiter(const ticket_queue *q)
{
    for (uint32_t c = queue_classes; c-- > 0;) {
        if (q->waiters[c].head != no_node) {
            return q->waiters[c].head;
        }
    }
    return no_node;
}

void park_node(ticket_queue *q, uint32_t n)
{
    queue_node &node = q->nodes()[n];
    list_push_back(q, &q->waiters[node.priority], n);
    q->waiting++;
    q->class_waiting[node.priority]++;
    q->owners[node.owner].waiting++;
}

void unpark_node(ticket_queue *q, uint32_t n)
{
    queue_node &node = q->nodes()[n];
    list_unlink(q, &q->waiters[node.priority], n);
    q->waiting--;
    q->class_waiting[node.priority]--;
    q->owners[node.owner].waiting--;
}

// A waiter is answered without a slot: its owner's worker takes it from
// the answered list and replies.
void answer_node(ticket_queue *q, uint32_t n, node_state state, wake_set *wake)
{
    queue_node &node = q->nodes()[n];
    unpark_node(q, n);
    node.state = state;
    queue_owner &owner = q->owners[node.owner];
    list_push_back(q, &owner.answered, n);
    queue_counters &cls = q->class_counters[node.priority];
    if (state == node_state::evicted) {
        q->counters.evicted++;
        cls.evicted++;
    } else {
        q->counters.dropped++;
        cls.dropped++;
    }
    wake_add(wake, node.owner, owner.pid);
}

uint64_t sojourn(const ticket_queue *q, uint32_t n, uint64_t now)
{
    uint64_t at = q->nodes()[n].enqueued_ms;
    return now > at ? now - at : 0;
}

uint64_t control_law(const codel_state &c, uint64_t t)
{
    double count = c.count > 0 ? static_cast<double>(c.count) : 1.0;
    auto step = static_cast<uint64_t>(static_cast<double>(c.interval_ms)
                                      / std::sqrt(count));
    return t + (step > 0 ? step : 1);
}

// Answers every waiter, of any class, parked longer than the target.
void drop_past_target(ticket_queue *q, uint64_t now, wake_set *wake)
{
    for (node_list &list : q->waiters) {
        uint32_t n;
        while ((n = list.head) != no_node
               && sojourn(q, n, now) > q->codel.target_ms) {
            answer_node(q, n, node_state::dropped, wake);
        }
    }
}

// RFC 8289's dequeue, with "drop the head" widened to "answer every waiter
// past the target": a request queue under overload drains far faster than
// packets would at one drop per control-law step.
void codel_dequeue(ticket_queue *q, uint32_t head, wake_set *wake)
{
    codel_state &c = q->codel;
    uint64_t now = q->now_ms;
    uint64_t s = sojourn(q, head, now);
    c.sojourn_ms = s;

    bool ok_to_drop = false;
    if (s < c.target_ms) {
        c.first_above_time = 0;
    } else if (c.first_above_time == 0) {
        c.first_above_time = now + c.interval_ms;
    } else if (now >= c.first_above_time) {
        ok_to_drop = true;
    }

    if (c.dropping) {
        if (!ok_to_drop) {
            c.dropping = 0;
            return;
        }
        // one step per dispatch, not the RFC's loop: after a quiet spell
        // now may be far past drop_next, and the step can round to 0 ms
        if (now >= c.drop_next) {
            c.count++;
            c.drop_next = control_law(c, now);
        }
        drop_past_target(q, now, wake);
        return;
    }
    if (!ok_to_drop) {
        return;
    }
    c.dropping = 1;
    uint32_t delta = c.count - c.lastcount;
    // the RFC's signed (now - drop_next) < 16 * interval
    bool recent = now < c.drop_next || now - c.drop_next < 16 * c.interval_ms;
    c.count = delta > 1 && recent ? delta : 1;
    c.drop_next = control_law(c, now);
    c.lastcount = c.count;
    drop_past_target(q, now, wake);
}

// Hands free slots to waiters, highest class first, moving each slot's
// ownership to the waiter's process at once so a crash of either side is
// accounted.
void dispatch(ticket_queue *q, wake_set *wake)
{
    queue_node *nodes = q->nodes();
    while (q->active < q->max_active) {
        uint32_t n = next_waiter(q);
        if (n == no_node) {
            q->codel.first_above_time = 0;
            q->codel.dropping = 0;
            return;
        }
        if (q->codel.interval_ms != 0) {
            codel_dequeue(q, n, wake);
            n = next_waiter(q);
            if (n == no_node) {
                continue;
            }
        }
        unpark_node(q, n);
        queue_owner &owner = q->owners[nodes[n].owner];
        nodes[n].state = node_state::granted;
        q->active++;
        owner.active++;
        list_push_back(q, &owner.granted, n);
        wake_add(wake, nodes[n].owner, owner.pid);
        if (q->waiting == 0) {
            // the queue ran empty: no standing queue, the interval restarts
            q->codel.first_above_time = 0;
            q->codel.dropping = 0;
        }
    }
}

// Returns how many slots and queue places were given back.
uint32_t drop_owner_holdings(ticket_queue *q, uint32_t owner)
{
    uint32_t dropped = 0;
    queue_owner &o = q->owners[owner];
    queue_node *nodes = q->nodes();
    for (uint32_t n = 0; n < q->capacity; n++) {
        if (nodes[n].state == node_state::free || nodes[n].owner != owner) {
            continue;
        }
        node_state state = nodes[n].state;
        if (state == node_state::waiting) {
            unpark_node(q, n);
        } else if (state == node_state::granted) {
            list_unlink(q, &o.granted, n);
        } else {
            // already counted as evicted or dropped
            list_unlink(q, &o.answered, n);
            free_node(q, n);
            continue;
        }
        q->counters.cancelled++;
        q->class_counters[nodes[n].priority].cancelled++;
        free_node(q, n);
        dropped++;
    }
    dropped += o.active;
    q->active -= o.active;
    o.active = 0;
    o.waiting = 0;
    o.granted = {no_node, no_node};
    o.answered = {no_node, no_node};
    return dropped;
}

bool owner_holds_anything(const queue_owner &o)
{
    return o.active != 0 || o.waiting != 0 || o.granted.head != no_node
           || o.answered.head != no_node;
}

} // namespace

size_t ticket_queue_bytes(uint32_t capacity)
{
    return sizeof(ticket_queue) + size_t{capacity} * sizeof(queue_node);
}

uint32_t ticket_queue_capacity_for(size_t bytes)
{
    if (bytes < sizeof(ticket_queue)) {
        return 0;
    }
    size_t n = (bytes - sizeof(ticket_queue)) / sizeof(queue_node);
    return n >= no_node ? no_node - 1 : static_cast<uint32_t>(n);
}

void ticket_queue_init(ticket_queue *q, uint32_t capacity, uint32_t max_active,
                       uint32_t length)
{
    *q = ticket_queue{};
    q->max_active = max_active;
    q->length = length;
    q->capacity = capacity;
    for (auto &list : q->waiters) {
        list = {no_node, no_node};
    }
    q->free_head = no_node;
    for (auto &owner : q->owners) {
        owner.granted = {no_node, no_node};
        owner.answered = {no_node, no_node};
    }
    queue_node *nodes = q->nodes();
    for (uint32_t n = capacity; n-- > 0;) {
        nodes[n] = queue_node{};
        free_node(q, n);
    }
}

void ticket_queue_set_limits(ticket_queue *q, uint32_t max_active,
                             uint32_t length, wake_set *wake)
{
    q->max_active = max_active;
    q->length = length;
    dispatch(q, wake);
}

void ticket_queue_set_codel(ticket_queue *q, uint64_t target_ms,
                            uint64_t interval_ms)
{
    q->codel = codel_state{};
    q->codel.target_ms = target_ms;
    q->codel.interval_ms = interval_ms;
}

admission ticket_queue_enter(ticket_queue *q, uint32_t owner, uint64_t now_ms,
                             uint32_t *node)
{
    wake_set wake{};
    return ticket_queue_enter(q, owner, 0, now_ms, node, &wake);
}

admission ticket_queue_enter(ticket_queue *q, uint32_t owner, uint32_t priority,
                             uint64_t now_ms, uint32_t *node, wake_set *wake)
{
    queue_owner &o = q->owners[owner];
    priority = clamp_class(priority);
    queue_counters &cls = q->class_counters[priority];
    if (now_ms > q->now_ms) {
        q->now_ms = now_ms;
    }

    // Nobody overtakes a request that is already waiting.
    if (q->active < q->max_active && q->waiting == 0) {
        q->active++;
        o.active++;
        q->counters.passed++;
        cls.passed++;
        return admission::passed;
    }
    if (q->waiting >= q->length) {
        // the newest of the lowest class below the arrival makes room
        uint32_t victim = no_node;
        for (uint32_t c = 0; c < priority; c++) {
            if (q->waiters[c].tail != no_node) {
                victim = q->waiters[c].tail;
                break;
            }
        }
        if (victim == no_node || q->free_head == no_node) {
            q->counters.rejected++;
            cls.rejected++;
            return admission::rejected;
        }
        answer_node(q, victim, node_state::evicted, wake);
    }
    if (q->free_head == no_node) {
        q->counters.rejected++;
        cls.rejected++;
        return admission::no_room;
    }

    uint32_t n = q->free_head;
    queue_node &slot = q->nodes()[n];
    q->free_head = slot.next;
    slot.state = node_state::waiting;
    slot.owner = owner;
    slot.priority = priority;
    slot.ticket = q->next_ticket++;
    slot.enqueued_ms = now_ms;
    park_node(q, n);
    *node = n;
    return admission::parked;
}

void ticket_queue_release(ticket_queue *q, uint32_t owner, uint64_t now_ms,
                          wake_set *wake)
{
    if (now_ms > q->now_ms) {
        q->now_ms = now_ms;
    }
    ticket_queue_release(q, owner, wake);
}

void ticket_queue_release(ticket_queue *q, uint32_t owner, wake_set *wake)
{
    queue_owner &o = q->owners[owner];
    // A slot reclaimed from a dead predecessor must not be given back twice.
    if (o.active == 0 || q->active == 0) {
        return;
    }
    o.active--;
    q->active--;
    dispatch(q, wake);
}

uint32_t ticket_queue_take_granted(ticket_queue *q, uint32_t owner,
                                   uint64_t now_ms, uint64_t *waited_ms)
{
    queue_owner &o = q->owners[owner];
    uint32_t n = o.granted.head;
    if (n == no_node) {
        return no_node;
    }
    list_unlink(q, &o.granted, n);
    queue_node &node = q->nodes()[n];
    *waited_ms = now_ms > node.enqueued_ms ? now_ms - node.enqueued_ms : 0;
    q->counters.queued++;
    q->class_counters[node.priority].queued++;
    free_node(q, n);
    return n;
}

uint32_t ticket_queue_take_answered(ticket_queue *q, uint32_t owner,
                                    uint64_t now_ms, uint64_t *waited_ms,
                                    node_state *state)
{
    queue_owner &o = q->owners[owner];
    uint32_t n = o.answered.head;
    if (n == no_node) {
        return no_node;
    }
    list_unlink(q, &o.answered, n);
    queue_node &node = q->nodes()[n];
    *waited_ms = now_ms > node.enqueued_ms ? now_ms - node.enqueued_ms : 0;
    *state = node.state;
    free_node(q, n);
    return n;
}

void ticket_queue_leave(ticket_queue *q, uint32_t n, leave_reason why,
                        wake_set *wake)
{
    if (n >= q->capacity) {
        return;
    }
    queue_node &node = q->nodes()[n];
    queue_owner &o = q->owners[node.owner];

    if (node.state == node_state::free) {
        return;
    }
    if (node.state == node_state::evicted
        || node.state == node_state::dropped) {
        // already answered and counted; only the node is left to free
        list_unlink(q, &o.answered, n);
        free_node(q, n);
        return;
    }
    queue_counters &cls = q->class_counters[node.priority];
    if (why == leave_reason::timed_out) {
        q->counters.timed_out++;
        cls.timed_out++;
    } else {
        q->counters.cancelled++;
        cls.cancelled++;
    }

    if (node.state == node_state::waiting) {
        unpark_node(q, n);
        free_node(q, n);
        return;
    }

    list_unlink(q, &o.granted, n);
    free_node(q, n);
    o.active--;
    q->active--;
    dispatch(q, wake);
}

uint32_t ticket_queue_claim(ticket_queue *q, uint32_t owner, int64_t pid,
                            wake_set *wake)
{
    queue_owner &o = q->owners[owner];
    uint32_t reclaimed = 0;
    if (o.pid != pid && owner_holds_anything(o)) {
        reclaimed = drop_owner_holdings(q, owner);
        dispatch(q, wake);
    }
    o.pid = pid;
    return reclaimed;
}

uint32_t ticket_queue_reap(ticket_queue *q, pid_alive_fn alive, wake_set *wake)
{
    uint32_t reclaimed = 0;
    for (uint32_t i = 0; i < max_queue_owners; i++) {
        queue_owner &o = q->owners[i];
        if (o.pid == 0 || !owner_holds_anything(o) || alive(o.pid)) {
            continue;
        }
        reclaimed += drop_owner_holdings(q, i);
        o.pid = 0;
    }
    dispatch(q, wake);
    return reclaimed;
}

} // namespace async
