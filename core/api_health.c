/* /healthz (the process answers), /readyz (store and NATS reachable), /metrics, and the
 * OpenAPI document. */
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "api.h"

int api_healthz(http_request_t *req)
{
    http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    return HTTP_DONE;
}

int api_readyz(http_request_t *req)
{
    api_t *app = req->app;
    bool store_ok = app->store->ops->ping(app->store) == STORE_OK;
    bool nats_ok = bus_connected(app->bus);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", store_ok && nats_ok ? "ready" : "unavailable");
    cJSON *checks = cJSON_AddObjectToObject(o, "checks");
    cJSON_AddStringToObject(checks, "store", store_ok ? "ok" : "down");
    cJSON_AddStringToObject(checks, "nats", nats_ok ? "ok" : "down");
    if (!store_ok || !nats_ok) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s%s%s unavailable", store_ok ? "" : "store",
                 !store_ok && !nats_ok ? " and " : "", nats_ok ? "" : "nats");
        cJSON_AddNumberToObject(o, "statusCode", 503);
        cJSON_AddStringToObject(o, "message", msg);
        cJSON_AddStringToObject(o, "error", "Service Unavailable");
    }
    http_respond_json(req, store_ok && nats_ok ? 200 : 503, o);
    return HTTP_DONE;
}

/* core/openapi.json, linked in by the Makefile */
extern const char _binary_core_openapi_json_start[], _binary_core_openapi_json_end[];

int api_openapi(http_request_t *req)
{
    /* two symbols of one blob: their distance as addresses is its length */
    size_t len = (size_t)((uintptr_t)_binary_core_openapi_json_end -
                          (uintptr_t)_binary_core_openapi_json_start);
    http_respond(req, 200, "application/json", _binary_core_openapi_json_start, len);
    return HTTP_DONE;
}

int api_metrics(http_request_t *req)
{
    api_t *app = req->app;
    buf_t b = {0};
    buf_appendf(&b,
                "# HELP faas_executions_accepted_total Executions queued by this API process.\n"
                "# TYPE faas_executions_accepted_total counter\n"
                "faas_executions_accepted_total %lld\n"
                "# HELP faas_executions_total Executions recorded by this API process by final "
                "status.\n"
                "# TYPE faas_executions_total counter\n"
                "faas_executions_total{status=\"succeeded\"} %lld\n"
                "faas_executions_total{status=\"failed\"} %lld\n"
                "faas_executions_total{status=\"timed_out\"} %lld\n"
                "faas_executions_total{status=\"error\"} %lld\n"
                "# HELP faas_sync_wait_timeouts_total Sync executions answered 202 at the wait "
                "limit.\n"
                "# TYPE faas_sync_wait_timeouts_total counter\n"
                "faas_sync_wait_timeouts_total %lld\n"
                "# HELP faas_store_errors_total Store operations that failed.\n"
                "# TYPE faas_store_errors_total counter\n"
                "faas_store_errors_total %lld\n"
                "# HELP faas_nats_errors_total NATS operations that failed.\n"
                "# TYPE faas_nats_errors_total counter\n"
                "faas_nats_errors_total %lld\n",
                (long long)app->exec_accepted, (long long)app->exec_succeeded,
                (long long)app->exec_failed, (long long)app->exec_timed_out,
                (long long)app->exec_error, (long long)app->exec_sync_timeouts,
                (long long)app->store_errors, (long long)app->bus_errors);
    int64_t pending = -1, ack_pending = -1;
    if (bus_queue_depth(app->bus, &pending, &ack_pending) == BUS_OK)
        buf_appendf(&b,
                    "# HELP faas_queue_pending Executions waiting in the queue.\n"
                    "# TYPE faas_queue_pending gauge\n"
                    "faas_queue_pending %lld\n"
                    "# HELP faas_queue_ack_pending Executions delivered to workers, not yet "
                    "acknowledged.\n"
                    "# TYPE faas_queue_ack_pending gauge\n"
                    "faas_queue_ack_pending %lld\n",
                    (long long)pending, (long long)ack_pending);
    buf_appendf(&b, "# HELP faas_up 1 when the process is serving.\n# TYPE faas_up gauge\n"
                    "faas_up 1\n");
    http_metrics_write(app->http, &b);
    plugin_metrics_write(app->plugins, &b);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return HTTP_DONE;
}
