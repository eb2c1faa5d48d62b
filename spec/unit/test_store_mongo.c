/* Driver-specific tests of the mongodb store (the shared behaviour is spec/unit/test_store.c):
 * injection strings are plain values, an unreachable server answers STORE_EUNAVAIL quickly, a
 * restarted server is used again without reopening the store.
 *
 * Server: FAAS_TEST_MONGO_URI when set, else a FerretDB started here through
 * scripts/ferretdb.sh on a free loopback port. The stop/restart tests always use a FerretDB of
 * their own (they must be able to stop it). When no server can be started the tests print
 * "skipped" and pass, unless FAAS_TEST_STORE=mongodb asks for this driver: then they fail. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "store.h"
#include "t.h"

#define FERRETDB "scripts/ferretdb.sh"

typedef struct {
    int pid;
    int port;
    char dir[256];
} ferret_t;

static ferret_t own;              /* a FerretDB started here (pid 0: none) */
static char uri[1024];            /* the server the injection tests use */
static const char *skip_reason;   /* set when no server could be had */
static store_t *s;                /* opened on `uri`, database of this run */
static char dbname[64];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts FerretDB on f->port with its data in f->dir. 0 or -1. */
static int ferret_start(ferret_t *f)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s start %d '%s'", FERRETDB, f->port, f->dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[64] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = '\0';
    int rc = pclose(p);
    char *end;
    long pid = strtol(line, &end, 10);
    if (rc != 0 || end == line || pid <= 0)
        return -1;
    f->pid = (int)pid;
    return 0;
}

static void ferret_stop(ferret_t *f)
{
    if (f->pid <= 0)
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "%s stop %d", FERRETDB, f->pid);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot stop ferretdb pid %d\n", f->pid);
    f->pid = 0;
}

/* A fresh FerretDB in a fresh temp dir on a free port. 0 or -1. */
static int ferret_new(ferret_t *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/faas-ferret-XXXXXX");
    if (!mkdtemp(f->dir) || access(FERRETDB, X_OK) != 0)
        return -1;
    f->port = free_port();
    return f->port > 0 ? ferret_start(f) : -1;
}

static void ferret_destroy(ferret_t *f)
{
    ferret_stop(f);
    if (f->dir[0] && strncmp(f->dir, "/tmp/faas-ferret-", 17) == 0) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove '%s'\n", f->dir);
    }
    f->dir[0] = '\0';
}

static bool required(void)
{
    const char *d = getenv("FAAS_TEST_STORE");
    return d && strcmp(d, "mongodb") == 0;
}

static store_t *open_store(const char *u, int64_t timeout_ms, char *err, size_t errlen)
{
    config_store_t cfg;
    memset(&cfg, 0, sizeof cfg);
    str_copy(cfg.driver, sizeof cfg.driver, "mongodb");
    str_copy(cfg.uri, sizeof cfg.uri, u);
    str_copy(cfg.database, sizeof cfg.database, dbname);
    cfg.timeout_ms = timeout_ms;
    return store_open(&cfg, err, errlen);
}

static int setup(void)
{
    char err[512] = "";
    snprintf(dbname, sizeof dbname, "faas_test_mongo_%d_%lld", (int)getpid(),
             (long long)(time_now_ms() % 100000000));
    const char *env = getenv("FAAS_TEST_MONGO_URI");
    if (env && *env) {
        str_copy(uri, sizeof uri, env);
    } else if (ferret_new(&own) == 0) {
        snprintf(uri, sizeof uri, "mongodb://127.0.0.1:%d", own.port);
    } else {
        skip_reason = "no FAAS_TEST_MONGO_URI and ferretdb could not be started "
                      "(run scripts/ferretdb.sh build)";
        ferret_destroy(&own);
    }
    if (!skip_reason) {
        s = open_store(uri, 2000, err, sizeof err);
        if (!s) {
            fprintf(stderr, "cannot open the mongodb store: %s\n", err);
            return -1;
        }
    }
    if (skip_reason) {
        fprintf(stderr, "skipped: %s\n", skip_reason);
        printf("skipped: %s\n", skip_reason);
        if (required())
            return -1; /* FAAS_TEST_STORE=mongodb: a missing server is a failure */
    }
    return 0;
}

static void teardown(void)
{
    store_close(s);
    ferret_destroy(&own);
}

#define NEED_SERVER()                                                                      \
    do {                                                                                   \
        if (skip_reason) {                                                                 \
            fprintf(stderr, "skipped: %s\n", skip_reason);                                 \
            return;                                                                        \
        }                                                                                  \
    } while (0)

static void user_new(store_t *st, const char *email, store_user_t *u)
{
    memset(u, 0, sizeof *u);
    str_copy(u->email, sizeof u->email, email);
    str_copy(u->pwhash, sizeof u->pwhash, "$argon2id$v=19$m=19456,t=2,p=1$x$y");
    CHECK_INT(st->ops->user_insert(st, u), STORE_OK);
}

static void execution_new(store_execution_t *e, const char *fn, const char *owner,
                          int64_t created_at)
{
    memset(e, 0, sizeof *e);
    id_new(e->id);
    str_copy(e->function_id, sizeof e->function_id, fn);
    str_copy(e->owner, sizeof e->owner, owner);
    str_copy(e->status, sizeof e->status, "queued");
    e->duration_ms = -1;
    e->created_at = created_at;
}

static const char *const injections[] = {
    "{\"$gt\":\"\"}", "{\"$ne\":null}", "$where", "{\"$where\":\"sleep(1000)\"}",
    "'; db.users.drop(); '", "{\"$regex\":\".*\"}", "a.b", "$",
};
#define N_INJ (sizeof injections / sizeof *injections)

TEST("an operator-shaped email is just an unknown email")
{
    NEED_SERVER();
    store_user_t victim, got;
    user_new(s, "victim@example.org", &victim);
    for (size_t i = 0; i < N_INJ; i++)
        CHECK_INT(s->ops->user_get_by_email(s, injections[i], &got), STORE_ENOTFOUND);

    store_user_t odd;
    user_new(s, "{\"$gt\":\"\"}", &odd);
    CHECK_INT(s->ops->user_get_by_email(s, "{\"$GT\":\"\"}", &got), STORE_OK);
    CHECK_STR(got.id, odd.id);
    CHECK_STR(got.email, "{\"$gt\":\"\"}");
    CHECK_INT(s->ops->user_get_by_email(s, "victim@example.org", &got), STORE_OK);
    CHECK_STR(got.id, victim.id);
    CHECK_INT(s->ops->user_get_by_email(s, "{\"$ne\":null}", &got), STORE_ENOTFOUND);
    CHECK_INT(s->ops->user_delete(s, odd.id), STORE_OK);
    CHECK_INT(s->ops->user_delete(s, victim.id), STORE_OK);
}

TEST("emails with dots and dollars are values, not keys")
{
    NEED_SERVER();
    store_user_t a, b, got, dup;
    user_new(s, "first.last$tag@ex.ample.org", &a);
    user_new(s, "$dollar.first@example.org", &b);
    CHECK_INT(s->ops->user_get_by_email(s, "FIRST.LAST$TAG@EX.AMPLE.ORG", &got), STORE_OK);
    CHECK_STR(got.id, a.id);
    CHECK_STR(got.email, "first.last$tag@ex.ample.org");
    CHECK_INT(s->ops->user_get_by_email(s, "$dollar.first@example.org", &got), STORE_OK);
    CHECK_STR(got.id, b.id);
    memset(&dup, 0, sizeof dup);
    str_copy(dup.email, sizeof dup.email, "First.Last$Tag@Ex.Ample.org");
    CHECK_INT(s->ops->user_insert(s, &dup), STORE_EEXIST);
    CHECK_INT(s->ops->user_delete(s, a.id), STORE_OK);
    CHECK_INT(s->ops->user_delete(s, b.id), STORE_OK);
}

TEST("function names, images and env with operators are stored and read back literally")
{
    NEED_SERVER();
    store_user_t u;
    user_new(s, "functions-injection@example.org", &u);
    char ids[N_INJ][ID_LEN + 1];
    for (size_t i = 0; i < N_INJ; i++) {
        store_function_t f;
        memset(&f, 0, sizeof f);
        str_copy(f.owner, sizeof f.owner, u.id);
        str_copy(f.name, sizeof f.name, injections[i]);
        str_copy(f.image, sizeof f.image, injections[(i + 1) % N_INJ]);
        f.env_json = "{\"$set\":{\"a.b\":\"$where\"},\"X\":\"{\\\"$gt\\\":1}\"}";
        CHECK_INT(s->ops->function_insert(s, &f), STORE_OK);
        str_copy(ids[i], sizeof ids[i], f.id);
    }
    for (size_t i = 0; i < N_INJ; i++) {
        store_function_t got;
        CHECK_INT(s->ops->function_get(s, u.id, ids[i], &got), STORE_OK);
        CHECK_STR(got.name, injections[i]);
        CHECK_STR(got.image, injections[(i + 1) % N_INJ]);
        CHECK_STR(got.env_json, "{\"$set\":{\"a.b\":\"$where\"},\"X\":\"{\\\"$gt\\\":1}\"}");
        store_function_clear(&got);
    }
    /* "$where" is one name among others: only its exact twin collides */
    store_function_t dup;
    memset(&dup, 0, sizeof dup);
    str_copy(dup.owner, sizeof dup.owner, u.id);
    str_copy(dup.name, sizeof dup.name, "$where");
    str_copy(dup.image, sizeof dup.image, "busybox:latest");
    CHECK_INT(s->ops->function_insert(s, &dup), STORE_EEXIST);
    str_copy(dup.name, sizeof dup.name, "{\"$where\":1}");
    CHECK_INT(s->ops->function_insert(s, &dup), STORE_OK);
    int64_t n = 0;
    CHECK_INT(s->ops->function_count(s, u.id, &n), STORE_OK);
    CHECK_INT(n, N_INJ + 1);
    store_function_t *list = NULL;
    size_t len = 0;
    CHECK_INT(s->ops->function_list(s, u.id, &list, &len), STORE_OK);
    CHECK_INT(len, N_INJ + 1);
    store_function_list_free(list, len);
    CHECK_INT(s->ops->user_delete(s, u.id), STORE_OK);
}

TEST("ids, owners and cursors that are operator strings match nothing")
{
    NEED_SERVER();
    store_user_t u, got;
    user_new(s, "ids-injection@example.org", &u);
    store_function_t f, gf;
    memset(&f, 0, sizeof f);
    str_copy(f.owner, sizeof f.owner, u.id);
    str_copy(f.name, sizeof f.name, "fn");
    str_copy(f.image, sizeof f.image, "busybox:latest");
    CHECK_INT(s->ops->function_insert(s, &f), STORE_OK);
    store_execution_t e, ge;
    execution_new(&e, f.id, u.id, 0);
    CHECK_INT(s->ops->execution_insert(s, &e), STORE_OK);
    for (size_t i = 0; i < N_INJ; i++) {
        const char *x = injections[i];
        CHECK_INT(s->ops->user_get(s, x, &got), STORE_ENOTFOUND);
        CHECK_INT(s->ops->function_get(s, x, f.id, &gf), STORE_ENOTFOUND);
        CHECK_INT(s->ops->function_get(s, u.id, x, &gf), STORE_ENOTFOUND);
        CHECK_INT(s->ops->function_delete(s, x, f.id), STORE_ENOTFOUND);
        CHECK_INT(s->ops->execution_get(s, x, e.id, &ge), STORE_ENOTFOUND);
        CHECK_INT(s->ops->execution_get(s, u.id, x, &ge), STORE_ENOTFOUND);
        CHECK_INT(s->ops->user_delete(s, x), STORE_ENOTFOUND);
        store_execution_t *list = NULL;
        size_t n = 99;
        CHECK_INT(s->ops->execution_list(s, u.id, f.id, 10, x, &list, &n), STORE_EINVAL);
        CHECK_INT(s->ops->execution_list(s, x, f.id, 10, NULL, &list, &n), STORE_OK);
        CHECK_INT(n, 0);
        store_execution_list_free(list, n);
    }
    CHECK_INT(s->ops->function_get(s, u.id, f.id, &gf), STORE_OK);
    store_function_clear(&gf);
    CHECK_INT(s->ops->execution_get(s, u.id, e.id, &ge), STORE_OK);
    store_execution_clear(&ge);
    CHECK_INT(s->ops->user_delete(s, u.id), STORE_OK);
}

TEST("execution fields with operators and raw bytes are stored literally")
{
    NEED_SERVER();
    store_user_t u;
    user_new(s, "exec-injection@example.org", &u);
    char fn[ID_LEN + 1];
    id_new(fn);
    store_execution_t e, got;
    execution_new(&e, fn, u.id, 1000);
    CHECK_INT(s->ops->execution_insert(s, &e), STORE_OK);
    static const char out[] = "{\"$gt\":\"\"}\0$where\xff\xfe.";
    static const char errb[] = "\0\0$";
    str_copy(e.status, sizeof e.status, "failed");
    str_copy(e.reason, sizeof e.reason, "{\"$set\":{\"status\":\"queued\"}}");
    str_copy(e.worker, sizeof e.worker, "$where");
    e.has_exit_code = true;
    e.exit_code = 2;
    e.result = "{\"$ne\":null} \xc3\x28 not utf-8";
    e.out = (char *)out;
    e.out_len = sizeof out - 1;
    e.err = (char *)errb;
    e.err_len = sizeof errb - 1;
    e.duration_ms = 7;
    CHECK_INT(s->ops->execution_update(s, &e), STORE_OK);
    CHECK_INT(s->ops->execution_get(s, u.id, e.id, &got), STORE_OK);
    CHECK_STR(got.status, "failed");
    CHECK_STR(got.reason, "{\"$set\":{\"status\":\"queued\"}}");
    CHECK_STR(got.worker, "$where");
    CHECK_STR(got.result, "{\"$ne\":null} \xc3\x28 not utf-8");
    CHECK_INT(got.out_len, sizeof out - 1);
    CHECK(got.out && memcmp(got.out, out, sizeof out - 1) == 0);
    CHECK_INT(got.err_len, sizeof errb - 1);
    CHECK(got.err && memcmp(got.err, errb, sizeof errb - 1) == 0);
    CHECK_INT(got.exit_code, 2);
    store_execution_clear(&got);
    int64_t active = -1;
    CHECK_INT(s->ops->execution_count_active(s, u.id, &active), STORE_OK);
    CHECK_INT(active, 0);
    CHECK_INT(s->ops->user_delete(s, u.id), STORE_OK);
    CHECK_INT(s->ops->execution_get(s, NULL, e.id, &got), STORE_ENOTFOUND);
}

TEST("a counter key with operator text counts only itself")
{
    NEED_SERVER();
    char base[64];
    id_new(base);
    int64_t v = -1, reset = -1;
    for (size_t i = 0; i < N_INJ; i++) {
        char key[128];
        snprintf(key, sizeof key, "u:%s:%s", base, injections[i]);
        for (size_t k = 0; k <= i; k++)
            CHECK_INT(s->ops->counter_incr(s, key, 60000, 1, &v, &reset), STORE_OK);
        CHECK_INT(v, (int64_t)i + 1);
    }
    char plain[128];
    snprintf(plain, sizeof plain, "u:%s:plain", base);
    CHECK_INT(s->ops->counter_incr(s, plain, 60000, 0, &v, &reset), STORE_OK);
    CHECK_INT(v, 0);
    CHECK(reset > 0 && reset <= 60000);
}

typedef struct {
    const char *key;
    int64_t values[25];
    int failures;
} incr_arg_t;

static void *incr_thread(void *p)
{
    incr_arg_t *a = p;
    for (int i = 0; i < 25; i++) {
        int64_t reset;
        if (s->ops->counter_incr(s, a->key, 3600000, 1, &a->values[i], &reset) != STORE_OK)
            a->failures++;
    }
    return NULL;
}

TEST("concurrent increments from many threads each get a distinct value")
{
    NEED_SERVER();
    char key[64];
    id_new(key);
    incr_arg_t args[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        memset(&args[i], 0, sizeof args[i]);
        args[i].key = key;
        pthread_create(&th[i], NULL, incr_thread, &args[i]);
    }
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    bool seen[201] = {false};
    int failures = 0, dups = 0;
    for (int i = 0; i < 8; i++) {
        failures += args[i].failures;
        for (int k = 0; k < 25; k++) {
            int64_t v = args[i].values[k];
            if (v < 1 || v > 200 || seen[v])
                dups++;
            else
                seen[v] = true;
        }
    }
    CHECK_INT(failures, 0);
    CHECK_INT(dups, 0);
    int64_t v = 0, reset;
    CHECK_INT(s->ops->counter_incr(s, key, 3600000, 0, &v, &reset), STORE_OK);
    CHECK_INT(v, 200);
}

TEST("reopening a store on an existing database keeps its data and its unique indexes")
{
    NEED_SERVER();
    store_user_t u, got, dup;
    user_new(s, "reopen@example.org", &u);
    char err[512] = "";
    for (int i = 0; i < 2; i++) {
        store_t *again = open_store(uri, 2000, err, sizeof err);
        if (!again)
            fprintf(stderr, "  reopen: %s\n", err);
        CHECK(again != NULL);
        if (!again)
            break;
        CHECK_INT(again->ops->user_get(again, u.id, &got), STORE_OK);
        memset(&dup, 0, sizeof dup);
        str_copy(dup.email, sizeof dup.email, "REOPEN@example.org");
        CHECK_INT(again->ops->user_insert(again, &dup), STORE_EEXIST);
        store_close(again);
    }
    CHECK_INT(s->ops->user_delete(s, u.id), STORE_OK);
}

TEST("open fails with a message when nothing listens")
{
    int port = free_port();
    char u[128], err[512] = "";
    snprintf(u, sizeof u, "mongodb://127.0.0.1:%d", port);
    store_t *st = open_store(u, 300, err, sizeof err);
    CHECK(st == NULL);
    CHECK(err[0] != '\0');
    store_close(st);
}

TEST("a malformed uri is refused without echoing its password")
{
    char err[512] = "";
    store_t *st = open_store("mongodb://admin:s3cr3tpw@127.0.0.1:notaport", 300, err, sizeof err);
    CHECK(st == NULL);
    CHECK(err[0] != '\0');
    CHECK(strstr(err, "s3cr3tpw") == NULL);
    store_close(st);
}

/* A FerretDB of the test's own plus a store on it (both NULL-ish when none can be had). */
static store_t *fault_store(ferret_t *f)
{
    if (ferret_new(f) != 0) {
        fprintf(stderr, "skipped: ferretdb could not be started for the fault test\n");
        CHECK(!required());
        ferret_destroy(f);
        return NULL;
    }
    char u[128], err[512] = "";
    snprintf(u, sizeof u, "mongodb://127.0.0.1:%d", f->port);
    store_t *st = open_store(u, 2000, err, sizeof err);
    if (!st)
        fprintf(stderr, "cannot open: %s\n", err);
    CHECK(st != NULL);
    return st;
}

TEST("answers STORE_EUNAVAIL within 3 s while the server is down")
{
    ferret_t f;
    store_t *st = fault_store(&f);
    if (!st) {
        ferret_destroy(&f);
        return;
    }
    store_user_t u, got;
    user_new(st, "down@example.org", &u);
    ferret_stop(&f);
    /* the first call meets the dead connection, the next ones wait for server selection */
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = time_mono_ns();
        CHECK_INT(st->ops->user_get(st, u.id, &got), STORE_EUNAVAIL);
        uint64_t ms = (time_mono_ns() - t0) / 1000000;
        if (ms >= 3000)
            fprintf(stderr, "  call %d took %llu ms\n", i, (unsigned long long)ms);
        CHECK(ms < 3000);
    }
    CHECK_INT(st->ops->ping(st), STORE_EUNAVAIL);
    int64_t v, reset;
    CHECK_INT(st->ops->counter_incr(st, "k", 1000, 1, &v, &reset), STORE_EUNAVAIL);
    store_close(st);
    ferret_destroy(&f);
}

TEST("works again after the server restarts, without reopening the store")
{
    ferret_t f;
    store_t *st = fault_store(&f);
    if (!st) {
        ferret_destroy(&f);
        return;
    }
    store_user_t u, got;
    user_new(st, "restart@example.org", &u);
    ferret_stop(&f);
    CHECK_INT(st->ops->user_get(st, u.id, &got), STORE_EUNAVAIL);
    CHECK(ferret_start(&f) == 0);
    CHECK_INT(st->ops->user_get(st, u.id, &got), STORE_OK);
    CHECK_STR(got.email, "restart@example.org");
    store_user_t v;
    user_new(st, "after-restart@example.org", &v);
    CHECK_INT(st->ops->ping(st), STORE_OK);
    store_close(st);
    ferret_destroy(&f);
}

T_MAIN_WITH(setup, teardown)
