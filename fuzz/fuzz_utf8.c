/* UTF-8 repair and truncation: sanitize always yields valid UTF-8 that
 * equals the input when the input was valid; prefixes cut on code-point
 * boundaries and count what they promise. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bool valid = utf8_valid(s, size);
    size_t n = 0;
    char *clean = utf8_sanitize(s, size, &n);
    if (!clean) {
        return 0;
    }
    if (!utf8_valid(clean, n) || clean[n] != '\0') {
        abort();
    }
    if (valid && (n != size || memcmp(clean, s, size) != 0)) {
        abort(); /* valid input must pass through unchanged */
    }
    size_t cps = utf8_count(clean, n);
    for (size_t k = 0; k <= cps + 1; k += 1 + k / 3) {
        size_t p = utf8_prefix(clean, n, k);
        if (p > n || !utf8_valid(clean, p)) {
            abort(); /* cut inside a code point */
        }
        if (utf8_count(clean, p) != (k < cps ? k : cps)) {
            abort();
        }
    }
    free(clean);
    return 0;
}
