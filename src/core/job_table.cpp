#include "core/job_table.hpp"

namespace async {

namespace {

uint32_t bucket_of(const job_table *t, const uint8_t id[id_bytes])
{
    // ids are random: any four bytes are a fine hash
    return hash_first4(id) & (t->buckets - 1);
}

void unlink(job_table *t, uint32_t index)
{
    job_record *recs = t->records();
    uint32_t *head = &t->heads()[bucket_of(t, recs[index].id)];
    while (*head != no_job) {
        if (*head == index) {
            *head = recs[index].next;
            return;
        }
        head = &recs[*head].next;
    }
}

void count_move(job_table *t, job_state from, job_state to)
{
    t->count[static_cast<size_t>(from)]--;
    t->count[static_cast<size_t>(to)]++;
}

} // namespace

std::string_view job_state_name(job_state s) noexcept
{
    switch (s) {
        case job_state::queued:
            return "queued";
        case job_state::running:
            return "running";
        case job_state::completed:
            return "completed";
        case job_state::failed:
            return "failed";
        case job_state::cancelled:
            return "cancelled";
        case job_state::free:
            break;
    }
    return "unknown";
}

std::string_view job_reason_name(job_reason r) noexcept
{
    switch (r) {
        case job_reason::result_too_large:
            return "result_too_large";
        case job_reason::worker_lost:
            return "worker_lost";
        case job_reason::shutdown:
            return "shutdown";
        case job_reason::zone_full:
            return "zone_full";
        case job_reason::upstream_error:
            return "upstream_error";
        case job_reason::internal_error:
            return "internal_error";
        case job_reason::cancelled:
            return "cancelled";
        case job_reason::truncated:
            return "truncated";
        case job_reason::owner_lost:
            return "owner_lost";
        case job_reason::store_unavailable:
            return "store_unavailable";
        case job_reason::none:
            break;
    }
    return "";
}

void job_table_mark_dirty(job_table *t, uint32_t index) noexcept
{
    job_record &rec = t->records()[index];
    if (rec.store_dirty == 0) {
        rec.store_dirty = 1;
        t->store_dirty++;
    }
}

void job_table_mark_clean(job_table *t, uint32_t index) noexcept
{
    job_record &rec = t->records()[index];
    if (rec.store_dirty != 0) {
        rec.store_dirty = 0;
        t->store_dirty--;
    }
}

size_t job_table_bytes(uint32_t capacity)
{
    size_t heads = size_t{hash_buckets_for(capacity)} * sizeof(uint32_t);
    heads = (heads + 7) / 8 * 8;
    return sizeof(job_table) + heads + size_t{capacity} * sizeof(job_record);
}

void job_table_init(job_table *t, uint32_t capacity)
{
    *t = job_table{};
    t->capacity = capacity;
    t->buckets = hash_buckets_for(capacity);
    t->free_head = no_job;
    for (uint32_t b = 0; b < t->buckets; b++) {
        t->heads()[b] = no_job;
    }
    job_record *recs = t->records();
    for (uint32_t i = capacity; i-- > 0;) {
        recs[i] = job_record{};
        recs[i].next = t->free_head;
        recs[i].queue_node = UINT32_MAX;
        t->free_head = i;
    }
    t->count[static_cast<size_t>(job_state::free)] = capacity;
}

uint32_t job_table_insert(job_table *t, const uint8_t id[id_bytes],
                          uint32_t owner, int64_t pid, uint64_t now_ms)
{
    if (t->free_head == no_job || job_table_find(t, id, 0) != no_job) {
        t->counters.rejected++;
        return no_job;
    }
    uint32_t i = t->free_head;
    job_record &rec = t->records()[i];
    t->free_head = rec.next;

    uint32_t generation = rec.generation + 1;
    rec = job_record{};
    for (size_t k = 0; k < id_bytes; k++) {
        rec.id[k] = id[k];
    }
    rec.generation = generation;
    rec.owner = owner;
    rec.owner_pid = pid;
    rec.created_ms = now_ms;
    rec.queue_node = UINT32_MAX;
    rec.state = job_state::queued;
    rec.store_dirty = 1;
    t->store_dirty++;

    uint32_t *head = &t->heads()[bucket_of(t, id)];
    rec.next = *head;
    *head = i;
    t->used++;
    count_move(t, job_state::free, job_state::queued);
    t->counters.submitted++;
    return i;
}

uint32_t job_table_find(const job_table *t, const uint8_t id[id_bytes],
                        uint64_t now_ms)
{
    const job_record *recs = t->records();
    uint32_t found = no_job;
    for (uint32_t i = t->heads()[bucket_of(t, id)]; i != no_job;
         i = recs[i].next) {
        // no early exit: the chain is walked to its end either way
        if (ct_equal(recs[i].id, id) && found == no_job) {
            found = i;
        }
    }
    if (found != no_job && now_ms != 0 && job_final(recs[found].state)
        && recs[found].expires_ms <= now_ms) {
        return no_job;
    }
    return found;
}

bool job_table_start(job_table *t, uint32_t index, uint64_t now_ms)
{
    job_record &rec = t->records()[index];
    if (rec.state != job_state::queued) {
        return false;
    }
    count_move(t, rec.state, job_state::running);
    rec.state = job_state::running;
    rec.started_ms = now_ms;
    job_table_mark_dirty(t, index);
    rec.queue_node = UINT32_MAX;
    return true;
}

bool job_table_finish(job_table *t, uint32_t index, job_state state,
                      job_reason reason, uint16_t result_status,
                      uint64_t now_ms, uint64_t ttl_ms)
{
    job_record &rec = t->records()[index];
    if (rec.state == job_state::free || job_final(rec.state)
        || !job_final(state)) {
        return false;
    }
    count_move(t, rec.state, state);
    rec.state = state;
    rec.reason = reason;
    rec.result_status = result_status;
    rec.finished_ms = now_ms;
    rec.expires_ms = now_ms + ttl_ms;
    rec.queue_node = UINT32_MAX;
    t->changes++;
    job_table_mark_dirty(t, index);
    switch (state) {
        case job_state::completed:
            t->counters.completed++;
            break;
        case job_state::failed:
            t->counters.failed++;
            break;
        default:
            t->counters.cancelled++;
            break;
    }
    return true;
}

void job_table_set_result(job_table *t, uint32_t index, uint64_t offset,
                          uint32_t bytes, uint16_t content_type_len)
{
    job_record &rec = t->records()[index];
    t->stored_bytes -= rec.result_bytes;
    rec.result_offset = offset;
    rec.result_bytes = bytes;
    rec.content_type_len = content_type_len;
    t->stored_bytes += bytes;
}

void job_table_remove(job_table *t, uint32_t index)
{
    job_record &rec = t->records()[index];
    if (rec.state == job_state::free) {
        return;
    }
    unlink(t, index);
    t->stored_bytes -= rec.result_bytes;
    count_move(t, rec.state, job_state::free);
    job_table_mark_clean(t, index);
    uint32_t generation = rec.generation;
    rec = job_record{};
    rec.generation = generation;
    rec.queue_node = UINT32_MAX;
    rec.next = t->free_head;
    t->free_head = index;
    t->used--;
    t->changes++;
}

uint32_t job_table_expire(job_table *t, uint64_t now_ms,
                          job_free_fn free_result, void *ctx)
{
    uint32_t n = 0;
    job_record *recs = t->records();
    for (uint32_t i = 0; i < t->capacity; i++) {
        if (!job_final(recs[i].state) || recs[i].expires_ms > now_ms) {
            continue;
        }
        if (recs[i].result_offset != 0 && free_result != nullptr) {
            free_result(ctx, recs[i].result_offset);
        }
        job_table_remove(t, i);
        t->counters.expired++;
        n++;
    }
    return n;
}

uint32_t job_table_lose_owner(job_table *t, uint32_t owner, int64_t keep_pid,
                              uint64_t now_ms, uint64_t ttl_ms)
{
    uint32_t n = 0;
    job_record *recs = t->records();
    for (uint32_t i = 0; i < t->capacity; i++) {
        job_record &rec = recs[i];
        if (rec.state != job_state::queued && rec.state != job_state::running) {
            continue;
        }
        if (rec.owner != owner || rec.owner_pid == keep_pid) {
            continue;
        }
        job_table_finish(t, i, job_state::failed, job_reason::worker_lost, 0,
                         now_ms, ttl_ms);
        n++;
    }
    return n;
}

uint32_t job_table_lose_dead(job_table *t, job_pid_alive_fn alive,
                             uint64_t now_ms, uint64_t ttl_ms)
{
    uint32_t n = 0;
    job_record *recs = t->records();
    for (uint32_t i = 0; i < t->capacity; i++) {
        job_record &rec = recs[i];
        if (rec.state != job_state::queued && rec.state != job_state::running) {
            continue;
        }
        if (alive(rec.owner_pid)) {
            continue;
        }
        job_table_finish(t, i, job_state::failed, job_reason::worker_lost, 0,
                         now_ms, ttl_ms);
        n++;
    }
    return n;
}

} // namespace async
