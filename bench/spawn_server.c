/*
 * spawn_server.c - the floor of the per-dispatch benchmark: a minimal C
 * stdio JSON-RPC server that spawns the same child as agent-dispatch.
 *
 *   spawn_server CWD -- ARGV...
 *
 * Reads request lines on stdin.  A line without "id" (a notification) is
 * skipped; `initialize` and `ping` get a fixed result at once; any other
 * request is a dispatch: posix_spawn (glibc's is a vfork, the cheapest
 * start there is, as agent-dispatch's), with in the child setsid()
 * (agent-dispatch runs claude in its own session and process group),
 * chdir(CWD), stdin from a pipe carrying $BASELINE_STDIN (as
 * agent-dispatch sends it; stdin from /dev/null when unset), stdout and
 * stderr to pipes, AGENT_DISPATCH_DEPTH=1 in the environment, and
 * ARGV.  The parent writes the prompt and closes the pipe, reads stdout
 * (and stderr) until the first line holding "type":"result", and answers
 * with that line as the text content of a tools/call result, as
 * agent-dispatch answers at the result line over the live transport.
 * Then, before the next request, it reads the rest of the output to EOF
 * and reaps the child.
 *
 * No parsing beyond finding the request's id: the requests are the
 * benchmark's own fixed templates.  The time of a dispatch is measured by
 * the client (bench/harness.c), the same way as agent-dispatch's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *cwd;
static char **cargv;
static const char *input; /* the child's stdin, or NULL */

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The request's id as it appears in the line (a number or a string). */
static bool find_id(const char *line, const char **id, size_t *len)
{
    const char *k = strstr(line, "\"id\":");
    if (!k) {
        return false;
    }
    const char *s = k + 5, *e = s;
    if (*e == '"') {
        e = strchr(e + 1, '"');
        if (!e) {
            return false;
        }
        e++;
    } else {
        while (*e && *e != ',' && *e != '}') {
            e++;
        }
    }
    *id = s;
    *len = (size_t)(e - s);
    return e > s;
}

/* Appends s[0..n) to w as the inside of a JSON string. */
static char *put_escaped(char *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *w++ = '\\';
            *w++ = (char)c;
        } else if (c < 0x20) {
            memcpy(w, "\\u00", 4);
            w[4] = hex[c >> 4];
            w[5] = hex[c & 15];
            w += 6;
        } else {
            *w++ = (char)c;
        }
    }
    return w;
}

static pid_t start_child(int *out_r, int *err_r)
{
    int out[2], err[2], in[2] = {-1, -1};
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
        (input && pipe2(in, O_CLOEXEC))) {
        perror("spawn_server: pipe");
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID);
    posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (input) {
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    } else {
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    pid_t pid;
    int rc = posix_spawn(&pid, cargv[0], &fa, &at, cargv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
        fprintf(stderr, "spawn_server: posix_spawn: %s\n", strerror(rc));
        return -1;
    }
    close(out[1]);
    close(err[1]);
    if (input) {
        /* A short prompt: the pipe takes it whole. */
        close(in[0]);
        if (write(in[1], input, strlen(input)) < 0) {
            perror("spawn_server: write");
        }
        close(in[1]);
    }
    *out_r = out[0];
    *err_r = err[0];
    return pid;
}

/* Runs one dispatch and writes its response; false on failure. */
static bool dispatch(const char *id, size_t idlen)
{
    static char seen[1 << 20];
    static char reply[(1 << 20) * 6 + 256];
    char buf[65536];
    int out_r, err_r;
    pid_t pid = start_child(&out_r, &err_r);
    if (pid < 0) {
        return false;
    }
    struct pollfd fds[2] = {{out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
    int open_fds = 2;
    size_t nseen = 0;
    bool answered = false;
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) {
            continue;
        }
        for (int k = 0; k < 2; k++) {
            if (fds[k].fd < 0 || !fds[k].revents) {
                continue;
            }
            ssize_t r = read(fds[k].fd, buf, sizeof buf);
            if (r <= 0) {
                close(fds[k].fd);
                fds[k].fd = -1;
                open_fds--;
                continue;
            }
            if (k != 0 || answered || nseen + (size_t)r > sizeof seen) {
                continue;
            }
            memcpy(seen + nseen, buf, (size_t)r);
            nseen += (size_t)r;
            const char *key = memmem(seen, nseen, "\"type\":\"result\"", 15);
            const char *nl = key ? memchr(key, '\n', nseen - (size_t)(key - seen)) : NULL;
            if (!nl) {
                continue;
            }
            const char *start = key;
            while (start > seen && start[-1] != '\n') {
                start--;
            }
            char *w = reply;
            w += sprintf(w, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"result\":{\"content\":"
                            "[{\"type\":\"text\",\"text\":\"", (int)idlen, id);
            w = put_escaped(w, start, (size_t)(nl - start));
            w += sprintf(w, "\"}],\"isError\":false}}\n");
            if (!write_all(1, reply, (size_t)(w - reply))) {
                return false;
            }
            answered = true;
        }
    }
    int status;
    waitpid(pid, &status, 0);
    if (!answered) {
        fprintf(stderr, "spawn_server: no result line on the child's stdout\n");
    }
    return answered;
}

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: spawn_server CWD -- ARGV...\n");
        return 2;
    }
    cwd = argv[1];
    cargv = argv + 3;
    input = getenv("BASELINE_STDIN");
    if (input) {
        input = strdup(input);
        unsetenv("BASELINE_STDIN");
    }
    setenv("AGENT_DISPATCH_DEPTH", "1", 1);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    char small[256];
    while ((n = getline(&line, &cap, stdin)) > 0) {
        const char *id;
        size_t idlen;
        if (!find_id(line, &id, &idlen)) {
            continue; /* a notification */
        }
        if (strstr(line, "\"method\":\"tools/call\"")) {
            if (!dispatch(id, idlen)) {
                return 1;
            }
            continue;
        }
        const char *result = strstr(line, "\"method\":\"initialize\"")
            ? "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{}},"
              "\"serverInfo\":{\"name\":\"spawn-server\",\"version\":\"0.0.0\"}}"
            : "{}";
        int m = snprintf(small, sizeof small, "{\"jsonrpc\":\"2.0\",\"id\":%.*s,\"result\":%s}\n",
                         (int)idlen, id, result);
        if (m < 0 || (size_t)m >= sizeof small || !write_all(1, small, (size_t)m)) {
            return 1;
        }
    }
    free(line);
    return 0;
}
