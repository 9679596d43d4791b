/* Unit tests of the identifier validators (src/validate.c). */
#include <string.h>

#include "ad/validate.h"
#include "check.h"

struct vcase {
    const char *s;
    size_t n; /* (size_t)-1: strlen */
    bool ok;
};

#define S(x) x, (size_t)-1

static const struct vcase names[] = {
    {S("infra"), true},
    {S("backend-api"), true},
    {S("agent_1"), true},
    {S("A1"), true},
    {S("a"), true},
    {S("9lives"), true},
    {S("a-"), true},
    {S("a_"), true},
    {S("Z-_-z"), true},
    {S(""), false},
    {S("-start"), false},
    {S("_start"), false},
    {S("has space"), false},
    {S("special!"), false},
    {S("a/b"), false},
    {S("../etc"), false},
    {S("."), false},
    {S("a.b"), false},
    {S("abc\n"), false},
    {S("abc\r"), false},
    {S("\nabc"), false},
    {S("ab\tc"), false},
    {S("caf\xC3\xA9"), false},
    {"ab\0cd", 5, false},     /* embedded NUL is not a name character */
    {"abc\0", 4, false},
};

static const struct vcase job_ids[] = {
    {S("0123456789abcdef0123456789abcdef"), true},
    {S("ffffffffffffffffffffffffffffffff"), true},
    {S("00000000000000000000000000000000"), true},
    {S("0123456789ABCDEF0123456789abcdef"), false}, /* uppercase */
    {S("0123456789abcdef0123456789abcdeF"), false},
    {S("0123456789abcdef0123456789abcde"), false},  /* 31 */
    {S("0123456789abcdef0123456789abcdef0"), false}, /* 33 */
    {S(""), false},
    {S("../3456789abcdef0123456789abcdef"), false},
    {S("0123456789abcdef/123456789abcdef"), false},
    {S("0123456789abcdef0123456789abcde\n"), false}, /* 31 + \n */
    {S("0123456789abcdef0123456789abcdef\n"), false}, /* 32 + \n */
    {S("0123456789abcdefg123456789abcdef"), false},  /* g */
    {S("0123456789abcdef-123456789abcdef"), false},
    {S("0123456789abcdef 123456789abcdef"), false},
    {S("01234567-89ab-cdef-0123-456789ab"), false},
    {"0123456789abcdef\0" "123456789abcdef", 32, false},
};

static const struct vcase not_flags[] = {
    {S("sonnet"), true},
    {S(""), true},
    {S("a-b"), true},
    {S("a--"), true},
    {S(" -x"), true},
    {S("-"), false},
    {S("-x"), false},
    {S("--resume"), false},
    {S("--"), false},
};

static void run(const char *what, bool (*fn)(const char *, size_t),
                const struct vcase *cs, size_t nc)
{
    for (size_t i = 0; i < nc; i++) {
        size_t n = cs[i].n == (size_t)-1 ? strlen(cs[i].s) : cs[i].n;
        bool got = fn(cs[i].s, n);
        CHECKF(got == cs[i].ok, "%s(\"%s\", %zu) = %d, want %d", what,
               cs[i].s, n, got, cs[i].ok);
    }
}

int main(void)
{
    run("validate_name", validate_name, names, sizeof names / sizeof *names);
    run("validate_job_id", validate_job_id, job_ids,
        sizeof job_ids / sizeof *job_ids);
    run("validate_not_flag", validate_not_flag, not_flags,
        sizeof not_flags / sizeof *not_flags);
    /* Only s[0..n) is read: a valid prefix of a longer buffer is valid. */
    CHECK(validate_name("infra!!!", 5));
    CHECK(!validate_name("infra!!!", 6));
    CHECK(validate_job_id("0123456789abcdef0123456789abcdefXYZ", 32));
    return check_exit("test_validate");
}
