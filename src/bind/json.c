/* Lua face of the raw JSON member scanner: core.json.
 *
 *   core.json.raw_member(line, key) -> the raw text of a top-level
 *       member's value (a scalar, or a whole object or array; the last
 *       one when the key is there twice, as cjson reads it) | nil
 *   core.json.may_overflow(text) -> whether text holds an exponent of
 *       three digits or a run of 309 digits (a number a double cannot hold)
 *   core.json.mark_empty_arrays(text) -> text with each empty array
 *       marked, or nil (ad.infra.json.decode_shaped)
 *   core.json.encoder(raw_mt, scalar, null) -> the encoder of ad.infra.json
 *       and its fixed-fields variant
 *       (json_encode.c)
 *
 * Decoding is lua-cjson's; this only finds a span in text that cjson has
 * already accepted. */
#include <stdbool.h>
#include <string.h>

#include "bind/bind.h"

/* Skips a JSON string starting at s[i] == '"'; returns the index after it. */
static size_t skip_string(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\') {
            i++;
        } else if (s[i] == '"') {
            return i + 1;
        }
    }
    return n;
}

/* Skips an object or array starting at s[i] ('{' or '['); returns the
 * index after its closing bracket (brackets inside strings are text). */
static size_t skip_container(const char *s, size_t n, size_t i)
{
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && --depth == 0) {
            return i + 1;
        }
        i++;
    }
    return n;
}

/* core.json.raw_member(line, key) -> the raw text of a top-level member's value.
 * JSON-RPC ids must be echoed digit for digit; a decoded double would turn
 * 9007199254740993 into ...992. This only locates a span in text that
 * cjson has already accepted; it parses nothing. When the key is there
 * twice, the last member is the one: cjson keeps the last, and the raw
 * text must be that of the value the request was read with. */
static int l_raw_member(lua_State *L)
{
    size_t n, kl;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *key = luaL_checklstring(L, 2, &kl);
    int depth = 0;
    bool expect_key = false, found = false;
    size_t from = 0, to = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '"') {
            size_t end = skip_string(s, n, i);
            if (depth == 1 && expect_key) {
                bool match = end - i - 2 == kl && memcmp(s + i + 1, key, kl) == 0;
                i = end;
                while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ':' ||
                                 s[i] == '\n' || s[i] == '\r')) {
                    i++;
                }
                expect_key = false;
                if (match) {
                    size_t start = i;
                    if (i < n && s[i] == '"') {
                        i = skip_string(s, n, i); /* commas inside are text */
                    } else if (i < n && (s[i] == '{' || s[i] == '[')) {
                        /* A whole object or array, byte for byte (a decoded
                         * one loses [] versus {} and long numbers). */
                        i = skip_container(s, n, i);
                    } else {
                        while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ' ' &&
                               s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
                            i++;
                        }
                    }
                    found = true;
                    from = start;
                    to = i;
                }
                continue;
            }
            i = end;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
            expect_key = (c == '{' && depth == 1);
        } else if (c == '}' || c == ']') {
            if (--depth == 0) {
                break; /* the end of the value cjson read: nothing after counts */
            }
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        }
        i++;
    }
    if (found) {
        lua_pushlstring(L, s + from, to - from);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* core.json.may_overflow(text) -> bool: can text (JSON that cjson
 * accepted) hold a number that overflows a double? Outside its strings:
 * an 'e' or 'E', an optional sign, three digits; or 309 digits in a row
 * (the Lua patterns "[eE][+-]?%d%d%d" and 309 "%d"). False positives only
 * cost the caller a walk of the decoded value; strings are skipped, since
 * no number is in one: an id like "4e123..." (a session id, often) is
 * not one. Every request and every line of a child's output is asked:
 * Lua's matcher tried the class pattern at every byte, a tenth of a
 * dispatch. */
static int l_may_overflow(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            i = skip_string(s, n, i) - 1; /* (the loop steps past it) */
            run = 0;
            continue;
        }
        if (is_digit(c)) {
            if (++run >= 309) {
                lua_pushboolean(L, 1);
                return 1;
            }
            continue;
        }
        run = 0;
        if (c == 'e' || c == 'E') {
            size_t j = i + 1;
            if (j < n && (s[j] == '+' || s[j] == '-')) {
                j++;
            }
            if (j + 2 < n && is_digit(s[j]) && is_digit(s[j + 1]) &&
                is_digit(s[j + 2])) {
                lua_pushboolean(L, 1);
                return 1;
            }
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/* The array that stands for an empty one in core.json.mark_empty_arrays'
 * text: a string no JSON text has unescaped (a NUL) inside an array. */
#define EMPTY_MARK "[\"\\u0000ad[]\"]"

/* core.json.mark_empty_arrays(text) -> text with each empty array outside
 * its strings ("[]", blanks allowed inside) written as EMPTY_MARK, or nil
 * when it has none. lua-cjson decodes [] and {} alike (an empty table);
 * ad.infra.json.decode_shaped decodes this text and turns each mark back
 * into an array, so an answer's [] stays [] (its schema may say so). */
static int l_mark_empty_arrays(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    bool any = false;
    size_t copied = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') {
            i = skip_string(s, n, i) - 1; /* (the loop steps past it) */
            continue;
        }
        if (s[i] != '[') {
            continue;
        }
        size_t j = i + 1;
        while (j < n && (s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) {
            j++;
        }
        if (j < n && s[j] == ']') {
            if (!any) {
                luaL_buffinit(L, &b);
                any = true;
            }
            luaL_addlstring(&b, s + copied, i - copied);
            luaL_addstring(&b, EMPTY_MARK);
            copied = j + 1;
            i = j;
        }
    }
    if (!any) {
        lua_pushnil(L);
        return 1;
    }
    luaL_addlstring(&b, s + copied, n - copied);
    luaL_pushresult(&b);
    return 1;
}

void bind_json_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"raw_member", l_raw_member},
        {"may_overflow", l_may_overflow},
        {"mark_empty_arrays", l_mark_empty_arrays},
        {"encoder", bind_json_encoder},
        {NULL, NULL},
    };
    bind_subtable(L, "json", fns);
}
