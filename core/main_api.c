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
#include "daemon.h"
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

/* Once the streams exist: the recorder (and the started-notice listener). */
static void bus_ready(void *arg)
{
    if (api_recorder_start(arg) != 0)
        log_error("cannot start the result recorder");
    else
        log_info("result recorder started");
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

    sigset_t set;
    daemon_signals_block(&set);

    int rc = 1;
    if (auth_init() != 0) {
        log_error("cannot initialise libsodium");
        goto done;
    }
    app.started_at = time_now_ms();
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
    daemon_bus_setup_async(app.bus, bus_ready, &app);
    if (!(app.http = http_server_new(&app.cfg.server, api_routes, &app, err, sizeof err))) {
        log_error("cannot start the HTTP server: %s", err);
        goto done;
    }
    log_info("faas-api %s listening on http://%s:%d (store %s, nats %s)", FAAS_VERSION,
             app.cfg.server.listen, http_server_port(app.http), app.cfg.store.driver,
             app.cfg.nats.url);
    int sig;
    while ((sig = daemon_signal_wait(&set)) == SIGHUP)
        daemon_plugins_reload(app.plugins, app.cfg.path, true);
    log_info("signal %d: finishing in-flight requests", sig);
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
