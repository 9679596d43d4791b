/* Project probes; see introspect.h. Order of labels follows the spec. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ad/fsutil.h"
#include "ad/introspect.h"

int introspect_health(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        return (errno == ENOENT || errno == ENOTDIR) ? 0 : -errno;
    }
    return S_ISDIR(st.st_mode) ? 1 : 0;
}

int introspect_has(const char *dir, const char *name, int want_dir)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, name) >= sizeof p) {
        return 0;
    }
    struct stat st;
    if (stat(p, &st) != 0) {
        return 0;
    }
    return want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
}

struct probe {
    const char *file;
    int dir;
    const char *label;
};

static int has_in_dir(void *dir, const char *name, int want_dir)
{
    return introspect_has(dir, name, want_dir);
}

static size_t detect(introspect_has_fn has, void *ud, const struct probe *pr,
                     size_t np, const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < np && n < max; i++) {
        if (n > 0 && out[n - 1] == pr[i].label) {
            continue; /* two files for one label */
        }
        if (has(ud, pr[i].file, pr[i].dir)) {
            out[n++] = pr[i].label;
        }
    }
    return n;
}

size_t introspect_stacks_by(introspect_has_fn has, void *ud, const char **out,
                            size_t max)
{
    static const char docker[] = "Docker", compose[] = "Docker Compose",
                      rust[] = "Rust", go[] = "Go", py[] = "Python",
                      node[] = "Node.js";
    static const struct probe pr[] = {
        {"Dockerfile", 0, docker},
        {"docker-compose.yaml", 0, compose},
        {"docker-compose.yml", 0, compose},
        {"Cargo.toml", 0, rust},
        {"go.mod", 0, go},
        {"requirements.txt", 0, py},
        {"pyproject.toml", 0, py},
        {"package.json", 0, node},
    };
    return detect(has, ud, pr, sizeof pr / sizeof pr[0], out, max);
}

size_t introspect_dbs_by(introspect_has_fn has, void *ud, const char **out,
                         size_t max)
{
    static const char prisma[] = "Prisma", alembic[] = "Alembic",
                      mig[] = "migrations";
    static const struct probe pr[] = {
        {"prisma", 1, prisma},
        {"schema.prisma", 0, prisma},
        {"alembic", 1, alembic},
        {"alembic.ini", 0, alembic},
        {"migrations", 1, mig},
    };
    return detect(has, ud, pr, sizeof pr / sizeof pr[0], out, max);
}

size_t introspect_stacks(const char *dir, const char **out, size_t max)
{
    return introspect_stacks_by(has_in_dir, (void *)dir, out, max);
}

size_t introspect_dbs(const char *dir, const char **out, size_t max)
{
    return introspect_dbs_by(has_in_dir, (void *)dir, out, max);
}

/* The resolved path of dir/rel when it stays inside dir's resolved path. */
static int resolve_inside(const char *dir, const char *rel, char *out)
{
    char rdir[PATH_MAX], p[PATH_MAX];
    if (!realpath(dir, rdir)) {
        return -errno;
    }
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, rel) >= sizeof p) {
        return -ENAMETOOLONG;
    }
    if (!realpath(p, out)) {
        return -errno;
    }
    size_t n = strlen(rdir);
    if (strcmp(rdir, "/") == 0) {
        n = 0;
    }
    if (strncmp(out, rdir, n) != 0 || out[n] != '/') {
        return -EXDEV; /* a link out of the project */
    }
    return 0;
}

int introspect_read(const char *dir, const char *rel, size_t max, char **out,
                    size_t *len, int *truncated)
{
    char real[PATH_MAX];
    int rc = resolve_inside(dir, rel, real);
    if (rc != 0) {
        return rc;
    }
    /* O_NONBLOCK: a FIFO must not block the loop; O_NOFOLLOW: real has no
     * link left, unless one was planted since. */
    int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EINVAL; /* pipes, devices, sockets: not project files */
    }
    bool more;
    rc = fs_read_fd(fd, max, out, len, &more);
    if (rc == 0) {
        *truncated = more;
    }
    return rc;
}
