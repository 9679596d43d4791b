/* The result cache: string keys to string values (the policy layer stores
 * encoded results, so every get hands back an independent copy).
 *
 * O(1) get/put/evict: a chained hash table for lookup and one doubly linked
 * list in stored_at order for FIFO eviction. Reads never refresh an entry;
 * re-putting a key refreshes its timestamp (moves it to the tail) and never
 * evicts. Each entry carries a tag (the agent name) so every entry of one
 * agent can be dropped when its configuration changes. Times are seconds on
 * a monotonic clock supplied by the caller, which keeps the module pure.
 *
 * Besides the entry count, the cache is bounded in bytes (key + tag +
 * value of every entry): storing evicts the oldest entries until the new
 * one fits, and an entry larger than the whole budget is not stored. */
#ifndef AD_CACHE_H
#define AD_CACHE_H
#include <stddef.h>
#include <stdint.h>

struct cache;

struct cache_stats {
    size_t size;
    size_t max_size;
    size_t bytes;
    size_t max_bytes;
    uint64_t hits;
    uint64_t misses;
    uint64_t evictions;
    double ttl;
};

/* max_size >= 1, ttl >= 0; no byte bound until cache_set_max_bytes.
 * NULL when out of memory. */
struct cache *cache_new(size_t max_size, double ttl);
void cache_free(struct cache *c);

/* Bounds the stored bytes (>= 1), evicting the oldest entries now if the
 * cache holds more; returns how many were evicted. */
size_t cache_set_max_bytes(struct cache *c, size_t max_bytes);

/* 1 on a hit (*val and *vlen point into the cache, valid until the next
 * mutation), 0 on a miss. An expired entry is deleted and counts as a miss
 * (expired means now - stored_at > ttl). */
int cache_get(struct cache *c, const char *key, size_t klen, double now,
              const char **val, size_t *vlen);

/* Stores a copy. 0; 1 when the entry alone is larger than max_bytes (it is
 * not stored, and an older entry under the key is dropped: it is stale);
 * or -ENOMEM (the cache is unchanged). */
int cache_put(struct cache *c, const char *key, size_t klen,
              const char *tag, size_t tlen, const char *val, size_t vlen,
              double now);

/* Drops every entry stored under tag; returns how many. */
size_t cache_drop_tag(struct cache *c, const char *tag, size_t tlen);

/* Drops every expired entry; returns how many. */
size_t cache_evict_expired(struct cache *c, double now);

/* Empties the cache and resets hits, misses and evictions. Returns the
 * number of entries dropped. */
size_t cache_clear(struct cache *c);

void cache_get_stats(const struct cache *c, struct cache_stats *out);

#endif
