/* The shared limiter; see limiter.h.
 *
 *   core.limiter.acquire([try]) -> slot | nil, "cancelled"   (slot: <close>-able)
 *       try: never wait; nil, "busy" when it would
 *   slot:release()          core.limiter.set_limit(n)
 *   slot:leave()            (the slot's child left to the keeper: see below)
 *   core.limiter.share(dir) -> true | nil, msg, code (the cross-process gate)
 *   core.limiter.stats() -> {limit=, live=, waiting=, peak=, shared=,
 *                            waiting_shared=} */
#include <stdint.h>
#include <stdlib.h>

#include "bind/bind.h"
#include "bind/limiter.h"
#include "bind/slots.h"
#include "ad/sched.h"

#define SLOT_MT "ad.slot"

struct slot {
    bool held;
    int xidx; /* the slot file this count holds; -1: none */
};

struct waiter {
    struct task *task;
    struct waiter *next;
};

struct queue {
    struct waiter *head, *tail;
    int len;
};

/* Two gates: this process's count (Q: waiting for it), then, once a task
 * holds a count, a slot file shared with the other processes (X: holding
 * a count, waiting for a slot file). Both queues are FIFO. */
static struct {
    int limit;
    int live;
    int peak;
    struct queue q, x;
} LIM = {5, 0, 0, {NULL, NULL, 0}, {NULL, NULL, 0}};

static void push_slot(lua_State *L, int xidx)
{
    struct slot *s = lua_newuserdatauv(L, sizeof *s, 0);
    s->held = true;
    s->xidx = xidx;
    luaL_setmetatable(L, SLOT_MT);
}

static void enqueue(struct queue *q, struct waiter *w)
{
    w->next = NULL;
    if (q->tail) {
        q->tail->next = w;
    } else {
        q->head = w;
    }
    q->tail = w;
    q->len++;
}

static struct waiter *dequeue(struct queue *q)
{
    struct waiter *w = q->head;
    if (w) {
        q->head = w->next;
        if (!q->head) {
            q->tail = NULL;
        }
        q->len--;
    }
    return w;
}

/* Removes t's entry from q; false if it has none. */
static bool unqueue(struct queue *q, struct task *t)
{
    struct waiter **pp = &q->head, *prev = NULL;
    while (*pp) {
        struct waiter *w = *pp;
        if (w->task == t) {
            *pp = w->next;
            if (q->tail == w) {
                q->tail = prev;
            }
            q->len--;
            free(w);
            return true;
        }
        prev = w;
        pp = &w->next;
    }
    return false;
}

static void take_count(void)
{
    LIM.live++;
    if (LIM.live > LIM.peak) {
        LIM.peak = LIM.live;
    }
}

static void grant(struct waiter *w, int xidx)
{
    push_slot(sched_thread(w->task), xidx);
    sched_defer(w->task, 1);
    free(w);
}

static void on_slot_free(int idx);

/* Waits for slot files only while a task of ours needs one. */
static void watch_slots(void)
{
    slots_watch(LIM.x.head != NULL, LIM.limit, on_slot_free);
}

/* Tasks holding a count get the free slot files, oldest first. */
static void grant_shared(void)
{
    while (LIM.x.head) {
        int idx = slots_try(LIM.limit);
        if (idx == -1) {
            break;
        }
        grant(dequeue(&LIM.x), idx < 0 ? -1 : idx); /* -2: not shared now */
    }
}

/* The loop side of slots_watch: idx >= 0 was taken for us. */
static void on_slot_free(int idx)
{
    if (idx >= 0) {
        if (LIM.x.head) {
            grant(dequeue(&LIM.x), idx);
        } else {
            slots_release(idx);
        }
    }
    grant_shared();
    watch_slots();
}

/* A task that got a count goes on to the shared gate: a slot file now,
 * or the X queue. Returns the slot file index, -1 (none needed) or -2
 * (queued). The caller hands a returned slot to w's task itself: w may be
 * the running task (l_acquire), which a grant cannot wake. */
static int shared_gate(struct waiter *w)
{
    if (!slots_enabled()) {
        return -1;
    }
    if (LIM.x.head) {
        enqueue(&LIM.x, w);
        return -2;
    }
    int idx = slots_try(LIM.limit);
    if (idx == -1) {
        /* Watch first, then look again: a release between the two is
         * seen by one or the other. What the second look finds is w's
         * (alone in X), returned like the first look's. */
        enqueue(&LIM.x, w);
        watch_slots();
        idx = slots_try(LIM.limit);
        if (idx == -1) {
            return -2;
        }
        dequeue(&LIM.x);
        watch_slots();
    }
    return idx < 0 ? -1 : idx; /* -2: not shared now */
}

static void grant_waiters(void)
{
    while (LIM.q.head && LIM.live < LIM.limit) {
        struct waiter *w = dequeue(&LIM.q);
        take_count();
        int idx = shared_gate(w);
        if (idx != -2) {
            grant(w, idx);
        }
    }
}

void *limiter_reap_arg(const struct slot *s)
{
    return (void *)(intptr_t)(s->xidx + 1);
}

void limiter_release_count(void *arg)
{
    slots_release((int)(intptr_t)arg - 1);
    if (LIM.live > 0) {
        LIM.live--;
    }
    grant_shared();
    grant_waiters();
    watch_slots();
}

int limiter_slot_fd(void *arg)
{
    return slots_held_fd((int)(intptr_t)arg - 1);
}

void limiter_leave_count(void *arg)
{
    slots_forget((int)(intptr_t)arg - 1);
    limiter_release_count(NULL);
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

/* A cancelled waiter leaves its queue; one that held a count gives it
 * back. It never takes a slot later: grants only go to queued tasks, and a
 * slot file taken for nobody is released at once (on_slot_free). */
static void cancel_acquire(struct task *t, void *data)
{
    (void)data;
    if (unqueue(&LIM.q, t)) {
        return;
    }
    if (unqueue(&LIM.x, t)) {
        limiter_release_count(NULL);
    }
}

static int l_acquire(lua_State *L)
{
    if (LIM.live < LIM.limit && !LIM.q.head) {
        int idx = slots_enabled() && !LIM.x.head ? slots_try(LIM.limit) : -1;
        if (idx != -1 || !slots_enabled()) {
            take_count();
            push_slot(L, idx < 0 ? -1 : idx); /* -2: not shared now */
            return 1;
        }
    }
    if (lua_toboolean(L, 1)) {
        lua_pushnil(L);
        lua_pushliteral(L, "busy");
        return 2;
    }
    struct task *me = sched_check_wait(L);
    struct waiter *w = malloc(sizeof *w);
    if (!w) {
        return luaL_error(L, "out of memory");
    }
    w->task = me;
    if (LIM.live < LIM.limit && !LIM.q.head) {
        take_count();
        int idx = shared_gate(w);
        if (idx != -2) { /* a slot file came free meanwhile */
            free(w);
            push_slot(L, idx);
            return 1;
        }
    } else {
        enqueue(&LIM.q, w);
    }
    return sched_wait(L, cancel_acquire, NULL);
}

static int l_slot_release(lua_State *L)
{
    struct slot *s = luaL_checkudata(L, 1, SLOT_MT);
    if (s->held) {
        s->held = false;
        limiter_release_count(limiter_reap_arg(s));
    }
    return 0;
}

/* slot:leave(): this process exits with the slot's child left to the
 * keeper, which holds a copy of the slot file's lock: the count ends
 * here, the lock stays (a release would unlock the keeper's copy too). */
static int l_slot_leave(lua_State *L)
{
    struct slot *s = luaL_checkudata(L, 1, SLOT_MT);
    if (s->held) {
        s->held = false;
        limiter_leave_count(limiter_reap_arg(s));
    }
    return 0;
}

static int l_set_limit(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 1, 1, "limit must be >= 1");
    LIM.limit = (int)n;
    grant_shared();
    grant_waiters();
    watch_slots();
    return 0;
}

/* core.limiter.share(dir): from now on every count also needs a slot
 * file in dir, shared with the other processes using it. */
static int l_share(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    char why[160];
    int rc = slots_open(dir, why, sizeof why);
    if (rc != 0) {
        if (why[0]) {
            lua_pushnil(L);
            lua_pushfstring(L, "refusing the slot directory %s: %s", dir, why);
            lua_pushstring(L, "untrusted");
            return 3;
        }
        return bind_fail(L, rc, dir);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stats(lua_State *L)
{
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, LIM.limit);
    lua_setfield(L, -2, "limit");
    lua_pushinteger(L, LIM.live - LIM.x.len);
    lua_setfield(L, -2, "live");
    lua_pushinteger(L, LIM.q.len + LIM.x.len);
    lua_setfield(L, -2, "waiting");
    lua_pushinteger(L, LIM.x.len);
    lua_setfield(L, -2, "waiting_shared");
    lua_pushboolean(L, slots_enabled());
    lua_setfield(L, -2, "shared");
    lua_pushinteger(L, LIM.peak);
    lua_setfield(L, -2, "peak");
    return 1;
}

void bind_limiter_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"acquire", l_acquire},
        {"set_limit", l_set_limit},
        {"share", l_share},
        {"stats", l_stats},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, SLOT_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "release");
        lua_pushcfunction(L, l_slot_leave);
        lua_setfield(L, -2, "leave");
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_slot_release);
        lua_setfield(L, -2, "__close");
    }
    lua_pop(L, 1);
    bind_subtable(L, "limiter", fns);
}
