/* Unit tests of the job store's files (src/jobs.c): id validation before
 * any path is built, atomic 0600 records that are never read or written
 * through a symlink, the fixed-width index (add/set/scan/write, malformed
 * input), process identity and verified kills, two writers under the jobs
 * lock, and a failing write that leaves the previous record intact. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/jobs.h"
#include "../unit/check.h"
#include "../unit/nodac.h"

static char root[64];
static char dir[128];

static const char *P(const char *rel)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", dir, rel);
    return b;
}

static int rm_cb(const char *path, const struct stat *st, int flag,
                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* A fresh, empty jobs directory for each case. */
static void fresh(void)
{
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(dir, 0700);
}

/* Number of entries in dir (excluding . and ..), and how many end in .tmp. */
static int count_entries(int *tmps)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (tmps) {
        *tmps = 0;
    }
    if (!d) {
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        n++;
        size_t l = strlen(e->d_name);
        if (tmps && l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
            (*tmps)++;
        }
    }
    closedir(d);
    return n;
}

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len;
    if (fs_read_file(path, 1 << 20, false, &data, &len) != 0) {
        return NULL;
    }
    return data;
}

static void make_id(char out[33], unsigned n)
{
    snprintf(out, 33, "%032x", n);
}

#define ID_A "0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210"
#define ID_C "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* ------------------------------------------------------------------ */

static void test_validation(void)
{
    fresh();
    /* A file one level up that a traversal id would reach. */
    const char *bad[] = {
        "..",
        "../aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",     /* 32 chars with ../ */
        "aaaaaaaaaaaaaaa/aaaaaaaaaaaaaaaa",      /* 32 chars with a slash */
        "0123456789ABCDEF0123456789abcdef",      /* uppercase */
        "0123456789abcdef0123456789abcde",       /* 31 */
        "0123456789abcdef0123456789abcdef0",     /* 33 */
        "0123456789abcdef0123456789abcde\n",     /* 31 + newline = 32 bytes */
        "0123456789abcdef0123456789abcdef\n",    /* trailing newline */
        "g0123456789abcdef0123456789abcde",      /* non-hex */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *id = bad[i];
        size_t n = strlen(id);
        char path[512];
        char *data = NULL;
        size_t len = 0;
        CHECKF(jobs_path(dir, id, n, path, sizeof path) == -EINVAL, "path %zu", i);
        CHECKF(jobs_write(dir, id, n, "{}", 2) == -EINVAL, "write %zu", i);
        CHECKF(jobs_read(dir, id, n, &data, &len) == -EINVAL, "read %zu", i);
        CHECK(data == NULL);
        CHECKF(jobs_remove(dir, id, n) == -EINVAL, "remove %zu", i);
        CHECKF(jobs_index_add(dir, id, 1.0, "pending") == -EINVAL, "index_add %zu", i);
    }
    /* Nothing was created: no record, no temp file, no index. */
    CHECK_INT(count_entries(NULL), 0);
    struct stat st;
    CHECK(stat(P("../aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.json"), &st) != 0);

    /* A valid id: the path is <dir>/<id>.json; a too-small buffer fails. */
    char path[512];
    CHECK_INT(jobs_path(dir, ID_A, 32, path, sizeof path), 0);
    CHECK_STR(path, P(ID_A ".json"));
    char small[16];
    CHECK_INT(jobs_path(dir, ID_A, 32, small, sizeof small), -ENAMETOOLONG);
    /* The id length is explicit: a valid prefix of a longer string is
     * judged by the given length. */
    CHECK_INT(jobs_path(dir, ID_A "zz", 34, path, sizeof path), -EINVAL);
}

static void test_roundtrip(void)
{
    fresh();
    const char *v1 = "{\n  \"id\": \"" ID_A "\",\n  \"status\": \"pending\"\n}";
    const char *v2 = "{\"id\": \"" ID_A "\", \"status\": \"running\", \"x\": \"\xc3\xa9\"}";
    CHECK_INT(jobs_write(dir, ID_A, 32, v1, strlen(v1)), 0);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT(jobs_read(dir, ID_A, 32, &data, &len), 0);
    CHECK(data && len == strlen(v1) && memcmp(data, v1, len) == 0);
    free(data);
    struct stat st;
    CHECK_INT(stat(P(ID_A ".json"), &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    /* Overwrite: new content, still 0600, no temp left. */
    chmod(P(ID_A ".json"), 0644);
    CHECK_INT(jobs_write(dir, ID_A, 32, v2, strlen(v2)), 0);
    data = NULL;
    CHECK_INT(jobs_read(dir, ID_A, 32, &data, &len), 0);
    CHECK(data && len == strlen(v2) && memcmp(data, v2, len) == 0);
    free(data);
    CHECK_INT(stat(P(ID_A ".json"), &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    int tmps;
    CHECK_INT(count_entries(&tmps), 1);
    CHECK_INT(tmps, 0);
    /* Missing record -> -ENOENT; remove works once. */
    CHECK_INT(jobs_read(dir, ID_B, 32, &data, &len), -ENOENT);
    CHECK_INT(jobs_remove(dir, ID_A, 32), 0);
    CHECK_INT(jobs_remove(dir, ID_A, 32), -ENOENT);
    CHECK_INT(count_entries(NULL), 0);
}

static void test_symlink(void)
{
    fresh();
    char target[256];
    snprintf(target, sizeof target, "%s/outside.txt", root);
    FILE *f = fopen(target, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("precious", f);
        fclose(f);
    }
    CHECK_INT(symlink(target, P(ID_B ".json")), 0);
    char *data = NULL;
    size_t len;
    CHECK_INT(jobs_read(dir, ID_B, 32, &data, &len), -ELOOP);
    CHECK(data == NULL);
    /* A write replaces the link with a regular file; the target is intact. */
    CHECK_INT(jobs_write(dir, ID_B, 32, "{\"new\":1}", 9), 0);
    struct stat st;
    CHECK_INT(lstat(P(ID_B ".json"), &st), 0);
    CHECK(S_ISREG(st.st_mode));
    CHECK_INT(st.st_mode & 07777, 0600);
    char *t = slurp(target);
    CHECK_STR(t, "precious");
    free(t);
    CHECK_INT(jobs_read(dir, ID_B, 32, &data, &len), 0);
    CHECK(data && len == 9 && memcmp(data, "{\"new\":1}", 9) == 0);
    free(data);
    unlink(target);
}

struct collected {
    int n, limit;
    struct jobs_entry e[64];
};

static int collect(const struct jobs_entry *e, void *ud)
{
    struct collected *c = ud;
    if (c->n < 64) {
        c->e[c->n] = *e;
    }
    c->n++;
    return c->limit > 0 && c->n >= c->limit;
}

static void test_index(void)
{
    fresh();
    struct collected c = {0};
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), -ENOENT);
    CHECK_INT(jobs_index_set(dir, ID_A, "done"), -ENOENT);

    const char *st[] = {"pending", "running", "done", "pending", "cancelled"};
    char ids[5][33];
    for (int i = 0; i < 5; i++) {
        make_id(ids[i], 0x100u + (unsigned)i);
        CHECK_INT(jobs_index_add(dir, ids[i], 1700000000.25 + i, st[i]), 0);
    }
    struct stat sb;
    CHECK_INT(stat(P(".index"), &sb), 0);
    CHECK_INT(sb.st_size, 5 * JOBS_INDEX_RECORD);
    CHECK_INT(sb.st_mode & 07777, 0600);

    /* Newest first, every entry, exact fields. */
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 5);
    for (int i = 0; i < 5 && i < c.n; i++) {
        CHECK_STR(c.e[i].id, ids[4 - i]);
        CHECK_STR(c.e[i].status, st[4 - i]);
        CHECK(c.e[i].created_at > 1700000000.24 + (4 - i) &&
              c.e[i].created_at < 1700000000.26 + (4 - i));
    }
    /* Status filter. */
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, "pending", collect, &c), 0);
    CHECK_INT(c.n, 2);
    CHECK_STR(c.e[0].id, ids[3]);
    CHECK_STR(c.e[1].id, ids[0]);
    /* "done" must not match a "done" prefix of anything else, and an
     * unknown status matches nothing. */
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, "failed", collect, &c), 0);
    CHECK_INT(c.n, 0);
    /* Limit: the callback stops the scan. */
    memset(&c, 0, sizeof c);
    c.limit = 2;
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 2);
    CHECK_STR(c.e[0].id, ids[4]);
    CHECK_STR(c.e[1].id, ids[3]);

    /* Set in place: size unchanged, filter follows the new status. */
    CHECK_INT(jobs_index_set(dir, ids[0], "cancelled"), 0);
    CHECK_INT(jobs_index_set(dir, ids[1], "done"), 0);
    CHECK_INT(jobs_index_set(dir, ID_C, "done"), -ENOENT);
    CHECK_INT(stat(P(".index"), &sb), 0);
    CHECK_INT(sb.st_size, 5 * JOBS_INDEX_RECORD);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, "pending", collect, &c), 0);
    CHECK_INT(c.n, 1);
    CHECK_STR(c.e[0].id, ids[3]);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, "done", collect, &c), 0);
    CHECK_INT(c.n, 2);
    CHECK_STR(c.e[0].id, ids[2]);
    CHECK_STR(c.e[1].id, ids[1]);
    /* An invalid id is refused by set as well (never used as a key, never
     * read past its end). */
    CHECK_INT(jobs_index_set(dir, "../x", "done"), -EINVAL);
    CHECK_INT(jobs_index_set(dir, "0123456789ABCDEF0123456789abcdef", "done"), -EINVAL);

    /* index_write replaces the index whole. */
    struct jobs_entry w[2];
    memset(w, 0, sizeof w);
    memcpy(w[0].id, ID_A, 33);
    w[0].created_at = 10.5;
    strcpy(w[0].status, "failed");
    memcpy(w[1].id, ID_B, 33);
    w[1].created_at = 20.0;
    strcpy(w[1].status, "running");
    CHECK_INT(jobs_index_write(dir, w, 2), 0);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 2);
    CHECK_STR(c.e[0].id, ID_B);
    CHECK_STR(c.e[0].status, "running");
    CHECK(c.e[0].created_at == 20.0);
    CHECK_STR(c.e[1].id, ID_A);
    CHECK_STR(c.e[1].status, "failed");
    CHECK(c.e[1].created_at == 10.5);
    int tmps;
    count_entries(&tmps);
    CHECK_INT(tmps, 0);
    CHECK_INT(stat(P(".index"), &sb), 0);
    CHECK_INT(sb.st_mode & 07777, 0600);
    /* An empty index is valid and lists nothing. */
    CHECK_INT(jobs_index_write(dir, w, 0), 0);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 0);
    /* A written index is not fresh until stamped, even when its write and
     * its rename fall in one tick of the file system's clock (which gave
     * it the directory's mtime): its mtime is the epoch until then. */
    CHECK_INT(stat(P(".index"), &sb), 0);
    CHECK(sb.st_mtim.tv_sec == 0 && sb.st_mtim.tv_nsec == 0);
    CHECK_INT(jobs_index_fresh(dir), 0);

    /* A torn last line (a full disk or a crash mid-append): the whole
     * lines before it still list and update; the next append cuts it off
     * instead of writing after it; the index is not fresh until then. */
    CHECK_INT(jobs_index_write(dir, w, 2), 0);
    CHECK_INT(jobs_index_stamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 1);
    /* Withdrawn, it is not fresh (even with no change since) until the
     * next stamp. */
    CHECK_INT(jobs_index_unstamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 0);
    CHECK_INT(jobs_index_stamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 1);
    int fd = open(P(".index"), O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, "garbage", 7) == 7);
    close(fd);
    CHECK_INT(jobs_index_stamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 0);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 2);
    CHECK_INT(jobs_index_set(dir, ID_A, "done"), 0);
    CHECK_INT(jobs_index_add(dir, ID_C, 30.0, "pending"), 0);
    CHECK_INT(stat(P(".index"), &sb), 0);
    CHECK_INT(sb.st_size, 3 * JOBS_INDEX_RECORD);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 3);
    CHECK_STR(c.e[0].id, ID_C);
    CHECK_STR(c.e[2].status, "done");
    /* Malformed: right size, wrong content. */
    char junk[JOBS_INDEX_RECORD * 2];
    memset(junk, 'x', sizeof junk);
    fd = open(P(".index"), O_WRONLY | O_TRUNC);
    CHECK(fd >= 0);
    CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
    close(fd);
    memset(&c, 0, sizeof c);
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), -EBADMSG);
    CHECK_INT(c.n, 0);
    /* A symlinked index is refused, not followed. */
    unlink(P(".index"));
    char target[256];
    snprintf(target, sizeof target, "%s/idx-target", root);
    int tfd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    close(tfd);
    CHECK_INT(symlink(target, P(".index")), 0);
    CHECK_INT(jobs_index_add(dir, ID_A, 1.0, "pending"), -ELOOP);
    CHECK_INT(stat(target, &sb), 0);
    CHECK_INT(sb.st_size, 0);
    unlink(target);
}

/* The index covers the directory until something else changes its
 * entries: a record written behind the store's back, a deleted one. */
static void test_fresh(void)
{
    fresh();
    CHECK_INT(jobs_index_fresh(dir), 0); /* no index yet */
    CHECK_INT(jobs_index_add(dir, ID_A, 1.0, "pending"), 0);
    /* Each change below comes a clock tick after the previous one: a
     * kernel with coarse timestamps may give changes within one tick the
     * same mtime (newer kernels refine the time once it was looked at). */
    usleep(20000);
    CHECK_INT(jobs_write(dir, ID_A, 32, "{}", 2), 0);
    CHECK_INT(jobs_index_fresh(dir), 0); /* not stamped */
    CHECK_INT(jobs_index_stamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 1);
    /* Rewriting a record in place of itself is a change of the directory
     * too (rename): the writer stamps again afterwards. */
    usleep(20000);
    CHECK_INT(jobs_write(dir, ID_A, 32, "{ }", 3), 0);
    CHECK_INT(jobs_index_fresh(dir), 0);
    CHECK_INT(jobs_index_stamp(dir), 0);
    CHECK_INT(jobs_index_fresh(dir), 1);
    /* Another writer's record, then a deleted record. */
    usleep(20000);
    int fd = open(P(ID_B ".json"), O_WRONLY | O_CREAT, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK_INT(jobs_index_fresh(dir), 0);
    CHECK_INT(jobs_index_stamp(dir), 0);
    usleep(20000);
    CHECK_INT(jobs_remove(dir, ID_B, 32), 0);
    CHECK_INT(jobs_index_fresh(dir), 0);
    /* Not a directory at all. */
    char file[300];
    snprintf(file, sizeof file, "%s/plain", root);
    fd = open(file, O_WRONLY | O_CREAT, 0600);
    close(fd);
    CHECK_INT(jobs_index_fresh(file), -ENOTDIR);
    snprintf(file, sizeof file, "%s/plain/jobs", root);
    CHECK_INT(jobs_index_fresh(file), -ENOTDIR);
}

/* The last-resort in-place rewrite: within the file's blocks only. */
static void test_inplace(void)
{
    fresh();
    CHECK_INT(jobs_write_inplace(dir, ID_A, 32, "{}", 2), -ENOENT);
    CHECK_INT(jobs_write(dir, ID_A, 32, "{\"status\":\"running\"}", 20), 0);
    CHECK_INT(jobs_write_inplace(dir, ID_A, 32, "{\"s\":1}", 7), 0);
    char *text = slurp(P(ID_A ".json"));
    CHECK_STR(text ? text : "", "{\"s\":1}");
    free(text);
    static char big[1 << 17];
    memset(big, ' ', sizeof big);
    CHECK_INT(jobs_write_inplace(dir, ID_A, 32, big, sizeof big), -ENOSPC);
    CHECK_INT(jobs_write_inplace(dir, "../x", 4, "{}", 2), -EINVAL);
}

static unsigned long long proc_start(pid_t pid)
{
    int pg;
    unsigned long long s = 0;
    if (jobs_proc_identity(pid, &pg, &s) != 0) {
        return 0;
    }
    return s;
}

static bool pid_alive(pid_t pid)
{
    int pg;
    unsigned long long s;
    return jobs_proc_identity(pid, &pg, &s) == 0;
}

static void test_identity_and_kill(void)
{
    int pg = 0;
    unsigned long long st = 0;
    CHECK_INT(jobs_proc_identity(getpid(), &pg, &st), 0);
    CHECK_INT(pg, getpgrp());
    CHECK(st > 0);
    CHECK_INT(jobs_proc_identity(1, &pg, &st), -ESRCH);
    CHECK_INT(jobs_proc_identity(0, &pg, &st), -ESRCH);
    CHECK_INT(jobs_proc_identity(-5, &pg, &st), -ESRCH);
    CHECK_INT(jobs_proc_identity(0x3fffffff, &pg, &st), -ESRCH);

    /* A child in its own group (as agent-dispatch's claude children are),
     * with a grandchild in the same group. */
    int gp[2];
    CHECK_INT(pipe(gp), 0);
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        pid_t g = fork();
        if (g == 0) {
            for (;;) {
                pause();
            }
        }
        (void)!write(gp[1], &g, sizeof g);
        for (;;) {
            pause();
        }
    }
    close(gp[1]);
    pid_t grand = 0;
    CHECK(read(gp[0], &grand, sizeof grand) == (ssize_t)sizeof grand);
    close(gp[0]);
    int cpg = 0;
    unsigned long long cst = 0;
    CHECK_INT(jobs_proc_identity(child, &cpg, &cst), 0);
    CHECK_INT(cpg, child);
    CHECK(cst >= st);
    CHECK(proc_start(grand) > 0);

    /* Mismatches never signal: wrong start, wrong pgid, pgid <= 1, the
     * wrong pid for the group. */
    CHECK_INT(jobs_kill_verified(child, child, cst + 1, SIGKILL), -ESRCH);
    CHECK_INT(jobs_kill_verified(child, child, cst - 1, SIGKILL), -ESRCH);
    CHECK_INT(jobs_kill_verified(child, getpgrp(), cst, SIGKILL), -ESRCH);
    CHECK_INT(jobs_kill_verified(child, 1, cst, SIGKILL), -ESRCH);
    CHECK_INT(jobs_kill_verified(child, 0, cst, SIGKILL), -ESRCH);
    CHECK_INT(jobs_kill_verified(getpid(), child, cst, SIGKILL), -ESRCH);
    usleep(100000);
    CHECK(pid_alive(child));
    CHECK(pid_alive(grand));

    /* The right triple kills the whole group (child and grandchild). */
    CHECK_INT(jobs_kill_verified(child, child, cst, SIGKILL), 0);
    int status = 0;
    CHECK_INT(waitpid(child, &status, 0), child);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    /* The grandchild is reparented (to init or a subreaper): poll. */
    bool gone = false;
    for (int i = 0; i < 200 && !gone; i++) {
        gone = !pid_alive(grand);
        if (!gone) {
            usleep(10000);
        }
    }
    CHECK(gone);
    if (!gone) {
        kill(grand, SIGKILL);
    }
    /* Now the pid is gone: a verified kill finds nothing. */
    CHECK_INT(jobs_kill_verified(child, child, cst, SIGKILL), -ESRCH);

    /* A zombie (exited, not reaped) counts as gone. */
    pid_t z = fork();
    if (z == 0) {
        _exit(0);
    }
    /* (its exit is waited for, not assumed after a fixed sleep: a loaded
     * machine may not have run it yet) */
    int zrc = 0;
    for (int i = 0; i < 1000 && (zrc = jobs_proc_identity(z, &pg, &st)) != -ESRCH; i++) {
        usleep(10000);
    }
    CHECK_INT(zrc, -ESRCH);
    waitpid(z, &status, 0);
}

struct gather {
    struct jobs_entry *all;
    size_t k;
};

static int gather_cb(const struct jobs_entry *e, void *u)
{
    struct gather *g = u;
    if (g->k < 4096) {
        g->all[g->k++] = *e;
    }
    return 0;
}

/* One writer process: n times, under the lock, add an index record, flip
 * the status of its previous one, and rewrite the whole index (the
 * read-modify-write that loses records when two writers interleave
 * without the lock). */
static int writer(unsigned base, int n)
{
    char lock[256];
    snprintf(lock, sizeof lock, "%s/.jobs.lock", dir);
    srand(base);
    for (int i = 0; i < n; i++) {
        int fd = -1;
        int rc;
        while ((rc = fs_lock_try(lock, &fd)) == -EWOULDBLOCK) {
            usleep((useconds_t)(rand() % 200));
        }
        if (rc != 0) {
            return 2;
        }
        char id[33];
        make_id(id, base + (unsigned)i);
        if (jobs_index_add(dir, id, (double)(base + (unsigned)i), "pending") != 0) {
            return 3;
        }
        char rec[64];
        int rl = snprintf(rec, sizeof rec, "{\"i\":%d}", i);
        if (jobs_write(dir, id, 32, rec, (size_t)rl) != 0) {
            return 4;
        }
        if (i > 0) {
            char prev[33];
            make_id(prev, base + (unsigned)i - 1);
            if (jobs_index_set(dir, prev, "done") != 0) {
                return 5;
            }
        }
        if (i % 5 == 4) {
            /* Read everything, then write it back in creation order. */
            struct gather g = {malloc(sizeof(struct jobs_entry) * 4096), 0};
            if (!g.all || jobs_index_scan(dir, NULL, gather_cb, &g) != 0) {
                free(g.all);
                return 6;
            }
            for (size_t a = 0, b = g.k ? g.k - 1 : 0; a < b; a++, b--) {
                struct jobs_entry t = g.all[a];
                g.all[a] = g.all[b];
                g.all[b] = t;
            }
            usleep(200); /* widen the window a lockless writer would race in */
            int wrc = jobs_index_write(dir, g.all, g.k);
            free(g.all);
            if (wrc != 0) {
                return 7;
            }
        }
        fs_unlock(fd);
        usleep((useconds_t)(rand() % 300));
    }
    return 0;
}

static void test_two_writers(void)
{
    fresh();
    enum { N = 60 };
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        if (kids[k] == 0) {
            _exit(writer(k == 0 ? 0x1000u : 0x2000u, N));
        }
    }
    for (int k = 0; k < 2; k++) {
        int status = 0;
        CHECK_INT(waitpid(kids[k], &status, 0), kids[k]);
        CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer %d status %d", k,
               status);
    }
    struct gather g = {malloc(sizeof(struct jobs_entry) * 4096), 0};
    CHECK_INT(jobs_index_scan(dir, NULL, gather_cb, &g), 0);
    struct jobs_entry *all = g.all;
    size_t k = g.k;
    CHECK_INT(k, 2 * N);
    /* Every id of both writers present exactly once; each writer's last
     * record is still pending, every other one done. */
    int seen[2][N];
    memset(seen, 0, sizeof seen);
    int pending = 0;
    for (size_t i = 0; i < k; i++) {
        unsigned v = (unsigned)strtoul(all[i].id, NULL, 16);
        int w = v >= 0x2000u ? 1 : 0;
        unsigned j = v - (w ? 0x2000u : 0x1000u);
        if (j < N) {
            seen[w][j]++;
            bool last = j == N - 1;
            CHECKF(strcmp(all[i].status, last ? "pending" : "done") == 0,
                   "%s status %s", all[i].id, all[i].status);
            pending += last;
        }
    }
    int missing = 0;
    for (int w = 0; w < 2; w++) {
        for (int j = 0; j < N; j++) {
            missing += seen[w][j] != 1;
        }
    }
    CHECK_INT(missing, 0);
    CHECK_INT(pending, 2);
    int tmps;
    CHECK_INT(count_entries(&tmps), 2 * N + 2); /* records + .index + lock */
    CHECK_INT(tmps, 0);
    free(all);
}

/* A write that fails midway (file size limit -> EFBIG; a read-only
 * directory -> EACCES) leaves the previous record and
 * index intact and no temp file. */
static void test_failed_write(void)
{
    fresh();
    const char *old = "{\"status\":\"pending\"}";
    CHECK_INT(jobs_write(dir, ID_A, 32, old, strlen(old)), 0);
    CHECK_INT(jobs_index_add(dir, ID_A, 5.0, "pending"), 0);

    pid_t p = fork();
    if (p == 0) {
        /* In a child so that the limit cannot leak into other cases. */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {64, 64};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
            _exit(10);
        }
        char big[4096];
        memset(big, 'x', sizeof big);
        int rc = jobs_write(dir, ID_A, 32, big, sizeof big);
        if (rc != -EFBIG) {
            _exit(11);
        }
        struct jobs_entry e[200];
        memset(e, 0, sizeof e);
        for (int i = 0; i < 200; i++) {
            make_id(e[i].id, (unsigned)i + 1);
            e[i].created_at = i;
            strcpy(e[i].status, "done");
        }
        rc = jobs_index_write(dir, e, 200);
        _exit(rc == -EFBIG ? 0 : 12);
    }
    int status = 0;
    CHECK_INT(waitpid(p, &status, 0), p);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT(jobs_read(dir, ID_A, 32, &data, &len), 0);
    CHECK(data && len == strlen(old) && memcmp(data, old, len) == 0);
    free(data);
    struct collected c = {0};
    CHECK_INT(jobs_index_scan(dir, NULL, collect, &c), 0);
    CHECK_INT(c.n, 1);
    CHECK_STR(c.e[0].id, ID_A);
    int tmps;
    CHECK_INT(count_entries(&tmps), 2);
    CHECK_INT(tmps, 0);

    /* As root: without the capabilities that bypass the mode bits. */
    {
        chmod(dir, 0500);
        CHECK_INT(dac_caps(false), 0);
        CHECK_INT(jobs_write(dir, ID_A, 32, "{}", 2), -EACCES);
        CHECK_INT(dac_caps(true), 0);
        chmod(dir, 0700);
        CHECK_INT(jobs_read(dir, ID_A, 32, &data, &len), 0);
        CHECK(data && len == strlen(old) && memcmp(data, old, len) == 0);
        free(data);
        CHECK_INT(count_entries(&tmps), 2);
        CHECK_INT(tmps, 0);
    }
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/ad-jobs-unit-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof dir, "%s/jobs", root);
    test_validation();
    test_roundtrip();
    test_symlink();
    test_index();
    test_fresh();
    test_inplace();
    test_identity_and_kill();
    test_two_writers();
    test_failed_write();
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return check_exit("test_jobs");
}
