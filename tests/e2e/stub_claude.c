/*
 * stub_claude.c - a deterministic stand-in for the Claude Code CLI.
 *
 * Built as an executable named `claude` in ${CMAKE_BINARY_DIR}/stub so the
 * end-to-end tests can put that directory first on PATH.  It accepts the
 * print-mode command line agent-dispatch builds and answers like
 * `claude -p --output-format json|stream-json` would, without a network.
 *
 * Behaviour is steered by directives embedded in the prompt text:
 * `[stub:NAME]` or `[stub:NAME=VALUE]` (VALUE ends at the first `]`).
 * The directive table below lists them all.  If STUB_CLAUDE_LOG is set,
 * every invocation appends one JSON line describing itself to that file.
 *
 * It also implements `claude --version`, `claude mcp add-json` and
 * `claude mcp list` (backed by $HOME/.claude-stub-mcp.json).
 *
 * Only writes JSON, never parses it (apart from picking a "command" string
 * out of `mcp add-json` input).  Plain C11 + POSIX.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STUB_VERSION "2.1.328 (Claude Code stub)"

/* ------------------------------------------------------------------ */
/* Growable byte buffer and JSON string writer                         */
/* ------------------------------------------------------------------ */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *p = realloc(b->p, cap);
        if (!p) {
            abort();
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
static void buf_fmt(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Append s as a quoted JSON string.  Bytes >= 0x80 pass through untouched,
 * so valid UTF-8 stays valid and a deliberate 0xFF stays raw. */
static void buf_json(struct buf *b, const char *s)
{
    buf_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"':  buf_str(b, "\\\""); break;
        case '\\': buf_str(b, "\\\\"); break;
        case '\n': buf_str(b, "\\n"); break;
        case '\r': buf_str(b, "\\r"); break;
        case '\t': buf_str(b, "\\t"); break;
        default:
            if (c < 0x20) {
                buf_fmt(b, "\\u%04x", c);
            } else {
                buf_add(b, s, 1);
            }
        }
    }
    buf_add(b, "\"", 1);
}

/* JSON string or null. */
static void buf_json_opt(struct buf *b, const char *s)
{
    if (s) {
        buf_json(b, s);
    } else {
        buf_str(b, "null");
    }
}

/* ------------------------------------------------------------------ */
/* Output helpers: raw write(2), so every line is flushed immediately  */
/* ------------------------------------------------------------------ */

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return; /* reader went away: nothing useful to do */
        }
        p += w;
        n -= (size_t)w;
    }
}

static void say(int fd, const char *s) { write_all(fd, s, strlen(s)); }

/* Terminate the buffer with '\n', write it to stdout, and reset it. */
static void note_result_time(void);

static void emit_line(struct buf *b)
{
    buf_add(b, "\n", 1);
    write_all(STDOUT_FILENO, b->p, b->len);
    if (memmem(b->p, b->len, "\"type\":\"result\"", 15)) {
        note_result_time();
    }
    b->len = 0;
}

/* Live mode: sleeps also watch stdin (see the live section below). */
static bool live_mode, live_deaf, live_interrupted;
static bool live_in_turn, live_interrupt_next; /* an interrupt read before its turn */
static void live_poll(double secs);

static void sleep_s(double s)
{
    if (live_mode && !live_deaf) {
        live_poll(s > 0 ? s : 0);
        return;
    }
    if (s <= 0) {
        return;
    }
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static double now(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* STUB_CLAUDE_TIMES=FILE: one line per result line written, "START RESULT"
 * (CLOCK_MONOTONIC microseconds: main() entered, the result line written),
 * for the benchmark's split of a dispatch's time. */
static double main_t0;

static void note_result_time(void)
{
    const char *path = getenv("STUB_CLAUDE_TIMES");
    if (!path) {
        return;
    }
    double t = now(CLOCK_MONOTONIC);
    char line[64];
    int n = snprintf(line, sizeof line, "%.1f %.1f\n", main_t0 * 1e6, t * 1e6);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        write_all(fd, line, (size_t)n);
        close(fd);
    }
}

/* ------------------------------------------------------------------ */
/* Invocation log (STUB_CLAUDE_LOG)                                    */
/* ------------------------------------------------------------------ */

static bool stdin_is_devnull(void)
{
    struct stat in, nul;
    return fstat(STDIN_FILENO, &in) == 0 && stat("/dev/null", &nul) == 0 &&
           S_ISCHR(in.st_mode) && in.st_rdev == nul.st_rdev;
}

/* prompt: the one the stub answers (from argv, or from stdin like the
 * CLI when no prompt argument is given); NULL when none applies. */
/* When this process started (wall clock): the log's "time" and the
 * result's duration_ms both count from it, so [time, time + duration]
 * is the span the process lived, however long reading stdin took. */
static double started_real;

static void log_invocation(int argc, char **argv, const char *prompt)
{
    const char *path = getenv("STUB_CLAUDE_LOG");
    if (!path || !*path) {
        return;
    }
    static const char *const keys[] = {"AGENT_DISPATCH_DEPTH", "CLAUDECODE",
        "CLAUDE_CODE_SESSION_ID", "CLAUDE_CODE_ENTRYPOINT"};
    struct buf b = {0};
    char cwd[4096];
    buf_str(&b, "{\"argv\":[");
    for (int i = 0; i < argc; i++) {
        buf_str(&b, i ? "," : "");
        buf_json(&b, argv[i]);
    }
    buf_str(&b, "],\"prompt\":");
    buf_json_opt(&b, prompt);
    buf_str(&b, ",\"cwd\":");
    buf_json_opt(&b, getcwd(cwd, sizeof cwd));
    buf_fmt(&b, ",\"pid\":%ld,\"pgid\":%ld,\"env\":{", (long)getpid(), (long)getpgrp());
    bool first = true;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = getenv(keys[i]);
        if (v) {
            buf_str(&b, first ? "" : ",");
            buf_json(&b, keys[i]);
            buf_str(&b, ":");
            buf_json(&b, v);
            first = false;
        }
    }
    /* The trace context apart from env: tests compare env whole. */
    buf_str(&b, "},\"trace_env\":");
    buf_json_opt(&b, getenv("AGENT_DISPATCH_TRACE"));
    buf_fmt(&b, ",\"stdin_is_devnull\":%s,\"time\":%.6f}\n",
            stdin_is_devnull() ? "true" : "false", started_real);
    /* One write() on an O_APPEND fd: concurrent stubs never interleave. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        write_all(fd, b.p, b.len);
        close(fd);
    }
    free(b.p);
}

/* ------------------------------------------------------------------ */
/* Prompt directives                                                   */
/* ------------------------------------------------------------------ */

struct directives {
    /* flags */
    bool no_result, is_error, null_result, budget, garbage, invalid_utf8;
    bool lone_surrogate;
    bool ignore_term, hang, old_cli, echo_argv, job_record;
    bool deaf;
    /* strings (NULL = absent) */
    const char *reply, *json, *stderr_text, *stdout_text, *errors, *deny;
    const char *tool, *echo_env, *structured, *sh;
    const char *ask;
    /* relay: the [stub:ask=...] spec read from a file */
    const char *ask_file;
    double ask_sleep; /* relay: seconds to go on working after the answers */
    const char *until_file; /* answer only once this path exists */
    const char *mark_file;  /* created once the result line is written */
    /* numbers (negative = absent) */
    double sleep, interval, grandchild, escape, cost, linger;
    long progress, exit_code, turns, stderr_bytes, huge, huge_line, spew, die;
};

enum dkind { D_FLAG, D_STR, D_DBL, D_LONG };

static const struct {
    const char *name;
    enum dkind kind;
    size_t off;
} directive_table[] = {
#define D(n, k, f) {n, k, offsetof(struct directives, f)}
    D("reply", D_STR, reply),            /* result text, exactly */
    D("json", D_STR, json),              /* result text (response_format tests) */
    D("sleep", D_DBL, sleep),            /* seconds before answering */
    D("progress", D_LONG, progress),     /* N "progress i/N" assistant lines */
    D("interval", D_DBL, interval),      /* seconds between progress lines */
    D("tool", D_STR, tool),              /* a tool_use assistant line */
    D("exit", D_LONG, exit_code),        /* exit status */
    D("stderr", D_STR, stderr_text),     /* text on stderr */
    D("stderr_bytes", D_LONG, stderr_bytes), /* N 'e' bytes on stderr first */
    D("no_result", D_FLAG, no_result),   /* no result line */
    D("stdout", D_STR, stdout_text),     /* raw text instead of any JSON */
    D("is_error", D_FLAG, is_error),     /* error_during_execution result */
    D("errors", D_STR, errors),          /* "A|B" -> "errors":["A","B"] */
    D("null_result", D_FLAG, null_result), /* "result":null */
    D("budget", D_FLAG, budget),         /* error_max_budget_usd, exit 1 */
    D("cost", D_DBL, cost),              /* total_cost_usd */
    D("turns", D_LONG, turns),           /* num_turns */
    D("deny", D_STR, deny),              /* "Bash,Edit" -> permission_denials */
    D("huge", D_LONG, huge),             /* result text of N 'x' bytes */
    D("huge_line", D_LONG, huge_line),   /* an N-byte assistant line */
    D("garbage", D_FLAG, garbage),       /* non-JSON/odd lines on stdout first */
    D("invalid_utf8", D_FLAG, invalid_utf8), /* raw 0xFF inside the result */
    D("lone_surrogate", D_FLAG, lone_surrogate), /* "\ud83d" alone in the result */
    D("grandchild", D_DBL, grandchild),  /* fork a sleeper, same pgrp */
    D("escape", D_DBL, escape),          /* fork a sleeper that setsid()s */
    D("ignore_term", D_FLAG, ignore_term), /* SIGTERM ignored */
    D("hang", D_FLAG, hang),             /* sleep until killed */
    D("old_cli", D_FLAG, old_cli),       /* reject --session-id */
    D("echo_argv", D_FLAG, echo_argv),   /* result = argv[1..] joined by ' ' (+ a stdin prompt) */
    D("echo_env", D_STR, echo_env),      /* result = $NAME or "<unset>" */
    D("sh", D_STR, sh),                  /* result = stdout of /bin/sh -c VALUE (a nested agent-dispatch) */
    D("spew", D_LONG, spew),             /* N bytes of 1 KiB non-JSON lines on stdout first */
    D("job_record", D_FLAG, job_record), /* result = what the job records said of us at start */
    D("structured", D_STR, structured),  /* with --json-schema: "structured_output":VALUE (raw JSON, no ']') */
    D("die", D_LONG, die),               /* SIGKILL itself after N progress lines */
    D("linger", D_DBL, linger),          /* seconds between the result line and the exit */
    D("until_file", D_STR, until_file),  /* after sleep: wait until this path exists (a test's
                                          * release, where a duration would race a slow machine) */
    D("mark_file", D_STR, mark_file),    /* created once the result is written (before linger) */
    /* live mode (--input-format stream-json) */
    D("deaf", D_FLAG, deaf),             /* interrupts are not heard during the turn */
    D("ask", D_STR, ask),                /* "TOOL JSON": a can_use_tool control_request;
                                          * the result tells the answer received */
    /* relay (tests/e2e/relay.test.js) */
    D("ask_file", D_STR, ask_file),      /* as ask, "TOOL JSON" read from this file;
                                          * with ask too, it asks first, then ask asks */
    D("ask_sleep", D_DBL, ask_sleep),    /* seconds of work after the answers */
#undef D
};

/* The ']' that closes the directive whose name starts at name, or NULL.
 * A value may be JSON (ask=TOOL {"command":"ls [a]"}): ']' inside a JSON
 * string or a bracket the value opened does not close the directive. */
static char *directive_end(char *name)
{
    int depth = 0;
    bool in_str = false;
    for (char *p = name; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1]) {
                p++;
            } else if (*p == '"') {
                in_str = false;
            }
        } else if (*p == '"') {
            in_str = true;
        } else if (*p == '[' || *p == '{') {
            depth++;
        } else if (*p == '}' && depth > 0) {
            depth--;
        } else if (*p == ']') {
            if (depth == 0) {
                return p;
            }
            depth--;
        }
    }
    return NULL;
}

/* Parse every [stub:...] in prompt.  Values point into *storage (a copy of
 * the prompt, owned by the caller).  Unknown names get a warning. */
static void parse_directives(const char *prompt, struct directives *d, char **storage)
{
    memset(d, 0, sizeof *d);
    d->sleep = d->interval = d->grandchild = d->escape = d->cost = d->linger = d->ask_sleep = -1;
    d->progress = d->exit_code = d->turns = d->stderr_bytes = -1;
    d->huge = d->huge_line = d->spew = d->die = -1;

    char *s = *storage = strdup(prompt);
    while ((s = strstr(s, "[stub:")) != NULL) {
        char *name = s + 6, *end = directive_end(name);
        if (!end) {
            break;
        }
        *end = '\0';
        char *val = strchr(name, '=');
        if (val) {
            *val++ = '\0';
        }
        size_t i, n = sizeof directive_table / sizeof directive_table[0];
        for (i = 0; i < n && strcmp(directive_table[i].name, name) != 0; i++) {
        }
        if (i == n) {
            fprintf(stderr, "stub claude: unknown directive [stub:%s]\n", name);
        } else {
            char *field = (char *)d + directive_table[i].off;
            switch (directive_table[i].kind) {
            case D_FLAG: *(bool *)field = true; break;
            case D_STR: *(const char **)field = val ? val : ""; break;
            case D_DBL: *(double *)field = val ? strtod(val, NULL) : 0; break;
            case D_LONG: *(long *)field = val ? strtol(val, NULL, 10) : 0; break;
            }
        }
        s = end + 1;
    }
}

/* Copy of s with every [stub:...] removed. */
static char *strip_directives(const char *s)
{
    struct buf b = {0};
    buf_str(&b, "");
    const char *p;
    while ((p = strstr(s, "[stub:")) != NULL && directive_end((char *)p + 6)) {
        buf_add(&b, s, (size_t)(p - s));
        s = directive_end((char *)p + 6) + 1;
    }
    buf_str(&b, s);
    return b.p;
}

/* Start of the text after the last line equal to `marker` (trailing blanks
 * allowed), or NULL. */
static const char *after_last_line(const char *text, const char *marker)
{
    const char *found = NULL;
    size_t mlen = strlen(marker);
    for (const char *line = text; line; ) {
        const char *nl = strchr(line, '\n');
        const char *e = nl ? nl : line + strlen(line);
        while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) {
            e--;
        }
        if ((size_t)(e - line) == mlen && memcmp(line, marker, mlen) == 0) {
            found = nl ? nl + 1 : line + strlen(line);
        }
        line = nl ? nl + 1 : NULL;
    }
    return found;
}

/* The task part of a prompt ("## Task" section, legacy "Task:", or all of
 * it), without directives and surrounding whitespace.  Caller frees. */
static char *extract_task(const char *prompt)
{
    char *clean = strip_directives(prompt);
    const char *t = after_last_line(clean, "## Task");
    if (!t) {
        t = after_last_line(clean, "Task:");
    }
    if (!t) {
        t = clean;
    }
    while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n') {
        t++;
    }
    char *task = strdup(t);
    size_t n = strlen(task);
    while (n > 0 && strchr(" \t\r\n", task[n - 1])) {
        task[--n] = '\0';
    }
    free(clean);
    return task;
}

/* ------------------------------------------------------------------ */
/* `claude mcp ...` backed by $HOME/.claude-stub-mcp.json              */
/* ------------------------------------------------------------------ */

/* Decode the JSON string starting at the quote *p into a new string
 * (simple escapes and \u00XX only; enough for what the stub writes). */
static char *json_decode_string(const char *p)
{
    if (*p != '"') {
        return NULL;
    }
    struct buf b = {0};
    buf_str(&b, "");
    for (p++; *p && *p != '"'; p++) {
        char c = *p;
        if (c == '\\' && p[1]) {
            c = *++p;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == 'u' && strlen(p) >= 5) {
                char hex[5] = {p[1], p[2], p[3], p[4], 0};
                c = (char)strtol(hex, NULL, 16);
                p += 4;
            }
        }
        buf_add(&b, &c, 1);
    }
    return b.p;
}

/* Value of the string member "key" in a flat-ish JSON object, or NULL. */
static char *json_get_string(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) {
        return NULL;
    }
    p += strlen(pat);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ':') {
        p++;
    }
    return json_decode_string(p);
}

/* Calls fn(name, command, arg) for every registered server; returns the
 * number of servers. */
static int mcp_each(const char *path, void (*fn)(const char *, const char *, void *),
                    void *arg)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    char *line = NULL;
    size_t cap = 0;
    int count = 0;
    while (getline(&line, &cap, f) > 0) {
        char *name = json_get_string(line, "name");
        char *cmd = json_get_string(line, "command");
        if (name) {
            fn(name, cmd ? cmd : "", arg);
            count++;
        }
        free(name);
        free(cmd);
    }
    free(line);
    fclose(f);
    return count;
}

static void mcp_print(const char *name, const char *cmd, void *arg)
{
    (void)arg;
    printf("%s: %s - \xe2\x9c\x94 Connected\n", name, cmd);
}

struct mcp_query {
    const char *want;
    bool found;
};

static void mcp_find(const char *name, const char *cmd, void *arg)
{
    struct mcp_query *q = arg;
    (void)cmd;
    q->found |= strcmp(q->want, name) == 0;
}

static int mcp_main(int argc, char **argv)
{
    const char *home = getenv("HOME");
    if (!home) {
        fprintf(stderr, "stub claude: HOME is not set\n");
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/.claude-stub-mcp.json", home);

    if (argc >= 3 && strcmp(argv[2], "list") == 0) {
        printf("Checking MCP server health...\n\n");
        if (mcp_each(path, mcp_print, NULL) == 0) {
            printf("No MCP servers configured. Use `claude mcp add` to add a server.\n");
        }
        return 0;
    }
    if (argc >= 3 && strcmp(argv[2], "add-json") == 0) {
        const char *pos[2] = {NULL, NULL};
        const char *scope = "local";
        int npos = 0;
        for (int i = 3; i < argc; i++) {
            if ((strcmp(argv[i], "--scope") == 0 || strcmp(argv[i], "-s") == 0) &&
                i + 1 < argc) {
                scope = argv[++i];
            } else if (strncmp(argv[i], "--scope=", 8) == 0) {
                scope = argv[i] + 8;
            } else if (argv[i][0] == '-') {
                fprintf(stderr, "error: unknown option '%s'\n", argv[i]);
                return 1;
            } else if (npos < 2) {
                pos[npos++] = argv[i];
            }
        }
        if (npos < 2) {
            fprintf(stderr, "error: missing required argument '%s'\n",
                    npos ? "json" : "name");
            return 1;
        }
        char *cmd = json_get_string(pos[1], "command");
        if (!cmd) {
            fprintf(stderr, "Error: Invalid configuration: missing \"command\"\n");
            return 1;
        }
        struct mcp_query q = {pos[0], false};
        mcp_each(path, mcp_find, &q);
        if (q.found) {
            fprintf(stderr, "MCP server %s already exists in %s config\n", pos[0], scope);
            free(cmd);
            return 1;
        }
        struct buf b = {0};
        buf_str(&b, "{\"name\":");
        buf_json(&b, pos[0]);
        buf_str(&b, ",\"command\":");
        buf_json(&b, cmd);
        buf_str(&b, ",\"scope\":");
        buf_json(&b, scope);
        buf_str(&b, ",\"config\":");
        buf_json(&b, pos[1]); /* stored as a string: we never trust its shape */
        buf_str(&b, "}\n");
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            write_all(fd, b.p, b.len);
            close(fd);
            printf("Added stdio MCP server %s to %s config\n", pos[0], scope);
        } else {
            perror(path);
        }
        free(b.p);
        free(cmd);
        return fd >= 0 ? 0 : 1;
    }
    fprintf(stderr, "error: unknown command '%s'\n", argc >= 3 ? argv[2] : "");
    return 1;
}

/* ------------------------------------------------------------------ */
/* Command line                                                        */
/* ------------------------------------------------------------------ */

struct args {
    bool print, verbose, version, fork_session, cont;
    const char *format, *session_id, *resume, *budget, *model, *permission_mode;
    const char *json_schema;
    const char *input_format, *permission_prompt_tool;
    const char *prompt;
};

/* Real flags the stub accepts and ignores.  ARG_MANY consumes following
 * arguments up to the next one starting with '-' (commander's variadic
 * options, which is why callers must end options with `--`). */
enum argkind { ARG_NONE, ARG_ONE, ARG_MANY };
static const struct { const char *name; enum argkind kind; } ignored_flags[] = {
    {"--allowedTools", ARG_MANY}, {"--allowed-tools", ARG_MANY},
    {"--disallowedTools", ARG_MANY}, {"--disallowed-tools", ARG_MANY},
    {"--add-dir", ARG_MANY}, {"--mcp-config", ARG_MANY},
    {"--append-system-prompt", ARG_ONE}, {"--system-prompt", ARG_ONE},
    {"--fallback-model", ARG_ONE}, {"--settings", ARG_ONE},
    {"--strict-mcp-config", ARG_NONE}, {"--dangerously-skip-permissions", ARG_NONE},
    {"--include-partial-messages", ARG_NONE}, {"--replay-user-messages", ARG_NONE},
};

static bool is_uuid(const char *s)
{
    static const char pat[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (strlen(s) != sizeof pat - 1) {
        return false;
    }
    for (size_t i = 0; pat[i]; i++) {
        bool hex = strchr("0123456789abcdefABCDEF", s[i]) != NULL;
        if (pat[i] == '-' ? s[i] != '-' : !hex) {
            return false;
        }
    }
    return true;
}

static void new_uuid(char out[37])
{
    unsigned char r[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, r, sizeof r) != (ssize_t)sizeof r) {
        srand((unsigned)getpid() ^ (unsigned)time(NULL));
        for (size_t i = 0; i < sizeof r; i++) {
            r[i] = (unsigned char)rand();
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    char *o = out;
    for (int i = 0; i < 16; i++) {
        o += sprintf(o, "%s%02x", (i == 4 || i == 6 || i == 8 || i == 10) ? "-" : "", r[i]);
    }
}

/* Returns 0, or prints the CLI's error and returns 1. */
static int parse_args(int argc, char **argv, struct args *a)
{
    memset(a, 0, sizeof *a);
    a->format = "text";
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--") == 0) {
            if (i + 1 < argc) {
                a->prompt = argv[i + 1];
            }
            break;
        }
        if (arg[0] != '-' || arg[1] == '\0') {
            if (!a->prompt) {
                a->prompt = argv[i];
            }
            continue;
        }
        /* --flag=value: compare only the name part. */
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(eq ? eq - arg : 63), arg);
        arg = name;
        const char **slot = NULL;
        if (!strcmp(arg, "-p") || !strcmp(arg, "--print")) a->print = true;
        else if (!strcmp(arg, "--verbose")) a->verbose = true;
        else if (!strcmp(arg, "-v") || !strcmp(arg, "--version")) a->version = true;
        else if (!strcmp(arg, "--fork-session")) a->fork_session = true;
        else if (!strcmp(arg, "-c") || !strcmp(arg, "--continue")) a->cont = true;
        else if (!strcmp(arg, "--output-format")) slot = &a->format;
        else if (!strcmp(arg, "--session-id")) slot = &a->session_id;
        else if (!strcmp(arg, "-r") || !strcmp(arg, "--resume")) slot = &a->resume;
        else if (!strcmp(arg, "--max-budget-usd")) slot = &a->budget;
        else if (!strcmp(arg, "--model")) slot = &a->model;
        else if (!strcmp(arg, "--permission-mode")) slot = &a->permission_mode;
        else if (!strcmp(arg, "--json-schema")) slot = &a->json_schema;
        else if (!strcmp(arg, "--input-format")) slot = &a->input_format;
        else if (!strcmp(arg, "--permission-prompt-tool")) slot = &a->permission_prompt_tool;
        else {
            size_t k, n = sizeof ignored_flags / sizeof ignored_flags[0];
            for (k = 0; k < n && strcmp(ignored_flags[k].name, arg) != 0; k++) {
            }
            if (k == n) {
                fprintf(stderr, "error: unknown option '%s'\n", argv[i]);
                return 1;
            }
            if (ignored_flags[k].kind == ARG_NONE || eq) {
                continue;
            }
            if (i + 1 >= argc) {
                fprintf(stderr, "error: option '%s' argument missing\n", arg);
                return 1;
            }
            i++;
            while (ignored_flags[k].kind == ARG_MANY && i + 1 < argc &&
                   argv[i + 1][0] != '-') {
                i++;
            }
            continue;
        }
        if (slot) {
            if (eq) {
                *slot = eq + 1;
            } else if (i + 1 < argc) {
                *slot = argv[++i];
            } else {
                fprintf(stderr, "error: option '%s' argument missing\n", arg);
                return 1;
            }
        }
    }
    return 0;
}

/* Read all of stdin (the CLI's fallback when no prompt argument is given). */
static char *read_stdin(void)
{
    struct buf b = {0};
    buf_str(&b, "");
    char chunk[4096];
    while (!isatty(STDIN_FILENO)) {
        ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
        if (n > 0) {
            buf_add(&b, chunk, (size_t)n);
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    return b.p;
}

/* ------------------------------------------------------------------ */
/* Answering                                                           */
/* ------------------------------------------------------------------ */

struct ctx {
    const struct args *a;
    const struct directives *d;
    const char *session_id;
    const char *model;
    double t0;
};

static int msg_no; /* numbers the assistant messages: msg_stub_1, ... */

static void assistant_build(const struct ctx *c, const char *text, int id, struct buf *b)
{
    buf_fmt(b, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_stub_%d\","
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":", id);
    buf_json(b, c->model);
    buf_str(b, ",\"content\":[{\"type\":\"text\",\"text\":");
    buf_json(b, text);
    buf_str(b, "}]},\"parent_tool_use_id\":null,\"session_id\":");
    buf_json(b, c->session_id);
    buf_str(b, "}");
}

static void assistant_text(const struct ctx *c, const char *text)
{
    struct buf b = {0};
    assistant_build(c, text, ++msg_no, &b);
    emit_line(&b);
    free(b.p);
}

/* An assistant text line that is exactly `bytes` long without its '\n'
 * (or as short as possible if `bytes` is below the JSON overhead). */
static void assistant_huge(const struct ctx *c, size_t bytes)
{
    struct buf b = {0};
    int id = ++msg_no;
    assistant_build(c, "", id, &b);
    size_t n = bytes > b.len ? bytes - b.len : 0;
    char *big = malloc(n + 1);
    memset(big, 'y', n);
    big[n] = '\0';
    b.len = 0;
    assistant_build(c, big, id, &b);
    emit_line(&b);
    free(big);
    free(b.p);
}

static void assistant_tool(const struct ctx *c, const char *tool)
{
    struct buf b = {0};
    buf_str(&b, "{\"type\":\"assistant\",\"message\":{\"id\":\"msg_stub_tool\","
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    buf_json(&b, c->model);
    buf_str(&b, ",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_stub_1\",\"name\":");
    buf_json(&b, tool);
    buf_str(&b, ",\"input\":{}}]},\"parent_tool_use_id\":null,\"session_id\":");
    buf_json(&b, c->session_id);
    buf_str(&b, "}");
    emit_line(&b);
    free(b.p);
}

/* The one-line result object.  reply == NULL gives "result":null. */
static void result_line(const struct ctx *c, const char *reply)
{
    const struct directives *d = c->d;
    struct buf b = {0};
    if (d->budget) {
        buf_str(&b, "{\"type\":\"result\",\"subtype\":\"error_max_budget_usd\","
                "\"is_error\":true,\"result\":null,\"errors\":[");
        char msg[256];
        snprintf(msg, sizeof msg, "Reached maximum budget ($%s)",
                 c->a->budget ? c->a->budget : "0");
        buf_json(&b, msg);
        buf_fmt(&b, "],\"terminal_reason\":\"budget_exhausted\",\"total_cost_usd\":%g,"
                "\"num_turns\":%ld,\"session_id\":",
                d->cost >= 0 ? d->cost : 0.000583, d->turns >= 0 ? d->turns : 1);
        buf_json(&b, c->session_id);
        buf_str(&b, "}");
        emit_line(&b);
        free(b.p);
        return;
    }
    buf_fmt(&b, "{\"type\":\"result\",\"subtype\":\"%s\",\"is_error\":%s,\"result\":",
            d->is_error ? "error_during_execution" : "success",
            d->is_error ? "true" : "false");
    buf_json_opt(&b, d->null_result ? NULL : reply);
    if (d->lone_surrogate && !d->null_result) {
        /* An unpaired UTF-16 escape before the closing quote, as the real
         * CLI writes when a model's text is cut inside a surrogate pair. */
        b.len--;
        buf_str(&b, " \\ud83d cut\"");
    }
    if (d->errors) {
        buf_str(&b, ",\"errors\":[");
        char *copy = strdup(d->errors), *save = NULL;
        bool first = true;
        for (char *e = strtok_r(copy, "|", &save); e; e = strtok_r(NULL, "|", &save)) {
            buf_str(&b, first ? "" : ",");
            buf_json(&b, e);
            first = false;
        }
        free(copy);
        buf_str(&b, "]");
    }
    if (d->structured && c->a->json_schema) {
        /* As the CLI does when the model's StructuredOutput input matched
         * the schema (the stub does not check it: the test says so). */
        buf_str(&b, ",\"structured_output\":");
        buf_str(&b, d->structured);
    }
    buf_str(&b, ",\"session_id\":");
    buf_json(&b, c->session_id);
    buf_fmt(&b, ",\"total_cost_usd\":%g,\"duration_ms\":%ld,\"num_turns\":%ld,"
            "\"permission_denials\":[",
            d->cost >= 0 ? d->cost : 0.0012,
            (long)((now(CLOCK_MONOTONIC) - c->t0) * 1000),
            d->turns >= 0 ? d->turns : 1);
    if (d->deny) {
        char *copy = strdup(d->deny), *save = NULL;
        int n = 0;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            buf_str(&b, n ? ",{\"tool_name\":" : "{\"tool_name\":");
            buf_json(&b, t);
            buf_fmt(&b, ",\"tool_use_id\":\"toolu_%d\",\"tool_input\":{}}", ++n);
        }
        free(copy);
    }
    buf_str(&b, "]}");
    emit_line(&b);
    free(b.p);
}

/* Fork a child that keeps stdout/stderr open and sleeps; with detach it
 * leaves the process group via setsid() first. */
static void spawn_sleeper(double secs, bool detach)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (detach) {
            setsid();
        }
        /* A plain sleep: in live mode sleep_s reads stdin, and the sleeper
         * would take messages (an interrupt) meant for the stub. */
        live_mode = false;
        sleep_s(secs);
        _exit(0);
    }
    if (pid < 0) {
        perror("stub claude: fork");
        return;
    }
    fprintf(stderr, "grandchild pid %ld\n", (long)pid);
    const char *pidfile = getenv("STUB_CLAUDE_PIDFILE");
    if (pidfile && *pidfile) {
        FILE *f = fopen(pidfile, "w");
        if (f) {
            fprintf(f, "%ld\n", (long)pid);
            fclose(f);
        }
    }
}

/* [stub:job_record]: at its very start, the stub looks for a job record in
 * $AGENT_DISPATCH_JOBS_DIR that already names it (status "running" and its
 * pid): "named running" or "not named". */
static const char *job_record_seen = "not checked";

/* The prompt came on stdin (no prompt argument), as agent-dispatch sends it. */
static bool prompt_from_stdin;

static void check_job_record(void)
{
    const char *dir = getenv("AGENT_DISPATCH_JOBS_DIR");
    DIR *dp = dir ? opendir(dir) : NULL;
    job_record_seen = "not named";
    if (!dp) {
        return;
    }
    char want[64];
    snprintf(want, sizeof want, "\"pid\":%ld,", (long)getpid());
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) {
            continue;
        }
        static char text[1 << 20];
        size_t len = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        text[len] = '\0';
        if (strstr(text, want) && strstr(text, "\"status\":\"running\"")) {
            job_record_seen = "named running";
        }
    }
    closedir(dp);
}

/* The result text, from the highest-priority directive that sets it. */
static char *make_reply(const struct directives *d, const char *prompt, int argc,
                        char **argv)
{
    struct buf b = {0};
    buf_str(&b, "");
    if (d->job_record) {
        buf_str(&b, job_record_seen);
    } else if (d->echo_argv) {
        for (int i = 1; i < argc; i++) {
            buf_str(&b, i > 1 ? " " : "");
            buf_str(&b, argv[i]);
        }
        if (prompt_from_stdin) {
            buf_str(&b, " ");
            buf_str(&b, prompt);
        }
    } else if (d->echo_env) {
        const char *v = getenv(d->echo_env);
        buf_str(&b, v ? v : "<unset>");
    } else if (d->sh) {
        FILE *f = popen(d->sh, "r");
        char chunk[4096];
        size_t n;
        while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
            buf_add(&b, chunk, n);
        }
        if (f) {
            pclose(f);
        }
    } else if (d->json) {
        buf_str(&b, d->json);
    } else if (d->reply) {
        buf_str(&b, d->reply);
    } else if (d->huge >= 0) {
        for (long i = 0; i < d->huge; i++) {
            buf_add(&b, "x", 1);
        }
    } else {
        char *task = extract_task(prompt);
        buf_str(&b, "stub ok: ");
        buf_str(&b, task);
        free(task);
    }
    return b.p;
}

/* The CLI's own argument checks, in its order.  Returns 0 or prints the
 * error and returns 1. */
static int check_args(const struct args *a, const struct directives *d, const char *prompt)
{
    const char *msg = NULL;
    bool stream = strcmp(a->format, "stream-json") == 0;
    if (strcmp(a->format, "text") && strcmp(a->format, "json") && !stream) {
        fprintf(stderr, "error: option '--output-format <format>' argument '%s' is "
                "invalid. Allowed choices are text, json, stream-json.\n", a->format);
        return 1;
    }
    if (d->old_cli && a->session_id) {
        msg = "error: unknown option '--session-id'";
    } else if (stream && !a->verbose) {
        msg = "Error: When using --print, --output-format=stream-json requires --verbose";
    } else if (a->session_id && (a->resume || a->cont) && !a->fork_session) {
        msg = "Error: --session-id with --continue or --resume also needs --fork-session.";
    } else if (a->session_id && !is_uuid(a->session_id)) {
        msg = "Error: Invalid session ID. Must be a valid UUID.";
    } else if (!*prompt) {
        msg = "Error: Input must be provided either through stdin or as a prompt "
              "argument when using --print";
    }
    if (msg) {
        fprintf(stderr, "%s\n", msg);
    }
    return msg ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Live mode: --input-format stream-json (the CLI's control channel)   */
/* ------------------------------------------------------------------ */
/* User messages arrive as JSON lines on stdin; each starts a turn that
 * answers like print mode (the same directives, read from that message)
 * and ends with a result line; the process then waits for the next one
 * and exits 0 at the end of stdin (after the queued messages, as the CLI
 * does). A message that arrives during a turn is queued for the next turn.
 * Turn 1 answers exactly as print mode would; turn k > 1 answers with the
 * previous answer, a line "+ " and the task of message k, so every
 * message received shows in the last result. A control_request
 * {"subtype":"interrupt"} is acknowledged (control_response, success) and
 * ends the running turn as the CLI does: a user line "[Request
 * interrupted by user]" and a result with subtype error_during_execution,
 * is_error true, terminal_reason aborted_streaming and no "result";
 * [stub:deaf] turns off listening during the turn (the interrupt is seen
 * only after it). [stub:ask=TOOL JSON] sends a can_use_tool control_request
 * (TOOL #JSON: a tool_name that is that JSON value, not a string)
 * (with --permission-prompt-tool stdio) and waits for the control_response:
 * the result is "asked TOOL: allow updatedInput=<raw JSON>" or "asked TOOL:
 * deny message=<text>" (or "... stream closed" when stdin ended first). A
 * turn whose directives end the process in print mode (exit=, die,
 * no_result, stdout=, a failure status) ends it here too, after that turn. */
static struct buf live_in;        /* stdin bytes not yet a whole line */
static char **live_queue;         /* user messages waiting for a turn */
static size_t live_queued, live_queue_cap;
static bool live_eof;
static char *live_response;       /* the latest control_response line */
static char *live_override;       /* the reply of a turn k > 1 */
static char *live_last_reply;     /* the reply the last turn gave */

static void live_send(const char *prefix, const char *id, const char *suffix)
{
    struct buf b = {0};
    buf_str(&b, prefix);
    buf_json_opt(&b, id);
    buf_str(&b, suffix);
    emit_line(&b);
    free(b.p);
}

static void live_line(const char *line)
{
    if (strstr(line, "\"control_request\"")) {
        char *id = json_get_string(line, "request_id");
        live_send("{\"type\":\"control_response\",\"response\":{\"subtype\":\"success\","
                  "\"request_id\":", id, ",\"response\":{\"still_queued\":[]}}}");
        free(id);
        if (strstr(line, "\"interrupt\"")) {
            live_interrupted = true;
            /* Read before the turn it was sent for began: it applies to
             * that turn, as the CLI reads its input in order. */
            if (!live_in_turn && live_queued > 0) {
                live_interrupt_next = true;
            }
        }
    } else if (strstr(line, "\"control_response\"")) {
        free(live_response);
        live_response = strdup(line);
    } else if (strstr(line, "\"user\"")) {
        char *text = json_get_string(line, "content");
        if (!text) {
            text = json_get_string(line, "text");
        }
        if (live_queued == live_queue_cap) {
            live_queue_cap = live_queue_cap ? live_queue_cap * 2 : 8;
            live_queue = realloc(live_queue, live_queue_cap * sizeof *live_queue);
        }
        live_queue[live_queued++] = text ? text : strdup("");
    }
}

/* Reads what stdin has within secs (secs < 0: until one read), handling
 * whole lines; returns early when an interrupt arrives. */
static void live_poll(double secs)
{
    double end = now(CLOCK_MONOTONIC) + (secs > 0 ? secs : 0);
    do {
        if (live_interrupted && secs >= 0) {
            return;
        }
        double left = end - now(CLOCK_MONOTONIC);
        if (live_eof) {
            if (secs > 0 && left > 0) {
                struct timespec ts = {(time_t)left, (long)((left - (double)(time_t)left) * 1e9)};
                nanosleep(&ts, NULL);
            }
            return;
        }
        struct pollfd pfd = {STDIN_FILENO, POLLIN, 0};
        int ms = secs < 0 ? -1 : left > 0 ? (int)(left * 1000) + 1 : 0;
        int r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r > 0) {
            char chunk[65536];
            ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
            if (n <= 0) {
                live_eof = true;
            } else {
                buf_add(&live_in, chunk, (size_t)n);
                char *nl;
                while ((nl = memchr(live_in.p, '\n', live_in.len)) != NULL) {
                    *nl = '\0';
                    live_line(live_in.p);
                    size_t used = (size_t)(nl - live_in.p) + 1;
                    memmove(live_in.p, nl + 1, live_in.len - used);
                    live_in.len -= used;
                }
            }
            if (secs < 0) {
                return;
            }
        }
    } while (now(CLOCK_MONOTONIC) < end);
}

/* The next user message (caller frees), or NULL at the end of stdin. */
static char *live_next(void)
{
    while (live_queued == 0 && !live_eof) {
        live_poll(-1);
    }
    if (live_queued == 0) {
        return NULL;
    }
    char *m = live_queue[0];
    memmove(live_queue, live_queue + 1, --live_queued * sizeof *live_queue);
    return m;
}

/* The end of an interrupted turn, as the CLI writes it. */
static int live_aborted(const struct ctx *c)
{
    live_send("{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":[{\"type\":"
              "\"text\",\"text\":\"[Request interrupted by user]\"}]},"
              "\"parent_tool_use_id\":null,\"session_id\":", c->session_id, "}");
    struct buf b = {0};
    buf_fmt(&b, "{\"type\":\"result\",\"subtype\":\"error_during_execution\","
            "\"duration_ms\":%ld,\"is_error\":true,\"num_turns\":1,\"session_id\":",
            (long)((now(CLOCK_MONOTONIC) - c->t0) * 1000));
    buf_json(&b, c->session_id);
    buf_str(&b, ",\"total_cost_usd\":0,\"permission_denials\":[],"
            "\"terminal_reason\":\"aborted_streaming\",\"errors\":[\"[ede_diagnostic] "
            "result_type=user last_content_type=n/a stop_reason=null\"]}");
    emit_line(&b);
    free(b.p);
    free(live_last_reply);
    live_last_reply = NULL;
    return 0;
}

/* The raw JSON value of member key in line (an object or other value,
 * strings skipped over), as a new string; NULL when absent. */
static char *raw_member(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p) {
        return NULL;
    }
    p += strlen(pat);
    const char *q = p;
    int depth = 0;
    bool str = false;
    for (; *q; q++) {
        if (str) {
            if (*q == '\\' && q[1]) q++;
            else if (*q == '"') str = false;
            continue;
        }
        if (*q == '"') str = true;
        else if (*q == '{' || *q == '[') depth++;
        else if (*q == '}' || *q == ']') {
            if (depth == 0) break;
            if (--depth == 0) { q++; break; }
        } else if (*q == ',' && depth == 0) break;
    }
    return strndup(p, (size_t)(q - p));
}

/* [stub:ask=TOOL JSON]: the reply tells what the caller answered. */
static char *live_ask(const struct ctx *c, const char *spec)
{
    char tool[128];
    snprintf(tool, sizeof tool, "%.*s", (int)strcspn(spec, " "), spec);
    const char *input = spec[strlen(tool)] ? spec + strlen(tool) + 1 : "{}";
    assistant_tool(c, tool);
    struct buf b = {0};
    buf_fmt(&b, "asked %s: ", tool);
    if (!live_mode || !c->a->permission_prompt_tool) {
        buf_str(&b, "deny message=no permission prompt tool");
        return b.p;
    }
    static int asked;
    char id[64];
    snprintf(id, sizeof id, "stub-ask-%d", ++asked);
    struct buf r = {0};
    buf_str(&r, "{\"type\":\"control_request\",\"request_id\":");
    buf_json(&r, id);
    buf_str(&r, ",\"request\":{\"subtype\":\"can_use_tool\",\"tool_name\":");
    if (tool[0] == '#') {
        buf_str(&r, tool + 1); /* #JSON: a tool_name as given, not a string */
    } else {
        buf_json(&r, tool);
    }
    buf_str(&r, ",\"display_name\":");
    buf_json(&r, tool);
    buf_str(&r, ",\"input\":");
    buf_str(&r, input);
    buf_str(&r, ",\"tool_use_id\":\"toolu_stub_1\",\"description\":\"stub asks\"}}");
    emit_line(&r);
    free(r.p);
    free(live_response);
    live_response = NULL;
    while (!(live_response && strstr(live_response, id)) && !live_eof) {
        live_poll(-1);
    }
    if (!(live_response && strstr(live_response, id))) {
        buf_str(&b, "stream closed");
        return b.p;
    }
    char *behavior = json_get_string(live_response, "behavior");
    if (behavior && strcmp(behavior, "allow") == 0) {
        char *upd = raw_member(live_response, "updatedInput");
        buf_str(&b, "allow updatedInput=");
        buf_str(&b, upd ? upd : "(none)");
        free(upd);
    } else {
        char *msg = json_get_string(live_response, "message");
        buf_str(&b, "deny message=");
        buf_str(&b, msg ? msg : "(none)");
        free(msg);
    }
    free(behavior);
    return b.p;
}

static int answer(const struct ctx *c, const char *prompt, int argc, char **argv);

static int live_main(const struct args *a, int argc, char **argv, double t0)
{
    live_mode = true;
    if (strcmp(a->format, "stream-json") != 0) {
        fprintf(stderr, "Error: --input-format=stream-json requires "
                "output-format=stream-json.\n");
        return 1;
    }
    char generated[37];
    new_uuid(generated);
    const char *sid = a->session_id ? a->session_id
                      : (a->resume && !a->fork_session) ? a->resume : generated;
    int status = 0;
    char *msg;
    for (int turn = 1; (msg = live_next()) != NULL; turn++) {
        if (turn == 1) {
            if (strstr(msg, "[stub:job_record]")) {
                check_job_record();
            }
            log_invocation(argc, argv, msg);
        }
        struct directives d;
        char *dstore;
        parse_directives(msg, &d, &dstore);
        status = turn == 1 ? check_args(a, &d, msg) : 0;
        if (status == 0) {
            free(live_override);
            live_override = NULL;
            if (turn > 1) {
                struct buf o = {0};
                char *task = extract_task(msg);
                buf_str(&o, live_last_reply ? live_last_reply : "");
                buf_str(&o, "\n+ ");
                buf_str(&o, task);
                free(task);
                if (d.sh) { /* a later turn runs its command too (nested dispatch per turn) */
                    char *r = make_reply(&d, msg, argc, argv);
                    buf_str(&o, "\n");
                    buf_str(&o, r);
                    free(r);
                }
                live_override = o.p;
            }
            live_deaf = d.deaf;
            live_interrupted = live_interrupt_next;
            live_interrupt_next = false;
            live_in_turn = true;
            prompt_from_stdin = true; /* a message on stdin, as the CLI reads it */
            struct ctx c = {
                .a = a, .d = &d, .t0 = t0, .session_id = sid,
                .model = a->model ? a->model : "claude-stub",
            };
            status = answer(&c, msg, argc, argv);
            live_in_turn = false;
            live_deaf = false;
            live_poll(0); /* an interrupt heard late (deaf) is answered now */
            live_interrupted = false;
        }
        bool end = status != 0 || d.exit_code >= 0 || d.no_result || d.stdout_text ||
                   d.die >= 0;
        if (d.exit_code >= 0) {
            status = (int)d.exit_code;
        }
        free(dstore);
        free(msg);
        if (end) {
            break;
        }
    }
    return status;
}

/* Everything after argument checking; returns the exit status.  Order:
 * stderr_bytes, stderr, grandchild/escape, garbage, [stream: init line],
 * hang, sleep, progress (die), then stdout= | budget | ([stream: tool, huge_line,
 * reply] + result unless no_result).  exit= overrides the status in main. */
static int answer(const struct ctx *c, const char *prompt, int argc, char **argv)
{
    const struct directives *d = c->d;
    bool stream = strcmp(c->a->format, "stream-json") == 0;
    if (d->ignore_term) {
        signal(SIGTERM, SIG_IGN);
    }
    /* stderr output comes before anything on stdout. */
    if (d->stderr_bytes > 0) {
        struct buf b = {0};
        for (long i = 0; i < d->stderr_bytes; i++) {
            buf_add(&b, (i + 1) % 100 == 0 ? "\n" : "e", 1);
        }
        write_all(STDERR_FILENO, b.p, b.len);
        free(b.p);
    }
    if (d->stderr_text) {
        say(STDERR_FILENO, d->stderr_text);
        say(STDERR_FILENO, "\n");
    }
    if (d->grandchild >= 0) {
        spawn_sleeper(d->grandchild, false);
    }
    if (d->escape >= 0) {
        spawn_sleeper(d->escape, true);
    }
    if (d->spew > 0) {
        char line[1024];
        memset(line, 'o', sizeof line - 1);
        line[sizeof line - 1] = '\n';
        for (long left = d->spew; left > 0; left -= (long)sizeof line) {
            write_all(STDOUT_FILENO, line, left < (long)sizeof line ? (size_t)left : sizeof line);
        }
    }
    if (d->garbage) {
        say(STDOUT_FILENO, "this is not json\n{broken json\n42\n[]\n"
            "{\"type\":\"tool_progress\",\"heartbeat\":true}\n");
    }
    if (stream) {
        struct buf b = {0};
        char cwd[4096];
        buf_str(&b, "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":");
        buf_json(&b, c->session_id);
        buf_str(&b, ",\"cwd\":");
        buf_json_opt(&b, getcwd(cwd, sizeof cwd));
        buf_str(&b, ",\"model\":");
        buf_json(&b, c->model);
        buf_str(&b, ",\"permissionMode\":");
        buf_json(&b, c->a->permission_mode ? c->a->permission_mode : "default");
        buf_str(&b, "}");
        emit_line(&b);
        free(b.p);
    }
    while (d->hang && !live_interrupted) {
        if (live_mode && !live_deaf) {
            live_poll(3600);
        } else {
            pause();
        }
    }
    sleep_s(d->sleep);
    while (d->until_file && access(d->until_file, F_OK) != 0 && !live_interrupted) {
        sleep_s(0.02);
    }
    if (live_interrupted) {
        return live_aborted(c);
    }
    if (d->die == 0) {
        raise(SIGKILL);
    }
    double interval = d->interval >= 0 ? d->interval : 0.05;
    for (long i = 1; i <= d->progress; i++) {
        sleep_s(interval);
        if (live_interrupted) {
            return live_aborted(c);
        }
        if (stream) {
            char text[64];
            snprintf(text, sizeof text, "progress %ld/%ld", i, d->progress);
            assistant_text(c, text);
        }
        if (i == d->die) {
            raise(SIGKILL); /* killed mid-stream, as by the OOM killer */
        }
    }

    if (d->stdout_text) { /* plain-text tier: raw text instead of any JSON */
        say(STDOUT_FILENO, d->stdout_text);
        say(STDOUT_FILENO, "\n");
        return 0;
    }
    if (d->budget) {
        result_line(c, NULL);
        return 1;
    }
    char *spec = NULL; /* relay: [stub:ask_file=PATH] */
    if (d->ask_file) {
        FILE *f = fopen(d->ask_file, "r");
        struct buf fb = {0};
        char chunk[4096];
        size_t got;
        buf_str(&fb, "");
        while (f && (got = fread(chunk, 1, sizeof chunk - 1, f)) > 0) {
            chunk[got] = '\0';
            buf_str(&fb, chunk);
        }
        if (f) fclose(f);
        while (fb.p[0] && strchr("\r\n", fb.p[strlen(fb.p) - 1])) fb.p[strlen(fb.p) - 1] = '\0';
        spec = fb.p;
    }
    char *reply = spec ? live_ask(c, spec) : d->ask ? live_ask(c, d->ask)
                  : live_override ? strdup(live_override) : make_reply(d, prompt, argc, argv);
    if (spec && d->ask) { /* both: a second request after the first's answer */
        char *second = live_ask(c, d->ask);
        struct buf both = {0};
        buf_fmt(&both, "%s; %s", reply, second);
        free(reply);
        free(second);
        reply = both.p;
    }
    if (spec || d->ask) {
        sleep_s(d->ask_sleep);
    }
    free(spec);
    if (live_interrupted) {
        free(reply);
        return live_aborted(c);
    }
    if (live_mode) {
        free(live_last_reply);
        live_last_reply = strdup(reply);
    }
    if (stream) {
        if (d->tool) {
            assistant_tool(c, d->tool);
        }
        if (d->huge_line > 0) {
            assistant_huge(c, (size_t)d->huge_line);
        }
        assistant_text(c, reply);
    }
    if (!d->no_result) {
        if (d->invalid_utf8) {
            static const char bad[] = " \xff bad";
            size_t n = strlen(reply);
            reply = realloc(reply, n + sizeof bad);
            memcpy(reply + n, bad, sizeof bad);
        }
        if (strcmp(c->a->format, "text") == 0) {
            say(STDOUT_FILENO, d->null_result ? "" : reply);
            say(STDOUT_FILENO, "\n");
        } else {
            result_line(c, reply);
        }
    }
    free(reply);
    if (d->mark_file) {
        int fd = open(d->mark_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
        }
    }
    sleep_s(d->linger);
    return 0;
}

/* ---- live sessions and warm pool tests (tests/e2e/live_sessions.test.js):
 * STUB_CLAUDE_STARTS names a file that gets one JSON line per process
 * start, before any input is read ({"pid", "pgid", "argv"}): a warm pool
 * process exists before it is given a message, and the invocation log
 * (STUB_CLAUDE_LOG) only hears of a live child at its first message. */
static void log_start(int argc, char **argv)
{
    const char *path = getenv("STUB_CLAUDE_STARTS");
    if (!path || !*path) {
        return;
    }
    struct buf b = {0};
    buf_fmt(&b, "{\"pid\":%ld,\"pgid\":%ld,\"argv\":[", (long)getpid(), (long)getpgrp());
    for (int i = 0; i < argc; i++) {
        buf_str(&b, i ? "," : "");
        buf_json(&b, argv[i]);
    }
    buf_str(&b, "]}\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ssize_t n = write(fd, b.p, b.len);
        (void)n;
        close(fd);
    }
    free(b.p);
}

int main(int argc, char **argv)
{
    double t0 = now(CLOCK_MONOTONIC);
    main_t0 = t0;
    started_real = now(CLOCK_REALTIME);
    setvbuf(stdout, NULL, _IOLBF, 0);
    log_start(argc, argv);

    if (argc >= 2 && strcmp(argv[1], "mcp") == 0) {
        log_invocation(argc, argv, NULL);
        return mcp_main(argc, argv);
    }
    /* `claude auth status`: offline JSON, logged in unless
     * STUB_CLAUDE_LOGGED_OUT is set (as the real CLI without credentials). */
    if (argc >= 3 && !strcmp(argv[1], "auth") && !strcmp(argv[2], "status")) {
        log_invocation(argc, argv, NULL);
        say(STDOUT_FILENO, getenv("STUB_CLAUDE_LOGGED_OUT")
                               ? "{\"loggedIn\": false, \"authMethod\": \"none\"}\n"
                               : "{\"loggedIn\": true, \"authMethod\": \"api_key\"}\n");
        return 0;
    }
    /* `claude --help`: lists --input-format (the live control channel)
     * unless STUB_CLAUDE_NO_LIVE is set (an older CLI). Not in the
     * invocation log; STUB_CLAUDE_HELP_LOG gets one line per call. */
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        const char *hl = getenv("STUB_CLAUDE_HELP_LOG");
        if (hl && *hl) {
            int fd = open(hl, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd >= 0) {
                say(fd, "help\n");
                close(fd);
            }
        }
        say(STDOUT_FILENO, "Usage: claude [options] [command] [prompt]\n\nOptions:\n"
            "  -p, --print                   Print response and exit\n"
            "  --output-format <format>      \"text\", \"json\" or \"stream-json\"\n");
        if (!getenv("STUB_CLAUDE_NO_LIVE")) {
            say(STDOUT_FILENO, "  --input-format <format>       \"text\" (default), or "
                "\"stream-json\"\n");
        }
        return 0;
    }
    struct args a;
    int bad_args = parse_args(argc, argv, &a);
    if (!bad_args && a.input_format && getenv("STUB_CLAUDE_NO_LIVE")) {
        fprintf(stderr, "error: unknown option '--input-format'\n");
        return 1;
    }
    if (!bad_args && a.print && !a.version && a.input_format &&
        strcmp(a.input_format, "stream-json") == 0) {
        return live_main(&a, argc, argv, t0);
    }
    /* Like the CLI, read the prompt from stdin when none is given. */
    char *stdin_prompt = NULL;
    if (!bad_args && a.print && !a.version && !(a.prompt && *a.prompt)) {
        stdin_prompt = read_stdin();
    }
    const char *prompt = stdin_prompt ? stdin_prompt : a.prompt;
    prompt_from_stdin = stdin_prompt != NULL;
    if (prompt && strstr(prompt, "[stub:job_record]")) {
        check_job_record(); /* first of all: before any work */
    }
    log_invocation(argc, argv, bad_args ? NULL : prompt);
    if (bad_args) {
        return 1;
    }
    if (a.version) {
        /* STUB_CLAUDE_VERSION: another installed version. */
        const char *v = getenv("STUB_CLAUDE_VERSION");
        if (v) {
            say(STDOUT_FILENO, v);
            say(STDOUT_FILENO, " (Claude Code stub)\n");
        } else {
            say(STDOUT_FILENO, STUB_VERSION "\n");
        }
        return 0;
    }
    if (!a.print) {
        fprintf(stderr, "stub claude: only print mode (-p) is supported\n");
        return 1;
    }
    if (!prompt) {
        prompt = "";
    }
    struct directives d;
    char *dstore;
    parse_directives(prompt, &d, &dstore);

    int status = check_args(&a, &d, prompt);
    if (status == 0) {
        char generated[37];
        new_uuid(generated);
        struct ctx c = {
            .a = &a, .d = &d, .t0 = t0,
            .session_id = a.session_id ? a.session_id
                          : (a.resume && !a.fork_session) ? a.resume : generated,
            .model = a.model ? a.model : "claude-stub",
        };
        status = answer(&c, prompt, argc, argv);
        if (d.exit_code >= 0) {
            status = (int)d.exit_code;
        }
    }
    free(dstore);
    free(stdin_prompt);
    return status;
}
