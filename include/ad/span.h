/* The line of a trace span: its fields, in their fixed order, as one line
 * of JSON (the trace store's record; ad.storage.traces reads it back with
 * lua-cjson). Pure formatting: no Lua, no I/O.
 *
 * The text is what ad.infra.json's encoder writes for the same record:
 * strings escaped as lua-cjson escapes them (but "/" kept), numbers as
 * lua-cjson's "%.14g" writes them, absent fields left out, and the whole
 * line valid UTF-8 (ill-formed sequences become U+FFFD). */
#ifndef AD_SPAN_H
#define AD_SPAN_H
#include <stdbool.h>
#include <stddef.h>

/* The fields of a span record, in the order they are written. */
enum span_key {
    SPAN_TRACE_ID, SPAN_SPAN_ID, SPAN_PARENT_ID, SPAN_KIND, SPAN_AGENT,
    SPAN_TASK, SPAN_CALLER, SPAN_GOAL, SPAN_START, SPAN_END,
    SPAN_DURATION_MS, SPAN_STATUS, SPAN_ERROR_TYPE, SPAN_SESSION_ID,
    SPAN_COST_USD, SPAN_NUM_TURNS, SPAN_DENIED_TOOLS, SPAN_CACHED,
    SPAN_DEPTH, SPAN_PID, SPAN_JOB_ID,
    SPAN_NKEYS
};

/* The name of each key (span_key order). */
extern const char *const span_key_names[SPAN_NKEYS];

enum span_type {
    SPAN_ABSENT, /* not written (the key is left out) */
    SPAN_NULL,
    SPAN_STR,
    SPAN_INT,
    SPAN_NUM,
    SPAN_BOOL,
    SPAN_STRS, /* an array of strings */
};

struct span_str {
    const char *s;
    size_t n;
};

struct span_val {
    enum span_type type;
    struct span_str str;        /* SPAN_STR */
    long long i;                /* SPAN_INT */
    double d;                   /* SPAN_NUM */
    bool b;                     /* SPAN_BOOL */
    const struct span_str *strs; /* SPAN_STRS */
    size_t nstrs;
};

/* Code points the free texts (task, caller, goal) are cut to, in turn,
 * while the line is max_line bytes or longer. */
extern const size_t span_cuts[3];

/* The line (no newline) of the record vals (one per key): a malloc'd,
 * NUL-terminated buffer and its length in *len, or NULL when out of
 * memory. A line of max_line bytes or more has its task, caller and goal
 * cut to span_cuts code points in turn until it is shorter (it may still
 * not be, when the other fields alone are that long). */
char *span_format(const struct span_val vals[SPAN_NKEYS], size_t max_line,
                  size_t *len);

/* span_format into buf[0..cap) when the line fits there (*text == buf),
 * else into a malloc'd buffer (*text, which the caller frees); returns
 * the length. *text is NULL when out of memory. */
size_t span_format_to(const struct span_val vals[SPAN_NKEYS], size_t max_line,
                      char *buf, size_t cap, char **text);

/* The JSON number text of integer v or double x (the one span_format
 * writes): at most 32 bytes at out, not terminated; returns the length.
 * A non-finite x is "null". */
size_t span_int_text(long long v, char out[32]);
size_t span_num_text(double x, char out[32]);

/* The first max_cp code points of s[0..n): its byte length (n when s is
 * no longer; 0 when max_cp is 0). */
size_t span_cut(const char *s, size_t n, size_t max_cp);

#endif
