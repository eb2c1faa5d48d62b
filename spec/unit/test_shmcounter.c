/* The shared-memory counter table behind the SQLite store's counters: exact across processes,
 * windows, long keys, prefix deletion, a full neighbourhood, a holder killed mid-update and a
 * damaged file. Real files, real processes (fork). */
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmcounter.h"
#include "t.h"
#include "util.h"

static char dir[] = "/tmp/faas-shmctr-XXXXXX";

static char *file(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static shmctr_t *open_at(const char *name)
{
    char err[512] = "", *path = file(name);
    shmctr_t *t = shmctr_open(path, err, sizeof err);
    if (!t)
        fprintf(stderr, "  open %s: %s\n", path, err);
    free(path);
    return t;
}

static int64_t incr(shmctr_t *t, const char *key, int64_t delta, int64_t now)
{
    int64_t v = -1;
    return shmctr_incr(t, key, 60000, delta, now, &v, NULL) == 0 ? v : -1;
}

TEST("two processes incrementing 20000 times each count 40000")
{
    shmctr_t *t = open_at("race");
    CHECK(t != NULL);
    if (!t)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        shmctr_t *c = open_at("race"); /* its own mapping, as another API process */
        for (int i = 0; i < 20000; i++)
            incr(c, "race", 1, 1000);
        _exit(0);
    }
    for (int i = 0; i < 20000; i++)
        incr(t, "race", 1, 1000);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_INT(incr(t, "race", 0, 1000), 40000);
    shmctr_close(t);
}

TEST("a counter starts from zero in each window and says how long its window lasts")
{
    shmctr_t *t = open_at("window");
    CHECK(t != NULL);
    if (!t)
        return;
    int64_t v = -1, reset = -1;
    CHECK_INT(shmctr_incr(t, "w", 1000, 2, 10100, &v, &reset), 0);
    CHECK_INT(v, 2);
    CHECK_INT(reset, 900);
    CHECK_INT(shmctr_incr(t, "w", 1000, 1, 10999, &v, &reset), 0);
    CHECK_INT(v, 3);
    CHECK_INT(reset, 1);
    CHECK_INT(shmctr_incr(t, "w", 1000, 0, 11000, &v, &reset), 0);
    CHECK_INT(v, 0);
    CHECK_INT(reset, 1000);
    CHECK_INT(shmctr_incr(t, "w", 1000, 1, 11500, &v, NULL), 0);
    CHECK_INT(v, 1);
    /* reading a counter nobody started is 0 */
    CHECK_INT(incr(t, "never", 0, 11500), 0);
    shmctr_close(t);
}

TEST("long keys that share their first bytes are different counters")
{
    shmctr_t *t = open_at("long");
    CHECK(t != NULL);
    if (!t)
        return;
    char a[300], b[300];
    memset(a, 'k', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[sizeof b - 2] = 'z';
    CHECK_INT(incr(t, a, 5, 0), 5);
    CHECK_INT(incr(t, b, 7, 0), 7);
    CHECK_INT(incr(t, a, 1, 0), 6);
    shmctr_close(t);
}

TEST("deleting a prefix ends only the counters under it, in every process")
{
    shmctr_t *t = open_at("prefix"), *other = open_at("prefix");
    CHECK(t && other);
    if (!t || !other)
        return;
    char longkey[200];
    snprintf(longkey, sizeof longkey, "u:aaaa:%0180d", 1);
    incr(t, "u:aaaa:exec", 3, 0);
    incr(t, longkey, 4, 0);
    incr(t, "u:aaab:exec", 5, 0);
    incr(t, "x:u:aaaa:", 6, 0);
    shmctr_delete_prefix(other, "u:aaaa:");
    CHECK_INT(incr(t, "u:aaaa:exec", 0, 0), 0);
    CHECK_INT(incr(t, longkey, 0, 0), 0);
    CHECK_INT(incr(t, "u:aaab:exec", 0, 0), 5);
    CHECK_INT(incr(t, "x:u:aaaa:", 0, 0), 6);
    CHECK_INT(incr(t, "u:aaaa:exec", 1, 0), 1); /* and counts again from zero */
    shmctr_close(t);
    shmctr_close(other);
}

TEST("when every slot is in its window new keys fail cleanly, and succeed once windows end")
{
    shmctr_t *t = open_at("full");
    CHECK(t != NULL);
    if (!t)
        return;
    int ok = 0, refused = 0;
    char key[32];
    for (int i = 0; i < SHMCTR_SLOTS + 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        if (incr(t, key, 1, 0) == 1)
            ok++;
        else
            refused++;
    }
    CHECK(ok > SHMCTR_SLOTS * 9 / 10 && ok <= SHMCTR_SLOTS);
    CHECK(refused >= 1000);
    /* the keys that got a slot still count */
    CHECK_INT(incr(t, "k0", 1, 0), 2);
    /* a minute later every window has ended: all slots can be had again */
    int again = 0;
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "n%d", i);
        again += incr(t, key, 1, 60000) == 1;
    }
    CHECK_INT(again, 2000);
    shmctr_close(t);
}

TEST("a process killed while counting leaves the table usable and the counts near exact")
{
    shmctr_t *t = open_at("killed");
    CHECK(t != NULL);
    if (!t)
        return;
    for (int round = 0; round < 20; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (;;)
                incr(t, "busy", 1, 0);
        }
        usleep(2000 + (useconds_t)round * 300);
        int64_t before = incr(t, "busy", 0, 0);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* never blocks: a lock its holder died with is recovered */
        int64_t after = incr(t, "busy", 1, 0);
        CHECK(after >= before + 1);
    }
    shmctr_close(t);
}

TEST("a damaged or foreign file is started afresh")
{
    char *path = file("damaged");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("not a counter table", f);
        fclose(f);
    }
    shmctr_t *t = open_at("damaged");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(incr(t, "k", 1, 0), 1);
        shmctr_close(t);
    }
    /* and reopening keeps what is there */
    t = open_at("damaged");
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(incr(t, "k", 1, 0), 2);
        shmctr_close(t);
    }
    free(path);
}

TEST("a table without a file is private to the process")
{
    char err[256] = "";
    shmctr_t *t = shmctr_open(NULL, err, sizeof err);
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_INT(incr(t, "m", 4, 0), 4);
    shmctr_close(t);
}

static int setup(void)
{
    return mkdtemp(dir) ? 0 : -1;
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    free(cmd);
}

T_MAIN_WITH(setup, teardown)
