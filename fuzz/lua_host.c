/* One harness for the Lua-driven input surfaces: boots the embedded
 * runtime in-process as main.c does (the loop, the scheduler, ad.core and
 * cjson, the embedded policy modules), loads a driver script that returns
 * a function, and runs that function as a task on every input. The driver
 * asserts its surface's invariants by raising an error; any error, or a
 * task that never finishes, aborts (a crash for libFuzzer).
 *
 * libFuzzer sees only C coverage, and most of these surfaces are Lua: a
 * line hook feeds (previous line, line) pairs of the policy code into
 * libFuzzer's extra counters, so new Lua paths count as new coverage. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "ad/sched.h"
#include "bind/bind.h"
#include "bind/embed.h"
#include "scratch.h"

int luaopen_cjson(lua_State *L);
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LUA_COUNTERS (1u << 16)
__attribute__((section("__libfuzzer_extra_counters")))
static uint8_t lua_counters[LUA_COUNTERS];

static lua_State *L;
static uv_loop_t *loop;
static int driver_ref = LUA_NOREF;
static uintptr_t prev_loc;

/* Not instrumented itself: its own branches are no coverage of the
 * program, and it runs on every Lua line. */
__attribute__((no_sanitize("coverage")))
static void line_hook(lua_State *co, lua_Debug *ar)
{
    if (!lua_getinfo(co, "S", ar)) {
        return;
    }
    uintptr_t loc = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
    lua_counters[(loc ^ (prev_loc >> 1)) % LUA_COUNTERS]++;
    prev_loc = loc;
}

/* A private HOME and configuration, and no claude CLI to run: a surface
 * that would dispatch fails fast instead of starting children. */
static void sandbox_env(void)
{
    static char home[4096];
    fuzz_scratch_dir("ad-fuzz-home", home, sizeof home);
    char path[4200];
    setenv("HOME", home, 1);
    snprintf(path, sizeof path, "%s/agents.yaml", home);
    setenv("AGENT_DISPATCH_CONFIG", path, 1);
    snprintf(path, sizeof path, "%s/jobs", home);
    setenv("AGENT_DISPATCH_JOBS_DIR", path, 1);
    snprintf(path, sizeof path, "%s/tools", home);
    setenv("AGENT_DISPATCH_TOOLS_DIR", path, 1);
    snprintf(path, sizeof path, "%s/lua", home);
    setenv("AGENT_DISPATCH_USER_LUA_DIR", path, 1);
    setenv("AGENT_DISPATCH_CLAUDE", "/nonexistent/claude", 1);
    setenv("AGENT_DISPATCH_QUIET", "1", 1);
    unsetenv("AGENT_DISPATCH_LUA_DIR");
}

/* At exit everything the harness holds is released as main.c releases
 * it, so LeakSanitizer's check at process exit reports exactly what was
 * never freed (the Lua harnesses run with libFuzzer's per-input leak
 * check off: Lua's collector frees an input's memory later, so that check
 * would re-run every input; see fuzz/CMakeLists.txt). */
static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, NULL);
    }
}

static void release_host(void)
{
    if (!L) {
        return;
    }
    lua_sethook(L, NULL, 0, 0);
    sched_abandon_all();
    bind_chan_close();
    bind_signal_close();
    sched_shutdown();
    lua_close(L);
    L = NULL;
    uv_walk(loop, close_any, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
}

static void on_done(struct task *t, void *ud)
{
    (void)t;
    uv_stop(ud);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    sandbox_env();
    loop = uv_default_loop();
    L = luaL_newstate();
    if (!L) {
        abort();
    }
    luaL_openlibs(L);
    sched_init(L, loop);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_ad_core);
    lua_setfield(L, -2, "ad.core");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 1);
    embed_install_searchers(L, getenv("AGENT_DISPATCH_USER_LUA_DIR"), NULL);
    if (luaL_loadfile(L, AD_FUZZ_DRIVER) != LUA_OK ||
        lua_pcall(L, 0, 1, 0) != LUA_OK || !lua_isfunction(L, -1)) {
        fprintf(stderr, "fuzz driver %s: %s\n", AD_FUZZ_DRIVER,
                lua_tostring(L, -1));
        abort();
    }
    driver_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    atexit(release_host);
    /* Coroutines inherit the hook of the thread that creates them. */
    lua_sethook(L, line_hook, LUA_MASKLINE, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, driver_ref);
    lua_pushlstring(L, (const char *)data, size);
    struct task *t = sched_spawn(L, 1);
    sched_on_done(t, on_done, loop);
    uv_run(loop, UV_RUN_DEFAULT);
    if (!sched_is_done(t)) {
        fprintf(stderr, "fuzz: the driver task never finished\n");
        abort();
    }
    int n = sched_push_results(L, t);
    if (!lua_toboolean(L, -n)) {
        fprintf(stderr, "fuzz: invariant broken: %s\n",
                luaL_tolstring(L, -n + 1, NULL));
        abort();
    }
    lua_settop(L, 0);
    if (sched_live_tasks() != 0) {
        fprintf(stderr, "fuzz: %zu tasks outlived the input\n",
                sched_live_tasks());
        abort();
    }
    return 0;
}
