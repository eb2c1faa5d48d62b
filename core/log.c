#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static int min_level = LOG_INFO;
static const char *component = "faas";
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const char *names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level)
{
    min_level = level;
}

bool log_enabled(int level)
{
    return level >= min_level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void log_set_component(const char *name)
{
    component = name;
}

const char *log_component(void)
{
    return component;
}

/* JSON string escaping into `b`, control bytes as \u00XX. */
static void append_json_string(buf_t *b, const char *s)
{
    buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            buf_append(b, "\\", 1);
            buf_append(b, p, 1);
        } else if (*p < 0x20) {
            buf_appendf(b, "\\u%04x", *p);
        } else {
            buf_append(b, p, 1);
        }
    }
    buf_append(b, "\"", 1);
}

void log_raw(const char *json_line)
{
    pthread_mutex_lock(&lock);
    fputs(json_line, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&lock);
}

void log_kv(int level, const char *key, const char *value, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char ts[32];
    time_rfc3339(time_now_ms(), ts);
    buf_t b = {0};
    buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\"", ts, names[level],
                component);
    if (key && value) {
        buf_append(&b, ",", 1);
        append_json_string(&b, key);
        buf_append(&b, ":", 1);
        append_json_string(&b, value);
    }
    buf_append(&b, ",\"msg\":", 7);
    append_json_string(&b, msg);
    buf_append(&b, "}", 1);
    log_raw(b.data);
    buf_free(&b);
}
