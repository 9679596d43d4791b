/* The claude argv builder's injection invariant: whatever the values,
 * every argument before "--" is one of the builder's own flags or a value
 * right after a flag that takes one, and no value there starts with '-';
 * after "--" comes the prompt alone (or nothing when it goes on stdin).
 * A refusal happens exactly when some value is flag-like. The budget is
 * written so that it reads back as the same number. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/claude.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 16

static int arity(const char *flag)
{
    static const char *const zero[] = {"-p", "--verbose"};
    static const char *const one[] = {
        "--output-format", "--resume", "--session-id", "--max-budget-usd",
        "--model", "--permission-mode", "--allowedTools", "--disallowedTools"};
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++) {
        if (strcmp(flag, zero[i]) == 0) {
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof one / sizeof *one; i++) {
        if (strcmp(flag, one[i]) == 0) {
            return 1;
        }
    }
    return -1;
}

static void check_argv(char **argv, const struct claude_cmd *c)
{
    size_t i = 1;
    while (argv[i] && strcmp(argv[i], "--") != 0) {
        int n = arity(argv[i]);
        if (n < 0) {
            abort(); /* something that is not our flag before "--" */
        }
        i++;
        if (n == 1) {
            if (!argv[i] || argv[i][0] == '-') {
                abort(); /* a missing or flag-like value */
            }
            i++;
        }
    }
    if (!argv[i]) {
        abort(); /* no "--" */
    }
    i++;
    if (c->prompt_on_stdin) {
        if (argv[i]) {
            abort();
        }
    } else if (!argv[i] || strcmp(argv[i], c->prompt ? c->prompt : "") != 0 ||
               argv[i + 1]) {
        abort();
    }
}

static bool flaglike(const char *s)
{
    return s && s[0] == '-';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10) {
        return 0;
    }
    uint8_t opts = data[0];
    double budget;
    memcpy(&budget, data + 1, sizeof budget);
    data += 9;
    size -= 9;
    /* NUL-separated fields: prompt, resume, session id, model, permission
     * mode, then tools (allowed first, split by the count in opts). */
    char *copy = malloc(size + 1);
    if (!copy) {
        return 0;
    }
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *f[MAX_FIELDS] = {0};
    size_t nf = 0;
    for (char *p = copy; nf < MAX_FIELDS && p <= copy + size;
         p += strlen(p) + 1) {
        f[nf++] = p;
    }
    size_t ntools = nf > 5 ? nf - 5 : 0;
    size_t nallowed = ntools ? (opts >> 4) % (ntools + 1) : 0;
    struct claude_cmd c = {
        .claude = "/usr/bin/claude",
        .prompt = f[0],
        .prompt_on_stdin = opts & 1,
        .stream = opts & 2,
        .resume = (opts & 4) ? f[1] : NULL,
        .session_id = f[2],
        .budget = budget,
        .model = f[3],
        .permission_mode = (opts & 8) ? f[4] : NULL,
        .allowed = f + 5,
        .nallowed = nallowed,
        .disallowed = f + 5 + nallowed,
        .ndisallowed = ntools - nallowed,
    };
    bool bad = flaglike(c.resume) || flaglike(c.session_id) ||
               flaglike(c.model) || flaglike(c.permission_mode);
    for (size_t i = 0; i < ntools; i++) {
        bad = bad || flaglike(f[5 + i]);
    }
    char **argv = NULL;
    char err[512] = "";
    int rc = claude_build_argv(&c, &argv, err, sizeof err);
    if (rc == -EINVAL) {
        if (!bad || err[0] == '\0') {
            abort(); /* refused a clean command, or refused silently */
        }
    } else if (rc == 0) {
        if (bad) {
            abort(); /* a flag-like value was let through */
        }
        check_argv(argv, &c);
        claude_argv_free(argv);
    }
    if (isfinite(budget) && budget > 0) {
        char num[32];
        claude_format_double(budget, num, sizeof num);
        if (strtod(num, NULL) != budget) {
            abort(); /* the CLI would read another budget */
        }
    }
    free(copy);
    return 0;
}
