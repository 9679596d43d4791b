/* agent-dispatch: process entry. Creates the Lua state and the loop, runs
 * the policy layer's main (ad.main) as the root task, and tears everything
 * down when it finishes: every child's process group is killed and reaped,
 * every handle closed, the Lua state closed. */
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>
#include <yaml.h>

#include "ad/keeper.h"
#include "ad/pool.h"
#include "ad/proc.h"
#include "bind/bind.h"
#include "bind/embed.h"
#include "ad/sched.h"

int luaopen_cjson(lua_State *L);

static const char BOOT[] =
    "local args = ...\n"
    "return require('ad.main').main(args)\n";

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define AD_LUA_POOL 0 /* AddressSanitizer sees every Lua object on its own */
#else
#define AD_LUA_POOL 1
#endif

/* The state's allocator (ad/pool.h) and what luaL_newstate adds to a
 * state: a panic message, and warnings off until a script asks "@on". */
static struct pool lua_pool;

static int on_panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING
                          ? lua_tostring(L, -1)
                          : "error object is not a string";
    fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
    return 0;
}

static void warn_on(void *ud, const char *msg, int tocont);
static void warn_off(void *ud, const char *msg, int tocont);

/* "@on" and "@off" switch warnings; true when msg was one of them. */
static bool warn_control(lua_State *L, const char *msg, int tocont)
{
    if (tocont || msg[0] != '@') {
        return false;
    }
    if (strcmp(msg + 1, "off") == 0) {
        lua_setwarnf(L, warn_off, L);
    } else if (strcmp(msg + 1, "on") == 0) {
        lua_setwarnf(L, warn_on, L);
    }
    return true;
}

static void warn_off(void *ud, const char *msg, int tocont)
{
    warn_control(ud, msg, tocont);
}

static void warn_cont(void *ud, const char *msg, int tocont)
{
    lua_State *L = ud;
    fputs(msg, stderr);
    if (tocont) {
        lua_setwarnf(L, warn_cont, L);
    } else {
        fputs("\n", stderr);
        lua_setwarnf(L, warn_on, L);
    }
}

static void warn_on(void *ud, const char *msg, int tocont)
{
    if (!warn_control(ud, msg, tocont)) {
        fputs("Lua warning: ", stderr);
        warn_cont(ud, msg, tocont);
    }
}

static lua_State *new_state(void)
{
#if AD_LUA_POOL
    lua_State *L = lua_newstate(pool_alloc, &lua_pool);
    if (L) {
        lua_atpanic(L, on_panic);
        lua_setwarnf(L, warn_off, L);
    }
    return L;
#else
    (void)on_panic;
    (void)warn_off;
    return luaL_newstate();
#endif
}

static void on_root_done(struct task *t, void *ud)
{
    (void)t;
    uv_stop(ud);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void on_reap_deadline(uv_timer_t *t)
{
    (void)t;
}

/* path with a leading ~ or ~user replaced by that home directory, the rule
 * the policy layer applies to every path it reads from the environment
 * (util.expanduser); left as it is when that home is unknown. */
static void expand_user(const char *path, char *buf, size_t len)
{
    const char *rest = strchr(path, '/');
    if (!rest) {
        rest = path + strlen(path);
    }
    const char *home = NULL;
    if (path[0] == '~' && rest == path + 1) {
        home = getenv("HOME");
    } else if (path[0] == '~') {
        char user[256];
        snprintf(user, sizeof user, "%.*s", (int)(rest - path - 1), path + 1);
        struct passwd *pw = getpwnam(user);
        home = pw ? pw->pw_dir : NULL;
    }
    if (home) {
        snprintf(buf, len, "%s%s", home, rest);
    } else {
        snprintf(buf, len, "%s", path);
    }
}

/* The user's Lua directory, computed here only (the searcher needs it before
 * any Lua runs; Lua reads it back with core.embed.user_lua_dir()):
 * $AGENT_DISPATCH_USER_LUA_DIR, else lua/ next to the config file
 * ($AGENT_DISPATCH_CONFIG or ~/.config/agent-dispatch/agents.yaml), with ~
 * expanded as for every other path. An empty variable counts as unset. */
static void user_lua_dir(char *buf, size_t len)
{
    const char *env = getenv("AGENT_DISPATCH_USER_LUA_DIR");
    if (env && *env) {
        expand_user(env, buf, len);
        return;
    }
    const char *cfg = getenv("AGENT_DISPATCH_CONFIG");
    if (cfg && *cfg) {
        char path[4096];
        expand_user(cfg, path, sizeof path);
        const char *slash = strrchr(path, '/');
        if (slash == path) {
            snprintf(buf, len, "/lua");
        } else if (slash) {
            snprintf(buf, len, "%.*s/lua", (int)(slash - path), path);
        } else {
            snprintf(buf, len, "lua");
        }
        return;
    }
    const char *home = getenv("HOME");
    snprintf(buf, len, "%s/.config/agent-dispatch/lua", home ? home : "");
}

#ifndef AD_COMMIT
#define AD_COMMIT "unknown"
#endif

/* --version: what a bug report needs, the release, the commit it was
 * built from and the libraries linked in (the Lua release is the one
 * compiled and linked, statically by default). */
static void print_version(void)
{
    printf("agent-dispatch %s\ncommit %s\n%s, libuv %s, libyaml %s\n",
           AD_VERSION, AD_COMMIT, LUA_RELEASE, uv_version_string(),
           yaml_get_version_string());
}

/* The exit status the root task asked for. */
static int exit_status(lua_State *L, struct task *root)
{
    int n = sched_push_results(L, root);
    int code = 0;
    if (!lua_toboolean(L, -n)) {
        const char *msg = luaL_tolstring(L, -1, NULL);
        fprintf(stderr, "agent-dispatch: %s\n", msg);
        code = 1;
    } else if (n >= 2 && lua_isinteger(L, -n + 1)) {
        code = (int)lua_tointeger(L, -n + 1);
    } else if (n >= 2 && lua_isboolean(L, -n + 1)) {
        code = lua_toboolean(L, -n + 1) ? 0 : 1;
    }
    lua_settop(L, 0);
    return code;
}

/* Descriptors a process needs before it can do anything: stdio, the
 * loop's own (epoll, eventfd, a signal pipe) and a few to work with. */
#define MIN_OPEN_FILES 16

/* Started with stdin, stdout or stderr closed (`cmd <&-`): the next
 * descriptor opened (libuv's epoll or signal pipe) would take that number,
 * and the channel would read or write it as if it were the stream (libuv
 * aborts on closing it). Each closed one is /dev/null instead. */
static void open_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (n >= 0 && n != fd) {
                close(n);
            }
        }
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN); /* EPIPE on stdout means "client gone" */
    open_std_fds();
    if (argc == 2 &&
        (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)) {
        print_version();
        return 0;
    }
    if (argc == 4 && strcmp(argv[1], "__keeper") == 0) {
        return keeper_main(argc, argv); /* no Lua, no loop: see keeper.h */
    }
    /* libuv aborts when it cannot make its own descriptors (a signal pipe,
     * epoll, eventfd): a limit too small to run is said, not a core dump. */
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
        nofile.rlim_cur < MIN_OPEN_FILES) {
        fprintf(stderr, "agent-dispatch: the open files limit is %llu; it needs at "
                        "least %d (ulimit -n)\n",
                (unsigned long long)nofile.rlim_cur, MIN_OPEN_FILES);
        return 71;
    }
    uv_loop_t *loop = uv_default_loop();
    if (!loop) {
        /* (its epoll and eventfd descriptors could not be made: a tiny
         * RLIMIT_NOFILE, or the process is out of them) */
        fprintf(stderr, "agent-dispatch: cannot start its event loop: %s "
                        "(open files limit: ulimit -n)\n", strerror(errno));
        return 71;
    }
    lua_State *L = new_state();
    if (!L) {
        fprintf(stderr, "agent-dispatch: out of memory\n");
        return 70;
    }
    luaL_openlibs(L);
    sched_init(L, loop);
    const char *gc_stress = getenv("AGENT_DISPATCH_GC_STRESS");
    if (gc_stress && *gc_stress) {
        sched_gc_stress((unsigned)strtoul(gc_stress, NULL, 10));
    }

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_ad_core);
    lua_setfield(L, -2, "ad.core");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 1);
    char udir[4096];
    user_lua_dir(udir, sizeof udir);
    embed_install_searchers(L, udir, getenv("AGENT_DISPATCH_LUA_DIR"));

    if (luaL_loadbuffer(L, BOOT, sizeof BOOT - 1, "=boot") != LUA_OK) {
        fprintf(stderr, "agent-dispatch: %s\n", lua_tostring(L, -1));
        return 70;
    }
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i);
    }
    /* The task's userdata stays on this stack (a GC root) until its exit
     * status is read: once it has finished, the scheduler holds it no
     * longer, and a collection run by another task resumed in the same
     * turn would finalise it (its results gone) and free it under us. */
    struct task *root = sched_spawn(L, 1);
    sched_on_done(root, on_root_done, loop);

    uv_run(loop, UV_RUN_DEFAULT);
    int code;
    if (!sched_is_done(root)) {
        fprintf(stderr, "agent-dispatch: internal error: the main task is "
                        "waiting for an event that can never happen\n");
        code = 70;
    } else {
        code = exit_status(L, root);
    }

    /* Nothing we started outlives us. Tasks still waiting are cancelled so
     * their operations close their own handles (their children get
     * SIGTERM); whatever is left after the grace is SIGKILLed; children
     * are reaped within a bounded time. */
    uv_timer_t deadline;
    uv_timer_init(loop, &deadline);
    uv_timer_start(&deadline, on_reap_deadline, 3000, 0);
    while (sched_live_tasks() > 0 && uv_is_active((uv_handle_t *)&deadline)) {
        sched_cancel_all();
        uv_run(loop, UV_RUN_ONCE);
    }
    proc_kill_all();
    uv_timer_start(&deadline, on_reap_deadline, 3000, 0);
    while (proc_live_count() > 0 && uv_is_active((uv_handle_t *)&deadline)) {
        uv_run(loop, UV_RUN_ONCE);
    }
    proc_shutdown();
    uv_close((uv_handle_t *)&deadline, NULL);
    sched_abandon_all();
    bind_chan_close();
    bind_signal_close();
    sched_shutdown();
    lua_close(L);
    /* Released processes close their pipes and timers as their children
     * finish (bounded by the drain period): let them, within 3 s, so their
     * memory is freed by their own close callbacks. */
    uv_timer_t settle;
    uv_timer_init(loop, &settle);
    uv_timer_start(&settle, on_reap_deadline, 3000, 0);
    uv_unref((uv_handle_t *)&settle);
    while (uv_loop_alive(loop) && uv_is_active((uv_handle_t *)&settle)) {
        uv_ref((uv_handle_t *)&settle);
        uv_run(loop, UV_RUN_ONCE);
        uv_unref((uv_handle_t *)&settle);
    }
    uv_close((uv_handle_t *)&settle, NULL);
    uv_walk(loop, close_any, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    pool_free(&lua_pool);
    fflush(stdout);
    return code;
}
