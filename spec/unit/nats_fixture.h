/* A real nats-server with JetStream for a test: its own temp store dir and a free loopback
 * port. Header-only (static functions), reusable by any test:
 *
 *   nats_fixture_t f;
 *   if (nats_fixture_start(&f) != 0) ...;   // f.url = "nats://127.0.0.1:<port>"
 *   nats_fixture_stop(&f);                  // server down, store dir kept
 *   nats_fixture_restart(&f);               // same port and store dir
 *   nats_fixture_destroy(&f);               // stops it and removes the dir
 *
 * The server dies with the test process (PR_SET_PDEATHSIG) and logs to <dir>/server.log.
 * NATS_SERVER names another binary. Only this process's own server is ever signalled.
 * It allows 8 MiB payloads like the deployed server (config max_payload). */
#ifndef FAAS_NATS_FIXTURE_H
#define FAAS_NATS_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pid_t pid;      /* 0 when not running */
    int port;
    char dir[256];  /* temp dir: server.conf, server.log, js/ */
    char url[64];
} nats_fixture_t;

static inline void nats_fixture_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline int nats_fixture_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* 1 when the server answers with its INFO line on the client port. */
static inline int nats_fixture_ready(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        struct pollfd p = {fd, POLLIN, 0};
        char buf[8] = {0};
        if (poll(&p, 1, 1000) == 1 && read(fd, buf, 4) == 4 && memcmp(buf, "INFO", 4) == 0)
            ok = 1;
    }
    close(fd);
    return ok;
}

/* Starts nats-server on f->port with store f->dir/js; waits until it serves clients. */
static inline int nats_fixture_spawn(nats_fixture_t *f)
{
    char conf[300], log[300], store[300], port[16];
    snprintf(conf, sizeof(conf), "%s/server.conf", f->dir);
    snprintf(log, sizeof(log), "%s/server.log", f->dir);
    snprintf(store, sizeof(store), "%s/js", f->dir);
    snprintf(port, sizeof(port), "%d", f->port);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        /* NATS_SERVER overrides; Debian installs it in /usr/sbin, not on every PATH */
        const char *bin = getenv("NATS_SERVER");
        const char *cands[] = {bin && *bin ? bin : "nats-server", "/usr/sbin/nats-server",
                               "/usr/local/bin/nats-server"};
        for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++)
            execlp(cands[i], "nats-server", "-c", conf, "-js", "-sd", store, "-a", "127.0.0.1",
                   "-p", port, (char *)NULL);
        _exit(127);
    }
    f->pid = pid;
    for (int i = 0; i < 200; i++) { /* up to ~10 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            f->pid = 0;
            fprintf(stderr, "nats fixture: nats-server exited (see %s)\n", log);
            return -1;
        }
        if (nats_fixture_ready(f->port))
            return 0;
        nats_fixture_sleep_ms(50);
    }
    fprintf(stderr, "nats fixture: nats-server not ready on port %d\n", f->port);
    return -1;
}

static inline int nats_fixture_start(nats_fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/faas-nats-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        f->dir[0] = '\0';
        return -1;
    }
    char conf[300];
    snprintf(conf, sizeof(conf), "%s/server.conf", f->dir);
    FILE *c = fopen(conf, "w");
    if (!c)
        return -1;
    fputs("max_payload: 8388608\n", c);
    fclose(c);
    /* The port is free when we look; another test may take it before the server binds it,
     * so try a few. */
    for (int attempt = 0; attempt < 5; attempt++) {
        f->port = nats_fixture_free_port();
        if (f->port <= 0)
            continue;
        snprintf(f->url, sizeof(f->url), "nats://127.0.0.1:%d", f->port);
        if (nats_fixture_spawn(f) == 0)
            return 0;
    }
    return -1;
}

/* Stops the server (SIGTERM, then SIGKILL after 5 s); keeps the port and the store. */
static inline int nats_fixture_stop(nats_fixture_t *f)
{
    if (f->pid <= 0)
        return 0;
    kill(f->pid, SIGTERM);
    int st;
    for (int i = 0; i < 100; i++) {
        if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
            f->pid = 0;
            return 0;
        }
        nats_fixture_sleep_ms(50);
    }
    kill(f->pid, SIGKILL);
    waitpid(f->pid, &st, 0);
    f->pid = 0;
    return 0;
}

/* Starts the server again on the same port and store dir. */
static inline int nats_fixture_restart(nats_fixture_t *f)
{
    nats_fixture_stop(f);
    for (int attempt = 0; attempt < 20; attempt++) {
        if (nats_fixture_spawn(f) == 0)
            return 0;
        nats_fixture_sleep_ms(100); /* the port may linger briefly */
    }
    return -1;
}

static inline int nats_fixture_rm(const char *path, const struct stat *sb, int flag,
                                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static inline void nats_fixture_destroy(nats_fixture_t *f)
{
    nats_fixture_stop(f);
    if (f->dir[0])
        nftw(f->dir, nats_fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
    f->dir[0] = '\0';
}

#endif
