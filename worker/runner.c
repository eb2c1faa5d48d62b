/* The container runner: prepare (image, create, attach, arm wait, start) -> trigger (write
 * the input, close stdin) -> collect (frames, timeout, output cap, exit, OOM) -> cleanup. */
#include "runner.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define KEEPALIVE_NS (5ULL * 1000000000ULL)
#define DRAIN_NS (5ULL * 1000000000ULL)   /* after a kill: how long the stream may take to end */
#define WAIT_REPLY_MS 15000               /* the wait reply after the stream ended / a kill */
#define READ_CHUNK (64 << 10)
#define WRITE_CHUNK (64 << 10)

void runner_demux_feed(runner_demux_t *d, const unsigned char *p, size_t n,
                       void (*out)(void *arg, int stream, const unsigned char *p, size_t len),
                       void *arg)
{
    while (n > 0) {
        if (d->left == 0) {
            size_t take = 8 - d->hdr_have;
            if (take > n)
                take = n;
            memcpy(d->hdr + d->hdr_have, p, take);
            d->hdr_have += take;
            p += take;
            n -= take;
            if (d->hdr_have == 8) {
                d->stream = d->hdr[0];
                d->left = (uint64_t)d->hdr[4] << 24 | (uint64_t)d->hdr[5] << 16 |
                          (uint64_t)d->hdr[6] << 8 | (uint64_t)d->hdr[7];
                d->hdr_have = 0;
            }
            continue;
        }
        size_t take = d->left < n ? (size_t)d->left : n;
        out(arg, d->stream, p, take);
        d->left -= take;
        p += take;
        n -= take;
    }
}

void runner_result_clear(runner_result_t *res)
{
    if (!res)
        return;
    buf_free(&res->out);
    buf_free(&res->err);
    buf_free(&res->result);
}

/* ---- create body ---- */

static bool env_name_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s == '=' || (unsigned char)*s < 0x20)
            return false;
    return true;
}

char *runner_create_body(const runner_spec_t *spec)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *env_in = NULL;
    char *out = NULL;
    cJSON_AddStringToObject(root, "Image", spec->image ? spec->image : "");
    if (spec->env_json && *spec->env_json) {
        env_in = cJSON_Parse(spec->env_json);
        if (!cJSON_IsObject(env_in))
            goto done;
        cJSON *env = cJSON_AddArrayToObject(root, "Env");
        const cJSON *e;
        cJSON_ArrayForEach(e, env_in)
        {
            if (!env_name_ok(e->string))
                goto done;
            char *kv;
            if (cJSON_IsString(e))
                kv = xasprintf("%s=%s", e->string, e->valuestring);
            else if (cJSON_IsNumber(e))
                kv = xasprintf("%s=%.17g", e->string, e->valuedouble);
            else if (cJSON_IsBool(e))
                kv = xasprintf("%s=%s", e->string, cJSON_IsTrue(e) ? "true" : "false");
            else
                goto done;
            cJSON_AddItemToArray(env, cJSON_CreateString(kv));
            free(kv);
        }
    }
    /* stdin stays open until the runner closes its write side; nothing reads a TTY. */
    cJSON_AddBoolToObject(root, "OpenStdin", true);
    cJSON_AddBoolToObject(root, "StdinOnce", true);
    cJSON_AddBoolToObject(root, "AttachStdin", true);
    cJSON_AddBoolToObject(root, "AttachStdout", true);
    cJSON_AddBoolToObject(root, "AttachStderr", true);
    cJSON_AddBoolToObject(root, "Tty", false);
    cJSON *labels = cJSON_AddObjectToObject(root, "Labels");
    cJSON_AddStringToObject(labels, "faas.managed", "true");
    cJSON_AddStringToObject(labels, "faas.execution",
                            spec->execution_id ? spec->execution_id : "");
    cJSON_AddStringToObject(labels, "faas.function", spec->function_id ? spec->function_id : "");
    cJSON_AddStringToObject(labels, "faas.worker", spec->worker_id ? spec->worker_id : "");

    cJSON *hc = cJSON_AddObjectToObject(root, "HostConfig");
    cJSON_AddStringToObject(hc, "NetworkMode",
                            spec->network && *spec->network ? spec->network : "none");
    cJSON *cap = cJSON_AddArrayToObject(hc, "CapDrop");
    cJSON_AddItemToArray(cap, cJSON_CreateString("ALL"));
    cJSON *sec = cJSON_AddArrayToObject(hc, "SecurityOpt");
    cJSON_AddItemToArray(sec, cJSON_CreateString("no-new-privileges:true"));
    cJSON_AddBoolToObject(hc, "Privileged", false);
    if (spec->memory > 0) {
        /* Equal values: no swap on top of the memory limit. */
        cJSON_AddNumberToObject(hc, "Memory", (double)spec->memory);
        cJSON_AddNumberToObject(hc, "MemorySwap", (double)spec->memory);
    }
    if (spec->nano_cpus > 0)
        cJSON_AddNumberToObject(hc, "NanoCpus", (double)spec->nano_cpus);
    if (spec->pids > 0)
        cJSON_AddNumberToObject(hc, "PidsLimit", (double)spec->pids);
    cJSON_AddBoolToObject(hc, "ReadonlyRootfs", true);
    cJSON *tmpfs = cJSON_AddObjectToObject(hc, "Tmpfs");
    char *topt = spec->tmpfs > 0
                     ? xasprintf("rw,noexec,nosuid,nodev,size=%lld", (long long)spec->tmpfs)
                     : xstrdup("rw,noexec,nosuid,nodev,size=16m");
    cJSON_AddStringToObject(tmpfs, "/tmp", topt);
    free(topt);
    if (spec->nofile > 0) {
        cJSON *ul = cJSON_AddArrayToObject(hc, "Ulimits");
        cJSON *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "Name", "nofile");
        cJSON_AddNumberToObject(u, "Soft", (double)spec->nofile);
        cJSON_AddNumberToObject(u, "Hard", (double)spec->nofile);
        cJSON_AddItemToArray(ul, u);
    }
    /* An init reaps zombies and forwards signals, so a kill ends the whole tree. */
    cJSON_AddBoolToObject(hc, "Init", true);
    /* Output reaches us through attach; a log driver would store a second copy of untrusted
     * output on the host's disk (and cost CPU for big outputs), so none is kept at all. */
    cJSON *lc = cJSON_AddObjectToObject(hc, "LogConfig");
    cJSON_AddStringToObject(lc, "Type", "none");
    cJSON_AddObjectToObject(lc, "Config");
    cJSON_AddBoolToObject(hc, "AutoRemove", false);
    out = cJSON_PrintUnformatted(root);
done:
    cJSON_Delete(env_in);
    cJSON_Delete(root);
    return out;
}

/* ---- run ---- */

static void set_status(runner_result_t *res, const char *status, const char *reason,
                       bool transient, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_status(runner_result_t *res, const char *status, const char *reason,
                       bool transient, const char *fmt, ...)
{
    str_copy(res->status, sizeof res->status, status);
    str_copy(res->reason, sizeof res->reason, reason ? reason : "");
    res->transient = transient;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(res->message, sizeof res->message, fmt, ap);
        va_end(ap);
    }
}

/* Inspect; pull when the policy allows. 0 when the image is there. */
static int ensure_image(docker_t *d, const runner_spec_t *spec, runner_result_t *res)
{
    const char *image = spec->image ? spec->image : "";
    const char *policy = spec->pull_policy && *spec->pull_policy ? spec->pull_policy : "if-missing";
    int rc = docker_image_inspect(d, image);
    if (rc == DOCKER_EUNAVAIL) {
        set_status(res, "error", "docker_error", true, "cannot inspect image '%s': %s", image,
                   docker_last_error(d));
        return -1;
    }
    if (rc == DOCKER_EINVAL) {
        set_status(res, "error", "image_not_found", false, "invalid image reference '%s'",
                   image);
        return -1;
    }
    bool present = rc == DOCKER_OK;
    bool always = strcmp(policy, "always") == 0;
    if (strcmp(policy, "never") == 0) {
        if (present)
            return 0;
        set_status(res, "error", "image_not_found", false,
                   "image '%s' is not present and the pull policy is never", image);
        return -1;
    }
    if (present && !always)
        return 0;
    char err[200] = "";
    rc = docker_image_pull(d, image, err, sizeof err);
    if (rc == DOCKER_OK)
        return 0;
    if (rc == DOCKER_EUNAVAIL) {
        set_status(res, "error", "docker_error", true, "%s", err);
        return -1;
    }
    /* Policy always means the registry's copy or nothing, like Kubernetes' Always. */
    set_status(res, "error", "image_not_found", false, "%s", err);
    return -1;
}

typedef struct {
    runner_result_t *res;
    size_t limit;
    bool truncated;
    int esc; /* where the result filter is inside an ANSI escape sequence (ESC_*) */
} sink_t;

enum { ESC_NONE, ESC_START, ESC_CSI, ESC_OSC };

static void cap_append(sink_t *s, buf_t *b, const unsigned char *p, size_t len)
{
    size_t room = b->len < s->limit ? s->limit - b->len : 0;
    size_t take = len < room ? len : room;
    if (take && b->len + take + 1 > b->cap) {
        /* Grow geometrically but never past the cap (+ the NUL buf_t keeps). */
        size_t cap = b->cap ? b->cap * 2 : 4096;
        if (cap < b->len + take + 1)
            cap = b->len + take + 1;
        if (cap > s->limit + 1)
            cap = s->limit + 1;
        b->data = xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (take)
        buf_append(b, p, take);
    if (room < len)
        s->truncated = true;
}

static bool result_char(unsigned char c)
{
    return (c >= 0x20 && c != 0x7f) || c == '\n' || c == '\t';
}

/* Every payload piece: into its stream's buffer and into the interleaved result without
 * control characters (but \n and \t) and without ANSI escape sequences (CSI `ESC [ ... final`,
 * OSC `ESC ] ... BEL`), each capped at the limit. The escape state survives across frames. */
static void sink_out(void *arg, int stream, const unsigned char *p, size_t len)
{
    sink_t *s = arg;
    runner_result_t *res = s->res;
    cap_append(s, stream == 2 ? &res->err : &res->out, p, len);
    size_t i = 0;
    while (i < len) {
        if (res->result.len >= s->limit) {
            s->truncated = true;
            return;
        }
        unsigned char c = p[i];
        switch (s->esc) {
        case ESC_NONE: {
            size_t j = i;
            while (j < len && result_char(p[j]))
                j++;
            if (j > i)
                cap_append(s, &res->result, p + i, j - i);
            if (j < len && p[j] == 0x1b)
                s->esc = ESC_START;
            i = j + 1; /* skips the control character at j (or ends) */
            continue;
        }
        case ESC_START:
            s->esc = c == '[' ? ESC_CSI : c == ']' ? ESC_OSC : ESC_NONE;
            break;
        case ESC_CSI:
            if (c >= 0x40 && c <= 0x7e)
                s->esc = ESC_NONE;
            break;
        case ESC_OSC:
            if (c == 0x07)
                s->esc = ESC_NONE;
            else if (c == 0x1b)
                s->esc = ESC_START;
            break;
        }
        i++;
    }
}

static void container_name(const runner_spec_t *spec, char *out, size_t cap)
{
    char exec[ID_LEN * 2 + 1];
    const char *e = spec->execution_id && *spec->execution_id ? spec->execution_id : "x";
    size_t k = 0;
    for (; *e && k < sizeof exec - 1; e++) {
        char c = *e;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        exec[k++] = ok ? c : '_';
    }
    exec[k] = '\0';
    if (spec->attempt > 0) {
        snprintf(out, cap, "faas-%s-%d", exec, spec->attempt);
    } else {
        unsigned int r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (unsigned int)time_mono_ns();
        snprintf(out, cap, "faas-%s-r%08x", exec, r);
    }
}

static int create_container(docker_t *d, const runner_spec_t *spec, const char *body,
                            runner_result_t *res)
{
    char name[96];
    char err[200] = "";
    container_name(spec, name, sizeof name);
    int rc = docker_container_create(d, name, body, res->container_id, err, sizeof err);
    if (rc == DOCKER_ECONFLICT) {
        /* A leftover of the same attempt (a worker died mid-run): replace it once. */
        log_kv(LOG_WARN, "container", name, "removing a leftover container with this name");
        docker_container_remove(d, name, true);
        rc = docker_container_create(d, name, body, res->container_id, err, sizeof err);
    }
    if (rc == DOCKER_OK)
        return 0;
    if (rc == DOCKER_ENOTFOUND && strstr(err, "No such image"))
        set_status(res, "error", "image_not_found", false, "cannot create container: %s", err);
    else
        set_status(res, "error", "docker_error", rc == DOCKER_EUNAVAIL,
                   "cannot create container: %s", err);
    return -1;
}

typedef struct {
    void (*fn)(void *arg);
    void *arg;
    uint64_t next;
} keepalive_t;

static void keepalive_tick(keepalive_t *k, uint64_t now)
{
    if (now >= k->next) {
        if (k->fn)
            k->fn(k->arg);
        k->next = now + KEEPALIVE_NS;
    }
}

static int poll_ms(uint64_t now, uint64_t until)
{
    if (until <= now)
        return 0;
    uint64_t ms = (until - now) / 1000000 + 1;
    return ms > 60000 ? 60000 : (int)ms;
}

/* Trigger and collect on the attach socket: writes the input interleaved with reading
 * frames, until the stream ends. Sets *timed_out (after killing) at the deadline. */
static void pump(docker_t *d, int afd, const runner_spec_t *spec, runner_result_t *res,
                 sink_t *sink, uint64_t deadline, keepalive_t *ka, bool *timed_out)
{
    runner_demux_t dm = {0};
    unsigned char *rbuf = xmalloc(READ_CHUNK);
    const unsigned char *in = spec->input;
    size_t in_left = spec->input ? spec->input_len : 0;
    bool wr_open = true;
    uint64_t drain_until = 0;
    fcntl(afd, F_SETFL, fcntl(afd, F_GETFL) | O_NONBLOCK);
    if (in_left == 0) {
        shutdown(afd, SHUT_WR);
        wr_open = false;
    }
    for (;;) {
        uint64_t now = time_mono_ns();
        keepalive_tick(ka, now);
        if (!*timed_out && deadline && now >= deadline) {
            docker_container_kill(d, res->container_id, "SIGKILL");
            *timed_out = true;
            drain_until = now + DRAIN_NS;
        }
        if (*timed_out && now >= drain_until)
            break;
        uint64_t until = ka->next;
        if (*timed_out && drain_until < until)
            until = drain_until;
        else if (!*timed_out && deadline && deadline < until)
            until = deadline;
        struct pollfd pfd = {.fd = afd, .events = POLLIN | (wr_open ? POLLOUT : 0)};
        int pr = poll(&pfd, 1, poll_ms(now, until));
        if (pr < 0 && errno != EINTR)
            break;
        if (pr <= 0)
            continue;
        if (wr_open && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
            size_t chunk = in_left < WRITE_CHUNK ? in_left : WRITE_CHUNK;
            ssize_t w = send(afd, in, chunk, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                in += w;
                in_left -= (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                in_left = 0; /* the function stopped reading (EPIPE): the rest is dropped */
            }
            if (in_left == 0) {
                shutdown(afd, SHUT_WR);
                wr_open = false;
            }
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(afd, rbuf, READ_CHUNK, 0);
            if (r > 0)
                runner_demux_feed(&dm, rbuf, (size_t)r, sink_out, sink);
            else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                break;
        }
    }
    free(rbuf);
}

/* Waits for the wait reply (the stream may end before the process does), keeping the
 * deadline and the keepalives. 0 with the exit status, or -1. */
static int collect_exit(docker_t *d, int wfd, runner_result_t *res, uint64_t deadline,
                        keepalive_t *ka, bool *timed_out, int *status_code)
{
    uint64_t give_up = 0;
    if (*timed_out)
        give_up = time_mono_ns() + (uint64_t)WAIT_REPLY_MS * 1000000;
    for (;;) {
        uint64_t now = time_mono_ns();
        keepalive_tick(ka, now);
        if (!*timed_out && deadline && now >= deadline) {
            docker_container_kill(d, res->container_id, "SIGKILL");
            *timed_out = true;
            give_up = now + (uint64_t)WAIT_REPLY_MS * 1000000;
        }
        if (give_up && now >= give_up)
            return -1;
        uint64_t until = ka->next;
        if (give_up && give_up < until)
            until = give_up;
        if (!*timed_out && deadline && deadline < until)
            until = deadline;
        struct pollfd pfd = {.fd = wfd, .events = POLLIN};
        int pr = poll(&pfd, 1, poll_ms(now, until));
        if (pr < 0 && errno != EINTR)
            return -1;
        if (pr > 0)
            return docker_wait_read(wfd, WAIT_REPLY_MS, status_code) == DOCKER_OK ? 0 : -1;
    }
}

void runner_run(docker_t *d, const char *socket_path, const char *api,
                const runner_spec_t *spec, runner_result_t *res, bool defer_remove,
                void (*keepalive)(void *arg), void *keepalive_arg)
{
    memset(res, 0, sizeof *res);
    res->exit_code = -1;
    char *body = NULL;
    int afd = -1, wfd = -1, rc;
    bool timed_out = false;
    keepalive_t ka = {keepalive, keepalive_arg, time_mono_ns() + KEEPALIVE_NS};
    sink_t sink = {res, spec->output_limit > 0 ? (size_t)spec->output_limit : (size_t)1 << 20,
                   false, ESC_NONE};

    if (ensure_image(d, spec, res) != 0)
        goto done;
    body = runner_create_body(spec);
    if (!body) {
        set_status(res, "error", "invalid_env", false, "env is not an object of strings");
        goto done;
    }
    if (create_container(d, spec, body, res) != 0)
        goto done;
    afd = docker_attach(socket_path, api, res->container_id, NULL, NULL);
    if (afd < 0) {
        set_status(res, "error", "docker_error", true, "cannot attach to container '%s'",
                   res->container_id);
        goto done;
    }
    wfd = docker_wait_arm(socket_path, api, res->container_id);
    if (wfd < 0) {
        set_status(res, "error", "docker_error", true, "cannot wait for container '%s'",
                   res->container_id);
        goto done;
    }
    res->started_at = time_now_ms();
    uint64_t t0 = time_mono_ns();
    rc = docker_container_start(d, res->container_id);
    if (rc != DOCKER_OK) {
        set_status(res, "error", "docker_error", rc == DOCKER_EUNAVAIL,
                   "cannot start container: %s", docker_last_error(d));
        goto done;
    }
    uint64_t deadline = spec->timeout_ms > 0 ? t0 + (uint64_t)spec->timeout_ms * 1000000 : 0;
    pump(d, afd, spec, res, &sink, deadline, &ka, &timed_out);
    close(afd);
    afd = -1;

    int status_code = -1;
    bool have_exit = collect_exit(d, wfd, res, deadline, &ka, &timed_out, &status_code) == 0;
    res->finished_at = time_now_ms();
    res->duration_ms = (int64_t)((time_mono_ns() - t0) / 1000000);
    bool oom = false;
    int ec = -1;
    rc = docker_container_inspect_state(d, res->container_id, &oom, &ec);
    if (have_exit)
        res->exit_code = status_code;
    else if (rc == DOCKER_OK)
        res->exit_code = ec;
    if (!have_exit && rc != DOCKER_OK) {
        set_status(res, "error", "docker_error", rc == DOCKER_EUNAVAIL || rc == DOCKER_ENOTFOUND,
                   "lost container '%s': %s", res->container_id, docker_last_error(d));
        goto done;
    }
    if (timed_out)
        set_status(res, "timed_out", "", false, "killed after %lld ms",
                   (long long)spec->timeout_ms);
    else if (oom)
        set_status(res, "failed", "oom_killed", false, "out of memory (limit %lld bytes)",
                   (long long)spec->memory);
    else if (res->exit_code == 0)
        set_status(res, "succeeded", "", false, NULL);
    else
        set_status(res, "failed", "", false, "exit code %d", res->exit_code);
    if (sink.truncated && !res->reason[0])
        str_copy(res->reason, sizeof res->reason, "output_truncated");

done:
    /* Callers may read the buffers as strings even when nothing was written. */
    buf_append(&res->out, "", 0);
    buf_append(&res->err, "", 0);
    buf_append(&res->result, "", 0);
    if (afd >= 0)
        close(afd);
    if (wfd >= 0)
        close(wfd);
    free(body);
    if (res->container_id[0] && !defer_remove) {
        rc = docker_container_remove(d, res->container_id, true);
        if (rc != DOCKER_OK && rc != DOCKER_ENOTFOUND)
            log_kv(LOG_WARN, "container", res->container_id,
                   "cannot remove container (left to the reaper): %s", docker_last_error(d));
    }
}

/* Whether `other` is an automatic worker id of this host ("<host>-<pid>", like `mine`, which
 * must be automatic itself) whose process no longer exists. */
static bool dead_sibling(const char *mine, const char *other)
{
    char suffix[32];
    snprintf(suffix, sizeof suffix, "-%ld", (long)getpid());
    size_t n = strlen(mine), s = strlen(suffix);
    if (n <= s || strcmp(mine + n - s, suffix) != 0)
        return false; /* an operator-chosen id: the operator keeps them apart */
    size_t host = n - s + 1; /* "<host>-" */
    const char *digits = other + host;
    if (strncmp(other, mine, host) != 0 || !*digits ||
        strspn(digits, "0123456789") != strlen(digits))
        return false;
    long pid = strtol(digits, NULL, 10);
    return pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static int reap_matching(docker_t *d, const char *filter, const char *key, const char *mine,
                         const char *const *keep, size_t nkeep)
{
    char **ids = NULL, **vals = NULL;
    size_t n = 0;
    int removed = 0;
    int rc = docker_container_list_labels(d, filter, key, &ids, &vals, &n);
    if (rc != DOCKER_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        bool orphan = true;
        if (mine) /* vals are workers: only dead siblings' */
            orphan = dead_sibling(mine, vals[i]);
        else /* vals are executions: all but ours in flight */
            for (size_t k = 0; k < nkeep && orphan; k++)
                orphan = !keep[k] ||
                         (strcmp(keep[k], vals[i]) != 0 && strcmp(keep[k], ids[i]) != 0);
        if (orphan) {
            rc = docker_container_remove(d, ids[i], true);
            if (rc == DOCKER_OK || rc == DOCKER_ENOTFOUND)
                removed++;
            else
                log_kv(LOG_WARN, "container", ids[i], "cannot reap container: %s",
                       docker_last_error(d));
        }
        free(ids[i]);
        free(vals[i]);
    }
    free(ids);
    free(vals);
    return removed;
}

int runner_reap(docker_t *d, const char *worker_id, const char *const *keep, size_t nkeep)
{
    bool mine_only = worker_id && *worker_id;
    char *filter = mine_only ? xasprintf("faas.managed=true,faas.worker=%s", worker_id)
                             : xstrdup("faas.managed=true");
    int removed = reap_matching(d, filter, "faas.execution", NULL, keep, nkeep);
    free(filter);
    if (removed >= 0 && mine_only) {
        int more = reap_matching(d, "faas.managed=true", "faas.worker", worker_id, NULL, 0);
        removed += more > 0 ? more : 0;
    }
    return removed;
}
