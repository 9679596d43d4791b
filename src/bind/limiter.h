/* The one concurrency limiter (settings.max_concurrency) shared by every
 * dispatch path. A slot is a count of live children: acquired by a task
 * (queueing FIFO without a thread or a poll), handed to core.proc.spawn, and
 * given back when that child has been reaped, not when the requesting task
 * gives up. Changing the limit never lets the live count exceed it: new
 * grants wait until enough children have exited.
 *
 * Once shared (core.limiter.share), a count also holds a slot file that
 * the other agent-dispatch processes using the same jobs directory
 * compete for (bind/slots.h): the limit then holds across processes. The
 * process's own count stays the first gate, so an uncontended acquire
 * costs one flock() more than before. */
#ifndef AD_BIND_LIMITER_H
#define AD_BIND_LIMITER_H
#include <stdbool.h>
#include <lua.h>

struct slot;

/* [-0, +0, v] The slot userdata at idx. */
struct slot *limiter_check_slot(lua_State *L, int idx);

/* Transfers the slot's count to the caller (the slot object no longer
 * returns it when closed). Returns false if it held none. */
bool limiter_take(struct slot *s);

/* True while the slot still holds its count. */
bool limiter_held(const struct slot *s);

/* What limiter_release_count needs to give back the slot's count (and
 * its slot file): proc's reap_arg. */
void *limiter_reap_arg(const struct slot *s);

/* Gives one count back (arg from limiter_reap_arg, or NULL for a count
 * without a slot file) and grants queued waiters. */
void limiter_release_count(void *arg);

/* The keeper's share of a count (reap_arg as above): the descriptor
 * holding its slot file, or -1; and the count's end in a process that
 * leaves its child to the keeper (the slot file stays locked by the
 * keeper's copy). */
int limiter_slot_fd(void *arg);
void limiter_leave_count(void *arg);

#endif
