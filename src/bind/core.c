/* luaopen_ad_core: the one native module, the only C/Lua boundary. It is
 * put in package.preload by main before any script runs. */
#include <string.h>

#include <uv.h>

#include "bind/bind.h"

void bind_new_array(lua_State *L, int narr)
{
    lua_createtable(L, narr, 0);
    luaL_setmetatable(L, AD_ARRAY_MT);
}

int bind_fail(lua_State *L, int err, const char *what)
{
    /* libuv's names cover only its own error set and leak a malloc'd
     * string for anything else (e.g. -EBADMSG): plain errno values use the
     * C library's static texts. */
    const char *msg, *name;
    if (err > -3000 && err < 0) {
        msg = strerror(-err);
        name = strerrorname_np(-err);
    } else {
        msg = uv_strerror(err);
        name = uv_err_name(err);
    }
    lua_pushnil(L);
    if (what) {
        lua_pushfstring(L, "%s: %s", what, msg);
    } else {
        lua_pushstring(L, msg);
    }
    lua_pushstring(L, name ? name : "EUNKNOWN");
    return 3;
}

void bind_subtable(lua_State *L, const char *name, const luaL_Reg *fns)
{
    int n = 0;
    while (fns[n].name) {
        n++;
    }
    lua_createtable(L, 0, n);                             /* core sub */
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, name);                            /* core */
}

/* The subtables, each made at its first use (core's __index): a server
 * answers its handshake with a third of them, and making all of them was
 * a tenth of its start. A part's objects come only from its own functions,
 * so its metatables exist by the time one is made. */
static const struct part {
    const char *name;
    void (*add)(lua_State *L);
} PARTS[] = {
    {"cache", bind_cache_register},     {"chan", bind_chan_register},
    {"claude", bind_claude_register},   {"crypto", bind_crypto_register},
    {"embed", bind_embed_register},     {"fs", bind_fs_register},
    {"jobs", bind_jobs_register},       {"json", bind_json_register},
    {"keeper", bind_keeper_register},   {"limiter", bind_limiter_register},
    {"proc", bind_proc_register},       {"project", bind_project_register},
    {"signal", bind_signal_register},   {"sys", bind_sys_register},
    {"table", bind_table_register},     {"task", bind_task_register},
    {"text", bind_text_register},       {"trace", bind_trace_register},
    {"yaml", bind_yaml_register},
};

/* Adds part p to the core table at index idx (absolute). */
static void add_part(lua_State *L, int idx, const struct part *p)
{
    lua_pushvalue(L, idx);
    p->add(L);
    lua_pop(L, 1);
}

static int core_index(lua_State *L) /* core key */
{
    if (lua_type(L, 2) != LUA_TSTRING) {
        return 0;
    }
    const char *key = lua_tostring(L, 2);
    for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++) {
        if (strcmp(key, PARTS[i].name) == 0) {
            add_part(L, 1, &PARTS[i]);
            lua_rawget(L, 1);
            return 1;
        }
    }
    return 0;
}

static int core_next(lua_State *L) /* core key */
{
    lua_settop(L, 2);
    if (lua_next(L, 1)) {
        return 2;
    }
    lua_pushnil(L);
    return 1;
}

/* pairs(core) lists every part, made or not. */
static int core_pairs(lua_State *L) /* core */
{
    for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++) {
        lua_getfield(L, 1, PARTS[i].name);
        lua_pop(L, 1);
    }
    lua_pushcfunction(L, core_next);
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

int luaopen_ad_core(lua_State *L)
{
    lua_newtable(L);
    if (luaL_newmetatable(L, AD_ARRAY_MT)) {
        lua_pushliteral(L, "array");
        lua_setfield(L, -2, "__name");
    }
    lua_setfield(L, -2, "array_mt");
    lua_pushliteral(L, AD_VERSION);
    lua_setfield(L, -2, "version");
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, core_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, core_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_setmetatable(L, -2);
    return 1;
}
