#include "worker.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "docker.h"
#include "log.h"
#include "message.h"
#include "runner.h"

#define MAX_HOOKS 8
#define MAX_SLOTS 256

/* Latency histogram in seconds, Prometheus style. */
static const double buckets[] = {0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])
typedef struct {
    atomic_llong count[NBUCKETS + 1];
    atomic_llong total;
    _Atomic double sum;
} histogram_t;

static void histogram_observe(histogram_t *h, double seconds)
{
    size_t i = 0;
    while (i < NBUCKETS && seconds > buckets[i])
        i++;
    atomic_fetch_add(&h->count[i], 1);
    atomic_fetch_add(&h->total, 1);
    double old = atomic_load(&h->sum);
    while (!atomic_compare_exchange_weak(&h->sum, &old, old + seconds))
        ;
}

static void histogram_write(const histogram_t *h, const char *name, const char *help, buf_t *b)
{
    buf_appendf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long long cum = 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        cum += atomic_load(&h->count[i]);
        buf_appendf(b, "%s_bucket{le=\"%g\"} %lld\n", name, buckets[i], cum);
    }
    cum += atomic_load(&h->count[NBUCKETS]);
    buf_appendf(b, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %g\n%s_count %lld\n", name, cum, name,
                atomic_load(&h->sum), name, (long long)atomic_load(&h->total));
}

typedef struct {
    struct worker *w;
    pthread_t thread;
    int index;
    char running[ID_LEN + 1]; /* execution id in flight, "" when idle (under w->lock) */
} slot_t;

struct worker {
    const config_t *cfg;
    bus_t *bus;
    plugin_host_t *plugins;
    worker_hook_t hooks[MAX_HOOKS];
    int nhooks;
    slot_t *slots;
    int nslots;
    pthread_t reaper;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    atomic_bool stop;
    atomic_bool docker_ok;
    atomic_int busy;
    atomic_llong by_status[5]; /* succeeded failed timed_out error retried */
    atomic_llong reaped, redelivered;
    histogram_t run_latency, total_latency;
};

static const char *status_names[] = {"succeeded", "failed", "timed_out", "error", "retried"};

static void count_status(worker_t *w, const char *status)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(status, status_names[i]) == 0) {
            atomic_fetch_add(&w->by_status[i], 1);
            return;
        }
}

worker_t *worker_new(const config_t *cfg, bus_t *bus, plugin_host_t *plugins)
{
    worker_t *w = xcalloc(1, sizeof *w);
    w->cfg = cfg;
    w->bus = bus;
    w->plugins = plugins;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    return w;
}

void worker_hook_add(worker_t *w, const worker_hook_t *hook)
{
    if (w->nhooks < MAX_HOOKS)
        w->hooks[w->nhooks++] = *hook;
}

bool worker_docker_ok(worker_t *w)
{
    return atomic_load(&w->docker_ok);
}

static void keepalive(void *arg)
{
    bus_msg_in_progress(arg);
}

/* The spec of a run: the function's limits, each capped by the operator's maximum. */
static void spec_fill(worker_t *w, const message_request_t *r, runner_spec_t *s)
{
    const config_limits_t *lim = &w->cfg->limits;
    const store_function_t *f = &r->func;
#define PICK(asked, lim_) ((asked) > 0 && (asked) <= (lim_).max ? (asked) : (asked) > 0 ? (lim_).max : (lim_).def)
    *s = (runner_spec_t){
        .execution_id = r->execution_id,
        .function_id = f->id,
        .worker_id = w->cfg->worker.id,
        .image = f->image,
        .env_json = f->env_json,
        .timeout_ms = PICK(f->timeout_ms, lim->timeout_ms),
        .memory = PICK(f->memory, lim->memory),
        .nano_cpus = PICK(f->nano_cpus, lim->nano_cpus),
        .pids = lim->pids,
        .nofile = lim->nofile,
        .tmpfs = lim->tmpfs,
        .output_limit = w->cfg->worker.output_limit,
        .network = f->network && lim->allow_network ? lim->network : "none",
        .pull_policy = w->cfg->worker.pull_policy,
        .input = r->input,
        .input_len = r->input_len,
    };
#undef PICK
}

/* The result message of a finished run, through the hooks; the caller frees. */
static char *result_message(worker_t *w, const message_request_t *r, const runner_spec_t *spec,
                            runner_result_t *res, int attempt, size_t *len)
{
    store_execution_t e = {.duration_ms = res->duration_ms,
                           .started_at = res->started_at,
                           .finished_at = res->finished_at,
                           .attempts = attempt,
                           .created_at = r->created_at};
    str_copy(e.id, sizeof e.id, r->execution_id);
    str_copy(e.function_id, sizeof e.function_id, r->func.id);
    str_copy(e.owner, sizeof e.owner, r->user_id);
    str_copy(e.status, sizeof e.status, res->status);
    str_copy(e.reason, sizeof e.reason, res->reason);
    str_copy(e.worker, sizeof e.worker, w->cfg->worker.id);
    e.has_exit_code = res->exit_code >= 0;
    e.exit_code = res->exit_code;
    e.result = res->result.data ? res->result.data
                                : (strcmp(res->status, "error") == 0 ? res->message : "");
    e.out = res->out.data;
    e.out_len = res->out.len;
    e.err = res->err.data;
    e.err_len = res->err.len;
    char *data = message_result_encode(&e, len);
    bool any_after = w->nhooks > 0 || (w->plugins && plugin_host_count(w->plugins, "postprocess"));
    if (!any_after)
        return data;
    cJSON *json = cJSON_ParseWithLength(data, *len);
    if (!json)
        return data;
    /* the exact bytes travel in stdoutB64/stderrB64; when a hook rewrites the text, the
     * rewritten text must win, so the stale exact copy is dropped below */
    static const char *const streams[][2] = {{"stdout", "stdoutB64"}, {"stderr", "stderrB64"}};
    char *before[2];
    for (int i = 0; i < 2; i++) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, streams[i][0]));
        before[i] = xstrdup(t ? t : "");
    }
    for (int i = 0; i < w->nhooks; i++)
        if (w->hooks[i].after_run)
            w->hooks[i].after_run(w->hooks[i].arg, json, spec, r);
    if (w->plugins && plugin_host_count(w->plugins, "postprocess")) {
        plugin_ctx_t ctx = {.user_id = r->user_id, .function = &r->func,
                            .execution_id = r->execution_id, .function_count = -1,
                            .active_executions = -1};
        plugin_verdict_t v = {0};
        plugin_postprocess(w->plugins, json, &ctx, &v);
        if (v.status) {
            /* failed closed: the client gets a neutral error instead of unfiltered output */
            cJSON *fresh = cJSON_CreateObject();
            const char *keep[] = {"executionId", "functionId", "userId", "durationMs", "worker",
                                  "attempts", "startedAt", "finishedAt", NULL};
            for (int i = 0; keep[i]; i++) {
                cJSON *item = cJSON_GetObjectItemCaseSensitive(json, keep[i]);
                if (item)
                    cJSON_AddItemToObject(fresh, keep[i], cJSON_Duplicate(item, 1));
            }
            cJSON_AddStringToObject(fresh, "status", "error");
            cJSON_AddStringToObject(fresh, "reason", "postprocess_failed");
            cJSON_AddStringToObject(fresh, "result", v.message);
            cJSON_Delete(json);
            json = fresh;
        }
    }
    for (int i = 0; i < 2; i++) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(json, streams[i][0]));
        if (!t || strcmp(t, before[i]) != 0)
            cJSON_DeleteItemFromObjectCaseSensitive(json, streams[i][1]);
        free(before[i]);
    }
    char *out = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);
    if (!out)
        return data;
    free(data);
    *len = strlen(out);
    return out;
}

static int publish_with_retry(worker_t *w, const char *id, const char *data, size_t len)
{
    for (int i = 0; i < 5 && !atomic_load(&w->stop); i++) {
        if (bus_result_publish(w->bus, id, data, len) == BUS_OK)
            return 0;
        usleep(200000 * (useconds_t)(i + 1));
    }
    return bus_result_publish(w->bus, id, data, len) == BUS_OK ? 0 : -1;
}

static void handle(slot_t *slot, docker_t *d, bus_msg_t *m)
{
    worker_t *w = slot->w;
    const config_t *cfg = w->cfg;
    size_t len = 0;
    const char *data = bus_msg_data(m, &len);
    message_request_t r = {0};
    char err[256];
    if (message_request_decode(data, len, &r, err, sizeof err) != 0) {
        log_warn("dropping malformed execution request: %s", err);
        bus_msg_term(m);
        return;
    }
    int attempt = bus_msg_delivered(m);
    if (attempt < 1)
        attempt = 1;
    bool last = attempt >= cfg->nats.max_deliver;
    log_kv(LOG_INFO, "executionId", r.execution_id, "running '%s' (attempt %d)", r.func.image,
           attempt);

    pthread_mutex_lock(&w->lock);
    str_copy(slot->running, sizeof slot->running, r.execution_id);
    pthread_mutex_unlock(&w->lock);
    atomic_fetch_add(&w->busy, 1);

    runner_spec_t spec;
    spec_fill(w, &r, &spec);
    spec.attempt = attempt;
    runner_result_t res = {0};
    char refused[256] = "";
    for (int i = 0; i < w->nhooks && !refused[0]; i++)
        if (w->hooks[i].before_create &&
            w->hooks[i].before_create(w->hooks[i].arg, &spec, &r, refused, sizeof refused) != 0 &&
            !refused[0])
            str_copy(refused, sizeof refused, "refused by a worker hook");
    if (refused[0]) {
        str_copy(res.status, sizeof res.status, "error");
        str_copy(res.reason, sizeof res.reason, "rejected");
        str_copy(res.message, sizeof res.message, refused);
        res.exit_code = -1;
        res.duration_ms = -1;
    } else {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "executionId", r.execution_id);
        cJSON_AddStringToObject(n, "worker", cfg->worker.id);
        cJSON_AddNumberToObject(n, "startedAt", (double)time_now_ms());
        cJSON_AddNumberToObject(n, "attempt", attempt);
        char *notice = cJSON_PrintUnformatted(n);
        cJSON_Delete(n);
        if (notice)
            bus_started_publish(w->bus, r.execution_id, notice, strlen(notice));
        free(notice);
        runner_run(d, cfg->worker.docker_socket, cfg->worker.docker_api, &spec, &res, true,
                   keepalive, m);
    }
    atomic_store(&w->docker_ok, !(res.transient && strcmp(res.reason, "docker_error") == 0));

    if (res.transient && !last) {
        /* the engine failed, not the function: try again later, maybe on another worker (at
         * once when this worker is stopping) */
        log_kv(LOG_WARN, "executionId", r.execution_id, "transient failure (%s): retrying",
               res.message);
        atomic_fetch_add(&w->by_status[4], 1);
        bus_msg_nak(m, atomic_load(&w->stop) ? 0 : 1000LL * attempt);
    } else {
        if (res.duration_ms >= 0)
            histogram_observe(&w->run_latency, (double)res.duration_ms / 1000.0);
        if (r.created_at > 0)
            histogram_observe(&w->total_latency,
                              (double)(time_now_ms() - r.created_at) / 1000.0);
        size_t n = 0;
        char *msg = result_message(w, &r, &spec, &res, attempt, &n);
        if (publish_with_retry(w, r.execution_id, msg, n) == 0) {
            bus_msg_ack(m);
            count_status(w, res.status);
            log_kv(LOG_INFO, "executionId", r.execution_id, "finished: %s%s%s in %lld ms",
                   res.status, res.reason[0] ? " " : "", res.reason, (long long)res.duration_ms);
        } else {
            log_kv(LOG_ERROR, "executionId", r.execution_id,
                   "cannot publish the result: leaving it for redelivery");
            bus_msg_nak(m, 1000);
        }
        free(msg);
    }
    /* removal is off the critical path: the result is already out */
    if (res.container_id[0])
        docker_container_remove(d, res.container_id, true);

    atomic_fetch_sub(&w->busy, 1);
    pthread_mutex_lock(&w->lock);
    slot->running[0] = '\0';
    pthread_mutex_unlock(&w->lock);
    runner_result_clear(&res);
    message_request_clear(&r);
}

static void *slot_main(void *arg)
{
    slot_t *slot = arg;
    worker_t *w = slot->w;
    docker_t *d = docker_new(w->cfg->worker.docker_socket, w->cfg->worker.docker_api);
    while (!atomic_load(&w->stop)) {
        bus_msg_t *msgs[1];
        int n = 0;
        int rc = bus_worker_fetch(w->bus, 1, 1000, msgs, &n);
        if (rc == BUS_ETIMEOUT)
            continue;
        if (rc != BUS_OK) {
            usleep(500000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (atomic_load(&w->stop)) {
                bus_msg_nak(msgs[i], 0); /* give it back at once */
            } else {
                handle(slot, d, msgs[i]);
            }
            bus_msg_free(msgs[i]);
        }
    }
    docker_free(d);
    return NULL;
}

static void reap_once(worker_t *w, docker_t *d)
{
    const char *keep[MAX_SLOTS];
    char ids[MAX_SLOTS][ID_LEN + 1];
    size_t n = 0;
    pthread_mutex_lock(&w->lock);
    for (int i = 0; i < w->nslots; i++)
        if (w->slots[i].running[0]) {
            str_copy(ids[n], sizeof ids[n], w->slots[i].running);
            keep[n] = ids[n];
            n++;
        }
    pthread_mutex_unlock(&w->lock);
    int removed = runner_reap(d, w->cfg->worker.id, keep, n);
    if (removed > 0) {
        atomic_fetch_add(&w->reaped, removed);
        log_info("reaped %d orphaned container(s)", removed);
    }
}

static void *reaper_main(void *arg)
{
    worker_t *w = arg;
    docker_t *d = docker_new(w->cfg->worker.docker_socket, w->cfg->worker.docker_api);
    bool was_ok = true;
    while (!atomic_load(&w->stop)) {
        bool ok = docker_ping(d) == DOCKER_OK;
        atomic_store(&w->docker_ok, ok);
        if (!ok && was_ok)
            log_error("no Docker engine answers on '%s': executions wait until it does",
                      w->cfg->worker.docker_socket);
        if (ok && !was_ok)
            log_info("Docker engine reachable on '%s'", w->cfg->worker.docker_socket);
        was_ok = ok;
        if (ok)
            reap_once(w, d);
        /* sleep reap_interval, waking at once on stop */
        pthread_mutex_lock(&w->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ms = ok ? w->cfg->worker.reap_interval_ms : 2000;
        ts.tv_sec += (time_t)(ms / 1000);
        ts.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (!atomic_load(&w->stop))
            pthread_cond_timedwait(&w->cond, &w->lock, &ts);
        pthread_mutex_unlock(&w->lock);
    }
    docker_free(d);
    return NULL;
}

int worker_start(worker_t *w)
{
    w->nslots = w->cfg->worker.concurrency;
    if (w->nslots > MAX_SLOTS)
        w->nslots = MAX_SLOTS;
    w->slots = xcalloc((size_t)w->nslots, sizeof *w->slots);
    if (pthread_create(&w->reaper, NULL, reaper_main, w) != 0)
        return -1;
    for (int i = 0; i < w->nslots; i++) {
        w->slots[i].w = w;
        w->slots[i].index = i;
        if (pthread_create(&w->slots[i].thread, NULL, slot_main, &w->slots[i]) != 0)
            return -1;
    }
    return 0;
}

void worker_free(worker_t *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->nslots; i++)
        pthread_join(w->slots[i].thread, NULL);
    if (w->slots)
        pthread_join(w->reaper, NULL);
    free(w->slots);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

void worker_metrics_write(worker_t *w, buf_t *b)
{
    buf_appendf(b,
                "# HELP faas_worker_slots Execution slots of this worker.\n"
                "# TYPE faas_worker_slots gauge\nfaas_worker_slots %d\n"
                "# HELP faas_worker_busy_slots Slots running an execution now.\n"
                "# TYPE faas_worker_busy_slots gauge\nfaas_worker_busy_slots %d\n"
                "# HELP faas_worker_docker_up 1 when the Docker engine answers.\n"
                "# TYPE faas_worker_docker_up gauge\nfaas_worker_docker_up %d\n"
                "# HELP faas_worker_executions_total Executions finished by this worker.\n"
                "# TYPE faas_worker_executions_total counter\n",
                w->nslots, atomic_load(&w->busy), atomic_load(&w->docker_ok) ? 1 : 0);
    for (int i = 0; i < 5; i++)
        buf_appendf(b, "faas_worker_executions_total{status=\"%s\"} %lld\n", status_names[i],
                    (long long)atomic_load(&w->by_status[i]));
    buf_appendf(b,
                "# HELP faas_worker_reaped_total Orphaned containers removed.\n"
                "# TYPE faas_worker_reaped_total counter\nfaas_worker_reaped_total %lld\n",
                (long long)atomic_load(&w->reaped));
    histogram_write(&w->run_latency, "faas_worker_run_seconds",
                    "Container run time, start to exit.", b);
    histogram_write(&w->total_latency, "faas_execution_seconds",
                    "Execution latency from acceptance to result.", b);
}
