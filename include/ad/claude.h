/* The `claude` command line, built as an argv vector (never a shell
 * string) behind the argument-injection guard.
 *
 * Layout: claude -p --output-format json|stream-json [--verbose]
 *         [--resume ID | --session-id UUID] [--max-budget-usd X]
 *         [--model M] [--permission-mode P] [--json-schema JSON]
 *         [--allowedTools T]...
 *         [--disallowedTools T]... -- [PROMPT]
 * Every flag comes before "--" and the prompt after it, so a prompt that
 * starts with '-' (or equals "--output-format") is never read as a flag,
 * and variadic flags such as --allowedTools cannot swallow it. With
 * prompt_on_stdin, "--" ends the argv: the CLI reads the prompt from its
 * stdin (no argument-size limit; never parsed as options either). */
#ifndef AD_CLAUDE_H
#define AD_CLAUDE_H
#include <stdbool.h>
#include <stddef.h>

struct claude_cmd {
    const char *claude;          /* absolute path of the CLI */
    const char *prompt;
    bool prompt_on_stdin;        /* leave the prompt out: the caller pipes it */
    bool stream;                 /* stream-json + --verbose */
    const char *resume;          /* caller's session id, or NULL */
    const char *session_id;      /* fresh pre-assigned UUID, or NULL */
    double budget;               /* > 0: --max-budget-usd */
    const char *model;
    const char *permission_mode;
    const char *json_schema;     /* JSON Schema text for structured output */
    const char *const *allowed;
    size_t nallowed;
    const char *const *disallowed;
    size_t ndisallowed;
};

/* Builds a NULL-terminated argv (free with claude_argv_free). Returns 0,
 * -ENOMEM, or -EINVAL when a value after a flag starts with '-': err then
 * holds the refusal message naming the offending label and value. Never
 * both --resume and --session-id (the CLI rejects the pair). */
int claude_build_argv(const struct claude_cmd *cmd, char ***argv_out,
                      char *err, size_t errlen);
void claude_argv_free(char **argv);

/* Shortest decimal that reads back as x, in Python repr style: 0.5, 1.0,
 * 1e-05. buf must hold 32 bytes. */
void claude_format_double(double x, char *buf, size_t len);

#endif
