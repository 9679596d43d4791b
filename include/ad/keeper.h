/* The keeper: one process per server, started at the first spawn that
 * asks for it (a sync dispatch that may be handed off to a job), in a
 * session of its own, so the server's stop (SIGINT, SIGTERM, SIGKILL by
 * pid) does not reach it. It is the parent of those children (they die
 * with it: PR_SET_PDEATHSIG), starts each one on the pipes the server
 * made (SCM_RIGHTS), keeps copies of their read ends and reports their
 * exits; the server reads the children directly, as its own.
 *
 * When the server goes (its socket ends, whatever killed it), the keeper
 * kills the groups of the children that were not handed off; if some
 * were (keeper_handoff), it becomes their job runner: it execs
 * `agent-dispatch __keeper-run ...` (same pid, so the children stay its
 * own, and their read ends stay open), which reads them on and records
 * their jobs' progress and results (ad.domain.keeper). Otherwise it
 * exits. */
#ifndef AD_KEEPER_H
#define AD_KEEPER_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

struct proc_opts;

/* keeper_spawn's answer when no keeper can be reached: start it here. */
#define KEEPER_NONE 1

/* The ends of one spawn's pipes (-1: none). */
struct keeper_fds {
    int in_r, out_w, err_w; /* the child's */
    int out_r, err_r;       /* ours, copied to the keeper */
    int gate_r;             /* the start gate's, -1: not gated */
};

/* Starts o's child in the keeper (started now if needed): 0 and *pid,
 * KEEPER_NONE, or a negative errno (the spawn itself failed). */
int keeper_spawn(uv_loop_t *loop, const struct proc_opts *o,
                 const struct keeper_fds *f, pid_t *pid);

/* Tells the keeper that its child is now a job (meta: the JSON text its
 * job runner needs; slot_fd, or -1: the descriptor holding the child's
 * concurrency slot file, which the keeper's copy holds on once we are
 * gone; in_fd, or -1: the write end of the child's stdin, which the
 * keeper's copy holds open once we are gone, until its job runner has
 * read the result: a remote agent's ssh ends the far side when its input
 * ends). 0 and *keeper (its pid), or a negative errno (no keeper, or no
 * such live child there). */
int keeper_handoff(pid_t child, const char *meta, size_t len, int slot_fd,
                   int in_fd, pid_t *keeper);

/* We closed that handed-off child's stdin: the keeper closes its copy. */
void keeper_close_in(pid_t child);

/* The server has read that handed-off child to its end (it exited): the
 * keeper drops its copies of the child's pipes; or, for a child that
 * lives on (a kept live process between turns), its hand-off is over:
 * the keeper drops what it held for the job and treats it as any child. */
void keeper_forget(pid_t child);

/* A job with no child of its own at the moment (a handed-off fan-out
 * between its items): the keeper holds meta (JSON text, the job runner's)
 * so that it takes the job over when the server goes even if no child is
 * running then. Starts the keeper if needed. 0, *key (a negative number,
 * never a pid: give it to keeper_forget when the job has ended) and
 * *keeper (its pid), or a negative errno. */
int keeper_hold(uv_loop_t *loop, const char *meta, size_t len, pid_t *key,
                pid_t *keeper);

/* `agent-dispatch __keeper CTRL_FD EVENT_FD`: the keeper's own loop. */
int keeper_main(int argc, char **argv);

#endif
