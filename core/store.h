/* The store: users, functions, executions and counters behind one interface, filled by a
 * driver (store_sqlite.c, store_mongo.c), like SQLite's VFS. Every operation is safe to call
 * from any thread at the same time. */
#ifndef FAAS_STORE_H
#define FAAS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "util.h"

enum {
    STORE_OK = 0,
    STORE_ENOTFOUND = -1, /* no such row, or it belongs to someone else */
    STORE_EEXIST = -2,    /* unique email / (owner, name) taken */
    STORE_EUNAVAIL = -3,  /* the database cannot be reached: 503 */
    STORE_EINVAL = -4,    /* a value the store cannot hold */
};

typedef struct {
    char id[ID_LEN + 1];
    char email[320];        /* as registered; lookups are case-insensitive */
    char pwhash[256];       /* libsodium crypto_pwhash_str */
    int64_t token_version;  /* bumped to revoke every token */
    int64_t created_at;     /* ms since the epoch */
} store_user_t;

typedef struct {
    char id[ID_LEN + 1];
    char owner[ID_LEN + 1];
    char name[128];
    char image[512];
    char *env_json;       /* JSON object {"NAME":"value"}; owned, "{}" when none */
    int64_t timeout_ms;   /* 0 = operator default */
    int64_t memory;       /* bytes, 0 = default */
    int64_t nano_cpus;    /* 0 = default */
    bool network;         /* asked for a network (only honoured where config allows) */
    int64_t created_at;
} store_function_t;

typedef struct {
    char id[ID_LEN + 1];
    char function_id[ID_LEN + 1];
    char owner[ID_LEN + 1];
    char status[16];      /* queued running succeeded failed timed_out error */
    char reason[64];      /* "" when none */
    bool has_exit_code;
    int exit_code;
    char *result;         /* owned, NULL when none */
    char *out;            /* stdout bytes, owned, NULL when none */
    size_t out_len;
    char *err;            /* stderr bytes, owned */
    size_t err_len;
    int64_t duration_ms;  /* -1 when unknown */
    int64_t created_at;   /* ms since the epoch; 0 = unknown for the next three */
    int64_t started_at;
    int64_t finished_at;
    char worker[64];
    int attempts;
    char *extra_json;     /* owned: a JSON object of the fields postprocess plugins added to
                           * the result ({"json": ...}), NULL when none */
} store_execution_t;

typedef struct store store_t;

/* The driver's table of operations. `self` is the store_t. Strings in and out are
 * NUL-terminated; ids are 24-hex (callers validate before calling). */
typedef struct {
    const char *name;
    int (*ping)(store_t *self);
    void (*close)(store_t *self);

    /* Sets u->id (fresh) and u->created_at. EEXIST when the email is taken (any case). */
    int (*user_insert)(store_t *self, store_user_t *u);
    int (*user_get_by_email)(store_t *self, const char *email, store_user_t *out);
    int (*user_get)(store_t *self, const char *id, store_user_t *out);
    /* Deletes the user, their functions and executions, and their counters. */
    int (*user_delete)(store_t *self, const char *id);
    /* Increments token_version (every issued token becomes invalid). */
    int (*user_bump_token_version)(store_t *self, const char *id, int64_t *new_version);

    /* Sets f->id, f->created_at. EEXIST when (owner, name) is taken. */
    int (*function_insert)(store_t *self, store_function_t *f);
    /* ENOTFOUND unless the function exists and belongs to `owner`. */
    int (*function_get)(store_t *self, const char *owner, const char *id, store_function_t *out);
    /* Newest first. `*out` is a fresh array of `*n` the caller frees with
     * store_function_list_free(). */
    int (*function_list)(store_t *self, const char *owner, store_function_t **out, size_t *n);
    /* Deletes the function and its executions. */
    int (*function_delete)(store_t *self, const char *owner, const char *id);
    int (*function_count)(store_t *self, const char *owner, int64_t *n);

    /* Inserts e (id set by the caller, status "queued"). */
    int (*execution_insert)(store_t *self, const store_execution_t *e);
    /* Updates status and every result field from `e` (matched by e->id). Idempotent: once an
     * execution is final (succeeded/failed/timed_out/error) a later update changes nothing
     * and returns STORE_OK. A "running" update never overwrites a final state. */
    int (*execution_update)(store_t *self, const store_execution_t *e);
    /* ENOTFOUND unless it exists and belongs to `owner` (owner NULL: any). */
    int (*execution_get)(store_t *self, const char *owner, const char *id, store_execution_t *out);
    /* Newest first (created_at, then id descending), at most `limit`, strictly older than the
     * execution `cursor` (NULL/"" = from the newest). Results without stdout/stderr/result
     * bodies (summaries). Caller frees with store_execution_list_free(). `limit` is clamped
     * to 1..100. A cursor that is not an execution `owner` can see: STORE_EINVAL.
     * function_id NULL/"": every execution of `owner` (owner NULL too: everyone's). */
    int (*execution_list)(store_t *self, const char *owner, const char *function_id,
                          size_t limit, const char *cursor, store_execution_t **out, size_t *n);
    /* Executions of `owner` in a non-final state (queued/running). */
    int (*execution_count_active)(store_t *self, const char *owner, int64_t *n);

    /* Atomic fixed-window counter: the window is floor(now / window_ms). Adds `delta` to
     * counter `key` in the current window and returns the new value in *value and the ms left
     * in the window in *reset_ms. delta 0 reads. Shared by every process using the store. */
    int (*counter_incr)(store_t *self, const char *key, int64_t window_ms, int64_t delta,
                        int64_t *value, int64_t *reset_ms);
} store_ops_t;

struct store {
    const store_ops_t *ops;
    void *impl; /* the driver's state */
};

/* Opens the driver named in cfg->driver. Returns NULL with a message in `err`. */
store_t *store_open(const config_store_t *cfg, char *err, size_t errlen);
void store_close(store_t *s); /* NULL is a no-op */

/* Frees what a get/list put into the structs (not the structs themselves for get). */
void store_function_clear(store_function_t *f);
void store_execution_clear(store_execution_t *e);
void store_function_list_free(store_function_t *list, size_t n);
void store_execution_list_free(store_execution_t *list, size_t n);

/* true for succeeded/failed/timed_out/error */
bool store_status_final(const char *status);
/* true for queued/running and the final statuses above */
bool store_status_valid(const char *status);

/* The key under which drivers compare e-mail addresses: `email` lower-cased (ASCII, Latin-1,
 * Latin Extended-A, Greek, Cyrillic; bytes that are not UTF-8 are kept) into `out` (`cap`
 * bytes). Every driver must use it so "A@x.io" and "a@x.io" are one user everywhere.
 * Returns 0, or -1 when it does not fit. */
int store_email_fold(const char *email, char *out, size_t cap);

/* Human text for a STORE_* code. */
const char *store_strerror(int code);

/* Driver constructors (store.c dispatches on the name). */
store_t *store_sqlite_open(const config_store_t *cfg, char *err, size_t errlen);
store_t *store_mongo_open(const config_store_t *cfg, char *err, size_t errlen);

#endif
