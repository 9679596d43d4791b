/* Unit tests of the result cache (src/cache.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad/cache.h"
#include "check.h"

/* Convenience wrappers on NUL-terminated keys/values. */
static int put(struct cache *c, const char *k, const char *tag,
               const char *v, double now)
{
    return cache_put(c, k, strlen(k), tag, strlen(tag), v, strlen(v), now);
}

/* 1 and the value copied to out (when given) on a hit. */
static int get(struct cache *c, const char *k, double now, char *out,
               size_t outlen)
{
    const char *v = NULL;
    size_t vl = 0;
    int r = cache_get(c, k, strlen(k), now, &v, &vl);
    if (r == 1 && out) {
        snprintf(out, outlen, "%.*s", (int)vl, v);
    }
    return r;
}

static struct cache_stats stats(const struct cache *c)
{
    struct cache_stats s;
    memset(&s, 0xab, sizeof s);
    cache_get_stats(c, &s);
    return s;
}

static void test_hit_miss(void)
{
    struct cache *c = cache_new(8, 100);
    CHECK(c != NULL);
    struct cache_stats s = stats(c);
    CHECK_INT(s.size, 0);
    CHECK_INT(s.max_size, 8);
    CHECK_INT(s.hits, 0);
    CHECK_INT(s.misses, 0);
    CHECK_INT(s.evictions, 0);
    CHECK(s.ttl == 100);

    char buf[64];
    CHECK_INT(get(c, "a", 0, buf, sizeof buf), 0);
    CHECK_INT(put(c, "a", "t", "alpha", 0), 0);
    CHECK_INT(get(c, "a", 1, buf, sizeof buf), 1);
    CHECK_STR(buf, "alpha");
    CHECK_INT(get(c, "a", 2, buf, sizeof buf), 1);
    CHECK_INT(get(c, "b", 2, buf, sizeof buf), 0);
    s = stats(c);
    CHECK_INT(s.hits, 2);
    CHECK_INT(s.misses, 2);
    CHECK_INT(s.size, 1);

    /* The cache keeps its own copy of the value. */
    char val[] = "mutable";
    CHECK_INT(cache_put(c, "m", 1, "t", 1, val, strlen(val), 3), 0);
    val[0] = 'X';
    CHECK_INT(get(c, "m", 3, buf, sizeof buf), 1);
    CHECK_STR(buf, "mutable");

    /* Keys differing only in length or a byte are distinct. */
    CHECK_INT(put(c, "ab", "t", "1", 4), 0);
    CHECK_INT(put(c, "abc", "t", "2", 4), 0);
    CHECK_INT(get(c, "ab", 4, buf, sizeof buf), 1);
    CHECK_STR(buf, "1");
    CHECK_INT(get(c, "abc", 4, buf, sizeof buf), 1);
    CHECK_STR(buf, "2");
    CHECK_INT(get(c, "abd", 4, buf, sizeof buf), 0);

    /* Empty value and empty key are legitimate. */
    CHECK_INT(cache_put(c, "", 0, "", 0, "", 0, 5), 0);
    const char *v = NULL;
    size_t vl = 99;
    CHECK_INT(cache_get(c, "", 0, 5, &v, &vl), 1);
    CHECK_INT(vl, 0);
    cache_free(c);
}

static void test_ttl(void)
{
    /* Expired means now - stored_at > ttl (strict). */
    struct cache *c = cache_new(8, 10);
    CHECK_INT(put(c, "k", "t", "v", 100), 0);
    CHECK_INT(get(c, "k", 110, NULL, 0), 1);        /* exactly ttl: hit */
    CHECK_INT(get(c, "k", 110.001, NULL, 0), 0);    /* just past: miss */
    struct cache_stats s = stats(c);
    CHECK_INT(s.size, 0);                           /* and deleted */
    CHECK_INT(s.hits, 1);
    CHECK_INT(s.misses, 1);
    /* Deleted, not just hidden: an earlier now still misses. */
    CHECK_INT(get(c, "k", 100, NULL, 0), 0);
    cache_free(c);

    /* ttl 0: stored, a get at the same instant hits, later misses. */
    c = cache_new(4, 0);
    CHECK_INT(put(c, "z", "t", "v", 50), 0);
    CHECK_INT(stats(c).size, 1);
    CHECK_INT(get(c, "z", 50, NULL, 0), 1);
    CHECK_INT(get(c, "z", 50.5, NULL, 0), 0);
    s = stats(c);
    CHECK_INT(s.size, 0);
    CHECK_INT(s.hits, 1);
    CHECK_INT(s.misses, 1);
    cache_free(c);
}

static void test_fifo_eviction(void)
{
    struct cache *c = cache_new(3, 1000);
    CHECK_INT(put(c, "a", "t", "A", 1), 0);
    CHECK_INT(put(c, "b", "t", "B", 2), 0);
    CHECK_INT(put(c, "c", "t", "C", 3), 0);
    CHECK_INT(stats(c).evictions, 0);
    /* Reads do not refresh: "a" stays the oldest. */
    CHECK_INT(get(c, "a", 4, NULL, 0), 1);
    CHECK_INT(put(c, "d", "t", "D", 5), 0);
    struct cache_stats s = stats(c);
    CHECK_INT(s.size, 3);
    CHECK_INT(s.evictions, 1);
    CHECK_INT(get(c, "a", 6, NULL, 0), 0);
    CHECK_INT(get(c, "b", 6, NULL, 0), 1);
    CHECK_INT(get(c, "c", 6, NULL, 0), 1);
    CHECK_INT(get(c, "d", 6, NULL, 0), 1);

    /* Re-put of an existing key when full never evicts, updates the
     * value and moves the key to newest. Order now: b(2) c(3) d(5). */
    char buf[16];
    CHECK_INT(put(c, "b", "t", "B2", 7), 0);   /* order: c d b */
    s = stats(c);
    CHECK_INT(s.size, 3);
    CHECK_INT(s.evictions, 1);
    CHECK_INT(get(c, "b", 7, buf, sizeof buf), 1);
    CHECK_STR(buf, "B2");
    CHECK_INT(put(c, "e", "t", "E", 8), 0);    /* evicts c, not b */
    CHECK_INT(get(c, "c", 8, NULL, 0), 0);
    CHECK_INT(get(c, "b", 8, NULL, 0), 1);
    CHECK_INT(put(c, "f", "t", "F", 9), 0);    /* evicts d */
    CHECK_INT(get(c, "d", 9, NULL, 0), 0);
    CHECK_INT(get(c, "b", 9, NULL, 0), 1);
    CHECK_INT(get(c, "e", 9, NULL, 0), 1);
    CHECK_INT(get(c, "f", 9, NULL, 0), 1);
    CHECK_INT(stats(c).evictions, 3);
    cache_free(c);

    /* max_size 1: every new key replaces the previous one. */
    c = cache_new(1, 1000);
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "k%d", i);
        CHECK_INT(put(c, k, "t", k, i), 0);
        CHECK_INT(get(c, k, i, buf, sizeof buf), 1);
        CHECK_STR(buf, k);
    }
    s = stats(c);
    CHECK_INT(s.size, 1);
    CHECK_INT(s.evictions, 9);
    cache_free(c);
}

static void test_reput_refreshes_timestamp(void)
{
    struct cache *c = cache_new(4, 10);
    CHECK_INT(put(c, "k", "t", "v1", 0), 0);
    CHECK_INT(put(c, "k", "t", "v2", 8), 0);
    /* Without the refresh this would be 15 - 0 > 10: expired. */
    char buf[8];
    CHECK_INT(get(c, "k", 15, buf, sizeof buf), 1);
    CHECK_STR(buf, "v2");
    CHECK_INT(stats(c).size, 1);
    /* A read does not refresh: 8 + 10 is the last valid instant. */
    CHECK_INT(get(c, "k", 18, NULL, 0), 1);
    CHECK_INT(get(c, "k", 18.5, NULL, 0), 0);
    cache_free(c);

    /* Refreshed entries leave evict_expired's prefix order intact. */
    c = cache_new(4, 10);
    put(c, "a", "t", "A", 0);
    put(c, "b", "t", "B", 1);
    put(c, "a", "t", "A", 5);            /* order: b(1) a(5) */
    CHECK_INT(cache_evict_expired(c, 12), 1);
    CHECK_INT(get(c, "b", 12, NULL, 0), 0);
    CHECK_INT(get(c, "a", 12, NULL, 0), 1);
    cache_free(c);
}

static void test_drop_tag(void)
{
    struct cache *c = cache_new(16, 1000);
    put(c, "a1", "alpha", "1", 1);
    put(c, "b1", "beta", "1", 2);
    put(c, "a2", "alpha", "2", 3);
    put(c, "x", "alphabet", "1", 4);     /* a prefix is not the tag */
    put(c, "y", "alph", "1", 5);
    put(c, "a3", "alpha", "3", 6);
    CHECK_INT(cache_drop_tag(c, "alpha", 5), 3);
    CHECK_INT(stats(c).size, 3);
    CHECK_INT(get(c, "a1", 7, NULL, 0), 0);
    CHECK_INT(get(c, "a2", 7, NULL, 0), 0);
    CHECK_INT(get(c, "a3", 7, NULL, 0), 0);
    CHECK_INT(get(c, "b1", 7, NULL, 0), 1);
    CHECK_INT(get(c, "x", 7, NULL, 0), 1);
    CHECK_INT(get(c, "y", 7, NULL, 0), 1);
    CHECK_INT(cache_drop_tag(c, "alpha", 5), 0);
    CHECK_INT(cache_drop_tag(c, "nope", 4), 0);
    /* Dropping is not an eviction. */
    CHECK_INT(stats(c).evictions, 0);
    /* The cache still works after drops (list/bucket integrity). */
    CHECK_INT(put(c, "a1", "alpha", "new", 8), 0);
    CHECK_INT(get(c, "a1", 8, NULL, 0), 1);
    CHECK_INT(cache_drop_tag(c, "beta", 4), 1);
    CHECK_INT(stats(c).size, 3);
    cache_free(c);
}

static void test_evict_expired(void)
{
    struct cache *c = cache_new(16, 10);
    put(c, "a", "t", "A", 0);
    put(c, "b", "t", "B", 5);
    put(c, "c", "t", "C", 9);
    CHECK_INT(cache_evict_expired(c, 10), 0);    /* a: 10 - 0 == ttl */
    CHECK_INT(cache_evict_expired(c, 15.5), 2);  /* a, b */
    struct cache_stats s = stats(c);
    CHECK_INT(s.size, 1);
    CHECK_INT(s.evictions, 0);
    CHECK_INT(s.hits + s.misses, 0);            /* not a lookup */
    CHECK_INT(get(c, "c", 15.5, NULL, 0), 1);
    CHECK_INT(get(c, "a", 15.5, NULL, 0), 0);
    CHECK_INT(cache_evict_expired(c, 100), 1);
    CHECK_INT(stats(c).size, 0);
    CHECK_INT(cache_evict_expired(c, 1000), 0);
    cache_free(c);
}

static void test_clear(void)
{
    struct cache *c = cache_new(2, 1000);
    put(c, "a", "t", "A", 1);
    put(c, "b", "t", "B", 2);
    put(c, "c", "t", "C", 3);                   /* one eviction */
    get(c, "b", 3, NULL, 0);
    get(c, "zz", 3, NULL, 0);
    struct cache_stats s = stats(c);
    CHECK_INT(s.hits, 1);
    CHECK_INT(s.misses, 1);
    CHECK_INT(s.evictions, 1);
    CHECK_INT(cache_clear(c), 2);
    s = stats(c);
    CHECK_INT(s.size, 0);
    CHECK_INT(s.hits, 0);
    CHECK_INT(s.misses, 0);
    CHECK_INT(s.evictions, 0);
    CHECK_INT(s.max_size, 2);
    CHECK_INT(get(c, "b", 4, NULL, 0), 0);
    CHECK_INT(cache_clear(c), 0);
    /* Usable after a clear. */
    CHECK_INT(put(c, "b", "t", "B", 5), 0);
    CHECK_INT(get(c, "b", 5, NULL, 0), 1);
    CHECK_INT(stats(c).size, 1);
    cache_free(c);
}

static void test_many_keys(void)
{
    enum { N = 100000 };
    struct cache *c = cache_new(N, 1e9);
    char k[32], v[32], buf[32];
    int bad_put = 0, bad_get = 0;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        snprintf(v, sizeof v, "val-%d", i * 7);
        bad_put += put(c, k, (i & 1) ? "odd" : "even", v, i) != 0;
    }
    CHECK_INT(bad_put, 0);
    struct cache_stats s = stats(c);
    CHECK_INT(s.size, N);
    CHECK_INT(s.evictions, 0);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        snprintf(v, sizeof v, "val-%d", i * 7);
        if (get(c, k, N, buf, sizeof buf) != 1 || strcmp(buf, v) != 0) {
            bad_get++;
        }
    }
    CHECK_INT(bad_get, 0);
    CHECK_INT(stats(c).hits, N);
    /* N more keys: the first N are evicted in order. */
    for (int i = N; i < 2 * N; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        put(c, k, "new", "x", i);
    }
    s = stats(c);
    CHECK_INT(s.size, N);
    CHECK_INT(s.evictions, N);
    int present_old = 0, missing_new = 0;
    for (int i = 0; i < 2 * N; i += 97) {
        snprintf(k, sizeof k, "key-%d", i);
        int hit = get(c, k, 2 * N, NULL, 0);
        if (i < N) {
            present_old += hit;
        } else {
            missing_new += !hit;
        }
    }
    CHECK_INT(present_old, 0);
    CHECK_INT(missing_new, 0);
    CHECK_INT(cache_drop_tag(c, "new", 3), N);
    CHECK_INT(stats(c).size, 0);
    cache_free(c);
}

static void test_nul_bytes(void)
{
    struct cache *c = cache_new(8, 1000);
    static const char k1[] = {'a', '\0', 'b'};
    static const char k2[] = {'a', '\0', 'c'};
    static const char k3[] = {'a'};
    static const char val[] = {'x', '\0', 'y', '\0'};
    static const char tag[] = {'t', '\0', '1'};
    CHECK_INT(cache_put(c, k1, 3, tag, 3, val, 4, 0), 0);
    CHECK_INT(cache_put(c, k2, 3, "t", 1, "2", 1, 0), 0);
    CHECK_INT(cache_put(c, k3, 1, "t", 1, "3", 1, 0), 0);
    CHECK_INT(stats(c).size, 3);
    const char *v = NULL;
    size_t vl = 0;
    CHECK_INT(cache_get(c, k1, 3, 1, &v, &vl), 1);
    CHECK_INT(vl, 4);
    CHECK(v && memcmp(v, val, 4) == 0);
    CHECK_INT(cache_get(c, k2, 3, 1, &v, &vl), 1);
    CHECK(vl == 1 && v[0] == '2');
    CHECK_INT(cache_get(c, k3, 1, 1, &v, &vl), 1);
    CHECK(vl == 1 && v[0] == '3');
    /* Tag with an embedded NUL must match on its full length. */
    CHECK_INT(cache_drop_tag(c, "t", 1), 2);
    CHECK_INT(cache_drop_tag(c, tag, 3), 1);
    CHECK_INT(stats(c).size, 0);
    cache_free(c);
}

/* A byte budget: oldest entries go first, an oversized entry is never
 * stored (and drops a stale one under its key), clear returns to zero. */
static void test_byte_budget(void)
{
    struct cache *c = cache_new(100, 100);
    CHECK(c != NULL);
    CHECK_INT(cache_set_max_bytes(c, 30), 0);
    char big[11];
    memset(big, 'v', 10);
    big[10] = '\0';
    /* Each entry is 1 (key) + 1 (tag) + 10 (value) = 12 bytes. */
    CHECK_INT(put(c, "a", "t", big, 0), 0);
    CHECK_INT(put(c, "b", "t", big, 1), 0);
    struct cache_stats s = stats(c);
    CHECK_INT(s.bytes, 24);
    CHECK_INT(s.max_bytes, 30);
    CHECK_INT(put(c, "c", "t", big, 2), 0);       /* 36 > 30: "a" goes */
    s = stats(c);
    CHECK_INT(s.size, 2);
    CHECK_INT(s.bytes, 24);
    CHECK_INT(s.evictions, 1);
    CHECK_INT(get(c, "a", 3, NULL, 0), 0);
    CHECK_INT(get(c, "b", 3, NULL, 0), 1);
    CHECK_INT(get(c, "c", 3, NULL, 0), 1);

    /* Re-putting "b" with a larger value pushes the oldest other out. */
    char bigger[21];
    memset(bigger, 'w', 20);
    bigger[20] = '\0';
    CHECK_INT(put(c, "b", "t", bigger, 4), 0);    /* 12 + 22 > 30: "c" goes */
    s = stats(c);
    CHECK_INT(s.size, 1);
    CHECK_INT(s.bytes, 22);
    CHECK_INT(get(c, "b", 5, NULL, 0), 1);

    /* Larger than the whole budget: not stored, the stale value dropped. */
    char huge[40];
    memset(huge, 'x', 39);
    huge[39] = '\0';
    CHECK_INT(put(c, "b", "t", huge, 6), 1);
    CHECK_INT(put(c, "z", "t", huge, 6), 1);
    s = stats(c);
    CHECK_INT(s.size, 0);
    CHECK_INT(s.bytes, 0);
    CHECK_INT(get(c, "b", 7, NULL, 0), 0);

    /* Lowering the budget evicts at once; clear and drop keep the count. */
    CHECK_INT(put(c, "a", "t", big, 8), 0);
    CHECK_INT(put(c, "b", "u", big, 9), 0);
    CHECK_INT(cache_set_max_bytes(c, 12), 1);
    CHECK_INT(stats(c).bytes, 12);
    CHECK_INT(cache_drop_tag(c, "u", 1), 1);
    CHECK_INT(stats(c).bytes, 0);
    CHECK_INT(put(c, "a", "t", big, 10), 0);
    CHECK_INT(cache_clear(c), 1);
    CHECK_INT(stats(c).bytes, 0);
    cache_free(c);

    /* Without a budget, nothing is bounded by bytes. */
    c = cache_new(4, 100);
    CHECK(stats(c).max_bytes == SIZE_MAX);
    cache_free(c);
}

int main(void)
{
    test_hit_miss();
    test_ttl();
    test_fifo_eviction();
    test_reput_refreshes_timestamp();
    test_drop_tag();
    test_evict_expired();
    test_clear();
    test_many_keys();
    test_nul_bytes();
    test_byte_budget();
    return check_exit("test_cache");
}
