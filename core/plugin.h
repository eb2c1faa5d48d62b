/* The Lua plugin host. Only plugin.c (and config.c, for config.lua) include the Lua headers.
 * Plugins are loaded from cfg->plugins into one lua_State per thread (created on first use
 * by that thread, never shared). Every hook call runs with an instruction/time budget and a
 * memory cap. */
#ifndef FAAS_PLUGIN_H
#define FAAS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

typedef struct plugin_host plugin_host_t;

/* What a hook decided. status 0 = continue. Otherwise a 4xx (or 500 when a plugin failed
 * closed) with a message for the client, and retry_after seconds (quota, 0 when none). */
typedef struct {
    int status;
    char message[256];
    int64_t retry_after;
    char plugin[64]; /* which plugin decided (for the log) */
} plugin_verdict_t;

/* Read-only facts a hook may look at. Any pointer may be NULL. */
typedef struct {
    const char *user_id;
    const char *email;
    const char *request_id;
    const store_function_t *function;
    const char *input;       /* execution input bytes */
    size_t input_len;
    const char *execution_id;
    int64_t function_count;    /* the user's functions (ctx.function_count), -1 unknown */
    int64_t active_executions; /* the user's queued/running executions, -1 unknown */
    /* When active_executions is -1: counts them the first time a plugin reads
     * ctx.active_executions during a hook call (a store query only plugins that look pay
     * for). Returns -1 when unknown. May be NULL. */
    int64_t (*count_active)(void *arg);
    void *count_arg;
} plugin_ctx_t;

/* Zeroes `c` and marks the counts unknown (-1). Use it before filling a ctx. */
void plugin_ctx_init(plugin_ctx_t *c);

/* Loads and checks every enabled plugin once (name, version, priority, schema against conf)
 * in a scratch state. NULL with "plugin 'x': message" in err. `store` backs faas.counter
 * (borrowed, may be NULL: counters then fail as plugin errors); it must outlive the host.
 * Uses cfg->plugins only (dir, lua_dir, time_budget_ms, memory_limit, list) and copies what
 * it needs. With plugins enabled, lua_dir must hold prelude.lua. Every function below is
 * safe to call from any thread: each thread gets its own lua_State on its first call, which
 * the thread's exit frees. */
plugin_host_t *plugin_host_new(const config_t *cfg, store_t *store, char *err, size_t errlen);
/* Frees the host and every thread's state. Call it once no other thread uses the host.
 * NULL is a no-op. */
void plugin_host_free(plugin_host_t *h);

/* Re-reads the plugin files with a new config: builds aside, swaps only if all loaded.
 * 0, or -1 with the error in err and the old set still in use. */
int plugin_host_reload(plugin_host_t *h, const config_t *cfg, char *err, size_t errlen);

/* Number of enabled plugins that define `hook`. */
int plugin_host_count(plugin_host_t *h, const char *hook);

/* API-side hooks. `fn_json` is the function as the API returns it (a cJSON* object,
 * borrowed, not modified). `v` is always filled: status 0 when every plugin let it through.
 * A plugin error gives 500 "internal error in plugin" unless that plugin is fail_open. */
void plugin_validate_function(plugin_host_t *h, void *fn_json, const plugin_ctx_t *ctx,
                              plugin_verdict_t *v);
void plugin_validate_execution(plugin_host_t *h, const plugin_ctx_t *ctx, plugin_verdict_t *v);
void plugin_quota(plugin_host_t *h, const plugin_ctx_t *ctx, plugin_verdict_t *v);

/* Worker-side hook: each plugin's postprocess(result, ctx) in order may modify the result.
 * `result_json` is a cJSON* object (the result message) modified in place. */
void plugin_postprocess(plugin_host_t *h, void *result_json, const plugin_ctx_t *ctx,
                        plugin_verdict_t *v);

/* Prometheus text appended to `buf` (a buf_t*): faas_plugin_seconds_total,
 * faas_plugin_calls_total and faas_plugin_errors_total, labelled {plugin, hook}. */
void plugin_metrics_write(plugin_host_t *h, void *buf);

#endif
