/* The bus: NATS JetStream through cnats. Requests go to the WorkQueue stream on
 * `functions`, results to the RESULTS stream on `execution.<id>`. Only bus.c includes nats.h.
 * A bus_t is safe to use from several threads (the cnats connection is).
 * Threads: result waiters' callbacks run on cnats' shared delivery thread; the record and
 * dead-letter callbacks run on the one recorder thread; everything else on the caller's. */
#ifndef FAAS_BUS_H
#define FAAS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum {
    BUS_OK = 0,
    BUS_EUNAVAIL = -1, /* not connected / no JetStream answer in time: 503 */
    BUS_ETIMEOUT = -2, /* fetch found nothing before its timeout */
    BUS_EINVAL = -3,
};

typedef struct bus bus_t;
typedef struct bus_msg bus_msg_t;
typedef struct bus_waiter bus_waiter_t;

/* Connects to cfg->url (reconnecting forever in the background afterwards). `name` is the
 * connection name shown by the server. NULL with a message in `err` when the first connect
 * fails within cfg->connect_timeout_ms. */
bus_t *bus_connect(const config_nats_t *cfg, const char *name, char *err, size_t errlen);
/* Like bus_connect but never fails: keeps trying in the background. */
bus_t *bus_connect_lazy(const config_nats_t *cfg, const char *name);
bool bus_connected(bus_t *b);
/* Stops the recorder, waits for a fetch under way, closes the connection and frees the bus.
 * Other threads must be done with it (messages from it may still be freed afterwards, not
 * acked). NULL is a no-op. */
void bus_close(bus_t *b);

/* Creates or updates (idempotently) the WorkQueue stream on cfg->subject (file storage,
 * Duplicates window >= 2 min), the RESULTS stream on "execution.*" (limits, MaxAge), the
 * workers' durable pull consumer (explicit ack, AckWait, MaxDeliver) and the recorders'
 * durable pull consumer on RESULTS. Several processes may run it at once. BUS_EUNAVAIL when
 * NATS does not answer; once called (even failing), the bus redoes it by itself (at most
 * once a second) when a publish, fetch or the recorder finds the streams missing. */
int bus_setup(bus_t *b);

/* ---- API side ---- */

/* Publishes an execution request with Nats-Msg-Id = execution_id and waits for the
 * JetStream ack (bounded, ~1 s). BUS_EUNAVAIL when NATS is down (at once while the client
 * knows it is disconnected: nothing is buffered for later); BUS_EINVAL when the message is
 * larger than the stream or server allows. */
int bus_request_publish(bus_t *b, const char *execution_id, const void *data, size_t len);

/* Called on a cnats thread with the raw result message. Must not block. */
typedef void (*bus_result_fn)(void *arg, const char *data, size_t len);

/* Subscribes to execution.<execution_id> before the request is published: returns once the
 * server has the subscription. NULL when the id is not 24-hex or NATS refused. */
bus_waiter_t *bus_result_subscribe(bus_t *b, const char *execution_id, bus_result_fn fn,
                                   void *arg);
/* After it returns, `fn` is not running and is never called again for this waiter; frees
 * it. Must not be called from inside `fn`. Also fine after bus_close(). NULL is a no-op. */
void bus_result_unsubscribe(bus_waiter_t *w);

/* Called on the recorder thread for each result in RESULTS (at least once each). Returns 0
 * to ack; non-zero to nak (redelivered later). */
typedef int (*bus_record_fn)(void *arg, const char *data, size_t len);
/* Called with the original request of an execution whose deliveries ran out
 * (JetStream MAX_DELIVERIES advisory). Returns 0 when handled. */
typedef int (*bus_dead_fn)(void *arg, const char *data, size_t len);
/* Starts the recorder thread (durable cfg->recorder, shared by every API replica) and the
 * dead-letter listener (a queue group, so one replica handles each advisory; requests
 * exhausted while nobody listened are found by a sweep at start and every 30 s). `dead`
 * may be NULL; it must be idempotent (a rare retry can repeat a request). After a 0 from
 * `dead` the request is deleted from the work queue; non-zero retries it about every second.
 * It keeps going across NATS restarts. BUS_EINVAL when already started. */
int bus_recorder_start(bus_t *b, bus_record_fn rec, bus_dead_fn dead, void *arg);
void bus_recorder_stop(bus_t *b); /* joins the thread (up to ~1 s); no-op when not started */

/* Messages waiting in the work queue and the workers' consumer (for /metrics), -1 unknown. */
int bus_queue_depth(bus_t *b, int64_t *pending, int64_t *ack_pending);
/* Messages stored in the work-queue stream (waiting, in flight, or dead letters not yet
 * removed), -1 unknown. BUS_EUNAVAIL when it cannot be asked. */
int bus_queue_stored(bus_t *b, int64_t *msgs);

/* Tells the API replicas that an execution has started (plain NATS, best effort: the result
 * is what counts) on execution.<id>.started, a subject outside the RESULTS stream and unseen
 * by seed clients waiting on execution.<id>. */
int bus_started_publish(bus_t *b, const char *execution_id, const void *data, size_t len);
/* Receives started notices; one API replica (a queue group) gets each. `fn` runs on a cnats
 * thread until bus_close(). */
int bus_started_subscribe(bus_t *b, bus_result_fn fn, void *arg);

/* ---- worker side ---- */

/* Fetches up to `max` requests from the workers' shared durable consumer, waiting at most
 * timeout_ms. BUS_ETIMEOUT when none came, BUS_EUNAVAIL when NATS is down. `msgs` (room for
 * `max`) gets `*n` messages the caller frees one by one with bus_msg_free(). Fetches on one
 * bus are serialised: use one fetching thread per bus and hand messages to workers. */
int bus_worker_fetch(bus_t *b, int max, int64_t timeout_ms, bus_msg_t **msgs, int *n);
const char *bus_msg_data(bus_msg_t *m, size_t *len);
int bus_msg_delivered(bus_msg_t *m); /* 1 on the first delivery, -1 unknown */
/* Ack, nak (redeliver after delay_ms; 0 = now), in progress (restarts AckWait), term (never
 * redeliver). 0 or BUS_EUNAVAIL. The message stays owned by the caller. */
int bus_msg_ack(bus_msg_t *m);
int bus_msg_nak(bus_msg_t *m, int64_t delay_ms);
int bus_msg_in_progress(bus_msg_t *m);
int bus_msg_term(bus_msg_t *m);
void bus_msg_free(bus_msg_t *m);

/* Publishes a result on execution.<execution_id> to RESULTS with Nats-Msg-Id = the id, so a
 * redelivered execution cannot be recorded twice. Waits for the ack. */
int bus_result_publish(bus_t *b, const char *execution_id, const void *data, size_t len);

#endif
