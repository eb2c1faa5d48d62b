/* What both daemons (faas-api, faas-worker) do around their real work: signals, creating the
 * NATS streams once NATS answers, reloading plugins on SIGHUP. */
#ifndef FAAS_DAEMON_H
#define FAAS_DAEMON_H

#include <signal.h>
#include <stdbool.h>

#include "bus.h"
#include "plugin.h"

/* Blocks SIGINT, SIGTERM and SIGHUP (every thread started afterwards inherits the mask; the
 * main thread takes them with daemon_signal_wait) and ignores SIGPIPE. */
void daemon_signals_block(sigset_t *set);
/* The next of those signals. */
int daemon_signal_wait(const sigset_t *set);

/* Creates the streams and consumers in a background thread, retrying with backoff until NATS
 * answers, then calls ready(arg) (may be NULL) on that thread. */
void daemon_bus_setup_async(bus_t *bus, void (*ready)(void *arg), void *arg);

/* SIGHUP: re-reads `config_path` and swaps in its plugins if all load; otherwise logs why and
 * keeps the running set. */
void daemon_plugins_reload(plugin_host_t *plugins, const char *config_path, bool require_secret);

#endif
