/* UTF-8 helpers. Every length a user sees is counted in code points (the
 * spec's convention), and every cut lands on a code-point boundary. */
#ifndef AD_UTF8_H
#define AD_UTF8_H
#include <stdbool.h>
#include <stddef.h>

/* True when s[0..n) is well-formed UTF-8 (no overlongs, no surrogates). */
bool utf8_valid(const char *s, size_t n);

/* Copies s into a new malloc'd buffer with every ill-formed sequence
 * replaced by U+FFFD. Returns the buffer (NUL-terminated) and its length in
 * *outlen, or NULL when out of memory. */
char *utf8_sanitize(const char *s, size_t n, size_t *outlen);

/* Number of code points in valid UTF-8 s[0..n). */
size_t utf8_count(const char *s, size_t n);

/* Byte length of the first max_cp code points of valid UTF-8 s[0..n). */
size_t utf8_prefix(const char *s, size_t n, size_t max_cp);

#endif
