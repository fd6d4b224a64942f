// What a job record may carry besides its state, kept beside the job table
// in the same arena so the table itself stays as it is: the idempotency key
// a job was submitted with (draft-ietf-httpapi-idempotency-key-header) and
// the progress its backend reports.
//
// Keys: one entry per job record, at the record's index, holding a digest
// of the key and the fingerprint of the request (the caller hashes both).
// A key lives exactly as long as its job: an entry whose record was freed,
// reused (another generation) or expired is never found, and is unlinked
// when its index takes a new key. So keys are bounded by the records.
//
// Progress: a small pool of slots, one per job that reports while running;
// a slot whose job no longer runs is taken by the next that asks. Only
// running jobs report, and at most `active` run at once, so slots = active
// plus a margin suffices.
//
// The caller holds the arena's lock around every call.
#pragma once

#include "core/job_table.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

namespace async {

constexpr size_t key_digest_bytes = 16;  // SHA-256 of the key, cut
constexpr size_t fingerprint_bytes = 16; // SHA-256 of method, URI, body, cut
constexpr size_t progress_message_max = 256;
constexpr uint8_t progress_percent_max = 100;

struct job_extra {
    uint8_t key[key_digest_bytes];
    uint8_t fingerprint[fingerprint_bytes];
    uint32_t key_next;       // chain of keys; no_job ends it
    uint32_t key_generation; // of the record the key was bound to
    uint32_t progress_slot;  // no_job: none
    uint8_t has_key;         // linked on a key chain
    uint8_t pad[3];
};

struct progress_slot {
    uint32_t index; // of the job record; no_job: free
    uint32_t generation;
    uint16_t percent;
    uint16_t message_len;
    char message[progress_message_max];
};

struct job_extras {
    uint32_t capacity; // = the job table's records
    uint32_t buckets;  // key hash heads, a power of two
    uint32_t slots;    // progress slots
    uint32_t slot_cursor;
    uint64_t keys_bound; // counters, for the status report
    uint64_t keys_replayed;
    uint64_t keys_conflicts;
    uint64_t progress_updates;

    uint32_t *heads() { return reinterpret_cast<uint32_t *>(this + 1); }
    const uint32_t *heads() const
    {
        return reinterpret_cast<const uint32_t *>(this + 1);
    }
    job_extra *entries()
    {
        return reinterpret_cast<job_extra *>(heads() + buckets);
    }
    const job_extra *entries() const
    {
        return reinterpret_cast<const job_extra *>(heads() + buckets);
    }
    progress_slot *slot_array()
    {
        return reinterpret_cast<progress_slot *>(entries() + capacity);
    }
    const progress_slot *slot_array() const
    {
        return reinterpret_cast<const progress_slot *>(entries() + capacity);
    }
};

static_assert(std::is_trivially_copyable_v<job_extras>);
static_assert(std::is_trivially_copyable_v<job_extra>);
static_assert(sizeof(job_extras) % 8 == 0);
static_assert(sizeof(job_extra) % 4 == 0);
static_assert(sizeof(progress_slot) % 4 == 0);

// Bytes for capacity entries and slots progress slots (a multiple of 8).
size_t job_extras_bytes(uint32_t capacity, uint32_t slots);

void job_extras_init(job_extras *x, uint32_t capacity, uint32_t slots);

// The live job (of table t, at now_ms) bound to this key digest, or no_job.
uint32_t job_key_find(const job_extras *x, const job_table *t,
                      const uint8_t key[key_digest_bytes], uint64_t now_ms);

// Whether the job at index was submitted with this fingerprint.
bool job_key_same_request(const job_extras *x, uint32_t index,
                          const uint8_t fingerprint[fingerprint_bytes]);

// Binds a key to the job just inserted at index (its current generation).
void job_key_bind(job_extras *x, const job_table *t, uint32_t index,
                  const uint8_t key[key_digest_bytes],
                  const uint8_t fingerprint[fingerprint_bytes]);

enum class progress_result {
    ok,
    not_running, // queued or final: nothing is reported then
    no_slot      // every slot held by a running job (never with the sizing)
};

// Records the progress of the running job at index; message is cut to
// progress_message_max bytes (the caller validates it first).
progress_result job_progress_set(job_extras *x, const job_table *t,
                                 uint32_t index, uint8_t percent,
                                 std::string_view message);

struct progress_view {
    bool has;
    uint8_t percent;
    uint16_t message_len;
    char message[progress_message_max];
};

// The progress of the job at index if it is running and has reported.
void job_progress_get(const job_extras *x, const job_table *t, uint32_t index,
                      progress_view *out);

} // namespace async
