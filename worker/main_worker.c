/* faas-worker: runs executions from the queue in fresh hardened containers. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "daemon.h"
#include "http.h"
#include "log.h"
#include "plugin.h"
#include "worker.h"

#define FAAS_VERSION "0.1.0"

typedef struct {
    config_t cfg;
    bus_t *bus;
    plugin_host_t *plugins;
    worker_t *worker;
    http_server_t *http;
} app_t;

static int route_healthz(http_request_t *req)
{
    http_respond(req, 200, "application/json", "{\"status\":\"ok\"}", 15);
    return HTTP_DONE;
}

static int route_readyz(http_request_t *req)
{
    app_t *app = req->app;
    bool nats = bus_connected(app->bus), docker = worker_docker_ok(app->worker);
    if (nats && docker) {
        http_respond(req, 200, "application/json", "{\"status\":\"ready\"}", 18);
    } else {
        http_respond_error(req, 503, "%s%s%s unavailable", nats ? "" : "nats",
                           !nats && !docker ? " and " : "", docker ? "" : "docker");
    }
    return HTTP_DONE;
}

static int route_metrics(http_request_t *req)
{
    app_t *app = req->app;
    buf_t b = {0};
    worker_metrics_write(app->worker, &b);
    http_metrics_write(app->http, &b);
    plugin_metrics_write(app->plugins, &b);
    http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
    return HTTP_DONE;
}

static const http_route_t routes[] = {
    {"GET", "/healthz", route_healthz},
    {"GET", "/readyz", route_readyz},
    {"GET", "/metrics", route_metrics},
    {NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    const char *config_path = "config.lua";
    bool check = false;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                          {"check-config", no_argument, NULL, 'k'},
                                          {"version", no_argument, NULL, 'v'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'k': check = true; break;
        case 'v': printf("faas-worker %s\n", FAAS_VERSION); return 0;
        case 'h':
            printf("usage: faas-worker [--config FILE] [--check-config] [--version]\n");
            return 0;
        default: return 2;
        }
    }
    log_set_component("worker");
    static app_t app;
    char err[1024];
    if (config_load(&app.cfg, config_path, false, err, sizeof err) != 0) {
        fprintf(stderr, "faas-worker: %s\n", err);
        return 1;
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
    if (!(app.plugins = plugin_host_new(&app.cfg, NULL, err, sizeof err))) {
        log_error("cannot load plugins: %s", err);
        goto done;
    }
    app.bus = bus_connect_lazy(&app.cfg.nats, "faas-worker");
    daemon_bus_setup_async(app.bus, NULL, NULL);
    app.worker = worker_new(&app.cfg, app.bus, app.plugins);
    if (worker_start(app.worker) != 0) {
        log_error("cannot start worker threads");
        goto done;
    }
    if (app.cfg.worker.port > 0) {
        config_server_t hs = app.cfg.server;
        str_copy(hs.listen, sizeof hs.listen, app.cfg.worker.listen);
        hs.port = app.cfg.worker.port;
        hs.threads = 2;
        hs.cors_enabled = false;
        if (!(app.http = http_server_new(&hs, routes, &app, err, sizeof err))) {
            log_error("cannot start the health/metrics server: %s", err);
            goto done;
        }
    }
    log_info("faas-worker %s '%s': %d slots, docker '%s', pull policy %s, nats %s", FAAS_VERSION,
             app.cfg.worker.id, app.cfg.worker.concurrency, app.cfg.worker.docker_socket,
             app.cfg.worker.pull_policy, app.cfg.nats.url);
    int sig;
    while ((sig = daemon_signal_wait(&set)) == SIGHUP)
        daemon_plugins_reload(app.plugins, config_path, false);
    log_info("signal %d: finishing the executions in hand", sig);
    rc = 0;
done:
    worker_free(app.worker);
    http_server_free(app.http);
    bus_close(app.bus);
    plugin_host_free(app.plugins);
    config_free(&app.cfg);
    if (rc == 0)
        log_info("stopped");
    return rc;
}
