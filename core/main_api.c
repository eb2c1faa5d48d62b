/* faas-api: the REST API server. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "log.h"

#define FAAS_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out, "usage: faas-api [--config FILE] [--check-config] [--version]\n"
                 "  --config FILE    configuration (default: config.lua)\n"
                 "  --check-config   print the effective configuration (secrets masked) and "
                 "exit\n"
                 "  --get KEY        print one effective setting (nats.url, server.listen, "
                 "server.port, store.driver) and exit\n");
}

/* Creates the streams and consumers once NATS is reachable, then starts the recorder. */
static void *bus_setup_main(void *arg)
{
    api_t *app = arg;
    int delay_ms = 100;
    while (bus_setup(app->bus) != BUS_OK) {
        usleep((useconds_t)delay_ms * 1000);
        if (delay_ms < 2000)
            delay_ms *= 2;
    }
    if (api_recorder_start(app) != 0)
        log_error("cannot start the result recorder");
    else
        log_info("streams ready, result recorder started");
    return NULL;
}

static void reload(api_t *app)
{
    config_t next = {0};
    char err[512];
    if (config_load(&next, app->cfg.path, true, err, sizeof err) != 0) {
        log_error("reload: keeping the running configuration: %s", err);
        return;
    }
    if (plugin_host_reload(app->plugins, &next, err, sizeof err) != 0)
        log_error("reload: keeping the running plugins: %s", err);
    else
        log_info("reload: plugins reloaded from '%s' (other settings apply at restart)",
                 app->cfg.path);
    config_free(&next);
}

int main(int argc, char **argv)
{
    const char *config_path = "config.lua";
    bool check = false;
    const char *get = NULL;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                          {"get", required_argument, NULL, 'g'},
                                          {"check-config", no_argument, NULL, 'k'},
                                          {"version", no_argument, NULL, 'v'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'k': check = true; break;
        case 'g': get = optarg; break;
        case 'v': printf("faas-api %s\n", FAAS_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    log_set_component("api");
    static api_t app;
    char err[1024];
    if (config_load(&app.cfg, config_path, !get, err, sizeof err) != 0) {
        fprintf(stderr, "faas-api: %s\n", err);
        return 1;
    }
    if (get) {
        int found = 1;
        if (strcmp(get, "nats.url") == 0)
            printf("%s\n", app.cfg.nats.url);
        else if (strcmp(get, "server.listen") == 0)
            printf("%s\n", app.cfg.server.listen);
        else if (strcmp(get, "server.port") == 0)
            printf("%d\n", app.cfg.server.port);
        else if (strcmp(get, "store.driver") == 0)
            printf("%s\n", app.cfg.store.driver);
        else
            found = 0;
        config_free(&app.cfg);
        if (!found)
            fprintf(stderr, "faas-api: unknown setting '%s'\n", get);
        return found ? 0 : 1;
    }
    if (check) {
        config_print(&app.cfg, stdout);
        config_free(&app.cfg);
        return 0;
    }
    log_set_level(log_level_parse(app.cfg.log_level));

    /* every thread inherits this mask; the main thread takes the signals with sigwait */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    if (auth_init() != 0) {
        log_error("cannot initialise libsodium");
        goto done;
    }
    app.started_at = time_now_ms();
    pthread_rwlock_init(&app.cfg_lock, NULL);
    if (!(app.store = store_open(&app.cfg.store, err, sizeof err))) {
        log_error("cannot open the store: %s", err);
        goto done;
    }
    if (!(app.plugins = plugin_host_new(&app.cfg, app.store, err, sizeof err))) {
        log_error("cannot load plugins: %s", err);
        goto done;
    }
    app.bus = bus_connect_lazy(&app.cfg.nats, "faas-api");
    app.waits = api_waits_new();
    pthread_t setup;
    pthread_create(&setup, NULL, bus_setup_main, &app);
    pthread_detach(setup);
    if (!(app.http = http_server_new(&app.cfg.server, api_routes, &app, err, sizeof err))) {
        log_error("cannot start the HTTP server: %s", err);
        goto done;
    }
    log_info("faas-api %s listening on http://%s:%d (store %s, nats %s)", FAAS_VERSION,
             app.cfg.server.listen, http_server_port(app.http), app.cfg.store.driver,
             app.cfg.nats.url);
    for (;;) {
        int sig = 0;
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            reload(&app);
            continue;
        }
        log_info("signal %d: finishing in-flight requests", sig);
        break;
    }
    rc = 0;
done:
    http_server_free(app.http);
    api_waits_free(app.waits);
    bus_recorder_stop(app.bus);
    bus_close(app.bus);
    plugin_host_free(app.plugins);
    store_close(app.store);
    config_free(&app.cfg);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
