/* A tiny test harness: TEST("behaviour") { ... CHECK(cond); ... } and T_MAIN at the end.
 * Prints one line per failed check and ends with "N passed, N failed". */
#ifndef FAAS_T_H
#define FAAS_T_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct t_case {
    const char *name;
    void (*fn)(void);
    struct t_case *next;
} t_case_t;

static t_case_t *t_head, **t_tail = &t_head;
static int t_failed_checks;

#define T_CAT2(a, b) a##b
#define T_CAT(a, b) T_CAT2(a, b)
#define TEST(desc)                                                                         \
    static void T_CAT(t_fn_, __LINE__)(void);                                              \
    __attribute__((constructor)) static void T_CAT(t_reg_, __LINE__)(void)                 \
    {                                                                                      \
        static t_case_t c = {desc, T_CAT(t_fn_, __LINE__), NULL};                          \
        *t_tail = &c;                                                                      \
        t_tail = &c.next;                                                                  \
    }                                                                                      \
    static void T_CAT(t_fn_, __LINE__)(void)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            t_failed_checks++;                                                             \
        }                                                                                  \
    } while (0)
#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *t_a = (a), *t_b = (b);                                                 \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                                       \
            fprintf(stderr, "  %s:%d: '%s' != '%s'\n", __FILE__, __LINE__,                 \
                    t_a ? t_a : "(null)", t_b ? t_b : "(null)");                           \
            t_failed_checks++;                                                             \
        }                                                                                  \
    } while (0)
#define CHECK_INT(a, b)                                                                    \
    do {                                                                                   \
        long long t_a = (long long)(a), t_b = (long long)(b);                              \
        if (t_a != t_b) {                                                                  \
            fprintf(stderr, "  %s:%d: %s = %lld, expected %lld\n", __FILE__, __LINE__, #a, \
                    t_a, t_b);                                                             \
            t_failed_checks++;                                                             \
        }                                                                                  \
    } while (0)

/* Optional per-file setup: define T_SETUP/T_TEARDOWN functions and use T_MAIN_WITH. */
static int t_run(const char *file, int (*setup)(void), void (*teardown)(void))
{
    int passed = 0, failed = 0;
    const char *only = getenv("T_ONLY");
    if (setup && setup() != 0) {
        fprintf(stderr, "%s: setup failed\n", file);
        printf("%s: 0 passed, 1 failed\n", file);
        return 1;
    }
    for (t_case_t *c = t_head; c; c = c->next) {
        if (only && !strstr(c->name, only))
            continue;
        int before = t_failed_checks;
        c->fn();
        if (t_failed_checks == before) {
            passed++;
            fprintf(stderr, "ok   %s\n", c->name);
        } else {
            failed++;
            fprintf(stderr, "FAIL %s\n", c->name);
        }
    }
    if (teardown)
        teardown();
    printf("%s: %d passed, %d failed\n", file, passed, failed);
    return failed ? 1 : 0;
}

#define T_MAIN                                                                             \
    int main(void)                                                                         \
    {                                                                                      \
        return t_run(__FILE__, NULL, NULL);                                                \
    }
#define T_MAIN_WITH(setup, teardown)                                                       \
    int main(void)                                                                         \
    {                                                                                      \
        return t_run(__FILE__, setup, teardown);                                           \
    }

#endif
