#include "imageref.h"
#include "t.h"

static int parse(const char *s, imageref_t *r)
{
    char why[256];
    return imageref_parse(s, r, why, sizeof why);
}

TEST("accepts the reference forms Docker accepts")
{
    imageref_t r;
    const char *ok[] = {"busybox", "busybox:latest", "library/busybox:1.36",
                        "registry.example.invalid:5000/team/app:v1.2_3",
                        "localhost/app", "my-app", "a__b", "a.b-c", "x/y/z",
                        "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                        "app:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                        "faas-test/echo:latest", NULL};
    for (int i = 0; ok[i]; i++) {
        int rc = parse(ok[i], &r);
        if (rc != 0)
            fprintf(stderr, "  rejected %s\n", ok[i]);
        CHECK(rc == 0);
    }
}

TEST("splits registry host, path, tag and digest")
{
    imageref_t r;
    CHECK(parse("registry.example.invalid:5000/team/app:v1", &r) == 0);
    CHECK_STR(r.domain, "registry.example.invalid:5000");
    CHECK_STR(r.path, "team/app");
    CHECK_STR(r.tag, "v1");
    CHECK(parse("team/app", &r) == 0);
    CHECK_STR(r.domain, "");
    CHECK_STR(r.path, "team/app");
    char name[64];
    imageref_default_name(&r, name, sizeof name);
    CHECK_STR(name, "app");
}

TEST("rejects hostile and malformed references")
{
    imageref_t r;
    const char *bad[] = {"", "UPPER", "a b", "a;rm -rf /", "../etc/passwd", "a//b", "-a", "a-",
                         "a:", "a:-tag", "a@sha256:12", "a@:abc", "host:99999/a", ":tag",
                         "a/", "/a", "a..b", "a\nb", "$(id)", "a:b:c", "a@sha256:zz", NULL};
    for (int i = 0; bad[i]; i++) {
        int rc = parse(bad[i], &r);
        if (rc == 0)
            fprintf(stderr, "  accepted %s\n", bad[i]);
        CHECK(rc < 0);
    }
    char longname[600];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(parse(longname, &r) < 0);
}

T_MAIN
