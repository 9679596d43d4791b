/* Module search: the user's directory first (a same-named file replaces the
 * default wholesale), then the modules embedded at build time.
 *
 *   core.embed.source(name) -> source, chunkname | nil
 *   core.embed.list() -> {names}
 *   core.embed.user_lua_dir() -> the directory searched first ("" when none)
 *   core.embed.user_lua_present() -> whether it existed at startup (only
 *     then is it searched: no failed open per require when it is absent)
 *   core.embed.tools(key) -> the default tools/list array | nil
 *   core.embed.tools_deps() -> {names of the modules it was built from}
 *
 * No relative paths and no C modules are ever searched: package.cpath is
 * empty and user files are loaded in text mode only. AGENT_DISPATCH_LUA_DIR
 * (the developer switch) makes the "embedded" searcher read lua/ from a
 * checkout instead, so policy can be edited without a rebuild. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <dirent.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "ad/fsutil.h"
#include "bind/bind.h"
#include "bind/embed.h"

static int cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct embedded_module *)elem)->name);
}

const struct embedded_module *embed_find(const char *name)
{
    return bsearch(name, embedded_modules, embedded_module_count,
                   sizeof embedded_modules[0], cmp);
}

/* [-0, +1, m] path of module name under dir ("ad.protocol.mcp" -> dir/ad/protocol/mcp.lua) */
static void push_module_path(lua_State *L, const char *dir, const char *name,
                             const char *suffix)
{
    lua_pushstring(L, dir);
    lua_pushliteral(L, "/");
    luaL_gsub(L, name, ".", "/");
    lua_pushstring(L, suffix);
    lua_concat(L, 4);
}

/* A user file runs with the user's privileges inside the server: like ssh
 * with keys, refuse one that someone else owns or could have written
 * (fs_read_trusted checks the descriptor it reads and every directory on
 * the file's resolved path). dev files are the developer's checkout. */
static int read_module(lua_State *L, const char *path, bool dev, char **src,
                       size_t *len)
{
    if (dev) {
        return fs_read_file(path, 16u << 20, false, src, len);
    }
    char why[PATH_MAX + 200];
    int rc = fs_read_trusted(path, 16u << 20, getuid(), src, len, why,
                             sizeof why);
    if (rc == -EPERM && why[0]) {
        return luaL_error(L, "refusing to load %s: %s", path, why);
    }
    return rc;
}

/* Tries dir/<name>.lua then dir/<name>/init.lua. Returns 1 with the loader
 * and path pushed, 0 (with a message pushed) when absent, or raises when
 * the file exists but does not load (a user's mistake must be visible). */
static int search_dir(lua_State *L, const char *dir, const char *name,
                      bool dev)
{
    static const char *suffixes[] = {".lua", "/init.lua"};
    for (int i = 0; i < 2; i++) {
        push_module_path(L, dir, name, suffixes[i]);
        const char *path = lua_tostring(L, -1);
        char *src;
        size_t len;
        if (read_module(L, path, dev, &src, &len) != 0) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushfstring(L, "@%s", path);
        int st = luaL_loadbufferx(L, src, len, lua_tostring(L, -1), "t");
        free(src);
        if (st != LUA_OK) {
            /* One line: Lua's message already names path:line, and callers
             * that show only a first line must not lose it. */
            return luaL_error(L, "error loading module '%s': %s", name,
                              lua_tostring(L, -1));
        }
        lua_remove(L, -2);                 /* path loader */
        lua_insert(L, -2);                 /* loader path */
        return 2;
    }
    lua_pushfstring(L, "\n\tno file in %s", dir);
    return 1;
}

/* Modules every command and the server's handshake load: an override of
 * one that fails to load would leave nothing running to say so (no
 * doctor, no lua list, no answer to initialize), so the shipped module is
 * used in its place, with a warning naming the override. */
static bool essential(const char *name)
{
    static const char *const names[] = {"ad.main", "ad.cli", "ad.cli.common",
                                        "ad.cli.args", "ad.protocol.mcp"};
    if (strncmp(name, "ad.infra.", 9) == 0) {
        return true;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* [-0, +1] The shipped module's loader function (raises if none). */
static void push_shipped(lua_State *L, const char *name)
{
    const struct embedded_module *m = embed_find(name);
    if (!m) {
        luaL_error(L, "no embedded module '%s'", name);
    }
    if (luaL_loadbufferx(L, (const char *)m->code, m->code_len, m->chunkname,
                         "b") != LUA_OK) {
        lua_error(L);
    }
}

/* [-1, +1] Says on stderr that the override of name failed (the message on
 * top, replaced by the shipped module's loader). */
static void fall_back(lua_State *L, const char *name)
{
    const char *why = lua_tostring(L, -1);
    fprintf(stderr,
            "agent-dispatch: warning: the override of %s failed to load (%s); "
            "the shipped module is used instead: fix or remove the file\n",
            name, why ? why : "(error object is not a string)");
    lua_pop(L, 1);
    push_shipped(L, name);
}

/* The loader of an essential module's override: runs the user's chunk
 * (upvalue 1); when it raises, the shipped module's. */
static int load_or_ship(lua_State *L) /* name path */
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 2, 1, 0) == LUA_OK) {
        if (lua_istable(L, -1)) {
            return 1;
        }
        lua_pushfstring(L, "%s: it returned %s, not the module's table",
                        lua_tostring(L, 2), luaL_typename(L, -1));
        lua_remove(L, -2);
    }
    fall_back(L, name);
    lua_pushvalue(L, 1);
    lua_pushliteral(L, ":embedded:");
    lua_call(L, 2, 1);
    return 1;
}

static int search_user_dir(lua_State *L) /* dir name */
{
    return search_dir(L, lua_tostring(L, 1), lua_tostring(L, 2), false);
}

/* Only the modules the directory held at startup (upvalue 2): a file
 * added while a server runs applies from its next start, as the docs say,
 * not at whichever require comes first (a mix of old and new policy). */
static int searcher_user(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dir = lua_tostring(L, lua_upvalueindex(1));
    if (!dir || !*dir) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (lua_getfield(L, lua_upvalueindex(2), name) == LUA_TNIL) {
        lua_pushfstring(L, "\n\tno override of '%s' in %s at startup", name, dir);
        return 1;
    }
    lua_pop(L, 1);
    if (!essential(name) || !embed_find(name)) {
        return search_dir(L, dir, name, false);
    }
    lua_settop(L, 1);
    lua_pushcfunction(L, search_user_dir);
    lua_pushstring(L, dir);
    lua_pushvalue(L, 1);
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) { /* refused, or does not compile */
        fall_back(L, name);
        lua_pushliteral(L, ":embedded:");
        return 2;
    }
    if (!lua_isfunction(L, -2)) {
        lua_pop(L, 1);
        return 1; /* no file (any more): the message */
    }
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, load_or_ship, 1);  /* loader path wrapped */
    lua_replace(L, -3);
    return 2;
}

#define SCAN_DEPTH 8
#define SCAN_ENTRIES 4096

/* [-0, +0, m] Adds to the table at idx the module names of the .lua files
 * under path (module prefix prefix: "ad.infra."), at most SCAN_ENTRIES
 * entries looked at in all. */
static void scan_overrides(lua_State *L, int idx, const char *path,
                           const char *prefix, int depth, int *budget)
{
    DIR *d = depth < SCAN_DEPTH ? opendir(path) : NULL;
    if (!d) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) && (*budget)-- > 0) {
        const char *n = e->d_name;
        if (n[0] == '.') {
            continue;
        }
        char sub[PATH_MAX], mod[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, n) >= sizeof sub) {
            continue;
        }
        struct stat st;
        if (stat(sub, &st) != 0) {
            continue;
        }
        size_t len = strlen(n);
        if (S_ISDIR(st.st_mode)) {
            if ((size_t)snprintf(mod, sizeof mod, "%s%s.", prefix, n) < sizeof mod) {
                scan_overrides(L, idx, sub, mod, depth + 1, budget);
            }
        } else if (len > 4 && strcmp(n + len - 4, ".lua") == 0) {
            if (strcmp(n, "init.lua") == 0 && prefix[0]) {
                lua_pushlstring(L, prefix, strlen(prefix) - 1); /* "ad.x." -> "ad.x" */
            } else if ((size_t)snprintf(mod, sizeof mod, "%s%.*s", prefix,
                                        (int)(len - 4), n) < sizeof mod) {
                lua_pushstring(L, mod);
            } else {
                continue;
            }
            lua_pushboolean(L, 1);
            lua_settable(L, idx);
        }
    }
    closedir(d);
}

static int searcher_embedded(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *dev = lua_tostring(L, lua_upvalueindex(1));
    if (dev && *dev) {
        int n = search_dir(L, dev, name, true);
        if (n == 2) {
            return 2;
        }
        lua_pop(L, n);
    }
    const struct embedded_module *m = embed_find(name);
    if (!m) {
        lua_pushfstring(L, "\n\tno embedded module '%s'", name);
        return 1;
    }
    if (luaL_loadbufferx(L, (const char *)m->code, m->code_len, m->chunkname,
                         "b") != LUA_OK) {
        return lua_error(L);
    }
    lua_pushstring(L, m->chunkname + 1);
    return 2;
}

/* The user's directory, for core.embed.user_lua_dir(). */
static char user_lua_dir[4096];
static bool user_lua_present;

void embed_install_searchers(lua_State *L, const char *user_dir,
                             const char *dev_dir)
{
    snprintf(user_lua_dir, sizeof user_lua_dir, "%s", user_dir ? user_dir : "");
    /* Looked at once: most installs have no such directory, and modules
     * are required lazily all through a server's life, each costing two
     * failed opens otherwise. An override directory created later applies
     * from the next start. */
    struct stat st;
    user_lua_present = user_lua_dir[0] && stat(user_lua_dir, &st) == 0 &&
                       S_ISDIR(st.st_mode);
    lua_getglobal(L, "package");                         /* pkg */
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pushliteral(L, "");
    lua_setfield(L, -2, "path");
    lua_getfield(L, -1, "searchers");                    /* pkg s */
    lua_rawgeti(L, -1, 1);                               /* pkg s preload */
    lua_newtable(L);                                     /* pkg s pre new */
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, user_lua_present ? user_lua_dir : "");
    lua_newtable(L);
    if (user_lua_present) {
        int budget = SCAN_ENTRIES;
        scan_overrides(L, lua_gettop(L), user_lua_dir, "", 0, &budget);
    }
    lua_pushcclosure(L, searcher_user, 2);
    lua_rawseti(L, -2, 2);
    lua_pushstring(L, dev_dir ? dev_dir : "");
    lua_pushcclosure(L, searcher_embedded, 1);
    lua_rawseti(L, -2, 3);
    lua_setfield(L, -3, "searchers");                    /* pkg s */
    lua_pop(L, 2);
}

static int l_embedded(lua_State *L)
{
    const struct embedded_module *m = embed_find(luaL_checkstring(L, 1));
    if (!m) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushlstring(L, (const char *)m->src, m->len);
    lua_pushstring(L, m->chunkname + 1);
    return 2;
}

static int l_embedded_list(lua_State *L)
{
    bind_new_array(L, (int)embedded_module_count);
    for (size_t i = 0; i < embedded_module_count; i++) {
        lua_pushstring(L, embedded_modules[i].name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int l_user_lua_dir(lua_State *L)
{
    lua_pushstring(L, user_lua_dir);
    return 1;
}

static int l_user_lua_present(lua_State *L)
{
    lua_pushboolean(L, user_lua_present);
    return 1;
}

static int l_embedded_tools(lua_State *L)
{
    const char *key = luaL_checkstring(L, 1);
    for (size_t i = 0; i < embedded_tools_count; i++) {
        if (strcmp(embedded_tools[i].key, key) == 0) {
            lua_pushlstring(L, embedded_tools[i].json, embedded_tools[i].len);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static int l_embedded_tools_deps(lua_State *L)
{
    bind_new_array(L, 0);
    for (int i = 0; embedded_tools_deps[i]; i++) {
        lua_pushstring(L, embedded_tools_deps[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

void bind_embed_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"source", l_embedded},
        {"list", l_embedded_list},
        {"user_lua_dir", l_user_lua_dir},
        {"user_lua_present", l_user_lua_present},
        {"tools", l_embedded_tools},
        {"tools_deps", l_embedded_tools_deps},
        {NULL, NULL},
    };
    bind_subtable(L, "embed", fns);
}
