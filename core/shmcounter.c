/* Fixed-window counters in a shared memory-mapped file (see shmcounter.h). */
#include "shmcounter.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define SHMCTR_MAGIC 0x6661617363747231ULL /* "faasctr1" */
#define SHMCTR_VERSION 1
#define SHMCTR_PROBE 64 /* slots searched from a key's home slot */
#define SHMCTR_HASHED 0xff

typedef struct {
    uint64_t hash; /* of the whole key; 0: never used */
    int64_t window_start;
    int64_t expires_at; /* window_start + window_ms; 0: ended early (deleted) */
    int64_t value;
    uint8_t keylen; /* bytes in key, or SHMCTR_HASHED: prefix + digest */
    uint8_t unused;
    char key[SHMCTR_KEY_INLINE];
} slot_t;

typedef struct {
    uint64_t magic;
    uint32_t version;
    uint32_t slots;
    uint32_t slot_size;
    pthread_mutex_t mu; /* process-shared, robust */
    /* pages of slots ever used: a prefix scan reads only those, so it does not fault in
     * (and add to the RSS of every process) the whole table */
    uint64_t used_pages[(SHMCTR_SLOTS * 128 / 4096 + 63) / 64];
} head_t;

#define HEAD_SIZE 4096
#define SLOTS_PER_PAGE (4096 / sizeof(slot_t))
#define MAP_SIZE ((size_t)HEAD_SIZE + (size_t)SHMCTR_SLOTS * sizeof(slot_t))

_Static_assert(sizeof(slot_t) == 128, "two slots per cache line pair");
_Static_assert(sizeof(head_t) <= HEAD_SIZE, "the header fits its page");

struct shmctr {
    head_t *head;
    slot_t *slots;
};

/* A key as stored in a slot: inline, or prefix + BLAKE2b digest when too long. */
typedef struct {
    uint64_t hash;
    uint8_t len;
    char bytes[SHMCTR_KEY_INLINE];
} skey_t;

static void skey_make(skey_t *k, const char *key)
{
    size_t n = strlen(key);
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
    k->hash = h ? h : 1;
    memset(k->bytes, 0, sizeof k->bytes);
    if (n <= SHMCTR_KEY_INLINE) {
        k->len = (uint8_t)n;
        memcpy(k->bytes, key, n);
        return;
    }
    k->len = SHMCTR_HASHED;
    memcpy(k->bytes, key, SHMCTR_KEY_PREFIX);
    crypto_generichash((unsigned char *)k->bytes + SHMCTR_KEY_PREFIX,
                       SHMCTR_KEY_INLINE - SHMCTR_KEY_PREFIX, (const unsigned char *)key, n,
                       NULL, 0);
}

static bool slot_has(const slot_t *s, const skey_t *k)
{
    return s->hash == k->hash && s->keylen == k->len &&
           memcmp(s->key, k->bytes, k->len == SHMCTR_HASHED ? SHMCTR_KEY_INLINE : k->len) == 0;
}

static void head_init(head_t *h)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&h->mu, &a);
    pthread_mutexattr_destroy(&a);
    h->version = SHMCTR_VERSION;
    h->slots = SHMCTR_SLOTS;
    h->slot_size = sizeof(slot_t);
    __atomic_store_n(&h->magic, SHMCTR_MAGIC, __ATOMIC_RELEASE);
}

static bool head_valid(const head_t *h)
{
    return h->magic == SHMCTR_MAGIC && h->version == SHMCTR_VERSION &&
           h->slots == SHMCTR_SLOTS && h->slot_size == sizeof(slot_t);
}

/* Maps the file, (re)creating the table under an exclusive flock when it is not ours. */
static void *map_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open counter file '%s': %s", path, strerror(errno));
        return NULL;
    }
    void *map = MAP_FAILED;
    if (flock(fd, LOCK_EX) != 0) {
        snprintf(err, errlen, "cannot lock counter file '%s': %s", path, strerror(errno));
        goto done;
    }
    head_t probe = {0};
    struct stat st;
    bool ours = fstat(fd, &st) == 0 && (size_t)st.st_size == MAP_SIZE &&
                pread(fd, &probe, sizeof probe, 0) == (ssize_t)sizeof probe &&
                head_valid(&probe);
    /* not ours (new, another version, damaged): start from a zeroed (sparse) file */
    if (!ours && (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)MAP_SIZE) != 0)) {
        snprintf(err, errlen, "cannot size counter file '%s': %s", path, strerror(errno));
        goto done;
    }
    map = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map counter file '%s': %s", path, strerror(errno));
        goto done;
    }
    if (!ours)
        head_init(map);
done:
    /* explicitly: the mapping keeps the open file description, and with it a flock, alive */
    flock(fd, LOCK_UN);
    close(fd);
    return map == MAP_FAILED ? NULL : map;
}

shmctr_t *shmctr_open(const char *path, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return NULL;
    }
    void *map;
    if (path) {
        map = map_file(path, err, errlen);
    } else {
        map = mmap(NULL, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (map == MAP_FAILED) {
            snprintf(err, errlen, "cannot map counters: %s", strerror(errno));
            map = NULL;
        } else {
            head_init(map);
        }
    }
    if (!map)
        return NULL;
    shmctr_t *t = xcalloc(1, sizeof *t);
    t->head = map;
    t->slots = (slot_t *)((char *)map + HEAD_SIZE);
    return t;
}

void shmctr_close(shmctr_t *t)
{
    if (!t)
        return;
    munmap(t->head, MAP_SIZE);
    free(t);
}

static int lock(shmctr_t *t)
{
    int rc = pthread_mutex_lock(&t->head->mu);
    if (rc == EOWNERDEAD) /* its holder died mid-update: at most that counter is off */
        rc = pthread_mutex_consistent(&t->head->mu);
    return rc;
}

int shmctr_incr(shmctr_t *t, const char *key, int64_t window_ms, int64_t delta, int64_t now_ms,
                int64_t *value, int64_t *reset_ms)
{
    if (window_ms <= 0)
        return -1;
    skey_t k;
    skey_make(&k, key);
    int64_t start = now_ms / window_ms * window_ms;
    if (lock(t) != 0)
        return -1;
    /* The key's slot is within SHMCTR_PROBE of its home, before the first never-used slot
     * (slots are never emptied again, only ended): find it, or the first ended slot. */
    slot_t *found = NULL, *free_slot = NULL;
    size_t home = (size_t)(k.hash % SHMCTR_SLOTS);
    for (size_t i = 0; i < SHMCTR_PROBE && !found; i++) {
        slot_t *s = &t->slots[(home + i) % SHMCTR_SLOTS];
        if (s->hash == 0) {
            if (!free_slot)
                free_slot = s;
            break;
        }
        if (slot_has(s, &k))
            found = s;
        else if (!free_slot && s->expires_at <= now_ms)
            free_slot = s;
    }
    slot_t *s = found ? found : free_slot;
    int64_t v = 0;
    if (!found && delta == 0) { /* a read of a counter nobody started */
        pthread_mutex_unlock(&t->head->mu);
        goto out;
    }
    if (s) {
        if (!found) {
            size_t page = (size_t)(s - t->slots) / SLOTS_PER_PAGE;
            t->head->used_pages[page / 64] |= 1ULL << (page % 64);
            s->hash = k.hash;
            s->keylen = k.len;
            memcpy(s->key, k.bytes, sizeof s->key);
            s->expires_at = 0;
        }
        if (s->expires_at <= now_ms || s->window_start < start) { /* a new window */
            s->window_start = start;
            s->value = 0;
        }
        s->expires_at = s->window_start + window_ms;
        s->value += delta;
        v = s->value;
    }
    pthread_mutex_unlock(&t->head->mu);
    if (!s)
        return -1;
out:
    if (value)
        *value = v;
    if (reset_ms)
        *reset_ms = start + window_ms - now_ms;
    return 0;
}

void shmctr_delete_prefix(shmctr_t *t, const char *prefix)
{
    size_t n = strlen(prefix);
    if (n == 0 || n > SHMCTR_KEY_PREFIX || lock(t) != 0)
        return;
    for (size_t i = 0; i < SHMCTR_SLOTS; i++) {
        size_t page = i / SLOTS_PER_PAGE;
        if (!(t->head->used_pages[page / 64] & (1ULL << (page % 64)))) {
            i += SLOTS_PER_PAGE - 1;
            continue;
        }
        slot_t *s = &t->slots[i];
        if (s->hash && s->expires_at && (s->keylen == SHMCTR_HASHED || s->keylen >= n) &&
            memcmp(s->key, prefix, n) == 0)
            s->expires_at = 0;
    }
    pthread_mutex_unlock(&t->head->mu);
}
