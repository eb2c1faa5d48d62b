#include "imageref.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static bool is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | -+ */
static bool path_component_valid(const char *s, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_alnum_lower(s[0]))
        return false;
    while (i < n) {
        while (i < n && is_alnum_lower(s[i]))
            i++;
        if (i == n)
            return true;
        size_t sep = i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == n || !is_alnum_lower(s[i]) || i == sep)
            return false;
    }
    return true;
}

/* domain := component ('.' component)* [':' port], component := [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? */
static bool domain_valid(const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    size_t host_len = colon ? (size_t)(colon - s) : n;
    if (host_len == 0)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= host_len; i++) {
        if (i == host_len || s[i] == '.') {
            size_t len = i - start;
            if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
                return false;
            start = i + 1;
        } else if (!isalnum((unsigned char)s[i]) && s[i] != '-') {
            return false;
        }
    }
    if (colon) {
        size_t plen = n - host_len - 1;
        if (plen == 0 || plen > 5)
            return false;
        long port = 0;
        for (size_t i = host_len + 1; i < n; i++) {
            if (!isdigit((unsigned char)s[i]))
                return false;
            port = port * 10 + (s[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    }
    return true;
}

static bool tag_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    if (!(isalnum((unsigned char)s[0]) || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-'))
            return false;
    return true;
}

static bool digest_valid(const char *s)
{
    const char *colon = strchr(s, ':');
    if (!colon || colon == s)
        return false;
    if (!isalpha((unsigned char)s[0]))
        return false;
    for (const char *p = s; p < colon; p++)
        if (!isalnum((unsigned char)*p) && !strchr("-_+.", *p))
            return false;
    size_t hex = strlen(colon + 1);
    if (hex < 32 || hex > 128)
        return false;
    for (const char *p = colon + 1; *p; p++)
        if (!isxdigit((unsigned char)*p))
            return false;
    return true;
}

int imageref_parse(const char *s, imageref_t *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    size_t n = strlen(s);
    if (n == 0) {
        snprintf(why, whylen, "image must not be empty");
        return -1;
    }
    if (n > 511) {
        snprintf(why, whylen, "image reference is too long");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) {
            snprintf(why, whylen, "image reference contains an invalid character");
            return -1;
        }
    }
    char tmp[512];
    str_copy(tmp, sizeof tmp, s);

    char *at = strchr(tmp, '@');
    if (at) {
        *at = '\0';
        if (!digest_valid(at + 1)) {
            snprintf(why, whylen, "invalid digest '%.100s'", at + 1);
            return -1;
        }
        str_copy(out->digest, sizeof out->digest, at + 1);
    }
    /* a tag is after the last ':' that follows the last '/' */
    char *slash = strrchr(tmp, '/');
    char *colon = strrchr(slash ? slash : tmp, ':');
    if (colon) {
        *colon = '\0';
        if (!tag_valid(colon + 1)) {
            snprintf(why, whylen, "invalid tag '%.100s'", colon + 1);
            return -1;
        }
        str_copy(out->tag, sizeof out->tag, colon + 1);
    }
    char *name = tmp;
    if (strlen(name) > 255) {
        snprintf(why, whylen, "image name is longer than 255 characters");
        return -1;
    }
    char *first = strchr(name, '/');
    if (first) {
        size_t dlen = (size_t)(first - name);
        bool is_domain = memchr(name, '.', dlen) || memchr(name, ':', dlen) ||
                         (dlen == 9 && strncmp(name, "localhost", 9) == 0);
        for (size_t i = 0; i < dlen && !is_domain; i++)
            if (isupper((unsigned char)name[i]))
                is_domain = true;
        if (is_domain) {
            if (!domain_valid(name, dlen)) {
                snprintf(why, whylen, "invalid registry host '%.*s'", (int)(dlen > 100 ? 100 : dlen),
                         name);
                return -1;
            }
            snprintf(out->domain, sizeof out->domain, "%.*s", (int)dlen, name);
            name = first + 1;
        }
    }
    if (!*name) {
        snprintf(why, whylen, "image name is missing");
        return -1;
    }
    const char *p = name;
    while (1) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (!path_component_valid(p, len)) {
            snprintf(why, whylen,
                     "invalid image name component '%.*s' (lowercase letters, digits and "
                     "separators . _ __ - only)",
                     (int)(len > 100 ? 100 : len), p);
            return -1;
        }
        if (!end)
            break;
        p = end + 1;
    }
    str_copy(out->path, sizeof out->path, name);
    return 0;
}

void imageref_default_name(const imageref_t *r, char *out, size_t outlen)
{
    const char *last = strrchr(r->path, '/');
    str_copy(out, outlen, last ? last + 1 : r->path);
}
