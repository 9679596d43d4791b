/* Lua face of the scheduler: tasks, sleep, events, clocks.
 *
 *   core.task.spawn(fn, ...) -> task
 *   task:wait() -> true, ... | false, err
 *   task:cancel() -> bool              task:done() -> bool
 *   core.task.sleep(s) -> true | nil, "cancelled"
 *   core.task.event() -> ev            ev:set(v)
 *   ev:wait([timeout]) -> v | nil, "timeout"
 *   core.task.now() (monotonic s)      core.task.time() (epoch s)
 *   core.task.cancelled() -> bool (current task)
 *   core.task.after(s, fn) -> timer (fn runs on a new task when s pass;
 *       timer:stop() -> bool, true when it had not fired; a collected
 *       timer is stopped) */
#include <stdlib.h>
#include <sys/time.h>

#include "bind/bind.h"
#include "ad/sched.h"

#define TASK_MT "ad.infra.task"
#define EVENT_MT "ad.event"
#define TIMER_MT "ad.timer"

static struct task *check_task(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, TASK_MT);
}

/* core.task.spawn(fn, ...) -> task   [-n, +1, m] */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    sched_spawn(L, lua_gettop(L) - 1);
    return 1;
}

static void cancel_join(struct task *waiter, void *data)
{
    sched_remove_joiner(data, waiter);
}

/* task:wait() -> true, results... | false, err   [-0, +n, yields] */
static int l_task_wait(lua_State *L)
{
    struct task *t = check_task(L, 1);
    if (sched_is_done(t)) {
        return sched_push_results(L, t);
    }
    struct task *me = sched_current(L);
    if (me == t) {
        return luaL_error(L, "a task cannot wait for itself");
    }
    me = sched_check_wait(L);
    sched_add_joiner(t, me);
    return sched_wait(L, cancel_join, t);
}

static int l_task_cancel(lua_State *L)
{
    lua_pushboolean(L, sched_cancel(check_task(L, 1)));
    return 1;
}

static int l_task_done(lua_State *L)
{
    lua_pushboolean(L, sched_is_done(check_task(L, 1)));
    return 1;
}

/* ---- sleep ---------------------------------------------------------- */

struct sleeper {
    uv_timer_t timer;
    struct task *task;
};

static void sleeper_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_sleep_done(uv_timer_t *h)
{
    struct sleeper *s = h->data;
    struct task *t = s->task;
    uv_close((uv_handle_t *)h, sleeper_closed);
    lua_pushboolean(sched_thread(t), 1);
    sched_resume(t, 1);
}

static void cancel_sleep(struct task *t, void *data)
{
    struct sleeper *s = data;
    (void)t;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, sleeper_closed);
}

/* core.task.sleep(seconds) -> true | nil, "cancelled"   [-1, +(1|2), yields] */
static int l_sleep(lua_State *L)
{
    double secs = luaL_checknumber(L, 1);
    struct task *me = sched_check_wait(L);
    struct sleeper *s = malloc(sizeof *s);
    if (!s) {
        return luaL_error(L, "out of memory");
    }
    s->task = me;
    uv_timer_init(sched_loop(), &s->timer);
    s->timer.data = s;
    sched_timer_start(&s->timer, on_sleep_done,
                      sched_ms(secs), 0);
    return sched_wait(L, cancel_sleep, s);
}

/* ---- events --------------------------------------------------------- */

struct ev_waiter {
    uv_timer_t timer;
    struct task *task;
    struct event *ev;
    struct ev_waiter *next;
    bool has_timer;
};

struct event {
    struct ev_waiter *waiters;
    bool set;
    int value_ref;
};

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

static void waiter_free(struct ev_waiter *w)
{
    if (w->has_timer) {
        uv_timer_stop(&w->timer);
        uv_close((uv_handle_t *)&w->timer, waiter_closed);
    } else {
        free(w);
    }
}

static void unlink_waiter(struct event *ev, struct ev_waiter *w)
{
    for (struct ev_waiter **pp = &ev->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            return;
        }
    }
}

static void on_event_timeout(uv_timer_t *h)
{
    struct ev_waiter *w = h->data;
    struct task *t = w->task;
    unlink_waiter(w->ev, w);
    waiter_free(w);
    lua_State *co = sched_thread(t);
    lua_pushnil(co);
    lua_pushliteral(co, "timeout");
    sched_resume(t, 2);
}

static void cancel_event_wait(struct task *t, void *data)
{
    struct ev_waiter *w = data;
    (void)t;
    unlink_waiter(w->ev, w);
    waiter_free(w);
}

static int l_event(lua_State *L)
{
    struct event *ev = lua_newuserdatauv(L, sizeof *ev, 0);
    ev->waiters = NULL;
    ev->set = false;
    ev->value_ref = LUA_NOREF;
    luaL_setmetatable(L, EVENT_MT);
    return 1;
}

/* ev:set([value]) wakes every waiter on the next loop turn. */
static int l_event_set(lua_State *L)
{
    struct event *ev = luaL_checkudata(L, 1, EVENT_MT);
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    if (ev->value_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, ev->value_ref);
    }
    ev->value_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ev->set = true;
    struct ev_waiter *w = ev->waiters;
    ev->waiters = NULL;
    while (w) {
        struct ev_waiter *next = w->next;
        struct task *t = w->task;
        lua_rawgeti(sched_thread(t), LUA_REGISTRYINDEX, ev->value_ref);
        waiter_free(w);
        sched_defer(t, 1);
        w = next;
    }
    return 0;
}

static int l_event_is_set(lua_State *L)
{
    struct event *ev = luaL_checkudata(L, 1, EVENT_MT);
    lua_pushboolean(L, ev->set);
    return 1;
}

/* ev:wait([timeout]) -> value | nil, "timeout" | nil, "cancelled" */
static int l_event_wait(lua_State *L)
{
    struct event *ev = luaL_checkudata(L, 1, EVENT_MT);
    double timeout = luaL_optnumber(L, 2, -1);
    if (ev->set) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ev->value_ref);
        return 1;
    }
    struct task *me = sched_check_wait(L);
    struct ev_waiter *w = calloc(1, sizeof *w);
    if (!w) {
        return luaL_error(L, "out of memory");
    }
    w->task = me;
    w->ev = ev;
    w->next = ev->waiters;
    ev->waiters = w;
    if (timeout >= 0) {
        w->has_timer = true;
        uv_timer_init(sched_loop(), &w->timer);
        w->timer.data = w;
        sched_timer_start(&w->timer, on_event_timeout,
                          sched_ms(timeout), 0);
    }
    return sched_wait(L, cancel_event_wait, w);
}

static int l_event_gc(lua_State *L)
{
    struct event *ev = luaL_checkudata(L, 1, EVENT_MT);
    if (ev->value_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, ev->value_ref);
        ev->value_ref = LUA_NOREF;
    }
    return 0;
}

/* ---- timers -------------------------------------------------------- */

/* A deadline that costs nothing until it passes: no task waits on it, and
 * fn runs on a task of its own only if the timer fires before it is
 * stopped (the hand-off of a sync call still running at its deadline,
 * which is rare; the call itself just stops the timer when it ends). The
 * handle belongs to the userdata: stop() or its collection closes it, and
 * the close completes later (uv_close), so it lives apart. */
struct xtimer {
    uv_timer_t h;
    lua_State *L; /* the main thread */
    int fn_ref;   /* LUA_NOREF once fired or stopped */
};

static void xtimer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_xtimer(uv_timer_t *h)
{
    struct xtimer *t = h->data;
    lua_State *L = t->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    t->fn_ref = LUA_NOREF;
    sched_spawn(L, 0);
    lua_pop(L, 1);
}

static struct xtimer **check_timer(lua_State *L)
{
    return luaL_checkudata(L, 1, TIMER_MT);
}

/* core.task.after(seconds, fn) -> timer   [-2, +1, m] */
static int l_after(lua_State *L)
{
    double secs = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct xtimer **ud = lua_newuserdatauv(L, sizeof *ud, 0);
    *ud = NULL;
    luaL_setmetatable(L, TIMER_MT);
    struct xtimer *t = malloc(sizeof *t);
    if (!t) {
        return luaL_error(L, "out of memory");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    t->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_timer_init(sched_loop(), &t->h);
    t->h.data = t;
    sched_timer_start(&t->h, on_xtimer,
                      sched_ms(secs), 0);
    *ud = t;
    return 1;
}

/* Ends the timer of ud (once): true when it had not fired. */
static bool timer_end(struct xtimer **ud)
{
    struct xtimer *t = *ud;
    if (!t) {
        return false;
    }
    *ud = NULL;
    bool pending = t->fn_ref != LUA_NOREF;
    if (pending) {
        luaL_unref(t->L, LUA_REGISTRYINDEX, t->fn_ref);
        t->fn_ref = LUA_NOREF;
    }
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, xtimer_closed);
    return pending;
}

/* timer:stop() -> true when it had not fired (fn will never run) */
static int l_timer_stop(lua_State *L)
{
    lua_pushboolean(L, timer_end(check_timer(L)));
    return 1;
}

/* A timer nobody holds any more is stopped: the holder keeps it while
 * the deadline matters, and no handle outlives the Lua state (lua_close
 * collects every timer before the loop's last run). */
static int l_timer_gc(lua_State *L)
{
    timer_end(check_timer(L));
    return 0;
}

/* ---- clocks and current task ---------------------------------------- */

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (double)uv_hrtime() / 1e9);
    return 1;
}

static int l_time(lua_State *L)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    lua_pushnumber(L, (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
    return 1;
}

static int l_cancelled(lua_State *L)
{
    struct task *t = sched_current(L);
    lua_pushboolean(L, t && sched_is_cancelled(t));
    return 1;
}

static int l_current(lua_State *L)
{
    struct task *t = sched_current(L);
    if (!t) {
        lua_pushnil(L);
    } else {
        sched_push_task(L, t);
    }
    return 1;
}

/* core.task.set_budget(seconds): the current task may not run longer than this
 * between two yields. */
static int l_set_budget(lua_State *L)
{
    struct task *t = sched_current(L);
    if (!t) {
        return luaL_error(L, "set_budget must be called from a task");
    }
    sched_set_budget(t, luaL_checknumber(L, 1));
    return 0;
}

/* core.task.memory_refused() -> message | nil: the memory budget of the
 * current task refused an allocation since it was last resumed (Lua's own
 * error for that says only "not enough memory"). */
static int l_memory_refused(lua_State *L)
{
    struct task *t = sched_current(L);
    const char *msg = t ? sched_memory_refused(t) : NULL;
    if (msg) {
        lua_pushstring(L, msg);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int l_in_task(lua_State *L)
{
    lua_pushboolean(L, sched_current(L) != NULL && lua_isyieldable(L));
    return 1;
}

void bind_task_register(lua_State *L)
{
    static const luaL_Reg task_methods[] = {
        {"wait", l_task_wait},
        {"cancel", l_task_cancel},
        {"done", l_task_done},
        {NULL, NULL},
    };
    static const luaL_Reg event_methods[] = {
        {"set", l_event_set},
        {"wait", l_event_wait},
        {"is_set", l_event_is_set},
        {NULL, NULL},
    };
    static const luaL_Reg timer_methods[] = {
        {"stop", l_timer_stop},
        {NULL, NULL},
    };
    static const luaL_Reg fns[] = {
        {"spawn", l_spawn},
        {"after", l_after},
        {"sleep", l_sleep},
        {"event", l_event},
        {"now", l_now},
        {"time", l_time},
        {"cancelled", l_cancelled},
        {"current", l_current},
        {"in_task", l_in_task},
        {"set_budget", l_set_budget},
        {"memory_refused", l_memory_refused},
        {NULL, NULL},
    };
    luaL_getmetatable(L, TASK_MT);           /* created by sched_init */
    luaL_newlib(L, task_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    if (luaL_newmetatable(L, EVENT_MT)) {
        luaL_newlib(L, event_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_event_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TIMER_MT)) {
        luaL_newlib(L, timer_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_timer_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    bind_subtable(L, "task", fns);
}
