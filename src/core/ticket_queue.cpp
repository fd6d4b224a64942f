#include "core/ticket_queue.hpp"

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

// Hands free slots to the oldest waiters, moving each slot's ownership to
// the waiter's process at once so a crash of either side is accounted.
void dispatch(ticket_queue *q, wake_set *wake)
{
    queue_node *nodes = q->nodes();
    while (q->active < q->max_active && q->waiters.head != no_node) {
        uint32_t n = q->waiters.head;
        list_unlink(q, &q->waiters, n);
        queue_owner &owner = q->owners[nodes[n].owner];
        nodes[n].state = node_state::granted;
        q->waiting--;
        owner.waiting--;
        q->active++;
        owner.active++;
        list_push_back(q, &owner.granted, n);
        wake_add(wake, nodes[n].owner, owner.pid);
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
        if (nodes[n].state == node_state::waiting) {
            list_unlink(q, &q->waiters, n);
            q->waiting--;
        } else {
            list_unlink(q, &o.granted, n);
        }
        q->counters.cancelled++;
        free_node(q, n);
        dropped++;
    }
    dropped += o.active;
    q->active -= o.active;
    o.active = 0;
    o.waiting = 0;
    o.granted = {no_node, no_node};
    return dropped;
}

bool owner_holds_anything(const queue_owner &o)
{
    return o.active != 0 || o.waiting != 0 || o.granted.head != no_node;
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
    q->waiters = {no_node, no_node};
    q->free_head = no_node;
    for (auto &owner : q->owners) {
        owner.granted = {no_node, no_node};
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

admission ticket_queue_enter(ticket_queue *q, uint32_t owner, uint64_t now_ms,
                             uint32_t *node)
{
    queue_owner &o = q->owners[owner];

    // Strict FIFO: nobody overtakes a request that is already waiting.
    if (q->active < q->max_active && q->waiting == 0) {
        q->active++;
        o.active++;
        q->counters.passed++;
        return admission::passed;
    }
    if (q->waiting >= q->length) {
        q->counters.rejected++;
        return admission::rejected;
    }
    if (q->free_head == no_node) {
        q->counters.rejected++;
        return admission::no_room;
    }

    uint32_t n = q->free_head;
    queue_node &slot = q->nodes()[n];
    q->free_head = slot.next;
    slot.state = node_state::waiting;
    slot.owner = owner;
    slot.ticket = q->next_ticket++;
    slot.enqueued_ms = now_ms;
    list_push_back(q, &q->waiters, n);
    q->waiting++;
    o.waiting++;
    *node = n;
    return admission::parked;
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
    if (why == leave_reason::timed_out) {
        q->counters.timed_out++;
    } else {
        q->counters.cancelled++;
    }

    if (node.state == node_state::waiting) {
        list_unlink(q, &q->waiters, n);
        q->waiting--;
        o.waiting--;
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
