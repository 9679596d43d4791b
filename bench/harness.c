/*
 * harness.c - the timing client of the agent-dispatch benchmarks.  C, so
 * that the client's own cost is small and the same for the product and
 * the baselines.  Times are CLOCK_MONOTONIC, printed in microseconds.
 *
 *   harness startup N -- ARGV...
 *       N times: spawn ARGV with stdin/stdout pipes (stderr to /dev/null),
 *       write a legacy `initialize` request, read the first response line:
 *       prints the time from just before fork to that line.  Then closes
 *       stdin, reads stdout to EOF and reaps the child (not timed).
 *   harness list N [MODERN] -- ARGV...
 *       N times: spawn ARGV as for startup, send `initialize`, read its
 *       response, send `notifications/initialized` and `tools/list`, read
 *       the tools/list response line: prints the time from just before
 *       fork to that line, then the time to the initialize response and
 *       the tools/list response's size.  With MODERN = "modern", a single
 *       stateless 2026-07-28 tools/list request instead (no handshake).
 *   harness exec N -- ARGV...
 *       N times: spawn ARGV (stdin /dev/null, stdout pipe read to EOF),
 *       waitpid; prints the wall time of each run.
 *   harness rpc N WARMUP TEMPLATE... -- ARGV...
 *       One server: initialize, then (after 100 ms idle) prints
 *       "# idle_rss_kb K"; then WARMUP+N rounds, each sending every
 *       TEMPLATE once (the text __ID__ is replaced by a fresh integer id)
 *       and waiting for its response line (notification lines are
 *       skipped).  Prints "T LAT_US BYTES T0_US" per request after the
 *       warm-up (T = template index; T0 the CLOCK_MONOTONIC time the
 *       request was written), then "# hwm_kb K" (VmHWM of the server).
 *
 * Pairs: a second "--" and a second command B after ARGV makes every run
 * a pair taken back to back, so that both see the same machine.
 *   startup, list, exec: N times ARGV then B, each line prefixed "A " or
 *       "B ".
 *   rpc: after every round of requests, B is run once (stdin /dev/null)
 *       and the first line it prints is copied as "b LINE" (B is a
 *       baseline that times itself, e.g. spawn_baseline 1 ...).
 *   rpc, with "==" and a server S last (after "-- B" if any): S is started
 *       and initialized beside ARGV and gets every request too, right
 *       before or after ARGV (alternating by round, so neither always
 *       goes first); its lines are prefixed "S " (S is a baseline server
 *       timed by this client as the product is, e.g. spawn_server).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char INIT[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{"
    "\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
    "\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n";

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            die("harness: write to the server (did it exit?)");
        }
        p += w;
        n -= (size_t)w;
    }
}

/* ---- a line reader over a pipe ---- */
struct reader {
    int fd;
    char *buf;
    size_t len, cap, start;
};

/* Returns a pointer to the next line (NUL-terminated, without '\n') and
 * its length in *n, or NULL at EOF. */
static char *read_line(struct reader *r, size_t *n)
{
    for (;;) {
        char *nl = r->len > r->start ? memchr(r->buf + r->start, '\n', r->len - r->start) : NULL;
        if (nl) {
            char *line = r->buf + r->start;
            *nl = '\0';
            *n = (size_t)(nl - line);
            r->start = (size_t)(nl - r->buf) + 1;
            return line;
        }
        if (r->start > 0) {
            memmove(r->buf, r->buf + r->start, r->len - r->start);
            r->len -= r->start;
            r->start = 0;
        }
        if (r->cap - r->len < 65536) {
            r->cap = r->cap ? r->cap * 2 : 1 << 20;
            r->buf = realloc(r->buf, r->cap);
            if (!r->buf) {
                die("realloc");
            }
        }
        ssize_t got = read(r->fd, r->buf + r->len, r->cap - r->len - 1);
        if (got < 0) {
            die("read");
        }
        if (got == 0) {
            return NULL;
        }
        r->len += (size_t)got;
    }
}

struct child {
    pid_t pid;
    int in, out; /* our ends: write to its stdin, read its stdout */
};

static struct child spawn(char **argv, int want_stdin)
{
    int in[2] = {-1, -1}, out[2];
    if ((want_stdin && pipe2(in, O_CLOEXEC)) || pipe2(out, O_CLOEXEC)) {
        die("pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        die("fork");
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(want_stdin ? in[0] : nul, 0);
        dup2(out[1], 1);
        dup2(nul, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    if (want_stdin) {
        close(in[0]);
    }
    close(out[1]);
    return (struct child){pid, in[1], out[0]};
}

static long proc_status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t k = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            v = atol(line + k + 1);
        }
    }
    if (f) {
        fclose(f);
    }
    return v;
}

static int finish(struct child *c, struct reader *r)
{
    if (c->in >= 0) {
        close(c->in);
    }
    size_t n;
    while (read_line(r, &n)) {
    }
    close(c->out);
    int status;
    waitpid(c->pid, &status, 0);
    return status;
}

static int cmd_startup(long n, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        struct child c = spawn(argv, 1);
        write_all(c.in, INIT, sizeof INIT - 1);
        struct reader r = {.fd = c.out};
        size_t len;
        char *line = read_line(&r, &len);
        double t1 = now_us();
        if (!line || !strstr(line, "\"result\"")) {
            fprintf(stderr, "harness: no initialize result\n");
            return 1;
        }
        finish(&c, &r);
        free(r.buf);
        printf("%.1f\n", t1 - t0);
    }
    return 0;
}

static const char NOTE_INIT[] =
    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
static const char LIST[] =
    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n";
static const char LIST_MODERN[] =
    "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
    "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
    "\"io.modelcontextprotocol/clientCapabilities\":{}}}}\n";

static int cmd_list(long n, int modern, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        struct child c = spawn(argv, 1);
        struct reader r = {.fd = c.out};
        size_t len;
        char *line;
        double t_init = 0;
        if (!modern) {
            write_all(c.in, INIT, sizeof INIT - 1);
            line = read_line(&r, &len);
            t_init = now_us();
            if (!line || !strstr(line, "\"result\"")) {
                fprintf(stderr, "harness: no initialize result\n");
                return 1;
            }
            write_all(c.in, NOTE_INIT, sizeof NOTE_INIT - 1);
            write_all(c.in, LIST, sizeof LIST - 1);
        } else {
            write_all(c.in, LIST_MODERN, sizeof LIST_MODERN - 1);
        }
        line = read_line(&r, &len);
        double t1 = now_us();
        if (!line || !strstr(line, "\"tools\"")) {
            fprintf(stderr, "harness: no tools/list result: %.300s\n", line ? line : "(EOF)");
            return 1;
        }
        size_t bytes = len + 1;
        finish(&c, &r);
        free(r.buf);
        printf("%.1f %.1f %zu\n", t1 - t0, modern ? 0 : t_init - t0, bytes);
    }
    return 0;
}

static int cmd_exec(long n, char **argv)
{
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        struct child c = spawn(argv, 0);
        struct reader r = {.fd = c.out};
        int status = finish(&c, &r);
        double t1 = now_us();
        free(r.buf);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "harness: exec failed (status %d)\n", status);
            return 1;
        }
        printf("%.1f\n", t1 - t0);
    }
    return 0;
}

/* Runs a baseline that times itself; prints its first line as "b LINE". */
static int run_baseline(char **argv)
{
    struct child c = spawn(argv, 0);
    struct reader r = {.fd = c.out};
    size_t len;
    char *line = read_line(&r, &len);
    if (!line) {
        fprintf(stderr, "harness: the baseline printed nothing\n");
        return 1;
    }
    printf("b %s\n", line);
    int status = finish(&c, &r);
    free(r.buf);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Starts a server and completes the handshake; 0 or 1. */
static int rpc_open(char **argv, struct child *c, struct reader *r)
{
    *c = spawn(argv, 1);
    *r = (struct reader){.fd = c->out};
    size_t len;
    write_all(c->in, INIT, sizeof INIT - 1);
    char *line = read_line(r, &len);
    if (!line || !strstr(line, "\"result\"")) {
        fprintf(stderr, "harness: no initialize result from %s\n", argv[0]);
        return 1;
    }
    static const char NOTE[] =
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
    write_all(c->in, NOTE, sizeof NOTE - 1);
    return 0;
}

/* Sends one request and waits for its response line (notifications are
 * skipped); its latency in *us and size in *bytes; 0 or 1. */
static int rpc_one(struct child *c, struct reader *r, const char *req, size_t m,
                   double *t0_out, double *us, size_t *bytes)
{
    size_t len;
    char *line;
    double t0 = now_us();
    *t0_out = t0;
    write_all(c->in, req, m);
    for (;;) {
        line = read_line(r, &len);
        if (!line) {
            fprintf(stderr, "harness: server closed its output\n");
            return 1;
        }
        if (!strstr(line, "\"method\":\"notifications/")) {
            break;
        }
    }
    *us = now_us() - t0;
    *bytes = len + 1;
    if (strstr(line, "\"error\":{") && !strstr(line, "\"result\"")) {
        fprintf(stderr, "harness: error response: %.300s\n", line);
        return 1;
    }
    return 0;
}

static int cmd_rpc(long n, long warm, char **tmpl, int ntmpl, char **argv,
                   char **base, char **serv)
{
    signal(SIGPIPE, SIG_IGN);
    struct child c, s = {0};
    struct reader r, rs = {0};
    if (rpc_open(argv, &c, &r) != 0 || (serv && rpc_open(serv, &s, &rs) != 0)) {
        return 1;
    }
    usleep(100000);
    printf("# idle_rss_kb %ld\n", proc_status_kb(c.pid, "VmRSS"));
    long id = 100;
    char *req = malloc(1 << 20);
    for (long i = 0; i < warm + n; i++) {
        for (int t = 0; t < ntmpl; t++) {
            /* Substitute __ID__. */
            const char *p = strstr(tmpl[t], "__ID__");
            int m = p ? snprintf(req, 1 << 20, "%.*s%ld%s\n", (int)(p - tmpl[t]), tmpl[t], ++id, p + 6)
                      : snprintf(req, 1 << 20, "%s\n", tmpl[t]);
            for (int side = 0; side < (serv ? 2 : 1); side++) {
                bool to_s = serv && (side ^ (int)(i & 1));
                double t0, us;
                size_t bytes;
                if (rpc_one(to_s ? &s : &c, to_s ? &rs : &r, req, (size_t)m, &t0, &us, &bytes) != 0) {
                    return 1;
                }
                if (i >= warm) {
                    printf("%s%d %.1f %zu %.1f\n", to_s ? "S " : "", t, us, bytes, t0);
                }
            }
        }
        if (base && i >= warm && run_baseline(base) != 0) {
            return 1;
        }
    }
    printf("# hwm_kb %ld\n", proc_status_kb(c.pid, "VmHWM"));
    free(req);
    finish(&c, &r);
    free(r.buf);
    if (serv) {
        finish(&s, &rs);
        free(rs.buf);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int dd = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            dd = i;
            break;
        }
    }
    if (argc < 3 || !dd || dd + 1 >= argc) {
        fprintf(stderr, "usage: harness startup|exec N -- ARGV... | list N [modern] -- ARGV... | rpc N WARMUP TEMPLATE... -- ARGV... [-- B...] [== S...]\n");
        return 2;
    }
    char **cargv = argv + dd + 1;
    argv[dd] = NULL;
    char **base = NULL; /* the second command of a pair */
    char **serv = NULL; /* rpc: a baseline server beside ARGV */
    for (int i = dd + 1; i < argc; i++) {
        if (!base && strcmp(argv[i], "--") == 0 && i + 1 < argc) {
            argv[i] = NULL;
            base = argv + i + 1;
        } else if (strcmp(argv[i], "==") == 0 && i + 1 < argc) {
            argv[i] = NULL;
            serv = argv + i + 1;
            break; /* the rest is S's, its own "--" included */
        }
    }
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    long n = atol(argv[2]);
    int modern = dd > 3 && strcmp(argv[3], "modern") == 0;
    int rc = 0;
    if (strcmp(argv[1], "startup") == 0 || strcmp(argv[1], "list") == 0 ||
        strcmp(argv[1], "exec") == 0) {
        for (long i = 0; rc == 0 && i < (base ? n : 1); i++) {
            for (int side = 0; rc == 0 && side < (base ? 2 : 1); side++) {
                char **av = side ? base : cargv;
                long k = base ? 1 : n;
                if (base) {
                    printf("%s ", side ? "B" : "A");
                }
                rc = argv[1][0] == 's'   ? cmd_startup(k, av)
                     : argv[1][0] == 'l' ? cmd_list(k, modern, av)
                                         : cmd_exec(k, av);
            }
        }
        return rc;
    }
    if (strcmp(argv[1], "rpc") == 0 && dd >= 5) {
        return cmd_rpc(n, atol(argv[3]), argv + 4, dd - 4, cargv, base, serv);
    }
    fprintf(stderr, "harness: unknown mode %s\n", argv[1]);
    return 2;
}
