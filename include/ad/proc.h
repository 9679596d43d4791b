/* Child processes on the libuv loop.
 *
 * A child runs in its own session and process group (setsid), with stdin
 * from /dev/null or a private pipe and stdout/stderr on pipes, so it can
 * never read or write the server's protocol channel. It dies with the
 * server (PR_SET_PDEATHSIG SIGKILL): not even a server killed with SIGKILL
 * leaves a child running without its timeout. stdout is split into
 * bounded lines; stderr is drained continuously (the child never blocks on
 * a full pipe) keeping a bounded head and tail. A gated child waits before
 * exec until proc_open_gate(). A timeout, a kill request, or the
 * child's own exit ends the whole group: SIGTERM, then SIGKILL after a
 * grace period, so grandchildren such as stdio MCP servers the CLI started
 * are not left behind. Children are always reaped by libuv.
 *
 * Lifecycle: spawn -> lines... -> on_exit (child reaped: free its
 * concurrency slot) -> on_done (exited and both pipes closed, or given up
 * on after the drain period). The owner calls proc_release() when it no
 * longer needs the object; releasing a live child kills its group and the
 * memory is reclaimed once libuv has closed every handle. */
#ifndef AD_PROC_H
#define AD_PROC_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct proc;

struct proc_cbs {
    /* One stdout line (no '\n', not NUL-terminated); line NULL when an
     * over-long line was skipped. */
    void (*on_line)(struct proc *p, const char *line, size_t n, void *ud);
    void (*on_stdout_eof)(struct proc *p, void *ud);
    void (*on_exit)(struct proc *p, void *ud);
    void (*on_done)(struct proc *p, void *ud);
};

struct proc_opts {
    char *const *argv;       /* argv[0] is the program path */
    const char *cwd;         /* NULL: inherit */
    char *const *env;        /* NULL: inherit */
    size_t max_line;         /* bound on one stdout line */
    size_t stderr_head;      /* bytes of stderr kept from the start */
    size_t stderr_tail;      /* bytes of stderr kept from the end */
    uint64_t timeout_ms;     /* 0: none */
    uint64_t grace_ms;       /* SIGTERM -> SIGKILL delay */
    uint64_t drain_ms;       /* after exit, longest wait for pipes to close */
    /* Called once when the child has been reaped, even after the owner
     * released the object: this is where a concurrency slot goes back. */
    void (*on_reap)(void *arg);
    void *reap_arg;
    /* stdin: these bytes on a private pipe, written without blocking and
     * then closed; NULL: /dev/null. Copied: the caller may free them. */
    const char *stdin_data;
    size_t stdin_len;
    /* Keep stdin open after the data, until the child is gone or
     * proc_close_stdin(): the child (a remote wrapper behind ssh) takes the
     * end of its input as the signal that its caller went away, and a live
     * child (the CLI's control channel) reads further messages from it
     * (proc_write). Without stdin_data, the pipe starts empty. */
    bool stdin_keep;
    /* The child is created (pid, group and start time exist) but waits
     * before exec until proc_open_gate(); proc_release() or the server's
     * death before that ends it without exec. */
    bool gated;
    /* Started by the server's keeper (keeper.h), which is then the
     * child's parent: the same pipes and process here, its exit reported
     * by the keeper. Falls back to a child of our own when there is no
     * keeper. */
    bool keeper;
    /* Not a spawn: the object takes over adopt_pid, a child of this
     * process whose stdout and stderr are the fds adopt_out and adopt_err
     * (the keeper's job runner, after exec). adopt_exited: it was
     * reaped already with adopt_status / adopt_signal. */
    int adopt_pid;
    int adopt_out, adopt_err;
    bool adopt_exited;
    int adopt_status, adopt_signal;
};

/* Starts the child. 0 and *out on success; a negative libuv error code
 * (UV_ENOENT, UV_EACCES, ...) when the spawn failed, in which case nothing
 * is left running and the caller owns nothing. */
int proc_spawn(uv_loop_t *loop, const struct proc_opts *opts,
               const struct proc_cbs *cbs, void *ud, struct proc **out);

/* Lets a gated child go on to exec. Harmless when not gated or already
 * open. */
void proc_open_gate(struct proc *p);

/* Ends the child's process group: SIGTERM now, SIGKILL after the grace
 * period (immediately when hard). Harmless after exit. */
void proc_kill(struct proc *p, bool hard);

/* More bytes for a stdin_keep child, after what was written before (in
 * order), without blocking the loop. 0, or a negative libuv error code:
 * UV_EPIPE when stdin is closed (by proc_close_stdin, or the child closed
 * its end or exited; never a SIGPIPE), UV_ENOMEM. */
int proc_write(struct proc *p, const char *data, size_t len);

/* Closes the child's stdin once everything written has gone out (the
 * child then sees the end of its input). Harmless when already closed. */
void proc_close_stdin(struct proc *p);

/* True while proc_write can still be accepted. */
bool proc_stdin_open(const struct proc *p);

/* Stops or restarts reading stdout (backpressure while lines queue up). */
void proc_pause(struct proc *p);
void proc_resume(struct proc *p);

/* Drops the owner's interest: no more callbacks; a live child is killed. */
void proc_release(struct proc *p);

int proc_pid(const struct proc *p);
bool proc_exited(const struct proc *p);
bool proc_done(const struct proc *p);
bool proc_timed_out(const struct proc *p);
/* Handed off: the keeper takes it over if we exit (proc_keep). */
bool proc_kept(const struct proc *p);
/* The child's lifetime ends at most ms from now (its timeout, sooner):
 * then its group gets SIGTERM, and SIGKILL after the grace period. */
void proc_deadline(struct proc *p, uint64_t ms);
int64_t proc_exit_status(const struct proc *p);
int proc_term_signal(const struct proc *p);

/* stderr as kept: the head, and when output was dropped in the middle, a
 * marker line and the tail. Valid until proc_release. */
const char *proc_stderr(struct proc *p, size_t *len);

/* Starts argv (argv[0] an absolute path) detached from this process: a
 * double fork, so it is not our child (never reaped or killed by us, no
 * PR_SET_PDEATHSIG), in its own session, stdio on /dev/null, default
 * signal handling. 0 and *pid (the detached process) on success, or a
 * negative errno (the exec's failure included). */
int proc_detach(char *const argv[], pid_t *pid);

/* SIGKILL every live child's group (shutdown path). */
void proc_kill_all(void);
size_t proc_live_count(void);

/* The keeper's side (keeper.c). proc_start_fds starts a child exactly as
 * proc_spawn does (death signal to the caller, own session, start gate
 * when gate_r >= 0) on pipe ends the caller made; 0 and *pid, or a
 * negative errno. proc_remote_exit: a keeper's child has exited;
 * proc_remote_lost: the keeper is gone, and its children with it.
 * proc_remote_child: pid is a live child of the keeper (*reap_arg: its
 * proc_opts.reap_arg). proc_keep: it is now a job the keeper takes over
 * if we exit. proc_leave_kept: we are exiting; those children are left
 * running, never signalled or read by us again, and on_reap replaces
 * their reap callback;
 * proc_end_left (from a loop callback: owners are resumed) ends their
 * objects as if the children were gone. proc_remote_stdin: the write end
 * of pid's stdin pipe while it is open, else -1. proc_unkeep: pid's
 * hand-off is over while it lives on (a kept live process between turns);
 * true when it had been kept. */
int proc_start_fds(char *const *argv, char *const *env, const char *cwd,
                   int in_r, int out_w, int err_w, int gate_r, pid_t *pid);
/* For a process whose signal dispositions never change again (the
 * keeper): records which signals are not at their default, and its
 * children reset those alone before exec, not every signal (a system call
 * each, some sixty, while the spawner and the server wait). */
void proc_fix_signals(void);
void proc_remote_exit(pid_t pid, int64_t status, int sig);
void proc_remote_lost(void);
bool proc_remote_child(pid_t pid, void **reap_arg);
void proc_keep(pid_t pid);
void proc_leave_kept(void (*on_reap)(void *arg));
void proc_end_left(void);
int proc_remote_stdin(pid_t pid);
bool proc_unkeep(pid_t pid);

/* Closes the SIGCHLD watcher (it stays open, unreferenced, between
 * children); call when no child is alive, before closing the loop. */
void proc_shutdown(void);

#endif
