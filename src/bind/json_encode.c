/* The JSON encoder of ad.infra.json, in C: core.json.encoder(raw_mt, scalar,
 * null) -> encode(value) -> text, fields(t, keys) -> text (the members
 * of t that keys names, in that order: a record of fixed fields),
 * encode_text(value) -> the JSON string of encode(value)'s text.
 *
 * The rules are ad.infra.json's (see its header): a table whose metatable
 * is core.array_mt is an array; one whose metatable has __order is an
 * object with those keys first (absent ones skipped, each once), then the
 * others sorted; any other table is an array when it is a non-empty
 * sequence, an object with sorted keys otherwise; a table whose metatable
 * is raw_mt is emitted as its [1] verbatim. Numbers are formatted as
 * scalar (lua-cjson's encode) formats them, so they read exactly as
 * before: integers and short decimals here, the others by scalar;
 * non-finite ones as null; strings are escaped as lua-cjson escapes them, except that
 * "/" stays "/". The text is valid UTF-8 (core.text.fix).
 *
 * Why C: every reply, log notification and stored result passes here,
 * and in Lua each object cost three tables, a sort and a string per
 * token; a third of the instructions of a stub dispatch.
 *
 * Over 500 lines on purpose: one job; the number formats and the escape
 * table stay beside the encoder so its output matches lua-cjson's.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ad/json_text.h"
#include "ad/utf8.h"
#include "bind/bind.h"

#define MAX_DEPTH 200
#define BUF_MT "ad.json.buf"

/* upvalues of encode */
#define UV_RAW lua_upvalueindex(1)
#define UV_SCALAR lua_upvalueindex(2)
#define UV_NULL lua_upvalueindex(3)
#define UV_SORT lua_upvalueindex(4)
#define UV_ARRAY lua_upvalueindex(5) /* core.array_mt */

/* The output, in a userdata so that an error half-way frees it (__gc);
 * aux: a text made on the way (encode_text's repaired one), freed so too. */
struct buf {
    char *p, *aux;
    size_t len, cap;
};

static int buf_gc(lua_State *L)
{
    struct buf *b = luaL_checkudata(L, 1, BUF_MT);
    free(b->p);
    free(b->aux);
    b->p = b->aux = NULL;
    return 0;
}

/* Makes room for n more bytes (the rare slow path of put). */
static void grow(lua_State *L, struct buf *b, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        cap *= 2;
    }
    char *p = realloc(b->p, cap);
    if (!p) {
        luaL_error(L, "out of memory");
    }
    b->p = p;
    b->cap = cap;
}

static inline void put(lua_State *L, struct buf *b, const char *s, size_t n)
{
    if (b->cap - b->len < n) {
        grow(L, b, n);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static inline void putc1(lua_State *L, struct buf *b, char c)
{
    if (b->cap == b->len) {
        grow(L, b, 1);
    }
    b->p[b->len++] = c;
}

/* The escape of each byte json_text_escape escapes and its length (0:
 * the byte is written as it is): a table, one load per byte of a text. */
static const char *escape_of[256];
static unsigned char escape_len[256];

/* The longest escape of one byte ("\u001f"); json_text_escape gives two
 * bytes ("\n") or six, no other length (put_escaped relies on it). */
#define ESCAPE_MAX 6

/* The bytes of w that json_text_escape escapes (below 32, '"', '\\',
 * 127), as the high bit of each in the mask (json_text_plain8's test:
 * zero when none). The lowest bit set is exact: a false mark can come
 * only from a borrow, above a byte that is marked truly. */
static inline uint64_t escape_hits8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = ones * 0x80;
    uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\'), del = w ^ (ones * 127);
    return (((w - ones * 32) & ~w) | ((q - ones) & ~q) | ((bs - ones) & ~bs) |
            ((del - ones) & ~del)) & high;
}

/* Writes one byte escaped (or as it is) at out; returns the next place. */
static inline char *put_byte(char *out, unsigned char c)
{
    size_t el = escape_len[c];
    if (!el) {
        *out++ = (char)c;
    } else if (el == 2) {
        out[0] = '\\';
        out[1] = escape_of[c][1];
        out += 2;
    } else {
        memcpy(out, escape_of[c], ESCAPE_MAX);
        out += ESCAPE_MAX;
    }
    return out;
}

/* Writes the n bytes at s as the inside of a JSON string (no quotes):
 * room for the worst case is made once; then 8 bytes at a time, each
 * word copied whole up to its first byte to escape (a reply's text
 * escapes a quote every few bytes), with no check per write. */
static void put_escaped(lua_State *L, struct buf *b, const char *s, size_t n)
{
    if ((b->cap - b->len) / ESCAPE_MAX <= n) {
        grow(L, b, n * ESCAPE_MAX + 1);
    }
    char *out = b->p + b->len;
    size_t i = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* (at i, out has room for 6 * (n - i) + 1 bytes: a whole word fits;
     * the first byte of a word is its lowest: ctz finds the first hit) */
    while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        memcpy(out, &w, sizeof w);
        uint64_t hit = escape_hits8(w);
        if (!hit) {
            out += 8;
            i += 8;
            continue;
        }
        size_t k = (size_t)__builtin_ctzll(hit) / 8;
        out = put_byte(out + k, (unsigned char)s[i + k]);
        i += k + 1;
    }
#endif
    for (; i < n; i++) {
        out = put_byte(out, (unsigned char)s[i]);
    }
    b->len = (size_t)(out - b->p);
}

static void put_string(lua_State *L, struct buf *b, const char *s, size_t n)
{
    putc1(L, b, '"');
    put_escaped(L, b, s, n);
    putc1(L, b, '"');
}

/* A raw text, verbatim: it is a whole JSON value as the client wrote it
 * (an echoed id), and turning its "\/" into "/" could not tell an
 * escaped backslash before a slash from an escaped slash. */
static void put_raw(lua_State *L, struct buf *b, const char *s, size_t n)
{
    put(L, b, s, n);
}

static void encode(lua_State *L, struct buf *b, int idx, int depth);

/* [-0, +0] Is the table at idx, one with no metatable that decides,
 * an array: a non-empty sequence (ad.infra.json's is_array)? */
static bool is_sequence(lua_State *L, int idx)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    if (n == 0) {
        return false;
    }
    lua_Unsigned count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        lua_pop(L, 1);
    }
    return count == n;
}

static void encode_array(lua_State *L, struct buf *b, int idx, int depth)
{
    lua_Unsigned n = lua_rawlen(L, idx);
    putc1(L, b, '[');
    for (lua_Unsigned i = 1; i <= n; i++) {
        if (i > 1) {
            putc1(L, b, ',');
        }
        lua_geti(L, idx, (lua_Integer)i);
        encode(L, b, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
    }
    putc1(L, b, ']');
}

/* Up to this many __order keys are told apart by comparing with each
 * other on the stack; more get a set (a table). */
#define ORDER_SCAN 32

/* The __order keys written so far (up to ORDER_SCAN): their text, to
 * tell a key apart by its address (a short string is interned: equal
 * ones are one object) before any call into Lua's API. */
struct ordered {
    const char *s[ORDER_SCAN]; /* NULL: a key that is not a string */
    size_t len[ORDER_SCAN];
    int first, n, set;         /* the keys' stack slots; the set, if any */
};

/* The longest string Lua interns (luaconf's LUAI_MAXSHORTLEN): longer
 * equal strings may be two objects, so they are compared by content. */
#define SHORT_STR 40

/* Is the key on top among the ordered keys written (or in the set)? */
static bool is_ordered(lua_State *L, const struct ordered *o)
{
    if (o->set) {
        lua_pushvalue(L, -1);
        bool in = lua_rawget(L, o->set) != LUA_TNIL;
        lua_pop(L, 1);
        return in;
    }
    size_t len = 0;
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    for (int j = 0; j < o->n; j++) {
        if (k && o->s[j]) {
            if (o->s[j] == k || (len > SHORT_STR && o->len[j] == len &&
                                 memcmp(o->s[j], k, len) == 0)) {
                return true;
            }
        } else if (lua_rawequal(L, -1, o->first + j)) {
            return true;
        }
    }
    return false;
}

/* Writes "key":value for the key below the value on top of the stack
 * (and pops the value). */
static void put_key_value(lua_State *L, struct buf *b, int depth, bool comma)
{
    if (comma) {
        putc1(L, b, ',');
    }
    size_t kl;
    const char *k = lua_tolstring(L, -2, &kl);
    put_string(L, b, k, kl);
    putc1(L, b, ':');
    encode(L, b, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
}

/* Writes "key":value for the key on top of the stack; t[k], or
 * t[tonumber(k)] for a key that was not a string (as ad.infra.json did). */
static void put_member(lua_State *L, struct buf *b, int idx, int depth,
                       bool comma)
{
    lua_pushvalue(L, -1);
    if (lua_gettable(L, idx) == LUA_TNIL) {
        lua_pop(L, 1);
        size_t kl;
        const char *k = lua_tolstring(L, -1, &kl);
        if (lua_stringtonumber(L, k) == kl + 1) {
            lua_gettable(L, idx);
        } else {
            lua_pushnil(L);
        }
    }
    put_key_value(L, b, depth, comma);
}

/* The other keys of the object at idx (the one on top, its value popped,
 * goes to the list at *rest, made when the first comes): written after
 * the ordered ones, sorted, as encode_object writes them. */
static void add_rest_key(lua_State *L, int *rest, lua_Integer *nrest)
{
    if (!*rest) {
        lua_createtable(L, 4, 0);
        lua_insert(L, -2);
        *rest = lua_gettop(L) - 1;
    }
    if (lua_type(L, -1) == LUA_TSTRING) {
        lua_pushvalue(L, -1);
    } else {
        luaL_tolstring(L, -1, NULL);
    }
    lua_rawseti(L, *rest, ++*nrest);
}

static void put_rest(lua_State *L, struct buf *b, int idx, int depth, int rest,
                     lua_Integer nrest, bool comma)
{
    if (nrest > 1) {
        lua_pushvalue(L, UV_SORT);
        lua_pushvalue(L, rest);
        lua_call(L, 1, 0);
    }
    for (lua_Integer i = 1; i <= nrest; i++) {
        lua_rawgeti(L, rest, i);
        put_member(L, b, idx, depth, comma);
        lua_pop(L, 1);
        comma = true;
    }
}

/* An object: the __order keys (the list at stack index order; 0: none)
 * present in it, once each, then the other keys (non-string ones as
 * tostring gives them) sorted with table.sort, Lua's own string order.
 * The ordered keys wait on the stack, so the common object (every key
 * ordered) builds no table. */
static void encode_object(lua_State *L, struct buf *b, int idx, int depth, int order)
{
    int base = lua_gettop(L);
    struct ordered o;
    o.first = lua_gettop(L) + 1;
    o.n = o.set = 0;
    putc1(L, b, '{');
    for (lua_Integer i = 1; order && lua_geti(L, order, i) != LUA_TNIL; i++) {
        lua_pushvalue(L, -1);
        /* (the value found is the one written: one lookup per key) */
        if (lua_gettable(L, idx) == LUA_TNIL) {
            lua_pop(L, 2);
            continue;
        }
        lua_insert(L, -2); /* value key: is the key there twice? */
        bool twice = is_ordered(L, &o);
        lua_insert(L, -2); /* key value */
        if (twice) {
            lua_pop(L, 2);
            continue;
        }
        put_key_value(L, b, depth, o.n > 0 || o.set);
        if (o.set) {
            lua_pushboolean(L, 1);
            lua_rawset(L, o.set);
            continue;
        }
        o.s[o.n] = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &o.len[o.n]) : NULL;
        o.n++;
        luaL_checkstack(L, 4, "json: too many ordered keys");
        if (o.n == ORDER_SCAN) {
            lua_createtable(L, 0, 2 * ORDER_SCAN);
            o.set = lua_gettop(L);
            for (int j = 0; j < o.n; j++) {
                lua_pushvalue(L, o.first + j);
                lua_pushboolean(L, 1);
                lua_rawset(L, o.set);
            }
        }
    }
    if (order) {
        lua_pop(L, 1); /* the nil that ended the list */
    }
    bool comma = o.n > 0 || o.set;
    int rest = 0;
    lua_Integer nrest = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if ((o.n > 0 || o.set) && is_ordered(L, &o)) {
            continue;
        }
        add_rest_key(L, &rest, &nrest);
    }
    put_rest(L, b, idx, depth, rest, nrest, comma);
    putc1(L, b, '}');
    lua_settop(L, base);
}

/* An ordered object whose keys are found by walking the object, not by
 * looking up every key of its order (most of a DispatchResult's sixteen
 * are absent): for an order list of up to ORDER_SCAN strings with no
 * metatable, and an object whose metatable has no __index (so a key is
 * there exactly when the walk meets it). The same text as encode_object.
 * Returns false, having written nothing, for any other. */
static bool encode_object_walk(lua_State *L, struct buf *b, int idx, int depth, int order)
{
    if (lua_getmetatable(L, order)) {
        lua_pop(L, 1);
        return false;
    }
    const char *ks[ORDER_SCAN];
    size_t kl[ORDER_SCAN];
    int n = 0;
    for (;;) {
        int t = lua_rawgeti(L, order, n + 1);
        if (t == LUA_TNIL) {
            lua_pop(L, 1);
            break;
        }
        if (t != LUA_TSTRING || n == ORDER_SCAN) {
            lua_pop(L, 1);
            return false;
        }
        /* (the list holds the string: the address stays valid) */
        ks[n] = lua_tolstring(L, -1, &kl[n]);
        n++;
        lua_pop(L, 1);
    }
    int base = lua_gettop(L);
    struct {
        int at, slot; /* its place in the order; its key's stack slot (value above) */
    } found[ORDER_SCAN];
    int nfound = 0, rest = 0;
    lua_Integer nrest = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        luaL_checkstack(L, 4, "json: object too large");
        int at = -1;
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t len;
            const char *k = lua_tolstring(L, -2, &len);
            for (int j = 0; j < n; j++) {
                if (ks[j] == k || (len > SHORT_STR && kl[j] == len &&
                                   memcmp(ks[j], k, len) == 0)) {
                    at = j; /* (a key listed twice: its first place) */
                    break;
                }
            }
        }
        if (at < 0) {
            lua_pop(L, 1);
            add_rest_key(L, &rest, &nrest);
            continue;
        }
        /* Kept: key and value stay, a copy of the key goes on walking. */
        int i = nfound++;
        while (i > 0 && found[i - 1].at > at) { /* (sorted as they come) */
            found[i] = found[i - 1];
            i--;
        }
        found[i].at = at;
        found[i].slot = lua_gettop(L) - 1;
        lua_pushvalue(L, -2);
    }
    putc1(L, b, '{');
    for (int i = 0; i < nfound; i++) {
        lua_pushvalue(L, found[i].slot);
        lua_pushvalue(L, found[i].slot + 1);
        put_key_value(L, b, depth, i > 0);
        lua_pop(L, 1);
    }
    put_rest(L, b, idx, depth, rest, nrest, nfound > 0);
    putc1(L, b, '}');
    lua_settop(L, base);
    return true;
}

static void encode_scalar(lua_State *L, struct buf *b, int idx)
{
    lua_pushvalue(L, UV_SCALAR);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    size_t n;
    const char *s = lua_tolstring(L, -1, &n);
    if (!s) {
        luaL_error(L, "json: the scalar encoder returned no text");
    }
    put(L, b, s, n);
    lua_pop(L, 1);
}

static void encode(lua_State *L, struct buf *b, int idx, int depth)
{
    if (depth > MAX_DEPTH) {
        luaL_error(L, "json: value nested too deeply (a cycle?)");
    }
    luaL_checkstack(L, 8, "json: value nested too deeply");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        put(L, b, "null", 4);
        return;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) {
            put(L, b, "true", 4);
        } else {
            put(L, b, "false", 5);
        }
        return;
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            /* Below 10^14 lua-cjson's "%.14g" writes every digit: the same
             * text, without a call into it. */
            lua_Integer v = lua_tointeger(L, idx);
            if (v > -100000000000000LL && v < 100000000000000LL) {
                char num[24];
                put(L, b, num, json_text_int((long long)v, num));
                return;
            }
        } else if (!isfinite(lua_tonumber(L, idx))) {
            put(L, b, "null", 4);
            return;
        } else {
            char num[32];
            size_t len = json_text_decimal(lua_tonumber(L, idx), num);
            if (len > 0) {
                put(L, b, num, len);
                return;
            }
        }
        encode_scalar(L, b, idx);
        return;
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        put_string(L, b, s, n);
        return;
    }
    case LUA_TTABLE:
        break;
    default:
        if (lua_rawequal(L, idx, UV_NULL)) {
            put(L, b, "null", 4);
            return;
        }
        size_t n;
        const char *s = luaL_tolstring(L, idx, &n);
        put_string(L, b, s, n);
        lua_pop(L, 1);
        return;
    }
    /* The table's metatable decides, looked at once: raw text, an
     * array, an object with ordered keys; else its shape does. */
    if (lua_getmetatable(L, idx)) {
        if (lua_rawequal(L, -1, UV_RAW)) {
            lua_pop(L, 1);
            lua_geti(L, idx, 1);
            size_t n = 0;
            const char *s =
                lua_isstring(L, -1) ? lua_tolstring(L, -1, &n) : NULL;
            if (!s) {
                luaL_error(L, "json: a raw value holds no text");
            }
            put_raw(L, b, s, n);
            lua_pop(L, 1);
            return;
        }
        if (lua_rawequal(L, -1, UV_ARRAY)) {
            lua_pop(L, 1);
            encode_array(L, b, idx, depth);
            return;
        }
        int t = lua_getfield(L, -1, "__order");
        if (t != LUA_TNIL) {
            /* (an __order that is no list: an object in sorted order) */
            int order = t == LUA_TTABLE ? lua_gettop(L) : 0;
            bool walked = false;
            if (order) {
                bool indexed = lua_getfield(L, -2, "__index") != LUA_TNIL;
                lua_pop(L, 1);
                walked = !indexed && encode_object_walk(L, b, idx, depth, order);
            }
            if (!walked) {
                encode_object(L, b, idx, depth, order);
            }
            lua_pop(L, 2);
            return;
        }
        lua_pop(L, 2);
    }
    if (is_sequence(L, idx)) {
        encode_array(L, b, idx, depth);
    } else {
        encode_object(L, b, idx, depth, 0);
    }
}

static struct buf *new_buf(lua_State *L)
{
    struct buf *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, BUF_MT);
    return b;
}

/* [-0, +1] Pushes the text of b, repaired to valid UTF-8, and frees b. */
static int push_text(lua_State *L, struct buf *b)
{
    if (utf8_valid(b->p, b->len)) {
        lua_pushlstring(L, b->p ? b->p : "", b->len);
    } else {
        size_t m;
        char *fixed = utf8_sanitize(b->p, b->len, &m);
        if (!fixed) {
            return luaL_error(L, "out of memory");
        }
        lua_pushlstring(L, fixed, m);
        free(fixed);
    }
    free(b->p);
    b->p = NULL;
    return 1;
}

/* [-0, +0|1] A raw value whose text is a valid UTF-8 string: pushes that
 * string (its encoding, as it is: no buffer) and returns true. */
static bool push_raw_text(lua_State *L, int idx)
{
    if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) {
        return false;
    }
    bool raw = lua_rawequal(L, -1, UV_RAW);
    lua_pop(L, 1);
    if (!raw) {
        return false;
    }
    if (lua_geti(L, idx, 1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (utf8_valid(s, n)) {
            return true;
        }
    }
    lua_pop(L, 1);
    return false;
}

static int l_encode(lua_State *L)
{
    lua_settop(L, 1);
    /* (an echoed id, in every reply) */
    if (push_raw_text(L, 1)) {
        return 1;
    }
    struct buf *b = new_buf(L);
    encode(L, b, 1, 0);
    return push_text(L, b);
}

/* encode_text(value) -> the JSON string whose content is encode(value)
 * (the text of a tool call's reply is its result encoded): the same bytes
 * as encode(encode(value)), in one call, without the intermediate Lua
 * string or a second escape pass through put's checks. */
static int l_encode_text(lua_State *L)
{
    lua_settop(L, 1);
    struct buf *b = new_buf(L);
    encode(L, b, 1, 0);
    size_t len = b->len;
    if (!utf8_valid(b->p ? b->p : "", len)) {
        b->aux = utf8_sanitize(b->p, len, &len);
        if (!b->aux) {
            return luaL_error(L, "out of memory");
        }
        b->len = 0; /* (the text is aux: b holds only its string) */
    }
    /* The string goes after the text in the same buffer (one userdata):
     * room for the worst case first (put_escaped then makes none), as
     * b->p may move. */
    size_t from = b->len;
    if (b->cap - b->len < len * ESCAPE_MAX + ESCAPE_MAX + 2) {
        grow(L, b, len * ESCAPE_MAX + ESCAPE_MAX + 2);
    }
    putc1(L, b, '"');
    put_escaped(L, b, b->aux ? b->aux : b->p, len);
    putc1(L, b, '"');
    /* (escaping valid UTF-8 leaves it valid: no check of the result) */
    lua_pushlstring(L, b->p + from, b->len - from);
    free(b->p);
    free(b->aux);
    b->p = b->aux = NULL;
    return 1;
}

/* fields(t, keys) -> text: the object of t's members named in the array
 * keys, in that order, nil ones left out; any other member of t is not
 * written. A record of fixed fields (a trace span, written twice per
 * dispatch) is one call with no scan of the table and no sort. */
static int l_fields(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    struct buf *b = new_buf(L);
    luaL_checkstack(L, 8, "json: out of stack");
    putc1(L, b, '{');
    bool comma = false;
    for (lua_Integer i = 1; lua_rawgeti(L, 2, i) == LUA_TSTRING; i++) {
        lua_pushvalue(L, -1);
        if (lua_rawget(L, 1) == LUA_TNIL) {
            lua_pop(L, 2);
            continue;
        }
        if (comma) {
            putc1(L, b, ',');
        }
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        put_string(L, b, k, kl);
        putc1(L, b, ':');
        encode(L, b, lua_gettop(L), 1);
        lua_pop(L, 2);
        comma = true;
    }
    lua_pop(L, 1); /* what ended the list */
    putc1(L, b, '}');
    return push_text(L, b);
}

/* core.json.encoder(raw_mt, scalar, null) -> encode, fields, encode_text: raw_mt marks raw
 * values, scalar(number) -> text formats numbers, null is the value that
 * encodes as null besides nil. */
int bind_json_encoder(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 3);
    if (luaL_newmetatable(L, BUF_MT)) {
        lua_pushcfunction(L, buf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    for (int c = 0; c < 256; c++) {
        escape_of[c] = json_text_escape((unsigned char)c);
        escape_len[c] = escape_of[c] ? (unsigned char)strlen(escape_of[c]) : 0;
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_remove(L, -2);
    luaL_checktype(L, -1, LUA_TFUNCTION);
    luaL_getmetatable(L, AD_ARRAY_MT);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_pushvalue(L, -5);
    lua_pushvalue(L, -5);
    lua_pushcclosure(L, l_fields, 5);
    lua_insert(L, -6); /* fields raw scalar null sort array */
    for (int i = 0; i < 5; i++) { /* (the five upvalues again) */
        lua_pushvalue(L, -5);
    }
    lua_pushcclosure(L, l_encode_text, 5);
    lua_insert(L, -6); /* fields encode_text raw scalar null sort array */
    lua_pushcclosure(L, l_encode, 5);
    lua_insert(L, -3); /* encode fields encode_text */
    return 3;
}
