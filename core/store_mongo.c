/* The MongoDB driver of store.h (mongo-c-driver 1.23). One mongoc_client_pool_t per store;
 * every operation pops a client, uses it on the calling thread only, and pushes it back.
 *
 * Collections: users, functions, executions, counters (+ counter_links_0..f, see the
 * counters section). Ids are ObjectIds (our 24-hex ids), times int64 ms, stdout/stderr BSON
 * binary. Every value that comes from a caller is appended as a typed BSON value, never
 * parsed from JSON text and never used as a key, so strings like `{"$gt":""}` or "$where" are
 * just strings.
 *
 * Also runs on FerretDB 1.24 (the test peer), within its limits: its update/findAndModify are
 * "read, then write by _id", so only inserts against a unique index are atomic there (the
 * counters are built on that); two updates of one execution racing each other, or two token
 * bumps, are atomic on MongoDB but not on FerretDB. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mongoc/mongoc.h>

#include "log.h"
#include "store.h"

/* The last counter link seen for a key: where the next increment starts looking. */
typedef struct {
    char key[160];
    int64_t window;
    char gen[ID_LEN + 1]; /* "" = empty slot */
    int64_t seq;
    int64_t value;
} counter_hint_t;
#define COUNTER_HINTS 256

typedef struct {
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    char db[128];
    int64_t timeout_ms;
    long long last_prune_ms; /* counters_prune, atomically */
    pthread_mutex_t hints_mu;
    counter_hint_t hints[COUNTER_HINTS];
} mstore_t;

/* The database handles of one operation: a client popped from the pool and one collection. */
typedef struct {
    mstore_t *m;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} op_t;

static void hint_forget_prefix(mstore_t *m, const char *prefix);

#define DEFAULT_TIMEOUT_MS 2000
#define LIST_MAX 100

/* ---- library setup ---- */

static void mongo_log_handler(mongoc_log_level_t level, const char *domain, const char *message,
                              void *data)
{
    (void)data;
    /* the failures that matter are logged by map_error with their operation; the driver's
     * own warnings (a socket timeout, FerretDB lacking endSessions) are detail */
    if (level <= MONGOC_LOG_LEVEL_WARNING)
        log_kv(level <= MONGOC_LOG_LEVEL_CRITICAL ? LOG_ERROR
               : level <= MONGOC_LOG_LEVEL_ERROR  ? LOG_WARN
                                                  : LOG_DEBUG,
               "mongoc", domain, "%s", message);
}

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static void lib_init(void)
{
    mongoc_init();
    mongoc_log_set_handler(mongo_log_handler, NULL);
}

/* ---- errors ---- */

/* Maps a libmongoc error (error API version 2) to a STORE_* code; logs what is not an
 * expected answer (duplicate key). */
static int map_error(const bson_error_t *e, const char *what)
{
    if (e->code == 11000 || e->code == 11001 || e->code == 12582) {
        if (e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_COLLECTION ||
            e->domain == MONGOC_ERROR_COMMAND || e->domain == MONGOC_ERROR_QUERY ||
            e->domain == MONGOC_ERROR_WRITE_CONCERN || e->domain == MONGOC_ERROR_INSERT)
            return STORE_EEXIST;
    }
    int rc = STORE_EUNAVAIL;
    if (e->domain == MONGOC_ERROR_BSON ||
        (e->domain == MONGOC_ERROR_COMMAND && e->code == MONGOC_ERROR_COMMAND_INVALID_ARG) ||
        (e->domain == MONGOC_ERROR_CLIENT && e->code == MONGOC_ERROR_CLIENT_TOO_BIG) ||
        (e->domain == MONGOC_ERROR_SERVER && (e->code == 2 || e->code == 10334 ||
                                              e->code == 17419 || e->code == 17420)))
        rc = STORE_EINVAL;
    log_warn("mongodb %s failed: %s (domain %u, code %u)", what, e->message, e->domain, e->code);
    return rc;
}

/* ---- operation handles ---- */

static void op_begin(op_t *op, store_t *self, const char *collection)
{
    op->m = self->impl;
    op->client = mongoc_client_pool_pop(op->m->pool);
    op->coll = mongoc_client_get_collection(op->client, op->m->db, collection);
}

/* Switches the operation to another collection of the same database. */
static void op_use(op_t *op, const char *collection)
{
    mongoc_collection_destroy(op->coll);
    op->coll = mongoc_client_get_collection(op->client, op->m->db, collection);
}

static void op_end(op_t *op)
{
    mongoc_collection_destroy(op->coll);
    mongoc_client_pool_push(op->m->pool, op->client);
}

/* ---- writing values ---- */

static bool utf8_ok(const char *s)
{
    return bson_utf8_validate(s, strlen(s), false);
}

/* A caller's 24-hex id as an ObjectId; false when it is not one. */
static bool oid_parse(const char *s, bson_oid_t *oid)
{
    if (!s || strlen(s) != 24 || !bson_oid_is_valid(s, 24))
        return false;
    bson_oid_init_from_string(oid, s);
    return true;
}

/* Text that may not be UTF-8 (function output): a string when valid, else binary. */
static void append_text(bson_t *d, const char *key, const char *s)
{
    if (!s)
        BSON_APPEND_NULL(d, key);
    else if (utf8_ok(s))
        BSON_APPEND_UTF8(d, key, s);
    else
        BSON_APPEND_BINARY(d, key, BSON_SUBTYPE_BINARY, (const uint8_t *)s, (uint32_t)strlen(s));
}

static void append_bytes(bson_t *d, const char *key, const char *p, size_t n)
{
    if (!p)
        BSON_APPEND_NULL(d, key);
    else
        BSON_APPEND_BINARY(d, key, BSON_SUBTYPE_BINARY, (const uint8_t *)p, (uint32_t)n);
}

/* ---- reading values ---- */

static bool find_field(const bson_t *d, const char *key, bson_iter_t *it)
{
    return bson_iter_init_find(it, d, key);
}

static void get_str(const bson_t *d, const char *key, char *dst, size_t cap)
{
    bson_iter_t it;
    dst[0] = '\0';
    if (find_field(d, key, &it) && BSON_ITER_HOLDS_UTF8(&it))
        str_copy(dst, cap, bson_iter_utf8(&it, NULL));
}

static int64_t get_i64(const bson_t *d, const char *key, int64_t dflt)
{
    bson_iter_t it;
    if (find_field(d, key, &it) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return dflt;
}

static bool get_bool(const bson_t *d, const char *key)
{
    bson_iter_t it;
    return find_field(d, key, &it) && bson_iter_as_bool(&it);
}

static void get_oid(const bson_t *d, const char *key, char out[ID_LEN + 1])
{
    bson_iter_t it;
    out[0] = '\0';
    if (find_field(d, key, &it) && BSON_ITER_HOLDS_OID(&it))
        bson_oid_to_string(bson_iter_oid(&it), out);
}

/* A string or binary field as a fresh NUL-terminated copy (NULL when absent or null). */
static char *get_dup(const bson_t *d, const char *key, size_t *len)
{
    bson_iter_t it;
    const char *p = NULL;
    uint32_t n = 0;
    if (len)
        *len = 0;
    if (!find_field(d, key, &it))
        return NULL;
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        p = bson_iter_utf8(&it, &n);
    } else if (BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t sub;
        const uint8_t *b;
        bson_iter_binary(&it, &sub, &n, &b);
        p = (const char *)b;
    } else {
        return NULL;
    }
    char *s = xmalloc((size_t)n + 1);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static void decode_user(const bson_t *d, store_user_t *u)
{
    memset(u, 0, sizeof *u);
    get_oid(d, "_id", u->id);
    get_str(d, "email", u->email, sizeof u->email);
    get_str(d, "pwhash", u->pwhash, sizeof u->pwhash);
    u->token_version = get_i64(d, "tokenVersion", 0);
    u->created_at = get_i64(d, "createdAt", 0);
}

static void decode_function(const bson_t *d, store_function_t *f)
{
    memset(f, 0, sizeof *f);
    get_oid(d, "_id", f->id);
    get_oid(d, "owner", f->owner);
    get_str(d, "name", f->name, sizeof f->name);
    get_str(d, "image", f->image, sizeof f->image);
    f->env_json = get_dup(d, "env", NULL);
    if (!f->env_json)
        f->env_json = xstrdup("{}");
    f->timeout_ms = get_i64(d, "timeoutMs", 0);
    f->memory = get_i64(d, "memory", 0);
    f->nano_cpus = get_i64(d, "nanoCpus", 0);
    f->network = get_bool(d, "network");
    f->created_at = get_i64(d, "createdAt", 0);
}

static void decode_execution(const bson_t *d, store_execution_t *e)
{
    bson_iter_t it;
    memset(e, 0, sizeof *e);
    get_oid(d, "_id", e->id);
    get_oid(d, "functionId", e->function_id);
    get_oid(d, "owner", e->owner);
    get_str(d, "status", e->status, sizeof e->status);
    get_str(d, "reason", e->reason, sizeof e->reason);
    if (find_field(d, "exitCode", &it) && BSON_ITER_HOLDS_NUMBER(&it)) {
        e->has_exit_code = true;
        e->exit_code = (int)bson_iter_as_int64(&it);
    }
    e->result = get_dup(d, "result", NULL);
    e->out = get_dup(d, "stdout", &e->out_len);
    e->err = get_dup(d, "stderr", &e->err_len);
    e->duration_ms = get_i64(d, "durationMs", -1);
    e->created_at = get_i64(d, "createdAt", 0);
    e->started_at = get_i64(d, "startedAt", 0);
    e->finished_at = get_i64(d, "finishedAt", 0);
    get_str(d, "worker", e->worker, sizeof e->worker);
    e->attempts = (int)get_i64(d, "attempts", 0);
    e->extra_json = get_dup(d, "extra", NULL);
}

/* ---- small query helpers ---- */

/* The first document matching `filter` copied into `out` (caller destroys it on STORE_OK).
 * `projection` may be NULL. */
static int find_one(op_t *op, const bson_t *filter, const bson_t *projection, bson_t *out,
                    const char *what)
{
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (projection)
        BSON_APPEND_DOCUMENT(&opts, "projection", projection);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(op->coll, filter, &opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc;
    if (mongoc_cursor_next(cur, &doc)) {
        bson_copy_to(doc, out);
        rc = STORE_OK;
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = map_error(&e, what);
    } else {
        rc = STORE_ENOTFOUND;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    return rc;
}

/* The document with _id `oid` when it belongs to `owner` (NULL: anyone's). The owner is
 * checked here rather than in the filter because FerretDB answers only a lone {_id} filter
 * without scanning the whole collection; an owner never changes, so this is the same. */
static int find_owned(op_t *op, const bson_oid_t *oid, const bson_oid_t *owner,
                      const bson_t *projection, bson_t *out, const char *what)
{
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", oid);
    int rc = find_one(op, &filter, projection, out, what);
    bson_destroy(&filter);
    if (rc == STORE_OK && owner) {
        bson_iter_t it;
        if (!find_field(out, "owner", &it) || !BSON_ITER_HOLDS_OID(&it) ||
            !bson_oid_equal(bson_iter_oid(&it), owner)) {
            bson_destroy(out);
            rc = STORE_ENOTFOUND;
        }
    }
    return rc;
}

/* Deletes what matches; *n (optional) gets the count. */
static int delete_where(op_t *op, const bson_t *filter, bool many, int64_t *n, const char *what)
{
    bson_t reply;
    bson_error_t e;
    bool ok = many ? mongoc_collection_delete_many(op->coll, filter, NULL, &reply, &e)
                   : mongoc_collection_delete_one(op->coll, filter, NULL, &reply, &e);
    int rc = ok ? STORE_OK : map_error(&e, what);
    if (ok && n)
        *n = get_i64(&reply, "deletedCount", 0);
    bson_destroy(&reply);
    return rc;
}

static int count_where(op_t *op, const bson_t *filter, int64_t *n, const char *what)
{
    bson_error_t e;
    int64_t c = mongoc_collection_count_documents(op->coll, filter, NULL, NULL, NULL, &e);
    if (c < 0)
        return map_error(&e, what);
    *n = c;
    return STORE_OK;
}

/* findAndModify returning the new document into `out` (caller destroys on STORE_OK);
 * *created (optional) tells whether the upsert inserted it. */
static int find_and_modify(op_t *op, const bson_t *query, const bson_t *update, bool upsert,
                           bson_t *out, bool *created, const char *what)
{
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(
        opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW | (upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0));
    bson_t reply;
    bson_error_t e;
    bson_iter_t it, sub;
    int rc;
    if (!mongoc_collection_find_and_modify_with_opts(op->coll, query, opts, &reply, &e)) {
        rc = map_error(&e, what);
    } else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_t value;
        bson_init_static(&value, data, len);
        bson_copy_to(&value, out);
        if (created)
            *created = !(bson_iter_init_find(&it, &reply, "lastErrorObject") &&
                         BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &sub) &&
                         bson_iter_find(&sub, "updatedExisting") && bson_iter_as_bool(&sub));
        rc = STORE_OK;
    } else {
        rc = STORE_ENOTFOUND;
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    return rc;
}

/* ---- store ops ---- */

static int m_ping(store_t *self)
{
    op_t op;
    op_begin(&op, self, "users");
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t e;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    int rc = STORE_OK;
    if (!mongoc_client_command_simple(op.client, "admin", &cmd, NULL, &reply, &e))
        rc = map_error(&e, "ping");
    bson_destroy(&reply);
    bson_destroy(&cmd);
    op_end(&op);
    return rc;
}

static void m_close(store_t *self)
{
    mstore_t *m = self->impl;
    mongoc_client_pool_destroy(m->pool);
    mongoc_uri_destroy(m->uri);
    pthread_mutex_destroy(&m->hints_mu);
    free(m);
    free(self);
}

/* Inserts `doc` (destroyed here) into `collection`; duplicate keys map to STORE_EEXIST. */
static int insert_doc(store_t *self, const char *collection, bson_t *doc, const char *what)
{
    op_t op;
    op_begin(&op, self, collection);
    bson_error_t e;
    int rc = STORE_OK;
    if (!mongoc_collection_insert_one(op.coll, doc, NULL, NULL, &e))
        rc = map_error(&e, what);
    op_end(&op);
    bson_destroy(doc);
    return rc;
}

static int m_user_insert(store_t *self, store_user_t *u)
{
    char lower[sizeof u->email * 2];
    if (!u->email[0] || store_email_fold(u->email, lower, sizeof lower) != 0 ||
        !utf8_ok(u->email) || !utf8_ok(u->pwhash))
        return STORE_EINVAL;
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    int64_t now = time_now_ms();
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_UTF8(&doc, "email", u->email);
    BSON_APPEND_UTF8(&doc, "emailLower", lower);
    BSON_APPEND_UTF8(&doc, "pwhash", u->pwhash);
    BSON_APPEND_INT64(&doc, "tokenVersion", u->token_version);
    BSON_APPEND_INT64(&doc, "createdAt", now);
    int rc = insert_doc(self, "users", &doc, "user insert");
    if (rc == STORE_OK) {
        bson_oid_to_string(&oid, u->id);
        u->created_at = now;
    }
    return rc;
}

/* One user by `filter` (consumed). */
static int user_find(store_t *self, bson_t *filter, store_user_t *out, const char *what)
{
    bson_t doc;
    op_t op;
    op_begin(&op, self, "users");
    int rc = find_one(&op, filter, NULL, &doc, what);
    op_end(&op);
    if (rc == STORE_OK) {
        decode_user(&doc, out);
        bson_destroy(&doc);
    }
    bson_destroy(filter);
    return rc;
}

static int m_user_get_by_email(store_t *self, const char *email, store_user_t *out)
{
    char lower[sizeof out->email * 2];
    if (store_email_fold(email, lower, sizeof lower) != 0 || !utf8_ok(lower))
        return STORE_ENOTFOUND; /* could not have been registered */
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "emailLower", lower);
    return user_find(self, &filter, out, "user lookup");
}

static int m_user_get(store_t *self, const char *id, store_user_t *out)
{
    bson_oid_t oid;
    if (!oid_parse(id, &oid))
        return STORE_ENOTFOUND;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", &oid);
    return user_find(self, &filter, out, "user get");
}

static int m_user_delete(store_t *self, const char *id)
{
    bson_oid_t oid;
    if (!oid_parse(id, &oid))
        return STORE_ENOTFOUND;
    /* Dependents first, the user last: a failure half-way leaves the user in place, so the
     * client can retry, instead of orphans nobody can reach. */
    bson_t by_owner = BSON_INITIALIZER, by_id = BSON_INITIALIZER, counters = BSON_INITIALIZER;
    BSON_APPEND_OID(&by_owner, "owner", &oid);
    BSON_APPEND_OID(&by_id, "_id", &oid);
    /* keys "u:<id>:..." as a range (no regex): ';' is the byte after ':' */
    char lo[64], hi[64];
    snprintf(lo, sizeof lo, "u:%s:", id);
    snprintf(hi, sizeof hi, "u:%s;", id);
    bson_t range;
    BSON_APPEND_DOCUMENT_BEGIN(&counters, "key", &range);
    BSON_APPEND_UTF8(&range, "$gte", lo);
    BSON_APPEND_UTF8(&range, "$lt", hi);
    bson_append_document_end(&counters, &range);

    op_t op;
    op_begin(&op, self, "executions");
    int64_t n = 0;
    int rc = delete_where(&op, &by_owner, true, NULL, "user delete (executions)");
    if (rc == STORE_OK) {
        op_use(&op, "functions");
        rc = delete_where(&op, &by_owner, true, NULL, "user delete (functions)");
    }
    if (rc == STORE_OK) {
        /* the links stay until their window ends; without their counter nobody finds them */
        op_use(&op, "counters");
        rc = delete_where(&op, &counters, true, NULL, "user delete (counters)");
        hint_forget_prefix(op.m, lo);
    }
    if (rc == STORE_OK) {
        op_use(&op, "users");
        rc = delete_where(&op, &by_id, false, &n, "user delete");
        if (rc == STORE_OK && n == 0)
            rc = STORE_ENOTFOUND;
    }
    op_end(&op);
    bson_destroy(&by_owner);
    bson_destroy(&by_id);
    bson_destroy(&counters);
    return rc;
}

static int m_user_bump_token_version(store_t *self, const char *id, int64_t *new_version)
{
    bson_oid_t oid;
    if (!oid_parse(id, &oid))
        return STORE_ENOTFOUND;
    bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, inc, doc;
    BSON_APPEND_OID(&query, "_id", &oid);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "tokenVersion", 1);
    bson_append_document_end(&update, &inc);
    op_t op;
    op_begin(&op, self, "users");
    int rc = find_and_modify(&op, &query, &update, false, &doc, NULL, "token version bump");
    op_end(&op);
    if (rc == STORE_OK) {
        if (new_version)
            *new_version = get_i64(&doc, "tokenVersion", 0);
        bson_destroy(&doc);
    }
    bson_destroy(&query);
    bson_destroy(&update);
    return rc;
}

static int m_function_insert(store_t *self, store_function_t *f)
{
    bson_oid_t owner, oid;
    const char *env = f->env_json ? f->env_json : "{}";
    if (!oid_parse(f->owner, &owner) || !f->name[0] || !f->image[0] || !utf8_ok(f->name) ||
        !utf8_ok(f->image) || !utf8_ok(env))
        return STORE_EINVAL;
    bson_oid_init(&oid, NULL);
    int64_t now = time_now_ms();
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_OID(&doc, "owner", &owner);
    BSON_APPEND_UTF8(&doc, "name", f->name);
    BSON_APPEND_UTF8(&doc, "image", f->image);
    BSON_APPEND_UTF8(&doc, "env", env); /* kept as text: its keys are the user's */
    BSON_APPEND_INT64(&doc, "timeoutMs", f->timeout_ms);
    BSON_APPEND_INT64(&doc, "memory", f->memory);
    BSON_APPEND_INT64(&doc, "nanoCpus", f->nano_cpus);
    BSON_APPEND_BOOL(&doc, "network", f->network);
    BSON_APPEND_INT64(&doc, "createdAt", now);
    int rc = insert_doc(self, "functions", &doc, "function insert");
    if (rc == STORE_OK) {
        bson_oid_to_string(&oid, f->id);
        f->created_at = now;
    }
    return rc;
}

static int m_function_get(store_t *self, const char *owner, const char *id,
                          store_function_t *out)
{
    bson_oid_t oid, own;
    if (!oid_parse(id, &oid) || !oid_parse(owner, &own))
        return STORE_ENOTFOUND;
    bson_t doc;
    op_t op;
    op_begin(&op, self, "functions");
    int rc = find_owned(&op, &oid, &own, NULL, &doc, "function get");
    op_end(&op);
    if (rc == STORE_OK) {
        decode_function(&doc, out);
        bson_destroy(&doc);
    }
    return rc;
}

static int m_function_list(store_t *self, const char *owner, store_function_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    bson_oid_t own;
    size_t cap = 8, len = 0;
    store_function_t *list = xcalloc(cap, sizeof *list);
    if (!oid_parse(owner, &own)) {
        *out = list; /* nobody's: an empty list */
        return STORE_OK;
    }
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    BSON_APPEND_OID(&filter, "owner", &own);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "createdAt", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    op_t op;
    op_begin(&op, self, "functions");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(op.coll, &filter, &opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = STORE_OK;
    while (mongoc_cursor_next(cur, &doc)) {
        if (len == cap) {
            cap *= 2;
            list = xrealloc(list, cap * sizeof *list);
        }
        decode_function(doc, &list[len++]);
    }
    if (mongoc_cursor_error(cur, &e))
        rc = map_error(&e, "function list");
    mongoc_cursor_destroy(cur);
    op_end(&op);
    bson_destroy(&filter);
    bson_destroy(&opts);
    if (rc != STORE_OK) {
        store_function_list_free(list, len);
        return rc;
    }
    *out = list;
    *n = len;
    return STORE_OK;
}

static int m_function_delete(store_t *self, const char *owner, const char *id)
{
    bson_oid_t oid, own;
    if (!oid_parse(id, &oid) || !oid_parse(owner, &own))
        return STORE_ENOTFOUND;
    bson_t filter = BSON_INITIALIZER, execs = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "_id", &oid);
    BSON_APPEND_OID(&filter, "owner", &own);
    BSON_APPEND_OID(&execs, "functionId", &oid);
    op_t op;
    op_begin(&op, self, "functions");
    int64_t n = 0;
    int rc = delete_where(&op, &filter, false, &n, "function delete");
    if (rc == STORE_OK && n == 0)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK) {
        op_use(&op, "executions");
        rc = delete_where(&op, &execs, true, NULL, "function delete (executions)");
    }
    op_end(&op);
    bson_destroy(&filter);
    bson_destroy(&execs);
    return rc;
}

static int m_function_count(store_t *self, const char *owner, int64_t *n)
{
    bson_oid_t own;
    *n = 0;
    if (!oid_parse(owner, &own))
        return STORE_OK;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "owner", &own);
    op_t op;
    op_begin(&op, self, "functions");
    int rc = count_where(&op, &filter, n, "function count");
    op_end(&op);
    bson_destroy(&filter);
    return rc;
}

/* The result fields of an execution, shared by insert and update. */
static void append_result_fields(bson_t *d, const store_execution_t *e)
{
    BSON_APPEND_UTF8(d, "status", e->status);
    BSON_APPEND_UTF8(d, "reason", e->reason);
    if (e->has_exit_code)
        BSON_APPEND_INT32(d, "exitCode", e->exit_code);
    else
        BSON_APPEND_NULL(d, "exitCode");
    append_text(d, "result", e->result);
    append_bytes(d, "stdout", e->out, e->out_len);
    append_bytes(d, "stderr", e->err, e->err_len);
    BSON_APPEND_INT64(d, "durationMs", e->duration_ms);
    BSON_APPEND_INT64(d, "startedAt", e->started_at);
    BSON_APPEND_INT64(d, "finishedAt", e->finished_at);
    BSON_APPEND_UTF8(d, "worker", e->worker);
    BSON_APPEND_INT32(d, "attempts", e->attempts);
    append_text(d, "extra", e->extra_json);
}

static bool execution_strings_ok(const store_execution_t *e)
{
    return store_status_valid(e->status) && utf8_ok(e->reason) && utf8_ok(e->worker);
}

static int m_execution_insert(store_t *self, const store_execution_t *in)
{
    store_execution_t copy = *in, *e = &copy;
    if (!e->status[0])
        str_copy(e->status, sizeof e->status, "queued");
    bson_oid_t oid, fn, own;
    if (!oid_parse(e->id, &oid) || !oid_parse(e->function_id, &fn) ||
        !oid_parse(e->owner, &own) || !execution_strings_ok(e))
        return STORE_EINVAL;
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_OID(&doc, "_id", &oid);
    BSON_APPEND_OID(&doc, "functionId", &fn);
    BSON_APPEND_OID(&doc, "owner", &own);
    BSON_APPEND_INT64(&doc, "createdAt", e->created_at > 0 ? e->created_at : time_now_ms());
    append_result_fields(&doc, e);
    return insert_doc(self, "executions", &doc, "execution insert");
}

static void append_active_statuses(bson_t *filter)
{
    bson_t status, in;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "status", &status);
    BSON_APPEND_ARRAY_BEGIN(&status, "$in", &in);
    BSON_APPEND_UTF8(&in, "0", "queued");
    BSON_APPEND_UTF8(&in, "1", "running");
    bson_append_array_end(&status, &in);
    bson_append_document_end(filter, &status);
}

static int m_execution_update(store_t *self, const store_execution_t *e)
{
    bson_oid_t oid;
    if (!execution_strings_ok(e))
        return STORE_EINVAL;
    if (!oid_parse(e->id, &oid))
        return STORE_ENOTFOUND;
    /* Only a non-final execution changes: final states are written once. */
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, reply;
    BSON_APPEND_OID(&filter, "_id", &oid);
    append_active_statuses(&filter);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    append_result_fields(&set, e);
    bson_append_document_end(&update, &set);
    op_t op;
    op_begin(&op, self, "executions");
    bson_error_t err;
    int rc = STORE_OK;
    if (!mongoc_collection_update_one(op.coll, &filter, &update, NULL, &reply, &err)) {
        rc = map_error(&err, "execution update");
    } else if (get_i64(&reply, "matchedCount", 0) == 0) {
        /* final already (nothing to do) or no such execution */
        bson_t by_id = BSON_INITIALIZER, proj = BSON_INITIALIZER, doc;
        BSON_APPEND_OID(&by_id, "_id", &oid);
        BSON_APPEND_INT32(&proj, "_id", 1);
        rc = find_one(&op, &by_id, &proj, &doc, "execution update");
        if (rc == STORE_OK)
            bson_destroy(&doc);
        bson_destroy(&by_id);
        bson_destroy(&proj);
    }
    bson_destroy(&reply);
    op_end(&op);
    bson_destroy(&filter);
    bson_destroy(&update);
    return rc;
}

static int m_execution_get(store_t *self, const char *owner, const char *id,
                           store_execution_t *out)
{
    bson_oid_t oid, own;
    if (!oid_parse(id, &oid) || (owner && !oid_parse(owner, &own)))
        return STORE_ENOTFOUND;
    bson_t doc;
    op_t op;
    op_begin(&op, self, "executions");
    int rc = find_owned(&op, &oid, owner ? &own : NULL, NULL, &doc, "execution get");
    op_end(&op);
    if (rc == STORE_OK) {
        decode_execution(&doc, out);
        bson_destroy(&doc);
    }
    return rc;
}

static int m_execution_list(store_t *self, const char *owner, const char *function_id,
                            size_t limit, const char *cursor, store_execution_t **out,
                            size_t *n)
{
    *out = NULL;
    *n = 0;
    if (limit < 1)
        limit = 1;
    if (limit > LIST_MAX)
        limit = LIST_MAX;
    bson_oid_t own, fn, cid;
    bool has_fn = function_id && *function_id, has_cursor = cursor && *cursor;
    if (has_cursor && !oid_parse(cursor, &cid))
        return STORE_EINVAL; /* not an execution this caller can see */
    if ((owner && !oid_parse(owner, &own)) || (has_fn && !oid_parse(function_id, &fn))) {
        *out = xcalloc(1, sizeof **out); /* nobody's: an empty list */
        return STORE_OK;
    }

    bson_t base = BSON_INITIALIZER, filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    if (owner)
        BSON_APPEND_OID(&base, "owner", &own);
    if (has_fn)
        BSON_APPEND_OID(&base, "functionId", &fn);
    size_t cap = limit, len = 0;
    store_execution_t *list = xcalloc(cap, sizeof *list);
    op_t op;
    op_begin(&op, self, "executions");
    int rc = STORE_OK;

    bson_concat(&filter, &base);
    if (has_cursor) {
        /* the cursor is the last item of the previous page: continue strictly after it in
         * (createdAt desc, _id desc) order */
        bson_t proj = BSON_INITIALIZER, doc;
        BSON_APPEND_INT32(&proj, "createdAt", 1);
        BSON_APPEND_INT32(&proj, "owner", 1);
        rc = find_owned(&op, &cid, owner ? &own : NULL, &proj, &doc, "execution list");
        bson_destroy(&proj);
        if (rc == STORE_ENOTFOUND)
            rc = STORE_EINVAL; /* not an execution this caller can see */
        if (rc != STORE_OK)
            goto done;
        int64_t c = get_i64(&doc, "createdAt", 0);
        bson_destroy(&doc);
        bson_t or, a, b, lt_a, lt_b;
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &or);
        BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &a);
        BSON_APPEND_DOCUMENT_BEGIN(&a, "createdAt", &lt_a);
        BSON_APPEND_INT64(&lt_a, "$lt", c);
        bson_append_document_end(&a, &lt_a);
        bson_append_document_end(&or, &a);
        BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &b);
        BSON_APPEND_INT64(&b, "createdAt", c);
        BSON_APPEND_DOCUMENT_BEGIN(&b, "_id", &lt_b);
        BSON_APPEND_OID(&lt_b, "$lt", &cid);
        bson_append_document_end(&b, &lt_b);
        bson_append_document_end(&or, &b);
        bson_append_array_end(&filter, &or);
    }

    bson_t sort, proj;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "createdAt", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", (int64_t)limit);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "result", 0);
    BSON_APPEND_INT32(&proj, "stdout", 0);
    BSON_APPEND_INT32(&proj, "stderr", 0);
    bson_append_document_end(&opts, &proj);

    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(op.coll, &filter, &opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    while (len < cap && mongoc_cursor_next(cur, &doc))
        decode_execution(doc, &list[len++]);
    if (mongoc_cursor_error(cur, &e))
        rc = map_error(&e, "execution list");
    mongoc_cursor_destroy(cur);

done:
    op_end(&op);
    bson_destroy(&base);
    bson_destroy(&filter);
    bson_destroy(&opts);
    if (rc != STORE_OK) {
        store_execution_list_free(list, len);
        return rc;
    }
    *out = list;
    *n = len;
    return STORE_OK;
}

static int m_execution_count_active(store_t *self, const char *owner, int64_t *n)
{
    bson_oid_t own;
    *n = 0;
    if (!oid_parse(owner, &own))
        return STORE_OK;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_OID(&filter, "owner", &own);
    append_active_statuses(&filter);
    op_t op;
    op_begin(&op, self, "executions");
    int rc = count_where(&op, &filter, n, "execution count");
    op_end(&op);
    bson_destroy(&filter);
    return rc;
}

/* Counters. FerretDB 1.24 runs findAndModify and update as "query, then write by _id" with
 * nothing in between locked (its issue #2168): concurrent {$inc} upserts lose increments
 * there (measured: 8 threads x 25 increments ended at 34). The one write both FerretDB and
 * MongoDB make atomic is an insert checked by a unique key, so a counter is a chain of links
 * in `counter_links_*`, {_id: "<gen>:<seq>", value}: an increment inserts (s + 1, v + delta)
 * after the newest link (s, v); of two racers for s + 1 one wins, the other gets a duplicate
 * key and moves forward. Each caller gets its own new value, as an atomic $inc would give it.
 *
 * `counters` holds one small document per (key, window), {_id: "<window>:<key>", key, gen}:
 * the window's chain is the one of generation `gen`. Deleting it (user_delete) restarts the
 * counter from zero without touching the links, which expire with their window. Everything is
 * found by exact _id, the only filter FerretDB's SQLite backend does not answer by scanning
 * the collection, and each store remembers the last link it saw per key, so an uncontended
 * increment is a single insert. */
#define COUNTER_PRUNE_EVERY_MS 600000 /* a scan of every link on FerretDB */

/* The cache slot of a key, or NULL when the key is too long to be cached. */
static counter_hint_t *hint_slot(mstore_t *m, const char *key)
{
    if (strlen(key) >= sizeof m->hints[0].key)
        return NULL;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return &m->hints[h % COUNTER_HINTS];
}

/* What this store last saw of (key, window): false when nothing. */
static bool hint_get(mstore_t *m, const char *key, int64_t win, counter_hint_t *out)
{
    counter_hint_t *slot = hint_slot(m, key);
    bool found = false;
    if (!slot)
        return false;
    pthread_mutex_lock(&m->hints_mu);
    if (slot->gen[0] && slot->window == win && strcmp(slot->key, key) == 0) {
        *out = *slot;
        found = true;
    }
    pthread_mutex_unlock(&m->hints_mu);
    return found;
}

static void hint_set(mstore_t *m, const counter_hint_t *h)
{
    counter_hint_t *slot = hint_slot(m, h->key);
    if (!slot)
        return;
    pthread_mutex_lock(&m->hints_mu);
    if (slot->window != h->window || strcmp(slot->key, h->key) != 0 ||
        strcmp(slot->gen, h->gen) != 0 || slot->seq < h->seq)
        *slot = *h;
    pthread_mutex_unlock(&m->hints_mu);
}

/* Forgets every key starting with `prefix` (their counters were deleted). */
static void hint_forget_prefix(mstore_t *m, const char *prefix)
{
    size_t n = strlen(prefix);
    pthread_mutex_lock(&m->hints_mu);
    for (size_t i = 0; i < COUNTER_HINTS; i++)
        if (strncmp(m->hints[i].key, prefix, n) == 0)
            memset(&m->hints[i], 0, sizeof m->hints[i]);
    pthread_mutex_unlock(&m->hints_mu);
}

/* One document by exact _id (a string) from the operation's collection: STORE_OK with
 * the int64 `field` in *value (and the string field "gen" in gen when not NULL). */
static int get_by_str_id(op_t *op, const char *id, const char *field, int64_t *value,
                         char *gen, size_t gencap)
{
    bson_t filter = BSON_INITIALIZER, doc;
    BSON_APPEND_UTF8(&filter, "_id", id);
    int rc = find_one(op, &filter, NULL, &doc, "counter read");
    if (rc == STORE_OK) {
        if (value)
            *value = get_i64(&doc, field, 0);
        if (gen)
            get_str(&doc, "gen", gen, gencap);
        bson_destroy(&doc);
    }
    bson_destroy(&filter);
    return rc;
}

static int link_get(op_t *op, const char *gen, int64_t seq, int64_t *value)
{
    char id[64];
    snprintf(id, sizeof id, "%s:%lld", gen, (long long)seq);
    return get_by_str_id(op, id, "value", value, NULL, 0);
}

/* Moves h->seq/h->value, a link known to exist (seq 0: the empty start), to the newest link
 * of the chain h->gen. Links are numbered 1, 2, ... without gaps: gallop, then bisect. */
static int counter_latest(op_t *op, counter_hint_t *h)
{
    int64_t lo = h->seq, lo_val = h->value, hi, v = 0;
    int rc;
    for (int64_t step = 1;; step *= 2) {
        hi = lo + step;
        rc = link_get(op, h->gen, hi, &v);
        if (rc == STORE_ENOTFOUND)
            break;
        if (rc != STORE_OK)
            return rc;
        lo = hi, lo_val = v;
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        rc = link_get(op, h->gen, mid, &v);
        if (rc == STORE_OK)
            lo = mid, lo_val = v;
        else if (rc == STORE_ENOTFOUND)
            hi = mid;
        else
            return rc;
    }
    h->seq = lo;
    h->value = lo_val;
    return STORE_OK;
}

/* Finds (create: or starts) the generation of (key, window) into h->gen. STORE_ENOTFOUND
 * when there is none and `create` is false. Uses op's "counters" collection. */
static int counter_gen(op_t *op, const char *key, int64_t win, int64_t expires, bool create,
                       counter_hint_t *h)
{
    char id[1200];
    snprintf(id, sizeof id, "%lld:%s", (long long)win, key);
    for (int attempt = 0; attempt < 3; attempt++) {
        int rc = get_by_str_id(op, id, "window", NULL, h->gen, sizeof h->gen);
        if (rc != STORE_ENOTFOUND || !create)
            return rc;
        char gen[ID_LEN + 1];
        id_new(gen);
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "_id", id);
        BSON_APPEND_UTF8(&doc, "key", key);
        BSON_APPEND_INT64(&doc, "window", win);
        BSON_APPEND_UTF8(&doc, "gen", gen);
        BSON_APPEND_INT64(&doc, "expiresAt", expires);
        bson_error_t e;
        bool ok = mongoc_collection_insert_one(op->coll, &doc, NULL, NULL, &e);
        bson_destroy(&doc);
        if (ok) {
            str_copy(h->gen, sizeof h->gen, gen);
            return STORE_OK;
        }
        rc = map_error(&e, "counter start");
        if (rc != STORE_EEXIST)
            return rc;
        /* someone else started this window first: read theirs */
    }
    return STORE_EUNAVAIL;
}

/* The links of a generation live in one of 16 collections (by the generation's last hex
 * digit): FerretDB answers even an {_id} lookup by scanning its table (the query's
 * `->'$._id'` does not match the index's `->"_id"`), so one busy counter must not make every
 * other counter's lookups slow. */
static const char *links_collection(const char *gen)
{
    static const char *const names[16] = {
        "counter_links_0", "counter_links_1", "counter_links_2", "counter_links_3",
        "counter_links_4", "counter_links_5", "counter_links_6", "counter_links_7",
        "counter_links_8", "counter_links_9", "counter_links_a", "counter_links_b",
        "counter_links_c", "counter_links_d", "counter_links_e", "counter_links_f"};
    size_t n = strlen(gen);
    char c = n ? gen[n - 1] : '0';
    int i = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
    return names[i];
}

/* Drops every counter and link whose window has ended, at most once a minute per store. */
static void counters_prune(op_t *op, int64_t now)
{
    long long last = __atomic_load_n(&op->m->last_prune_ms, __ATOMIC_RELAXED);
    if (now - last < COUNTER_PRUNE_EVERY_MS ||
        !__atomic_compare_exchange_n(&op->m->last_prune_ms, &last, now, false, __ATOMIC_RELAXED,
                                     __ATOMIC_RELAXED))
        return;
    bson_t filter = BSON_INITIALIZER, lt;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "expiresAt", &lt);
    BSON_APPEND_INT64(&lt, "$lte", now);
    bson_append_document_end(&filter, &lt);
    op_use(op, "counters");
    delete_where(op, &filter, true, NULL, "counter prune"); /* best effort */
    for (int i = 0; i < 16; i++) {
        char name[32];
        snprintf(name, sizeof name, "counter_links_%x", i);
        op_use(op, name);
        delete_where(op, &filter, true, NULL, "counter prune");
    }
    bson_destroy(&filter);
}

static int m_counter_incr(store_t *self, const char *key, int64_t window_ms, int64_t delta,
                          int64_t *value, int64_t *reset_ms)
{
    if (window_ms <= 0 || !key || !key[0] || strlen(key) > 1024 || !utf8_ok(key))
        return STORE_EINVAL;
    mstore_t *m = self->impl;
    int64_t now = time_now_ms(), win = now / window_ms, expires = (win + 1) * window_ms;
    counter_hint_t h;
    bool known = hint_get(m, key, win, &h), started = false;
    op_t op;
    op_begin(&op, self, "counters");
    int rc = STORE_OK;
    if (!known) {
        memset(&h, 0, sizeof h);
        str_copy(h.key, sizeof h.key, key);
        h.window = win;
        rc = counter_gen(&op, key, win, expires, delta != 0, &h);
        if (rc == STORE_ENOTFOUND && delta == 0) {
            rc = STORE_OK; /* nothing counted in this window yet */
            goto done;
        }
        if (rc != STORE_OK)
            goto done;
    }
    op_use(&op, links_collection(h.gen));
    if (delta == 0) {
        rc = counter_latest(&op, &h);
        goto done;
    }
    /* Optimistic: the link after the last one seen is usually free, so an uncontended
     * increment is a single insert; a duplicate key says someone was faster. A crowd on one
     * key keeps trying, with short random pauses, for up to ten store timeouts: on FerretDB
     * every lookup scans the table, so a writer that lost once can trail a fast one for a
     * while (a server that fails answers at once instead). */
    rc = STORE_EUNAVAIL;
    uint64_t deadline = time_mono_ns() + (uint64_t)m->timeout_ms * 10000000u;
    int attempt = 0;
    for (;; attempt++) {
        char id[64];
        snprintf(id, sizeof id, "%s:%lld", h.gen, (long long)(h.seq + 1));
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "_id", id);
        BSON_APPEND_INT64(&doc, "value", h.value + delta);
        BSON_APPEND_INT64(&doc, "expiresAt", expires);
        bson_error_t e;
        bool ok = mongoc_collection_insert_one(op.coll, &doc, NULL, NULL, &e);
        bson_destroy(&doc);
        if (ok) {
            h.seq++;
            h.value += delta;
            started = h.seq == 1;
            rc = STORE_OK;
            break;
        }
        rc = map_error(&e, "counter incr");
        if (rc != STORE_EEXIST)
            break;
        rc = counter_latest(&op, &h);
        if (rc != STORE_OK)
            break;
        rc = STORE_EUNAVAIL;
        if (time_mono_ns() > deadline)
            break;
        if (attempt >= 2) { /* random pause up to 0.1 ms * 2^attempt, at most 2 ms */
            unsigned seed = (unsigned)now ^ (unsigned)(uintptr_t)&op ^ (unsigned)attempt;
            long cap = attempt >= 4 ? 20 : 1L << attempt;
            struct timespec ts = {0, 100000L * (1 + rand_r(&seed) % cap)};
            nanosleep(&ts, NULL);
        }
    }
    if (rc == STORE_EUNAVAIL)
        log_warn("counter '%s' still contended after %d attempts", key, attempt + 1);
    if (started)
        counters_prune(&op, now); /* a new window began: a good moment to drop old ones */
done:
    op_end(&op);
    if (rc == STORE_OK) {
        if (h.gen[0])
            hint_set(m, &h);
        if (value)
            *value = h.value;
        if (reset_ms)
            *reset_ms = expires - now;
    }
    return rc;
}

static const store_ops_t mongo_ops = {
    .name = "mongodb",
    .ping = m_ping,
    .close = m_close,
    .user_insert = m_user_insert,
    .user_get_by_email = m_user_get_by_email,
    .user_get = m_user_get,
    .user_delete = m_user_delete,
    .user_bump_token_version = m_user_bump_token_version,
    .function_insert = m_function_insert,
    .function_get = m_function_get,
    .function_list = m_function_list,
    .function_delete = m_function_delete,
    .function_count = m_function_count,
    .execution_insert = m_execution_insert,
    .execution_update = m_execution_update,
    .execution_get = m_execution_get,
    .execution_list = m_execution_list,
    .execution_count_active = m_execution_count_active,
    .counter_incr = m_counter_incr,
};

/* ---- open ---- */

/* The indexes every open ensures. createIndexes is idempotent for identical specs, but
 * FerretDB 1.24 panics on a createIndexes naming two or more indexes that already exist
 * (validateIndexesForCreation deletes from a slice by the old positions), so each index goes
 * in a command of its own. */
typedef struct {
    const char *coll, *name;
    bool unique;
    const char *k[3];
    int dir[3];
} index_def_t;

static const index_def_t index_defs[] = {
    {"users", "emailLower_1", true, {"emailLower"}, {1}},
    {"functions", "owner_1_name_1", true, {"owner", "name"}, {1, 1}},
    {"executions", "functionId_1_createdAt_-1__id_-1", false,
     {"functionId", "createdAt", "_id"}, {1, -1, -1}},
    {"executions", "owner_1_createdAt_-1__id_-1", false, {"owner", "createdAt", "_id"},
     {1, -1, -1}},
    {"executions", "owner_1_status_1", false, {"owner", "status"}, {1, 1}},
    /* counters and their links are found by _id; these serve user_delete and the prune */
    {"counters", "key_1", false, {"key"}, {1}},
    {"counters", "expiresAt_1", false, {"expiresAt"}, {1}},
#define LINKS_INDEX(x) {"counter_links_" #x, "expiresAt_1", false, {"expiresAt"}, {1}}
    LINKS_INDEX(0), LINKS_INDEX(1), LINKS_INDEX(2), LINKS_INDEX(3),
    LINKS_INDEX(4), LINKS_INDEX(5), LINKS_INDEX(6), LINKS_INDEX(7),
    LINKS_INDEX(8), LINKS_INDEX(9), LINKS_INDEX(a), LINKS_INDEX(b),
    LINKS_INDEX(c), LINKS_INDEX(d), LINKS_INDEX(e), LINKS_INDEX(f),
#undef LINKS_INDEX
};

static int create_index(mongoc_client_t *c, const char *db, const index_def_t *d,
                        bson_error_t *e)
{
    bson_t cmd = BSON_INITIALIZER, indexes, spec, key, reply;
    BSON_APPEND_UTF8(&cmd, "createIndexes", d->coll);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &spec);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    for (int i = 0; i < 3 && d->k[i]; i++)
        BSON_APPEND_INT32(&key, d->k[i], d->dir[i]);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", d->name);
    if (d->unique)
        BSON_APPEND_BOOL(&spec, "unique", true);
    bson_append_document_end(&indexes, &spec);
    bson_append_array_end(&cmd, &indexes);
    mongoc_database_t *dbh = mongoc_client_get_database(c, db);
    bool ok = mongoc_database_write_command_with_opts(dbh, &cmd, NULL, &reply, e);
    mongoc_database_destroy(dbh);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok ? 0 : -1;
}

store_t *store_mongo_open(const config_store_t *cfg, char *err, size_t errlen)
{
    pthread_once(&lib_once, lib_init);
    store_t *s = NULL;
    mstore_t *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->hints_mu, NULL);
    bson_error_t e;
    m->uri = mongoc_uri_new_with_error(cfg->uri, &e);
    if (!m->uri) {
        /* the message, not the URI: it may hold a password */
        snprintf(err, errlen, "invalid mongodb uri: %s", e.message);
        goto fail;
    }
    int32_t t = cfg->timeout_ms > 0 && cfg->timeout_ms <= INT32_MAX ? (int32_t)cfg->timeout_ms
                                                                     : DEFAULT_TIMEOUT_MS;
    /* An unreachable database answers STORE_EUNAVAIL within ~timeout instead of hanging
     * (the driver default is 30 s); values in the URI win. */
    static const char *const timeouts[] = {MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                           MONGOC_URI_CONNECTTIMEOUTMS,
                                           MONGOC_URI_SOCKETTIMEOUTMS};
    for (size_t i = 0; i < sizeof timeouts / sizeof *timeouts; i++)
        if (!mongoc_uri_has_option(m->uri, timeouts[i]))
            mongoc_uri_set_option_as_int32(m->uri, timeouts[i], t);
    m->timeout_ms = t;
    m->last_prune_ms = time_now_ms(); /* the first prune comes one interval after open */
    if (!mongoc_uri_has_option(m->uri, MONGOC_URI_APPNAME))
        mongoc_uri_set_appname(m->uri, "faas");
    if (cfg->database[0])
        str_copy(m->db, sizeof m->db, cfg->database);
    else if (mongoc_uri_get_database(m->uri))
        str_copy(m->db, sizeof m->db, mongoc_uri_get_database(m->uri));
    else
        str_copy(m->db, sizeof m->db, "faas");

    m->pool = mongoc_client_pool_new_with_error(m->uri, &e);
    if (!m->pool) {
        snprintf(err, errlen, "cannot create mongodb client pool: %s", e.message);
        goto fail;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);

    mongoc_client_t *c = mongoc_client_pool_pop(m->pool);
    int rc = 0;
    for (size_t i = 0; i < sizeof index_defs / sizeof *index_defs && rc == 0; i++)
        rc = create_index(c, m->db, &index_defs[i], &e);
    mongoc_client_pool_push(m->pool, c);
    if (rc != 0) {
        snprintf(err, errlen, "cannot prepare mongodb database '%s': %s", m->db, e.message);
        goto fail;
    }
    s = xcalloc(1, sizeof *s);
    s->ops = &mongo_ops;
    s->impl = m;
    return s;

fail:
    if (m->pool)
        mongoc_client_pool_destroy(m->pool);
    if (m->uri)
        mongoc_uri_destroy(m->uri);
    pthread_mutex_destroy(&m->hints_mu);
    free(m);
    return NULL;
}
