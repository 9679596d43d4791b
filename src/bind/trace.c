/* Lua face of the trace's span records: core.trace.
 *
 *   core.trace.line(span [, depth, status, r]) -> the span's line of JSON
 *       (src/span.c) read straight from the span table: the keys of
 *       include/ad/span.h in their order. A key the table lacks is
 *       written as a new span has it (parent_id, agent, caller, goal,
 *       job_id, error_type, session_id, num_turns: null; task: "";
 *       status: "running"; cost_usd: 0; denied_tools: []; cached:
 *       false; depth: the depth given; pid: this process's); end and
 *       duration_ms only when the table has them. With status the span
 *       ends: end is the clock (or the span's own end when it holds one:
 *       it ended before its record is written) and duration_ms runs from
 *       start, and with a result r its error_type (when r.success is
 *       false), session_id, cost_usd, num_turns, denied_tools (when r has some)
 *       and cached come from r. The task is cut to 200 code points.
 *   core.trace.append(appender, limit, span [, depth, status, r]) -> true
 *       | nil, msg, code, line: that line and its newline appended through
 *       a core.fs appender as appender:write(line, "\n", limit) would,
 *       without a Lua string of it (the line only when the append failed).
 *   core.trace.span_id() -> 16 hex digits   core.trace.trace_id() -> 32:
 *       a random prefix read once per process and a counter.
 *   core.trace.now() -> epoch seconds rounded to the millisecond.
 *
 * Why C: a dispatch writes one span, and building its record as a Lua
 * table and encoding it key by key was a tenth of a dispatch's
 * instructions. The span the policy layer keeps (ad.domain.trace) holds
 * only what it starts with; the rest is filled in here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/ids.h"
#include "ad/span.h"
#include "bind/bind.h"

/* A line is shorter than this when cutting its free texts can make it so
 * (ad.storage.traces.MAX_LINE, the same): one write of a page or less is
 * one atomic append. */
#define MAX_LINE 4096

/* Code points of a task a span keeps. */
#define TASK_CUT 200

/* Denied tools read onto the C stack; more get a userdata. */
#define STRS_STACK 16

static double now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    double t = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    return floor(t * 1000 + 0.5) / 1000;
}

/* [-0, +0] The array of strings at idx as v (its strings stay referenced
 * by the table): up to STRS_STACK of them in stack, more in a userdata
 * kept in stack slot `slot` until the call returns (see ARGS). */
static void strs_of(lua_State *L, int idx, struct span_val *v,
                    struct span_str *stack, int slot)
{
    idx = lua_absindex(L, idx);
    size_t n = (size_t)lua_rawlen(L, idx);
    struct span_str *strs = stack;
    if (n > STRS_STACK) {
        strs = lua_newuserdatauv(L, n * sizeof *strs, 0);
        lua_replace(L, slot);
    }
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, idx, (lua_Integer)(i + 1)) != LUA_TSTRING) {
            luaL_error(L, "trace: denied_tools holds a %s",
                       luaL_typename(L, -1));
        }
        strs[i].s = lua_tolstring(L, -1, &strs[i].n);
        lua_pop(L, 1);
    }
    v->type = SPAN_STRS;
    v->strs = strs;
    v->nstrs = n;
}

/* [-0, +0] The value at idx (a string, number, boolean, null, or, where
 * slot is not 0, an array of strings: its storage in stack, or in slot)
 * as v; nil leaves v as it is (its default). */
static void val_of(lua_State *L, int idx, struct span_val *v,
                   struct span_str *stack, int slot)
{
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return;
    case LUA_TSTRING:
        v->type = SPAN_STR;
        v->str.s = lua_tolstring(L, idx, &v->str.n);
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            v->type = SPAN_INT;
            v->i = (long long)lua_tointeger(L, idx);
        } else {
            v->type = SPAN_NUM;
            v->d = lua_tonumber(L, idx);
        }
        return;
    case LUA_TBOOLEAN:
        v->type = SPAN_BOOL;
        v->b = lua_toboolean(L, idx);
        return;
    case LUA_TLIGHTUSERDATA: /* the JSON null */
        v->type = SPAN_NULL;
        return;
    case LUA_TTABLE:
        if (slot == 0) { /* (only denied_tools is a list) */
            luaL_error(L, "trace: a span field holds a table");
        }
        strs_of(L, idx, v, stack, slot);
        return;
    default:
        luaL_error(L, "trace: a span field holds a %s", luaL_typename(L, idx));
    }
}

/* The names l_line looks up, as its upvalues: interned once, so a
 * lookup is a hash probe (lua_getfield hashes its C string each time). */
enum r_key {
    R_SUCCESS, R_ERROR_TYPE, R_SESSION_ID, R_COST_USD, R_NUM_TURNS,
    R_DENIED_TOOLS, R_CACHED, R_NKEYS
};
static const char *const r_key_names[R_NKEYS] = {
    "success", "error_type", "session_id", "cost_usd", "num_turns",
    "denied_tools", "cached",
};
#define UV_SPAN_KEY(k) lua_upvalueindex(1 + (k))
#define UV_R_KEY(k) lua_upvalueindex(1 + SPAN_NKEYS + (k))

/* [-0, +R_NKEYS] r[key] for every key of a result, in r_key order (any
 * table: a result may have an __index). The values stay on the stack
 * until the line is written: a value an __index made is referenced by
 * nothing else, and the next allocation could collect it. */
static void push_r(lua_State *L, int idx)
{
    luaL_checkstack(L, R_NKEYS, "trace: out of stack");
    for (int k = 0; k < R_NKEYS; k++) {
        lua_pushvalue(L, UV_R_KEY(k));
        lua_gettable(L, idx);
    }
}

/* [-0, +0] span[key] (the plain table at idx) as vals[k]. */
static void field(lua_State *L, int idx, enum span_key k,
                  struct span_val *vals, struct span_str *stack, int slot)
{
    lua_pushvalue(L, UV_SPAN_KEY(k));
    if (lua_rawget(L, idx) != LUA_TNIL) {
        val_of(L, -1, &vals[k], stack, k == SPAN_DENIED_TOOLS ? slot : 0);
    }
    lua_pop(L, 1);
}

static void set_str(struct span_val *v, const char *s, size_t n)
{
    v->type = SPAN_STR;
    v->str.s = s;
    v->str.n = n;
}

/* The defaults of a span that has only what it started with. */
static void defaults(lua_State *L, struct span_val *vals, int depth_idx)
{
    static const enum span_key nulls[] = {
        SPAN_PARENT_ID, SPAN_AGENT, SPAN_CALLER, SPAN_GOAL, SPAN_JOB_ID,
        SPAN_ERROR_TYPE, SPAN_SESSION_ID, SPAN_NUM_TURNS,
    };
    static pid_t pid;
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) {
        vals[nulls[i]].type = SPAN_NULL;
    }
    set_str(&vals[SPAN_TASK], "", 0);
    set_str(&vals[SPAN_STATUS], "running", 7);
    vals[SPAN_COST_USD].type = SPAN_INT;
    vals[SPAN_DENIED_TOOLS].type = SPAN_STRS;
    vals[SPAN_CACHED].type = SPAN_BOOL;
    if (lua_isinteger(L, depth_idx)) {
        vals[SPAN_DEPTH].type = SPAN_INT;
        vals[SPAN_DEPTH].i = (long long)lua_tointeger(L, depth_idx);
    }
    if (!pid) {
        pid = getpid();
    }
    vals[SPAN_PID].type = SPAN_INT;
    vals[SPAN_PID].i = (long long)pid;
}

/* [-0, +0] What result r says of the span it ends, as
 * ad.domain.trace.finish always took it: r's values are at stack index r
 * on, as push_r left them. */
static void result_fields(lua_State *L, int r, struct span_val *vals,
                          struct span_str *stack, int slot)
{
    int success = r + R_SUCCESS;
    bool failed = lua_isboolean(L, success) && !lua_toboolean(L, success);
    vals[SPAN_ERROR_TYPE].type = SPAN_NULL;
    if (failed && lua_toboolean(L, r + R_ERROR_TYPE)) {
        val_of(L, r + R_ERROR_TYPE, &vals[SPAN_ERROR_TYPE], stack, 0);
    }
    vals[SPAN_SESSION_ID].type = SPAN_NULL;
    if (lua_toboolean(L, r + R_SESSION_ID)) {
        val_of(L, r + R_SESSION_ID, &vals[SPAN_SESSION_ID], stack, 0);
    }
    vals[SPAN_COST_USD].type = SPAN_INT;
    vals[SPAN_COST_USD].i = 0;
    if (lua_type(L, r + R_COST_USD) == LUA_TNUMBER) {
        val_of(L, r + R_COST_USD, &vals[SPAN_COST_USD], stack, 0);
    }
    vals[SPAN_NUM_TURNS].type = SPAN_NULL;
    int valid;
    lua_Integer turns = lua_tointegerx(L, r + R_NUM_TURNS, &valid);
    if (valid) {
        vals[SPAN_NUM_TURNS].type = SPAN_INT;
        vals[SPAN_NUM_TURNS].i = (long long)turns;
    }
    int denied = r + R_DENIED_TOOLS;
    if (lua_istable(L, denied) && lua_rawlen(L, denied) > 0) {
        strs_of(L, denied, &vals[SPAN_DENIED_TOOLS], stack, slot);
    }
    int cached = r + R_CACHED;
    vals[SPAN_CACHED].type = SPAN_BOOL;
    vals[SPAN_CACHED].b = lua_isboolean(L, cached) && lua_toboolean(L, cached);
}

/* The end of the span: end (now, unless the span holds the time it
 * ended: a record written after the reply, ad.domain.trace.finish) and
 * duration_ms from its start. */
static void ended(lua_State *L, struct span_val *vals)
{
    const struct span_val *e = &vals[SPAN_END];
    double t = e->type == SPAN_NUM ? e->d : e->type == SPAN_INT ? (double)e->i : now_ms();
    const struct span_val *s = &vals[SPAN_START];
    if (s->type != SPAN_INT && s->type != SPAN_NUM) {
        luaL_error(L, "trace: a span without a start cannot end");
    }
    double start = s->type == SPAN_INT ? (double)s->i : s->d;
    vals[SPAN_END].type = SPAN_NUM;
    vals[SPAN_END].d = t;
    double ms = floor((t - start) * 1000 + 0.5);
    vals[SPAN_DURATION_MS].type = SPAN_INT;
    /* (a start read back from disk can be anything) */
    vals[SPAN_DURATION_MS].i = ms > 0 && ms < 9e18 ? (long long)ms : 0;
}

/* The arguments of a span's line: span, depth, status, r from stack
 * index `span` on, then two stack slots for the storage of long arrays
 * of strings (the span's, the result's). */
#define ARGS 6

/* The line of the span whose arguments start at stack index span (the
 * stack ends with them): in buf when it fits (*text == buf), else in a
 * malloc'd *text the caller frees. Returns its length. */
static size_t span_text(lua_State *L, int span, char *buf, size_t cap,
                        char **text)
{
    luaL_checktype(L, span, LUA_TTABLE);
    struct span_val vals[SPAN_NKEYS] = {0};
    struct span_str stack[2][STRS_STACK];
    int top = lua_gettop(L), r = 0;
    bool ends = !lua_isnil(L, span + 2);
    /* The result's values first: an __index of r is the only Lua code
     * that can run here, and nothing read after it can be collected. */
    if (ends && lua_istable(L, span + 3)) {
        r = top + 1;
        push_r(L, span + 3);
    }
    defaults(L, vals, span + 1);
    luaL_checkstack(L, 8, "trace: out of stack");
    for (int k = 0; k < SPAN_NKEYS; k++) {
        field(L, span, (enum span_key)k, vals, stack[0], span + 4);
    }
    struct span_val *task = &vals[SPAN_TASK];
    if (task->type == SPAN_STR) {
        task->str.n = span_cut(task->str.s, task->str.n, TASK_CUT);
    }
    if (ends) {
        val_of(L, span + 2, &vals[SPAN_STATUS], stack[0], 0);
        ended(L, vals);
        if (r) {
            result_fields(L, r, vals, stack[1], span + 5);
        }
    }
    size_t len = span_format_to(vals, MAX_LINE, buf, cap, text);
    if (!*text) {
        luaL_error(L, "out of memory");
    }
    lua_settop(L, top);
    return len;
}

static int l_line(lua_State *L)
{
    lua_settop(L, ARGS);
    char buf[MAX_LINE + 512], *text;
    size_t len = span_text(L, 1, buf, sizeof buf, &text);
    lua_pushlstring(L, text, len);
    if (text != buf) {
        free(text);
    }
    return 1;
}

/* core.trace.append(appender, limit, span [, depth, status, r]) -> true |
 * nil, msg, code, line: the span's line and its newline appended with
 * appender:write's rules (limit: EFBIG when the file holds that many bytes
 * or more), without a Lua string of it; on failure the line is returned,
 * for the write to be tried again elsewhere as it was. */
static int l_append(lua_State *L)
{
    int fd = bind_fs_appender_fd(L, 1);
    lua_Integer limit = luaL_checkinteger(L, 2);
    lua_settop(L, 2 + ARGS);
    char buf[MAX_LINE + 512], *text;
    size_t len = span_text(L, 3, buf, sizeof buf - 1, &text);
    text[len] = '\n'; /* (over its NUL: there is room for one) */
    struct iovec iov = {text, len + 1};
    int rc = fs_append_iov(fd, &iov, 1, (off_t)limit);
    int n = 1;
    if (rc == 0) {
        lua_pushboolean(L, 1);
    } else {
        n = bind_fail(L, rc, "appender");
        lua_pushlstring(L, text, len);
        n++;
    }
    if (text != buf) {
        free(text);
    }
    return n;
}

/* ---- ids ----------------------------------------------------------- */

static char prefix[33];
static uint32_t counter;

/* The next count as 8 hex digits at out. */
static void next_count(char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (!prefix[0]) {
        ids_hex32(prefix);
    }
    uint32_t c = ++counter;
    for (int i = 7; i >= 0; i--) {
        out[i] = hex[c & 15];
        c >>= 4;
    }
}

static int l_span_id(lua_State *L)
{
    char id[16];
    next_count(id + 8);
    memcpy(id, prefix, 8);
    lua_pushlstring(L, id, sizeof id);
    return 1;
}

static int l_trace_id(lua_State *L)
{
    char id[32];
    next_count(id + 24);
    memcpy(id, prefix + 8, 24);
    lua_pushlstring(L, id, sizeof id);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, now_ms());
    return 1;
}

void bind_trace_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"span_id", l_span_id},
        {"trace_id", l_trace_id},
        {"now", l_now},
        {NULL, NULL},
    };
    bind_subtable(L, "trace", fns);
    lua_getfield(L, -1, "trace");
    /* (the two that read spans look their fields up by these names) */
    static const struct {
        const char *name;
        lua_CFunction fn;
    } readers[] = {{"line", l_line}, {"append", l_append}};
    for (size_t i = 0; i < sizeof readers / sizeof readers[0]; i++) {
        luaL_checkstack(L, SPAN_NKEYS + R_NKEYS, "trace: out of stack");
        for (int k = 0; k < SPAN_NKEYS; k++) {
            lua_pushstring(L, span_key_names[k]);
        }
        for (int k = 0; k < R_NKEYS; k++) {
            lua_pushstring(L, r_key_names[k]);
        }
        lua_pushcclosure(L, readers[i].fn, SPAN_NKEYS + R_NKEYS);
        lua_setfield(L, -2, readers[i].name);
    }
    lua_pop(L, 1);
}
