/* The Lua state's allocator: blocks keep their bytes across resizes
 * between and within size classes, freed blocks are reused, and large
 * blocks go to malloc. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/pool.h"
#include "check.h"

static void fill(unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        b[i] = (unsigned char)(seed + i * 7);
    }
}

static bool same(const unsigned char *b, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] != (unsigned char)(seed + i * 7)) {
            return false;
        }
    }
    return true;
}

static void test_resize_keeps_bytes(void)
{
    struct pool p = {0};
    static const size_t sizes[] = {1,    15,    16,  17, 100, 256,
                                   257,  4096, 70000, 200, 3};
    unsigned char *b = pool_alloc(&p, NULL, 5 /* a type tag */, sizes[0]);
    fill(b, sizes[0], 1);
    for (size_t i = 1; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t keep = sizes[i] < sizes[i - 1] ? sizes[i] : sizes[i - 1];
        b = pool_alloc(&p, b, sizes[i - 1], sizes[i]);
        CHECK(b != NULL);
        CHECKF(same(b, keep, 1), "bytes lost resizing %zu -> %zu",
               sizes[i - 1], sizes[i]);
        CHECK(((uintptr_t)b & 15) == 0);
        fill(b, sizes[i], 1);
    }
    CHECK(pool_alloc(&p, b, 3, 0) == NULL);
    pool_free(&p);
}

static void test_reuse_and_independence(void)
{
    struct pool p = {0};
    enum { N = 5000 };
    static unsigned char *blocks[N];
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)(i * 37) % 300;
        blocks[i] = pool_alloc(&p, NULL, 0, n);
        CHECK(blocks[i] != NULL);
        fill(blocks[i], n, (unsigned)i);
    }
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)(i * 37) % 300;
        CHECKF(same(blocks[i], n, (unsigned)i), "block %d overwritten", i);
    }
    /* A freed small block is the next one of its class. */
    void *x = pool_alloc(&p, NULL, 0, 40);
    pool_alloc(&p, x, 40, 0);
    CHECK(pool_alloc(&p, NULL, 0, 33) == x);
    for (int i = 0; i < N; i++) {
        size_t n = 1 + (size_t)(i * 37) % 300;
        pool_alloc(&p, blocks[i], n, 0);
    }
    pool_free(&p);
    CHECK(p.chunks == NULL);
}

int main(void)
{
    test_resize_keeps_bytes();
    test_reuse_and_independence();
    return check_exit("test_pool");
}
