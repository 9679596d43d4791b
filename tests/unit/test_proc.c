/* Unit tests of child processes on the libuv loop (src/proc.c).
 * Over 500 lines on purpose: one test file per module, and every guarantee
 * of src/proc.c (spawn, gate, timeouts, kill, reaping) has its own case. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ad/proc.h"
#include "check.h"

static uv_loop_t loop;

/* Everything the callbacks saw for one child. */
struct run {
    char *lines[64];
    size_t nlines;
    size_t too_long;
    int eof, exits, dones, reaps;
    int order_bad;          /* done before exit/eof, or exit after done */
    int pause_at_first;     /* proc_pause() on the first line */
    uint64_t t_start, t_exit, t_done;
    struct proc *p;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void on_line(struct proc *p, const char *line, size_t n, void *ud)
{
    struct run *r = ud;
    if (!line) {
        r->too_long++;
        return;
    }
    if (r->nlines < 64) {
        char *s = malloc(n + 1);
        memcpy(s, line, n);
        s[n] = '\0';
        r->lines[r->nlines++] = s;
    }
    if (r->pause_at_first && r->nlines == 1) {
        proc_pause(p);
    }
}

static void on_eof(struct proc *p, void *ud)
{
    struct run *r = ud;
    (void)p;
    r->eof++;
    r->order_bad += r->dones > 0;
}

static void on_exit_(struct proc *p, void *ud)
{
    struct run *r = ud;
    r->exits++;
    r->t_exit = now_ms();
    r->order_bad += r->dones > 0;
    r->order_bad += !proc_exited(p);
}

static void on_done(struct proc *p, void *ud)
{
    struct run *r = ud;
    r->dones++;
    r->t_done = now_ms();
    r->order_bad += r->exits != 1 || !proc_done(p);
}

static void on_reap(void *arg)
{
    struct run *r = arg;
    r->reaps++;
}

static const struct proc_cbs cbs = {on_line, on_eof, on_exit_, on_done};

static void run_free(struct run *r)
{
    for (size_t i = 0; i < r->nlines; i++) {
        free(r->lines[i]);
    }
    r->nlines = 0;
}

/* A timer that keeps UV_RUN_ONCE from blocking forever. */
static uv_timer_t tick;
static void on_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until *flag becomes nonzero or ms pass; returns *flag. */
static int wait_for(const int *flag, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    uv_ref((uv_handle_t *)&tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    while (!*flag && now_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    uv_unref((uv_handle_t *)&tick);
    return *flag;
}

static void spin(uint64_t ms)
{
    static const int never = 0;
    wait_for(&never, ms);
}

static void wait_lines(struct run *r, size_t n, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    uv_ref((uv_handle_t *)&tick);
    uv_timer_start(&tick, on_tick, 5, 5);
    while (r->nlines < n && !r->dones && now_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    uv_unref((uv_handle_t *)&tick);
}

/* Lets libuv close every handle of released procs (frees their memory). */
static void settle(void)
{
    /* The tick stays unref'd: it only bounds each poll, so a handle that
     * never closes fails the check below instead of hanging the test. */
    uint64_t end = now_ms() + 10000;
    uv_timer_start(&tick, on_tick, 5, 5);
    while (uv_loop_alive(&loop) && now_ms() < end) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&tick);
    CHECKF(!uv_loop_alive(&loop), "handles still open after 10 s");
}

static struct proc_opts opts_for(char *const *argv, struct run *r)
{
    struct proc_opts o;
    memset(&o, 0, sizeof o);
    o.argv = argv;
    o.max_line = 4096;
    o.stderr_head = 4096;
    o.stderr_tail = 4096;
    o.grace_ms = 500;
    o.drain_ms = 3000;
    o.on_reap = on_reap;
    o.reap_arg = r;
    return o;
}

static int spawn(struct run *r, const struct proc_opts *o)
{
    memset(r, 0, sizeof *r);
    r->t_start = now_ms();
    return proc_spawn(&loop, o, &cbs, r, &r->p);
}

static int spawn_sh(struct run *r, const char *script, uint64_t timeout_ms)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    struct proc_opts o = opts_for(argv, r);
    o.timeout_ms = timeout_ms;
    return spawn(r, &o);
}

/* True when pid no longer names a live process (a zombie nobody reaped
 * counts as dead: it holds no resources and runs no code). */
static bool pid_gone(int pid)
{
    if (kill(pid, 0) != 0) {
        return errno == ESRCH;
    }
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return true;
    }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) {
        return true;
    }
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && (rp[2] == 'Z' || rp[2] == 'X');
}

static bool wait_gone(int pid, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (!pid_gone(pid)) {
        if (now_ms() >= end) {
            return false;
        }
        spin(10);
    }
    return true;
}

static void test_two_lines(void)
{
    struct run r;
    CHECK_INT(spawn_sh(&r, "echo a; echo b", 0), 0);
    CHECK(r.p != NULL && proc_pid(r.p) > 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(r.nlines, 2);
    CHECK(r.nlines == 2 && strcmp(r.lines[0], "a") == 0 &&
          strcmp(r.lines[1], "b") == 0);
    CHECK_INT(r.exits, 1);
    CHECK_INT(r.eof, 1);
    CHECK_INT(r.dones, 1);
    CHECK_INT(r.reaps, 1);
    CHECK_INT(r.order_bad, 0);
    CHECK(proc_exited(r.p) && proc_done(r.p));
    CHECK_INT(proc_exit_status(r.p), 0);
    CHECK_INT(proc_term_signal(r.p), 0);
    CHECK(!proc_timed_out(r.p));
    CHECK_INT(proc_live_count(), 0);
    size_t n = 99;
    proc_stderr(r.p, &n);
    CHECK_INT(n, 0);
    proc_release(r.p);
    settle();
    CHECK_INT(r.reaps, 1);      /* never again after release */
    CHECK_INT(r.dones, 1);
    run_free(&r);
}

static void test_exit_code_and_final_line(void)
{
    struct run r;
    /* A last line without '\n' is still delivered; exit code kept. */
    CHECK_INT(spawn_sh(&r, "printf 'x\\r\\nno newline'; exit 3", 0), 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(r.nlines, 2);
    CHECK(r.nlines == 2 && strcmp(r.lines[0], "x") == 0 &&
          strcmp(r.lines[1], "no newline") == 0);
    CHECK_INT(proc_exit_status(r.p), 3);
    CHECK_INT(r.reaps, 1);
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_stderr_head_tail(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c", "echo err-start >&2; echo out", NULL};
    struct proc_opts o = opts_for(argv, &r);
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 5000));
    size_t n = 0;
    const char *e = proc_stderr(r.p, &n);
    CHECK(n == 10 && memcmp(e, "err-start\n", 10) == 0);
    CHECK(r.nlines == 1 && strcmp(r.lines[0], "out") == 0);
    proc_release(r.p);
    settle();
    run_free(&r);

    /* Head, a marker with the dropped count, and the tail. */
    char *argv2[] = {"/bin/sh", "-c",
                     "printf HEAD >&2; head -c 1000 /dev/zero | tr '\\0' m >&2;"
                     " printf TAIL >&2", NULL};
    o = opts_for(argv2, &r);
    o.stderr_head = 4;
    o.stderr_tail = 4;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 5000));
    e = proc_stderr(r.p, &n);
    static const char want[] =
        "HEAD\n[... 1000 bytes of stderr omitted ...]\nTAIL";
    CHECKF(n == strlen(want) && memcmp(e, want, n) == 0, "stderr: %.*s",
           (int)n, e);
    /* Asking twice gives the same answer. */
    e = proc_stderr(r.p, &n);
    CHECK(n == strlen(want) && memcmp(e, want, n) == 0);
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* 1 MiB on stderr before the first stdout line: stderr is drained while
 * we wait for stdout, so the child never blocks on a full pipe. */
static void test_big_stderr_no_deadlock(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c",
                    "head -c 1048576 /dev/zero | tr '\\0' e >&2; echo done",
                    NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.stderr_head = 100;
    o.stderr_tail = 100;
    o.timeout_ms = 20000;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 15000));
    CHECK(!proc_timed_out(r.p));
    CHECK_INT(proc_exit_status(r.p), 0);
    CHECK(r.nlines == 1 && strcmp(r.lines[0], "done") == 0);
    size_t n = 0;
    const char *e = proc_stderr(r.p, &n);
    static const char marker[] =
        "\n[... 1048376 bytes of stderr omitted ...]\n";
    CHECKF(n == 200 + strlen(marker), "stderr length %zu", n);
    CHECK(n > 100 && memcmp(e + 100, marker, strlen(marker)) == 0);
    CHECK(n > 0 && e[0] == 'e' && e[n - 1] == 'e');
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_long_line_skipped(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c",
                    "head -c 100000 /dev/zero | tr '\\0' L; echo; echo next",
                    NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.max_line = 1000;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(r.too_long, 1);
    CHECK(r.nlines == 1 && strcmp(r.lines[0], "next") == 0);
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_timeout(void)
{
    struct run r;
    char *argv[] = {"/bin/sleep", "10", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.timeout_ms = 200;
    o.grace_ms = 1000;
    CHECK_INT(spawn(&r, &o), 0);
    int pid = proc_pid(r.p);
    CHECK(wait_for(&r.dones, 5000));
    CHECK(proc_timed_out(r.p));
    CHECK_INT(proc_term_signal(r.p), SIGTERM);
    uint64_t took = r.t_exit - r.t_start;
    CHECKF(took >= 150 && took < 200 + 1000 + 1000, "exit after %llu ms",
           (unsigned long long)took);
    CHECK(pid_gone(pid));
    CHECK_INT(r.reaps, 1);
    proc_release(r.p);
    settle();
    run_free(&r);

    /* A child that ignores SIGTERM is SIGKILLed after the grace period. */
    char *argv2[] = {"/bin/sh", "-c", "trap '' TERM; exec sleep 10", NULL};
    o = opts_for(argv2, &r);
    o.timeout_ms = 200;
    o.grace_ms = 300;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK(proc_timed_out(r.p));
    CHECK_INT(proc_term_signal(r.p), SIGKILL);
    took = r.t_exit - r.t_start;
    CHECKF(took >= 200 + 250 && took < 200 + 300 + 1500,
           "exit after %llu ms", (unsigned long long)took);
    proc_release(r.p);
    settle();
    run_free(&r);

    /* A child that finishes in time is not marked. */
    CHECK_INT(spawn_sh(&r, "echo quick", 5000), 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK(!proc_timed_out(r.p));
    CHECK_INT(proc_exit_status(r.p), 0);
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_kill(void)
{
    struct run r;
    CHECK_INT(spawn_sh(&r, "echo ready; exec sleep 10", 0), 0);
    wait_lines(&r, 1, 5000);
    CHECK_INT(r.nlines, 1);
    /* Own session and process group. */
    int pid = proc_pid(r.p);
    CHECK_INT(getpgid(pid), pid);
    CHECK_INT(getsid(pid), pid);
    CHECK_INT(proc_live_count(), 1);
    proc_kill(r.p, false);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(proc_term_signal(r.p), SIGTERM);
    CHECK(!proc_timed_out(r.p));
    CHECK_INT(proc_live_count(), 0);
    proc_kill(r.p, true); /* harmless after exit */
    proc_release(r.p);
    settle();
    run_free(&r);

    CHECK_INT(spawn_sh(&r, "trap '' TERM; echo ready; exec sleep 10", 0), 0);
    wait_lines(&r, 1, 5000);
    proc_kill(r.p, true);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(proc_term_signal(r.p), SIGKILL);
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* The whole group goes when the child exits: a background grandchild is
 * killed within the grace period. */
static void test_group_killed(void)
{
    static const struct {
        const char *script;
        uint64_t grace;
    } cases[] = {
        /* Pipes closed: on_done comes right away. */
        {"sleep 30 >/dev/null 2>&1 & echo $!", 400},
        /* The grandchild ignores SIGTERM: SIGKILL after the grace. */
        {"(trap '' TERM; exec sleep 30) >/dev/null 2>&1 & echo $!", 400},
        /* The grandchild holds the pipes: on_done once it is killed. */
        {"sleep 30 & echo $!", 400},
        {"(trap '' TERM; exec sleep 30) & echo $!", 400},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct run r;
        char *argv[] = {"/bin/sh", "-c", (char *)cases[i].script, NULL};
        struct proc_opts o = opts_for(argv, &r);
        o.grace_ms = cases[i].grace;
        o.drain_ms = 10000;
        CHECK_INT(spawn(&r, &o), 0);
        CHECKF(wait_for(&r.dones, 8000), "case %zu: no on_done", i);
        CHECKF(r.nlines == 1, "case %zu: %zu lines", i, r.nlines);
        int gpid = r.nlines ? atoi(r.lines[0]) : 0;
        CHECKF(gpid > 1, "case %zu: grandchild pid '%s'", i,
               r.nlines ? r.lines[0] : "");
        if (gpid > 1) {
            /* Within the grace period (plus scheduling slack) of on_done. */
            CHECKF(wait_gone(gpid, cases[i].grace + 1000),
                   "case %zu: grandchild %d still alive", i, gpid);
            if (!pid_gone(gpid)) {
                kill(gpid, SIGKILL);
            }
        }
        CHECKF(r.t_done - r.t_start < 5000, "case %zu: done after %llu ms",
               i, (unsigned long long)(r.t_done - r.t_start));
        CHECK_INT(r.reaps, 1);
        proc_release(r.p);
        settle();
        run_free(&r);
    }
}

/* A grandchild that left the group (its own session) keeps the pipes
 * open: on_done still comes, after the drain period. */
static void test_drain_deadline(void)
{
    /* util-linux is part of every Debian system: its absence fails. */
    CHECKF(access("/usr/bin/setsid", X_OK) == 0, "%s",
           "no /usr/bin/setsid (install util-linux)");
    if (access("/usr/bin/setsid", X_OK) != 0) {
        return;
    }
    struct run r;
    /* The child waits until the grandchild has its own session, else the
     * group kill at exit could catch it before it escapes. */
    char *argv[] = {"/bin/sh", "-c",
                    "/usr/bin/setsid sleep 30 & p=$!; "
                    "while [ \"$(cut -d' ' -f6 /proc/$p/stat)\" != $p ]; "
                    "do sleep 0.01; done; echo $p", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.drain_ms = 300;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(r.exits, 1);
    CHECK_INT(r.eof, 1);
    CHECK_INT(r.order_bad, 0);
    if (r.dones) {
        uint64_t after_exit = r.t_done - r.t_exit;
        CHECKF(after_exit >= 250 && after_exit < 2000,
               "done %llu ms after exit", (unsigned long long)after_exit);
    }
    CHECK_INT(r.nlines, 1);
    if (r.nlines == 1 && atoi(r.lines[0]) > 1) {
        kill(atoi(r.lines[0]), SIGKILL); /* it escaped us on purpose */
    }
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_kill_all(void)
{
    struct run a, b;
    CHECK_INT(spawn_sh(&a, "trap '' TERM; exec sleep 30", 0), 0);
    CHECK_INT(spawn_sh(&b, "exec sleep 30", 0), 0);
    CHECK_INT(proc_live_count(), 2);
    spin(50);
    proc_kill_all();
    CHECK(wait_for(&a.dones, 3000));
    CHECK(wait_for(&b.dones, 3000));
    CHECK_INT(proc_term_signal(a.p), SIGKILL);
    CHECK_INT(proc_term_signal(b.p), SIGKILL);
    CHECK_INT(proc_live_count(), 0);
    CHECK_INT(a.reaps + b.reaps, 2);
    proc_release(a.p);
    proc_release(b.p);
    settle();
    run_free(&a);
    run_free(&b);
}

static void test_spawn_failure(void)
{
    struct run r;
    char *argv[] = {"/nonexistent/agent-dispatch-test-binary", "x", NULL};
    struct proc_opts o = opts_for(argv, &r);
    memset(&r, 0, sizeof r);
    struct proc *p = (struct proc *)0x1;
    CHECK_INT(proc_spawn(&loop, &o, &cbs, &r, &p), UV_ENOENT);
    CHECK(p == (struct proc *)0x1);
    CHECK_INT(proc_live_count(), 0);
    settle();
    CHECK_INT(r.reaps + r.exits + r.dones + r.eof, 0);
    /* Nothing left running: no child of ours at all. */
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);

    /* Not executable. */
    char path[] = "/tmp/ad-test-proc-noexec.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "#!/bin/sh\necho hi\n", 18) == 18);
        close(fd); /* mode 0600: not executable, even for root */
        char *argv2[] = {path, NULL};
        o = opts_for(argv2, &r);
        CHECK_INT(proc_spawn(&loop, &o, &cbs, &r, &p), UV_EACCES);
        settle();
        unlink(path);
    }
    CHECK_INT(proc_live_count(), 0);

    /* A missing cwd fails too. */
    char *argv3[] = {"/bin/true", NULL};
    o = opts_for(argv3, &r);
    o.cwd = "/nonexistent-dir-for-agent-dispatch";
    CHECK_INT(proc_spawn(&loop, &o, &cbs, &r, &p), UV_ENOENT);
    settle();
    CHECK_INT(r.reaps, 0);
    CHECK_INT(proc_live_count(), 0);
}

static void test_release_running(void)
{
    struct run r;
    CHECK_INT(spawn_sh(&r, "echo started; exec sleep 30", 0), 0);
    wait_lines(&r, 1, 5000);
    CHECK_INT(r.nlines, 1);
    int pid = proc_pid(r.p);
    CHECK(!pid_gone(pid));
    proc_release(r.p);
    r.p = NULL;
    CHECK(wait_for(&r.reaps, 5000));
    CHECK(wait_gone(pid, 2000));
    settle();                     /* returns only once every handle closed */
    CHECK_INT(r.reaps, 1);
    CHECK_INT(r.exits + r.dones + r.eof, 0); /* no callbacks after release */
    CHECK_INT(proc_live_count(), 0);
    run_free(&r);

    /* Released right after spawn, before anything was read. */
    CHECK_INT(spawn_sh(&r, "exec sleep 30", 0), 0);
    pid = proc_pid(r.p);
    proc_release(r.p);
    CHECK(wait_for(&r.reaps, 5000));
    settle();
    CHECK(pid_gone(pid));
    CHECK_INT(r.reaps, 1);
    run_free(&r);

    /* Released after exit but before the pipes closed. */
    CHECK_INT(spawn_sh(&r, "sleep 30 & echo $!; exit 0", 0), 0);
    CHECK(wait_for(&r.exits, 5000));
    proc_release(r.p);
    settle();
    CHECK_INT(r.reaps, 1);
    CHECK_INT(r.dones, 0);
    if (r.nlines == 1) {
        CHECK(wait_gone(atoi(r.lines[0]), 2000));
    }
    run_free(&r);
}

static void test_env_cwd_stdin(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c", "pwd; echo \"[$AD_TEST_VAR]\"; cat; "
                    "echo stdin-eof", NULL};
    char *env[] = {"AD_TEST_VAR=hello", "PATH=/usr/bin:/bin", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.cwd = "/";
    o.env = env;
    o.timeout_ms = 5000;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(wait_for(&r.dones, 6000));
    CHECK(!proc_timed_out(r.p));
    CHECK_INT(r.nlines, 3);
    if (r.nlines == 3) {
        CHECK_STR(r.lines[0], "/");
        CHECK_STR(r.lines[1], "[hello]");
        CHECK_STR(r.lines[2], "stdin-eof"); /* no stdin data: /dev/null */
    }
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* stdin data of 300 KiB (over the pipe's capacity and one argument's
 * limit) reaches the child whole, then EOF. */
static void test_stdin_data(void)
{
    struct run r;
    size_t n = 300 * 1024;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++) {
        data[i] = (char)('a' + i % 26);
    }
    char *argv[] = {"/bin/sh", "-c", "wc -c; echo done", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.stdin_data = data;
    o.stdin_len = n;
    o.timeout_ms = 10000;
    CHECK_INT(spawn(&r, &o), 0);
    free(data); /* copied by proc_spawn */
    CHECK(wait_for(&r.dones, 11000));
    CHECK_INT(r.nlines, 2);
    if (r.nlines == 2) {
        CHECK_INT(atol(r.lines[0]), (long)n);
        CHECK_STR(r.lines[1], "done");
    }
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* stdin_keep: after the data the pipe stays open (the child sees no EOF:
 * a reader waits until it gives up), and is closed when the child is done;
 * without it the child sees EOF right after the data. */
static void test_stdin_keep(void)
{
    for (int keep = 0; keep <= 1; keep++) {
        struct run r;
        char *argv[] = {"/bin/sh", "-c",
                        "head -c 5; echo; timeout 0.5 cat; echo \"status $?\"", NULL};
        struct proc_opts o = opts_for(argv, &r);
        o.stdin_data = "hello";
        o.stdin_len = 5;
        o.stdin_keep = keep;
        o.timeout_ms = 5000;
        CHECK_INT(spawn(&r, &o), 0);
        CHECK(wait_for(&r.dones, 6000));
        CHECK_INT(r.nlines, 2);
        if (r.nlines == 2) {
            CHECK_STR(r.lines[0], "hello");
            CHECK_STR(r.lines[1], keep ? "status 124" : "status 0");
        }
        proc_release(r.p);
        settle();
        run_free(&r);
    }
}

/* proc_write: more input after the data, in order, on a kept pipe (no
 * initial data needed); proc_close_stdin ends it after the queued writes;
 * a write after that, or after the child closed its input, is an error
 * (never a SIGPIPE). */
static void test_stdin_write(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c", "cat; echo end", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.max_line = 512 * 1024;
    o.stdin_keep = true;
    o.timeout_ms = 5000;
    CHECK_INT(spawn(&r, &o), 0);
    CHECK(proc_stdin_open(r.p));
    CHECK_INT(proc_write(r.p, "one\n", 4), 0);
    size_t big = 256 * 1024; /* more than a pipe holds: queued in order */
    char *data = malloc(big + 1);
    memset(data, 'x', big);
    data[big] = '\n';
    CHECK_INT(proc_write(r.p, data, big + 1), 0);
    free(data);
    CHECK_INT(proc_write(r.p, "three\n", 6), 0);
    proc_close_stdin(r.p);
    CHECK(!proc_stdin_open(r.p));
    CHECK_INT(proc_write(r.p, "late\n", 5), UV_EPIPE);
    CHECK(wait_for(&r.dones, 6000));
    CHECK_INT(r.nlines, 4);
    if (r.nlines == 4) {
        CHECK_STR(r.lines[0], "one");
        CHECK_INT(strlen(r.lines[1]), big);
        CHECK_STR(r.lines[2], "three");
        CHECK_STR(r.lines[3], "end");
    }
    proc_release(r.p);
    settle();
    run_free(&r);

    /* The child closes its input and lives on: the next write fails. */
    char *argv2[] = {"/bin/sh", "-c", "exec 0<&-; echo closed; sleep 2", NULL};
    o = opts_for(argv2, &r);
    o.stdin_keep = true;
    o.timeout_ms = 5000;
    CHECK_INT(spawn(&r, &o), 0);
    for (int i = 0; i < 200 && r.nlines == 0; i++) {
        spin(10);
    }
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) {
        rc = proc_write(r.p, "x\n", 2);
        spin(20);
    }
    CHECK_INT(rc, UV_EPIPE);
    CHECK(!proc_stdin_open(r.p));
    proc_kill(r.p, true);
    CHECK(wait_for(&r.dones, 6000));
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* A child that never reads its stdin wedges nothing: the timeout ends it
 * and every handle (the stdin pipe with its pending write included)
 * closes. */
static void test_stdin_never_read(void)
{
    struct run r;
    size_t n = 1024 * 1024;
    char *data = calloc(1, n);
    char *argv[] = {"/bin/sh", "-c", "echo up; exec sleep 30", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.stdin_data = data;
    o.stdin_len = n;
    o.timeout_ms = 300;
    CHECK_INT(spawn(&r, &o), 0);
    free(data);
    CHECK(wait_for(&r.dones, 5000));
    CHECK(proc_timed_out(r.p));
    proc_release(r.p);
    settle();
    run_free(&r);
}

/* A gated child exists (pid, its own group) but runs nothing before the
 * gate opens; released unopened, it never runs at all. */
static void test_gate(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c", "echo ran", NULL};
    struct proc_opts o = opts_for(argv, &r);
    o.gated = true;
    CHECK_INT(spawn(&r, &o), 0);
    int pid = proc_pid(r.p);
    CHECK(pid > 1 && getpgid(pid) == pid); /* recorded identity is final */
    spin(300);
    CHECK_INT(r.nlines + r.exits, 0);
    proc_open_gate(r.p);
    CHECK(wait_for(&r.dones, 5000));
    CHECK(r.nlines == 1 && strcmp(r.lines[0], "ran") == 0);
    CHECK_INT(proc_exit_status(r.p), 0);
    proc_release(r.p);
    settle();
    run_free(&r);

    char *touch[] = {"/bin/sh", "-c", "echo ran > /tmp/ad-test-gate.$PPID", NULL};
    o = opts_for(touch, &r);
    o.gated = true;
    char mark[64];
    snprintf(mark, sizeof mark, "/tmp/ad-test-gate.%d", (int)getpid());
    unlink(mark);
    CHECK_INT(spawn(&r, &o), 0);
    pid = proc_pid(r.p);
    proc_release(r.p);
    CHECK(wait_for(&r.reaps, 5000));
    settle();
    CHECK(wait_gone(pid, 2000));
    CHECK(access(mark, F_OK) != 0); /* never exec'd */
    unlink(mark);
    run_free(&r);
}

/* A server killed with SIGKILL takes its children with it: a helper
 * process spawns a long sleeper the way the server does, reports its
 * pid, and is SIGKILLed. */
static void test_dies_with_parent(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    pid_t helper = fork();
    if (helper == 0) {
        close(fds[0]);
        uv_loop_t l;
        uv_loop_init(&l);
        struct run r;
        char *argv[] = {"/bin/sleep", "30", NULL};
        struct proc_opts o = opts_for(argv, &r);
        memset(&r, 0, sizeof r);
        if (proc_spawn(&l, &o, &cbs, &r, &r.p) != 0) {
            _exit(1);
        }
        int pid = proc_pid(r.p);
        if (write(fds[1], &pid, sizeof pid) != sizeof pid) {
            _exit(1);
        }
        pause();
        _exit(0);
    }
    close(fds[1]);
    int child = 0;
    CHECK(read(fds[0], &child, sizeof child) == sizeof child);
    close(fds[0]);
    CHECK(child > 1 && !pid_gone(child));
    kill(helper, SIGKILL);
    waitpid(helper, NULL, 0);
    CHECK(wait_gone(child, 3000)); /* reaped by init once killed */
    if (child > 1 && !pid_gone(child)) {
        kill(child, SIGKILL);
    }
}

static void test_pause_resume(void)
{
    struct run r;
    char *argv[] = {"/bin/sh", "-c", "echo one; sleep 0.2; echo two; echo three",
                    NULL};
    struct proc_opts o = opts_for(argv, &r);
    memset(&r, 0, sizeof r);
    r.pause_at_first = 1;
    r.t_start = now_ms();
    CHECK_INT(proc_spawn(&loop, &o, &cbs, &r, &r.p), 0);
    CHECK(wait_for(&r.exits, 5000));
    spin(100);
    CHECK_INT(r.nlines, 1);           /* paused: the rest waits */
    CHECK_INT(r.dones, 0);
    r.pause_at_first = 0;
    proc_resume(r.p);
    CHECK(wait_for(&r.dones, 5000));
    CHECK_INT(r.nlines, 3);
    CHECK(r.nlines == 3 && strcmp(r.lines[2], "three") == 0);
    proc_release(r.p);
    settle();
    run_free(&r);
}

static void test_many_concurrent(void)
{
    enum { N = 8 };
    struct run rs[N];
    for (int i = 0; i < N; i++) {
        char script[64];
        snprintf(script, sizeof script, "echo child-%d", i);
        CHECK_INT(spawn_sh(&rs[i], script, 0), 0);
    }
    CHECK_INT(proc_live_count(), N);
    uint64_t end = now_ms() + 5000;
    for (int i = 0; i < N; i++) {
        wait_for(&rs[i].dones, end > now_ms() ? end - now_ms() : 1);
    }
    for (int i = 0; i < N; i++) {
        char want[32];
        snprintf(want, sizeof want, "child-%d", i);
        CHECK_INT(rs[i].dones, 1);
        CHECK_INT(rs[i].reaps, 1);
        CHECK(rs[i].nlines == 1 && strcmp(rs[i].lines[0], want) == 0);
        proc_release(rs[i].p);
    }
    settle();
    CHECK_INT(proc_live_count(), 0);
    for (int i = 0; i < N; i++) {
        run_free(&rs[i]);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (uv_loop_init(&loop) != 0) {
        return 2;
    }
    uv_timer_init(&loop, &tick);
    uv_unref((uv_handle_t *)&tick);

    test_two_lines();
    test_exit_code_and_final_line();
    test_stderr_head_tail();
    test_big_stderr_no_deadlock();
    test_long_line_skipped();
    test_timeout();
    test_kill();
    test_group_killed();
    test_drain_deadline();
    test_kill_all();
    test_spawn_failure();
    test_release_running();
    test_env_cwd_stdin();
    test_pause_resume();
    test_many_concurrent();
    test_stdin_data();
    test_stdin_never_read();
    test_stdin_keep();
    test_stdin_write();
    test_gate();
    test_dies_with_parent();

    CHECK_INT(proc_live_count(), 0);
    proc_shutdown();
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    /* Every handle of every proc was closed. */
    CHECK_INT(uv_loop_close(&loop), 0);
    return check_exit("test_proc");
}
