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
    lua_newtable(L);                                      /* core sub */
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, name);                            /* core */
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
    bind_task_register(L);
    bind_proc_register(L);
    bind_limiter_register(L);
    bind_cache_register(L);
    bind_yaml_register(L);
    bind_fs_register(L);
    bind_project_register(L);
    bind_text_register(L);
    bind_table_register(L);
    bind_sys_register(L);
    bind_claude_register(L);
    bind_chan_register(L);
    bind_signal_register(L);
    bind_json_register(L);
    bind_embed_register(L);
    bind_jobs_register(L);
    bind_keeper_register(L);
    bind_crypto_register(L);
    bind_trace_register(L);
    return 1;
}
