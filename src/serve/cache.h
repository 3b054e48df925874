/** A response cache: an in-process TTL LRU by default, or Redis (`redis://host:port[/db]`).
 *
 *  Redis is optional infrastructure, never a dependency of a request: a Redis that is down or
 *  slow (every command has a timeout of a few milliseconds) makes cache_get a miss and
 *  cache_set a no-op, counted in the stats; the connection is retried after a back-off, so the
 *  cache comes back by itself when Redis does. Each caller slot (one per compute worker) owns
 *  its own Redis connection, so slots never contend; the local LRU is shared under a lock. */
#ifndef SERVE_CACHE_H
#define SERVE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct cache_cfg {
    size_t max_entries;       /* local LRU capacity (default 100000) */
    size_t max_bytes;         /* local LRU bytes of keys + values (default 256 MiB) */
    size_t max_value_bytes;   /* larger values are not cached (default 1 MiB) */
    double ttl_s;             /* default time to live (default 300 s) */
    const char *redis_url;    /* NULL or "": local LRU only */
    int redis_timeout_ms;     /* connect and command timeout (default 5 ms) */
    double redis_retry_s;     /* wait after a failure before reconnecting (default 1 s) */
    int n_slots;              /* callers that may use the cache at once (default 1) */
    double (*now)(void);      /* clock in seconds (tests); default CLOCK_MONOTONIC */
};

struct cache_stats {
    uint64_t hits, misses, sets, evictions, expired;
    uint64_t redis_errors;    /* failed commands or connects (each also a miss or a lost set) */
    bool redis;               /* backend is Redis */
    bool redis_up;            /* every slot's last Redis command succeeded */
    char redis_last_error[160];
};

struct cache;

/** Validates the config (a malformed Redis URL is an error; an unreachable Redis is not: it
 *  is retried later and reported in the stats). */
struct cache *cache_new(const struct cache_cfg *cfg, struct err *err);
void cache_free(struct cache *c);

/** 1 on a hit (*val is a malloc'd copy with a NUL after *len bytes; the caller frees it),
 *  0 on a miss (including any Redis failure). `slot` is 0..n_slots-1. */
int cache_get(struct cache *c, int slot, const char *key, char **val, size_t *len);
/** Stores a copy for ttl_s seconds (<= 0: the default TTL). 0, or a negative error code when
 *  the value was not stored (too large, Redis failure); never fatal to the caller. */
int cache_set(struct cache *c, int slot, const char *key, const char *val, size_t len,
              double ttl_s);
int cache_del(struct cache *c, int slot, const char *key);
void cache_get_stats(struct cache *c, struct cache_stats *out);
/** "local" or "redis". */
const char *cache_backend(const struct cache *c);

#endif
