/* Lua face of the message authentication the MCP layer needs: core.crypto,
 * over OpenSSL's libcrypto (no cryptography of our own).
 *
 *   core.crypto.hmac_sha256(key, msg) -> 32-byte MAC (a binary string)
 *   core.crypto.sha256(msg) -> 32-byte digest (a binary string)
 *   core.crypto.random(n) -> n random bytes (1..256)
 *   core.crypto.equal(a, b) -> true when a and b are the same bytes,
 *       compared in a time that does not depend on where they differ
 * Each raises when libcrypto cannot be loaded.
 *
 * Used for MRTR's requestState (ad.protocol.mcp_mrtr): a value the client
 * hands back, which must not be forgeable. libcrypto is loaded (dlopen) at
 * the first call, not linked: linked statically it tripled the binary and
 * added about a millisecond to every start, linked dynamically it would
 * add a shared library to load at every start, for a feature few calls
 * use. */
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "bind/bind.h"

/* The functions used, with the prototypes of the headers they come from. */
static struct {
    int loaded; /* 1: loaded, -1: cannot be */
    unsigned char *(*hmac)(const EVP_MD *, const void *, int, const unsigned char *, size_t,
                           unsigned char *, unsigned int *);
    const EVP_MD *(*sha256)(void);
    int (*digest)(const void *, size_t, unsigned char *, unsigned int *, const EVP_MD *,
                  ENGINE *);
    int (*rand_bytes)(unsigned char *, int);
    int (*memcmp)(const volatile void *, const volatile void *, size_t);
    void (*cleanse)(void *, size_t);
} C;

/* dlsym returns an object pointer; POSIX guarantees it converts to a
 * function pointer, which this copy does without a cast C forbids. */
static int sym(void *lib, const char *name, void *fnp, size_t size)
{
    void *p = dlsym(lib, name);
    if (!p)
        return 0;
    memcpy(fnp, &p, size);
    return 1;
}

#define SYM(lib, name, field) sym(lib, name, &C.field, sizeof C.field)

static void load(lua_State *L)
{
    if (C.loaded == 0) {
        void *lib = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!lib)
            lib = dlopen("libcrypto.so", RTLD_NOW | RTLD_LOCAL);
        int ok = lib && SYM(lib, "HMAC", hmac) && SYM(lib, "EVP_sha256", sha256) &&
                 SYM(lib, "EVP_Digest", digest) && SYM(lib, "RAND_bytes", rand_bytes) &&
                 SYM(lib, "CRYPTO_memcmp", memcmp) && SYM(lib, "OPENSSL_cleanse", cleanse);
        C.loaded = ok ? 1 : -1;
    }
    if (C.loaded < 0)
        luaL_error(L, "cannot load OpenSSL's libcrypto (libcrypto.so.3; Debian package libssl3)");
}

static int l_hmac_sha256(lua_State *L)
{
    size_t klen, mlen;
    const char *key = luaL_checklstring(L, 1, &klen);
    const char *msg = luaL_checklstring(L, 2, &mlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    luaL_argcheck(L, klen > 0 && klen <= 1024, 1, "key of 1..1024 bytes");
    load(L);
    if (!C.hmac(C.sha256(), key, (int)klen, (const unsigned char *)msg, mlen, md, &mdlen))
        return luaL_error(L, "HMAC-SHA256 failed");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static int l_sha256(lua_State *L)
{
    size_t mlen;
    const char *msg = luaL_checklstring(L, 1, &mlen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    load(L);
    if (!C.digest(msg, mlen, md, &mdlen, C.sha256(), NULL))
        return luaL_error(L, "SHA-256 failed");
    lua_pushlstring(L, (const char *)md, mdlen);
    return 1;
}

static int l_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char buf[256];
    luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "1..256 bytes");
    load(L);
    if (C.rand_bytes(buf, (int)n) != 1)
        return luaL_error(L, "no random bytes available");
    lua_pushlstring(L, (const char *)buf, (size_t)n);
    C.cleanse(buf, sizeof buf);
    return 1;
}

static int l_equal(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    load(L);
    /* The lengths of MACs are public; only their contents are compared in
     * constant time. */
    lua_pushboolean(L, alen == blen && C.memcmp(a, b, alen) == 0);
    return 1;
}

void bind_crypto_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"hmac_sha256", l_hmac_sha256},
        {"sha256", l_sha256},
        {"random", l_random},
        {"equal", l_equal},
        {NULL, NULL},
    };
    bind_subtable(L, "crypto", fns);
}
