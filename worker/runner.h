/* Runs one execution in a fresh hardened container: prepare (create, attach, arm wait,
 * start) -> trigger (write the input, close stdin) -> collect (demultiplex frames, enforce
 * the timeout and the output cap, exit code, OOM) -> cleanup (remove; may be deferred). */
#ifndef FAAS_RUNNER_H
#define FAAS_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "docker.h"
#include "util.h"

typedef struct {
    const char *execution_id;
    const char *function_id;
    const char *worker_id;
    const char *image;
    const char *env_json;     /* {"NAME":"value"} or NULL */
    int64_t timeout_ms;
    int64_t memory;           /* bytes: Memory = MemorySwap */
    int64_t nano_cpus;
    int64_t pids;
    int64_t nofile;
    int64_t tmpfs;            /* bytes of the noexec /tmp */
    int64_t output_limit;     /* per stream */
    const char *network;      /* NULL or "" = "none" */
    const char *pull_policy;  /* never | if-missing | always */
    const unsigned char *input;
    size_t input_len;
    int attempt;              /* delivery attempt (>= 1) names the container
                               * "faas-<execution_id>-<attempt>"; 0 = a random suffix */
} runner_spec_t;

typedef struct {
    char status[16];       /* succeeded failed timed_out error */
    char reason[64];       /* oom_killed output_truncated image_not_found docker_error ... */
    char message[256];     /* detail for status error */
    bool transient;        /* an engine/transport failure worth a retry (nak) */
    int exit_code;         /* -1 when none */
    buf_t out;             /* stdout bytes (capped) */
    buf_t err;             /* stderr bytes (capped) */
    buf_t result;          /* interleaved, frame headers and control chars but \n \t removed */
    int64_t duration_ms;   /* start to exit */
    int64_t started_at, finished_at; /* ms since the epoch */
    char container_id[65]; /* for deferred removal, "" when none */
} runner_result_t;

/* Stream frame demultiplexer: survives headers and payloads split across reads. */
typedef struct {
    unsigned char hdr[8];
    size_t hdr_have;
    int stream;       /* 1 stdout, 2 stderr */
    uint64_t left;    /* payload bytes left in the current frame */
} runner_demux_t;
/* Feeds `n` bytes; calls out(arg, stream, p, len) for each payload piece. */
void runner_demux_feed(runner_demux_t *d, const unsigned char *p, size_t n,
                       void (*out)(void *arg, int stream, const unsigned char *p, size_t len),
                       void *arg);

/* Runs the spec. Always fills `res` (status error with a reason on platform failures).
 * Container removal happens before it returns unless `defer_remove` (then the caller removes
 * res->container_id). `keepalive(arg)` is called every few seconds while it runs
 * (in-progress acks). Caller frees with runner_result_clear().
 * Statuses/reasons: succeeded; failed (reason "" or oom_killed); timed_out (timeout_ms > 0
 * elapsed since start: SIGKILL); error with image_not_found (not transient), docker_error
 * (transient when the engine is unreachable or answers 5xx) or invalid_env. Any status may
 * carry reason output_truncated when a stream or the result hit output_limit (default
 * 1 MiB when 0); memory stays bounded by about 3 x output_limit whatever the function
 * writes. out/err/result.data are never NULL afterwards. `d` must belong to the calling
 * thread; the run blocks that thread. */
void runner_run(docker_t *d, const char *socket_path, const char *api,
                const runner_spec_t *spec, runner_result_t *res, bool defer_remove,
                void (*keepalive)(void *arg), void *keepalive_arg);
void runner_result_clear(runner_result_t *res);

/* The container create body with every hardening setting (NetworkMode none, CapDrop ALL,
 * no-new-privileges, Memory = MemorySwap, NanoCpus, PidsLimit, ReadonlyRootfs, noexec tmpfs
 * /tmp, nofile ulimit, Init, log cap, labels). Limits <= 0 are left out (engine default).
 * Log driver "none": output only travels through attach. Caller frees. NULL when env_json
 * is not an object of string/number/bool values with names free of '='. */
char *runner_create_body(const runner_spec_t *spec);

/* Removes containers labelled faas.managed=true (and, if worker_id, faas.worker=worker_id
 * only) that are not in `keep` (ids of running executions: an entry matches a container's
 * faas.execution label or its container id). Running ones are killed. A worker on an
 * automatic id ("<host>-<pid>", see config.c) also removes those of automatic ids of its host
 * whose process is gone (its own earlier life, or a crashed sibling). Returns how many were
 * removed (already gone counts), or a negative DOCKER_* code when listing failed. Callers
 * running executions concurrently must put an execution in `keep` before runner_run
 * creates its container. */
int runner_reap(docker_t *d, const char *worker_id, const char *const *keep, size_t nkeep);

#endif
