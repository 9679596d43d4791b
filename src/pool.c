/* A size-class allocator for the Lua state (see ad/pool.h). Why: a
 * dispatch allocates and frees about a thousand small objects (tables,
 * strings, closures, call frames) and undumping the policy modules at
 * startup several thousand; glibc's malloc and free took a sixth of the
 * instructions of each. A free-list pop or push is a few instructions.
 * Freed small blocks stay in their class for reuse; the chunks go back to
 * malloc when the state is closed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/pool.h"

static size_t class_of(size_t n)
{
    return (n + POOL_STEP - 1) / POOL_STEP;
}

static void *take(struct pool *p, size_t c)
{
    void *b = p->free[c];
    if (b) {
        memcpy(&p->free[c], b, sizeof(void *));
        return b;
    }
    size_t size = c * POOL_STEP;
    if (p->left < size) {
        /* The head of a chunk links the chunks; blocks start 16 bytes in,
         * so every block is 16-byte aligned like malloc's. */
        char *chunk = malloc(POOL_CHUNK);
        if (!chunk) {
            return NULL;
        }
        memcpy(chunk, &p->chunks, sizeof(void *));
        p->chunks = chunk;
        p->cur = chunk + POOL_STEP;
        p->left = POOL_CHUNK - POOL_STEP;
    }
    b = p->cur;
    p->cur += size;
    p->left -= size;
    return b;
}

static void give(struct pool *p, void *b, size_t c)
{
    memcpy(b, &p->free[c], sizeof(void *));
    p->free[c] = b;
}

/* Frees a block of osize bytes, wherever it came from. */
static void release(struct pool *p, void *ptr, size_t osize)
{
    if (osize <= POOL_MAX) {
        give(p, ptr, class_of(osize));
    } else {
        free(ptr);
    }
}

void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct pool *p = ud;
    if (!ptr) {
        osize = 0; /* a type tag, not a size */
    }
    if (nsize == 0) {
        if (ptr) {
            release(p, ptr, osize);
        }
        return NULL;
    }
    if (nsize <= POOL_MAX) {
        if (ptr && osize <= POOL_MAX && class_of(osize) == class_of(nsize)) {
            return ptr;
        }
        void *b = take(p, class_of(nsize));
        if (!b) {
            return NULL;
        }
        if (ptr) {
            memcpy(b, ptr, osize < nsize ? osize : nsize);
            release(p, ptr, osize);
        }
        return b;
    }
    if (ptr && osize <= POOL_MAX) {
        void *b = malloc(nsize);
        if (!b) {
            return NULL;
        }
        memcpy(b, ptr, osize);
        give(p, ptr, class_of(osize));
        return b;
    }
    return realloc(ptr, nsize);
}

void pool_free(struct pool *p)
{
    void *c = p->chunks;
    while (c) {
        void *next;
        memcpy(&next, c, sizeof next);
        free(c);
        c = next;
    }
    memset(p, 0, sizeof *p);
}
