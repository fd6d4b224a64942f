// What a job record may carry besides its state, kept beside the job table
// in the same arena so the table itself stays as it is: the idempotency key
// a job was submitted with (draft-ietf-httpapi-idempotency-key-header) and
// the progress its backend reports.
//
// Keys: one entry per job record, at the record's index, holding a digest
// of the key and the fingerprint of the request (the caller hashes both;
// 128 bits of SHA-256 each keep collisions out of reach).
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

// One key, at the index of the job record it was bound to.
struct job_key_entry {
    uint8_t key[key_digest_bytes];
    uint8_t fingerprint[fingerprint_bytes];
    uint32_t next;       // chain of keys; no_job ends it
    uint32_t generation; // of the record the key was bound to
    uint32_t linked;     // on a chain
    uint32_t pad;
};

// The keys of a zone: made on its first idempotent submit, so zones that
// never see one pay nothing.
struct job_keys {
    uint32_t capacity; // = the job table's records
    uint32_t buckets;  // hash heads, a power of two
    uint64_t bound;    // counters, for the status report
    uint64_t replayed;
    uint64_t conflicts;

    uint32_t *heads() { return reinterpret_cast<uint32_t *>(this + 1); }
    const uint32_t *heads() const
    {
        return reinterpret_cast<const uint32_t *>(this + 1);
    }
    job_key_entry *entries()
    {
        return reinterpret_cast<job_key_entry *>(heads() + buckets);
    }
    const job_key_entry *entries() const
    {
        return reinterpret_cast<const job_key_entry *>(heads() + buckets);
    }
};

struct progress_slot {
    uint32_t index; // of the job record; no_job: free
    uint32_t generation;
    uint16_t percent;
    uint16_t message_len;
    char message[progress_message_max];
};

// The progress of a zone's running jobs: the slot of each record, then
// the slots.
struct job_progress {
    uint32_t capacity; // = the job table's records
    uint32_t slots;
    uint32_t cursor; // where the search for a free slot starts
    uint32_t pad;
    uint64_t updates;

    uint32_t *slot_of() { return reinterpret_cast<uint32_t *>(this + 1); }
    const uint32_t *slot_of() const
    {
        return reinterpret_cast<const uint32_t *>(this + 1);
    }
    progress_slot *slot_array()
    {
        return reinterpret_cast<progress_slot *>(slot_of() + capacity
                                                 + (capacity & 1));
    }
    const progress_slot *slot_array() const
    {
        return reinterpret_cast<const progress_slot *>(slot_of() + capacity
                                                       + (capacity & 1));
    }
};

static_assert(std::is_trivially_copyable_v<job_keys>);
static_assert(std::is_trivially_copyable_v<job_progress>);
static_assert(sizeof(job_keys) % 8 == 0);
static_assert(sizeof(job_progress) % 8 == 0);
static_assert(sizeof(job_key_entry) % 4 == 0);
static_assert(sizeof(progress_slot) % 4 == 0);

// Bytes for the keys of capacity records (a multiple of 8).
size_t job_keys_bytes(uint32_t capacity);
void job_keys_init(job_keys *k, uint32_t capacity);

// Bytes for the progress of capacity records in slots slots (idem).
size_t job_progress_bytes(uint32_t capacity, uint32_t slots);
void job_progress_init(job_progress *p, uint32_t capacity, uint32_t slots);

// The live job (of table t, at now_ms) bound to this key digest, or no_job.
uint32_t job_key_find(const job_keys *k, const job_table *t,
                      const uint8_t key[key_digest_bytes], uint64_t now_ms);

// Whether the job at index was submitted with this fingerprint.
bool job_key_same_request(const job_keys *k, uint32_t index,
                          const uint8_t fingerprint[fingerprint_bytes]);

// Binds a key to the job just inserted at index (its current generation).
void job_key_bind(job_keys *k, const job_table *t, uint32_t index,
                  const uint8_t key[key_digest_bytes],
                  const uint8_t fingerprint[fingerprint_bytes]);

enum class progress_result {
    ok,
    not_running, // queued or final: nothing is reported then
    no_slot      // every slot held by a running job (never with the sizing)
};

// Records the progress of the running job at index; message is cut to
// progress_message_max bytes (the caller validates it first).
progress_result job_progress_set(job_progress *p, const job_table *t,
                                 uint32_t index, uint8_t percent,
                                 std::string_view message);

struct progress_view {
    bool has;
    uint8_t percent;
    uint16_t message_len;
    char message[progress_message_max];
};

// The progress of the job at index if it is running and has reported.
void job_progress_get(const job_progress *p, const job_table *t, uint32_t index,
                      progress_view *out);

} // namespace async
