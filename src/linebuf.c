/* Bounded line splitter; see linebuf.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ad/linebuf.h"

void linebuf_init(struct linebuf *lb, size_t max)
{
    memset(lb, 0, sizeof *lb);
    lb->max = max;
}

void linebuf_free(struct linebuf *lb)
{
    free(lb->buf);
    lb->buf = NULL;
    lb->len = lb->cap = 0;
}

static void emit(struct linebuf *lb, const char *line, size_t n,
                linebuf_cb cb, void *ud)
{
    if (n > 0 && line[n - 1] == '\r') {
        n--;
    }
    cb(ud, line, n, false);
}

static int append(struct linebuf *lb, const char *data, size_t n)
{
    if (lb->len + n > lb->cap) {
        size_t cap = lb->cap ? lb->cap : 4096;
        while (cap < lb->len + n) {
            cap *= 2;
        }
        char *nb = realloc(lb->buf, cap);
        if (!nb) {
            return -ENOMEM;
        }
        lb->buf = nb;
        lb->cap = cap;
    }
    memcpy(lb->buf + lb->len, data, n);
    lb->len += n;
    return 0;
}

int linebuf_feed(struct linebuf *lb, const char *data, size_t n,
                 linebuf_cb cb, void *ud)
{
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t chunk = nl ? (size_t)(nl - data) : n;
        if (lb->discarding) {
            if (nl) {
                lb->discarding = false;
            }
        } else if (lb->len + chunk > lb->max) {
            /* Over the bound: drop what we hold and skip to the newline. */
            lb->len = 0;
            lb->discarding = (nl == NULL);
            if (lb->cap > 65536) {
                free(lb->buf);
                lb->buf = NULL;
                lb->cap = 0;
            }
            cb(ud, NULL, 0, true);
        } else if (nl && lb->len == 0) {
            /* Fast path: a whole line inside this chunk, no copy. */
            emit(lb, data, chunk, cb, ud);
        } else {
            if (append(lb, data, chunk) != 0) {
                return -ENOMEM;
            }
            if (nl) {
                size_t len = lb->len;
                lb->len = 0;
                emit(lb, lb->buf, len, cb, ud);
            }
        }
        if (!nl) {
            break;
        }
        data += chunk + 1;
        n -= chunk + 1;
    }
    return 0;
}

void linebuf_finish(struct linebuf *lb, linebuf_cb cb, void *ud)
{
    if (lb->len > 0 && !lb->discarding) {
        size_t len = lb->len;
        lb->len = 0;
        emit(lb, lb->buf, len, cb, ud);
    }
    lb->len = 0;
    lb->discarding = false;
}
