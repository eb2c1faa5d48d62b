/* The Lua sandbox shared by the config loader and the plugin host (see luabox.h). */
#include "luabox.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

void *luabox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    luabox_t *b = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        b->used -= old;
        return NULL;
    }
    if (nsize > old && b->used - old + nsize > b->cap + b->slack) {
        b->refused = true;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return nsize <= old ? ptr : NULL; /* Lua assumes shrinking never fails */
    b->used = b->used - old + nsize;
    return p;
}

luabox_t *luabox_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

void luabox_hook(lua_State *L, lua_Debug *ar)
{
    luabox_t *b = luabox_of(L);
    if (!b->expired) {
        b->instructions += LUABOX_HOOK_EVERY;
        if ((!b->max_instructions || b->instructions < b->max_instructions) &&
            time_mono_ns() < b->deadline)
            return;
        b->expired = true;
        lua_sethook(L, luabox_hook, LUA_MASKCOUNT, 1);
    }
    b->raise(L);
}

/* load(chunk [, name [, mode [, env]]]) with the mode forced to "t". */
static int l_load(lua_State *L)
{
    int n = lua_gettop(L);
    if (n < 2)
        lua_settop(L, 2);
    int base = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (n >= 4) /* an explicit env, even nil */
        lua_pushvalue(L, 4);
    lua_call(L, n >= 4 ? 4 : 3, LUA_MULTRET);
    return lua_gettop(L) - base;
}

/* setmetatable() refusing __gc, which Lua runs with hooks off where no budget can stop it (an
 * object is only finalized if __gc is there when the metatable is set). */
static int l_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "%s", lua_tostring(L, lua_upvalueindex(2)));
        lua_pop(L, 1);
    }
    lua_settop(L, 2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, 2, 1);
    return 1;
}

void luabox_open_libs(lua_State *L, const char *gc_error, bool utf8_os)
{
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
    lua_pop(L, 3); /* string, table, math; _G stays */
    if (utf8_os) {
        luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
        luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
        lua_createtable(L, 0, 3);
        const char *const osf[] = {"time", "clock", "date"};
        for (int i = 0; i < 3; i++) {
            lua_getfield(L, -2, osf[i]);
            lua_setfield(L, -2, osf[i]);
        }
        lua_setfield(L, -4, "os");
        lua_pop(L, 2); /* the whole os, utf8 */
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushnil(L);
        lua_setfield(L, -2, LUA_OSLIBNAME);
        lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_setfield(L, -2, "dofile");
    lua_pushnil(L);
    lua_setfield(L, -2, "loadfile");
    lua_getfield(L, -1, "load");
    lua_pushcclosure(L, l_load, 1);
    lua_setfield(L, -2, "load");
    lua_getfield(L, -1, "setmetatable");
    lua_pushstring(L, gc_error);
    lua_pushcclosure(L, l_setmetatable, 2);
    lua_setfield(L, -2, "setmetatable");
    lua_getfield(L, -1, LUA_STRLIBNAME);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    lua_pop(L, 2);
}

/* print() to the log: stdout may be carrying output (config_print). */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_kv(LOG_INFO, lua_tostring(L, lua_upvalueindex(1)), lua_tostring(L, lua_upvalueindex(2)),
           "%s%s", lua_tostring(L, lua_upvalueindex(3)), lua_tostring(L, -1));
    return 0;
}

void luabox_push_print(lua_State *L, const char *key, const char *value, const char *prefix)
{
    lua_pushstring(L, key);
    lua_pushstring(L, value);
    lua_pushstring(L, prefix);
    lua_pushcclosure(L, l_print, 3);
}
