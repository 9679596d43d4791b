/* Shared declarations of the native module's parts (src/bind/). Each part
 * adds its subtable to the module table on top of the stack and creates
 * its metatables exactly once. */
#ifndef AD_BIND_H
#define AD_BIND_H
#include <lauxlib.h>
#include <lua.h>
#include <sys/stat.h>

/* Each registers the subtable named after its file: task.c -> core.task,
 * fs.c -> core.fs, and so on, so one grep finds both sides of a binding. */
void bind_task_register(lua_State *L);
void bind_proc_register(lua_State *L);
void bind_limiter_register(lua_State *L);
void bind_cache_register(lua_State *L);
void bind_yaml_register(lua_State *L);
void bind_fs_register(lua_State *L);
void bind_project_register(lua_State *L);
void bind_text_register(lua_State *L);
void bind_sys_register(lua_State *L);
void bind_claude_register(lua_State *L);
void bind_chan_register(lua_State *L);
void bind_signal_register(lua_State *L);
void bind_json_register(lua_State *L);
void bind_embed_register(lua_State *L);
void bind_jobs_register(lua_State *L);
void bind_keeper_register(lua_State *L);
void bind_crypto_register(lua_State *L);
void bind_trace_register(lua_State *L);
void bind_table_register(lua_State *L);

/* Shutdown: close the loop handles of the stdio channel and of the signal
 * watchers. */
void bind_chan_close(void);
void bind_signal_close(void);

/* [-0, +0, m] Sets module[name] to a new table of fns; the module table is
 * on top of the stack. */
void bind_subtable(lua_State *L, const char *name, const luaL_Reg *fns);

/* The metatable that marks a Lua table as a JSON/YAML array, so an empty
 * one encodes as [] rather than {} (registry name "ad.array"). */
#define AD_ARRAY_MT "ad.array"

/* [-0, +1, m] Pushes a new empty table marked as an array. */
void bind_new_array(lua_State *L, int narr);

/* [-0, +(1|3), m] Pushes nil, message, code for a negative errno/uv code
 * and returns 3; the message is prefixed with what when not NULL. */
int bind_fail(lua_State *L, int err, const char *what);

/* [-0, +0, v] The descriptor of the core.fs appender at idx (fs.c);
 * raises an error when it is closed. */
int bind_fs_appender_fd(lua_State *L, int idx);

/* [-0, +1, m] Pushes the file id of st, as core.fs.file_id gives it:
 * "dev:ino:size:mtime.ns" (fs.c). */
void bind_push_file_id(lua_State *L, const struct stat *st);

/* core.json.encoder (json_encode.c). */
int bind_json_encoder(lua_State *L);

int luaopen_ad_core(lua_State *L);

#endif
