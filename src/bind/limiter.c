/* The shared limiter; see limiter.h.
 *
 *   core.limiter.acquire() -> slot | nil, "cancelled"   (slot: <close>-able)
 *   slot:release()          core.limiter.set_limit(n)
 *   core.limiter.stats() -> {limit=, live=, waiting=, peak=} */
#include <stdlib.h>

#include "bind/bind.h"
#include "bind/limiter.h"
#include "ad/sched.h"

#define SLOT_MT "ad.slot"

struct slot {
    bool held;
};

struct waiter {
    struct task *task;
    struct waiter *next;
};

static struct {
    int limit;
    int live;
    int peak;
    int waiting;
    struct waiter *head, *tail;
} LIM = {5, 0, 0, 0, NULL, NULL};

static void push_slot(lua_State *L)
{
    struct slot *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->held = true;
    luaL_setmetatable(L, SLOT_MT);
}

static void take_count(void)
{
    LIM.live++;
    if (LIM.live > LIM.peak) {
        LIM.peak = LIM.live;
    }
}

static void grant_waiters(void)
{
    while (LIM.head && LIM.live < LIM.limit) {
        struct waiter *w = LIM.head;
        LIM.head = w->next;
        if (!LIM.head) {
            LIM.tail = NULL;
        }
        LIM.waiting--;
        take_count();
        push_slot(sched_thread(w->task));
        sched_defer(w->task, 1);
        free(w);
    }
}

void limiter_release_count(void *unused)
{
    (void)unused;
    if (LIM.live > 0) {
        LIM.live--;
    }
    grant_waiters();
}

struct slot *limiter_check_slot(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SLOT_MT);
}

bool limiter_held(const struct slot *s)
{
    return s->held;
}

bool limiter_take(struct slot *s)
{
    bool had = s->held;
    s->held = false;
    return had;
}

static void cancel_acquire(struct task *t, void *data)
{
    (void)data;
    struct waiter **pp = &LIM.head, *prev = NULL;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->task == t) {
            *pp = w->next;
            if (LIM.tail == w) {
                LIM.tail = prev;
            }
            LIM.waiting--;
            free(w);
            return;
        }
        prev = w;
        pp = &w->next;
    }
}

static int l_acquire(lua_State *L)
{
    if (LIM.live < LIM.limit && !LIM.head) {
        take_count();
        push_slot(L);
        return 1;
    }
    struct task *me = sched_check_wait(L);
    struct waiter *w = malloc(sizeof *w);
    if (!w) {
        return luaL_error(L, "out of memory");
    }
    w->task = me;
    w->next = NULL;
    if (LIM.tail) {
        LIM.tail->next = w;
    } else {
        LIM.head = w;
    }
    LIM.tail = w;
    LIM.waiting++;
    return sched_wait(L, cancel_acquire, NULL);
}

static int l_slot_release(lua_State *L)
{
    struct slot *s = luaL_checkudata(L, 1, SLOT_MT);
    if (s->held) {
        s->held = false;
        limiter_release_count(NULL);
    }
    return 0;
}

static int l_set_limit(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1, 1, "limit must be >= 1");
    LIM.limit = (int)n;
    grant_waiters();
    return 0;
}

static int l_stats(lua_State *L)
{
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, LIM.limit);
    lua_setfield(L, -2, "limit");
    lua_pushinteger(L, LIM.live);
    lua_setfield(L, -2, "live");
    lua_pushinteger(L, LIM.waiting);
    lua_setfield(L, -2, "waiting");
    lua_pushinteger(L, LIM.peak);
    lua_setfield(L, -2, "peak");
    return 1;
}

void bind_limiter_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"acquire", l_acquire},
        {"set_limit", l_set_limit},
        {"stats", l_stats},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, SLOT_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "release");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    bind_subtable(L, "limiter", fns);
}
