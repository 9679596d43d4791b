/* Lua face of the result cache (ad.cache).
 *
 *   core.cache.new(max_size, ttl [, max_bytes]) -> c
 *   c:get(key) -> value | nil      c:put(key, tag, value) -> stored (bool)
 *   c:drop(tag) -> n               c:evict_expired() -> n
 *   c:clear() -> n                 c:stats() -> {size=, max_size=, bytes=,
 *                                    max_bytes=, hits=, misses=, evictions=,
 *                                    ttl=}
 * Keys, tags and values are strings; time is the loop's monotonic clock.
 * clear() also hands the memory back: the values' Lua copies are garbage
 * only after a collection, and the C allocator keeps freed heap pages
 * unless it is asked to trim them. */
#include <uv.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "ad/cache.h"
#include "bind/bind.h"

#define CACHE_MT "ad.cache"

struct lcache {
    struct cache *c;
};

static double now(void)
{
    return (double)uv_hrtime() / 1e9;
}

static struct cache *check(lua_State *L)
{
    struct lcache *lc = luaL_checkudata(L, 1, CACHE_MT);
    if (!lc->c) {
        luaL_error(L, "cache is closed");
    }
    return lc->c;
}

static int l_cache(lua_State *L)
{
    lua_Integer max = luaL_checkinteger(L, 1);
    lua_Number ttl = luaL_checknumber(L, 2);
    lua_Integer max_bytes = luaL_optinteger(L, 3, 0);
    luaL_argcheck(L, max >= 1, 1, "max_size must be >= 1");
    luaL_argcheck(L, ttl >= 0, 2, "ttl must be >= 0");
    luaL_argcheck(L, max_bytes >= 0, 3, "max_bytes must be >= 1 (or 0: unbounded)");
    struct lcache *lc = lua_newuserdatauv(L, sizeof *lc, 0);
    lc->c = NULL;
    luaL_setmetatable(L, CACHE_MT);
    lc->c = cache_new((size_t)max, ttl);
    if (!lc->c) {
        return luaL_error(L, "out of memory");
    }
    if (max_bytes > 0) {
        cache_set_max_bytes(lc->c, (size_t)max_bytes);
    }
    return 1;
}

static int l_get(lua_State *L)
{
    struct cache *c = check(L);
    size_t kl;
    const char *k = luaL_checklstring(L, 2, &kl);
    const char *v;
    size_t vl;
    if (cache_get(c, k, kl, now(), &v, &vl)) {
        lua_pushlstring(L, v, vl);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int l_put(lua_State *L)
{
    struct cache *c = check(L);
    size_t kl, tl, vl;
    const char *k = luaL_checklstring(L, 2, &kl);
    const char *t = luaL_checklstring(L, 3, &tl);
    const char *v = luaL_checklstring(L, 4, &vl);
    int rc = cache_put(c, k, kl, t, tl, v, vl, now());
    if (rc < 0) {
        return luaL_error(L, "out of memory");
    }
    lua_pushboolean(L, rc == 0);
    return 1;
}

static int l_drop(lua_State *L)
{
    struct cache *c = check(L);
    size_t tl;
    const char *t = luaL_checklstring(L, 2, &tl);
    lua_pushinteger(L, (lua_Integer)cache_drop_tag(c, t, tl));
    return 1;
}

static int l_evict_expired(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)cache_evict_expired(check(L), now()));
    return 1;
}

static int l_clear(lua_State *L)
{
    size_t n = cache_clear(check(L));
    lua_gc(L, LUA_GCCOLLECT);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

static int l_stats(lua_State *L)
{
    struct cache_stats st;
    cache_get_stats(check(L), &st);
    lua_createtable(L, 0, 8);
    lua_pushinteger(L, (lua_Integer)st.size);
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, (lua_Integer)st.max_size);
    lua_setfield(L, -2, "max_size");
    lua_pushinteger(L, (lua_Integer)st.bytes);
    lua_setfield(L, -2, "bytes");
    if (st.max_bytes != SIZE_MAX) {
        lua_pushinteger(L, (lua_Integer)st.max_bytes);
        lua_setfield(L, -2, "max_bytes");
    }
    lua_pushinteger(L, (lua_Integer)st.hits);
    lua_setfield(L, -2, "hits");
    lua_pushinteger(L, (lua_Integer)st.misses);
    lua_setfield(L, -2, "misses");
    lua_pushinteger(L, (lua_Integer)st.evictions);
    lua_setfield(L, -2, "evictions");
    lua_pushnumber(L, st.ttl);
    lua_setfield(L, -2, "ttl");
    return 1;
}

static int l_gc(lua_State *L)
{
    struct lcache *lc = luaL_checkudata(L, 1, CACHE_MT);
    cache_free(lc->c);
    lc->c = NULL;
    return 0;
}

void bind_cache_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"get", l_get},
        {"put", l_put},
        {"drop", l_drop},
        {"evict_expired", l_evict_expired},
        {"clear", l_clear},
        {"stats", l_stats},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, CACHE_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"new", l_cache},
        {NULL, NULL},
    };
    bind_subtable(L, "cache", fns);
}
