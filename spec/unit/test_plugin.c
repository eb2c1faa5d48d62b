/* The Lua plugin host, through the real host: shipped plugins (plugins/), fixtures and
 * hostile plugins (spec/plugins/), the Lua sandbox spec (spec/plugins/sandbox_spec.lua).
 * Run from the repository root (make unit does). */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin.h"
#include "t.h"
#include "util.h"

#define SPEC_DIR "spec/plugins"

/* Fills the plugin part of a config by hand (config_defaults lives in config.c). */
static void cfg_init(config_t *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    str_copy(c->plugins.dir, sizeof c->plugins.dir, dir);
    str_copy(c->plugins.lua_dir, sizeof c->plugins.lua_dir, "lua");
    c->plugins.time_budget_ms = 200; /* endless loops end here; real work stays far below */
    c->plugins.memory_limit = 16 * 1024 * 1024;
}

static void cfg_add(config_t *c, const char *name, const char *conf, bool fail_open)
{
    config_plugin_t *p = &c->plugins.list[c->plugins.count++];
    str_copy(p->name, sizeof p->name, name);
    p->conf_json = xstrdup(conf ? conf : "{}");
    p->fail_open = fail_open;
}

static void cfg_clear(config_t *c)
{
    for (int i = 0; i < c->plugins.count; i++)
        free(c->plugins.list[i].conf_json);
    c->plugins.count = 0;
}

/* A host with one plugin (and its conf); NULL with the error printed. */
static plugin_host_t *host1(const char *dir, const char *name, const char *conf)
{
    config_t c;
    char err[512] = "";
    cfg_init(&c, dir);
    cfg_add(&c, name, conf, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    if (!h)
        fprintf(stderr, "  host for '%s': %s\n", name, err);
    cfg_clear(&c);
    return h;
}

/* The error plugin_host_new gives for this plugin and conf ("" when it loads). */
static const char *load_error(const char *dir, const char *name, const char *conf)
{
    static char err[512];
    config_t c;
    err[0] = '\0';
    cfg_init(&c, dir);
    cfg_add(&c, name, conf, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    if (h)
        err[0] = '\0';
    plugin_host_free(h);
    cfg_clear(&c);
    return err;
}

static plugin_verdict_t quota_with(plugin_host_t *h, const char *input)
{
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    ctx.user_id = "u1";
    ctx.input = input;
    ctx.input_len = strlen(input);
    plugin_verdict_t v;
    plugin_quota(h, &ctx, &v);
    return v;
}

static plugin_verdict_t validate_image(plugin_host_t *h, const char *image)
{
    cJSON *fn = cJSON_CreateObject();
    cJSON_AddStringToObject(fn, "image", image);
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    plugin_verdict_t v;
    plugin_validate_function(h, fn, &ctx, &v);
    cJSON_Delete(fn);
    return v;
}

static plugin_verdict_t validate_input(plugin_host_t *h, const char *input)
{
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    ctx.input = input;
    ctx.input_len = strlen(input);
    plugin_verdict_t v;
    plugin_validate_execution(h, &ctx, &v);
    return v;
}

static bool has(const char *s, const char *sub)
{
    bool ok = s && strstr(s, sub);
    if (!ok)
        fprintf(stderr, "  '%s' does not contain '%s'\n", s ? s : "(null)", sub);
    return ok;
}

TEST("image_policy rejects denied, unlisted and untagged images")
{
    plugin_host_t *h = host1("plugins", "image_policy",
                             "{\"allow\":[\"^localhost:5000/\",\"^faas/\"],"
                             "\"deny\":[\"^faas/evil\"],\"require_tag\":true}");
    CHECK(h != NULL);
    if (!h)
        return;
    plugin_verdict_t v = validate_image(h, "localhost:5000/app:1.0");
    CHECK_INT(v.status, 0);
    v = validate_image(h, "faas/tool@sha256:abcd");
    CHECK_INT(v.status, 0);
    v = validate_image(h, "docker.io/library/busybox:1");
    CHECK_INT(v.status, 400);
    CHECK_STR(v.message, "image 'docker.io/library/busybox:1' is not allowed");
    CHECK_STR(v.plugin, "image_policy");
    v = validate_image(h, "faas/evil:1");
    CHECK_INT(v.status, 400);
    CHECK_STR(v.message, "image 'faas/evil:1' is not allowed");
    v = validate_image(h, "localhost:5000/app");
    CHECK_INT(v.status, 400);
    CHECK_STR(v.message, "image 'localhost:5000/app' must have a tag or digest");
    CHECK_INT(plugin_host_count(h, "validate_function"), 1);
    CHECK_INT(plugin_host_count(h, "quota"), 0);
    plugin_host_free(h);
    CHECK(has(load_error("plugins", "image_policy", "{\"allow\":[\"[a\"]}"), "bad pattern"));
}

TEST("image_policy allows everything with the default conf")
{
    plugin_host_t *h = host1("plugins", "image_policy", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_INT(validate_image(h, "busybox").status, 0);
    plugin_host_free(h);
}

TEST("input_limits rejects large and non-JSON input")
{
    plugin_host_t *h =
        host1("plugins", "input_limits", "{\"max_bytes\":10,\"require_json\":true}");
    CHECK(h != NULL);
    if (!h)
        return;
    plugin_verdict_t v = validate_input(h, "{\"a\":1}");
    CHECK_INT(v.status, 0);
    v = validate_input(h, "{\"a\":123456789}");
    CHECK_INT(v.status, 413);
    CHECK_STR(v.message, "input too large");
    v = validate_input(h, "hello");
    CHECK_INT(v.status, 400);
    CHECK_STR(v.message, "input must be JSON");
    v = validate_input(h, "");
    CHECK_INT(v.status, 400);
    plugin_host_free(h);
}

TEST("quota limits functions and concurrent executions")
{
    plugin_host_t *h =
        host1("plugins", "quota", "{\"max_functions\":2,\"max_concurrent\":1}");
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *fn = cJSON_CreateObject();
    cJSON_AddStringToObject(fn, "image", "busybox:1");
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    ctx.user_id = "u1";
    plugin_verdict_t v;
    plugin_validate_function(h, fn, &ctx, &v); /* count unknown: no limit applies */
    CHECK_INT(v.status, 0);
    ctx.function_count = 1;
    plugin_validate_function(h, fn, &ctx, &v);
    CHECK_INT(v.status, 0);
    ctx.function_count = 2;
    plugin_validate_function(h, fn, &ctx, &v);
    CHECK_INT(v.status, 429);
    CHECK_STR(v.message, "function limit of 2 reached");
    cJSON_Delete(fn);
    ctx.active_executions = 0;
    plugin_quota(h, &ctx, &v);
    CHECK_INT(v.status, 0);
    ctx.active_executions = 1;
    plugin_quota(h, &ctx, &v);
    CHECK_INT(v.status, 429);
    CHECK_STR(v.message, "too many concurrent executions (max 1)");
    CHECK_INT(v.retry_after, 1);
    plugin_host_free(h);
}

TEST("quota rate limit without a store fails closed")
{
    /* TODO(integrator): with the SQLite store merged, open one in a temp dir and check that
     * the 4th execution of 3 per minute gets 429 with retry_after in 1..60. */
    plugin_host_t *h = host1("plugins", "quota", "{\"executions_per_minute\":3}");
    CHECK(h != NULL);
    if (!h)
        return;
    plugin_verdict_t v = quota_with(h, "");
    CHECK_INT(v.status, 500);
    CHECK_STR(v.message, "internal error in plugin");
    CHECK_STR(v.plugin, "quota");
    plugin_host_free(h);
}

TEST("quota rate limit counts executions per user in the store")
{
    char dir[] = "/tmp/faas-plugin-store-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    config_store_t sc = {0};
    str_copy(sc.driver, sizeof sc.driver, "sqlite");
    snprintf(sc.path, sizeof sc.path, "%s/faas.db", dir);
    sc.timeout_ms = 2000;
    char err[512] = "";
    store_t *s = store_open(&sc, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    config_t c;
    cfg_init(&c, "plugins");
    cfg_add(&c, "quota", "{\"executions_per_minute\":3}", false);
    plugin_host_t *h = plugin_host_new(&c, s, err, sizeof err);
    cfg_clear(&c);
    CHECK(h != NULL);
    for (int i = 0; h && i < 3; i++)
        CHECK_INT(quota_with(h, "").status, 0);
    plugin_verdict_t v = h ? quota_with(h, "") : (plugin_verdict_t){0};
    CHECK_INT(v.status, 429);
    CHECK(v.retry_after >= 1 && v.retry_after <= 60);
    int64_t value = 0, reset = 0;
    CHECK(s->ops->counter_incr(s, "p:quota:exec:u1", 60000, 0, &value, &reset) == 0);
    CHECK_INT(value, 4);
    plugin_host_free(h);
    store_close(s);
}

TEST("faas.counter without a store is an error the plugin can see")
{
    plugin_host_t *h = host1(SPEC_DIR, "counter", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    plugin_verdict_t v = quota_with(h, "k");
    CHECK_INT(v.status, 400);
    CHECK(has(v.message, "no store configured"));
    plugin_host_free(h);
}

static cJSON *result_new(const char *result, const char *stdout_, const char *stderr_)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "executionId", "e1");
    cJSON_AddStringToObject(r, "result", result);
    cJSON_AddStringToObject(r, "stdout", stdout_);
    cJSON_AddStringToObject(r, "stderr", stderr_);
    cJSON_AddNumberToObject(r, "exitCode", 0);
    cJSON_AddNullToObject(r, "reason");
    return r;
}

static const char *field(const cJSON *o, const char *k)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(f) ? f->valuestring : NULL;
}

static plugin_verdict_t postprocess(plugin_host_t *h, cJSON *r, const char *input)
{
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    ctx.execution_id = "e1";
    if (input) {
        ctx.input = input;
        ctx.input_len = strlen(input);
    }
    plugin_verdict_t v;
    plugin_postprocess(h, r, &ctx, &v);
    return v;
}

TEST("output strips escapes, trims and parses JSON results")
{
    plugin_host_t *h = host1("plugins", "output", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("\x1b[31m  {\"a\": [1, 2]}\x07  \x1b[0m\r\n",
                          "\x1b]0;title\x07line 1\n\tline 2\x01  ", "err");
    plugin_verdict_t v = postprocess(h, r, NULL);
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "result"), "{\"a\": [1, 2]}");
    CHECK_STR(field(r, "stdout"), "line 1\n\tline 2");
    CHECK_STR(field(r, "stderr"), "err");
    CHECK_STR(field(r, "executionId"), "e1");
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, "json");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
    CHECK(cJSON_IsArray(a) && cJSON_GetArraySize(a) == 2);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "reason")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r, "exitCode")));
    CHECK(!cJSON_GetObjectItemCaseSensitive(r, "output_truncated"));
    cJSON_Delete(r);
    r = result_new("plain text", "", "");
    postprocess(h, r, NULL);
    CHECK(!cJSON_GetObjectItemCaseSensitive(r, "json"));
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("output caps length without splitting UTF-8")
{
    plugin_host_t *h = host1("plugins", "output", "{\"max_length\":2,\"parse_json\":false}");
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("h\xc3\xa9llo", "ab", "");
    plugin_verdict_t v = postprocess(h, r, NULL);
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "result"), "h");
    CHECK_STR(field(r, "stdout"), "ab");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "output_truncated")));
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("redact replaces secrets in result, stdout and stderr")
{
    plugin_host_t *h = host1("plugins", "redact",
                             "{\"patterns\":[\"AKIA[%u%d]+\",\"password=%S+\"],"
                             "\"replacement\":\"[%1]\"}");
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("key AKIAABC123 ok", "password=hunter2 x", "AKIAZZ");
    plugin_verdict_t v = postprocess(h, r, NULL);
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "result"), "key [%1] ok");
    CHECK_STR(field(r, "stdout"), "[%1] x");
    CHECK_STR(field(r, "stderr"), "[%1]");
    cJSON_Delete(r);
    plugin_host_free(h);
    h = host1("plugins", "redact", "{\"patterns\":[\"secret\"]}");
    CHECK(h != NULL);
    if (!h)
        return;
    r = result_new("a secret", "", "");
    postprocess(h, r, NULL);
    CHECK_STR(field(r, "result"), "a ***");
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("redact and output run in priority order on one result")
{
    config_t c;
    char err[512] = "";
    cfg_init(&c, "plugins");
    cfg_add(&c, "output", "{}", false);
    cfg_add(&c, "redact", "{\"patterns\":[\"tok%d+\"]}", false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    cfg_clear(&c);
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("  {\"t\":\"tok123\"}  ", "", "");
    postprocess(h, r, NULL);
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(r, "json");
    CHECK_STR(field(j, "t"), "***");
    CHECK_INT(plugin_host_count(h, "postprocess"), 2);
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("runs plugins by priority, ties by name")
{
    config_t c;
    char err[512] = "";
    cfg_init(&c, SPEC_DIR);
    cfg_add(&c, "order_b", NULL, false);
    cfg_add(&c, "order_a", NULL, false);
    cfg_add(&c, "order_c", NULL, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    cfg_clear(&c);
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("", "", "");
    plugin_verdict_t v = postprocess(h, r, NULL);
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "order"), "cab");
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("postprocess: nil keeps the result, a non-table is a plugin error")
{
    plugin_host_t *h = host1(SPEC_DIR, "pp_mixed", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    cJSON *r = result_new("orig", "", "");
    plugin_verdict_t v = postprocess(h, r, "nil");
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "result"), "orig");
    v = postprocess(h, r, "number");
    CHECK_INT(v.status, 500);
    CHECK_STR(field(r, "result"), "orig");
    v = postprocess(h, r, "array");
    CHECK_INT(v.status, 500);
    v = postprocess(h, r, "function");
    CHECK_INT(v.status, 500);
    CHECK_STR(field(r, "result"), "orig");
    v = postprocess(h, r, "replace");
    CHECK_INT(v.status, 0);
    CHECK_STR(field(r, "result"), "replaced");
    CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(r, "list")) ||
          cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r, "list")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r, "reason")));
    cJSON_Delete(r);
    plugin_host_free(h);
}

TEST("hook results: 4xx rejects, other statuses and wrong types are plugin errors")
{
    plugin_host_t *h = host1(SPEC_DIR, "status", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    plugin_verdict_t v = quota_with(h, "continue");
    CHECK_INT(v.status, 0);
    v = quota_with(h, "retry");
    CHECK_INT(v.status, 429);
    CHECK_STR(v.message, "slow down");
    CHECK_INT(v.retry_after, 3);
    CHECK_STR(v.plugin, "status");
    v = quota_with(h, "nomsg");
    CHECK_INT(v.status, 404);
    CHECK_STR(v.message, "request rejected");
    const char *bad[] = {"200", "500", "str", "msg", "badretry", "float"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = quota_with(h, bad[i]);
        CHECK_INT(v.status, 500);
        CHECK_STR(v.message, "internal error in plugin");
    }
    plugin_host_free(h);
}

TEST("rejects conf of the wrong type, naming plugin and field")
{
    const char *e = load_error("plugins", "input_limits", "{\"max_bytes\":\"big\"}");
    CHECK(has(e, "plugin 'input_limits'"));
    CHECK(has(e, "max_bytes"));
    CHECK(has(e, "expected integer, got string"));
    e = load_error("plugins", "input_limits", "{\"max_bytes\":-1}");
    CHECK(has(e, "max_bytes"));
    CHECK(has(e, "at least 0"));
    e = load_error("plugins", "image_policy", "{\"allow\":[1]}");
    CHECK(has(e, "plugin 'image_policy'"));
    CHECK(has(e, "allow"));
    e = load_error("plugins", "input_limits", "{\"max_byte\":5}");
    CHECK(has(e, "max_byte"));
    CHECK(has(e, "unknown field"));
    e = load_error("plugins", "input_limits", "[1]");
    CHECK(has(e, "conf must be a JSON object"));
}

TEST("rejects a missing required conf field")
{
    const char *e = load_error(SPEC_DIR, "sandbox_spec", "{}");
    CHECK(has(e, "plugin 'sandbox_spec'"));
    CHECK(has(e, "conf field 'limit': is required"));
    e = load_error(SPEC_DIR, "sandbox_spec", "{\"limit\":11}");
    CHECK(has(e, "at most 10"));
    e = load_error(SPEC_DIR, "bad_schema", "{}");
    CHECK(has(e, "schema field 'x'"));
}

TEST("rejects bad plugin tables and files")
{
    CHECK(has(load_error(SPEC_DIR, "bad_noname", NULL), "plugin 'bad_noname': field 'name'"));
    CHECK(has(load_error(SPEC_DIR, "bad_version", NULL), "field 'version'"));
    CHECK(has(load_error(SPEC_DIR, "bad_name", NULL), "'other_name' but the file is"));
    CHECK(has(load_error(SPEC_DIR, "bad_priority", NULL), "field 'priority'"));
    CHECK(has(load_error(SPEC_DIR, "bad_syntax", NULL), "plugin 'bad_syntax'"));
    CHECK(has(load_error(SPEC_DIR, "bad_hook", NULL), "field 'quota' must be a function"));
    CHECK(has(load_error(SPEC_DIR, "bad_notable", NULL), "must return a table"));
    CHECK(has(load_error(SPEC_DIR, "bad_init", NULL), "init boom"));
    CHECK(has(load_error(SPEC_DIR, "no_such_plugin", NULL), "cannot open"));
    CHECK(has(load_error(SPEC_DIR, "bad_loop", NULL), "plugin 'bad_loop': time budget"));
    CHECK(has(load_error(SPEC_DIR, "../plugins/quota", NULL), "name must be"));
    config_t c;
    char err[256] = "";
    cfg_init(&c, SPEC_DIR);
    cfg_add(&c, "calls", NULL, false);
    cfg_add(&c, "calls", NULL, false);
    CHECK(plugin_host_new(&c, NULL, err, sizeof err) == NULL);
    CHECK(has(err, "enabled twice"));
    cfg_clear(&c);
    str_copy(c.plugins.lua_dir, sizeof c.plugins.lua_dir, "/nonexistent");
    cfg_add(&c, "calls", NULL, false);
    CHECK(plugin_host_new(&c, NULL, err, sizeof err) == NULL);
    CHECK(has(err, "prelude.lua"));
    cfg_clear(&c);
}

TEST("a host without plugins lets everything through")
{
    config_t c;
    char err[256] = "";
    cfg_init(&c, "/nonexistent");
    str_copy(c.plugins.lua_dir, sizeof c.plugins.lua_dir, "/nonexistent");
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_INT(quota_with(h, "x").status, 0);
    CHECK_INT(validate_image(h, "x").status, 0);
    CHECK_INT(plugin_host_count(h, "quota"), 0);
    plugin_host_free(h);
}

typedef struct {
    const char *name;
    int status;
    const char *message; /* substring */
} hostile_t;

TEST("contains hostile plugins and keeps working for the next call")
{
    const hostile_t cases[] = {
        {"h_error", 500, "internal error in plugin"},
        {"h_loop", 500, "internal error in plugin"},
        {"h_bigstring", 500, "internal error in plugin"},
        {"h_table", 500, "internal error in plugin"},
        {"h_memory", 500, "internal error in plugin"},
        {"h_pcall_loop", 500, "internal error in plugin"},
        {"h_os", 500, "internal error in plugin"},
        {"h_io", 500, "internal error in plugin"},
        {"h_load_binary", 403, "binary"},
        {"h_require_os", 500, "internal error in plugin"},
        {"h_debug", 500, "internal error in plugin"},
        {"h_setmt", 500, "internal error in plugin"},
        {"h_gc", 500, "internal error in plugin"},
        {"h_move", 500, "internal error in plugin"},
        {"h_emptyrep", 403, "fast"},
        {"h_finalizer", 403, "refused"}, /* and plugin_host_free below must return */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        plugin_host_t *h = host1(SPEC_DIR, cases[i].name, "{}");
        CHECK(h != NULL);
        if (!h)
            continue;
        for (int round = 0; round < 2; round++) {
            plugin_verdict_t v = quota_with(h, "attack");
            if (v.status != cases[i].status)
                fprintf(stderr, "  %s: status %d '%s'\n", cases[i].name, v.status, v.message);
            CHECK_INT(v.status, cases[i].status);
            CHECK(has(v.message, cases[i].message));
            CHECK_STR(v.plugin, cases[i].name);
            v = quota_with(h, "next");
            CHECK_INT(v.status, 400);
            CHECK_STR(v.message, "fine");
        }
        plugin_host_free(h);
    }
}

TEST("rawset and metatable tricks do not leak to other plugins")
{
    config_t c;
    char err[512] = "";
    cfg_init(&c, SPEC_DIR);
    cfg_add(&c, "h_rawset", NULL, false);
    cfg_add(&c, "h_victim", NULL, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    cfg_clear(&c);
    CHECK(h != NULL);
    if (!h)
        return;
    for (int i = 0; i < 3; i++) {
        plugin_verdict_t v = quota_with(h, "attack");
        CHECK_INT(v.status, 400);
        CHECK_STR(v.message, "clean");
        CHECK_STR(v.plugin, "h_victim");
    }
    plugin_host_free(h);
}

TEST("memory cap refuses growth past memory_limit and the state survives")
{
    config_t c;
    char err[512] = "";
    cfg_init(&c, SPEC_DIR);
    c.plugins.time_budget_ms = 10000; /* only the memory cap may stop it, even under valgrind */
    cfg_add(&c, "memcap", NULL, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    cfg_clear(&c);
    CHECK(h != NULL);
    if (!h)
        return;
    for (int i = 0; i < 3; i++) {
        plugin_verdict_t v = quota_with(h, "");
        CHECK_INT(v.status, 403);
        CHECK(has(v.message, "capped: not enough memory"));
    }
    plugin_host_free(h);
}

TEST("fail_open continues past a failing plugin, fail closed stops")
{
    const char *names[] = {"h_error", "h_loop", "h_table"};
    for (int i = 0; i < 3; i++) {
        for (int open = 0; open < 2; open++) {
            config_t c;
            char err[512] = "";
            cfg_init(&c, SPEC_DIR);
            cfg_add(&c, names[i], NULL, open);
            cfg_add(&c, "after", NULL, false);
            plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
            cfg_clear(&c);
            CHECK(h != NULL);
            if (!h)
                continue;
            plugin_verdict_t v = quota_with(h, "attack");
            CHECK_INT(v.status, open ? 400 : 500);
            CHECK_STR(v.plugin, open ? "after" : names[i]);
            CHECK_STR(v.message, open ? "after" : "internal error in plugin");
            plugin_host_free(h);
        }
    }
}

TEST("sandbox spec passes inside the host")
{
    plugin_host_t *h = host1(SPEC_DIR, "sandbox_spec", "{\"limit\":3,\"nested\":{\"k\":\"v\"},\"list\":[\"a\",\"b\"]}");
    CHECK(h != NULL);
    if (!h)
        return;
    store_function_t fn = {.id = "f1", .name = "fn", .image = "busybox:latest",
                           .env_json = "{\"A\":\"b\"}", .timeout_ms = 30000};
    plugin_ctx_t ctx;
    plugin_ctx_init(&ctx);
    ctx.user_id = "u1";
    ctx.email = "u@example.com";
    ctx.request_id = "r1";
    ctx.function = &fn;
    ctx.input = "in\0put";
    ctx.input_len = 6;
    ctx.function_count = 3;
    plugin_verdict_t v;
    plugin_validate_execution(h, &ctx, &v);
    CHECK_INT(v.status, 400);
    CHECK(has(v.message, "ok "));
    plugin_host_free(h);
}

static void write_plugin(const char *dir, const char *name, const char *body)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.lua", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fputs(body, f);
    fclose(f);
}

#define REL_V(x)                                                                           \
    "return {name = 'rel', version = '1.0.0', priority = 1,\n"                             \
    "  quota = function() return 400, '" x "' end}\n"

typedef struct {
    plugin_host_t *h;
    plugin_verdict_t v[2];
} thread_arg_t;

static void *thread_two_calls(void *p)
{
    thread_arg_t *a = p;
    a->v[0] = quota_with(a->h, "x");
    a->v[1] = quota_with(a->h, "x");
    return NULL;
}

TEST("reload keeps the old set when a plugin is broken, picks up a fixed one")
{
    char dir[] = "/tmp/faas-plugin-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_plugin(dir, "rel", REL_V("v1"));
    config_t c;
    char err[512] = "";
    cfg_init(&c, dir);
    cfg_add(&c, "rel", NULL, false);
    plugin_host_t *h = plugin_host_new(&c, NULL, err, sizeof err);
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_STR(quota_with(h, "").message, "v1");
    write_plugin(dir, "rel", "return {name = 'rel', version = 'broken'");
    CHECK(plugin_host_reload(h, &c, err, sizeof err) < 0);
    CHECK(has(err, "plugin 'rel'"));
    CHECK_STR(quota_with(h, "").message, "v1");
    /* a thread that never ran before builds from the current (old) set too */
    thread_arg_t a = {.h = h};
    pthread_t t;
    pthread_create(&t, NULL, thread_two_calls, &a);
    pthread_join(t, NULL);
    CHECK_STR(a.v[0].message, "v1");
    write_plugin(dir, "rel", REL_V("v2"));
    CHECK(plugin_host_reload(h, &c, err, sizeof err) == 0);
    CHECK_STR(quota_with(h, "").message, "v2");
    /* a reload with a different conf type error keeps v2 */
    free(c.plugins.list[0].conf_json);
    c.plugins.list[0].conf_json = xstrdup("[]");
    CHECK(plugin_host_reload(h, &c, err, sizeof err) < 0);
    CHECK_STR(quota_with(h, "").message, "v2");
    cfg_clear(&c);
    /* reload to no plugins at all */
    CHECK(plugin_host_reload(h, &c, err, sizeof err) == 0);
    CHECK_INT(quota_with(h, "").status, 0);
    plugin_host_free(h);
    char path[512];
    snprintf(path, sizeof path, "%s/rel.lua", dir);
    unlink(path);
    rmdir(dir);
}

TEST("each thread has its own lua state")
{
    plugin_host_t *h = host1(SPEC_DIR, "calls", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    CHECK_STR(quota_with(h, "").message, "1");
    CHECK_STR(quota_with(h, "").message, "2");
    thread_arg_t a = {.h = h}, b = {.h = h};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thread_two_calls, &a);
    pthread_create(&tb, NULL, thread_two_calls, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_STR(a.v[0].message, "1");
    CHECK_STR(a.v[1].message, "2");
    CHECK_STR(b.v[0].message, "1");
    CHECK_STR(b.v[1].message, "2");
    CHECK_STR(quota_with(h, "").message, "3");
    plugin_host_free(h);
}

typedef struct {
    plugin_host_t *h;
    int bad;
} stress_arg_t;

static void *thread_stress(void *p)
{
    stress_arg_t *a = p;
    for (int i = 0; i < 200; i++) {
        plugin_verdict_t v = quota_with(a->h, i % 50 == 0 ? "attack" : "next");
        if (v.status != (i % 50 == 0 ? 500 : 400))
            a->bad++;
    }
    return NULL;
}

TEST("threads call hostile plugins concurrently, each rebuilding only its own state")
{
    plugin_host_t *h = host1(SPEC_DIR, "h_table", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    stress_arg_t a = {.h = h}, b = {.h = h};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thread_stress, &a);
    pthread_create(&tb, NULL, thread_stress, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.bad, 0);
    CHECK_INT(b.bad, 0);
    plugin_host_free(h);
}

TEST("metrics report time and errors per plugin and hook")
{
    plugin_host_t *h = host1(SPEC_DIR, "status", "{}");
    CHECK(h != NULL);
    if (!h)
        return;
    quota_with(h, "continue");
    quota_with(h, "200");
    buf_t b = {0};
    plugin_metrics_write(h, &b);
    CHECK(has(b.data, "faas_plugin_seconds_total{plugin=\"status\",hook=\"quota\"} "));
    CHECK(has(b.data, "faas_plugin_errors_total{plugin=\"status\",hook=\"quota\"} 1\n"));
    CHECK(has(b.data, "faas_plugin_calls_total{plugin=\"status\",hook=\"quota\"} 2\n"));
    CHECK(has(b.data, "# TYPE faas_plugin_seconds_total counter"));
    buf_free(&b);
    plugin_host_free(h);
}

static int setup(void)
{
    struct stat st;
    if (stat("plugins/quota.lua", &st) != 0 || stat("lua/prelude.lua", &st) != 0 ||
        stat(SPEC_DIR "/h_loop.lua", &st) != 0) {
        fprintf(stderr, "run from the repository root\n");
        return -1;
    }
    return 0;
}

T_MAIN_WITH(setup, NULL)
