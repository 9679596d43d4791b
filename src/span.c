/* The line of a trace span (include/ad/span.h), formatted straight from
 * its fields: every dispatch writes one, and the generic encoder's
 * per-key table lookups, number calls and key escaping cost several
 * times the few hundred bytes it writes. */
#include "ad/span.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad/json_text.h"
#include "ad/utf8.h"

const char *const span_key_names[SPAN_NKEYS] = {
    "trace_id", "span_id", "parent_id", "kind", "agent", "task", "caller",
    "goal", "start", "end", "duration_ms", "status", "error_type",
    "session_id", "cost_usd", "num_turns", "denied_tools", "cached",
    "depth", "pid", "job_id",
};

const size_t span_cuts[3] = {100, 40, 0};

/* ,"key": of each key, and its length. */
#define KEY(name) ",\"" name "\":"
static const char *const key_texts[SPAN_NKEYS] = {
    KEY("trace_id"), KEY("span_id"), KEY("parent_id"), KEY("kind"),
    KEY("agent"), KEY("task"), KEY("caller"), KEY("goal"), KEY("start"),
    KEY("end"), KEY("duration_ms"), KEY("status"), KEY("error_type"),
    KEY("session_id"), KEY("cost_usd"), KEY("num_turns"),
    KEY("denied_tools"), KEY("cached"), KEY("depth"), KEY("pid"),
    KEY("job_id"),
};
#define KLEN(name) (sizeof(KEY(name)) - 1)
static const size_t key_lens[SPAN_NKEYS] = {
    KLEN("trace_id"), KLEN("span_id"), KLEN("parent_id"), KLEN("kind"),
    KLEN("agent"), KLEN("task"), KLEN("caller"), KLEN("goal"),
    KLEN("start"), KLEN("end"), KLEN("duration_ms"), KLEN("status"),
    KLEN("error_type"), KLEN("session_id"), KLEN("cost_usd"),
    KLEN("num_turns"), KLEN("denied_tools"), KLEN("cached"), KLEN("depth"),
    KLEN("pid"), KLEN("job_id"),
};

/* The line being written: in the caller's buffer (on its stack: a usual
 * line fits with room to spare), moved to the heap when it outgrows it. */
struct out {
    char *p;
    size_t len, cap;
    bool oom, heap;
};

static void grow(struct out *o, size_t n)
{
    size_t cap = o->cap ? o->cap : 512;
    while (cap - o->len < n) {
        cap *= 2;
    }
    char *p = o->heap ? realloc(o->p, cap) : malloc(cap);
    if (!p) {
        o->oom = true;
        return;
    }
    if (!o->heap && o->len) {
        memcpy(p, o->p, o->len);
    }
    o->p = p;
    o->cap = cap;
    o->heap = true;
}

static inline void put(struct out *o, const char *s, size_t n)
{
    if (o->cap - o->len < n + 1) { /* (room for the final NUL too) */
        grow(o, n + 1);
        if (o->oom) {
            return;
        }
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void put_string(struct out *o, const char *s, size_t n)
{
    put(o, "\"", 1);
    size_t from = 0, i = 0;
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        if (json_text_plain8(w)) {
            i += 8;
            continue;
        }
        size_t end = i + 8;
        for (; i < end; i++) {
            const char *esc = json_text_escape((unsigned char)s[i]);
            if (esc) {
                put(o, s + from, i - from);
                put(o, esc, strlen(esc));
                from = i + 1;
            }
        }
    }
    for (; i < n; i++) {
        const char *esc = json_text_escape((unsigned char)s[i]);
        if (esc) {
            put(o, s + from, i - from);
            put(o, esc, strlen(esc));
            from = i + 1;
        }
    }
    put(o, s + from, n - from);
    put(o, "\"", 1);
}

/* lua-cjson's "%.14g" of x. */
static size_t g14(double x, char out[32])
{
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.14g", x);
    if (n < 0 || n >= 32) {
        memcpy(out, "null", 4);
        return 4;
    }
    memcpy(out, tmp, (size_t)n);
    return (size_t)n;
}

size_t span_int_text(long long v, char out[32])
{
    /* Below 10^14 "%.14g" writes every digit: the same text, no call. */
    if (v > -100000000000000LL && v < 100000000000000LL) {
        return json_text_int(v, out);
    }
    return g14((double)v, out);
}

size_t span_num_text(double x, char out[32])
{
    if (!isfinite(x)) {
        memcpy(out, "null", 4);
        return 4;
    }
    size_t n = json_text_decimal(x, out);
    return n ? n : g14(x, out);
}

size_t span_cut(const char *s, size_t n, size_t max_cp)
{
    if (max_cp == 0) {
        return 0;
    }
    if (n <= max_cp) {
        return n;
    }
    return utf8_prefix(s, n, max_cp);
}

static void put_value(struct out *o, const struct span_val *v, size_t cut)
{
    char num[32];
    switch (v->type) {
    case SPAN_NULL:
    case SPAN_ABSENT:
        put(o, "null", 4);
        return;
    case SPAN_STR:
        put_string(o, v->str.s, span_cut(v->str.s, v->str.n, cut));
        return;
    case SPAN_INT:
        put(o, num, span_int_text(v->i, num));
        return;
    case SPAN_NUM:
        put(o, num, span_num_text(v->d, num));
        return;
    case SPAN_BOOL:
        put(o, v->b ? "true" : "false", v->b ? 4 : 5);
        return;
    case SPAN_STRS:
        put(o, "[", 1);
        for (size_t i = 0; i < v->nstrs; i++) {
            if (i) {
                put(o, ",", 1);
            }
            put_string(o, v->strs[i].s, v->strs[i].n);
        }
        put(o, "]", 1);
        return;
    }
}

/* The line with the free texts cut to cut code points (SIZE_MAX: whole). */
static void format(struct out *o, const struct span_val vals[SPAN_NKEYS],
                   size_t cut)
{
    o->len = 0;
    put(o, "{", 1);
    bool comma = false;
    for (int k = 0; k < SPAN_NKEYS; k++) {
        if (vals[k].type == SPAN_ABSENT) {
            continue;
        }
        /* ,"key": (the names need no escape) */
        if (comma) {
            put(o, key_texts[k], key_lens[k]);
        } else {
            put(o, key_texts[k] + 1, key_lens[k] - 1);
        }
        bool free_text = k == SPAN_TASK || k == SPAN_CALLER || k == SPAN_GOAL;
        put_value(o, &vals[k], free_text ? cut : SIZE_MAX);
        comma = true;
    }
    put(o, "}", 1);
}

/* Replaces o's text by its UTF-8 repair when it is not valid. */
static void repair(struct out *o)
{
    if (o->oom || utf8_valid(o->p, o->len)) {
        return;
    }
    size_t m;
    char *fixed = utf8_sanitize(o->p, o->len, &m);
    if (o->heap) {
        free(o->p);
    }
    o->p = fixed;
    o->len = m;
    o->cap = m + 1;
    o->heap = true;
    o->oom = fixed == NULL;
}

size_t span_format_to(const struct span_val vals[SPAN_NKEYS], size_t max_line,
                      char *buf, size_t cap, char **text)
{
    struct out o = {buf, 0, cap, false, false};
    format(&o, vals, SIZE_MAX);
    repair(&o);
    for (int i = 0; i < 3 && !o.oom && o.len >= max_line; i++) {
        format(&o, vals, span_cuts[i]);
        repair(&o);
    }
    if (o.oom) {
        if (o.heap) {
            free(o.p);
        }
        *text = NULL;
        return 0;
    }
    o.p[o.len] = '\0';
    *text = o.p;
    return o.len;
}

char *span_format(const struct span_val vals[SPAN_NKEYS], size_t max_line,
                  size_t *len)
{
    char *text;
    *len = span_format_to(vals, max_line, NULL, 0, &text);
    return text;
}
