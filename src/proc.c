/* Child processes; see proc.h for the lifecycle and guarantees.
 *
 * Invariants: a proc is on the live list from spawn until its child is
 * reaped; memory is freed only when the owner has released it AND every
 * libuv handle it owns has been closed. Signals go to -pid only while the
 * pid is a real positive leader we spawned; group 0 is never signalled. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad/linebuf.h"
#include "ad/proc.h"

extern char **environ;

struct proc {
    uv_pipe_t out;
    uv_pipe_t err;
    uv_timer_t timeout;
    uv_timer_t escalate;  /* SIGTERM -> SIGKILL */
    uv_timer_t drain;     /* after exit: stop waiting for the pipes */
    int open_handles;
    struct proc_cbs cbs;
    void *ud;
    struct linebuf lines;
    char readbuf[65536];
    bool reading_out;

    char *err_head;
    size_t err_head_len, err_head_cap;
    char *err_tail;       /* ring buffer */
    size_t err_tail_cap, err_tail_pos, err_total;
    char *err_joined;
    size_t err_joined_len;

    uint64_t grace_ms;
    uint64_t drain_ms;
    void (*on_reap)(void *arg);
    void *reap_arg;
    int pid;
    bool out_open, err_open;
    bool exited, done, timed_out, released, kill_sent;
    int64_t exit_status;
    int term_signal;
    struct proc *next_live, *prev_live;
};

static struct proc *live_head;
static size_t live_count;

/* Children are started with posix_spawn (vfork semantics: no copy of the
 * server's address space, no copy-on-write faults afterwards; uv_spawn
 * forks, which made spawning the largest cost of a dispatch) and reaped
 * here: one SIGCHLD watcher while any child is alive, which waits for each
 * live child by pid. It is closed when the last child is reaped so an idle
 * loop holds no handle of ours. */
static uv_signal_t *reaper;

static void on_sigchld(uv_signal_t *h, int signum);

static void reaper_closed(uv_handle_t *h)
{
    free(h);
}

static int reaper_start(uv_loop_t *loop)
{
    if (reaper) {
        return 0;
    }
    reaper = malloc(sizeof *reaper);
    if (!reaper) {
        return UV_ENOMEM;
    }
    uv_signal_init(loop, reaper);
    int rc = uv_signal_start(reaper, on_sigchld, SIGCHLD);
    if (rc != 0) {
        uv_close((uv_handle_t *)reaper, reaper_closed);
        reaper = NULL;
    }
    return rc;
}

static void reaper_stop_if_idle(void)
{
    if (reaper && !live_head) {
        uv_signal_stop(reaper);
        uv_close((uv_handle_t *)reaper, reaper_closed);
        reaper = NULL;
    }
}

static void live_add(struct proc *p)
{
    p->next_live = live_head;
    if (live_head) {
        live_head->prev_live = p;
    }
    live_head = p;
    live_count++;
}

static void live_remove(struct proc *p)
{
    if (p->prev_live) {
        p->prev_live->next_live = p->next_live;
    } else if (live_head == p) {
        live_head = p->next_live;
    } else {
        return; /* not on the list */
    }
    if (p->next_live) {
        p->next_live->prev_live = p->prev_live;
    }
    p->next_live = p->prev_live = NULL;
    live_count--;
}

static void maybe_free(struct proc *p)
{
    if (p->open_handles == 0 && p->released) {
        linebuf_free(&p->lines);
        free(p->err_head);
        free(p->err_tail);
        free(p->err_joined);
        free(p);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    struct proc *p = h->data;
    p->open_handles--;
    maybe_free(p);
}

static void close_handle(struct proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h)) {
        uv_close(h, on_handle_closed);
    }
    (void)p;
}

/* True when some process received the signal. */
static bool signal_group(struct proc *p, int sig)
{
    if (p->pid <= 1) {
        return false;
    }
    if (kill(-p->pid, sig) == 0) {
        return true;
    }
    if (errno != ESRCH && !p->exited) {
        /* No group (should not happen): the child alone. */
        return kill(p->pid, sig) == 0;
    }
    return false;
}

static void maybe_close_timers(struct proc *p)
{
    if (p->done && p->released &&
        !uv_is_active((uv_handle_t *)&p->escalate)) {
        close_handle(p, (uv_handle_t *)&p->timeout);
        close_handle(p, (uv_handle_t *)&p->escalate);
        close_handle(p, (uv_handle_t *)&p->drain);
    }
}

static void on_escalate(uv_timer_t *t)
{
    struct proc *p = t->data;
    signal_group(p, SIGKILL);
    maybe_close_timers(p);
}

static void start_kill(struct proc *p, bool hard)
{
    signal_group(p, hard ? SIGKILL : SIGTERM);
    if (!hard && !p->kill_sent) {
        uv_timer_start(&p->escalate, on_escalate, p->grace_ms, 0);
    }
    p->kill_sent = true;
}

static void check_done(struct proc *p)
{
    if (p->done || !p->exited || p->out_open || p->err_open) {
        return;
    }
    p->done = true;
    uv_timer_stop(&p->drain);
    uv_timer_stop(&p->timeout);
    if (p->cbs.on_done) {
        p->cbs.on_done(p, p->ud);
    }
    maybe_close_timers(p);
}

static void close_out(struct proc *p)
{
    if (p->out_open) {
        p->out_open = false;
        uv_read_stop((uv_stream_t *)&p->out);
        close_handle(p, (uv_handle_t *)&p->out);
        if (p->cbs.on_stdout_eof) {
            p->cbs.on_stdout_eof(p, p->ud);
        }
    }
}

static void close_err(struct proc *p)
{
    if (p->err_open) {
        p->err_open = false;
        uv_read_stop((uv_stream_t *)&p->err);
        close_handle(p, (uv_handle_t *)&p->err);
    }
}

static void on_drain_deadline(uv_timer_t *t)
{
    /* A grandchild that escaped the group still holds a pipe: stop
     * waiting. Closing our read end is safe on a single-threaded loop. */
    struct proc *p = t->data;
    close_out(p);
    close_err(p);
    check_done(p);
}

static void on_exit_status(struct proc *p, int64_t status, int sig)
{
    p->exited = true;
    p->exit_status = status;
    p->term_signal = sig;
    uv_timer_stop(&p->timeout);
    live_remove(p);
    /* Whatever the child left in its group (stdio MCP servers, stray
     * background jobs) goes with it. */
    if (signal_group(p, SIGTERM)) {
        uv_timer_start(&p->escalate, on_escalate, p->grace_ms, 0);
    } else {
        /* The group is already empty: an escalation started by a kill has
         * nothing left to SIGKILL and must not hold the loop (and the exit
         * of `run` after Ctrl-C or --timeout) for the grace period. */
        uv_timer_stop(&p->escalate);
    }
    if (p->on_reap) {
        p->on_reap(p->reap_arg);
        p->on_reap = NULL;
    }
    if (p->cbs.on_exit) {
        p->cbs.on_exit(p, p->ud);
    }
    if (p->out_open || p->err_open) {
        uv_timer_start(&p->drain, on_drain_deadline, p->drain_ms, 0);
    }
    check_done(p);
}

static void on_sigchld(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    struct proc *next;
    for (struct proc *p = live_head; p; p = next) {
        next = p->next_live;
        int st;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            on_exit_status(p, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                           WIFSIGNALED(st) ? WTERMSIG(st) : 0);
        } else if (r < 0 && errno == ECHILD) {
            on_exit_status(p, 0, 0); /* reaped elsewhere: treat as gone */
        }
    }
    reaper_stop_if_idle();
}

/* posix_spawn with the child's own session, stdin from /dev/null, stdout
 * and stderr on the given pipe ends, default signal handling and an empty
 * signal mask (we ignore SIGPIPE; the child must not inherit that).
 * Returns 0 or a negative errno (exec and chdir failures included). */
static int spawn_child(const struct proc_opts *o, int out_w, int err_w,
                       pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, out_w, 1);
    rc = rc ? rc : posix_spawn_file_actions_adddup2(&fa, err_w, 2);
    if (!rc && o->cwd) {
        rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    }
    rc = rc ? rc : posix_spawnattr_setsigmask(&at, &none);
    rc = rc ? rc : posix_spawnattr_setsigdefault(&at, &all);
    rc = rc ? rc : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID |
                                                 POSIX_SPAWN_SETSIGMASK |
                                                 POSIX_SPAWN_SETSIGDEF);
    if (!rc) {
        rc = posix_spawn(pid, o->argv[0], &fa, &at, o->argv,
                         o->env ? o->env : environ);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return -rc;
}

static void on_timeout(uv_timer_t *t)
{
    struct proc *p = t->data;
    if (!p->exited) {
        p->timed_out = true;
        start_kill(p, false);
    }
}

/* One buffer serves both pipes: a read callback consumes its bytes before
 * the loop runs the next one. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct proc *p = h->data;
    (void)suggested;
    buf->base = p->readbuf;
    buf->len = sizeof p->readbuf;
}

static void line_cb(void *ud, const char *line, size_t n, bool too_long)
{
    struct proc *p = ud;
    (void)too_long;
    if (p->cbs.on_line) {
        p->cbs.on_line(p, line, n, p->ud);
    }
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct proc *p = s->data;
    if (n > 0) {
        linebuf_feed(&p->lines, buf->base, (size_t)n, line_cb, p);
    } else if (n < 0) {
        linebuf_finish(&p->lines, line_cb, p);
        close_out(p);
        check_done(p);
    }
}

static void keep_stderr(struct proc *p, const char *d, size_t n)
{
    p->err_total += n;
    size_t room = p->err_head_cap - p->err_head_len;
    size_t h = n < room ? n : room;
    memcpy(p->err_head + p->err_head_len, d, h);
    p->err_head_len += h;
    d += h;
    n -= h;
    if (p->err_tail_cap == 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        p->err_tail[p->err_tail_pos % p->err_tail_cap] = d[i];
        p->err_tail_pos++;
    }
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct proc *p = s->data;
    if (n > 0) {
        keep_stderr(p, buf->base, (size_t)n);
    } else if (n < 0) {
        close_err(p);
        check_done(p);
    }
}

int proc_spawn(uv_loop_t *loop, const struct proc_opts *o,
               const struct proc_cbs *cbs, void *ud, struct proc **out)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p) {
        return UV_ENOMEM;
    }
    p->err_head_cap = o->stderr_head;
    p->err_tail_cap = o->stderr_tail;
    p->err_head = malloc(p->err_head_cap + 1);
    p->err_tail = malloc(p->err_tail_cap + 1);
    if (!p->err_head || !p->err_tail) {
        free(p->err_head);
        free(p->err_tail);
        free(p);
        return UV_ENOMEM;
    }
    p->cbs = *cbs;
    p->ud = ud;
    p->grace_ms = o->grace_ms;
    p->drain_ms = o->drain_ms;
    linebuf_init(&p->lines, o->max_line);

    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->escalate);
    uv_timer_init(loop, &p->drain);
    p->out.data = p->err.data = p;
    p->timeout.data = p->escalate.data = p->drain.data = p;
    p->open_handles = 5;

    int outp[2] = {-1, -1}, errp[2] = {-1, -1};
    pid_t pid = 0;
    int rc = reaper_start(loop);
    if (rc == 0 && (pipe2(outp, O_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0)) {
        rc = -errno;
    }
    if (rc == 0) {
        rc = spawn_child(o, outp[1], errp[1], &pid);
    }
    if (outp[1] >= 0) {
        close(outp[1]);
    }
    if (errp[1] >= 0) {
        close(errp[1]);
    }
    if (rc == 0 && (uv_pipe_open(&p->out, outp[0]) != 0 ||
                    uv_pipe_open(&p->err, errp[0]) != 0)) {
        rc = UV_EIO; /* cannot happen with fresh pipes; never leak the child */
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    p->released = (rc != 0);
    if (rc != 0) {
        if (outp[0] >= 0 && !uv_is_active((uv_handle_t *)&p->out)) {
            close(outp[0]);
        }
        if (errp[0] >= 0 && !uv_is_active((uv_handle_t *)&p->err)) {
            close(errp[0]);
        }
        close_handle(p, (uv_handle_t *)&p->out);
        close_handle(p, (uv_handle_t *)&p->err);
        close_handle(p, (uv_handle_t *)&p->timeout);
        close_handle(p, (uv_handle_t *)&p->escalate);
        close_handle(p, (uv_handle_t *)&p->drain);
        reaper_stop_if_idle();
        return rc;
    }
    p->pid = pid;
    p->on_reap = o->on_reap;
    p->reap_arg = o->reap_arg;
    p->out_open = p->err_open = true;
    live_add(p);
    uv_read_start((uv_stream_t *)&p->out, alloc_cb, on_out_read);
    p->reading_out = true;
    uv_read_start((uv_stream_t *)&p->err, alloc_cb, on_err_read);
    if (o->timeout_ms > 0) {
        uv_timer_start(&p->timeout, on_timeout, o->timeout_ms, 0);
    }
    *out = p;
    return 0;
}

void proc_kill(struct proc *p, bool hard)
{
    if (!p->exited) {
        start_kill(p, hard);
    }
}

void proc_pause(struct proc *p)
{
    if (p->out_open && p->reading_out) {
        uv_read_stop((uv_stream_t *)&p->out);
        p->reading_out = false;
    }
}

void proc_resume(struct proc *p)
{
    if (p->out_open && !p->reading_out) {
        uv_read_start((uv_stream_t *)&p->out, alloc_cb, on_out_read);
        p->reading_out = true;
    }
}

void proc_release(struct proc *p)
{
    p->released = true;
    p->ud = NULL;
    memset(&p->cbs, 0, sizeof p->cbs);
    if (!p->exited) {
        start_kill(p, true);
    }
    proc_resume(p); /* keep draining so the child never blocks */
    maybe_close_timers(p);
    maybe_free(p);
}

int proc_pid(const struct proc *p) { return p->pid; }
bool proc_exited(const struct proc *p) { return p->exited; }
bool proc_done(const struct proc *p) { return p->done; }
bool proc_timed_out(const struct proc *p) { return p->timed_out; }
int64_t proc_exit_status(const struct proc *p) { return p->exit_status; }
int proc_term_signal(const struct proc *p) { return p->term_signal; }

const char *proc_stderr(struct proc *p, size_t *len)
{
    size_t tail_n = p->err_total - p->err_head_len;
    if (tail_n == 0) {
        *len = p->err_head_len;
        return p->err_head;
    }
    if (tail_n > p->err_tail_cap) {
        tail_n = p->err_tail_cap;
    }
    size_t dropped = p->err_total - p->err_head_len - tail_n;
    char marker[96];
    int mlen = dropped ? snprintf(marker, sizeof marker,
                                  "\n[... %zu bytes of stderr omitted ...]\n",
                                  dropped)
                       : 0;
    free(p->err_joined);
    p->err_joined = malloc(p->err_head_len + (size_t)mlen + tail_n + 1);
    if (!p->err_joined) {
        *len = p->err_head_len;
        return p->err_head;
    }
    char *w = p->err_joined;
    memcpy(w, p->err_head, p->err_head_len);
    w += p->err_head_len;
    memcpy(w, marker, (size_t)mlen);
    w += mlen;
    size_t start = p->err_tail_pos - tail_n;
    for (size_t i = 0; i < tail_n; i++) {
        *w++ = p->err_tail[(start + i) % p->err_tail_cap];
    }
    *w = '\0';
    p->err_joined_len = (size_t)(w - p->err_joined);
    *len = p->err_joined_len;
    return p->err_joined;
}

void proc_kill_all(void)
{
    for (struct proc *p = live_head; p; p = p->next_live) {
        signal_group(p, SIGKILL);
        p->kill_sent = true;
    }
}

size_t proc_live_count(void)
{
    return live_count;
}
