/* The stdio channel: the MCP server's only link to its client.
 *
 *   core.chan.stdin_read() -> line | nil (end of input) | false, "too_long"
 *   core.chan.stdout_write(s) -> true | nil, "closed"
 *   core.chan.stdout_drain([timeout]) -> true | nil, "timeout"
 *   core.chan.stdout_backlog() -> bytes written to stdout and not yet taken
 *       by the client (what a notification that may be dropped looks at)
 *   core.chan.stderr_write(s) -> true | false (dropped: stderr is full)
 *
 * Input is split into lines bounded by max_line (64 MiB): an over-long line
 * is discarded up to its newline and reported once, so memory stays bounded
 * and the server keeps serving. Output has one writer: each call queues one
 * complete message, so two messages never interleave, and partial writes
 * are completed by libuv. Pipes, ttys and sockets are driven by the loop;
 * a regular file (serve < requests.jsonl) is read and written directly,
 * which never blocks.
 *
 * A client that stops reading must not cost unbounded memory: once more
 * than OUT_HIGH bytes of replies wait to be written, no further request is
 * handed to the server (input is paused, queued lines are held) until the
 * backlog is below OUT_LOW; every reply is still written, none dropped.
 * The log (stderr) never blocks the server either: it is written by the
 * loop, and a log line that finds ERR_MAX bytes already waiting is dropped
 * and counted; the count is logged once stderr has drained.
 *
 * Over 500 lines on purpose: the three streams share one state (the input
 * gate reads the output backlog) and splitting them would expose it. The
 * shutdown signals are signal.c's; the raw JSON member scanner is json.c's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ad/linebuf.h"
#include "bind/bind.h"
#include "ad/sched.h"

#define MAX_LINE (64u << 20)
#define MAX_QUEUED_LINES 256
#define OUT_HIGH (4u << 20)
#define OUT_LOW (1u << 20)
#define ERR_MAX (256u << 10)

struct qline {
    struct qline *next;
    size_t len;
    bool too_long;
    char data[];
};

/* stdout or stderr as a libuv stream, when it is one (a pipe, a socket or
 * a terminal); anything else (a file, /dev/null) is written to directly. */
union stream {
    uv_pipe_t pipe;
    uv_tty_t tty;
};

static bool stream_open(union stream *s, int fd)
{
    uv_loop_t *loop = sched_loop();
    uv_handle_type t = uv_guess_handle(fd);
    if (t == UV_TTY) {
        return uv_tty_init(loop, &s->tty, fd, 0) == 0;
    }
    if (t == UV_NAMED_PIPE || t == UV_TCP) {
        return uv_pipe_init(loop, &s->pipe, 0) == 0 && uv_pipe_open(&s->pipe, fd) == 0;
    }
    return false;
}

static struct {
    bool in_open, in_streaming, in_reading, in_eof;
    union {
        uv_pipe_t pipe;
        uv_tty_t tty;
    } in;
    uv_idle_t in_idle;      /* regular-file input */
    struct linebuf lb;
    struct qline *head, *tail;
    size_t nqueued;
    struct task *reader;
    char buf[65536];

    bool out_open, out_streaming, out_broken;
    union stream out;
    size_t out_pending;
    bool out_gated;         /* too many reply bytes waiting: hold requests */
    struct task *drainer;
    uv_timer_t drain_timer;

    bool err_open, err_streaming, err_broken;
    union stream err;
    size_t err_pending;
    uint64_t err_dropped;   /* log lines dropped since the last notice */

} C;

/* ---- input ----------------------------------------------------------- */

static void deliver(lua_State *co, struct qline *l)
{
    if (l->too_long) {
        lua_pushboolean(co, 0);
        lua_pushliteral(co, "too_long");
    } else {
        lua_pushlstring(co, l->data, l->len);
    }
}

static void in_pause(void);
static void in_resume(void);

static void on_line(void *ud, const char *line, size_t n, bool too_long)
{
    (void)ud;
    if (C.reader && !C.out_gated) {
        struct task *t = C.reader;
        lua_State *co = sched_thread(t);
        C.reader = NULL;
        if (too_long) {
            lua_pushboolean(co, 0);
            lua_pushliteral(co, "too_long");
            sched_resume(t, 2);
        } else {
            lua_pushlstring(co, line, n);
            sched_resume(t, 1);
        }
        return;
    }
    struct qline *l = malloc(sizeof *l + (too_long ? 0 : n));
    if (!l) {
        return;
    }
    l->next = NULL;
    l->too_long = too_long;
    l->len = too_long ? 0 : n;
    if (!too_long) {
        memcpy(l->data, line, n);
    }
    if (C.tail) {
        C.tail->next = l;
    } else {
        C.head = l;
    }
    C.tail = l;
    if (++C.nqueued >= MAX_QUEUED_LINES) {
        in_pause();
    }
}

static void in_eof(void)
{
    linebuf_finish(&C.lb, on_line, NULL);
    C.in_eof = true;
    in_pause();
    if (C.reader && !C.head) {
        struct task *t = C.reader;
        C.reader = NULL;
        lua_pushnil(sched_thread(t));
        sched_resume(t, 1);
    }
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    (void)s;
    b->base = C.buf;
    b->len = sizeof C.buf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)s;
    if (n > 0) {
        linebuf_feed(&C.lb, b->base, (size_t)n, on_line, NULL);
    } else if (n < 0) {
        in_eof();
    }
}

static void on_file_idle(uv_idle_t *h)
{
    (void)h;
    ssize_t n = read(0, C.buf, sizeof C.buf);
    if (n > 0) {
        linebuf_feed(&C.lb, C.buf, (size_t)n, on_line, NULL);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        in_eof();
    }
}

static void in_pause(void)
{
    if (!C.in_reading) {
        return;
    }
    C.in_reading = false;
    if (C.in_streaming) {
        uv_read_stop((uv_stream_t *)&C.in);
    } else {
        uv_idle_stop(&C.in_idle);
    }
}

static void in_resume(void)
{
    if (C.in_reading || C.in_eof || C.out_gated) {
        return;
    }
    C.in_reading = true;
    if (C.in_streaming) {
        uv_read_start((uv_stream_t *)&C.in, alloc_cb, on_read);
    } else {
        uv_idle_start(&C.in_idle, on_file_idle);
    }
}

static void in_open(void)
{
    if (C.in_open) {
        return;
    }
    C.in_open = true;
    uv_loop_t *loop = sched_loop();
    linebuf_init(&C.lb, MAX_LINE);
    uv_handle_type t = uv_guess_handle(0);
    if (t == UV_TTY) {
        C.in_streaming = uv_tty_init(loop, &C.in.tty, 0, 1) == 0;
    } else if (t == UV_NAMED_PIPE || t == UV_TCP) {
        C.in_streaming = uv_pipe_init(loop, &C.in.pipe, 0) == 0 &&
                         uv_pipe_open(&C.in.pipe, 0) == 0;
    }
    uv_idle_init(loop, &C.in_idle);
}

static void cancel_read(struct task *t, void *data)
{
    (void)t;
    (void)data;
    C.reader = NULL;
}

static int l_stdin_read(lua_State *L)
{
    in_open();
    if (C.head && !C.out_gated) {
        struct qline *l = C.head;
        C.head = l->next;
        if (!C.head) {
            C.tail = NULL;
        }
        C.nqueued--;
        deliver(L, l);
        int n = l->too_long ? 2 : 1;
        free(l);
        if (C.nqueued < MAX_QUEUED_LINES / 2) {
            in_resume();
        }
        return n;
    }
    if (C.in_eof && !C.head) {
        lua_pushnil(L);
        return 1;
    }
    if (C.reader) {
        return luaL_error(L, "stdin already has a reader");
    }
    struct task *me = sched_check_wait(L);
    C.reader = me;
    in_resume();
    return sched_wait(L, cancel_read, NULL);
}

/* ---- output ------------------------------------------------------------ */

struct wreq {
    uv_write_t req;
    size_t len;
    char data[];
};

static void out_open(void)
{
    if (C.out_open) {
        return;
    }
    C.out_open = true;
    C.out_streaming = stream_open(&C.out, 1);
    uv_timer_init(sched_loop(), &C.drain_timer);
}

static void wake_drainer(void)
{
    if (C.drainer) {
        struct task *t = C.drainer;
        C.drainer = NULL;
        uv_timer_stop(&C.drain_timer);
        lua_pushboolean(sched_thread(t), 1);
        sched_resume(t, 1);
    }
}

/* Hands the oldest held line (or the end of input) to a waiting reader. */
static void feed_reader(void)
{
    if (!C.reader || C.out_gated) {
        return;
    }
    struct task *t = C.reader;
    lua_State *co = sched_thread(t);
    if (C.head) {
        struct qline *l = C.head;
        C.head = l->next;
        if (!C.head) {
            C.tail = NULL;
        }
        C.nqueued--;
        C.reader = NULL;
        deliver(co, l);
        int n = l->too_long ? 2 : 1;
        free(l);
        sched_resume(t, n);
    } else if (C.in_eof) {
        C.reader = NULL;
        lua_pushnil(co);
        sched_resume(t, 1);
    }
}

/* Back-pressure: called whenever out_pending changes. */
enum { QUEUED = 0, QUEUE_NO_MEMORY, QUEUE_BROKEN };

/* Writes what stream st takes now and queues a copy of the rest behind
 * what is pending (*pending counts the bytes queued; cb frees the copy
 * and takes them off); never blocks. */
static int write_or_queue(uv_stream_t *st, size_t *pending, const char *s, size_t n,
                          uv_write_cb cb)
{
    if (*pending == 0) {
        uv_buf_t b = uv_buf_init((char *)s, (unsigned)n);
        int w = uv_try_write(st, &b, 1);
        if (w >= 0) {
            s += w;
            n -= (size_t)w;
        } else if (w != UV_EAGAIN) {
            return QUEUE_BROKEN;
        }
    }
    if (n == 0) {
        return QUEUED;
    }
    struct wreq *w = malloc(sizeof *w + n);
    if (!w) {
        return QUEUE_NO_MEMORY;
    }
    w->len = n;
    memcpy(w->data, s, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, st, &b, 1, cb) < 0) {
        free(w);
        return QUEUE_BROKEN;
    }
    *pending += n;
    return QUEUED;
}

static void out_gate(void)
{
    if (!C.out_gated && C.out_pending > OUT_HIGH && !C.out_broken) {
        C.out_gated = true;
        in_pause();
    } else if (C.out_gated && (C.out_pending <= OUT_LOW || C.out_broken)) {
        C.out_gated = false;
        feed_reader();
        if (C.reader || C.nqueued < MAX_QUEUED_LINES / 2) {
            in_resume();
        }
    }
}

static void on_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    C.out_pending -= w->len;
    if (status < 0) {
        C.out_broken = true;
    }
    free(w);
    if (C.out_pending == 0 || C.out_broken) {
        wake_drainer();
    }
    out_gate();
}

static int l_stdout_write(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    out_open();
    if (C.out_broken) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    if (!C.out_streaming) {
        while (n > 0) {
            ssize_t w = write(1, s, n);
            if (w < 0) {
                if (errno == EINTR || errno == EAGAIN) {
                    continue;
                }
                C.out_broken = true;
                lua_pushnil(L);
                lua_pushliteral(L, "closed");
                return 2;
            }
            s += w;
            n -= (size_t)w;
        }
        lua_pushboolean(L, 1);
        return 1;
    }
    switch (write_or_queue((uv_stream_t *)&C.out, &C.out_pending, s, n, on_written)) {
    case QUEUE_NO_MEMORY:
        return luaL_error(L, "out of memory");
    case QUEUE_BROKEN:
        C.out_broken = true;
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    default:
        out_gate();
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_stdout_backlog(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)C.out_pending);
    return 1;
}

/* ---- log (stderr) -------------------------------------------------------- */

static void err_open(void)
{
    if (C.err_open) {
        return;
    }
    C.err_open = true;
    C.err_streaming = stream_open(&C.err, 2);
}

static size_t count_lines(const char *s, size_t n)
{
    size_t k = 0;
    for (const char *p = s; (p = memchr(p, '\n', n - (size_t)(p - s))) != NULL; p++) {
        k++;
    }
    return k ? k : 1;
}

static void err_queue(const char *s, size_t n);

static void on_err_written(uv_write_t *req, int status)
{
    struct wreq *w = (struct wreq *)req;
    C.err_pending -= w->len;
    if (status < 0) {
        C.err_broken = true;
    }
    free(w);
    if (C.err_pending == 0 && C.err_dropped > 0 && !C.err_broken) {
        char note[96];
        int k = snprintf(note, sizeof note, "agent-dispatch: %llu log line%s dropped "
                         "(stderr was not being read)\n",
                         (unsigned long long)C.err_dropped,
                         C.err_dropped == 1 ? "" : "s");
        C.err_dropped = 0;
        err_queue(note, (size_t)k);
    }
}

/* Writes what the pipe takes now and queues the rest; never blocks. */
static void err_queue(const char *s, size_t n)
{
    switch (write_or_queue((uv_stream_t *)&C.err, &C.err_pending, s, n, on_err_written)) {
    case QUEUE_NO_MEMORY:
        C.err_dropped++;
        break;
    case QUEUE_BROKEN:
        C.err_broken = true;
        break;
    default:
        break;
    }
}

static int l_stderr_write(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    err_open();
    if (!C.err_streaming) {
        /* A regular file or /dev/null: a plain write never blocks. */
        while (n > 0) {
            ssize_t w = write(2, s, n);
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                break;
            }
            s += w;
            n -= (size_t)w;
        }
        lua_pushboolean(L, n == 0);
        return 1;
    }
    if (C.err_broken || (C.err_pending > 0 && C.err_pending + n > ERR_MAX)) {
        C.err_dropped += count_lines(s, n);
        lua_pushboolean(L, 0);
        return 1;
    }
    err_queue(s, n);
    lua_pushboolean(L, 1);
    return 1;
}

static void on_drain_timeout(uv_timer_t *h)
{
    (void)h;
    if (C.drainer) {
        struct task *t = C.drainer;
        C.drainer = NULL;
        lua_pushnil(sched_thread(t));
        lua_pushliteral(sched_thread(t), "timeout");
        sched_resume(t, 2);
    }
}

static void cancel_drain(struct task *t, void *data)
{
    (void)t;
    (void)data;
    C.drainer = NULL;
    uv_timer_stop(&C.drain_timer);
}

static int l_stdout_drain(lua_State *L)
{
    double timeout = luaL_optnumber(L, 1, 2.0);
    if (!C.out_open || C.out_pending == 0 || C.out_broken) {
        lua_pushboolean(L, 1);
        return 1;
    }
    struct task *me = sched_check_wait(L);
    C.drainer = me;
    uv_timer_start(&C.drain_timer, on_drain_timeout,
                   sched_ms(timeout), 0);
    return sched_wait(L, cancel_drain, NULL);
}

/* Closes every handle of the channel (shutdown, after the root task). */
void bind_chan_close(void)
{
    if (C.in_open) {
        if (C.in_streaming && !uv_is_closing((uv_handle_t *)&C.in)) {
            uv_close((uv_handle_t *)&C.in, NULL);
        }
        uv_close((uv_handle_t *)&C.in_idle, NULL);
        linebuf_free(&C.lb);
        while (C.head) {
            struct qline *l = C.head;
            C.head = l->next;
            free(l);
        }
        C.tail = NULL;
        C.in_open = false;
    }
    if (C.out_open) {
        if (C.out_streaming) {
            uv_close((uv_handle_t *)&C.out, NULL);
        }
        uv_close((uv_handle_t *)&C.drain_timer, NULL);
        C.out_open = false;
    }
    if (C.err_open) {
        if (C.err_streaming) {
            uv_close((uv_handle_t *)&C.err, NULL);
        }
        C.err_open = false;
    }
}

void bind_chan_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"stdin_read", l_stdin_read},
        {"stdout_write", l_stdout_write},
        {"stdout_backlog", l_stdout_backlog},
        {"stdout_drain", l_stdout_drain},
        {"stderr_write", l_stderr_write},
        {NULL, NULL},
    };
    bind_subtable(L, "chan", fns);
}
