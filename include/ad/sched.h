/* The scheduler: Lua tasks (coroutines) on the one libuv loop.
 *
 * Every MCP request, async job, run-script main and parallel branch is a
 * task. A C function that would block records a pending operation on the
 * current task and yields (sched_wait); the loop callback that completes
 * the operation pushes its results onto the task's thread and calls
 * sched_resume. Only this module calls lua_resume, and resumes always start
 * from the loop (or from the deferred queue), never from inside Lua. */
#ifndef AD_SCHED_H
#define AD_SCHED_H
#include <stdbool.h>
#include <lua.h>
#include <uv.h>

struct task;

/* Called when a waiting task is cancelled: must detach the operation so it
 * never completes later (kill the child, stop the timer, leave a queue). */
typedef void (*sched_cancel_fn)(struct task *t, void *data);
typedef void (*sched_done_fn)(struct task *t, void *ud);

void sched_init(lua_State *L, uv_loop_t *loop);
void sched_shutdown(void);
uv_loop_t *sched_loop(void);

/* Milliseconds in a number of seconds from Lua, rounded: 0 for s <= 0 or
 * NaN, at least 1 for any s > 0, and at most SCHED_MS_MAX (2^53 ms, some
 * 285,000 years: forever, and far inside what libuv adds to the loop's
 * time) for math.huge or a 19-digit timeout, whose conversion to uint64_t
 * would be undefined. Every timer set from a Lua number goes through it. */
#define SCHED_MS_MAX ((uint64_t)1 << 53)
uint64_t sched_ms(double seconds);

/* uv_timer_start measured from now. libuv counts a timer from the loop's
 * cached time, which is as old as the current loop turn: a task that ran
 * long before it waits would see its timeout end that much early. */
void sched_timer_start(uv_timer_t *t, uv_timer_cb cb, uint64_t ms,
                       uint64_t repeat);

/* [-(nargs+1), +1, m] Pops a function and its nargs arguments from L and
 * pushes the new task (userdata "ad.infra.task"). Its first resume is deferred
 * to the loop. The scheduler references the task only until it finishes:
 * whoever reads its results after that (sched_push_results) keeps the
 * userdata referenced, or a collection frees it. */
struct task *sched_spawn(lua_State *L, int nargs);

/* The task running on thread L, or NULL outside any task. */
struct task *sched_current(lua_State *L);

/* Returns the running task when the caller may wait (it runs on the
 * task's own thread and can yield), else raises the "must be called from a
 * task" error. Bindings call it BEFORE registering anything (timer, queue
 * entry, watcher): an operation registered by a caller that cannot yield
 * would complete later and resume the task in the middle of another wait. */
struct task *sched_check_wait(lua_State *L);

/* Parks the running task on an operation; use as `return sched_wait(...)`.
 * Raises like sched_check_wait when the caller cannot wait. */
int sched_wait(lua_State *L, sched_cancel_fn cancel, void *data);

/* The thread of a task, to push results onto before resuming. */
lua_State *sched_thread(struct task *t);

/* Completes the pending operation: resumes t now with the nargs values on
 * top of its thread. Only from loop callbacks. */
void sched_resume(struct task *t, int nargs);

/* Same, but on the next loop turn: safe to call from inside Lua. */
void sched_defer(struct task *t, int nargs);

/* Cancels a waiting task: its operation's cancel function runs, then the
 * task resumes with nil, "cancelled". A task not yet started ends at once.
 * Returns false when the task has already finished. */
bool sched_cancel(struct task *t);

bool sched_is_done(const struct task *t);
bool sched_is_cancelled(const struct task *t);
void sched_on_done(struct task *t, sched_done_fn fn, void *ud);

/* [-0, +(0|1), -] Pushes the task userdata for t. */
void sched_push_task(lua_State *L, struct task *t);

/* [-0, +n, m] For a finished task: pushes true, results... or false, err;
 * returns how many values were pushed. */
int sched_push_results(lua_State *L, struct task *t);

/* Adds waiter to the tasks resumed with t's results when t finishes. */
void sched_add_joiner(struct task *t, struct task *waiter);

void sched_remove_joiner(struct task *t, struct task *waiter);

size_t sched_live_tasks(void);

/* Limits how long t may run between two yields (seconds; 0 = no limit).
 * Coroutines the task creates inherit the check. */
void sched_set_budget(struct task *t, double seconds);

/* A stop signal (SIGINT, SIGTERM, SIGHUP) reaches Lua only through the
 * loop, which code that never yields (a `while true do end` in a script or
 * a hook) keeps from running: called from the signal handler, this arms a
 * guard on the task running then, which raises an error in it once it has
 * run STOP_GRACE_MS past the signal without yielding, unless the loop has
 * taken the signal by then (sched_stop_taken). Async-signal-safe. */
#define SCHED_STOP_GRACE_MS 2000
void sched_stop_signal(int signo);
void sched_stop_taken(void);

/* While a task with a budget runs, the Lua heap may grow by a bounded
 * amount between two yields; past it allocations fail ("not enough
 * memory"). The message naming the budget if that happened to t since it
 * was last resumed, else NULL. */
const char *sched_memory_refused(const struct task *t);

/* Test-only (AGENT_DISPATCH_GC_STRESS=N): the collector in generational
 * mode collecting at every 1% of growth, and a full collection after every
 * N task resumes, so finalizers and the C bindings' userdata meet the
 * collector at every point a test reaches. 0 = normal collection. */
void sched_gc_stress(unsigned every);

/* Shutdown, last step before the Lua state closes: detaches the pending
 * operation of every task still alive (stops its timer, leaves its queue)
 * so no loop callback can reach a task the Lua state is about to free. */
void sched_abandon_all(void);

/* Cancels every task that is still alive (shutdown); returns how many. */
size_t sched_cancel_all(void);

#endif
