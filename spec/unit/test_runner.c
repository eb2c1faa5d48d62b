/* The stream demultiplexer, the create body, and real runs against the local Docker engine
 * with the faas-test/<name> images (built by scripts/test-images.sh in the setup). Every
 * container here carries faas.worker=<this test's worker id>; teardown reaps only those. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "docker.h"
#include "runner.h"
#include "t.h"
#include "util.h"

static const char *sock = "/var/run/docker.sock";
static const char *api = "v1.41";
static docker_t *dk;
static char worker_id[64];

static int setup(void)
{
    if (getenv("DOCKER_SOCKET"))
        sock = getenv("DOCKER_SOCKET");
    snprintf(worker_id, sizeof worker_id, "runner-test-%d", (int)getpid());
    if (system("scripts/test-images.sh >&2") != 0) {
        fprintf(stderr, "cannot build the test images (scripts/test-images.sh)\n");
        return -1;
    }
    dk = docker_new(sock, api);
    if (!dk || docker_ping(dk) != DOCKER_OK) {
        fprintf(stderr, "no docker engine at '%s'\n", sock);
        return -1;
    }
    return 0;
}

static void teardown(void)
{
    runner_reap(dk, worker_id, NULL, 0);
    docker_free(dk);
}

/* ---- demux ---- */

typedef struct {
    buf_t s[3];
    int calls;
    int zero_len_calls;
} collect_t;

static void collect(void *arg, int stream, const unsigned char *p, size_t len)
{
    collect_t *c = arg;
    c->calls++;
    if (len == 0)
        c->zero_len_calls++;
    buf_append(&c->s[stream >= 1 && stream <= 2 ? stream : 0], p, len);
}

static void collect_free(collect_t *c)
{
    for (int i = 0; i < 3; i++)
        buf_free(&c->s[i]);
}

static void frame(buf_t *b, int stream, const char *p, size_t n)
{
    unsigned char h[8] = {(unsigned char)stream, 0, 0, 0, (unsigned char)(n >> 24),
                          (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
    buf_append(b, h, 8);
    buf_append(b, p, n);
}

TEST("demux reassembles frames split at every byte offset")
{
    buf_t in = {0};
    char big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    frame(&in, 1, "hello ", 6);
    frame(&in, 2, "oops", 4);
    frame(&in, 1, "", 0);
    frame(&in, 1, big, sizeof big);
    frame(&in, 2, "\0\1\2", 3);
    buf_t want1 = {0};
    buf_append(&want1, "hello ", 6);
    buf_append(&want1, big, sizeof big);
    for (size_t k = 0; k <= in.len; k++) {
        runner_demux_t d = {0};
        collect_t c = {0};
        runner_demux_feed(&d, (unsigned char *)in.data, k, collect, &c);
        runner_demux_feed(&d, (unsigned char *)in.data + k, in.len - k, collect, &c);
        CHECK_INT(c.s[1].len, want1.len);
        CHECK(c.s[1].len == want1.len && memcmp(c.s[1].data, want1.data, want1.len) == 0);
        CHECK_INT(c.s[2].len, 7);
        CHECK(c.s[2].len == 7 && memcmp(c.s[2].data, "oops\0\1\2", 7) == 0);
        CHECK_INT(c.s[0].len, 0);
        CHECK_INT(d.left, 0);
        CHECK_INT(d.hdr_have, 0);
        collect_free(&c);
    }
    /* One byte at a time splits every header and every payload. */
    runner_demux_t d = {0};
    collect_t c = {0};
    for (size_t k = 0; k < in.len; k++)
        runner_demux_feed(&d, (unsigned char *)in.data + k, 1, collect, &c);
    CHECK(c.s[1].len == want1.len && memcmp(c.s[1].data, want1.data, want1.len) == 0);
    CHECK_INT(c.s[2].len, 7);
    collect_free(&c);
    buf_free(&in);
    buf_free(&want1);
}

TEST("demux emits nothing for zero-length frames")
{
    buf_t in = {0};
    frame(&in, 1, "", 0);
    frame(&in, 2, "", 0);
    frame(&in, 1, "x", 1);
    frame(&in, 1, "", 0);
    runner_demux_t d = {0};
    collect_t c = {0};
    runner_demux_feed(&d, (unsigned char *)in.data, in.len, collect, &c);
    CHECK_INT(c.zero_len_calls, 0);
    CHECK_INT(c.calls, 1);
    CHECK_STR(c.s[1].data, "x");
    CHECK_INT(c.s[2].len, 0);
    collect_free(&c);
    buf_free(&in);
}

TEST("demux handles many frames in one read")
{
    buf_t in = {0}, want = {0};
    for (int i = 0; i < 1000; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "line %d\n", i);
        frame(&in, 1 + i % 2, line, (size_t)n);
        if (i % 2 == 0)
            buf_append(&want, line, (size_t)n);
    }
    runner_demux_t d = {0};
    collect_t c = {0};
    runner_demux_feed(&d, (unsigned char *)in.data, in.len, collect, &c);
    CHECK_INT(c.calls, 1000);
    CHECK_INT(c.s[1].len, want.len);
    CHECK(c.s[1].len == want.len && memcmp(c.s[1].data, want.data, want.len) == 0);
    CHECK(strstr(c.s[2].data, "line 999\n") != NULL);
    collect_free(&c);
    buf_free(&in);
    buf_free(&want);
}

TEST("demux continues a payload split across reads with a large length")
{
    /* A 70000-byte frame (length bytes beyond the low one) delivered in three reads. */
    size_t n = 70000;
    char *p = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 7);
    buf_t in = {0};
    frame(&in, 2, p, n);
    runner_demux_t d = {0};
    collect_t c = {0};
    runner_demux_feed(&d, (unsigned char *)in.data, 5, collect, &c);
    runner_demux_feed(&d, (unsigned char *)in.data + 5, 40000, collect, &c);
    CHECK_INT(d.left, n - (40005 - 8));
    runner_demux_feed(&d, (unsigned char *)in.data + 40005, in.len - 40005, collect, &c);
    CHECK_INT(c.s[2].len, n);
    CHECK(c.s[2].len == n && memcmp(c.s[2].data, p, n) == 0);
    collect_free(&c);
    buf_free(&in);
    free(p);
}

/* ---- create body ---- */

static runner_spec_t spec_for(const char *image, char exec_id[ID_LEN + 1])
{
    id_new(exec_id);
    runner_spec_t s = {
        .execution_id = exec_id,
        .function_id = "fn-test",
        .worker_id = worker_id,
        .image = image,
        .timeout_ms = 30000,
        .memory = 64 << 20,
        .nano_cpus = 1000000000,
        .pids = 64,
        .nofile = 256,
        .tmpfs = 16 << 20,
        .output_limit = 1 << 20,
        .pull_policy = "never",
    };
    return s;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

TEST("create body has every hardening setting")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    s.memory = 48 << 20;
    s.nano_cpus = 500000000;
    s.pids = 33;
    s.nofile = 128;
    s.tmpfs = 8 << 20;
    char *body = runner_create_body(&s);
    cJSON *j = cJSON_Parse(body);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetStringValue(get(j, "Image")), "faas-test/echo:latest");
    CHECK(get(j, "Cmd") == NULL);
    CHECK(get(j, "Entrypoint") == NULL);
    CHECK(cJSON_IsTrue(get(j, "OpenStdin")));
    CHECK(cJSON_IsTrue(get(j, "StdinOnce")));
    CHECK(cJSON_IsTrue(get(j, "AttachStdin")));
    CHECK(cJSON_IsTrue(get(j, "AttachStdout")));
    CHECK(cJSON_IsTrue(get(j, "AttachStderr")));
    CHECK(cJSON_IsFalse(get(j, "Tty")));
    const cJSON *l = get(j, "Labels");
    CHECK_STR(cJSON_GetStringValue(get(l, "faas.managed")), "true");
    CHECK_STR(cJSON_GetStringValue(get(l, "faas.execution")), eid);
    CHECK_STR(cJSON_GetStringValue(get(l, "faas.function")), "fn-test");
    CHECK_STR(cJSON_GetStringValue(get(l, "faas.worker")), worker_id);
    const cJSON *hc = get(j, "HostConfig");
    CHECK_STR(cJSON_GetStringValue(get(hc, "NetworkMode")), "none");
    const cJSON *cap = get(hc, "CapDrop");
    CHECK(cJSON_GetArraySize(cap) == 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(cap, 0)), "ALL");
    CHECK(get(hc, "CapAdd") == NULL);
    const cJSON *so = get(hc, "SecurityOpt");
    CHECK(cJSON_GetArraySize(so) == 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(so, 0)), "no-new-privileges:true");
    CHECK(!cJSON_IsTrue(get(hc, "Privileged")));
    CHECK_INT(cJSON_GetNumberValue(get(hc, "Memory")), 48 << 20);
    CHECK_INT(cJSON_GetNumberValue(get(hc, "MemorySwap")), 48 << 20);
    CHECK_INT(cJSON_GetNumberValue(get(hc, "NanoCpus")), 500000000);
    CHECK_INT(cJSON_GetNumberValue(get(hc, "PidsLimit")), 33);
    CHECK(cJSON_IsTrue(get(hc, "ReadonlyRootfs")));
    const char *tmp = cJSON_GetStringValue(get(get(hc, "Tmpfs"), "/tmp"));
    CHECK(tmp && strstr(tmp, "noexec") && strstr(tmp, "nosuid"));
    CHECK(tmp && strstr(tmp, "size=8388608"));
    const cJSON *ul = get(hc, "Ulimits");
    CHECK(cJSON_GetArraySize(ul) == 1);
    const cJSON *u = cJSON_GetArrayItem(ul, 0);
    CHECK_STR(cJSON_GetStringValue(get(u, "Name")), "nofile");
    CHECK_INT(cJSON_GetNumberValue(get(u, "Soft")), 128);
    CHECK_INT(cJSON_GetNumberValue(get(u, "Hard")), 128);
    CHECK(cJSON_IsTrue(get(hc, "Init")));
    CHECK_STR(cJSON_GetStringValue(get(get(hc, "LogConfig"), "Type")), "none");
    CHECK(cJSON_IsFalse(get(hc, "AutoRemove")));
    /* Never a bind mount (of the docker socket or anything else). */
    CHECK(get(hc, "Binds") == NULL);
    CHECK(get(hc, "Mounts") == NULL);
    CHECK(strstr(body, "docker.sock") == NULL);
    cJSON_Delete(j);
    free(body);

    s.network = "bridge";
    body = runner_create_body(&s);
    j = cJSON_Parse(body);
    CHECK_STR(cJSON_GetStringValue(get(get(j, "HostConfig"), "NetworkMode")), "bridge");
    cJSON_Delete(j);
    free(body);
}

TEST("create body carries env vars and rejects a malformed env")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/env:latest", eid);
    s.env_json = "{\"GREETING\":\"hello world\",\"N\":\"1=2\"}";
    char *body = runner_create_body(&s);
    cJSON *j = cJSON_Parse(body);
    const cJSON *env = get(j, "Env");
    CHECK(cJSON_GetArraySize(env) == 2);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(env, 0)), "GREETING=hello world");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetArrayItem(env, 1)), "N=1=2");
    cJSON_Delete(j);
    free(body);
    s.env_json = "[1,2]";
    CHECK(runner_create_body(&s) == NULL);
    s.env_json = "{\"A=B\":\"x\"}";
    CHECK(runner_create_body(&s) == NULL);
    s.env_json = "{\"A\":{\"nested\":1}}";
    CHECK(runner_create_body(&s) == NULL);
}

/* ---- real runs ---- */

static bool container_gone(const char *id)
{
    bool oom;
    int ec;
    return id[0] && docker_container_inspect_state(dk, id, &oom, &ec) == DOCKER_ENOTFOUND;
}

static void run(const runner_spec_t *s, runner_result_t *r)
{
    runner_run(dk, sock, api, s, r, false, NULL, NULL);
    if (strcmp(r->status, "succeeded") != 0)
        fprintf(stderr, "  [%s] status=%s reason=%s exit=%d message=%s\n", s->image, r->status,
                r->reason, r->exit_code, r->message);
}

TEST("echo returns its input byte for byte, all 256 byte values")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    unsigned char in[512];
    for (int i = 0; i < 512; i++)
        in[i] = (unsigned char)(i % 256);
    s.input = in;
    s.input_len = sizeof in;
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.reason, "");
    CHECK_INT(r.exit_code, 0);
    CHECK_INT(r.out.len, sizeof in);
    CHECK(r.out.len == sizeof in && memcmp(r.out.data, in, sizeof in) == 0);
    CHECK_INT(r.err.len, 0);
    /* result: the same bytes without control characters other than \n and \t. */
    buf_t want = {0};
    for (size_t i = 0; i < sizeof in; i++)
        if ((in[i] >= 0x20 && in[i] != 0x7f) || in[i] == '\n' || in[i] == '\t')
            buf_append(&want, &in[i], 1);
    CHECK_INT(r.result.len, want.len);
    CHECK(r.result.len == want.len && memcmp(r.result.data, want.data, want.len) == 0);
    CHECK(r.started_at > 0 && r.finished_at >= r.started_at);
    CHECK(r.duration_ms >= 0);
    CHECK(container_gone(r.container_id));
    buf_free(&want);
    runner_result_clear(&r);
}

TEST("echo returns 1 MiB of input byte for byte without deadlocking")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    size_t n = 1 << 20;
    unsigned char *in = xmalloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        in[i] = (unsigned char)x;
    }
    s.input = in;
    s.input_len = n;
    s.output_limit = 2 << 20;
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.reason, "");
    CHECK_INT(r.out.len, n);
    CHECK(r.out.len == n && memcmp(r.out.data, in, n) == 0);
    runner_result_clear(&r);
    free(in);
}

TEST("non-zero exit is failed with the exit code and stderr captured")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/fail:latest", eid);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "failed");
    CHECK_INT(r.exit_code, 3);
    CHECK_STR(r.out.data, "out\n");
    CHECK_STR(r.err.data, "err\n");
    CHECK(!r.transient);
    CHECK(container_gone(r.container_id));
    runner_result_clear(&r);
}

TEST("interleaved stdout and stderr keep their order in result")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/interleave:latest", eid);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.result.data, "out1\nerr1\nout2\nerr2\nout3\nerr3\nout4\nerr4\n");
    CHECK_STR(r.out.data, "out1\nout2\nout3\nout4\n");
    CHECK_STR(r.err.data, "err1\nerr2\nerr3\nerr4\n");
    runner_result_clear(&r);
}

TEST("kills a function at its timeout and removes the container")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/sleep:latest", eid);
    s.timeout_ms = 1000;
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "timed_out");
    CHECK(!r.transient);
    CHECK(r.container_id[0] != '\0');
    CHECK(container_gone(r.container_id));
    runner_result_clear(&r);
}

static void count_keepalive(void *arg)
{
    (*(int *)arg)++;
}

TEST("calls keepalive while a long run waits and defers removal when asked")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/sleep:latest", eid);
    s.timeout_ms = 6000;
    runner_result_t r;
    int calls = 0;
    runner_run(dk, sock, api, &s, &r, true, count_keepalive, &calls);
    CHECK_STR(r.status, "timed_out");
    CHECK(calls >= 1);
    /* Deferred: still there until the caller removes it. */
    CHECK(r.container_id[0] && !container_gone(r.container_id));
    CHECK_INT(docker_container_remove(dk, r.container_id, true), DOCKER_OK);
    CHECK(container_gone(r.container_id));
    runner_result_clear(&r);
}

typedef struct {
    runner_spec_t spec;
    runner_result_t res;
} bg_run_t;

static void *bg_run(void *arg)
{
    bg_run_t *b = arg;
    docker_t *own = docker_new(sock, api); /* one docker_t per thread */
    runner_run(own, sock, api, &b->spec, &b->res, false, NULL, NULL);
    docker_free(own);
    return NULL;
}

TEST("a fork bomb is held by the pids limit and ends at the timeout")
{
    char eid[ID_LEN + 1];
    bg_run_t b = {.spec = spec_for("faas-test/forkbomb:latest", eid)};
    b.spec.pids = 32;
    b.spec.timeout_ms = 6000;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bg_run, &b) == 0);
    /* From outside: sample the container's cgroup task count while the bomb runs. */
    char *filter = xasprintf("faas.execution=%s", eid);
    int64_t max_tasks = 0, limit = 0;
    int samples = 0;
    uint64_t until = time_mono_ns() + 20ULL * 1000000000ULL;
    while (time_mono_ns() < until) {
        char **ids = NULL;
        size_t n = 0;
        if (docker_container_list(dk, filter, &ids, &n) == DOCKER_OK && n == 1) {
            int64_t cur = 0, lim = 0;
            if (docker_container_pids(dk, ids[0], &cur, &lim) == DOCKER_OK && cur > 0) {
                samples++;
                limit = lim;
                if (cur > max_tasks)
                    max_tasks = cur;
            }
        } else if (samples > 0) {
            for (size_t i = 0; i < n; i++)
                free(ids[i]);
            free(ids);
            break; /* removed: the run is over */
        }
        for (size_t i = 0; i < n; i++)
            free(ids[i]);
        free(ids);
        usleep(100000);
    }
    free(filter);
    pthread_join(th, NULL);
    runner_result_t *r = &b.res;
    CHECK(strcmp(r->status, "timed_out") == 0 || strcmp(r->status, "failed") == 0);
    /* The function also reports how many processes its pid namespace holds. */
    long seen = 0;
    for (const char *p = r->out.data ? r->out.data : ""; (p = strstr(p, "procs=")); p += 6) {
        long v = strtol(p + 6, NULL, 10);
        if (v > seen)
            seen = v;
    }
    fprintf(stderr, "  fork bomb: %d samples, at most %lld tasks (limit %lld), %ld seen inside\n",
            samples, (long long)max_tasks, (long long)limit, seen);
    CHECK(samples > 0);
    CHECK_INT(limit, 32);
    CHECK(max_tasks >= 24); /* the bomb did press against the limit */
    CHECK(max_tasks <= 32); /* and the limit held */
    CHECK(seen >= 16);
    CHECK(container_gone(r->container_id));
    runner_result_clear(r);
}

TEST("a memory hog is oom_killed")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/memhog:latest", eid);
    s.memory = 32 << 20;
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "failed");
    CHECK_STR(r.reason, "oom_killed");
    CHECK(r.exit_code != 0);
    runner_result_clear(&r);
}

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = strtol(line + 6, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

TEST("output beyond the cap is truncated and memory stays bounded")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/bigout:latest", eid);
    s.output_limit = 1 << 20;
    /* Reset the peak RSS so the growth measured is this run's. */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
    long before = vm_hwm_kb();
    runner_result_t r;
    run(&s, &r);
    long after = vm_hwm_kb();
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.reason, "output_truncated");
    CHECK_INT(r.out.len, s.output_limit);
    CHECK(r.result.len <= (size_t)s.output_limit);
    CHECK(r.out.len > 11 && memcmp(r.out.data, "0123456789\n0123456789\n", 22) == 0);
    fprintf(stderr, "  100 MiB output: peak RSS grew by %ld KiB\n", after - before);
    CHECK(before > 0 && after > 0);
    CHECK(after - before < 3 * (s.output_limit >> 10) + 4096);
    CHECK(container_gone(r.container_id));
    runner_result_clear(&r);
}

TEST("a function sees only the loopback interface")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/netls:latest", eid);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.out.data, "lo\n");
    runner_result_clear(&r);
}

TEST("the root filesystem is read-only and /tmp is writable but noexec")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/fsprobe:latest", eid);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.out.data, "root=ro\ntmp=rw\ntmpexec=no\n");
    runner_result_clear(&r);
}

TEST("env vars reach the function (pull policy if-missing uses the local image)")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/env:latest", eid);
    s.env_json = "{\"GREETING\":\"hello world\",\"EMPTY\":\"\"}";
    s.pull_policy = "if-missing";
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK(r.out.data && strstr(r.out.data, "GREETING=hello world\n") != NULL);
    CHECK(r.out.data && strstr(r.out.data, "EMPTY=\n") != NULL);
    runner_result_clear(&r);
}

TEST("a missing image with pull policy never is error image_not_found")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/does-not-exist:latest", eid);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "error");
    CHECK_STR(r.reason, "image_not_found");
    CHECK(!r.transient);
    CHECK_STR(r.container_id, "");
    CHECK_STR(r.out.data, "");
    CHECK_STR(r.result.data, "");
    runner_result_clear(&r);
}

TEST("an image under an unresolvable registry is error image_not_found")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("registry.faas-test.invalid/nothing/here:1.0", eid);
    s.pull_policy = "if-missing";
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "error");
    CHECK_STR(r.reason, "image_not_found");
    CHECK(!r.transient);
    CHECK(strstr(r.message, "invalid") != NULL);
    CHECK_STR(r.container_id, "");
    runner_result_clear(&r);
}

TEST("a missing network is a non-transient docker_error and leaves no container")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    s.network = "faas-test-no-such-network";
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "error");
    CHECK_STR(r.reason, "docker_error");
    CHECK(!r.transient);
    CHECK(strstr(r.message, "faas-test-no-such-network") != NULL);
    CHECK(r.container_id[0] == '\0' || container_gone(r.container_id));
    runner_result_clear(&r);
}

TEST("pull policy always pulls even a present image, if-missing does not")
{
    /* A local tag under an unresolvable registry: present, but never pullable. */
    char img[128], cmd[256];
    snprintf(img, sizeof img, "registry.faas-test.invalid/%s/echo:latest", worker_id);
    snprintf(cmd, sizeof cmd, "docker tag faas-test/echo:latest %s", img);
    CHECK(system(cmd) == 0);
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for(img, eid);
    s.input = (const unsigned char *)"local";
    s.input_len = 5;
    s.pull_policy = "always";
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "error");
    CHECK_STR(r.reason, "image_not_found");
    CHECK(!r.transient);
    runner_result_clear(&r);
    s.pull_policy = "if-missing";
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.out.data, "local");
    runner_result_clear(&r);
    snprintf(cmd, sizeof cmd, "docker rmi %s >/dev/null", img);
    CHECK(system(cmd) == 0);
}

TEST("an unreachable engine is a transient docker_error")
{
    char dir[] = "/tmp/runner-test-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = xasprintf("%s/no-docker.sock", dir);
    docker_t *bad = docker_new(path, api);
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    runner_result_t r;
    runner_run(bad, path, api, &s, &r, false, NULL, NULL);
    CHECK_STR(r.status, "error");
    CHECK_STR(r.reason, "docker_error");
    CHECK(r.transient);
    runner_result_clear(&r);
    docker_free(bad);
    free(path);
    rmdir(dir);
}

TEST("a leftover container of the same attempt is replaced")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    s.attempt = 2;
    s.input = (const unsigned char *)"again";
    s.input_len = 5;
    char *body = runner_create_body(&s);
    char name[96], old[65], err[200];
    snprintf(name, sizeof name, "faas-%s-2", eid);
    CHECK_INT(docker_container_create(dk, name, body, old, err, sizeof err), DOCKER_OK);
    free(body);
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    CHECK_STR(r.out.data, "again");
    CHECK(strcmp(r.container_id, old) != 0);
    CHECK(container_gone(old));
    runner_result_clear(&r);
}

TEST("a function that never reads its 1 MiB input still finishes")
{
    char eid[ID_LEN + 1];
    runner_spec_t s = spec_for("faas-test/fail:latest", eid);
    size_t n = 1 << 20;
    unsigned char *in = xcalloc(1, n);
    s.input = in;
    s.input_len = n;
    runner_result_t r;
    run(&s, &r);
    CHECK_STR(r.status, "failed");
    CHECK_INT(r.exit_code, 3);
    CHECK_STR(r.out.data, "out\n");
    runner_result_clear(&r);
    free(in);
}

static int count_fds(void)
{
    int n = 0;
    char path[64];
    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        if (access(path, F_OK) == 0)
            n++;
    }
    return n;
}

TEST("runs leak no file descriptors on success, timeout and error paths")
{
    docker_ping(dk); /* curl's cached connection is already open */
    int before = count_fds();
    char eid[ID_LEN + 1];
    runner_result_t r;
    runner_spec_t s = spec_for("faas-test/echo:latest", eid);
    s.input = (const unsigned char *)"x";
    s.input_len = 1;
    run(&s, &r);
    CHECK_STR(r.status, "succeeded");
    runner_result_clear(&r);
    s = spec_for("faas-test/sleep:latest", eid);
    s.timeout_ms = 500;
    run(&s, &r);
    CHECK_STR(r.status, "timed_out");
    runner_result_clear(&r);
    s = spec_for("faas-test/echo:latest", eid);
    s.network = "faas-test-no-such-network";
    run(&s, &r);
    CHECK_STR(r.status, "error");
    runner_result_clear(&r);
    CHECK_INT(count_fds(), before);
}

TEST("reap removes leftover labelled containers but not kept ones or other workers'")
{
    char e1[ID_LEN + 1], e2[ID_LEN + 1], e3[ID_LEN + 1];
    char other[80];
    snprintf(other, sizeof other, "%s-other", worker_id);
    runner_spec_t s1 = spec_for("faas-test/sleep:latest", e1);
    runner_spec_t s2 = spec_for("faas-test/sleep:latest", e2);
    runner_spec_t s3 = spec_for("faas-test/sleep:latest", e3);
    s3.worker_id = other;
    char id1[65], id2[65], id3[65], err[200];
    char *b1 = runner_create_body(&s1), *b2 = runner_create_body(&s2), *b3 = runner_create_body(&s3);
    CHECK_INT(docker_container_create(dk, NULL, b1, id1, err, sizeof err), DOCKER_OK);
    CHECK_INT(docker_container_create(dk, NULL, b2, id2, err, sizeof err), DOCKER_OK);
    CHECK_INT(docker_container_create(dk, NULL, b3, id3, err, sizeof err), DOCKER_OK);
    CHECK_INT(docker_container_start(dk, id1), DOCKER_OK); /* running ones are reaped too */
    const char *keep[] = {e2};
    CHECK_INT(runner_reap(dk, worker_id, keep, 1), 1);
    CHECK(container_gone(id1));
    CHECK(!container_gone(id2));
    CHECK(!container_gone(id3));
    CHECK_INT(runner_reap(dk, other, NULL, 0), 1);
    CHECK(container_gone(id3));
    CHECK_INT(runner_reap(dk, worker_id, NULL, 0), 1);
    CHECK(container_gone(id2));
    /* Removing an already-gone container is fine. */
    int rc = docker_container_remove(dk, id1, true);
    CHECK(rc == DOCKER_ENOTFOUND || rc == DOCKER_OK);
    free(b1);
    free(b2);
    free(b3);
}

T_MAIN_WITH(setup, teardown)
