#include "core/job_extras.hpp"

#include <cstring>

namespace async {

namespace {

uint32_t bucket_of(const job_keys *k, const uint8_t key[key_digest_bytes])
{
    // a SHA-256 digest: any four bytes are a fine hash
    return hash_first4(key) & (k->buckets - 1);
}

void key_unlink(job_keys *k, uint32_t index)
{
    job_key_entry *e = k->entries();
    uint32_t *head = &k->heads()[bucket_of(k, e[index].key)];
    while (*head != no_job) {
        if (*head == index) {
            *head = e[index].next;
            break;
        }
        head = &e[*head].next;
    }
    e[index].linked = 0;
    e[index].next = no_job;
}

bool record_alive(const job_record &rec, uint32_t generation, uint64_t now_ms)
{
    return rec.generation == generation && rec.state != job_state::free
           && !(job_final(rec.state) && rec.expires_ms <= now_ms);
}

bool slot_taken(const job_table *t, const progress_slot &s)
{
    if (s.index == no_job || s.index >= t->capacity) {
        return false;
    }
    const job_record &rec = t->records()[s.index];
    return rec.generation == s.generation && rec.state == job_state::running;
}

} // namespace

size_t job_keys_bytes(uint32_t capacity)
{
    size_t bytes = sizeof(job_keys)
                   + sizeof(uint32_t) * size_t{hash_buckets_for(capacity)}
                   + sizeof(job_key_entry) * size_t{capacity};
    return (bytes + 7) / 8 * 8;
}

void job_keys_init(job_keys *k, uint32_t capacity)
{
    std::memset(k, 0, sizeof(*k));
    k->capacity = capacity;
    k->buckets = hash_buckets_for(capacity);
    uint32_t *heads = k->heads();
    for (uint32_t i = 0; i < k->buckets; i++) {
        heads[i] = no_job;
    }
    job_key_entry *e = k->entries();
    std::memset(e, 0, sizeof(job_key_entry) * size_t{capacity});
    for (uint32_t i = 0; i < capacity; i++) {
        e[i].next = no_job;
    }
}

size_t job_progress_bytes(uint32_t capacity, uint32_t slots)
{
    // slot_of() is padded to 8 bytes before the slots
    size_t bytes = sizeof(job_progress)
                   + sizeof(uint32_t) * (size_t{capacity} + (capacity & 1))
                   + sizeof(progress_slot) * size_t{slots};
    return (bytes + 7) / 8 * 8;
}

void job_progress_init(job_progress *p, uint32_t capacity, uint32_t slots)
{
    std::memset(p, 0, sizeof(*p));
    p->capacity = capacity;
    p->slots = slots;
    uint32_t *slot_of = p->slot_of();
    for (uint32_t i = 0; i < capacity; i++) {
        slot_of[i] = no_job;
    }
    progress_slot *s = p->slot_array();
    std::memset(s, 0, sizeof(progress_slot) * size_t{slots});
    for (uint32_t i = 0; i < slots; i++) {
        s[i].index = no_job;
    }
}

uint32_t job_key_find(const job_keys *k, const job_table *t,
                      const uint8_t key[key_digest_bytes], uint64_t now_ms)
{
    const job_key_entry *e = k->entries();
    const job_record *recs = t->records();
    for (uint32_t i = k->heads()[bucket_of(k, key)]; i != no_job;
         i = e[i].next) {
        if (i < t->capacity && std::memcmp(e[i].key, key, key_digest_bytes) == 0
            && record_alive(recs[i], e[i].generation, now_ms)) {
            return i;
        }
    }
    return no_job;
}

bool job_key_same_request(const job_keys *k, uint32_t index,
                          const uint8_t fingerprint[fingerprint_bytes])
{
    return std::memcmp(k->entries()[index].fingerprint, fingerprint,
                       fingerprint_bytes)
           == 0;
}

void job_key_bind(job_keys *k, const job_table *t, uint32_t index,
                  const uint8_t key[key_digest_bytes],
                  const uint8_t fingerprint[fingerprint_bytes])
{
    job_key_entry &e = k->entries()[index];
    if (e.linked) {
        key_unlink(k, index);
    }
    std::memcpy(e.key, key, key_digest_bytes);
    std::memcpy(e.fingerprint, fingerprint, fingerprint_bytes);
    e.generation = t->records()[index].generation;
    uint32_t *head = &k->heads()[bucket_of(k, key)];
    e.next = *head;
    *head = index;
    e.linked = 1;
    k->bound++;
}

progress_result job_progress_set(job_progress *p, const job_table *t,
                                 uint32_t index, uint8_t percent,
                                 std::string_view message)
{
    const job_record &rec = t->records()[index];
    if (rec.state != job_state::running) {
        return progress_result::not_running;
    }
    progress_slot *slots = p->slot_array();
    uint32_t s = p->slot_of()[index];
    if (s >= p->slots || slots[s].index != index
        || slots[s].generation != rec.generation) {
        s = no_job;
        for (uint32_t n = 0; n < p->slots; n++) {
            uint32_t i = (p->cursor + n) % p->slots;
            if (!slot_taken(t, slots[i])) {
                s = i;
                p->cursor = (i + 1) % p->slots;
                break;
            }
        }
        if (s == no_job) {
            return progress_result::no_slot;
        }
        slots[s].index = index;
        slots[s].generation = rec.generation;
        p->slot_of()[index] = s;
    }
    if (message.size() > progress_message_max) {
        message = message.substr(0, progress_message_max);
    }
    slots[s].percent =
        percent > progress_percent_max ? progress_percent_max : percent;
    slots[s].message_len = static_cast<uint16_t>(message.size());
    if (!message.empty()) {
        std::memcpy(slots[s].message, message.data(), message.size());
    }
    p->updates++;
    return progress_result::ok;
}

void job_progress_get(const job_progress *p, const job_table *t, uint32_t index,
                      progress_view *out)
{
    out->has = false;
    out->percent = 0;
    out->message_len = 0;
    uint32_t s = p->slot_of()[index];
    if (s >= p->slots) {
        return;
    }
    const progress_slot &slot = p->slot_array()[s];
    if (slot.index != index || !slot_taken(t, slot)) {
        return;
    }
    out->has = true;
    out->percent = static_cast<uint8_t>(slot.percent);
    out->message_len = slot.message_len;
    std::memcpy(out->message, slot.message, slot.message_len);
}

} // namespace async
