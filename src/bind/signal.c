/* Lua face of the shutdown signals: core.signal.
 *
 *   core.signal.wait() -> "SIGINT" | "SIGTERM" | "SIGHUP"
 *
 * The handlers are installed on the first wait and stay installed until
 * shutdown (bind_signal_close, which then ignores the stop signals for the
 * bounded rest of the exit); they are unref'd so they never keep the
 * loop alive by themselves. A signal wakes every task waiting at the time
 * (the loop delivers it); the handler itself only arms the scheduler's
 * stop guard (sched_stop_signal: a hook on the running coroutine, as
 * lua.c's Ctrl-C does), for code that never yields to the loop. */
#include <signal.h>
#include <stdbool.h>

#include <uv.h>

#include "ad/sched.h"
#include "bind/bind.h"

#define MAX_WAITERS 8

static struct {
    uv_signal_t sig[3];
    bool open;
    struct task *waiter[MAX_WAITERS];
    int nwaiters;
} S;

/* libuv's handler of each stop signal, which ours calls (chained). */
static struct sigaction uv_action[3];

static int sig_index(int signo)
{
    return signo == SIGINT ? 0 : signo == SIGTERM ? 1 : 2;
}

/* Ours first: code that never yields keeps the loop from delivering the
 * signal, so the scheduler's stop guard is armed too (sched.h). */
static void chained(int signo)
{
    sched_stop_signal(signo);
    void (*uv_handler)(int) = uv_action[sig_index(signo)].sa_handler;
    if (uv_handler != SIG_DFL && uv_handler != SIG_IGN) {
        uv_handler(signo);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    sched_stop_taken();
    const char *name = signum == SIGINT ? "SIGINT"
                       : signum == SIGTERM ? "SIGTERM" : "SIGHUP";
    int n = S.nwaiters;
    S.nwaiters = 0;
    for (int i = 0; i < n; i++) {
        struct task *t = S.waiter[i];
        lua_pushstring(sched_thread(t), name);
        sched_resume(t, 1);
    }
}

static void cancel_signal_wait(struct task *t, void *data)
{
    (void)data;
    for (int i = 0; i < S.nwaiters; i++) {
        if (S.waiter[i] == t) {
            S.waiter[i] = S.waiter[--S.nwaiters];
            return;
        }
    }
}

static int l_wait_signal(lua_State *L)
{
    struct task *me = sched_check_wait(L);
    if (!S.open) {
        static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
        S.open = true;
        for (int i = 0; i < 3; i++) {
            uv_signal_init(sched_loop(), &S.sig[i]);
            uv_signal_start(&S.sig[i], on_signal, sigs[i]);
            uv_unref((uv_handle_t *)&S.sig[i]);
            struct sigaction ours;
            if (sigaction(sigs[i], NULL, &uv_action[i]) == 0 &&
                !(uv_action[i].sa_flags & SA_SIGINFO)) {
                ours = uv_action[i];
                ours.sa_handler = chained;
                sigaction(sigs[i], &ours, NULL);
            }
        }
    }
    if (S.nwaiters >= MAX_WAITERS) {
        return luaL_error(L, "too many signal waiters");
    }
    S.waiter[S.nwaiters++] = me;
    return sched_wait(L, cancel_signal_wait, NULL);
}

/* Closing a handle restores the default action, under which one more stop
 * signal (Claude Code sends SIGINT, then SIGTERM about 100 ms later) would
 * end a process that is already exiting by that signal instead of with its
 * status. The rest of the exit is bounded (the settle timers of main.c), so
 * from here on the stop signals are ignored; SIGKILL still works. */
void bind_signal_close(void)
{
    static const int sigs[3] = {SIGINT, SIGTERM, SIGHUP};
    if (S.open) {
        for (int i = 0; i < 3; i++) {
            uv_close((uv_handle_t *)&S.sig[i], NULL);
        }
        S.open = false;
    }
    for (int i = 0; i < 3; i++) {
        signal(sigs[i], SIG_IGN);
    }
}

void bind_signal_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"wait", l_wait_signal},
        {NULL, NULL},
    };
    bind_subtable(L, "signal", fns);
}
