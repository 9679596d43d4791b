/* Lua face of the keeper (keeper.h).
 *
 *   core.keeper.handoff(pid, meta[, with_stdin[, slot]]) -> keeper_pid | nil, message
 *       the keeper's child pid is now a job: if this process exits, the
 *       keeper runs it on (meta: the JSON text its job runner reads;
 *       with_stdin: the keeper holds a copy of the child's open stdin,
 *       which its job runner closes once it has read the result; slot:
 *       the concurrency slot of a turn on a kept live process, whose
 *       slot file the keeper then holds too, until the turn ends)
 *   core.keeper.forget(pid)
 *       the hand-off of pid is over while it lives on (a kept live
 *       process between turns): no-op unless it was handed off
 *   core.keeper.leave()
 *       this process is exiting: the children handed off are left to the
 *       keeper, unsignalled; their process objects end here (their
 *       concurrency slot files stay locked by the keeper's copies)
 *   core.keeper.hold(meta) -> key, keeper_pid | nil, message
 *       a job with no child of its own at the moment (a handed-off
 *       fan-out): the keeper takes it over when this process exits
 *   core.keeper.forget(key)
 *       a held job (key < 0) has ended here: the keeper drops it; a
 *       child's pid: as above
 *   core.keeper.release_slot(fd)   (the keeper's job runner)
 *   core.keeper.close_input(fd)    (the keeper's job runner: a child's
 *       stdin copy, closed once its result is read) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ad/keeper.h"
#include "ad/proc.h"
#include "ad/sched.h"
#include "bind/bind.h"
#include "bind/limiter.h"

/* The concurrency slot file of a handed-off child: its process's own
 * count (a one-shot child), else the slot at idx (a turn on a kept live
 * process, whose count is the turn's), or -1. */
static int handoff_slot_fd(lua_State *L, int idx, void *arg)
{
    if (arg) {
        return limiter_slot_fd(arg);
    }
    if (lua_isnoneornil(L, idx)) {
        return -1;
    }
    struct slot *s = limiter_check_slot(L, idx);
    return limiter_held(s) ? limiter_slot_fd(limiter_reap_arg(s)) : -1;
}

static int l_handoff(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    size_t len;
    const char *meta = luaL_checklstring(L, 2, &len);
    pid_t k = 0;
    void *arg = NULL;
    int rc = -ESRCH;
    bool with_stdin = lua_toboolean(L, 3);
    if (pid > 1 && proc_remote_child((pid_t)pid, &arg)) {
        int in_fd = with_stdin ? proc_remote_stdin((pid_t)pid) : -1;
        rc = keeper_handoff((pid_t)pid, meta, len, handoff_slot_fd(L, 4, arg), in_fd, &k);
    }
    if (rc == 0) {
        proc_keep((pid_t)pid);
    } else {
        lua_pushnil(L);
        lua_pushstring(L, strerror(-rc));
        return 2;
    }
    lua_pushinteger(L, k);
    return 1;
}

static int l_hold(lua_State *L)
{
    size_t len;
    const char *meta = luaL_checklstring(L, 1, &len);
    pid_t key = 0, k = 0;
    int rc = keeper_hold(sched_loop(), meta, len, &key, &k);
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(-rc));
        return 2;
    }
    lua_pushinteger(L, key);
    lua_pushinteger(L, k);
    return 2;
}

static void leave_closed(uv_handle_t *h)
{
    free(h);
}

static void on_leave(uv_timer_t *t)
{
    proc_end_left();
    uv_close((uv_handle_t *)t, leave_closed);
}

/* Marked at once (nothing kills them from here on); their objects end on
 * the next loop turn, since ending them resumes the tasks that wait. */
static int l_leave(lua_State *L)
{
    (void)L;
    proc_leave_kept(limiter_leave_count);
    uv_timer_t *t = malloc(sizeof *t);
    if (t) {
        uv_timer_init(sched_loop(), t);
        uv_timer_start(t, on_leave, 0, 0);
    }
    return 0;
}

/* core.keeper.release_slot(fd): in the keeper's job runner, the child that
 * held the concurrency slot file on fd is gone: unlocked, touched (which
 * wakes the processes waiting for a slot), closed. */
static int l_release_slot(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    if (fd > 2) {
        flock(fd, LOCK_UN);
        futimens(fd, NULL);
        close(fd);
    }
    return 0;
}

/* A held job's key (< 0, keeper_hold) or a kept child's pid; a pid this
 * process never handed off is not the keeper's business. */
static int l_forget(lua_State *L)
{
    lua_Integer key = luaL_checkinteger(L, 1);
    if (key < 0 || (key > 1 && proc_unkeep((pid_t)key))) {
        keeper_forget((pid_t)key);
    }
    return 0;
}

static int l_close_input(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    if (fd > 2) {
        close(fd);
    }
    return 0;
}

void bind_keeper_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"handoff", l_handoff},
        {"hold", l_hold},
        {"forget", l_forget},
        {"leave", l_leave},
        {"release_slot", l_release_slot},
        {"close_input", l_close_input},
        {NULL, NULL},
    };
    bind_subtable(L, "keeper", fns);
}
