/* claude argv builder and injection guard; see claude.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad/claude.h"
#include "ad/validate.h"

void claude_format_double(double x, char *buf, size_t len)
{
    /* Shortest %e that reads back, then Python's layout: fixed notation
     * for decimal exponents -4..15, exponent notation otherwise. */
    if (x != x) {
        snprintf(buf, len, "nan"); /* Python has no "-nan" */
        return;
    }
    int prec = 1;
    for (;; prec++) {
        snprintf(buf, len, "%.*e", prec - 1, x);
        if (prec == 17 || strtod(buf, NULL) == x) {
            break;
        }
    }
    const char *e = strchr(buf, 'e');
    if (!e) {
        return; /* inf, nan */
    }
    int exp10 = atoi(e + 1);
    if (exp10 < -4 || exp10 >= 16) {
        return; /* 1e-05, 1.5e+16: already in that form */
    }
    int decimals = prec - 1 - exp10;
    snprintf(buf, len, "%.*f", decimals > 0 ? decimals : 0, x);
    if (!strchr(buf, '.')) {
        size_t n = strlen(buf);
        if (n + 2 < len) {
            memcpy(buf + n, ".0", 3);
        }
    }
}

struct argv_builder {
    char **v;
    size_t n;
    size_t cap;
    int err;
};

static void push(struct argv_builder *b, const char *s)
{
    if (b->err) {
        return;
    }
    if (b->n + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        char **nv = realloc(b->v, cap * sizeof *nv);
        if (!nv) {
            b->err = -ENOMEM;
            return;
        }
        b->v = nv;
        b->cap = cap;
    }
    b->v[b->n] = strdup(s);
    if (!b->v[b->n]) {
        b->err = -ENOMEM;
        return;
    }
    b->v[++b->n] = NULL;
}

void claude_argv_free(char **argv)
{
    if (!argv) {
        return;
    }
    for (char **p = argv; *p; p++) {
        free(*p);
    }
    free(argv);
}

static int guard(const char *label, const char *value, char *err,
                 size_t errlen)
{
    if (value && !validate_not_flag(value, strlen(value))) {
        snprintf(err, errlen,
                 "Refused to dispatch: %s '%s' starts with '-' and would be "
                 "read by the claude CLI as a command-line flag.",
                 label, value);
        return -EINVAL;
    }
    return 0;
}

static int check_all(const struct claude_cmd *c, char *err, size_t errlen)
{
    int rc = 0;
    rc = rc ? rc : guard("session_id", c->resume, err, errlen);
    rc = rc ? rc : guard("session_id", c->session_id, err, errlen);
    rc = rc ? rc : guard("model", c->model, err, errlen);
    rc = rc ? rc : guard("permission_mode", c->permission_mode, err, errlen);
    rc = rc ? rc : guard("response_schema", c->json_schema, err, errlen);
    for (size_t i = 0; rc == 0 && i < c->nallowed; i++) {
        rc = guard("allowed tool", c->allowed[i], err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < c->ndisallowed; i++) {
        rc = guard("disallowed tool", c->disallowed[i], err, errlen);
    }
    return rc;
}

int claude_build_argv(const struct claude_cmd *c, char ***argv_out,
                      char *err, size_t errlen)
{
    int rc = check_all(c, err, errlen);
    if (rc != 0) {
        return rc;
    }
    struct argv_builder b = {0};
    push(&b, c->claude);
    push(&b, "-p");
    push(&b, "--output-format");
    push(&b, c->stream ? "stream-json" : "json");
    if (c->stream) {
        push(&b, "--verbose");
    }
    if (c->resume && *c->resume) {
        push(&b, "--resume");
        push(&b, c->resume);
    } else if (c->session_id && *c->session_id) {
        push(&b, "--session-id");
        push(&b, c->session_id);
    }
    if (c->budget > 0) {
        char num[32];
        claude_format_double(c->budget, num, sizeof num);
        push(&b, "--max-budget-usd");
        push(&b, num);
    }
    if (c->model && *c->model) {
        push(&b, "--model");
        push(&b, c->model);
    }
    if (c->permission_mode && *c->permission_mode) {
        push(&b, "--permission-mode");
        push(&b, c->permission_mode);
    }
    if (c->json_schema && *c->json_schema) {
        push(&b, "--json-schema");
        push(&b, c->json_schema);
    }
    for (size_t i = 0; i < c->nallowed; i++) {
        push(&b, "--allowedTools");
        push(&b, c->allowed[i]);
    }
    for (size_t i = 0; i < c->ndisallowed; i++) {
        push(&b, "--disallowedTools");
        push(&b, c->disallowed[i]);
    }
    push(&b, "--");
    if (!c->prompt_on_stdin) {
        push(&b, c->prompt ? c->prompt : "");
    }
    if (b.err) {
        claude_argv_free(b.v);
        return b.err;
    }
    *argv_out = b.v;
    return 0;
}
