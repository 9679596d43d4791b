/*
 * inject.c - an LD_PRELOAD fault injector for the fault-matrix tests.
 *
 * Makes file writes fail the way a full disk (ENOSPC) or a permission
 * change (EACCES) makes them fail, for chosen paths only, so a test can
 * check that agent-dispatch reports the failure clearly and keeps the
 * previous state.  Root ignores permission bits, so EACCES cannot be
 * produced with chmod in a test that runs as root; this can.
 *
 * Environment:
 *   AD_FAULT_PATH   substring a path must contain to be affected (required)
 *   AD_FAULT_ERRNO  ENOSPC (default), EACCES or EMFILE (a descriptor
 *                   table full for a moment)
 *   AD_FAULT_OPS    comma list of: open (opens for writing), write (write,
 *                   pwrite, writev on an fd opened on such a path), fsync,
 *                   rename (either name matches), flock (see below); default
 *                   "open,write,rename"
 *   AD_FAULT_AFTER  this many matching calls succeed first (default 0)
 *   AD_FAULT_TIMES  at most this many matching calls fail (default: all)
 *   AD_FAULT_WHEN   if set, faults happen only while this file exists (a
 *                   test arms and disarms the injector of a running process)
 *
 *   AD_FAULT_LOG    if set, each injected failure appends "op path" to it
 *                   (a test checks that the fault really happened)
 *
 * flock: a lock held by another process, exactly when a test wants it. A
 * non-blocking exclusive flock() of a file opened on a matching path
 * fails with EWOULDBLOCK (a counted fault: AD_FAULT_AFTER, AD_FAULT_TIMES);
 * a blocking one fails with ENOLCK (not counted), so the lock is only ever
 * taken by a non-blocking try: with AD_FAULT_TIMES=N the lock "frees"
 * exactly at the N+1st try, whatever the timing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

static bool tracked[MAX_FD]; /* fds opened on a matching path */
static long calls;           /* matching calls so far */

static bool op_enabled(const char *op)
{
    const char *ops = getenv("AD_FAULT_OPS");
    if (!ops || !*ops) {
        ops = "open,write,rename";
    }
    size_t n = strlen(op);
    for (const char *p = ops; (p = strstr(p, op)) != NULL; p += n) {
        if ((p == ops || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) {
            return true;
        }
    }
    return false;
}

static bool path_matches(const char *path)
{
    const char *pat = getenv("AD_FAULT_PATH");
    return pat && *pat && path && strstr(path, pat) != NULL;
}

static void note(const char *op, const char *path)
{
    const char *log = getenv("AD_FAULT_LOG");
    if (!log || !*log) {
        return;
    }
    static int (*real_open)(const char *, int, ...);
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_open) {
        real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
        real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    }
    char line[4200];
    int n = snprintf(line, sizeof line, "%s %s\n", op, path ? path : "(fd)");
    int fd = real_open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        real_write(fd, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : 0);
        close(fd);
    }
}

/* Should this matching call fail?  Counts it either way. */
static bool fire(const char *op, const char *path)
{
    if (!op_enabled(op)) {
        return false;
    }
    const char *when = getenv("AD_FAULT_WHEN");
    struct stat st;
    if (when && *when && stat(when, &st) != 0) {
        return false;
    }
    const char *after_s = getenv("AD_FAULT_AFTER");
    const char *times = getenv("AD_FAULT_TIMES");
    long n = calls++, after = after_s ? atol(after_s) : 0;
    if (n < after || (times && *times && n >= after + atol(times))) {
        return false;
    }
    const char *e = getenv("AD_FAULT_ERRNO");
    errno = !e ? ENOSPC : strcmp(e, "EACCES") == 0 ? EACCES
                        : strcmp(e, "EMFILE") == 0 ? EMFILE : ENOSPC;
    int saved = errno;
    note(op, path);
    errno = saved;
    return true;
}

static bool fd_fires(int fd, const char *op)
{
    return fd >= 0 && fd < MAX_FD && tracked[fd] && fire(op, NULL);
}

static void track(int fd, const char *path)
{
    if (fd >= 0 && fd < MAX_FD) {
        tracked[fd] = path_matches(path);
    }
}

#define REAL(ret, name, ...) \
    static ret (*real)(__VA_ARGS__); \
    if (!real) real = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

static int open_common(const char *name, int dirfd, const char *path, int flags, mode_t mode)
{
    bool writing = (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
    if (writing && path_matches(path) && fire("open", path)) {
        return -1;
    }
    int fd;
    if (dirfd == -1) {
        REAL(int, name, const char *, int, ...);
        fd = real(path, flags, mode);
    } else {
        REAL(int, name, int, const char *, int, ...);
        fd = real(dirfd, path, flags, mode);
    }
    track(fd, path);
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open", -1, path, flags, m);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common("open64", -1, path, flags, m);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common("openat", dirfd, path, flags, m);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t m = mode_arg(flags, ap);
    va_end(ap);
    return open_common("openat64", dirfd, path, flags, m);
}

int close(int fd)
{
    REAL(int, "close", int);
    if (fd >= 0 && fd < MAX_FD) {
        tracked[fd] = false;
    }
    return real(fd);
}

ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(ssize_t, "write", int, const void *, size_t);
    return fd_fires(fd, "write") ? -1 : real(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    return fd_fires(fd, "write") ? -1 : real(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    return fd_fires(fd, "write") ? -1 : real(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(ssize_t, "writev", int, const struct iovec *, int);
    return fd_fires(fd, "write") ? -1 : real(fd, iov, cnt);
}

int fsync(int fd)
{
    REAL(int, "fsync", int);
    return fd_fires(fd, "fsync") ? -1 : real(fd);
}

int fdatasync(int fd)
{
    REAL(int, "fdatasync", int);
    return fd_fires(fd, "fsync") ? -1 : real(fd);
}

int rename(const char *from, const char *to)
{
    REAL(int, "rename", const char *, const char *);
    if ((path_matches(from) || path_matches(to)) && fire("rename", to)) {
        return -1;
    }
    return real(from, to);
}

int renameat(int fromfd, const char *from, int tofd, const char *to)
{
    REAL(int, "renameat", int, const char *, int, const char *);
    if ((path_matches(from) || path_matches(to)) && fire("rename", to)) {
        return -1;
    }
    return real(fromfd, from, tofd, to);
}

int flock(int fd, int op)
{
    REAL(int, "flock", int, int);
    bool tracked_fd = fd >= 0 && fd < MAX_FD && tracked[fd];
    if (tracked_fd && (op & LOCK_EX) && op_enabled("flock")) {
        if (!(op & LOCK_NB)) {
            errno = ENOLCK;
            return -1;
        }
        if (fire("flock", NULL)) {
            errno = EWOULDBLOCK;
            return -1;
        }
    }
    return real(fd, op);
}
