/* State-file primitives; see fsutil.h.
 *
 * Over 500 lines on purpose: atomic writes, appends, locks and the trusted
 * read share the descriptor and error conventions (-errno) of fsutil.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/ids.h"

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The file a write to path must really replace: the final target when
 * path is a symlink, else path itself. */
static int resolve_target(const char *path, char *out, size_t outlen)
{
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        char buf[PATH_MAX];
        if (!realpath(path, buf)) {
            /* Dangling link: write where it points. */
            ssize_t n = readlink(path, buf, sizeof buf - 1);
            if (n < 0) {
                return -errno;
            }
            buf[n] = '\0';
            if (buf[0] != '/') {
                char dir[PATH_MAX];
                snprintf(dir, sizeof dir, "%s", path);
                char *slash = strrchr(dir, '/');
                if (slash) {
                    slash[1] = '\0';
                    char joined[PATH_MAX];
                    if ((size_t)snprintf(joined, sizeof joined, "%s%s", dir,
                                         buf) >= sizeof joined) {
                        return -ENAMETOOLONG;
                    }
                    memcpy(buf, joined, strlen(joined) + 1);
                }
            }
        }
        if (strlen(buf) >= outlen) {
            return -ENAMETOOLONG;
        }
        memcpy(out, buf, strlen(buf) + 1);
        return 0;
    }
    if (strlen(path) >= outlen) {
        return -ENAMETOOLONG;
    }
    memcpy(out, path, strlen(path) + 1);
    return 0;
}

static void fsync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) {
        slash[1] = '\0';
    } else if (slash) {
        *slash = '\0';
    } else {
        strcpy(dir, ".");
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: not every filesystem supports it */
        close(fd);
    }
}

static int write_replace(const char *target, const void *data, size_t len,
                         mode_t mode);

int fs_write_atomic(const char *path, const void *data, size_t len,
                    mode_t mode)
{
    char target[PATH_MAX];
    int rc = resolve_target(path, target, sizeof target);
    if (rc != 0) {
        return rc;
    }
    return write_replace(target, data, len, mode);
}

int fs_write_atomic_nofollow(const char *path, const void *data, size_t len,
                             mode_t mode)
{
    if (strlen(path) >= PATH_MAX) {
        return -ENAMETOOLONG;
    }
    return write_replace(path, data, len, mode);
}

static int write_replace(const char *target, const void *data, size_t len,
                         mode_t mode)
{
    int rc;
    char id[33];
    ids_hex32(id);
    char tmp[PATH_MAX + 40];
    snprintf(tmp, sizeof tmp, "%s.%s.tmp", target, id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0600);
    if (fd < 0) {
        return -errno;
    }
    rc = fchmod(fd, mode) == 0 ? 0 : -errno;
    if (rc == 0) {
        rc = write_all(fd, data, len);
    }
    if (rc == 0 && fsync(fd) != 0) {
        rc = -errno;
    }
    if (close(fd) != 0 && rc == 0) {
        rc = -errno;
    }
    if (rc == 0 && rename(tmp, target) != 0) {
        rc = -errno;
    }
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    fsync_dir_of(target);
    return 0;
}

int fs_mkdirs(const char *dir, mode_t mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) {
        return n ? -ENAMETOOLONG : -ENOENT;
    }
    memcpy(buf, dir, n + 1);
    while (n > 1 && buf[n - 1] == '/') {
        buf[--n] = '\0';
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) != 0 && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(buf, mode) != 0 && errno != EEXIST) {
        return -errno;
    }
    struct stat st;
    if (stat(buf, &st) != 0) {
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        return -ENOTDIR;
    }
    /* Tighten only (0755 -> 0700): a permission the user removed, such as
     * the write bit of a directory made read-only on purpose, stays
     * removed. Best effort. */
    mode_t want = (st.st_mode & 07777) & mode;
    if (st.st_uid == getuid() && want != (st.st_mode & 07777)) {
        chmod(buf, want);
    }
    return 0;
}

int fs_mkparent(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) {
        return -ENAMETOOLONG;
    }
    strcpy(buf, path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) {
        return 0;
    }
    *slash = '\0';
    return fs_mkdirs(buf, mode);
}

static int lock_open(const char *path)
{
    int f;
    do {
        f = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    } while (f < 0 && errno == EINTR);
    return f < 0 ? -errno : f;
}

int fs_lock_try(const char *path, int *fd)
{
    int f = lock_open(path);
    if (f < 0) {
        return f;
    }
    if (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(f);
        return -e;
    }
    *fd = f;
    return 0;
}

int fs_lock_wait(const char *path, int *fd, const atomic_bool *stop)
{
    int f = lock_open(path);
    if (f < 0) {
        return f;
    }
    /* stop is checked before every attempt: a signal that lands between
     * the check and flock() is lost, so the waker repeats it until we
     * return (see bind/fs.c). */
    while (!atomic_load(stop)) {
        if (flock(f, LOCK_EX) == 0) {
            *fd = f;
            return 0;
        }
        if (errno != EINTR) {
            int e = errno;
            close(f);
            return -e;
        }
    }
    close(f);
    return -EINTR;
}

void fs_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

int fs_read_fd(int fd, size_t max, char **out, size_t *len, bool *more)
{
    if (max == SIZE_MAX) {
        max--; /* max + 1 below must not wrap to 0 (an empty read) */
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return -EISDIR;
    }
    /* Sized from the file when it has a size; one byte over max tells
     * whether more follows. */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
    if (cap > max + 1) {
        cap = max + 1;
    }
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    *more = n > max;
    if (n > max) {
        n = max;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* All of fd or -EFBIG past max. */
static int read_fd(int fd, size_t max, char **out, size_t *len)
{
    char *buf;
    size_t n;
    bool more;
    int rc = fs_read_fd(fd, max, &buf, &n, &more);
    if (rc != 0) {
        return rc;
    }
    if (more) {
        free(buf);
        return -EFBIG; /* out and len untouched, as for every failure */
    }
    *out = buf;
    *len = n;
    return 0;
}

int fs_read_file(const char *path, size_t max, bool nofollow, char **out,
                 size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC |
                            (nofollow ? O_NOFOLLOW | O_NONBLOCK | O_NOCTTY : 0));
    if (fd < 0) {
        return -errno;
    }
    if (nofollow) {
        struct stat st;
        int rc = fstat(fd, &st) != 0 ? -errno : !S_ISREG(st.st_mode) ? -EINVAL : 0;
        if (rc != 0) {
            close(fd);
            return rc;
        }
    }
    return read_fd(fd, max, out, len);
}

int fs_append_open(const char *path, mode_t mode)
{
    int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                  mode);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        rc = -EPERM; /* someone else's file: never add our records to it */
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int fs_append_iov(int fd, const struct iovec *iov, int n, off_t limit)
{
    /* A descriptor kept open outlives the file's name: a record written
     * after the file was removed would reach no reader. */
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return -errno;
    }
    if (st.st_nlink == 0) {
        return -ENOENT;
    }
    if (limit > 0 && st.st_size >= limit) {
        return -EFBIG; /* full: the caller goes on in a new file */
    }
    if (n < 1 || n > 8) {
        return -EINVAL;
    }
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        len += iov[i].iov_len;
    }
    /* A line cut short (a full disk) must not swallow the next one: a
     * file that does not end its last line gets a newline before this
     * record (two appenders may both add one: an empty line, harmless). */
    struct iovec all[9];
    int k = 0;
    char last = '\n';
    const struct iovec *tail = &iov[n - 1];
    bool lines = tail->iov_len > 0 &&
                 ((const char *)tail->iov_base)[tail->iov_len - 1] == '\n';
    if (lines && st.st_size > 0 && pread(fd, &last, 1, st.st_size - 1) == 1 &&
        last != '\n') {
        all[k++] = (struct iovec){.iov_base = "\n", .iov_len = 1};
        len++;
    }
    for (int i = 0; i < n; i++) {
        all[k++] = iov[i];
    }
    ssize_t w;
    do {
        w = writev(fd, all, k); /* one append, like one write() */
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        return -errno;
    }
    /* Short: the device filled up (or the file reached its size limit)
     * while this record was written. */
    return (size_t)w == len ? 0 : -ENOSPC;
}

int fs_append_fd(int fd, const void *data, size_t len)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return fs_append_iov(fd, &iov, 1, 0);
}

int fs_append(const char *path, const void *data, size_t len, mode_t mode)
{
    int fd = fs_append_open(path, mode);
    if (fd < 0) {
        return fd;
    }
    int rc = fs_append_fd(fd, data, len);
    close(fd);
    return rc;
}

int fs_lock_read(int fd, size_t max, char **out, size_t *len)
{
    int d = dup(fd); /* read_fd closes what it reads */
    if (d < 0) {
        return -errno;
    }
    if (lseek(d, 0, SEEK_SET) < 0) {
        int e = errno;
        close(d);
        return -e;
    }
    return read_fd(d, max, out, len);
}

int fs_lock_rewrite(int fd, const void *data, size_t len)
{
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, p + done, len - done, (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        done += (size_t)n;
    }
    return ftruncate(fd, (off_t)len) == 0 ? 0 : -errno;
}

/* ---- trusted reads ------------------------------------------------------ */

static const char *writers(mode_t mode)
{
    return (mode & 002) ? "others" : "its group";
}

/* The opened file itself: a regular file of uid that no one else may
 * write. */
static bool file_trusted(const struct stat *st, uid_t uid, const char *path,
                         char *why, size_t whylen)
{
    if (!S_ISREG(st->st_mode)) {
        snprintf(why, whylen, "it is not a regular file");
        return false;
    }
    if (st->st_uid != uid) {
        snprintf(why, whylen, "it is owned by uid %u, not by you (uid %u)",
                 (unsigned)st->st_uid, (unsigned)uid);
        return false;
    }
    if (st->st_mode & 022) {
        snprintf(why, whylen, "it is writable by %s (mode %o); run: chmod go-w %s",
                 writers(st->st_mode), (unsigned)(st->st_mode & 07777), path);
        return false;
    }
    return true;
}

/* Every directory from real's parent up to "/": owned by uid or root and
 * not writable by anyone else, so no one else can rename or replace an
 * entry on the path. A sticky directory (/tmp) is the exception: there
 * only an entry's owner may rename it, and each entry below is checked. */
bool fs_dirs_trusted(const char *real, uid_t uid, char *why, size_t whylen)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", real);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            return true;
        }
        if (slash == dir) {
            slash[1] = '\0';
        } else {
            *slash = '\0';
        }
        struct stat st;
        if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(why, whylen, "its directory %s cannot be checked", dir);
            return false;
        }
        if (st.st_uid != uid && st.st_uid != 0) {
            snprintf(why, whylen,
                     "its directory %s is owned by uid %u, not by you "
                     "(uid %u) or root", dir, (unsigned)st.st_uid,
                     (unsigned)uid);
            return false;
        }
        if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
            snprintf(why, whylen,
                     "its directory %s is writable by %s (mode %o); run: "
                     "chmod go-w %s", dir, writers(st.st_mode),
                     (unsigned)(st.st_mode & 07777), dir);
            return false;
        }
        if (strcmp(dir, "/") == 0) {
            return true;
        }
    }
}

/* The path the kernel resolved for an open descriptor. */
static int fd_path(int fd, const char *path, char *out)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, PATH_MAX - 1);
    if (n > 0 && out[0] == '/') {
        out[n] = '\0';
        return 0;
    }
    return realpath(path, out) ? 0 : -errno;
}

int fs_read_trusted(const char *path, size_t max, uid_t uid, char **out,
                    size_t *len, char *why, size_t whylen)
{
    why[0] = '\0';
    /* O_NONBLOCK: a FIFO planted at path must not block the open. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    char real[PATH_MAX];
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0) {
        rc = fd_path(fd, path, real);
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    /* The checks apply to what was opened, never to a second lookup of
     * path that a swap could have redirected. */
    if (!file_trusted(&st, uid, path, why, whylen) ||
        !fs_dirs_trusted(real, uid, why, whylen)) {
        close(fd);
        return -EPERM;
    }
    return read_fd(fd, max, out, len);
}
