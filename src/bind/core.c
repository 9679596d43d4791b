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

/* The flat names of earlier releases, kept while call sites move to the
 * subtables: {old name, subtable, name}. */
static const char *const legacy[][3] = {
    {"spawn", "task", "spawn"},
    {"sleep", "task", "sleep"},
    {"event", "task", "event"},
    {"now", "task", "now"},
    {"time", "task", "time"},
    {"cancelled", "task", "cancelled"},
    {"current", "task", "current"},
    {"in_task", "task", "in_task"},
    {"set_budget", "task", "set_budget"},
    {"process", "proc", "spawn"},
    {"acquire", "limiter", "acquire"},
    {"set_limit", "limiter", "set_limit"},
    {"limiter_stats", "limiter", "stats"},
    {"cache", "cache", "new"},
    {"yaml_load", "yaml", "load"},
    {"yaml_dump", "yaml", "dump"},
    {"read_file", "fs", "read_file"},
    {"read_trusted", "fs", "read_trusted"},
    {"write_atomic", "fs", "write_atomic"},
    {"mkdirs", "fs", "mkdirs"},
    {"mkparent", "fs", "mkparent"},
    {"lock", "fs", "lock"},
    {"stat", "fs", "stat"},
    {"realpath", "fs", "realpath"},
    {"file_id", "fs", "file_id"},
    {"listdir", "fs", "listdir"},
    {"unlink", "fs", "unlink"},
    {"health", "project", "health"},
    {"stacks", "project", "stacks"},
    {"dbs", "project", "dbs"},
    {"has", "project", "has"},
    {"read_project", "project", "read"},
    {"utf8_valid", "text", "valid"},
    {"utf8_fix", "text", "fix"},
    {"utf8_len", "text", "len"},
    {"utf8_sub", "text", "sub"},
    {"uuid4", "text", "uuid4"},
    {"hex32", "text", "hex32"},
    {"valid_name", "text", "valid_name"},
    {"valid_job_id", "text", "valid_job_id"},
    {"getpid", "sys", "getpid"},
    {"getuid", "sys", "getuid"},
    {"isatty", "sys", "isatty"},
    {"environ", "sys", "environ"},
    {"which", "sys", "which"},
    {"claude_argv", "claude", "argv"},
    {"claude_event", "claude", "event"},
    {"claude_result", "claude", "result"},
    {"format_double", "claude", "format_double"},
    {"stdin_read", "chan", "stdin_read"},
    {"stdout_write", "chan", "stdout_write"},
    {"stdout_drain", "chan", "stdout_drain"},
    {"stderr_write", "chan", "stderr_write"},
    {"wait_signal", "signal", "wait"},
    {"raw_member", "json", "raw_member"},
    {"embedded", "embed", "source"},
    {"embedded_list", "embed", "list"},
    {"user_lua_dir", "embed", "user_lua_dir"},
    {"jobs_read", "jobs", "read"},
    {"jobs_write", "jobs", "write"},
    {"jobs_write_inplace", "jobs", "write_inplace"},
    {"jobs_remove", "jobs", "remove"},
    {"jobs_index_add", "jobs", "index_add"},
    {"jobs_index_set", "jobs", "index_set"},
    {"jobs_index_scan", "jobs", "index_scan"},
    {"jobs_index_write", "jobs", "index_write"},
    {"jobs_index_fresh", "jobs", "index_fresh"},
    {"jobs_index_stamp", "jobs", "index_stamp"},
    {"proc_identity", "jobs", "proc_identity"},
    {"kill_verified", "jobs", "kill_verified"},
    {"watch_dir", "jobs", "watch_dir"},
};

static void set_legacy_names(lua_State *L)
{
    for (size_t i = 0; i < sizeof legacy / sizeof legacy[0]; i++) {
        lua_getfield(L, -1, legacy[i][1]);                /* core sub */
        lua_getfield(L, -1, legacy[i][2]);                /* core sub fn */
        lua_setfield(L, -3, legacy[i][0]);
        lua_pop(L, 1);                                    /* core */
    }
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
    bind_sys_register(L);
    bind_claude_register(L);
    bind_chan_register(L);
    bind_signal_register(L);
    bind_json_register(L);
    bind_embed_register(L);
    bind_jobs_register(L);
    set_legacy_names(L);
    return 1;
}
