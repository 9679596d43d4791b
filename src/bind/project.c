/* Lua face of the project probes (see ad/introspect.h): core.project.
 *
 *   core.project.health(dir) -> true | false | nil, msg (probe error)
 *   core.project.stacks(dir) / core.project.dbs(dir) -> {labels}
 *   core.project.has(dir, name [, isdir]) -> true | false
 *   core.project.stacks_of(entries) / core.project.dbs_of(entries) -> {labels}
 *       from a listing {name = "file" | "dir"} (a project on another host)
 *   core.project.read(dir, rel [, max]) -> data, truncated | nil, msg, code
 *
 * Reads stay inside dir: introspect_read refuses paths that leave it. */
#include <stdlib.h>
#include <string.h>

#include "ad/introspect.h"
#include "bind/bind.h"

static int l_health(lua_State *L)
{
    int rc = introspect_health(luaL_checkstring(L, 1));
    if (rc < 0) {
        return bind_fail(L, rc, NULL);
    }
    lua_pushboolean(L, rc);
    return 1;
}

static int push_labels(lua_State *L, const char **labels, size_t n)
{
    bind_new_array(L, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, labels[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_stacks(lua_State *L)
{
    const char *labels[16];
    return push_labels(L, labels,
                       introspect_stacks(luaL_checkstring(L, 1), labels, 16));
}

static int l_dbs(lua_State *L)
{
    const char *labels[16];
    return push_labels(L, labels,
                       introspect_dbs(luaL_checkstring(L, 1), labels, 16));
}

/* entries (the table at index 1): name -> "file" | "dir". */
static int has_entry(void *ud, const char *name, int want_dir)
{
    lua_State *L = ud;
    lua_getfield(L, 1, name);
    const char *kind = lua_tostring(L, -1);
    int yes = kind && strcmp(kind, want_dir ? "dir" : "file") == 0;
    lua_pop(L, 1);
    return yes;
}

static int l_stacks_of(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *labels[16];
    return push_labels(L, labels, introspect_stacks_by(has_entry, L, labels, 16));
}

static int l_dbs_of(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    const char *labels[16];
    return push_labels(L, labels, introspect_dbs_by(has_entry, L, labels, 16));
}

/* core.project.read(dir, rel [, max]) -> data, truncated | nil, msg, code */
static int l_read_project(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *rel = luaL_checkstring(L, 2);
    lua_Integer max = luaL_optinteger(L, 3, 1024 * 1024);
    luaL_argcheck(L, max >= 0, 3, "must be >= 0");
    char *data;
    size_t len;
    int cut;
    int rc = introspect_read(dir, rel, (size_t)max, &data, &len, &cut);
    if (rc != 0) {
        return bind_fail(L, rc, rel);
    }
    lua_pushlstring(L, data, len);
    free(data);
    lua_pushboolean(L, cut);
    return 2;
}

static int l_has(lua_State *L)
{
    lua_pushboolean(L, introspect_has(luaL_checkstring(L, 1),
                                      luaL_checkstring(L, 2),
                                      lua_toboolean(L, 3)));
    return 1;
}

void bind_project_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"health", l_health},
        {"stacks", l_stacks},
        {"dbs", l_dbs},
        {"stacks_of", l_stacks_of},
        {"dbs_of", l_dbs_of},
        {"has", l_has},
        {"read", l_read_project},
        {NULL, NULL},
    };
    bind_subtable(L, "project", fns);
}
