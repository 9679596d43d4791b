/*
 * spawn_baseline.c - the baseline of the per-dispatch overhead benchmark.
 *
 *   spawn_baseline N CWD -- ARGV...
 *
 * N times: fork, and in the child setsid() (agent-dispatch runs claude in
 * its own session and process group), chdir(CWD), stdin from a pipe
 * carrying $BASELINE_STDIN (the prompt, as agent-dispatch sends it; stdin
 * from /dev/null when unset), stdout and stderr to pipes,
 * AGENT_DISPATCH_DEPTH=1 in the environment, execv(ARGV).  The parent
 * writes the prompt and closes the pipe, reads both output pipes to EOF
 * (poll), then waitpid.
 * Prints each iteration's wall time in microseconds, one per line: to the
 * child's exit, or, with BASELINE_UNTIL=result, to the first stdout line
 * holding "type":"result" (a minimal server that answers at the result
 * line, as agent-dispatch does over the live transport; the rest of the
 * output and the exit are then read and waited for outside the time, and
 * the time to the exit is printed second on the line).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Does s hold a whole line with "type":"result" (the turn's result)? */
static bool has_result_line(const char *s, size_t n)
{
    static const char key[] = "\"type\":\"result\"";
    const char *k = memmem(s, n, key, sizeof key - 1);
    return k && memchr(k, '\n', n - (size_t)(k - s)) != NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: spawn_baseline N CWD -- ARGV...\n");
        return 2;
    }
    long n = atol(argv[1]);
    const char *cwd = argv[2];
    char **cargv = argv + 4;
    const char *input = getenv("BASELINE_STDIN");
    if (input) {
        input = strdup(input);
        unsetenv("BASELINE_STDIN");
    }
    const char *until = getenv("BASELINE_UNTIL");
    bool until_result = until && strcmp(until, "result") == 0;
    unsetenv("BASELINE_UNTIL");
    setenv("AGENT_DISPATCH_DEPTH", "1", 1);
    char buf[65536];
    /* The stdout seen so far (searched for the result line). */
    static char seen[1 << 20];
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        int out[2], err[2], in[2] = {-1, -1};
        if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) ||
            (input && pipe2(in, O_CLOEXEC))) {
            perror("pipe");
            return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            setsid();
            if (chdir(cwd) != 0) {
                _exit(126);
            }
            int nul = input ? in[0] : open("/dev/null", O_RDONLY);
            dup2(nul, 0);
            dup2(out[1], 1);
            dup2(err[1], 2);
            execv(cargv[0], cargv);
            _exit(127);
        }
        close(out[1]);
        close(err[1]);
        if (input) {
            /* A short prompt: the pipe takes it whole. */
            close(in[0]);
            if (write(in[1], input, strlen(input)) < 0) {
                perror("write");
            }
            close(in[1]);
        }
        struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
        int open_fds = 2;
        size_t total = 0, nseen = 0;
        double t_result = 0;
        while (open_fds > 0) {
            if (poll(fds, 2, -1) < 0) {
                continue;
            }
            for (int k = 0; k < 2; k++) {
                if (fds[k].fd >= 0 && fds[k].revents) {
                    ssize_t r = read(fds[k].fd, buf, sizeof buf);
                    if (r <= 0) {
                        close(fds[k].fd);
                        fds[k].fd = -1;
                        open_fds--;
                    } else {
                        total += (size_t)r;
                        if (until_result && k == 0 && t_result == 0 &&
                            nseen + (size_t)r <= sizeof seen) {
                            memcpy(seen + nseen, buf, (size_t)r);
                            nseen += (size_t)r;
                            if (has_result_line(seen, nseen)) {
                                t_result = now_us();
                            }
                        }
                    }
                }
            }
        }
        int status;
        waitpid(pid, &status, 0);
        double t1 = t_result > 0 ? t_result : now_us();
        if (until_result && t_result == 0) {
            fprintf(stderr, "spawn_baseline: no result line on stdout\n");
            return 1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || total == 0) {
            fprintf(stderr, "spawn_baseline: child failed (status %d, %zu bytes)\n", status, total);
            return 1;
        }
        if (until_result) {
            printf("%.1f %.1f\n", t1 - t0, now_us() - t0); /* result, exit */
        } else {
            printf("%.1f\n", t1 - t0);
        }
    }
    return 0;
}
