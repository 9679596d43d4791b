/*
 * jobs_gen.c - writes a job store of N finished jobs, in the product's
 * on-disk format (see include/ad/jobs.h, lua/ad/storage/jobs.lua), much faster than
 * creating them through `dispatch {return_ref: true}`.
 *
 *   jobs_gen DIR N FAILED_EVERY
 *
 * Writes DIR/<id>.json (mode 0600, DIR mode 0700) for N jobs and the index
 * DIR/.index: one 61-byte line per job, "<id> <created_at %17.6f>
 * <status %-9.9s>\n", oldest first.  Each record is what
 * jobs.create_completed() writes for a return_ref dispatch (same keys, same
 * key order, same number formatting as the product's JSON encoder: %.14g,
 * integers without a fraction).  Every FAILED_EVERY-th job (counted from
 * the newest, starting with the 50th newest) is a failed one
 * (error_type cli_error), all others are done.  Jobs are 1 s apart, the
 * newest one day ago; the ids are v4-UUID-like hex from a fixed-seed PRNG,
 * so two runs write the same store.  Prints the ids, oldest first, on
 * stdout.  No fsync: this only prepares a benchmark.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
    /* splitmix64 */
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void hex32(char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    uint64_t a = next(), b = next();
    memcpy(u, &a, 8);
    memcpy(u + 8, &b, 8);
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* like uuid_generate_random */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[u[i] >> 4];
        out[2 * i + 1] = hex[u[i] & 15];
    }
    out[32] = '\0';
}

static void uuid(char out[37])
{
    char h[33];
    hex32(h);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", h, h + 8, h + 12, h + 16, h + 20);
}

static void die(const char *what, const char *path)
{
    fprintf(stderr, "jobs_gen: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        die("cannot create", path);
    }
    if (fchmod(fd, 0600) != 0 || write(fd, data, len) != (ssize_t)len) {
        die("cannot write", path);
    }
    close(fd);
}

static const char *const TASKS[] = {
    "Review the diff in src/parser.c for memory leaks and report file:line for each",
    "Run the unit tests and summarise the failures with their first error line",
    "Explain how the retry logic in the HTTP client decides its backoff",
    "List the public functions of the storage module that lack documentation",
    "Update the changelog for the 2.3 release from the merged pull requests",
};

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: jobs_gen DIR N FAILED_EVERY\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]), every = atol(argv[3]);
    if (n <= 0 || every <= 0) {
        fprintf(stderr, "jobs_gen: N and FAILED_EVERY must be > 0\n");
        return 2;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        die("cannot create", dir);
    }
    chmod(dir, 0700);
    size_t plen = strlen(dir) + 64;
    char *path = malloc(plen);
    char *index = malloc((size_t)n * 61 + 1);
    char rec[4096];
    /* Whole seconds plus .5: %.14g of these doubles is exact, and the
     * newest job is a day old (older than nothing the benchmarks look at). */
    double base = (double)(time(NULL) - 86400 - n) + 0.5;
    for (long i = 0; i < n; i++) {
        char id[33], sess[37];
        hex32(id);
        uuid(sess);
        long from_newest = n - 1 - i;
        int failed = from_newest >= 49 && (from_newest - 49) % every == 0;
        double created = base + (double)i;
        const char *task = TASKS[i % 5];
        int len;
        if (failed) {
            len = snprintf(rec, sizeof rec,
                "{\"id\":\"%s\",\"agent\":\"agent%02ld\",\"task\":\"%s\",\"caller\":\"bench\","
                "\"goal\":\"job store benchmark\",\"status\":\"failed\",\"created_at\":%.14g,"
                "\"started_at\":%.14g,\"completed_at\":%.14g,\"result\":{\"agent\":\"agent%02ld\","
                "\"success\":false,\"result\":\"The command exited with status 1 before "
                "producing an answer\",\"session_id\":\"%s\",\"cost_usd\":0.0012,"
                "\"duration_ms\":%ld,\"num_turns\":1,\"error\":\"The command exited with "
                "status 1 before producing an answer\",\"error_type\":\"cli_error\"},"
                "\"error\":\"The command exited with status 1 before producing an answer\"}",
                id, i % 7, task, created, created, created, i % 7, sess, 1000 + i % 9000);
        } else {
            len = snprintf(rec, sizeof rec,
                "{\"id\":\"%s\",\"agent\":\"agent%02ld\",\"task\":\"%s\",\"caller\":\"bench\","
                "\"goal\":\"job store benchmark\",\"status\":\"done\",\"created_at\":%.14g,"
                "\"started_at\":%.14g,\"completed_at\":%.14g,\"result\":{\"agent\":\"agent%02ld\","
                "\"success\":true,\"result\":\"Done. I looked at the three call sites and the "
                "change is safe: the buffer is freed on every path, including the early return "
                "on a short read. Tests pass (42 passed, 0 failed).\",\"session_id\":\"%s\","
                "\"cost_usd\":0.0213,\"duration_ms\":%ld,\"num_turns\":3}}",
                id, i % 7, task, created, created, created, i % 7, sess, 1000 + i % 9000);
        }
        if (len <= 0 || (size_t)len >= sizeof rec) {
            fprintf(stderr, "jobs_gen: record too long\n");
            return 1;
        }
        snprintf(path, plen, "%s/%s.json", dir, id);
        write_file(path, rec, (size_t)len);
        char line[62];
        snprintf(line, sizeof line, "%.32s %17.6f %-9.9s\n", id, created,
                 failed ? "failed" : "done");
        memcpy(index + i * 61, line, 61);
        printf("%s\n", id);
    }
    snprintf(path, plen, "%s/.index", dir);
    write_file(path, index, (size_t)n * 61);
    snprintf(path, plen, "%s/.jobs.lock", dir);
    write_file(path, "", 0);
    free(index);
    free(path);
    return 0;
}
