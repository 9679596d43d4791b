/* Lua face of child processes (ad.process).
 *
 *   core.proc.spawn{argv=, cwd=, env=, env_add=, timeout=, grace=, drain=,
 *                max_line=, stderr_max=, slot=, stdin=, stdin_keep=, gated=,
 *                max_output=, max_plain=, keeper=, adopt=, classify=}
 *       -> p | nil, message, code
 *       env_add: one more "NAME=value" after env (a dispatch's own
 *       variable next to an environment shared by every child, with no
 *       copy of that list per child); env: a list of strings, or what
 *       core.proc.env made of one
 *       keeper: started by the server's keeper (keeper.h) when there is
 *       one
 *       adopt = {pid=, out=, err=, exited=, status=, signal=}: no spawn,
 *       the object takes over that child of ours and its fds
 *   core.proc.env{"NAME=value", ...} -> an environment held in C (its
 *       strings copied once): an environment every child of a process
 *       shares is not read from its Lua list again on every spawn
 *   p:start()  (a gated child: go on to exec)
 *   p:read_line() -> line | nil (end of stdout) | nil, "cancelled"
 *                | nil, "skipped" (report_skipped: a line over max_line
 *                was dropped here; reading goes on after it)
 *                | line, kind (classify: a stream-json child; kind is the
 *                type the line's start names, "" for a JSON object whose
 *                start names none, false for a line that is no JSON
 *                object; ad/event_kind.h)
 *   p:wait() -> {exit_code=, signal=, timed_out=, stderr=, pid=,
 *                skipped_lines=, truncated=, dropped_bytes=}
 *   p:kill([hard]) ; p:pid() ; p:close() (also __close and __gc)
 *   p:kept() -> bool (handed off: the keeper takes the child over if
 *                this process exits; core.keeper.handoff)
 *   p:deadline(s)  the timeout brought forward to at most s from now
 *   p:write(bytes) -> true | nil, message   (stdin_keep: more input, in
 *                order, never blocking; an error once stdin is closed)
 *   p:close_stdin() (after what was written) ; p:stdin_open() -> bool
 *   p:limit_plain(n)  max_plain (0: none) from here on, counted afresh
 *                (a kept live child bounds each request's stray stdout)
 *   core.proc.detach{arg, ...} -> pid | nil, message (this program, detached)
 *
 * Lines and stderr reach Lua as valid UTF-8 (ill-formed bytes become
 * U+FFFD). stdin (a string) reaches the child on a private pipe, written
 * without blocking the loop; without it the child reads /dev/null. With
 * stdin_keep the pipe stays open after the data until the child is done. A gated
 * child exists (pid, group, start time) but does not exec before
 * p:start(); closing it first ends it without exec. With max_output, at
 * most that many bytes of stdout lines reach Lua; past it only the last
 * line is kept (in C, one buffer) and delivered at the end of stdout, and
 * info.truncated says so. With max_plain (a child whose output is JSON
 * events, the live channel), at most that many bytes of lines that are
 * not JSON objects reach Lua; past it they are dropped here, the events
 * still come, and info.truncated says so. Cancelling a task that waits on a process kills
 * the process group, unless spawned with soft_cancel: then the waiting
 * call returns nil, "cancelled" and the caller ends the child itself (a
 * live child is first asked to stop over its channel). A limiter slot handed to core.proc.spawn is released
 * when the child has exited, never earlier.
 *
 * Over 500 lines on purpose: one object, a child seen from Lua, whose
 * reads, wait, kill and close share its state and the task that waits.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ad/event_kind.h"
#include "ad/proc.h"
#include "ad/utf8.h"
#include "bind/bind.h"
#include "bind/limiter.h"
#include "ad/sched.h"

#define PROC_MT "ad.process"
#define ENV_MT "ad.process.env"

/* core.proc.env: the strings of a list, copied into one block, and the
 * NULL-terminated array of them. */
struct env_block {
    size_t n;
    char **v; /* n + 1 entries, into the same allocation */
};
#define QUEUE_HIGH (4u << 20) /* pause reading stdout above this many bytes */

struct line {
    struct line *next;
    size_t len;
    bool skipped;           /* a marker: a line over max_line was dropped */
    char data[];
};

struct lproc {
    struct proc *p;
    struct line *head, *tail;
    size_t queued;
    size_t skipped;
    bool eof;
    bool done;
    size_t max_output;      /* 0: no bound */
    size_t delivered;       /* bytes of lines (with '\n') handed on */
    size_t dropped;         /* bytes past max_output, not handed on */
    bool over;              /* max_output or max_plain was reached */
    size_t max_plain;       /* 0: no bound on lines that are not JSON objects */
    size_t plain;           /* bytes of such lines handed on */
    char *last;             /* the latest line past max_output */
    size_t last_len, last_cap;
    struct task *reader;    /* waiting in read_line */
    struct task *waiter;    /* waiting in wait */
    bool soft_cancel;       /* a cancelled wait leaves the child alone */
    bool report_skipped;    /* read_line tells of dropped lines */
    bool classify;          /* read_line tells each line's kind */
};

static struct lproc *check(lua_State *L)
{
    struct lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    if (!lp->p) {
        luaL_error(L, "process is closed");
    }
    return lp;
}

static void push_line(lua_State *L, const char *s, size_t n)
{
    if (utf8_valid(s, n)) {
        lua_pushlstring(L, s, n);
        return;
    }
    size_t m;
    char *fixed = utf8_sanitize(s, n, &m);
    if (fixed) {
        lua_pushlstring(L, fixed, m);
        free(fixed);
    } else {
        lua_pushliteral(L, "");
    }
}

/* A line for read_line, with its kind when the process classifies (one
 * scan of its start here instead of several searches of the whole line in
 * Lua). Returns the number of values pushed. */
static int push_read(lua_State *L, const struct lproc *lp, const char *s, size_t n)
{
    push_line(L, s, n);
    if (!lp->classify) {
        return 1;
    }
    const char *type;
    size_t len;
    switch (event_kind(s, n, &type, &len)) {
    case EVENT_TYPED:
        lua_pushlstring(L, type, len);
        break;
    case EVENT_OBJECT:
        lua_pushliteral(L, "");
        break;
    default:
        lua_pushboolean(L, 0);
        break;
    }
    return 2;
}

static void push_info(lua_State *L, struct lproc *lp)
{
    struct proc *p = lp->p;
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, proc_pid(p));
    lua_setfield(L, -2, "pid");
    lua_pushinteger(L, (lua_Integer)proc_exit_status(p));
    lua_setfield(L, -2, "exit_code");
    lua_pushinteger(L, proc_term_signal(p));
    lua_setfield(L, -2, "signal");
    lua_pushboolean(L, proc_timed_out(p));
    lua_setfield(L, -2, "timed_out");
    lua_pushinteger(L, (lua_Integer)lp->skipped);
    lua_setfield(L, -2, "skipped_lines");
    lua_pushboolean(L, lp->over);
    lua_setfield(L, -2, "truncated");
    lua_pushinteger(L, (lua_Integer)lp->dropped);
    lua_setfield(L, -2, "dropped_bytes");
    size_t n;
    const char *err = proc_stderr(p, &n);
    push_line(L, err, n);
    lua_setfield(L, -2, "stderr");
}

/* Hands a line (s NULL: the marker of a dropped line) to the waiting
 * reader or queues it. */
static void deliver(struct proc *p, struct lproc *lp, const char *s, size_t n)
{
    if (lp->reader) {
        struct task *t = lp->reader;
        lp->reader = NULL;
        lua_State *T = sched_thread(t);
        if (!s) {
            lua_pushnil(T);
            lua_pushliteral(T, "skipped");
            sched_resume(t, 2);
            return;
        }
        sched_resume(t, push_read(T, lp, s, n));
        return;
    }
    struct line *l = malloc(sizeof *l + n);
    if (!l) {
        lp->skipped++;
        return;
    }
    l->next = NULL;
    l->len = n;
    l->skipped = (s == NULL);
    if (s) {
        memcpy(l->data, s, n);
    }
    if (lp->tail) {
        lp->tail->next = l;
    } else {
        lp->head = l;
    }
    lp->tail = l;
    lp->queued += n;
    if (lp->queued > QUEUE_HIGH) {
        proc_pause(p);
    }
}

/* Past max_output: keep only the latest line (where a result object
 * would be), in one reused buffer; the one it replaces is dropped. */
static void keep_last(struct lproc *lp, const char *s, size_t n)
{
    if (lp->over) {
        lp->dropped += lp->last_len + 1;
    }
    lp->over = true;
    if (n > lp->last_cap) {
        char *b = realloc(lp->last, n);
        if (!b) {
            lp->dropped += n + 1;
            lp->last_len = 0;
            return;
        }
        lp->last = b;
        lp->last_cap = n;
    }
    memcpy(lp->last, s, n);
    lp->last_len = n;
}

/* True for a line that may be a JSON object, as the channel tells it
 * (event_kind: its first byte other than a blank is '{'), so that a line
 * counted as stray output is one the channel would not decode. */
static bool json_object_line(const char *s, size_t n)
{
    const char *type;
    size_t type_len;
    return event_kind(s, n, &type, &type_len) != EVENT_TEXT;
}

/* Past max_plain, a line that is no JSON object is dropped: stray output
 * of a live child (megabytes of it) never becomes Lua strings, while its
 * events (the result, control requests) still arrive after it. True when
 * the line was dropped. */
static bool drop_plain(struct lproc *lp, const char *s, size_t n)
{
    if (!lp->max_plain || json_object_line(s, n)) {
        return false;
    }
    if (lp->over || lp->plain + n + 1 > lp->max_plain) {
        lp->over = true;
        lp->dropped += n + 1;
        return true;
    }
    lp->plain += n + 1;
    return false;
}

static void on_line(struct proc *p, const char *s, size_t n, void *ud)
{
    struct lproc *lp = ud;
    if (!s) {
        lp->skipped++;
        if (lp->report_skipped) {
            deliver(p, lp, NULL, 0);
        }
        return;
    }
    if (drop_plain(lp, s, n)) {
        return;
    }
    if (lp->max_output &&
        (lp->over || lp->delivered + n + 1 > lp->max_output)) {
        keep_last(lp, s, n);
        return;
    }
    lp->delivered += n + 1;
    deliver(p, lp, s, n);
}

static void on_stdout_eof(struct proc *p, void *ud)
{
    struct lproc *lp = ud;
    if (lp->over) {
        deliver(p, lp, lp->last ? lp->last : "", lp->last_len);
    }
    lp->eof = true;
    if (lp->reader) {
        struct task *t = lp->reader;
        lp->reader = NULL;
        lua_pushnil(sched_thread(t));
        sched_resume(t, 1);
    }
}

static void on_done(struct proc *p, void *ud)
{
    struct lproc *lp = ud;
    (void)p;
    lp->done = true;
    if (lp->waiter) {
        struct task *t = lp->waiter;
        lp->waiter = NULL;
        push_info(sched_thread(t), lp);
        sched_resume(t, 1);
    }
}

static const struct proc_cbs CBS = {on_line, on_stdout_eof, NULL, on_done};

static void cancel_wait(struct task *t, void *data)
{
    struct lproc *lp = data;
    if (lp->reader == t) {
        lp->reader = NULL;
    }
    if (lp->waiter == t) {
        lp->waiter = NULL;
    }
    if (lp->p && !lp->soft_cancel) {
        proc_kill(lp->p, false);
    }
}

/* The list opts[field] as a NULL-terminated array of pointers into its Lua
 * strings (no copies: the strings stay alive in the options table, argument
 * 1, for the whole call, and the child is started before it returns). Free
 * the array itself only. */
/* The list of strings opts[field] as a NULL-terminated array (the strings
 * stay owned by the table), with extra (if not NULL) appended; NULL when
 * the field is absent and not required. */
static char **string_array(lua_State *L, int idx, const char *field,
                           bool required, const char *extra, char **held)
{
    lua_getfield(L, idx, field);
    if (lua_isnil(L, -1) && !required) {
        lua_pop(L, 1);
        return NULL;
    }
    struct env_block *e = required ? NULL : luaL_testudata(L, -1, ENV_MT);
    if (e) {
        /* (the block stays alive in the options table) */
        size_t total = e->n + (extra ? 1 : 0);
        char **v = malloc((total + 1) * sizeof *v);
        if (v) {
            memcpy(v, e->v, e->n * sizeof *v);
            if (extra) {
                v[e->n] = (char *)extra;
            }
            v[total] = NULL;
        }
        lua_pop(L, 1);
        return v;
    }
    if (!lua_istable(L, -1)) {
        free(held); /* the caller's array made before this one */
        luaL_argerror(L, 1, lua_pushfstring(L, "'%s' must be a list of strings", field));
    }
    size_t n = lua_rawlen(L, -1);
    luaL_argcheck(L, !required || n > 0, 1, "argv must not be empty");
    size_t total = n + (extra ? 1 : 0);
    char **v = malloc((total + 1) * sizeof *v);
    if (!v) {
        lua_pop(L, 1);
        return NULL;
    }
    /* One pass (the environment, tens of entries, comes on every spawn):
     * each element checked and taken; the table keeps the strings. */
    for (size_t i = 0; i < n; i++) {
        if (lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TSTRING) {
            free(v);
            free(held); /* the caller's array made before this one */
            luaL_argerror(L, 1, lua_pushfstring(L, "'%s' must be a list of strings", field));
            return NULL; /* not reached (luaL_argerror raises); says so to -O3 */
        }
        v[i] = (char *)lua_tostring(L, -1);
        lua_pop(L, 1);
    }
    if (extra) {
        v[n] = (char *)extra;
    }
    v[total] = NULL;
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, const char *field, double def)
{
    lua_getfield(L, 1, field);
    double v = luaL_optnumber(L, -1, def);
    lua_pop(L, 1);
    return v;
}

/* A byte bound from a Lua number: 0 (none) for n <= 0 or NaN, saturated
 * at SIZE_MAX (a script may set math.huge: converting that to size_t is
 * undefined). */
static size_t byte_bound(double n)
{
    if (!(n > 0)) {
        return 0;
    }
    return n >= (double)SIZE_MAX ? SIZE_MAX : (size_t)n;
}


/* opts.adopt = {pid=, out=, err=, exited=, status=, signal=}, if given. */
static void adopt_opts(lua_State *L, struct proc_opts *a)
{
    lua_getfield(L, 1, "adopt");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        lua_getfield(L, t, "pid");
        lua_getfield(L, t, "out");
        lua_getfield(L, t, "err");
        lua_getfield(L, t, "status");
        lua_getfield(L, t, "signal");
        lua_getfield(L, t, "exited");
        a->adopt_pid = (int)luaL_checkinteger(L, t + 1);
        a->adopt_out = (int)luaL_checkinteger(L, t + 2);
        a->adopt_err = (int)luaL_checkinteger(L, t + 3);
        a->adopt_status = (int)luaL_optinteger(L, t + 4, 0);
        a->adopt_signal = (int)luaL_optinteger(L, t + 5, 0);
        a->adopt_exited = lua_toboolean(L, t + 6);
        luaL_argcheck(L, a->adopt_pid > 1 && a->adopt_out >= 0 && a->adopt_err >= 0, 1,
                      "adopt needs a pid and two descriptors");
        lua_settop(L, t);
    }
    lua_pop(L, 1);
}

static int l_process(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    double timeout = opt_num(L, "timeout", 0);
    double grace = opt_num(L, "grace", 2);
    double drain = opt_num(L, "drain", 2);
    double max_line = opt_num(L, "max_line", 64.0 * 1024 * 1024);
    double err_max = opt_num(L, "stderr_max", 64.0 * 1024);
    lua_getfield(L, 1, "cwd");
    const char *cwd = luaL_optstring(L, -1, NULL);
    lua_pop(L, 1); /* the string stays alive in the table */
    lua_getfield(L, 1, "stdin");
    size_t in_len = 0;
    const char *in = luaL_optlstring(L, -1, NULL, &in_len);
    lua_pop(L, 1); /* the string stays alive in the table */
    lua_getfield(L, 1, "gated");
    bool gated = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "stdin_keep");
    bool stdin_keep = lua_toboolean(L, -1);
    lua_pop(L, 1);
    double max_output = opt_num(L, "max_output", 0);
    double max_plain = opt_num(L, "max_plain", 0);
    lua_getfield(L, 1, "keeper");
    bool keeper = lua_toboolean(L, -1);
    lua_pop(L, 1);
    struct proc_opts a = {0};
    adopt_opts(L, &a);
    lua_getfield(L, 1, "slot");
    struct slot *slot = lua_isnil(L, -1) ? NULL : limiter_check_slot(L, -1);
    lua_pop(L, 1);
    /* A slot counts one child: one already handed over cannot be reused. */
    luaL_argcheck(L, !slot || limiter_held(slot), 1,
                  "the concurrency slot was already used or released");

    struct lproc *lp = lua_newuserdatauv(L, sizeof *lp, 0);
    memset(lp, 0, sizeof *lp);
    luaL_setmetatable(L, PROC_MT);

    lua_getfield(L, 1, "env_add");
    const char *env_add = luaL_optstring(L, -1, NULL);
    lua_pop(L, 1); /* the string stays alive in the table */
    char **argv = string_array(L, 1, "argv", true, NULL, NULL);
    char **env = string_array(L, 1, "env", false, env_add, argv);
    /* No environment array for lack of memory must not become the
     * server's own (proc_spawn's default): the child would inherit what
     * the dispatch strips, and no depth. */
    bool env_given = lua_getfield(L, 1, "env") != LUA_TNIL;
    lua_pop(L, 1);
    if (!argv || (env_given && !env)) {
        free(argv);
        free(env);
        return luaL_error(L, "out of memory");
    }
    struct proc_opts o = {
        .argv = argv,
        .cwd = cwd,
        .env = env,
        .max_line = byte_bound(max_line),
        .stderr_head = byte_bound(err_max),
        .stderr_tail = byte_bound(err_max) / 8,
        .timeout_ms = sched_ms(timeout),
        .grace_ms = sched_ms(grace),
        .drain_ms = sched_ms(drain),
        .stdin_data = in,
        .stdin_len = in_len,
        .gated = gated,
        .stdin_keep = stdin_keep,
        .keeper = keeper,
        .adopt_pid = a.adopt_pid,
        .adopt_out = a.adopt_out,
        .adopt_err = a.adopt_err,
        .adopt_exited = a.adopt_exited,
        .adopt_status = a.adopt_status,
        .adopt_signal = a.adopt_signal,
    };
    if (slot) {
        o.on_reap = limiter_release_count;
        o.reap_arg = limiter_reap_arg(slot);
    }
    int rc = proc_spawn(sched_loop(), &o, &CBS, lp, &lp->p);
    free(argv);
    free(env);
    if (rc != 0) {
        lp->p = NULL;
        return bind_fail(L, rc, NULL);
    }
    if (slot) {
        limiter_take(slot); /* the child now holds the count until reaped */
    }
    lp->max_output = byte_bound(max_output);
    /* One bound at a time: past max_output only the last line is kept. */
    lp->max_plain = lp->max_output ? 0 : byte_bound(max_plain);
    lua_getfield(L, 1, "soft_cancel");
    lp->soft_cancel = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "report_skipped");
    lp->report_skipped = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lua_getfield(L, 1, "classify");
    lp->classify = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return 1;
}

/* p:read_line() -> line | nil   [-1, +1, yields] */
static int l_read_line(lua_State *L)
{
    struct lproc *lp = check(L);
    if (lp->head) {
        struct line *l = lp->head;
        lp->head = l->next;
        if (!lp->head) {
            lp->tail = NULL;
        }
        lp->queued -= l->len;
        bool skipped = l->skipped;
        int nret = skipped ? 2 : push_read(L, lp, l->data, l->len);
        free(l);
        if (lp->queued < QUEUE_HIGH / 2) {
            proc_resume(lp->p);
        }
        if (skipped) {
            lua_pushnil(L);
            lua_pushliteral(L, "skipped");
        }
        return nret;
    }
    if (lp->eof) {
        lua_pushnil(L);
        return 1;
    }
    if (lp->reader) {
        return luaL_error(L, "another task is already reading this process");
    }
    struct task *me = sched_check_wait(L);
    lp->reader = me;
    return sched_wait(L, cancel_wait, lp);
}

/* p:wait() -> info   [-1, +1, yields] */
static int l_wait(lua_State *L)
{
    struct lproc *lp = check(L);
    if (lp->done) {
        push_info(L, lp);
        return 1;
    }
    if (lp->waiter) {
        return luaL_error(L, "another task is already waiting for this "
                             "process");
    }
    struct task *me = sched_check_wait(L);
    lp->waiter = me;
    return sched_wait(L, cancel_wait, lp);
}

static int l_kill(lua_State *L)
{
    struct lproc *lp = check(L);
    proc_kill(lp->p, lua_toboolean(L, 2));
    return 0;
}

/* p:write(bytes) -> true | nil, message */
static int l_write(lua_State *L)
{
    struct lproc *lp = check(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int rc = proc_write(lp->p, s, n);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == UV_EPIPE ? "the child's input is closed"
                                         : uv_strerror(rc));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_close_stdin(lua_State *L)
{
    proc_close_stdin(check(L)->p);
    return 0;
}

static int l_stdin_open(lua_State *L)
{
    lua_pushboolean(L, proc_stdin_open(check(L)->p));
    return 1;
}

/* One bound at a time, as at spawn: a child with max_output keeps it. */
static int l_limit_plain(lua_State *L)
{
    struct lproc *lp = check(L);
    lua_Number n = luaL_checknumber(L, 2);
    if (!lp->max_output) {
        lp->max_plain = byte_bound(n);
        lp->plain = 0;
        lp->over = false;
    }
    return 0;
}

static int l_start(lua_State *L)
{
    proc_open_gate(check(L)->p);
    return 0;
}

/* p:deadline(seconds): the child's timeout, brought forward to at most
 * that many seconds from now. */
static int l_deadline(lua_State *L)
{
    struct lproc *lp = check(L);
    proc_deadline(lp->p, sched_ms(luaL_checknumber(L, 2)));
    return 0;
}

static int l_kept(lua_State *L)
{
    lua_pushboolean(L, proc_kept(check(L)->p));
    return 1;
}

static int l_pid(lua_State *L)
{
    lua_pushinteger(L, proc_pid(check(L)->p));
    return 1;
}

static int l_close(lua_State *L)
{
    struct lproc *lp = luaL_checkudata(L, 1, PROC_MT);
    if (lp->p) {
        proc_release(lp->p);
        lp->p = NULL;
    }
    while (lp->head) {
        struct line *l = lp->head;
        lp->head = l->next;
        free(l);
    }
    lp->tail = NULL;
    free(lp->last);
    lp->last = NULL;
    lp->last_len = lp->last_cap = 0;
    return 0;
}

/* core.proc.detach{arg, ...} -> pid | nil, message: this very program
 * (/proc/self/exe) with those arguments, detached (proc_detach): not our
 * child, in its own session, left running when we exit. */
static int l_detach(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 0 && n < 64, 1, "too many arguments");
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        lua_pushnil(L);
        lua_pushstring(L, "cannot find this program (/proc/self/exe)");
        return 2;
    }
    self[len] = '\0';
    char *argv[66];
    argv[0] = self;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        argv[i] = (char *)luaL_checkstring(L, -1); /* alive in the table */
        lua_pop(L, 1);
    }
    argv[n + 1] = NULL;
    pid_t pid = 0;
    int rc = proc_detach(argv, &pid);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start %s: %s", self, strerror(-rc));
        return 2;
    }
    lua_pushinteger(L, pid);
    return 1;
}

static int l_env(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    /* The userdata first: its allocation may run a collection step, and
     * with it finalizers that could change the list between the two
     * passes below (only malloc runs between them now). */
    struct env_block *e = lua_newuserdatauv(L, sizeof *e, 0);
    e->n = 0;
    e->v = NULL;
    luaL_setmetatable(L, ENV_MT);
    size_t n = lua_rawlen(L, 1), bytes = 0;
    for (size_t i = 1; i <= n; i++) {
        size_t len;
        if (lua_rawgeti(L, 1, (lua_Integer)i) != LUA_TSTRING) {
            return luaL_argerror(L, 1, "a list of strings");
        }
        lua_tolstring(L, -1, &len);
        lua_pop(L, 1);
        if (bytes > SIZE_MAX / 2 - len - 1) {
            return luaL_error(L, "environment too large");
        }
        bytes += len + 1;
    }
    if (n > (SIZE_MAX / 2 - bytes) / sizeof(char *) - 1) {
        return luaL_error(L, "environment too large");
    }
    char **v = malloc((n + 1) * sizeof *v + bytes);
    if (!v) {
        return luaL_error(L, "out of memory");
    }
    char *at = (char *)(v + n + 1);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        const char *s = lua_tolstring(L, -1, &len);
        memcpy(at, s, len + 1);
        v[i] = at;
        at += len + 1;
        lua_pop(L, 1);
    }
    v[n] = NULL;
    e->v = v;
    e->n = n;
    return 1;
}

static int l_env_gc(lua_State *L)
{
    struct env_block *e = luaL_checkudata(L, 1, ENV_MT);
    free(e->v);
    e->v = NULL;
    e->n = 0;
    return 0;
}

void bind_proc_register(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"read_line", l_read_line},
        {"wait", l_wait},
        {"kill", l_kill},
        {"pid", l_pid},
        {"kept", l_kept},
        {"deadline", l_deadline},
        {"start", l_start},
        {"close", l_close},
        {"write", l_write},
        {"close_stdin", l_close_stdin},
        {"stdin_open", l_stdin_open},
        {"limit_plain", l_limit_plain},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, PROC_MT)) {
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_close);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, ENV_MT)) {
        lua_pushcfunction(L, l_env_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"spawn", l_process},
        {"env", l_env},
        {"detach", l_detach},
        {NULL, NULL},
    };
    bind_subtable(L, "proc", fns);
}
