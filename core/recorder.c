/* The API-side recorder: every result published on execution.* is persisted to the store by
 * exactly one API replica (a shared durable consumer), even when the API that accepted the
 * request is gone. Executions whose deliveries ran out end as `error`, never silently. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "message.h"

static void count_status(api_t *app, const char *status)
{
    if (strcmp(status, "succeeded") == 0)
        atomic_fetch_add(&app->exec_succeeded, 1);
    else if (strcmp(status, "failed") == 0)
        atomic_fetch_add(&app->exec_failed, 1);
    else if (strcmp(status, "timed_out") == 0)
        atomic_fetch_add(&app->exec_timed_out, 1);
    else
        atomic_fetch_add(&app->exec_error, 1);
}

static int record(void *arg, const char *data, size_t len)
{
    api_t *app = arg;
    store_execution_t e = {0};
    char err[256];
    if (message_result_decode(data, len, &e, err, sizeof err) != 0) {
        log_warn("dropping malformed result: %s", err);
        return 0; /* acked: a redelivery cannot fix it */
    }
    int rc = app->store->ops->execution_update(app->store, &e);
    if (rc == STORE_OK || rc == STORE_ENOTFOUND) {
        /* ENOTFOUND: the user or function was deleted meanwhile */
        count_status(app, e.status);
        log_kv(LOG_INFO, "executionId", e.id, "recorded result '%s'", e.status);
    } else {
        atomic_fetch_add(&app->store_errors, 1);
        log_kv(LOG_WARN, "executionId", e.id, "cannot record result: %s", store_strerror(rc));
    }
    store_execution_clear(&e);
    return rc == STORE_OK || rc == STORE_ENOTFOUND ? 0 : -1;
}

static int dead_letter(void *arg, const char *data, size_t len)
{
    api_t *app = arg;
    message_request_t r = {0};
    char err[256];
    if (message_request_decode(data, len, &r, err, sizeof err) != 0) {
        log_warn("dropping malformed dead-lettered request: %s", err);
        return 0;
    }
    store_execution_t e = {.duration_ms = -1, .finished_at = time_now_ms()};
    str_copy(e.id, sizeof e.id, r.execution_id);
    str_copy(e.function_id, sizeof e.function_id, r.func.id);
    str_copy(e.owner, sizeof e.owner, r.user_id);
    str_copy(e.status, sizeof e.status, "error");
    str_copy(e.reason, sizeof e.reason, "retries_exhausted");
    e.result = xasprintf("execution failed after %d deliveries", app->cfg.nats.max_deliver);
    e.attempts = app->cfg.nats.max_deliver;
    size_t n = 0;
    char *msg = message_result_encode(&e, &n);
    /* published like any result: sync waiters get it and the recorder persists it */
    int rc = bus_result_publish(app->bus, e.id, msg, n);
    log_kv(LOG_WARN, "executionId", e.id, "deliveries exhausted: execution ends as error");
    free(msg);
    free(e.result);
    message_request_clear(&r);
    return rc == BUS_OK ? 0 : -1;
}

/* A worker took an execution: queued -> running (the store never lets this overwrite a final
 * state, so a notice that arrives after the result changes nothing). */
static void started(void *arg, const char *data, size_t len)
{
    api_t *app = arg;
    cJSON *o = cJSON_ParseWithLength(data, len);
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "executionId"));
    const char *worker = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "worker"));
    cJSON *at = cJSON_GetObjectItemCaseSensitive(o, "startedAt");
    cJSON *attempt = cJSON_GetObjectItemCaseSensitive(o, "attempt");
    if (id && id_valid(id)) {
        store_execution_t e = {.duration_ms = -1};
        str_copy(e.id, sizeof e.id, id);
        str_copy(e.status, sizeof e.status, "running");
        str_copy(e.worker, sizeof e.worker, worker ? worker : "");
        e.started_at = cJSON_IsNumber(at) ? (int64_t)at->valuedouble : time_now_ms();
        e.attempts = cJSON_IsNumber(attempt) ? attempt->valueint : 0;
        app->store->ops->execution_update(app->store, &e);
    }
    cJSON_Delete(o);
}

int api_recorder_start(api_t *app)
{
    if (bus_started_subscribe(app->bus, started, app) != BUS_OK)
        log_warn("cannot subscribe to started notices: executions show queued until done");
    return bus_recorder_start(app->bus, record, dead_letter, app);
}
