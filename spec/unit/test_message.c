/* The NATS message codecs and the UTF-8 sanitiser. */
#include <cjson/cJSON.h>

#include "message.h"
#include "t.h"
#include "util.h"

#define RFFD "\xEF\xBF\xBD"

static const char EID[] = "65f1a2b3c4d5e6f708192a3b";
static const char FID[] = "65f1a2b3c4d5e6f708192a3c";
static const char UID[] = "65f1a2b3c4d5e6f708192a3d";

/* Frees what message_result_decode put in (what store_execution_clear does). */
static void exec_free(store_execution_t *e)
{
    store_execution_clear(e);
    memset(e, 0, sizeof(*e));
}

static void sample_request(message_request_t *r, const unsigned char *in, size_t in_len)
{
    memset(r, 0, sizeof(*r));
    str_copy(r->execution_id, sizeof(r->execution_id), EID);
    str_copy(r->user_id, sizeof(r->user_id), UID);
    str_copy(r->func.id, sizeof(r->func.id), FID);
    str_copy(r->func.owner, sizeof(r->func.owner), UID);
    str_copy(r->func.name, sizeof(r->func.name), "echo");
    str_copy(r->func.image, sizeof(r->func.image), "faas-test/echo:1");
    r->func.env_json = xstrdup("{\"GREETING\":\"hi\",\"EMPTY\":\"\"}");
    r->func.timeout_ms = 1500;
    r->func.memory = 64LL << 20;
    r->func.nano_cpus = 500000000;
    r->func.network = true;
    r->input = xmalloc(in_len ? in_len : 1);
    memcpy(r->input, in, in_len);
    r->input_len = in_len;
    r->attempt = 2;
    r->created_at = 1764342673123LL;
}

static int decode_req(const char *json, char *err, size_t errlen)
{
    message_request_t r;
    int rc = message_request_decode(json, strlen(json), &r, err, errlen);
    if (rc == 0)
        message_request_clear(&r);
    return rc;
}

/* ---- requests ---- */

TEST("a request round trips every field, binary input included")
{
    const unsigned char in[] = {0x00, 0xff, 'a', '\n', 0xc3, 0x28, 0x00};
    message_request_t r, d;
    sample_request(&r, in, sizeof(in));
    size_t len = 0;
    char *json = message_request_encode(&r, &len);
    CHECK(json != NULL && len == strlen(json));
    char err[256] = "";
    CHECK_INT(message_request_decode(json, len, &d, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    CHECK_STR(d.execution_id, EID);
    CHECK_STR(d.user_id, UID);
    CHECK_STR(d.func.id, FID);
    CHECK_STR(d.func.owner, UID);
    CHECK_STR(d.func.name, "echo");
    CHECK_STR(d.func.image, "faas-test/echo:1");
    CHECK_INT(d.func.timeout_ms, 1500);
    CHECK_INT(d.func.memory, 64LL << 20);
    CHECK_INT(d.func.nano_cpus, 500000000);
    CHECK(d.func.network);
    CHECK_INT(d.input_len, sizeof(in));
    CHECK(d.input && memcmp(d.input, in, sizeof(in)) == 0);
    CHECK_INT(d.attempt, 2);
    CHECK_INT(d.created_at, 1764342673123LL);
    cJSON *env = cJSON_Parse(d.func.env_json);
    CHECK(cJSON_IsObject(env));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(env, "GREETING")), "hi");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(env, "EMPTY")), "");
    cJSON_Delete(env);
    free(json);
    message_request_clear(&d);
    message_request_clear(&r);
    CHECK(r.input == NULL && r.func.env_json == NULL);
}

TEST("a request carries timeout in seconds, memory in bytes, cpus as a number, input base64")
{
    const unsigned char in[] = "hello";
    message_request_t r;
    sample_request(&r, in, 5);
    char *json = message_request_encode(&r, NULL);
    cJSON *j = cJSON_Parse(json);
    CHECK(cJSON_IsObject(j));
    cJSON *f = cJSON_GetObjectItem(j, "func");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "timeout")) == 1.5);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "memory")) == 67108864.0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(f, "cpus")) == 0.5);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(f, "functionId")), FID);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "input")), "aGVsbG8=");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "executionId")), EID);
    cJSON_Delete(j);
    free(json);
    message_request_clear(&r);
}

TEST("a minimal seed-style request decodes with defaults")
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"executionId\":\"%s\",\"func\":{\"image\":\"alpine:3\",\"functionId\":\"%s\"},"
             "\"userId\":\"%s\"}",
             EID, FID, UID);
    message_request_t r;
    char err[256] = "";
    CHECK_INT(message_request_decode(json, strlen(json), &r, err, sizeof(err)), 0);
    CHECK_STR(r.func.image, "alpine:3");
    CHECK_INT(r.func.timeout_ms, 0);
    CHECK_INT(r.func.memory, 0);
    CHECK_INT(r.func.nano_cpus, 0);
    CHECK(!r.func.network);
    CHECK_STR(r.func.env_json, "{}");
    CHECK_INT(r.input_len, 0);
    CHECK_INT(r.attempt, 0);
    message_request_clear(&r);
}

TEST("hostile or malformed requests are rejected with a reason")
{
    static const char *bad_func[] = {
        "\"func\":\"alpine\"",
        "\"func\":{\"functionId\":\"FID\"}",
        "\"func\":{\"image\":42,\"functionId\":\"FID\"}",
        "\"func\":{\"image\":\"\",\"functionId\":\"FID\"}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"nothex-nothex-nothex-xx\"}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"memory\":\"64m\"}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"memory\":-1}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"memory\":1e300}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"memory\":1.5}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"timeout\":\"30\"}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"timeout\":1e400}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"timeout\":-3}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"cpus\":-1}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"cpus\":[1]}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"env\":[\"A=1\"]}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"env\":{\"A\":1}}",
        "\"func\":{\"image\":\"a\",\"functionId\":\"FID\",\"network\":\"yes\"}",
    };
    char err[256];
    char json[1024];
    for (size_t i = 0; i < sizeof(bad_func) / sizeof(bad_func[0]); i++) {
        /* put the real function id in place of FID */
        char fixed[600];
        const char *q = strstr(bad_func[i], "FID");
        if (q)
            snprintf(fixed, sizeof(fixed), "%.*s%s%s", (int)(q - bad_func[i]), bad_func[i], FID,
                     q + 3);
        else
            str_copy(fixed, sizeof(fixed), bad_func[i]);
        snprintf(json, sizeof(json), "{\"executionId\":\"%s\",\"userId\":\"%s\",%s}", EID, UID,
                 fixed);
        err[0] = '\0';
        int rc = decode_req(json, err, sizeof(err));
        if (rc != -1 || !err[0])
            fprintf(stderr, "  accepted: %s\n", json);
        CHECK_INT(rc, -1);
        CHECK(err[0] != '\0');
    }

    char ok_func[256];
    snprintf(ok_func, sizeof(ok_func), "\"func\":{\"image\":\"a\",\"functionId\":\"%s\"}", FID);
    static const char *bad_top[] = {
        "{\"executionId\":\"%s\",\"userId\":\"%s\",%s,\"input\":\"@@not base64@@\"}",
        "{\"executionId\":\"%s\",\"userId\":\"%s\",%s,\"input\":123}",
        "{\"executionId\":\"%s\",\"userId\":\"%s\",%s,\"attempt\":\"1\"}",
        "{\"executionId\":\"%s\",\"userId\":\"%s\",%s,\"attempt\":1e20}",
        "{\"executionId\":\"%s\",\"userId\":\"%s\",%s,\"createdAt\":-5}",
    };
    for (size_t i = 0; i < sizeof(bad_top) / sizeof(bad_top[0]); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(json, sizeof(json), bad_top[i], EID, UID, ok_func);
#pragma GCC diagnostic pop
        err[0] = '\0';
        int rc = decode_req(json, err, sizeof(err));
        if (rc != -1)
            fprintf(stderr, "  accepted: %s\n", json);
        CHECK_INT(rc, -1);
        CHECK(err[0] != '\0');
    }

    static const char *bad_ids[] = {
        "65f1a2b3c4d5e6f708192a3",   /* 23 */
        "65f1a2b3c4d5e6f708192a3bb", /* 25 */
        "zzf1a2b3c4d5e6f708192a3b",
        "",
        "../../etc/passwd",
    };
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        snprintf(json, sizeof(json), "{\"executionId\":\"%s\",\"userId\":\"%s\",%s}", bad_ids[i],
                 UID, ok_func);
        CHECK_INT(decode_req(json, err, sizeof(err)), -1);
        snprintf(json, sizeof(json), "{\"executionId\":\"%s\",\"userId\":\"%s\",%s}", EID,
                 bad_ids[i], ok_func);
        CHECK_INT(decode_req(json, err, sizeof(err)), -1);
    }
    snprintf(json, sizeof(json), "{\"executionId\":42,\"userId\":\"%s\",%s}", UID, ok_func);
    CHECK_INT(decode_req(json, err, sizeof(err)), -1);
    snprintf(json, sizeof(json), "{\"userId\":\"%s\",%s}", UID, ok_func);
    CHECK_INT(decode_req(json, err, sizeof(err)), -1);
    CHECK(strstr(err, "executionId") != NULL);
    snprintf(json, sizeof(json), "{\"executionId\":\"%s\",\"userId\":\"%s\"}", EID, UID);
    CHECK_INT(decode_req(json, err, sizeof(err)), -1);
    CHECK(strstr(err, "func") != NULL);

    static const char *not_objects[] = {"", "null", "[]", "\"text\"", "42", "{", "{\"a\":",
                                        "{\"executionId\":\"x\"", "\xff\xfe"};
    for (size_t i = 0; i < sizeof(not_objects) / sizeof(not_objects[0]); i++) {
        err[0] = '\0';
        CHECK_INT(decode_req(not_objects[i], err, sizeof(err)), -1);
        CHECK(err[0] != '\0');
    }
    message_request_t r;
    CHECK_INT(message_request_decode(NULL, 0, &r, err, sizeof(err)), -1);
    CHECK_INT(message_request_decode("{}", 2, &r, NULL, 0), -1); /* no error buffer: no crash */

    /* deep nesting does not blow the stack */
    size_t depth = 100000;
    char *deep = xmalloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[depth * 2] = '\0';
    CHECK_INT(message_request_decode(deep, depth * 2, &r, err, sizeof(err)), -1);
    free(deep);

    /* the length bounds the parse: bytes after len are not read */
    snprintf(json, sizeof(json), "{\"executionId\":\"%s\",\"userId\":\"%s\",%s}garbage", EID,
             UID, ok_func);
    CHECK_INT(message_request_decode(json, strlen(json) - 7, &r, err, sizeof(err)), 0);
    message_request_clear(&r);
}

/* ---- results ---- */

static void sample_result(store_execution_t *e, const char *out, size_t out_len)
{
    memset(e, 0, sizeof(*e));
    str_copy(e->id, sizeof(e->id), EID);
    str_copy(e->function_id, sizeof(e->function_id), FID);
    str_copy(e->owner, sizeof(e->owner), UID);
    str_copy(e->status, sizeof(e->status), "failed");
    str_copy(e->reason, sizeof(e->reason), "output_truncated");
    e->has_exit_code = true;
    e->exit_code = 3;
    e->result = xstrdup("out and err\n");
    e->out = xmalloc(out_len + 1);
    memcpy(e->out, out, out_len);
    e->out_len = out_len;
    e->err = xstrdup("boom\n");
    e->err_len = 5;
    e->duration_ms = 123;
    e->created_at = 1764342673000LL;
    e->started_at = 1764342673100LL;
    e->finished_at = 1764342673223LL;
    str_copy(e->worker, sizeof(e->worker), "host-42");
    e->attempts = 2;
}

TEST("a result round trips with exact stdout bytes and sanitised stdout text")
{
    const char out[] = "ok \xff\xfe\x00 end";
    store_execution_t e, d;
    sample_result(&e, out, sizeof(out) - 1);
    size_t len = 0;
    char *json = message_result_encode(&e, &len);
    CHECK(json && len == strlen(json));

    cJSON *j = cJSON_Parse(json);
    CHECK(cJSON_IsObject(j));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "stdout")), "ok " RFFD RFFD RFFD " end");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "stderr")), "boom\n");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "status")), "failed");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "userId")), UID);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "exitCode")) == 3.0);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "startedAt")) == 1764342673100.0);
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "stdoutB64")));
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "stderrB64")));
    cJSON_Delete(j);

    char err[256] = "";
    CHECK_INT(message_result_decode(json, len, &d, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    CHECK_STR(d.id, EID);
    CHECK_STR(d.function_id, FID);
    CHECK_STR(d.owner, UID);
    CHECK_STR(d.status, "failed");
    CHECK_STR(d.reason, "output_truncated");
    CHECK(d.has_exit_code);
    CHECK_INT(d.exit_code, 3);
    CHECK_STR(d.result, "out and err\n");
    CHECK_INT(d.out_len, sizeof(out) - 1);
    CHECK(d.out && memcmp(d.out, out, sizeof(out) - 1) == 0);
    CHECK_INT(d.err_len, 5);
    CHECK(d.err && memcmp(d.err, "boom\n", 5) == 0);
    CHECK_INT(d.duration_ms, 123);
    CHECK_INT(d.created_at, 1764342673000LL);
    CHECK_INT(d.started_at, 1764342673100LL);
    CHECK_INT(d.finished_at, 1764342673223LL);
    CHECK_STR(d.worker, "host-42");
    CHECK_INT(d.attempts, 2);
    exec_free(&d);
    exec_free(&e);
    free(json);
}

TEST("a result without an exit code carries null and decodes without one")
{
    store_execution_t e, d;
    sample_result(&e, "", 0);
    str_copy(e.status, sizeof(e.status), "error");
    str_copy(e.reason, sizeof(e.reason), "");
    e.has_exit_code = false;
    free(e.result);
    e.result = NULL;
    char *json = message_result_encode(&e, NULL);
    cJSON *j = cJSON_Parse(json);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "exitCode")));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "result")), "");
    cJSON_Delete(j);
    char err[256];
    CHECK_INT(message_result_decode(json, strlen(json), &d, err, sizeof(err)), 0);
    CHECK(!d.has_exit_code);
    CHECK_STR(d.status, "error");
    CHECK_STR(d.reason, "");
    CHECK_INT(d.out_len, 0);
    exec_free(&d);
    exec_free(&e);
    free(json);
}

TEST("a seed-style result without base64 fields decodes its text output")
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"executionId\":\"%s\",\"status\":\"succeeded\",\"result\":\"hi\","
             "\"stdout\":\"hi\\n\",\"exitCode\":0}",
             EID);
    store_execution_t d;
    char err[256];
    CHECK_INT(message_result_decode(json, strlen(json), &d, err, sizeof(err)), 0);
    CHECK_INT(d.out_len, 3);
    CHECK(d.out && memcmp(d.out, "hi\n", 3) == 0);
    CHECK(d.has_exit_code);
    CHECK_INT(d.exit_code, 0);
    CHECK_INT(d.duration_ms, -1);
    CHECK(d.err == NULL);
    exec_free(&d);
}

TEST("fields a plugin added to a result travel in extra_json and back")
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"executionId\":\"%s\",\"status\":\"succeeded\",\"result\":\"{}\","
             "\"json\":{\"a\":1},\"tag\":\"x\"}",
             EID);
    store_execution_t d;
    char err[256];
    CHECK_INT(message_result_decode(json, strlen(json), &d, err, sizeof(err)), 0);
    CHECK_STR(d.extra_json, "{\"json\":{\"a\":1},\"tag\":\"x\"}");
    size_t n = 0;
    char *again = message_result_encode(&d, &n);
    CHECK(strstr(again, "\"json\":{\"a\":1}") != NULL);
    CHECK(strstr(again, "\"tag\":\"x\"") != NULL);
    free(again);
    exec_free(&d);
}

TEST("hostile or malformed results are rejected with a reason")
{
    static const char *bad[] = {
        "{\"executionId\":\"EID\",\"status\":\"exploded\"}",
        "{\"executionId\":\"EID\"}",
        "{\"executionId\":\"EID\",\"status\":7}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"exitCode\":\"1\"}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"exitCode\":1e10}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"exitCode\":1.25}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"stdoutB64\":\"!!\"}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"stderrB64\":5}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"stdout\":[]}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"result\":{}}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"durationMs\":\"5\"}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"attempts\":-1}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"finishedAt\":1e300}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"functionId\":\"nope\"}",
        "{\"executionId\":\"EID\",\"status\":\"failed\",\"worker\":\""
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
        "{\"executionId\":\"65f1a2b3\",\"status\":\"failed\"}",
        "[1,2]",
        "not json",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[600];
        const char *q = strstr(bad[i], "EID");
        if (q)
            snprintf(json, sizeof(json), "%.*s%s%s", (int)(q - bad[i]), bad[i], EID, q + 3);
        else
            str_copy(json, sizeof(json), bad[i]);
        store_execution_t d;
        char err[256] = "";
        int rc = message_result_decode(json, strlen(json), &d, err, sizeof(err));
        if (rc != -1)
            fprintf(stderr, "  accepted: %s\n", json);
        CHECK_INT(rc, -1);
        CHECK(err[0] != '\0');
        CHECK(d.out == NULL && d.err == NULL && d.result == NULL);
    }
}

/* ---- UTF-8 ---- */

static void check_sanitize(const char *in, size_t n, const char *want)
{
    char *got = utf8_sanitize(in, n);
    CHECK_STR(got, want);
    /* the output is valid: sanitising again changes nothing */
    char *again = utf8_sanitize(got, strlen(got));
    CHECK_STR(again, got);
    free(again);
    free(got);
}

#define SAN(lit, want) check_sanitize(lit, sizeof(lit) - 1, want)

TEST("utf8_sanitize keeps valid text and replaces each ill-formed sequence with U+FFFD")
{
    SAN("plain ascii\n\t", "plain ascii\n\t");
    SAN("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9D\x84\x9E \xF4\x8F\xBF\xBF",
        "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9D\x84\x9E \xF4\x8F\xBF\xBF");
    SAN("\xC0\x80", RFFD RFFD);                       /* overlong NUL */
    SAN("\xC1\xBF", RFFD RFFD);                       /* overlong */
    SAN("\xE0\x80\xAF", RFFD RFFD RFFD);              /* overlong 3-byte */
    SAN("\xF0\x80\x80\xAF", RFFD RFFD RFFD RFFD);     /* overlong 4-byte */
    SAN("\xED\xA0\x80", RFFD RFFD RFFD);              /* high surrogate */
    SAN("\xED\xBF\xBF", RFFD RFFD RFFD);              /* low surrogate */
    SAN("\xF4\x90\x80\x80", RFFD RFFD RFFD RFFD);     /* > U+10FFFF */
    SAN("\xF5\x80", RFFD RFFD);
    SAN("\xFF", RFFD);
    SAN("a\xE2\x82", "a" RFFD);                        /* truncated at the end */
    SAN("\xE2\x82z", RFFD "z");                        /* truncated in the middle */
    SAN("\xF0\x9D\x84", RFFD);                         /* truncated 4-byte */
    SAN("\x80\xBF", RFFD RFFD);                        /* stray continuations */
    SAN("a\0b", "a" RFFD "b");                         /* NUL cannot live in a C string */
    check_sanitize("", 0, "");
    check_sanitize(NULL, 0, "");
}

TEST("utf8_sanitize survives every byte value")
{
    unsigned char all[512];
    for (int i = 0; i < 512; i++)
        all[i] = (unsigned char)(i * 7 + 13);
    char *got = utf8_sanitize((const char *)all, sizeof(all));
    CHECK(got != NULL);
    char *again = utf8_sanitize(got, strlen(got));
    CHECK_STR(again, got);
    free(again);
    free(got);
}

T_MAIN
