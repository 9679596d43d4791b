/* Cross-process concurrency slots; see slots.h. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "ad/fsutil.h"
#include "ad/sched.h"
#include "bind/slots.h"

#define KICK_MS 50 /* repeat the wake-up signal until the thread returns */

/* One blocking flock() on a thread, on a descriptor of its own. */
struct xwait {
    uv_async_t done;
    uv_timer_t kick;
    pthread_t thread;
    atomic_bool stop;
    bool abandoned; /* nobody wants the slot any more */
    int idx;
    int fd;
    int rc;
    int open_handles;
};

static struct {
    int dirfd;         /* -1 until slots_open succeeds */
    char *dir;
    int *fd;           /* slot i's descriptor, opened once; -1: none */
    int *hfd;          /* the descriptor holding slot i's lock; -1: free */
    int n, cap;        /* entries in fd and hfd: set, allocated */
    bool broken;       /* a slot file could not be used: no more sharing */
    bool short_of;     /* said that a slot file could not be opened for now */
    uv_fs_event_t ev;  /* the directory: touches of released slots */
    bool ev_init, ev_on;
    bool want;         /* a task of this process waits for a slot */
    struct xwait *wait;
    int next;          /* where the next background wait starts */
    int last;          /* the slot released last (-1: none yet) */
    int limit;
    slots_wake_fn wake;
} S = {.dirfd = -1, .last = -1};

/* Fills why (a literal format, so the compiler checks it) and yields rc. */
#define REFUSE(rc, ...) (snprintf(why, whylen, __VA_ARGS__), (rc))

/* A failure that passes (a full descriptor table, memory, disk): this
 * take goes without a slot file, the next one tries again. */
static bool passing(int err)
{
    return err == -EMFILE || err == -ENFILE || err == -ENOMEM ||
           err == -ENOSPC || err == -EAGAIN;
}

/* A slot file we may lock: a regular file of ours, owner-only. */
static int open_slot(int i, char *why, size_t whylen)
{
    char name[32];
    snprintf(name, sizeof name, "%d.lock", i);
    int f = openat(S.dirfd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                   0600);
    if (f < 0) {
        int e = errno;
        if (e == ELOOP) {
            return REFUSE(-e,
                          "slot file %u.lock is a symbolic link", (unsigned)i);
        }
        return REFUSE(-e, "cannot open slot file %u.lock: %s",
                      (unsigned)i, strerror(e));
    }
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return REFUSE(-e, "cannot read slot file %u.lock: %s", (unsigned)i,
                      strerror(e));
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != getuid()) {
        close(f);
        return REFUSE(-EPERM,
                      "slot file %u.lock is not a regular file of yours",
                      (unsigned)i);
    }
    if (st.st_mode & 077) {
        fchmod(f, 0600);
    }
    return f;
}

static int give_up(int i, const char *why)
{
    if (!S.broken) {
        fprintf(stderr, "agent-dispatch: concurrency slot %d: %s; "
                        "settings.max_concurrency now holds for this process "
                        "only\n", i, why);
    }
    S.broken = true;
    return -1;
}

/* Slot i's descriptor, opened (and the tables grown) on first use, so a
 * large limit costs nothing until that many children run. A slot file
 * that cannot be used ends the sharing (said once on stderr): -1. */
static int slot_fd(int i)
{
    if (i >= S.cap) {
        int cap = S.cap ? S.cap : 8;
        while (cap <= i) {
            cap *= 2;
        }
        int *fd = realloc(S.fd, (size_t)cap * sizeof *fd);
        int *hfd = fd ? realloc(S.hfd, (size_t)cap * sizeof *hfd) : NULL;
        if (fd) {
            S.fd = fd;
        }
        if (!hfd) {
            return give_up(i, "out of memory");
        }
        S.hfd = hfd;
        S.cap = cap;
    }
    while (S.n <= i) {
        S.fd[S.n] = S.hfd[S.n] = -1;
        S.n++;
    }
    if (S.fd[i] < 0) {
        char why[128];
        int f = open_slot(i, why, sizeof why);
        if (f < 0 && passing(f)) {
            if (!S.short_of) {
                fprintf(stderr, "agent-dispatch: concurrency slot %d: %s; "
                                "this child runs outside the shared limit\n",
                        i, why);
            }
            S.short_of = true;
            return -1;
        }
        if (f < 0) {
            return give_up(i, why);
        }
        S.fd[i] = f;
        S.short_of = false;
    }
    return S.fd[i];
}

/* The slot directory dir, created if missing, checked: its descriptor or
 * -errno (why filled in when refused). */
static int open_dir(const char *dir, char *why, size_t whylen)
{
    int rc = fs_mkdirs(dir, 0700);
    if (rc != 0) {
        return rc;
    }
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0) {
        int e = errno;
        return e == ELOOP || e == ENOTDIR
                   ? REFUSE(-e, "it is a symbolic link or not a directory")
                   : REFUSE(-e, "it cannot be opened");
    }
    struct stat st;
    if (fstat(d, &st) != 0) {
        int e = errno;
        close(d);
        return -e;
    }
    if (st.st_uid != getuid()) {
        close(d);
        return REFUSE(-EPERM, "it is owned by uid %u, not by you",
                      (unsigned)st.st_uid);
    }
    if (st.st_mode & 022) {
        close(d);
        return REFUSE(-EPERM,
                      "it is writable by group or others (mode %o)",
                      (unsigned)(st.st_mode & 07777));
    }
    return d;
}

int slots_open(const char *dir, char *why, size_t whylen)
{
    why[0] = '\0';
    if (S.dirfd >= 0) {
        return 0;
    }
    char *copy = strdup(dir);
    if (!copy) {
        return -ENOMEM;
    }
    int d = open_dir(dir, why, whylen);
    if (d < 0) {
        free(copy);
        return d;
    }
    S.dirfd = d;
    S.dir = copy;
    return 0;
}

static void stop_wait(void);
static void on_dir_event(uv_fs_event_t *h, const char *file, int events,
                         int status);

/* The slot directory was removed (a user cleaned up the jobs directory)
 * while we hold its descriptor: other processes now share their slots in
 * the one made anew at its path, so we move there too. Slots we hold stay
 * held on the old files until released; a wait on an old file ends. */
static void follow_dir(void)
{
    struct stat st;
    if (fstat(S.dirfd, &st) != 0 || st.st_nlink != 0) {
        return;
    }
    char why[128] = "";
    int d = open_dir(S.dir, why, sizeof why);
    if (d < 0) {
        if (!passing(d) && !S.broken) {
            fprintf(stderr, "agent-dispatch: the concurrency slot directory %s "
                            "was removed and cannot be made again (%s); "
                            "settings.max_concurrency now holds for this "
                            "process only\n",
                    S.dir, why[0] ? why : strerror(-d));
            S.broken = true;
        }
        return; /* for now the old directory serves this process alone */
    }
    close(S.dirfd);
    S.dirfd = d;
    for (int i = 0; i < S.n; i++) {
        if (S.fd[i] >= 0 && S.hfd[i] != S.fd[i]) {
            close(S.fd[i]);
        }
        S.fd[i] = -1; /* a held one is closed by its release */
    }
    if (S.ev_on) {
        uv_fs_event_stop(&S.ev);
        S.ev_on = uv_fs_event_start(&S.ev, on_dir_event, S.dir, 0) == 0;
    }
    if (S.wait) {
        stop_wait(); /* the next slots_watch blocks on a new file */
    }
}

bool slots_enabled(void)
{
    return S.dirfd >= 0 && !S.broken;
}

/* Takes slot i if it is free: i, -1 when another holder has it, -2 when
 * its file cannot be used. */
static int try_slot(int i)
{
    int f = slot_fd(i);
    if (f < 0) {
        return -2;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        return -1;
    }
    S.hfd[i] = f;
    return i;
}

int slots_try(int limit)
{
    follow_dir();
    /* The slot this process released last first: with several processes
     * sharing the limit, each tends to keep its own slot, and a take is
     * one flock instead of one per slot other processes hold. */
    int last = S.last;
    if (last >= 0 && last < limit && last < S.n && S.hfd[last] < 0) {
        int rc = try_slot(last);
        if (rc != -1) {
            return rc;
        }
    }
    for (int i = 0; i < limit; i++) {
        if (i == last || (i < S.n && S.hfd[i] >= 0)) {
            continue; /* tried just now, or ours already */
        }
        int rc = try_slot(i);
        if (rc != -1) {
            return rc;
        }
    }
    return -1;
}

/* Unlocks f, then touches it: the inotify event wakes every process
 * waiting for a slot (after the unlock, so their retry can succeed). */
static void unlock_touch(int f)
{
    flock(f, LOCK_UN);
    futimens(f, NULL);
}

void slots_release(int idx)
{
    if (idx < 0 || idx >= S.n || S.hfd[idx] < 0) {
        return;
    }
    int f = S.hfd[idx];
    S.hfd[idx] = -1;
    S.last = idx;
    unlock_touch(f);
    if (f != S.fd[idx]) {
        close(f);
    }
}

int slots_held_fd(int idx)
{
    return (idx >= 0 && idx < S.n) ? S.hfd[idx] : -1;
}

void slots_forget(int idx)
{
    if (idx >= 0 && idx < S.n) {
        S.hfd[idx] = -1; /* held on by the copy; we are exiting */
    }
}

/* ---- waiting: inotify for releases, one thread for holders that died */

static void on_dir_event(uv_fs_event_t *h, const char *file, int events,
                         int status)
{
    (void)h, (void)file, (void)events, (void)status;
    if (S.wake) {
        S.wake(-1);
    }
}

static void on_wait_signal(int sig)
{
    (void)sig; /* only here to interrupt flock() (no SA_RESTART) */
}

static int wait_signal(void)
{
    static bool installed;
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_wait_signal;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGRTMIN, &sa, NULL) != 0) {
            return -1;
        }
        installed = true;
    }
    return SIGRTMIN;
}

static void *wait_thread(void *arg)
{
    struct xwait *w = arg;
    sigset_t set;
    sigfillset(&set);
    sigdelset(&set, SIGRTMIN);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    w->rc = -EINTR;
    /* stop is checked before every attempt: a signal landing between the
     * check and flock() is lost, so the kick timer repeats it. */
    while (!atomic_load(&w->stop)) {
        if (flock(w->fd, LOCK_EX) == 0) {
            w->rc = 0;
            break;
        }
        if (errno != EINTR) {
            w->rc = -errno;
            break;
        }
    }
    uv_async_send(&w->done);
    return NULL;
}

static void wait_closed(uv_handle_t *h)
{
    struct xwait *w = h->data;
    if (--w->open_handles == 0) {
        free(w);
    }
}

static void start_wait(void);

static void on_wait_done(uv_async_t *h)
{
    struct xwait *w = h->data;
    pthread_join(w->thread, NULL);
    uv_close((uv_handle_t *)&w->kick, wait_closed);
    uv_close((uv_handle_t *)&w->done, wait_closed);
    if (S.wait == w) {
        S.wait = NULL;
    }
    if (w->rc != 0) {
        close(w->fd);
    } else if (!w->abandoned && S.hfd[w->idx] < 0 && S.wake) {
        S.hfd[w->idx] = w->fd;
        S.wake(w->idx);
    } else {
        unlock_touch(w->fd);
        close(w->fd);
    }
    /* Still wanted: block on the next slot. A slot file that failed
     * (not EINTR) is not retried in a loop; inotify still serves. */
    if (S.want && !S.wait && (w->rc == 0 || w->rc == -EINTR)) {
        start_wait();
    }
}

static void on_wait_kick(uv_timer_t *h)
{
    struct xwait *w = h->data;
    atomic_store(&w->stop, true);
    pthread_kill(w->thread, SIGRTMIN);
}

/* A slot none of ours to block on, taken in turn. */
static int pick_slot(void)
{
    int n = S.limit < S.n ? S.limit : S.n;
    for (int j = 0; j < n; j++) {
        int k = (S.next + j) % n;
        if (S.hfd[k] < 0) {
            S.next = k + 1;
            return k;
        }
    }
    return -1;
}

static void start_wait(void)
{
    int idx = pick_slot();
    if (idx < 0 || wait_signal() < 0) {
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "%d.lock", idx);
    int f = openat(S.dirfd, name, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    struct xwait *w = f < 0 ? NULL : calloc(1, sizeof *w);
    if (!w) {
        if (f >= 0) {
            close(f);
        }
        return;
    }
    w->idx = idx;
    w->fd = f;
    atomic_init(&w->stop, false);
    uv_async_init(sched_loop(), &w->done, on_wait_done);
    uv_timer_init(sched_loop(), &w->kick);
    w->done.data = w->kick.data = w;
    w->open_handles = 2;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&w->thread, &attr, wait_thread, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(f);
        uv_close((uv_handle_t *)&w->kick, wait_closed);
        uv_close((uv_handle_t *)&w->done, wait_closed);
        return;
    }
    S.wait = w;
}

static void stop_wait(void)
{
    struct xwait *w = S.wait;
    S.wait = NULL;
    w->abandoned = true;
    uv_timer_start(&w->kick, on_wait_kick, 0, KICK_MS);
}

void slots_watch(bool want, int limit, slots_wake_fn wake)
{
    if (S.dirfd < 0) {
        return;
    }
    S.wake = wake;
    S.limit = limit;
    S.want = want;
    if (!want) {
        if (S.ev_on) {
            uv_fs_event_stop(&S.ev);
            S.ev_on = false;
        }
        if (S.wait) {
            stop_wait();
        }
        return;
    }
    if (!S.ev_on) {
        if (!S.ev_init) {
            uv_fs_event_init(sched_loop(), &S.ev);
            S.ev_init = true;
        }
        S.ev_on = uv_fs_event_start(&S.ev, on_dir_event, S.dir, 0) == 0;
    }
    if (!S.wait) {
        start_wait();
    }
}
