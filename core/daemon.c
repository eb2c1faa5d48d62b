#include "daemon.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void daemon_signals_block(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int daemon_signal_wait(const sigset_t *set)
{
    int sig = 0;
    while (sigwait(set, &sig) != 0)
        ;
    return sig;
}

typedef struct {
    bus_t *bus;
    void (*ready)(void *arg);
    void *arg;
} setup_t;

static void *setup_main(void *p)
{
    setup_t *s = p;
    int delay_ms = 100;
    while (bus_setup(s->bus) != BUS_OK) {
        usleep((useconds_t)delay_ms * 1000);
        if (delay_ms < 2000)
            delay_ms *= 2;
    }
    log_info("streams and consumers ready");
    if (s->ready)
        s->ready(s->arg);
    free(s);
    return NULL;
}

void daemon_bus_setup_async(bus_t *bus, void (*ready)(void *arg), void *arg)
{
    setup_t *s = xmalloc(sizeof *s);
    *s = (setup_t){bus, ready, arg};
    pthread_t t;
    if (pthread_create(&t, NULL, setup_main, s) != 0) {
        log_error("cannot start the NATS setup thread");
        abort();
    }
    pthread_detach(t);
}

void daemon_plugins_reload(plugin_host_t *plugins, const char *config_path, bool require_secret)
{
    config_t next = {0};
    char err[1024];
    if (config_load(&next, config_path, require_secret, err, sizeof err) != 0)
        log_error("reload: keeping the running configuration: %s", err);
    else if (plugin_host_reload(plugins, &next, err, sizeof err) != 0)
        log_error("reload: keeping the running plugins: %s", err);
    else
        log_info("reload: plugins reloaded from '%s' (other settings apply at restart)",
                 config_path);
    config_free(&next);
}
