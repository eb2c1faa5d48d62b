/* The Lua sandbox shared by the config loader and the plugin host: an allocator with a
 * memory cap, a count hook enforcing a time (and instruction) budget, and the sandbox
 * libraries. A state's allocator ud is its luabox_t, the first member of the owner's state. */
#ifndef FAAS_LUABOX_H
#define FAAS_LUABOX_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUABOX_HOOK_EVERY 1000 /* the count to lua_sethook(L, luabox_hook, LUA_MASKCOUNT, .) */

typedef struct {
    size_t used, cap, slack; /* bytes; growth past cap + slack is refused, and refused set */
    bool refused, expired;   /* expired: a budget ran out, the hook raises on every instruction */
    uint64_t deadline;       /* time_mono_ns() */
    long long instructions, max_instructions; /* counted by the hook; max 0: no limit */
    int (*raise)(lua_State *L);               /* raises the budget error (from the hook) */
} luabox_t;

/* lua_Alloc with ud = the luabox_t; luabox_of() gets it back from the state. */
void *luabox_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
luabox_t *luabox_of(lua_State *L);

/* Past the deadline or max_instructions, calls raise() on this and every later
 * instruction, so a pcall in Lua cannot swallow the error. */
void luabox_hook(lua_State *L, lua_Debug *ar);

/* Opens base, string, table, math (and with utf8_os, utf8 and os = {time, clock, date})
 * into the globals, without dofile, loadfile or string.dump; load is forced to text mode and
 * setmetatable raises gc_error for a metatable with __gc. Leaves the stack as it was. */
void luabox_open_libs(lua_State *L, const char *gc_error, bool utf8_os);

/* Pushes a print() that logs its arguments, tab-separated, with
 * log_kv(LOG_INFO, key, value, "%s%s", prefix, text) instead of writing to stdout. */
void luabox_push_print(lua_State *L, const char *key, const char *value, const char *prefix);

#endif
