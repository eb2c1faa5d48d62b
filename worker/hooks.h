/* C hooks around a run: before_create may adjust the spec or refuse the run, after_run may
 * rewrite the result message before it is published. The Lua postprocess hook is the last
 * after_run hook (worker.c). */
#ifndef FAAS_HOOKS_H
#define FAAS_HOOKS_H

#include "message.h"
#include "runner.h"

typedef struct {
    const char *name;
    /* 0 to go on; non-zero refuses the run (status error, reason "rejected", msg). */
    int (*before_create)(void *arg, runner_spec_t *spec, const message_request_t *req,
                         char *msg, size_t msglen);
    /* `result_json` is a cJSON* object (the result message), modified in place. */
    void (*after_run)(void *arg, void *result_json, const runner_spec_t *spec,
                      const message_request_t *req);
    void *arg;
} worker_hook_t;

#endif
