/* Splits a byte stream into lines with a hard bound on line size, so a
 * peer that never sends '\n' cannot make us grow without limit. A line
 * longer than max is discarded up to its newline and reported once as
 * too long. One trailing '\r' is stripped (CRLF input is accepted). */
#ifndef AD_LINEBUF_H
#define AD_LINEBUF_H
#include <stdbool.h>
#include <stddef.h>

/* Called once per complete line. line is NOT NUL-terminated and only valid
 * during the call; a too-long line is reported once, with line NULL. */
typedef void (*linebuf_cb)(void *ud, const char *line, size_t n, bool too_long);

struct linebuf {
    char *buf;
    size_t len;
    size_t cap;
    size_t max;
    bool discarding;
};

void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_free(struct linebuf *lb);

/* Appends data[0..n) and reports each complete line. Returns 0, or -ENOMEM
 * (the data is then dropped and the buffer stays consistent). */
int linebuf_feed(struct linebuf *lb, const char *data, size_t n,
                 linebuf_cb cb, void *ud);

/* At end of stream: reports a final line that had no '\n', if any. */
void linebuf_finish(struct linebuf *lb, linebuf_cb cb, void *ud);

#endif
