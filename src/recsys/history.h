/** Per-user interaction events that arrive while serving (POST /events), kept in memory
 *  (bounded per user) and persisted in an append-only log replayed at start-up.
 *
 *  Log format: a 16-byte header ("NRHIST01" + u32 version + u32 record size), then fixed
 *  24-byte little-endian records {u32 user, u32 item, i64 unix_ms, u32 seq, u32 crc32}. A torn
 *  last record (a crash mid-write) is cut off at open; a record whose CRC fails in the middle
 *  is skipped with a warning and counted, and everything else is kept. */
#ifndef RECSYS_HISTORY_H
#define RECSYS_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

struct hist_store;

struct hist_open_stats {
    uint64_t records;       /* good records replayed */
    uint64_t skipped;       /* corrupt records skipped */
    uint64_t torn_bytes;    /* bytes cut from the end */
};

/** Opens (creating if absent) the log at `path` and replays it. `max_per_user` bounds the
 *  events kept in memory per user (older ones are dropped from memory, not from the log).
 *  `sync` makes every append fdatasync (durable across power loss; slower). */
struct hist_store *hist_open(const char *path, uint32_t max_per_user, bool sync,
                             struct hist_open_stats *stats, struct err *err);
void hist_close(struct hist_store *h);

/** Appends one event to the log and to memory. Thread-safe. */
int hist_append(struct hist_store *h, uint32_t user, uint32_t item, int64_t unix_ms,
                struct err *err);

/** Copies up to `max` of the user's most recent event items, oldest first, into out; returns
 *  the count (0 for a user with no events). Thread-safe. */
int hist_get(struct hist_store *h, uint32_t user, uint32_t *out, int max);

/** A number that changes whenever the user gets a new event (0 if none yet): part of cache
 *  keys, so an event invalidates the user's cached answers without a scan. */
uint64_t hist_version(struct hist_store *h, uint32_t user);

uint64_t hist_total_events(struct hist_store *h);

#endif
