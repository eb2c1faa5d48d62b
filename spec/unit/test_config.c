/* The config loader: config.lua evaluated in a sandbox and checked into config_t.
 * Run from the repository root (the shipped config.lua and the fixtures are read from there). */
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "t.h"
#include "util.h"

#define FIX "spec/unit/fixtures/config/"
#define SECRET "0123456789abcdef0123456789abcdef-test"

static char tmpdir[256];
static int nfile;

static int setup(void) {
    char tmpl[] = "/tmp/faas-config-XXXXXX";
    if (!mkdtemp(tmpl))
        return -1;
    str_copy(tmpdir, sizeof tmpdir, tmpl);
    unsetenv("FAAS_JWT_SECRET");
    unsetenv("FAAS_WORKER_ID");
    return 0;
}

static void teardown(void) {
    char *cmd = xasprintf("rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove '%s'\n", tmpdir);
    free(cmd);
}

/* Writes `text` to a fresh file "c<N>.lua" in the temp dir; returns its path (static). */
static const char *write_config(const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/c%d.lua", tmpdir, ++nfile);
    FILE *f = fopen(path, "w");
    if (!f)
        return "/nonexistent";
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads `text` (not requiring the secret); returns config_load's result. */
static int load_text(config_t *cfg, const char *text, char *err, size_t errlen) {
    return config_load(cfg, write_config(text), false, err, errlen);
}

/* The error of loading `text`, or "" when it loaded. */
static const char *error_of(const char *text) {
    static char err[512];
    config_t cfg;
    if (load_text(&cfg, text, err, sizeof err) == 0) {
        config_free(&cfg);
        return "";
    }
    return err;
}

static bool contains(const char *hay, const char *needle) {
    bool ok = hay && strstr(hay, needle);
    if (!ok)
        fprintf(stderr, "  expected '%s' in '%s'\n", needle, hay ? hay : "(null)");
    return ok;
}

/* Prints `cfg` into a string the caller frees. */
static char *print_to_string(const config_t *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print(cfg, f);
    fclose(f);
    return text;
}

TEST("loads the shipped config.lua with the secret from the environment") {
    setenv("FAAS_JWT_SECRET", SECRET, 1);
    config_t cfg;
    char err[512] = "";
    int rc = config_load(&cfg, "config.lua", true, err, sizeof err);
    CHECK_INT(rc, 0);
    CHECK_STR(err, "");
    CHECK_STR(cfg.auth.jwt_secret, SECRET);
    CHECK_INT(cfg.server.port, 8080);
    CHECK_STR(cfg.store.driver, "sqlite");
    CHECK_STR(cfg.store.path, "data/faas.db");
    CHECK_STR(cfg.nats.url, "nats://127.0.0.1:4222");
    CHECK_STR(cfg.worker.pull_policy, "if-missing");
    CHECK_INT(cfg.plugins.count, 4);
    CHECK_STR(cfg.plugins.list[0].name, "image_policy");
    CHECK_STR(cfg.plugins.list[0].conf_json,
              "{\"allow\":[\".*\"],\"deny\":{},\"require_tag\":false}");
    CHECK_STR(cfg.plugins.list[1].name, "input_limits");
    CHECK_STR(cfg.plugins.list[1].conf_json, "{\"max_bytes\":1048576,\"require_json\":false}");
    CHECK_STR(cfg.plugins.list[2].name, "quota");
    CHECK_STR(cfg.plugins.list[2].conf_json,
              "{\"executions_per_minute\":600,\"max_concurrent\":20,\"max_functions\":100}");
    CHECK_STR(cfg.plugins.list[3].name, "output");
    CHECK_STR(cfg.plugins.list[3].conf_json,
              "{\"max_length\":0,\"parse_json\":true,\"strip_ansi\":true,\"trim\":false}");
    CHECK(!cfg.plugins.list[2].fail_open);
    config_free(&cfg);
    unsetenv("FAAS_JWT_SECRET");
}

TEST("the shipped config.lua restates every built-in default") {
    setenv("FAAS_JWT_SECRET", SECRET, 1);
    config_t cfg, def;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, "config.lua", true, err, sizeof err), 0);
    config_defaults(&def);
    CHECK(memcmp(&cfg.server, &def.server, sizeof def.server) == 0);
    CHECK(memcmp(&cfg.auth.token_ttl_ms, &def.auth.token_ttl_ms,
                 sizeof def.auth - offsetof(config_auth_t, token_ttl_ms)) == 0);
    CHECK(memcmp(&cfg.store, &def.store, sizeof def.store) == 0);
    CHECK(memcmp(&cfg.nats, &def.nats, sizeof def.nats) == 0);
    CHECK(memcmp(&cfg.worker, &def.worker, sizeof def.worker) == 0);
    CHECK(memcmp(&cfg.limits, &def.limits, sizeof def.limits) == 0);
    CHECK_STR(cfg.log_level, def.log_level);

    /* every key config_print knows appears in the shipped file */
    char *printed = print_to_string(&cfg);
    FILE *f = fopen("config.lua", "r");
    buf_t shipped = {0};
    char chunk[4096];
    size_t n;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&shipped, chunk, n);
    if (f)
        fclose(f);
    int keys = 0;
    for (char *line = printed; line && *line;) {
        char *nl = strchr(line, '\n');
        char *eq = strstr(line, " = ");
        if (eq && (!nl || eq < nl) && !strstr(line, "--")) {
            char *name = line;
            while (*name == ' ')
                name++;
            char *key = xasprintf("%.*s =", (int)(eq - name), name);
            if (strcmp(key, "fail_open =") != 0 && strcmp(key, "conf =") != 0 &&
                strcmp(key, "name =") != 0) {
                keys++;
                CHECK(contains(shipped.data, key));
            }
            free(key);
        }
        line = nl ? nl + 1 : NULL;
    }
    CHECK(keys > 60);
    buf_free(&shipped);
    free(printed);
    config_free(&cfg);
    unsetenv("FAAS_JWT_SECRET");
}

TEST("an empty file gives exactly the defaults") {
    config_t cfg, def;
    char err[512] = "";
    CHECK_INT(load_text(&cfg, "", err, sizeof err), 0);
    config_defaults(&def);
    str_copy(def.path, sizeof def.path, cfg.path);
    CHECK(memcmp(&cfg, &def, sizeof def) == 0);
    CHECK_INT(cfg.server.port, 8080);
    CHECK_INT(cfg.server.body_limit, 1024 * 1024);
    CHECK_INT(cfg.limits.nano_cpus.max, 2000000000LL);
    CHECK_INT(cfg.plugins.count, 0);
    CHECK_STR(cfg.auth.jwt_secret, "");
    /* the worker id: "<host>-<pid>", so two workers on one host never share one */
    char id[128], host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(id, sizeof id, "%.40s-%ld", host, (long)getpid());
    CHECK_STR(cfg.worker.id, id);
    config_free(&cfg);
}

TEST("without a file, checks the defaults and the environment's secret") {
    config_t cfg, def;
    char err[512] = "";
    unsetenv("FAAS_JWT_SECRET");
    CHECK_INT(config_load(&cfg, NULL, true, err, sizeof err), -1);
    CHECK(contains(err, "auth.jwt_secret must be at least 32 bytes"));
    setenv("FAAS_JWT_SECRET", SECRET, 1);
    CHECK_INT(config_load(&cfg, NULL, true, err, sizeof err), 0);
    CHECK_STR(cfg.auth.jwt_secret, SECRET);
    config_defaults(&def);
    str_copy(def.auth.jwt_secret, sizeof def.auth.jwt_secret, SECRET);
    CHECK(memcmp(&cfg, &def, sizeof def) == 0);
    config_free(&cfg);
    unsetenv("FAAS_JWT_SECRET");
}

TEST("names an unknown top-level key with file and line") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "unknown_top.lua", false, err, sizeof err), -1);
    CHECK_STR(err, FIX "unknown_top.lua:4: unknown key 'srever'");
}

TEST("names a nested unknown key with its full path and line") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "nested_unknown.lua", false, err, sizeof err), -1);
    CHECK_STR(err, FIX "nested_unknown.lua:9: unknown key 'server.cors.alow_credentials'");
    CHECK(contains(error_of("server = {\n  listen = '::1',\n  prot = 1,\n}\n"),
                   ":3: unknown key 'server.prot'"));
}

TEST("names an unknown key set by a dotted assignment") {
    CHECK(contains(error_of("server.port = 9000\n\nserver.cors.origin = { 'x' }\n"),
                   ":3: unknown key 'server.cors.origin'"));
    CHECK(contains(error_of("helper = 1\n"), ":1: unknown key 'helper'"));
}

TEST("finds the line of an unknown key built in a loop") {
    const char *e = error_of("local extra = {}\nfor _, k in ipairs({'a'}) do extra.bogus = 1 end\n"
                             "\nlimits = extra\n");
    CHECK(contains(e, ":4: unknown key 'limits.bogus'"));
}

TEST("reports a wrong type with the key and its line") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "wrong_type.lua", false, err, sizeof err), -1);
    CHECK_STR(err, FIX "wrong_type.lua:4: 'server.port' must be an integer");
    CHECK(contains(error_of("server = 5"), ":1: 'server' must be a table"));
    CHECK(contains(error_of("server = { cors = { enabled = 'yes' } }"),
                   "'server.cors.enabled' must be a boolean"));
    CHECK(contains(error_of("server = { listen = 127 }"), "'server.listen' must be a string"));
    CHECK(contains(error_of("server = { threads = 2.5 }"), "'server.threads' must be an integer"));
}

TEST("rejects out-of-range ports and thread counts") {
    CHECK(contains(error_of("server = {\n port = 70000 }"),
                   ":2: 'server.port' must be between 0 and 65535"));
    CHECK(contains(error_of("server = { port = -1 }"), "'server.port' must be between"));
    CHECK(contains(error_of("worker = { port = 65536 }"), "'worker.port' must be between"));
    CHECK(contains(error_of("server = { threads = 0 }"),
                   "'server.threads' must be between 1 and 256"));
    CHECK(contains(error_of("server = { threads = 257 }"), "'server.threads' must be between"));
    CHECK_STR(error_of("server = { port = 0, threads = 256 }"), "");
    CHECK_STR(error_of("server = { port = 65535.0, threads = 1 }"), "");
}

TEST("rejects a limit default above its max, and limits that are not positive") {
    CHECK(contains(
        error_of("limits = {\n  timeout = { default = 400, max = 300 },\n}"),
        ":2: 'limits.timeout.default' (400) must not be above 'limits.timeout.max' (300)"));
    CHECK(contains(error_of("limits = { memory = { default = '2g' } }"),
                   "'limits.memory.default' (2g) must not be above 'limits.memory.max' (1g)"));
    CHECK(contains(error_of("limits = { cpus = { default = 0 } }"),
                   "'limits.cpus.default' must be between 0.01 and 1024 CPUs"));
    CHECK(
        contains(error_of("limits = { timeout = { max = -1 } }"), "'limits.timeout.max' must be"));
    CHECK(contains(error_of("limits = { timeout = 30 }"), "'limits.timeout' must be a table"));
    config_t cfg;
    char err[512];
    CHECK_INT(
        load_text(&cfg, "limits = { timeout = { default = 300, max = 300 } }", err, sizeof err), 0);
    CHECK_INT(cfg.limits.timeout_ms.def, 300000);
    config_free(&cfg);
}

TEST("accepts sizes as byte counts and unit strings") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(
        load_text(&cfg,
                  "server = { body_limit = 2048 }\n"
                  "limits = { memory = { default = '256m', max = 2147483648 }, tmpfs = '1.5k',"
                  " input = '64K' }\n"
                  "plugins = { memory_limit = 4 * 1024 * 1024 }\n",
                  err, sizeof err),
        0);
    CHECK_STR(err, "");
    CHECK_INT(cfg.server.body_limit, 2048);
    CHECK_INT(cfg.limits.memory.def, 256LL << 20);
    CHECK_INT(cfg.limits.memory.max, 2LL << 30);
    CHECK_INT(cfg.limits.tmpfs, 1536);
    CHECK_INT(cfg.limits.input_max, 64 << 10);
    CHECK_INT(cfg.plugins.memory_limit, 4 << 20);
    config_free(&cfg);
    CHECK(contains(error_of("server = { body_limit = '12x' }"),
                   "'server.body_limit' must be a size"));
    CHECK(
        contains(error_of("server = { body_limit = 1.5 }"), "'server.body_limit' must be a size"));
    CHECK(
        contains(error_of("server = { body_limit = true }"), "'server.body_limit' must be a size"));
    CHECK(contains(error_of("auth = { argon2_memory = '8m' }"),
                   "'auth.argon2_memory' must be between 19m and 4g"));
}

TEST("converts durations in seconds to milliseconds and cpus to nano-cpus") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(load_text(&cfg,
                        "server = { sync_wait = 0.5, shutdown_grace = 0 }\n"
                        "auth = { token_ttl = 3600 }\n"
                        "store = { timeout = 2500 }\n"
                        "limits = { cpus = { default = 0.25, max = 4 } }\n",
                        err, sizeof err),
              0);
    CHECK_INT(cfg.server.sync_wait_ms, 500);
    CHECK_INT(cfg.server.shutdown_grace_ms, 0);
    CHECK_INT(cfg.auth.token_ttl_ms, 3600000);
    CHECK_INT(cfg.store.timeout_ms, 2500);
    CHECK_INT(cfg.limits.nano_cpus.def, 250000000);
    CHECK_INT(cfg.limits.nano_cpus.max, 4000000000LL);
    config_free(&cfg);
    CHECK(contains(error_of("store = { timeout = 2.5 }"), "'store.timeout' must be an integer"));
    CHECK(contains(error_of("server = { sync_wait = '30s' }"),
                   "'server.sync_wait' must be a number of seconds"));
    CHECK(contains(error_of("nats = { ack_wait = 0 }"),
                   "'nats.ack_wait' must be between 1 and 86400 seconds"));
}

TEST("checks enums and names") {
    CHECK(contains(error_of("worker = { pull_policy = 'sometimes' }"),
                   "'worker.pull_policy' must be one of \"never\", \"if-missing\", \"always\""));
    CHECK(contains(error_of("store = { driver = 'postgres' }"), "'store.driver' must be one of"));
    CHECK(contains(error_of("log = { level = 'trace' }"), "'log.level' must be one of"));
    CHECK(contains(error_of("nats = { stream = 'A.B' }"), "'nats.stream' may contain only"));
    CHECK(contains(error_of("nats = { subject = 'functions.*' }"),
                   "'nats.subject' must be a NATS subject"));
    CHECK(contains(error_of("worker = { docker_api = '1.41' }"),
                   "'worker.docker_api' must look like"));
    CHECK(contains(error_of("store = { path = '' }"), "'store.path' must not be empty"));
    config_t cfg;
    char err[512];
    CHECK_INT(load_text(&cfg,
                        "store = { driver = 'mongodb' }\nlog = { level = 'debug' }\n"
                        "worker = { pull_policy = 'never', id = 'w-1.a_b' }",
                        err, sizeof err),
              0);
    CHECK_STR(cfg.store.driver, "mongodb");
    CHECK_STR(cfg.log_level, "debug");
    CHECK_STR(cfg.worker.pull_policy, "never");
    CHECK_STR(cfg.worker.id, "w-1.a_b");
    config_free(&cfg);
}

TEST("limits.input must fit in a NATS message once base64-encoded") {
    CHECK(contains(error_of("limits = { input = '7m' }"),
                   "'limits.input' (7m) does not fit base64-encoded in 'nats.max_payload' (8m)"));
    CHECK_STR(error_of("limits = { input = '7m' }\nnats = { max_payload = '16m' }"), "");
}

TEST("env() reads the environment, with an optional default") {
    setenv("FAAS_TEST_PORT", "9999", 1);
    unsetenv("FAAS_TEST_UNSET");
    config_t cfg;
    char err[512] = "";
    CHECK_INT(load_text(&cfg,
                        "server = { port = tonumber(env('FAAS_TEST_PORT')),\n"
                        "           listen = env('FAAS_TEST_UNSET', '0.0.0.0'),\n"
                        "           public_url = env('FAAS_TEST_UNSET') or 'none' }\n",
                        err, sizeof err),
              0);
    CHECK_STR(err, "");
    CHECK_INT(cfg.server.port, 9999);
    CHECK_STR(cfg.server.listen, "0.0.0.0");
    CHECK_STR(cfg.server.public_url, "none");
    config_free(&cfg);
    unsetenv("FAAS_TEST_PORT");
}

TEST("a missing secret is an error only when the secret is required") {
    unsetenv("FAAS_JWT_SECRET");
    config_t cfg;
    char err[512] = "";
    const char *path = write_config("auth = { jwt_secret = env('FAAS_JWT_SECRET') }\n");
    CHECK_INT(config_load(&cfg, path, true, err, sizeof err), -1);
    CHECK(contains(err, "auth.jwt_secret must be at least 32 bytes (set FAAS_JWT_SECRET)"));
    CHECK_INT(config_load(&cfg, path, false, err, sizeof err), 0);
    CHECK_STR(cfg.auth.jwt_secret, "");
    config_free(&cfg);
}

TEST("falls back to FAAS_JWT_SECRET only when the file leaves the secret unset") {
    setenv("FAAS_JWT_SECRET", SECRET, 1);
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, write_config(""), true, err, sizeof err), 0);
    CHECK_STR(cfg.auth.jwt_secret, SECRET);
    config_free(&cfg);
    const char *own = "auth = { jwt_secret = 'file-secret-file-secret-file-secret!' }";
    CHECK_INT(config_load(&cfg, write_config(own), true, err, sizeof err), 0);
    CHECK_STR(cfg.auth.jwt_secret, "file-secret-file-secret-file-secret!");
    config_free(&cfg);
    unsetenv("FAAS_JWT_SECRET");
}

TEST("rejects a secret shorter than 32 bytes") {
    config_t cfg;
    char err[512] = "";
    const char *path = write_config("\nauth = { jwt_secret = 'short' }\n");
    CHECK_INT(config_load(&cfg, path, true, err, sizeof err), -1);
    CHECK(contains(err, ":2: auth.jwt_secret must be at least 32 bytes (set FAAS_JWT_SECRET)"));
    setenv("FAAS_JWT_SECRET", "0123456789abcdef0123456789abcde", 1); /* 31 bytes */
    CHECK_INT(config_load(&cfg, write_config(""), true, err, sizeof err), -1);
    CHECK(contains(err, "auth.jwt_secret must be at least 32 bytes"));
    setenv("FAAS_JWT_SECRET", "0123456789abcdef0123456789abcdef", 1); /* 32 bytes */
    CHECK_INT(config_load(&cfg, write_config(""), true, err, sizeof err), 0);
    config_free(&cfg);
    unsetenv("FAAS_JWT_SECRET");
}

TEST("stops a config that never ends, even one that catches errors") {
    CHECK(contains(error_of("server = {}\nwhile true do end\n"), ":2: config ran too long"));
    CHECK(contains(error_of("while true do pcall(function() while true do end end) end"),
                   "config ran too long"));
    CHECK(contains(error_of("local function f() return f() end\nf()"), "config ran too long"));
}

TEST("stops a config that allocates too much memory") {
    CHECK(contains(error_of("local s = string.rep('x', 2^30)"), "config uses too much memory"));
    CHECK(contains(error_of("local t = {} for i = 1, 1e9 do t[i] = {i} end"), ": config"));
    CHECK(contains(error_of("local s = 'x' while true do s = s .. s end"), "too much memory"));
}

TEST("offers no io, os, require, dofile or bytecode") {
    CHECK(contains(error_of("os.execute('touch /tmp/faas-config-pwned')"), "global 'os'"));
    CHECK(contains(error_of("local f = io.open('/etc/passwd')"), "global 'io'"));
    CHECK(contains(error_of("require('os')"), "global 'require'"));
    CHECK(contains(error_of("dofile('/etc/passwd')"), "global 'dofile'"));
    CHECK(contains(error_of("loadfile('/etc/passwd')"), "global 'loadfile'"));
    CHECK(contains(error_of("local d = string.dump(print)"), "field 'dump'"));
    CHECK(contains(error_of("local f, e = load('\\27Lua\\x54\\0')\nerror(e, 0)"),
                   "attempt to load a binary chunk"));
    /* text chunks still load */
    CHECK_STR(error_of("server = { port = load('return 7000')() }"), "");
    CHECK(access("/tmp/faas-config-pwned", F_OK) != 0);
}

TEST("refuses finalizers, which Lua would run out of reach of the instruction budget") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "hostile_gc.lua", false, err, sizeof err), -1);
    CHECK_STR(err, FIX "hostile_gc.lua:3: __gc metamethods are not allowed in the config");
    /* other metatables still work */
    CHECK_STR(error_of("local t = setmetatable({}, { __index = { port = 8083 } })\n"
                       "server = { port = t.port }"),
              "");
}

TEST("reports syntax and runtime errors with their line") {
    CHECK(contains(error_of("server = {\n  port = ,\n}\n"), ":2: unexpected symbol"));
    CHECK(contains(error_of("server = {}\nerror('boom')\n"), ":2: boom"));
    CHECK(contains(error_of("return 5"), "must assign globals or return a table, not a number"));
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, "/nonexistent/config.lua", false, err, sizeof err), -1);
    CHECK_STR(err, "cannot open '/nonexistent/config.lua': No such file or directory");
}

TEST("accepts a chunk that returns the configuration table") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "return_table.lua", false, err, sizeof err), -1);
    CHECK_STR(err, FIX "return_table.lua:10: unknown key 'plugins.enabled[2].sure'");
    CHECK_INT(
        load_text(
            &cfg,
            "local port = 9001\nreturn { server = { port = port }, log = { level = 'warn' } }", err,
            sizeof err),
        0);
    CHECK_INT(cfg.server.port, 9001);
    CHECK_STR(cfg.log_level, "warn");
    CHECK_INT(cfg.server.threads, 4);
    config_free(&cfg);
}

TEST("patches single defaults through dotted assignments") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(load_text(&cfg,
                        "server.port = 9000\n"
                        "table.insert(server.cors.origins, 'https://b.example')\n"
                        "table.insert(plugins.enabled, 'output')\n"
                        "limits.memory.max = '2g'\n",
                        err, sizeof err),
              0);
    CHECK_STR(err, "");
    CHECK_INT(cfg.server.port, 9000);
    CHECK_STR(cfg.server.listen, "127.0.0.1");
    CHECK_INT(cfg.server.cors_origin_count, 2);
    CHECK_STR(cfg.server.cors_origins[1], "https://b.example");
    CHECK_INT(cfg.plugins.count, 1);
    CHECK_STR(cfg.plugins.list[0].name, "output");
    CHECK_INT(cfg.limits.memory.max, 2LL << 30);
    config_free(&cfg);
}

TEST("plugin entries may be names or tables, with conf converted to JSON") {
    config_t cfg;
    char err[512] = "";
    CHECK_INT(config_load(&cfg, FIX "plugins.lua", false, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_INT(cfg.plugins.count, 3);
    CHECK_INT(cfg.plugins.time_budget_ms, 20);
    CHECK_STR(cfg.plugins.list[0].name, "output");
    CHECK_STR(cfg.plugins.list[0].conf_json, "{}");
    CHECK(!cfg.plugins.list[0].fail_open);
    CHECK_STR(cfg.plugins.list[1].name, "quota");
    CHECK_STR(cfg.plugins.list[1].conf_json,
              "{\"10\":\"ten\",\"big\":9007199254740993,\"empty\":{},\"list\":[1,2.5,\"three\"],"
              "\"max_functions\":5,\"nested\":{\"a\":{\"b\":true}}}");
    CHECK(cfg.plugins.list[1].fail_open);
    CHECK_STR(cfg.plugins.list[2].name, "input_limits");
    CHECK_STR(cfg.plugins.list[2].conf_json, "{}");
    config_free(&cfg);
}

TEST("rejects plugin conf that JSON cannot carry") {
    CHECK(contains(error_of("plugins = { enabled = {\n { name = 'q', conf = { f = print } } } }"),
                   ":2: 'plugins.enabled[1].conf.f' is a function, which cannot be converted"));
    CHECK(contains(
        error_of("local t = {}\nt.t = t\nplugins = { enabled = { { name = 'q', conf = t } } }"),
        "nested too deeply (or refers to itself)"));
    CHECK(contains(error_of("plugins = { enabled = { { name = 'q', conf = { x = 0/0 } } } }"),
                   "'plugins.enabled[1].conf.x' must be a finite number"));
    CHECK(contains(error_of("plugins = { enabled = { { name = 'q', conf = { x = '\\xff' } } } }"),
                   "'plugins.enabled[1].conf.x' must be valid UTF-8"));
    CHECK(contains(error_of("plugins = { enabled = { { name = 'q', conf = 5 } } }"),
                   "'plugins.enabled[1].conf' must be a table"));
}

TEST("rejects bad plugin names, duplicates and unknown entry keys") {
    CHECK(contains(error_of("plugins = { enabled = { 'Quota' } }"),
                   "'plugins.enabled[1]' must be a plugin name matching [a-z0-9_]+"));
    CHECK(contains(error_of("plugins = { enabled = { 'ok', { name = '../x' } } }"),
                   "'plugins.enabled[2].name' must be a plugin name"));
    CHECK(contains(error_of("plugins = { enabled = { '' } }"), "must be a plugin name"));
    CHECK(contains(error_of("plugins = { enabled = { { conf = {} } } }"),
                   "'plugins.enabled[1]' has no name"));
    CHECK(
        contains(error_of("plugins = { enabled = { 'a', 'a' } }"), "plugin 'a' is enabled twice"));
    CHECK(contains(error_of("plugins = { enabled = {\n  { name = 'a',\n    confg = {} } } }"),
                   ":3: unknown key 'plugins.enabled[1].confg'"));
    CHECK(contains(error_of("plugins = { enabled = { x = 'a' } }"),
                   "unknown key 'plugins.enabled.x'"));
    CHECK(contains(error_of("plugins = { enabled = { 'a', nil, 'b' } }"),
                   "'plugins.enabled[2]' is nil"));
}

TEST("config_print output re-loads to the same values with secrets masked") {
    setenv("FAAS_JWT_SECRET", SECRET, 1);
    config_t a, b;
    char err[512] = "";
    const char *path = write_config(
        "server = { listen = '0.0.0.0', port = 8088, sync_wait = 2.5, cors = { enabled = true,"
        " origins = { 'https://a.example', 'quote\"and\\\\back' } } }\n"
        "store = { driver = 'mongodb', uri = 'mongodb://app:s3cr3t@db:27017/faas?authSource=admin' "
        "}\n"
        "nats = { url = 'nats://tok3n@127.0.0.1:4222' }\n"
        "limits = { cpus = { default = 0.123456789, max = 3 }, timeout = { default = 0.001 } }\n"
        "plugins = { enabled = { 'output', { name = 'quota', fail_open = true,"
        " conf = { list = { 1, 2.5, 'x' }, ['not an id'] = { y = false }, ['end'] = 1 } } } }\n");
    CHECK_INT(config_load(&a, path, true, err, sizeof err), 0);
    CHECK_STR(err, "");
    char *text = print_to_string(&a);
    CHECK(!strstr(text, SECRET));
    CHECK(!strstr(text, "s3cr3t"));
    CHECK(!strstr(text, "tok3n"));
    CHECK(contains(text, "jwt_secret = \"***\""));
    CHECK(contains(text, "\"mongodb://app:***@db:27017/faas?authSource=admin\""));
    CHECK(contains(text, "\"nats://***@127.0.0.1:4222\""));

    unsetenv("FAAS_JWT_SECRET");
    const char *again = write_config(text);
    CHECK_INT(config_load(&b, again, false, err, sizeof err), 0);
    CHECK_STR(err, "");
    CHECK_STR(b.auth.jwt_secret, "***");
    CHECK_STR(b.store.uri, "mongodb://app:***@db:27017/faas?authSource=admin");
    CHECK_INT(b.limits.nano_cpus.def, 123456789);
    CHECK_INT(b.limits.timeout_ms.def, 1);
    CHECK_STR(b.server.cors_origins[1], "quote\"and\\back");
    CHECK_INT(b.plugins.count, 2);
    for (int i = 0; i < a.plugins.count && i < b.plugins.count; i++) {
        CHECK_STR(a.plugins.list[i].name, b.plugins.list[i].name);
        CHECK_STR(a.plugins.list[i].conf_json, b.plugins.list[i].conf_json);
        CHECK(a.plugins.list[i].fail_open == b.plugins.list[i].fail_open);
    }
    /* everything else byte for byte */
    config_t ma = a, mb = b;
    memset(ma.path, 0, sizeof ma.path);
    memset(mb.path, 0, sizeof mb.path);
    memset(ma.auth.jwt_secret, 0, sizeof ma.auth.jwt_secret);
    memset(mb.auth.jwt_secret, 0, sizeof mb.auth.jwt_secret);
    memset(ma.store.uri, 0, sizeof ma.store.uri);
    memset(mb.store.uri, 0, sizeof mb.store.uri);
    memset(ma.nats.url, 0, sizeof ma.nats.url);
    memset(mb.nats.url, 0, sizeof mb.nats.url);
    for (int i = 0; i < CONFIG_MAX_PLUGINS; i++)
        ma.plugins.list[i].conf_json = mb.plugins.list[i].conf_json = NULL;
    CHECK(memcmp(&ma, &mb, sizeof ma) == 0);
    free(text);
    config_free(&a);
    config_free(&b);
}

TEST("config_print prints an unset secret as nil") {
    unsetenv("FAAS_JWT_SECRET");
    config_t cfg;
    config_defaults(&cfg);
    char *text = print_to_string(&cfg);
    CHECK(contains(text, "jwt_secret = nil,"));
    free(text);
}

T_MAIN_WITH(setup, teardown)
