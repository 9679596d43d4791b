/* Unit tests of the project probes (src/introspect.c). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ad/introspect.h"
#include "check.h"
#include "nodac.h"

static char root[64];

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

/* Makes a fresh project directory holding the given entries; a name
 * ending in '/' is a directory, otherwise an empty file. */
static const char *project(const char *name, const char *const *entries)
{
    static char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", root, name);
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(2);
    }
    for (size_t i = 0; entries[i]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, entries[i]);
        size_t n = strlen(p);
        if (p[n - 1] == '/') {
            p[n - 1] = '\0';
            if (mkdir(p, 0700) != 0) {
                perror(p);
                exit(2);
            }
        } else {
            int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0) {
                perror(p);
                exit(2);
            }
            close(fd);
        }
    }
    return dir;
}

struct pcase {
    const char *name;
    const char *entries[10];
    const char *stacks[8];
    const char *dbs[4];
};

static const struct pcase cases[] = {
    {"empty", {NULL}, {NULL}, {NULL}},
    {"docker-go", {"go.mod", "Dockerfile", NULL}, {"Docker", "Go", NULL},
     {NULL}},
    {"python-twice", {"requirements.txt", "pyproject.toml", NULL},
     {"Python", NULL}, {NULL}},
    {"python-pyproject", {"pyproject.toml", NULL}, {"Python", NULL}, {NULL}},
    {"compose-both", {"docker-compose.yml", "docker-compose.yaml", NULL},
     {"Docker Compose", NULL}, {NULL}},
    {"all-stacks",
     {"package.json", "pyproject.toml", "go.mod", "Cargo.toml",
      "docker-compose.yml", "Dockerfile", NULL},
     {"Docker", "Docker Compose", "Rust", "Go", "Python", "Node.js", NULL},
     {NULL}},
    /* A directory named like a marker file is not the file. */
    {"dir-not-file", {"Dockerfile/", "go.mod/", "package.json", NULL},
     {"Node.js", NULL}, {NULL}},
    {"alembic", {"alembic.ini", "migrations/", NULL}, {NULL},
     {"Alembic", "migrations", NULL}},
    {"alembic-dir", {"alembic/", NULL}, {NULL}, {"Alembic", NULL}},
    {"alembic-both", {"alembic/", "alembic.ini", NULL}, {NULL},
     {"Alembic", NULL}},
    {"prisma-dir", {"prisma/", NULL}, {NULL}, {"Prisma", NULL}},
    {"prisma-schema", {"schema.prisma", NULL}, {NULL}, {"Prisma", NULL}},
    {"all-dbs", {"migrations/", "alembic.ini", "prisma/", NULL}, {NULL},
     {"Prisma", "Alembic", "migrations", NULL}},
    /* Marker kinds must match: a migrations file, a prisma file. */
    {"wrong-kinds", {"migrations", "prisma", "alembic.ini/", NULL}, {NULL},
     {NULL}},
    {"python-prisma",
     {"requirements.txt", "schema.prisma", "Dockerfile", NULL},
     {"Docker", "Python", NULL}, {"Prisma", NULL}},
};

static void check_labels(const char *what, const char *name,
                         const char **got, size_t n, const char *const *want)
{
    size_t nw = 0;
    while (want[nw]) {
        nw++;
    }
    bool same = n == nw;
    for (size_t i = 0; same && i < n; i++) {
        same = got[i] && strcmp(got[i], want[i]) == 0;
    }
    CHECKF(same, "%s of '%s': got %zu labels, want %zu", what, name, n, nw);
    if (!same) {
        fprintf(stderr, "    got:");
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, " [%s]", got[i]);
        }
        fprintf(stderr, "\n    want:");
        for (size_t i = 0; i < nw; i++) {
            fprintf(stderr, " [%s]", want[i]);
        }
        fputc('\n', stderr);
    }
}

static void test_projects(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct pcase *c = &cases[i];
        const char *dir = project(c->name, c->entries);
        const char *out[16];
        size_t n = introspect_stacks(dir, out, 16);
        check_labels("stacks", c->name, out, n, c->stacks);
        n = introspect_dbs(dir, out, 16);
        check_labels("dbs", c->name, out, n, c->dbs);
    }
}

/* A listing made elsewhere (entries: "name" a file, "name/" a dir). */
static int has_listed(void *ud, const char *name, int want_dir)
{
    const char *const *entries = ud;
    size_t n = strlen(name);
    for (size_t i = 0; entries[i]; i++) {
        const char *e = entries[i];
        bool dir = e[strlen(e) - 1] == '/';
        if (strncmp(e, name, n) == 0 && strlen(e) == n + (dir ? 1 : 0) &&
            dir == (want_dir != 0)) {
            return 1;
        }
    }
    return 0;
}

/* The same labels from a listing as from the directory itself (the
 * projects of remote agents are known by a listing). */
static void test_projects_by_listing(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct pcase *c = &cases[i];
        const char *out[16];
        size_t n = introspect_stacks_by(has_listed, (void *)c->entries, out, 16);
        check_labels("stacks by listing", c->name, out, n, c->stacks);
        n = introspect_dbs_by(has_listed, (void *)c->entries, out, 16);
        check_labels("dbs by listing", c->name, out, n, c->dbs);
    }
}

static void test_max_bound(void)
{
    static const char *const all[] = {"Dockerfile", "Cargo.toml", "go.mod",
                                      "package.json", NULL};
    const char *dir = project("bounded", all);
    const char *out[4] = {"sentinel", "sentinel", "sentinel", "sentinel"};
    CHECK_INT(introspect_stacks(dir, out, 2), 2);
    CHECK_STR(out[0], "Docker");
    CHECK_STR(out[1], "Rust");
    CHECK_STR(out[2], "sentinel");
    CHECK_INT(introspect_stacks(dir, out, 0), 0);
    CHECK_STR(out[0], "Docker");
    CHECK_INT(introspect_dbs(dir, out, 0), 0);
}

static void test_health(void)
{
    static const char *const none[] = {NULL};
    const char *dir = project("healthy", none);
    CHECK_INT(introspect_health(dir), 1);
    char p[512];
    snprintf(p, sizeof p, "%s/missing", root);
    CHECK_INT(introspect_health(p), 0);
    snprintf(p, sizeof p, "%s/healthy/file", root);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    close(fd);
    CHECK_INT(introspect_health(p), 0);
    /* A path through a regular file (ENOTDIR) is missing, not an error. */
    snprintf(p, sizeof p, "%s/healthy/file/sub", root);
    CHECK_INT(introspect_health(p), 0);
    /* A symlink to a directory is healthy. */
    snprintf(p, sizeof p, "%s/healthy-link", root);
    CHECK(symlink(dir, p) == 0);
    CHECK_INT(introspect_health(p), 1);
    /* A probe that fails (symlink loop) is reported as -errno, not 0. */
    char loop_a[512], loop_b[512];
    snprintf(loop_a, sizeof loop_a, "%s/loop-a", root);
    snprintf(loop_b, sizeof loop_b, "%s/loop-b", root);
    CHECK(symlink(loop_b, loop_a) == 0 && symlink(loop_a, loop_b) == 0);
    CHECK_INT(introspect_health(loop_a), -ELOOP);
    /* The probe failing (permission) is reported as -errno, not 0 (as root:
     * without the capabilities that bypass the mode bits). */
    {
        static const char *const sub[] = {"inner/", NULL};
        const char *locked = project("locked", sub);
        chmod(locked, 0);
        snprintf(p, sizeof p, "%s/inner", locked);
        CHECK_INT(dac_caps(false), 0);
        CHECK_INT(introspect_health(p), -EACCES);
        CHECK_INT(dac_caps(true), 0);
        chmod(locked, 0700);
    }

    /* introspect_has distinguishes files from directories. */
    static const char *const ents[] = {"f", "d/", NULL};
    const char *h = project("has", ents);
    CHECK_INT(introspect_has(h, "f", 0), 1);
    CHECK_INT(introspect_has(h, "f", 1), 0);
    CHECK_INT(introspect_has(h, "d", 1), 1);
    CHECK_INT(introspect_has(h, "d", 0), 0);
    CHECK_INT(introspect_has(h, "nope", 0), 0);
    CHECK_INT(introspect_has(h, "nope", 1), 0);
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(s, f);
    fclose(f);
}

/* Project files: regular files inside the project only, capped, and never
 * a blocking read. */
static void test_read(void)
{
    static const char *const none[] = {NULL};
    const char *dir = project("reads", none);
    char p[512], q[512];
    char *out = NULL;
    size_t len = 0;
    int cut = -1;
    snprintf(p, sizeof p, "%s/README.md", dir);
    write_text(p, "hello\nworld\n");
    CHECK_INT(introspect_read(dir, "README.md", 1024, &out, &len, &cut), 0);
    CHECK(out && strcmp(out, "hello\nworld\n") == 0 && len == 12 && cut == 0);
    free(out);
    /* The cap gives a prefix and says so. */
    CHECK_INT(introspect_read(dir, "README.md", 5, &out, &len, &cut), 0);
    CHECK(out && strcmp(out, "hello") == 0 && len == 5 && cut == 1);
    free(out);
    /* A link inside the project is followed. */
    snprintf(q, sizeof q, "%s/CLAUDE.md", dir);
    CHECK(symlink("README.md", q) == 0);
    CHECK_INT(introspect_read(dir, "CLAUDE.md", 1024, &out, &len, &cut), 0);
    free(out);
    /* Links out of the project: /proc files, pipes, anything else. */
    snprintf(q, sizeof q, "%s/env.md", dir);
    CHECK(symlink("/proc/self/environ", q) == 0);
    CHECK_INT(introspect_read(dir, "env.md", 1024, &out, &len, &cut), -EXDEV);
    snprintf(q, sizeof q, "%s/stdin.json", dir);
    CHECK(symlink("/proc/self/fd/0", q) == 0);
    CHECK(introspect_read(dir, "stdin.json", 1024, &out, &len, &cut) != 0);
    snprintf(q, sizeof q, "%s/up.md", dir);
    CHECK(symlink("../reads-sibling.md", q) == 0);
    snprintf(q, sizeof q, "%s-sibling.md", dir);
    write_text(q, "outside\n");
    CHECK_INT(introspect_read(dir, "up.md", 1024, &out, &len, &cut), -EXDEV);
    /* A FIFO inside the project is neither opened blocking nor read. */
    snprintf(q, sizeof q, "%s/.mcp.json", dir);
    CHECK(mkfifo(q, 0600) == 0);
    CHECK_INT(introspect_read(dir, ".mcp.json", 1024, &out, &len, &cut),
              -EINVAL);
    CHECK_INT(introspect_read(dir, "missing", 1024, &out, &len, &cut),
              -ENOENT);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/ad-test-introspect.XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 2;
    }
    test_projects();
    test_projects_by_listing();
    test_max_bound();
    test_health();
    test_read();
    nftw(root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return check_exit("test_introspect");
}
