/* The store front: picks a driver by name and holds the helpers every driver shares (freeing
 * results, status classes, error text, e-mail folding). */
#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* store_mongo.c is written in its own branch. Until it is in the tree, "mongodb" answers that
 * the driver is not built in; once the file exists it is linked like any other driver. (A weak
 * fallback symbol would not do: with static archives it would shadow the real driver.) */
#if defined(__has_include)
#if __has_include("store_mongo.c")
#define STORE_HAVE_MONGO 1
#endif
#endif

store_t *store_open(const config_store_t *cfg, char *err, size_t errlen)
{
    if (!cfg) {
        snprintf(err, errlen, "no store configuration");
        return NULL;
    }
    if (strcmp(cfg->driver, "sqlite") == 0)
        return store_sqlite_open(cfg, err, errlen);
    if (strcmp(cfg->driver, "mongodb") == 0) {
#ifdef STORE_HAVE_MONGO
        return store_mongo_open(cfg, err, errlen);
#else
        snprintf(err, errlen, "store driver 'mongodb' is not built into this binary");
        return NULL;
#endif
    }
    snprintf(err, errlen, "unknown store driver '%s' (expected 'sqlite' or 'mongodb')",
             cfg->driver);
    return NULL;
}

void store_close(store_t *s)
{
    if (s)
        s->ops->close(s);
}

void store_function_clear(store_function_t *f)
{
    if (!f)
        return;
    free(f->env_json);
    f->env_json = NULL;
}

void store_execution_clear(store_execution_t *e)
{
    if (!e)
        return;
    free(e->result);
    free(e->out);
    free(e->err);
    free(e->extra_json);
    e->extra_json = NULL;
    e->result = e->out = e->err = NULL;
    e->out_len = e->err_len = 0;
}

void store_function_list_free(store_function_t *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_function_clear(&list[i]);
    free(list);
}

void store_execution_list_free(store_execution_t *list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        store_execution_clear(&list[i]);
    free(list);
}

bool store_status_final(const char *status)
{
    if (!status)
        return false;
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "timed_out") == 0 || strcmp(status, "error") == 0;
}

bool store_status_valid(const char *status)
{
    if (!status)
        return false;
    return strcmp(status, "queued") == 0 || strcmp(status, "running") == 0 ||
           store_status_final(status);
}

const char *store_strerror(int code)
{
    switch (code) {
    case STORE_OK: return "ok";
    case STORE_ENOTFOUND: return "not found";
    case STORE_EEXIST: return "already exists";
    case STORE_EUNAVAIL: return "store unavailable";
    case STORE_EINVAL: return "invalid value for the store";
    default: return "unknown store error";
    }
}

/* Simple (one-to-one) lower-casing of one code point: ASCII, Latin-1, Latin Extended-A,
 * Greek and Cyrillic, the scripts where addresses with upper-case letters really occur. */
static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 32;
    if ((c >= 0x100 && c <= 0x12F) || (c >= 0x132 && c <= 0x137) ||
        (c >= 0x14A && c <= 0x177))
        return (c & 1) ? c : c + 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
        return (c & 1) ? c + 1 : c;
    if (c == 0x178)
        return 0xFF;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2)
        return c + 32;
    if (c == 0x386)
        return 0x3AC;
    if (c >= 0x388 && c <= 0x38A)
        return c + 37;
    if (c == 0x38C)
        return 0x3CC;
    if (c == 0x38E || c == 0x38F)
        return c + 63;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    if (c >= 0x410 && c <= 0x42F)
        return c + 32;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF))
        return (c & 1) ? c : c + 1;
    return c;
}

/* Decodes one UTF-8 sequence at s (n bytes left). Returns its length, 0 when malformed. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xE0) == 0xC0) {
        len = 2, c = s[0] & 0x1F, min = 0x80;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3, c = s[0] & 0x0F, min = 0x800;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4, c = s[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

static size_t utf8_encode(uint32_t c, char out[4])
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

int store_email_fold(const char *email, char *out, size_t cap)
{
    const unsigned char *s = (const unsigned char *)email;
    size_t n = strlen(email), o = 0;
    if (cap == 0)
        return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        char enc[4];
        size_t len = utf8_decode(s + i, n - i, &cp), elen;
        if (len == 0) { /* not UTF-8: keep the byte as it is */
            enc[0] = (char)s[i];
            len = elen = 1;
        } else {
            elen = utf8_encode(fold_cp(cp), enc);
        }
        if (o + elen >= cap)
            return -1;
        memcpy(out + o, enc, elen);
        o += elen;
        i += len;
    }
    out[o] = '\0';
    return 0;
}
