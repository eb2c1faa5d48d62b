/* The two messages on NATS, seed-compatible supersets:
 * request on `functions`:
 *   {"executionId","func":{"image","functionId","name","timeout","memory","cpus","env",
 *    "network"},"userId","input":<base64>,"attempt","createdAt"}
 * result on `execution.<executionId>`:
 *   {"result","executionId","functionId","userId","status","exitCode"(number|null),"stdout",
 *    "stderr","stdoutB64","stderrB64","reason","durationMs","worker","attempts","createdAt",
 *    "startedAt","finishedAt"} (times in ms since the epoch, 0 = unknown)
 * timeout is seconds (number), memory bytes, cpus CPUs (number) as in the API.
 * Decoding checks every type, range and id (24 hex) and never trusts the input. */
#ifndef FAAS_MESSAGE_H
#define FAAS_MESSAGE_H

#include <stddef.h>

#include "store.h"

typedef struct {
    char execution_id[ID_LEN + 1];
    char user_id[ID_LEN + 1];
    store_function_t func;   /* func.env_json owned */
    unsigned char *input;    /* owned */
    size_t input_len;
    int attempt;
    int64_t created_at;
} message_request_t;

/* Encodes to JSON; the caller frees. */
char *message_request_encode(const message_request_t *r, size_t *len);
/* Decodes; 0 or -1 with a reason in err (nothing to free then). Required: executionId,
 * userId, func.image, func.functionId; the rest defaults to 0/""/"{}"/empty input.
 * func.owner is set to userId. Caller frees with message_request_clear(). */
int message_request_decode(const char *data, size_t len, message_request_t *r, char *err,
                           size_t errlen);
void message_request_clear(message_request_t *r);

/* A result is an execution record: status, reason, exit code, result, stdout, stderr
 * (bytes), duration, worker, attempts, times. Encoding puts stdout/stderr as valid UTF-8
 * (invalid sequences replaced by U+FFFD) plus "stdoutB64" with the exact bytes. */
char *message_result_encode(const store_execution_t *e, size_t *len);
/* Decodes; prefers stdoutB64/stderrB64 for the exact bytes. Required: executionId and a
 * known status. 0, or -1 with a reason in err (nothing to free then). Caller frees
 * result/out/err (store_execution_clear()). */
int message_result_decode(const char *data, size_t len, store_execution_t *e, char *err,
                          size_t errlen);

/* Copies `n` bytes to a NUL-terminated valid UTF-8 string (each maximal invalid subpart,
 * overlongs, surrogates, > U+10FFFF, truncations, and NUL bytes become U+FFFD), caller
 * frees. */
char *utf8_sanitize(const char *p, size_t n);

#endif
