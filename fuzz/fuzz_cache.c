/* The result cache under any sequence of operations: counts and bytes stay
 * within their bounds, and a value just stored is read back unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_bounds(const struct cache *c)
{
    struct cache_stats st;
    cache_get_stats(c, &st);
    if (st.size > st.max_size || (st.max_bytes && st.bytes > st.max_bytes)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    struct cache *c = cache_new(1 + data[0] % 8, data[1] % 4);
    if (!c) {
        return 0;
    }
    if (data[2] & 1) {
        cache_set_max_bytes(c, 1 + data[2] * 2);
    }
    double now = 0;
    size_t i = 3;
    while (i + 3 <= size) {
        uint8_t op = data[i], klen = data[i + 1] % 8, vlen = data[i + 2] % 64;
        i += 3;
        if (i + klen + vlen > size) {
            break;
        }
        const char *key = (const char *)data + i;
        const char *val = key + klen;
        const char *tag = (op & 16) ? "a" : "b";
        i += klen + vlen;
        const char *got;
        size_t glen;
        switch (op % 6) {
        case 0:
        case 1:
            if (cache_put(c, key, klen, tag, 1, val, vlen, now) == 0 &&
                (cache_get(c, key, klen, now, &got, &glen) != 1 ||
                 glen != vlen || memcmp(got, val, vlen) != 0)) {
                abort(); /* a stored value is not read back */
            }
            break;
        case 2:
            (void)cache_get(c, key, klen, now, &got, &glen);
            break;
        case 3:
            cache_drop_tag(c, tag, 1);
            break;
        case 4:
            now += op / 32;
            cache_evict_expired(c, now);
            break;
        default:
            if (op & 32) {
                cache_clear(c);
            } else {
                cache_set_max_bytes(c, 1 + vlen * 4);
            }
        }
        check_bounds(c);
    }
    cache_free(c);
    return 0;
}
