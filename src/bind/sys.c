/* Lua face of facts about this process and its environment: core.sys.
 *
 *   core.sys.getpid() -> pid            core.sys.getuid() -> uid
 *   core.sys.isatty(fd) -> true when fd is a terminal
 *   core.sys.environ() -> {"K=V", ...}
 *   core.sys.unsetenv(name): removes name from this process's environment
 *       (what every process it starts afterwards inherits)
 *   core.sys.env_memo() -> the table util.getenv keeps the variables it
 *       read in (name -> value | false); unsetenv empties it, the only
 *       way this process's environment changes after start
 *   core.sys.which(name[, with_id]) -> absolute path of an executable on
 *       PATH | nil; with with_id, found on PATH, also its core.fs.file_id
 *       (from the stat that chose it: a caller that keys on the binary's
 *       identity needs no second stat)
 *   core.sys.leave_client() -> true | nil, message
 *
 * Child processes are proc.c's; the job records' process checks are
 * jobs.c's. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bind/bind.h"

extern char **environ;

static int l_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

/* core.sys.isatty(fd) -> true when fd is a terminal */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

static int l_getuid(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)getuid());
    return 1;
}

static int l_which(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    bool with_id = lua_toboolean(L, 2);
    lua_settop(L, 1);
    if (strchr(name, '/')) {
        /* A regular file, as on the PATH below: a directory passes
         * access(X_OK) and then fails to exec with a bare EACCES. */
        struct stat st;
        if (stat(name, &st) == 0 && S_ISREG(st.st_mode) && access(name, X_OK) == 0) {
            char buf[PATH_MAX];
            lua_pushstring(L, realpath(name, buf) ? buf : name);
            return 1;
        }
        lua_pushnil(L);
        return 1;
    }
    const char *path = getenv("PATH");
    if (!path) {
        lua_pushnil(L);
        return 1;
    }
    const char *p = path;
    while (*p) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char cand[PATH_MAX];
        if (len > 0 && len + strlen(name) + 2 < sizeof cand) {
            memcpy(cand, p, len);
            cand[len] = '/';
            strcpy(cand + len + 1, name);
            struct stat st;
            if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
                access(cand, X_OK) == 0) {
                if (cand[0] == '/') {
                    lua_pushstring(L, cand);
                } else {
                    char buf[PATH_MAX];
                    lua_pushstring(L, realpath(cand, buf) ? buf : cand);
                }
                if (with_id) {
                    bind_push_file_id(L, &st);
                    return 2;
                }
                return 1;
            }
        }
        if (!colon) {
            break;
        }
        p = colon + 1;
    }
    lua_pushnil(L);
    return 1;
}

static int l_environ(lua_State *L)
{
    lua_newtable(L);
    lua_Integer i = 0;
    for (char **e = environ; e && *e; e++) {
        lua_pushstring(L, *e);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/* core.sys.leave_client() -> true | nil, message
 * A server whose client ended its input but which still supervises jobs:
 * stdin and stdout now read and write /dev/null (the client sees its end
 * of both pipes close), and the process gets a session of its own, so a
 * hangup or a signal to the client's process group no longer reaches it.
 * Signals sent to its pid still do; its children still die with it. */
static int l_leave_client(lua_State *L)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
        return luaL_fileresult(L, 0, "/dev/null");
    }
    int err = 0;
    if (dup2(null, STDIN_FILENO) < 0 || dup2(null, STDOUT_FILENO) < 0) {
        err = errno;
    }
    close(null);
    if (err == 0 && setsid() < 0 && errno != EPERM) {
        err = errno; /* EPERM: a group leader already, out of the client's group */
    }
    if (err != 0) {
        errno = err;
        return luaL_fileresult(L, 0, NULL);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* The registry key of the memo table. */
static const char env_memo_key = 0;

static int l_env_memo(lua_State *L)
{
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &env_memo_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &env_memo_key);
    }
    return 1;
}

static int l_unsetenv(lua_State *L)
{
    unsetenv(luaL_checkstring(L, 1));
    /* Every variable is read again: the memo is emptied in place (its
     * readers hold the table). */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &env_memo_key) == LUA_TTABLE) {
        int memo = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, memo)) {
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_pushnil(L);
            lua_rawset(L, memo);
        }
    }
    return 0;
}

void bind_sys_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"getpid", l_getpid},
        {"getuid", l_getuid},
        {"isatty", l_isatty},
        {"environ", l_environ},
        {"unsetenv", l_unsetenv},
        {"env_memo", l_env_memo},
        {"which", l_which},
        {"leave_client", l_leave_client},
        {NULL, NULL},
    };
    bind_subtable(L, "sys", fns);
}
