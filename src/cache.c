/* Result cache; see cache.h for the contract. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ad/cache.h"

struct entry {
    struct entry *next_in_bucket;
    struct entry *older;
    struct entry *newer;
    uint64_t hash;
    double stored_at;
    char *key;
    size_t klen;
    char *tag;
    size_t tlen;
    char *val;
    size_t vlen;
};

struct cache {
    struct entry **buckets;
    size_t nbuckets;   /* power of two */
    struct entry *oldest;
    struct entry *newest;
    size_t size;
    size_t max_size;
    size_t bytes;      /* key + tag + value of every entry */
    size_t max_bytes;
    double ttl;
    uint64_t hits, misses, evictions;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct cache *cache_new(size_t max_size, double ttl)
{
    struct cache *c = calloc(1, sizeof *c);
    if (!c) {
        return NULL;
    }
    c->nbuckets = 16;
    while (c->nbuckets < max_size && c->nbuckets < (1u << 20)) {
        c->nbuckets <<= 1;
    }
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->max_size = max_size ? max_size : 1;
    c->max_bytes = SIZE_MAX;
    c->ttl = ttl;
    return c;
}

static size_t entry_bytes(size_t klen, size_t tlen, size_t vlen)
{
    return klen + tlen + vlen;
}

static void entry_free(struct entry *e)
{
    free(e->key);
    free(e->tag);
    free(e->val);
    free(e);
}

static void list_unlink(struct cache *c, struct entry *e)
{
    if (e->older) {
        e->older->newer = e->newer;
    } else {
        c->oldest = e->newer;
    }
    if (e->newer) {
        e->newer->older = e->older;
    } else {
        c->newest = e->older;
    }
    e->older = e->newer = NULL;
}

static void list_push_newest(struct cache *c, struct entry *e)
{
    e->older = c->newest;
    e->newer = NULL;
    if (c->newest) {
        c->newest->newer = e;
    } else {
        c->oldest = e;
    }
    c->newest = e;
}

static struct entry **find_slot(struct cache *c, const char *key, size_t klen,
                                uint64_t h)
{
    struct entry **pp = &c->buckets[h & (c->nbuckets - 1)];
    while (*pp) {
        struct entry *e = *pp;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            return pp;
        }
        pp = &e->next_in_bucket;
    }
    return pp;
}

static void remove_entry(struct cache *c, struct entry *e)
{
    struct entry **pp = find_slot(c, e->key, e->klen, e->hash);
    *pp = e->next_in_bucket;
    list_unlink(c, e);
    c->bytes -= entry_bytes(e->klen, e->tlen, e->vlen);
    entry_free(e);
    c->size--;
}

/* Evicts the oldest entries (never keep) until need more bytes fit. */
static size_t make_room(struct cache *c, size_t need, const struct entry *keep)
{
    size_t n = 0;
    while (c->bytes > c->max_bytes - need && c->oldest) {
        struct entry *victim = c->oldest == keep ? keep->newer : c->oldest;
        if (!victim) {
            break;
        }
        remove_entry(c, victim);
        c->evictions++;
        n++;
    }
    return n;
}

size_t cache_set_max_bytes(struct cache *c, size_t max_bytes)
{
    c->max_bytes = max_bytes ? max_bytes : 1;
    return make_room(c, 0, NULL);
}

void cache_free(struct cache *c)
{
    if (!c) {
        return;
    }
    cache_clear(c);
    free(c->buckets);
    free(c);
}

static bool expired(const struct cache *c, const struct entry *e, double now)
{
    return now - e->stored_at > c->ttl;
}

int cache_get(struct cache *c, const char *key, size_t klen, double now,
              const char **val, size_t *vlen)
{
    uint64_t h = fnv1a(key, klen);
    struct entry *e = *find_slot(c, key, klen, h);
    if (!e) {
        c->misses++;
        return 0;
    }
    if (expired(c, e, now)) {
        remove_entry(c, e);
        c->misses++;
        return 0;
    }
    c->hits++;
    *val = e->val;
    *vlen = e->vlen;
    return 1;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int cache_put(struct cache *c, const char *key, size_t klen,
              const char *tag, size_t tlen, const char *val, size_t vlen,
              double now)
{
    uint64_t h = fnv1a(key, klen);
    struct entry **slot = find_slot(c, key, klen, h);
    size_t need = entry_bytes(klen, tlen, vlen);
    if (need > c->max_bytes) {
        if (*slot) {
            remove_entry(c, *slot);
        }
        return 1;
    }
    char *v = dup_bytes(val, vlen);
    if (!v) {
        return -ENOMEM;
    }
    if (*slot) {
        struct entry *e = *slot;
        c->bytes -= e->vlen;
        free(e->val);
        e->val = v;
        e->vlen = vlen;
        e->stored_at = now;
        list_unlink(c, e);
        list_push_newest(c, e);
        c->bytes += vlen;
        make_room(c, 0, e); /* a larger value may push older entries out */
        return 0;
    }
    struct entry *e = calloc(1, sizeof *e);
    char *k = dup_bytes(key, klen);
    char *t = dup_bytes(tag, tlen);
    if (!e || !k || !t) {
        free(e);
        free(k);
        free(t);
        free(v);
        return -ENOMEM;
    }
    if (c->size >= c->max_size && c->oldest) {
        remove_entry(c, c->oldest);
        c->evictions++;
    }
    make_room(c, need, NULL);
    slot = find_slot(c, key, klen, h); /* the chain may have changed */
    e->hash = h;
    e->key = k;
    e->klen = klen;
    e->tag = t;
    e->tlen = tlen;
    e->val = v;
    e->vlen = vlen;
    e->stored_at = now;
    *slot = e;
    list_push_newest(c, e);
    c->size++;
    c->bytes += need;
    return 0;
}

size_t cache_drop_tag(struct cache *c, const char *tag, size_t tlen)
{
    size_t n = 0;
    struct entry *e = c->oldest;
    while (e) {
        struct entry *next = e->newer;
        if (e->tlen == tlen && memcmp(e->tag, tag, tlen) == 0) {
            remove_entry(c, e);
            n++;
        }
        e = next;
    }
    return n;
}

size_t cache_evict_expired(struct cache *c, double now)
{
    /* Entries are in stored_at order, so the expired ones are a prefix. */
    size_t n = 0;
    while (c->oldest && expired(c, c->oldest, now)) {
        remove_entry(c, c->oldest);
        n++;
    }
    return n;
}

size_t cache_clear(struct cache *c)
{
    size_t n = c->size;
    struct entry *e = c->oldest;
    while (e) {
        struct entry *next = e->newer;
        entry_free(e);
        e = next;
    }
    memset(c->buckets, 0, c->nbuckets * sizeof *c->buckets);
    c->oldest = c->newest = NULL;
    c->size = 0;
    c->bytes = 0;
    c->hits = c->misses = c->evictions = 0;
    return n;
}

void cache_get_stats(const struct cache *c, struct cache_stats *out)
{
    out->size = c->size;
    out->max_size = c->max_size;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    out->hits = c->hits;
    out->misses = c->misses;
    out->evictions = c->evictions;
    out->ttl = c->ttl;
}
