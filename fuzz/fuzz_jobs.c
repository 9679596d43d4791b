/* The job store's readers over any bytes: the index scan, in-place status
 * update, freshness check and append, and the record reader. Every entry
 * handed out has a valid id and a NUL-terminated status; an append after
 * any damage leaves an index whose newest entry is the appended one. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ad/jobs.h"
#include "ad/validate.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[4096];
static char index_path[4200];
static const char ID[] = "0123456789abcdef0123456789abcdef";

struct scan {
    size_t n;
    struct jobs_entry first;
};

static int on_entry(const struct jobs_entry *e, void *ud)
{
    struct scan *s = ud;
    if (!validate_job_id(e->id, strlen(e->id)) ||
        memchr(e->status, '\0', sizeof e->status) == NULL) {
        abort();
    }
    if (s->n++ == 0) {
        s->first = *e;
    }
    return 0;
}

static void put(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        abort();
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        fuzz_scratch_dir("ad-fuzz-jobs", dir, sizeof dir);
        snprintf(index_path, sizeof index_path, "%s/.index", dir);
    }
    put(index_path, data, size);
    char rec[4200];
    snprintf(rec, sizeof rec, "%s/%s.json", dir, ID);
    put(rec, data, size);

    char *text = NULL;
    size_t len = 0;
    if (jobs_read(dir, ID, strlen(ID), &text, &len) == 0) {
        if (len != size || memcmp(text, data, size) != 0) {
            abort(); /* the record reads back as written */
        }
        free(text);
    }
    (void)jobs_index_fresh(dir);
    struct scan s = {0};
    int rc = jobs_index_scan(dir, NULL, on_entry, &s);
    if (rc == 0 && s.n > 0) {
        (void)jobs_index_set(dir, s.first.id, "failed");
        struct scan again = {0};
        if (jobs_index_scan(dir, "failed", on_entry, &again) == 0 &&
            again.n == 0) {
            abort(); /* the status just set is not found */
        }
    }
    if (jobs_index_add(dir, ID, 1234.5, "running") == 0) {
        struct scan after = {0};
        if (jobs_index_scan(dir, NULL, on_entry, &after) == 0 &&
            (after.n == 0 || strcmp(after.first.id, ID) != 0 ||
             strncmp(after.first.status, "running", 7) != 0)) {
            abort(); /* the appended entry is not the newest */
        }
    }
    return 0;
}
