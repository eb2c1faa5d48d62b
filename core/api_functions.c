/* /api/v1/functions: register (image reference, name, env, limits), list, get, delete. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "imageref.h"
#include "log.h"

#define ENV_MAX_VARS 256

static bool name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || !isalnum((unsigned char)s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return false;
    return true;
}

static bool env_name_valid(const char *s)
{
    if (!(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (const char *p = s + 1; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    return strlen(s) <= 128;
}

/* Reads the optional limits of a function into f, answering 400 on a bad value. */
static int read_limits(http_request_t *req, cJSON *body, store_function_t *f)
{
    api_t *app = req->app;
    const config_limits_t *lim = &app->cfg.limits;
    cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "timeout")) && !cJSON_IsNull(v)) {
        double max_s = (double)lim->timeout_ms.max / 1000.0;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0) {
            http_respond_error(req, 400, "timeout must be a positive number of seconds");
            return -1;
        }
        if (v->valuedouble > max_s) {
            http_respond_error(req, 400, "timeout must be at most %g seconds", max_s);
            return -1;
        }
        f->timeout_ms = (int64_t)ceil(v->valuedouble * 1000.0);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "memory")) && !cJSON_IsNull(v)) {
        int64_t bytes = -1;
        if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
            v->valuedouble > 0 && v->valuedouble < 9e15)
            bytes = (int64_t)v->valuedouble;
        else if (cJSON_IsString(v) && size_parse(v->valuestring, &bytes) != 0)
            bytes = -1;
        if (bytes < 0) {
            http_respond_error(req, 400, "memory must be a number of bytes or a size like \"64m\"");
            return -1;
        }
        if (bytes < 6 * 1024 * 1024) {
            http_respond_error(req, 400, "memory must be at least 6m");
            return -1;
        }
        if (bytes > lim->memory.max) {
            http_respond_error(req, 400, "memory must be at most %lld bytes",
                               (long long)lim->memory.max);
            return -1;
        }
        f->memory = bytes;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "cpus")) && !cJSON_IsNull(v)) {
        double max = (double)lim->nano_cpus.max / 1e9;
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < 0.01) {
            http_respond_error(req, 400, "cpus must be a number of CPUs of at least 0.01");
            return -1;
        }
        if (v->valuedouble > max) {
            http_respond_error(req, 400, "cpus must be at most %g", max);
            return -1;
        }
        f->nano_cpus = (int64_t)(v->valuedouble * 1e9);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "network")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) {
            http_respond_error(req, 400, "network must be a boolean");
            return -1;
        }
        if (cJSON_IsTrue(v) && !lim->allow_network) {
            http_respond_error(req, 400, "network access for functions is disabled by the operator");
            return -1;
        }
        f->network = cJSON_IsTrue(v);
    }
    return 0;
}

static int read_env(http_request_t *req, cJSON *body, store_function_t *f)
{
    api_t *app = req->app;
    cJSON *env = cJSON_GetObjectItemCaseSensitive(body, "env");
    if (!env || cJSON_IsNull(env)) {
        f->env_json = xstrdup("{}");
        return 0;
    }
    if (!cJSON_IsObject(env)) {
        http_respond_error(req, 400, "env must be an object of strings");
        return -1;
    }
    int64_t total = 0;
    int count = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, env) {
        if (!env_name_valid(item->string)) {
            http_respond_error(req, 400, "env name '%.64s' is not a valid variable name",
                               item->string);
            return -1;
        }
        if (!cJSON_IsString(item)) {
            http_respond_error(req, 400, "env value of '%.64s' must be a string", item->string);
            return -1;
        }
        total += (int64_t)strlen(item->string) + (int64_t)strlen(item->valuestring) + 2;
        if (++count > ENV_MAX_VARS || total > app->cfg.limits.env_max) {
            http_respond_error(req, 400, "env is too large (at most %d variables, %lld bytes)",
                               ENV_MAX_VARS, (long long)app->cfg.limits.env_max);
            return -1;
        }
    }
    f->env_json = cJSON_PrintUnformatted(env);
    return 0;
}

static const char *const known_fields[] = {"image", "name", "env", "timeout", "memory",
                                           "cpus", "network", NULL};

int api_function_create(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t user;
    store_function_t f = {0};
    cJSON *body = NULL, *view = NULL;
    if (api_authenticate(req, &user) != 0)
        goto done;
    if (!(body = api_body_object(req)))
        goto done;
    cJSON *item;
    cJSON_ArrayForEach(item, body) {
        bool known = false;
        for (int i = 0; known_fields[i]; i++)
            known = known || strcmp(item->string, known_fields[i]) == 0;
        if (!known) {
            http_respond_error(req, 400, "unknown field '%.64s'", item->string);
            goto done;
        }
    }
    cJSON *image = cJSON_GetObjectItemCaseSensitive(body, "image");
    if (!cJSON_IsString(image)) {
        http_respond_error(req, 400, image ? "image must be a string" : "image is required");
        goto done;
    }
    imageref_t ref;
    char why[256];
    if (imageref_parse(image->valuestring, &ref, why, sizeof why) != 0) {
        http_respond_error(req, 400, "invalid image reference: %s", why);
        goto done;
    }
    str_copy(f.image, sizeof f.image, image->valuestring);
    cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    if (name && !cJSON_IsNull(name)) {
        if (!cJSON_IsString(name) || !name_valid(name->valuestring)) {
            http_respond_error(req, 400,
                               "name must be 1 to 64 characters: letters, digits, '.', '_' "
                               "and '-', starting with a letter or digit");
            goto done;
        }
        str_copy(f.name, sizeof f.name, name->valuestring);
    } else {
        imageref_default_name(&ref, f.name, sizeof f.name);
    }
    if (read_limits(req, body, &f) != 0 || read_env(req, body, &f) != 0)
        goto done;
    str_copy(f.owner, sizeof f.owner, user.id);

    if (plugin_host_count(app->plugins, "validate_function") > 0) {
        plugin_verdict_t v = {0};
        plugin_ctx_t ctx = {.user_id = user.id, .email = user.email,
                            .request_id = req->request_id, .function = &f,
                            .function_count = -1, .active_executions = -1};
        int64_t n = 0;
        if (app->store->ops->function_count(app->store, user.id, &n) == STORE_OK)
            ctx.function_count = n;
        view = api_function_json(&f);
        plugin_validate_function(app->plugins, view, &ctx, &v);
        if (v.status) {
            api_verdict_error(req, &v);
            goto done;
        }
    }
    int rc = app->store->ops->function_insert(app->store, &f);
    if (rc == STORE_EEXIST) {
        http_respond_error(req, 409, "function '%s' already exists", f.name);
        goto done;
    }
    if (rc != STORE_OK) {
        api_store_error(req, rc, "function");
        goto done;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "Function created successfully.");
    cJSON_AddStringToObject(o, "functionId", f.id);
    cJSON_AddStringToObject(o, "name", f.name);
    char loc[128];
    snprintf(loc, sizeof loc, "/api/v1/functions/%s", f.id);
    http_response_header(req, "Location", loc);
    http_respond_json(req, 201, o);
done:
    cJSON_Delete(view);
    cJSON_Delete(body);
    store_function_clear(&f);
    return HTTP_DONE;
}

int api_function_list(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t user;
    if (api_authenticate(req, &user) != 0)
        return HTTP_DONE;
    store_function_t *list = NULL;
    size_t n = 0;
    int rc = app->store->ops->function_list(app->store, user.id, &list, &n);
    if (rc != STORE_OK) {
        api_store_error(req, rc, "functions");
        return HTTP_DONE;
    }
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_function_json(&list[i]));
    store_function_list_free(list, n);
    http_respond_json(req, 200, arr);
    return HTTP_DONE;
}

/* Loads the function named by the route's {id} for the authenticated user; answers 404 for
 * malformed ids, unknown ids and other users' functions alike. */
static int load_function(http_request_t *req, store_user_t *user, store_function_t *f)
{
    api_t *app = req->app;
    if (api_authenticate(req, user) != 0)
        return -1;
    if (!id_valid(req->params[0])) {
        http_respond_error(req, 404, "function not found");
        return -1;
    }
    int rc = app->store->ops->function_get(app->store, user->id, req->params[0], f);
    if (rc != STORE_OK) {
        api_store_error(req, rc, "function");
        return -1;
    }
    return 0;
}

int api_function_get(http_request_t *req)
{
    store_user_t user;
    store_function_t f = {0};
    if (load_function(req, &user, &f) == 0)
        http_respond_json(req, 200, api_function_json(&f));
    store_function_clear(&f);
    return HTTP_DONE;
}

int api_function_delete(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t user;
    if (api_authenticate(req, &user) != 0)
        return HTTP_DONE;
    int rc = id_valid(req->params[0])
                 ? app->store->ops->function_delete(app->store, user.id, req->params[0])
                 : STORE_ENOTFOUND;
    if (rc != STORE_OK) {
        api_store_error(req, rc, "function");
        return HTTP_DONE;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "message", "Function deleted successfully.");
    http_respond_json(req, 200, o);
    return HTTP_DONE;
}

/* Shared with api_executions.c. */
int api_function_load(http_request_t *req, store_user_t *user, store_function_t *f)
{
    return load_function(req, user, f);
}
