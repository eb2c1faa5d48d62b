/* The REST API: the application state shared by the handlers (api_*.c), the route table and
 * the helpers every handler uses (JSON bodies, authentication, error mapping). */
#ifndef FAAS_API_H
#define FAAS_API_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>

#include "auth.h"
#include "bus.h"
#include "config.h"
#include "http.h"
#include "plugin.h"
#include "store.h"

typedef struct api_waits api_waits_t;

typedef struct {
    config_t cfg;
    store_t *store;
    bus_t *bus;
    plugin_host_t *plugins;
    http_server_t *http;
    api_waits_t *waits;        /* sync executions waiting for their result */
    int64_t started_at;
    /* executions by final status, for /metrics */
    atomic_llong exec_accepted, exec_succeeded, exec_failed, exec_timed_out, exec_error;
    atomic_llong exec_sync_timeouts, store_errors, bus_errors;
} api_t;

/* The route table (NULL-terminated), for http_server_new. */
extern const http_route_t api_routes[];

/* Parses the request body as a JSON object; on failure answers 400 and returns NULL. The
 * caller owns the result (cJSON_Delete). */
cJSON *api_body_object(http_request_t *req);

/* Authenticates the request (Bearer token, signature, exp/nbf, user still exists, token
 * version current). Fills `user` and req->user_id and returns 0, or answers 401 and returns
 * -1 (or 503 when the store is down). */
int api_authenticate(http_request_t *req, store_user_t *user);

/* Answers the error for a store code: ENOTFOUND -> 404 `what` not found, EUNAVAIL -> 503,
 * others 500. */
void api_store_error(http_request_t *req, int code, const char *what);

/* Answers a plugin verdict (4xx/429 with Retry-After/500). */
void api_verdict_error(http_request_t *req, const plugin_verdict_t *v);

/* JSON views the API returns. */
cJSON *api_function_json(const store_function_t *f);
cJSON *api_execution_json(const store_execution_t *e, bool with_output);

/* Loads the function of the route's {id} for the authenticated user (404 otherwise). */
int api_function_load(http_request_t *req, store_user_t *user, store_function_t *f);

/* Sync execution waits (api_executions.c). */
api_waits_t *api_waits_new(void);
void api_waits_free(api_waits_t *w);

/* The recorder: persists every result from RESULTS and ends dead-lettered executions. */
int api_recorder_start(api_t *app);

/* Handlers, by file. */
int api_user_create(http_request_t *req);
int api_user_login(http_request_t *req);
int api_user_me(http_request_t *req);
int api_user_delete(http_request_t *req);
int api_function_create(http_request_t *req);
int api_function_list(http_request_t *req);
int api_function_get(http_request_t *req);
int api_function_delete(http_request_t *req);
int api_execution_create(http_request_t *req);
int api_execution_get(http_request_t *req);
int api_execution_stdout(http_request_t *req);
int api_execution_list(http_request_t *req);
int api_healthz(http_request_t *req);
int api_readyz(http_request_t *req);
int api_metrics(http_request_t *req);
int api_openapi(http_request_t *req);

#endif
