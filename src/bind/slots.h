/* Concurrency slots shared by every agent-dispatch process using one jobs
 * directory: slot files <dir>/N.lock (N < the acquiring process's limit),
 * each held with an exclusive flock by the process whose child uses it.
 * The kernel drops the lock when its holder dies, so a slot is never
 * stale. Taking a free slot is one flock() on a descriptor opened once;
 * giving it back is flock(LOCK_UN) plus a timestamp touch that wakes the
 * processes waiting for one (inotify, no polling). A waiter that misses
 * every touch (the holder was killed) is still served: one thread per
 * process blocks in flock() on one slot until it frees.
 *
 * Used by the limiter only (bind/limiter.c), on the loop thread. */
#ifndef AD_BIND_SLOTS_H
#define AD_BIND_SLOTS_H
#include <stdbool.h>
#include <stddef.h>

/* Opens (creating 0700) the slot directory dir. The first successful
 * call fixes it for the life of the process. Returns 0 or -errno, with why
 * filled in when it is refused (a symlink, not ours, writable by others). */
int slots_open(const char *dir, char *why, size_t whylen);

/* True once slots_open has succeeded, until a slot file proves unusable
 * (then the limit holds per process only, as said on stderr). */
bool slots_enabled(void);

/* Takes a free slot below limit without waiting: its index, -1 (all
 * taken) or -2 (a slot file is unusable: sharing has ended). Slot files
 * are opened on first use. */
int slots_try(int limit);

/* Gives slot idx back (unlock, then wake waiters in every process). */
void slots_release(int idx);

/* The descriptor holding slot idx's lock, or -1. A copy of it (same
 * open file description) holds the lock too, past our exit. */
int slots_held_fd(int idx);

/* Forgets slot idx without unlocking it: a copy of its descriptor in
 * another process (the keeper) goes on holding it. */
void slots_forget(int idx);

/* Called on the loop when waiting may end: idx >= 0 is a slot the
 * background thread took and now belongs to the callee (who must give it
 * back with slots_release if nobody needs it); -1: a slot may have been
 * released somewhere, try again. */
typedef void (*slots_wake_fn)(int idx);

/* Starts (want = true) or stops watching for free slots below limit;
 * wake runs for every event. Idempotent. */
void slots_watch(bool want, int limit, slots_wake_fn wake);

#endif
