/* Unit tests of the span line formatter (src/span.c): the exact text of a
 * record (what readers and lua-cjson parse), escapes, UTF-8 repair,
 * number formats and the cut of a line that would be too long. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ad/span.h"
#include "check.h"

#define FFFD "\xEF\xBF\xBD"

static struct span_val str(const char *s)
{
    struct span_val v = {0};
    v.type = SPAN_STR;
    v.str.s = s;
    v.str.n = strlen(s);
    return v;
}

static struct span_val num(double d)
{
    struct span_val v = {0};
    v.type = SPAN_NUM;
    v.d = d;
    return v;
}

static struct span_val integer(long long i)
{
    struct span_val v = {0};
    v.type = SPAN_INT;
    v.i = i;
    return v;
}

/* A finished span as a dispatch writes it. */
static void record(struct span_val vals[SPAN_NKEYS])
{
    static const struct span_str denied[] = {{"Bash", 4}, {"Write", 5}};
    memset(vals, 0, sizeof(struct span_val) * SPAN_NKEYS);
    vals[SPAN_TRACE_ID] = str("0123456789abcdef0123456789abcdef");
    vals[SPAN_SPAN_ID] = str("89abcdef00000002");
    vals[SPAN_PARENT_ID].type = SPAN_NULL;
    vals[SPAN_KIND] = str("dispatch");
    vals[SPAN_AGENT] = str("worker");
    vals[SPAN_TASK] = str("hi");
    vals[SPAN_CALLER] = str("t");
    vals[SPAN_GOAL].type = SPAN_NULL;
    vals[SPAN_START] = num(1764546912.123);
    vals[SPAN_END] = num(1764546913.5);
    vals[SPAN_DURATION_MS] = integer(1377);
    vals[SPAN_STATUS] = str("ok");
    vals[SPAN_ERROR_TYPE].type = SPAN_NULL;
    vals[SPAN_SESSION_ID] = str("s-1");
    vals[SPAN_COST_USD] = num(0.0123);
    vals[SPAN_NUM_TURNS] = integer(3);
    vals[SPAN_DENIED_TOOLS].type = SPAN_STRS;
    vals[SPAN_DENIED_TOOLS].strs = denied;
    vals[SPAN_DENIED_TOOLS].nstrs = 2;
    vals[SPAN_CACHED].type = SPAN_BOOL;
    vals[SPAN_DEPTH] = integer(0);
    vals[SPAN_PID] = integer(4242);
    vals[SPAN_JOB_ID].type = SPAN_NULL;
}

static char *line(struct span_val vals[SPAN_NKEYS], size_t max, size_t *n)
{
    char *text = span_format(vals, max, n);
    CHECK(text != NULL);
    CHECK(text == NULL || strlen(text) == *n);
    return text;
}

static void test_record(void)
{
    struct span_val vals[SPAN_NKEYS];
    record(vals);
    size_t n;
    char *text = line(vals, 4096, &n);
    CHECK_STR(text,
              "{\"trace_id\":\"0123456789abcdef0123456789abcdef\","
              "\"span_id\":\"89abcdef00000002\",\"parent_id\":null,"
              "\"kind\":\"dispatch\",\"agent\":\"worker\",\"task\":\"hi\","
              "\"caller\":\"t\",\"goal\":null,\"start\":1764546912.123,"
              "\"end\":1764546913.5,\"duration_ms\":1377,\"status\":\"ok\","
              "\"error_type\":null,\"session_id\":\"s-1\","
              "\"cost_usd\":0.0123,\"num_turns\":3,"
              "\"denied_tools\":[\"Bash\",\"Write\"],\"cached\":false,"
              "\"depth\":0,\"pid\":4242,\"job_id\":null}");
    free(text);
    /* Absent fields are left out (a span still running has no end). */
    vals[SPAN_END].type = SPAN_ABSENT;
    vals[SPAN_DURATION_MS].type = SPAN_ABSENT;
    vals[SPAN_DENIED_TOOLS].nstrs = 0;
    vals[SPAN_CACHED].b = true;
    text = line(vals, 4096, &n);
    CHECK(strstr(text, "\"end\"") == NULL);
    CHECK(strstr(text, "duration_ms") == NULL);
    CHECK(strstr(text, "\"start\":1764546912.123,\"status\":\"ok\"") != NULL);
    CHECK(strstr(text, "\"denied_tools\":[],\"cached\":true,") != NULL);
    free(text);
}

static void test_escapes(void)
{
    struct span_val vals[SPAN_NKEYS];
    record(vals);
    /* Escapes before, inside and after the first 8-byte word; "/" kept. */
    vals[SPAN_TASK] = str("a\"b\\c/d\ne\tf\x01g\x7fh\rij\bk\fl\x1fm");
    vals[SPAN_CALLER] = str("plain text of sixteen+ bytes \"q\"");
    size_t n;
    char *text = line(vals, 4096, &n);
    CHECK(strstr(text, "\"task\":\"a\\\"b\\\\c/d\\ne\\tf\\u0001g\\u007fh"
                       "\\rij\\bk\\fl\\u001fm\",") != NULL);
    CHECK(strstr(text, "\"caller\":\"plain text of sixteen+ bytes "
                       "\\\"q\\\"\",") != NULL);
    free(text);
    /* A NUL byte inside a text is escaped, not an end. */
    struct span_val v = {0};
    v.type = SPAN_STR;
    v.str.s = "x\0y";
    v.str.n = 3;
    vals[SPAN_GOAL] = v;
    text = line(vals, 4096, &n);
    CHECK(strstr(text, "\"goal\":\"x\\u0000y\",") != NULL);
    free(text);
}

static void test_utf8_repair(void)
{
    struct span_val vals[SPAN_NKEYS];
    record(vals);
    vals[SPAN_TASK] = str("caf\xC3\xA9 \xFF bad \xE2\x82");
    vals[SPAN_AGENT] = str("\xC0\xAF");
    size_t n;
    char *text = line(vals, 4096, &n);
    CHECK(strstr(text, "\"task\":\"caf\xC3\xA9 " FFFD " bad " FFFD FFFD
                       "\",") != NULL);
    CHECK(strstr(text, "\"agent\":\"" FFFD FFFD "\",") != NULL);
    free(text);
}

static void test_numbers(void)
{
    static const struct {
        double x;
        const char *want;
    } doubles[] = {
        {1764546912.123, "1764546912.123"},
        {1764546912.0, "1764546912"},
        {0.5, "0.5"},
        {0.0123, "0.0123"},
        {0.000123, "0.000123"},
        {2.5e-7, "2.5e-07"},
        {0.1 + 0.2, "0.3"},
        {1.0 / 3.0, "0.33333333333333"},
        {123456789.123456789, "123456789.12346"},
        {-1.25, "-1.25"},
        {0.0, "0"},
        {-0.0, "-0"},
        {1e15, "1e+15"},
        {NAN, "null"},
        {INFINITY, "null"},
    };
    char out[32];
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        size_t n = span_num_text(doubles[i].x, out);
        out[n] = '\0';
        CHECKF(strcmp(out, doubles[i].want) == 0, "%.17g: got %s, want %s",
               doubles[i].x, out, doubles[i].want);
    }
    static const struct {
        long long v;
        const char *want;
    } ints[] = {
        {0, "0"},
        {-7, "-7"},
        {4242, "4242"},
        {99999999999999LL, "99999999999999"},
        {100000000000000LL, "1e+14"},
        {-100000000000000LL, "-1e+14"},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        size_t n = span_int_text(ints[i].v, out);
        out[n] = '\0';
        CHECKF(strcmp(out, ints[i].want) == 0, "%lld: got %s, want %s",
               ints[i].v, out, ints[i].want);
    }
}

/* A text of count copies of unit. */
static char *repeat(const char *unit, size_t count)
{
    size_t u = strlen(unit);
    char *s = malloc(u * count + 1);
    for (size_t i = 0; i < count; i++) {
        memcpy(s + i * u, unit, u);
    }
    s[u * count] = '\0';
    return s;
}

static void test_cut(void)
{
    struct span_val vals[SPAN_NKEYS];
    record(vals);
    size_t n;
    /* Short enough: nothing is cut. */
    char *task = repeat("\xC3\xA9", 1000); /* 2000 bytes */
    vals[SPAN_TASK] = str(task);
    char *text = line(vals, 4096, &n);
    CHECK(n > 2000 && n < 4096);
    free(text);
    /* Too long: the free texts are cut to 100 code points, on a
     * code-point boundary. */
    char *goal = repeat("g", 5000);
    vals[SPAN_GOAL] = str(goal);
    text = line(vals, 4096, &n);
    char *want_task = repeat("\xC3\xA9", 100);
    char *want_goal = repeat("g", 100);
    char pat[512];
    snprintf(pat, sizeof pat, "\"task\":\"%s\",\"caller\":\"t\",\"goal\":\"%s\",",
             want_task, want_goal);
    CHECK(strstr(text, pat) != NULL);
    CHECK(n < 4096);
    free(text);
    /* Escapes count: 700 quotes take 1400 bytes and 100 of them 200. */
    char *quotes = repeat("\"", 3000);
    vals[SPAN_CALLER] = str(quotes);
    vals[SPAN_GOAL].type = SPAN_NULL;
    text = line(vals, 4096, &n);
    CHECK(n < 4096);
    CHECK(strstr(text, "\"caller\":\"\\\"") != NULL);
    free(text);
    /* Still too long at 100 and 40 (the denied tools alone are long):
     * the texts end empty. */
    struct span_str many[40];
    char *tool = repeat("T", 100);
    for (int i = 0; i < 40; i++) {
        many[i].s = tool;
        many[i].n = 100;
    }
    vals[SPAN_DENIED_TOOLS].strs = many;
    vals[SPAN_DENIED_TOOLS].nstrs = 40;
    text = line(vals, 4096, &n);
    CHECK(strstr(text, "\"task\":\"\",\"caller\":\"\",\"goal\":null,") != NULL);
    CHECK(n >= 4096); /* (the rest of the record is written whole) */
    free(text);
    free(tool);
    free(quotes);
    free(want_task);
    free(want_goal);
    free(goal);
    free(task);
    /* span_cut: code points, not bytes. */
    CHECK(span_cut("abc", 3, 0) == 0);
    CHECK(span_cut("abc", 3, 5) == 3);
    CHECK(span_cut("\xC3\xA9\xC3\xA9x", 5, 2) == 4);
    CHECK(span_cut("\xE2\x82\xAC\xE2\x82\xAC", 6, 1) == 3);
}

/* The caller's buffer holds a line that fits; a longer one moves to the
 * heap with the same text. */
static void test_buffer(void)
{
    struct span_val vals[SPAN_NKEYS];
    record(vals);
    size_t n;
    char *want = line(vals, 4096, &n);
    char big[4096], small[16], *text;
    size_t len = span_format_to(vals, 4096, big, sizeof big, &text);
    CHECK(text == big);
    CHECK(len == n && strcmp(text, want) == 0);
    len = span_format_to(vals, 4096, small, sizeof small, &text);
    CHECK(text != small && text != NULL);
    CHECK(text && len == n && strcmp(text, want) == 0);
    if (text != small) {
        free(text);
    }
    /* Repaired UTF-8 in the caller's buffer. */
    vals[SPAN_TASK] = str("\xFF");
    len = span_format_to(vals, 4096, big, sizeof big, &text);
    CHECK(text && strstr(text, "\"task\":\"" FFFD "\"") != NULL);
    CHECK(text && strlen(text) == len);
    if (text != big) {
        free(text);
    }
    free(want);
}

int main(void)
{
    test_buffer();
    test_record();
    test_escapes();
    test_utf8_repair();
    test_numbers();
    test_cut();
    return check_exit("span");
}
