/* The Lua plugin host (see plugin.h and DESIGN.md "Lua plugins").
 *
 * Generations: a generation is an immutable snapshot of what to load (plugin sources read
 * from disk, their conf, the prelude, the budgets), validated once in a scratch state. The
 * host points at the current generation; reload builds a new one aside and swaps the pointer
 * only when every plugin loaded.
 *
 * Thread states: each thread gets its own lua_State (pthread key) built from the current
 * generation on first use, rebuilt when the generation changes or after a budget error, and
 * closed by its own thread (or by plugin_host_free for threads still alive then).
 *
 * Sandbox (luabox.c): base/string/table/math/utf8 only, os = {time, clock, date}; each plugin
 * runs in its own _ENV whose __index is its own API table (copies of the libraries plus
 * `faas`), so rawset/setmetatable tricks stay inside the plugin that plays them. Shared
 * metatables (the string metatable, the JSON array marker) are protected with __metatable.
 * The real globals table is never handed to plugin code.
 *
 * Every call into Lua goes through guarded(): traceback handler, budget armed, lua_pcall of a
 * C function (so marshalling happens under protection too), error copied out, stack checked. */
#include "plugin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "luabox.h"
#include "util.h"

enum { HOOK_VALIDATE_FUNCTION, HOOK_VALIDATE_EXECUTION, HOOK_QUOTA, HOOK_POSTPROCESS, HOOK_INIT,
       HOOK_N };
static const char *const hook_names[HOOK_N] = {"validate_function", "validate_execution",
                                               "quota", "postprocess", "init"};

#define SOURCE_MAX (1024 * 1024)   /* a plugin or module file */
#define MSGH_SLACK (256 * 1024)    /* memory the traceback handler may use past the cap */
#define DEFAULT_BUDGET_MS 50
#define DEFAULT_MEMORY (16 * 1024 * 1024)
#define MAX_METRICS 256
#define JSON_MAX_DEPTH 1000 /* cJSON's own parse limit */

typedef struct {
    char name[64];
    char path[1100];
    char *source;
    size_t source_len;
    char *conf_json;
    bool fail_open;
    /* filled by validation */
    int64_t priority;
    char version[32];
    unsigned hooks; /* bit per HOOK_* */
} pdef_t;

typedef struct {
    int refs; /* atomic */
    uint64_t id;
    int count;
    pdef_t defs[CONFIG_MAX_PLUGINS]; /* sorted: priority desc, then name */
    char lua_dir[512];
    char prelude_path[1100];
    char *prelude;
    size_t prelude_len;
    int64_t budget_ms;
    int64_t memory_limit;
    int hook_count[HOOK_N];
} gen_t;

typedef struct tstate {
    luabox_t box; /* first: the allocator's ud is also the tstate_t */
    plugin_host_t *h;
    gen_t *gen; /* holds a reference */
    lua_State *L;
    bool broken;
    int64_t budget_ms;
    int prelude_ref, array_ref;
    int refs[CONFIG_MAX_PLUGINS]; /* plugin tables in the registry; LUA_NOREF = failed */
    char trace[4096];
    struct tstate *next, *prev;
    const plugin_ctx_t *cur_ctx; /* the ctx of the hook call under way, NULL between calls */
    lua_Integer ctx_serial;      /* which call: a ctx table kept past its call sees nothing */
} tstate_t;

typedef struct {
    char plugin[64];
    int hook;
    uint64_t ns, calls, errors;
} metric_t;

struct plugin_host {
    pthread_mutex_t lock;
    gen_t *gen;
    uint64_t gen_id; /* atomic copy of gen->id: the cheap "did it change" check */
    pthread_key_t key;
    store_t *store;
    tstate_t *states;
    metric_t metrics[MAX_METRICS];
    int nmetrics;
};

void plugin_ctx_init(plugin_ctx_t *c)
{
    memset(c, 0, sizeof *c);
    c->function_count = -1;
    c->active_executions = -1;
}

/* ---------------------------------------------------------------- generations */

static void gen_ref(gen_t *g)
{
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_ACQ_REL);
}

static void gen_unref(gen_t *g)
{
    if (!g || __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < g->count; i++) {
        free(g->defs[i].source);
        free(g->defs[i].conf_json);
    }
    free(g->prelude);
    free(g);
}

/* Reads a whole file of at most SOURCE_MAX bytes. 0, or -1 with errno-ish text in err. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int rc = -1;
    buf_t b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        goto done;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_append(&b, chunk, n);
        if (b.len > SOURCE_MAX) {
            snprintf(err, errlen, "'%s' is larger than %d bytes", path, SOURCE_MAX);
            goto done;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read '%s'", path);
        goto done;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    *out = buf_steal(&b, len);
    rc = 0;
done:
    if (f)
        fclose(f);
    buf_free(&b);
    return rc;
}

static bool name_valid(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static int def_cmp(const void *a, const void *b)
{
    const pdef_t *x = a, *y = b;
    if (x->priority != y->priority)
        return x->priority > y->priority ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---------------------------------------------------------------- allocator and budgets */

static tstate_t *state_of(lua_State *L)
{
    return (tstate_t *)luabox_of(L);
}

/* Called by the budget hook once the deadline passed. */
static int l_over_budget(lua_State *L)
{
    return luaL_error(L, "time budget of %d ms exceeded", (int)state_of(L)->budget_ms);
}

static int l_panic(lua_State *L)
{
    const char *m = lua_tostring(L, -1);
    log_error("unprotected lua error in plugin host: %s", m ? m : "?");
    abort();
    return 0;
}

/* Message handler: keeps the message, records a traceback in ts->trace. */
static int l_msgh(lua_State *L)
{
    tstate_t *ts = state_of(L);
    ts->box.slack = MSGH_SLACK;
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    else
        lua_pushvalue(L, 1);
    luaL_traceback(L, L, lua_tostring(L, -1), 1);
    str_copy(ts->trace, sizeof ts->trace, lua_tostring(L, -1));
    lua_pop(L, 1);
    return 1;
}

/* The one way into Lua: runs fn(ud) protected, under the budgets. Returns a LUA_* status;
 * on error the message is in err and a traceback in ts->trace. Marks the state broken when
 * a budget ran out (the state may be unusable; the caller rebuilds it). */
static int guarded(tstate_t *ts, lua_CFunction fn, void *ud, char *err, size_t errlen)
{
    lua_State *L = ts->L;
    int top = lua_gettop(L);
    ts->trace[0] = '\0';
    if (!lua_checkstack(L, 4)) {
        snprintf(err, errlen, "lua stack exhausted");
        ts->broken = true;
        return LUA_ERRMEM;
    }
    lua_pushcfunction(L, l_msgh);
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, ud);
    ts->box.expired = false;
    ts->box.refused = false;
    ts->box.slack = 0;
    ts->box.deadline = time_mono_ns() + (uint64_t)ts->budget_ms * 1000000u;
    lua_sethook(L, luabox_hook, LUA_MASKCOUNT, LUABOX_HOOK_EVERY);
    int rc = lua_pcall(L, 1, 0, top + 1);
    lua_sethook(L, NULL, 0, 0);
    ts->box.slack = 0;
    if (rc != LUA_OK) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (ts->box.refused && (rc == LUA_ERRMEM || rc == LUA_ERRERR || !m ||
                                strstr(m, "not enough memory")))
            snprintf(err, errlen, "memory limit of %zu bytes exceeded", ts->box.cap);
        else if (ts->box.expired)
            snprintf(err, errlen, "time budget of %d ms exceeded", (int)ts->budget_ms);
        else
            snprintf(err, errlen, "%s", m ? m : "(error object is not a string)");
        if (!ts->trace[0])
            str_copy(ts->trace, sizeof ts->trace, err);
        if (ts->box.expired || ts->box.refused || rc == LUA_ERRMEM || rc == LUA_ERRERR)
            ts->broken = true;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* the handler */
    if (lua_gettop(L) != top) {
        log_error("plugin host: lua stack unbalanced (%d, expected %d)", lua_gettop(L), top);
        lua_settop(L, top);
        ts->broken = true;
    }
    return rc;
}

/* ---------------------------------------------------------------- JSON <-> Lua */

/* A box owns a C allocation (cJSON tree or malloc'd bytes) while Lua code that may raise
 * runs; __gc frees it if we never get to release it ourselves. */
typedef struct {
    void *p;
    bool json;
} box_t;

static int l_box_gc(lua_State *L)
{
    box_t *b = luaL_checkudata(L, 1, "faas.box");
    if (b->json)
        cJSON_Delete(b->p);
    else
        free(b->p);
    b->p = NULL;
    return 0;
}

static box_t *box_push(lua_State *L, void *p, bool json)
{
    box_t *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->p = NULL;
    b->json = json;
    luaL_setmetatable(L, "faas.box");
    b->p = p;
    return b;
}

static void box_release(lua_State *L, int idx)
{
    box_t *b = lua_touserdata(L, idx);
    if (b->json)
        cJSON_Delete(b->p);
    else
        free(b->p);
    b->p = NULL;
    lua_remove(L, idx);
}

/* Pushes a cJSON value as Lua: objects as tables, arrays as sequences marked with the array
 * metatable, null as faas.json.null (a NULL light userdata). Raises on memory errors. */
static void json_to_lua(lua_State *L, const cJSON *j, int array_ref)
{
    luaL_checkstack(L, 4, "json nesting too deep");
    if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) {
            json_to_lua(L, c, array_ref);
            lua_setfield(L, -2, c->string ? c->string : "");
        }
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        lua_Integer i = 1;
        for (const cJSON *c = j->child; c; c = c->next) {
            json_to_lua(L, c, array_ref);
            lua_rawseti(L, -2, i++);
        }
        lua_rawgeti(L, LUA_REGISTRYINDEX, array_ref);
        lua_setmetatable(L, -2);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring ? j->valuestring : "");
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9.0e18)
            lua_pushinteger(L, (lua_Integer)d);
        else
            lua_pushnumber(L, d);
    } else if (cJSON_IsBool(j)) {
        lua_pushboolean(L, cJSON_IsTrue(j));
    } else {
        lua_pushlightuserdata(L, NULL);
    }
}

static cJSON *oom(char *err, size_t errlen)
{
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* Converts the Lua value at idx to a fresh cJSON (caller deletes). Never raises: NULL with
 * the reason in err. Tables with the array metatable or keys exactly 1..n are arrays. */
static cJSON *lua_to_json(lua_State *L, int idx, int depth, int array_ref, char *err,
                          size_t errlen)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return cJSON_CreateNull() ?: oom(err, errlen);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return cJSON_CreateNull() ?: oom(err, errlen);
        break;
    case LUA_TBOOLEAN:
        return cJSON_CreateBool(lua_toboolean(L, idx)) ?: oom(err, errlen);
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return cJSON_CreateNumber((double)lua_tointeger(L, idx)) ?: oom(err, errlen);
        if (!isfinite(lua_tonumber(L, idx))) {
            snprintf(err, errlen, "cannot encode inf or nan");
            return NULL;
        }
        return cJSON_CreateNumber(lua_tonumber(L, idx)) ?: oom(err, errlen);
    case LUA_TSTRING:
        return cJSON_CreateString(lua_tostring(L, idx)) ?: oom(err, errlen);
    case LUA_TTABLE: {
        if (depth > JSON_MAX_DEPTH) {
            snprintf(err, errlen, "table nesting too deep (or a cycle)");
            return NULL;
        }
        if (!lua_checkstack(L, 4)) {
            snprintf(err, errlen, "lua stack exhausted");
            return NULL;
        }
        bool array = false;
        if (lua_getmetatable(L, idx)) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, array_ref);
            array = lua_rawequal(L, -1, -2);
            lua_pop(L, 2);
        }
        lua_Unsigned n = lua_rawlen(L, idx);
        if (!array && n > 0) {
            lua_Unsigned keys = 0;
            bool seq = true;
            lua_pushnil(L);
            while (lua_next(L, idx)) {
                keys++;
                if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 ||
                    (lua_Unsigned)lua_tointeger(L, -2) > n)
                    seq = false;
                lua_pop(L, 1);
            }
            array = seq && keys == n;
        }
        cJSON *out = array ? cJSON_CreateArray() : cJSON_CreateObject();
        if (!out)
            return oom(err, errlen);
        if (array) {
            for (lua_Unsigned i = 1; i <= n; i++) {
                lua_rawgeti(L, idx, (lua_Integer)i);
                cJSON *c = lua_to_json(L, -1, depth + 1, array_ref, err, errlen);
                lua_pop(L, 1);
                if (!c || !cJSON_AddItemToArray(out, c)) {
                    cJSON_Delete(c);
                    cJSON_Delete(out);
                    return c ? oom(err, errlen) : NULL;
                }
            }
            return out;
        }
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            char key[64];
            const char *k = key;
            if (lua_type(L, -2) == LUA_TSTRING)
                k = lua_tostring(L, -2);
            else if (lua_isinteger(L, -2))
                snprintf(key, sizeof key, "%lld", (long long)lua_tointeger(L, -2));
            else if (lua_type(L, -2) == LUA_TNUMBER)
                snprintf(key, sizeof key, "%.17g", (double)lua_tonumber(L, -2));
            else {
                snprintf(err, errlen, "cannot encode a %s key", luaL_typename(L, -2));
                lua_pop(L, 2);
                cJSON_Delete(out);
                return NULL;
            }
            cJSON *c = lua_to_json(L, -1, depth + 1, array_ref, err, errlen);
            if (!c || !cJSON_AddItemToObject(out, k, c)) {
                lua_pop(L, 2);
                cJSON_Delete(c);
                cJSON_Delete(out);
                return c ? oom(err, errlen) : NULL;
            }
            lua_pop(L, 1);
        }
        return out;
    }
    default:
        break;
    }
    snprintf(err, errlen, "cannot encode a %s value", luaL_typename(L, idx));
    return NULL;
}

/* ---------------------------------------------------------------- the sandbox API */

static int l_json_encode(lua_State *L)
{
    tstate_t *ts = state_of(L);
    char err[128];
    luaL_checkany(L, 1);
    cJSON *j = lua_to_json(L, 1, 0, ts->array_ref, err, sizeof err);
    if (!j)
        return luaL_error(L, "json.encode: %s", err);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s)
        return luaL_error(L, "json.encode: out of memory");
    box_push(L, s, false);
    lua_pushstring(L, s);
    box_release(L, -2);
    return 1;
}

static int l_json_decode(lua_State *L)
{
    tstate_t *ts = state_of(L);
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    cJSON *j = cJSON_ParseWithLength(s, n);
    if (!j) {
        lua_pushnil(L);
        lua_pushliteral(L, "invalid JSON");
        return 2;
    }
    box_push(L, j, true);
    json_to_lua(L, j, ts->array_ref);
    box_release(L, -2);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushinteger(L, time_now_ms());
    return 1;
}

static int l_log(lua_State *L)
{
    const char *plugin = lua_tostring(L, lua_upvalueindex(1));
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    int lv = log_level_parse(level);
    luaL_argcheck(L, lv >= 0, 1, "level must be debug, info, warn or error");
    log_kv(lv, "plugin", plugin, "%s", msg);
    return 0;
}

static int l_warn(lua_State *L)
{
    const char *plugin = lua_tostring(L, lua_upvalueindex(1));
    int n = lua_gettop(L);
    luaL_checkstring(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        luaL_checkstring(L, i);
        lua_pushvalue(L, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    log_kv(LOG_WARN, "plugin", plugin, "%s", lua_tostring(L, -1));
    return 0;
}

/* load(chunk [, chunkname [, mode [, env]]]): text only, default env = the plugin's. */
static int l_load(lua_State *L)
{
    size_t len;
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushliteral(L, "load: only strings can be loaded");
        return 2;
    }
    const char *s = lua_tolstring(L, 1, &len);
    if (len > SOURCE_MAX) { /* the parser runs in C, out of reach of the instruction budget */
        lua_pushnil(L);
        lua_pushliteral(L, "load: chunk too large");
        return 2;
    }
    const char *name = luaL_optstring(L, 2, "=(load)");
    const char *mode = luaL_optstring(L, 3, "t");
    if (!strchr(mode, 't')) {
        lua_pushnil(L);
        lua_pushliteral(L, "load: binary chunks are not allowed");
        return 2;
    }
    int rc = luaL_loadbufferx(L, s, len, name, "t");
    if (rc != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    if (!lua_isnone(L, 4))
        lua_pushvalue(L, 4);
    else
        lua_pushvalue(L, lua_upvalueindex(1));
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1);
    return 1;
}

/* require(name): modules under lua_dir only, text mode, the plugin's env, cached per plugin. */
static int l_require(lua_State *L)
{
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    bool ok = n > 0 && n < 128 && name[0] != '.' && name[n - 1] != '.';
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || (c == '.' && name[i + 1] != '.');
    }
    if (!ok)
        return luaL_error(L, "module '%s' not found", name);
    lua_settop(L, 1);
    lua_pushvalue(L, 1);
    if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    char path[1200];
    char rel[130];
    for (size_t i = 0; i <= n; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    snprintf(path, sizeof path, "%s/%s.lua", lua_tostring(L, lua_upvalueindex(3)), rel);
    box_t *b = box_push(L, NULL, false);
    char *src = NULL;
    size_t len = 0;
    char err[256];
    if (read_file(path, &src, &len, err, sizeof err) < 0)
        return luaL_error(L, "module '%s' not found", name);
    b->p = src;
    char chunk[1210];
    snprintf(chunk, sizeof chunk, "@%s", path);
    if (luaL_loadbufferx(L, src, len, chunk, "t") != LUA_OK)
        return lua_error(L);
    box_release(L, -2);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setupvalue(L, -2, 1);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, -2);
    lua_rawset(L, lua_upvalueindex(2));
    return 1;
}

static int l_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is allowed");
    int kb = lua_gc(L, LUA_GCCOUNT), b = lua_gc(L, LUA_GCCOUNTB);
    lua_pushnumber(L, (lua_Number)kb + (lua_Number)b / 1024);
    return 1;
}

/* string.rep that cannot spin in C: empty results return at once, oversized ones fail
 * before allocating. */
static int l_rep(lua_State *L)
{
    tstate_t *ts = state_of(L);
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (l + lsep > ts->box.cap / (lua_Unsigned)n)
        return luaL_error(L, "not enough memory");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    return 1;
}

static int counter_call(lua_State *L, bool incr)
{
    tstate_t *ts = state_of(L);
    const char *plugin = lua_tostring(L, lua_upvalueindex(1));
    const char *key = luaL_checkstring(L, 1);
    lua_Number window = luaL_checknumber(L, 2);
    luaL_argcheck(L, window >= 0.001 && window <= 1e9, 2, "window must be > 0 seconds");
    lua_Integer delta = incr ? luaL_optinteger(L, 3, 1) : 0;
    store_t *s = ts->h->store;
    if (!s || !s->ops || !s->ops->counter_incr)
        return luaL_error(L, "faas.counter: no store configured");
    char full[512];
    if ((size_t)snprintf(full, sizeof full, "p:%s:%s", plugin, key) >= sizeof full)
        return luaL_error(L, "faas.counter: key too long");
    int64_t value = 0, reset_ms = 0;
    int rc = s->ops->counter_incr(s, full, (int64_t)(window * 1000), delta, &value, &reset_ms);
    if (rc != 0)
        return luaL_error(L, "faas.counter: store error %d", rc);
    lua_pushinteger(L, value);
    lua_pushinteger(L, (reset_ms + 999) / 1000);
    return 2;
}

static int l_counter_incr(lua_State *L)
{
    return counter_call(L, true);
}

static int l_counter_get(lua_State *L)
{
    return counter_call(L, false);
}

/* Shallow copy of the table at idx into a fresh table left on the stack. */
static void copy_table(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_newtable(L);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
    }
}

static void set_closure(lua_State *L, const char *field, lua_CFunction f, const char *plugin)
{
    lua_pushstring(L, plugin);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, -2, field);
}

/* Builds the shared part of a state: libraries, protections, the prelude. */
static int l_setup(lua_State *L)
{
    tstate_t *ts = lua_touserdata(L, 1);
    gen_t *g = ts->gen;
    /* the globals, which plugins never see: each env copies from them */
    luabox_open_libs(L, "setmetatable: __gc metamethods are not allowed", true);

    /* string: rep that cannot spin; the metatable is shared by every plugin in this state,
     * so hide it */
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_getfield(L, -1, "rep");
    lua_pushcclosure(L, l_rep, 1);
    lua_setfield(L, -2, "rep");
    lua_pop(L, 1);
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2);

    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "faas.array");
    lua_setfield(L, -2, "__metatable");
    ts->array_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    luaL_newmetatable(L, "faas.box");
    lua_pushcfunction(L, l_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    if (!g->prelude) {
        ts->prelude_ref = LUA_NOREF;
        return 0;
    }
    char chunk[1110];
    snprintf(chunk, sizeof chunk, "@%s", g->prelude_path);
    if (luaL_loadbufferx(L, g->prelude, g->prelude_len, chunk, "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    if (!lua_istable(L, -1))
        return luaL_error(L, "'%s' must return a table", g->prelude_path);
    lua_getglobal(L, LUA_TABLIBNAME);
    lua_getfield(L, -2, "table_move");
    lua_setfield(L, -2, "move");
    lua_pop(L, 1);
    ts->prelude_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

typedef struct {
    tstate_t *ts;
    int idx;
    bool validate;
    const cJSON *conf;
} loadctx_t;

/* Pushes a fresh plugin env (_ENV table -> {__index = its own API table}) and the raw table
 * behind its read-only `faas`. */
static void push_env(lua_State *L, tstate_t *ts, const char *plugin)
{
    static const char *const base[] = {"assert", "error", "getmetatable", "ipairs", "next",
                                       "pairs", "pcall", "rawequal", "rawget", "rawlen",
                                       "rawset", "select", "setmetatable", "tonumber",
                                       "tostring", "type", "xpcall", "_VERSION", NULL};
    static const char *const libs[] = {"string", "table", "math", "utf8", "os", NULL};
    lua_newtable(L); /* env */
    lua_newtable(L); /* api */
    lua_pushglobaltable(L);
    for (int i = 0; base[i]; i++) {
        lua_getfield(L, -1, base[i]);
        lua_setfield(L, -3, base[i]);
    }
    for (int i = 0; libs[i]; i++) {
        lua_getfield(L, -1, libs[i]);
        copy_table(L, -1);
        lua_setfield(L, -4, libs[i]);
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* globals */
    luabox_push_print(L, "plugin", plugin, "");
    lua_setfield(L, -2, "print");
    set_closure(L, "warn", l_warn, plugin);
    lua_pushcfunction(L, l_collectgarbage);
    lua_setfield(L, -2, "collectgarbage");
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_load, 1);
    lua_setfield(L, -2, "load");
    lua_pushvalue(L, -2);
    lua_newtable(L);
    lua_pushstring(L, ts->gen->lua_dir);
    lua_pushcclosure(L, l_require, 3);
    lua_setfield(L, -2, "require");

    lua_newtable(L); /* faas */
    lua_pushstring(L, plugin);
    lua_setfield(L, -2, "plugin");
    set_closure(L, "log", l_log, plugin);
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_json_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_json_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");
    lua_createtable(L, 0, 2);
    set_closure(L, "incr", l_counter_incr, plugin);
    set_closure(L, "get", l_counter_get, plugin);
    lua_setfield(L, -2, "counter");
    /* api.faas = readonly(faas); the raw table stays with the host (for faas.conf) */
    lua_rawgeti(L, LUA_REGISTRYINDEX, ts->prelude_ref);
    lua_getfield(L, -1, "readonly");
    lua_remove(L, -2);
    lua_pushvalue(L, -2);
    lua_pushliteral(L, "faas");
    lua_call(L, 2, 1);
    lua_setfield(L, -3, "faas");
    lua_insert(L, -3); /* faas env api */

    lua_createtable(L, 0, 2); /* env's metatable */
    lua_insert(L, -2);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_insert(L, -2); /* env faas */
}

static bool version_valid(const char *s)
{
    for (int part = 0; part < 3; part++) {
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
        if (part < 2 && *s++ != '.')
            return false;
    }
    return *s == '\0';
}

/* Loads plugin lc->idx: runs its file in a fresh env, checks the table, validates the conf
 * against its schema, sets faas.conf, runs init(conf), keeps the table in the registry. */
static int l_load_plugin(lua_State *L)
{
    loadctx_t *lc = lua_touserdata(L, 1);
    tstate_t *ts = lc->ts;
    pdef_t *d = &ts->gen->defs[lc->idx];
    char chunk[1110];
    snprintf(chunk, sizeof chunk, "@%s", d->path);
    if (luaL_loadbufferx(L, d->source, d->source_len, chunk, "t") != LUA_OK)
        return lua_error(L);
    push_env(L, ts, d->name);
    int faas = lua_gettop(L), env = faas - 1;
    lua_pushvalue(L, env);
    lua_setupvalue(L, -4, 1);
    lua_pushvalue(L, env - 1);
    lua_call(L, 0, 1);
    int t = lua_gettop(L);
    if (!lua_istable(L, t))
        return luaL_error(L, "must return a table, not %s", luaL_typename(L, t));
    if (lua_getfield(L, t, "name") != LUA_TSTRING)
        return luaL_error(L, "field 'name' must be a string");
    if (strcmp(lua_tostring(L, -1), d->name) != 0)
        return luaL_error(L, "field 'name' is '%s' but the file is '%s.lua'",
                          lua_tostring(L, -1), d->name);
    if (lua_getfield(L, t, "version") != LUA_TSTRING || !version_valid(lua_tostring(L, -1)))
        return luaL_error(L, "field 'version' must be a string \"x.y.z\"");
    if (lua_getfield(L, t, "priority") != LUA_TNUMBER || !lua_isinteger(L, -1))
        return luaL_error(L, "field 'priority' must be an integer");
    unsigned hooks = 0;
    static const char *const fields[] = {"validate_function", "validate_execution", "quota",
                                         "postprocess", "init", "destroy"};
    for (int i = 0; i < 6; i++) {
        int ty = lua_getfield(L, t, fields[i]);
        if (ty != LUA_TNIL && ty != LUA_TFUNCTION)
            return luaL_error(L, "field '%s' must be a function", fields[i]);
        if (ty == LUA_TFUNCTION)
            hooks |= 1u << i; /* bit 5 = destroy */
        lua_pop(L, 1);
    }
    if (lc->validate) {
        d->priority = lua_tointeger(L, -1);
        str_copy(d->version, sizeof d->version, lua_tostring(L, -2));
        d->hooks = hooks;
    }
    lua_settop(L, t);

    /* conf: JSON -> table -> schema check (defaults) -> read-only proxy */
    lua_rawgeti(L, LUA_REGISTRYINDEX, ts->prelude_ref);
    int prelude = lua_gettop(L);
    lua_getfield(L, prelude, "check_conf");
    lua_getfield(L, t, "schema");
    json_to_lua(L, lc->conf, ts->array_ref);
    lua_call(L, 2, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, faas, "conf"); /* plugins see it through the read-only faas */
    lua_getfield(L, prelude, "readonly");
    lua_insert(L, -2);
    lua_pushliteral(L, "conf");
    lua_call(L, 2, 1);
    int conf = lua_gettop(L);
    if (hooks & (1u << HOOK_INIT)) {
        lua_getfield(L, t, "init");
        lua_pushvalue(L, conf);
        lua_call(L, 1, 0);
    }
    lua_pushvalue(L, t);
    ts->refs[lc->idx] = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

static int l_destroy_plugin(lua_State *L)
{
    loadctx_t *lc = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, lc->ts->refs[lc->idx]);
    if (lua_getfield(L, -1, "destroy") == LUA_TFUNCTION)
        lua_call(L, 0, 0);
    return 0;
}

/* ---------------------------------------------------------------- thread states */

static void ts_close(tstate_t *ts)
{
    if (ts->L) {
        for (int i = 0; !ts->broken && ts->gen && i < ts->gen->count; i++) {
            if (ts->refs[i] == LUA_NOREF || !(ts->gen->defs[i].hooks & (1u << 5)))
                continue;
            loadctx_t lc = {ts, i, false, NULL};
            char err[512];
            if (guarded(ts, l_destroy_plugin, &lc, err, sizeof err) != LUA_OK)
                log_kv(LOG_WARN, "plugin", ts->gen->defs[i].name, "plugin '%s': destroy: %s",
                       ts->gen->defs[i].name, err);
        }
        lua_close(ts->L);
    }
    ts->L = NULL;
    ts->box.used = 0;
    ts->broken = false;
    gen_unref(ts->gen);
    ts->gen = NULL;
}

/* Builds ts->L from ts->gen. validate: every plugin must load (the first error, naming the
 * plugin, goes to err) and the defs get their metadata. Otherwise a plugin that fails to load
 * is logged and left out (its hooks then count as plugin errors). 0 or -1. */
static int ts_build(tstate_t *ts, bool validate, char *err, size_t errlen)
{
    gen_t *g = ts->gen;
    char msg[1024];
    ts->box.cap = (size_t)g->memory_limit;
    ts->box.raise = l_over_budget;
    ts->budget_ms = g->budget_ms;
    ts->box.used = 0;
    ts->broken = false;
    ts->L = lua_newstate(luabox_alloc, &ts->box);
    if (!ts->L) {
        snprintf(err, errlen, "cannot create a lua state (memory_limit too small?)");
        return -1;
    }
    lua_atpanic(ts->L, l_panic);
    if (guarded(ts, l_setup, ts, msg, sizeof msg) != LUA_OK) {
        snprintf(err, errlen, "cannot set up the plugin sandbox: %s", msg);
        return -1;
    }
    for (int i = 0; i < g->count; i++)
        ts->refs[i] = LUA_NOREF;
    for (int i = 0; i < g->count; i++) {
        pdef_t *d = &g->defs[i];
        cJSON *conf = cJSON_Parse(d->conf_json);
        if (!cJSON_IsObject(conf)) {
            cJSON_Delete(conf);
            snprintf(err, errlen, "plugin '%s': conf must be a JSON object", d->name);
            if (validate)
                return -1;
            log_kv(LOG_ERROR, "plugin", d->name, "%s", err);
            continue;
        }
        loadctx_t lc = {ts, i, validate, conf};
        int rc = guarded(ts, l_load_plugin, &lc, msg, sizeof msg);
        cJSON_Delete(conf);
        if (rc == LUA_OK)
            continue;
        snprintf(err, errlen, "plugin '%s': %s", d->name, msg);
        if (validate || ts->broken)
            return -1;
        log_kv(LOG_ERROR, "plugin", d->name, "%s", err);
    }
    return 0;
}

static void ts_destructor(void *p)
{
    tstate_t *ts = p;
    plugin_host_t *h = ts->h;
    pthread_mutex_lock(&h->lock);
    if (ts->prev)
        ts->prev->next = ts->next;
    else
        h->states = ts->next;
    if (ts->next)
        ts->next->prev = ts->prev;
    pthread_mutex_unlock(&h->lock);
    ts_close(ts);
    free(ts);
}

/* The calling thread's state, current with the host's generation. NULL with err when it
 * cannot be built. */
static tstate_t *ts_get(plugin_host_t *h, char *err, size_t errlen)
{
    tstate_t *ts = pthread_getspecific(h->key);
    if (!ts) {
        ts = xcalloc(1, sizeof *ts);
        ts->h = h;
        pthread_mutex_lock(&h->lock);
        ts->next = h->states;
        if (h->states)
            h->states->prev = ts;
        h->states = ts;
        pthread_mutex_unlock(&h->lock);
        pthread_setspecific(h->key, ts);
    }
    uint64_t cur = __atomic_load_n(&h->gen_id, __ATOMIC_ACQUIRE);
    if (ts->L && ts->gen && ts->gen->id == cur && !ts->broken)
        return ts;
    ts_close(ts);
    pthread_mutex_lock(&h->lock);
    ts->gen = h->gen;
    gen_ref(ts->gen);
    pthread_mutex_unlock(&h->lock);
    if (ts_build(ts, false, err, errlen) < 0) {
        ts->broken = true; /* do not run destroy hooks of a half-built state */
        ts_close(ts);
        return NULL;
    }
    return ts;
}

/* ---------------------------------------------------------------- loading generations */

static gen_t *gen_load(plugin_host_t *h, const config_t *cfg, char *err, size_t errlen)
{
    const config_plugins_t *pc = &cfg->plugins;
    gen_t *g = xcalloc(1, sizeof *g);
    g->refs = 1;
    str_copy(g->lua_dir, sizeof g->lua_dir, pc->lua_dir[0] ? pc->lua_dir : "lua");
    g->budget_ms = pc->time_budget_ms > 0 ? pc->time_budget_ms : DEFAULT_BUDGET_MS;
    g->memory_limit = pc->memory_limit > 0 ? pc->memory_limit : DEFAULT_MEMORY;
    const char *dir = pc->dir[0] ? pc->dir : "plugins";
    char msg[512];
    tstate_t scratch = {0};
    if (pc->count < 0 || pc->count > CONFIG_MAX_PLUGINS) {
        snprintf(err, errlen, "too many plugins (at most %d)", CONFIG_MAX_PLUGINS);
        goto fail;
    }
    for (int i = 0; i < pc->count; i++) {
        const config_plugin_t *cp = &pc->list[i];
        pdef_t *d = &g->defs[i];
        if (!name_valid(cp->name)) {
            snprintf(err, errlen, "plugin '%s': name must be letters, digits, '_' or '-'",
                     cp->name);
            goto fail;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(g->defs[j].name, cp->name) == 0) {
                snprintf(err, errlen, "plugin '%s': enabled twice", cp->name);
                goto fail;
            }
        str_copy(d->name, sizeof d->name, cp->name);
        snprintf(d->path, sizeof d->path, "%s/%s.lua", dir, cp->name);
        d->fail_open = cp->fail_open;
        d->conf_json = xstrdup(cp->conf_json && *cp->conf_json ? cp->conf_json : "{}");
        g->count = i + 1;
        if (read_file(d->path, &d->source, &d->source_len, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "plugin '%s': %s", cp->name, msg);
            goto fail;
        }
    }
    if (g->count > 0) {
        snprintf(g->prelude_path, sizeof g->prelude_path, "%s/prelude.lua", g->lua_dir);
        if (read_file(g->prelude_path, &g->prelude, &g->prelude_len, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "plugin host: %s", msg);
            goto fail;
        }
    }
    scratch.h = h;
    scratch.gen = g;
    gen_ref(g);
    if (ts_build(&scratch, true, err, errlen) < 0) {
        scratch.broken = true;
        ts_close(&scratch);
        goto fail;
    }
    ts_close(&scratch);
    qsort(g->defs, (size_t)g->count, sizeof g->defs[0], def_cmp);
    for (int i = 0; i < g->count; i++)
        for (int k = 0; k < HOOK_N; k++)
            if (g->defs[i].hooks & (1u << k))
                g->hook_count[k]++;
    return g;
fail:
    gen_unref(g);
    return NULL;
}

plugin_host_t *plugin_host_new(const config_t *cfg, store_t *store, char *err, size_t errlen)
{
    plugin_host_t *h = xcalloc(1, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    h->store = store;
    if (pthread_key_create(&h->key, ts_destructor) != 0) {
        snprintf(err, errlen, "plugin host: cannot create a thread key");
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    h->gen = gen_load(h, cfg, err, errlen);
    if (!h->gen) {
        pthread_key_delete(h->key);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    h->gen->id = 1;
    h->gen_id = 1;
    for (int i = 0; i < h->gen->count; i++)
        log_kv(LOG_INFO, "plugin", h->gen->defs[i].name, "plugin '%s' %s loaded (priority %lld)",
               h->gen->defs[i].name, h->gen->defs[i].version,
               (long long)h->gen->defs[i].priority);
    return h;
}

/* Frees every thread's state (call it once the threads stopped using the host). */
void plugin_host_free(plugin_host_t *h)
{
    if (!h)
        return;
    pthread_key_delete(h->key);
    tstate_t *ts = h->states;
    while (ts) {
        tstate_t *next = ts->next;
        ts_close(ts);
        free(ts);
        ts = next;
    }
    gen_unref(h->gen);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int plugin_host_reload(plugin_host_t *h, const config_t *cfg, char *err, size_t errlen)
{
    gen_t *g = gen_load(h, cfg, err, errlen);
    if (!g) {
        log_kv(LOG_ERROR, NULL, NULL, "plugin reload failed, keeping the current plugins: %s",
               err);
        return -1;
    }
    pthread_mutex_lock(&h->lock);
    gen_t *old = h->gen;
    g->id = old->id + 1;
    h->gen = g;
    __atomic_store_n(&h->gen_id, g->id, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->lock);
    gen_unref(old);
    log_info("plugins reloaded: %d enabled", g->count);
    return 0;
}

static int hook_index(const char *hook)
{
    for (int i = 0; i < HOOK_N; i++)
        if (strcmp(hook_names[i], hook) == 0)
            return i;
    return -1;
}

int plugin_host_count(plugin_host_t *h, const char *hook)
{
    int k = hook_index(hook);
    if (k < 0)
        return 0;
    pthread_mutex_lock(&h->lock);
    int n = h->gen->hook_count[k];
    pthread_mutex_unlock(&h->lock);
    return n;
}

/* ---------------------------------------------------------------- hook calls */

typedef struct {
    tstate_t *ts;
    int idx;
    int hook;
    const cJSON *in; /* the function (validate_function) or the result (postprocess) */
    const plugin_ctx_t *ctx;
    int status;
    char message[256];
    int64_t retry_after;
    cJSON *out; /* postprocess: the new result, owned; NULL = unchanged */
} hookcall_t;

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (!v)
        return;
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void push_function(lua_State *L, tstate_t *ts, const store_function_t *f)
{
    lua_createtable(L, 0, 10);
    set_str(L, "id", f->id);
    set_str(L, "owner", f->owner);
    set_str(L, "name", f->name);
    set_str(L, "image", f->image);
    if (f->timeout_ms % 1000 == 0)
        set_int(L, "timeout", f->timeout_ms / 1000);
    else {
        lua_pushnumber(L, (lua_Number)f->timeout_ms / 1000);
        lua_setfield(L, -2, "timeout");
    }
    set_int(L, "memory", f->memory);
    lua_pushnumber(L, (lua_Number)f->nano_cpus / 1e9);
    lua_setfield(L, -2, "cpus");
    lua_pushboolean(L, f->network);
    lua_setfield(L, -2, "network");
    cJSON *env = f->env_json ? cJSON_Parse(f->env_json) : NULL;
    if (cJSON_IsObject(env)) {
        box_push(L, env, true);
        json_to_lua(L, env, ts->array_ref);
        box_release(L, -2);
    } else {
        cJSON_Delete(env);
        lua_newtable(L);
    }
    lua_setfield(L, -2, "env");
}

/* ctx.active_executions, computed when a plugin first reads it (a store query: plugins that
 * do not look do not pay). Only during the hook call that made the ctx table. */
static int l_ctx_index(lua_State *L)
{
    tstate_t *ts = lua_touserdata(L, lua_upvalueindex(1));
    const char *k = lua_tostring(L, 2);
    const plugin_ctx_t *c = ts->cur_ctx;
    if (!k || strcmp(k, "active_executions") != 0 || !c || !c->count_active ||
        lua_tointeger(L, lua_upvalueindex(2)) != ts->ctx_serial)
        return 0;
    int64_t n = c->count_active(c->count_arg);
    if (n < 0)
        return 0;
    lua_pushinteger(L, (lua_Integer)n);
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "active_executions"); /* cached for the rest of the call */
    return 1;
}

/* ctx as a fresh plain table (never pointers into C memory). */
static void push_ctx(lua_State *L, tstate_t *ts, const plugin_ctx_t *c)
{
    lua_createtable(L, 0, 10);
    if (!c)
        return;
    if (c->active_executions < 0 && c->count_active) {
        lua_createtable(L, 0, 1);
        lua_pushlightuserdata(L, ts);
        lua_pushinteger(L, ++ts->ctx_serial);
        lua_pushcclosure(L, l_ctx_index, 2);
        lua_setfield(L, -2, "__index");
        lua_setmetatable(L, -2);
        ts->cur_ctx = c;
    }
    if (c->user_id || c->email) {
        lua_createtable(L, 0, 2);
        set_str(L, "id", c->user_id);
        set_str(L, "email", c->email);
        lua_setfield(L, -2, "user");
    }
    set_str(L, "request_id", c->request_id);
    set_str(L, "execution_id", c->execution_id);
    if (c->function) {
        push_function(L, ts, c->function);
        lua_setfield(L, -2, "function");
    }
    if (c->input) {
        lua_pushlstring(L, c->input, c->input_len);
        lua_setfield(L, -2, "input");
    }
    set_int(L, "input_size", (lua_Integer)(c->input ? c->input_len : 0));
    if (c->function_count >= 0)
        set_int(L, "function_count", c->function_count);
    if (c->active_executions >= 0)
        set_int(L, "active_executions", c->active_executions);
}

static int l_call_hook(lua_State *L)
{
    hookcall_t *c = lua_touserdata(L, 1);
    tstate_t *ts = c->ts;
    const char *hook = hook_names[c->hook];
    lua_rawgeti(L, LUA_REGISTRYINDEX, ts->refs[c->idx]);
    if (lua_getfield(L, -1, hook) != LUA_TFUNCTION)
        return luaL_error(L, "hook '%s' is not a function", hook);
    int base = lua_gettop(L) - 1;
    int nargs = 0;
    switch (c->hook) {
    case HOOK_VALIDATE_FUNCTION:
    case HOOK_POSTPROCESS:
        json_to_lua(L, c->in, ts->array_ref);
        push_ctx(L, ts, c->ctx);
        nargs = 2;
        break;
    case HOOK_VALIDATE_EXECUTION:
        lua_createtable(L, 0, 3);
        if (c->ctx && c->ctx->input) {
            lua_pushlstring(L, c->ctx->input, c->ctx->input_len);
            lua_setfield(L, -2, "input");
        }
        set_int(L, "input_size", c->ctx && c->ctx->input ? (lua_Integer)c->ctx->input_len : 0);
        if (c->ctx && c->ctx->function)
            set_str(L, "function_id", c->ctx->function->id);
        push_ctx(L, ts, c->ctx);
        nargs = 2;
        break;
    default:
        push_ctx(L, ts, c->ctx);
        nargs = 1;
    }
    lua_call(L, nargs, LUA_MULTRET);
    int nres = lua_gettop(L) - base;
    int r = base + 1;
    if (c->hook == HOOK_POSTPROCESS) {
        if (nres == 0 || lua_isnil(L, r))
            return 0;
        if (!lua_istable(L, r))
            return luaL_error(L, "postprocess must return a table or nothing, not %s",
                              luaL_typename(L, r));
        char err[256];
        cJSON *out = lua_to_json(L, r, 0, ts->array_ref, err, sizeof err);
        if (!out)
            return luaL_error(L, "postprocess returned a table that is not JSON: %s", err);
        if (!cJSON_IsObject(out)) {
            cJSON_Delete(out);
            return luaL_error(L, "postprocess must return an object, not an array");
        }
        c->out = out;
        return 0;
    }
    if (nres == 0 || lua_isnil(L, r))
        return 0;
    int isnum = 0;
    lua_Integer status = lua_tointegerx(L, r, &isnum);
    if (lua_type(L, r) != LUA_TNUMBER || !isnum)
        return luaL_error(L, "%s returned a %s as status (want an integer 400..499)", hook,
                          luaL_typename(L, r));
    if (status < 400 || status > 499)
        return luaL_error(L, "%s returned status %d (only 400..499 may reject)", hook,
                          (int)status);
    const char *msg = "request rejected";
    if (nres >= 2 && !lua_isnil(L, r + 1)) {
        if (lua_type(L, r + 1) != LUA_TSTRING)
            return luaL_error(L, "%s returned a %s as message (want a string)", hook,
                              luaL_typename(L, r + 1));
        msg = lua_tostring(L, r + 1);
    }
    lua_Number retry = 0;
    if (nres >= 3 && !lua_isnil(L, r + 2)) {
        if (lua_type(L, r + 2) != LUA_TNUMBER || lua_tonumber(L, r + 2) < 0 ||
            lua_tonumber(L, r + 2) > 1e9)
            return luaL_error(L, "%s returned a bad retry_after (want seconds >= 0)", hook);
        retry = lua_tonumber(L, r + 2);
    }
    c->status = (int)status;
    str_copy(c->message, sizeof c->message, msg);
    c->retry_after = (int64_t)ceil(retry);
    return 0;
}

static void metric_add(plugin_host_t *h, const char *plugin, int hook, uint64_t ns, bool error)
{
    pthread_mutex_lock(&h->lock);
    metric_t *m = NULL;
    for (int i = 0; i < h->nmetrics && !m; i++)
        if (h->metrics[i].hook == hook && strcmp(h->metrics[i].plugin, plugin) == 0)
            m = &h->metrics[i];
    if (!m && h->nmetrics < MAX_METRICS) {
        m = &h->metrics[h->nmetrics++];
        str_copy(m->plugin, sizeof m->plugin, plugin);
        m->hook = hook;
    }
    if (m) {
        m->ns += ns;
        m->calls++;
        m->errors += error;
    }
    pthread_mutex_unlock(&h->lock);
}

static void verdict_fail(plugin_verdict_t *v, const char *plugin)
{
    v->status = 500;
    str_copy(v->message, sizeof v->message, "internal error in plugin");
    v->retry_after = 0;
    str_copy(v->plugin, sizeof v->plugin, plugin);
}

/* Replaces the members of `dst` (an object) with those of `src`, consuming src. */
static void json_replace(cJSON *dst, cJSON *src)
{
    cJSON *old = cJSON_CreateObject();
    if (!old) {
        log_error("plugin host: out of memory");
        abort();
    }
    old->child = dst->child;
    dst->child = src->child;
    src->child = NULL;
    cJSON_Delete(src);
    cJSON_Delete(old);
}

static void run_hook(plugin_host_t *h, int hook, cJSON *json, const plugin_ctx_t *ctx,
                     plugin_verdict_t *v)
{
    memset(v, 0, sizeof *v);
    if (plugin_host_count(h, hook_names[hook]) == 0)
        return;
    if (hook == HOOK_POSTPROCESS && !cJSON_IsObject(json)) {
        log_error("plugin host: postprocess needs a result object");
        return;
    }
    char err[1024];
    tstate_t *ts = ts_get(h, err, sizeof err);
    if (!ts) {
        log_error("plugin host: cannot build the plugin state: %s", err);
        verdict_fail(v, "");
        return;
    }
    gen_t *g = ts->gen;
    gen_ref(g); /* the state may be rebuilt (and move to a newer generation) mid-loop */
    for (int i = 0; i < g->count; i++) {
        const pdef_t *d = &g->defs[i];
        if (!(d->hooks & (1u << hook)))
            continue;
        if (!ts->L) {
            /* closed after a budget error: rebuild, staying on this generation's order */
            ts = ts_get(h, err, sizeof err);
            if (!ts || ts->gen != g) {
                log_error("plugin host: cannot rebuild the plugin state: %s",
                          ts ? "the plugins were reloaded meanwhile" : err);
                verdict_fail(v, d->name);
                break;
            }
        }
        hookcall_t c = {.ts = ts, .idx = i, .hook = hook, .in = json, .ctx = ctx};
        uint64_t t0 = time_mono_ns();
        int rc;
        if (ts->refs[i] == LUA_NOREF) {
            rc = LUA_ERRRUN;
            snprintf(err, sizeof err, "plugin failed to load in this thread");
            str_copy(ts->trace, sizeof ts->trace, err);
        } else {
            rc = guarded(ts, l_call_hook, &c, err, sizeof err);
            ts->cur_ctx = NULL;
        }
        metric_add(h, d->name, hook, time_mono_ns() - t0, rc != LUA_OK);
        if (rc != LUA_OK) {
            cJSON_Delete(c.out);
            bool rebuild = ts->broken;
            if (d->fail_open)
                log_kv(LOG_WARN, "plugin", d->name,
                       "plugin '%s' hook '%s' failed (fail_open, continuing): %s", d->name,
                       hook_names[hook], ts->trace);
            else
                log_kv(LOG_ERROR, "plugin", d->name, "plugin '%s' hook '%s' failed: %s",
                       d->name, hook_names[hook], ts->trace);
            if (rebuild)
                ts_close(ts); /* the next plugin (or call) builds a fresh state */
            if (d->fail_open)
                continue;
            verdict_fail(v, d->name);
            break;
        }
        if (c.out) {
            json_replace(json, c.out);
            continue;
        }
        if (c.status) {
            v->status = c.status;
            str_copy(v->message, sizeof v->message, c.message);
            v->retry_after = c.retry_after;
            str_copy(v->plugin, sizeof v->plugin, d->name);
            break;
        }
    }
    gen_unref(g);
}

void plugin_validate_function(plugin_host_t *h, void *fn_json, const plugin_ctx_t *ctx,
                              plugin_verdict_t *v)
{
    run_hook(h, HOOK_VALIDATE_FUNCTION, fn_json, ctx, v);
}

void plugin_validate_execution(plugin_host_t *h, const plugin_ctx_t *ctx, plugin_verdict_t *v)
{
    run_hook(h, HOOK_VALIDATE_EXECUTION, NULL, ctx, v);
}

void plugin_quota(plugin_host_t *h, const plugin_ctx_t *ctx, plugin_verdict_t *v)
{
    run_hook(h, HOOK_QUOTA, NULL, ctx, v);
}

void plugin_postprocess(plugin_host_t *h, void *result_json, const plugin_ctx_t *ctx,
                        plugin_verdict_t *v)
{
    run_hook(h, HOOK_POSTPROCESS, result_json, ctx, v);
}

void plugin_metrics_write(plugin_host_t *h, void *buf)
{
    buf_t *b = buf;
    metric_t m[MAX_METRICS];
    pthread_mutex_lock(&h->lock);
    int n = h->nmetrics;
    memcpy(m, h->metrics, sizeof m[0] * (size_t)n);
    pthread_mutex_unlock(&h->lock);
    buf_appendf(b, "# HELP faas_plugin_seconds_total Time spent in Lua plugin hooks.\n"
                   "# TYPE faas_plugin_seconds_total counter\n");
    for (int i = 0; i < n; i++)
        buf_appendf(b, "faas_plugin_seconds_total{plugin=\"%s\",hook=\"%s\"} %.6f\n",
                    m[i].plugin, hook_names[m[i].hook], (double)m[i].ns / 1e9);
    buf_appendf(b, "# HELP faas_plugin_calls_total Lua plugin hook calls.\n"
                   "# TYPE faas_plugin_calls_total counter\n");
    for (int i = 0; i < n; i++)
        buf_appendf(b, "faas_plugin_calls_total{plugin=\"%s\",hook=\"%s\"} %llu\n", m[i].plugin,
                    hook_names[m[i].hook], (unsigned long long)m[i].calls);
    buf_appendf(b, "# HELP faas_plugin_errors_total Lua plugin hook calls that failed.\n"
                   "# TYPE faas_plugin_errors_total counter\n");
    for (int i = 0; i < n; i++)
        buf_appendf(b, "faas_plugin_errors_total{plugin=\"%s\",hook=\"%s\"} %llu\n",
                    m[i].plugin, hook_names[m[i].hook], (unsigned long long)m[i].errors);
}
