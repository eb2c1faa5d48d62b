/* The two NATS messages as JSON (cJSON). See message.h for the shapes. Decoding treats the
 * input as hostile: every field is type- and range-checked, errors name the field. */
#include "message.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define MSG_MAX_TIMEOUT_S 1e9       /* seconds: anything beyond is nonsense */
#define MSG_MAX_CPUS 1e6
#define MSG_MAX_INT 9007199254740992.0 /* 2^53: exact in a JSON number */

/* ---- UTF-8 ---- */

static size_t put_replacement(char *o)
{
    o[0] = (char)0xEF;
    o[1] = (char)0xBF;
    o[2] = (char)0xBD;
    return 3;
}

char *utf8_sanitize(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p;
    char *out = xmalloc(n * 3 + 1); /* each bad byte may become 3 */
    size_t o = 0, i = 0;
    while (s && i < n) {
        unsigned char c = s[i];
        if (c == 0) { /* a C string cannot hold it; the exact bytes travel as base64 */
            o += put_replacement(out + o);
            i++;
            continue;
        }
        if (c < 0x80) {
            out[o++] = (char)c;
            i++;
            continue;
        }
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation */
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else {
            /* stray continuation, overlong C0/C1, F5..FF */
            o += put_replacement(out + o);
            i++;
            continue;
        }
        /* One U+FFFD per maximal ill-formed subpart (Unicode's recommended practice). */
        size_t k = 1;
        for (; k <= need; k++) {
            if (i + k >= n)
                break;
            unsigned char d = s[i + k];
            unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
            if (d < l || d > h)
                break;
        }
        if (k > need) {
            memcpy(out + o, s + i, need + 1);
            o += need + 1;
            i += need + 1;
        } else {
            o += put_replacement(out + o);
            i += k;
        }
    }
    out[o] = '\0';
    return out;
}

/* ---- helpers ---- */

static char *print_json(cJSON *root, size_t *len)
{
    char *s = cJSON_PrintUnformatted(root);
    if (!s) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory encoding a message\"}\n");
        abort();
    }
    /* Hand out memory from our allocator so callers free() it like everything else. */
    size_t n = strlen(s);
    char *out = xstrndup(s, n);
    cJSON_free(s);
    if (len)
        *len = n;
    return out;
}

static void add_bytes(cJSON *o, const char *text_key, const char *b64_key, const char *p,
                      size_t n)
{
    char *t = utf8_sanitize(p ? p : "", p ? n : 0);
    cJSON_AddStringToObject(o, text_key, t);
    free(t);
    char *b = base64_encode(p ? p : "", p ? n : 0);
    cJSON_AddStringToObject(o, b64_key, b);
    free(b);
}

/* A member that must be absent, null or a number: integral, finite, within [min, max]. */
static int get_int(const cJSON *o, const char *key, double min, double max, int64_t def,
                   int64_t *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max) {
        snprintf(err, errlen, "'%s' must be an integer between %.0f and %.0f", key, min, max);
        return -1;
    }
    *out = (int64_t)v->valuedouble;
    return 0;
}

/* A member that must be absent, null or a finite number within [min, max]. */
static int get_num(const cJSON *o, const char *key, double min, double max, double def,
                   double *out, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max) {
        snprintf(err, errlen, "'%s' must be a number between %g and %g", key, min, max);
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}

/* A string member copied into dst (cap bytes). Absent/null gives "" unless required. */
static int get_str(const cJSON *o, const char *key, bool required, char *dst, size_t cap,
                   char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) {
            snprintf(err, errlen, "missing '%s'", key);
            return -1;
        }
        dst[0] = '\0';
        return 0;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        snprintf(err, errlen, "'%s' must be a string", key);
        return -1;
    }
    if (strlen(v->valuestring) >= cap) {
        snprintf(err, errlen, "'%s' is longer than %zu bytes", key, cap - 1);
        return -1;
    }
    str_copy(dst, cap, v->valuestring);
    return 0;
}

static int get_id(const cJSON *o, const char *key, bool required, char dst[ID_LEN + 1],
                  char *err, size_t errlen)
{
    char tmp[64];
    if (get_str(o, key, required, tmp, sizeof(tmp), err, errlen) != 0)
        return -1;
    if (!tmp[0] && !required) {
        dst[0] = '\0';
        return 0;
    }
    if (!id_valid(tmp)) {
        snprintf(err, errlen, "'%s' is not a valid id", key);
        return -1;
    }
    str_copy(dst, ID_LEN + 1, tmp);
    return 0;
}

/* Optional base64 member decoded into out and len. 1 when present, 0 absent, -1 bad. */
static int get_b64(const cJSON *o, const char *key, unsigned char **out, size_t *len, char *err,
                   size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring ||
        base64_decode(v->valuestring, strlen(v->valuestring), out, len) != 0) {
        snprintf(err, errlen, "'%s' must be base64", key);
        return -1;
    }
    return 1;
}

static cJSON *parse_object(const char *data, size_t len, char *err, size_t errlen)
{
    if (!data) {
        snprintf(err, errlen, "empty message");
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (!root) {
        snprintf(err, errlen, "message is not valid json");
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "message is not a json object");
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/* ---- request ---- */

char *message_request_encode(const message_request_t *r, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "executionId", r->execution_id);
    cJSON *f = cJSON_AddObjectToObject(root, "func");
    cJSON_AddStringToObject(f, "image", r->func.image);
    cJSON_AddStringToObject(f, "functionId", r->func.id);
    cJSON_AddStringToObject(f, "name", r->func.name);
    cJSON_AddNumberToObject(f, "timeout", (double)r->func.timeout_ms / 1000.0);
    cJSON_AddNumberToObject(f, "memory", (double)r->func.memory);
    cJSON_AddNumberToObject(f, "cpus", (double)r->func.nano_cpus / 1e9);
    cJSON *env = r->func.env_json ? cJSON_Parse(r->func.env_json) : NULL;
    if (!cJSON_IsObject(env)) {
        cJSON_Delete(env);
        env = cJSON_CreateObject();
    }
    cJSON_AddItemToObject(f, "env", env);
    cJSON_AddBoolToObject(f, "network", r->func.network);
    cJSON_AddStringToObject(root, "userId", r->user_id);
    char *in = base64_encode(r->input ? (const void *)r->input : (const void *)"",
                             r->input ? r->input_len : 0);
    cJSON_AddStringToObject(root, "input", in);
    free(in);
    cJSON_AddNumberToObject(root, "attempt", r->attempt);
    cJSON_AddNumberToObject(root, "createdAt", (double)r->created_at);
    char *out = print_json(root, len);
    cJSON_Delete(root);
    return out;
}

int message_request_decode(const char *data, size_t len, message_request_t *r, char *err,
                           size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    memset(r, 0, sizeof(*r));
    int rc = -1;
    cJSON *root = parse_object(data, len, err, errlen);
    if (!root)
        return -1;
    if (get_id(root, "executionId", true, r->execution_id, err, errlen) != 0 ||
        get_id(root, "userId", true, r->user_id, err, errlen) != 0)
        goto done;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, "func");
    if (!cJSON_IsObject(f)) {
        snprintf(err, errlen, f ? "'func' must be an object" : "missing 'func'");
        goto done;
    }
    if (get_str(f, "image", true, r->func.image, sizeof(r->func.image), err, errlen) != 0)
        goto done;
    if (!r->func.image[0]) {
        snprintf(err, errlen, "'image' is empty");
        goto done;
    }
    if (get_id(f, "functionId", true, r->func.id, err, errlen) != 0 ||
        get_str(f, "name", false, r->func.name, sizeof(r->func.name), err, errlen) != 0)
        goto done;
    str_copy(r->func.owner, sizeof(r->func.owner), r->user_id);

    double timeout_s, cpus;
    int64_t memory;
    if (get_num(f, "timeout", 0, MSG_MAX_TIMEOUT_S, 0, &timeout_s, err, errlen) != 0 ||
        get_int(f, "memory", 0, MSG_MAX_INT, 0, &memory, err, errlen) != 0 ||
        get_num(f, "cpus", 0, MSG_MAX_CPUS, 0, &cpus, err, errlen) != 0)
        goto done;
    r->func.timeout_ms = llround(timeout_s * 1000.0);
    r->func.memory = memory;
    r->func.nano_cpus = llround(cpus * 1e9);

    const cJSON *net = cJSON_GetObjectItemCaseSensitive(f, "network");
    if (net && !cJSON_IsNull(net) && !cJSON_IsBool(net)) {
        snprintf(err, errlen, "'network' must be a boolean");
        goto done;
    }
    r->func.network = cJSON_IsTrue(net);

    const cJSON *env = cJSON_GetObjectItemCaseSensitive(f, "env");
    if (env && !cJSON_IsNull(env)) {
        if (!cJSON_IsObject(env)) {
            snprintf(err, errlen, "'env' must be an object");
            goto done;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, env)
        {
            if (!cJSON_IsString(e) || !e->string || !e->string[0]) {
                snprintf(err, errlen, "'env' must map non-empty names to strings");
                goto done;
            }
        }
        char *s = cJSON_PrintUnformatted(env);
        if (!s) {
            snprintf(err, errlen, "cannot encode 'env'");
            goto done;
        }
        r->func.env_json = xstrdup(s);
        cJSON_free(s);
    } else {
        r->func.env_json = xstrdup("{}");
    }

    if (get_b64(root, "input", &r->input, &r->input_len, err, errlen) < 0)
        goto done;
    int64_t attempt, created;
    if (get_int(root, "attempt", 0, 1e9, 0, &attempt, err, errlen) != 0 ||
        get_int(root, "createdAt", 0, MSG_MAX_INT, 0, &created, err, errlen) != 0)
        goto done;
    r->attempt = (int)attempt;
    r->created_at = created;
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc != 0)
        message_request_clear(r);
    return rc;
}

void message_request_clear(message_request_t *r)
{
    if (!r)
        return;
    free(r->func.env_json);
    free(r->input);
    memset(r, 0, sizeof(*r));
}

/* ---- result ---- */

static const char *const result_statuses[] = {"queued",    "running", "succeeded",
                                              "failed",    "timed_out", "error"};

char *message_result_encode(const store_execution_t *e, size_t *len)
{
    cJSON *root = cJSON_CreateObject();
    char *result = utf8_sanitize(e->result ? e->result : "", e->result ? strlen(e->result) : 0);
    cJSON_AddStringToObject(root, "result", result);
    free(result);
    cJSON_AddStringToObject(root, "executionId", e->id);
    cJSON_AddStringToObject(root, "functionId", e->function_id);
    cJSON_AddStringToObject(root, "userId", e->owner);
    cJSON_AddStringToObject(root, "status", e->status);
    if (e->has_exit_code)
        cJSON_AddNumberToObject(root, "exitCode", e->exit_code);
    else
        cJSON_AddNullToObject(root, "exitCode");
    add_bytes(root, "stdout", "stdoutB64", e->out, e->out_len);
    add_bytes(root, "stderr", "stderrB64", e->err, e->err_len);
    cJSON_AddStringToObject(root, "reason", e->reason);
    cJSON_AddNumberToObject(root, "durationMs", (double)e->duration_ms);
    cJSON_AddStringToObject(root, "worker", e->worker);
    cJSON_AddNumberToObject(root, "attempts", e->attempts);
    cJSON_AddNumberToObject(root, "createdAt", (double)e->created_at);
    cJSON_AddNumberToObject(root, "startedAt", (double)e->started_at);
    cJSON_AddNumberToObject(root, "finishedAt", (double)e->finished_at);
    cJSON *extra = e->extra_json ? cJSON_Parse(e->extra_json) : NULL;
    cJSON *item;
    cJSON_ArrayForEach(item, extra) {
        if (!cJSON_HasObjectItem(root, item->string))
            cJSON_AddItemToObject(root, item->string, cJSON_Duplicate(item, 1));
    }
    cJSON_Delete(extra);
    char *out = print_json(root, len);
    cJSON_Delete(root);
    return out;
}

/* The fields of a result message the platform itself defines; anything else was added by a
 * postprocess plugin and travels in extra_json. */
static const char *const result_fields[] = {
    "result",   "executionId", "functionId", "userId",    "status",    "exitCode",
    "stdout",   "stdoutB64",   "stderr",     "stderrB64", "reason",    "durationMs",
    "worker",   "attempts",    "createdAt",  "startedAt", "finishedAt", NULL};

static char *extra_fields(const cJSON *root)
{
    cJSON *extra = NULL;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) {
        bool known = false;
        for (int i = 0; result_fields[i] && !known; i++)
            known = strcmp(item->string, result_fields[i]) == 0;
        if (known)
            continue;
        if (!extra)
            extra = cJSON_CreateObject();
        cJSON_AddItemToObject(extra, item->string, cJSON_Duplicate(item, 1));
    }
    if (!extra)
        return NULL;
    char *text = cJSON_PrintUnformatted(extra);
    cJSON_Delete(extra);
    return text;
}

static void result_free(store_execution_t *e)
{
    free(e->extra_json);
    e->extra_json = NULL;
    free(e->result);
    free(e->out);
    free(e->err);
    memset(e, 0, sizeof(*e));
}

/* stdout/stderr: the exact bytes from "<key>B64" when present, else the text. */
static int get_output(const cJSON *root, const char *key, const char *b64_key, char **out,
                      size_t *len, char *err, size_t errlen)
{
    unsigned char *b = NULL;
    size_t n = 0;
    int r = get_b64(root, b64_key, &b, &n, err, errlen);
    if (r < 0)
        return -1;
    if (r > 0) {
        *out = (char *)b;
        *len = n;
        return 0;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring) {
        snprintf(err, errlen, "'%s' must be a string", key);
        return -1;
    }
    *len = strlen(v->valuestring);
    *out = xstrndup(v->valuestring, *len);
    return 0;
}

int message_result_decode(const char *data, size_t len, store_execution_t *e, char *err,
                          size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    memset(e, 0, sizeof(*e));
    e->duration_ms = -1;
    int rc = -1;
    cJSON *root = parse_object(data, len, err, errlen);
    if (!root)
        return -1;
    if (get_id(root, "executionId", true, e->id, err, errlen) != 0 ||
        get_id(root, "functionId", false, e->function_id, err, errlen) != 0 ||
        get_id(root, "userId", false, e->owner, err, errlen) != 0 ||
        get_str(root, "status", true, e->status, sizeof(e->status), err, errlen) != 0 ||
        get_str(root, "reason", false, e->reason, sizeof(e->reason), err, errlen) != 0 ||
        get_str(root, "worker", false, e->worker, sizeof(e->worker), err, errlen) != 0)
        goto done;
    bool known = false;
    for (size_t i = 0; i < sizeof(result_statuses) / sizeof(result_statuses[0]); i++)
        known = known || strcmp(e->status, result_statuses[i]) == 0;
    if (!known) {
        snprintf(err, errlen, "unknown status '%s'", e->status);
        goto done;
    }

    const cJSON *code = cJSON_GetObjectItemCaseSensitive(root, "exitCode");
    if (code && !cJSON_IsNull(code)) {
        int64_t c;
        if (get_int(root, "exitCode", -2147483648.0, 2147483647.0, 0, &c, err, errlen) != 0)
            goto done;
        e->has_exit_code = true;
        e->exit_code = (int)c;
    }

    const cJSON *res = cJSON_GetObjectItemCaseSensitive(root, "result");
    if (res && !cJSON_IsNull(res)) {
        if (!cJSON_IsString(res) || !res->valuestring) {
            snprintf(err, errlen, "'result' must be a string");
            goto done;
        }
        e->result = utf8_sanitize(res->valuestring, strlen(res->valuestring));
    }
    if (get_output(root, "stdout", "stdoutB64", &e->out, &e->out_len, err, errlen) != 0 ||
        get_output(root, "stderr", "stderrB64", &e->err, &e->err_len, err, errlen) != 0)
        goto done;

    int64_t attempts;
    if (get_int(root, "durationMs", -1, MSG_MAX_INT, -1, &e->duration_ms, err, errlen) != 0 ||
        get_int(root, "attempts", 0, 1e9, 0, &attempts, err, errlen) != 0 ||
        get_int(root, "createdAt", 0, MSG_MAX_INT, 0, &e->created_at, err, errlen) != 0 ||
        get_int(root, "startedAt", 0, MSG_MAX_INT, 0, &e->started_at, err, errlen) != 0 ||
        get_int(root, "finishedAt", 0, MSG_MAX_INT, 0, &e->finished_at, err, errlen) != 0)
        goto done;
    e->attempts = (int)attempts;
    e->extra_json = extra_fields(root);
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc != 0)
        result_free(e);
    return rc;
}
