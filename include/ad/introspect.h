/* Cheap probes of an agent's project directory: health, stacks, DBs.
 * No subprocess, no parsing beyond file existence. */
#ifndef AD_INTROSPECT_H
#define AD_INTROSPECT_H
#include <stddef.h>

/* 1 when dir is an existing directory, 0 when it is missing or not a
 * directory, -errno when the probe itself failed (permission, I/O). */
int introspect_health(const char *dir);

/* Fills out[] with labels ("Docker", "Rust", ...) in the documented order;
 * returns how many (at most max). */
size_t introspect_stacks(const char *dir, const char **out, size_t max);
size_t introspect_dbs(const char *dir, const char **out, size_t max);

/* The same labels from a listing made elsewhere (a project on another
 * host): has(ud, name, want_dir) says whether the entry exists. */
typedef int (*introspect_has_fn)(void *ud, const char *name, int want_dir);
size_t introspect_stacks_by(introspect_has_fn has, void *ud, const char **out,
                            size_t max);
size_t introspect_dbs_by(introspect_has_fn has, void *ud, const char **out,
                         size_t max);

/* 1 if dir/name exists as a regular file (or a directory when want_dir). */
int introspect_has(const char *dir, const char *name, int want_dir);

/* Reads dir/rel, a project file, only when it is a regular file inside
 * the project: its resolved path must stay under dir's (a link within the
 * project is followed, one out of it gives -EXDEV), it is opened
 * non-blocking and fstat'ed (a FIFO, a pipe or a device gives -EINVAL).
 * At most max bytes are read into a new NUL-terminated buffer;
 * *truncated is 1 when the file is longer. */
int introspect_read(const char *dir, const char *rel, size_t max, char **out,
                    size_t *len, int *truncated);

#endif
