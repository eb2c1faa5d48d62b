/* A Docker Engine API client over the unix socket (libcurl, CURLOPT_UNIX_SOCKET_PATH).
 * Only docker.c includes curl.h. One docker_t per thread (it holds a curl handle). */
#ifndef FAAS_DOCKER_H
#define FAAS_DOCKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    DOCKER_OK = 0,
    DOCKER_ENOTFOUND = -1,  /* 404: no such image / container */
    DOCKER_EUNAVAIL = -2,   /* socket unreachable / engine error 5xx: transient */
    DOCKER_EINVAL = -3,     /* 400 / bad reply */
    DOCKER_ECONFLICT = -4,  /* 409 */
};

typedef struct docker docker_t;

/* `socket_path` "/var/run/docker.sock", `api` "v1.41" (NULL or "" = "v1.41"). NULL when
 * curl cannot make a handle. Free with docker_free() (NULL is a no-op). */
docker_t *docker_new(const char *socket_path, const char *api);
void docker_free(docker_t *d);

int docker_ping(docker_t *d);

/* GET /images/{name}/json. DOCKER_ENOTFOUND when absent. */
int docker_image_inspect(docker_t *d, const char *image);
/* POST /images/create?fromImage=&tag= (always with a tag: "latest" when none). Reads every
 * JSON line for "error" (the reply is 200 even on failure). Error text into err.
 * DOCKER_ENOTFOUND whenever the engine answered but the pull failed (unknown image, registry
 * unreachable or unresolvable); DOCKER_EUNAVAIL only when the engine itself is unreachable. */
int docker_image_pull(docker_t *d, const char *image, char *err, size_t errlen);

/* POST /containers/create with `body_json` (a complete create body). Container id into
 * `id` (65 bytes). */
int docker_container_create(docker_t *d, const char *name, const char *body_json,
                            char id[65], char *err, size_t errlen);
int docker_container_start(docker_t *d, const char *id);
int docker_container_kill(docker_t *d, const char *id, const char *signal);
int docker_container_remove(docker_t *d, const char *id, bool force);
/* GET /containers/{id}/json: State.OOMKilled and State.ExitCode. */
int docker_container_inspect_state(docker_t *d, const char *id, bool *oom_killed,
                                   int *exit_code);
/* GET /containers/{id}/stats?stream=false&one-shot=true: the cgroup's pids_stats (current
 * number of tasks and the limit; limit 0 when unlimited). */
int docker_container_pids(docker_t *d, const char *id, int64_t *current, int64_t *limit);
/* Ids of containers with a label filter like "faas.managed=true" (all states); several
 * filters separated by ',' ("faas.managed=true,faas.worker=w1") must all match. Caller
 * frees the array and each string. */
int docker_container_list(docker_t *d, const char *label, char ***ids, size_t *n);
/* The same, plus each container's value of label `key` ("" when it has none) in `values`.
 * Caller frees both arrays and every string. */
int docker_container_list_labels(docker_t *d, const char *label, const char *key,
                                 char ***ids, char ***values, size_t *n);
/* The engine's message for the last failed call on `d` ("" when none); valid until the
 * next call on `d`. */
const char *docker_last_error(const docker_t *d);

/* Raw hijacked connections, for attach and wait, on their own sockets. */
/* POST /containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1 with Upgrade: tcp;
 * returns a connected fd past the 101 headers (any bytes read past the headers are put in
 * `pre`/`pre_len`, at most 4096), or -1. This implementation reads the headers byte by
 * byte, so *pre_len is always 0 (pre and pre_len may be NULL). The caller closes the fd. */
int docker_attach(const char *socket_path, const char *api, const char *id, char *pre,
                  size_t *pre_len);
/* Sends POST /containers/{id}/wait?condition=next-exit and returns the fd with the
 * request written (the reply is read later with docker_wait_read), or -1. It also reads the
 * 200 headers, which the engine sends only once the wait is registered. */
int docker_wait_arm(const char *socket_path, const char *api, const char *id);
/* Reads the wait reply from fd (blocking up to timeout_ms; -1 = forever): StatusCode.
 * DOCKER_EUNAVAIL on timeout or a closed connection, DOCKER_EINVAL on a malformed reply.
 * The caller closes fd. */
int docker_wait_read(int fd, int64_t timeout_ms, int *status_code);

#endif
