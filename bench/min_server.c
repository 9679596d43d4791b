/*
 * min_server.c - the smallest useful stdio JSON-RPC server: the baseline of
 * the startup benchmark.  For every input line it writes one fixed
 * `initialize` response line; it exits at end of input.  Raw read(2) and
 * write(2), no parsing, no allocation.
 */
#include <string.h>
#include <unistd.h>

static const char RESP[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-11-25\","
    "\"capabilities\":{\"tools\":{\"listChanged\":false}},"
    "\"serverInfo\":{\"name\":\"min-server\",\"version\":\"0.0.0\"}}}\n";

int main(void)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n <= 0) {
            return 0;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n' && write(1, RESP, sizeof RESP - 1) < 0) {
                return 1;
            }
        }
    }
}
