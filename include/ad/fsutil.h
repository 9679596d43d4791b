/* Filesystem primitives for state files: atomic replace, owner-only
 * directories, cross-process locks, bounded reads. Functions return 0 or a
 * negative errno; out-parameters are written only on success. */
#ifndef AD_FSUTIL_H
#define AD_FSUTIL_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Replaces path with data atomically: a unique temp file next to the
 * target (<name>.<32hex>.tmp, created O_EXCL|O_NOFOLLOW), fchmod(mode),
 * write, fsync, rename, fsync of the directory. When path is a symlink the
 * link's final target is replaced, so the link survives. On any failure the
 * temp file is removed and the previous file is untouched. */
int fs_write_atomic(const char *path, const void *data, size_t len,
                    mode_t mode);

/* The same, except that a symlink at path is replaced by the new file
 * instead of written through (state files an attacker must not redirect). */
int fs_write_atomic_nofollow(const char *path, const void *data, size_t len,
                             mode_t mode);

/* mkdir -p; directories it creates get mode; the last component then
 * loses any permission bit not in mode (best effort: a directory we do not
 * own is left). No bit is ever added: a read-only directory stays so. */
int fs_mkdirs(const char *dir, mode_t mode);

/* Creates the parent directory of path (see fs_mkdirs). */
int fs_mkparent(const char *path, mode_t mode);

/* One non-blocking attempt at an exclusive flock on path (created 0600).
 * 0 and *fd set on success; -EWOULDBLOCK when another process holds it. */
int fs_lock_try(const char *path, int *fd);

/* Blocks in flock(LOCK_EX) on path (created 0600) until it is granted: 0
 * and *fd set. Returns -EINTR once *stop is set and a signal has
 * interrupted the wait (a signal handler installed without SA_RESTART);
 * other failures are -errno. For a thread of its own. */
int fs_lock_wait(const char *path, int *fd, const atomic_bool *stop);
void fs_unlock(int fd);

/* Reads at most max bytes of fd (closed in every case) into a new
 * NUL-terminated buffer; more says whether the file went on past max.
 * -EISDIR for a directory, other failures -errno. */
int fs_read_fd(int fd, size_t max, char **out, size_t *len, bool *more);

/* The contents of a locked file (fd from fs_lock_try/fs_lock_wait), at
 * most max bytes, read from its start: a small state file kept in the lock
 * file itself, read and replaced by its holder only. */
int fs_lock_read(int fd, size_t max, char **out, size_t *len);

/* Replaces the contents of a locked file with data, in place (pwrite at
 * 0, then ftruncate): no rename, no fsync. For state that only matters
 * while its holders run; a crash mid-write can leave it torn. */
int fs_lock_rewrite(int fd, const void *data, size_t len);

/* Appends data to path with one write() on an O_APPEND descriptor
 * (created with mode, never through a symlink: -ELOOP), so concurrent
 * writers' records never interleave (one write of up to a page is atomic
 * for a regular file on a local file system). A regular file not owned by
 * this user is refused (-EPERM). A short write is reported as -EIO: the
 * caller bounds the size. */
int fs_append(const char *path, const void *data, size_t len, mode_t mode);

/* The descriptor fs_append writes through, for a caller that keeps it
 * open across records: O_APPEND, created with mode, never through a
 * symlink (-ELOOP), someone else's file refused (-EPERM). Returns the
 * descriptor or -errno. */
int fs_append_open(const char *path, mode_t mode);

/* One record on a descriptor of fs_append_open, in one write(). -ENOENT
 * when the file was removed since it was opened (reopen it by name). */
int fs_append_fd(int fd, const void *data, size_t len);

/* fs_append_fd of the n (1 to 8) pieces of iov, one after the other, in
 * one writev() (one append, as atomic as one write()). limit > 0: -EFBIG
 * (nothing written) when the file holds limit bytes or more already. A
 * record ending in a newline is a line: when the file's last line was cut
 * short (a write that hit a full disk), a newline goes first, so the torn
 * line stays alone. A short write is -ENOSPC. */
int fs_append_iov(int fd, const struct iovec *iov, int n, off_t limit);

/* Reads at most max bytes of path into a new NUL-terminated buffer.
 * -EFBIG when the file is larger. nofollow reads a state file of ours: a
 * symlink is refused (-ELOOP), and so is anything but a regular file
 * (-EINVAL), opened without blocking (a FIFO planted there must not hang
 * the reader). */
int fs_read_file(const char *path, size_t max, bool nofollow, char **out,
                 size_t *len);

/* Is every directory above real (a resolved path) owned by uid or root
 * and not writable by group or others (sticky directories such as /tmp
 * excepted)? false with why set otherwise: someone else could rename or
 * replace what real names. */
bool fs_dirs_trusted(const char *real, uid_t uid, char *why, size_t whylen);

/* Reads a file that will run as code with the user's privileges (as ssh
 * checks authorized_keys). Opens path (following links) and checks what
 * was opened: fstat of the descriptor must show a regular file owned by
 * uid and not writable by group or others, and every directory of its
 * resolved path must be owned by uid or root and not writable by group or
 * others (sticky directories such as /tmp excepted). The bytes are then
 * read from that same descriptor. -EPERM with why set when refused; other
 * negative errno values as fs_read_file. */
int fs_read_trusted(const char *path, size_t max, uid_t uid, char **out,
                    size_t *len, char *why, size_t whylen);

#endif
