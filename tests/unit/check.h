/* Minimal assertion helpers for the C unit tests (no framework).
 *
 * CHECK(expr) prints file:line and the failing expression and counts the
 * failure; the test keeps going so one run reports every broken case.
 * CHECKF adds a printf-style detail line. check_exit() is main's return. */
#ifndef AD_TEST_CHECK_H
#define AD_TEST_CHECK_H
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(expr)                                                         \
    do {                                                                    \
        check_count++;                                                      \
        if (!(expr)) {                                                      \
            check_failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,          \
                    __LINE__, #expr);                                       \
        }                                                                   \
    } while (0)

#define CHECKF(expr, ...)                                                   \
    do {                                                                    \
        check_count++;                                                      \
        if (!(expr)) {                                                      \
            check_failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n    ", __FILE__,      \
                    __LINE__, #expr);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fputc('\n', stderr);                                            \
        }                                                                   \
    } while (0)

/* String equality with both values printed on failure. */
#define CHECK_STR(got, want)                                                \
    do {                                                                    \
        const char *check_g_ = (got);                                       \
        const char *check_w_ = (want);                                      \
        CHECKF(check_g_ && check_w_ && strcmp(check_g_, check_w_) == 0,     \
               "got \"%s\", want \"%s\"", check_g_ ? check_g_ : "(null)",   \
               check_w_ ? check_w_ : "(null)");                             \
    } while (0)

#define CHECK_INT(got, want)                                                \
    do {                                                                    \
        long long check_g_ = (long long)(got);                              \
        long long check_w_ = (long long)(want);                             \
        CHECKF(check_g_ == check_w_, "%s = %lld, want %lld", #got,          \
               check_g_, check_w_);                                         \
    } while (0)

static inline int check_exit(const char *name)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, check_failures,
                check_count);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, check_count);
    return 0;
}

#endif
