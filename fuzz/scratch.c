#include "scratch.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static const char *scratch;
static pid_t owner; /* a forked child that exits removes nothing */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_scratch(void)
{
    if (getpid() != owner) {
        return;
    }
    nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void fuzz_scratch_dir(const char *name, char *out, size_t n)
{
    const char *root = getenv("AD_FUZZ_SCRATCH");
    int k = snprintf(out, n, "%s/%s-XXXXXX", root && *root ? root : "/tmp", name);
    if (scratch || k < 0 || (size_t)k >= n || !mkdtemp(out)) {
        abort();
    }
    scratch = out;
    owner = getpid();
    atexit(remove_scratch);
}
