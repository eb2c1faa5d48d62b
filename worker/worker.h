/* The worker daemon: `concurrency` slots, each fetching one execution at a time from the
 * shared durable consumer, running it (runner.c), passing the result through the hooks and
 * publishing it; plus a reaper of orphaned containers. */
#ifndef FAAS_WORKER_H
#define FAAS_WORKER_H

#include <stdbool.h>

#include "bus.h"
#include "config.h"
#include "hooks.h"
#include "plugin.h"
#include "util.h"

typedef struct worker worker_t;

/* `cfg`, `bus` and `plugins` (may be NULL) must outlive the worker. */
worker_t *worker_new(const config_t *cfg, bus_t *bus, plugin_host_t *plugins);
/* Adds a C hook (before the Lua postprocess hook, which is always last). At most 8. */
void worker_hook_add(worker_t *w, const worker_hook_t *hook);
/* Starts the slots and the reaper. 0 or -1. */
int worker_start(worker_t *w);
/* Stops fetching; every slot finishes (or naks) what it holds; joins. Then frees. */
void worker_free(worker_t *w);

/* true when the Docker engine answered the last ping. */
bool worker_docker_ok(worker_t *w);
/* Prometheus text for /metrics into `b`. */
void worker_metrics_write(worker_t *w, buf_t *b);

#endif
