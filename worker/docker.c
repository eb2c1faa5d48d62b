/* Docker Engine API client: libcurl over the unix socket for request/response calls, raw
 * unix sockets for the two hijacked/long-lived calls (attach, wait). */
#include "docker.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define REQ_TIMEOUT_MS 60000     /* create/start/kill/remove/inspect/list */
#define PULL_TIMEOUT_MS 600000   /* a pull of a large image can take minutes */
#define HDR_TIMEOUT_MS 30000     /* hijacked calls: until the response headers */
#define BODY_MAX (4 << 20)       /* a reply larger than this is not one we asked for */
#define LINE_MAX_PULL (64 << 10) /* longest pull progress line we parse */

struct docker {
    CURL *curl;
    char *socket_path;
    char *api;
    buf_t body;
    bool body_overflow;
    char curl_err[CURL_ERROR_SIZE];
    char last_err[512];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

/* The engine is plain HTTP over a unix socket: no TLS to initialise (OpenSSL's
 * initialisation alone costs the worker megabytes of resident memory). */
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_NOTHING);
}

docker_t *docker_new(const char *socket_path, const char *api)
{
    pthread_once(&curl_once, curl_init_once);
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    docker_t *d = xcalloc(1, sizeof *d);
    d->curl = c;
    d->socket_path = xstrdup(socket_path);
    d->api = xstrdup(api && *api ? api : "v1.41");
    return d;
}

void docker_free(docker_t *d)
{
    if (!d)
        return;
    curl_easy_cleanup(d->curl);
    free(d->socket_path);
    free(d->api);
    buf_free(&d->body);
    free(d);
}

/* Image references and container ids/names go into URL paths unescaped (the engine routes
 * "/images/{name:.*}/json"), so only the characters a reference can hold are accepted. */
static bool ref_ok(const char *s, bool allow_ref_chars)
{
    if (!s || !*s || strlen(s) > 512)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-')
            continue;
        if (allow_ref_chars && (c == '/' || c == ':' || c == '@'))
            continue;
        return false;
    }
    return s[0] != '.' && s[0] != '/';
}

static size_t body_write(char *p, size_t size, size_t n, void *arg)
{
    docker_t *d = arg;
    size_t len = size * n;
    if (d->body.len + len > BODY_MAX)
        d->body_overflow = true;
    else
        buf_append(&d->body, p, len);
    return len;
}

static int status_code_map(long status)
{
    if ((status >= 200 && status < 300) || status == 304)
        return DOCKER_OK;
    if (status == 404)
        return DOCKER_ENOTFOUND;
    if (status == 409)
        return DOCKER_ECONFLICT;
    if (status >= 500)
        return DOCKER_EUNAVAIL;
    return DOCKER_EINVAL;
}

/* The engine's error replies are {"message":"..."}: copies that (or the curl error). */
static void reply_message(docker_t *d, char *err, size_t errlen)
{
    if (!err || !errlen)
        return;
    cJSON *j = cJSON_ParseWithLength(d->body.data ? d->body.data : "", d->body.len);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (cJSON_IsString(m))
        str_copy(err, errlen, m->valuestring);
    else
        snprintf(err, errlen, "%.*s", (int)(d->body.len > 200 ? 200 : d->body.len),
                 d->body.data ? d->body.data : "");
    cJSON_Delete(j);
}

typedef size_t (*write_fn)(char *, size_t, size_t, void *);

/* One request: `path` is after the API version ("/containers/x/start"). The reply body is
 * left in d->body. Returns a DOCKER_* code from the transport or the HTTP status. */
static int request(docker_t *d, const char *method, const char *path, const char *body,
                   long timeout_ms, write_fn wf, void *warg, long *status, char *err,
                   size_t errlen)
{
    CURL *c = d->curl;
    d->body.len = 0;
    if (d->body.data)
        d->body.data[0] = '\0';
    d->body_overflow = false;
    d->curl_err[0] = '\0';
    d->last_err[0] = '\0';
    *status = 0;
    char *url = xasprintf("http://docker/%s%s", d->api, path);
    struct curl_slist *hdrs = NULL;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket_path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, d->curl_err);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wf ? wf : body_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, wf ? warg : d);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    /* Without this curl waits a second for "100 Continue" on larger bodies. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    free(url);
    if (rc != CURLE_OK) {
        snprintf(d->last_err, sizeof d->last_err, "docker engine unreachable at '%.100s': %.300s",
                 d->socket_path, d->curl_err[0] ? d->curl_err : curl_easy_strerror(rc));
        if (err && errlen)
            str_copy(err, errlen, d->last_err);
        return DOCKER_EUNAVAIL;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    int code = status_code_map(*status);
    if (code != DOCKER_OK) {
        reply_message(d, d->last_err, sizeof d->last_err);
        if (err && errlen)
            str_copy(err, errlen, d->last_err);
    } else if (d->body_overflow) {
        str_copy(d->last_err, sizeof d->last_err, "engine reply too large");
        code = DOCKER_EINVAL;
    }
    return code;
}

int docker_ping(docker_t *d)
{
    long st;
    return request(d, "GET", "/_ping", NULL, 5000, NULL, NULL, &st, NULL, 0);
}

int docker_image_inspect(docker_t *d, const char *image)
{
    if (!ref_ok(image, true))
        return DOCKER_EINVAL;
    long st;
    char *path = xasprintf("/images/%s/json", image);
    int rc = request(d, "GET", path, NULL, REQ_TIMEOUT_MS, NULL, NULL, &st, NULL, 0);
    free(path);
    return rc;
}

/* Pull progress is a stream of JSON lines; the first "error" among them is kept. */
typedef struct {
    buf_t line;
    bool skip_line; /* the current line overflowed LINE_MAX_PULL */
    char err[256];
    char msg[256]; /* an error reply's {"message":...} */
    bool failed;
} pull_state_t;

static void pull_line(pull_state_t *ps, const char *p, size_t n)
{
    if (ps->failed || n == 0)
        return;
    cJSON *j = cJSON_ParseWithLength(p, n);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
    if (e) {
        ps->failed = true;
        str_copy(ps->err, sizeof ps->err, cJSON_IsString(e) ? e->valuestring : "pull failed");
    } else if (cJSON_IsString(m) && !ps->msg[0]) {
        str_copy(ps->msg, sizeof ps->msg, m->valuestring);
    }
    cJSON_Delete(j);
}

static size_t pull_write(char *p, size_t size, size_t n, void *arg)
{
    pull_state_t *ps = arg;
    size_t len = size * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            if (!ps->skip_line)
                pull_line(ps, ps->line.data ? ps->line.data : "", ps->line.len);
            ps->line.len = 0;
            ps->skip_line = false;
        } else if (ps->line.len < LINE_MAX_PULL) {
            buf_append(&ps->line, p + i, 1);
        } else {
            ps->skip_line = true;
        }
    }
    return len;
}

/* Splits "host:5000/name:tag" / "name@sha256:..." / "name" into name and tag ("latest"). */
static void ref_split(const char *image, char **name, char **tag)
{
    const char *at = strchr(image, '@');
    if (at) {
        *name = xstrndup(image, (size_t)(at - image));
        *tag = xstrdup(at + 1);
        return;
    }
    const char *slash = strrchr(image, '/');
    const char *colon = strrchr(image, ':');
    if (colon && (!slash || colon > slash)) {
        *name = xstrndup(image, (size_t)(colon - image));
        *tag = xstrdup(colon + 1);
    } else {
        *name = xstrdup(image);
        *tag = xstrdup("latest");
    }
}

int docker_image_pull(docker_t *d, const char *image, char *err, size_t errlen)
{
    if (!ref_ok(image, true)) {
        if (err && errlen)
            snprintf(err, errlen, "invalid image reference '%s'", image ? image : "");
        return DOCKER_EINVAL;
    }
    char *name = NULL, *tag = NULL;
    ref_split(image, &name, &tag);
    char *en = curl_easy_escape(d->curl, name, 0);
    char *et = curl_easy_escape(d->curl, tag, 0);
    char *path = xasprintf("/images/create?fromImage=%s&tag=%s", en, et);
    curl_free(en);
    curl_free(et);
    pull_state_t ps = {0};
    long st = 0;
    int rc = request(d, "POST", path, NULL, PULL_TIMEOUT_MS, pull_write, &ps, &st, err, errlen);
    if (ps.line.len && !ps.skip_line)
        pull_line(&ps, ps.line.data, ps.line.len);
    if (rc == DOCKER_EUNAVAIL && st == 0)
        goto done; /* the engine itself is unreachable */
    if (rc != DOCKER_OK) {
        /* An error reply is {"message":...}, which went through pull_write. */
        if (err && errlen)
            snprintf(err, errlen, "cannot pull '%s': %s", image,
                     ps.msg[0] ? ps.msg : ps.err[0] ? ps.err : "engine error");
        rc = DOCKER_ENOTFOUND;
    } else if (ps.failed) {
        if (err && errlen)
            snprintf(err, errlen, "cannot pull '%s': %s", image, ps.err);
        rc = DOCKER_ENOTFOUND;
    }
done:
    buf_free(&ps.line);
    free(path);
    free(name);
    free(tag);
    return rc;
}

int docker_container_create(docker_t *d, const char *name, const char *body_json,
                            char id[65], char *err, size_t errlen)
{
    id[0] = '\0';
    char *path;
    if (name && *name) {
        if (!ref_ok(name, false)) {
            if (err && errlen)
                snprintf(err, errlen, "invalid container name '%s'", name);
            return DOCKER_EINVAL;
        }
        path = xasprintf("/containers/create?name=%s", name);
    } else {
        path = xstrdup("/containers/create");
    }
    long st;
    int rc = request(d, "POST", path, body_json, REQ_TIMEOUT_MS, NULL, NULL, &st, err, errlen);
    free(path);
    if (rc != DOCKER_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(d->body.data ? d->body.data : "", d->body.len);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "Id");
    if (cJSON_IsString(v) && strlen(v->valuestring) <= 64 && ref_ok(v->valuestring, false)) {
        str_copy(id, 65, v->valuestring);
    } else {
        rc = DOCKER_EINVAL;
        if (err && errlen)
            snprintf(err, errlen, "container create reply without an id");
    }
    cJSON_Delete(j);
    return rc;
}

/* POST/DELETE on /containers/{id}{suffix} with an empty body. */
static int container_call(docker_t *d, const char *method, const char *id, const char *suffix)
{
    if (!ref_ok(id, false))
        return DOCKER_EINVAL;
    char *path = xasprintf("/containers/%s%s", id, suffix);
    long st;
    int rc = request(d, method, path, NULL, REQ_TIMEOUT_MS, NULL, NULL, &st, NULL, 0);
    free(path);
    return rc;
}

int docker_container_start(docker_t *d, const char *id)
{
    return container_call(d, "POST", id, "/start");
}

int docker_container_kill(docker_t *d, const char *id, const char *signal)
{
    if (!ref_ok(signal, false))
        return DOCKER_EINVAL;
    char *suffix = xasprintf("/kill?signal=%s", signal);
    int rc = container_call(d, "POST", id, suffix);
    free(suffix);
    return rc;
}

int docker_container_remove(docker_t *d, const char *id, bool force)
{
    /* v=1 also removes anonymous volumes an image's VOLUME lines created. */
    return container_call(d, "DELETE", id, force ? "?force=1&v=1" : "?v=1");
}

int docker_container_inspect_state(docker_t *d, const char *id, bool *oom_killed,
                                   int *exit_code)
{
    int rc = container_call(d, "GET", id, "/json");
    if (rc != DOCKER_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(d->body.data ? d->body.data : "", d->body.len);
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(j, "State");
    const cJSON *oom = cJSON_GetObjectItemCaseSensitive(state, "OOMKilled");
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(state, "ExitCode");
    if (!cJSON_IsObject(state) || !cJSON_IsNumber(ec)) {
        rc = DOCKER_EINVAL;
    } else {
        if (oom_killed)
            *oom_killed = cJSON_IsTrue(oom);
        if (exit_code)
            *exit_code = ec->valueint;
    }
    cJSON_Delete(j);
    return rc;
}

int docker_container_pids(docker_t *d, const char *id, int64_t *current, int64_t *limit)
{
    int rc = container_call(d, "GET", id, "/stats?stream=false&one-shot=true");
    if (rc != DOCKER_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(d->body.data ? d->body.data : "", d->body.len);
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "pids_stats");
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(ps, "current");
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(ps, "limit");
    if (!cJSON_IsNumber(cur)) {
        rc = DOCKER_EINVAL;
    } else {
        if (current)
            *current = (int64_t)cur->valuedouble;
        if (limit)
            *limit = cJSON_IsNumber(lim) ? (int64_t)lim->valuedouble : 0;
    }
    cJSON_Delete(j);
    return rc;
}

const char *docker_last_error(const docker_t *d)
{
    return d->last_err;
}

int docker_container_list(docker_t *d, const char *label, char ***ids, size_t *n)
{
    return docker_container_list_labels(d, label, NULL, ids, NULL, n);
}

int docker_container_list_labels(docker_t *d, const char *label, const char *key,
                                 char ***ids, char ***values, size_t *n)
{
    *ids = NULL;
    if (values)
        *values = NULL;
    *n = 0;
    cJSON *filters = cJSON_CreateObject();
    cJSON *labels = cJSON_AddArrayToObject(filters, "label");
    /* Several labels separated by ',' must all match. */
    const char *p = label ? label : "";
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            char *one = xstrndup(p, len);
            cJSON_AddItemToArray(labels, cJSON_CreateString(one));
            free(one);
        }
        p += len + (e ? 1 : 0);
    }
    char *fj = cJSON_PrintUnformatted(filters);
    cJSON_Delete(filters);
    char *ef = curl_easy_escape(d->curl, fj, 0);
    char *path = xasprintf("/containers/json?all=1&filters=%s", ef);
    curl_free(ef);
    free(fj);
    long st;
    int rc = request(d, "GET", path, NULL, REQ_TIMEOUT_MS, NULL, NULL, &st, NULL, 0);
    free(path);
    if (rc != DOCKER_OK)
        return rc;
    cJSON *j = cJSON_ParseWithLength(d->body.data ? d->body.data : "", d->body.len);
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return DOCKER_EINVAL;
    }
    size_t cap = (size_t)cJSON_GetArraySize(j);
    char **out = xcalloc(cap ? cap : 1, sizeof *out);
    char **vals = values ? xcalloc(cap ? cap : 1, sizeof *vals) : NULL;
    size_t k = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, j)
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "Id");
        if (!cJSON_IsString(v) || k >= cap)
            continue;
        if (vals) {
            const cJSON *have = cJSON_GetObjectItemCaseSensitive(c, "Labels");
            const cJSON *lv = key ? cJSON_GetObjectItemCaseSensitive(have, key) : NULL;
            vals[k] = xstrdup(cJSON_IsString(lv) ? lv->valuestring : "");
        }
        out[k++] = xstrdup(v->valuestring);
    }
    cJSON_Delete(j);
    *ids = out;
    if (values)
        *values = vals;
    *n = k;
    return DOCKER_OK;
}

/* ---- raw hijacked connections ---- */

static int unix_connect(const char *socket_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(socket_path) >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Waits for `events` on fd until the monotonic deadline (0 = none). 1 ready, 0 timeout. */
static int wait_fd(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        int ms = -1;
        if (deadline_ns) {
            uint64_t now = time_mono_ns();
            if (now >= deadline_ns)
                return 0;
            ms = (int)((deadline_ns - now) / 1000000) + 1;
        }
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads the response headers one byte at a time, so nothing past them is consumed, and
 * returns the HTTP status (or -1). */
static int read_status_headers(int fd)
{
    char h[8192];
    size_t n = 0;
    uint64_t deadline = time_mono_ns() + (uint64_t)HDR_TIMEOUT_MS * 1000000;
    while (n < sizeof h - 1) {
        if (wait_fd(fd, POLLIN, deadline) != 1)
            return -1;
        ssize_t r = recv(fd, h + n, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        n++;
        if (n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    h[n] = '\0';
    int status = 0;
    if (n < 12 || strncmp(h, "HTTP/1.", 7) != 0 || sscanf(h + 9, "%3d", &status) != 1)
        return -1;
    return status;
}

int docker_attach(const char *socket_path, const char *api, const char *id, char *pre,
                  size_t *pre_len)
{
    if (pre_len)
        *pre_len = 0;
    (void)pre;
    if (!ref_ok(id, false))
        return -1;
    if (!api || !*api)
        api = "v1.41";
    int fd = unix_connect(socket_path);
    if (fd < 0)
        return -1;
    char *req = xasprintf("POST /%s/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 "
                          "HTTP/1.1\r\nHost: docker\r\nContent-Type: text/plain\r\n"
                          "Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
                          api, id);
    int rc = send_all(fd, req, strlen(req));
    free(req);
    if (rc == 0) {
        int st = read_status_headers(fd);
        rc = st == 101 || st == 200 ? 0 : -1;
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int docker_wait_arm(const char *socket_path, const char *api, const char *id)
{
    if (!ref_ok(id, false))
        return -1;
    if (!api || !*api)
        api = "v1.41";
    int fd = unix_connect(socket_path);
    if (fd < 0)
        return -1;
    char *req = xasprintf("POST /%s/containers/%s/wait?condition=next-exit HTTP/1.1\r\n"
                          "Host: docker\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                          api, id);
    int rc = send_all(fd, req, strlen(req));
    free(req);
    /* The engine flushes the 200 headers only once the wait is registered: reading them
     * here makes "armed before start" true, not just "sent before start". */
    if (rc == 0 && read_status_headers(fd) != 200)
        rc = -1;
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Dechunks `raw` into `out`. 1 when the last chunk was seen, 0 when more is needed,
 * -1 when it is not chunked. */
static int dechunk(const char *raw, size_t n, buf_t *out)
{
    size_t i = 0;
    out->len = 0;
    while (i < n) {
        size_t j = i;
        size_t size = 0;
        int digits = 0;
        while (j < n) {
            char c = raw[j];
            int v = c >= '0' && c <= '9' ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (v < 0)
                break;
            if (++digits > 8)
                return -1;
            size = size * 16 + (size_t)v;
            j++;
        }
        if (j >= n)
            return 0;
        if (!digits)
            return -1;
        while (j < n && raw[j] != '\n')
            j++;
        if (j >= n)
            return 0;
        j++;
        if (size == 0)
            return 1;
        if (n - j < size + 2)
            return 0;
        buf_append(out, raw + j, size);
        i = j + size + 2;
    }
    return 0;
}

static int parse_wait_reply(const char *p, size_t n, int *status_code)
{
    cJSON *j = cJSON_ParseWithLength(p, n);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "StatusCode");
    int rc = DOCKER_EINVAL;
    if (cJSON_IsNumber(sc)) {
        *status_code = sc->valueint;
        rc = DOCKER_OK;
    }
    cJSON_Delete(j);
    return rc;
}

int docker_wait_read(int fd, int64_t timeout_ms, int *status_code)
{
    buf_t raw = {0}, body = {0};
    int rc = DOCKER_EUNAVAIL;
    uint64_t deadline =
        timeout_ms < 0 ? 0 : time_mono_ns() + (uint64_t)timeout_ms * 1000000 + 1;
    for (;;) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w != 1)
            break;
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            buf_append(&raw, tmp, (size_t)r);
        if (raw.len > 65536) {
            rc = DOCKER_EINVAL;
            break;
        }
        int dc = raw.len ? dechunk(raw.data, raw.len, &body) : 0;
        /* json.Encoder ends the object with '\n': a complete chunk holding it is enough. */
        if (dc == 1 || (dc == 0 && body.len && body.data[body.len - 1] == '\n')) {
            rc = parse_wait_reply(body.data, body.len, status_code);
            break;
        }
        if (dc < 0 || r <= 0) {
            /* Not chunked, or the connection ended: try the bytes as they are. */
            rc = raw.len ? parse_wait_reply(raw.data, raw.len, status_code) : DOCKER_EUNAVAIL;
            if (rc != DOCKER_OK && dc == 0 && body.len)
                rc = parse_wait_reply(body.data, body.len, status_code);
            break;
        }
    }
    buf_free(&raw);
    buf_free(&body);
    return rc;
}
