/* The bus against a real nats-server (spec/unit/nats_fixture.h): one server per test. */
#include <pthread.h>
#include <stdatomic.h>

#include "bus.h"
#include "nats_fixture.h"
#include "t.h"
#include "util.h"

static void cfg_for(config_nats_t *c, const nats_fixture_t *f)
{
    memset(c, 0, sizeof(*c));
    str_copy(c->url, sizeof(c->url), f->url);
    str_copy(c->stream, sizeof(c->stream), "FUNCTIONS");
    str_copy(c->subject, sizeof(c->subject), "functions");
    str_copy(c->results_stream, sizeof(c->results_stream), "RESULTS");
    str_copy(c->consumer, sizeof(c->consumer), "workers");
    str_copy(c->recorder, sizeof(c->recorder), "api-recorder");
    c->max_deliver = 5;
    c->ack_wait_ms = 30000;
    c->results_max_age_ms = 86400000;
    c->connect_timeout_ms = 1000;
    c->max_payload = 8 << 20;
}

static bus_t *bus_up(nats_fixture_t *f, config_nats_t *c)
{
    char err[256] = "";
    bus_t *b = bus_connect(c, "test", err, sizeof(err));
    if (!b) {
        fprintf(stderr, "  connect: %s\n", err);
        return NULL;
    }
    if (bus_setup(b) != BUS_OK) {
        bus_close(b);
        return NULL;
    }
    (void)f;
    return b;
}

/* Waits (up to ms) until *v >= want. */
static int wait_count(atomic_int *v, int want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (atomic_load(v) >= want)
            return 1;
        nats_fixture_sleep_ms(10);
    }
    return atomic_load(v) >= want;
}

/* The stored count once it settles at `want` (acks and deletes are asynchronous). */
static int64_t stored_settles(bus_t *b, int64_t want)
{
    int64_t stored = -2;
    for (int i = 0; i < 100; i++) {
        bus_queue_stored(b, &stored);
        if (stored == want)
            break;
        nats_fixture_sleep_ms(20);
    }
    return stored;
}

static int fetch_one(bus_t *b, int64_t timeout_ms, bus_msg_t **m)
{
    int n = 0;
    *m = NULL;
    int rc = bus_worker_fetch(b, 1, timeout_ms, m, &n);
    if (rc == BUS_OK && n != 1)
        return -100;
    return rc;
}

static int data_is(bus_msg_t *m, const char *want)
{
    size_t len = 0;
    const char *d = bus_msg_data(m, &len);
    return d && len == strlen(want) && memcmp(d, want, len) == 0;
}

/* ---- setup ---- */

typedef struct {
    config_nats_t *cfg;
    int rc;
} setup_arg_t;

static void *setup_thread(void *p)
{
    setup_arg_t *a = p;
    char err[256];
    bus_t *b = bus_connect(a->cfg, "setup", err, sizeof(err));
    a->rc = b ? bus_setup(b) : -99;
    bus_close(b);
    return NULL;
}

TEST("setup is idempotent, twice on one bus and concurrently from two processes' buses")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    setup_arg_t a1 = {&c, -1}, a2 = {&c, -1};
    pthread_t t1, t2;
    pthread_create(&t1, NULL, setup_thread, &a1);
    pthread_create(&t2, NULL, setup_thread, &a2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK_INT(a1.rc, BUS_OK);
    CHECK_INT(a2.rc, BUS_OK);

    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    CHECK_INT(bus_setup(b), BUS_OK);
    /* a changed setting updates the existing stream and consumer */
    bus_close(b);
    c.ack_wait_ms = 10000;
    c.max_deliver = 3;
    b = bus_up(&f, &c);
    CHECK(b != NULL);
    CHECK(bus_connected(b));
    bus_close(b);
    nats_fixture_destroy(&f);
}

TEST("connect fails with a message when nothing listens")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    nats_fixture_stop(&f);
    config_nats_t c;
    cfg_for(&c, &f);
    char err[256] = "";
    bus_t *b = bus_connect(&c, "test", err, sizeof(err));
    CHECK(b == NULL);
    CHECK(strstr(err, "cannot connect") != NULL);
    bus_close(b);
    nats_fixture_destroy(&f);
}

TEST("lazy connect comes up once the server starts, then setup and publish work")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    nats_fixture_stop(&f);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_connect_lazy(&c, "lazy");
    CHECK(b != NULL);
    CHECK(!bus_connected(b));
    CHECK_INT(bus_request_publish(b, "aaaaaaaaaaaaaaaaaaaaaaaa", "x", 1), BUS_EUNAVAIL);
    CHECK(nats_fixture_restart(&f) == 0);
    for (int i = 0; i < 500 && !bus_connected(b); i++)
        nats_fixture_sleep_ms(20);
    CHECK(bus_connected(b));
    CHECK_INT(bus_setup(b), BUS_OK);
    CHECK_INT(bus_request_publish(b, "aaaaaaaaaaaaaaaaaaaaaaaa", "x", 1), BUS_OK);
    bus_close(b);
    nats_fixture_destroy(&f);
}

/* ---- requests ---- */

TEST("a published request is fetched once by a worker and gone after its ack")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char id[ID_LEN + 1];
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, "{\"hello\":1}", 11), BUS_OK);
    int64_t pending = -2, ackp = -2;
    CHECK_INT(bus_queue_depth(b, &pending, &ackp), BUS_OK);
    CHECK_INT(pending, 1);
    CHECK_INT(ackp, 0);

    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    if (m) {
        CHECK(data_is(m, "{\"hello\":1}"));
        CHECK_INT(bus_msg_delivered(m), 1);
        CHECK_INT(bus_msg_in_progress(m), BUS_OK);
        CHECK_INT(bus_queue_depth(b, &pending, &ackp), BUS_OK);
        CHECK_INT(pending, 0);
        CHECK_INT(ackp, 1);
        CHECK_INT(bus_msg_ack(m), BUS_OK);
        bus_msg_free(m);
    }
    CHECK_INT(fetch_one(b, 300, &m), BUS_ETIMEOUT);
    CHECK_INT(stored_settles(b, 0), 0);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("fetch returns a batch of several requests")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    for (int i = 0; i < 3; i++) {
        char id[ID_LEN + 1];
        id_new(id);
        CHECK_INT(bus_request_publish(b, id, "r", 1), BUS_OK);
    }
    bus_msg_t *ms[8];
    int n = 0, got = 0;
    for (int tries = 0; tries < 5 && got < 3; tries++) {
        if (bus_worker_fetch(b, 8, 1000, ms, &n) == BUS_OK) {
            for (int i = 0; i < n; i++) {
                bus_msg_ack(ms[i]);
                bus_msg_free(ms[i]);
            }
            got += n;
        }
    }
    CHECK_INT(got, 3);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("a duplicate request id within the window is stored once")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char id[ID_LEN + 1], id2[ID_LEN + 1];
    id_new(id);
    id_new(id2);
    CHECK_INT(bus_request_publish(b, id, "first", 5), BUS_OK);
    CHECK_INT(bus_request_publish(b, id, "second", 6), BUS_OK);
    CHECK_INT(bus_request_publish(b, id2, "other", 5), BUS_OK);
    int64_t stored = -2;
    CHECK_INT(bus_queue_stored(b, &stored), BUS_OK);
    CHECK_INT(stored, 2);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    CHECK(m && data_is(m, "first"));
    bus_msg_ack(m);
    bus_msg_free(m);
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    CHECK(m && data_is(m, "other"));
    bus_msg_ack(m);
    bus_msg_free(m);
    CHECK_INT(fetch_one(b, 300, &m), BUS_ETIMEOUT);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("nak with a delay redelivers the request with delivered count 2")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char id[ID_LEN + 1];
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, "job", 3), BUS_OK);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    CHECK_INT(bus_msg_delivered(m), 1);
    CHECK_INT(bus_msg_nak(m, 300), BUS_OK);
    bus_msg_free(m);
    m = NULL;
    CHECK_INT(fetch_one(b, 5000, &m), BUS_OK);
    CHECK(m && data_is(m, "job"));
    CHECK_INT(bus_msg_delivered(m), 2);
    CHECK_INT(bus_msg_term(m), BUS_OK);
    bus_msg_free(m);
    CHECK_INT(fetch_one(b, 300, &m), BUS_ETIMEOUT);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

/* ---- recorder and dead letters ---- */

typedef struct {
    atomic_int records;
    atomic_int dead;
    atomic_int fail_first; /* nak this many records before acking */
    pthread_mutex_t mu;
    char last_record[256];
    char last_dead[256];
} rec_state_t;

static void rec_init(rec_state_t *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
}

static int on_record(void *arg, const char *data, size_t len)
{
    rec_state_t *s = arg;
    if (atomic_load(&s->fail_first) > 0) {
        atomic_fetch_sub(&s->fail_first, 1);
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_record, sizeof(s->last_record), "%.*s", (int)len, data);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->records, 1);
    return 0;
}

static int on_dead(void *arg, const char *data, size_t len)
{
    rec_state_t *s = arg;
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_dead, sizeof(s->last_dead), "%.*s", (int)len, data);
    pthread_mutex_unlock(&s->mu);
    atomic_fetch_add(&s->dead, 1);
    return 0;
}

TEST("a request never acked reaches MaxDeliver and the dead-letter callback gets it once")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    c.max_deliver = 2;
    c.ack_wait_ms = 1000;
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    rec_state_t s;
    rec_init(&s);
    CHECK_INT(bus_recorder_start(b, on_record, on_dead, &s), BUS_OK);
    nats_fixture_sleep_ms(200); /* let the advisory subscription settle */
    char id[ID_LEN + 1];
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, "{\"doomed\":true}", 15), BUS_OK);
    int deliveries = 0;
    /* Keep a worker fetching (the server notices exhausted deliveries on a pull). */
    for (int i = 0; i < 40 && atomic_load(&s.dead) == 0; i++) {
        bus_msg_t *m = NULL;
        if (fetch_one(b, 250, &m) == BUS_OK) {
            deliveries++;
            bus_msg_nak(m, 0);
            bus_msg_free(m);
        }
    }
    CHECK_INT(deliveries, 2);
    CHECK(wait_count(&s.dead, 1, 5000));
    /* more fetches and time: no second call, no further delivery */
    for (int i = 0; i < 6; i++) {
        bus_msg_t *m = NULL;
        CHECK_INT(fetch_one(b, 250, &m), BUS_ETIMEOUT);
    }
    CHECK_INT(atomic_load(&s.dead), 1);
    pthread_mutex_lock(&s.mu);
    CHECK_STR(s.last_dead, "{\"doomed\":true}");
    pthread_mutex_unlock(&s.mu);
    CHECK_INT(stored_settles(b, 0), 0); /* deleted from the work queue, not lingering */
    bus_recorder_stop(b);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

typedef struct {
    atomic_int n;
    pthread_mutex_t mu;
    char last[256];
} waiter_state_t;

static void on_result(void *arg, const char *data, size_t len)
{
    waiter_state_t *w = arg;
    pthread_mutex_lock(&w->mu);
    snprintf(w->last, sizeof(w->last), "%.*s", (int)len, data);
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_add(&w->n, 1);
}

TEST("a waiter gets the published result and RESULTS keeps a duplicate publish once")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *api = bus_up(&f, &c);
    char err[256];
    bus_t *worker = bus_connect(&c, "worker", err, sizeof(err));
    CHECK(api != NULL && worker != NULL);
    if (!api || !worker)
        goto out;
    waiter_state_t ws = {0};
    pthread_mutex_init(&ws.mu, NULL);
    char id[ID_LEN + 1];
    id_new(id);
    bus_waiter_t *w = bus_result_subscribe(api, id, on_result, &ws);
    CHECK(w != NULL);
    CHECK(bus_result_subscribe(api, "not-an-id", on_result, &ws) == NULL);
    CHECK_INT(bus_result_publish(worker, id, "{\"status\":\"succeeded\"}", 22), BUS_OK);
    CHECK(wait_count(&ws.n, 1, 5000));
    pthread_mutex_lock(&ws.mu);
    CHECK_STR(ws.last, "{\"status\":\"succeeded\"}");
    pthread_mutex_unlock(&ws.mu);
    /* a redelivered execution publishes again: deduplicated in RESULTS */
    CHECK_INT(bus_result_publish(worker, id, "{\"status\":\"succeeded\"}", 22), BUS_OK);
    bus_result_unsubscribe(w);

    rec_state_t s;
    rec_init(&s);
    CHECK_INT(bus_recorder_start(api, on_record, on_dead, &s), BUS_OK);
    CHECK(wait_count(&s.records, 1, 5000));
    nats_fixture_sleep_ms(1500); /* at least one more fetch cycle */
    CHECK_INT(atomic_load(&s.records), 1);
    pthread_mutex_lock(&s.mu);
    CHECK_STR(s.last_record, "{\"status\":\"succeeded\"}");
    pthread_mutex_unlock(&s.mu);
    bus_recorder_stop(api);
out:
    bus_close(worker);
    bus_close(api);
    nats_fixture_destroy(&f);
}

TEST("after unsubscribe the waiter's callback is not called")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    waiter_state_t gone = {0}, stays = {0};
    pthread_mutex_init(&gone.mu, NULL);
    pthread_mutex_init(&stays.mu, NULL);
    char id[ID_LEN + 1];
    id_new(id);
    bus_waiter_t *w1 = bus_result_subscribe(b, id, on_result, &gone);
    bus_waiter_t *w2 = bus_result_subscribe(b, id, on_result, &stays);
    CHECK(w1 && w2);
    CHECK_INT(bus_result_publish(b, id, "one", 3), BUS_OK);
    CHECK(wait_count(&gone.n, 1, 5000));
    CHECK(wait_count(&stays.n, 1, 5000));
    bus_result_unsubscribe(w1);
    CHECK_INT(bus_result_publish(b, id, "two", 3), BUS_OK);
    CHECK(wait_count(&stays.n, 2, 5000)); /* the message did go out */
    nats_fixture_sleep_ms(100);
    CHECK_INT(atomic_load(&gone.n), 1);
    bus_result_unsubscribe(w2);
    bus_result_unsubscribe(NULL);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("the recorder gets results published while it was not running, and retries a nak")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    for (int i = 0; i < 3; i++) {
        char id[ID_LEN + 1];
        id_new(id);
        CHECK_INT(bus_result_publish(b, id, "r", 1), BUS_OK);
    }
    rec_state_t s;
    rec_init(&s);
    atomic_store(&s.fail_first, 1);
    CHECK_INT(bus_recorder_start(b, on_record, NULL, &s), BUS_OK);
    CHECK(wait_count(&s.records, 3, 10000));
    CHECK_INT(atomic_load(&s.fail_first), 0);
    bus_recorder_stop(b);
    /* durable: a new recorder (another replica) does not see them again */
    rec_state_t s2;
    rec_init(&s2);
    CHECK_INT(bus_recorder_start(b, on_record, NULL, &s2), BUS_OK);
    nats_fixture_sleep_ms(1500);
    CHECK_INT(atomic_load(&s2.records), 0);
    bus_recorder_stop(b);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

/* ---- NATS down ---- */

TEST("request publish answers unavailable, not a hang, when NATS is stopped")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    nats_fixture_stop(&f);
    char id[ID_LEN + 1];
    id_new(id);
    /* right away (the client may not have noticed yet) and once it has */
    for (int round = 0; round < 2; round++) {
        uint64_t t0 = time_mono_ns();
        CHECK_INT(bus_request_publish(b, id, "x", 1), BUS_EUNAVAIL);
        uint64_t took_ms = (time_mono_ns() - t0) / 1000000;
        if (took_ms > 5000)
            fprintf(stderr, "  publish took %llu ms\n", (unsigned long long)took_ms);
        CHECK(took_ms <= 5000);
        for (int i = 0; i < 100 && bus_connected(b); i++)
            nats_fixture_sleep_ms(20);
    }
    CHECK(!bus_connected(b));
    int64_t p = 0, a = 0;
    CHECK_INT(bus_queue_depth(b, &p, &a), BUS_EUNAVAIL);
    CHECK_INT(p, -1);
    bus_msg_t *m = NULL;
    int n = 0;
    CHECK(bus_worker_fetch(b, 1, 200, &m, &n) != BUS_OK);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("after a restart on the same store the bus reconnects, queued requests survive")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    rec_state_t s;
    rec_init(&s);
    CHECK_INT(bus_recorder_start(b, on_record, on_dead, &s), BUS_OK);
    char id1[ID_LEN + 1], id2[ID_LEN + 1], rid[ID_LEN + 1];
    id_new(id1);
    id_new(id2);
    id_new(rid);
    CHECK_INT(bus_request_publish(b, id1, "before", 6), BUS_OK);
    CHECK(nats_fixture_restart(&f) == 0);
    for (int i = 0; i < 500 && !bus_connected(b); i++)
        nats_fixture_sleep_ms(20);
    CHECK(bus_connected(b));
    CHECK_INT(bus_request_publish(b, id2, "after", 5), BUS_OK);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 3000, &m), BUS_OK);
    CHECK(m && data_is(m, "before"));
    bus_msg_ack(m);
    bus_msg_free(m);
    CHECK_INT(fetch_one(b, 3000, &m), BUS_OK);
    CHECK(m && data_is(m, "after"));
    bus_msg_ack(m);
    bus_msg_free(m);
    /* the recorder survived the restart too */
    CHECK_INT(bus_result_publish(b, rid, "res", 3), BUS_OK);
    CHECK(wait_count(&s.records, 1, 10000));
    bus_recorder_stop(b);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("a bus whose setup failed while NATS was down sets up streams once NATS answers")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    nats_fixture_stop(&f);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_connect_lazy(&c, "lazy");
    CHECK(b != NULL);
    CHECK_INT(bus_setup(b), BUS_EUNAVAIL);
    rec_state_t s;
    rec_init(&s);
    CHECK_INT(bus_recorder_start(b, on_record, on_dead, &s), BUS_OK);
    CHECK(nats_fixture_restart(&f) == 0);
    for (int i = 0; i < 500 && !bus_connected(b); i++)
        nats_fixture_sleep_ms(20);
    CHECK(bus_connected(b));
    char id[ID_LEN + 1], rid[ID_LEN + 1];
    id_new(id);
    id_new(rid);
    int rc = BUS_EUNAVAIL;
    for (int i = 0; i < 30 && rc != BUS_OK; i++) { /* setup retries at most once a second */
        rc = bus_request_publish(b, id, "late", 4);
        if (rc != BUS_OK)
            nats_fixture_sleep_ms(100);
    }
    CHECK_INT(rc, BUS_OK);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 3000, &m), BUS_OK);
    CHECK(m && data_is(m, "late"));
    bus_msg_ack(m);
    bus_msg_free(m);
    CHECK_INT(bus_result_publish(b, rid, "res", 3), BUS_OK);
    CHECK(wait_count(&s.records, 1, 10000));
    bus_recorder_stop(b);
    bus_close(b);
    nats_fixture_destroy(&f);
}

TEST("a waiter unsubscribed after its bus closed is released without a crash")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    waiter_state_t ws = {0};
    pthread_mutex_init(&ws.mu, NULL);
    char id[ID_LEN + 1];
    id_new(id);
    bus_waiter_t *w = bus_result_subscribe(b, id, on_result, &ws);
    CHECK(w != NULL);
    bus_close(b);
    bus_result_unsubscribe(w);
    CHECK_INT(atomic_load(&ws.n), 0);
out:
    nats_fixture_destroy(&f);
}

TEST("a request exhausted while no recorder listened is dead-lettered when one starts")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    c.max_deliver = 2;
    c.ack_wait_ms = 1000;
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char id[ID_LEN + 1], id2[ID_LEN + 1];
    id_new(id);
    id_new(id2);
    CHECK_INT(bus_request_publish(b, id, "{\"missed\":1}", 12), BUS_OK);
    int deliveries = 0;
    for (int i = 0; i < 12; i++) {
        bus_msg_t *m = NULL;
        if (fetch_one(b, 250, &m) == BUS_OK) {
            deliveries++;
            bus_msg_nak(m, 0);
            bus_msg_free(m);
        }
    }
    CHECK_INT(deliveries, 2);
    /* a later request is processed normally */
    CHECK_INT(bus_request_publish(b, id2, "ok", 2), BUS_OK);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    CHECK(m && data_is(m, "ok"));
    bus_msg_ack(m);
    bus_msg_free(m);
    CHECK_INT(stored_settles(b, 1), 1); /* the exhausted one lingers */

    rec_state_t s;
    rec_init(&s);
    CHECK_INT(bus_recorder_start(b, on_record, on_dead, &s), BUS_OK);
    CHECK(wait_count(&s.dead, 1, 5000));
    nats_fixture_sleep_ms(1200);
    CHECK_INT(atomic_load(&s.dead), 1);
    pthread_mutex_lock(&s.mu);
    CHECK_STR(s.last_dead, "{\"missed\":1}");
    pthread_mutex_unlock(&s.mu);
    CHECK_INT(stored_settles(b, 0), 0);
    bus_recorder_stop(b);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("a request larger than the configured maximum payload is refused as invalid")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    c.max_payload = 1024;
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char *big = xcalloc(1, 4096);
    memset(big, 'x', 4095);
    char id[ID_LEN + 1];
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, big, 4095), BUS_EINVAL);
    /* beyond what the server itself accepts (8 MiB here) */
    size_t huge_len = (size_t)9 << 20;
    char *huge = xcalloc(1, huge_len);
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, huge, huge_len), BUS_EINVAL);
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, big, 100), BUS_OK);
    CHECK(bus_connected(b));
    free(huge);
    free(big);
    bus_close(b);
out:
    nats_fixture_destroy(&f);
}

TEST("a fetched message can be freed after its bus closed")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *b = bus_up(&f, &c);
    CHECK(b != NULL);
    if (!b)
        goto out;
    char id[ID_LEN + 1];
    id_new(id);
    CHECK_INT(bus_request_publish(b, id, "keep", 4), BUS_OK);
    bus_msg_t *m = NULL;
    CHECK_INT(fetch_one(b, 2000, &m), BUS_OK);
    bus_close(b);
    CHECK(m && data_is(m, "keep"));
    bus_msg_free(m);
out:
    nats_fixture_destroy(&f);
}

TEST("two workers on the shared durable each get different requests, none twice")
{
    nats_fixture_t f;
    CHECK(nats_fixture_start(&f) == 0);
    config_nats_t c;
    cfg_for(&c, &f);
    bus_t *api = bus_up(&f, &c);
    char err[256];
    bus_t *w1 = bus_connect(&c, "w1", err, sizeof(err));
    bus_t *w2 = bus_connect(&c, "w2", err, sizeof(err));
    CHECK(api && w1 && w2);
    if (!api || !w1 || !w2)
        goto out;
    enum { N = 10 };
    for (int i = 0; i < N; i++) {
        char id[ID_LEN + 1], body[8];
        id_new(id);
        snprintf(body, sizeof(body), "%d", i);
        CHECK_INT(bus_request_publish(api, id, body, strlen(body)), BUS_OK);
    }
    int seen[N] = {0}, total = 0, from1 = 0, from2 = 0;
    for (int round = 0; round < 20 && total < N; round++) {
        bus_t *w = round % 2 ? w2 : w1;
        bus_msg_t *ms[3];
        int n = 0;
        if (bus_worker_fetch(w, 3, 500, ms, &n) != BUS_OK)
            continue;
        for (int i = 0; i < n; i++) {
            size_t len;
            const char *d = bus_msg_data(ms[i], &len);
            char num[8] = "";
            snprintf(num, sizeof(num), "%.*s", (int)(len < 7 ? len : 7), d ? d : "");
            int k = (int)strtol(num, NULL, 10);
            if (k >= 0 && k < N)
                seen[k]++;
            bus_msg_ack(ms[i]);
            bus_msg_free(ms[i]);
        }
        total += n;
        *(w == w1 ? &from1 : &from2) += n;
    }
    CHECK_INT(total, N);
    CHECK(from1 > 0 && from2 > 0);
    for (int i = 0; i < N; i++)
        CHECK_INT(seen[i], 1);
out:
    bus_close(w2);
    bus_close(w1);
    bus_close(api);
    nats_fixture_destroy(&f);
}

T_MAIN
