/* Unit tests of the claude argv builder, its injection guard and
 * claude_format_double (src/claude.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ad/claude.h"
#include "check.h"

#define CLAUDE "/usr/local/bin/claude"

static size_t argc_of(char **argv)
{
    size_t n = 0;
    while (argv[n]) {
        n++;
    }
    return n;
}

/* Compares argv with want (NULL-terminated); prints both on mismatch. */
static void check_argv(int line, char **argv, const char *const *want)
{
    size_t n = argc_of(argv), nw = 0;
    while (want[nw]) {
        nw++;
    }
    bool same = n == nw;
    for (size_t i = 0; same && i < n; i++) {
        same = strcmp(argv[i], want[i]) == 0;
    }
    CHECKF(same, "argv mismatch for the case at line %d", line);
    if (!same) {
        fprintf(stderr, "    got: ");
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, "[%s] ", argv[i]);
        }
        fprintf(stderr, "\n    want:");
        for (size_t i = 0; i < nw; i++) {
            fprintf(stderr, " [%s]", want[i]);
        }
        fputc('\n', stderr);
    }
}

/* Index of the first element equal to s, or -1. */
static long find(char **argv, const char *s)
{
    for (long i = 0; argv[i]; i++) {
        if (strcmp(argv[i], s) == 0) {
            return i;
        }
    }
    return -1;
}

static size_t count(char **argv, const char *s)
{
    size_t n = 0;
    for (size_t i = 0; argv[i]; i++) {
        n += strcmp(argv[i], s) == 0;
    }
    return n;
}

/* Builds, checks the invariant every argv must satisfy (prompt last, right
 * after the only "--", every flag before it), returns argv. */
static char **build_ok(int line, const struct claude_cmd *cmd)
{
    char **argv = NULL;
    char err[256] = "";
    int rc = claude_build_argv(cmd, &argv, err, sizeof err);
    CHECKF(rc == 0, "line %d: rc %d (%s)", line, rc, err);
    if (rc != 0 || !argv) {
        return NULL;
    }
    size_t n = argc_of(argv);
    const char *prompt = cmd->prompt ? cmd->prompt : "";
    CHECKF(n >= 3 && strcmp(argv[n - 1], prompt) == 0 &&
               strcmp(argv[n - 2], "--") == 0,
           "line %d: prompt is not last right after --", line);
    /* The first "--" is the separator at n-2 (nothing earlier is "--"). */
    CHECKF(find(argv, "--") == (long)n - 2, "line %d: stray -- ", line);
    CHECKF(strcmp(argv[0], cmd->claude) == 0, "line %d", line);
    return argv;
}

static void test_argv_layout(void)
{
    struct claude_cmd base = {.claude = "claude", .prompt = "hello"};
    char **a = build_ok(__LINE__, &base);
    if (a) {
        static const char *const want[] = {"claude", "-p", "--output-format",
                                           "json", "--", "hello", NULL};
        check_argv(__LINE__, a, want);
        claude_argv_free(a);
    }

    struct claude_cmd c = {.claude = CLAUDE, .prompt = "hi", .stream = true};
    a = build_ok(__LINE__, &c);
    if (a) {
        static const char *const want[] = {CLAUDE, "-p", "--output-format",
                                           "stream-json", "--verbose", "--",
                                           "hi", NULL};
        check_argv(__LINE__, a, want);
        claude_argv_free(a);
    }

    /* resume wins over session_id: never both. */
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p",
                            .resume = "abc-123-def",
                            .session_id = "11111111-2222-3333-4444-555555555555"};
    a = build_ok(__LINE__, &c);
    if (a) {
        long i = find(a, "--resume");
        CHECK(i > 0 && strcmp(a[i + 1], "abc-123-def") == 0);
        CHECK_INT(find(a, "--session-id"), -1);
        CHECK_INT(count(a, "--resume"), 1);
        claude_argv_free(a);
    }
    c.session_id = NULL;
    a = build_ok(__LINE__, &c);
    if (a) {
        CHECK(find(a, "--resume") > 0);
        CHECK_INT(find(a, "--session-id"), -1);
        claude_argv_free(a);
    }
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p",
                            .session_id = "11111111-2222-3333-4444-555555555555"};
    a = build_ok(__LINE__, &c);
    if (a) {
        static const char *const want[] = {
            CLAUDE, "-p", "--output-format", "json", "--session-id",
            "11111111-2222-3333-4444-555555555555", "--", "p", NULL};
        check_argv(__LINE__, a, want);
        claude_argv_free(a);
    }
    /* An empty resume is "no resume": the session id is used. */
    c.resume = "";
    a = build_ok(__LINE__, &c);
    if (a) {
        CHECK_INT(find(a, "--resume"), -1);
        CHECK(find(a, "--session-id") > 0);
        claude_argv_free(a);
    }

    /* Budget formatting. */
    static const struct {
        double budget;
        const char *text; /* NULL: no flag */
    } budgets[] = {
        {0.5, "0.5"}, {1.0, "1.0"}, {1e-05, "1e-05"}, {2.25, "2.25"},
        {10.0, "10.0"}, {0.0, NULL}, {-1.0, NULL},
    };
    for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
        c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p",
                                .budget = budgets[i].budget};
        a = build_ok(__LINE__, &c);
        if (!a) {
            continue;
        }
        long j = find(a, "--max-budget-usd");
        if (budgets[i].text) {
            CHECKF(j > 0 && strcmp(a[j + 1], budgets[i].text) == 0,
                   "budget %g: got %s, want %s", budgets[i].budget,
                   j > 0 ? a[j + 1] : "(no flag)", budgets[i].text);
        } else {
            CHECKF(j == -1, "budget %g must add no flag", budgets[i].budget);
        }
        claude_argv_free(a);
    }

    /* Everything at once, in the documented order. */
    static const char *const allowed[] = {"Bash(git diff)", "Read"};
    static const char *const disallowed[] = {"Write"};
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "do it",
                            .stream = true, .resume = "sess-1",
                            .budget = 0.5, .model = "sonnet",
                            .permission_mode = "bypassPermissions",
                            .allowed = allowed, .nallowed = 2,
                            .disallowed = disallowed, .ndisallowed = 1};
    a = build_ok(__LINE__, &c);
    if (a) {
        static const char *const want[] = {
            CLAUDE, "-p", "--output-format", "stream-json", "--verbose",
            "--resume", "sess-1", "--max-budget-usd", "0.5", "--model",
            "sonnet", "--permission-mode", "bypassPermissions",
            "--allowedTools", "Bash(git diff)", "--allowedTools", "Read",
            "--disallowedTools", "Write", "--", "do it", NULL};
        check_argv(__LINE__, a, want);
        CHECK_INT(count(a, "--allowedTools"), 2);
        CHECK_INT(count(a, "--disallowedTools"), 1);
        claude_argv_free(a);
    }

    /* Empty model / permission_mode are omitted. */
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p", .model = "",
                            .permission_mode = ""};
    a = build_ok(__LINE__, &c);
    if (a) {
        CHECK_INT(find(a, "--model"), -1);
        CHECK_INT(find(a, "--permission-mode"), -1);
        CHECK_INT(argc_of(a), 6);
        claude_argv_free(a);
    }
}

/* The prompt is data, whatever it looks like. */
static void test_prompt_is_last(void)
{
    static const char *const prompts[] = {
        "--output-format", "-p", "--", "-", "--resume x", "--verbose",
        "--allowedTools", "", "line1\nline2", "--dangerously-skip-permissions",
    };
    static const char *const allowed[] = {"Bash", "Read"};
    for (size_t i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        struct claude_cmd c = {.claude = CLAUDE, .prompt = prompts[i],
                               .allowed = allowed, .nallowed = 2,
                               .disallowed = allowed, .ndisallowed = 1};
        char **a = build_ok(__LINE__, &c);
        if (a) {
            size_t n = argc_of(a);
            CHECKF(n == 12 && strcmp(a[n - 1], prompts[i]) == 0,
                   "prompt \"%s\"", prompts[i]);
            claude_argv_free(a);
        }
    }
    /* A NULL prompt becomes an empty argument, still after "--". */
    struct claude_cmd c = {.claude = CLAUDE, .prompt = NULL};
    char **a = build_ok(__LINE__, &c);
    if (a) {
        CHECK(argc_of(a) == 6 && strcmp(a[5], "") == 0);
        claude_argv_free(a);
    }
}

/* The prompt on stdin: "--" still ends the options, and nothing follows
 * it, so no argument carries the prompt (nor its size). */
static void test_prompt_on_stdin(void)
{
    static const char *const allowed[] = {"Bash", "Read"};
    struct claude_cmd c = {.claude = CLAUDE, .prompt = "--model evil",
                           .prompt_on_stdin = true, .allowed = allowed,
                           .nallowed = 2};
    char **argv = NULL;
    char err[256] = "";
    CHECK(claude_build_argv(&c, &argv, err, sizeof err) == 0);
    if (argv) {
        size_t n = argc_of(argv);
        CHECK(n == 9 && strcmp(argv[n - 1], "--") == 0);
        CHECK(find(argv, "--") == (long)n - 1);
        CHECK(find(argv, "--model evil") < 0);
        claude_argv_free(argv);
    }
}

struct gcase {
    int line;
    struct claude_cmd cmd;
    const char *need1; /* substrings the refusal message must contain */
    const char *need2;
};

static const char *const bad_allowed[] = {"Read", "--resume"};
static const char *const bad_disallowed[] = {"-Write"};
static const char *const ok_tools[] = {"Bash(git diff)", "Read"};

static void test_guard(void)
{
    const struct gcase cases[] = {
        {__LINE__, {.claude = CLAUDE, .prompt = "p",
                    .resume = "--permission-mode"}, "session_id", "flag"},
        {__LINE__, {.claude = CLAUDE, .prompt = "p",
                    .session_id = "-abc"}, "session_id", "-abc"},
        {__LINE__, {.claude = CLAUDE, .prompt = "p",
                    .model = "--dangerously-skip"}, "model",
         "--dangerously-skip"},
        {__LINE__, {.claude = CLAUDE, .prompt = "p",
                    .permission_mode = "-x"}, "permission_mode", "'-x'"},
        {__LINE__, {.claude = CLAUDE, .prompt = "p", .allowed = bad_allowed,
                    .nallowed = 2}, "allowed tool", "--resume"},
        {__LINE__, {.claude = CLAUDE, .prompt = "p",
                    .disallowed = bad_disallowed, .ndisallowed = 1},
         "disallowed tool", "-Write"},
        /* A bad resume is refused even when a good session id is given. */
        {__LINE__, {.claude = CLAUDE, .prompt = "p", .resume = "-r",
                    .session_id = "ok"}, "session_id", "-r"},
        /* Refused even with other valid options around it. */
        {__LINE__, {.claude = CLAUDE, .prompt = "p", .model = "sonnet",
                    .allowed = ok_tools, .nallowed = 2,
                    .permission_mode = "--bad"}, "permission_mode", "--bad"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char **argv = (char **)0x1; /* must stay untouched */
        char err[512] = "";
        int rc = claude_build_argv(&cases[i].cmd, &argv, err, sizeof err);
        CHECKF(rc == -EINVAL, "line %d: rc %d", cases[i].line, rc);
        CHECKF(argv == (char **)0x1, "line %d: argv written on refusal",
               cases[i].line);
        CHECKF(strstr(err, cases[i].need1) && strstr(err, cases[i].need2),
               "line %d: message \"%s\" lacks \"%s\"/\"%s\"", cases[i].line,
               err, cases[i].need1, cases[i].need2);
        CHECKF(strstr(err, "flag") != NULL, "line %d: %s", cases[i].line,
               err);
    }

    /* A tiny error buffer is still NUL-terminated, never overflowed. */
    struct claude_cmd c = {.claude = CLAUDE, .prompt = "p", .model = "-m"};
    char small[8 + 4];
    memset(small, 'Z', sizeof small);
    char **argv = NULL;
    CHECK_INT(claude_build_argv(&c, &argv, small, 8), -EINVAL);
    CHECK(memchr(small, '\0', 8) != NULL);
    CHECK(small[8] == 'Z' && small[11] == 'Z');

    /* Normal values pass the guard. */
    static const char *const tools[] = {"Bash(git diff)", "Read", "mcp__x__y"};
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "-p",
                            .resume = "abc-123-def", .model = "sonnet",
                            .permission_mode = "bypassPermissions",
                            .allowed = tools, .nallowed = 3,
                            .disallowed = tools, .ndisallowed = 1};
    char **a = build_ok(__LINE__, &c);
    if (a) {
        long i = find(a, "--model");
        CHECK(i > 0 && strcmp(a[i + 1], "sonnet") == 0);
        i = find(a, "--permission-mode");
        CHECK(i > 0 && strcmp(a[i + 1], "bypassPermissions") == 0);
        CHECK_INT(count(a, "Bash(git diff)"), 2);
        claude_argv_free(a);
    }
    claude_argv_free(NULL); /* harmless */
}

static void test_format_double(void)
{
    static const struct {
        double x;
        const char *want; /* Python repr() */
    } cases[] = {
        {0.5, "0.5"},
        {1.0, "1.0"},
        {1e-05, "1e-05"},
        {2e-05, "2e-05"},
        {0.1, "0.1"},
        {0.3, "0.3"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {2.5, "2.5"},
        {-2.5, "-2.5"},
        {3.14, "3.14"},
        {10.0, "10.0"},
        {100.0, "100.0"},
        {1234.5, "1234.5"},
        {123456789.0, "123456789.0"},
        {0.001, "0.001"},
        {0.0001, "0.0001"},
        {0.00012, "0.00012"},
        {1e-4 * 1.5, "0.00015000000000000001"},
        {0.00015, "0.00015"},
        {1e15, "1000000000000000.0"},
        {9007199254740992.0, "9007199254740992.0"},
        {1e16, "1e+16"},
        {1.5e16, "1.5e+16"},
        {1e22, "1e+22"},
        {12345678901234567890.0, "1.2345678901234567e+19"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {5e-324, "5e-324"},
        {0.0, "0.0"},
        {-0.0, "-0.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[32];
        memset(buf, 'Z', sizeof buf);
        claude_format_double(cases[i].x, buf, sizeof buf);
        CHECKF(memchr(buf, '\0', sizeof buf) != NULL, "not terminated");
        CHECKF(strcmp(buf, cases[i].want) == 0, "format_double(%.17g) = %s, "
               "want %s", cases[i].x, buf, cases[i].want);
        /* Round trip. */
        CHECKF(strtod(buf, NULL) == cases[i].x, "%s does not read back",
               buf);
    }
    char buf[32];
    claude_format_double(INFINITY, buf, sizeof buf);
    CHECK_STR(buf, "inf");
    claude_format_double(-INFINITY, buf, sizeof buf);
    CHECK_STR(buf, "-inf");
    claude_format_double(NAN, buf, sizeof buf);
    CHECK_STR(buf, "nan");
    claude_format_double(-NAN, buf, sizeof buf);
    CHECK_STR(buf, "nan");
}

/* A response schema: one --json-schema argument before "--", its JSON
 * text whole; a value that looks like a flag is refused. */
static void test_json_schema(void)
{
    static const char *const allowed[] = {"Read"};
    const char *schema = "{\"type\":\"object\",\"required\":[\"a\"]}";
    struct claude_cmd c = {.claude = CLAUDE, .prompt = "p", .model = "sonnet",
                           .permission_mode = "plan", .json_schema = schema,
                           .allowed = allowed, .nallowed = 1};
    char **a = build_ok(__LINE__, &c);
    if (a) {
        static const char *const want[] = {
            CLAUDE, "-p", "--output-format", "json", "--model", "sonnet",
            "--permission-mode", "plan", "--json-schema",
            "{\"type\":\"object\",\"required\":[\"a\"]}",
            "--allowedTools", "Read", "--", "p", NULL};
        check_argv(__LINE__, a, want);
        claude_argv_free(a);
    }
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p", .json_schema = ""};
    a = build_ok(__LINE__, &c);
    if (a) {
        CHECK_INT(find(a, "--json-schema"), -1);
        claude_argv_free(a);
    }
    char **argv = NULL;
    char err[512] = "";
    c = (struct claude_cmd){.claude = CLAUDE, .prompt = "p",
                            .json_schema = "--dangerously-skip-permissions"};
    CHECK_INT(claude_build_argv(&c, &argv, err, sizeof err), -EINVAL);
    CHECK(argv == NULL);
    CHECK(strstr(err, "response_schema") != NULL);
}

int main(void)
{
    test_argv_layout();
    test_json_schema();
    test_prompt_is_last();
    test_prompt_on_stdin();
    test_guard();
    test_format_double();
    return check_exit("test_claude");
}
