/* The allocator of the Lua state: blocks of up to POOL_MAX bytes come from
 * free lists, one per 16-byte size class, carved from 64 KiB chunks;
 * larger ones from malloc. Lua tells the size of every block it frees or
 * resizes, so a block needs no header. */
#ifndef AD_POOL_H
#define AD_POOL_H
#include <stddef.h>

#define POOL_STEP 16
#define POOL_MAX 256
#define POOL_CHUNK 65536

struct pool {
    void *free[POOL_MAX / POOL_STEP + 1]; /* [c]: blocks of c * 16 bytes */
    char *cur;                            /* the rest of the newest chunk */
    size_t left;
    void *chunks;                         /* every chunk, for pool_free */
};

/* A lua_Alloc: ud is a zeroed struct pool. ptr == NULL means a new block
 * (osize is then a type tag, not a size); nsize == 0 frees. */
void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

/* Gives every chunk back to malloc (after lua_close). */
void pool_free(struct pool *p);

#endif
