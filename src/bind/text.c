/* Lua face of text, identifiers and name validation: core.text.
 *
 *   core.text.valid(s) -> is s valid UTF-8
 *   core.text.fix(s) -> s with invalid sequences replaced by U+FFFD
 *   core.text.len(s) -> code points in s
 *   core.text.sub(s, n) -> the first n code points of s
 *   core.text.uuid4() -> a random UUID      core.text.hex32() -> 32 hex digits
 *   core.text.token() -> 32 hex digits of 128 random bits (a bearer token)
 *   core.text.same(a, b) -> true when a and b are the same bytes, compared
 *       in a time that depends only on their lengths (for tokens)
 *   core.text.valid_name(s)  core.text.valid_job_id(s) -> true | false
 *       (false for anything that is not a string)
 *   core.text.nul_free(v) -> true when v is a string without a NUL byte
 *       (false for anything else: a number is not converted) */
#include <stdlib.h>
#include <string.h>

#include "ad/ids.h"
#include "ad/utf8.h"
#include "ad/validate.h"
#include "bind/bind.h"

static int l_utf8_valid(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushboolean(L, utf8_valid(s, n));
    return 1;
}

static int l_utf8_fix(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (utf8_valid(s, n)) {
        lua_settop(L, 1);
        return 1;
    }
    size_t m;
    char *fixed = utf8_sanitize(s, n, &m);
    if (!fixed) {
        return luaL_error(L, "out of memory");
    }
    lua_pushlstring(L, fixed, m);
    free(fixed);
    return 1;
}

static int l_utf8_len(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_pushinteger(L, (lua_Integer)utf8_count(s, n));
    return 1;
}

/* core.text.sub(s, n) -> the first n code points of s */
static int l_utf8_sub(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer max = luaL_checkinteger(L, 2);
    if (max <= 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    lua_pushlstring(L, s, utf8_prefix(s, n, (size_t)max));
    return 1;
}

static int l_uuid4(lua_State *L)
{
    char buf[37];
    ids_uuid4(buf);
    lua_pushstring(L, buf);
    return 1;
}

static int l_hex32(lua_State *L)
{
    char buf[33];
    ids_hex32(buf);
    lua_pushstring(L, buf);
    return 1;
}

static int l_token(lua_State *L)
{
    char buf[33];
    if (ids_token32(buf) != 0) {
        return luaL_error(L, "no random bytes from the kernel (getrandom, /dev/urandom)");
    }
    lua_pushstring(L, buf);
    return 1;
}

/* Not memcmp: it returns at the first difference, so its time tells how
 * much of a guessed token was right. (core.crypto.equal does the same, but
 * needs libcrypto loaded; a task token must be checked without it.) */
static int l_same(lua_State *L)
{
    size_t na, nb;
    const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &na);
    const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &nb);
    volatile unsigned char diff = na != nb;
    for (size_t i = 0; i < na && i < nb; i++) {
        diff |= (unsigned char)(a[i] ^ b[i]);
    }
    lua_pushboolean(L, diff == 0);
    return 1;
}

static int l_valid_name(lua_State *L)
{
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    lua_pushboolean(L, s && lua_type(L, 1) == LUA_TSTRING &&
                           validate_name(s, n));
    return 1;
}

static int l_valid_job_id(lua_State *L)
{
    size_t n;
    const char *s = lua_tolstring(L, 1, &n);
    lua_pushboolean(L, s && lua_type(L, 1) == LUA_TSTRING &&
                           validate_job_id(s, n));
    return 1;
}

/* One call where a tool's argument check made two (type, then a search
 * for NUL): every string argument of every call passes here. */
static int l_nul_free(lua_State *L)
{
    size_t n;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n) : NULL;
    lua_pushboolean(L, s && memchr(s, 0, n) == NULL);
    return 1;
}

void bind_text_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"valid", l_utf8_valid},
        {"fix", l_utf8_fix},
        {"len", l_utf8_len},
        {"sub", l_utf8_sub},
        {"uuid4", l_uuid4},
        {"hex32", l_hex32},
        {"token", l_token},
        {"same", l_same},
        {"valid_name", l_valid_name},
        {"valid_job_id", l_valid_job_id},
        {"nul_free", l_nul_free},
        {NULL, NULL},
    };
    bind_subtable(L, "text", fns);
}
