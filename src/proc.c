/* Child processes; see proc.h for the lifecycle and guarantees.
 *
 * Invariants: a proc is on the live list from spawn until its child is
 * reaped; memory is freed only when the owner has released it AND every
 * libuv handle it owns has been closed. Signals go to -pid only while the
 * pid is a real positive leader we spawned; group 0 is never signalled.
 *
 * Over 500 lines on purpose: spawning (fds, start gate, vfork+exec),
 * reading, timeouts, kill escalation and reaping are one lifecycle over one
 * struct whose free rule (owner released AND every handle closed) every
 * part must keep; split, that rule would span files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad/keeper.h"
#include "ad/linebuf.h"
#include "ad/proc.h"

extern char **environ;

struct proc {
    uv_pipe_t out;
    uv_pipe_t err;
    uv_pipe_t in;         /* the child's stdin when it gets data */
    uv_write_t in_req;
    char *in_data;        /* kept until the write has completed */
    int gate_fd;          /* write end of the start gate, -1: none/opened */
    uv_timer_t timeout;
    uv_timer_t escalate;  /* SIGTERM -> SIGKILL */
    uv_timer_t drain;     /* after exit: stop waiting for the pipes */
    int open_handles;
    struct proc_cbs cbs;
    void *ud;
    struct linebuf lines;
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
    bool in_keep;         /* stdin stays open after the data (stdin_keep) */
    bool remote;          /* the keeper's child: its exit comes from there */
    bool kept;            /* handed off: the keeper takes it over */
    bool left;            /* kept and we are exiting: never signalled */
    bool in_open;         /* the stdin pipe accepts writes (proc_write) */
    bool in_close_wanted; /* proc_close_stdin: close once writes are out */
    int in_pending;       /* writes queued on the stdin pipe */
    int in_fd;            /* the stdin pipe's write end not yet given to
                           * the handle (see in_handle), else -1 */
    int64_t exit_status;
    int term_signal;
    struct proc *next_live, *prev_live;
};

static struct proc *live_head;
static size_t live_count;

/* Children are started with vfork and exec (no copy of the server's
 * address space, no copy-on-write faults afterwards; uv_spawn forks, which
 * made spawning the largest cost of a dispatch). posix_spawn cannot set
 * PR_SET_PDEATHSIG nor hold a child at a start gate, hence our own child
 * side (child_run); only a gated child is forked, since it must wait
 * while the server goes on. Children are reaped here: one SIGCHLD watcher,
 * which waits for each live child by pid. It is started with the first
 * child and referenced only while a child is alive, so an idle loop is
 * not kept running by it; starting and stopping it around every child
 * cost ten system calls per dispatch (signal mask, handler, libuv's
 * lock). proc_shutdown closes it. */
static uv_signal_t reaper;
static enum { REAPER_OFF, REAPER_ON, REAPER_CLOSING } reaper_state;

static void on_sigchld(uv_signal_t *h, int signum);

static void reaper_closed(uv_handle_t *h)
{
    (void)h;
    reaper_state = REAPER_OFF;
}

static int reaper_start(uv_loop_t *loop)
{
    if (reaper_state == REAPER_CLOSING) {
        return UV_EBUSY;
    }
    if (reaper_state == REAPER_OFF) {
        uv_signal_init(loop, &reaper);
        int rc = uv_signal_start(&reaper, on_sigchld, SIGCHLD);
        if (rc != 0) {
            reaper_state = REAPER_CLOSING;
            uv_close((uv_handle_t *)&reaper, reaper_closed);
            return rc;
        }
        reaper_state = REAPER_ON;
    }
    uv_ref((uv_handle_t *)&reaper);
    return 0;
}

static void reaper_stop_if_idle(void)
{
    if (reaper_state == REAPER_ON && !live_head) {
        uv_unref((uv_handle_t *)&reaper);
    }
}

void proc_shutdown(void)
{
    if (reaper_state == REAPER_ON) {
        reaper_state = REAPER_CLOSING;
        uv_signal_stop(&reaper);
        uv_close((uv_handle_t *)&reaper, reaper_closed);
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
        free(p->in_data);
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

static void close_gate(struct proc *p)
{
    if (p->gate_fd >= 0) {
        close(p->gate_fd); /* unopened: the waiting child exits, no exec */
        p->gate_fd = -1;
    }
}

static void close_in(struct proc *p)
{
    p->in_open = false;
    if (p->in_fd >= 0) {
        close(p->in_fd);
        p->in_fd = -1;
    }
    close_handle(p, (uv_handle_t *)&p->in); /* not opened: no system call */
}

/* The stdin pipe's handle, opened at the first write that needs it. Input
 * written whole before the child started (pre_write_stdin: the usual
 * case) needs no handle: the pipe is then kept open as a bare descriptor
 * until closed, without the two calls that make it non-blocking and the
 * epoll_ctl that fails when libuv closes a pipe it never polled. */
static int in_handle(struct proc *p)
{
    if (p->in_fd < 0) {
        return 0;
    }
    int rc = uv_pipe_open(&p->in, p->in_fd);
    if (rc == 0) {
        p->in_fd = -1;
    }
    return rc;
}

/* True when some process received the signal. */
static bool signal_group(struct proc *p, int sig)
{
    if (p->pid <= 1 || p->left) {
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
    if (p->kept && !p->left) {
        keeper_forget(p->pid);
    }
    close_in(p); /* the child is gone: nobody we wait for reads its input */
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
    close_gate(p);
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

/* Reaps p if it has exited (without waiting). */
static void try_reap(struct proc *p)
{
    int st;
    if (!p->exited && !p->remote && p->pid > 0 && waitpid(p->pid, &st, WNOHANG) == p->pid) {
        on_exit_status(p, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                       WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    }
}

/* Both pipes are at their end: a child closes them when it exits, so it
 * has most likely exited already. Reaping it now saves the wakeup for
 * SIGCHLD, which the caller waits for otherwise (the watcher then finds
 * nothing to reap). */
static void pipes_closed(struct proc *p)
{
    if (!p->out_open && !p->err_open) {
        try_reap(p);
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
        if (p->remote) {
            continue; /* not our child: the keeper reports its exit */
        }
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

/* What the child does between fork and exec. The parent prepares every
 * value, so the child only makes system calls (it may share the parent's
 * memory: vfork). */
struct child_setup {
    char *const *argv;
    char *const *env;
    const char *cwd;
    int in_r;            /* stdin; -1: /dev/null */
    int out_w, err_w;
    int gate_r;          /* -1: no start gate */
    int ready_w;         /* -1: vfork (the parent resumes at exec) */
    int ready_r;         /* the parent's end of ready_w */
    pid_t parent;
    volatile int err;    /* errno of the failed step; read back after vfork */
};

static void child_fail(struct child_setup *cs, int err)
{
    cs->err = err ? err : EIO;
    if (cs->ready_w >= 0) {
        /* fork: the parent learns of the failure from stderr. Not for
         * vfork: strerror is not safe there, and the parent has err. */
        char msg[512];
        int n = snprintf(msg, sizeof msg,
                         "agent-dispatch: cannot start %s: %s\n",
                         cs->argv[0], strerror(cs->err));
        if (n > 0 && write(cs->err_w, msg, (size_t)n) < 0) {
            _exit(127);
        }
    }
    _exit(127);
}

/* The signals a child resets: -1, every one; else those proc_fix_signals
 * found away from their default. */
static int fixed_sigs[NSIG];
static int n_fixed = -1;

void proc_fix_signals(void)
{
    int n = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &old) == 0 &&
            old.sa_handler != SIG_DFL) {
            fixed_sigs[n++] = sig;
        }
    }
    n_fixed = n;
}

/* The child: default signal handling and an empty mask (the server ignores
 * SIGPIPE; the child must not inherit that), death with the server
 * (PR_SET_PDEATHSIG: a server killed with SIGKILL leaves no child behind),
 * its own session, then the start gate, the standard streams and exec. */
__attribute__((noreturn)) static void child_run(struct child_setup *cs)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < n_fixed; i++) {
        sigaction(fixed_sigs[i], &dfl, NULL);
    }
    for (int sig = 1; n_fixed < 0 && sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            sigaction(sig, &dfl, NULL); /* glibc-reserved numbers refuse */
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        child_fail(cs, errno);
    }
    if (getppid() != cs->parent) {
        _exit(127); /* the server died before the line above */
    }
    if (setsid() < 0) {
        child_fail(cs, errno);
    }
    if (cs->ready_w >= 0 && write(cs->ready_w, "r", 1) != 1) {
        child_fail(cs, errno);
    }
    if (cs->gate_r >= 0) {
        char c;
        ssize_t n;
        do {
            n = read(cs->gate_r, &c, 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) {
            _exit(127); /* closed unopened: the server gave up or died */
        }
    }
    int in = cs->in_r >= 0 ? cs->in_r : open("/dev/null", O_RDONLY);
    if (in < 0 || dup2(in, 0) < 0 || dup2(cs->out_w, 1) < 0 ||
        dup2(cs->err_w, 2) < 0) {
        child_fail(cs, errno);
    }
    if (cs->cwd && chdir(cs->cwd) != 0) {
        child_fail(cs, errno);
    }
    execve(cs->argv[0], cs->argv, cs->env);
    child_fail(cs, errno);
    _exit(127); /* not reached */
}

/* Waits until a forked child is a session leader (so its pid, group and
 * start time can be recorded at once): a few system calls of the child,
 * less than a vfork waits for (the whole exec). */
static int wait_ready(int ready_r)
{
    char c;
    ssize_t n;
    do {
        n = read(ready_r, &c, 1);
    } while (n < 0 && errno == EINTR);
    return n == 1 ? 0 : -EIO;
}

/* vfork (no copy of the server's address space) for an ordinary child;
 * fork for a gated one, which must wait at its gate while the server goes
 * on. Signals are blocked around the fork so no handler of the server runs
 * in the child. Returns 0 or a negative errno (exec and chdir failures
 * included, for vfork). */
static int start_child(struct child_setup *cs, pid_t *pid)
{
    bool forked = cs->ready_w >= 0;
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    cs->parent = getpid();
    cs->err = 0;
    pid_t r = forked ? fork() : vfork();
    if (r == 0) {
        child_run(cs);
    }
    int rc = r < 0 ? -errno : 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (rc == 0 && !forked && cs->err != 0) {
        rc = -cs->err;
    }
    if (rc == 0 && forked) {
        close(cs->ready_w); /* EOF if the child dies before it is ready */
        cs->ready_w = -1;
        rc = wait_ready(cs->ready_r);
    }
    if (rc != 0 && r > 0) {
        waitpid(r, NULL, 0);
    }
    *pid = r;
    return rc;
}

static void on_timeout(uv_timer_t *t)
{
    struct proc *p = t->data;
    if (!p->exited) {
        p->timed_out = true;
        start_kill(p, false);
    }
}

/* One buffer serves every pipe of every child: a read callback consumes
 * its bytes (lines are copied out) before the loop runs the next one. A
 * buffer per child cost a 64 KiB calloc and free per dispatch, and 64 KiB
 * of memory per live child. */
static char readbuf[65536];

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = readbuf;
    buf->len = sizeof readbuf;
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
        pipes_closed(p);
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
        pipes_closed(p);
    }
}

static void on_in_written(uv_write_t *req, int status)
{
    /* Written, or the child is gone (EPIPE) or we gave up (ECANCELED):
     * either way the child sees the end of its input - unless it is to
     * stay open until the child is done (check_done closes it then). */
    struct proc *p = req->data;
    p->in_pending--;
    if (status != 0 || !p->in_keep || p->done ||
        (p->in_close_wanted && p->in_pending == 0)) {
        close_in(p);
    }
}

/* One proc_write that could not go out at once: its bytes live here
 * until libuv has written them. */
struct in_write {
    uv_write_t req;
    struct proc *p;
    size_t len;
    char data[];
};

static void on_more_written(uv_write_t *req, int status)
{
    struct in_write *w = req->data;
    struct proc *p = w->p;
    free(w);
    p->in_pending--;
    /* A failed write (EPIPE: the child closed its input) ends the pipe:
     * later writes fail at once instead of queueing for nobody. */
    if (status != 0 || (p->in_close_wanted && p->in_pending == 0)) {
        if (p->in_open) {
            close_in(p);
        }
    }
}

int proc_write(struct proc *p, const char *data, size_t len)
{
    if (!p->in_open || p->in_close_wanted) {
        return UV_EPIPE;
    }
    if (len == 0) {
        return 0;
    }
    int rc = in_handle(p);
    if (rc != 0) {
        close_in(p);
        return rc;
    }
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    /* Nothing queued: try now (the usual case, a short message into an
     * empty pipe), which also reports a closed reader at once. */
    size_t done = 0;
    if (p->in_pending == 0) {
        int n = uv_try_write((uv_stream_t *)&p->in, &b, 1);
        if (n == (int)len) {
            return 0;
        }
        if (n < 0 && n != UV_EAGAIN) {
            close_in(p);
            return n == UV_EPIPE ? UV_EPIPE : n;
        }
        done = n > 0 ? (size_t)n : 0;
    }
    struct in_write *w = malloc(sizeof *w + (len - done));
    if (!w) {
        return UV_ENOMEM;
    }
    w->p = p;
    w->len = len - done;
    memcpy(w->data, data + done, w->len);
    w->req.data = w;
    b = uv_buf_init(w->data, (unsigned)w->len);
    rc = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_more_written);
    if (rc != 0) {
        free(w);
        close_in(p);
        return rc;
    }
    p->in_pending++;
    return 0;
}

void proc_close_stdin(struct proc *p)
{
    if (!p->in_open) {
        return;
    }
    if (p->kept && !p->left) {
        keeper_close_in(p->pid); /* its copy would keep the input open */
    }
    p->in_close_wanted = true;
    if (p->in_pending == 0) {
        close_in(p);
    }
}

bool proc_stdin_open(const struct proc *p)
{
    return p->in_open && !p->in_close_wanted;
}

/* The stdin data goes out through the loop: never a blocking write, and a
 * child that does not read cannot stall the server. Into the new, empty
 * pipe it is tried at once (a prompt fits its buffer): written whole, it
 * needs no write request, whose completion libuv reports a loop turn
 * later (a turn that does not wait, and one more epoll_wait). */
static void write_stdin(struct proc *p, const struct proc_opts *o)
{
    uv_buf_t b = uv_buf_init(p->in_data, (unsigned)o->stdin_len);
    int n = uv_try_write((uv_stream_t *)&p->in, &b, 1);
    if (n == (int)o->stdin_len || (n < 0 && n != UV_EAGAIN)) {
        /* As on_in_written: written (or the child is already gone). */
        if (n < 0 || !p->in_keep) {
            close_in(p);
        }
        return;
    }
    if (n > 0) {
        b = uv_buf_init(p->in_data + n, (unsigned)(o->stdin_len - (size_t)n));
    }
    p->in_req.data = p;
    if (uv_write(&p->in_req, (uv_stream_t *)&p->in, &b, 1,
                 on_in_written) != 0) {
        close_in(p);
        return;
    }
    p->in_pending++;
}

/* Small stdin data (a first user message, a prompt of a few kB) is
 * written into the child's new, empty pipe before the child is started:
 * PIPE_BUF bytes fit any pipe, so the write cannot block, and the child
 * finds its input the moment it runs, instead of after the server has
 * learnt its pid and come back to write it. True when written whole. */
static bool pre_write_stdin(int fd, const struct proc_opts *o)
{
    if (!o->stdin_data || o->stdin_len > PIPE_BUF) {
        return false;
    }
    ssize_t n;
    do {
        n = write(fd, o->stdin_data, o->stdin_len);
    } while (n < 0 && errno == EINTR);
    return n == (ssize_t)o->stdin_len;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The pipes of one spawn: [0] is the read end, [1] the write end. */
struct spawn_fds {
    int out[2], err[2], in[2], gate[2], ready[2];
};

static void spawn_fds_close(struct spawn_fds *f)
{
    int *all = (int *)f;
    for (size_t i = 0; i < sizeof *f / sizeof(int); i++) {
        close_fd(&all[i]);
    }
}

static int spawn_fds_open(struct spawn_fds *f, const struct proc_opts *o)
{
    int rc = 0;
    rc = rc ? rc : pipe2(f->out, O_CLOEXEC);
    rc = rc ? rc : pipe2(f->err, O_CLOEXEC);
    if (!rc && (o->stdin_data || o->stdin_keep)) {
        rc = pipe2(f->in, O_CLOEXEC);
    }
    if (!rc && o->gated) {
        rc = pipe2(f->gate, O_CLOEXEC);
        rc = rc ? rc : pipe2(f->ready, O_CLOEXEC);
    }
    return rc ? -errno : 0;
}

static int spawn_fds_start(struct spawn_fds *f, const struct proc_opts *o,
                           pid_t *pid)
{
    struct child_setup cs = {
        .argv = o->argv,
        .env = o->env ? o->env : environ,
        .cwd = o->cwd,
        .in_r = f->in[0],
        .out_w = f->out[1],
        .err_w = f->err[1],
        .gate_r = f->gate[0],
        .ready_w = f->ready[1],
        .ready_r = f->ready[0],
    };
    int rc = start_child(&cs, pid);
    f->ready[1] = -1; /* closed by start_child */
    /* The child's ends: the child holds them now (or failed). */
    close_fd(&f->out[1]);
    close_fd(&f->err[1]);
    close_fd(&f->in[0]);
    close_fd(&f->gate[0]);
    close_fd(&f->ready[0]);
    return rc;
}

/* The same start through the server's keeper (keeper.c), the child's
 * parent then: it gets the child's ends (and copies of our read ends, so
 * it can read the child on if it takes it over). 0, KEEPER_NONE (no
 * keeper: start it here) or a negative errno. */
static int spawn_fds_keeper(uv_loop_t *loop, struct spawn_fds *f,
                            const struct proc_opts *o, pid_t *pid)
{
    struct keeper_fds k = {
        .in_r = f->in[0], .out_w = f->out[1], .err_w = f->err[1],
        .out_r = f->out[0], .err_r = f->err[0], .gate_r = f->gate[0],
    };
    int rc = keeper_spawn(loop, o, &k, pid);
    if (rc == KEEPER_NONE) {
        return rc;
    }
    close_fd(&f->out[1]);
    close_fd(&f->err[1]);
    close_fd(&f->in[0]);
    close_fd(&f->gate[0]);
    close_fd(&f->ready[0]);
    close_fd(&f->ready[1]);
    return rc;
}

/* Hands a pipe end to its handle (which then owns the fd). Cannot fail
 * with a fresh pipe; if it does, the started child must not live on. */
static int adopt(uv_pipe_t *h, int *fd, pid_t pid)
{
    int rc = uv_pipe_open(h, *fd);
    if (rc == 0) {
        *fd = -1;
    } else {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return rc;
}

static int proc_alloc(const struct proc_opts *o, const struct proc_cbs *cbs,
                      void *ud, struct proc **out)
{
    struct proc *p = calloc(1, sizeof *p);
    if (!p) {
        return UV_ENOMEM;
    }
    p->err_head_cap = o->stderr_head;
    p->err_tail_cap = o->stderr_tail;
    p->err_head = malloc(p->err_head_cap + 1);
    p->err_tail = malloc(p->err_tail_cap + 1);
    p->in_data = o->stdin_data ? malloc(o->stdin_len + 1) : NULL;
    if (!p->err_head || !p->err_tail || (o->stdin_data && !p->in_data)) {
        free(p->err_head);
        free(p->err_tail);
        free(p->in_data);
        free(p);
        return UV_ENOMEM;
    }
    if (o->stdin_data) {
        memcpy(p->in_data, o->stdin_data, o->stdin_len);
    }
    p->gate_fd = -1;
    p->in_fd = -1;
    p->cbs = *cbs;
    p->ud = ud;
    p->grace_ms = o->grace_ms;
    p->in_keep = o->stdin_keep;
    p->drain_ms = o->drain_ms;
    linebuf_init(&p->lines, o->max_line);
    *out = p;
    return 0;
}

int proc_spawn(uv_loop_t *loop, const struct proc_opts *o,
               const struct proc_cbs *cbs, void *ud, struct proc **out)
{
    struct proc *p;
    int rc = proc_alloc(o, cbs, ud, &p);
    if (rc != 0) {
        return rc;
    }
    uv_pipe_init(loop, &p->out, 0);
    uv_pipe_init(loop, &p->err, 0);
    uv_pipe_init(loop, &p->in, 0);
    uv_timer_init(loop, &p->timeout);
    uv_timer_init(loop, &p->escalate);
    uv_timer_init(loop, &p->drain);
    p->out.data = p->err.data = p->in.data = p;
    p->timeout.data = p->escalate.data = p->drain.data = p;
    p->open_handles = 6;

    struct spawn_fds f;
    memset(&f, 0xff, sizeof f); /* every fd -1 */
    pid_t pid = 0;
    bool in_written = false;
    rc = reaper_start(loop);
    if (o->adopt_pid > 0) {
        f.out[0] = o->adopt_out;
        f.err[0] = o->adopt_err;
        pid = o->adopt_pid;
    } else {
        rc = rc ? rc : spawn_fds_open(&f, o);
        in_written = rc == 0 && pre_write_stdin(f.in[1], o);
        int k = (rc == 0 && o->keeper) ? spawn_fds_keeper(loop, &f, o, &pid)
                                       : KEEPER_NONE;
        p->remote = (k == 0);
        rc = rc ? rc : (k != KEEPER_NONE ? k : spawn_fds_start(&f, o, &pid));
    }
    rc = rc ? rc : adopt(&p->out, &f.out[0], pid);
    rc = rc ? rc : adopt(&p->err, &f.err[0], pid);
    if (rc == 0 && f.in[1] >= 0 &&
        (in_written || (o->stdin_keep && !o->stdin_data))) {
        p->in_fd = f.in[1]; /* a handle only for later writes */
        f.in[1] = -1;
    } else if (o->stdin_data || o->stdin_keep) {
        rc = rc ? rc : adopt(&p->in, &f.in[1], pid);
    }
    p->released = (rc != 0);
    if (rc != 0) {
        spawn_fds_close(&f);
        close_handle(p, (uv_handle_t *)&p->out);
        close_handle(p, (uv_handle_t *)&p->err);
        close_in(p);
        close_handle(p, (uv_handle_t *)&p->timeout);
        close_handle(p, (uv_handle_t *)&p->escalate);
        close_handle(p, (uv_handle_t *)&p->drain);
        reaper_stop_if_idle();
        return rc;
    }
    p->gate_fd = f.gate[1];
    p->pid = pid;
    p->on_reap = o->on_reap;
    p->reap_arg = o->reap_arg;
    p->out_open = p->err_open = true;
    live_add(p);
    uv_read_start((uv_stream_t *)&p->out, alloc_cb, on_out_read);
    p->reading_out = true;
    uv_read_start((uv_stream_t *)&p->err, alloc_cb, on_err_read);
    p->in_open = o->stdin_data || o->stdin_keep;
    if (o->stdin_data && !in_written) {
        write_stdin(p, o);
    } else if (!o->stdin_keep) {
        close_in(p);
    }
    if (o->timeout_ms > 0) {
        uv_timer_start(&p->timeout, on_timeout, o->timeout_ms, 0);
    }
    *out = p;
    if (o->adopt_exited) {
        on_exit_status(p, o->adopt_status, o->adopt_signal);
    } else if (o->adopt_pid > 0) {
        try_reap(p); /* it may have exited before the watcher started */
    }
    return 0;
}

void proc_open_gate(struct proc *p)
{
    if (p->gate_fd >= 0 && !p->exited) {
        /* An empty pipe has room; should the write fail anyway, the child
         * sees EOF below and exits without starting. */
        ssize_t n = write(p->gate_fd, "g", 1);
        (void)n;
    }
    close_gate(p);
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
    if (p->out_open && !p->reading_out && !p->left) {
        uv_read_start((uv_stream_t *)&p->out, alloc_cb, on_out_read);
        p->reading_out = true;
    }
}

void proc_release(struct proc *p)
{
    close_gate(p);
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
bool proc_kept(const struct proc *p) { return p->kept && !p->left; }

void proc_deadline(struct proc *p, uint64_t ms)
{
    if (p->exited || p->left) {
        return;
    }
    if (!uv_is_active((uv_handle_t *)&p->timeout) ||
        uv_timer_get_due_in(&p->timeout) > ms) {
        uv_timer_start(&p->timeout, on_timeout, ms, 0);
    }
}
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

/* The middle process of proc_detach: a new session, then the detached
 * process itself, which writes its pid to the parent on report_w, then
 * its exec's errno if the exec fails; a successful exec closes report_w
 * (O_CLOEXEC), so the parent reads EOF. */
__attribute__((noreturn)) static void detach_middle(char *const argv[], int report_w)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            sigaction(sig, &dfl, NULL); /* SIG_IGN (SIGPIPE) survives exec */
        }
    }
    if (setsid() < 0) {
        _exit(127);
    }
    pid_t g = fork();
    if (g < 0) {
        _exit(127);
    }
    if (g > 0) {
        _exit(0);
    }
    pid_t me = getpid();
    if (write(report_w, &me, sizeof me) != (ssize_t)sizeof me) {
        _exit(127);
    }
    int null = open("/dev/null", O_RDWR);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
        int e = errno;
        ssize_t n = write(report_w, &e, sizeof e);
        _exit(n < 0 ? 127 : 127);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    int e = errno;
    ssize_t n = write(report_w, &e, sizeof e);
    _exit(n < 0 ? 127 : 127);
}

/* Reads exactly len bytes (or fewer at EOF); the count read. */
static size_t read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    return got;
}

int proc_detach(char *const argv[], pid_t *pid)
{
    int rep[2];
    if (pipe2(rep, O_CLOEXEC) != 0) {
        return -errno;
    }
    /* Signals blocked around the fork: no handler of ours runs in the
     * middle process before it resets them. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t mid = fork();
    if (mid == 0) {
        close(rep[0]);
        detach_middle(argv, rep[1]);
    }
    int rc = mid < 0 ? -errno : 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(rep[1]);
    if (rc == 0) {
        pid_t g = 0;
        int e = 0;
        if (read_full(rep[0], &g, sizeof g) != sizeof g || g <= 0) {
            rc = -EIO;
        } else if (read_full(rep[0], &e, sizeof e) == sizeof e) {
            rc = -(e ? e : EIO); /* it exists but could not exec */
        }
        *pid = g;
        /* The middle process is ours to reap (it exits at once); only
         * ours: the reaper waits for its own pids by number. */
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    close(rep[0]);
    return rc;
}

int proc_start_fds(char *const *argv, char *const *env, const char *cwd,
                   int in_r, int out_w, int err_w, int gate_r, pid_t *pid)
{
    int ready[2] = {-1, -1};
    if (gate_r >= 0 && pipe2(ready, O_CLOEXEC) != 0) {
        return -errno;
    }
    struct child_setup cs = {
        .argv = argv,
        .env = env ? env : environ,
        .cwd = cwd,
        .in_r = in_r,
        .out_w = out_w,
        .err_w = err_w,
        .gate_r = gate_r,
        .ready_w = ready[1],
        .ready_r = ready[0],
    };
    int rc = start_child(&cs, pid);
    if (cs.ready_w >= 0) {
        close(cs.ready_w);
    }
    close_fd(&ready[0]);
    return rc;
}

static struct proc *live_find(pid_t pid)
{
    for (struct proc *p = live_head; p; p = p->next_live) {
        if (p->pid == pid) {
            return p;
        }
    }
    return NULL;
}

void proc_remote_exit(pid_t pid, int64_t status, int sig)
{
    struct proc *p = live_find(pid);
    if (p && p->remote && !p->exited) {
        on_exit_status(p, status, sig);
    }
    reaper_stop_if_idle();
}

void proc_remote_lost(void)
{
    struct proc *next;
    for (struct proc *p = live_head; p; p = next) {
        next = p->next_live;
        if (p->remote && !p->exited) {
            /* Its death signal killed it with the keeper. */
            on_exit_status(p, 0, SIGKILL);
            /* What is left of its group goes the same way, now: the
             * usual grace would find at most the child still dying, and
             * its timer would hold this server's exit for a second. */
            if (uv_is_active((uv_handle_t *)&p->escalate)) {
                uv_timer_stop(&p->escalate);
                signal_group(p, SIGKILL);
                maybe_close_timers(p);
            }
        }
    }
    reaper_stop_if_idle();
}

bool proc_remote_child(pid_t pid, void **reap_arg)
{
    struct proc *p = live_find(pid);
    if (!p || !p->remote || p->exited) {
        return false;
    }
    *reap_arg = p->on_reap ? p->reap_arg : NULL;
    return true;
}

void proc_keep(pid_t pid)
{
    struct proc *p = live_find(pid);
    if (p && p->remote && !p->exited) {
        p->kept = true;
    }
}

int proc_remote_stdin(pid_t pid)
{
    struct proc *p = live_find(pid);
    uv_os_fd_t fd = -1;
    if (!p || !p->remote || p->exited || !proc_stdin_open(p)) {
        return -1;
    }
    if (p->in_fd >= 0) {
        return p->in_fd;
    }
    return uv_fileno((uv_handle_t *)&p->in, &fd) == 0 ? fd : -1;
}

bool proc_unkeep(pid_t pid)
{
    struct proc *p = live_find(pid);
    if (!p || !p->kept || p->left) {
        return false;
    }
    p->kept = false;
    return true;
}

void proc_leave_kept(void (*on_reap)(void *arg))
{
    for (struct proc *p = live_head; p; p = p->next_live) {
        if (p->kept && !p->exited) {
            p->left = true; /* from now on never signalled by us */
            if (p->on_reap) {
                p->on_reap = on_reap; /* its slot stays the keeper's */
            }
            /* Nothing more is read here: what we do not read, the
             * keeper will. */
            proc_pause(p);
            if (p->err_open) {
                uv_read_stop((uv_stream_t *)&p->err);
            }
        }
    }
}

void proc_end_left(void)
{
    struct proc *next;
    for (struct proc *p = live_head; p; p = next) {
        next = p->next_live;
        if (p->left && !p->exited) {
            /* The keeper holds its own copies of the read ends: closing
             * ours does not stop the child. Its owner sees it end. */
            close_gate(p);
            close_out(p);
            close_err(p);
            on_exit_status(p, 0, SIGKILL);
        }
    }
    reaper_stop_if_idle();
}
