#include "core/job_extras.hpp"

#include <cstring>

namespace async {

namespace {

uint32_t buckets_for(uint32_t capacity)
{
    uint32_t b = 2;
    while (b < capacity && b < (1u << 30)) {
        b <<= 1;
    }
    return b;
}

uint32_t bucket_of(const job_extras *x, const uint8_t key[key_digest_bytes])
{
    // a SHA-256 digest: any four bytes are a fine hash
    uint32_t h = uint32_t{key[0]} | uint32_t{key[1]} << 8
                 | uint32_t{key[2]} << 16 | uint32_t{key[3]} << 24;
    return h & (x->buckets - 1);
}

void key_unlink(job_extras *x, uint32_t index)
{
    job_extra *e = x->entries();
    uint32_t *head = &x->heads()[bucket_of(x, e[index].key)];
    while (*head != no_job) {
        if (*head == index) {
            *head = e[index].key_next;
            break;
        }
        head = &e[*head].key_next;
    }
    e[index].has_key = 0;
    e[index].key_next = no_job;
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

size_t job_extras_bytes(uint32_t capacity, uint32_t slots)
{
    size_t bytes = sizeof(job_extras)
                   + sizeof(uint32_t) * size_t{buckets_for(capacity)}
                   + sizeof(job_extra) * size_t{capacity}
                   + sizeof(progress_slot) * size_t{slots};
    return (bytes + 7) / 8 * 8;
}

void job_extras_init(job_extras *x, uint32_t capacity, uint32_t slots)
{
    std::memset(x, 0, sizeof(*x));
    x->capacity = capacity;
    x->buckets = buckets_for(capacity);
    x->slots = slots;
    uint32_t *heads = x->heads();
    for (uint32_t i = 0; i < x->buckets; i++) {
        heads[i] = no_job;
    }
    job_extra *e = x->entries();
    std::memset(e, 0, sizeof(job_extra) * size_t{capacity});
    for (uint32_t i = 0; i < capacity; i++) {
        e[i].key_next = no_job;
        e[i].progress_slot = no_job;
    }
    progress_slot *s = x->slot_array();
    std::memset(s, 0, sizeof(progress_slot) * size_t{slots});
    for (uint32_t i = 0; i < slots; i++) {
        s[i].index = no_job;
    }
}

uint32_t job_key_find(const job_extras *x, const job_table *t,
                      const uint8_t key[key_digest_bytes], uint64_t now_ms)
{
    const job_extra *e = x->entries();
    const job_record *recs = t->records();
    for (uint32_t i = x->heads()[bucket_of(x, key)]; i != no_job;
         i = e[i].key_next) {
        if (i < t->capacity && std::memcmp(e[i].key, key, key_digest_bytes) == 0
            && record_alive(recs[i], e[i].key_generation, now_ms)) {
            return i;
        }
    }
    return no_job;
}

bool job_key_same_request(const job_extras *x, uint32_t index,
                          const uint8_t fingerprint[fingerprint_bytes])
{
    return std::memcmp(x->entries()[index].fingerprint, fingerprint,
                       fingerprint_bytes)
           == 0;
}

void job_key_bind(job_extras *x, const job_table *t, uint32_t index,
                  const uint8_t key[key_digest_bytes],
                  const uint8_t fingerprint[fingerprint_bytes])
{
    job_extra &e = x->entries()[index];
    if (e.has_key) {
        key_unlink(x, index);
    }
    std::memcpy(e.key, key, key_digest_bytes);
    std::memcpy(e.fingerprint, fingerprint, fingerprint_bytes);
    e.key_generation = t->records()[index].generation;
    uint32_t *head = &x->heads()[bucket_of(x, key)];
    e.key_next = *head;
    *head = index;
    e.has_key = 1;
    x->keys_bound++;
}

progress_result job_progress_set(job_extras *x, const job_table *t,
                                 uint32_t index, uint8_t percent,
                                 std::string_view message)
{
    const job_record &rec = t->records()[index];
    if (rec.state != job_state::running) {
        return progress_result::not_running;
    }
    job_extra &e = x->entries()[index];
    progress_slot *slots = x->slot_array();
    uint32_t s = e.progress_slot;
    if (s >= x->slots || slots[s].index != index
        || slots[s].generation != rec.generation) {
        s = no_job;
        for (uint32_t n = 0; n < x->slots; n++) {
            uint32_t i = (x->slot_cursor + n) % x->slots;
            if (!slot_taken(t, slots[i])) {
                s = i;
                x->slot_cursor = (i + 1) % x->slots;
                break;
            }
        }
        if (s == no_job) {
            return progress_result::no_slot;
        }
        slots[s].index = index;
        slots[s].generation = rec.generation;
        e.progress_slot = s;
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
    x->progress_updates++;
    return progress_result::ok;
}

void job_progress_get(const job_extras *x, const job_table *t, uint32_t index,
                      progress_view *out)
{
    out->has = false;
    out->percent = 0;
    out->message_len = 0;
    uint32_t s = x->entries()[index].progress_slot;
    if (s >= x->slots) {
        return;
    }
    const progress_slot &slot = x->slot_array()[s];
    if (slot.index != index || !slot_taken(t, slot)) {
        return;
    }
    out->has = true;
    out->percent = static_cast<uint8_t>(slot.percent);
    out->message_len = slot.message_len;
    std::memcpy(out->message, slot.message, slot.message_len);
}

} // namespace async
