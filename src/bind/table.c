/* Lua face of table helpers.
 *
 *   core.table.copy(t) -> a shallow copy of t (no metatable)
 *   core.table.new(nrec) -> an empty table with room for nrec fields
 *       (what a constructor of nrec fields makes, without writing the
 *       absent ones: a nil in a constructor costs as much as a field)
 *
 * A dispatch copies its argument tables (about twenty fields) on its way
 * in: built in Lua, the copy grew its hash part five times, reinserting
 * every field each time; here it is made at its final size at once. */
#include "bind/bind.h"

static int l_copy(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer narr = (lua_Integer)lua_rawlen(L, 1);
    int nrec = 0;
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pop(L, 1);
        nrec++;
    }
    int arr = narr > 0 && narr <= nrec ? (int)narr : 0;
    lua_createtable(L, arr, nrec - arr);
    lua_pushnil(L);
    while (lua_next(L, 1) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 2);
    }
    return 1;
}

static int l_new(lua_State *L)
{
    lua_Integer nrec = luaL_checkinteger(L, 1);
    luaL_argcheck(L, nrec >= 0 && nrec <= 1024, 1, "between 0 and 1024");
    lua_createtable(L, 0, (int)nrec);
    return 1;
}

void bind_table_register(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"copy", l_copy},
        {"new", l_new},
        {NULL, NULL},
    };
    bind_subtable(L, "table", fns);
}
