/* The HTTP server against a real libmicrohttpd on a free loopback port; the client is raw
 * sockets so the tests control every byte (chunking, dribbling, hostile headers). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "t.h"
#include "util.h"

/* ---- a tiny raw client ---- */

typedef struct {
    int status;
    char *raw;  /* the whole response, NUL-terminated */
    size_t raw_len;
    char *body; /* points into raw */
    size_t body_len;
} resp_t;

static void resp_free(resp_t *r)
{
    free(r->raw);
    memset(r, 0, sizeof *r);
}

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the server closes (requests say Connection: close) and parses. */
static int read_resp(int fd, resp_t *r)
{
    buf_t b = {0};
    char tmp[4096];
    for (;;) {
        ssize_t n = recv(fd, tmp, sizeof tmp, 0);
        if (n <= 0)
            break;
        buf_append(&b, tmp, (size_t)n);
    }
    memset(r, 0, sizeof *r);
    r->raw = b.data ? b.data : xstrdup("");
    r->raw_len = b.len;
    if (strncmp(r->raw, "HTTP/1.", 7) != 0 || r->raw_len < 12)
        return -1;
    r->status = (int)strtol(r->raw + 9, NULL, 10);
    char *end = strstr(r->raw, "\r\n\r\n");
    if (!end)
        return -1;
    r->body = end + 4;
    r->body_len = r->raw_len - (size_t)(r->body - r->raw);
    return 0;
}

static int request(int port, const char *raw, size_t n, resp_t *r)
{
    int fd = client_connect(port);
    if (fd < 0)
        return -1;
    int rc = send_all(fd, raw, n) == 0 ? read_resp(fd, r) : -1;
    close(fd);
    return rc;
}

static int get(int port, const char *path, const char *extra, resp_t *r)
{
    char req[8192];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n",
                     path, extra ? extra : "");
    return request(port, req, (size_t)n, r);
}

/* The value of a response header (case-insensitive name) into out; NULL if absent. */
static const char *header(const resp_t *r, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *end = strstr(r->raw, "\r\n\r\n");
    for (const char *p = strstr(r->raw, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)vl, v);
            return out;
        }
    }
    return NULL;
}

static bool body_is(const resp_t *r, const char *s)
{
    return r->body && r->body_len == strlen(s) && memcmp(r->body, s, r->body_len) == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- handlers ---- */

static int h_ping(http_request_t *req)
{
    http_respond(req, 200, "text/plain", "pong", 4);
    return HTTP_DONE;
}

static int h_fn(http_request_t *req)
{
    char out[128];
    int n = snprintf(out, sizeof out, "fn:%s", req->params[0]);
    http_respond(req, 200, "text/plain", out, (size_t)n);
    return HTTP_DONE;
}

static int h_exec(http_request_t *req)
{
    char out[128];
    int n = snprintf(out, sizeof out, "%d:%s:%s", req->nparams, req->params[0], req->params[1]);
    http_respond(req, 200, "text/plain", out, (size_t)n);
    return HTTP_DONE;
}

static int h_echo(http_request_t *req)
{
    char len[32];
    snprintf(len, sizeof len, "%zu", req->body_len);
    http_response_header(req, "X-Body-Len", len);
    http_response_header(req, "X-Body-Terminated",
                         req->body && req->body[req->body_len] == '\0' ? "yes" : "no");
    http_respond(req, 200, "application/octet-stream", req->body, req->body_len);
    return HTTP_DONE;
}

static int h_query(http_request_t *req)
{
    const char *q = http_request_query(req, "q");
    const char *ua = http_request_header(req, "user-agent");
    char out[256];
    int n = snprintf(out, sizeof out, "%s|%s", q ? q : "(none)", ua ? ua : "(none)");
    http_respond(req, 200, "text/plain", out, (size_t)n);
    return HTTP_DONE;
}

static int h_noresp(http_request_t *req)
{
    (void)req;
    return HTTP_DONE;
}

static int h_user(http_request_t *req)
{
    str_copy(req->user_id, sizeof req->user_id, "aaaaaaaaaaaaaaaaaaaaaaaa");
    str_copy(req->execution_id, sizeof req->execution_id, "bbbbbbbbbbbbbbbbbbbbbbbb");
    http_respond_error(req, 409, "function '%s' already \"exists\"", "x");
    return HTTP_DONE;
}

static void *resume_later(void *arg)
{
    http_request_t *req = arg;
    sleep_ms(100);
    char out[256];
    int n = snprintf(out, sizeof out, "later:%.*s", (int)req->body_len, req->body);
    http_respond(req, 200, "text/plain", out, (size_t)n);
    http_request_resume(req);
    return NULL;
}

static int h_later(http_request_t *req)
{
    pthread_t t;
    pthread_create(&t, NULL, resume_later, req);
    pthread_detach(t);
    return HTTP_SUSPEND;
}

static int h_now(http_request_t *req)
{
    http_respond(req, 200, "text/plain", "now", 3);
    http_request_resume(req);
    return HTTP_SUSPEND;
}

static pthread_t handler_thread;
static void off_fn(http_request_t *req)
{
    const char *v = pthread_equal(pthread_self(), handler_thread) ? "same-thread" : "off-thread";
    http_respond(req, 200, "text/plain", v, strlen(v));
}

static int h_offload(http_request_t *req)
{
    handler_thread = pthread_self();
    http_request_offload(req, off_fn);
    return HTTP_SUSPEND;
}

/* Requests parked until the test answers them. */
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cond = PTHREAD_COND_INITIALIZER;
static http_request_t *held[64];
static int nheld;
static int data_frees;

static void count_free(void *p)
{
    (void)p;
    pthread_mutex_lock(&held_lock);
    data_frees++;
    pthread_mutex_unlock(&held_lock);
}

static int h_hold(http_request_t *req)
{
    req->data = &data_frees;
    req->data_free = count_free;
    pthread_mutex_lock(&held_lock);
    held[nheld++] = req;
    pthread_cond_broadcast(&held_cond);
    pthread_mutex_unlock(&held_lock);
    return HTTP_SUSPEND;
}

/* Waits until `n` requests are held (10 s at most); returns how many are. */
static int wait_held(int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&held_lock);
    while (nheld < n)
        if (pthread_cond_timedwait(&held_cond, &held_lock, &dl) != 0)
            break;
    int got = nheld;
    pthread_mutex_unlock(&held_lock);
    return got;
}

static void held_reset(void)
{
    pthread_mutex_lock(&held_lock);
    nheld = 0;
    data_frees = 0;
    pthread_mutex_unlock(&held_lock);
}

static const http_route_t routes[] = {
    {"GET", "/ping", h_ping},
    {"GET", "/api/v1/functions/{id}", h_fn},
    {"DELETE", "/api/v1/functions/{id}", h_fn},
    {"GET", "/api/v1/functions/{id}/executions/{eid}", h_exec},
    {"POST", "/echo", h_echo},
    {"GET", "/query", h_query},
    {"GET", "/noresp", h_noresp},
    {"GET", "/user", h_user},
    {"POST", "/later", h_later},
    {"GET", "/now", h_now},
    {"GET", "/offload", h_offload},
    {"POST", "/hold", h_hold},
    {NULL, NULL, NULL},
};

static config_server_t base_cfg(void)
{
    config_server_t c;
    memset(&c, 0, sizeof c);
    str_copy(c.listen, sizeof c.listen, "127.0.0.1");
    c.port = 0;
    c.threads = 2;
    c.body_limit = 1024;
    c.sync_wait_ms = 30000;
    c.shutdown_grace_ms = 5000;
    c.cors_origin_count = 1;
    str_copy(c.cors_origins[0], sizeof c.cors_origins[0], "*");
    return c;
}

static http_server_t *srv;
static int port;

static int setup(void)
{
    char err[256] = "";
    config_server_t cfg = base_cfg();
    srv = http_server_new(&cfg, routes, NULL, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "cannot start the server: %s\n", err);
        return -1;
    }
    port = http_server_port(srv);
    return port > 0 ? 0 : -1;
}

static void teardown(void)
{
    http_server_free(srv);
}

/* ---- tests ---- */

TEST("binds a free port when asked for port 0")
{
    CHECK(port > 0);
    resp_t r;
    CHECK(get(port, "/ping", NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "pong"));
    resp_free(&r);
}

TEST("routes by method and pattern and captures params")
{
    resp_t r;
    CHECK(get(port, "/api/v1/functions/abc123", NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "fn:abc123"));
    resp_free(&r);
    CHECK(get(port, "/api/v1/functions/f00d/executions/beef", NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "2:f00d:beef"));
    resp_free(&r);
}

TEST("tolerates a trailing slash")
{
    resp_t r;
    CHECK(get(port, "/api/v1/functions/abc/", NULL, &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "fn:abc"));
    resp_free(&r);
}

TEST("unknown path is 404 in the JSON error shape with the standard headers")
{
    resp_t r;
    char v[256];
    CHECK(get(port, "/nope", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    CHECK(body_is(&r, "{\"statusCode\":404,\"message\":\"cannot GET '/nope'\","
                      "\"error\":\"Not Found\"}"));
    CHECK_STR(header(&r, "Content-Type", v, sizeof v), "application/json");
    CHECK_STR(header(&r, "X-Content-Type-Options", v, sizeof v), "nosniff");
    CHECK_STR(header(&r, "Cache-Control", v, sizeof v), "no-store");
    resp_free(&r);
    /* an empty segment where a parameter is expected does not match */
    CHECK(get(port, "/api/v1/functions//executions/x", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    resp_free(&r);
}

TEST("known path with another method is 405 with Allow")
{
    const char *req = "POST /api/v1/functions/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n";
    resp_t r;
    char v[256];
    CHECK(request(port, req, strlen(req), &r) == 0);
    CHECK_INT(r.status, 405);
    CHECK_STR(header(&r, "Allow", v, sizeof v), "GET, DELETE");
    CHECK(strstr(r.body, "\"error\":\"Method Not Allowed\"") != NULL);
    resp_free(&r);
}

TEST("rejects a Content-Length past the limit with 413 before reading the body")
{
    /* the body is never sent: the answer must come from the headers alone */
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                      "Connection: close\r\n\r\n";
    resp_t r;
    CHECK(request(port, req, strlen(req), &r) == 0);
    CHECK_INT(r.status, 413);
    CHECK(strstr(r.body, "\"statusCode\":413") != NULL);
    CHECK(strstr(r.body, "\"error\":\"Payload Too Large\"") != NULL);
    resp_free(&r);
}

TEST("cuts off a chunked body that grows past the limit with 413")
{
    int fd = client_connect(port);
    CHECK(fd >= 0);
    const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                       "Connection: close\r\n\r\n";
    CHECK(send_all(fd, head, strlen(head)) == 0);
    char chunk[600];
    memset(chunk, 'z', sizeof chunk);
    for (int i = 0; i < 3; i++) {
        CHECK(send_all(fd, "258\r\n", 5) == 0); /* 0x258 = 600 */
        CHECK(send_all(fd, chunk, sizeof chunk) == 0);
        CHECK(send_all(fd, "\r\n", 2) == 0);
    }
    CHECK(send_all(fd, "0\r\n\r\n", 5) == 0);
    resp_t r;
    CHECK(read_resp(fd, &r) == 0);
    close(fd);
    CHECK_INT(r.status, 413);
    resp_free(&r);

    /* the same body in chunks under the limit arrives whole */
    fd = client_connect(port);
    CHECK(send_all(fd, head, strlen(head)) == 0);
    CHECK(send_all(fd, "258\r\n", 5) == 0);
    CHECK(send_all(fd, chunk, sizeof chunk) == 0);
    CHECK(send_all(fd, "\r\n0\r\n\r\n", 7) == 0);
    CHECK(read_resp(fd, &r) == 0);
    close(fd);
    CHECK_INT(r.status, 200);
    CHECK_INT(r.body_len, 600);
    resp_free(&r);
}

TEST("accepts an empty body as an empty NUL-terminated string")
{
    const char *req = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n";
    resp_t r;
    char v[64];
    CHECK(request(port, req, strlen(req), &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(header(&r, "X-Body-Len", v, sizeof v), "0");
    CHECK_STR(header(&r, "X-Body-Terminated", v, sizeof v), "yes");
    resp_free(&r);
}

TEST("binary body with NUL bytes arrives intact")
{
    unsigned char body[1000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (unsigned char)(i * 7);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     sizeof body);
    buf_t req = {0};
    buf_append(&req, head, (size_t)n);
    buf_append(&req, body, sizeof body);
    resp_t r;
    char v[64];
    CHECK(request(port, req.data, req.len, &r) == 0);
    buf_free(&req);
    CHECK_INT(r.status, 200);
    CHECK_STR(header(&r, "X-Body-Len", v, sizeof v), "1000");
    CHECK_STR(header(&r, "X-Body-Terminated", v, sizeof v), "yes");
    CHECK_INT(r.body_len, sizeof body);
    CHECK(r.body && memcmp(r.body, body, sizeof body) == 0);
    resp_free(&r);
}

TEST("reads query parameters and request headers")
{
    resp_t r;
    CHECK(get(port, "/query?q=hello%20world&x=1", "User-Agent: t/1\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "hello world|t/1"));
    resp_free(&r);
}

TEST("echoes a valid X-Request-Id and replaces a hostile one")
{
    resp_t r;
    char v[256];
    CHECK(get(port, "/ping", "X-Request-Id: abc-DEF_1.2\r\n", &r) == 0);
    CHECK_STR(header(&r, "X-Request-Id", v, sizeof v), "abc-DEF_1.2");
    resp_free(&r);

    CHECK(get(port, "/ping", "X-Request-Id: bad id\"<x>\r\n", &r) == 0);
    CHECK(header(&r, "X-Request-Id", v, sizeof v) != NULL);
    CHECK(id_valid(v));
    resp_free(&r);

    char extra[128], long_id[66];
    memset(long_id, 'a', 65);
    long_id[65] = '\0';
    snprintf(extra, sizeof extra, "X-Request-Id: %s\r\n", long_id);
    CHECK(get(port, "/ping", extra, &r) == 0);
    CHECK(header(&r, "X-Request-Id", v, sizeof v) != NULL);
    CHECK(id_valid(v));
    resp_free(&r);

    long_id[64] = '\0'; /* exactly 64 is fine */
    snprintf(extra, sizeof extra, "X-Request-Id: %s\r\n", long_id);
    CHECK(get(port, "/ping", extra, &r) == 0);
    CHECK_STR(header(&r, "X-Request-Id", v, sizeof v), long_id);
    resp_free(&r);

    /* without one, an id is generated */
    CHECK(get(port, "/ping", NULL, &r) == 0);
    CHECK(header(&r, "X-Request-Id", v, sizeof v) && id_valid(v));
    resp_free(&r);
}

TEST("rejects overly long paths and paths with NUL")
{
    char path[2100];
    path[0] = '/';
    memset(path + 1, 'a', sizeof path - 2);
    path[sizeof path - 1] = '\0';
    resp_t r;
    CHECK(get(port, path, NULL, &r) == 0);
    CHECK_INT(r.status, 414);
    CHECK(strstr(r.body, "\"statusCode\":414") != NULL);
    resp_free(&r);

    CHECK(get(port, "/api/v1/functions/%00", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    resp_free(&r);
    CHECK(get(port, "/api/v1/functions/ab%00cd", NULL, &r) == 0);
    CHECK_INT(r.status, 404);
    resp_free(&r);

    const char raw[] = "GET /ping\0/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (request(port, raw, sizeof raw - 1, &r) == 0)
        CHECK(r.status != 200);
    resp_free(&r);
}

TEST("a handler that sets no response gives 500")
{
    resp_t r;
    CHECK(get(port, "/noresp", NULL, &r) == 0);
    CHECK_INT(r.status, 500);
    CHECK(strstr(r.body, "\"error\":\"Internal Server Error\"") != NULL);
    resp_free(&r);
}

TEST("error messages are escaped JSON")
{
    resp_t r;
    CHECK(get(port, "/user", NULL, &r) == 0);
    CHECK_INT(r.status, 409);
    CHECK(body_is(&r, "{\"statusCode\":409,\"message\":\"function 'x' already \\\"exists\\\"\","
                      "\"error\":\"Conflict\"}"));
    resp_free(&r);
}

TEST("suspend and resume from another thread after 100 ms returns the response")
{
    const char *req = "POST /later HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                      "Connection: close\r\n\r\nabc";
    resp_t r;
    CHECK(request(port, req, strlen(req), &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "later:abc"));
    resp_free(&r);
}

TEST("resume called inside the handler before it returns HTTP_SUSPEND works")
{
    for (int i = 0; i < 20; i++) {
        resp_t r;
        CHECK(get(port, "/now", NULL, &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(body_is(&r, "now"));
        resp_free(&r);
    }
}

TEST("offload runs fn off the MHD thread and resumes")
{
    for (int i = 0; i < 10; i++) {
        resp_t r;
        CHECK(get(port, "/offload", NULL, &r) == 0);
        CHECK_INT(r.status, 200);
        CHECK(body_is(&r, "off-thread"));
        resp_free(&r);
    }
}

typedef struct {
    int port, i;
    char body[64];
    resp_t r;
    int rc;
} client_t;

static void *hold_client(void *arg)
{
    client_t *c = arg;
    char req[256];
    int n = snprintf(req, sizeof req,
                     "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     strlen(c->body), c->body);
    c->rc = request(c->port, req, (size_t)n, &c->r);
    return NULL;
}

static void answer_echo(http_request_t *req)
{
    http_respond(req, 200, "text/plain", req->body, req->body_len);
    http_request_resume(req);
}

TEST("50 concurrent suspended requests all complete with their own bodies")
{
    enum { N = 50 };
    held_reset();
    static client_t cl[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        cl[i].port = port;
        cl[i].i = i;
        snprintf(cl[i].body, sizeof cl[i].body, "client-%d-%d", i, rand());
        pthread_create(&th[i], NULL, hold_client, &cl[i]);
    }
    CHECK_INT(wait_held(N), N);
    /* answer in reverse arrival order from this thread */
    pthread_mutex_lock(&held_lock);
    int n = nheld;
    pthread_mutex_unlock(&held_lock);
    for (int i = n - 1; i >= 0; i--)
        answer_echo(held[i]);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(cl[i].rc, 0);
        CHECK_INT(cl[i].r.status, 200);
        CHECK(body_is(&cl[i].r, cl[i].body));
        resp_free(&cl[i].r);
    }
}

TEST("a slow client dribbling a body does not block other requests")
{
    /* one MHD thread: if the dribbler blocked it, the ping could not be answered */
    config_server_t cfg = base_cfg();
    cfg.threads = 1;
    char err[256];
    http_server_t *s = http_server_new(&cfg, routes, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    int p = http_server_port(s);
    int fd = client_connect(p);
    const char *head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                       "Connection: close\r\n\r\n";
    CHECK(send_all(fd, head, strlen(head)) == 0);
    const char *body = "0123456789";
    for (int i = 0; i < 4; i++) {
        CHECK(send_all(fd, body + i, 1) == 0);
        sleep_ms(20);
    }
    resp_t r;
    CHECK(get(p, "/ping", NULL, &r) == 0); /* answered while the body is half sent */
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, "pong"));
    resp_free(&r);
    for (int i = 4; i < 10; i++) {
        CHECK(send_all(fd, body + i, 1) == 0);
        sleep_ms(20);
    }
    CHECK(read_resp(fd, &r) == 0);
    close(fd);
    CHECK_INT(r.status, 200);
    CHECK(body_is(&r, body));
    resp_free(&r);
    http_server_free(s);
}

TEST("CORS off sends no CORS headers")
{
    resp_t r;
    char v[256];
    CHECK(get(port, "/ping", "Origin: https://app.example\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(header(&r, "Access-Control-Allow-Origin", v, sizeof v) == NULL);
    resp_free(&r);
    const char *pre = "OPTIONS /ping HTTP/1.1\r\nHost: x\r\nOrigin: https://app.example\r\n"
                      "Access-Control-Request-Method: GET\r\nConnection: close\r\n\r\n";
    CHECK(request(port, pre, strlen(pre), &r) == 0);
    CHECK(r.status != 204);
    CHECK(header(&r, "Access-Control-Allow-Origin", v, sizeof v) == NULL);
    resp_free(&r);
}

TEST("CORS on adds headers for allowed origins and answers preflight with 204")
{
    config_server_t cfg = base_cfg();
    cfg.cors_enabled = true;
    str_copy(cfg.cors_origins[0], sizeof cfg.cors_origins[0], "https://app.example");
    char err[256];
    http_server_t *s = http_server_new(&cfg, routes, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    int p = http_server_port(s);
    resp_t r;
    char v[256];
    CHECK(get(p, "/ping", "Origin: https://app.example\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK_STR(header(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://app.example");
    resp_free(&r);

    CHECK(get(p, "/ping", "Origin: https://evil.example\r\n", &r) == 0);
    CHECK_INT(r.status, 200);
    CHECK(header(&r, "Access-Control-Allow-Origin", v, sizeof v) == NULL);
    resp_free(&r);

    const char *pre = "OPTIONS /api/v1/functions/abc HTTP/1.1\r\nHost: x\r\n"
                      "Origin: https://app.example\r\nAccess-Control-Request-Method: DELETE\r\n"
                      "Connection: close\r\n\r\n";
    CHECK(request(p, pre, strlen(pre), &r) == 0);
    CHECK_INT(r.status, 204);
    CHECK_STR(header(&r, "Access-Control-Allow-Origin", v, sizeof v), "https://app.example");
    CHECK(header(&r, "Access-Control-Allow-Methods", v, sizeof v) && strstr(v, "DELETE"));
    CHECK(header(&r, "Access-Control-Allow-Headers", v, sizeof v) &&
          strstr(v, "Authorization") && strstr(v, "Content-Type") && strstr(v, "X-Request-Id"));
    resp_free(&r);
    http_server_free(s);
}

static void *free_client(void *arg)
{
    client_t *c = arg;
    hold_client(c);
    return NULL;
}

static void *answer_after_100ms(void *arg)
{
    sleep_ms(100);
    answer_echo(arg);
    return NULL;
}

TEST("graceful shutdown lets an in-flight suspended request finish")
{
    held_reset();
    config_server_t cfg = base_cfg();
    char err[256];
    http_server_t *s = http_server_new(&cfg, routes, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    static client_t c;
    c.port = http_server_port(s);
    str_copy(c.body, sizeof c.body, "in-flight");
    pthread_t th, ans;
    pthread_create(&th, NULL, free_client, &c);
    CHECK_INT(wait_held(1), 1);
    pthread_create(&ans, NULL, answer_after_100ms, held[0]);
    http_server_free(s); /* returns once the request is answered */
    pthread_join(ans, NULL);
    pthread_join(th, NULL);
    CHECK_INT(c.rc, 0);
    CHECK_INT(c.r.status, 200);
    CHECK(body_is(&c.r, "in-flight"));
    resp_free(&c.r);
    /* no longer listening */
    CHECK(client_connect(c.port) < 0);
}

static void *free_server(void *arg)
{
    http_server_free(arg);
    return NULL;
}

TEST("stops taking new connections once shutdown begins but serves the in-flight one")
{
    held_reset();
    config_server_t cfg = base_cfg();
    char err[256];
    http_server_t *s = http_server_new(&cfg, routes, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    static client_t c;
    c.port = http_server_port(s);
    str_copy(c.body, sizeof c.body, "kept");
    pthread_t th, fr;
    pthread_create(&th, NULL, free_client, &c);
    CHECK_INT(wait_held(1), 1);
    pthread_create(&fr, NULL, free_server, s);
    bool refused = false;
    for (int i = 0; i < 250 && !refused; i++) { /* until the shutdown is under way */
        resp_t r;
        refused = get(c.port, "/ping", NULL, &r) != 0;
        resp_free(&r);
        if (!refused)
            sleep_ms(20);
    }
    CHECK(refused);
    answer_echo(held[0]);
    pthread_join(fr, NULL);
    pthread_join(th, NULL);
    CHECK_INT(c.r.status, 200);
    CHECK(body_is(&c.r, "kept"));
    resp_free(&c.r);
}

TEST("a request still suspended after the grace period gets 503 and a late resume is safe")
{
    held_reset();
    config_server_t cfg = base_cfg();
    cfg.shutdown_grace_ms = 100;
    char err[256];
    http_server_t *s = http_server_new(&cfg, routes, NULL, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    static client_t c;
    c.port = http_server_port(s);
    str_copy(c.body, sizeof c.body, "stuck");
    pthread_t th;
    pthread_create(&th, NULL, free_client, &c);
    CHECK_INT(wait_held(1), 1);
    http_server_free(s);
    pthread_join(th, NULL);
    CHECK_INT(c.rc, 0);
    CHECK_INT(c.r.status, 503);
    resp_free(&c.r);
    CHECK_INT(data_frees, 0); /* the owed resume still holds the request */
    answer_echo(held[0]);     /* the handler's late answer only releases it */
    CHECK_INT(data_frees, 1);
}

TEST("metrics count requests by route pattern and status")
{
    resp_t r;
    CHECK(get(port, "/api/v1/functions/0123456789abcdef01234567", NULL, &r) == 0);
    resp_free(&r);
    CHECK(get(port, "/definitely/unknown", NULL, &r) == 0);
    resp_free(&r);
    buf_t b = {0};
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) { /* completion runs just after the response */
        buf_free(&b);
        http_metrics_write(srv, &b);
        ok = strstr(b.data, "faas_http_requests_total{route=\"unmatched\",method=\"GET\","
                            "status=\"404\"}") != NULL;
        if (!ok)
            sleep_ms(20);
    }
    CHECK(ok);
    CHECK(strstr(b.data, "faas_http_requests_total{route=\"/api/v1/functions/{id}\","
                         "method=\"GET\",status=\"200\"}") != NULL);
    CHECK(strstr(b.data, "0123456789abcdef01234567") == NULL);
    CHECK(strstr(b.data, "# TYPE faas_http_request_duration_seconds histogram") != NULL);
    CHECK(strstr(b.data, "faas_http_request_duration_seconds_bucket{route=\"/ping\","
                         "le=\"+Inf\"}") != NULL);
    CHECK(strstr(b.data, "faas_http_request_duration_seconds_count{route=\"/ping\"}") != NULL);
    buf_free(&b);
}

TEST("logs one JSON line per request with the ids")
{
    char path[] = "/tmp/test_http_log_XXXXXX";
    int tfd = mkstemp(path);
    CHECK(tfd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(tfd, 2);
    resp_t r;
    CHECK(get(port, "/user", "X-Request-Id: log-line-check\r\n", &r) == 0);
    resp_free(&r);
    char text[8192] = "";
    const char *line = NULL;
    for (int i = 0; i < 100 && !line; i++) {
        ssize_t n = pread(tfd, text, sizeof text - 1, 0);
        text[n > 0 ? n : 0] = '\0';
        line = strstr(text, "\"requestId\":\"log-line-check\"");
        if (!line)
            sleep_ms(20);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(tfd);
    unlink(path);
    CHECK(line != NULL);
    CHECK(strstr(text, "\"msg\":\"request\",\"method\":\"GET\",\"path\":\"/user\","
                       "\"status\":409,\"durationMs\":") != NULL);
    CHECK(strstr(text, "\"userId\":\"aaaaaaaaaaaaaaaaaaaaaaaa\"") != NULL);
    CHECK(strstr(text, "\"executionId\":\"bbbbbbbbbbbbbbbbbbbbbbbb\"") != NULL);
    CHECK(strstr(text, "\"level\":\"info\"") != NULL);
}

TEST("knows the reason phrases")
{
    CHECK_STR(http_reason(413), "Payload Too Large");
    CHECK_STR(http_reason(422), "Unprocessable Entity");
    CHECK_STR(http_reason(504), "Gateway Timeout");
    CHECK_STR(http_reason(202), "Accepted");
}

T_MAIN_WITH(setup, teardown)
