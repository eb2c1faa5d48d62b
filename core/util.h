/* Small helpers shared by every module: allocation that aborts on failure, growable
 * buffers, ids, time, size parsing. */
#ifndef FAAS_UTIL_H
#define FAAS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Allocation outside Lua never fails: these abort with a message instead. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh string the caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer. `data` is always NUL-terminated (not counted in `len`). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} buf_t;
void buf_append(buf_t *b, const void *p, size_t n);
void buf_appendf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (who frees them) and resets the buffer. */
char *buf_steal(buf_t *b, size_t *len);
void buf_free(buf_t *b);

/* 24-hex ObjectId-style ids: 4 bytes time, 5 random, 3 counter. `out` holds 25 bytes. */
#define ID_LEN 24
void id_new(char out[ID_LEN + 1]);
bool id_valid(const char *s);

/* Wall clock in milliseconds since the epoch, and a monotonic clock in nanoseconds. */
int64_t time_now_ms(void);
uint64_t time_mono_ns(void);
/* RFC 3339 UTC with milliseconds ("2026-11-28T15:11:13.123Z") into `out` (32 bytes). */
void time_rfc3339(int64_t ms, char out[32]);

/* "64m", "1g", "512k", "100" (bytes) -> bytes. Returns 0, or -1 when malformed/overflow. */
int size_parse(const char *s, int64_t *out);

/* Parses a whole decimal integer with range check. 0 or -1. */
int parse_int64(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);

/* Base64 (standard alphabet, padded). Caller frees. decode returns -1 on bad input. */
char *base64_encode(const void *p, size_t n);
int base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len);

/* Copies `src` into `dst` (size `cap`) truncating, always NUL-terminating. */
void str_copy(char *dst, size_t cap, const char *src);

#endif
