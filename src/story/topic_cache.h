/** The topic cache: one entry per (source, normalized parameters), kept fresh in the
 *  background so that a request never waits on the network while a usable entry exists.
 *
 *  - TTL per source (default 15 min). An entry is refreshed in the background at about
 *    80 % of its TTL (with jitter, so entries do not refresh in lockstep), by a scanner
 *    thread or by the request that notices it.
 *  - One fetch in flight per key: concurrent requests for a missing key wait on the same
 *    fetch (up to their own deadline).
 *  - On errors the last good list is served for up to 24 h after it was fetched, flagged
 *    `stale`; past that, the request gets the error. Topics are never invented.
 *  - Failures back off exponentially with jitter (Retry-After, and quota resets, push the
 *    next attempt further out), and each source has a circuit breaker: after N consecutive
 *    failures its fetches stop for a while, then one probe is let through.
 *  - The clock and the fetch function are injectable, so tests control time. */
#ifndef STORY_TOPIC_CACHE_H
#define STORY_TOPIC_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "story/sources.h"

struct fetcher;

/** Monotonic milliseconds. */
typedef int64_t (*topic_cache_clock_fn)(void *ud);
/** Fetches one source (source_fetch's contract). Runs on a cache worker thread. */
typedef int (*topic_cache_fetch_fn)(void *ud, enum source_id id, const struct source_params *p,
                                    struct source_meta *meta, struct topic_list *out,
                                    struct err *err);

struct topic_cache_cfg {
    int64_t ttl_ms;                      /* 0 = 15 min */
    int64_t ttl_ms_source[SOURCE_COUNT]; /* per source; 0 = ttl_ms */
    double refresh_frac;                 /* refresh at this part of the TTL; 0 = 0.8 */
    double jitter_frac;                  /* +- this part of the refresh point; 0 = 0.1 */
    int64_t stale_ms;                    /* serve the last good list this long; 0 = 24 h */
    int64_t idle_ms;                     /* no background refresh for keys unused this long; 0 = 1 h */
    int64_t backoff_base_ms;             /* first retry delay; 0 = 10 s */
    int64_t backoff_max_ms;              /* 0 = 30 min */
    int breaker_failures;                /* consecutive failures that open a source; 0 = 5 */
    int64_t breaker_open_ms;             /* 0 = 5 min */
    int workers;                         /* fetch threads; 0 = 2 */
    int max_entries;                     /* 0 = 256 */
    int64_t scan_interval_ms;            /* real time between background scans; 0 = 1000 */
    bool no_scanner;                     /* no scanner thread (tests call topic_cache_tick) */
    uint64_t seed;                       /* jitter PRNG seed; 0 = from the time */
    topic_cache_clock_fn now_ms;         /* NULL = CLOCK_MONOTONIC */
    void *clock_ud;
    topic_cache_fetch_fn fetch;          /* NULL = source_fetch through `fetcher` */
    void *fetch_ud;
    struct fetcher *fetcher;
};

struct topic_result {
    struct topic_list topics; /* a copy; the caller clears it */
    bool stale;               /* older than the TTL (a refresh failed or is running) */
    int64_t age_ms;           /* since the list was fetched or confirmed (304) */
    char last_error[ERR_MSG_MAX]; /* the latest refresh error, "" if the last refresh worked */
};

/** Per-key state, for /readyz, metrics and tests. */
struct topic_cache_info {
    bool exists, has_data, inflight;
    int failures;            /* consecutive, this key */
    int64_t age_ms;          /* -1 without data */
    int64_t next_attempt_ms; /* earliest next fetch (clock time) */
    int64_t refresh_due_ms;  /* when the background refresh is planned (clock time) */
    bool breaker_open;       /* for the key's source */
    int64_t fetches;         /* fetches started for this key */
};

struct topic_cache_stats {
    int64_t hits, stale_hits, misses, fetches, fetch_errors, not_modified, breaker_rejects;
};

struct topic_cache;

/** Starts the workers (and the scanner unless cfg->no_scanner). NULL + err on failure. */
struct topic_cache *topic_cache_new(const struct topic_cache_cfg *cfg, struct err *err);
/** Stops the threads (waits for running fetches) and frees everything. NULL is fine. */
void topic_cache_free(struct topic_cache *c);

/** Topics for (id, params). A usable entry is returned at once (stale past its TTL), and a
 *  refresh is started when due. Without one, a fetch is started (or joined) and waited for
 *  up to wait_ms of real time: ERR_TIMEOUT if it is still running then (it goes on in the
 *  background), or the fetch's error. While the key backs off or its source's breaker is
 *  open, a request without usable data fails at once with that reason. wait_ms 0 never
 *  blocks: use it to warm keys at start-up (ERR_TIMEOUT just means "started"). */
int topic_cache_get(struct topic_cache *c, enum source_id id, const struct source_params *p,
                    int64_t wait_ms, struct topic_result *out, struct err *err);

/** One background scan now: starts the refreshes that are due. */
void topic_cache_tick(struct topic_cache *c);

/** Waits (real time) until no fetch is queued or running; 0, or ERR_TIMEOUT. */
int topic_cache_wait_idle(struct topic_cache *c, int64_t timeout_ms);

/** State of one key (params normalized as by topic_cache_get). */
void topic_cache_info(struct topic_cache *c, enum source_id id, const struct source_params *p,
                      struct topic_cache_info *out);
void topic_cache_stats(struct topic_cache *c, struct topic_cache_stats *out);

/** Frees the topics in a result. */
void topic_result_clear(struct topic_result *r);

#endif
