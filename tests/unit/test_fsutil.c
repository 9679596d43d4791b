/* Unit tests of the state-file primitives (src/fsutil.c).
 * Over 500 lines on purpose: one test file per module, and every
 * primitive is tested with its failure paths. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "check.h"
#include "nodac.h"

static char root[64];

static const char *P(const char *rel)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", root, rel);
    return b;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* Never through a link: chmod follows it, and a test link such as
     * one to /proc/self/fd/0 would change the mode of whatever that is
     * (under ctest, /dev/null). */
    if (flag != FTW_SL) {
        chmod(path, 0700);
    }
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_plain(const char *path, const char *s, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, s, strlen(s)) != (ssize_t)strlen(s)) {
        perror(path);
        exit(2);
    }
    close(fd);
    chmod(path, mode);
}

/* Whole file as a malloc'd string, or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    char *buf = malloc(1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static bool content_is(const char *path, const char *want)
{
    char *got = slurp(path);
    bool ok = got && strcmp(got, want) == 0;
    free(got);
    return ok;
}

static int mode_of(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* Number of entries in dir whose name ends in ".tmp". */
static int count_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static int write_str(const char *path, const char *s, mode_t mode)
{
    return fs_write_atomic(path, s, strlen(s), mode);
}

static void test_write_atomic_basic(void)
{
    const char *f = P("state.json");
    CHECK_INT(write_str(f, "{\"a\":1}", 0600), 0);
    CHECK(content_is(f, "{\"a\":1}"));
    CHECK_INT(mode_of(f), 0600);
    CHECK_INT(count_tmp(root), 0);

    /* Replacing: new content, requested mode even if the old differed. */
    chmod(f, 0644);
    CHECK_INT(write_str(f, "second", 0600), 0);
    CHECK(content_is(f, "second"));
    CHECK_INT(mode_of(f), 0600);
    CHECK_INT(count_tmp(root), 0);

    /* Another mode is honoured exactly (fchmod, not umask). */
    mode_t old = umask(077);
    CHECK_INT(write_str(P("public.txt"), "x", 0644), 0);
    umask(old);
    CHECK_INT(mode_of(P("public.txt")), 0644);

    /* Empty data and binary data with NULs. */
    CHECK_INT(fs_write_atomic(f, "", 0, 0600), 0);
    struct stat st;
    CHECK(stat(f, &st) == 0 && st.st_size == 0);
    CHECK_INT(fs_write_atomic(f, "a\0b", 3, 0600), 0);
    CHECK(stat(f, &st) == 0 && st.st_size == 3);

    /* Many replacements leave no temp files behind. */
    for (int i = 0; i < 50; i++) {
        char buf[32];
        snprintf(buf, sizeof buf, "v%d", i);
        CHECK_INT(write_str(f, buf, 0600), 0);
    }
    CHECK(content_is(f, "v49"));
    CHECK_INT(count_tmp(root), 0);

    /* The file is replaced, not rewritten in place: an open descriptor
     * of the old file still sees the old content. */
    int fd = open(f, O_RDONLY);
    CHECK_INT(write_str(f, "new", 0600), 0);
    char buf[8] = "";
    CHECK(fd >= 0 && read(fd, buf, sizeof buf - 1) == 3 &&
          strcmp(buf, "v49") == 0);
    close(fd);

    /* A missing parent directory is an error, nothing created. */
    CHECK_INT(write_str(P("nodir/x.json"), "x", 0600), -ENOENT);
}

static void test_write_atomic_symlink(void)
{
    CHECK_INT(fs_mkdirs(P("real"), 0700), 0);
    write_plain(P("real/cfg.json"), "old", 0600);
    CHECK(symlink("real/cfg.json", P("link.json")) == 0);
    CHECK_INT(write_str(P("link.json"), "via link", 0600), 0);
    struct stat st;
    CHECK(lstat(P("link.json"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(content_is(P("real/cfg.json"), "via link"));
    CHECK_INT(count_tmp(root), 0);
    CHECK_INT(count_tmp(P("real")), 0);

    /* A chain of links: the final target gets the content. */
    CHECK(symlink(P("link.json"), P("link2.json")) == 0);
    CHECK_INT(write_str(P("link2.json"), "chain", 0600), 0);
    CHECK(lstat(P("link2.json"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(lstat(P("link.json"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(content_is(P("real/cfg.json"), "chain"));

    /* A dangling link: the file is created where it points. */
    CHECK(symlink("real/new.json", P("dangling.json")) == 0);
    CHECK_INT(write_str(P("dangling.json"), "created", 0600), 0);
    CHECK(lstat(P("dangling.json"), &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(content_is(P("real/new.json"), "created"));
    CHECK_INT(count_tmp(root), 0);
    CHECK_INT(count_tmp(P("real")), 0);
}

static void test_write_atomic_failure(void)
{
    const char *f = P("keep.json");
    static const char original[] = "original content\n";
    write_plain(f, original, 0600);

    /* 1. A write that fails half-way (file size limit: EFBIG, the way a
     * full disk fails with ENOSPC). */
    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    size_t big = 100000;
    char *data = malloc(big);
    memset(data, 'x', big);
    int rc = fs_write_atomic(f, data, big, 0600);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    free(data);
    CHECK_INT(rc, -EFBIG);
    CHECK(content_is(f, original));
    CHECK_INT(mode_of(f), 0600);
    CHECK_INT(count_tmp(root), 0);

    /* 2. The parent "directory" is a regular file. */
    write_plain(P("plainfile"), "x", 0600);
    CHECK_INT(write_str(P("plainfile/state.json"), "x", 0600), -ENOTDIR);
    CHECK(content_is(P("plainfile"), "x"));

    /* 3. A read-only directory (as root: without the capabilities that
     * bypass the mode bits). */
    {
        CHECK_INT(fs_mkdirs(P("ro"), 0700), 0);
        write_plain(P("ro/f.json"), original, 0600);
        chmod(P("ro"), 0500);
        CHECK_INT(dac_caps(false), 0);
        CHECK_INT(write_str(P("ro/f.json"), "new", 0600), -EACCES);
        CHECK_INT(dac_caps(true), 0);
        chmod(P("ro"), 0700);
        CHECK(content_is(P("ro/f.json"), original));
        CHECK_INT(count_tmp(P("ro")), 0);
    }

    /* 4. The target is a directory: rename fails, temp removed. */
    CHECK_INT(fs_mkdirs(P("adir"), 0700), 0);
    write_plain(P("adir/inner"), "inner", 0600);
    rc = write_str(P("adir"), "x", 0600);
    CHECK(rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST);
    CHECK(content_is(P("adir/inner"), "inner"));
    CHECK_INT(count_tmp(root), 0);
}

static void test_mkdirs(void)
{
    mode_t old = umask(022);
    CHECK_INT(fs_mkdirs(P("a/b/c/d"), 0700), 0);
    static const char *const dirs[] = {"a", "a/b", "a/b/c", "a/b/c/d"};
    for (size_t i = 0; i < 4; i++) {
        struct stat st;
        CHECKF(stat(P(dirs[i]), &st) == 0 && S_ISDIR(st.st_mode), "%s",
               dirs[i]);
        CHECKF(mode_of(P(dirs[i])) == 0700, "%s mode %o", dirs[i],
               mode_of(P(dirs[i])));
    }
    /* Idempotent; trailing slashes; an existing last dir is chmod'ed. */
    CHECK_INT(fs_mkdirs(P("a/b/c/d"), 0700), 0);
    CHECK_INT(fs_mkdirs(P("a/b/c/d//"), 0700), 0);
    chmod(P("a/b/c/d"), 0755);
    CHECK_INT(fs_mkdirs(P("a/b/c/d"), 0700), 0);
    CHECK_INT(mode_of(P("a/b/c/d")), 0700);
    /* ... but never given back a bit its owner removed (read-only). */
    chmod(P("a/b/c/d"), 0500);
    CHECK_INT(fs_mkdirs(P("a/b/c/d"), 0700), 0);
    CHECK_INT(mode_of(P("a/b/c/d")), 0500);
    chmod(P("a/b/c/d"), 0700);
    /* A regular file in the way. */
    write_plain(P("a/file"), "x", 0600);
    CHECK_INT(fs_mkdirs(P("a/file"), 0700), -ENOTDIR);
    CHECK_INT(fs_mkdirs(P("a/file/sub"), 0700), -ENOTDIR);
    CHECK_INT(fs_mkdirs("", 0700), -ENOENT);
    /* mkparent creates only the parent. */
    CHECK_INT(fs_mkparent(P("p/q/file.json"), 0700), 0);
    struct stat st;
    CHECK(stat(P("p/q"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK_INT(mode_of(P("p/q")), 0700);
    CHECK(stat(P("p/q/file.json"), &st) != 0);
    CHECK_INT(fs_mkparent("file-in-cwd.json", 0700), 0);
    umask(old);
}

/* Runs fs_lock_try on path in a forked child; returns its result. */
static int try_in_child(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = -1;
        int r = fs_lock_try(path, &fd);
        _exit(r == 0 ? 0 : r == -EWOULDBLOCK ? 1 : 2);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status)) {
        return -1000;
    }
    switch (WEXITSTATUS(status)) {
    case 0: return 0;
    case 1: return -EWOULDBLOCK;
    default: return -1;
    }
}

static void test_lock(void)
{
    const char *lp = P("dispatch.lock");
    int fd = -1;
    CHECK_INT(fs_lock_try(lp, &fd), 0);
    CHECK(fd >= 0);
    CHECK_INT(mode_of(lp), 0600);
    CHECK_INT(try_in_child(lp), -EWOULDBLOCK);
    /* A second descriptor in this process conflicts too (flock is per
     * open file description), and *fd is left alone on failure. */
    int fd2 = -12345;
    CHECK_INT(fs_lock_try(lp, &fd2), -EWOULDBLOCK);
    CHECK_INT(fd2, -12345);
    fs_unlock(fd);
    CHECK_INT(try_in_child(lp), 0);
    CHECK_INT(fs_lock_try(lp, &fd), 0);
    fs_unlock(fd);
    fs_unlock(-1); /* harmless */
    /* Refuses to follow a symlink. */
    CHECK(symlink("dispatch.lock", P("lock.link")) == 0);
    CHECK_INT(fs_lock_try(P("lock.link"), &fd), -ELOOP);
}

struct waiter {
    const char *path;
    atomic_bool stop;
    atomic_bool done;
    int rc;
    int fd;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    w->rc = fs_lock_wait(w->path, &w->fd, &w->stop);
    atomic_store(&w->done, true);
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
}

static void start_waiter(struct waiter *w, pthread_t *th, const char *path)
{
    w->path = path;
    w->rc = 1;
    w->fd = -1;
    atomic_init(&w->stop, false);
    atomic_init(&w->done, false);
    CHECK_INT(pthread_create(th, NULL, wait_thread, w), 0);
}

/* fs_lock_wait blocks until the holder lets go, and gives up only when
 * stop is set and a signal interrupts it (the loop side of core.fs.lock). */
static void test_lock_wait(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: flock fails with EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    const char *lp = P("wait.lock");
    int held = -1;
    CHECK_INT(fs_lock_try(lp, &held), 0);

    struct waiter w;
    pthread_t th;
    start_waiter(&w, &th, lp);
    usleep(100 * 1000);
    CHECK(!atomic_load(&w.done)); /* still blocked: the lock is held */
    fs_unlock(held);
    pthread_join(th, NULL);
    CHECK_INT(w.rc, 0);
    CHECK(w.fd >= 0);
    CHECK_INT(try_in_child(lp), -EWOULDBLOCK); /* the waiter holds it now */
    held = w.fd;

    start_waiter(&w, &th, lp);
    usleep(50 * 1000);
    atomic_store(&w.stop, true);
    while (!atomic_load(&w.done)) { /* a signal may land before flock */
        pthread_kill(th, SIGUSR1);
        usleep(10 * 1000);
    }
    pthread_join(th, NULL);
    CHECK_INT(w.rc, -EINTR);
    CHECK_INT(w.fd, -1);
    CHECK_INT(try_in_child(lp), -EWOULDBLOCK); /* still ours */
    fs_unlock(held);
    CHECK_INT(try_in_child(lp), 0);
    CHECK_INT(fs_lock_wait(P("lock.link"), &held, &w.stop), -ELOOP);
}

static void test_read_file(void)
{
    write_plain(P("r.txt"), "0123456789", 0600);
    char *out = NULL;
    size_t len = 0;
    CHECK_INT(fs_read_file(P("r.txt"), 100, false, &out, &len), 0);
    CHECK(out && len == 10 && strcmp(out, "0123456789") == 0);
    free(out);
    out = NULL;
    /* max equal to the size is fine; one less is EFBIG. */
    CHECK_INT(fs_read_file(P("r.txt"), 10, true, &out, &len), 0);
    CHECK(out && len == 10 && out[10] == '\0');
    free(out);
    char *sentinel = (char *)"untouched";
    out = sentinel;
    len = 777;
    CHECK_INT(fs_read_file(P("r.txt"), 9, false, &out, &len), -EFBIG);
    CHECK(out == sentinel && len == 777);
    CHECK_INT(fs_read_file(P("r.txt"), 0, false, &out, &len), -EFBIG);

    /* Empty file. */
    write_plain(P("empty.txt"), "", 0600);
    out = NULL;
    CHECK_INT(fs_read_file(P("empty.txt"), 0, false, &out, &len), 0);
    CHECK(out && len == 0 && out[0] == '\0');
    free(out);

    /* Symlinks: followed unless nofollow. */
    CHECK(symlink("r.txt", P("r.link")) == 0);
    out = NULL;
    CHECK_INT(fs_read_file(P("r.link"), 100, false, &out, &len), 0);
    CHECK(out && strcmp(out, "0123456789") == 0);
    free(out);
    out = sentinel;
    CHECK_INT(fs_read_file(P("r.link"), 100, true, &out, &len), -ELOOP);
    CHECK(out == sentinel);

    /* SIZE_MAX means "no practical bound", not an empty read. */
    out = NULL;
    CHECK_INT(fs_read_file(P("r.txt"), SIZE_MAX, false, &out, &len), 0);
    CHECK(out && len == 10 && strcmp(out, "0123456789") == 0);
    free(out);
    out = sentinel;

    CHECK_INT(fs_read_file(P("missing"), 100, false, &out, &len), -ENOENT);
    CHECK_INT(fs_read_file(root, 100, false, &out, &len), -EISDIR);

    /* A file larger than the initial guess (st_size 0 under /proc). */
    out = NULL;
    CHECK_INT(fs_read_file("/proc/self/status", 1 << 20, false, &out, &len),
              0);
    CHECK(out && len > 100 && strlen(out) == len &&
          strstr(out, "Name:") == out);
    free(out);
    CHECK_INT(fs_read_file("/proc/self/status", 50, false, &out, &len),
              -EFBIG);

    /* A big regular file read whole. */
    size_t big = 300000;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) {
        data[i] = (char)('a' + i % 26);
    }
    CHECK_INT(fs_write_atomic(P("big.bin"), data, big, 0600), 0);
    out = NULL;
    CHECK_INT(fs_read_file(P("big.bin"), big, false, &out, &len), 0);
    CHECK(out && len == big && memcmp(out, data, big) == 0);
    free(out);
    CHECK_INT(fs_read_file(P("big.bin"), big - 1, false, &out, &len),
              -EFBIG);
    free(data);
}

/* fs_read_trusted: the checks apply to the opened file and every
 * directory of its resolved path, whatever the link that led there. */
static void test_read_trusted(void)
{
    const uid_t me = getuid();
    const uid_t other = me == 0 ? 65534 : 0;
    char why[4200];
    char *out = NULL;
    size_t len = 0;
    mkdir(P("t"), 0700);
    mkdir(P("t/cfg"), 0700);
    write_plain(P("t/cfg/ok.lua"), "return 1\n", 0644);
    CHECK_INT(fs_read_trusted(P("t/cfg/ok.lua"), 1024, me, &out, &len, why,
                              sizeof why), 0);
    CHECK(out && len == 9 && strcmp(out, "return 1\n") == 0);
    free(out);
    out = NULL;
    /* Group- or world-writable file: refused with the chmod to run. */
    write_plain(P("t/cfg/open.lua"), "x", 0664);
    CHECK_INT(fs_read_trusted(P("t/cfg/open.lua"), 1024, me, &out, &len, why,
                              sizeof why), -EPERM);
    CHECKF(strstr(why, "writable by its group") && strstr(why, "chmod go-w"),
           "%s", why);
    CHECK(out == NULL);
    /* Someone else's file (as seen by a uid that is not the owner). */
    CHECK_INT(fs_read_trusted(P("t/cfg/ok.lua"), 1024, me + 1, &out, &len,
                              why, sizeof why), -EPERM);
    CHECKF(strstr(why, "owned by uid") != NULL, "%s", why);
    /* A link from the config tree to a file in a directory someone else
     * may write: the target's directory is checked, not the link's. */
    mkdir(P("t/open"), 0777);
    chmod(P("t/open"), 0777);
    write_plain(P("t/open/x.lua"), "x", 0644);
    CHECK(symlink(P("t/open/x.lua"), P("t/cfg/link.lua")) == 0);
    CHECK_INT(fs_read_trusted(P("t/cfg/link.lua"), 1024, me, &out, &len, why,
                              sizeof why), -EPERM);
    CHECKF(strstr(why, "its directory") && strstr(why, "/t/open") &&
               strstr(why, "writable by others"), "%s", why);
    /* ... or a directory another user owns. */
    if (me == 0) {
        mkdir(P("t/theirs"), 0755);
        write_plain(P("t/theirs/y.lua"), "y", 0644);
        CHECK(chown(P("t/theirs"), other, other) == 0);
        CHECK(symlink(P("t/theirs/y.lua"), P("t/cfg/link2.lua")) == 0);
        CHECK_INT(fs_read_trusted(P("t/cfg/link2.lua"), 1024, me, &out, &len,
                                  why, sizeof why), -EPERM);
        CHECKF(strstr(why, "is owned by uid 65534") && strstr(why, "/t/theirs"),
               "%s", why);
    }
    /* A link to a safe file elsewhere is followed. */
    mkdir(P("t/safe"), 0755);
    write_plain(P("t/safe/z.lua"), "zz", 0600);
    CHECK(symlink(P("t/safe/z.lua"), P("t/cfg/link3.lua")) == 0);
    CHECK_INT(fs_read_trusted(P("t/cfg/link3.lua"), 1024, me, &out, &len, why,
                              sizeof why), 0);
    CHECK(out && strcmp(out, "zz") == 0);
    free(out);
    out = NULL;
    /* A sticky world-writable directory (as /tmp) is not a hole: only an
     * entry's owner may rename it there. */
    mkdir(P("t/sticky"), 0777);
    chmod(P("t/sticky"), 01777);
    write_plain(P("t/sticky/s.lua"), "s", 0644);
    CHECK_INT(fs_read_trusted(P("t/sticky/s.lua"), 1024, me, &out, &len, why,
                              sizeof why), 0);
    free(out);
    out = NULL;
    /* A FIFO neither blocks nor is read. */
    CHECK(mkfifo(P("t/cfg/fifo.lua"), 0600) == 0);
    CHECK_INT(fs_read_trusted(P("t/cfg/fifo.lua"), 1024, me, &out, &len, why,
                              sizeof why), -EPERM);
    CHECKF(strstr(why, "not a regular file") != NULL, "%s", why);
    /* Missing file: plain -ENOENT, no reason. */
    CHECK_INT(fs_read_trusted(P("t/cfg/none.lua"), 1024, me, &out, &len, why,
                              sizeof why), -ENOENT);
}

/* fs_append: records end up one after the other, the file is created
 * with the mode given, a symlink is never written through, and a file
 * someone else owns is refused (checked on the descriptor, so root too). */
static void test_append(void)
{
    const char *f = P("t.jsonl");
    CHECK_INT(fs_append(f, "{\"a\":1}\n", 8, 0600), 0);
    CHECK_INT(fs_append(f, "{\"b\":2}\n", 8, 0644), 0);
    CHECK(content_is(f, "{\"a\":1}\n{\"b\":2}\n"));
    CHECK_INT(mode_of(f), 0600);
    write_plain(P("victim"), "untouched", 0600);
    CHECK(symlink("victim", P("link.jsonl")) == 0);
    CHECK_INT(fs_append(P("link.jsonl"), "x\n", 2, 0600), -ELOOP);
    CHECK(content_is(P("victim"), "untouched"));
    write_plain(P("theirs.jsonl"), "", 0666);
    CHECK(chown(P("theirs.jsonl"), 65534, 65534) == 0 || geteuid() != 0);
    if (geteuid() == 0) {
        CHECK_INT(fs_append(P("theirs.jsonl"), "x\n", 2, 0600), -EPERM);
        CHECK(content_is(P("theirs.jsonl"), ""));
    }
    CHECK_INT(fs_append(P("nodir/t.jsonl"), "x\n", 2, 0600), -ENOENT);
}

/* A descriptor kept open (fs_append_open) appends record after record,
 * refuses links and others' files like fs_append, and reports a file
 * removed since it was opened (-ENOENT) instead of writing to no name. */
static void test_append_kept(void)
{
    const char *f = P("day.jsonl");
    int fd = fs_append_open(f, 0600);
    CHECK(fd >= 0);
    CHECK_INT(fs_append_fd(fd, "1\n", 2), 0);
    CHECK_INT(fs_append(f, "2\n", 2, 0600), 0); /* another writer */
    CHECK_INT(fs_append_fd(fd, "3\n", 2), 0);
    CHECK(content_is(f, "1\n2\n3\n"));
    CHECK_INT(mode_of(f), 0600);
    /* A file full at its limit takes nothing more. */
    struct iovec iov[2] = {{.iov_base = "5", .iov_len = 1},
                           {.iov_base = "\n", .iov_len = 1}};
    CHECK_INT(fs_append_iov(fd, iov, 2, 7), 0);
    CHECK_INT(fs_append_iov(fd, iov, 2, 8), -EFBIG);
    CHECK(content_is(f, "1\n2\n3\n5\n"));
    CHECK(unlink(f) == 0);
    CHECK_INT(fs_append_fd(fd, "4\n", 2), -ENOENT);
    close(fd);
    CHECK(access(f, F_OK) != 0);
    CHECK(symlink("victim", P("klink.jsonl")) == 0);
    CHECK_INT(fs_append_open(P("klink.jsonl"), 0600), -ELOOP);
    if (geteuid() == 0) {
        CHECK_INT(fs_append_open(P("theirs.jsonl"), 0600), -EPERM);
    }
}

/* A locked file holds small state: read from its start, rewritten in
 * place (a shorter text leaves nothing of the longer one behind). */
static void test_lock_state(void)
{
    int fd = -1;
    CHECK_INT(fs_lock_try(P("state.budget"), &fd), 0);
    char *data = NULL;
    size_t len = 99;
    CHECK_INT(fs_lock_read(fd, 1024, &data, &len), 0);
    CHECK(len == 0);
    free(data);
    CHECK_INT(fs_lock_rewrite(fd, "{\"spent\":0.25}\n", 15), 0);
    CHECK_INT(fs_lock_read(fd, 1024, &data, &len), 0);
    CHECK(len == 15 && memcmp(data, "{\"spent\":0.25}\n", 15) == 0);
    free(data);
    CHECK_INT(fs_lock_rewrite(fd, "{}\n", 3), 0);
    CHECK(content_is(P("state.budget"), "{}\n"));
    CHECK_INT(mode_of(P("state.budget")), 0600);
    fs_unlock(fd);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/ad-test-fsutil.XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd) || chdir(root) != 0) {
        return 2;
    }
    test_write_atomic_basic();
    test_write_atomic_symlink();
    test_write_atomic_failure();
    test_mkdirs();
    test_lock();
    test_lock_wait();
    test_read_file();
    test_read_trusted();
    test_append();
    test_append_kept();
    test_lock_state();
    if (chdir(cwd) != 0) {
        perror("chdir");
    }
    rm_rf(root);
    return check_exit("test_fsutil");
}
