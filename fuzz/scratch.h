/* A harness's scratch directory: made once, removed when the run ends. */
#ifndef AD_FUZZ_SCRATCH_H
#define AD_FUZZ_SCRATCH_H

#include <stddef.h>

/* Makes the directory NAME-XXXXXX (mkdtemp) in $AD_FUZZ_SCRATCH, else in
 * /tmp, into out (n bytes), or aborts; a run that ends normally removes it
 * and what it holds. One a process. fuzz/run.sh points AD_FUZZ_SCRATCH at
 * a directory of its own (in memory when /dev/shm is there) and removes
 * it after the harness, whichever way the harness ended: a crash (no
 * exit handlers) leaves nothing behind either. */
void fuzz_scratch_dir(const char *name, char *out, size_t n);

#endif
