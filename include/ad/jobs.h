/* The job store's files: one record per job in <dir>/<id>.json (mode 0600,
 * directory 0700, written atomically, never read through a symlink), and
 * an index <dir>/.index of fixed-width lines
 *
 *     <32-hex id> <created_at %17.6f> <status, 9 chars padded>\n
 *
 * in creation order, so listing the newest N jobs (optionally of one
 * status) reads the index backwards and stops after N matches: O(limit),
 * not O(jobs). The record files are the truth; the index is derived data
 * that can always be rebuilt from them. Ids are validated as whole strings
 * before any path is built. Callers serialize mutations with the jobs lock
 * (<dir>/.jobs.lock); this module does no locking of its own. */
#ifndef AD_JOBS_H
#define AD_JOBS_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JOBS_INDEX_RECORD 61
#define JOBS_STATUS_WIDTH 9

/* Builds <dir>/<id>.json; -EINVAL for an invalid id (nothing touched). */
int jobs_path(const char *dir, const char *id, size_t idlen, char *out,
              size_t outlen);

/* Reads a record (O_NOFOLLOW: a symlinked record is refused, -ELOOP). */
int jobs_read(const char *dir, const char *id, size_t idlen, char **data,
              size_t *len);

/* Writes a record atomically (temp + fsync + rename, 0600); a symlink at
 * the record's path is replaced, never written through. */
int jobs_write(const char *dir, const char *id, size_t idlen,
               const void *data, size_t len);

/* Last resort when jobs_write fails for lack of space: overwrites the
 * existing record in place (then truncates to data's length) when data
 * fits in the blocks the file already holds, so no new block is needed.
 * Not atomic: a crash during it can leave a torn record. -ENOSPC when
 * data does not fit. */
int jobs_write_inplace(const char *dir, const char *id, size_t idlen,
                       const void *data, size_t len);

/* Deletes a record. */
int jobs_remove(const char *dir, const char *id, size_t idlen);

/* Appends one index line (cutting a torn last line first; a short write
 * is undone, so the index stays whole lines). */
int jobs_index_add(const char *dir, const char *id, double created_at,
                   const char *status);

/* Rewrites the status field of id's index line in place. -ENOENT when the
 * id is not indexed, -EBADMSG when the index is malformed, -EINVAL for an
 * invalid id. */
int jobs_index_set(const char *dir, const char *id, const char *status);

struct jobs_entry {
    char id[33];
    double created_at;
    char status[JOBS_STATUS_WIDTH + 1];
};

/* Calls fn for index entries from the newest backwards, skipping entries
 * whose status differs from status (NULL: any), until fn returns nonzero.
 * A torn last line is ignored. -ENOENT when there is no index, -EBADMSG
 * when a line is malformed. */
int jobs_index_scan(const char *dir, const char *status,
                    int (*fn)(const struct jobs_entry *e, void *ud),
                    void *ud);

/* 1 when the index covers the directory (its mtime is the directory's,
 * stamped by jobs_index_stamp, and it holds whole lines only), 0 when
 * they may disagree (or there is no index), -ENOTDIR/-errno when dir is
 * not a readable directory. */
int jobs_index_fresh(const char *dir);

/* Stamps the index as covering the directory as it is now: sets the
 * index's mtime to the directory's. Called after a change of both. */
int jobs_index_stamp(const char *dir);
/* Withdraws the stamp: the index no longer covers the directory (fresh
 * reads 0) until jobs_index_stamp. A writer withdraws it before it
 * changes a record and stamps again once the index line follows, so a
 * writer killed in between leaves an index the next reader rebuilds: the
 * directory's mtime alone cannot tell, as both changes usually fall in
 * one tick of the file-time clock. 0 or -errno. */
int jobs_index_unstamp(const char *dir);

/* Replaces the whole index (atomic write) with n entries. */
int jobs_index_write(const char *dir, const struct jobs_entry *e, size_t n);

/* Identity of a live process, from /proc/<pid>/stat: its process group
 * and start time (clock ticks since boot). -ESRCH when there is no such
 * process. */
int jobs_proc_identity(int pid, int *pgid, unsigned long long *start);

/* Signals the process group pgid only when pid is alive, is in pgid, and
 * started at start: a recycled pid (or pgid) never matches, so an
 * unrelated process is never signalled. 0 when signalled, -ESRCH when no
 * matching process exists. */
int jobs_kill_verified(int pid, int pgid, unsigned long long start, int sig);

/* What is left of a recorded child's process group once the child itself
 * is gone (its owner was SIGKILLed: the child died of its parent-death
 * signal, its own children did not): SIGKILL to group pgid when a live
 * member started no earlier than the child (start) and carries mark, an
 * entry of the child's environment that no other dispatch has (its trace
 * context): a group number recycled for someone else's group never
 * matches. 1 when the group was signalled, 0 when no such member lives,
 * a negative errno when /proc cannot be read. */
int jobs_kill_remnants(int pgid, unsigned long long start, const char *mark);

#endif
