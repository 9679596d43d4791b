/* The claude CLI's command line, on the C side. Its output is read and
 * shaped in Lua, once (lua/ad/domain/claude.lua).
 *
 *   core.claude.argv{claude=, prompt=, prompt_on_stdin=, stream=, resume=,
 *       session_id=, budget=, model=, permission_mode=, json_schema=,
 *       allowed={}, disallowed={}}
 *       -> argv | nil, refusal   (argument-injection guard, see claude.h;
 *       also refuses NUL characters and a non-finite budget)
 *   core.claude.format_double(x) -> shortest round-trip text ("0.5", "1.0") */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ad/claude.h"
#include "bind/bind.h"

/* ---- argv ---------------------------------------------------------------- */

/* A NUL inside a Lua string would silently cut the C string that becomes
 * the argument ("\0--help" -> ""), so such values are refused: *nul is set
 * to the field's name (the first one seen wins). */
static void note_nul(lua_State *L, int idx, const char *name, const char **nul)
{
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (!*nul && strlen(s) != n) {
        *nul = name;
    }
}

static const char *opt_field(lua_State *L, const char *name, const char **nul)
{
    lua_getfield(L, 1, name);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TSTRING) {
        note_nul(L, -1, name, nul);
        s = lua_tostring(L, -1); /* anchored by the options table */
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "claude_argv: '%s' must be a string", name);
    }
    lua_pop(L, 1);
    return s;
}

static const char **list_field(lua_State *L, const char *name, size_t *n,
                               const char **nul)
{
    lua_getfield(L, 1, name);
    *n = 0;
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    luaL_checktype(L, -1, LUA_TTABLE);
    size_t len = lua_rawlen(L, -1);
    /* Userdata-owned array: freed by the collector even if we raise. */
    const char **v = lua_newuserdatauv(L, (len + 1) * sizeof *v, 0);
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, -2, (lua_Integer)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            luaL_error(L, "claude_argv: '%s' must be a list of strings", name);
        }
        note_nul(L, -1, name, nul);
        v[i] = lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    lua_insert(L, -2);
    lua_pop(L, 1);   /* leaves the userdata on the stack as an anchor */
    *n = len;
    return v;
}

static int l_claude_argv(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    struct claude_cmd c;
    const char *nul = NULL;
    memset(&c, 0, sizeof c);
    c.claude = opt_field(L, "claude", &nul);
    c.prompt = opt_field(L, "prompt", &nul);
    c.resume = opt_field(L, "resume", &nul);
    c.session_id = opt_field(L, "session_id", &nul);
    c.model = opt_field(L, "model", &nul);
    c.permission_mode = opt_field(L, "permission_mode", &nul);
    c.json_schema = opt_field(L, "json_schema", &nul);
    lua_getfield(L, 1, "stream");
    c.stream = lua_toboolean(L, -1);
    lua_getfield(L, 1, "budget");
    c.budget = luaL_optnumber(L, -1, 0);
    lua_getfield(L, 1, "prompt_on_stdin");
    c.prompt_on_stdin = lua_toboolean(L, -1);
    lua_pop(L, 3);
    luaL_argcheck(L, c.claude != NULL, 1, "'claude' is required");
    c.allowed = list_field(L, "allowed", &c.nallowed, &nul);
    c.disallowed = list_field(L, "disallowed", &c.ndisallowed, &nul);
    if (nul) {
        lua_pushnil(L);
        lua_pushfstring(L, "Refused to dispatch: %s contains a NUL character, "
                        "which would cut the argument short.",
                        strcmp(nul, "resume") == 0 ? "session_id"
                        : strcmp(nul, "json_schema") == 0 ? "response_schema" : nul);
        return 2;
    }
    if (!isfinite(c.budget)) {
        lua_pushnil(L);
        lua_pushliteral(L, "Refused to dispatch: the budget is not a finite number.");
        return 2;
    }

    char err[512];
    char **argv = NULL;
    int rc = claude_build_argv(&c, &argv, err, sizeof err);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == -22 ? err : "out of memory");
        return 2;
    }
    bind_new_array(L, 16);
    lua_Integer i = 0;
    for (char **p = argv; *p; p++) {
        lua_pushstring(L, *p);
        lua_rawseti(L, -2, ++i);
    }
    claude_argv_free(argv);
    return 1;
}

static int l_format_double(lua_State *L)
{
    char buf[48];
    claude_format_double(luaL_checknumber(L, 1), buf, sizeof buf);
    lua_pushstring(L, buf);
    return 1;
}

void bind_claude_register(lua_State *L)
{
    lua_newtable(L);                                      /* core claude */
    lua_pushcfunction(L, l_claude_argv);
    lua_setfield(L, -2, "argv");
    lua_pushcfunction(L, l_format_double);
    lua_setfield(L, -2, "format_double");
    lua_setfield(L, -2, "claude");                        /* core */
}
