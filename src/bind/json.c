/* Lua face of the raw JSON member scanner: core.json.
 *
 *   core.json.raw_member(line, key) -> the raw text of a top-level
 *       member's value | nil
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

/* core.json.raw_member(line, key) -> the raw text of a top-level member's value.
 * JSON-RPC ids must be echoed digit for digit; a decoded double would turn
 * 9007199254740993 into ...992. This only locates a span in text that
 * cjson has already accepted; it parses nothing. */
static int l_raw_member(lua_State *L)
{
    size_t n, kl;
    const char *s = luaL_checklstring(L, 1, &n);
    const char *key = luaL_checklstring(L, 2, &kl);
    int depth = 0;
    bool expect_key = false;
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
                    }
                    while (i < n && s[i] != ',' && s[i] != '}' && s[i] != ' ' &&
                           s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
                        i++;
                    }
                    lua_pushlstring(L, s + start, i - start);
                    return 1;
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
            depth--;
        } else if (c == ',' && depth == 1) {
            expect_key = true;
        }
        i++;
    }
    lua_pushnil(L);
    return 1;
}

void bind_json_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"raw_member", l_raw_member},
        {NULL, NULL},
    };
    bind_subtable(L, "json", fns);
}
