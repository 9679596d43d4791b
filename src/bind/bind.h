/* Shared declarations of the native module's parts (src/bind/). Each part
 * adds its functions to the module table on top of the stack and creates
 * its metatables exactly once. */
#ifndef AD_BIND_H
#define AD_BIND_H
#include <lauxlib.h>
#include <lua.h>

void bind_task_register(lua_State *L);
void bind_proc_register(lua_State *L);
void bind_limiter_register(lua_State *L);
void bind_cache_register(lua_State *L);
void bind_yaml_register(lua_State *L);
void bind_fs_register(lua_State *L);
void bind_claude_register(lua_State *L);
void bind_chan_register(lua_State *L);
void bind_embed_register(lua_State *L);
void bind_jobs_register(lua_State *L);
void bind_chan_close(void);

/* The metatable that marks a Lua table as a JSON/YAML array, so an empty
 * one encodes as [] rather than {} (registry name "ad.array"). */
#define AD_ARRAY_MT "ad.array"

/* [-0, +1, m] Pushes a new empty table marked as an array. */
void bind_new_array(lua_State *L, int narr);

/* [-0, +(1|3), m] Pushes nil, message, code for a negative errno/uv code
 * and returns 3; the message is prefixed with what when not NULL. */
int bind_fail(lua_State *L, int err, const char *what);

int luaopen_ad_core(lua_State *L);

#endif
