/* Fixed-window counters in a memory-mapped file shared by every process that opens it: the
 * SQLite store keeps its counters here (next to the database, as SQLite keeps its own -shm
 * file), so a plugin's faas.counter.incr costs a lock and a few loads instead of a write
 * transaction, and stays exact across API replicas on the host.
 *
 * The file holds a header (magic, geometry, one process-shared robust mutex) and an open-
 * addressed table of SHMCTR_SLOTS slots. Keys up to SHMCTR_KEY_INLINE bytes are kept as they
 * are; longer ones as their first SHMCTR_KEY_PREFIX bytes and their BLAKE2b digest. A counter
 * lives until its window ends; its slot is then reused. A process that dies holding the lock
 * costs at most the update it was making. */
#ifndef FAAS_SHMCOUNTER_H
#define FAAS_SHMCOUNTER_H

#include <stddef.h>
#include <stdint.h>

#define SHMCTR_SLOTS 16384
#define SHMCTR_KEY_INLINE 94
#define SHMCTR_KEY_PREFIX 62

typedef struct shmctr shmctr_t;

/* Maps `path` (created 0600, or re-initialised when it is not a table of this version);
 * NULL path: a table private to this process. NULL with a message in err. */
shmctr_t *shmctr_open(const char *path, char *err, size_t errlen);
void shmctr_close(shmctr_t *t);

/* Adds delta to `key`'s counter in the window [now - now % window_ms, + window_ms) and
 * returns the new value (delta 0 reads) and the ms left in the window. Returns 0, or -1 when
 * no slot is free near the key's hash (every nearby counter is still in its window). */
int shmctr_incr(shmctr_t *t, const char *key, int64_t window_ms, int64_t delta, int64_t now_ms,
                int64_t *value, int64_t *reset_ms);

/* Ends every counter whose key starts with `prefix` (a deleted user's); prefixes of at most
 * SHMCTR_KEY_PREFIX bytes. */
void shmctr_delete_prefix(shmctr_t *t, const char *prefix);

#endif
