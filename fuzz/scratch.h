/* A harness's scratch directory: made once, removed when the run ends. */
#ifndef AD_FUZZ_SCRATCH_H
#define AD_FUZZ_SCRATCH_H

/* Makes the directory template names (mkdtemp's "...XXXXXX", rewritten in
 * place) or aborts; a run that ends normally removes it and what it holds,
 * one that crashes keeps it beside the reproducer. One a process. */
void fuzz_scratch_dir(char *template_path);

#endif
