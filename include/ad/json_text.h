/* The pieces of JSON text that the reply encoder (src/bind/json_encode.c)
 * and the span line (src/span.c) both write byte for byte as lua-cjson
 * does: string escapes and the numbers "%.14g" would give. One copy, so
 * the two writers can never disagree on a byte. */
#ifndef AD_JSON_TEXT_H
#define AD_JSON_TEXT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* lua-cjson's escape of byte c, or NULL when it is written as it is; "/"
 * stays "/" (ad.infra.json always turned cjson's "\/" back into "/"). */
const char *json_text_escape(unsigned char c);

/* True when none of the 8 bytes of w needs an escape (below 32, '"',
 * '\\', 127): the usual bit tricks for "a byte below n" and "a zero byte"
 * (after an exclusive or with the byte looked for), exact for the word as
 * a whole. Texts are mostly plain: they are scanned a word at a time, and
 * only a word with something to escape byte by byte. */
static inline bool json_text_plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\'), del = w ^ (ones * 127);
    uint64_t hit = ((w - ones * 32) & ~w) | ((q - ones) & ~q) |
                   ((bs - ones) & ~bs) | ((del - ones) & ~del);
    return (hit & high) == 0;
}

/* The decimal digits of v (a '-' first when negative); returns the
 * length (at most 20). For |v| < 10^14 this is what "%.14g" writes. */
size_t json_text_int(long long v, char out[24]);

/* The text "%.14g" gives a double with at most 6 decimals and at most 14
 * significant digits (a time rounded to the millisecond, a cost in
 * dollars), without a call into it. Returns the length, 0 for any other
 * value (-0, tiny, huge, more digits: the caller formats those). */
size_t json_text_decimal(double x, char out[32]);

#endif
