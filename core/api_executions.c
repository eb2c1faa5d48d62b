/* Executions: POST .../execute/{id} (sync or async), GET /executions/{id}[/stdout] and
 * GET /functions/{id}/executions. A sync request subscribes to execution.<id> before the
 * request is published, suspends, and is resumed by the result or by the sync-wait deadline
 * (then 202 with the id), whichever comes first. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "message.h"

enum { WANT_JSON, WANT_TEXT, WANT_RAW };
enum { WAIT_PENDING, WAIT_DONE };

typedef struct wait {
    api_t *app;
    http_request_t *req;
    char execution_id[ID_LEN + 1];
    int want;
    atomic_int state;
    bus_waiter_t *waiter;
    uint64_t deadline_ns;
    bool listed;
    struct wait *prev, *next;
} wait_t;

struct api_waits {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t sweeper;
    bool stop;
    wait_t *head;
};

static int accept_mode(http_request_t *req)
{
    const char *accept = http_request_header(req, "Accept");
    if (!accept)
        return WANT_JSON;
    if (strstr(accept, "application/octet-stream"))
        return WANT_RAW;
    if (strncmp(accept, "text/plain", 10) == 0)
        return WANT_TEXT;
    return WANT_JSON;
}

/* Answers a finished execution in the form the client asked for. */
static void respond_execution(http_request_t *req, const store_execution_t *e, int want,
                              int status)
{
    char code[16];
    http_response_header(req, "X-Execution-Id", e->id);
    http_response_header(req, "X-Execution-Status", e->status);
    if (e->has_exit_code) {
        snprintf(code, sizeof code, "%d", e->exit_code);
        http_response_header(req, "X-Exit-Code", code);
    }
    if (want == WANT_TEXT) {
        const char *r = e->result ? e->result : "";
        http_respond(req, status, "text/plain; charset=utf-8", r, strlen(r));
    } else if (want == WANT_RAW) {
        http_respond(req, status, "application/octet-stream", e->out ? e->out : "", e->out_len);
    } else {
        http_respond_json(req, status, api_execution_json(e, true));
    }
}

/* 202 with the execution's Location: async requests, and sync ones past the wait limit. */
static void respond_accepted(http_request_t *req, const char *execution_id, const char *message)
{
    char loc[128];
    snprintf(loc, sizeof loc, "/api/v1/executions/%s", execution_id);
    http_response_header(req, "Location", loc);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "executionId", execution_id);
    cJSON_AddStringToObject(o, "status", "queued");
    if (message)
        cJSON_AddStringToObject(o, "message", message);
    http_respond_json(req, 202, o);
}

/* cnats thread: the result of a sync execution arrived. */
static void on_result(void *arg, const char *data, size_t len)
{
    wait_t *w = arg;
    store_execution_t e = {0};
    char err[256];
    if (message_result_decode(data, len, &e, err, sizeof err) != 0) {
        log_kv(LOG_WARN, "executionId", w->execution_id, "malformed result: %s", err);
        return;
    }
    int expected = WAIT_PENDING;
    if (atomic_compare_exchange_strong(&w->state, &expected, WAIT_DONE)) {
        /* persist before answering so a GET right after sees it (the recorder's write of
         * the same result is idempotent) */
        w->app->store->ops->execution_update(w->app->store, &e);
        respond_execution(w->req, &e, w->want, 201);
        http_request_resume(w->req);
    }
    store_execution_clear(&e);
}

static void *sweeper_main(void *arg)
{
    api_waits_t *ws = arg;
    pthread_mutex_lock(&ws->lock);
    while (!ws->stop) {
        uint64_t now = time_mono_ns(), next = now + 1000000000ull;
        for (wait_t *w = ws->head; w; w = w->next) {
            if (w->deadline_ns <= now) {
                int expected = WAIT_PENDING;
                if (atomic_compare_exchange_strong(&w->state, &expected, WAIT_DONE)) {
                    atomic_fetch_add(&w->app->exec_sync_timeouts, 1);
                    respond_accepted(w->req, w->execution_id,
                                     "the execution is still running: poll its Location");
                    http_request_resume(w->req);
                }
            } else if (w->deadline_ns < next) {
                next = w->deadline_ns;
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t wait_ns = next > now ? next - now : 0;
        ts.tv_sec += (time_t)(wait_ns / 1000000000ull);
        ts.tv_nsec += (long)(wait_ns % 1000000000ull);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ws->cond, &ws->lock, &ts);
    }
    pthread_mutex_unlock(&ws->lock);
    return NULL;
}

api_waits_t *api_waits_new(void)
{
    api_waits_t *ws = xcalloc(1, sizeof *ws);
    pthread_mutex_init(&ws->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ws->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&ws->sweeper, NULL, sweeper_main, ws) != 0) {
        log_error("cannot start the sync-wait sweeper thread");
        abort();
    }
    return ws;
}

void api_waits_free(api_waits_t *ws)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->lock);
    ws->stop = true;
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->lock);
    pthread_join(ws->sweeper, NULL);
    pthread_cond_destroy(&ws->cond);
    pthread_mutex_destroy(&ws->lock);
    free(ws);
}

static void wait_list(api_waits_t *ws, wait_t *w)
{
    pthread_mutex_lock(&ws->lock);
    w->next = ws->head;
    if (ws->head)
        ws->head->prev = w;
    ws->head = w;
    w->listed = true;
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->lock);
}

/* Runs once when the request ends, whatever happened. */
static void wait_free(void *p)
{
    wait_t *w = p;
    api_waits_t *ws = w->app->waits;
    if (w->listed) {
        pthread_mutex_lock(&ws->lock);
        if (w->prev)
            w->prev->next = w->next;
        else
            ws->head = w->next;
        if (w->next)
            w->next->prev = w->prev;
        pthread_mutex_unlock(&ws->lock);
    }
    bus_result_unsubscribe(w->waiter); /* after this on_result cannot run for w */
    free(w);
}

typedef struct {
    api_t *app;
    const char *user_id;
} count_arg_t;

static int64_t count_active(void *arg)
{
    count_arg_t *c = arg;
    int64_t n;
    return c->app->store->ops->execution_count_active(c->app->store, c->user_id, &n) == STORE_OK
               ? n
               : -1;
}

static void fill_ctx(plugin_ctx_t *ctx, count_arg_t *count, http_request_t *req,
                     const store_user_t *u, const store_function_t *f, const char *execution_id)
{
    *ctx = (plugin_ctx_t){.user_id = u->id, .email = u->email, .request_id = req->request_id,
                          .function = f, .input = req->body, .input_len = req->body_len,
                          .execution_id = execution_id, .function_count = -1,
                          .active_executions = -1, .count_active = count_active,
                          .count_arg = count};
}

int api_execution_create(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t user;
    store_function_t f = {0};
    message_request_t msg = {0};
    char *data = NULL;
    wait_t *w = NULL;
    int ret = HTTP_DONE;

    if (api_function_load(req, &user, &f) != 0)
        goto done;
    if ((int64_t)req->body_len > app->cfg.limits.input_max) {
        http_respond_error(req, 413, "input is larger than %lld bytes",
                           (long long)app->cfg.limits.input_max);
        goto done;
    }
    char execution_id[ID_LEN + 1];
    id_new(execution_id);
    str_copy(req->execution_id, sizeof req->execution_id, execution_id);

    if (plugin_host_count(app->plugins, "validate_execution") > 0 ||
        plugin_host_count(app->plugins, "quota") > 0) {
        plugin_ctx_t ctx;
        plugin_verdict_t v = {0};
        count_arg_t count = {app, user.id};
        fill_ctx(&ctx, &count, req, &user, &f, execution_id);
        plugin_validate_execution(app->plugins, &ctx, &v);
        if (!v.status)
            plugin_quota(app->plugins, &ctx, &v);
        if (v.status) {
            api_verdict_error(req, &v);
            goto done;
        }
    }

    const char *async = http_request_query(req, "async");
    bool is_async = async && (strcmp(async, "true") == 0 || strcmp(async, "1") == 0);
    store_execution_t e = {.duration_ms = -1, .created_at = time_now_ms()};
    str_copy(e.id, sizeof e.id, execution_id);
    str_copy(e.function_id, sizeof e.function_id, f.id);
    str_copy(e.owner, sizeof e.owner, user.id);
    str_copy(e.status, sizeof e.status, "queued");
    int rc = app->store->ops->execution_insert(app->store, &e);
    if (rc != STORE_OK) {
        api_store_error(req, rc, "execution");
        goto done;
    }

    str_copy(msg.execution_id, sizeof msg.execution_id, execution_id);
    str_copy(msg.user_id, sizeof msg.user_id, user.id);
    msg.func = f;
    msg.input = (unsigned char *)req->body;
    msg.input_len = req->body_len;
    msg.attempt = 1;
    msg.created_at = e.created_at;
    size_t len = 0;
    data = message_request_encode(&msg, &len);

    if (!is_async) {
        w = xcalloc(1, sizeof *w);
        w->app = app;
        w->req = req;
        w->want = accept_mode(req);
        str_copy(w->execution_id, sizeof w->execution_id, execution_id);
        atomic_init(&w->state, WAIT_PENDING);
        w->waiter = bus_result_subscribe(app->bus, execution_id, on_result, w);
        w->deadline_ns = time_mono_ns() + (uint64_t)app->cfg.server.sync_wait_ms * 1000000ull;
        req->data = w;
        req->data_free = wait_free;
        wait_list(app->waits, w);
    }
    if ((!is_async && !w->waiter) ||
        bus_request_publish(app->bus, execution_id, data, len) != BUS_OK) {
        atomic_fetch_add(&app->bus_errors, 1);
        if (w)
            atomic_store(&w->state, WAIT_DONE);
        str_copy(e.status, sizeof e.status, "error");
        str_copy(e.reason, sizeof e.reason, "queue_unavailable");
        e.finished_at = time_now_ms();
        app->store->ops->execution_update(app->store, &e);
        http_response_header(req, "Retry-After", "1");
        http_respond_error(req, 503, "execution queue unavailable");
        goto done;
    }
    atomic_fetch_add(&app->exec_accepted, 1);
    if (is_async) {
        respond_accepted(req, execution_id, NULL);
        goto done;
    }
    ret = HTTP_SUSPEND;
done:
    free(data);
    store_function_clear(&f);
    return ret;
}

/* Loads the execution of the route's {id} for the authenticated user (404 otherwise). */
static int load_execution(http_request_t *req, store_execution_t *e)
{
    api_t *app = req->app;
    store_user_t user;
    if (api_authenticate(req, &user) != 0)
        return -1;
    int rc = id_valid(req->params[0])
                 ? app->store->ops->execution_get(app->store, user.id, req->params[0], e)
                 : STORE_ENOTFOUND;
    if (rc != STORE_OK) {
        api_store_error(req, rc, "execution");
        return -1;
    }
    str_copy(req->execution_id, sizeof req->execution_id, e->id);
    return 0;
}

int api_execution_get(http_request_t *req)
{
    store_execution_t e = {0};
    if (load_execution(req, &e) == 0)
        respond_execution(req, &e, accept_mode(req) == WANT_RAW ? WANT_RAW : WANT_JSON, 200);
    store_execution_clear(&e);
    return HTTP_DONE;
}

int api_execution_stdout(http_request_t *req)
{
    store_execution_t e = {0};
    if (load_execution(req, &e) == 0)
        respond_execution(req, &e, WANT_RAW, 200);
    store_execution_clear(&e);
    return HTTP_DONE;
}

int api_execution_list(http_request_t *req)
{
    api_t *app = req->app;
    store_user_t user;
    store_function_t f = {0};
    if (api_function_load(req, &user, &f) != 0)
        goto done;
    int64_t limit = 20;
    const char *l = http_request_query(req, "limit");
    if (l && parse_int64(l, strlen(l), 1, 100, &limit) != 0) {
        http_respond_error(req, 400, "limit must be an integer from 1 to 100");
        goto done;
    }
    const char *cursor = http_request_query(req, "cursor");
    if (cursor && *cursor && !id_valid(cursor)) {
        http_respond_error(req, 400, "cursor is not a valid execution id");
        goto done;
    }
    store_execution_t *list = NULL;
    size_t n = 0;
    int rc = app->store->ops->execution_list(app->store, user.id, f.id, (size_t)limit, cursor,
                                             &list, &n);
    if (rc == STORE_EINVAL) { /* a cursor this user cannot see */
        http_respond_error(req, 400, "cursor is not an execution of this function");
        goto done;
    }
    if (rc != STORE_OK) {
        api_store_error(req, rc, "executions");
        goto done;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "executions");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, api_execution_json(&list[i], false));
    if (n == (size_t)limit && n > 0)
        cJSON_AddStringToObject(o, "nextCursor", list[n - 1].id);
    else
        cJSON_AddNullToObject(o, "nextCursor");
    store_execution_list_free(list, n);
    http_respond_json(req, 200, o);
done:
    store_function_clear(&f);
    return HTTP_DONE;
}
