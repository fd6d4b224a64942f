// The table of request-reply jobs: fixed records in a caller-given arena
// (shared memory in the module), found by their 16-byte id through a hash
// of chains, with states, expiry and the accounting of stored results.
// One trivially copyable block; links are record indices, never pointers.
// The caller holds the lock that guards the arena around every call.
#pragma once

#include "core/base64url.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace async {

constexpr uint32_t no_job = UINT32_MAX;

// The bucket count of a chained hash: the power of two at or above capacity
// (at least 2, at most 2^30), so that a mask picks the bucket.
inline uint32_t hash_buckets_for(uint32_t capacity)
{
    uint32_t b = 2;
    while (b < capacity && b < (1u << 30)) {
        b <<= 1;
    }
    return b;
}

// The first four bytes, little endian: a fine hash for random ids and for
// digests alike; the caller masks it with buckets - 1.
inline uint32_t hash_first4(const uint8_t *bytes)
{
    return uint32_t{bytes[0]} | uint32_t{bytes[1]} << 8
           | uint32_t{bytes[2]} << 16 | uint32_t{bytes[3]} << 24;
}

enum class job_state : uint8_t {
    free,
    queued,
    running,
    completed,
    failed,
    cancelled
};

constexpr size_t job_states = 6;

constexpr bool job_final(job_state s)
{
    return s == job_state::completed || s == job_state::failed
           || s == job_state::cancelled;
}

enum class job_reason : uint8_t {
    none,
    result_too_large, // the response was over max_result
    worker_lost,      // the worker running it died
    shutdown,         // its worker exited (reload) before it could end
    zone_full,        // no room in shared memory for the result
    upstream_error,   // the response ended before it was complete
    internal_error,   // the job could not be started
    cancelled,        // DELETE
    truncated,        // the body ended before its Content-Length/last chunk
    owner_lost,       // store=redis: the owner's lease ran out
    store_unavailable // store=redis: Redis could not take the job
};

std::string_view job_state_name(job_state s) noexcept;
std::string_view job_reason_name(job_reason r) noexcept;

struct job_record {
    uint8_t id[id_bytes];
    uint32_t next;  // hash chain, or the free list
    uint32_t owner; // process slot of the worker that runs it
    int64_t owner_pid;
    uint64_t created_ms; // wall clock, ms; 0: not yet
    uint64_t started_ms;
    uint64_t finished_ms;
    uint64_t expires_ms;    // finished_ms + ttl
    uint64_t result_offset; // where the caller stored the result; 0: none
    uint64_t watchers;      // bit (slot % 64) of workers with waiters
    uint32_t result_bytes;  // accounted size of the stored result
    uint32_t queue_node;    // its admission queue node while parked
    uint32_t generation;    // changes each time the record is reused
    uint16_t result_status;
    uint16_t content_type_len; // first bytes of the stored result
    job_state state;
    job_reason reason;
    uint8_t store_dirty; // changed since the external store last took it
    uint8_t pad[5];
};

struct job_counters {
    uint64_t submitted;
    uint64_t rejected; // table full, queue full or no room
    uint64_t completed;
    uint64_t failed;
    uint64_t cancelled;
    uint64_t expired;
};

struct job_table {
    uint32_t capacity; // records
    uint32_t buckets;  // hash heads, a power of two
    uint32_t used;
    uint32_t free_head;
    uint64_t stored_bytes;
    uint64_t changes;           // bumped by every final transition and removal
    uint32_t count[job_states]; // records by state
    uint32_t store_dirty;       // records with store_dirty set
    job_counters counters;

    uint32_t *heads() { return reinterpret_cast<uint32_t *>(this + 1); }
    const uint32_t *heads() const
    {
        return reinterpret_cast<const uint32_t *>(this + 1);
    }
    job_record *records()
    {
        return reinterpret_cast<job_record *>(heads() + buckets);
    }
    const job_record *records() const
    {
        return reinterpret_cast<const job_record *>(heads() + buckets);
    }
};

static_assert(std::is_trivially_copyable_v<job_table>);
static_assert(std::is_trivially_copyable_v<job_record>);
static_assert(sizeof(job_table) % alignof(job_record) == 0);

// Bytes for a table of capacity records (a multiple of 8).
size_t job_table_bytes(uint32_t capacity);

void job_table_init(job_table *t, uint32_t capacity);

// A new queued job owned by (owner, pid); no_job when every record is in
// use (or, never in practice, the id exists).
uint32_t job_table_insert(job_table *t, const uint8_t id[id_bytes],
                          uint32_t owner, int64_t pid, uint64_t now_ms);

// The live record with this id, or no_job. A finished job past its expiry
// is not found even before job_table_expire removes it. Every id on the
// chain is compared in constant time.
uint32_t job_table_find(const job_table *t, const uint8_t id[id_bytes],
                        uint64_t now_ms);

// queued -> running; false if the job is not queued (cancelled meanwhile).
// An external store (store=redis) mirrors the table: every transition marks
// its record dirty; the glue clears the mark when it has sent the record,
// and marks it again when the store did not take it.
void job_table_mark_dirty(job_table *t, uint32_t index) noexcept;
void job_table_mark_clean(job_table *t, uint32_t index) noexcept;
bool job_table_start(job_table *t, uint32_t index, uint64_t now_ms);

// Any unfinished state -> a final one; false if it was final already.
bool job_table_finish(job_table *t, uint32_t index, job_state state,
                      job_reason reason, uint16_t result_status,
                      uint64_t now_ms, uint64_t ttl_ms);

// Records where the result went and its size, for the accounting.
void job_table_set_result(job_table *t, uint32_t index, uint64_t offset,
                          uint32_t bytes, uint16_t content_type_len);

// Removes a record (its result must be freed by the caller).
void job_table_remove(job_table *t, uint32_t index);

// Removes every finished job whose expiry has passed, calling
// free_result(ctx, offset) for each stored result first. Returns how many.
using job_free_fn = void (*)(void *ctx, uint64_t offset);
uint32_t job_table_expire(job_table *t, uint64_t now_ms,
                          job_free_fn free_result, void *ctx);

// Fails, with reason worker_lost, every unfinished job of process slot
// owner whose recorded pid is not keep_pid. Returns how many.
uint32_t job_table_lose_owner(job_table *t, uint32_t owner, int64_t keep_pid,
                              uint64_t now_ms, uint64_t ttl_ms);

// The same for every owner whose process is gone.
using job_pid_alive_fn = bool (*)(int64_t pid);
uint32_t job_table_lose_dead(job_table *t, job_pid_alive_fn alive,
                             uint64_t now_ms, uint64_t ttl_ms);

} // namespace async
