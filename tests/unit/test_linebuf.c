/* Unit tests of the bounded line splitter (src/linebuf.c). */
#include <stdlib.h>
#include <string.h>

#include "ad/linebuf.h"
#include "check.h"

/* Records every callback as a string; a too-long report is "<TOO_LONG>". */
struct rec {
    char *lines[64];
    size_t n;
    int bad_too_long; /* too_long with a non-NULL line, or line NULL alone */
};

static void on_line(void *ud, const char *line, size_t n, bool too_long)
{
    struct rec *r = ud;
    if (too_long != (line == NULL)) {
        r->bad_too_long++;
    }
    if (r->n >= 64) {
        return;
    }
    char *s;
    if (too_long) {
        s = strdup("<TOO_LONG>");
    } else {
        s = malloc(n + 1);
        memcpy(s, line, n);
        s[n] = '\0';
    }
    r->lines[r->n++] = s;
}

static void rec_free(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->lines[i]);
    }
    memset(r, 0, sizeof *r);
}

static int feed(struct linebuf *lb, struct rec *r, const char *s)
{
    return linebuf_feed(lb, s, strlen(s), on_line, r);
}

/* Table: input split into feeds (NULL-terminated), expected lines after
 * linebuf_finish (NULL-terminated). */
struct tcase {
    const char *name;
    size_t max;
    const char *feeds[8];
    const char *want[8];
};

static const struct tcase cases[] = {
    {"one line", 100, {"hello\n", NULL}, {"hello", NULL}},
    {"split across feeds", 100, {"hel", "lo wo", "rld\nnext", "\n", NULL},
     {"hello world", "next", NULL}},
    {"byte at a time", 100, {"a", "b", "\n", "c", "\n", NULL},
     {"ab", "c", NULL}},
    {"many in one feed", 100, {"a\nbb\nccc\n\ndddd\n", NULL},
     {"a", "bb", "ccc", "", "dddd", NULL}},
    {"empty lines", 100, {"\n\n", "\n", NULL}, {"", "", "", NULL}},
    {"crlf", 100, {"a\r\nb\r\n", NULL}, {"a", "b", NULL}},
    {"crlf split", 100, {"abc\r", "\n", NULL}, {"abc", NULL}},
    {"only one cr stripped", 100, {"x\r\r\n", NULL}, {"x\r", NULL}},
    {"bare cr kept", 100, {"a\rb\n", NULL}, {"a\rb", NULL}},
    {"empty crlf line", 100, {"\r\n", NULL}, {"", NULL}},
    {"final line no newline", 100, {"a\nlast", NULL}, {"a", "last", NULL}},
    {"final line split, no newline", 100, {"la", "st", NULL},
     {"last", NULL}},
    {"final line with cr", 100, {"end\r", NULL}, {"end", NULL}},
    {"nothing pending at finish", 100, {"a\n", NULL}, {"a", NULL}},
    {"exactly max", 5, {"12345\n", NULL}, {"12345", NULL}},
    {"exactly max buffered", 5, {"123", "45\n", NULL}, {"12345", NULL}},
    {"too long in one feed", 5, {"123456\nok\n", NULL},
     {"<TOO_LONG>", "ok", NULL}},
    {"too long then next intact", 5, {"1234567890\nabc\n", NULL},
     {"<TOO_LONG>", "abc", NULL}},
    {"too long spanning feeds", 5,
     {"1234", "5678", "90ab", "cdef\nnext\n", NULL},
     {"<TOO_LONG>", "next", NULL}},
    {"too long spanning feeds, next split", 4,
     {"aaaaaaaa", "aaaaaaaa", "aa\nne", "xt\n", NULL},
     {"<TOO_LONG>", "next", NULL}},
    {"too long with newline at next feed start", 3, {"abcdef", "\nok\n", NULL},
     {"<TOO_LONG>", "ok", NULL}},
    {"too long, never terminated", 3, {"abcdef", "ghi", NULL},
     {"<TOO_LONG>", NULL}},
    {"two too long", 3, {"aaaa\nbbbbbb\nc\n", NULL},
     {"<TOO_LONG>", "<TOO_LONG>", "c", NULL}},
    {"good, too long, good", 3, {"ab\nxxxxx", "xxxx\ncd\n", NULL},
     {"ab", "<TOO_LONG>", "cd", NULL}},
};

static void run_case(const struct tcase *tc)
{
    struct linebuf lb;
    struct rec r;
    memset(&r, 0, sizeof r);
    linebuf_init(&lb, tc->max);
    for (size_t i = 0; tc->feeds[i]; i++) {
        CHECKF(feed(&lb, &r, tc->feeds[i]) == 0, "case '%s'", tc->name);
    }
    linebuf_finish(&lb, on_line, &r);
    size_t nwant = 0;
    while (tc->want[nwant]) {
        nwant++;
    }
    CHECKF(r.n == nwant, "case '%s': %zu lines, want %zu", tc->name, r.n,
           nwant);
    for (size_t i = 0; i < nwant && i < r.n; i++) {
        CHECKF(strcmp(r.lines[i], tc->want[i]) == 0,
               "case '%s' line %zu: got \"%s\", want \"%s\"", tc->name, i,
               r.lines[i], tc->want[i]);
    }
    CHECKF(r.bad_too_long == 0, "case '%s'", tc->name);
    /* After finish the splitter starts clean. */
    rec_free(&r);
    CHECK_INT(feed(&lb, &r, "ok\n"), 0);
    CHECKF(r.n == 1 && strcmp(r.lines[0], "ok") == 0, "case '%s' reuse",
           tc->name);
    rec_free(&r);
    linebuf_free(&lb);
}

/* Lines are delivered as soon as their '\n' arrives, not at finish. */
static void test_incremental_delivery(void)
{
    struct linebuf lb;
    struct rec r;
    memset(&r, 0, sizeof r);
    linebuf_init(&lb, 64);
    feed(&lb, &r, "par");
    CHECK_INT(r.n, 0);
    feed(&lb, &r, "tial\nmo");
    CHECK_INT(r.n, 1);
    feed(&lb, &r, "re\n");
    CHECK_INT(r.n, 2);
    linebuf_finish(&lb, on_line, &r);
    CHECK_INT(r.n, 2);
    rec_free(&r);
    linebuf_free(&lb);
}

/* The too-long report happens once even over many feeds. */
static void test_too_long_reported_once(void)
{
    struct linebuf lb;
    struct rec r;
    memset(&r, 0, sizeof r);
    linebuf_init(&lb, 16);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 200; i++) {
        CHECK_INT(linebuf_feed(&lb, chunk, sizeof chunk, on_line, &r), 0);
    }
    CHECK_INT(r.n, 1);
    CHECK(r.n >= 1 && strcmp(r.lines[0], "<TOO_LONG>") == 0);
    /* Memory stays bounded while discarding. */
    CHECK(lb.len <= 16);
    CHECK(lb.cap <= 65536);
    feed(&lb, &r, "tail of the long line\nshort\n");
    CHECK_INT(r.n, 2);
    CHECK(r.n >= 2 && strcmp(r.lines[1], "short") == 0);
    rec_free(&r);
    linebuf_free(&lb);
}

/* Embedded NUL bytes are part of a line. */
static void test_binary_line(void)
{
    struct linebuf lb;
    struct rec r;
    memset(&r, 0, sizeof r);
    linebuf_init(&lb, 64);
    CHECK_INT(linebuf_feed(&lb, "a\0b\n", 4, on_line, &r), 0);
    CHECK_INT(r.n, 1);
    CHECK(r.n == 1 && r.lines[0][0] == 'a' && r.lines[0][1] == '\0' &&
          r.lines[0][2] == 'b');
    rec_free(&r);
    linebuf_free(&lb);
}

/* A long (but allowed) line grows the buffer past its first capacity. */
static void test_large_allowed_line(void)
{
    enum { L = 200000 };
    struct linebuf lb;
    struct rec r;
    memset(&r, 0, sizeof r);
    linebuf_init(&lb, L);
    char *big = malloc(L + 1);
    for (size_t i = 0; i < L; i++) {
        big[i] = (char)('a' + i % 26);
    }
    big[L] = '\n';
    for (size_t off = 0; off < L + 1; off += 3001) {
        size_t n = L + 1 - off < 3001 ? L + 1 - off : 3001;
        CHECK(linebuf_feed(&lb, big + off, n, on_line, &r) == 0);
    }
    CHECK_INT(r.n, 1);
    CHECK(r.n == 1 && strlen(r.lines[0]) == L &&
          memcmp(r.lines[0], big, L) == 0);
    free(big);
    rec_free(&r);
    linebuf_free(&lb);
}

int main(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i]);
    }
    test_incremental_delivery();
    test_too_long_reported_once();
    test_binary_line();
    test_large_allowed_line();
    return check_exit("test_linebuf");
}
