/*
 * write_baseline.c - the floor for one job-record write: replace a file
 * atomically with plain syscalls, nothing else.
 *
 *   write_baseline DIR N BYTES MODE
 *
 * N times: open DIR/rec.json.<k>.tmp (O_CREAT|O_EXCL|O_NOFOLLOW, 0600),
 * write BYTES bytes of JSON-ish text, [fsync], close, rename it over
 * DIR/rec.json, [fsync DIR].  MODE:
 *   plain   no fsync at all (write + rename);
 *   fsync   fsync of the file before the rename, and of the directory
 *           after it: the same durability as the product's
 *           fs_write_atomic_nofollow (src/fsutil.c).
 * Prints the CLOCK_MONOTONIC time of each replacement in microseconds.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[4], "plain") != 0 && strcmp(argv[4], "fsync") != 0)) {
        fprintf(stderr, "usage: write_baseline DIR N BYTES plain|fsync\n");
        return 2;
    }
    const char *dir = argv[1];
    long n = atol(argv[2]);
    size_t bytes = (size_t)atol(argv[3]);
    int sync = strcmp(argv[4], "fsync") == 0;
    char *data = malloc(bytes + 1);
    for (size_t i = 0; i < bytes; i++) {
        data[i] = "{\"progress\":[\"line\"]}"[i % 21];
    }
    char target[4096], tmp[4200];
    snprintf(target, sizeof target, "%s/rec.json", dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        perror("write_baseline: open dir");
        return 1;
    }
    close(dfd);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (long k = 0; k < n; k++) {
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", target, k);
        double t0 = now_us();
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, data, bytes) != (ssize_t)bytes ||
            (sync && fsync(fd) != 0) || close(fd) != 0 || rename(tmp, target) != 0) {
            perror("write_baseline");
            return 1;
        }
        if (sync) {
            /* As the product does: open the directory, fsync, close. */
            int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (d < 0 || fsync(d) != 0) {
                perror("write_baseline: fsync dir");
                return 1;
            }
            close(d);
        }
        double t1 = now_us();
        printf("%.1f\n", t1 - t0);
    }
    free(data);
    return 0;
}
