/* The claude CLI's command line and output, on the C side.
 *
 *   core.claude.argv{claude=, prompt=, prompt_on_stdin=, stream=, resume=,
 *       session_id=, budget=, model=, permission_mode=, allowed={},
 *       disallowed={}}
 *       -> argv | nil, refusal   (argument-injection guard, see claude.h;
 *       also refuses NUL characters and a non-finite budget)
 *   core.claude.event(line) -> type, payload [, progress]
 *       one stream-json line; nil for blank, non-JSON or non-object lines
 *       (unknown types such as tool_progress pass through by name and are
 *       ignored by the caller). For "assistant", progress is the list of
 *       progress lines: text blocks (first 500 code points) and
 *       "Using tool: <name>".
 *   core.claude.result(payload) -> fields: the result object reduced to
 *       trusted shapes (numbers only where numbers belong, error details
 *       capped at 5 x 300 code points, denied tools deduplicated, at most
 *       10 names of at most 100 code points).
 *   core.claude.format_double(x) -> shortest round-trip text ("0.5", "1.0") */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ad/claude.h"
#include "ad/utf8.h"
#include "bind/bind.h"

int luaopen_cjson(lua_State *L);

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
                        strcmp(nul, "resume") == 0 ? "session_id" : nul);
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

/* ---- stream-json lines ----------------------------------------------------- */

static void push_cut(lua_State *L, const char *s, size_t n, size_t max_cp)
{
    lua_pushlstring(L, s, utf8_prefix(s, n, max_cp));
}

/* [-0, +1, m] The progress lines of an assistant message at idx. */
static void push_progress(lua_State *L, int idx)
{
    bind_new_array(L, 0);
    int arr = lua_gettop(L);
    lua_Integer n = 0;
    if (lua_getfield(L, idx, "message") != LUA_TTABLE ||
        lua_getfield(L, -1, "content") != LUA_TTABLE) {
        lua_settop(L, arr);
        return;
    }
    int content = lua_gettop(L);
    lua_Integer len = (lua_Integer)lua_rawlen(L, content);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_settop(L, content);
        if (lua_rawgeti(L, content, i) != LUA_TTABLE) {
            continue; /* a non-object block is skipped, never fatal */
        }
        int block = lua_gettop(L);
        lua_getfield(L, block, "type");
        const char *type = lua_tostring(L, -1);
        if (type && !strcmp(type, "text")) {
            lua_getfield(L, block, "text");
            size_t tl = 0;
            const char *text = lua_type(L, -1) == LUA_TSTRING
                                   ? lua_tolstring(L, -1, &tl) : NULL;
            if (text && tl > 0) {
                push_cut(L, text, tl, 500);
                lua_rawseti(L, arr, ++n);
            }
        } else if (type && !strcmp(type, "tool_use")) {
            lua_getfield(L, block, "name");
            const char *name = lua_type(L, -1) == LUA_TSTRING
                                   ? lua_tostring(L, -1) : NULL;
            lua_pushfstring(L, "Using tool: %s", name && *name ? name : "?");
            lua_rawseti(L, arr, ++n);
        }
    }
    lua_settop(L, arr);
}

static int l_claude_event(lua_State *L)
{
    size_t n;
    const char *line = luaL_checklstring(L, 1, &n);
    size_t i = 0;
    while (i < n && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) {
        i++;
    }
    if (i == n || line[i] != '{') {
        return 0; /* blank, non-JSON, or not an object */
    }
    lua_pushvalue(L, lua_upvalueindex(1));    /* cjson.decode */
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_istable(L, -1)) {
        return 0;
    }
    int obj = lua_gettop(L);
    lua_getfield(L, obj, "type");
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "");
    }
    lua_pushvalue(L, obj);                    /* obj type obj */
    if (!strcmp(lua_tostring(L, -2), "assistant")) {
        push_progress(L, obj);
        return 3;
    }
    return 2;
}

/* ---- result payload --------------------------------------------------------- */

static bool truthy(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx);
    case LUA_TNUMBER:
        return lua_tonumber(L, idx) != 0;
    case LUA_TSTRING:
        return lua_rawlen(L, idx) > 0;
    case LUA_TTABLE:
        lua_pushnil(L);
        if (lua_next(L, idx)) {
            lua_pop(L, 2);
            return true;
        }
        return false;
    default:
        return false;
    }
}

/* [-0, +1, m] Any JSON value as text: strings as they are, the rest as
 * JSON (upvalue 2 is cjson.encode). */
static void push_as_text(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        lua_pushvalue(L, idx);
        return;
    }
    if (lua_isnil(L, idx) || lua_islightuserdata(L, idx)) {
        lua_pushliteral(L, "");
        return;
    }
    lua_pushvalue(L, lua_upvalueindex(2));
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pop(L, 1);
        luaL_tolstring(L, idx, NULL);
    }
}

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && strchr(" \t\r\n", (*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && strchr(" \t\r\n", (*s)[*n - 1])) {
        (*n)--;
    }
}

/* [-0, +1, m] "e1; e2; ..." from the errors list at idx, or "". */
static void push_error_detail(lua_State *L, int payload)
{
    luaL_Buffer b;
    int used = 0;
    lua_getfield(L, payload, "errors");
    int errs = lua_gettop(L);
    luaL_buffinit(L, &b);
    if (lua_istable(L, errs)) {
        lua_Integer len = (lua_Integer)lua_rawlen(L, errs);
        for (lua_Integer i = 1; i <= len && used < 5; i++) {
            lua_rawgeti(L, errs, i);
            push_as_text(L, -1);
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            trim(&s, &n);
            if (n > 0) {
                if (used++) {
                    lua_pushliteral(L, "; ");
                    luaL_addvalue(&b);
                }
                lua_pushlstring(L, s, utf8_prefix(s, n, 300));
                luaL_addvalue(&b);
            }
            lua_pop(L, 2);
        }
    }
    luaL_pushresult(&b);
    lua_remove(L, errs);
}

/* [-0, +1, m] Denied tool names (or nil). */
static void push_denied(lua_State *L, int payload)
{
    lua_getfield(L, payload, "permission_denials");
    if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        lua_pushnil(L);
        return;
    }
    int list = lua_gettop(L);
    bind_new_array(L, 0);
    int out = lua_gettop(L);
    lua_newtable(L);
    int seen = lua_gettop(L);
    lua_Integer n = 0, len = (lua_Integer)lua_rawlen(L, list);
    for (lua_Integer i = 1; i <= len && n < 10; i++) {
        lua_rawgeti(L, list, i);
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "tool_name");
            if (!truthy(L, -1)) {
                lua_pop(L, 1);
                lua_getfield(L, -1, "tool");
            }
            if (!truthy(L, -1)) {
                lua_pop(L, 1);
                lua_pushliteral(L, "unknown");
            }
        } else {
            lua_pushnil(L);
            lua_copy(L, -2, -1);
        }
        push_as_text(L, -1);
        size_t sl;
        const char *s = lua_tolstring(L, -1, &sl);
        lua_pushlstring(L, s, utf8_prefix(s, sl, 100));
        lua_pushvalue(L, -1);
        if (lua_rawget(L, seen) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushboolean(L, 1);
            lua_rawset(L, seen);
            lua_rawseti(L, out, ++n);
        } else {
            lua_pop(L, 2);
        }
        lua_settop(L, seen);
    }
    lua_pop(L, 1);            /* list out */
    lua_remove(L, list);
}

static void set_number(lua_State *L, int payload, const char *from,
                       const char *to, bool integer)
{
    lua_getfield(L, payload, from);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        if (integer && !lua_isinteger(L, -1)) {
            lua_Integer iv;
            if (lua_numbertointeger(lua_tonumber(L, -1), &iv)) {
                lua_pop(L, 1);
                lua_pushinteger(L, iv);
            }
        }
        lua_setfield(L, -2, to);
    } else {
        lua_pop(L, 1);
    }
}

static void set_string(lua_State *L, int payload, const char *from,
                       const char *to)
{
    lua_getfield(L, payload, from);
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
        lua_setfield(L, -2, to);
    } else {
        lua_pop(L, 1);
    }
}

static int l_claude_result(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_createtable(L, 0, 12);
    int out = 2;
    lua_getfield(L, 1, "result");
    push_as_text(L, -1);
    lua_setfield(L, out, "result");
    lua_pop(L, 1);
    lua_getfield(L, 1, "is_error");
    lua_pushboolean(L, truthy(L, -1));
    lua_setfield(L, out, "is_error");
    lua_pop(L, 1);
    set_string(L, 1, "session_id", "session_id");
    set_number(L, 1, "total_cost_usd", "cost_usd", false);
    set_number(L, 1, "duration_ms", "duration_ms", true);
    set_number(L, 1, "num_turns", "num_turns", true);
    set_string(L, 1, "subtype", "subtype");
    set_string(L, 1, "terminal_reason", "terminal_reason");

    push_error_detail(L, 1);
    if (lua_rawlen(L, -1) == 0) {
        lua_pop(L, 1);
        lua_getfield(L, 1, "subtype");
        size_t n = 0;
        const char *s = lua_type(L, -1) == LUA_TSTRING
                            ? lua_tolstring(L, -1, &n) : NULL;
        const char *t = s;
        size_t tn = n;
        if (s) {
            trim(&t, &tn);
        }
        if (s && tn > 0) {
            lua_pushliteral(L, "claude CLI reported '");
            lua_pushlstring(L, s, utf8_prefix(s, n, 300));
            lua_pushliteral(L, "'");
            lua_concat(L, 3);
            lua_setfield(L, out, "error_detail");
        }
        lua_pop(L, 1);
    } else {
        lua_setfield(L, out, "error_detail");
    }
    push_denied(L, 1);
    lua_setfield(L, out, "denied_tools");

    lua_getfield(L, out, "subtype");
    lua_getfield(L, out, "terminal_reason");
    const char *st = lua_tostring(L, -2);
    const char *tr = lua_tostring(L, -1);
    bool budget = (st && !strcmp(st, "error_max_budget_usd")) ||
                  (tr && !strcmp(tr, "budget_exhausted"));
    lua_pop(L, 2);
    lua_pushboolean(L, budget);
    lua_setfield(L, out, "budget_stop");
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

    /* A private cjson instance: decode for events, encode for stringifying
     * non-string values. */
    luaL_requiref(L, "cjson", luaopen_cjson, 0);         /* claude cjson */
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "encode");                      /* claude cj dec enc */
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_claude_event, 2);
    lua_setfield(L, -5, "event");
    lua_pushcclosure(L, l_claude_result, 2);
    lua_setfield(L, -3, "result");
    lua_pop(L, 1);                                        /* core claude */
    lua_setfield(L, -2, "claude");                        /* core */
}
