/* The route table and what every handler shares: JSON bodies, authentication, error
 * mapping and the JSON views of functions and executions. */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "message.h"

const http_route_t api_routes[] = {
    {"POST", "/api/v1/users", api_user_create},
    {"POST", "/api/v1/users/login", api_user_login},
    {"GET", "/api/v1/users/me", api_user_me},
    {"DELETE", "/api/v1/users/me", api_user_delete},
    {"POST", "/api/v1/functions", api_function_create},
    {"GET", "/api/v1/functions/me", api_function_list},
    {"GET", "/api/v1/functions/{id}", api_function_get},
    {"DELETE", "/api/v1/functions/{id}", api_function_delete},
    {"POST", "/api/v1/functions/{id}", api_execution_create},
    {"POST", "/api/v1/functions/execute/{id}", api_execution_create},
    {"GET", "/api/v1/functions/{id}/executions", api_execution_list},
    {"GET", "/api/v1/executions/{id}", api_execution_get},
    {"GET", "/api/v1/executions/{id}/stdout", api_execution_stdout},
    {"GET", "/healthz", api_healthz},
    {"GET", "/readyz", api_readyz},
    {"GET", "/metrics", api_metrics},
    {"GET", "/api/v1/openapi.json", api_openapi},
    {NULL, NULL, NULL},
};

cJSON *api_body_object(http_request_t *req)
{
    if (req->body_len == 0) {
        http_respond_error(req, 400, "request body must be a JSON object");
        return NULL;
    }
    if (memchr(req->body, '\0', req->body_len)) {
        http_respond_error(req, 400, "request body contains a NUL byte");
        return NULL;
    }
    /* the body is NUL-terminated; cJSON counts that NUL in the length when it must check
     * that nothing follows the value */
    const char *end = NULL;
    cJSON *json = cJSON_ParseWithLengthOpts(req->body, req->body_len + 1, &end, 1);
    if (!json) {
        http_respond_error(req, 400, "malformed JSON");
        return NULL;
    }
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        http_respond_error(req, 400, "request body must be a JSON object");
        return NULL;
    }
    return json;
}

int api_authenticate(http_request_t *req, store_user_t *user)
{
    api_t *app = req->app;
    size_t len = 0;
    const char *token = auth_bearer(http_request_header(req, "Authorization"), &len);
    if (!token) {
        http_response_header(req, "WWW-Authenticate", "Bearer");
        http_respond_error(req, 401, "missing or malformed Authorization header");
        return -1;
    }
    char *copy = xstrndup(token, len);
    auth_claims_t claims;
    int rc = auth_token_verify(&app->cfg.auth, copy, &claims);
    free(copy);
    if (rc != AUTH_OK) {
        http_response_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(req, 401, rc == AUTH_EEXPIRED   ? "token expired"
                                     : rc == AUTH_ENOTYET ? "token not yet valid"
                                                          : "invalid token");
        return -1;
    }
    rc = app->store->ops->user_get(app->store, claims.user_id, user);
    if (rc == STORE_EUNAVAIL) {
        api_store_error(req, rc, "user");
        return -1;
    }
    if (rc != STORE_OK || user->token_version != claims.token_version) {
        http_response_header(req, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
        http_respond_error(req, 401, "invalid token");
        return -1;
    }
    str_copy(req->user_id, sizeof req->user_id, user->id);
    return 0;
}

void api_store_error(http_request_t *req, int code, const char *what)
{
    api_t *app = req->app;
    switch (code) {
    case STORE_ENOTFOUND:
        http_respond_error(req, 404, "%s not found", what);
        break;
    case STORE_EEXIST:
        http_respond_error(req, 409, "%s already exists", what);
        break;
    case STORE_EUNAVAIL:
        atomic_fetch_add(&app->store_errors, 1);
        http_response_header(req, "Retry-After", "1");
        http_respond_error(req, 503, "store unavailable");
        break;
    default:
        atomic_fetch_add(&app->store_errors, 1);
        log_kv(LOG_ERROR, "requestId", req->request_id, "store error on %s: %s", what,
               store_strerror(code));
        http_respond_error(req, 500, "internal error");
    }
}

void api_verdict_error(http_request_t *req, const plugin_verdict_t *v)
{
    if (v->status == 429 && v->retry_after > 0) {
        char s[32];
        snprintf(s, sizeof s, "%lld", (long long)v->retry_after);
        http_response_header(req, "Retry-After", s);
    }
    http_respond_error(req, v->status, "%s", v->message[0] ? v->message : "rejected");
}

cJSON *api_function_json(const store_function_t *f)
{
    cJSON *o = cJSON_CreateObject();
    char ts[32];
    cJSON_AddStringToObject(o, "functionId", f->id);
    cJSON_AddStringToObject(o, "id", f->id);
    cJSON_AddStringToObject(o, "name", f->name);
    cJSON_AddStringToObject(o, "image", f->image);
    cJSON *env = f->env_json ? cJSON_Parse(f->env_json) : NULL;
    cJSON_AddItemToObject(o, "env", env ? env : cJSON_CreateObject());
    if (f->timeout_ms)
        cJSON_AddNumberToObject(o, "timeout", (double)f->timeout_ms / 1000.0);
    else
        cJSON_AddNullToObject(o, "timeout");
    if (f->memory)
        cJSON_AddNumberToObject(o, "memory", (double)f->memory);
    else
        cJSON_AddNullToObject(o, "memory");
    if (f->nano_cpus)
        cJSON_AddNumberToObject(o, "cpus", (double)f->nano_cpus / 1e9);
    else
        cJSON_AddNullToObject(o, "cpus");
    cJSON_AddBoolToObject(o, "network", f->network);
    time_rfc3339(f->created_at, ts);
    cJSON_AddStringToObject(o, "createdAt", ts);
    return o;
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
    char ts[32];
    if (ms > 0) {
        time_rfc3339(ms, ts);
        cJSON_AddStringToObject(o, key, ts);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

cJSON *api_execution_json(const store_execution_t *e, bool with_output)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "executionId", e->id);
    cJSON_AddStringToObject(o, "functionId", e->function_id);
    cJSON_AddStringToObject(o, "status", e->status);
    if (e->reason[0])
        cJSON_AddStringToObject(o, "reason", e->reason);
    else
        cJSON_AddNullToObject(o, "reason");
    if (e->has_exit_code)
        cJSON_AddNumberToObject(o, "exitCode", e->exit_code);
    else
        cJSON_AddNullToObject(o, "exitCode");
    if (with_output) {
        cJSON_AddStringToObject(o, "result", e->result ? e->result : "");
        char *out = utf8_sanitize(e->out ? e->out : "", e->out_len);
        char *err = utf8_sanitize(e->err ? e->err : "", e->err_len);
        cJSON_AddStringToObject(o, "stdout", out);
        cJSON_AddStringToObject(o, "stderr", err);
        free(out);
        free(err);
    }
    if (e->duration_ms >= 0)
        cJSON_AddNumberToObject(o, "durationMs", (double)e->duration_ms);
    else
        cJSON_AddNullToObject(o, "durationMs");
    add_time(o, "createdAt", e->created_at);
    add_time(o, "startedAt", e->started_at);
    add_time(o, "finishedAt", e->finished_at);
    if (e->worker[0])
        cJSON_AddStringToObject(o, "worker", e->worker);
    else
        cJSON_AddNullToObject(o, "worker");
    cJSON_AddNumberToObject(o, "attempts", e->attempts);
    /* fields postprocess plugins added ("json" from the output plugin, ...) */
    cJSON *extra = with_output && e->extra_json ? cJSON_Parse(e->extra_json) : NULL;
    cJSON *item;
    cJSON_ArrayForEach(item, extra) {
        if (!cJSON_HasObjectItem(o, item->string))
            cJSON_AddItemToObject(o, item->string, cJSON_Duplicate(item, 1));
    }
    cJSON_Delete(extra);
    return o;
}
