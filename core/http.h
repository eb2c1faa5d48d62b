/* The HTTP server: libmicrohttpd (internal thread pool + epoll) behind a small router. Only
 * http.c includes microhttpd.h. A handler gets one request context, fills its response and
 * returns; or suspends it (sync executions, password hashing) and resumes it later from any
 * thread with http_request_resume(). */
#ifndef FAAS_HTTP_H
#define FAAS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

typedef struct http_server http_server_t;
typedef struct http_request http_request_t;

struct http_request {
    /* in */
    const char *method;
    const char *path;        /* without the query string */
    const char *body;        /* the whole body, NUL-terminated (not counted), may be empty */
    size_t body_len;
    const char *params[4];   /* route parameters ({id}) in order, NUL-terminated copies */
    int nparams;
    char request_id[65];     /* X-Request-Id accepted (1..64 of [A-Za-z0-9._-]) or generated */
    char user_id[25];        /* set by the handler once authenticated: goes in the log */
    char execution_id[25];   /* set by the handler when there is one: goes in the log */
    void *app;               /* what http_server_new got */
    void *data;              /* the handler's own state across suspend/resume */
    void (*data_free)(void *data); /* called once when the request ends */
    /* out (set with the http_respond* functions) */
    int status;
};

/* A handler returns HTTP_DONE after setting a response, or HTTP_SUSPEND after arranging for
 * http_request_resume() to be called (exactly once) later. */
enum { HTTP_DONE = 0, HTTP_SUSPEND = 1 };
typedef int (*http_handler_fn)(http_request_t *req);

typedef struct {
    const char *method;  /* "GET", "POST", "DELETE" */
    const char *pattern; /* "/api/v1/functions/{id}"; segments match exactly or as {param} */
    http_handler_fn fn;
} http_route_t;

/* Starts serving on cfg->listen:cfg->port with the routes (a NULL-fn-terminated array that
 * must outlive the server). Unknown paths are 404, known paths with another method 405
 * (with Allow), bodies past cfg->body_limit 413, all in the JSON error shape. One JSON log
 * line per request. NULL with a message in err. */
http_server_t *http_server_new(const config_server_t *cfg, const http_route_t *routes,
                               void *app, char *err, size_t errlen);
/* Stops accepting, lets in-flight requests finish (up to the grace period), frees. */
void http_server_free(http_server_t *s);
/* The port actually bound (cfg->port 0 picks a free one). */
int http_server_port(http_server_t *s);

/* Request accessors. */
const char *http_request_header(http_request_t *req, const char *name); /* NULL if absent */
const char *http_request_query(http_request_t *req, const char *name);  /* NULL if absent */

/* Responses. Each replaces any earlier one. Bodies are copied. */
void http_respond(http_request_t *req, int status, const char *content_type, const void *body,
                  size_t len);
/* {"statusCode":N,"message":"...","error":"<reason phrase>"} */
void http_respond_error(http_request_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Takes ownership of `json` (a cJSON*), serialises and frees it. */
void http_respond_json(http_request_t *req, int status, void *json);
void http_response_header(http_request_t *req, const char *name, const char *value);

/* Resumes a suspended request: its response must be set first. Any thread. */
void http_request_resume(http_request_t *req);

/* Runs fn(req) on the server's small pool of background threads (password hashing) and
 * then resumes the request: the handler returns HTTP_SUSPEND right after calling this. fn
 * sets the response. */
void http_request_offload(http_request_t *req, void (*fn)(http_request_t *req));

/* The standard reason phrase ("Not Found"). */
const char *http_reason(int status);

/* Counters for /metrics: appends Prometheus text for requests by route and status and the
 * latency histogram. */
void http_metrics_write(http_server_t *s, void *buf /* buf_t* */);

#endif
