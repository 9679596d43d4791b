/* Tasks on the loop; see sched.h. The only caller of lua_resume.
 *
 * A task's userdata is anchored in the registry from spawn to finish, so
 * the collector never frees a task that the loop may still resume. When a
 * task finishes, its results (or its error with traceback) move into a
 * table, the thread is reset (running pending __close handlers) and
 * released, and joiners are resumed on the next loop turn.
 *
 * It also paces the Lua collector (see "Collection while idle" below):
 * the heap it counts and the ready queue it watches are the scheduler's.
 *
 * Over 500 lines on purpose: the task states, the ready queue, joiners,
 * cancellation and the memory and time budgets all guard one invariant
 * (a task is resumed only from the loop, never while it runs).
 */
#include <assert.h>
#include <limits.h>
#include <signal.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "ad/sched.h"

enum task_state { T_NEW, T_READY, T_RUNNING, T_WAITING, T_DONE };

struct task {
    lua_State *co;
    int ref;          /* registry: the task userdata, while not done */
    int thread_ref;   /* registry: the thread, while not done */
    int results_ref;  /* registry: {n=, ...} or {err}, once done */
    enum task_state state;
    bool ok;
    bool cancelled;
    int ready_nargs;
    struct task *next_ready;
    sched_cancel_fn cancel;
    void *cancel_data;
    sched_done_fn on_done;
    void *on_done_ud;
    struct task **joiners;
    size_t njoiners, capjoiners;
    struct task *prev_live, *next_live;
    uint64_t budget_ns;   /* longest run between two yields; 0 = none */
    bool mem_over;        /* the memory budget refused an allocation since
                           * the task was last resumed */
    bool cancel_pending;  /* cancelled while not waiting: next wait fails */
};

static struct {
    lua_State *L;
    uv_loop_t *loop;
    uv_idle_t idle;
    struct task *ready_head, *ready_tail;
    struct task *live_head;
    size_t live;
    struct task *running;  /* the task being resumed, else NULL */
    uint64_t resume_start;
    lua_Alloc alloc;       /* Lua's own allocator, wrapped by budget_alloc */
    void *alloc_ud;
    size_t heap;           /* bytes the Lua state holds */
    size_t resume_heap;    /* ... when the running task was resumed */
    size_t mem_budget;     /* growth a budgeted task may make between two
                            * yields; 0 = none */
    unsigned gc_every;     /* test-only: a full collection every N resumes */
    unsigned long resumes;
    /* Collection while idle (gc_* functions below). */
    uv_prepare_t gc_prepare; /* each loop turn, before the loop blocks */
    uv_idle_t gc_spin;       /* active while an idle cycle is unfinished:
                              * the loop polls without blocking */
    uv_timer_t gc_quiet;     /* garbage left and the loop quiet this long */
    unsigned long gc_quiet_mark; /* resumes when gc_quiet was armed */
    bool gc_on;              /* idle collection in use (not in GC stress) */
    bool gc_cycle;           /* a cycle started while idle is unfinished */
    size_t gc_base;          /* heap when the last cycle ended */
    unsigned long gc_ends;   /* cycles ended (gc_sentinel_gc counts them) */
    unsigned long gc_seen;   /* ... of which gc_prepare_cb has seen */
    size_t gc_end_heap;      /* heap when the last one ended */
} S;

/* Default growth of the Lua heap a budgeted task may make between two
 * yields. */
#define SCHED_MEMORY_BUDGET ((size_t)256 << 20)

static const char TASK_MT[] = "ad.infra.task";

static struct task **extra(lua_State *L)
{
    return (struct task **)lua_getextraspace(L);
}

static void process_ready(uv_idle_t *h);

/* What a yield the scheduler did not ask for is answered with. */
static char FOREIGN_YIELD;

#define FOREIGN_YIELD_MSG                                                    \
    "coroutine.yield() was called directly inside a task; use the "         \
    "agent-dispatch task API instead"

static int guarded_yield_cont(lua_State *L, int status, lua_KContext ctx)
{
    (void)status, (void)ctx;
    if (lua_gettop(L) == 1 && lua_touserdata(L, 1) == &FOREIGN_YIELD) {
        luaL_where(L, 2);
        lua_pushliteral(L, FOREIGN_YIELD_MSG);
        lua_concat(L, 2);
        return lua_error(L);
    }
    return lua_gettop(L); /* a coroutine of the code's own resumed it */
}

/* coroutine.yield: user code (a tool, a hook, a script) that yields its
 * task's own coroutine gets an error where it yielded, so the code around
 * it (a pcall, the caller waiting for its answer) still runs; ending the
 * task there left such a caller waiting for ever. Yields of coroutines
 * the code made itself work as always. */
static int guarded_yield(lua_State *L)
{
    return lua_yieldk(L, lua_gettop(L), 0, guarded_yield_cont);
}

static void enqueue(struct task *t, int nargs)
{
    t->ready_nargs = nargs;
    t->next_ready = NULL;
    if (S.ready_tail) {
        S.ready_tail->next_ready = t;
    } else {
        S.ready_head = t;
    }
    S.ready_tail = t;
    if (!uv_is_active((uv_handle_t *)&S.idle)) {
        uv_idle_start(&S.idle, process_ready);
    }
}

static int task_gc(lua_State *L)
{
    struct task *t = luaL_checkudata(L, 1, TASK_MT);
    if (t->results_ref != LUA_NOREF) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->results_ref);
        t->results_ref = LUA_NOREF;
    }
    free(t->joiners);
    t->joiners = NULL;
    return 0;
}

/* Memory guard, the counterpart of the time budget below: while a task
 * with a budget runs (user code: tool files, hooks, overrides), the Lua
 * heap may not grow by more than mem_budget between two yields. Past it an
 * allocation fails (Lua collects and retries once, then raises "not
 * enough memory") and the task is marked, so its error says why. The
 * server's own work between yields is bounded by its input limits and
 * never comes near. */
static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    size_t old = ptr ? osize : 0;
    struct task *t = S.running;
    if (nsize > old && t && t->budget_ns && S.mem_budget &&
        S.heap + (nsize - old) > S.resume_heap + S.mem_budget) {
        t->mem_over = true;
        return NULL;
    }
    void *p = S.alloc(ud, ptr, osize, nsize);
    if (p || nsize == 0) {
        S.heap = S.heap - old + nsize;
    }
    return p;
}

/* Collection while idle.
 *
 * Lua's collector does its work wherever an allocation trips it; with the
 * default pace (and the way Lua 5.4 counts sweeping: an object is one unit
 * of work) a whole cycle over the server's heap, about 1.8M instructions,
 * lands in one allocation of one request, between its stdin line and its
 * reply. Here the cycles run when the loop has nothing ready: in each
 * turn, just before the loop would block, a slice of small collector steps
 * for about GC_SLICE_NS (the time is looked at between steps: the atomic
 * step, or one large table, is not divided), and the loop polls (without
 * blocking) between slices, so a line or an exit that arrives waits about
 * one slice. A
 * cycle starts while idle once the heap has grown by half since the last
 * one ended (the automatic trigger is at twice the live heap; a mark
 * nearer to it would lose the race now and then), or once garbage is left
 * and the loop has been quiet for GC_QUIET_MS (an idle server holds no
 * garbage). The server owns the collector's pace: a slice sets its own
 * step size and puts Lua's defaults back; a collector the program stopped,
 * or put in generational mode, is left to it.
 *
 * Between two slices of an unfinished cycle, the requests that run
 * allocate on credit: no step until the heap reaches twice what it was
 * when the last cycle ended, where the automatic trigger would have
 * started a cycle anyway. Past that, and whenever no idle moment comes
 * (a server busy for minutes), the automatic collector works at its
 * default pace, as it always did: it is the backstop. */
#define GC_SLICE_NS 20000u       /* 20 us */
#define GC_QUIET_MS 500
#define GC_QUIET_MIN ((size_t)32 << 10)
/* A cycle over the heap costs about the same whatever garbage it frees:
 * over a small heap (a server that loaded only what it used) half its
 * size came every few dispatches, and 64 KiB cost 2% of a dispatch. */
#define GC_MIN_GROWTH ((size_t)256 << 10)
#define GC_DEFAULT_MUL 100       /* Lua's defaults (LUAI_GCMUL, ...) */
#define GC_DEFAULT_STEPSIZE 13
#define GC_SLICE_MUL 25          /* steps of 1600 units of work (1 KiB x 25 / 16) */
#define GC_SLICE_STEPSIZE 10

/* A cycle's end, whoever ran it (our slices or the automatic steps): an
 * unreachable object's finalizer runs once per cycle and makes the next. */
static const char GC_SENTINEL_MT[] = "ad.infra.gc_sentinel";

static void gc_sentinel_new(lua_State *L)
{
    lua_newuserdatauv(L, 0, 0);
    luaL_setmetatable(L, GC_SENTINEL_MT);
    lua_pop(L, 1);
}

static int gc_sentinel_gc(lua_State *L)
{
    S.gc_ends++;
    S.gc_end_heap = S.heap;
    if (S.gc_on) { /* not once the state is closing */
        gc_sentinel_new(L);
    }
    return 0;
}

static void gc_spin_cb(uv_idle_t *h)
{
    (void)h; /* only there so the loop does not block between slices */
}

static void gc_cycle_start(void)
{
    S.gc_cycle = true;
    uv_idle_start(&S.gc_spin, gc_spin_cb);
}

static void gc_cycle_end(size_t base)
{
    S.gc_cycle = false;
    S.gc_base = base;
    uv_idle_stop(&S.gc_spin);
    uv_timer_stop(&S.gc_quiet);
}

/* A full collection made elsewhere (a task over its memory budget, the
 * cache): the cycle is over. */
static void gc_collected(void)
{
    if (S.gc_on) {
        gc_cycle_end(S.heap);
    }
}

static void gc_quiet_cb(uv_timer_t *h)
{
    (void)h;
    if (S.resumes == S.gc_quiet_mark && !S.gc_cycle) {
        gc_cycle_start();
    } /* else: busy since; the next idle turn arms it again */
}

static void gc_slice(void)
{
    lua_State *L = S.L;
    uint64_t end = uv_hrtime() + GC_SLICE_NS;
    bool done = false;
    if (lua_gc(L, LUA_GCINC, 0, GC_SLICE_MUL, GC_SLICE_STEPSIZE) == LUA_GCGEN) {
        /* The program chose the generational mode (collectgarbage): its
         * collector, its pace; back to it (with its default parameters). */
        lua_gc(L, LUA_GCGEN, 0, 0);
        S.gc_cycle = false;
        return;
    }
    do {
        done = lua_gc(L, LUA_GCSTEP, 0); /* 1: the cycle has ended */
    } while (!done && uv_hrtime() < end);
    lua_gc(L, LUA_GCINC, 0, GC_DEFAULT_MUL, GC_DEFAULT_STEPSIZE);
    if (done) {
        S.gc_seen = S.gc_ends;
        gc_cycle_end(S.heap); /* the collector has set its next trigger */
        return;
    }
    /* Credit until twice the heap of the last cycle's end (a negative
     * step is a credit of that many KiB; the last step left a little). */
    size_t limit = 2 * S.gc_base;
    if (limit > S.heap) {
        size_t kb = (limit - S.heap) >> 10;
        lua_gc(L, LUA_GCSTEP, -(int)(kb < INT_MAX ? kb : INT_MAX));
    }
}

static void gc_prepare_cb(uv_prepare_t *h)
{
    (void)h;
    if (S.ready_head) {
        return; /* not idle: tasks run first */
    }
    if (!lua_gc(S.L, LUA_GCISRUNNING)) {
        return; /* stopped by the program (collectgarbage("stop")) */
    }
    if (S.gc_ends != S.gc_seen) { /* a cycle ended outside our slices */
        S.gc_seen = S.gc_ends;
        gc_cycle_end(S.gc_end_heap);
    }
    if (S.gc_base == 0) {
        S.gc_base = S.heap; /* the first idle turn: the program has loaded */
    }
    if (!S.gc_cycle && S.heap >= S.gc_base + GC_MIN_GROWTH &&
        S.heap - S.gc_base >= S.gc_base / 2) {
        gc_cycle_start();
    }
    if (S.gc_cycle) {
        gc_slice();
    } else if (S.heap > S.gc_base + GC_QUIET_MIN &&
               !uv_is_active((uv_handle_t *)&S.gc_quiet)) {
        S.gc_quiet_mark = S.resumes;
        uv_timer_start(&S.gc_quiet, gc_quiet_cb, GC_QUIET_MS, 0);
    }
}

static void gc_init(lua_State *L, uv_loop_t *loop)
{
    if (luaL_newmetatable(L, GC_SENTINEL_MT)) {
        lua_pushcfunction(L, gc_sentinel_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    gc_sentinel_new(L);
    uv_prepare_init(loop, &S.gc_prepare);
    uv_idle_init(loop, &S.gc_spin);
    uv_timer_init(loop, &S.gc_quiet);
    /* None of them keeps the loop (or the program) alive. */
    uv_unref((uv_handle_t *)&S.gc_prepare);
    uv_unref((uv_handle_t *)&S.gc_spin);
    uv_unref((uv_handle_t *)&S.gc_quiet);
    uv_prepare_start(&S.gc_prepare, gc_prepare_cb);
    S.gc_on = true;
}

static void gc_shutdown(void)
{
    uv_handle_t *hs[] = {(uv_handle_t *)&S.gc_prepare,
                         (uv_handle_t *)&S.gc_spin,
                         (uv_handle_t *)&S.gc_quiet};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
        if (!uv_is_closing(hs[i])) {
            uv_close(hs[i], NULL);
        }
    }
    S.gc_on = false;
}

void sched_init(lua_State *L, uv_loop_t *loop)
{
    S.L = L;
    S.alloc = lua_getallocf(L, &S.alloc_ud);
    S.heap = (size_t)lua_gc(L, LUA_GCCOUNT) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB);
    lua_setallocf(L, budget_alloc, S.alloc_ud);
    S.mem_budget = SCHED_MEMORY_BUDGET;
    S.loop = loop;
    uv_idle_init(loop, &S.idle);
    gc_init(L, loop);
    *extra(L) = NULL;
    lua_getglobal(L, "coroutine");
    if (lua_istable(L, -1)) {
        lua_pushcfunction(L, guarded_yield);
        lua_setfield(L, -2, "yield");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TASK_MT)) {
        lua_pushcfunction(L, task_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
}

void sched_gc_stress(unsigned every)
{
    S.gc_every = every;
    if (every) {
        /* Collections at their own pace, not the idle one's. */
        gc_shutdown();
        /* Generational mode with the smallest minor multiplier: a minor
         * collection after every 1% of heap growth, inside resumes too. */
        lua_gc(S.L, LUA_GCGEN, 1, 100);
    }
}

void sched_shutdown(void)
{
    if (!uv_is_closing((uv_handle_t *)&S.idle)) {
        uv_close((uv_handle_t *)&S.idle, NULL);
    }
    gc_shutdown();
}

uv_loop_t *sched_loop(void)
{
    return S.loop;
}

uint64_t sched_ms(double seconds)
{
    if (!(seconds > 0)) {
        return 0;
    }
    double ms = seconds * 1000.0 + 0.5;
    if (!(ms < (double)SCHED_MS_MAX)) {
        return SCHED_MS_MAX;
    }
    return ms < 1.0 ? 1 : (uint64_t)ms;
}

void sched_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms,
                       uint64_t repeat)
{
    uv_update_time(t->loop);
    uv_timer_start(t, cb, ms, repeat);
}

struct task *sched_spawn(lua_State *L, int nargs)
{
    struct task *t = lua_newuserdatauv(L, sizeof *t, 0);  /* fn args ud */
    memset(t, 0, sizeof *t);
    t->results_ref = LUA_NOREF;
    luaL_setmetatable(L, TASK_MT);
    lua_insert(L, -(nargs + 2));                          /* ud fn args */
    t->co = lua_newthread(L);                             /* ud fn args co */
    *extra(t->co) = t;
    t->thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);       /* ud fn args */
    lua_xmove(L, t->co, nargs + 1);                       /* ud */
    lua_pushvalue(L, -1);
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->state = T_NEW;
    S.live++;
    t->next_live = S.live_head;
    if (S.live_head) {
        S.live_head->prev_live = t;
    }
    S.live_head = t;
    /* Code started by budgeted code (an async job, a parallel branch, an
     * ad.spawn from a tool or hook) runs under the same budget. */
    if (S.running && S.running->budget_ns) {
        sched_set_budget(t, (double)S.running->budget_ns / 1e9);
    }
    enqueue(t, nargs);
    return t;
}

struct task *sched_current(lua_State *L)
{
    return *extra(L);
}

lua_State *sched_thread(struct task *t)
{
    return t->co;
}

struct task *sched_check_wait(lua_State *L)
{
    struct task *t = *extra(L);
    if (!t || t->co != L || t->state != T_RUNNING || !lua_isyieldable(L)) {
        luaL_error(L, "this operation waits, so it must be called from a "
                      "task (not from inside coroutine.wrap, or a callback "
                      "or metamethod that a C function such as table.sort, "
                      "string.gsub or tostring calls)");
    }
    return t;
}

int sched_wait(lua_State *L, sched_cancel_fn cancel, void *data)
{
    /* Bindings have called sched_check_wait before registering their
     * operation; this repeat is a guard that never fires for them. */
    struct task *t = sched_check_wait(L);
    if (t->cancel_pending) {
        /* Cancelled while it was running or queued to resume: the first
         * wait after that fails at once (its operation is undone), so a
         * cancel is never lost; later waits (cleanup) work normally. */
        t->cancel_pending = false;
        if (cancel) {
            cancel(t, data);
        }
        lua_pushnil(L);
        lua_pushliteral(L, "cancelled");
        return 2;
    }
    t->state = T_WAITING;
    t->cancel = cancel;
    t->cancel_data = data;
    return lua_yield(L, 0);
}

static void finish(struct task *t, bool ok, int nres)
{
    lua_State *L = S.L;
    lua_State *co = t->co;
    lua_createtable(L, nres, 1);                          /* res */
    if (ok) {
        lua_xmove(co, L, nres);                           /* res v1..vn */
        for (int i = nres; i >= 1; i--) {
            lua_rawseti(L, -(i + 1), i);
        }
        lua_pushinteger(L, nres);
        lua_setfield(L, -2, "n");
    } else {
        lua_xmove(co, L, 1);                              /* res err */
        lua_rawseti(L, -2, 1);
    }
    t->results_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->ok = ok;
    t->state = T_DONE;
    lua_resetthread(co); /* runs pending __close handlers of a failed task */
    *extra(co) = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, t->thread_ref);
    t->thread_ref = LUA_NOREF;
    t->co = NULL;
    S.live--;
    if (t->prev_live) {
        t->prev_live->next_live = t->next_live;
    } else {
        S.live_head = t->next_live;
    }
    if (t->next_live) {
        t->next_live->prev_live = t->prev_live;
    }
    t->prev_live = t->next_live = NULL;

    for (size_t i = 0; i < t->njoiners; i++) {
        struct task *w = t->joiners[i];
        if (w->state == T_WAITING) {
            w->state = T_READY;
            w->cancel = NULL;
            enqueue(w, sched_push_results(w->co, t));
        }
    }
    t->njoiners = 0;
    if (t->on_done) {
        t->on_done(t, t->on_done_ud);
    }
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
}

static const char *mem_message(void);

const char *sched_memory_refused(const struct task *t)
{
    return t->mem_over ? mem_message() : NULL;
}

static const char *mem_message(void)
{
    static char msg[128];
    snprintf(msg, sizeof msg, "used more than %zu MiB of memory without "
             "yielding; stopped", S.mem_budget >> 20);
    return msg;
}

/* Runaway guard: a task with a budget that runs longer than it without
 * yielding (a `while true do end` in a user hook) gets an error instead of
 * freezing the server. Checked every 10k VM instructions, on the task's
 * thread and on every coroutine created from it (they inherit the hook but
 * not the extra space, hence S.running). It cannot interrupt a single C
 * call (a pathological string.find pattern): hooks run between VM
 * instructions only. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct task *t = S.running;
    if (t && t->budget_ns && uv_hrtime() - S.resume_start > t->budget_ns) {
        luaL_error(L, "ran for more than %f s without yielding (a loop that "
                      "never ends?); stopped",
                   (double)t->budget_ns / 1e9);
    }
}

/* The stop guard (sched.h): the signal not yet taken by the loop, when it
 * came (CLOCK_MONOTONIC ns), and the task it found running. */
static volatile sig_atomic_t stop_pending;
static volatile uint64_t stop_at_ns;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* async-signal-safe */
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void restore_hook(lua_State *L)
{
    struct task *t = S.running;
    bool budget = t && t->budget_ns;
    lua_sethook(L, budget ? budget_hook : NULL, budget ? LUA_MASKCOUNT : 0, 10000);
}

static void stop_hook(lua_State *L, lua_Debug *ar)
{
    budget_hook(L, ar); /* (it replaced the budget's check) */
    if (!stop_pending) {
        restore_hook(L); /* taken by the loop: nothing to stop */
        return;
    }
    if (mono_ns() - stop_at_ns > (uint64_t)SCHED_STOP_GRACE_MS * 1000000u) {
        int sig = stop_pending;
        restore_hook(L);
        luaL_error(L, "stopped by %s: the code ran for %d s after it without yielding "
                      "(a loop that never ends?)",
                   sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP",
                   SCHED_STOP_GRACE_MS / 1000);
    }
}

void sched_stop_signal(int signo)
{
    if (!stop_pending) {
        stop_at_ns = mono_ns();
    }
    stop_pending = signo;
    struct task *t = S.running;
    if (t) {
        /* lua_sethook may be called from a signal handler (lua.c's Ctrl-C) */
        lua_sethook(t->co, stop_hook, LUA_MASKCOUNT, 1000);
    }
}

void sched_stop_taken(void)
{
    stop_pending = 0;
}

void sched_set_budget(struct task *t, double seconds)
{
    /* (saturated as a timer is: a budget of 1e300 s is no budget to speak of) */
    uint64_t ms = sched_ms(seconds);
    t->budget_ns = ms < SCHED_MS_MAX ? ms * 1000000u : UINT64_MAX;
    lua_sethook(t->co, t->budget_ns ? budget_hook : NULL,
                t->budget_ns ? LUA_MASKCOUNT : 0, 10000);
}

static void do_resume(struct task *t, int nargs)
{
    lua_State *co = t->co;
    int nres = 0;
    t->state = T_RUNNING;
    t->cancel = NULL;
    S.resume_start = uv_hrtime();
    S.resume_heap = S.heap;
    S.resumes++;
    struct task *outer = S.running;
    S.running = t;
    t->mem_over = false;
    int st = lua_resume(co, NULL, nargs, &nres);
    S.running = outer;
    if (st == LUA_ERRMEM && t->mem_over) {
        /* Lua's own message says only "not enough memory". */
        lua_pop(co, 1);
        lua_pushstring(co, mem_message());
    }
    if (t->mem_over || (S.gc_every && S.resumes % S.gc_every == 0)) {
        /* What the stopped code held is garbage now: give it back before
         * the collector's pace would. (Or the GC stress test mode.) */
        lua_gc(S.L, LUA_GCCOLLECT);
        gc_collected();
    }
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        if (t->state == T_WAITING) {
            return;
        }
        /* Not a wait of ours: answered at once (guarded_yield raises). */
        lua_pushlightuserdata(co, &FOREIGN_YIELD);
        t->state = T_READY;
        enqueue(t, 1);
    } else if (st == LUA_OK) {
        finish(t, true, nres);
    } else {
        /* Error: a table error object passes untouched; anything else gets
         * the traceback of the still-intact coroutine. */
        if (!lua_istable(co, -1)) {
            const char *msg = lua_tostring(co, -1);
            luaL_traceback(co, co, msg ? msg : "(error object is not a string)",
                           0);
            lua_remove(co, -2);
        }
        finish(t, false, 1);
    }
}

static void process_ready(uv_idle_t *h)
{
    /* Only the tasks queued before this turn; new ones wait a turn so a
     * busy task cannot starve the loop's I/O. */
    struct task *tail = S.ready_tail;
    for (;;) {
        struct task *t = S.ready_head;
        if (!t) {
            break;
        }
        S.ready_head = t->next_ready;
        if (!S.ready_head) {
            S.ready_tail = NULL;
        }
        if (t->state == T_NEW && t->cancelled) {
            lua_settop(t->co, 0);
            lua_pushliteral(t->co, "cancelled");
            finish(t, false, 1);
        } else if (t->state == T_NEW || t->state == T_READY) {
            do_resume(t, t->ready_nargs);
        }
        if (t == tail) {
            break;
        }
    }
    if (!S.ready_head) {
        uv_idle_stop(h);
    }
}

void sched_resume(struct task *t, int nargs)
{
    if (t->state != T_WAITING) {
        lua_pop(t->co, nargs);
        return;
    }
    do_resume(t, nargs);
}

void sched_defer(struct task *t, int nargs)
{
    /* The running task has not registered its wait yet (or never will): a
     * wake-up for it would be lost and the wait that follows would never
     * end. Its caller is wrong; debug (and sanitized) builds stop here. */
    assert(t->state != T_RUNNING);
    if (t->state != T_WAITING) {
        lua_pop(t->co, nargs);
        return;
    }
    t->state = T_READY;
    t->cancel = NULL;
    enqueue(t, nargs);
}

bool sched_cancel(struct task *t)
{
    if (t->state == T_DONE) {
        return false;
    }
    t->cancelled = true;
    if (t->state == T_NEW) {
        /* Still in the ready queue: process_ready finishes it there (it
         * must not be released while the queue points at it). */
        return true;
    } else if (t->state == T_READY || t->state == T_RUNNING) {
        t->cancel_pending = true;
    } else if (t->state == T_WAITING) {
        sched_cancel_fn fn = t->cancel;
        void *data = t->cancel_data;
        t->cancel = NULL;
        if (fn) {
            fn(t, data);
        }
        lua_pushnil(t->co);
        lua_pushliteral(t->co, "cancelled");
        t->state = T_READY;
        enqueue(t, 2);
    }
    return true;
}

bool sched_is_done(const struct task *t)
{
    return t->state == T_DONE;
}

bool sched_is_cancelled(const struct task *t)
{
    return t->cancelled;
}

void sched_on_done(struct task *t, sched_done_fn fn, void *ud)
{
    t->on_done = fn;
    t->on_done_ud = ud;
}

void sched_push_task(lua_State *L, struct task *t)
{
    if (t->ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    } else {
        lua_pushnil(L);
    }
}

int sched_push_results(lua_State *L, struct task *t)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->results_ref);    /* res */
    if (!t->ok) {
        lua_pushboolean(L, 0);
        lua_rawgeti(L, -2, 1);                            /* res false err */
        lua_remove(L, -3);
        return 2;
    }
    lua_getfield(L, -1, "n");
    int n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n + 2, "too many task results");
    lua_pushboolean(L, 1);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -(i + 1), i);
    }
    lua_remove(L, -(n + 2));
    return n + 1;
}

void sched_add_joiner(struct task *t, struct task *waiter)
{
    if (t->njoiners == t->capjoiners) {
        size_t cap = t->capjoiners ? t->capjoiners * 2 : 4;
        struct task **nj = realloc(t->joiners, cap * sizeof *nj);
        if (!nj) {
            return;
        }
        t->joiners = nj;
        t->capjoiners = cap;
    }
    t->joiners[t->njoiners++] = waiter;
}

void sched_remove_joiner(struct task *t, struct task *waiter)
{
    for (size_t i = 0; i < t->njoiners; i++) {
        if (t->joiners[i] == waiter) {
            t->joiners[i] = t->joiners[--t->njoiners];
            return;
        }
    }
}

size_t sched_cancel_all(void)
{
    size_t n = 0;
    struct task **all = malloc(S.live * sizeof *all);
    if (!all) {
        return 0;
    }
    for (struct task *t = S.live_head; t && n < S.live; t = t->next_live) {
        all[n++] = t;
    }
    size_t cancelled = 0;
    for (size_t i = 0; i < n; i++) {
        /* Once is enough: a cancel never gets lost (cancel_pending), and a
         * task cleaning up after it (waiting for its child to exit) must
         * be allowed to finish. Tasks that ignore it are abandoned. */
        if (!all[i]->cancelled && sched_cancel(all[i])) {
            cancelled++;
        }
    }
    free(all);
    return cancelled;
}

void sched_abandon_all(void)
{
    for (struct task *t = S.live_head; t; t = t->next_live) {
        if (t->state == T_WAITING && t->cancel) {
            sched_cancel_fn fn = t->cancel;
            t->cancel = NULL;
            fn(t, t->cancel_data);
        }
        t->state = T_DONE; /* never resumed again */
    }
    S.ready_head = S.ready_tail = NULL;
}

size_t sched_live_tasks(void)
{
    return S.live;
}
