/* Whole-string validators for every identifier a caller can supply. They
 * never accept a trailing newline (a classic regex-anchor bug) and never
 * touch the filesystem. */
#ifndef AD_VALIDATE_H
#define AD_VALIDATE_H
#include <stdbool.h>
#include <stddef.h>

/* ^[A-Za-z0-9][A-Za-z0-9_-]*$ over the whole of s[0..n). */
bool validate_name(const char *s, size_t n);

/* Exactly 32 lowercase hex digits. */
bool validate_job_id(const char *s, size_t n);

/* A value placed right after a command-line flag must not itself look like
 * a flag: false when it is empty-safe but starts with '-'. */
bool validate_not_flag(const char *s, size_t n);

#endif
