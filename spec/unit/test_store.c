/* Store conformance: every driver must pass this file unchanged. The driver comes from
 * FAAS_TEST_STORE: "sqlite" (default, in a temp dir) or "mongodb" (FAAS_TEST_MONGO_URI, a
 * fresh random database). Tests only use store.h, never a driver's own API. */
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "t.h"

static store_t *S;
static config_store_t CFG;
static char TMP[256];

static bool is_sqlite(void)
{
    return strcmp(CFG.driver, "sqlite") == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void)
{
    const char *driver = getenv("FAAS_TEST_STORE");
    char err[512] = "";
    str_copy(CFG.driver, sizeof CFG.driver, driver && *driver ? driver : "sqlite");
    CFG.timeout_ms = 5000;
    if (is_sqlite()) {
        snprintf(TMP, sizeof TMP, "/tmp/faas-store-XXXXXX");
        if (!mkdtemp(TMP))
            return -1;
        /* a path whose directories do not exist yet: the driver creates them */
        snprintf(CFG.path, sizeof CFG.path, "%s/data/nested/faas.db", TMP);
    } else {
        const char *uri = getenv("FAAS_TEST_MONGO_URI");
        if (!uri || !*uri) {
            fprintf(stderr, "FAAS_TEST_MONGO_URI is not set\n");
            return -1;
        }
        char rnd[ID_LEN + 1];
        id_new(rnd);
        str_copy(CFG.uri, sizeof CFG.uri, uri);
        snprintf(CFG.database, sizeof CFG.database, "faas_test_%s", rnd);
    }
    S = store_open(&CFG, err, sizeof err);
    if (!S)
        fprintf(stderr, "cannot open store: %s\n", err);
    return S ? 0 : -1;
}

static void teardown(void)
{
    store_close(S);
    if (TMP[0])
        nftw(TMP, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers: every test makes its own users, so tests never see each other's rows ---- */

static void make_user(store_user_t *u, const char *prefix)
{
    char rnd[ID_LEN + 1];
    id_new(rnd);
    memset(u, 0, sizeof *u);
    snprintf(u->email, sizeof u->email, "%s-%s@example.io", prefix, rnd);
    str_copy(u->pwhash, sizeof u->pwhash, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
    int rc = S->ops->user_insert(S, u);
    CHECK_INT(rc, STORE_OK);
}

static void make_function(store_function_t *f, const char *owner, const char *name)
{
    memset(f, 0, sizeof *f);
    str_copy(f->owner, sizeof f->owner, owner);
    str_copy(f->name, sizeof f->name, name);
    str_copy(f->image, sizeof f->image, "faas/echo:1.0");
    int rc = S->ops->function_insert(S, f);
    CHECK_INT(rc, STORE_OK);
}

static void make_execution(store_execution_t *e, const store_function_t *f, int64_t created)
{
    memset(e, 0, sizeof *e);
    id_new(e->id);
    str_copy(e->function_id, sizeof e->function_id, f->id);
    str_copy(e->owner, sizeof e->owner, f->owner);
    str_copy(e->status, sizeof e->status, "queued");
    e->duration_ms = -1;
    e->created_at = created;
    int rc = S->ops->execution_insert(S, e);
    CHECK_INT(rc, STORE_OK);
}

static char *user_key(const store_user_t *u, const char *name)
{
    return xasprintf("u:%s:%s", u->id, name);
}

static int64_t counter_read(const char *key)
{
    int64_t v = -1, reset = 0;
    int rc = S->ops->counter_incr(S, key, 3600000, 0, &v, &reset);
    CHECK_INT(rc, STORE_OK);
    return v;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- opening ---- */

TEST("rejects an unknown driver name")
{
    config_store_t cfg = CFG;
    char err[256] = "";
    str_copy(cfg.driver, sizeof cfg.driver, "nosuchdb");
    store_t *s = store_open(&cfg, err, sizeof err);
    CHECK(s == NULL);
    CHECK(strstr(err, "'nosuchdb'") != NULL);
    store_close(s);
}

TEST("sqlite creates the missing parent directories of its path")
{
    if (!is_sqlite())
        return;
    struct stat st;
    CHECK(stat(CFG.path, &st) == 0 && S_ISREG(st.st_mode));
}

TEST("sqlite reports a path it cannot create")
{
    if (!is_sqlite())
        return;
    char file[300], err[512] = "";
    snprintf(file, sizeof file, "%s/plain-file", TMP);
    FILE *fp = fopen(file, "w");
    CHECK(fp != NULL);
    if (fp)
        fclose(fp);
    config_store_t cfg = CFG;
    snprintf(cfg.path, sizeof cfg.path, "%s/under/it.db", file);
    store_t *s = store_open(&cfg, err, sizeof err);
    CHECK(s == NULL);
    CHECK(strstr(err, "plain-file") != NULL);
    store_close(s);
}

TEST("sqlite serves a private in-memory database")
{
    if (!is_sqlite())
        return;
    config_store_t cfg = CFG;
    char err[256] = "";
    str_copy(cfg.path, sizeof cfg.path, ":memory:");
    store_t *m = store_open(&cfg, err, sizeof err);
    CHECK(m != NULL);
    if (!m)
        return;
    store_user_t u = {0}, got;
    str_copy(u.email, sizeof u.email, "mem@example.io");
    CHECK_INT(m->ops->user_insert(m, &u), STORE_OK);
    CHECK_INT(m->ops->user_get(m, u.id, &got), STORE_OK);
    CHECK_INT(S->ops->user_get(S, u.id, &got), STORE_ENOTFOUND);
    store_close(m);
}

TEST("sqlite answers unavailable while another process holds the write lock")
{
    if (!is_sqlite())
        return;
    config_store_t cfg = CFG;
    cfg.timeout_ms = 200;
    char err[512] = "", shm[600];
    store_t *s = store_open(&cfg, err, sizeof err);
    CHECK(s != NULL);
    if (!s)
        return;
    /* WAL writers lock byte 120 of the -shm file (SQLite file format, "wal-index locks");
     * a POSIX lock there from another process is exactly a busy writer elsewhere. */
    snprintf(shm, sizeof shm, "%s-shm", CFG.path);
    int ready[2], release[2];
    CHECK(pipe(ready) == 0 && pipe(release) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(shm, O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 120, .l_len = 1};
        char c = (fd >= 0 && fcntl(fd, F_SETLK, &fl) == 0) ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) < 0)
            _exit(1);
        _exit(0);
    }
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 'y');
    store_user_t u = {0};
    str_copy(u.email, sizeof u.email, "busy@example.io");
    CHECK_INT(s->ops->user_insert(s, &u), STORE_EUNAVAIL);
    CHECK_INT(s->ops->ping(s), STORE_OK); /* readers are not blocked */
    CHECK(write(release[1], "x", 1) == 1);
    waitpid(pid, NULL, 0);
    CHECK_INT(s->ops->user_insert(s, &u), STORE_OK);
    close(ready[0]), close(ready[1]), close(release[0]), close(release[1]);
    store_close(s);
}

TEST("answers a ping")
{
    CHECK_INT(S->ops->ping(S), STORE_OK);
    CHECK(S->ops->name && *S->ops->name);
}

TEST("names every error code")
{
    CHECK_STR(store_strerror(STORE_ENOTFOUND), "not found");
    CHECK(strcmp(store_strerror(STORE_EEXIST), store_strerror(STORE_EUNAVAIL)) != 0);
    CHECK(strcmp(store_strerror(STORE_EINVAL), store_strerror(-99)) != 0);
    CHECK(store_status_final("succeeded") && store_status_final("timed_out"));
    CHECK(!store_status_final("running") && !store_status_final("queued"));
    CHECK(store_status_valid("queued") && !store_status_valid("done"));
}

/* ---- users ---- */

TEST("inserts a user and reads it back by id and by email")
{
    store_user_t u, got;
    make_user(&u, "Alice");
    CHECK(id_valid(u.id));
    CHECK(u.created_at > 0);
    CHECK_INT(S->ops->user_get(S, u.id, &got), STORE_OK);
    CHECK_STR(got.id, u.id);
    CHECK_STR(got.email, u.email);
    CHECK_STR(got.pwhash, u.pwhash);
    CHECK_INT(got.token_version, 0);
    CHECK_INT(got.created_at, u.created_at);
    memset(&got, 0, sizeof got);
    CHECK_INT(S->ops->user_get_by_email(S, u.email, &got), STORE_OK);
    CHECK_STR(got.id, u.id);
}

TEST("rejects a second user whose email differs only in case")
{
    char rnd[ID_LEN + 1];
    id_new(rnd);
    store_user_t a = {0}, b = {0}, got;
    snprintf(a.email, sizeof a.email, "A-%s@X.io", rnd);
    snprintf(b.email, sizeof b.email, "a-%s@x.io", rnd);
    CHECK_INT(S->ops->user_insert(S, &a), STORE_OK);
    CHECK_INT(S->ops->user_insert(S, &b), STORE_EEXIST);
    /* lookups ignore case and return the address as registered */
    CHECK_INT(S->ops->user_get_by_email(S, b.email, &got), STORE_OK);
    CHECK_STR(got.id, a.id);
    CHECK_STR(got.email, a.email);
}

TEST("treats non-ASCII upper and lower case emails as one")
{
    char rnd[ID_LEN + 1], key[64];
    id_new(rnd);
    store_user_t a = {0}, b = {0}, got;
    snprintf(a.email, sizeof a.email, "\xC3\x89LODIE-%s@x.io", rnd); /* ÉLODIE */
    snprintf(b.email, sizeof b.email, "\xC3\xA9lodie-%s@x.io", rnd); /* élodie */
    CHECK_INT(S->ops->user_insert(S, &a), STORE_OK);
    CHECK_INT(S->ops->user_insert(S, &b), STORE_EEXIST);
    CHECK_INT(S->ops->user_get_by_email(S, b.email, &got), STORE_OK);
    CHECK_STR(got.id, a.id);
    CHECK(store_email_fold("\xCE\xA3\xD0\x96\xC5\xB8Z\xFF@X", key, sizeof key) == 0);
    CHECK_STR(key, "\xCF\x83\xD0\xB6\xC3\xBFz\xFF@x"); /* ΣЖŸZ -> σжÿz, bad byte kept */
    CHECK(store_email_fold("abcdef", key, 4) < 0);
}

TEST("unknown user ids and emails are not found")
{
    char id[ID_LEN + 1];
    store_user_t got;
    int64_t v;
    id_new(id);
    CHECK_INT(S->ops->user_get(S, id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->user_get_by_email(S, "nobody-here@example.io", &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->user_delete(S, id), STORE_ENOTFOUND);
    CHECK_INT(S->ops->user_bump_token_version(S, id, &v), STORE_ENOTFOUND);
}

TEST("bumps the token version")
{
    store_user_t u, got;
    int64_t v = 0;
    make_user(&u, "bump");
    CHECK_INT(S->ops->user_bump_token_version(S, u.id, &v), STORE_OK);
    CHECK_INT(v, 1);
    CHECK_INT(S->ops->user_bump_token_version(S, u.id, &v), STORE_OK);
    CHECK_INT(v, 2);
    CHECK_INT(S->ops->user_get(S, u.id, &got), STORE_OK);
    CHECK_INT(got.token_version, 2);
}

/* ---- functions ---- */

TEST("inserts a function and reads every field back")
{
    store_user_t u;
    make_user(&u, "fn");
    store_function_t f = {0}, got;
    str_copy(f.owner, sizeof f.owner, u.id);
    str_copy(f.name, sizeof f.name, "resize-image");
    str_copy(f.image, sizeof f.image, "registry.local:5000/team/resize:2.1");
    f.env_json = "{\"MODE\":\"fast\",\"Q\":\"a \\\"b\\\"\"}";
    f.timeout_ms = 12000;
    f.memory = 64LL * 1024 * 1024;
    f.nano_cpus = 500000000;
    f.network = true;
    CHECK_INT(S->ops->function_insert(S, &f), STORE_OK);
    CHECK(id_valid(f.id));
    CHECK(f.created_at > 0);
    CHECK_INT(S->ops->function_get(S, u.id, f.id, &got), STORE_OK);
    CHECK_STR(got.id, f.id);
    CHECK_STR(got.owner, u.id);
    CHECK_STR(got.name, f.name);
    CHECK_STR(got.image, f.image);
    CHECK_STR(got.env_json, f.env_json);
    CHECK_INT(got.timeout_ms, 12000);
    CHECK_INT(got.memory, 64LL * 1024 * 1024);
    CHECK_INT(got.nano_cpus, 500000000);
    CHECK(got.network);
    CHECK_INT(got.created_at, f.created_at);
    store_function_clear(&got);
    CHECK(got.env_json == NULL);

    store_function_t g;
    make_function(&g, u.id, "plain");
    CHECK_INT(S->ops->function_get(S, u.id, g.id, &got), STORE_OK);
    CHECK_STR(got.env_json, "{}");
    CHECK(!got.network);
    CHECK_INT(got.timeout_ms, 0);
    store_function_clear(&got);
}

TEST("lists and counts an owner's functions newest first")
{
    store_user_t u, other;
    make_user(&u, "list");
    make_user(&other, "list-other");
    store_function_t f[3], o;
    make_function(&f[0], u.id, "one");
    make_function(&f[1], u.id, "two");
    make_function(&f[2], u.id, "three");
    make_function(&o, other.id, "one");
    store_function_t *list = NULL;
    size_t n = 0;
    int64_t count = -1;
    CHECK_INT(S->ops->function_list(S, u.id, &list, &n), STORE_OK);
    CHECK_INT(n, 3);
    for (size_t i = 0; list && i + 1 < n; i++) {
        CHECK(list[i].created_at >= list[i + 1].created_at);
        if (list[i].created_at == list[i + 1].created_at)
            CHECK(strcmp(list[i].id, list[i + 1].id) > 0);
        CHECK_STR(list[i].owner, u.id);
    }
    store_function_list_free(list, n);
    CHECK_INT(S->ops->function_count(S, u.id, &count), STORE_OK);
    CHECK_INT(count, 3);

    store_user_t none;
    make_user(&none, "list-none");
    CHECK_INT(S->ops->function_list(S, none.id, &list, &n), STORE_OK);
    CHECK_INT(n, 0);
    store_function_list_free(list, n);
    CHECK_INT(S->ops->function_count(S, none.id, &count), STORE_OK);
    CHECK_INT(count, 0);
}

TEST("rejects a duplicate function name for one owner but not for two")
{
    store_user_t a, b;
    make_user(&a, "dup-a");
    make_user(&b, "dup-b");
    store_function_t f1, f2 = {0}, f3;
    make_function(&f1, a.id, "hello");
    str_copy(f2.owner, sizeof f2.owner, a.id);
    str_copy(f2.name, sizeof f2.name, "hello");
    str_copy(f2.image, sizeof f2.image, "faas/other:1");
    CHECK_INT(S->ops->function_insert(S, &f2), STORE_EEXIST);
    make_function(&f3, b.id, "hello");
    CHECK(strcmp(f1.id, f3.id) != 0);
}

TEST("hides another owner's function")
{
    store_user_t a, b;
    make_user(&a, "own-a");
    make_user(&b, "own-b");
    store_function_t f, got;
    make_function(&f, a.id, "secret");
    CHECK_INT(S->ops->function_get(S, b.id, f.id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->function_delete(S, b.id, f.id), STORE_ENOTFOUND);
    CHECK_INT(S->ops->function_get(S, a.id, f.id, &got), STORE_OK);
    store_function_clear(&got);
}

TEST("unknown function ids are not found")
{
    store_user_t u;
    make_user(&u, "fn-unknown");
    char id[ID_LEN + 1];
    id_new(id);
    store_function_t got;
    CHECK_INT(S->ops->function_get(S, u.id, id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->function_delete(S, u.id, id), STORE_ENOTFOUND);
}

TEST("deleting a function removes its executions and nothing else")
{
    store_user_t u;
    make_user(&u, "fn-del");
    store_function_t f, g, got;
    make_function(&f, u.id, "doomed");
    make_function(&g, u.id, "kept");
    store_execution_t e1, e2, e3, eg;
    make_execution(&e1, &f, 0);
    make_execution(&e2, &f, 0);
    make_execution(&e3, &g, 0);
    CHECK_INT(S->ops->function_delete(S, u.id, f.id), STORE_OK);
    CHECK_INT(S->ops->function_get(S, u.id, f.id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->execution_get(S, NULL, e1.id, &eg), STORE_ENOTFOUND);
    CHECK_INT(S->ops->execution_get(S, NULL, e2.id, &eg), STORE_ENOTFOUND);
    CHECK_INT(S->ops->execution_get(S, u.id, e3.id, &eg), STORE_OK);
    store_execution_clear(&eg);
    CHECK_INT(S->ops->function_get(S, u.id, g.id, &got), STORE_OK);
    store_function_clear(&got);
    CHECK_INT(S->ops->function_delete(S, u.id, f.id), STORE_ENOTFOUND);
}

TEST("deleting a user removes their functions, executions and counters only")
{
    store_user_t a, b, got;
    make_user(&a, "cascade-a");
    make_user(&b, "cascade-b");
    store_function_t fa, fb, fgot;
    make_function(&fa, a.id, "f");
    make_function(&fb, b.id, "f");
    store_execution_t ea, eb, egot;
    make_execution(&ea, &fa, 0);
    make_execution(&eb, &fb, 0);
    char *ka = user_key(&a, "exec"), *kb = user_key(&b, "exec");
    int64_t v;
    CHECK_INT(S->ops->counter_incr(S, ka, 3600000, 5, &v, NULL), STORE_OK);
    CHECK_INT(S->ops->counter_incr(S, kb, 3600000, 7, &v, NULL), STORE_OK);

    CHECK_INT(S->ops->user_delete(S, a.id), STORE_OK);
    CHECK_INT(S->ops->user_get(S, a.id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->user_get_by_email(S, a.email, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->function_get(S, a.id, fa.id, &fgot), STORE_ENOTFOUND);
    CHECK_INT(S->ops->execution_get(S, NULL, ea.id, &egot), STORE_ENOTFOUND);
    CHECK_INT(counter_read(ka), 0);

    CHECK_INT(S->ops->user_get(S, b.id, &got), STORE_OK);
    CHECK_INT(S->ops->function_get(S, b.id, fb.id, &fgot), STORE_OK);
    store_function_clear(&fgot);
    CHECK_INT(S->ops->execution_get(S, b.id, eb.id, &egot), STORE_OK);
    store_execution_clear(&egot);
    CHECK_INT(counter_read(kb), 7);

    /* the address is free again */
    store_user_t again = {0};
    str_copy(again.email, sizeof again.email, a.email);
    CHECK_INT(S->ops->user_insert(S, &again), STORE_OK);
    CHECK(strcmp(again.id, a.id) != 0);
    free(ka);
    free(kb);
}

/* ---- executions ---- */

TEST("round-trips binary stdout and stderr byte for byte")
{
    store_user_t u;
    make_user(&u, "bin");
    store_function_t f;
    make_function(&f, u.id, "bin");
    store_execution_t e, got;
    make_execution(&e, &f, 0);
    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.status, "queued");
    CHECK(got.out == NULL && got.err == NULL && got.result == NULL);
    CHECK(!got.has_exit_code);
    CHECK(got.created_at > 0);
    store_execution_clear(&got);

    char out[256];
    for (int i = 0; i < 256; i++)
        out[i] = (char)i;
    static const char err[] = "warn\0ing\n";
    str_copy(e.status, sizeof e.status, "failed");
    str_copy(e.reason, sizeof e.reason, "output_truncated");
    e.has_exit_code = true;
    e.exit_code = 3;
    e.out = out;
    e.out_len = sizeof out;
    e.err = (char *)err;
    e.err_len = sizeof err - 1;
    e.result = "warning\nhello";
    e.duration_ms = 42;
    e.started_at = 1700000000100;
    e.finished_at = 1700000000142;
    str_copy(e.worker, sizeof e.worker, "worker-1");
    e.attempts = 2;
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);

    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.status, "failed");
    CHECK_STR(got.reason, "output_truncated");
    CHECK_STR(got.function_id, f.id);
    CHECK_STR(got.owner, u.id);
    CHECK(got.has_exit_code);
    CHECK_INT(got.exit_code, 3);
    CHECK_INT(got.out_len, 256);
    CHECK(got.out && memcmp(got.out, out, 256) == 0);
    CHECK_INT(got.err_len, sizeof err - 1);
    CHECK(got.err && memcmp(got.err, err, sizeof err - 1) == 0);
    CHECK_STR(got.result, "warning\nhello");
    CHECK_INT(got.duration_ms, 42);
    CHECK_INT(got.started_at, 1700000000100);
    CHECK_INT(got.finished_at, 1700000000142);
    CHECK_STR(got.worker, "worker-1");
    CHECK_INT(got.attempts, 2);
    store_execution_clear(&got);
    CHECK(got.out == NULL && got.out_len == 0);
}

TEST("keeps the fields postprocess plugins added to a result")
{
    store_user_t u;
    make_user(&u, "extra");
    store_function_t f;
    make_function(&f, u.id, "extra");
    store_execution_t e, got;
    make_execution(&e, &f, 0);
    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK(got.extra_json == NULL);
    store_execution_clear(&got);
    str_copy(e.status, sizeof e.status, "succeeded");
    e.extra_json = "{\"json\":{\"a\":[1,2]}}";
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);
    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.extra_json, "{\"json\":{\"a\":[1,2]}}");
    store_execution_clear(&got);
    CHECK(got.extra_json == NULL);
}

TEST("keeps an exit code of zero and empty output apart from none")
{
    store_user_t u;
    make_user(&u, "zero");
    store_function_t f;
    make_function(&f, u.id, "zero");
    store_execution_t e, got;
    make_execution(&e, &f, 0);
    str_copy(e.status, sizeof e.status, "succeeded");
    e.has_exit_code = true;
    e.exit_code = 0;
    e.out = "";
    e.out_len = 0;
    e.result = "";
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);
    CHECK_INT(S->ops->execution_get(S, NULL, e.id, &got), STORE_OK);
    CHECK(got.has_exit_code);
    CHECK_INT(got.exit_code, 0);
    CHECK(got.out != NULL);
    CHECK_INT(got.out_len, 0);
    CHECK(got.err == NULL);
    CHECK_STR(got.result, "");
    store_execution_clear(&got);
}

TEST("ignores updates once an execution is final")
{
    store_user_t u;
    make_user(&u, "final");
    store_function_t f;
    make_function(&f, u.id, "final");
    store_execution_t e, got;
    make_execution(&e, &f, 0);
    str_copy(e.status, sizeof e.status, "running");
    str_copy(e.worker, sizeof e.worker, "w1");
    e.started_at = 1700000000000;
    e.attempts = 1;
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);
    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.status, "running");
    CHECK_STR(got.worker, "w1");
    store_execution_clear(&got);

    str_copy(e.status, sizeof e.status, "succeeded");
    e.has_exit_code = true;
    e.exit_code = 0;
    e.out = "first";
    e.out_len = 5;
    e.result = "first";
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);

    store_execution_t late = e;
    str_copy(late.status, sizeof late.status, "failed");
    late.exit_code = 9;
    late.out = "second";
    late.out_len = 6;
    late.result = "second";
    CHECK_INT(S->ops->execution_update(S, &late), STORE_OK); /* idempotent, not an error */
    str_copy(late.status, sizeof late.status, "running");
    CHECK_INT(S->ops->execution_update(S, &late), STORE_OK);

    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.status, "succeeded");
    CHECK_INT(got.exit_code, 0);
    CHECK_INT(got.out_len, 5);
    CHECK(got.out && memcmp(got.out, "first", 5) == 0);
    CHECK_STR(got.result, "first");
    store_execution_clear(&got);
}

TEST("execution get checks the owner and unknown ids are not found")
{
    store_user_t a, b;
    make_user(&a, "ex-a");
    make_user(&b, "ex-b");
    store_function_t f;
    make_function(&f, a.id, "f");
    store_execution_t e, got;
    make_execution(&e, &f, 0);
    CHECK_INT(S->ops->execution_get(S, b.id, e.id, &got), STORE_ENOTFOUND);
    CHECK_INT(S->ops->execution_get(S, NULL, e.id, &got), STORE_OK);
    store_execution_clear(&got);
    store_execution_t ghost = e;
    id_new(ghost.id);
    CHECK_INT(S->ops->execution_get(S, NULL, ghost.id, &got), STORE_ENOTFOUND);
    str_copy(ghost.status, sizeof ghost.status, "succeeded");
    CHECK_INT(S->ops->execution_update(S, &ghost), STORE_ENOTFOUND);
    /* an execution id is taken once */
    store_execution_t again = e;
    CHECK_INT(S->ops->execution_insert(S, &again), STORE_EEXIST);
}

static int cmp_newest_first(const void *pa, const void *pb)
{
    const store_execution_t *a = pa, *b = pb;
    if (a->created_at != b->created_at)
        return a->created_at > b->created_at ? -1 : 1;
    return -strcmp(a->id, b->id);
}

TEST("lists executions newest first across pages with equal timestamps")
{
    store_user_t u;
    make_user(&u, "page");
    store_function_t f, g;
    make_function(&f, u.id, "paged");
    make_function(&g, u.id, "noise");
    store_execution_t all[8], noise;
    /* six share one timestamp, so only the id orders them; two are newer */
    for (int i = 0; i < 8; i++)
        make_execution(&all[i], &f, i < 6 ? 1700000000000 : 1700000000000 + i);
    make_execution(&noise, &g, 1700000000000);
    qsort(all, 8, sizeof all[0], cmp_newest_first);

    char cursor[ID_LEN + 1] = "";
    size_t seen = 0;
    size_t sizes[4] = {0};
    for (int page = 0; page < 4; page++) {
        store_execution_t *list = NULL;
        size_t n = 0;
        CHECK_INT(S->ops->execution_list(S, u.id, f.id, 3, cursor, &list, &n), STORE_OK);
        sizes[page] = n;
        for (size_t i = 0; i < n && seen < 8; i++, seen++) {
            CHECK_STR(list[i].id, all[seen].id);
            CHECK_STR(list[i].function_id, f.id);
            CHECK(list[i].out == NULL && list[i].err == NULL && list[i].result == NULL);
        }
        if (n)
            str_copy(cursor, sizeof cursor, list[n - 1].id);
        store_execution_list_free(list, n);
    }
    CHECK_INT(sizes[0], 3);
    CHECK_INT(sizes[1], 3);
    CHECK_INT(sizes[2], 2);
    CHECK_INT(sizes[3], 0);
    CHECK_INT(seen, 8);

    /* without a function: every execution of the owner, still newest first */
    store_execution_t *mine = NULL;
    size_t m = 0;
    CHECK_INT(S->ops->execution_list(S, u.id, "", 100, NULL, &mine, &m), STORE_OK);
    CHECK_INT(m, 9);
    for (size_t i = 0; mine && i + 1 < m; i++)
        CHECK(cmp_newest_first(&mine[i], &mine[i + 1]) < 0);
    store_execution_list_free(mine, m);

    /* another owner sees none of them */
    store_user_t other;
    make_user(&other, "page-other");
    store_execution_t *list = NULL;
    size_t n = 9;
    CHECK_INT(S->ops->execution_list(S, other.id, f.id, 10, NULL, &list, &n), STORE_OK);
    CHECK_INT(n, 0);
    store_execution_list_free(list, n);
}

TEST("rejects a pagination cursor the caller cannot see")
{
    store_user_t a, b;
    make_user(&a, "cur-a");
    make_user(&b, "cur-b");
    store_function_t fa, fb;
    make_function(&fa, a.id, "f");
    make_function(&fb, b.id, "f");
    store_execution_t ea, eb, *list = NULL;
    make_execution(&ea, &fa, 0);
    make_execution(&eb, &fb, 0);
    size_t n = 0;
    char ghost[ID_LEN + 1];
    id_new(ghost);
    CHECK_INT(S->ops->execution_list(S, a.id, fa.id, 10, ghost, &list, &n), STORE_EINVAL);
    CHECK_INT(S->ops->execution_list(S, a.id, fa.id, 10, eb.id, &list, &n), STORE_EINVAL);
    CHECK_INT(S->ops->execution_list(S, a.id, fa.id, 10, ea.id, &list, &n), STORE_OK);
    CHECK_INT(n, 0);
    store_execution_list_free(list, n);
}

TEST("clamps the execution list limit to 1..100")
{
    store_user_t u;
    make_user(&u, "clamp");
    store_function_t f;
    make_function(&f, u.id, "many");
    store_execution_t e;
    for (int i = 0; i < 101; i++)
        make_execution(&e, &f, 1700000000000 + i);
    store_execution_t *list = NULL;
    size_t n = 0;
    CHECK_INT(S->ops->execution_list(S, u.id, f.id, 0, "", &list, &n), STORE_OK);
    CHECK_INT(n, 1);
    CHECK(list && list[0].created_at == 1700000000100);
    store_execution_list_free(list, n);
    CHECK_INT(S->ops->execution_list(S, u.id, f.id, 1000, NULL, &list, &n), STORE_OK);
    CHECK_INT(n, 100);
    store_execution_list_free(list, n);
}

TEST("counts an owner's queued and running executions")
{
    store_user_t u, other;
    make_user(&u, "active");
    make_user(&other, "active-other");
    store_function_t f, g;
    make_function(&f, u.id, "f");
    make_function(&g, other.id, "g");
    store_execution_t q, r, d, o;
    make_execution(&q, &f, 0);
    make_execution(&r, &f, 0);
    make_execution(&d, &f, 0);
    make_execution(&o, &g, 0);
    str_copy(r.status, sizeof r.status, "running");
    CHECK_INT(S->ops->execution_update(S, &r), STORE_OK);
    str_copy(d.status, sizeof d.status, "timed_out");
    CHECK_INT(S->ops->execution_update(S, &d), STORE_OK);
    int64_t n = -1;
    CHECK_INT(S->ops->execution_count_active(S, u.id, &n), STORE_OK);
    CHECK_INT(n, 2);
    CHECK_INT(S->ops->execution_count_active(S, other.id, &n), STORE_OK);
    CHECK_INT(n, 1);
}

/* ---- counters ---- */

typedef struct {
    store_t *store;
    const char *key;
    int failures;
} incr_arg_t;

static void *incr_many(void *p)
{
    incr_arg_t *a = p;
    for (int i = 0; i < 10000; i++) {
        int64_t v;
        if (a->store->ops->counter_incr(a->store, a->key, 3600000, 1, &v, NULL) != STORE_OK)
            a->failures++;
    }
    return NULL;
}

TEST("counts to 20000 from two threads incrementing 10000 times each")
{
    char rnd[ID_LEN + 1], err[512] = "";
    id_new(rnd);
    char *key = xasprintf("race:%s", rnd);
    /* the second thread goes through its own handle, as another API replica would */
    store_t *other = store_open(&CFG, err, sizeof err);
    CHECK(other != NULL);
    if (!other)
        return;
    incr_arg_t a = {S, key, 0}, b = {other, key, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, incr_many, &a);
    pthread_create(&tb, NULL, incr_many, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_INT(a.failures + b.failures, 0);
    CHECK_INT(counter_read(key), 20000);
    store_close(other);
    free(key);
}

TEST("starts every counter window from zero")
{
    char rnd[ID_LEN + 1];
    id_new(rnd);
    char *key = xasprintf("window:%s", rnd);
    const int64_t window = 300;
    int64_t v = -1, reset = -1;
    /* start right after a boundary so the three increments share one window */
    CHECK_INT(S->ops->counter_incr(S, key, window, 0, &v, &reset), STORE_OK);
    CHECK(reset > 0 && reset <= window);
    sleep_ms(reset + 5);
    CHECK_INT(S->ops->counter_incr(S, key, window, 2, &v, &reset), STORE_OK);
    CHECK_INT(v, 2);
    CHECK_INT(S->ops->counter_incr(S, key, window, 1, &v, &reset), STORE_OK);
    CHECK_INT(v, 3);
    CHECK_INT(S->ops->counter_incr(S, key, window, 0, &v, &reset), STORE_OK);
    CHECK_INT(v, 3); /* delta 0 reads */
    CHECK(reset > 0 && reset <= window);
    sleep_ms(reset + 5);
    CHECK_INT(S->ops->counter_incr(S, key, window, 0, &v, &reset), STORE_OK);
    CHECK_INT(v, 0);
    CHECK_INT(S->ops->counter_incr(S, key, window, 1, &v, &reset), STORE_OK);
    CHECK_INT(v, 1);
    free(key);
}

/* ---- concurrency and durability ---- */

static void *mixed_work(void *p)
{
    int *failures = p;
    for (int i = 0; i < 10; i++) {
        store_user_t u = {0}, ug;
        char rnd[ID_LEN + 1];
        id_new(rnd);
        snprintf(u.email, sizeof u.email, "mixed-%s@example.io", rnd);
        store_function_t f = {0}, fg;
        store_execution_t e = {0}, eg, *list = NULL;
        size_t n = 0;
        int64_t c;
        int rc = S->ops->user_insert(S, &u);
        str_copy(f.owner, sizeof f.owner, u.id);
        str_copy(f.name, sizeof f.name, "f");
        str_copy(f.image, sizeof f.image, "faas/echo:1");
        rc |= S->ops->function_insert(S, &f);
        id_new(e.id);
        str_copy(e.function_id, sizeof e.function_id, f.id);
        str_copy(e.owner, sizeof e.owner, u.id);
        str_copy(e.status, sizeof e.status, "queued");
        rc |= S->ops->execution_insert(S, &e);
        str_copy(e.status, sizeof e.status, "succeeded");
        rc |= S->ops->execution_update(S, &e);
        rc |= S->ops->user_get_by_email(S, u.email, &ug);
        rc |= S->ops->function_get(S, u.id, f.id, &fg);
        store_function_clear(&fg);
        rc |= S->ops->execution_get(S, u.id, e.id, &eg);
        store_execution_clear(&eg);
        rc |= S->ops->execution_list(S, u.id, f.id, 10, NULL, &list, &n);
        store_execution_list_free(list, n);
        rc |= S->ops->counter_incr(S, "mixed", 3600000, 1, &c, NULL);
        if (i % 5 == 0)
            rc |= S->ops->user_delete(S, u.id);
        if (rc != STORE_OK)
            (*failures)++;
    }
    return NULL;
}

TEST("serves every operation from several threads at once")
{
    /* more threads than a small connection pool holds, so some wait their turn */
    enum { THREADS = 20 };
    pthread_t t[THREADS];
    int failures[THREADS] = {0};
    for (int i = 0; i < THREADS; i++)
        pthread_create(&t[i], NULL, mixed_work, &failures[i]);
    int total = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        total += failures[i];
    }
    CHECK_INT(total, 0);
    CHECK_INT(counter_read("mixed"), THREADS * 10);
}

TEST("keeps its data across close and reopen")
{
    store_user_t u, got;
    make_user(&u, "durable");
    store_function_t f, fgot;
    make_function(&f, u.id, "durable");
    store_execution_t e, egot;
    make_execution(&e, &f, 0);
    static const char bytes[] = "\x00\xff\x01binary";
    str_copy(e.status, sizeof e.status, "succeeded");
    e.out = (char *)bytes;
    e.out_len = sizeof bytes - 1;
    CHECK_INT(S->ops->execution_update(S, &e), STORE_OK);
    char *key = user_key(&u, "durable");
    int64_t v;
    CHECK_INT(S->ops->counter_incr(S, key, 3600000, 4, &v, NULL), STORE_OK);

    char err[512] = "";
    store_close(S);
    S = store_open(&CFG, err, sizeof err); /* migrations run again: a no-op */
    CHECK(S != NULL);
    if (!S) {
        fprintf(stderr, "  reopen: %s\n", err);
        exit(1);
    }
    CHECK_INT(S->ops->user_get(S, u.id, &got), STORE_OK);
    CHECK_STR(got.email, u.email);
    CHECK_INT(S->ops->function_get(S, u.id, f.id, &fgot), STORE_OK);
    CHECK_STR(fgot.name, "durable");
    store_function_clear(&fgot);
    CHECK_INT(S->ops->execution_get(S, u.id, e.id, &egot), STORE_OK);
    CHECK_STR(egot.status, "succeeded");
    CHECK_INT(egot.out_len, sizeof bytes - 1);
    CHECK(egot.out && memcmp(egot.out, bytes, sizeof bytes - 1) == 0);
    store_execution_clear(&egot);
    CHECK_INT(counter_read(key), 4);
    free(key);
}

T_MAIN_WITH(setup, teardown)
