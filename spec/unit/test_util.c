#include "t.h"
#include "util.h"

TEST("parses sizes with units")
{
    int64_t v = 0;
    CHECK(size_parse("64m", &v) == 0);
    CHECK_INT(v, 64 * 1024 * 1024);
    CHECK(size_parse("1g", &v) == 0);
    CHECK_INT(v, 1024LL * 1024 * 1024);
    CHECK(size_parse("512", &v) == 0);
    CHECK_INT(v, 512);
    CHECK(size_parse("1.5k", &v) == 0);
    CHECK_INT(v, 1536);
}

TEST("rejects malformed sizes")
{
    int64_t v;
    CHECK(size_parse("", &v) < 0);
    CHECK(size_parse("12x", &v) < 0);
    CHECK(size_parse("-5m", &v) < 0);
    CHECK(size_parse("m", &v) < 0);
    CHECK(size_parse("1e30g", &v) < 0);
}

TEST("generates distinct valid ids")
{
    char a[ID_LEN + 1], b[ID_LEN + 1];
    id_new(a);
    id_new(b);
    CHECK(id_valid(a));
    CHECK(id_valid(b));
    CHECK(strcmp(a, b) != 0);
    CHECK(!id_valid("123"));
    CHECK(!id_valid("zzzzzzzzzzzzzzzzzzzzzzzz"));
    CHECK(!id_valid("0123456789abcdef012345678"));
}

TEST("base64 round-trips binary bytes")
{
    unsigned char in[256];
    for (int i = 0; i < 256; i++)
        in[i] = (unsigned char)i;
    char *enc = base64_encode(in, sizeof in);
    unsigned char *dec = NULL;
    size_t n = 0;
    CHECK(base64_decode(enc, strlen(enc), &dec, &n) == 0);
    CHECK_INT(n, 256);
    CHECK(dec && memcmp(dec, in, 256) == 0);
    free(enc);
    free(dec);
    CHECK(base64_decode("!!!", 3, &dec, &n) < 0);
}

TEST("formats RFC 3339 UTC times")
{
    char out[32];
    time_rfc3339(1764342673123LL, out);
    CHECK_STR(out, "2025-11-28T15:11:13.123Z");
}

T_MAIN
