/* config.lua: evaluated in a throw-away sandboxed Lua state, checked key by key into these
 * structs. Sizes are bytes, durations are milliseconds unless the name says otherwise. */
#ifndef FAAS_CONFIG_H
#define FAAS_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_PLUGINS 32
#define CONFIG_MAX_ORIGINS 16

typedef struct {
    char listen[64];        /* server.listen, "127.0.0.1" */
    int port;               /* server.port, 8080 */
    int threads;            /* server.threads: libmicrohttpd pool size, 4 */
    int64_t body_limit;     /* server.body_limit, "1m": 413 beyond */
    int64_t sync_wait_ms;   /* server.sync_wait (s), 30: then 202 with the id */
    int64_t shutdown_grace_ms; /* server.shutdown_grace (s), 10 */
    bool cors_enabled;      /* server.cors.enabled, false */
    int cors_origin_count;  /* server.cors.origins, {"*"} */
    char cors_origins[CONFIG_MAX_ORIGINS][256];
    char public_url[256];   /* server.public_url, "" (Location headers are relative then) */
} config_server_t;

typedef struct {
    char jwt_secret[512];   /* auth.jwt_secret: >= 32 bytes, usually env("FAAS_JWT_SECRET") */
    int64_t token_ttl_ms;   /* auth.token_ttl (s), 86400 */
    int64_t argon2_memory;  /* auth.argon2_memory, "19m" (>= 19 MiB) */
    int argon2_ops;         /* auth.argon2_ops, 2 (>= 2) */
    int hash_threads;       /* auth.hash_threads: threads for password hashing, 1 */
} config_auth_t;

typedef struct {
    char driver[16];        /* store.driver: "sqlite" | "mongodb" */
    char path[512];         /* store.path (sqlite), "data/faas.db" */
    char uri[1024];         /* store.uri (mongodb), "mongodb://127.0.0.1:27017" */
    char database[128];     /* store.database (mongodb), "faas" */
    int64_t timeout_ms;     /* store.timeout (ms), 2000 */
} config_store_t;

typedef struct {
    char url[512];              /* nats.url, "nats://127.0.0.1:4222" */
    char stream[64];            /* nats.stream, "FUNCTIONS" (WorkQueue, file storage) */
    char subject[128];          /* nats.subject, "functions" */
    char results_stream[64];    /* nats.results_stream, "RESULTS" (execution.*) */
    char consumer[64];          /* nats.consumer: workers' shared durable, "workers" */
    char recorder[64];          /* nats.recorder: API recorders' shared durable, "api-recorder" */
    int max_deliver;            /* nats.max_deliver, 5 */
    int64_t ack_wait_ms;        /* nats.ack_wait (s), 30 */
    int64_t results_max_age_ms; /* nats.results_max_age (s), 86400 */
    int64_t connect_timeout_ms; /* nats.connect_timeout (ms), 1000 */
    int64_t max_payload;        /* nats.max_payload, "8m": what our nats-server allows */
} config_nats_t;

typedef struct {
    char id[64];              /* worker.id: default hostname-pid */
    int concurrency;          /* worker.concurrency, 4 */
    char docker_socket[256];  /* worker.docker_socket, "/var/run/docker.sock" */
    char docker_api[16];      /* worker.docker_api, "v1.41" */
    char pull_policy[16];     /* worker.pull_policy: "never" | "if-missing" | "always" */
    int64_t reap_interval_ms; /* worker.reap_interval (s), 60 */
    int64_t output_limit;     /* worker.output_limit, "1m": per stream, then output_truncated */
    char listen[64];          /* worker.listen: health/metrics, "127.0.0.1" */
    int port;                 /* worker.port: 0 = no health/metrics server, 9091 */
} config_worker_t;

/* One limit: the operator's default and the maximum a function may ask for. */
typedef struct {
    int64_t def, max;
} config_limit_t;

typedef struct {
    config_limit_t timeout_ms; /* limits.timeout = {default = 30, max = 300} (s) */
    config_limit_t memory;     /* limits.memory = {default = "128m", max = "1g"} */
    config_limit_t nano_cpus;  /* limits.cpus = {default = 1, max = 2} (CPUs) */
    int64_t pids;              /* limits.pids, 64 */
    int64_t nofile;            /* limits.nofile, 256 */
    int64_t tmpfs;             /* limits.tmpfs, "16m" */
    int64_t input_max;         /* limits.input, "1m" */
    int64_t env_max;           /* limits.env: bytes of all env names+values, "16k" */
    bool allow_network;        /* limits.allow_network, false */
    char network[64];          /* limits.network: what an allowed function joins, "bridge" */
} config_limits_t;

typedef struct {
    char name[64];    /* plugins.enabled[i].name: plugins/<name>.lua */
    char *conf_json;  /* plugins.enabled[i].conf as JSON text ("{}" when absent); owned */
    bool fail_open;   /* plugins.enabled[i].fail_open, false */
} config_plugin_t;

typedef struct {
    char dir[512];              /* plugins.dir, "plugins" */
    char lua_dir[512];          /* plugins.lua_dir, "lua" */
    int64_t time_budget_ms;     /* plugins.time_budget (ms) per hook call, 50 */
    int64_t memory_limit;       /* plugins.memory_limit per state, "16m" */
    int count;
    config_plugin_t list[CONFIG_MAX_PLUGINS];
} config_plugins_t;

typedef struct {
    char path[512]; /* the file it came from */
    config_server_t server;
    config_auth_t auth;
    config_store_t store;
    config_nats_t nats;
    config_worker_t worker;
    config_limits_t limits;
    config_plugins_t plugins;
    char log_level[16]; /* log.level, "info" */
} config_t;

/* Fills `cfg` with the built-in defaults (what an empty config.lua gives). Allocates
 * nothing; worker.id becomes "<hostname>-<pid>". */
void config_defaults(config_t *cfg);

/* Loads `path` over the defaults. Returns 0, or -1 with "file:line: message" in `err`.
 * Unknown keys, wrong types and out-of-range values are errors. The caller frees with
 * config_free(). `require_secret`: the JWT secret must be set and >= 32 bytes.
 * When the file does not set auth.jwt_secret, it comes from getenv("FAAS_JWT_SECRET").
 * `path` NULL: no file, the defaults (plus that environment variable) are checked.
 * `cfg` is output only; on failure it holds the defaults (nothing to free).
 * Thread-safe (no global state; reads the environment). */
int config_load(config_t *cfg, const char *path, bool require_secret, char *err, size_t errlen);

/* Prints the effective configuration as Lua that config_load() reads back to the same
 * values, except secrets: auth.jwt_secret prints as "***" (nil when unset) and a password
 * in store.uri / nats.url as "***". */
void config_print(const config_t *cfg, FILE *out);

/* Frees the plugins' conf_json strings; `cfg` then holds no plugins. NULL is a no-op. */
void config_free(config_t *cfg);

#endif
