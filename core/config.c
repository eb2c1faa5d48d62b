/* The config loader: config.lua is run once in a throw-away, sandboxed Lua state and its
 * tables are checked key by key against a schema into config_t.
 *
 * Sandbox: base (without dofile/loadfile; load forced to text mode), string (without dump),
 * table, math, plus env(). The chunk runs with its own _ENV (reads fall through to the
 * sandbox globals), under an instruction budget and a wall-clock deadline (count hook,
 * re-armed on every instruction once exhausted so pcall cannot swallow it) and a memory cap
 * (the allocator returns NULL past it).
 *
 * Line numbers: Lua keeps no record of where a table field was written, so before running
 * the chunk we scan the source with a small Lua tokenizer and record, for every table
 * constructor field and every `a.b.c = ...` assignment, the key path it defines and its line
 * ("server.port" -> 12, "plugins.enabled[2].conf" -> 40). A key built in a way the scan
 * cannot follow (a loop, a local table assigned later) falls back to the first token equal
 * to the key name at or after its parent's line, then to the parent's own line. */
#include "config.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "luabox.h"
#include "util.h"

#define CONFIG_MEMORY_CAP (32u << 20)    /* bytes the config chunk may allocate */
#define CONFIG_INSTR_BUDGET 20000000LL   /* VM instructions the chunk may execute */
#define CONFIG_DEADLINE_NS 2000000000ULL /* and at most 2 s of wall clock */
#define CONFIG_MAX_FILE (1u << 20)       /* config.lua larger than this is refused */
#define CONFIG_MAX_DEPTH 32              /* nesting of plugin conf tables */
#define SECRET_MIN 32

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)

/* ---------------------------------------------------------------------------------------
 * Schema */

enum {
    K_SECTION, /* nested table of fields */
    K_STR,     /* string; `chars` restricts it to alnum + those punctuation bytes */
    K_ENUM,    /* one of `choices` */
    K_INT,     /* integer in [min, max] */
    K_BOOL,
    K_SIZE,    /* bytes: a number or a string "64m" */
    K_SEC,     /* seconds (fractions allowed) stored as ms */
    K_MS,      /* integer milliseconds */
    K_CPUS,    /* number of CPUs stored as nano-CPUs */
    K_LIMIT,   /* {default = x, max = y} of kind `sub[0].kind` */
    K_ORIGINS, /* list of strings (server.cors.origins) */
    K_PLUGINS, /* plugins.enabled */
};

enum {
    F_NONEMPTY = 1, /* strings: "" is refused */
    F_SECRET = 2,   /* auth.jwt_secret: remember that the file set it; masked on print */
    F_URI = 4,      /* mask a password in the URI on print */
    F_VERSION = 8,  /* "v1.41" */
    F_SUBJECT = 16, /* a NATS subject without wildcards */
    F_INT64 = 32,   /* K_INT stored as int64_t (others are int) */
};

typedef struct field {
    const char *name;
    int kind;
    size_t off;  /* into config_t */
    size_t size; /* K_STR capacity */
    int64_t min, max;
    const char *const *choices;
    const struct field *sub; /* K_SECTION, K_LIMIT: NULL-name terminated */
    unsigned flags;
    const char *chars; /* K_STR: allowed bytes besides letters and digits */
} field_t;

/* one initializer per line (Linux braces would spread each over three) */
/* clang-format off */
#define OFF(m) offsetof(config_t, m)
#define STR(n, m, fl)                                                                              \
    { n, K_STR, OFF(m), sizeof(((config_t *)0)->m), 0, 0, NULL, NULL, fl, NULL }
#define TOKEN(n, m, ch)                                                                            \
    { n, K_STR, OFF(m), sizeof(((config_t *)0)->m), 0, 0, NULL, NULL, F_NONEMPTY, ch }
#define NUM(n, k, m, lo, hi)                                                                       \
    { n, k, OFF(m), 0, lo, hi, NULL, NULL, 0, NULL }
#define NUM64(n, m, lo, hi)                                                                        \
    { n, K_INT, OFF(m), 0, lo, hi, NULL, NULL, F_INT64, NULL }
#define ENUM(n, m, ch)                                                                             \
    { n, K_ENUM, OFF(m), sizeof(((config_t *)0)->m), 0, 0, ch, NULL, 0, NULL }
#define SECTION(n, s)                                                                              \
    { n, K_SECTION, 0, 0, 0, 0, NULL, s, 0, NULL }
#define END                                                                                        \
    { NULL, 0, 0, 0, 0, 0, NULL, NULL, 0, NULL }
/* clang-format on */

static const char *const drivers[] = {"sqlite", "mongodb", NULL};
static const char *const pull_policies[] = {"never", "if-missing", "always", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

static const field_t cors_fields[] = {
    {"enabled", K_BOOL, OFF(server.cors_enabled), 0, 0, 0, NULL, NULL, 0, NULL},
    {"origins", K_ORIGINS, 0, 0, 0, 0, NULL, NULL, 0, NULL},
    END,
};

static const field_t server_fields[] = {
    STR("listen", server.listen, F_NONEMPTY),
    NUM("port", K_INT, server.port, 0, 65535),
    NUM("threads", K_INT, server.threads, 1, 256),
    NUM("body_limit", K_SIZE, server.body_limit, 1, GIB),
    NUM("sync_wait", K_SEC, server.sync_wait_ms, 0, 86400 * 1000LL),
    NUM("shutdown_grace", K_SEC, server.shutdown_grace_ms, 0, 3600 * 1000LL),
    SECTION("cors", cors_fields),
    STR("public_url", server.public_url, 0),
    END,
};

static const field_t auth_fields[] = {
    STR("jwt_secret", auth.jwt_secret, F_SECRET),
    NUM("token_ttl", K_SEC, auth.token_ttl_ms, 1000, 366 * 86400 * 1000LL),
    NUM("argon2_memory", K_SIZE, auth.argon2_memory, 19 * MIB, 4 * GIB),
    NUM("argon2_ops", K_INT, auth.argon2_ops, 2, 64),
    NUM("hash_threads", K_INT, auth.hash_threads, 1, 64),
    END,
};

static const field_t store_fields[] = {
    ENUM("driver", store.driver, drivers),
    STR("path", store.path, F_NONEMPTY),
    STR("uri", store.uri, F_NONEMPTY | F_URI),
    TOKEN("database", store.database, "_-"),
    NUM("timeout", K_MS, store.timeout_ms, 1, 600000),
    END,
};

static const field_t nats_fields[] = {
    STR("url", nats.url, F_NONEMPTY | F_URI),
    TOKEN("stream", nats.stream, "_-"),
    STR("subject", nats.subject, F_NONEMPTY | F_SUBJECT),
    TOKEN("results_stream", nats.results_stream, "_-"),
    TOKEN("consumer", nats.consumer, "_-"),
    TOKEN("recorder", nats.recorder, "_-"),
    NUM("max_deliver", K_INT, nats.max_deliver, 1, 1000),
    NUM("ack_wait", K_SEC, nats.ack_wait_ms, 1000, 86400 * 1000LL),
    NUM("results_max_age", K_SEC, nats.results_max_age_ms, 0, 3650LL * 86400 * 1000),
    NUM("connect_timeout", K_MS, nats.connect_timeout_ms, 1, 600000),
    NUM("max_payload", K_SIZE, nats.max_payload, KIB, 64 * MIB),
    END,
};

static const field_t worker_fields[] = {
    TOKEN("id", worker.id, "_.-"),
    NUM("concurrency", K_INT, worker.concurrency, 1, 256),
    STR("docker_socket", worker.docker_socket, F_NONEMPTY),
    STR("docker_api", worker.docker_api, F_NONEMPTY | F_VERSION),
    ENUM("pull_policy", worker.pull_policy, pull_policies),
    NUM("reap_interval", K_SEC, worker.reap_interval_ms, 1000, 86400 * 1000LL),
    NUM("output_limit", K_SIZE, worker.output_limit, KIB, GIB),
    STR("listen", worker.listen, F_NONEMPTY),
    NUM("port", K_INT, worker.port, 0, 65535),
    END,
};

static const field_t timeout_fields[] = {
    NUM("default", K_SEC, limits.timeout_ms.def, 1, 86400 * 1000LL),
    NUM("max", K_SEC, limits.timeout_ms.max, 1, 86400 * 1000LL),
    END,
};
static const field_t memory_fields[] = {
    NUM("default", K_SIZE, limits.memory.def, 6 * MIB, 1024 * GIB),
    NUM("max", K_SIZE, limits.memory.max, 6 * MIB, 1024 * GIB),
    END,
};
static const field_t cpus_fields[] = {
    NUM("default", K_CPUS, limits.nano_cpus.def, 10000000LL, 1024 * 1000000000LL),
    NUM("max", K_CPUS, limits.nano_cpus.max, 10000000LL, 1024 * 1000000000LL),
    END,
};

static const field_t limits_fields[] = {
    {"timeout", K_LIMIT, 0, 0, 0, 0, NULL, timeout_fields, 0, NULL},
    {"memory", K_LIMIT, 0, 0, 0, 0, NULL, memory_fields, 0, NULL},
    {"cpus", K_LIMIT, 0, 0, 0, 0, NULL, cpus_fields, 0, NULL},
    NUM64("pids", limits.pids, 1, 4194304),
    NUM64("nofile", limits.nofile, 1, 1048576),
    NUM("tmpfs", K_SIZE, limits.tmpfs, 0, 16 * GIB),
    NUM("input", K_SIZE, limits.input_max, 0, GIB),
    NUM("env", K_SIZE, limits.env_max, 0, MIB),
    {"allow_network", K_BOOL, OFF(limits.allow_network), 0, 0, 0, NULL, NULL, 0, NULL},
    TOKEN("network", limits.network, "_.-"),
    END,
};

static const field_t plugins_fields[] = {
    STR("dir", plugins.dir, F_NONEMPTY),
    STR("lua_dir", plugins.lua_dir, F_NONEMPTY),
    NUM("time_budget", K_MS, plugins.time_budget_ms, 1, 60000),
    NUM("memory_limit", K_SIZE, plugins.memory_limit, MIB, GIB),
    {"enabled", K_PLUGINS, 0, 0, 0, 0, NULL, NULL, 0, NULL},
    END,
};

static const field_t log_fields[] = {
    ENUM("level", log_level, log_levels),
    END,
};

static const field_t top_fields[] = {
    SECTION("server", server_fields),
    SECTION("auth", auth_fields),
    SECTION("store", store_fields),
    SECTION("nats", nats_fields),
    SECTION("worker", worker_fields),
    SECTION("limits", limits_fields),
    SECTION("plugins", plugins_fields),
    SECTION("log", log_fields),
    END,
};

/* ---------------------------------------------------------------------------------------
 * Defaults */

/* The host name: a worker restarted on the same host keeps its id, so its reaper removes the
 * containers its previous run left behind. Several workers on one host need distinct ids. */
static void default_worker_id(char *out, size_t cap)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0])
        str_copy(host, sizeof host, "worker");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.' && *p != '-')
            *p = '-';
    /* with the pid: two workers started on one host without ids never share one (each reaps
     * the containers of its id); the reaper recognises ids of dead pids (runner_reap) */
    snprintf(out, cap, "%.40s-%ld", host, (long)getpid());
}

void config_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    config_server_t *s = &cfg->server;
    str_copy(s->listen, sizeof s->listen, "127.0.0.1");
    s->port = 8080;
    s->threads = 4;
    s->body_limit = MIB;
    s->sync_wait_ms = 30000;
    s->shutdown_grace_ms = 10000;
    s->cors_enabled = false;
    s->cors_origin_count = 1;
    str_copy(s->cors_origins[0], sizeof s->cors_origins[0], "*");

    config_auth_t *a = &cfg->auth;
    a->token_ttl_ms = 86400 * 1000LL;
    a->argon2_memory = 19 * MIB;
    a->argon2_ops = 2;
    a->hash_threads = 1;

    config_store_t *st = &cfg->store;
    str_copy(st->driver, sizeof st->driver, "sqlite");
    str_copy(st->path, sizeof st->path, "data/faas.db");
    str_copy(st->uri, sizeof st->uri, "mongodb://127.0.0.1:27017");
    str_copy(st->database, sizeof st->database, "faas");
    st->timeout_ms = 2000;

    config_nats_t *n = &cfg->nats;
    str_copy(n->url, sizeof n->url, "nats://127.0.0.1:4222");
    str_copy(n->stream, sizeof n->stream, "FUNCTIONS");
    str_copy(n->subject, sizeof n->subject, "functions");
    str_copy(n->results_stream, sizeof n->results_stream, "RESULTS");
    str_copy(n->consumer, sizeof n->consumer, "workers");
    str_copy(n->recorder, sizeof n->recorder, "api-recorder");
    n->max_deliver = 5;
    n->ack_wait_ms = 30000;
    n->results_max_age_ms = 86400 * 1000LL;
    n->connect_timeout_ms = 1000;
    n->max_payload = 8 * MIB;

    config_worker_t *w = &cfg->worker;
    default_worker_id(w->id, sizeof w->id);
    w->concurrency = 4;
    str_copy(w->docker_socket, sizeof w->docker_socket, "/var/run/docker.sock");
    str_copy(w->docker_api, sizeof w->docker_api, "v1.41");
    str_copy(w->pull_policy, sizeof w->pull_policy, "if-missing");
    w->reap_interval_ms = 60000;
    w->output_limit = MIB;
    str_copy(w->listen, sizeof w->listen, "127.0.0.1");
    w->port = 9091;

    config_limits_t *l = &cfg->limits;
    l->timeout_ms.def = 30000;
    l->timeout_ms.max = 300000;
    l->memory.def = 128 * MIB;
    l->memory.max = GIB;
    l->nano_cpus.def = 1000000000LL;
    l->nano_cpus.max = 2000000000LL;
    l->pids = 64;
    l->nofile = 256;
    l->tmpfs = 16 * MIB;
    l->input_max = MIB;
    l->env_max = 16 * KIB;
    l->allow_network = false;
    str_copy(l->network, sizeof l->network, "bridge");

    config_plugins_t *p = &cfg->plugins;
    str_copy(p->dir, sizeof p->dir, "plugins");
    str_copy(p->lua_dir, sizeof p->lua_dir, "lua");
    p->time_budget_ms = 50;
    p->memory_limit = 16 * MIB;
    p->count = 0;

    str_copy(cfg->log_level, sizeof cfg->log_level, "info");
}

void config_free(config_t *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < cfg->plugins.count && i < CONFIG_MAX_PLUGINS; i++) {
        free(cfg->plugins.list[i].conf_json);
        cfg->plugins.list[i].conf_json = NULL;
    }
    cfg->plugins.count = 0;
}

/* ---------------------------------------------------------------------------------------
 * Source scan: key path -> line */

enum { T_EOF, T_NAME, T_STR, T_NUM, T_SYM };

typedef struct {
    int type;
    const char *s; /* into the source; T_STR: the raw text between the delimiters */
    size_t n;
    int line;
} tok_t;

typedef struct {
    char *path;
    int line;
} loc_t;

typedef struct {
    tok_t *toks;
    size_t ntoks, tokcap;
    loc_t *locs;
    size_t nlocs, loccap;
} srcmap_t;

static void tok_push(srcmap_t *m, int type, const char *s, size_t n, int line)
{
    if (m->ntoks == m->tokcap) {
        m->tokcap = m->tokcap ? m->tokcap * 2 : 256;
        m->toks = xrealloc(m->toks, m->tokcap * sizeof *m->toks);
    }
    m->toks[m->ntoks++] = (tok_t){type, s, n, line};
}

/* `[==[` at p: returns the level (number of '='), or -1 when not a long bracket. */
static int long_bracket_level(const char *p, const char *end)
{
    if (p >= end || *p != '[')
        return -1;
    int level = 0;
    p++;
    while (p < end && *p == '=') {
        level++;
        p++;
    }
    return p < end && *p == '[' ? level : -1;
}

/* Skips a long bracket body starting at the opening '['; counts newlines. Returns the
 * position after the closing bracket (or `end`), and the body through `body`/`blen`. */
static const char *skip_long(const char *p, const char *end, int level, int *line,
                             const char **body, size_t *blen)
{
    p += level + 2;
    *body = p;
    for (; p < end; p++) {
        if (*p == '\n') {
            (*line)++;
        } else if (*p == ']') {
            const char *q = p + 1;
            int l = 0;
            while (q < end && *q == '=') {
                l++;
                q++;
            }
            if (l == level && q < end && *q == ']') {
                *blen = (size_t)(p - *body);
                return q + 1;
            }
        }
    }
    *blen = (size_t)(end - *body);
    return end;
}

static void lex(srcmap_t *m, const char *src, size_t len)
{
    const char *p = src, *end = src + len;
    int line = 1;
    if (p < end && *p == '#') /* shebang line, as lua.c skips it */
        while (p < end && *p != '\n')
            p++;
    while (p < end) {
        char c = *p;
        if (c == '\n') {
            line++;
            p++;
        } else if (isspace((unsigned char)c)) {
            p++;
        } else if (c == '-' && p + 1 < end && p[1] == '-') {
            p += 2;
            int level = long_bracket_level(p, end);
            if (level >= 0) {
                const char *b;
                size_t bl;
                p = skip_long(p, end, level, &line, &b, &bl);
            } else {
                while (p < end && *p != '\n')
                    p++;
            }
        } else if (c == '"' || c == '\'') {
            int start_line = line;
            const char *s = ++p;
            while (p < end && *p != c && *p != '\n') {
                if (*p == '\\' && p + 1 < end) {
                    p++;
                    if (*p == '\n')
                        line++;
                }
                p++;
            }
            tok_push(m, T_STR, s, (size_t)(p - s), start_line);
            if (p < end && *p == c)
                p++;
        } else if (c == '[' && long_bracket_level(p, end) >= 0) {
            int start_line = line;
            const char *b;
            size_t bl;
            p = skip_long(p, end, long_bracket_level(p, end), &line, &b, &bl);
            tok_push(m, T_STR, b, bl, start_line);
        } else if (isalpha((unsigned char)c) || c == '_') {
            const char *s = p;
            while (p < end && (isalnum((unsigned char)*p) || *p == '_'))
                p++;
            tok_push(m, T_NAME, s, (size_t)(p - s), line);
        } else if (isdigit((unsigned char)c) ||
                   (c == '.' && p + 1 < end && isdigit((unsigned char)p[1]))) {
            const char *s = p;
            while (p < end) {
                if ((*p == 'e' || *p == 'E' || *p == 'p' || *p == 'P') && p + 1 < end &&
                    (p[1] == '+' || p[1] == '-'))
                    p += 2;
                else if (isalnum((unsigned char)*p) || *p == '.')
                    p++;
                else
                    break;
            }
            tok_push(m, T_NUM, s, (size_t)(p - s), line);
        } else {
            static const char *const multi[] = {
                "...", "..", "==", "~=", "<=", ">=", "//", "::", "<<", ">>", NULL};
            size_t n = 1;
            for (int i = 0; multi[i]; i++) {
                size_t ml = strlen(multi[i]);
                if ((size_t)(end - p) >= ml && memcmp(p, multi[i], ml) == 0) {
                    n = ml;
                    break;
                }
            }
            tok_push(m, T_SYM, p, n, line);
            p += n;
        }
    }
    for (int i = 0; i < 4; i++) /* padding: the scanner looks up to 3 tokens ahead */
        tok_push(m, T_EOF, end, 0, line);
}

static bool tok_is(const tok_t *t, int type, const char *s)
{
    return t->type == type && t->n == strlen(s) && memcmp(t->s, s, t->n) == 0;
}

static bool sym(const tok_t *t, const char *s)
{
    return tok_is(t, T_SYM, s);
}

static void loc_add(srcmap_t *m, const char *path, int line)
{
    if (!path)
        return;
    if (m->nlocs == m->loccap) {
        m->loccap = m->loccap ? m->loccap * 2 : 64;
        m->locs = xrealloc(m->locs, m->loccap * sizeof *m->locs);
    }
    m->locs[m->nlocs++] = (loc_t){xstrdup(path), line};
}

static char *path_key(const char *parent, const char *key, size_t n)
{
    if (!parent)
        return NULL;
    if (!*parent)
        return xstrndup(key, n);
    return xasprintf("%s.%.*s", parent, (int)n, key);
}

enum { FR_STMT, FR_CTOR, FR_GROUP };

typedef struct {
    int kind;
    char *path;       /* FR_CTOR: the key path this constructor defines (NULL: unknown) */
    char *value_path; /* path of the field value being read (FR_CTOR), inherited (FR_GROUP) */
    int idx;          /* positional fields seen */
    bool field_start;
} frame_t;

static void frame_clear(frame_t *f)
{
    free(f->path);
    free(f->value_path);
    f->path = f->value_path = NULL;
}

/* Walks the tokens recording constructor fields and dotted assignments. */
static void scan(srcmap_t *m)
{
    size_t cap = 16, sp = 1;
    frame_t *st = xcalloc(cap, sizeof *st);
    st[0].kind = FR_STMT;
    char *assign_path = NULL; /* the statement-level path assigned by the '=' at assign_tok */
    size_t assign_tok = (size_t)-1;
    const tok_t *t = m->toks;

    for (size_t i = 0; t[i].type != T_EOF; i++) {
        frame_t *top = &st[sp - 1];
        if (top->kind == FR_CTOR && top->field_start) {
            free(top->value_path);
            top->value_path = NULL;
            if (sym(&t[i], "}")) {
                /* falls to the generic close below */
            } else if (t[i].type == T_NAME && sym(&t[i + 1], "=")) {
                top->value_path = path_key(top->path, t[i].s, t[i].n);
                loc_add(m, top->value_path, t[i].line);
                top->field_start = false;
                i++;
                continue;
            } else if (sym(&t[i], "[") && t[i + 1].type == T_STR && sym(&t[i + 2], "]") &&
                       sym(&t[i + 3], "=")) {
                top->value_path = path_key(top->path, t[i + 1].s, t[i + 1].n);
                loc_add(m, top->value_path, t[i + 1].line);
                top->field_start = false;
                i += 3;
                continue;
            } else if (sym(&t[i], "[")) {
                top->field_start = false; /* a computed key: not followed */
            } else {
                top->idx++;
                if (top->path)
                    top->value_path = xasprintf("%s[%d]", top->path, top->idx);
                loc_add(m, top->value_path, t[i].line);
                top->field_start = false;
            }
        }

        if (sym(&t[i], "{") || sym(&t[i], "(") || sym(&t[i], "[")) {
            const char *path = NULL;
            if (top->kind != FR_STMT)
                path = top->value_path;
            else if (sym(&t[i], "{") && i > 0 && i - 1 == assign_tok)
                path = assign_path;
            else if (sym(&t[i], "{") && i > 0 && tok_is(&t[i - 1], T_NAME, "return"))
                path = "";
            if (sp == cap) {
                cap *= 2;
                st = xrealloc(st, cap * sizeof *st);
            }
            frame_t *f = &st[sp++];
            memset(f, 0, sizeof *f);
            if (sym(&t[i], "{")) {
                f->kind = FR_CTOR;
                f->path = path ? xstrdup(path) : NULL;
                f->field_start = true;
            } else {
                f->kind = FR_GROUP;
                f->value_path = path ? xstrdup(path) : NULL;
            }
        } else if (sym(&t[i], "}") || sym(&t[i], ")") || sym(&t[i], "]")) {
            if (sp > 1) {
                sp--;
                frame_clear(&st[sp]);
            }
        } else if ((sym(&t[i], ",") || sym(&t[i], ";")) && top->kind == FR_CTOR) {
            top->field_start = true;
        } else if (top->kind == FR_STMT && t[i].type == T_NAME) {
            /* `a.b["c"] = ...`, not `local a =`, `for a =`, `x.a =` */
            bool fresh = i == 0 ||
                         !(sym(&t[i - 1], ".") || sym(&t[i - 1], ":") || sym(&t[i - 1], ",") ||
                           tok_is(&t[i - 1], T_NAME, "local") || tok_is(&t[i - 1], T_NAME, "for") ||
                           tok_is(&t[i - 1], T_NAME, "function"));
            if (!fresh)
                continue;
            size_t j = i;
            buf_t b = {0};
            buf_append(&b, t[i].s, t[i].n);
            for (;;) {
                if (sym(&t[j + 1], ".") && t[j + 2].type == T_NAME) {
                    buf_appendf(&b, ".%.*s", (int)t[j + 2].n, t[j + 2].s);
                    j += 2;
                } else if (sym(&t[j + 1], "[") && t[j + 2].type == T_STR && sym(&t[j + 3], "]")) {
                    buf_appendf(&b, ".%.*s", (int)t[j + 2].n, t[j + 2].s);
                    j += 3;
                } else {
                    break;
                }
            }
            if (sym(&t[j + 1], "=")) {
                loc_add(m, b.data, t[j].line);
                free(assign_path);
                assign_path = buf_steal(&b, NULL);
                assign_tok = j + 1;
                i = j + 1;
            }
            buf_free(&b);
        }
    }
    for (size_t k = 0; k < sp; k++)
        frame_clear(&st[k]);
    free(st);
    free(assign_path);
}

static void srcmap_free(srcmap_t *m)
{
    for (size_t i = 0; i < m->nlocs; i++)
        free(m->locs[i].path);
    free(m->locs);
    free(m->toks);
    memset(m, 0, sizeof *m);
}

/* The line that defined `path`, or 0 when unknown. */
static int locate(const srcmap_t *m, const char *path)
{
    for (size_t i = m->nlocs; i-- > 0;)
        if (strcmp(m->locs[i].path, path) == 0)
            return m->locs[i].line;
    const char *dot = strrchr(path, '.');
    const char *br = strrchr(path, '[');
    int parent_line = 0;
    const char *key = path;
    if (dot || br) {
        const char *cut = dot > br ? dot : br;
        char *parent = xstrndup(path, (size_t)(cut - path));
        parent_line = locate(m, parent);
        free(parent);
        if (cut == br)
            return parent_line; /* an index: nothing to search for */
        key = cut + 1;
    }
    size_t kl = strlen(key);
    for (size_t i = 0; i < m->ntoks; i++) {
        const tok_t *t = &m->toks[i];
        if ((t->type == T_NAME || t->type == T_STR) && t->line >= parent_line && t->n == kl &&
            memcmp(t->s, key, kl) == 0)
            return t->line;
    }
    return parent_line;
}

/* ---------------------------------------------------------------------------------------
 * The sandboxed state */

typedef struct {
    luabox_t box; /* first: the allocator's ud is also the load_t */
    const char *file;
    srcmap_t map;
    config_t *cfg;
    char *err;
    size_t errlen;
    bool failed;
    bool secret_set;
} load_t;

static load_t *load_of(lua_State *L)
{
    return (load_t *)luabox_of(L);
}

/* Called by the budget hook: the error names the line the chunk is at (level 0). */
static int l_too_long(lua_State *L)
{
    luaL_where(L, 0);
    lua_pushliteral(L, "config ran too long (instruction budget exhausted)");
    lua_concat(L, 2);
    return lua_error(L);
}

/* env("NAME" [, default]): the environment variable, else `default` (nil when absent). */
static int l_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);
    if (v)
        lua_pushstring(L, v);
    else
        lua_settop(L, 2);
    return 1;
}

static void open_sandbox(lua_State *L)
{
    luabox_open_libs(L, "__gc metamethods are not allowed in the config", false);
    luabox_push_print(L, NULL, NULL, "config: ");
    lua_setglobal(L, "print");
    lua_pushcfunction(L, l_env);
    lua_setglobal(L, "env");
}

/* ---------------------------------------------------------------------------------------
 * Checking values */

static void fail(load_t *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error as "file:line: message" (line from `path` when known). */
static void fail(load_t *c, const char *path, const char *fmt, ...)
{
    if (c->failed)
        return;
    c->failed = true;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = path ? locate(&c->map, path) : 0;
    if (line > 0)
        snprintf(c->err, c->errlen, "%s:%d: %s", c->file, line, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s", c->file, msg);
}

static void fmt_size(int64_t v, char *out, size_t cap)
{
    if (v > 0 && v % GIB == 0)
        snprintf(out, cap, "%lldg", (long long)(v / GIB));
    else if (v > 0 && v % MIB == 0)
        snprintf(out, cap, "%lldm", (long long)(v / MIB));
    else if (v > 0 && v % KIB == 0)
        snprintf(out, cap, "%lldk", (long long)(v / KIB));
    else
        snprintf(out, cap, "%lld", (long long)v);
}

/* An exact decimal of v / scale ("1.5", "30", "0.001"). */
static void fmt_fixed(int64_t v, int64_t scale, int digits, char *out, size_t cap)
{
    int64_t whole = v / scale, frac = v % scale;
    if (frac == 0) {
        snprintf(out, cap, "%lld", (long long)whole);
        return;
    }
    if (frac < 0)
        frac = -frac;
    char f[24];
    snprintf(f, sizeof f, "%0*lld", digits, (long long)frac);
    size_t n = strlen(f);
    while (n > 0 && f[n - 1] == '0')
        f[--n] = '\0';
    snprintf(out, cap, "%s%lld.%s", v < 0 && whole == 0 ? "-" : "", (long long)whole, f);
}

static void fmt_value(int kind, int64_t v, char *out, size_t cap)
{
    switch (kind) {
    case K_SIZE:
        fmt_size(v, out, cap);
        break;
    case K_SEC:
        fmt_fixed(v, 1000, 3, out, cap);
        break;
    case K_CPUS:
        fmt_fixed(v, 1000000000LL, 9, out, cap);
        break;
    default:
        snprintf(out, cap, "%lld", (long long)v);
        break;
    }
}

static const char *unit_of(int kind)
{
    switch (kind) {
    case K_SEC:
        return " seconds";
    case K_MS:
        return " ms";
    case K_CPUS:
        return " CPUs";
    default:
        return "";
    }
}

/* A number with an integral value, as int64. */
static bool integral(lua_State *L, int idx, int64_t *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        return false;
    if (lua_isinteger(L, idx)) {
        *out = lua_tointeger(L, idx);
        return true;
    }
    double d = lua_tonumber(L, idx);
    if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
        return false;
    *out = (int64_t)d;
    return true;
}

/* A finite number times `scale`, rounded, as int64; false when it is not a number.
 * `*range` is set when it is a number too large to represent. */
static bool scaled(lua_State *L, int idx, double scale, int64_t *out, bool *range)
{
    *range = false;
    if (lua_type(L, idx) != LUA_TNUMBER)
        return false;
    double d = lua_tonumber(L, idx) * scale;
    if (isnan(d))
        return false;
    if (d < -9.0e18 || d > 9.0e18) {
        *range = true;
        return true;
    }
    *out = llround(d);
    return true;
}

static int check_string(load_t *c, lua_State *L, int idx, const field_t *f, const char *path,
                        char *dst)
{
    if (lua_type(L, idx) != LUA_TSTRING) {
        fail(c, path, "'%s' must be a string", path);
        return -1;
    }
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (strlen(s) != n) {
        fail(c, path, "'%s' must not contain NUL bytes", path);
        return -1;
    }
    if (n >= f->size) {
        fail(c, path, "'%s' is too long (at most %zu bytes)", path, f->size - 1);
        return -1;
    }
    if (n == 0 && (f->flags & F_NONEMPTY)) {
        fail(c, path, "'%s' must not be empty", path);
        return -1;
    }
    if (f->chars) {
        for (size_t i = 0; i < n; i++)
            if (!isalnum((unsigned char)s[i]) && !strchr(f->chars, s[i])) {
                fail(c, path, "'%s' may contain only letters, digits and '%s'", path, f->chars);
                return -1;
            }
    }
    if (f->flags & F_VERSION) {
        int64_t major, minor;
        const char *dot = strchr(s, '.');
        if (s[0] != 'v' || !dot || parse_int64(s + 1, (size_t)(dot - s - 1), 0, 99, &major) ||
            parse_int64(dot + 1, strlen(dot + 1), 0, 999, &minor)) {
            fail(c, path, "'%s' must look like \"v1.41\"", path);
            return -1;
        }
    }
    if (f->flags & F_SUBJECT) {
        bool ok = s[0] != '.' && s[n - 1] != '.' && !strstr(s, "..");
        for (size_t i = 0; i < n && ok; i++)
            ok = s[i] > ' ' && s[i] != 0x7f && s[i] != '*' && s[i] != '>';
        if (!ok) {
            fail(c, path, "'%s' must be a NATS subject without wildcards", path);
            return -1;
        }
    }
    memset(dst, 0, f->size); /* no stale bytes after the NUL: configs compare with memcmp */
    memcpy(dst, s, n);
    return 0;
}

static int check_number(load_t *c, lua_State *L, int idx, const field_t *f, const char *path,
                        int64_t *out)
{
    int64_t v = 0;
    bool range = false;
    switch (f->kind) {
    case K_INT:
        if (!integral(L, idx, &v)) {
            fail(c, path, "'%s' must be an integer", path);
            return -1;
        }
        break;
    case K_MS:
        if (!integral(L, idx, &v)) {
            fail(c, path, "'%s' must be an integer (milliseconds)", path);
            return -1;
        }
        break;
    case K_SIZE:
        if (lua_type(L, idx) == LUA_TSTRING) {
            if (size_parse(lua_tostring(L, idx), &v) != 0) {
                fail(c, path, "'%s' must be a size such as 512, \"64k\", \"64m\" or \"1g\"", path);
                return -1;
            }
        } else if (!integral(L, idx, &v)) {
            fail(c, path, "'%s' must be a size: a number of bytes or a string like \"64m\"", path);
            return -1;
        }
        break;
    case K_SEC:
        if (!scaled(L, idx, 1000.0, &v, &range)) {
            fail(c, path, "'%s' must be a number of seconds", path);
            return -1;
        }
        break;
    case K_CPUS:
        if (!scaled(L, idx, 1e9, &v, &range)) {
            fail(c, path, "'%s' must be a number of CPUs", path);
            return -1;
        }
        break;
    }
    if (range || v < f->min || v > f->max) {
        char lo[32], hi[32];
        fmt_value(f->kind, f->min, lo, sizeof lo);
        fmt_value(f->kind, f->max, hi, sizeof hi);
        fail(c, path, "'%s' must be between %s and %s%s", path, lo, hi,
             f->kind == K_SIZE ? "" : unit_of(f->kind));
        return -1;
    }
    *out = v;
    return 0;
}

static void store_number(config_t *cfg, const field_t *f, int64_t v)
{
    char *p = (char *)cfg + f->off;
    if (f->kind == K_INT && !(f->flags & F_INT64))
        *(int *)p = (int)v;
    else
        *(int64_t *)p = v;
}

/* Reports the unknown key of table `idx` that comes first in the file. `known` says
 * whether a string key belongs to the schema. Returns -1 when one was found. */
static int check_unknown(load_t *c, lua_State *L, int idx, const char *prefix,
                         bool (*known)(const void *, const char *), const void *arg)
{
    char *worst = NULL;
    int worst_line = INT_MAX;
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        char *key = NULL;
        if (lua_type(L, -2) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -2);
            if (!known(arg, k))
                key = *prefix ? xasprintf("%s.%s", prefix, k) : xstrdup(k);
        } else if (lua_isinteger(L, -2)) {
            key = xasprintf("%s[%lld]", prefix, (long long)lua_tointeger(L, -2));
        } else {
            key = xasprintf("%s[<%s>]", prefix, luaL_typename(L, -2));
        }
        lua_pop(L, 1);
        if (!key)
            continue;
        int line = locate(&c->map, key);
        if (line <= 0)
            line = INT_MAX - 1;
        if (line < worst_line || (line == worst_line && strcmp(key, worst) < 0)) {
            free(worst);
            worst = key;
            worst_line = line;
        } else {
            free(key);
        }
    }
    if (!worst)
        return 0;
    fail(c, worst, "unknown key '%s'", worst);
    free(worst);
    return -1;
}

static bool known_field(const void *arg, const char *k)
{
    for (const field_t *f = arg; f->name; f++)
        if (strcmp(f->name, k) == 0)
            return true;
    return false;
}

static int apply_fields(load_t *c, lua_State *L, int idx, const field_t *fields,
                        const char *prefix);

/* A list of strings: server.cors.origins. */
static int apply_origins(load_t *c, lua_State *L, int idx, const char *path)
{
    config_server_t *s = &c->cfg->server;
    if (lua_type(L, idx) != LUA_TTABLE) {
        fail(c, path, "'%s' must be a list of strings", path);
        return -1;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
            lua_pushvalue(L, -1);
            char *key = lua_type(L, -1) == LUA_TSTRING
                            ? xasprintf("%s.%s", path, lua_tostring(L, -1))
                            : xasprintf("%s[%s]", path, luaL_typename(L, -1));
            lua_pop(L, 2);
            fail(c, key, "unknown key '%s'", key);
            free(key);
            return -1;
        }
    }
    if (n > CONFIG_MAX_ORIGINS) {
        fail(c, path, "'%s' lists more than %d origins", path, CONFIG_MAX_ORIGINS);
        return -1;
    }
    field_t f = {NULL, K_STR, 0, sizeof s->cors_origins[0], 0, 0, NULL, NULL, F_NONEMPTY, NULL};
    for (lua_Integer i = 1; i <= n; i++) {
        char *p = xasprintf("%s[%lld]", path, (long long)i);
        lua_rawgeti(L, idx, i);
        int rc = check_string(c, L, -1, &f, p, s->cors_origins[i - 1]);
        lua_pop(L, 1);
        free(p);
        if (rc)
            return -1;
    }
    s->cors_origin_count = (int)n;
    return 0;
}

/* ---- plugin conf: Lua value -> cJSON */

static void *jcheck(void *p)
{
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t len;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xe0) == 0xc0) {
            len = 2;
            cp = b & 0x1f;
        } else if ((b & 0xf0) == 0xe0) {
            len = 3;
            cp = b & 0x0f;
        } else if ((b & 0xf8) == 0xf0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

typedef struct {
    char *name;
    bool is_int;
    lua_Integer i;
} jkey_t;

static int jkey_cmp(const void *a, const void *b)
{
    return strcmp(((const jkey_t *)a)->name, ((const jkey_t *)b)->name);
}

static cJSON *to_json(load_t *c, lua_State *L, int idx, const char *path, int depth);

static cJSON *table_to_json(load_t *c, lua_State *L, int idx, const char *path, int depth)
{
    if (depth > CONFIG_MAX_DEPTH) {
        fail(c, path, "'%s' is nested too deeply (or refers to itself)", path);
        return NULL;
    }
    if (!lua_checkstack(L, 8)) {
        fail(c, path, "'%s' is nested too deeply", path);
        return NULL;
    }
    idx = lua_absindex(L, idx);
    size_t count = 0, cap = 0;
    bool all_int = true;
    lua_Integer max = 0;
    jkey_t *keys = NULL;
    cJSON *out = NULL;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            keys = xrealloc(keys, cap * sizeof *keys);
        }
        jkey_t *k = &keys[count];
        if (lua_isinteger(L, -1)) {
            k->is_int = true;
            k->i = lua_tointeger(L, -1);
            k->name = xasprintf("%lld", (long long)k->i);
            if (k->i < 1)
                all_int = false;
            else if (k->i > max)
                max = k->i;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
            size_t n;
            const char *s = lua_tolstring(L, -1, &n);
            k->is_int = false;
            k->name = xstrndup(s, n);
            all_int = false;
            if (strlen(s) != n || !utf8_valid((const unsigned char *)s, n)) {
                count++;
                lua_pop(L, 1);
                fail(c, path, "'%s' has a key that is not valid UTF-8 text", path);
                goto done;
            }
        } else {
            const char *tn = luaL_typename(L, -1);
            lua_pop(L, 1);
            fail(c, path, "'%s' has a %s key (only string and integer keys map to JSON)", path, tn);
            goto done;
        }
        count++;
    }
    if (count > 0 && all_int && (size_t)max == count) {
        out = jcheck(cJSON_CreateArray());
        for (lua_Integer i = 1; i <= max; i++) {
            char *p = xasprintf("%s[%lld]", path, (long long)i);
            lua_rawgeti(L, idx, i);
            cJSON *v = to_json(c, L, -1, p, depth + 1);
            lua_pop(L, 1);
            free(p);
            if (!v) {
                cJSON_Delete(out);
                out = NULL;
                goto done;
            }
            cJSON_AddItemToArray(out, v);
        }
        goto done;
    }
    if (count > 1)
        qsort(keys, count, sizeof *keys, jkey_cmp);
    out = jcheck(cJSON_CreateObject());
    for (size_t i = 0; i < count; i++) {
        if (i > 0 && strcmp(keys[i].name, keys[i - 1].name) == 0) {
            fail(c, path, "'%s' has the key \"%s\" twice (as a number and a string)", path,
                 keys[i].name);
            cJSON_Delete(out);
            out = NULL;
            goto done;
        }
        char *p = xasprintf("%s.%s", path, keys[i].name);
        if (keys[i].is_int) {
            lua_rawgeti(L, idx, keys[i].i);
        } else {
            lua_pushstring(L, keys[i].name);
            lua_rawget(L, idx);
        }
        cJSON *v = to_json(c, L, -1, p, depth + 1);
        lua_pop(L, 1);
        free(p);
        if (!v) {
            cJSON_Delete(out);
            out = NULL;
            goto done;
        }
        cJSON_AddItemToObject(out, keys[i].name, v);
    }
done:
    for (size_t i = 0; i < count; i++)
        free(keys[i].name);
    free(keys);
    return out;
}

static cJSON *to_json(load_t *c, lua_State *L, int idx, const char *path, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return jcheck(cJSON_CreateBool(lua_toboolean(L, idx)));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            char n[32];
            snprintf(n, sizeof n, "%lld", (long long)lua_tointeger(L, idx));
            return jcheck(cJSON_CreateRaw(n)); /* exact, even beyond 2^53 */
        }
        if (!isfinite(lua_tonumber(L, idx))) {
            fail(c, path, "'%s' must be a finite number", path);
            return NULL;
        }
        return jcheck(cJSON_CreateNumber(lua_tonumber(L, idx)));
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (strlen(s) != n || !utf8_valid((const unsigned char *)s, n)) {
            fail(c, path, "'%s' must be valid UTF-8 text without NUL bytes", path);
            return NULL;
        }
        return jcheck(cJSON_CreateString(s));
    }
    case LUA_TTABLE:
        if (lua_getmetatable(L, idx)) {
            lua_pop(L, 1);
            fail(c, path, "'%s' must be a plain table (it has a metatable)", path);
            return NULL;
        }
        return table_to_json(c, L, idx, path, depth);
    default:
        fail(c, path, "'%s' is a %s, which cannot be converted to JSON", path,
             luaL_typename(L, idx));
        return NULL;
    }
}

/* t[k] without metamethods. */
static void rawget_field(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, k);
    lua_rawget(L, idx);
}

static bool known_plugin_key(const void *arg, const char *k)
{
    (void)arg;
    return !strcmp(k, "name") || !strcmp(k, "conf") || !strcmp(k, "fail_open");
}

static bool plugin_name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= sizeof(((config_plugin_t *)0)->name))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '_'))
            return false;
    return true;
}

static int apply_plugin(load_t *c, lua_State *L, int idx, const char *path, config_plugin_t *p)
{
    char *namepath = NULL;
    int rc = -1;
    idx = lua_absindex(L, idx);
    p->fail_open = false;
    if (lua_type(L, idx) == LUA_TSTRING) {
        namepath = xstrdup(path);
        lua_pushvalue(L, idx);
    } else if (lua_type(L, idx) == LUA_TTABLE) {
        if (check_unknown(c, L, idx, path, known_plugin_key, NULL))
            goto done;
        namepath = xasprintf("%s.name", path);
        rawget_field(L, idx, "fail_open");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TBOOLEAN) {
                char *fp = xasprintf("%s.fail_open", path);
                fail(c, fp, "'%s' must be a boolean", fp);
                free(fp);
                lua_pop(L, 1);
                goto done;
            }
            p->fail_open = lua_toboolean(L, -1);
        }
        lua_pop(L, 1);
        rawget_field(L, idx, "conf");
        if (!lua_isnil(L, -1)) {
            char *cp = xasprintf("%s.conf", path);
            cJSON *j = NULL;
            if (lua_type(L, -1) != LUA_TTABLE)
                fail(c, cp, "'%s' must be a table", cp);
            else
                j = to_json(c, L, -1, cp, 0);
            free(cp);
            if (!j) {
                lua_pop(L, 1);
                goto done;
            }
            p->conf_json = jcheck(cJSON_PrintUnformatted(j));
            cJSON_Delete(j);
        }
        lua_pop(L, 1);
        rawget_field(L, idx, "name");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            fail(c, path, "'%s' has no name", path);
            goto done;
        }
    } else {
        fail(c, path, "'%s' must be a plugin name or a table {name = ..., conf = {...}}", path);
        goto done;
    }
    size_t n = 0;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (!s || strlen(s) != n || !plugin_name_ok(s, n)) {
        lua_pop(L, 1);
        fail(c, namepath, "'%s' must be a plugin name matching [a-z0-9_]+ (at most %zu bytes)",
             namepath, sizeof p->name - 1);
        goto done;
    }
    memcpy(p->name, s, n + 1);
    lua_pop(L, 1);
    rc = 0;
done:
    if (!p->conf_json)
        p->conf_json = xstrdup("{}");
    free(namepath);
    return rc;
}

static int apply_plugins(load_t *c, lua_State *L, int idx, const char *path)
{
    config_plugins_t *ps = &c->cfg->plugins;
    if (lua_type(L, idx) != LUA_TTABLE) {
        fail(c, path, "'%s' must be a list of plugins", path);
        return -1;
    }
    lua_Integer count = 0, max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pushvalue(L, -1);
            char *key = lua_type(L, -1) == LUA_TSTRING
                            ? xasprintf("%s.%s", path, lua_tostring(L, -1))
                            : xasprintf("%s[<%s>]", path, luaL_typename(L, -1));
            lua_pop(L, 2);
            fail(c, key, "unknown key '%s'", key);
            free(key);
            return -1;
        }
        count++;
        if (lua_tointeger(L, -1) > max)
            max = lua_tointeger(L, -1);
    }
    if (max > CONFIG_MAX_PLUGINS) {
        fail(c, path, "'%s' lists more than %d plugins", path, CONFIG_MAX_PLUGINS);
        return -1;
    }
    for (lua_Integer i = 1; i <= max && count != max; i++) {
        lua_rawgeti(L, idx, i);
        bool hole = lua_isnil(L, -1);
        lua_pop(L, 1);
        if (hole) {
            char *p = xasprintf("%s[%lld]", path, (long long)i);
            fail(c, p, "'%s' is nil (a hole in the list)", p);
            free(p);
            return -1;
        }
    }
    config_free(c->cfg); /* the file's list replaces the previous one */
    for (lua_Integer i = 1; i <= max; i++) {
        config_plugin_t *p = &ps->list[i - 1];
        memset(p, 0, sizeof *p);
        ps->count = (int)i; /* so config_free releases what was made so far */
        char *pp = xasprintf("%s[%lld]", path, (long long)i);
        lua_rawgeti(L, idx, i);
        int rc = apply_plugin(c, L, -1, pp, p);
        lua_pop(L, 1);
        for (lua_Integer k = 1; rc == 0 && k < i; k++)
            if (strcmp(ps->list[k - 1].name, p->name) == 0) {
                fail(c, pp, "plugin '%s' is enabled twice", p->name);
                rc = -1;
            }
        free(pp);
        if (rc)
            return -1;
    }
    return 0;
}

static int apply_field(load_t *c, lua_State *L, int idx, const field_t *f, const char *path)
{
    char *dst = (char *)c->cfg + f->off;
    switch (f->kind) {
    case K_SECTION:
    case K_LIMIT:
        if (lua_type(L, idx) != LUA_TTABLE) {
            fail(c, path, "'%s' must be a table", path);
            return -1;
        }
        if (apply_fields(c, L, idx, f->sub, path))
            return -1;
        if (f->kind == K_LIMIT) {
            int64_t def = *(int64_t *)((char *)c->cfg + f->sub[0].off);
            int64_t max = *(int64_t *)((char *)c->cfg + f->sub[1].off);
            if (def > max) {
                char a[32], b[32];
                fmt_value(f->sub[0].kind, def, a, sizeof a);
                fmt_value(f->sub[0].kind, max, b, sizeof b);
                char *p = xasprintf("%s.default", path);
                fail(c, p, "'%s' (%s) must not be above '%s.max' (%s)", p, a, path, b);
                free(p);
                return -1;
            }
        }
        return 0;
    case K_STR:
        if (check_string(c, L, idx, f, path, dst))
            return -1;
        if (f->flags & F_SECRET)
            c->secret_set = true;
        return 0;
    case K_ENUM: {
        if (lua_type(L, idx) == LUA_TSTRING)
            for (int i = 0; f->choices[i]; i++)
                if (strcmp(lua_tostring(L, idx), f->choices[i]) == 0) {
                    str_copy(dst, f->size, f->choices[i]);
                    return 0;
                }
        char list[160] = "";
        size_t used = 0;
        for (int i = 0; f->choices[i]; i++) {
            int n =
                snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "", f->choices[i]);
            if (n > 0 && (size_t)n < sizeof list - used)
                used += (size_t)n;
        }
        fail(c, path, "'%s' must be one of %s", path, list);
        return -1;
    }
    case K_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN) {
            fail(c, path, "'%s' must be a boolean", path);
            return -1;
        }
        *(bool *)dst = lua_toboolean(L, idx);
        return 0;
    case K_ORIGINS:
        return apply_origins(c, L, idx, path);
    case K_PLUGINS:
        return apply_plugins(c, L, idx, path);
    default: {
        int64_t v;
        if (check_number(c, L, idx, f, path, &v))
            return -1;
        store_number(c->cfg, f, v);
        return 0;
    }
    }
}

/* Checks table `idx` against `fields`: unknown keys first, then each field in schema order. */
static int apply_fields(load_t *c, lua_State *L, int idx, const field_t *fields, const char *prefix)
{
    idx = lua_absindex(L, idx);
    if (!lua_checkstack(L, 8)) {
        fail(c, prefix, "'%s' is nested too deeply", prefix);
        return -1;
    }
    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        if (*prefix) {
            fail(c, prefix, "'%s' must be a plain table (it has a metatable)", prefix);
            return -1;
        }
    }
    if (check_unknown(c, L, idx, prefix, known_field, fields))
        return -1;
    for (const field_t *f = fields; f->name; f++) {
        lua_pushstring(L, f->name);
        lua_rawget(L, idx);
        int rc = 0;
        if (!lua_isnil(L, -1)) {
            char *path = *prefix ? xasprintf("%s.%s", prefix, f->name) : xstrdup(f->name);
            rc = apply_field(c, L, lua_gettop(L), f, path);
            free(path);
        }
        lua_pop(L, 1);
        if (rc)
            return -1;
    }
    return 0;
}

/* Checks that the whole configuration holds together, after every key was read. */
static int check_whole(load_t *c, bool require_secret)
{
    config_t *cfg = c->cfg;
    if (!c->secret_set) {
        const char *env = getenv("FAAS_JWT_SECRET");
        if (env && strlen(env) >= sizeof cfg->auth.jwt_secret) {
            fail(c, NULL, "FAAS_JWT_SECRET is too long (at most %zu bytes)",
                 sizeof cfg->auth.jwt_secret - 1);
            return -1;
        }
        str_copy(cfg->auth.jwt_secret, sizeof cfg->auth.jwt_secret, env ? env : "");
    }
    if (require_secret && strlen(cfg->auth.jwt_secret) < SECRET_MIN) {
        fail(c, c->secret_set ? "auth.jwt_secret" : NULL,
             "auth.jwt_secret must be at least %d bytes (set FAAS_JWT_SECRET)", SECRET_MIN);
        return -1;
    }
    /* the input travels base64-encoded inside one NATS message */
    if (cfg->limits.input_max / 3 * 4 + 16 * KIB > cfg->nats.max_payload) {
        char a[32], b[32];
        fmt_size(cfg->limits.input_max, a, sizeof a);
        fmt_size(cfg->nats.max_payload, b, sizeof b);
        fail(c, "limits.input",
             "'limits.input' (%s) does not fit base64-encoded in 'nats.max_payload' (%s)", a, b);
        return -1;
    }
    return 0;
}

/* Pushes the current values of `fields` as a table, so that a config can patch a default
 * (`server.port = 9000`) instead of restating a whole section. The secret is left out: its
 * absence is what sends the loader to FAAS_JWT_SECRET. */
static void push_fields(lua_State *L, const config_t *cfg, const field_t *fields)
{
    luaL_checkstack(L, 6, "config defaults");
    lua_newtable(L);
    for (const field_t *f = fields; f->name; f++) {
        const char *p = (const char *)cfg + f->off;
        switch (f->kind) {
        case K_SECTION:
        case K_LIMIT:
            push_fields(L, cfg, f->sub);
            break;
        case K_STR:
        case K_ENUM:
            if (f->flags & F_SECRET)
                continue;
            lua_pushstring(L, p);
            break;
        case K_BOOL:
            lua_pushboolean(L, *(const bool *)p);
            break;
        case K_ORIGINS:
            lua_createtable(L, cfg->server.cors_origin_count, 0);
            for (int i = 0; i < cfg->server.cors_origin_count; i++) {
                lua_pushstring(L, cfg->server.cors_origins[i]);
                lua_rawseti(L, -2, i + 1);
            }
            break;
        case K_PLUGINS:
            lua_newtable(L); /* the defaults enable none */
            break;
        case K_INT:
            if (!(f->flags & F_INT64)) {
                lua_pushinteger(L, *(const int *)p);
                break;
            }
            /* fall through */
        default: {
            int64_t v = *(const int64_t *)p;
            if (f->kind == K_SEC && v % 1000 != 0)
                lua_pushnumber(L, (double)v / 1000.0);
            else if (f->kind == K_SEC)
                lua_pushinteger(L, v / 1000);
            else if (f->kind == K_CPUS)
                lua_pushnumber(L, (double)v / 1e9);
            else
                lua_pushinteger(L, v);
            break;
        }
        }
        lua_setfield(L, -2, f->name);
    }
}

/* Runs in protected mode: [1] = the loaded chunk. Returns true when the config was
 * checked (ok or not: see c->failed); Lua errors propagate to the caller's pcall. */
static int l_run(lua_State *L)
{
    load_t *c = load_of(L);
    /* the chunk's own _ENV, holding the defaults; other reads fall through to the
     * sandbox globals */
    push_fields(L, c->cfg, top_fields);
    lua_newtable(L);
    lua_pushglobaltable(L);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    if (!lua_setupvalue(L, 1, 1))
        lua_pop(L, 1);
    lua_pushvalue(L, 1);
    lua_call(L, 0, 1); /* [2] = env, [3] = returned value */

    c->box.cap += 4 << 20; /* room for the checks below, whatever the chunk used */
    if (!lua_isnil(L, 3) && lua_type(L, 3) != LUA_TTABLE) {
        fail(c, NULL, "config must assign globals or return a table, not a %s",
             luaL_typename(L, 3));
        return 0;
    }
    if (apply_fields(c, L, 2, top_fields, ""))
        return 0;
    if (lua_istable(L, 3) && apply_fields(c, L, 3, top_fields, ""))
        return 0;
    return 0;
}

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    buf_t b = {0};
    char chunk[8192];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        buf_append(&b, chunk, n);
        if (b.len > CONFIG_MAX_FILE) {
            snprintf(err, errlen, "%s: file is larger than %u bytes", path, CONFIG_MAX_FILE);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "cannot read '%s': %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc) {
        buf_free(&b);
        return -1;
    }
    if (!b.data)
        buf_append(&b, "", 0);
    *out = buf_steal(&b, len);
    return 0;
}

int config_load(config_t *cfg, const char *path, bool require_secret, char *err, size_t errlen)
{
    config_t *tmp = xmalloc(sizeof *tmp);
    config_defaults(tmp);
    load_t c = {0};
    c.file = path ? path : "(defaults)";
    c.cfg = tmp;
    c.err = err;
    c.errlen = errlen;
    c.box.cap = CONFIG_MEMORY_CAP;
    c.box.max_instructions = CONFIG_INSTR_BUDGET;
    c.box.deadline = time_mono_ns() + CONFIG_DEADLINE_NS;
    c.box.raise = l_too_long;
    char *src = NULL, *chunkname = NULL;
    size_t len = 0;
    lua_State *L = NULL;
    int rc = -1;
    if (err && errlen)
        err[0] = '\0';
    if (path)
        str_copy(tmp->path, sizeof tmp->path, path);
    if (!path)
        goto check;

    if (read_file(path, &src, &len, err, errlen))
        goto done;
    lex(&c.map, src, len);
    scan(&c.map);

    L = lua_newstate(luabox_alloc, &c.box);
    if (!L) {
        snprintf(err, errlen, "%s: cannot create a Lua state", path);
        goto done;
    }
    lua_sethook(L, luabox_hook, LUA_MASKCOUNT, LUABOX_HOOK_EVERY);
    lua_pushcfunction(L, l_run); /* [1] */
    chunkname = xasprintf("@%s", path);
    int st = luaL_loadbufferx(L, src, len, chunkname, "t");
    if (st == LUA_OK) {
        open_sandbox(L);
        st = lua_pcall(L, 1, 0, 0);
    }
    if (st != LUA_OK) {
        if (st == LUA_ERRMEM)
            snprintf(err, errlen, "%s: config uses too much memory (limit %u MiB)", path,
                     CONFIG_MEMORY_CAP >> 20);
        else if (lua_type(L, -1) == LUA_TSTRING)
            snprintf(err, errlen, "%s", lua_tostring(L, -1));
        else
            snprintf(err, errlen, "%s: error object is a %s value", path, luaL_typename(L, -1));
        goto done;
    }
    if (c.failed)
        goto done;
check:
    if (check_whole(&c, require_secret))
        goto done;
    rc = 0;
done:
    if (L)
        lua_close(L); /* no finalizers can exist (see luabox.h) */
    srcmap_free(&c.map);
    free(src);
    free(chunkname);
    if (rc == 0) {
        *cfg = *tmp;
    } else {
        config_free(tmp);
        config_defaults(cfg);
    }
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Printing */

static const char *const lua_keywords[] = {
    "and",      "break",  "do",   "else", "elseif", "end",   "false", "for",
    "function", "goto",   "if",   "in",   "local",  "nil",   "not",   "or",
    "repeat",   "return", "then", "true", "until",  "while", NULL};

static bool is_identifier(const char *s)
{
    if (!*s || isdigit((unsigned char)*s))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    for (int i = 0; lua_keywords[i]; i++)
        if (strcmp(s, lua_keywords[i]) == 0)
            return false;
    return true;
}

static void print_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\%03u", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

/* Copies `uri` with the password of its user-info replaced by "***" (for NATS a bare
 * user-info is a token: masked whole). */
static void mask_uri(const char *uri, bool bare_is_secret, char *out, size_t cap)
{
    str_copy(out, cap, uri);
    const char *scheme = strstr(uri, "://");
    const char *auth = scheme ? scheme + 3 : uri;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    if (!at)
        return;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    const char *from = colon ? colon + 1 : (bare_is_secret ? auth : NULL);
    if (!from)
        return;
    snprintf(out, cap, "%.*s***%s", (int)(from - uri), uri, at);
}

static void indent(FILE *out, int depth)
{
    for (int i = 0; i < depth; i++)
        fputs("    ", out);
}

static void print_json_lua(FILE *out, const cJSON *j, int depth)
{
    if (cJSON_IsObject(j) || cJSON_IsArray(j)) {
        bool arr = cJSON_IsArray(j);
        if (!j->child) {
            fputs("{}", out);
            return;
        }
        fputs("{\n", out);
        for (const cJSON *e = j->child; e; e = e->next) {
            indent(out, depth + 1);
            if (!arr) {
                if (is_identifier(e->string)) {
                    fprintf(out, "%s = ", e->string);
                } else {
                    fputc('[', out);
                    print_string(out, e->string);
                    fputs("] = ", out);
                }
            }
            print_json_lua(out, e, depth + 1);
            fputs(",\n", out);
        }
        indent(out, depth);
        fputc('}', out);
    } else if (cJSON_IsString(j)) {
        print_string(out, j->valuestring);
    } else if (cJSON_IsBool(j)) {
        fputs(cJSON_IsTrue(j) ? "true" : "false", out);
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        char n[40];
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            fprintf(out, "%lld", (long long)d);
        } else {
            snprintf(n, sizeof n, "%.15g", d); /* shortest that reads back the same */
            if (strtod(n, NULL) != d)
                snprintf(n, sizeof n, "%.17g", d);
            fputs(n, out);
        }
    } else {
        fputs("nil", out);
    }
}

static void print_fields(FILE *out, const config_t *cfg, const field_t *fields, int depth)
{
    for (const field_t *f = fields; f->name; f++) {
        const char *p = (const char *)cfg + f->off;
        char v[64];
        indent(out, depth);
        fprintf(out, "%s = ", f->name);
        switch (f->kind) {
        case K_SECTION:
        case K_LIMIT:
            fputs("{\n", out);
            print_fields(out, cfg, f->sub, depth + 1);
            indent(out, depth);
            fputc('}', out);
            break;
        case K_STR:
        case K_ENUM:
            if (f->flags & F_SECRET) {
                fputs(*p ? "\"***\"" : "nil", out);
            } else if (f->flags & F_URI) {
                char masked[1100];
                mask_uri(p, f->off == OFF(nats.url), masked, sizeof masked);
                print_string(out, masked);
            } else {
                print_string(out, p);
            }
            break;
        case K_BOOL:
            fputs(*(const bool *)p ? "true" : "false", out);
            break;
        case K_ORIGINS:
            fputs("{", out);
            for (int i = 0; i < cfg->server.cors_origin_count; i++) {
                fputs(i ? ", " : " ", out);
                print_string(out, cfg->server.cors_origins[i]);
            }
            fputs(cfg->server.cors_origin_count ? " }" : "}", out);
            break;
        case K_PLUGINS:
            fputs("{\n", out);
            for (int i = 0; i < cfg->plugins.count; i++) {
                const config_plugin_t *pl = &cfg->plugins.list[i];
                indent(out, depth + 1);
                fprintf(out, "{\n");
                indent(out, depth + 2);
                fputs("name = ", out);
                print_string(out, pl->name);
                fputs(",\n", out);
                indent(out, depth + 2);
                fputs("conf = ", out);
                cJSON *j = pl->conf_json ? cJSON_Parse(pl->conf_json) : NULL;
                if (j)
                    print_json_lua(out, j, depth + 2);
                else
                    fputs("{}", out);
                cJSON_Delete(j);
                fputs(",\n", out);
                indent(out, depth + 2);
                fprintf(out, "fail_open = %s,\n", pl->fail_open ? "true" : "false");
                indent(out, depth + 1);
                fputs("},\n", out);
            }
            indent(out, depth);
            fputc('}', out);
            break;
        default: {
            int64_t n;
            if (f->kind == K_INT && !(f->flags & F_INT64))
                n = *(const int *)p;
            else
                n = *(const int64_t *)p;
            fmt_value(f->kind, n, v, sizeof v);
            if (f->kind == K_SIZE && !isdigit((unsigned char)v[strlen(v) - 1]))
                fprintf(out, "\"%s\"", v);
            else
                fputs(v, out);
            break;
        }
        }
        fputs(depth ? ",\n" : "\n", out);
    }
}

void config_print(const config_t *cfg, FILE *out)
{
    fprintf(out, "-- effective configuration");
    if (cfg->path[0]) {
        fputs(" from ", out);
        print_string(out, cfg->path);
    }
    fputs(" (secrets masked)\n", out);
    print_fields(out, cfg, top_fields, 0);
}
