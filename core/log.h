/* Structured logging: one JSON object per line on stderr. */
#ifndef FAAS_LOG_H
#define FAAS_LOG_H

#include <stdbool.h>

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(int level);
bool log_enabled(int level); /* whether lines of this level are written */
int log_level_parse(const char *name); /* -1 when unknown */
void log_set_component(const char *name); /* "api", "worker": goes in every line */
const char *log_component(void);

/* log_msg(LOG_INFO, "executionId", id, "cannot start container '%s'", name):
 * `key`/`value` is one optional extra string field (NULL to omit). */
void log_kv(int level, const char *key, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Writes a line made by the caller: a complete JSON object without the newline. */
void log_raw(const char *json_line);

#define log_debug(...) log_kv(LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define log_info(...) log_kv(LOG_INFO, NULL, NULL, __VA_ARGS__)
#define log_warn(...) log_kv(LOG_WARN, NULL, NULL, __VA_ARGS__)
#define log_error(...) log_kv(LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
