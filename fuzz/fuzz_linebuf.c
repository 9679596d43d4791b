/* linebuf: any byte stream, cut into any chunks, yields exactly the lines
 * a one-shot split yields (each at most max bytes, too-long ones reported
 * once), and never grows past its bound. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ad/linebuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    size_t lines, too_long, bytes;
    size_t max;
};

static void on_line(void *ud, const char *line, size_t n, bool too_long)
{
    struct seen *s = ud;
    if (too_long) {
        if (line != NULL) {
            abort(); /* a too-long line is reported without its bytes */
        }
        s->too_long++;
        return;
    }
    if (n > s->max || memchr(line, '\n', n) != NULL) {
        abort(); /* over the bound, or a newline inside a line */
    }
    s->lines++;
    s->bytes += n;
}

static void split(const uint8_t *data, size_t size, size_t max, size_t chunk,
                  struct seen *s)
{
    struct linebuf lb;
    linebuf_init(&lb, max);
    s->max = max;
    for (size_t off = 0; off < size; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (linebuf_feed(&lb, (const char *)data + off, n, on_line, s) != 0) {
            abort();
        }
        if (lb.len > max + 1) {
            abort(); /* the buffer outgrew its bound */
        }
    }
    linebuf_finish(&lb, on_line, s);
    linebuf_free(&lb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    size_t max = 1 + data[0] % 64;   /* small bounds reach the too-long path */
    size_t chunk = 1 + data[1] % 17;
    data += 2;
    size -= 2;
    struct seen whole = {0}, chunked = {0};
    split(data, size, max, size ? size : 1, &whole);
    split(data, size, max, chunk, &chunked);
    if (whole.lines != chunked.lines || whole.too_long != chunked.too_long ||
        whole.bytes != chunked.bytes) {
        abort(); /* the result depends on how the stream was cut */
    }
    return 0;
}
