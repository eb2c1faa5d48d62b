/* The bus: NATS JetStream through cnats. See bus.h for the contract.
 *
 * Threads: cnats runs its own (reconnect, flusher, the global delivery pool that calls result
 * waiters). bus_recorder_start adds one recorder thread that pull-fetches RESULTS and handles
 * MAX_DELIVERIES advisories (JetStream API calls must not run on the delivery pool). */
#include "bus.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define BUS_DUP_WINDOW_NS (120LL * 1000 * 1000 * 1000) /* Duplicates: 2 min */
#define BUS_PUB_WAIT_MS 1000     /* JetStream publish ack wait */
#define BUS_API_WAIT_MS 2000     /* other JetStream API requests */
#define BUS_SETUP_WAIT_MS 5000   /* stream/consumer creation */
#define BUS_REC_BATCH 64
#define BUS_REC_FETCH_MS 1000
#define BUS_REC_NAK_MS 1000
#define BUS_DEAD_QUEUE "faas-dead-letters"
#define BUS_MAX_ACK_PENDING 65536
#define BUS_SWEEP_INTERVAL_NS (30ULL * 1000 * 1000 * 1000)
#define BUS_SWEEP_MAX 256

struct bus {
    config_nats_t cfg;
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;          /* guards setup_wanted, setup_last_ns */
    pthread_mutex_t fetch_mu;    /* one natsSubscription_Fetch at a time on work_sub */
    natsSubscription *work_sub;
    natsSubscription *started_sub; /* execution.*.started, API side */
    bus_result_fn started_fn;
    void *started_arg;
    bool setup_wanted;           /* bus_setup was called: redo it when the server lost it */
    uint64_t setup_last_ns;      /* last automatic attempt (at most one a second) */

    atomic_bool closing;         /* bus_close: the disconnect is ours, not news */
    pthread_mutex_t closed_mu;   /* connection callbacks run on a cnats thread after */
    pthread_cond_t closed_cv;    /* natsConnection_Close returns: bus_close waits for */
    bool closed;                 /* the closed callback, the last one, before freeing */
    bool rec_started;
    pthread_t rec_thread;
    atomic_bool rec_stop;
    bus_record_fn rec;
    bus_dead_fn dead;
    void *rec_arg;
};

struct bus_msg {
    natsMsg *m;
};

struct bus_waiter {
    natsSubscription *sub;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool closed;    /* set by unsubscribe: fn is never called again */
    bool complete;  /* cnats says the handler has returned for good */
    bus_result_fn fn;
    void *arg;
};

static void nats_err(char *err, size_t errlen, const char *what, natsStatus s)
{
    if (!err || !errlen)
        return;
    natsStatus ls;
    const char *last = nats_GetLastError(&ls);
    snprintf(err, errlen, "%s: %s%s%s", what, natsStatus_GetText(s), last ? ": " : "",
             last ? last : "");
}

static bool bus_is_connected(bus_t *b)
{
    return b && b->nc && natsConnection_Status(b->nc) == NATS_CONN_STATUS_CONNECTED;
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)nc;
    bus_t *b = closure;
    log_info("connected to nats '%s'", b->cfg.url);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    bus_t *b = closure;
    if (!atomic_load(&b->closing))
        log_warn("disconnected from nats '%s'", b->cfg.url);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    bus_t *b = closure;
    pthread_mutex_lock(&b->closed_mu);
    b->closed = true;
    pthread_cond_broadcast(&b->closed_cv);
    pthread_mutex_unlock(&b->closed_mu);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    bus_t *b = closure;
    log_info("reconnected to nats '%s'", b->cfg.url);
}

static bus_t *bus_new(const config_nats_t *cfg, const char *name, bool lazy, char *err,
                      size_t errlen)
{
    bus_t *b = xcalloc(1, sizeof(*b));
    b->cfg = *cfg;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->fetch_mu, NULL);
    atomic_init(&b->rec_stop, false);
    atomic_init(&b->closing, false);
    pthread_mutex_init(&b->closed_mu, NULL);
    pthread_cond_init(&b->closed_cv, NULL);

    natsStatus s = natsOptions_Create(&b->opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(b->opts, cfg->url);
    if (s == NATS_OK && name && *name)
        s = natsOptions_SetName(b->opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(b->opts, cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                                                       : 1000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(b->opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(b->opts, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(b->opts, 100, 1000);
    /* Result waiters must not block: one shared delivery pool instead of a thread each. */
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(b->opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(b->opts, on_disconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(b->opts, on_reconnected, b);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(b->opts, on_closed, b);
    if (s == NATS_OK && lazy)
        s = natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b);
    if (s != NATS_OK) {
        nats_err(err, errlen, "cannot set nats options", s);
        goto fail;
    }

    s = natsConnection_Connect(&b->nc, b->opts);
    if (s == NATS_NOT_YET_CONNECTED && lazy) {
        s = NATS_OK;
        log_warn("nats '%s' not reachable yet, retrying in the background", cfg->url);
    }
    if (s != NATS_OK) {
        char what[600];
        snprintf(what, sizeof(what), "cannot connect to nats '%s'", cfg->url);
        nats_err(err, errlen, what, s);
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = BUS_API_WAIT_MS;
    s = natsConnection_JetStream(&b->js, b->nc, &jo);
    if (s != NATS_OK) {
        nats_err(err, errlen, "cannot create jetstream context", s);
        goto fail;
    }
    return b;
fail:
    if (lazy) {
        /* Lazy never fails: keep a bus that reports itself unavailable. */
        char e[512];
        nats_err(e, sizeof(e), "nats", s);
        log_error("cannot use nats '%s': %s", cfg->url, e);
        return b;
    }
    bus_close(b);
    return NULL;
}

bus_t *bus_connect(const config_nats_t *cfg, const char *name, char *err, size_t errlen)
{
    return bus_new(cfg, name, false, err, errlen);
}

bus_t *bus_connect_lazy(const config_nats_t *cfg, const char *name)
{
    return bus_new(cfg, name, true, NULL, 0);
}

bool bus_connected(bus_t *b)
{
    return bus_is_connected(b);
}

void bus_close(bus_t *b)
{
    if (!b)
        return;
    bus_recorder_stop(b);
    atomic_store(&b->closing, true);
    pthread_mutex_lock(&b->fetch_mu); /* lets a fetch under way finish first */
    if (b->work_sub)
        natsSubscription_Destroy(b->work_sub);
    b->work_sub = NULL;
    pthread_mutex_unlock(&b->fetch_mu);
    if (b->started_sub) {
        natsSubscription_Unsubscribe(b->started_sub);
        natsSubscription_Destroy(b->started_sub);
    }
    if (b->js)
        jsCtx_Destroy(b->js);
    bool closed = true;
    if (b->nc) {
        natsConnection_Close(b->nc);
        /* The disconnected/closed callbacks still hold `b`: wait for the last one. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&b->closed_mu);
        while (!b->closed &&
               pthread_cond_timedwait(&b->closed_cv, &b->closed_mu, &until) == 0) {
        }
        closed = b->closed;
        pthread_mutex_unlock(&b->closed_mu);
        natsConnection_Destroy(b->nc);
    }
    if (b->opts)
        natsOptions_Destroy(b->opts);
    if (!closed) {
        log_warn("nats connection did not report closing; leaking the bus");
        return;
    }
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->fetch_mu);
    pthread_cond_destroy(&b->closed_cv);
    pthread_mutex_destroy(&b->closed_mu);
    free(b);
}

/* ---- setup ---- */

static int stream_ensure(bus_t *b, jsStreamConfig *sc, char *err, size_t errlen)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = BUS_SETUP_WAIT_MS;
    jsErrCode jerr = 0;
    natsStatus s = NATS_ERR;
    /* Another process may be creating it at the same moment; the loser gets "name in use"
     * or "subjects overlap": then the stream exists and an update settles it. */
    for (int attempt = 0; attempt < 3 && s != NATS_OK; attempt++) {
        jerr = 0;
        s = js_AddStream(NULL, b->js, sc, &jo, &jerr);
        if (s == NATS_OK || jerr == 0)
            break;
        jsStreamInfo *si = NULL;
        if (js_GetStreamInfo(&si, b->js, sc->Name, &jo, NULL) == NATS_OK) {
            jsStreamInfo_Destroy(si);
            jerr = 0;
            s = js_UpdateStream(NULL, b->js, sc, &jo, &jerr);
        }
    }
    if (s != NATS_OK) {
        char what[128];
        snprintf(what, sizeof(what), "cannot create stream '%s' (%d)", sc->Name, (int)jerr);
        nats_err(err, errlen, what, s);
        return BUS_EUNAVAIL;
    }
    return BUS_OK;
}

static int consumer_ensure(bus_t *b, const char *stream, jsConsumerConfig *cc, char *err,
                           size_t errlen)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = BUS_SETUP_WAIT_MS;
    jsErrCode jerr = 0;
    natsStatus s = NATS_ERR;
    for (int attempt = 0; attempt < 3 && s != NATS_OK; attempt++) {
        jerr = 0;
        s = js_AddConsumer(NULL, b->js, stream, cc, &jo, &jerr);
        if (s == NATS_OK || jerr == 0)
            break;
        /* Exists with other settings (AckWait, MaxDeliver...) or was just created by
         * another process: update it. */
        jsErrCode jerr2 = 0;
        if (js_UpdateConsumer(NULL, b->js, stream, cc, &jo, &jerr2) == NATS_OK)
            s = NATS_OK;
    }
    if (s != NATS_OK) {
        char what[200];
        snprintf(what, sizeof(what), "cannot create consumer '%s' on '%s' (%d)", cc->Durable,
                 stream, (int)jerr);
        nats_err(err, errlen, what, s);
        return BUS_EUNAVAIL;
    }
    return BUS_OK;
}

static int setup_run(bus_t *b)
{
    char err[512] = "";
    int rc = BUS_EUNAVAIL;
    const config_nats_t *c = &b->cfg;
    if (!b->js || !bus_is_connected(b)) {
        log_warn("cannot set up jetstream: not connected to nats '%s'", c->url);
        return BUS_EUNAVAIL;
    }

    const char *req_subj[1] = {c->subject};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = c->stream;
    sc.Subjects = req_subj;
    sc.SubjectsLen = 1;
    sc.Retention = js_WorkQueuePolicy;
    sc.Storage = js_FileStorage;
    sc.Duplicates = BUS_DUP_WINDOW_NS;
    if (c->max_payload > 0)
        sc.MaxMsgSize = c->max_payload > INT32_MAX ? INT32_MAX : (int32_t)c->max_payload;
    if ((rc = stream_ensure(b, &sc, err, sizeof(err))) != BUS_OK)
        goto done;

    const char *res_subj[1] = {"execution.*"};
    jsStreamConfig rc_cfg;
    jsStreamConfig_Init(&rc_cfg);
    rc_cfg.Name = c->results_stream;
    rc_cfg.Subjects = res_subj;
    rc_cfg.SubjectsLen = 1;
    rc_cfg.Retention = js_LimitsPolicy;
    rc_cfg.Storage = js_FileStorage;
    rc_cfg.MaxAge = c->results_max_age_ms > 0 ? c->results_max_age_ms * 1000000LL : 0;
    /* The server refuses a duplicates window longer than MaxAge. */
    rc_cfg.Duplicates = BUS_DUP_WINDOW_NS;
    if (rc_cfg.MaxAge > 0 && rc_cfg.Duplicates > rc_cfg.MaxAge)
        rc_cfg.Duplicates = rc_cfg.MaxAge;
    if ((rc = stream_ensure(b, &rc_cfg, err, sizeof(err))) != BUS_OK)
        goto done;

    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = c->consumer;
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = (c->ack_wait_ms > 0 ? c->ack_wait_ms : 30000) * 1000000LL;
    cc.MaxDeliver = c->max_deliver > 0 ? c->max_deliver : -1;
    cc.MaxAckPending = BUS_MAX_ACK_PENDING;
    if ((rc = consumer_ensure(b, c->stream, &cc, err, sizeof(err))) != BUS_OK)
        goto done;

    jsConsumerConfig rcc;
    jsConsumerConfig_Init(&rcc);
    rcc.Durable = c->recorder;
    rcc.AckPolicy = js_AckExplicit;
    rcc.DeliverPolicy = js_DeliverAll;
    rcc.AckWait = 30LL * 1000 * 1000 * 1000;
    rcc.MaxAckPending = BUS_MAX_ACK_PENDING;
    if ((rc = consumer_ensure(b, c->results_stream, &rcc, err, sizeof(err))) != BUS_OK)
        goto done;
    rc = BUS_OK;
done:
    if (rc != BUS_OK)
        log_error("%s", err);
    return rc;
}

int bus_setup(bus_t *b)
{
    if (!b)
        return BUS_EINVAL;
    /* Even when it fails now (NATS down), the streams are wanted: the recorder, fetch and
     * publish paths set them up once the server answers. */
    pthread_mutex_lock(&b->mu);
    b->setup_wanted = true;
    b->setup_last_ns = time_mono_ns();
    pthread_mutex_unlock(&b->mu);
    return setup_run(b);
}

/* When streams or consumers are missing (the server started without them, or lost its
 * store), sets them up again, at most once a second, and only when this bus was asked to
 * set things up. true when it ran and succeeded. */
static bool setup_again_if_wanted(bus_t *b)
{
    uint64_t now = time_mono_ns();
    pthread_mutex_lock(&b->mu);
    bool run = b->setup_wanted && now - b->setup_last_ns >= 1000000000ULL;
    if (run)
        b->setup_last_ns = now;
    pthread_mutex_unlock(&b->mu);
    if (!run || !bus_is_connected(b))
        return false;
    log_info("setting up jetstream streams and consumers again");
    return setup_run(b) == BUS_OK;
}

/* ---- publishing ---- */

static int js_pub(bus_t *b, const char *subject, const char *msg_id, const void *data,
                  size_t len)
{
    if (!b || !subject || (!data && len))
        return BUS_EINVAL;
    if (len > INT32_MAX)
        return BUS_EINVAL;
    /* While reconnecting, cnats would buffer the publish and replay it later: refuse now
     * instead, so a caller told "unavailable" never gets its message queued behind its back. */
    if (!bus_is_connected(b) || !b->js)
        return BUS_EUNAVAIL;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = BUS_PUB_WAIT_MS;
    po.MsgId = msg_id;
    jsErrCode jerr = 0;
    jsPubAck *ack = NULL;
    natsStatus s = js_Publish(&ack, b->js, subject, data, (int)len, &po, &jerr);
    if (s == NATS_NO_RESPONDERS && setup_again_if_wanted(b)) {
        /* no stream took it: the server came up without our streams */
        jerr = 0;
        s = js_Publish(&ack, b->js, subject, data, (int)len, &po, &jerr);
    }
    if (ack)
        jsPubAck_Destroy(ack);
    if (s != NATS_OK) {
        char e[512];
        nats_err(e, sizeof(e), "publish", s);
        log_kv(LOG_WARN, "executionId", msg_id, "cannot publish on '%s': %s (%d)", subject, e,
               (int)jerr);
        /* too big for the server or the stream: retrying will not help */
        if (s == NATS_MAX_PAYLOAD || jerr == JSStreamMessageExceedsMaximumErr)
            return BUS_EINVAL;
        return BUS_EUNAVAIL;
    }
    return BUS_OK;
}

int bus_request_publish(bus_t *b, const char *execution_id, const void *data, size_t len)
{
    if (!b || !execution_id || !*execution_id)
        return BUS_EINVAL;
    return js_pub(b, b->cfg.subject, execution_id, data, len);
}

int bus_result_publish(bus_t *b, const char *execution_id, const void *data, size_t len)
{
    if (!b || !execution_id || !id_valid(execution_id))
        return BUS_EINVAL;
    char subj[64];
    snprintf(subj, sizeof(subj), "execution.%s", execution_id);
    return js_pub(b, subj, execution_id, data, len);
}

/* ---- result waiters ---- */

static void waiter_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                          void *closure)
{
    (void)nc;
    (void)sub;
    bus_waiter_t *w = closure;
    /* Under the lock: unsubscribe waits for a running callback and stops later ones. */
    pthread_mutex_lock(&w->mu);
    if (!w->closed)
        w->fn(w->arg, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    pthread_mutex_unlock(&w->mu);
    natsMsg_Destroy(msg);
}

static void waiter_on_complete(void *closure)
{
    bus_waiter_t *w = closure;
    pthread_mutex_lock(&w->mu);
    w->complete = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bus_waiter_t *bus_result_subscribe(bus_t *b, const char *execution_id, bus_result_fn fn,
                                   void *arg)
{
    if (!b || !b->nc || !execution_id || !id_valid(execution_id) || !fn)
        return NULL;
    bus_waiter_t *w = xcalloc(1, sizeof(*w));
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->fn = fn;
    w->arg = arg;
    char subj[64];
    snprintf(subj, sizeof(subj), "execution.%s", execution_id);
    natsStatus s = natsConnection_Subscribe(&w->sub, b->nc, subj, waiter_on_msg, w);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(w->sub, waiter_on_complete, w);
    /* The server must know the subscription before the request goes out (from another
     * connection, a worker's result could otherwise outrun it). */
    if (s == NATS_OK && natsConnection_FlushTimeout(b->nc, BUS_API_WAIT_MS) != NATS_OK)
        log_kv(LOG_WARN, "executionId", execution_id, "cannot flush subscription to '%s'",
               subj);
    if (s != NATS_OK) {
        char e[512];
        nats_err(e, sizeof(e), "subscribe", s);
        log_kv(LOG_WARN, "executionId", execution_id, "cannot subscribe to '%s': %s", subj, e);
        if (w->sub) {
            /* No completion callback registered: the handler may still hold w. */
            pthread_mutex_lock(&w->mu);
            w->closed = true;
            pthread_mutex_unlock(&w->mu);
            natsSubscription_Unsubscribe(w->sub);
            natsSubscription_Destroy(w->sub);
            return NULL; /* w leaks on purpose rather than risk a use after free */
        }
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

void bus_result_unsubscribe(bus_waiter_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->closed = true; /* waits for a running callback; later ones see the flag */
    pthread_mutex_unlock(&w->mu);
    natsSubscription_Unsubscribe(w->sub);

    /* Free only once cnats is done with the closure. If the connection is already closed
     * the subscription was closed with it and the completion has already fired. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&w->mu);
    while (!w->complete) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0)
            break;
    }
    bool complete = w->complete;
    pthread_mutex_unlock(&w->mu);
    natsSubscription_Destroy(w->sub);
    if (!complete) {
        log_warn("result subscription did not complete; leaking its waiter");
        return;
    }
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* ---- started notices ---- */

int bus_started_publish(bus_t *b, const char *execution_id, const void *data, size_t len)
{
    if (!b || !b->nc || !id_valid(execution_id))
        return BUS_EINVAL;
    if (!bus_is_connected(b))
        return BUS_EUNAVAIL;
    char subj[80];
    snprintf(subj, sizeof(subj), "execution.%s.started", execution_id);
    return natsConnection_Publish(b->nc, subj, data, (int)len) == NATS_OK ? BUS_OK
                                                                          : BUS_EUNAVAIL;
}

static void started_on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                           void *closure)
{
    (void)nc;
    (void)sub;
    bus_t *b = closure;
    b->started_fn(b->started_arg, natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

int bus_started_subscribe(bus_t *b, bus_result_fn fn, void *arg)
{
    if (!b || !b->nc || !fn || b->started_sub)
        return BUS_EINVAL;
    b->started_fn = fn;
    b->started_arg = arg;
    natsStatus s = natsConnection_QueueSubscribe(&b->started_sub, b->nc, "execution.*.started",
                                                 "faas-api-started", started_on_msg, b);
    return s == NATS_OK ? BUS_OK : BUS_EUNAVAIL;
}

/* ---- worker side ---- */

static natsStatus pull_bind(bus_t *b, natsSubscription **sub, const char *subject,
                            const char *stream, const char *durable)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Consumer = durable;
    so.ManualAck = true;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(sub, b->js, subject, durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        *sub = NULL;
        char e[512];
        nats_err(e, sizeof(e), "bind", s);
        log_warn("cannot bind to consumer '%s' on '%s': %s (%d)", durable, stream, e,
                 (int)jerr);
    }
    return s;
}

int bus_worker_fetch(bus_t *b, int max, int64_t timeout_ms, bus_msg_t **msgs, int *n)
{
    if (n)
        *n = 0;
    if (!b || max <= 0 || !msgs || !n)
        return BUS_EINVAL;
    if (!b->js || !bus_is_connected(b))
        return BUS_EUNAVAIL;
    if (timeout_ms <= 0)
        timeout_ms = 1;

    int rc = BUS_EUNAVAIL;
    natsMsgList list = {0};
    pthread_mutex_lock(&b->fetch_mu);
    if (!b->work_sub) {
        if (pull_bind(b, &b->work_sub, b->cfg.subject, b->cfg.stream, b->cfg.consumer) !=
            NATS_OK) {
            pthread_mutex_unlock(&b->fetch_mu);
            setup_again_if_wanted(b);
            return BUS_EUNAVAIL;
        }
    }
    jsErrCode jerr = 0;
    natsStatus s = natsSubscription_Fetch(&list, b->work_sub, max, timeout_ms, &jerr);
    if (s == NATS_TIMEOUT) {
        rc = BUS_ETIMEOUT;
    } else if (s != NATS_OK) {
        char e[512];
        nats_err(e, sizeof(e), "fetch", s);
        log_warn("cannot fetch from '%s': %s (%d)", b->cfg.consumer, e, (int)jerr);
        /* The consumer may be gone (server state lost): bind again next time. */
        natsSubscription_Destroy(b->work_sub);
        b->work_sub = NULL;
        rc = BUS_EUNAVAIL;
    }
    pthread_mutex_unlock(&b->fetch_mu);
    if (s != NATS_OK)
        goto done;

    for (int i = 0; i < list.Count && *n < max; i++) {
        bus_msg_t *m = xcalloc(1, sizeof(*m));
        m->m = list.Msgs[i];
        list.Msgs[i] = NULL;
        msgs[(*n)++] = m;
    }
    rc = *n > 0 ? BUS_OK : BUS_ETIMEOUT;
done:
    natsMsgList_Destroy(&list);
    return rc;
}

const char *bus_msg_data(bus_msg_t *m, size_t *len)
{
    if (!m) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = (size_t)natsMsg_GetDataLength(m->m);
    return natsMsg_GetData(m->m);
}

int bus_msg_delivered(bus_msg_t *m)
{
    if (!m)
        return -1;
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m->m) != NATS_OK)
        return -1;
    int d = meta->NumDelivered > INT32_MAX ? INT32_MAX : (int)meta->NumDelivered;
    jsMsgMetaData_Destroy(meta);
    return d;
}

static int ack_rc(natsStatus s)
{
    return s == NATS_OK ? BUS_OK : BUS_EUNAVAIL;
}

int bus_msg_ack(bus_msg_t *m)
{
    return m ? ack_rc(natsMsg_Ack(m->m, NULL)) : BUS_EINVAL;
}

int bus_msg_nak(bus_msg_t *m, int64_t delay_ms)
{
    if (!m)
        return BUS_EINVAL;
    if (delay_ms <= 0)
        return ack_rc(natsMsg_Nak(m->m, NULL));
    return ack_rc(natsMsg_NakWithDelay(m->m, delay_ms, NULL));
}

int bus_msg_in_progress(bus_msg_t *m)
{
    return m ? ack_rc(natsMsg_InProgress(m->m, NULL)) : BUS_EINVAL;
}

int bus_msg_term(bus_msg_t *m)
{
    return m ? ack_rc(natsMsg_Term(m->m, NULL)) : BUS_EINVAL;
}

void bus_msg_free(bus_msg_t *m)
{
    if (!m)
        return;
    natsMsg_Destroy(m->m);
    free(m);
}

/* ---- queue depth ---- */

int bus_queue_depth(bus_t *b, int64_t *pending, int64_t *ack_pending)
{
    if (pending)
        *pending = -1;
    if (ack_pending)
        *ack_pending = -1;
    if (!b || !b->js || !bus_is_connected(b))
        return BUS_EUNAVAIL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, b->js, b->cfg.stream, b->cfg.consumer, NULL, &jerr);
    if (s != NATS_OK || !ci)
        return BUS_EUNAVAIL;
    if (pending)
        *pending = (int64_t)ci->NumPending;
    if (ack_pending)
        *ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return BUS_OK;
}

int bus_queue_stored(bus_t *b, int64_t *msgs)
{
    if (msgs)
        *msgs = -1;
    if (!b || !b->js || !bus_is_connected(b))
        return BUS_EUNAVAIL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, b->js, b->cfg.stream, NULL, &jerr);
    if (s != NATS_OK || !si)
        return BUS_EUNAVAIL;
    if (msgs)
        *msgs = (int64_t)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return BUS_OK;
}

/* ---- recorder ---- */

typedef struct {
    uint64_t *seq;
    size_t n, cap;
} seq_list_t;

static void seq_add(seq_list_t *l, uint64_t seq)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->seq[i] == seq)
            return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->seq = xrealloc(l->seq, l->cap * sizeof(*l->seq));
    }
    l->seq[l->n++] = seq;
}

/* Hands the request stored at `seq` to dead(); deletes it from the work queue when handled.
 * 0 when done with this sequence (handled or gone), -1 to retry later. */
static int dead_letter_one(bus_t *b, uint64_t seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, b->js, b->cfg.stream, seq, NULL, &jerr);
    if (s != NATS_OK) {
        if (jerr == JSNoMessageFoundErr || s == NATS_NOT_FOUND)
            return 0; /* already removed (acked late, or another replica handled it) */
        return -1;
    }
    int rc = -1;
    if (b->dead && b->dead(b->rec_arg, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)) != 0)
        goto done;
    jerr = 0;
    s = js_DeleteMsg(b->js, b->cfg.stream, seq, NULL, &jerr);
    if (s != NATS_OK && jerr != JSNoMessageFoundErr && s != NATS_NOT_FOUND) {
        log_warn("cannot delete dead letter %llu from '%s'", (unsigned long long)seq,
                 b->cfg.stream);
        goto done; /* dead() must be idempotent: it may see this request again */
    }
    rc = 0;
done:
    natsMsg_Destroy(m);
    return rc;
}

static void dead_letters_poll(bus_t *b, natsSubscription *adv, seq_list_t *retry)
{
    natsMsg *m = NULL;
    while (adv && natsSubscription_NextMsg(&m, adv, 1) == NATS_OK) {
        cJSON *j = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        const cJSON *seq = j ? cJSON_GetObjectItemCaseSensitive(j, "stream_seq") : NULL;
        if (cJSON_IsNumber(seq) && seq->valuedouble >= 1)
            seq_add(retry, (uint64_t)seq->valuedouble);
        else
            log_warn("ignoring a malformed max deliveries advisory");
        cJSON_Delete(j);
        natsMsg_Destroy(m);
        m = NULL;
    }
    size_t keep = 0;
    for (size_t i = 0; i < retry->n; i++)
        if (dead_letter_one(b, retry->seq[i]) != 0)
            retry->seq[keep++] = retry->seq[i];
    retry->n = keep;
}

/* Advisories are fire-and-forget: when no recorder listened, an exhausted request stays in
 * the work queue. In a WorkQueue stream acked requests are removed, so whatever is stored at
 * or below the consumer's ack floor was abandoned: queue those sequences as dead letters. */
static void dead_letters_sweep(bus_t *b, seq_list_t *retry)
{
    jsStreamInfo *si = NULL;
    jsConsumerInfo *ci = NULL;
    if (js_GetStreamInfo(&si, b->js, b->cfg.stream, NULL, NULL) != NATS_OK || !si)
        goto done;
    if (js_GetConsumerInfo(&ci, b->js, b->cfg.stream, b->cfg.consumer, NULL, NULL) != NATS_OK ||
        !ci)
        goto done;
    uint64_t first = si->State.FirstSeq, floor = ci->AckFloor.Stream;
    if (si->State.Msgs == 0 || first == 0)
        goto done;
    for (uint64_t seq = first; seq <= floor && seq < first + BUS_SWEEP_MAX; seq++)
        seq_add(retry, seq);
done:
    if (si)
        jsStreamInfo_Destroy(si);
    if (ci)
        jsConsumerInfo_Destroy(ci);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *recorder_main(void *arg)
{
    bus_t *b = arg;
    natsSubscription *sub = NULL, *adv = NULL;
    seq_list_t retry = {0};
    uint64_t last_sweep = 0;
    char adv_subj[256];
    snprintf(adv_subj, sizeof(adv_subj), "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s",
             b->cfg.stream, b->cfg.consumer);

    while (!atomic_load(&b->rec_stop)) {
        if (!bus_is_connected(b)) {
            sleep_ms(100);
            continue;
        }
        if (!adv && b->dead) {
            /* A queue group: with several API replicas one of them handles each advisory. */
            if (natsConnection_QueueSubscribeSync(&adv, b->nc, adv_subj, BUS_DEAD_QUEUE) !=
                NATS_OK)
                adv = NULL;
        }
        if (!sub) {
            if (pull_bind(b, &sub, "execution.*", b->cfg.results_stream, b->cfg.recorder) !=
                NATS_OK) {
                setup_again_if_wanted(b);
                sleep_ms(250);
                continue;
            }
        }
        if (b->dead && (last_sweep == 0 || time_mono_ns() - last_sweep >= BUS_SWEEP_INTERVAL_NS)) {
            last_sweep = time_mono_ns();
            dead_letters_sweep(b, &retry);
        }
        if (b->dead)
            dead_letters_poll(b, adv, &retry);

        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, sub, BUS_REC_BATCH, BUS_REC_FETCH_MS, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            char e[512];
            nats_err(e, sizeof(e), "fetch", s);
            log_warn("recorder cannot fetch from '%s': %s (%d)", b->cfg.recorder, e, (int)jerr);
            natsSubscription_Destroy(sub);
            sub = NULL;
            sleep_ms(250);
            continue;
        }
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            int rc = b->rec ? b->rec(b->rec_arg, natsMsg_GetData(m),
                                     (size_t)natsMsg_GetDataLength(m))
                            : 0;
            if (rc == 0)
                natsMsg_Ack(m, NULL);
            else
                natsMsg_NakWithDelay(m, BUS_REC_NAK_MS, NULL);
        }
        natsMsgList_Destroy(&list);
    }
    if (sub)
        natsSubscription_Destroy(sub);
    if (adv) {
        natsSubscription_Unsubscribe(adv);
        natsSubscription_Destroy(adv);
    }
    free(retry.seq);
    return NULL;
}

int bus_recorder_start(bus_t *b, bus_record_fn rec, bus_dead_fn dead, void *arg)
{
    if (!b || !b->nc || !b->js)
        return BUS_EINVAL;
    if (b->rec_started)
        return BUS_EINVAL;
    b->rec = rec;
    b->dead = dead;
    b->rec_arg = arg;
    atomic_store(&b->rec_stop, false);
    if (pthread_create(&b->rec_thread, NULL, recorder_main, b) != 0) {
        log_error("cannot start the recorder thread");
        return BUS_EUNAVAIL;
    }
    b->rec_started = true;
    return BUS_OK;
}

void bus_recorder_stop(bus_t *b)
{
    if (!b || !b->rec_started)
        return;
    atomic_store(&b->rec_stop, true);
    pthread_join(b->rec_thread, NULL);
    b->rec_started = false;
}
