/* The HTTP server: libmicrohttpd (internal thread pool + epoll) behind a small router.
 *
 * One request context (ctx_t) per request, created when MHD has the request line and freed in
 * one place (ctx_unref) once both MHD is done with it (NOTIFY_COMPLETED) and, if the handler
 * suspended it, the promised http_request_resume() has happened. Every piece of state that
 * more than one thread touches (suspend/resume phase, the pending response, the in-flight
 * count, the list of suspended requests) is guarded by one mutex in `core_t`, which the
 * contexts share with the server by reference count so that a late resume after a forced
 * shutdown still finds a valid lock. */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define PATH_MAX_LEN 1024           /* longer paths are 414 */
#define CONN_TIMEOUT_S 30           /* idle clients are cut off after this */
#define CONN_MEMORY_LIMIT (64 * 1024) /* per connection: request line + headers + buffers */
#define OFFLOAD_QUEUE_CAP 1024
#define FORCE_WAIT_MS 2000          /* after the grace period: time to flush the 503s */
#define DISCARD_MIN (1024 * 1024)   /* over-limit chunked bytes we drain before closing */
#define REQUEST_ID_MAX 64

static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
                                      "OTHER"};
#define NMETHODS ((int)(sizeof methods / sizeof methods[0]))
static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define NBUCKETS ((int)(sizeof buckets / sizeof buckets[0]))

typedef struct hdr {
    char *name, *value;
    struct hdr *next;
} hdr_t;

/* The lock shared by the server and its requests (see the top of the file). */
typedef struct {
    pthread_mutex_t lock;
    int refs;
} core_t;

enum { PH_NEW, PH_HANDLER, PH_SUSPENDED, PH_FINAL };

typedef struct ctx {
    http_request_t req; /* first: handlers get &ctx->req, we cast back */
    http_server_t *s;   /* NULL once MHD is done with the request */
    core_t *core;
    struct MHD_Connection *conn; /* NULL once MHD is done with the request */
    char *method, *path;
    const char *raw_uri_end; /* where the request-target's C string ends in MHD's buffer */
    bool begun;              /* the access handler has seen it (counted in flight) */
    char *params[4];
    buf_t body;
    int64_t discarded;   /* body bytes dropped after the limit was passed */
    bool too_large;
    int route;           /* the matched route, -1 if none */
    int metric_route;    /* route label index; nroutes = "unmatched" */
    int early_status;    /* 404/405/413/414 or 204 (preflight) decided from the headers */
    bool preflight;
    char allow[96];      /* for 405 and preflight */
    /* guarded by core->lock */
    int phase;
    int refs;            /* 1 for MHD + 1 while a resume is owed */
    bool resumed_early;  /* resume came while the handler was still running */
    bool owed_resume;
    bool suspended;      /* the MHD connection is suspended by us */
    bool finalized;      /* the response went to MHD: later writes are ignored */
    char *ctype, *rbody;
    size_t rlen;
    hdr_t *hdrs;
    struct ctx *next, *prev; /* server's list of suspended requests */
    /* set by the MHD thread at queueing, read at completion */
    int sent_status;
    size_t sent_bytes;
    uint64_t start_ns;
} ctx_t;

typedef struct {
    int route, method, status;
    uint64_t n;
} counter_t;

typedef struct {
    uint64_t b[NBUCKETS];
    uint64_t count;
    double sum;
} hist_t;

typedef struct {
    http_request_t *req;
    void (*fn)(http_request_t *req);
} job_t;

struct http_server {
    config_server_t cfg;
    const http_route_t *routes;
    int nroutes;
    void *app;
    struct MHD_Daemon *d;
    int port;
    core_t *core;
    /* guarded by core->lock */
    pthread_cond_t idle;
    int inflight;
    bool stopping, forcing;
    ctx_t *suspended;
    /* the offload pool */
    pthread_mutex_t plock;
    pthread_cond_t pcond;
    pthread_t *threads;
    int nthreads;
    job_t queue[OFFLOAD_QUEUE_CAP];
    int qhead, qlen;
    bool pstop;
    /* metrics */
    pthread_mutex_t mlock;
    counter_t *counters;
    int ncounters, capcounters;
    hist_t *hists; /* nroutes + 1 */
};

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* Length of the valid UTF-8 sequence at p (up to n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2, min = 0x80, cp = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3, min = 0x800, cp = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4, min = 0x10000, cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* Appends `s` as a JSON string: control bytes escaped, invalid UTF-8 replaced by U+FFFD. */
static void json_str(buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    buf_append(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = p[i];
        if (ch == '"' || ch == '\\') {
            buf_append(b, "\\", 1);
            buf_append(b, &p[i], 1);
            i++;
        } else if (ch < 0x20 || ch == 0x7f) {
            buf_appendf(b, "\\u%04x", ch);
            i++;
        } else {
            size_t l = utf8_len(&p[i], n - i);
            if (l == 0) {
                buf_append(b, "\\ufffd", 6);
                i++;
            } else {
                buf_append(b, &p[i], l);
                i += l;
            }
        }
    }
    buf_append(b, "\"", 1);
}

/* Appends `s` as a Prometheus label value. */
static void label_str(buf_t *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            buf_append(b, "\\", 1);
        if (*s == '\n')
            buf_append(b, "\\n", 2);
        else
            buf_append(b, s, 1);
    }
    buf_append(b, "\"", 1);
}

static int method_index(const char *m)
{
    for (int i = 0; i < NMETHODS - 1; i++)
        if (strcmp(m, methods[i]) == 0)
            return i;
    return NMETHODS - 1;
}

/* ---- shared lock ---- */

static void core_unref(core_t *core)
{
    pthread_mutex_lock(&core->lock);
    bool last = --core->refs == 0;
    pthread_mutex_unlock(&core->lock);
    if (last) {
        pthread_mutex_destroy(&core->lock);
        free(core);
    }
}

/* ---- request contexts ---- */

static void hdrs_free(hdr_t *h)
{
    while (h) {
        hdr_t *next = h->next;
        free(h->name);
        free(h->value);
        free(h);
        h = next;
    }
}

/* The one place a request context is freed. */
static void ctx_free(ctx_t *c)
{
    if (c->req.data_free && c->req.data)
        c->req.data_free(c->req.data);
    for (int i = 0; i < 4; i++)
        free(c->params[i]);
    free(c->method);
    free(c->path);
    buf_free(&c->body);
    free(c->ctype);
    free(c->rbody);
    hdrs_free(c->hdrs);
    core_t *core = c->core;
    free(c);
    core_unref(core);
}

/* Drops one reference; the caller holds core->lock, which this releases. */
static void ctx_unref_unlock(ctx_t *c)
{
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->core->lock);
    if (last)
        ctx_free(c);
}

static ctx_t *ctx_of(http_request_t *req)
{
    return (ctx_t *)req;
}

/* Sets the pending response (caller holds the lock). Takes `body` (malloc'd or NULL). */
static void set_response_locked(ctx_t *c, int status, const char *ctype, char *body, size_t len)
{
    if (c->finalized) {
        free(body);
        return;
    }
    free(c->rbody);
    free(c->ctype);
    c->req.status = status;
    c->ctype = ctype ? xstrdup(ctype) : NULL;
    c->rbody = body;
    c->rlen = len;
}

static char *error_body(int status, const char *msg, size_t *len)
{
    buf_t b = {0};
    buf_appendf(&b, "{\"statusCode\":%d,\"message\":", status);
    json_str(&b, msg);
    buf_append(&b, ",\"error\":", 9);
    json_str(&b, http_reason(status));
    buf_append(&b, "}", 1);
    return buf_steal(&b, len);
}

static void set_error_locked(ctx_t *c, int status, const char *msg)
{
    size_t len;
    char *body = error_body(status, msg, &len);
    set_response_locked(c, status, "application/json", body, len);
}

void http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                  size_t len)
{
    ctx_t *c = ctx_of(req);
    char *copy = NULL;
    if (len) {
        copy = xmalloc(len);
        memcpy(copy, body, len);
    }
    pthread_mutex_lock(&c->core->lock);
    set_response_locked(c, status, content_type, copy, len);
    pthread_mutex_unlock(&c->core->lock);
}

void http_respond_error(http_request_t *req, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ctx_t *c = ctx_of(req);
    pthread_mutex_lock(&c->core->lock);
    set_error_locked(c, status, msg);
    pthread_mutex_unlock(&c->core->lock);
}

void http_respond_json(http_request_t *req, int status, void *json)
{
    char *text = json ? cJSON_PrintUnformatted((cJSON *)json) : NULL;
    cJSON_Delete((cJSON *)json);
    if (!text) {
        http_respond_error(req, 500, "cannot serialise the response");
        return;
    }
    /* cJSON allocates with malloc (default hooks), so the text can be handed over as is */
    ctx_t *c = ctx_of(req);
    pthread_mutex_lock(&c->core->lock);
    set_response_locked(c, status, "application/json", text, strlen(text));
    pthread_mutex_unlock(&c->core->lock);
}

void http_response_header(http_request_t *req, const char *name, const char *value)
{
    ctx_t *c = ctx_of(req);
    hdr_t *h = xcalloc(1, sizeof *h);
    h->name = xstrdup(name);
    h->value = xstrdup(value);
    pthread_mutex_lock(&c->core->lock);
    if (c->finalized) {
        pthread_mutex_unlock(&c->core->lock);
        hdrs_free(h);
        return;
    }
    hdr_t **tail = &c->hdrs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = h;
    pthread_mutex_unlock(&c->core->lock);
}

/* Header and query lookups read MHD's per-connection tables: they are stable while the
 * handler runs or while the connection is suspended; after MHD is done they are gone. */
static const char *lookup(http_request_t *req, enum MHD_ValueKind kind, const char *name)
{
    ctx_t *c = ctx_of(req);
    const char *v = NULL;
    pthread_mutex_lock(&c->core->lock);
    if (c->conn)
        v = MHD_lookup_connection_value(c->conn, kind, name);
    pthread_mutex_unlock(&c->core->lock);
    return v;
}

const char *http_request_header(http_request_t *req, const char *name)
{
    return lookup(req, MHD_HEADER_KIND, name);
}

const char *http_request_query(http_request_t *req, const char *name)
{
    return lookup(req, MHD_GET_ARGUMENT_KIND, name);
}

/* ---- routing ---- */

/* Matches a path (trailing slash stripped) against a pattern; on success stores the captured
 * segments (pointers into path) and returns true. */
static bool route_match(const char *pattern, const char *path, const char *pv[4], size_t pl[4],
                        int *np)
{
    const char *p = pattern, *q = path;
    int n = 0;
    while (*p && *q) {
        if (*p != '/' || *q != '/')
            return false;
        p++, q++;
        size_t plen = strcspn(p, "/"), qlen = strcspn(q, "/");
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (qlen == 0 || n == 4)
                return false;
            pv[n] = q;
            pl[n] = qlen;
            n++;
        } else if (plen != qlen || memcmp(p, q, plen) != 0) {
            return false;
        }
        p += plen;
        q += qlen;
    }
    if (*p || *q)
        return false;
    *np = n;
    return true;
}

static bool method_matches(const char *route_method, const char *method)
{
    return strcmp(route_method, method) == 0 ||
           (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

/* Appends `m` to a ", "-separated list unless it is there already. */
static void allow_add(char *allow, size_t cap, const char *m)
{
    size_t ml = strlen(m);
    for (const char *p = allow; *p;) {
        size_t l = strcspn(p, ",");
        if (l == ml && memcmp(p, m, l) == 0)
            return;
        p += l;
        while (*p == ',' || *p == ' ')
            p++;
    }
    size_t len = strlen(allow);
    snprintf(allow + len, cap - len, "%s%s", len ? ", " : "", m);
}

static bool origin_allowed(const http_server_t *s, const char *origin, bool *wildcard)
{
    *wildcard = false;
    for (int i = 0; i < s->cfg.cors_origin_count; i++) {
        if (strcmp(s->cfg.cors_origins[i], "*") == 0) {
            *wildcard = true;
            return true;
        }
        if (strcmp(s->cfg.cors_origins[i], origin) == 0)
            return true;
    }
    return false;
}

static bool request_id_valid(const char *v)
{
    size_t n = strlen(v);
    if (n < 1 || n > REQUEST_ID_MAX)
        return false;
    for (const char *p = v; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static bool has_body(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    return te || (cl && strcmp(cl, "0") != 0);
}

/* Everything decided from the request line and headers: id, route, early errors. */
static void request_begin(http_server_t *s, ctx_t *c)
{
    const char *rid = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && request_id_valid(rid))
        str_copy(c->req.request_id, sizeof c->req.request_id, rid);
    else
        id_new(c->req.request_id);

    c->route = -1;
    c->metric_route = s->nroutes;
    size_t plen = strlen(c->path);
    if (plen > PATH_MAX_LEN) {
        c->early_status = 414;
        return;
    }
    /* routes are ASCII literals and hex ids: a '%' (only a kept "%00" or a "%25" can be
     * left after decoding), a control byte or a non-ASCII byte never matches */
    for (const unsigned char *p = (const unsigned char *)c->path; *p; p++) {
        if (*p == '%' || *p < 0x20 || *p >= 0x7f) {
            c->early_status = 404;
            return;
        }
    }
    char *path = xstrndup(c->path, plen);
    if (plen > 1 && path[plen - 1] == '/')
        path[plen - 1] = '\0';

    bool path_known = false;
    const char *pv[4];
    size_t pl[4];
    int np = 0;
    for (int i = 0; i < s->nroutes; i++) {
        if (!route_match(s->routes[i].pattern, path, pv, pl, &np))
            continue;
        if (!path_known)
            c->metric_route = i;
        path_known = true;
        allow_add(c->allow, sizeof c->allow, s->routes[i].method);
        if (c->route < 0 && method_matches(s->routes[i].method, c->method)) {
            c->route = i;
            c->metric_route = i;
            for (int k = 0; k < np; k++) {
                c->params[k] = xstrndup(pv[k], pl[k]);
                c->req.params[k] = c->params[k];
            }
            c->req.nparams = np;
        }
    }
    free(path);

    const char *origin = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Origin");
    if (s->cfg.cors_enabled && strcmp(c->method, "OPTIONS") == 0 && origin && c->route < 0) {
        c->preflight = true;
        c->early_status = path_known ? 204 : 404;
        return;
    }
    if (c->route < 0) {
        c->early_status = path_known ? 405 : 404;
        return;
    }
    const char *cl = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Length");
    int64_t len;
    if (cl && parse_int64(cl, strlen(cl), 0, INT64_MAX, &len) == 0 && len > s->cfg.body_limit)
        c->early_status = 413;
}

/* Fills the response for a status decided from the headers (caller holds the lock). */
static void set_early_response_locked(http_server_t *s, ctx_t *c)
{
    switch (c->early_status) {
    case 204:
        set_response_locked(c, 204, NULL, NULL, 0);
        break;
    case 405:
        set_error_locked(c, 405, "method not allowed");
        break;
    case 413:
        set_error_locked(c, 413, "request body too large");
        break;
    case 414:
        set_error_locked(c, 414, "request path too long");
        break;
    case 400:
        set_error_locked(c, 400, "invalid request target");
        break;
    default: {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot %s '%.200s'", c->method, c->path);
        set_error_locked(c, 404, msg);
        break;
    }
    }
    (void)s;
}

static bool has_header(const ctx_t *c, const char *name)
{
    for (const hdr_t *h = c->hdrs; h; h = h->next)
        if (strcasecmp(h->name, name) == 0)
            return true;
    return false;
}

static void add_header(struct MHD_Response *r, const ctx_t *c, const char *name,
                       const char *value)
{
    if (!has_header(c, name))
        MHD_add_response_header(r, name, value);
}

/* Hands the pending response to MHD. Runs on the connection's MHD thread. */
static enum MHD_Result queue_response(http_server_t *s, ctx_t *c)
{
    pthread_mutex_lock(&s->core->lock);
    if (c->req.status < 100 || c->req.status > 999)
        set_error_locked(c, 500, "the handler set no response");
    int status = c->req.status;
    size_t len = c->rlen;
    char *body = c->rbody;
    c->rbody = NULL;
    struct MHD_Response *r =
        len ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
            : MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(body);
        pthread_mutex_unlock(&s->core->lock);
        return MHD_NO;
    }
    if (!len)
        free(body);
    for (const hdr_t *h = c->hdrs; h; h = h->next)
        MHD_add_response_header(r, h->name, h->value);
    if (c->ctype)
        add_header(r, c, "Content-Type", c->ctype);
    add_header(r, c, "X-Request-Id", c->req.request_id);
    add_header(r, c, "X-Content-Type-Options", "nosniff");
    add_header(r, c, "Cache-Control", "no-store");
    if (status == 405)
        add_header(r, c, "Allow", c->allow);
    const char *origin = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Origin");
    bool wildcard;
    if (s->cfg.cors_enabled && origin && origin_allowed(s, origin, &wildcard)) {
        add_header(r, c, "Access-Control-Allow-Origin", wildcard ? "*" : origin);
        if (!wildcard)
            add_header(r, c, "Vary", "Origin");
        add_header(r, c, "Access-Control-Expose-Headers", "X-Request-Id, Location");
        if (c->preflight && status == 204) {
            add_header(r, c, "Access-Control-Allow-Methods", c->allow);
            add_header(r, c, "Access-Control-Allow-Headers",
                       "Authorization, Content-Type, X-Request-Id");
            add_header(r, c, "Access-Control-Max-Age", "600");
        }
    }
    if (s->stopping)
        MHD_add_response_header(r, "Connection", "close");
    c->finalized = true;
    c->phase = PH_FINAL;
    c->sent_status = status;
    c->sent_bytes = len;
    pthread_mutex_unlock(&s->core->lock);
    enum MHD_Result ret = MHD_queue_response(c->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Accumulates a piece of the body; past the limit the data is dropped, and a client that
 * keeps sending long after it is cut off (a chunked body has no announced end). */
static enum MHD_Result body_take(http_server_t *s, ctx_t *c, const char *data, size_t n)
{
    if (c->too_large || c->early_status) {
        c->discarded += (int64_t)n;
        int64_t cap = s->cfg.body_limit > DISCARD_MIN ? s->cfg.body_limit : DISCARD_MIN;
        return c->discarded > cap ? MHD_NO : MHD_YES;
    }
    if ((int64_t)(c->body.len + n) > s->cfg.body_limit) {
        c->too_large = true;
        c->discarded = (int64_t)n;
        buf_free(&c->body);
        return MHD_YES;
    }
    buf_append(&c->body, data, n);
    return MHD_YES;
}

/* The whole request is in (or it was resumed): run the handler or queue what is pending. */
static enum MHD_Result request_complete(http_server_t *s, ctx_t *c)
{
    core_t *core = s->core;
    pthread_mutex_lock(&core->lock);
    if (c->phase == PH_SUSPENDED) { /* resumed */
        pthread_mutex_unlock(&core->lock);
        return queue_response(s, c);
    }
    if (c->early_status || c->too_large || s->forcing) {
        if (c->early_status)
            set_early_response_locked(s, c);
        else if (c->too_large)
            set_error_locked(c, 413, "request body too large");
        else
            set_error_locked(c, 503, "server is shutting down");
        pthread_mutex_unlock(&core->lock);
        return queue_response(s, c);
    }
    c->phase = PH_HANDLER;
    pthread_mutex_unlock(&core->lock);

    c->req.body = c->body.data ? c->body.data : "";
    c->req.body_len = c->body.len;
    int rc = s->routes[c->route].fn(&c->req);

    pthread_mutex_lock(&core->lock);
    if (rc != HTTP_SUSPEND || c->resumed_early) {
        pthread_mutex_unlock(&core->lock);
        return queue_response(s, c);
    }
    c->refs++; /* held until the promised http_request_resume() */
    c->owed_resume = true;
    if (s->forcing) {
        set_error_locked(c, 503, "server is shutting down");
        c->phase = PH_FINAL; /* the coming resume must drop its reference, not wait */
        pthread_mutex_unlock(&core->lock);
        return queue_response(s, c);
    }
    c->phase = PH_SUSPENDED;
    c->suspended = true;
    c->prev = NULL;
    c->next = s->suspended;
    if (s->suspended)
        s->suspended->prev = c;
    s->suspended = c;
    MHD_suspend_connection(c->conn);
    pthread_mutex_unlock(&core->lock);
    return MHD_YES;
}

static void suspended_remove_locked(http_server_t *s, ctx_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->suspended = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

void http_request_resume(http_request_t *req)
{
    ctx_t *c = ctx_of(req);
    pthread_mutex_lock(&c->core->lock);
    if (c->phase == PH_NEW || c->phase == PH_HANDLER) {
        /* the handler has not returned HTTP_SUSPEND yet: it will queue the response itself */
        c->resumed_early = true;
        pthread_mutex_unlock(&c->core->lock);
        return;
    }
    if (!c->owed_resume) { /* a second resume, or one for a request that did not suspend */
        pthread_mutex_unlock(&c->core->lock);
        return;
    }
    c->owed_resume = false;
    if (c->suspended) {
        c->suspended = false;
        suspended_remove_locked(c->s, c);
        MHD_resume_connection(c->conn);
    }
    ctx_unref_unlock(c);
}

/* ---- MHD callbacks ---- */

/* Called with the raw request-target before MHD splits and decodes it: the request context
 * starts here so that the access handler can tell whether the target held a NUL byte. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    ctx_t *c = xcalloc(1, sizeof *c);
    c->raw_uri_end = uri + strlen(uri);
    return c;
}

/* libmicrohttpd 0.9.75 keeps the request line in one buffer and ends the target by writing a
 * NUL over the space before the version, so the version starts right after the target's C
 * string; a version further on means a NUL byte cut the target short. */
static bool target_has_nul(const ctx_t *c, const char *version)
{
    return c->raw_uri_end && version && version[0] && version > c->raw_uri_end + 1 &&
           version - c->raw_uri_end < CONN_MEMORY_LIMIT;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls)
{
    http_server_t *s = cls;
    ctx_t *c = *con_cls;
    if (!c || !c->begun) {
        if (!c)
            c = xcalloc(1, sizeof *c);
        c->begun = true;
        c->s = s;
        c->core = s->core;
        c->conn = conn;
        c->method = xstrdup(method);
        c->path = xstrdup(url);
        c->req.method = c->method;
        c->req.path = c->path;
        c->req.body = "";
        c->req.app = s->app;
        c->refs = 1;
        c->start_ns = time_mono_ns();
        pthread_mutex_lock(&s->core->lock);
        s->core->refs++;
        s->inflight++;
        pthread_mutex_unlock(&s->core->lock);
        *con_cls = c;
        request_begin(s, c);
        if (target_has_nul(c, version))
            c->early_status = 400;
        /* refuse a body we will not read right away (MHD then closes the connection);
         * without a body, wait for the final call to keep the connection alive */
        if (c->early_status && has_body(conn)) {
            pthread_mutex_lock(&s->core->lock);
            set_early_response_locked(s, c);
            pthread_mutex_unlock(&s->core->lock);
            return queue_response(s, c);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        enum MHD_Result r = body_take(s, c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return r;
    }
    return request_complete(s, c);
}

static void metrics_record(http_server_t *s, ctx_t *c, double seconds)
{
    int m = method_index(c->method);
    pthread_mutex_lock(&s->mlock);
    counter_t *ct = NULL;
    for (int i = 0; i < s->ncounters; i++) {
        counter_t *x = &s->counters[i];
        if (x->route == c->metric_route && x->method == m && x->status == c->sent_status) {
            ct = x;
            break;
        }
    }
    if (!ct) {
        if (s->ncounters == s->capcounters) {
            s->capcounters = s->capcounters ? s->capcounters * 2 : 32;
            s->counters = xrealloc(s->counters, (size_t)s->capcounters * sizeof *s->counters);
        }
        ct = &s->counters[s->ncounters++];
        *ct = (counter_t){c->metric_route, m, c->sent_status, 0};
    }
    ct->n++;
    hist_t *h = &s->hists[c->metric_route];
    for (int i = 0; i < NBUCKETS; i++)
        if (seconds <= buckets[i])
            h->b[i]++;
    h->count++;
    h->sum += seconds;
    pthread_mutex_unlock(&s->mlock);
}

static void log_request(ctx_t *c, double ms)
{
    char ts[32];
    time_rfc3339(time_now_ms(), ts);
    buf_t b = {0};
    buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"component\":\"%s\",\"msg\":\"request\","
                    "\"method\":", ts, log_component());
    json_str(&b, c->method);
    buf_append(&b, ",\"path\":", 8);
    json_str(&b, c->path);
    buf_appendf(&b, ",\"status\":%d,\"durationMs\":%.3f,\"requestId\":", c->sent_status, ms);
    json_str(&b, c->req.request_id);
    if (c->req.user_id[0]) {
        buf_append(&b, ",\"userId\":", 10);
        json_str(&b, c->req.user_id);
    }
    if (c->req.execution_id[0]) {
        buf_append(&b, ",\"executionId\":", 15);
        json_str(&b, c->req.execution_id);
    }
    buf_appendf(&b, ",\"bytes\":%zu}", c->sent_bytes);
    log_raw(b.data);
    buf_free(&b);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    http_server_t *s = cls;
    ctx_t *c = *con_cls;
    (void)conn;
    (void)toe;
    if (!c)
        return;
    *con_cls = NULL;
    if (!c->begun) { /* MHD refused the request before the access handler saw it */
        free(c);
        return;
    }
    double seconds = (double)(time_mono_ns() - c->start_ns) / 1e9;
    if (c->sent_status) /* 0: the client went away (or timed out) before a response */
        metrics_record(s, c, seconds);
    if (log_enabled(LOG_INFO)) /* the request log is info: log.level = "warn" turns it off */
        log_request(c, seconds * 1000.0);
    pthread_mutex_lock(&s->core->lock);
    c->conn = NULL;
    c->s = NULL;
    if (--s->inflight == 0)
        pthread_cond_broadcast(&s->idle);
    ctx_unref_unlock(c);
}

/* Percent-decoding except %00: a NUL never gets into a path or a query value. */
static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *w = s;
    (void)cls;
    (void)conn;
    for (const char *r = s; *r;) {
        if (r[0] == '%' && hexval(r[1]) >= 0 && hexval(r[2]) >= 0) {
            int v = hexval(r[1]) * 16 + hexval(r[2]);
            if (v != 0) {
                *w++ = (char)v;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* Shutting down: new connections are closed as soon as they are accepted. (This stands in
 * for MHD_quiesce_daemon(), which in 0.9.75 with a thread pool + epoll can race a worker
 * removing the listen socket from its epoll set and then abort in MHD_PANIC.) */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    http_server_t *s = cls;
    (void)addr;
    (void)addrlen;
    return __atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE) ? MHD_NO : MHD_YES;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("libmicrohttpd: %s", msg);
}

/* ---- offload pool ---- */

static void *pool_main(void *arg)
{
    http_server_t *s = arg;
    /* Offloaded work (Argon2id) is the CPU hog here: let every request thread preempt it, so
     * a login storm cannot raise the latency of other requests. Still runs whenever a core
     * is idle; under a sustained flood of other requests logins wait, which is the point. */
    struct sched_param sp = {0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        log_warn("offload pool: cannot lower the thread priority");
    for (;;) {
        pthread_mutex_lock(&s->plock);
        while (!s->qlen && !s->pstop)
            pthread_cond_wait(&s->pcond, &s->plock);
        if (!s->qlen) {
            pthread_mutex_unlock(&s->plock);
            return NULL;
        }
        job_t job = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % OFFLOAD_QUEUE_CAP;
        s->qlen--;
        pthread_mutex_unlock(&s->plock);
        job.fn(job.req);
        http_request_resume(job.req);
    }
}

void http_request_offload(http_request_t *req, void (*fn)(http_request_t *req))
{
    ctx_t *c = ctx_of(req);
    http_server_t *s = c->s;
    bool queued = false;
    if (s) {
        pthread_mutex_lock(&s->plock);
        if (s->qlen < OFFLOAD_QUEUE_CAP && !s->pstop) {
            s->queue[(s->qhead + s->qlen) % OFFLOAD_QUEUE_CAP] = (job_t){req, fn};
            s->qlen++;
            queued = true;
            pthread_cond_signal(&s->pcond);
        }
        pthread_mutex_unlock(&s->plock);
    }
    if (!queued) {
        http_respond_error(req, 503, "server is busy");
        http_request_resume(req);
    }
}

/* ---- server ---- */

static int resolve_listen(const config_server_t *cfg, struct sockaddr_storage *ss,
                          socklen_t *sslen, char *err, size_t errlen)
{
    const char *host = cfg->listen[0] ? cfg->listen : "127.0.0.1";
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "cannot use listen address '%s': %s", host, gai_strerror(rc));
        if (ai)
            freeaddrinfo(ai);
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sslen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

http_server_t *http_server_new(const config_server_t *cfg, const http_route_t *routes,
                               void *app, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (cfg->port < 0 || cfg->port > 65535) {
        snprintf(err, errlen, "invalid port '%d'", cfg->port);
        return NULL;
    }
    if (resolve_listen(cfg, &ss, &sslen, err, errlen) < 0)
        return NULL;

    http_server_t *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->routes = routes;
    while (routes[s->nroutes].fn)
        s->nroutes++;
    s->app = app;
    s->core = xcalloc(1, sizeof *s->core);
    pthread_mutex_init(&s->core->lock, NULL);
    s->core->refs = 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->plock, NULL);
    pthread_cond_init(&s->pcond, NULL);
    pthread_mutex_init(&s->mlock, NULL);
    s->hists = xcalloc((size_t)s->nroutes + 1, sizeof *s->hists);

    /* at most threads/2, and one core always left to the request threads */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->nthreads = cfg->threads / 2 > 1 ? cfg->threads / 2 : 1;
    if (cores > 1 && s->nthreads > cores - 1)
        s->nthreads = (int)cores - 1;
    s->threads = xcalloc((size_t)s->nthreads, sizeof *s->threads);
    for (int i = 0; i < s->nthreads; i++) {
        if (pthread_create(&s->threads[i], NULL, pool_main, s) != 0) {
            snprintf(err, errlen, "cannot start the offload threads");
            s->nthreads = i;
            goto fail;
        }
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned pool = cfg->threads > 1 ? (unsigned)cfg->threads : 1;
    errno = 0;
    s->d = MHD_start_daemon(
        flags, (uint16_t)cfg->port, on_accept, s, on_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, /* first, so it gets every message */
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_LIMIT,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
        /* a pool of 1 is refused with a warning: then the single internal thread serves */
        pool > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, pool,
        MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on '%s:%d': %s", cfg->listen, cfg->port,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->port;
    (void)sslen;
    return s;

fail:
    s->d = NULL;
    http_server_free(s);
    return NULL;
}

int http_server_port(http_server_t *s)
{
    return s->port;
}

/* Waits until no request is in flight or `ms` have passed. Caller holds the lock. */
static void wait_idle_locked(http_server_t *s, int64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += ms / 1000;
    dl.tv_nsec += (ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    while (s->inflight > 0)
        if (pthread_cond_timedwait(&s->idle, &s->core->lock, &dl) == ETIMEDOUT)
            break;
}

void http_server_free(http_server_t *s)
{
    if (!s)
        return;
    if (s->d) {
        pthread_mutex_lock(&s->core->lock);
        __atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&s->core->lock);

        pthread_mutex_lock(&s->core->lock);
        wait_idle_locked(s, s->cfg.shutdown_grace_ms);
        /* past the grace period: MHD must not be stopped with suspended connections, so
         * answer them 503 now; their late resume then only drops a reference */
        s->forcing = true;
        int forced = 0;
        while (s->suspended) {
            ctx_t *c = s->suspended;
            suspended_remove_locked(s, c);
            c->suspended = false;
            set_error_locked(c, 503, "server is shutting down");
            MHD_resume_connection(c->conn);
            forced++;
        }
        if (forced)
            log_warn("answered %d suspended requests 503 at shutdown", forced);
        wait_idle_locked(s, FORCE_WAIT_MS);
        pthread_mutex_unlock(&s->core->lock);

        MHD_stop_daemon(s->d);
    }
    /* the pool drains its queue (each job resumes its request) before the threads end */
    pthread_mutex_lock(&s->plock);
    s->pstop = true;
    pthread_cond_broadcast(&s->pcond);
    pthread_mutex_unlock(&s->plock);
    for (int i = 0; i < s->nthreads; i++)
        pthread_join(s->threads[i], NULL);
    free(s->threads);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->plock);
    pthread_cond_destroy(&s->pcond);
    pthread_mutex_destroy(&s->mlock);
    free(s->counters);
    free(s->hists);
    core_unref(s->core);
    free(s);
}

static const char *route_label(const http_server_t *s, int route)
{
    return route < s->nroutes ? s->routes[route].pattern : "unmatched";
}

void http_metrics_write(http_server_t *s, void *buf)
{
    buf_t *b = buf;
    pthread_mutex_lock(&s->mlock);
    buf_appendf(b, "# HELP faas_http_requests_total HTTP requests by route, method and status.\n"
                   "# TYPE faas_http_requests_total counter\n");
    for (int i = 0; i < s->ncounters; i++) {
        const counter_t *c = &s->counters[i];
        buf_appendf(b, "faas_http_requests_total{route=");
        label_str(b, route_label(s, c->route));
        buf_appendf(b, ",method=\"%s\",status=\"%d\"} %llu\n", methods[c->method], c->status,
                    (unsigned long long)c->n);
    }
    buf_appendf(b, "# HELP faas_http_request_duration_seconds HTTP request latency by route.\n"
                   "# TYPE faas_http_request_duration_seconds histogram\n");
    for (int r = 0; r <= s->nroutes; r++) {
        const hist_t *h = &s->hists[r];
        if (!h->count)
            continue;
        for (int i = 0; i <= NBUCKETS; i++) {
            buf_appendf(b, "faas_http_request_duration_seconds_bucket{route=");
            label_str(b, route_label(s, r));
            if (i < NBUCKETS)
                buf_appendf(b, ",le=\"%g\"} %llu\n", buckets[i], (unsigned long long)h->b[i]);
            else
                buf_appendf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        }
        buf_appendf(b, "faas_http_request_duration_seconds_sum{route=");
        label_str(b, route_label(s, r));
        buf_appendf(b, "} %.6f\n", h->sum);
        buf_appendf(b, "faas_http_request_duration_seconds_count{route=");
        label_str(b, route_label(s, r));
        buf_appendf(b, "} %llu\n", (unsigned long long)h->count);
    }
    pthread_mutex_unlock(&s->mlock);
}
