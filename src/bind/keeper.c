/* Lua face of the keeper (keeper.h).
 *
 *   core.keeper.handoff(pid, meta) -> keeper_pid | nil, message
 *       the keeper's child pid is now a job: if this process exits, the
 *       keeper runs it on (meta: the JSON text its job runner reads)
 *   core.keeper.leave()
 *       this process is exiting: the children handed off are left to the
 *       keeper, unsignalled; their process objects end here */
#include <stdlib.h>
#include <string.h>

#include "ad/keeper.h"
#include "ad/proc.h"
#include "ad/sched.h"
#include "bind/bind.h"

static int l_handoff(lua_State *L)
{
    lua_Integer pid = luaL_checkinteger(L, 1);
    size_t len;
    const char *meta = luaL_checklstring(L, 2, &len);
    pid_t k = 0;
    int rc = pid > 1 ? keeper_handoff((pid_t)pid, meta, len, &k) : -22;
    if (rc != 0) {
        lua_pushnil(L);
        lua_pushstring(L, strerror(-rc));
        return 2;
    }
    lua_pushinteger(L, k);
    return 1;
}

static void leave_closed(uv_handle_t *h)
{
    free(h);
}

static void on_leave(uv_timer_t *t)
{
    proc_end_left();
    uv_close((uv_handle_t *)t, leave_closed);
}

/* Marked at once (nothing kills them from here on); their objects end on
 * the next loop turn, since ending them resumes the tasks that wait. */
static int l_leave(lua_State *L)
{
    (void)L;
    proc_leave_kept();
    uv_timer_t *t = malloc(sizeof *t);
    if (t) {
        uv_timer_init(sched_loop(), t);
        uv_timer_start(t, on_leave, 0, 0);
    }
    return 0;
}

void bind_keeper_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"handoff", l_handoff},
        {"leave", l_leave},
        {NULL, NULL},
    };
    bind_subtable(L, "keeper", fns);
}
