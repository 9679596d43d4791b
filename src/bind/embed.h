/* The Lua policy modules compiled into the binary (generated table). */
#ifndef AD_BIND_EMBED_H
#define AD_BIND_EMBED_H
#include <stddef.h>
#include <lua.h>

struct embedded_module {
    const char *name;       /* "ad.protocol.mcp" */
    const char *chunkname;  /* "@lua/ad/protocol/mcp.lua" */
    const unsigned char *src;     /* source text */
    size_t len;
    const unsigned char *code;    /* bytecode of the same liblua */
    size_t code_len;
};

extern const struct embedded_module embedded_modules[];
extern const size_t embedded_module_count;

const struct embedded_module *embed_find(const char *name);

/* Sets package.searchers to exactly: preload; the user's Lua directory
 * (text chunks only); the embedded table. Empties package.cpath. */
void embed_install_searchers(lua_State *L, const char *user_dir,
                             const char *dev_dir);

#endif
