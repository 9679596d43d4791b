/* The keeper; see keeper.h. Two socket pairs (SOCK_SEQPACKET: one
 * message per request) join a server and its keeper: the control one
 * carries the server's requests (spawn, hand-off), each answered at once
 * (the server waits for the answer: a spawn costs one request and one
 * reply more than a child of our own); the event one carries the
 * keeper's reports of exits, read on the server's loop.
 *
 * Over 500 lines on purpose: both ends of one private protocol (the
 * server's requests and the keeper's loop) stay in one file so that the
 * message layouts they share cannot drift apart.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ad/keeper.h"
#include "ad/proc.h"

extern char **environ;

enum { MSG_SPAWN = 1, MSG_HANDOFF = 2, MSG_FORGET = 3, MSG_CLOSE_IN = 4, MSG_HOLD = 5 };
enum { F_IN = 1, F_GATED = 2, F_CWD = 4 };
#define MAX_MSG (192 * 1024) /* below a socket's default send buffer */
#define MAX_FDS 6
#define KEPT_NUMS 9 /* numbers per handed-off child on __keeper-run's line */

struct req_head {
    uint32_t type;
    uint32_t flags;
    int32_t pid;       /* MSG_HANDOFF: the child */
    uint32_t argc, envc;
};

struct reply {
    int32_t rc;
    int32_t pid;
};

struct exit_event {
    int32_t pid, status, sig;
};

/* ---- the server's side ---- */

static int ctrl_fd = -1, ev_fd = -1;
static pid_t keeper;
static uv_poll_t *events; /* on the event socket while the keeper lives */
static bool unavailable;  /* it could not be started: do not try again */

static void events_closed(uv_handle_t *h)
{
    free(h);
}

/* The keeper is gone (killed, or it failed): so are its children. */
static void keeper_lost(void)
{
    if (events) {
        uv_poll_stop(events);
        uv_close((uv_handle_t *)events, events_closed);
        events = NULL;
    }
    if (ev_fd >= 0) {
        close(ev_fd); /* stopped above: libuv no longer watches it */
        ev_fd = -1;
    }
    if (ctrl_fd >= 0) {
        close(ctrl_fd);
        ctrl_fd = -1;
    }
    keeper = 0;
    proc_remote_lost();
}

/* One event per wake-up: the poll is level-triggered, so another one
 * waiting wakes the loop again, and the usual single exit costs no
 * second recv that can only say EAGAIN. */
static void on_events(uv_poll_t *h, int status, int what)
{
    (void)h;
    (void)what;
    struct exit_event e;
    ssize_t n = status < 0 ? -1 : recv(ev_fd, &e, sizeof e, MSG_DONTWAIT);
    if (n == (ssize_t)sizeof e) {
        proc_remote_exit(e.pid, e.status, e.sig);
        return;
    }
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    keeper_lost(); /* end of the socket: the keeper exited */
}

static int keeper_start(uv_loop_t *loop)
{
    int c[2], e[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) != 0) {
        return -errno;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, e) != 0) {
        int rc = -errno;
        close(c[0]);
        close(c[1]);
        return rc;
    }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    int rc = len > 0 ? 0 : -ENOENT;
    char a1[16], a2[16];
    pid_t pid = 0;
    if (rc == 0) {
        self[len] = '\0';
        snprintf(a1, sizeof a1, "%d", c[1]);
        snprintf(a2, sizeof a2, "%d", e[1]);
        char *argv[] = {self, "__keeper", a1, a2, NULL};
        /* Its ends cross the exec; single-threaded, so no other child
         * can be started while they lack O_CLOEXEC. */
        fcntl(c[1], F_SETFD, 0);
        fcntl(e[1], F_SETFD, 0);
        rc = proc_detach(argv, &pid);
    }
    close(c[1]);
    close(e[1]);
    if (rc != 0) {
        close(c[0]);
        close(e[0]);
        return rc;
    }
    /* A keeper that stops answering must not hang the server. */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    events = malloc(sizeof *events);
    if (!events || uv_poll_init(loop, events, e[0]) != 0) {
        free(events);
        events = NULL;
        close(c[0]);
        close(e[0]);
        return -ENOMEM;
    }
    uv_poll_start(events, UV_READABLE | UV_DISCONNECT, on_events);
    uv_unref((uv_handle_t *)events); /* an idle keeper keeps no loop alive */
    ctrl_fd = c[0];
    ev_fd = e[0];
    keeper = pid;
    return 0;
}

/* Sends one request (and fds) and reads its reply; -EPIPE when it could
 * not be sent (nothing was done), -EIO when no reply came (the keeper
 * died or hangs: it is forgotten, and the socket's end tells it to kill
 * what it started). */
static int request(const void *msg, size_t len, const int *fds, int nfds,
                   struct reply *r)
{
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (nfds > 0) {
        memset(&u, 0, sizeof u);
        mh.msg_control = u.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do {
        n = sendmsg(ctrl_fd, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    int rc = -EPIPE;
    if (n == (ssize_t)len) {
        do {
            n = recv(ctrl_fd, r, sizeof *r, 0);
        } while (n < 0 && errno == EINTR);
        if (n == (ssize_t)sizeof *r) {
            return 0;
        }
        rc = -EIO;
    }
    keeper_lost();
    return rc;
}

static size_t strings_len(char *const *v, uint32_t *count)
{
    size_t len = 0;
    uint32_t n = 0;
    for (; v && v[n]; n++) {
        len += strlen(v[n]) + 1;
    }
    *count = n;
    return len;
}

static char *put_strings(char *w, char *const *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(w, v[i], l);
        w += l;
    }
    return w;
}

int keeper_spawn(uv_loop_t *loop, const struct proc_opts *o,
                 const struct keeper_fds *f, pid_t *pid)
{
    if (ctrl_fd < 0 && (unavailable || keeper_start(loop) != 0)) {
        unavailable = true;
        return KEEPER_NONE;
    }
    char *const *env = o->env ? o->env : environ;
    struct req_head h = {.type = MSG_SPAWN};
    size_t len = sizeof h + strings_len(o->argv, &h.argc) +
                 strings_len(env, &h.envc) + (o->cwd ? strlen(o->cwd) + 1 : 0);
    if (len > MAX_MSG) {
        return KEEPER_NONE; /* too large for one message: start it here */
    }
    char *msg = malloc(len);
    if (!msg) {
        return -ENOMEM;
    }
    int fds[MAX_FDS] = {f->out_w, f->err_w, f->out_r, f->err_r};
    int nfds = 4;
    if (f->in_r >= 0) {
        h.flags |= F_IN;
        fds[nfds++] = f->in_r;
    }
    if (f->gate_r >= 0) {
        h.flags |= F_GATED;
        fds[nfds++] = f->gate_r;
    }
    h.flags |= o->cwd ? F_CWD : 0;
    memcpy(msg, &h, sizeof h);
    char *w = put_strings(msg + sizeof h, o->argv, h.argc);
    w = put_strings(w, env, h.envc);
    if (o->cwd) {
        memcpy(w, o->cwd, strlen(o->cwd) + 1);
    }
    struct reply r;
    int rc = request(msg, len, fds, nfds, &r);
    free(msg);
    if (rc == -EPIPE) {
        return KEEPER_NONE; /* the keeper had died: start it here */
    }
    if (rc != 0) {
        return rc; /* it may have started the child, which died with it */
    }
    *pid = r.pid;
    return r.rc;
}

/* One request with a job's meta and the fds given (a copy of the slot
 * lock, of the child's stdin): 0, *reply and *out (the keeper's pid), or a
 * negative errno. */
static int meta_request(struct req_head h, const char *meta, size_t len,
                        int *fds, int nfds, struct reply *r, pid_t *out)
{
    if (sizeof(struct req_head) + len > MAX_MSG) {
        return -E2BIG;
    }
    char *msg = malloc(sizeof(struct req_head) + len);
    if (!msg) {
        return -ENOMEM;
    }
    memcpy(msg, &h, sizeof h);
    memcpy(msg + sizeof h, meta, len);
    pid_t k = keeper;
    int rc = request(msg, sizeof h + len, fds, nfds, r);
    free(msg);
    if (rc == 0 && r->rc == 0) {
        *out = k;
        return 0;
    }
    return rc != 0 ? rc : r->rc;
}

int keeper_handoff(pid_t child, const char *meta, size_t len, int slot_fd,
                   int in_fd, pid_t *out)
{
    if (ctrl_fd < 0) {
        return -ESRCH;
    }
    struct req_head h = {.type = MSG_HANDOFF, .pid = child};
    int fds[2];
    int nfds = 0;
    if (slot_fd >= 0) {
        fds[nfds++] = slot_fd;
    }
    if (in_fd >= 0) {
        h.flags |= F_IN;
        fds[nfds++] = in_fd;
    }
    struct reply r;
    return meta_request(h, meta, len, fds, nfds, &r, out);
}

int keeper_hold(uv_loop_t *loop, const char *meta, size_t len, pid_t *key,
                pid_t *out)
{
    if (ctrl_fd < 0 && (unavailable || keeper_start(loop) != 0)) {
        unavailable = true;
        return -ESRCH;
    }
    struct reply r;
    struct req_head h = {.type = MSG_HOLD};
    int rc = meta_request(h, meta, len, NULL, 0, &r, out);
    if (rc == 0) {
        *key = r.pid;
    }
    return rc;
}

static void tell(uint32_t type, pid_t child)
{
    if (ctrl_fd < 0) {
        return;
    }
    struct req_head h = {.type = type, .pid = child};
    struct reply r;
    request(&h, sizeof h, NULL, 0, &r);
}

void keeper_forget(pid_t child)
{
    tell(MSG_FORGET, child);
}

void keeper_close_in(pid_t child)
{
    tell(MSG_CLOSE_IN, child);
}

/* ---- the keeper's side ---- */

struct kchild {
    pid_t pid; /* < 0: a held job's key (keeper_hold), no child */
    int out_r, err_r;
    int slot_fd; /* a copy of the server's concurrency slot lock, or -1 */
    int in_w;    /* a copy of the write end of its stdin, or -1 */
    bool handed, exited;
    int status, sig;
    char *meta;
    uint64_t started_ms;
};

static struct kchild *kids;
static size_t nkids, capkids;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void close_in_copy(struct kchild *k)
{
    if (k->in_w >= 0) {
        close(k->in_w);
        k->in_w = -1;
    }
}

/* What the child's hand-off gave us (the server holds on to the rest). */
static void kid_unhand(struct kchild *k)
{
    if (k->slot_fd >= 0) {
        close(k->slot_fd); /* no unlock: the server's lock, shared */
        k->slot_fd = -1;
    }
    close_in_copy(k);
    free(k->meta);
    k->meta = NULL;
    k->handed = false;
}

static void kid_drop(size_t i)
{
    if (kids[i].pid > 0) { /* a held job has no pipes */
        close(kids[i].out_r);
        close(kids[i].err_r);
    }
    kid_unhand(&kids[i]);
    kids[i] = kids[--nkids];
}

static struct kchild *kid_find(pid_t pid)
{
    for (size_t i = 0; i < nkids; i++) {
        if (kids[i].pid == pid) {
            return &kids[i];
        }
    }
    return NULL;
}

/* Exit reports the event socket had no room for, oldest first: a server
 * busy elsewhere may leave a few hundred unread (the socket's buffer
 * holds about 270), and a report lost is a child waited for for ever.
 * The keeper never blocks on that socket (the server may be waiting on
 * the control one for its answer); it sends these when there is room. */
static struct exit_event *unsent;
static size_t nunsent, capunsent;
static bool server_gone; /* the event socket is closed at the far end */

/* Sends the waiting reports that fit now; false when some still wait. */
static bool flush_exits(int ev)
{
    size_t i = 0;
    while (i < nunsent && !server_gone) {
        if (send(ev, &unsent[i], sizeof *unsent, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                break;
            }
            server_gone = true; /* nobody to tell */
        }
        i++;
    }
    if (server_gone) {
        i = nunsent;
    }
    memmove(unsent, unsent + i, (nunsent - i) * sizeof *unsent);
    nunsent -= i;
    return nunsent == 0;
}

static void report_exit(int ev, struct exit_event e)
{
    if (ev < 0 || server_gone) {
        return;
    }
    if (nunsent == capunsent) {
        size_t cap = capunsent ? capunsent * 2 : 64;
        struct exit_event *u = realloc(unsent, cap * sizeof *u);
        if (!u) {
            return; /* out of memory: the server times that child out */
        }
        unsent = u;
        capunsent = cap;
    }
    unsent[nunsent++] = e; /* after any older one still waiting: in order */
    flush_exits(ev);
}

/* Reaps every exited child and tells the server; a handed-off child's
 * read ends stay open (its output may still be unread). */
static void reap(int ev)
{
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) {
        struct exit_event e = {r, WIFEXITED(st) ? WEXITSTATUS(st) : 0,
                               WIFSIGNALED(st) ? WTERMSIG(st) : 0};
        report_exit(ev, e);
        struct kchild *k = kid_find(r);
        if (k && k->handed) {
            k->exited = true;
            k->status = e.status;
            k->sig = e.sig;
        } else if (k) {
            kid_drop((size_t)(k - kids));
        }
    }
}

/* NUL-separated strings of msg as a NULL-terminated vector (pointers into
 * msg), or NULL when they run past its end. */
static char **strings(char **cur, const char *end, uint32_t n)
{
    char **v = calloc((size_t)n + 1, sizeof *v);
    for (uint32_t i = 0; v && i < n; i++) {
        char *z = *cur < end ? memchr(*cur, '\0', (size_t)(end - *cur)) : NULL;
        if (!z) {
            free(v);
            return NULL;
        }
        v[i] = *cur;
        *cur = z + 1;
    }
    return v;
}

/* Room for one more entry in kids; false when out of memory. */
static bool kid_room(void)
{
    if (nkids < capkids) {
        return true;
    }
    size_t cap = capkids ? capkids * 2 : 8;
    struct kchild *k = realloc(kids, cap * sizeof *k);
    if (!k) {
        return false;
    }
    kids = k;
    capkids = cap;
    return true;
}

static int do_spawn(char *msg, size_t len, int *fds, int nfds, pid_t *pid)
{
    struct req_head h;
    memcpy(&h, msg, sizeof h);
    int need = 4 + ((h.flags & F_IN) != 0) + ((h.flags & F_GATED) != 0);
    if (nfds != need) {
        return -EINVAL;
    }
    char *cur = msg + sizeof h, *end = msg + len;
    char **argv = strings(&cur, end, h.argc);
    char **env = strings(&cur, end, h.envc);
    char *cwd = NULL;
    if ((h.flags & F_CWD) && cur < end && memchr(cur, '\0', (size_t)(end - cur))) {
        cwd = cur;
    }
    int rc = -EINVAL;
    if (argv && env && h.argc > 0 && (cwd || !(h.flags & F_CWD))) {
        int in_r = (h.flags & F_IN) ? fds[4] : -1;
        int gate_r = (h.flags & F_GATED) ? fds[need - 1] : -1;
        rc = proc_start_fds(argv, env, cwd, in_r, fds[0], fds[1], gate_r, pid);
    }
    free(argv);
    free(env);
    if (rc == 0 && kid_room()) {
        kids[nkids++] = (struct kchild){.pid = *pid, .out_r = fds[2], .err_r = fds[3],
                                        .slot_fd = -1, .in_w = -1,
                                        .started_ms = now_ms()};
        fds[2] = fds[3] = -1;
    } else if (rc == 0) {
        kill(-*pid, SIGKILL); /* out of memory: it must not run untracked */
        rc = -ENOMEM;
    }
    return rc;
}

static void do_handoff(char *msg, size_t len, int *fds, int nfds,
                       struct reply *r)
{
    struct req_head h;
    memcpy(&h, msg, sizeof h);
    struct kchild *k = kid_find(h.pid);
    if (!k || k->handed) {
        r->rc = -ESRCH;
        return;
    }
    size_t n = len - sizeof h;
    char *meta = malloc(n + 1);
    if (!meta) {
        r->rc = -ENOMEM;
        return;
    }
    memcpy(meta, msg + sizeof h, n);
    meta[n] = '\0';
    kid_unhand(k); /* a kept live process handed off again: a new turn */
    k->meta = meta;
    k->handed = true;
    int slots = nfds - ((h.flags & F_IN) ? 1 : 0);
    if (slots == 1) {
        k->slot_fd = fds[0];
        fds[0] = -1;
    }
    if ((h.flags & F_IN) && nfds >= 1) {
        k->in_w = fds[nfds - 1];
        fds[nfds - 1] = -1;
    }
}

/* A held job (keeper_hold): an entry with a key of its own, below every
 * pid, handed off and "exited" (there is no child to wait for). */
static void do_hold(char *msg, size_t len, struct reply *r)
{
    static pid_t next_key = -1;
    size_t n = len - sizeof(struct req_head);
    char *meta = malloc(n + 1);
    if (!meta || !kid_room()) {
        free(meta);
        r->rc = -ENOMEM;
        return;
    }
    memcpy(meta, msg + sizeof(struct req_head), n);
    meta[n] = '\0';
    kids[nkids++] = (struct kchild){.pid = next_key, .out_r = -1, .err_r = -1,
                                    .slot_fd = -1, .in_w = -1, .handed = true, .exited = true,
                                    .meta = meta, .started_ms = now_ms()};
    r->pid = next_key--;
}

/* One request; false at the end of the socket (the server is gone). */
static bool serve_one(int ctrl, char *buf)
{
    union {
        char b[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct iovec iov = {.iov_base = buf, .iov_len = MAX_MSG};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = u.b, .msg_controllen = sizeof u.b};
    ssize_t n = recvmsg(ctrl, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) {
        return true;
    }
    if (n <= 0) {
        return false;
    }
    int fds[MAX_FDS];
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
            int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k && nfds < MAX_FDS; i++) {
                memcpy(&fds[nfds++], CMSG_DATA(cm) + sizeof(int) * (size_t)i, sizeof(int));
            }
        }
    }
    struct reply r = {0, 0};
    struct req_head h = {0};
    if ((size_t)n >= sizeof h) {
        memcpy(&h, buf, sizeof h);
    }
    if ((size_t)n < sizeof h || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        r.rc = -EINVAL;
    } else if (h.type == MSG_SPAWN) {
        pid_t pid = 0;
        r.rc = do_spawn(buf, (size_t)n, fds, nfds, &pid);
        r.pid = pid;
    } else if (h.type == MSG_HANDOFF) {
        do_handoff(buf, (size_t)n, fds, nfds, &r);
    } else if (h.type == MSG_HOLD) {
        do_hold(buf, (size_t)n, &r);
    } else if (h.type == MSG_FORGET) {
        /* The server has read a handed-off child to its end. */
        struct kchild *k = kid_find(h.pid);
        if (k && k->exited) {
            kid_drop((size_t)(k - kids));
        } else if (k) {
            kid_unhand(k);
        }
    } else if (h.type == MSG_CLOSE_IN) {
        struct kchild *k = kid_find(h.pid);
        if (k) {
            close_in_copy(k);
        }
    } else {
        r.rc = -EINVAL;
    }
    /* The answer first: the server waits for it, not for these closes. */
    bool sent = send(ctrl, &r, sizeof r, MSG_NOSIGNAL) == (ssize_t)sizeof r;
    for (int i = 0; i < nfds; i++) {
        if (fds[i] >= 0) {
            close(fds[i]); /* the child's ends: the child holds them now */
        }
    }
    return sent;
}

static void kill_handed(void)
{
    for (size_t i = 0; i < nkids; i++) {
        if (kids[i].pid <= 0) {
            continue; /* a held job: no child */
        }
        kill(-kids[i].pid, SIGKILL);
        kill(kids[i].pid, SIGKILL);
    }
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The handed-off children's meta, a line each (JSON text: no raw
 * newline), in a memory file for the job runner: a command line is
 * readable by every user, so it carries only numbers (as a detached job
 * runner's carries only its job id). -1 on failure. */
static int meta_file(void)
{
    int fd = memfd_create("agent-dispatch-keeper", 0);
    for (size_t i = 0; fd >= 0 && i < nkids; i++) {
        if (!write_all(fd, kids[i].meta, strlen(kids[i].meta)) || !write_all(fd, "\n", 1)) {
            close(fd);
            fd = -1;
        }
    }
    return fd;
}

/* The server is gone: children not handed off end now, group and all;
 * the handed-off ones are taken over by `__keeper-run` (this process,
 * after exec). Returns only when there is nothing to take over. */
static int take_over(const char *self)
{
    for (size_t i = 0; i < nkids;) {
        if (!kids[i].handed) {
            kill(-kids[i].pid, SIGKILL);
            kill(kids[i].pid, SIGKILL);
            while (waitpid(kids[i].pid, NULL, 0) < 0 && errno == EINTR) {
            }
            kid_drop(i);
        } else {
            i++;
        }
    }
    reap(-1);
    if (nkids == 0) {
        return 0;
    }
    /* The meta file, then per child: pid, stdout fd, stderr fd, exited,
     * status, signal, milliseconds since its start, slot fd, stdin fd. */
    size_t argc = 3 + nkids * KEPT_NUMS;
    char **argv = calloc(argc + 1, sizeof *argv);
    char *nums = calloc(nkids * KEPT_NUMS + 1, 24);
    int mfd = meta_file();
    if (!argv || !nums || mfd < 0) {
        kill_handed(); /* they must not run unowned */
        return 1;
    }
    argv[0] = (char *)self;
    argv[1] = "__keeper-run";
    argv[2] = nums + nkids * KEPT_NUMS * 24;
    snprintf(argv[2], 24, "%d", mfd);
    uint64_t now = now_ms();
    for (size_t i = 0; i < nkids; i++) {
        struct kchild *k = &kids[i];
        char *n = nums + i * KEPT_NUMS * 24;
        long long v[KEPT_NUMS] = {k->pid, k->out_r, k->err_r, k->exited, k->status,
                                  k->sig, (long long)(now - k->started_ms), k->slot_fd,
                                  k->in_w};
        for (int j = 0; j < KEPT_NUMS; j++) {
            snprintf(n + j * 24, 24, "%lld", v[j]);
            argv[3 + i * KEPT_NUMS + (size_t)j] = n + j * 24;
        }
        if (k->pid > 0) {
            fcntl(k->out_r, F_SETFD, 0);
            fcntl(k->err_r, F_SETFD, 0);
        }
        if (k->slot_fd >= 0) {
            fcntl(k->slot_fd, F_SETFD, 0);
        }
        if (k->in_w >= 0) {
            fcntl(k->in_w, F_SETFD, 0);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(self, argv);
    kill_handed(); /* cannot become their runner: they must not run unowned */
    return 1;
}

/* Closes every descriptor but stdio and keep_a, keep_b: what the server
 * inherited without O_CLOEXEC (a pipe of whoever started it) must not be
 * held open by a process that may outlive it. */
static void close_inherited(int keep_a, int keep_b)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        return;
    }
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > 2 && fd != keep_a && fd != keep_b && fd != self) {
            close(fd);
        }
    }
    closedir(d);
}

int keeper_main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "agent-dispatch: __keeper: expected two descriptors\n");
        return 2;
    }
    int ctrl = atoi(argv[2]), ev = atoi(argv[3]);
    close_inherited(ctrl, ev);
    fcntl(ctrl, F_SETFD, FD_CLOEXEC);
    fcntl(ev, F_SETFD, FD_CLOEXEC);
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        return 1;
    }
    self[len] = '\0';
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    /* Every write here is a send with MSG_NOSIGNAL or into a memory file:
     * SIGPIPE can keep its default, so a child, whose every signal must
     * be at its default, needs no sigaction call before its exec. */
    signal(SIGPIPE, SIG_DFL);
    proc_fix_signals(); /* no handler here, only what the exec kept */
    char *buf = malloc(MAX_MSG);
    if (sfd < 0 || !buf) {
        return 1;
    }
    for (;;) {
        /* The event socket is watched only while reports wait for room. */
        struct pollfd pf[3] = {{ctrl, POLLIN, 0}, {sfd, POLLIN, 0},
                               {nunsent ? ev : -1, POLLOUT, 0}};
        if (poll(pf, 3, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (pf[2].revents) {
            flush_exits(ev);
        }
        if (pf[1].revents) {
            /* One read: SIGCHLD is not queued, so at most one is pending
             * (reap waits for every child that has exited). */
            struct signalfd_siginfo si;
            ssize_t n = read(sfd, &si, sizeof si);
            (void)n;
            reap(ev);
        }
        if (pf[0].revents && !serve_one(ctrl, buf)) {
            break;
        }
    }
    free(buf);
    free(unsent); /* the server is gone: nobody to tell */
    unsent = NULL;
    nunsent = capunsent = 0;
    close(ctrl);
    close(ev);
    close(sfd);
    return take_over(self);
}
