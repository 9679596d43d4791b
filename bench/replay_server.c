/*
 * replay_server.c - the floor of the start -> tools/list benchmark: a stdio
 * JSON-RPC server that answers with the very bytes agent-dispatch sends.
 *
 *   replay_server FILE
 *
 * FILE holds one response line per request, in order (the product's own
 * initialize and tools/list responses, recorded earlier in the run).  It is
 * read once at start; then every input line that carries an "id" is
 * answered with the next response line (raw write(2)); notifications get
 * nothing.  No JSON parsing, no allocation after start.  Exits at end of
 * input.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char resp[1 << 20];

int main(int argc, char **argv)
{
    if (argc != 2) {
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        return 2;
    }
    size_t len = 0;
    ssize_t got;
    while ((got = read(fd, resp + len, sizeof resp - len)) > 0) {
        len += (size_t)got;
    }
    close(fd);
    char buf[65536], line[4096];
    size_t llen = 0, next = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n <= 0) {
            return 0;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (llen < sizeof line - 1) {
                    line[llen++] = buf[i];
                }
                continue;
            }
            line[llen] = '\0';
            llen = 0;
            if (!strstr(line, "\"id\":") || next >= len) {
                continue;
            }
            const char *nl = memchr(resp + next, '\n', len - next);
            size_t end = nl ? (size_t)(nl - resp) + 1 : len;
            if (write(1, resp + next, end - next) < 0) {
                return 1;
            }
            next = end;
        }
    }
}
