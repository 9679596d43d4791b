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

/* 1 if dir/name exists as a regular file (or a directory when want_dir). */
int introspect_has(const char *dir, const char *name, int want_dir);

#endif
