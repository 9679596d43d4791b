/* Job record files, the index, and verified kills; see jobs.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/jobs.h"
#include "ad/validate.h"

int jobs_path(const char *dir, const char *id, size_t idlen, char *out,
              size_t outlen)
{
    if (!validate_job_id(id, idlen)) {
        return -EINVAL;
    }
    if ((size_t)snprintf(out, outlen, "%s/%.32s.json", dir, id) >= outlen) {
        return -ENAMETOOLONG;
    }
    return 0;
}

int jobs_read(const char *dir, const char *id, size_t idlen, char **data,
              size_t *len)
{
    char path[4096];
    int rc = jobs_path(dir, id, idlen, path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    return fs_read_file(path, 256u << 20, true, data, len);
}

int jobs_write(const char *dir, const char *id, size_t idlen,
               const void *data, size_t len)
{
    char path[4096];
    int rc = jobs_path(dir, id, idlen, path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    return fs_write_atomic_nofollow(path, data, len, 0600);
}

int jobs_write_inplace(const char *dir, const char *id, size_t idlen,
                       const void *data, size_t len)
{
    char path[4096];
    int rc = jobs_path(dir, id, idlen, path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
    } else if ((off_t)len > st.st_size &&
               (off_t)len > (off_t)st.st_blocks * 512) {
        /* Beyond the blocks the file already holds, a write may need new
         * ones that are not there, and fail half-way. */
        rc = -ENOSPC;
    } else {
        ssize_t w = pwrite(fd, data, len, 0);
        rc = w == (ssize_t)len ? 0 : (w < 0 ? -errno : -EIO);
        /* Shrinking frees blocks, it never needs any. */
        if (rc == 0 && ftruncate(fd, (off_t)len) != 0) {
            rc = -errno;
        }
        if (rc == 0 && fsync(fd) != 0) {
            rc = -errno;
        }
    }
    close(fd);
    return rc;
}

int jobs_remove(const char *dir, const char *id, size_t idlen)
{
    char path[4096];
    int rc = jobs_path(dir, id, idlen, path, sizeof path);
    if (rc != 0) {
        return rc;
    }
    return unlink(path) == 0 ? 0 : -errno;
}

static void index_path(const char *dir, char *out, size_t len)
{
    snprintf(out, len, "%s/.index", dir);
}

/* The index opened with oflags (never through a link) and its stat:
 * the descriptor, or a negative errno. */
static int open_index(const char *dir, int oflags, struct stat *st)
{
    char path[4096];
    index_path(dir, path, sizeof path);
    int fd = open(path, oflags | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, st) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static void format_record(char rec[JOBS_INDEX_RECORD + 1], const char *id,
                          double created_at, const char *status)
{
    snprintf(rec, JOBS_INDEX_RECORD + 1, "%.32s %17.6f %-9.9s\n", id,
             created_at, status);
}

int jobs_index_add(const char *dir, const char *id, double created_at,
                   const char *status)
{
    if (!validate_job_id(id, strlen(id))) {
        return -EINVAL;
    }
    char rec[JOBS_INDEX_RECORD + 1];
    format_record(rec, id, created_at, status);
    /* A torn last line (a full disk or a crash during an earlier append)
     * is cut off first: appending after it would shift every later line
     * off the record grid. The entry it held comes back by reconciliation
     * with the directory (see jobs_index_fresh). */
    struct stat st;
    int fd = open_index(dir, O_WRONLY | O_CREAT | O_APPEND, &st);
    if (fd < 0) {
        return fd;
    }
    off_t whole = st.st_size - st.st_size % JOBS_INDEX_RECORD;
    if (whole != st.st_size && ftruncate(fd, whole) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    /* One write of a whole record: O_APPEND keeps records whole even if an
     * unlocked writer (the lock gave up after its bounded wait) races. A
     * short write (ENOSPC) is undone, so the index never keeps half a
     * line. */
    ssize_t w = write(fd, rec, JOBS_INDEX_RECORD);
    int rc = (w == JOBS_INDEX_RECORD) ? 0 : (w < 0 ? -errno : -ENOSPC);
    if (w > 0 && w < JOBS_INDEX_RECORD && ftruncate(fd, whole) != 0) {
        rc = -errno;
    }
    close(fd);
    return rc;
}

/* The index covers the directory when its mtime equals the directory's:
 * every writer of this store stamps it so after its own change (under the
 * jobs lock), and any other change of the directory's entries (a record
 * written by another program, a crash between a record write and its
 * index update, a restore, a deleted file) moves the directory's mtime
 * past the stamp. Two stat calls: cheap enough for every listing. */
int jobs_index_fresh(const char *dir)
{
    char path[4096];
    index_path(dir, path, sizeof path);
    struct stat d, i;
    if (stat(dir, &d) != 0) {
        return -errno;
    }
    if (!S_ISDIR(d.st_mode)) {
        return -ENOTDIR;
    }
    if (lstat(path, &i) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    return S_ISREG(i.st_mode) && i.st_size % JOBS_INDEX_RECORD == 0 &&
           i.st_mtim.tv_sec == d.st_mtim.tv_sec &&
           i.st_mtim.tv_nsec == d.st_mtim.tv_nsec;
}

int jobs_index_stamp(const char *dir)
{
    char path[4096];
    index_path(dir, path, sizeof path);
    struct stat d;
    if (stat(dir, &d) != 0) {
        return -errno;
    }
    struct timespec ts[2] = {{0, UTIME_OMIT}, d.st_mtim};
    return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

int jobs_index_unstamp(const char *dir)
{
    char path[4096];
    index_path(dir, path, sizeof path);
    /* The epoch: never a directory's mtime. */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {0, 0}};
    return utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
}

static int parse_record(const char *r, struct jobs_entry *e)
{
    if (r[32] != ' ' || r[50] != ' ' || r[JOBS_INDEX_RECORD - 1] != '\n' ||
        !validate_job_id(r, 32)) {
        return -EBADMSG;
    }
    memcpy(e->id, r, 32);
    e->id[32] = '\0';
    char num[18];
    memcpy(num, r + 33, 17);
    num[17] = '\0';
    char *end;
    e->created_at = strtod(num, &end);
    if (end == num) {
        return -EBADMSG;
    }
    size_t n = JOBS_STATUS_WIDTH;
    memcpy(e->status, r + 51, n);
    while (n > 0 && e->status[n - 1] == ' ') {
        n--;
    }
    e->status[n] = '\0';
    return 0;
}

/* Visits the index's records from the newest backwards (reading it in
 * chunks from the end: "newest N" never reads more than it needs). visit
 * returns 0 to go on, 1 to stop, or a negative errno. Returns that errno,
 * 1 if stopped, 0 at the oldest record; -ENOENT when there is no index,
 * -EBADMSG when its size is not a whole number of records. */
static int walk_backwards(const char *dir, int oflags,
                          int (*visit)(int fd, const char *rec, off_t at,
                                       void *ud),
                          void *ud)
{
    struct stat st;
    int fd = open_index(dir, oflags, &st);
    if (fd < 0) {
        return fd;
    }
    enum { CHUNK = JOBS_INDEX_RECORD * 256 };
    char *buf = malloc(CHUNK);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    /* A torn last line is not a record: the whole lines before it are. */
    off_t end = st.st_size - st.st_size % JOBS_INDEX_RECORD;
    int rc = 0;
    while (end > 0 && rc == 0) {
        off_t start = end > CHUNK ? end - CHUNK : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - start), start);
        if (n != end - start) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        for (ssize_t off = n - JOBS_INDEX_RECORD; off >= 0 && rc == 0;
             off -= JOBS_INDEX_RECORD) {
            rc = visit(fd, buf + off, start + off, ud);
        }
        end = start;
    }
    free(buf);
    close(fd);
    return rc;
}

struct set_ctx {
    const char *id;
    const char *status;
};

static int visit_set(int fd, const char *rec, off_t at, void *ud)
{
    struct set_ctx *c = ud;
    if (memcmp(rec, c->id, 32) != 0) {
        return 0;
    }
    char field[JOBS_STATUS_WIDTH + 1];
    snprintf(field, sizeof field, "%-9.9s", c->status);
    ssize_t w = pwrite(fd, field, JOBS_STATUS_WIDTH, at + 51);
    return (w == JOBS_STATUS_WIDTH) ? 1 : (w < 0 ? -errno : -EIO);
}

int jobs_index_set(const char *dir, const char *id, const char *status)
{
    if (!validate_job_id(id, strlen(id))) {
        return -EINVAL;
    }
    /* Recent jobs change status most: the walk from the end finds them
     * first. */
    struct set_ctx c = {id, status};
    int rc = walk_backwards(dir, O_RDWR, visit_set, &c);
    return rc == 1 ? 0 : (rc == 0 ? -ENOENT : rc);
}

struct scan_ctx {
    const char *status;
    char padded[JOBS_STATUS_WIDTH + 1];
    int (*fn)(const struct jobs_entry *e, void *ud);
    void *ud;
};

static int visit_scan(int fd, const char *rec, off_t at, void *ud)
{
    struct scan_ctx *c = ud;
    (void)fd;
    (void)at;
    /* A filtered scan of a large index drops most lines: compare the
     * fixed-width status field before parsing anything. */
    if (c->status && memcmp(rec + 51, c->padded, JOBS_STATUS_WIDTH) != 0) {
        return 0;
    }
    struct jobs_entry e;
    if (parse_record(rec, &e) != 0) {
        return -EBADMSG;
    }
    return c->fn(&e, c->ud) != 0 ? 1 : 0;
}

int jobs_index_scan(const char *dir, const char *status,
                    int (*fn)(const struct jobs_entry *e, void *ud), void *ud)
{
    struct scan_ctx c = {status, {0}, fn, ud};
    if (status) {
        snprintf(c.padded, sizeof c.padded, "%-9.9s", status);
    }
    int rc = walk_backwards(dir, O_RDONLY, visit_scan, &c);
    return rc == 1 ? 0 : rc;
}

int jobs_index_write(const char *dir, const struct jobs_entry *e, size_t n)
{
    char path[4096];
    index_path(dir, path, sizeof path);
    char *buf = malloc(n * JOBS_INDEX_RECORD + 1);
    if (!buf) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        char rec[JOBS_INDEX_RECORD + 1];
        format_record(rec, e[i].id, e[i].created_at, e[i].status);
        memcpy(buf + i * JOBS_INDEX_RECORD, rec, JOBS_INDEX_RECORD);
    }
    int rc = fs_write_atomic_nofollow(path, buf, n * JOBS_INDEX_RECORD, 0600);
    free(buf);
    /* Written within one coarse clock tick of its rename, the new file's
     * mtime can equal the directory's: it would read as stamped (fresh)
     * before any writer said so. A writer that means it stamps it. */
    return rc == 0 ? jobs_index_unstamp(dir) : rc;
}

int jobs_proc_identity(int pid, int *pgid, unsigned long long *start)
{
    if (pid <= 1) {
        return -ESRCH;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    char *data;
    size_t len;
    int rc = fs_read_file(path, 4096, false, &data, &len);
    if (rc != 0) {
        return rc == -ENOENT ? -ESRCH : rc;
    }
    /* The command name (field 2) may hold spaces and ')': fields after it
     * start after the LAST ')'. */
    char *p = strrchr(data, ')');
    int ppid, pg;
    char state;
    unsigned long long st = 0;
    int got = p ? sscanf(p + 1,
                         " %c %d %d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
                         "%*d %*d %*d %*d %*d %*d %llu",
                         &state, &ppid, &pg, &st)
                : 0;
    free(data);
    if (got != 4) {
        return -EBADMSG;
    }
    if (state == 'Z' || state == 'X') {
        return -ESRCH; /* exited, only not reaped yet */
    }
    *pgid = pg;
    *start = st;
    return 0;
}

int jobs_kill_verified(int pid, int pgid, unsigned long long start, int sig)
{
    int pg;
    unsigned long long st;
    if (pgid <= 1 || jobs_proc_identity(pid, &pg, &st) != 0 || pg != pgid ||
        st != start) {
        return -ESRCH;
    }
    return kill(-pgid, sig) == 0 ? 0 : -errno;
}

/* Does process pid's initial environment hold the entry mark, whole? */
static bool environ_has(int pid, const char *mark)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    char *data;
    size_t len;
    if (fs_read_file(path, 4u << 20, false, &data, &len) != 0) {
        return false;
    }
    size_t n = strlen(mark);
    bool found = false;
    for (size_t i = 0; i < len && !found;) {
        const char *e = data + i;
        size_t elen = strnlen(e, len - i);
        found = elen == n && memcmp(e, mark, n) == 0;
        i += elen + 1;
    }
    free(data);
    return found;
}

int jobs_kill_remnants(int pgid, unsigned long long start, const char *mark)
{
    if (pgid <= 1 || !mark || !*mark) {
        return 0;
    }
    DIR *d = opendir("/proc");
    if (!d) {
        return -errno;
    }
    bool ours = false;
    struct dirent *e;
    while (!ours && (e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        int pg;
        unsigned long long st;
        if (*end || pid <= 1 || pid > INT_MAX ||
            jobs_proc_identity((int)pid, &pg, &st) != 0 || pg != pgid || st < start) {
            continue;
        }
        ours = environ_has((int)pid, mark);
    }
    closedir(d);
    /* One live member of ours keeps the group number ours: the kernel
     * hands out no pid that is still a group's id. The whole group goes at
     * once, members without the mark (a cleared environment) included. */
    if (!ours) {
        return 0;
    }
    return kill(-pgid, SIGKILL) == 0 ? 1 : -errno;
}
