/* Lua face of the job store's files (see ad/jobs.h): core.jobs.
 *
 *   core.jobs.read(dir, id) -> text | nil, msg, code
 *   core.jobs.write(dir, id, text) -> true | nil, msg, code
 *   core.jobs.write_inplace(dir, id, text) -> true | nil, msg, code
 *   core.jobs.remove(dir, id) -> true | nil, msg, code
 *   core.jobs.index_add(dir, id, created_at, status) -> true | nil, msg, code
 *   core.jobs.index_set(dir, id, status) -> true | nil, msg, code
 *   core.jobs.index_scan(dir, status|nil, limit) -> {{id=, created_at=,
 *       status=}...} newest first | nil, msg, code
 *   core.jobs.index_write(dir, entries) -> true | nil, msg, code
 *   core.jobs.index_fresh(dir) -> true|false (does the index cover the
 *       directory) | nil, msg, code (dir missing or not a directory)
 *   core.jobs.index_stamp(dir) -> true | nil, msg, code
 *   core.jobs.index_unstamp(dir) -> true | nil, msg, code (fresh is false
 *       until the next stamp: see jobs_index_unstamp)
 *   core.jobs.proc_identity(pid) -> pgid, start | nil
 *   core.jobs.kill_verified(pid, pgid, start, "TERM"|"KILL") -> true | nil
 *   core.jobs.kill_remnants(pgid, start, mark) -> true (the rest of a gone
 *       child's group was killed) | false (none of it lives) (ad/jobs.h)
 *   core.jobs.watch(dir, name [, pid, start]) -> watch, armed at once:
 *       watch:wait(timeout) -> true (name changed, or process pid of that
 *       start time exited, or fire() was called, since it was armed) |
 *       nil, "timeout"; watch:fire(); watch:close()
 * An invalid id fails with code "EINVAL" before any path is built. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ad/jobs.h"
#include "ad/sched.h"
#include "bind/bind.h"

static int ok_or_fail(lua_State *L, int rc)
{
    if (rc != 0) {
        return bind_fail(L, rc, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_read(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    char *data;
    size_t len;
    int rc = jobs_read(dir, id, n, &data, &len);
    if (rc != 0) {
        return bind_fail(L, rc, NULL);
    }
    lua_pushlstring(L, data, len);
    free(data);
    return 1;
}

static int l_write(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    size_t n, len;
    const char *id = luaL_checklstring(L, 2, &n);
    const char *data = luaL_checklstring(L, 3, &len);
    return ok_or_fail(L, jobs_write(dir, id, n, data, len));
}

static int l_write_inplace(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    size_t n, len;
    const char *id = luaL_checklstring(L, 2, &n);
    const char *data = luaL_checklstring(L, 3, &len);
    return ok_or_fail(L, jobs_write_inplace(dir, id, n, data, len));
}

static int l_remove(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    size_t n;
    const char *id = luaL_checklstring(L, 2, &n);
    return ok_or_fail(L, jobs_remove(dir, id, n));
}

static int l_index_add(lua_State *L)
{
    return ok_or_fail(L, jobs_index_add(luaL_checkstring(L, 1),
                                        luaL_checkstring(L, 2),
                                        luaL_checknumber(L, 3),
                                        luaL_checkstring(L, 4)));
}

static int l_index_set(lua_State *L)
{
    return ok_or_fail(L, jobs_index_set(luaL_checkstring(L, 1),
                                        luaL_checkstring(L, 2),
                                        luaL_checkstring(L, 3)));
}

struct scan {
    lua_State *L;
    lua_Integer n, limit;
};

static int collect(const struct jobs_entry *e, void *ud)
{
    struct scan *s = ud;
    lua_State *L = s->L;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e->id);
    lua_setfield(L, -2, "id");
    lua_pushnumber(L, e->created_at);
    lua_setfield(L, -2, "created_at");
    lua_pushstring(L, e->status);
    lua_setfield(L, -2, "status");
    lua_rawseti(L, -2, ++s->n);
    return s->n >= s->limit;
}

static int l_index_scan(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *status = luaL_optstring(L, 2, NULL);
    lua_Integer limit = luaL_optinteger(L, 3, LUA_MAXINTEGER);
    bind_new_array(L, 0);
    struct scan s = {L, 0, limit};
    int rc = limit > 0 ? jobs_index_scan(dir, status, collect, &s) : 0;
    if (rc != 0) {
        return bind_fail(L, rc, NULL);
    }
    return 1;
}

static int l_index_write(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = lua_rawlen(L, 2);
    struct jobs_entry *e = lua_newuserdatauv(L, (n + 1) * sizeof *e, 0);
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        lua_getfield(L, -1, "id");
        lua_getfield(L, -2, "created_at");
        lua_getfield(L, -3, "status");
        size_t idl;
        const char *id = luaL_checklstring(L, -3, &idl);
        luaL_argcheck(L, idl == 32, 2, "entry id must be 32 characters");
        memcpy(e[i].id, id, 33);
        e[i].created_at = luaL_checknumber(L, -2);
        const char *st = luaL_checkstring(L, -1);
        strncpy(e[i].status, st, JOBS_STATUS_WIDTH);
        e[i].status[JOBS_STATUS_WIDTH] = '\0';
        lua_pop(L, 4);
    }
    return ok_or_fail(L, jobs_index_write(dir, e, n));
}

static int l_index_fresh(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    int rc = jobs_index_fresh(dir);
    if (rc < 0) {
        return bind_fail(L, rc, dir);
    }
    lua_pushboolean(L, rc == 1);
    return 1;
}

static int l_index_stamp(lua_State *L)
{
    return ok_or_fail(L, jobs_index_stamp(luaL_checkstring(L, 1)));
}

static int l_index_unstamp(lua_State *L)
{
    return ok_or_fail(L, jobs_index_unstamp(luaL_checkstring(L, 1)));
}

static int l_proc_identity(lua_State *L)
{
    int pgid;
    unsigned long long start;
    if (jobs_proc_identity((int)luaL_checkinteger(L, 1), &pgid, &start) != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, pgid);
    lua_pushinteger(L, (lua_Integer)start);
    return 2;
}

static int l_kill_remnants(lua_State *L)
{
    int pgid = (int)luaL_checkinteger(L, 1);
    lua_Integer start = luaL_checkinteger(L, 2);
    const char *mark = luaL_checkstring(L, 3);
    lua_pushboolean(L, jobs_kill_remnants(pgid, (unsigned long long)start, mark) > 0);
    return 1;
}

static int l_kill_verified(lua_State *L)
{
    int pid = (int)luaL_checkinteger(L, 1);
    int pgid = (int)luaL_checkinteger(L, 2);
    lua_Integer start = luaL_checkinteger(L, 3);
    const char *sig = luaL_optstring(L, 4, "TERM");
    int rc = jobs_kill_verified(pid, pgid, (unsigned long long)start,
                                strcmp(sig, "KILL") == 0 ? SIGKILL : SIGTERM);
    if (rc != 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- job watch ---------------------------------------------------------
 *
 * A watch is armed when it is made and remembers what happened before
 * anyone waits on it, so a caller arms it, then reads the record, then
 * waits: a change made between the read and the wait still ends the wait
 * at once (a watch armed after the read would sleep through it). */

#define WATCH_MT "ad.jobs.watch"

struct watch {
    uv_fs_event_t ev;
    uv_timer_t timer;
    uv_poll_t exit;  /* pidfd of the process watched too; pidfd -1: none */
    int pidfd;
    struct task *waiter; /* the task in wait(), or NULL */
    char *name;
    int open;     /* handles not yet closed */
    bool fired;   /* the file changed or the process exited */
    bool closed;  /* close() or __gc: the handles are going */
};

/* The Lua side: a pointer, since the handles outlive a collected
 * userdata until libuv calls back. */
struct watch_ud {
    struct watch *w;
};

static void watch_closed(uv_handle_t *h)
{
    struct watch *w = h->data;
    if (--w->open == 0) {
        if (w->pidfd >= 0) {
            close(w->pidfd);
        }
        free(w->name);
        free(w);
    }
}

static void watch_close(struct watch *w)
{
    if (w->closed) {
        return;
    }
    w->closed = true;
    uv_fs_event_stop(&w->ev);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->ev, watch_closed);
    uv_close((uv_handle_t *)&w->timer, watch_closed);
    if (w->pidfd >= 0) {
        uv_poll_stop(&w->exit);
        uv_close((uv_handle_t *)&w->exit, watch_closed);
    }
}

/* A pidfd of pid while it is still the process started at start: the fd,
 * -ESRCH when that process is gone, or another -errno (no pidfd on this
 * kernel: the caller watches the file only). */
static int pidfd_of(int pid, unsigned long long start)
{
#ifdef SYS_pidfd_open
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        return -errno;
    }
    /* Checked after the open: the fd cannot follow a recycled pid. */
    int pg;
    unsigned long long st;
    if (jobs_proc_identity(pid, &pg, &st) != 0 || st != start) {
        close(fd);
        return -ESRCH;
    }
    return fd;
#else
    (void)pid, (void)start;
    return -ENOSYS;
#endif
}

/* The file changed or the process exited: remembered, and a waiter goes
 * on. */
static void watch_fire(struct watch *w)
{
    if (w->closed || w->fired) {
        return;
    }
    w->fired = true;
    if (w->waiter) {
        struct task *t = w->waiter;
        w->waiter = NULL;
        uv_timer_stop(&w->timer);
        lua_pushboolean(sched_thread(t), 1);
        sched_resume(t, 1);
    }
}

static void on_fs_event(uv_fs_event_t *h, const char *file, int events,
                        int status)
{
    struct watch *w = h->data;
    (void)events;
    if (status == 0 && file && strcmp(file, w->name) != 0) {
        return;
    }
    watch_fire(w);
}

static void on_exit_event(uv_poll_t *h, int status, int events)
{
    (void)status, (void)events;
    watch_fire(h->data);
}

static void on_watch_timeout(uv_timer_t *h)
{
    struct watch *w = h->data;
    if (w->closed || !w->waiter) {
        return;
    }
    struct task *t = w->waiter;
    w->waiter = NULL;
    lua_pushnil(sched_thread(t));
    lua_pushliteral(sched_thread(t), "timeout");
    sched_resume(t, 2);
}

static void cancel_wait(struct task *t, void *data)
{
    (void)t;
    struct watch *w = data;
    w->waiter = NULL;
    uv_timer_stop(&w->timer);
}

/* core.jobs.watch(dir, name[, pid, start]) -> watch | nil, msg, code
 * Armed now: a change of dir/name, or the exit of the process pid started
 * at start (when given), from now on. */
static int l_watch(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    lua_Integer pid = luaL_optinteger(L, 3, 0);
    lua_Integer start = luaL_optinteger(L, 4, 0);
    struct watch_ud *ud = lua_newuserdatauv(L, sizeof *ud, 0);
    ud->w = NULL;
    luaL_setmetatable(L, WATCH_MT);
    struct watch *w = calloc(1, sizeof *w);
    char *nm = strdup(name);
    if (!w || !nm) {
        free(w);
        free(nm);
        return luaL_error(L, "out of memory");
    }
    w->name = nm;
    w->pidfd = -1;
    w->open = 2;
    uv_fs_event_init(sched_loop(), &w->ev);
    uv_timer_init(sched_loop(), &w->timer);
    w->ev.data = w->timer.data = w->exit.data = w;
    ud->w = w;
    int rc = uv_fs_event_start(&w->ev, on_fs_event, dir, 0);
    if (rc != 0) {
        watch_close(w);
        ud->w = NULL;
        return bind_fail(L, rc, dir);
    }
    if (pid > 0) {
        int fd = pidfd_of((int)pid, (unsigned long long)start);
        if (fd == -ESRCH) {
            w->fired = true; /* gone already */
        } else if (fd >= 0 && uv_poll_init(sched_loop(), &w->exit, fd) == 0) {
            w->pidfd = fd;
            w->open = 3;
            uv_poll_start(&w->exit, UV_READABLE, on_exit_event);
        } else if (fd >= 0) {
            close(fd);
        }
    }
    return 1;
}

static struct watch *check_watch(lua_State *L)
{
    struct watch_ud *ud = luaL_checkudata(L, 1, WATCH_MT);
    if (!ud->w) {
        luaL_error(L, "the job watch is closed");
    }
    return ud->w;
}

/* watch:wait(timeout) -> true (changed since armed) | nil, "timeout"
 * At once when it changed already; one waiter at a time. */
static int l_watch_wait(lua_State *L)
{
    struct watch *w = check_watch(L);
    double timeout = luaL_checknumber(L, 2);
    struct task *me = sched_check_wait(L);
    if (w->fired) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (w->waiter) {
        return luaL_error(L, "the job watch has a waiter already");
    }
    w->waiter = me;
    sched_timer_start(&w->timer, on_watch_timeout,
                      sched_ms(timeout), 0);
    return sched_wait(L, cancel_wait, w);
}

/* watch:fire(): as if it changed (a waiter goes on; a later wait returns
 * at once). */
static int l_watch_fire(lua_State *L)
{
    watch_fire(check_watch(L));
    return 0;
}

/* watch:close(); also when collected. */
static int l_watch_close(lua_State *L)
{
    struct watch_ud *ud = luaL_checkudata(L, 1, WATCH_MT);
    if (ud->w && !ud->w->waiter) {
        watch_close(ud->w);
        ud->w = NULL;
    }
    return 0;
}

void bind_jobs_register(lua_State *L)
{
    if (luaL_newmetatable(L, WATCH_MT)) {
        static const luaL_Reg methods[] = {
            {"wait", l_watch_wait},
            {"fire", l_watch_fire},
            {"close", l_watch_close},
            {NULL, NULL},
        };
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_watch_close);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {
        {"read", l_read},
        {"write", l_write},
        {"write_inplace", l_write_inplace},
        {"remove", l_remove},
        {"index_add", l_index_add},
        {"index_set", l_index_set},
        {"index_scan", l_index_scan},
        {"index_write", l_index_write},
        {"index_fresh", l_index_fresh},
        {"index_stamp", l_index_stamp},
        {"index_unstamp", l_index_unstamp},
        {"proc_identity", l_proc_identity},
        {"kill_verified", l_kill_verified},
        {"kill_remnants", l_kill_remnants},
        {"watch", l_watch},
        {NULL, NULL},
    };
    bind_subtable(L, "jobs", fns);
}
