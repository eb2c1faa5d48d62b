/* Passwords (Argon2id, libsodium) and tokens (JWT HS256).
 *
 * Tokens are issued with libjwt but never verified with it: libjwt 1.10 checks neither exp nor
 * nbf and its handling of "alg" depends on the version, so verification is done here by hand:
 * strict base64url, our own header check (alg exactly "HS256", typ absent or "JWT"), an
 * HMAC-SHA256 recomputed with libsodium and compared in constant time, and only then the
 * payload is looked at. */
#include "auth.h"

#include <cjson/cJSON.h>
#include <jwt.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <string.h>

#include "util.h"

#define AUTH_MIN_MEMORY (19LL * 1024 * 1024) /* OWASP's Argon2id floor */
#define AUTH_MIN_OPS 2
#define AUTH_MIN_SECRET 32
#define AUTH_MAX_TOKEN 8192
#define AUTH_HS256_LEN 32
/* NumericDate values above this are not exact in a double and mean nothing anyway. */
#define AUTH_MAX_DATE 9007199254740992.0 /* 2^53 */

int auth_init(void)
{
    return sodium_init() < 0 ? -1 : 0;
}

/* ---- passwords ---------------------------------------------------------------------- */

static void pwhash_cost(const config_auth_t *cfg, unsigned long long *ops, size_t *mem)
{
    int64_t m = cfg ? cfg->argon2_memory : 0;
    int64_t o = cfg ? cfg->argon2_ops : 0;
    /* The config loader enforces the floors; clamp anyway so a zeroed struct cannot
     * silently produce weak hashes. */
    if (m < AUTH_MIN_MEMORY)
        m = AUTH_MIN_MEMORY;
    if ((uint64_t)m > (uint64_t)crypto_pwhash_MEMLIMIT_MAX)
        m = (int64_t)crypto_pwhash_MEMLIMIT_MAX;
    if (o < AUTH_MIN_OPS)
        o = AUTH_MIN_OPS;
    if ((uint64_t)o > (uint64_t)crypto_pwhash_OPSLIMIT_MAX)
        o = (int64_t)crypto_pwhash_OPSLIMIT_MAX;
    *ops = (unsigned long long)o;
    *mem = (size_t)m;
}

int auth_password_hash(const config_auth_t *cfg, const char *password, size_t len,
                       char out[128])
{
    unsigned long long ops;
    size_t mem;
    if (!password || len > crypto_pwhash_PASSWD_MAX)
        return -1;
    pwhash_cost(cfg, &ops, &mem);
    if (crypto_pwhash_str_alg(out, password, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return -1;
    return 0;
}

int auth_password_verify(const char *hash, const char *password, size_t len)
{
    if (!hash || !password || len > crypto_pwhash_PASSWD_MAX)
        return -1;
    /* crypto_pwhash_str_verify reads a NUL-terminated string of at most STRBYTES. */
    if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
        return -1;
    return crypto_pwhash_str_verify(hash, password, len) == 0 ? 0 : -1;
}

/* The dummy hash is made on first use and remade if the cost changes (config reload), so an
 * unknown email always costs what a wrong password costs. */
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;
static char dummy_hash[crypto_pwhash_STRBYTES];
static unsigned long long dummy_ops;
static size_t dummy_mem;

int auth_password_verify_dummy(const config_auth_t *cfg, const char *password, size_t len)
{
    char hash[crypto_pwhash_STRBYTES];
    unsigned long long ops;
    size_t mem;
    pwhash_cost(cfg, &ops, &mem);
    pthread_mutex_lock(&dummy_lock);
    if (!dummy_hash[0] || dummy_ops != ops || dummy_mem != mem) {
        unsigned char rnd[32];
        randombytes_buf(rnd, sizeof rnd);
        if (crypto_pwhash_str_alg(dummy_hash, (const char *)rnd, sizeof rnd, ops, mem,
                                  crypto_pwhash_ALG_ARGON2ID13) == 0) {
            dummy_ops = ops;
            dummy_mem = mem;
        } else {
            dummy_hash[0] = '\0';
        }
        sodium_memzero(rnd, sizeof rnd);
    }
    memcpy(hash, dummy_hash, sizeof hash);
    pthread_mutex_unlock(&dummy_lock);
    if (hash[0] && password)
        (void)auth_password_verify(hash, password, len);
    return -1;
}

/* ---- tokens ------------------------------------------------------------------------- */

static bool secret_ok(const config_auth_t *cfg)
{
    return cfg && strnlen(cfg->jwt_secret, sizeof cfg->jwt_secret) >= AUTH_MIN_SECRET &&
           strnlen(cfg->jwt_secret, sizeof cfg->jwt_secret) < sizeof cfg->jwt_secret;
}

char *auth_token_issue(const config_auth_t *cfg, const char *user_id, const char *email,
                       int64_t token_version)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (!secret_ok(cfg) || !id_valid(user_id) || !email ||
        !auth_email_valid(email, strlen(email)))
        return NULL;
    int64_t now = time_now_ms() / 1000;
    int64_t exp = now + cfg->token_ttl_ms / 1000;
    if (jwt_new(&jwt) != 0)
        goto done;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)cfg->jwt_secret,
                    (int)strlen(cfg->jwt_secret)) != 0 ||
        jwt_add_header(jwt, "typ", "JWT") != 0 || jwt_add_grant(jwt, "sub", user_id) != 0 ||
        jwt_add_grant(jwt, "userId", user_id) != 0 || jwt_add_grant(jwt, "email", email) != 0 ||
        jwt_add_grant(jwt, "key", email) != 0 || jwt_add_grant_int(jwt, "iat", (long)now) != 0 ||
        jwt_add_grant_int(jwt, "exp", (long)exp) != 0 ||
        jwt_add_grant_int(jwt, "ver", (long)token_version) != 0)
        goto done;
    token = jwt_encode_str(jwt); /* malloc'd: libjwt 1.10 has no custom allocator */
done:
    if (jwt)
        jwt_free(jwt);
    return token;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

/* Strict base64url without padding (RFC 7515): the alphabet only, no '=', and the unused bits
 * of the last character zero, so a token has exactly one spelling. Not constant-time, and
 * need not be: a token's parts are public, and the signature is compared in constant time
 * after decoding. (libsodium's constant-time decoder was 6% of a GET /users/me.) The result
 * is NUL-terminated (not counted). */
static int b64url_decode(const char *s, size_t n, unsigned char **out, size_t *out_len)
{
    if (n == 0 || n % 4 == 1)
        return -1;
    unsigned char *bin = xmalloc(n / 4 * 3 + 3);
    size_t len = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            free(bin);
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            bin[len++] = (unsigned char)(acc >> 16);
            bin[len++] = (unsigned char)(acc >> 8);
            bin[len++] = (unsigned char)acc;
            acc = 0;
        }
    }
    size_t rest = n % 4; /* 2 chars: 1 byte + 4 unused bits; 3 chars: 2 bytes + 2 bits */
    if (rest && (acc & ((1u << (rest == 2 ? 4 : 2)) - 1)) != 0) {
        free(bin);
        return -1;
    }
    if (rest == 2)
        bin[len++] = (unsigned char)(acc >> 4);
    else if (rest == 3) {
        bin[len++] = (unsigned char)(acc >> 10);
        bin[len++] = (unsigned char)(acc >> 2);
    }
    bin[len] = '\0';
    *out = bin;
    *out_len = len;
    return 0;
}

/* Decodes one segment into a JSON object; NULL for anything else, including duplicate keys
 * (another reader could pick the other value). */
static cJSON *segment_json(const char *s, size_t n)
{
    unsigned char *bin = NULL;
    size_t len = 0;
    const char *end = NULL;
    cJSON *json = NULL;
    if (b64url_decode(s, n, &bin, &len) != 0)
        return NULL;
    if (memchr(bin, '\0', len))
        goto done;
    json = cJSON_ParseWithOpts((const char *)bin, &end, 1);
    if (!json)
        goto done;
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        json = NULL;
        goto done;
    }
    for (const cJSON *a = json->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (strcmp(a->string, b->string) == 0) {
                cJSON_Delete(json);
                json = NULL;
                goto done;
            }
done:
    free(bin);
    return json;
}

static bool header_ok(const cJSON *h)
{
    const cJSON *alg = cJSON_GetObjectItemCaseSensitive(h, "alg");
    const cJSON *typ = cJSON_GetObjectItemCaseSensitive(h, "typ");
    if (!cJSON_IsString(alg) || strcmp(alg->valuestring, "HS256") != 0)
        return false;
    if (typ && (!cJSON_IsString(typ) || strcmp(typ->valuestring, "JWT") != 0))
        return false;
    /* RFC 7515 4.1.11: extensions we do not understand must be rejected. */
    if (cJSON_GetObjectItemCaseSensitive(h, "crit"))
        return false;
    return true;
}

static bool signature_ok(const config_auth_t *cfg, const char *token, size_t signed_len,
                         const char *sig, size_t sig_len)
{
    unsigned char *got = NULL;
    size_t got_len = 0;
    unsigned char want[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    bool ok = false;
    if (b64url_decode(sig, sig_len, &got, &got_len) != 0)
        return false;
    if (got_len != AUTH_HS256_LEN)
        goto done;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)cfg->jwt_secret,
                                strlen(cfg->jwt_secret));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, signed_len);
    crypto_auth_hmacsha256_final(&st, want);
    ok = sodium_memcmp(want, got, AUTH_HS256_LEN) == 0;
    sodium_memzero(&st, sizeof st);
done:
    free(got);
    return ok;
}

/* A finite NumericDate in [0, 2^53]. */
static bool date_ok(const cJSON *v)
{
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
           v->valuedouble <= AUTH_MAX_DATE;
}

static bool int_ok(const cJSON *v)
{
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return false;
    double d = v->valuedouble;
    return d >= -AUTH_MAX_DATE && d <= AUTH_MAX_DATE && d == (double)(int64_t)d;
}

int auth_token_verify(const config_auth_t *cfg, const char *token, auth_claims_t *out)
{
    cJSON *header = NULL, *payload = NULL;
    int rc = AUTH_EINVAL;
    auth_claims_t c;
    memset(&c, 0, sizeof c);
    if (!secret_ok(cfg) || !token || !out)
        return AUTH_EINVAL;
    size_t len = strnlen(token, AUTH_MAX_TOKEN + 1);
    if (len > AUTH_MAX_TOKEN)
        return AUTH_EINVAL;
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return AUTH_EINVAL;
    const char *dot2 = memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(token + len - dot2 - 1)))
        return AUTH_EINVAL;

    /* 1. header, untrusted but needed to refuse anything but HS256 before any crypto */
    header = segment_json(token, (size_t)(dot1 - token));
    if (!header || !header_ok(header))
        goto done;
    /* 2. signature over "header.payload" */
    if (!signature_ok(cfg, token, (size_t)(dot2 - token), dot2 + 1,
                      (size_t)(token + len - dot2 - 1)))
        goto done;
    /* 3. only now the payload */
    payload = segment_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (!payload)
        goto done;
    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(payload, "sub");
    const cJSON *uid = cJSON_GetObjectItemCaseSensitive(payload, "userId");
    const cJSON *email = cJSON_GetObjectItemCaseSensitive(payload, "email");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(payload, "ver");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(payload, "exp");
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(payload, "nbf");
    const cJSON *iat = cJSON_GetObjectItemCaseSensitive(payload, "iat");
    if (!cJSON_IsString(sub) || !id_valid(sub->valuestring) || !cJSON_IsString(uid) ||
        strcmp(sub->valuestring, uid->valuestring) != 0)
        goto done;
    if (!cJSON_IsString(email) || !auth_email_valid(email->valuestring, strlen(email->valuestring)))
        goto done;
    if (!int_ok(ver) || !date_ok(exp) || (nbf && !date_ok(nbf)) || (iat && !date_ok(iat)))
        goto done;

    double now = (double)time_now_ms() / 1000.0;
    if (exp->valuedouble <= now) {
        rc = AUTH_EEXPIRED;
        goto done;
    }
    if (nbf && nbf->valuedouble > now) {
        rc = AUTH_ENOTYET;
        goto done;
    }
    str_copy(c.user_id, sizeof c.user_id, sub->valuestring);
    str_copy(c.email, sizeof c.email, email->valuestring);
    c.token_version = (int64_t)ver->valuedouble;
    c.exp = (int64_t)exp->valuedouble;
    c.iat = iat ? (int64_t)iat->valuedouble : 0;
    *out = c;
    rc = AUTH_OK;
done:
    cJSON_Delete(header);
    cJSON_Delete(payload);
    return rc;
}

/* ---- header and input checks -------------------------------------------------------- */

static bool token68_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '+' || ch == '/';
}

const char *auth_bearer(const char *header, size_t *len)
{
    if (len)
        *len = 0;
    if (!header || strncasecmp(header, "bearer", 6) != 0 || header[6] != ' ')
        return NULL;
    const char *p = header + 6;
    while (*p == ' ')
        p++;
    const char *start = p;
    while (token68_char(*p))
        p++;
    while (*p == '=') /* token68 allows trailing padding */
        p++;
    const char *end = p;
    while (*p == ' ' || *p == '\t') /* trailing whitespace is tolerated, nothing else */
        p++;
    if (*p != '\0' || end == start)
        return NULL;
    if (len)
        *len = (size_t)(end - start);
    return start;
}

static bool atext(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-/=?^_`{|}~", ch));
}

static bool domain_ok(const char *d, size_t n)
{
    size_t labels = 0, i = 0;
    if (n == 0 || n > 253)
        return false;
    while (i <= n) {
        size_t start = i;
        while (i < n && d[i] != '.')
            i++;
        size_t l = i - start;
        if (l == 0 || l > 63 || d[start] == '-' || d[i - 1] == '-')
            return false;
        for (size_t k = start; k < i; k++) {
            unsigned char ch = (unsigned char)d[k];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '-'))
                return false;
        }
        labels++;
        i++; /* skip the dot (or step past the end) */
    }
    return labels >= 2;
}

int auth_email_valid(const char *email, size_t len)
{
    if (!email || len == 0 || len > 254)
        return 0;
    const char *at = memchr(email, '@', len);
    if (!at || memchr(at + 1, '@', len - (size_t)(at - email) - 1))
        return 0;
    size_t local = (size_t)(at - email);
    if (local == 0 || local > 64 || email[0] == '.' || email[local - 1] == '.')
        return 0;
    for (size_t i = 0; i < local; i++) {
        unsigned char ch = (unsigned char)email[i];
        if (ch == '.') {
            if (email[i + 1] == '.')
                return 0;
        } else if (!atext(ch)) {
            return 0;
        }
    }
    return domain_ok(at + 1, len - local - 1) ? 1 : 0;
}

int auth_password_valid(const char *password, size_t len)
{
    if (!password || len < 8 || len > 1024)
        return 0;
    return memchr(password, '\0', len) ? 0 : 1;
}
