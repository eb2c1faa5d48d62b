/* The embedded store driver: SQLite in WAL mode behind store.h.
 *
 * Threads: a small pool of connections (opened lazily, at most SQ_POOL_MAX) guarded by a
 * mutex; an operation borrows one connection for its whole duration, so a connection (and its
 * cached prepared statements) is only ever used by one thread at a time. Several processes may
 * share the file: SQLite's own locking plus busy_timeout serialise the writers, and every write
 * that reads first runs in BEGIN IMMEDIATE so it cannot fail on a stale snapshot.
 * Only this file includes sqlite3.h. */
#include "store.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "shmcounter.h"

#define SQ_POOL_MAX 16
#define SQ_LIST_MAX 100

/* Versioned schema: entry i takes the database from user_version i to i + 1. Append only;
 * never edit an entry that has shipped. */
static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE users ("
    "  id TEXT PRIMARY KEY,"
    "  email TEXT NOT NULL,"
    "  email_key TEXT NOT NULL UNIQUE," /* store_email_fold(email) */
    "  pwhash TEXT NOT NULL,"
    "  token_version INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE functions ("
    "  id TEXT PRIMARY KEY,"
    "  owner TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL,"
    "  image TEXT NOT NULL,"
    "  env_json TEXT NOT NULL DEFAULT '{}',"
    "  timeout_ms INTEGER NOT NULL DEFAULT 0,"
    "  memory INTEGER NOT NULL DEFAULT 0,"
    "  nano_cpus INTEGER NOT NULL DEFAULT 0,"
    "  network INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  UNIQUE (owner, name)"
    ");"
    "CREATE INDEX functions_by_owner ON functions (owner, created_at, id);"
    "CREATE TABLE executions ("
    "  id TEXT PRIMARY KEY,"
    "  function_id TEXT NOT NULL REFERENCES functions(id) ON DELETE CASCADE,"
    "  owner TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  status TEXT NOT NULL,"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  exit_code INTEGER," /* NULL when none */
    "  result TEXT,"
    "  out BLOB,"
    "  err BLOB,"
    "  duration_ms INTEGER NOT NULL DEFAULT -1,"
    "  created_at INTEGER NOT NULL,"
    "  started_at INTEGER NOT NULL DEFAULT 0,"
    "  finished_at INTEGER NOT NULL DEFAULT 0,"
    "  worker TEXT NOT NULL DEFAULT '',"
    "  attempts INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX executions_by_function ON executions (function_id, created_at, id);"
    "CREATE INDEX executions_by_owner ON executions (owner, created_at, id);"
    "CREATE INDEX executions_active ON executions (owner)"
    "  WHERE status IN ('queued', 'running');"
    "CREATE TABLE counters ("
    "  key TEXT NOT NULL,"
    "  window_start INTEGER NOT NULL,"
    "  value INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  PRIMARY KEY (key, window_start)"
    ") WITHOUT ROWID;"
    "CREATE INDEX counters_by_expiry ON counters (expires_at);",
    /* 2: fields that postprocess plugins add to a result (a JSON object) */
    "ALTER TABLE executions ADD COLUMN extra TEXT;",
    /* 3: counters moved to the shared memory-mapped <path>-counters (shmcounter.h) */
    "DROP TABLE counters;",
};
#define SQ_SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define USER_COLS "id, email, pwhash, token_version, created_at"
#define FN_COLS                                                                            \
    "id, owner, name, image, env_json, timeout_ms, memory, nano_cpus, network, created_at"
#define EX_SUMMARY_COLS                                                                    \
    "id, function_id, owner, status, reason, exit_code, duration_ms, created_at, "          \
    "started_at, finished_at, worker, attempts"
#define EX_COLS EX_SUMMARY_COLS ", result, out, err, extra"
#define EX_LIST_ORDER " ORDER BY created_at DESC, id DESC LIMIT ?5"

/* Every statement a connection may cache, prepared on first use. */
enum {
    ST_PING,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_INSERT,
    ST_USER_BY_EMAIL,
    ST_USER_GET,
    ST_USER_DELETE,
    ST_USER_BUMP,
    ST_FN_INSERT,
    ST_FN_GET,
    ST_FN_LIST,
    ST_FN_DELETE,
    ST_FN_COUNT,
    ST_EX_INSERT,
    ST_EX_UPDATE,
    ST_EX_EXISTS,
    ST_EX_GET,
    ST_EX_CURSOR,
    ST_EX_LIST_FN,
    ST_EX_LIST_FN_CUR,
    ST_EX_LIST_OWNER,
    ST_EX_LIST_OWNER_CUR,
    ST_EX_LIST_ALL,
    ST_EX_LIST_ALL_CUR,
    ST_EX_COUNT_ACTIVE,
    ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
    [ST_PING] = "SELECT count(*) FROM sqlite_schema",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_INSERT] = "INSERT INTO users (id, email, email_key, pwhash, token_version, "
                       "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_USER_BY_EMAIL] = "SELECT " USER_COLS " FROM users WHERE email_key = ?1",
    [ST_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    [ST_USER_DELETE] = "DELETE FROM users WHERE id = ?1",
    /* keys "u:<id>:..." are exactly those in ["u:<id>:", "u:<id>;") */
    [ST_USER_BUMP] = "UPDATE users SET token_version = token_version + 1 WHERE id = ?1 "
                     "RETURNING token_version",
    [ST_FN_INSERT] = "INSERT INTO functions (" FN_COLS ") "
                     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_FN_GET] = "SELECT " FN_COLS " FROM functions WHERE id = ?1 AND owner = ?2",
    [ST_FN_LIST] = "SELECT " FN_COLS " FROM functions WHERE owner = ?1 "
                   "ORDER BY created_at DESC, id DESC",
    [ST_FN_DELETE] = "DELETE FROM functions WHERE id = ?1 AND owner = ?2",
    [ST_FN_COUNT] = "SELECT count(*) FROM functions WHERE owner = ?1",
    [ST_EX_INSERT] = "INSERT INTO executions (" EX_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                     "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    /* Only a non-final row changes; a "running" report never replaces a final state and a
     * second final report changes nothing. Unknown times/worker keep what is there. */
    [ST_EX_UPDATE] = "UPDATE executions SET status = ?2, reason = ?3, exit_code = ?4, "
                     "result = ?5, out = ?6, err = ?7, duration_ms = ?8, "
                     "started_at = CASE WHEN ?9 > 0 THEN ?9 ELSE started_at END, "
                     "finished_at = CASE WHEN ?10 > 0 THEN ?10 ELSE finished_at END, "
                     "worker = CASE WHEN ?11 <> '' THEN ?11 ELSE worker END, "
                     "attempts = max(attempts, ?12), extra = ?13 "
                     "WHERE id = ?1 AND status IN ('queued', 'running')",
    [ST_EX_EXISTS] = "SELECT 1 FROM executions WHERE id = ?1",
    [ST_EX_GET] = "SELECT " EX_COLS " FROM executions WHERE id = ?1 "
                  "AND (?2 IS NULL OR owner = ?2)",
    [ST_EX_CURSOR] = "SELECT created_at FROM executions WHERE id = ?1 "
                     "AND (?2 IS NULL OR owner = ?2)",
    /* ?1 function, ?2 owner (NULL: any), ?3/?4 cursor (created_at, id), ?5 limit */
    [ST_EX_LIST_FN] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE function_id = ?1 "
                      "AND (?2 IS NULL OR owner = ?2)" EX_LIST_ORDER,
    [ST_EX_LIST_FN_CUR] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE function_id = ?1 "
                          "AND (?2 IS NULL OR owner = ?2) AND (created_at, id) < (?3, ?4)"
                          EX_LIST_ORDER,
    [ST_EX_LIST_OWNER] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE ?1 IS NULL "
                         "AND owner = ?2" EX_LIST_ORDER,
    [ST_EX_LIST_OWNER_CUR] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE ?1 IS NULL "
                             "AND owner = ?2 AND (created_at, id) < (?3, ?4)" EX_LIST_ORDER,
    [ST_EX_LIST_ALL] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE ?1 IS NULL "
                       "AND ?2 IS NULL" EX_LIST_ORDER,
    [ST_EX_LIST_ALL_CUR] = "SELECT " EX_SUMMARY_COLS " FROM executions WHERE ?1 IS NULL "
                           "AND ?2 IS NULL AND (created_at, id) < (?3, ?4)" EX_LIST_ORDER,
    [ST_EX_COUNT_ACTIVE] = "SELECT count(*) FROM executions WHERE owner = ?1 "
                           "AND status IN ('queued', 'running')",
};

typedef struct sq_conn {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    struct sq_conn *next;
} sq_conn_t;

typedef struct {
    store_t base;
    char *path;
    int timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sq_conn_t *idle; /* connections not borrowed */
    int open;        /* connections in existence */
    int max;
    shmctr_t *counters; /* in <path>-counters, shared with the other processes */
} sq_store_t;

static sq_store_t *sq(store_t *s)
{
    return (sq_store_t *)s->impl;
}

/* Maps an SQLite result code to a STORE_* code, logging what a caller cannot see. */
static int sq_err(sqlite3 *db, int rc, const char *what)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return STORE_EEXIST;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return STORE_ENOTFOUND; /* the owner/function it refers to is gone */
    default:
        break;
    }
    int code;
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
        code = STORE_EINVAL;
        break;
    default: /* BUSY, LOCKED, IOERR, CANTOPEN, FULL, READONLY, CORRUPT, ... */
        code = STORE_EUNAVAIL;
        break;
    }
    log_warn("sqlite: cannot %s: %s (%d)", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
             rc);
    return code;
}

static void conn_free(sq_conn_t *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* Opens one connection with the per-connection settings. */
static sq_conn_t *conn_open(const sq_store_t *s, char *err, size_t errlen)
{
    sq_conn_t *c = xcalloc(1, sizeof *c);
    int rc = sqlite3_open_v2(s->path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database '%s': %s", s->path,
                 c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, s->timeout_ms);
    char *msg = NULL;
    rc = sqlite3_exec(c->db, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;", NULL,
                      NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot configure database '%s': %s", s->path,
                 msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        goto fail;
    }
    return c;
fail:
    conn_free(c);
    return NULL;
}

/* Borrows a connection: an idle one, a new one while the pool is below its cap, or waits for
 * one to come back (at most timeout_ms). */
static int conn_get(sq_store_t *s, sq_conn_t **out)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->timeout_ms / 1000;
    deadline.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->idle && s->open >= s->max) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT && !s->idle &&
            s->open >= s->max) {
            pthread_mutex_unlock(&s->mu);
            log_warn("sqlite: no connection free within %d ms", s->timeout_ms);
            return STORE_EUNAVAIL;
        }
    }
    if (s->idle) {
        *out = s->idle;
        s->idle = s->idle->next;
        pthread_mutex_unlock(&s->mu);
        return STORE_OK;
    }
    s->open++;
    pthread_mutex_unlock(&s->mu);

    char err[512];
    sq_conn_t *c = conn_open(s, err, sizeof err);
    if (!c) {
        log_warn("sqlite: %s", err);
        pthread_mutex_lock(&s->mu);
        s->open--;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return STORE_EUNAVAIL;
    }
    *out = c;
    return STORE_OK;
}

static void conn_put(sq_store_t *s, sq_conn_t *c)
{
    if (!c)
        return;
    if (!sqlite3_get_autocommit(c->db)) /* an error path left a transaction open */
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&s->mu);
    c->next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* The cached statement `which`, reset and unbound, or NULL (logged) when it cannot be
 * prepared. */
static sqlite3_stmt *stmt(sq_conn_t *c, int which)
{
    if (!c->st[which]) {
        int rc = sqlite3_prepare_v3(c->db, sql_text[which], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->st[which], NULL);
        if (rc != SQLITE_OK) {
            sq_err(c->db, rc, "prepare statement");
            return NULL;
        }
    }
    return c->st[which];
}

static void stmt_done(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Runs a statement that returns no rows (or whose rows do not matter). */
static int exec_simple(sq_conn_t *c, int which, const char *what)
{
    sqlite3_stmt *st = stmt(c, which);
    if (!st)
        return STORE_EUNAVAIL;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    int ret = rc == SQLITE_DONE ? STORE_OK : sq_err(c->db, rc, what);
    stmt_done(st);
    return ret;
}

static int tx_begin(sq_conn_t *c)
{
    return exec_simple(c, ST_BEGIN, "begin a transaction");
}

/* Commits when ret is STORE_OK, rolls back otherwise; returns the final code. */
static int tx_end(sq_conn_t *c, int ret)
{
    if (ret == STORE_OK) {
        ret = exec_simple(c, ST_COMMIT, "commit");
        if (ret == STORE_OK)
            return STORE_OK;
    }
    if (!sqlite3_get_autocommit(c->db))
        exec_simple(c, ST_ROLLBACK, "roll back");
    return ret;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_bytes(sqlite3_stmt *st, int i, const char *p, size_t n)
{
    if (!p)
        sqlite3_bind_null(st, i);
    else if (n == 0)
        sqlite3_bind_zeroblob(st, i, 0);
    else
        sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC);
}

static void col_copy(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    str_copy(dst, cap, t ? t : "");
}

/* A fresh NUL-terminated copy of a column, NULL when the column is NULL. */
static char *col_dup(sqlite3_stmt *st, int i, size_t *len)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
        if (len)
            *len = 0;
        return NULL;
    }
    const void *p = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    char *out = xmalloc(n + 1);
    if (n)
        memcpy(out, p, n);
    out[n] = '\0';
    if (len)
        *len = n;
    return out;
}

/* ---- lifecycle ---- */

static int sq_ping(store_t *self)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret == STORE_OK)
        ret = exec_simple(c, ST_PING, "ping");
    conn_put(s, c);
    return ret;
}

static void sq_free(sq_store_t *s)
{
    while (s->idle) {
        sq_conn_t *c = s->idle;
        s->idle = c->next;
        conn_free(c);
        s->open--;
    }
    if (s->open)
        log_warn("sqlite: closing '%s' with %d connection(s) still in use", s->path, s->open);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    shmctr_close(s->counters);
    free(s->path);
    free(s);
}

static void sq_close(store_t *self)
{
    sq_store_t *s = sq(self);
    if (s->idle) /* keeps the planner's statistics fresh; cheap when nothing changed */
        sqlite3_exec(s->idle->db, "PRAGMA optimize", NULL, NULL, NULL);
    sq_free(s);
}

/* ---- users ---- */

static int sq_user_insert(store_t *self, store_user_t *u)
{
    sq_store_t *s = sq(self);
    char key[sizeof u->email * 2];
    if (!u->email[0] || store_email_fold(u->email, key, sizeof key) != 0)
        return STORE_EINVAL;
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    char id[ID_LEN + 1];
    id_new(id);
    int64_t now = time_now_ms();
    sqlite3_stmt *st = stmt(c, ST_USER_INSERT);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, u->email);
    bind_text(st, 3, key);
    bind_text(st, 4, u->pwhash);
    sqlite3_bind_int64(st, 5, u->token_version);
    sqlite3_bind_int64(st, 6, now);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        memcpy(u->id, id, sizeof id);
        u->created_at = now;
    } else {
        ret = sq_err(c->db, rc, "insert user");
    }
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static void user_row(sqlite3_stmt *st, store_user_t *out)
{
    col_copy(st, 0, out->id, sizeof out->id);
    col_copy(st, 1, out->email, sizeof out->email);
    col_copy(st, 2, out->pwhash, sizeof out->pwhash);
    out->token_version = sqlite3_column_int64(st, 3);
    out->created_at = sqlite3_column_int64(st, 4);
}

/* One-row user query by `arg`. */
static int user_query(store_t *self, int which, const char *arg, store_user_t *out)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, which);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, arg);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        user_row(st, out);
    } else if (rc == SQLITE_DONE) {
        ret = STORE_ENOTFOUND;
    } else {
        ret = sq_err(c->db, rc, "read user");
    }
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static int sq_user_get_by_email(store_t *self, const char *email, store_user_t *out)
{
    char key[sizeof out->email * 2];
    if (store_email_fold(email, key, sizeof key) != 0)
        return STORE_ENOTFOUND; /* too long to have been registered */
    return user_query(self, ST_USER_BY_EMAIL, key, out);
}

static int sq_user_get(store_t *self, const char *id, store_user_t *out)
{
    return user_query(self, ST_USER_GET, id, out);
}

static int sq_user_delete(store_t *self, const char *id)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    char prefix[ID_LEN + 8]; /* the user's counters: "u:<id>:..." */
    snprintf(prefix, sizeof prefix, "u:%s:", id);
    ret = tx_begin(c);
    if (ret != STORE_OK)
        goto done;
    /* functions and executions follow through ON DELETE CASCADE */
    sqlite3_stmt *st = stmt(c, ST_USER_DELETE);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto end;
    }
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "delete user");
    else if (sqlite3_changes(c->db) == 0)
        ret = STORE_ENOTFOUND;
    stmt_done(st);
end:
    ret = tx_end(c, ret);
    if (ret == STORE_OK)
        shmctr_delete_prefix(s->counters, prefix);
done:
    conn_put(s, c);
    return ret;
}

static int sq_user_bump_token_version(store_t *self, const char *id, int64_t *new_version)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, ST_USER_BUMP);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (new_version)
            *new_version = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    } else if (rc == SQLITE_DONE) {
        ret = STORE_ENOTFOUND;
    }
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "bump token version");
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

/* ---- functions ---- */

static int sq_function_insert(store_t *self, store_function_t *f)
{
    sq_store_t *s = sq(self);
    if (!f->name[0] || !f->image[0])
        return STORE_EINVAL;
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    char id[ID_LEN + 1];
    id_new(id);
    int64_t now = time_now_ms();
    sqlite3_stmt *st = stmt(c, ST_FN_INSERT);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, f->owner);
    bind_text(st, 3, f->name);
    bind_text(st, 4, f->image);
    bind_text(st, 5, f->env_json ? f->env_json : "{}");
    sqlite3_bind_int64(st, 6, f->timeout_ms);
    sqlite3_bind_int64(st, 7, f->memory);
    sqlite3_bind_int64(st, 8, f->nano_cpus);
    sqlite3_bind_int(st, 9, f->network ? 1 : 0);
    sqlite3_bind_int64(st, 10, now);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        memcpy(f->id, id, sizeof id);
        f->created_at = now;
    } else {
        ret = sq_err(c->db, rc, "insert function");
    }
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static void function_row(sqlite3_stmt *st, store_function_t *out)
{
    col_copy(st, 0, out->id, sizeof out->id);
    col_copy(st, 1, out->owner, sizeof out->owner);
    col_copy(st, 2, out->name, sizeof out->name);
    col_copy(st, 3, out->image, sizeof out->image);
    out->env_json = col_dup(st, 4, NULL);
    if (!out->env_json)
        out->env_json = xstrdup("{}");
    out->timeout_ms = sqlite3_column_int64(st, 5);
    out->memory = sqlite3_column_int64(st, 6);
    out->nano_cpus = sqlite3_column_int64(st, 7);
    out->network = sqlite3_column_int(st, 8) != 0;
    out->created_at = sqlite3_column_int64(st, 9);
}

static int sq_function_get(store_t *self, const char *owner, const char *id,
                           store_function_t *out)
{
    sq_store_t *s = sq(self);
    memset(out, 0, sizeof *out);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, ST_FN_GET);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, owner);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        function_row(st, out);
    else if (rc == SQLITE_DONE)
        ret = STORE_ENOTFOUND;
    else
        ret = sq_err(c->db, rc, "read function");
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static int sq_function_list(store_t *self, const char *owner, store_function_t **out,
                            size_t *n)
{
    sq_store_t *s = sq(self);
    *out = NULL;
    *n = 0;
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    store_function_t *list = NULL;
    size_t len = 0, cap = 0;
    sqlite3_stmt *st = stmt(c, ST_FN_LIST);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, owner);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (len == cap) {
            cap = cap ? cap * 2 : 8;
            list = xrealloc(list, cap * sizeof *list);
        }
        memset(&list[len], 0, sizeof list[len]);
        function_row(st, &list[len++]);
    }
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "list functions");
    stmt_done(st);
done:
    conn_put(s, c);
    if (ret != STORE_OK) {
        store_function_list_free(list, len);
        return ret;
    }
    *out = list ? list : xcalloc(1, sizeof *list); /* never NULL on success */
    *n = len;
    return STORE_OK;
}

static int sq_function_delete(store_t *self, const char *owner, const char *id)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    /* executions follow through ON DELETE CASCADE, in the statement's own transaction */
    sqlite3_stmt *st = stmt(c, ST_FN_DELETE);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, owner);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "delete function");
    else if (sqlite3_changes(c->db) == 0)
        ret = STORE_ENOTFOUND;
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

/* A one-row, one-integer query with one text argument. */
static int count_query(store_t *self, int which, const char *arg, int64_t *n)
{
    sq_store_t *s = sq(self);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, which);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, arg);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    else
        ret = sq_err(c->db, rc, "count");
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static int sq_function_count(store_t *self, const char *owner, int64_t *n)
{
    return count_query(self, ST_FN_COUNT, owner, n);
}

/* ---- executions ---- */

static int sq_execution_insert(store_t *self, const store_execution_t *e)
{
    sq_store_t *s = sq(self);
    const char *status = e->status[0] ? e->status : "queued";
    if (!store_status_valid(status))
        return STORE_EINVAL;
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, ST_EX_INSERT);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, e->id);
    bind_text(st, 2, e->function_id);
    bind_text(st, 3, e->owner);
    bind_text(st, 4, status);
    bind_text(st, 5, e->reason);
    if (e->has_exit_code)
        sqlite3_bind_int(st, 6, e->exit_code);
    else
        sqlite3_bind_null(st, 6);
    sqlite3_bind_int64(st, 7, e->duration_ms);
    sqlite3_bind_int64(st, 8, e->created_at > 0 ? e->created_at : time_now_ms());
    sqlite3_bind_int64(st, 9, e->started_at);
    sqlite3_bind_int64(st, 10, e->finished_at);
    bind_text(st, 11, e->worker);
    sqlite3_bind_int(st, 12, e->attempts);
    bind_text(st, 13, e->result);
    bind_bytes(st, 14, e->out, e->out_len);
    bind_bytes(st, 15, e->err, e->err_len);
    bind_text(st, 16, e->extra_json);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "insert execution");
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static int sq_execution_update(store_t *self, const store_execution_t *e)
{
    sq_store_t *s = sq(self);
    if (!store_status_valid(e->status))
        return STORE_EINVAL;
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, ST_EX_UPDATE);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, e->id);
    bind_text(st, 2, e->status);
    bind_text(st, 3, e->reason);
    if (e->has_exit_code)
        sqlite3_bind_int(st, 4, e->exit_code);
    else
        sqlite3_bind_null(st, 4);
    bind_text(st, 5, e->result);
    bind_bytes(st, 6, e->out, e->out_len);
    bind_bytes(st, 7, e->err, e->err_len);
    sqlite3_bind_int64(st, 8, e->duration_ms);
    sqlite3_bind_int64(st, 9, e->started_at);
    sqlite3_bind_int64(st, 10, e->finished_at);
    bind_text(st, 11, e->worker);
    sqlite3_bind_int(st, 12, e->attempts);
    bind_text(st, 13, e->extra_json);
    int rc = sqlite3_step(st);
    int changed = rc == SQLITE_DONE ? sqlite3_changes(c->db) : 0;
    if (rc != SQLITE_DONE)
        ret = sq_err(c->db, rc, "update execution");
    stmt_done(st);
    if (ret != STORE_OK || changed)
        goto done;
    /* Nothing changed: already final (fine, idempotent) or no such execution. */
    st = stmt(c, ST_EX_EXISTS);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, e->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
        ret = STORE_ENOTFOUND;
    else if (rc != SQLITE_ROW)
        ret = sq_err(c->db, rc, "read execution");
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static void execution_summary_row(sqlite3_stmt *st, store_execution_t *out)
{
    col_copy(st, 0, out->id, sizeof out->id);
    col_copy(st, 1, out->function_id, sizeof out->function_id);
    col_copy(st, 2, out->owner, sizeof out->owner);
    col_copy(st, 3, out->status, sizeof out->status);
    col_copy(st, 4, out->reason, sizeof out->reason);
    out->has_exit_code = sqlite3_column_type(st, 5) != SQLITE_NULL;
    out->exit_code = out->has_exit_code ? sqlite3_column_int(st, 5) : 0;
    out->duration_ms = sqlite3_column_int64(st, 6);
    out->created_at = sqlite3_column_int64(st, 7);
    out->started_at = sqlite3_column_int64(st, 8);
    out->finished_at = sqlite3_column_int64(st, 9);
    col_copy(st, 10, out->worker, sizeof out->worker);
    out->attempts = sqlite3_column_int(st, 11);
}

static int sq_execution_get(store_t *self, const char *owner, const char *id,
                            store_execution_t *out)
{
    sq_store_t *s = sq(self);
    memset(out, 0, sizeof *out);
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    sqlite3_stmt *st = stmt(c, ST_EX_GET);
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, id);
    bind_text(st, 2, owner);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        execution_summary_row(st, out);
        out->result = col_dup(st, 12, NULL);
        out->out = col_dup(st, 13, &out->out_len);
        out->err = col_dup(st, 14, &out->err_len);
        out->extra_json = col_dup(st, 15, NULL);
    } else if (rc == SQLITE_DONE) {
        ret = STORE_ENOTFOUND;
    } else {
        ret = sq_err(c->db, rc, "read execution");
    }
    stmt_done(st);
done:
    conn_put(s, c);
    return ret;
}

static int sq_execution_list(store_t *self, const char *owner, const char *function_id,
                             size_t limit, const char *cursor, store_execution_t **out,
                             size_t *n)
{
    sq_store_t *s = sq(self);
    *out = NULL;
    *n = 0;
    if (limit < 1)
        limit = 1;
    if (limit > SQ_LIST_MAX)
        limit = SQ_LIST_MAX;
    bool has_cursor = cursor && cursor[0];
    if (function_id && !function_id[0])
        function_id = NULL; /* "" = every function of the owner */
    sq_conn_t *c = NULL;
    int ret = conn_get(s, &c);
    if (ret != STORE_OK)
        return ret;
    store_execution_t *list = NULL;
    size_t len = 0;
    int64_t cursor_at = 0;
    sqlite3_stmt *st;
    int rc;
    if (has_cursor) {
        st = stmt(c, ST_EX_CURSOR);
        if (!st) {
            ret = STORE_EUNAVAIL;
            goto done;
        }
        bind_text(st, 1, cursor);
        bind_text(st, 2, owner);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            cursor_at = sqlite3_column_int64(st, 0);
        else if (rc == SQLITE_DONE)
            ret = STORE_EINVAL; /* not an execution this caller can see */
        else
            ret = sq_err(c->db, rc, "read cursor");
        stmt_done(st);
        if (ret != STORE_OK)
            goto done;
    }
    int which = function_id ? ST_EX_LIST_FN : owner ? ST_EX_LIST_OWNER : ST_EX_LIST_ALL;
    st = stmt(c, which + (has_cursor ? 1 : 0));
    if (!st) {
        ret = STORE_EUNAVAIL;
        goto done;
    }
    bind_text(st, 1, function_id);
    bind_text(st, 2, owner);
    if (has_cursor) {
        sqlite3_bind_int64(st, 3, cursor_at);
        bind_text(st, 4, cursor);
    }
    sqlite3_bind_int64(st, 5, (sqlite3_int64)limit);
    list = xcalloc(limit, sizeof *list);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && len < limit)
        execution_summary_row(st, &list[len++]);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        ret = sq_err(c->db, rc, "list executions");
    stmt_done(st);
done:
    conn_put(s, c);
    if (ret != STORE_OK) {
        store_execution_list_free(list, len);
        return ret;
    }
    *out = list;
    *n = len;
    return STORE_OK;
}

static int sq_execution_count_active(store_t *self, const char *owner, int64_t *n)
{
    return count_query(self, ST_EX_COUNT_ACTIVE, owner, n);
}

/* ---- counters ---- */

static int sq_counter_incr(store_t *self, const char *key, int64_t window_ms, int64_t delta,
                           int64_t *value, int64_t *reset_ms)
{
    if (window_ms <= 0 || !key || !key[0])
        return STORE_EINVAL;
    if (shmctr_incr(sq(self)->counters, key, window_ms, delta, time_now_ms(), value,
                    reset_ms) != 0) {
        log_warn("sqlite: no free counter slot for '%s' (every nearby counter is in its window)",
                 key);
        return STORE_EUNAVAIL;
    }
    return STORE_OK;
}

static const store_ops_t sqlite_ops = {
    .name = "sqlite",
    .ping = sq_ping,
    .close = sq_close,
    .user_insert = sq_user_insert,
    .user_get_by_email = sq_user_get_by_email,
    .user_get = sq_user_get,
    .user_delete = sq_user_delete,
    .user_bump_token_version = sq_user_bump_token_version,
    .function_insert = sq_function_insert,
    .function_get = sq_function_get,
    .function_list = sq_function_list,
    .function_delete = sq_function_delete,
    .function_count = sq_function_count,
    .execution_insert = sq_execution_insert,
    .execution_update = sq_execution_update,
    .execution_get = sq_execution_get,
    .execution_list = sq_execution_list,
    .execution_count_active = sq_execution_count_active,
    .counter_incr = sq_counter_incr,
};

/* ---- open ---- */

/* mkdir -p of the directory part of `path`. */
static int make_parent_dirs(const char *path, char *err, size_t errlen)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    int ret = 0;
    if (!slash || slash == dir)
        goto done;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create directory '%s': %s", dir, strerror(errno));
            ret = -1;
            goto done;
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
done:
    free(dir);
    return ret;
}

/* Brings the schema to SQ_SCHEMA_VERSION. Runs under BEGIN IMMEDIATE, so two processes opening
 * a new database at once apply each migration exactly once; a second run is a no-op. */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    int version = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    if (version < 0 || version > SQ_SCHEMA_VERSION) {
        snprintf(err, errlen, "database schema version %d is not one this build knows (0..%d)",
                 version, SQ_SCHEMA_VERSION);
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    for (int v = version; v < SQ_SCHEMA_VERSION; v++) {
        rc = sqlite3_exec(db, migrations[v], NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            goto fail;
        char set[48];
        snprintf(set, sizeof set, "PRAGMA user_version = %d", v + 1);
        rc = sqlite3_exec(db, set, NULL, NULL, &msg);
        if (rc != SQLITE_OK)
            goto fail;
        log_info("sqlite: applied schema migration %d", v + 1);
    }
    rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot migrate the database schema: %s",
             msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* Opens (creating it and its directory when missing) the database at cfg->path, switches it
 * to WAL, applies pending migrations. cfg->timeout_ms (default 2000) bounds every wait for a
 * lock or a pooled connection; past it an operation returns STORE_EUNAVAIL. ":memory:" gives a
 * private in-memory database served by a single connection. The caller closes the store. */
store_t *store_sqlite_open(const config_store_t *cfg, char *err, size_t errlen)
{
    if (!cfg->path[0]) {
        snprintf(err, errlen, "store.path is empty");
        return NULL;
    }
    if (!sqlite3_threadsafe()) {
        snprintf(err, errlen, "the linked SQLite library is not thread-safe");
        return NULL;
    }
    bool memory = strcmp(cfg->path, ":memory:") == 0;
    if (!memory && make_parent_dirs(cfg->path, err, errlen) != 0)
        return NULL;

    sq_store_t *s = xcalloc(1, sizeof *s);
    s->base.ops = &sqlite_ops;
    s->base.impl = s;
    s->path = xstrdup(cfg->path);
    s->timeout_ms = cfg->timeout_ms > 0 && cfg->timeout_ms < 3600000 ? (int)cfg->timeout_ms
                                                                     : 2000;
    s->max = memory ? 1 : SQ_POOL_MAX;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);

    char *ctr_path = memory ? NULL : xasprintf("%s-counters", cfg->path);
    s->counters = shmctr_open(ctr_path, err, errlen);
    free(ctr_path);
    if (!s->counters)
        goto fail;
    sq_conn_t *c = conn_open(s, err, errlen);
    if (!c)
        goto fail;
    s->open = 1;
    s->idle = c;
    if (!memory) {
        sqlite3_stmt *st = NULL;
        const char *mode = NULL;
        if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            mode = (const char *)sqlite3_column_text(st, 0);
        if (!mode || strcmp(mode, "wal") != 0) {
            snprintf(err, errlen, "cannot switch database '%s' to WAL: %s", s->path,
                     sqlite3_errmsg(c->db));
            sqlite3_finalize(st);
            goto fail;
        }
        sqlite3_finalize(st);
    }
    if (migrate(c->db, err, errlen) != 0)
        goto fail;
    return &s->base;
fail:
    sq_free(s);
    return NULL;
}
