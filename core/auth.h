/* Passwords (Argon2id via libsodium) and tokens (JWT HS256 via libjwt). */
#ifndef FAAS_AUTH_H
#define FAAS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

enum {
    AUTH_OK = 0,
    AUTH_EINVAL = -1,   /* malformed, wrong alg/typ, bad signature, missing claims */
    AUTH_EEXPIRED = -2, /* exp in the past */
    AUTH_ENOTYET = -3,  /* nbf in the future */
};

/* Must be called once before anything else (sodium_init). 0 or -1. */
int auth_init(void);

/* Hashes `password` with Argon2id at the configured cost into `out`
 * (crypto_pwhash_STRBYTES = 128 bytes). 0 or -1 (out of memory). */
int auth_password_hash(const config_auth_t *cfg, const char *password, size_t len,
                       char out[128]);
/* 0 when `password` matches `hash`, -1 otherwise. */
int auth_password_verify(const char *hash, const char *password, size_t len);
/* Verifies against a fixed dummy hash of the same cost: callers use it when the email is
 * unknown so that both failures take the same time. Always returns -1. */
int auth_password_verify_dummy(const config_auth_t *cfg, const char *password, size_t len);

typedef struct {
    char user_id[25];
    char email[320];
    int64_t token_version;
    int64_t iat, exp; /* seconds */
} auth_claims_t;

/* Issues a token for the user, the caller frees. iat = now, exp = now + ttl.
 * Claims: sub, userId, email, key (= email), iat, exp, ver. Header typ "JWT".
 * NULL when the secret is shorter than 32 bytes, user_id is not a 24-hex id or the email
 * is not auth_email_valid(). Thread-safe. */
char *auth_token_issue(const config_auth_t *cfg, const char *user_id, const char *email,
                       int64_t token_version);

/* Verifies a token: HS256 only (any other alg, "none" included, is AUTH_EINVAL), typ absent
 * or "JWT", signature compared in constant time, exp required and in the future, nbf (if
 * present) not in the future, sub/userId a 24-hex id, ver present. Fills `out`. */
/* (Also AUTH_EINVAL: secret < 32 bytes, token > 8 KiB, duplicate JSON keys, a "crit"
 * header, email claim not auth_email_valid(), ver not an integer. `out` is written only on
 * AUTH_OK. The caller still has to compare token_version with the stored user's.) */
int auth_token_verify(const config_auth_t *cfg, const char *token, auth_claims_t *out);

/* Extracts the token from an Authorization header value ("Bearer <token>", case-insensitive
 * scheme, single space or more). NULL when absent or malformed. Points into `header`. */
const char *auth_bearer(const char *header, size_t *len);

/* Predicates: 1 when valid, 0 when not (like id_valid; NOT 0/-1).
 * Email syntax check (RFC 5321-ish, <= 254 bytes, one '@', dotted domain, no spaces or
 * control characters; ASCII only: local part = RFC 5322 dot-atom <= 64 bytes, domain =
 * LDH labels, at least two). Password: 8..1024 bytes, no NUL. */
int auth_email_valid(const char *email, size_t len);
int auth_password_valid(const char *password, size_t len);

#endif
