/* Unit tests of the UTF-8 helpers (src/utf8.c). */
#include <stdlib.h>
#include <string.h>

#include "ad/utf8.h"
#include "check.h"

#define FFFD "\xEF\xBF\xBD"

struct vcase {
    const char *name;
    const char *s;
    size_t n;      /* 0: strlen(s) */
    bool valid;
    const char *sanitized; /* expected utf8_sanitize output */
    size_t sanlen;         /* 0: strlen(sanitized) */
};

static const struct vcase vcases[] = {
    {"empty", "", 0, true, "", 0},
    {"ascii", "hello", 0, true, "hello", 0},
    {"embedded NUL", "a\0b", 3, true, "a\0b", 3},
    {"2-byte e-acute", "h\xC3\xA9llo", 0, true, "h\xC3\xA9llo", 0},
    {"3-byte euro", "\xE2\x82\xAC", 0, true, "\xE2\x82\xAC", 0},
    {"4-byte emoji", "\xF0\x9F\x98\x80", 0, true, "\xF0\x9F\x98\x80", 0},
    {"U+10FFFF", "\xF4\x8F\xBF\xBF", 0, true, "\xF4\x8F\xBF\xBF", 0},
    {"U+0080 smallest 2-byte", "\xC2\x80", 0, true, "\xC2\x80", 0},
    {"U+0800 smallest 3-byte", "\xE0\xA0\x80", 0, true, "\xE0\xA0\x80", 0},
    {"U+10000 smallest 4-byte", "\xF0\x90\x80\x80", 0, true,
     "\xF0\x90\x80\x80", 0},
    {"U+D7FF before surrogates", "\xED\x9F\xBF", 0, true, "\xED\x9F\xBF", 0},
    {"U+E000 after surrogates", "\xEE\x80\x80", 0, true, "\xEE\x80\x80", 0},
    {"U+FFFD itself", FFFD, 0, true, FFFD, 0},
    /* Ill-formed: every bad byte becomes one U+FFFD. */
    {"overlong 2-byte slash C0 AF", "\xC0\xAF", 0, false, FFFD FFFD, 0},
    {"overlong 2-byte C1 BF", "\xC1\xBF", 0, false, FFFD FFFD, 0},
    {"overlong 3-byte E0 80 AF", "\xE0\x80\xAF", 0, false, FFFD FFFD FFFD,
     0},
    {"overlong 3-byte E0 9F BF", "\xE0\x9F\xBF", 0, false, FFFD FFFD FFFD,
     0},
    {"overlong 4-byte F0 8F BF BF", "\xF0\x8F\xBF\xBF", 0, false,
     FFFD FFFD FFFD FFFD, 0},
    {"surrogate D800", "\xED\xA0\x80", 0, false, FFFD FFFD FFFD, 0},
    {"surrogate DFFF", "\xED\xBF\xBF", 0, false, FFFD FFFD FFFD, 0},
    {"above U+10FFFF F4 90", "\xF4\x90\x80\x80", 0, false,
     FFFD FFFD FFFD FFFD, 0},
    {"F5 lead", "\xF5\x80\x80\x80", 0, false, FFFD FFFD FFFD FFFD, 0},
    {"FF byte", "a\xFF" "b", 0, false, "a" FFFD "b", 0},
    {"FE byte", "\xFE", 0, false, FFFD, 0},
    {"lone continuation", "a\x80" "b", 0, false, "a" FFFD "b", 0},
    {"two continuations", "\xBF\x80", 0, false, FFFD FFFD, 0},
    {"truncated 2-byte at end", "ab\xC3", 0, false, "ab" FFFD, 0},
    {"truncated 3-byte at end", "\xE2\x82", 0, false, FFFD FFFD, 0},
    {"truncated 4-byte at end", "\xF0\x9F\x98", 0, false, FFFD FFFD FFFD, 0},
    {"truncated 3-byte then ascii", "\xE2\x82z", 0, false, FFFD FFFD "z", 0},
    {"lead then lead", "\xC3\xC3\xA9", 0, false, FFFD "\xC3\xA9", 0},
    {"bad then valid emoji", "\x80\xF0\x9F\x98\x80", 0, false,
     FFFD "\xF0\x9F\x98\x80", 0},
    {"NUL inside sequence", "\xC3\0", 2, false, FFFD "\0", 4},
};

static void test_valid_and_sanitize(void)
{
    for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
        const struct vcase *c = &vcases[i];
        size_t n = c->n ? c->n : strlen(c->s);
        size_t wantlen = c->sanlen ? c->sanlen : strlen(c->sanitized);
        CHECKF(utf8_valid(c->s, n) == c->valid, "case '%s'", c->name);
        size_t outlen = 12345;
        char *out = utf8_sanitize(c->s, n, &outlen);
        CHECKF(out != NULL, "case '%s'", c->name);
        if (!out) {
            continue;
        }
        CHECKF(outlen == wantlen && memcmp(out, c->sanitized, wantlen) == 0,
               "case '%s': sanitize gave %zu bytes, want %zu", c->name,
               outlen, wantlen);
        CHECKF(out[outlen] == '\0', "case '%s': not NUL-terminated",
               c->name);
        /* The result is always valid, and valid input is unchanged. */
        CHECKF(utf8_valid(out, outlen), "case '%s'", c->name);
        if (c->valid) {
            CHECKF(outlen == n && memcmp(out, c->s, n) == 0, "case '%s'",
                   c->name);
        }
        free(out);
    }
}

/* Only the first n bytes are considered. */
static void test_length_bound(void)
{
    const char *s = "h\xC3\xA9";
    CHECK(utf8_valid(s, 3));
    CHECK(!utf8_valid(s, 2));   /* cut inside the e-acute */
    CHECK(utf8_valid(s, 1));
    size_t n;
    char *out = utf8_sanitize(s, 2, &n);
    CHECK(out && n == 4 && memcmp(out, "h" FFFD, 4) == 0);
    free(out);
}

struct ccase {
    const char *name;
    const char *s;
    size_t count;
};

static const struct ccase ccases[] = {
    {"empty", "", 0},
    {"ascii", "hello", 5},
    {"latin", "h\xC3\xA9llo", 5},                     /* héllo */
    {"cyrillic", "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", 6},
    {"emoji", "\xF0\x9F\x98\x80\xF0\x9F\x8E\x89", 2},
    {"mixed", "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z", 5},
};

static void test_count(void)
{
    for (size_t i = 0; i < sizeof ccases / sizeof ccases[0]; i++) {
        CHECKF(utf8_count(ccases[i].s, strlen(ccases[i].s)) ==
                   ccases[i].count,
               "case '%s': %zu", ccases[i].name,
               utf8_count(ccases[i].s, strlen(ccases[i].s)));
    }
}

struct pcase {
    const char *name;
    const char *s;
    size_t max_cp;
    size_t bytes;
};

static const struct pcase pcases[] = {
    {"ascii 0", "hello", 0, 0},
    {"ascii 3", "hello", 3, 3},
    {"ascii exact", "hello", 5, 5},
    {"ascii more", "hello", 50, 5},
    {"empty", "", 3, 0},
    {"latin 1", "h\xC3\xA9llo", 1, 1},
    {"latin 2 keeps whole e-acute", "h\xC3\xA9llo", 2, 3},
    {"latin 3", "h\xC3\xA9llo", 3, 4},
    {"cyrillic 0", "\xD0\x9F\xD1\x80\xD0\xB8", 0, 0},
    {"cyrillic 1", "\xD0\x9F\xD1\x80\xD0\xB8", 1, 2},
    {"cyrillic 2", "\xD0\x9F\xD1\x80\xD0\xB8", 2, 4},
    {"cyrillic all", "\xD0\x9F\xD1\x80\xD0\xB8", 3, 6},
    {"emoji 1", "\xF0\x9F\x98\x80\xF0\x9F\x8E\x89", 1, 4},
    {"emoji 2", "\xF0\x9F\x98\x80\xF0\x9F\x8E\x89", 2, 8},
    {"mixed 3", "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z", 3, 6},
    {"mixed 4", "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z", 4, 10},
};

static void test_prefix(void)
{
    for (size_t i = 0; i < sizeof pcases / sizeof pcases[0]; i++) {
        const struct pcase *c = &pcases[i];
        size_t n = strlen(c->s);
        size_t got = utf8_prefix(c->s, n, c->max_cp);
        CHECKF(got == c->bytes, "case '%s': %zu bytes, want %zu", c->name,
               got, c->bytes);
        /* Every cut is a valid string of min(max_cp, count) code points. */
        CHECKF(utf8_valid(c->s, got), "case '%s'", c->name);
        size_t cnt = utf8_count(c->s, n);
        size_t want_cp = c->max_cp < cnt ? c->max_cp : cnt;
        CHECKF(utf8_count(c->s, got) == want_cp, "case '%s'", c->name);
    }
}

int main(void)
{
    test_valid_and_sanitize();
    test_length_bound();
    test_count();
    test_prefix();
    return check_exit("test_utf8");
}
