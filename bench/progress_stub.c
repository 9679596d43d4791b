/*
 * progress_stub.c - a stand-in `claude` for the progress-latency benchmark.
 *
 * Installed as `claude` in a bench-local PATH directory.  Handles the
 * print-mode command line agent-dispatch builds (`-p --output-format
 * stream-json --verbose ... -- PROMPT`).  In stream-json mode it writes an
 * init line, then N assistant lines, each a text block holding the
 * CLOCK_MONOTONIC time in nanoseconds at which the line was written (one
 * write(2) per line, so each line leaves at once), INTERVAL seconds apart,
 * then a result line.  N and INTERVAL come from [stub:progress=N] and
 * [stub:interval=S] in the prompt (defaults 50 and 0.02).  In json mode it
 * writes just the result.
 *
 *   progress_stub --now    prints CLOCK_MONOTONIC ns (clock check)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void emit(const char *s, int n)
{
    while (n > 0) {
        ssize_t w = write(1, s, (size_t)n);
        if (w <= 0) {
            exit(1);
        }
        s += w;
        n -= (int)w;
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--now") == 0) {
        printf("%lld\n", mono_ns());
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("2.1.328 (progress stub)\n");
        return 0;
    }
    const char *format = "text", *prompt = "", *session = "00000000-0000-4000-8000-000000000000";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--output-format") == 0 && i + 1 < argc) {
            format = argv[++i];
        } else if ((strcmp(argv[i], "--session-id") == 0 || strcmp(argv[i], "--resume") == 0) &&
                   i + 1 < argc) {
            session = argv[++i];
        } else if (strcmp(argv[i], "--") == 0 && i + 1 < argc) {
            prompt = argv[i + 1];
            break;
        }
    }
    long n = 50;
    double interval = 0.02;
    const char *p;
    if ((p = strstr(prompt, "[stub:progress="))) {
        n = atol(p + 15);
    }
    if ((p = strstr(prompt, "[stub:interval="))) {
        interval = atof(p + 15);
    }
    char line[512];
    int len;
    int stream = strcmp(format, "stream-json") == 0;
    if (stream) {
        len = snprintf(line, sizeof line,
                       "{\"type\":\"system\",\"subtype\":\"init\",\"session_id\":\"%s\"}\n", session);
        emit(line, len);
        struct timespec gap = {(time_t)interval, (long)((interval - (time_t)interval) * 1e9)};
        for (long i = 0; i < n; i++) {
            nanosleep(&gap, NULL);
            len = snprintf(line, sizeof line,
                           "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\","
                           "\"text\":\"%lld\"}]}}\n", mono_ns());
            emit(line, len);
        }
    }
    len = snprintf(line, sizeof line,
                   "{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,"
                   "\"result\":\"done\",\"session_id\":\"%s\",\"total_cost_usd\":0,"
                   "\"duration_ms\":1,\"num_turns\":1}\n", session);
    emit(line, len);
    return 0;
}
