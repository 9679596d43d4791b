/* JSON text pieces shared by the reply encoder and the span line
 * (include/ad/json_text.h). */
#include "ad/json_text.h"

#include <math.h>

const char *json_text_escape(unsigned char c)
{
    static const char *ctl[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
        "\\u0006", "\\u0007", "\\b",     "\\t",     "\\n",     "\\u000b",
        "\\f",     "\\r",     "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d",
        "\\u001e", "\\u001f",
    };
    if (c < 32) {
        return ctl[c];
    }
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case 127:
        return "\\u007f";
    default:
        return NULL;
    }
}

size_t json_text_int(long long v, char out[24])
{
    char tmp[24];
    size_t n = 0, len = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                 : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        out[len++] = '-';
    }
    while (n) {
        out[len++] = tmp[--n];
    }
    return len;
}

/* x is the double nearest to m / scale, a decimal of at most 14 digits,
 * so rounding x to 14 digits gives that decimal, which %g writes without
 * exponent (1e-4 <= |x| < 1e14) and without trailing zeros. */
size_t json_text_decimal(double x, char out[32])
{
    static const double scale[] = {1, 1e3, 1e6};
    static const long long div[] = {1, 1000, 1000000};
    double ax = fabs(x);
    if (!(ax >= 1e-4 && ax < 1e14)) {
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        double y = ax * scale[i];
        if (y >= 1e14) {
            return 0;
        }
        long long m = llround(y);
        if ((double)m / scale[i] != ax) {
            continue;
        }
        long long ip = m / div[i], fp = m % div[i];
        size_t n = 0;
        if (x < 0) {
            out[n++] = '-';
        }
        n += json_text_int(ip, out + n);
        if (fp) {
            int digits = i == 1 ? 3 : 6;
            while (fp % 10 == 0) {
                fp /= 10;
                digits--;
            }
            out[n++] = '.';
            for (int d = digits - 1; d >= 0; d--) { /* zero-padded */
                out[n + (size_t)d] = (char)('0' + fp % 10);
                fp /= 10;
            }
            n += (size_t)digits;
        }
        return n;
    }
    return 0;
}
