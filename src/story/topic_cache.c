/* The topic cache. See topic_cache.h.
 *
 * One mutex guards everything (entries, queue, breakers); fetches run on worker threads
 * without it. Entries are never freed while queued or in flight, so workers may hold a
 * pointer across the fetch. Times are in the injectable clock's milliseconds, except the
 * waits on condition variables, which are real time (tests advance the clock by hand). */
#include "story/topic_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

struct entry {
    struct entry *next;  /* all entries */
    struct entry *qnext; /* work queue */
    char key[1400];
    enum source_id id;
    struct source_params p;
    struct topic_list topics;
    bool has_data;
    int64_t fetched_ms;      /* last 200 or 304 */
    int64_t refresh_due_ms;  /* background refresh point */
    int64_t next_attempt_ms; /* backoff */
    int failures;
    bool queued, inflight, probe; /* probe: this fetch is the breaker's half-open trial */
    char last_error[ERR_MSG_MAX];
    int last_code;
    struct source_meta meta; /* validators for conditional requests */
    int64_t last_used_ms;
    uint64_t generation; /* bumped when a fetch completes */
    int64_t fetches;
};

struct breaker {
    int failures;
    int64_t open_until_ms; /* 0 = closed */
    bool probing;
};

struct topic_cache {
    struct topic_cache_cfg cfg;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: queue not empty or stop */
    pthread_cond_t done_cv; /* waiters: a fetch completed */
    pthread_cond_t scan_cv; /* scanner sleep */
    struct entry *entries;
    int n_entries;
    struct entry *qhead, *qtail;
    int busy; /* queued + in flight */
    struct breaker breakers[SOURCE_COUNT];
    struct topic_cache_stats stats;
    uint64_t rng;
    bool stop;
    pthread_t *workers;
    int n_workers;
    pthread_t scanner;
    bool scanner_started;
};

static int64_t mono_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(struct topic_cache *c)
{
    return c->cfg.now_ms(c->cfg.clock_ud);
}

static int default_fetch(void *ud, enum source_id id, const struct source_params *p,
                         struct source_meta *meta, struct topic_list *out, struct err *err)
{
    struct fetcher *f = ud;
    if (!f) return err_set(err, ERR_INVALID, "topic cache has no fetcher");
    return source_fetch(f, id, p, meta, out, err);
}

/* Uniform in [0, 1), under the mutex. */
static double rnd(struct topic_cache *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return (double)(x >> 11) / 9007199254740992.0;
}

static int64_t ttl_of(const struct topic_cache *c, enum source_id id)
{
    int64_t t = c->cfg.ttl_ms_source[id];
    return t > 0 ? t : c->cfg.ttl_ms;
}

static void plan_refresh(struct topic_cache *c, struct entry *e)
{
    double frac = c->cfg.refresh_frac * (1.0 + c->cfg.jitter_frac * (2.0 * rnd(c) - 1.0));
    if (frac > 0.98) frac = 0.98;
    if (frac < 0.05) frac = 0.05;
    e->refresh_due_ms = e->fetched_ms + (int64_t)((double)ttl_of(c, e->id) * frac);
}

/* Whether a fetch may start for e now; takes the breaker's half-open probe if it does. */
static bool may_fetch(struct topic_cache *c, struct entry *e, int64_t now, bool take_probe)
{
    if (e->queued || e->inflight || now < e->next_attempt_ms) return false;
    struct breaker *b = &c->breakers[e->id];
    if (b->open_until_ms == 0) return true;
    if (now < b->open_until_ms || b->probing) return false;
    if (take_probe) {
        b->probing = true;
        e->probe = true;
    }
    return true;
}

static void schedule(struct topic_cache *c, struct entry *e)
{
    e->queued = true;
    e->qnext = NULL;
    if (c->qtail) c->qtail->qnext = e;
    else c->qhead = e;
    c->qtail = e;
    c->busy++;
    e->fetches++;
    c->stats.fetches++;
    pthread_cond_signal(&c->work_cv);
}

/* Applies a fetch outcome to the entry and its source's breaker. */
static void complete(struct topic_cache *c, struct entry *e, int rc, struct topic_list *got,
                     const struct source_meta *meta, const struct err *err)
{
    int64_t now = now_ms(c);
    struct breaker *b = &c->breakers[e->id];
    if (e->probe) b->probing = false;
    e->probe = false;
    if (rc == 0 && (got->n > 0 || (meta->not_modified && e->has_data))) {
        if (meta->not_modified) {
            c->stats.not_modified++;
        } else {
            source_topics_clear(&e->topics);
            e->topics = *got;
            got->v = NULL;
            got->n = 0;
        }
        e->has_data = true;
        e->fetched_ms = now;
        e->failures = 0;
        e->next_attempt_ms = 0;
        e->last_error[0] = 0;
        e->last_code = 0;
        snprintf(e->meta.etag, sizeof e->meta.etag, "%s", meta->etag);
        snprintf(e->meta.last_modified, sizeof e->meta.last_modified, "%s",
                 meta->last_modified);
        plan_refresh(c, e);
        b->failures = 0;
        b->open_until_ms = 0;
        return;
    }
    /* A failure (or a 304 with nothing to keep, or an empty success: never served). */
    if (rc == 0) {
        snprintf(e->last_error, sizeof e->last_error, "%s: the source returned no topics",
                 source_name(e->id));
        e->last_code = ERR_UPSTREAM;
        e->meta.etag[0] = e->meta.last_modified[0] = 0; /* do not ask for 304 again */
    } else {
        snprintf(e->last_error, sizeof e->last_error, "%s", err->msg);
        e->last_code = rc;
    }
    c->stats.fetch_errors++;
    e->failures++;
    int shift = e->failures - 1 < 30 ? e->failures - 1 : 30;
    int64_t back = c->cfg.backoff_base_ms << shift;
    if (back > c->cfg.backoff_max_ms || back <= 0) back = c->cfg.backoff_max_ms;
    back = back / 2 + (int64_t)((double)(back / 2) * rnd(c)); /* equal jitter */
    if (meta->retry_after_s > 0 && meta->retry_after_s * 1000 > back)
        back = meta->retry_after_s * 1000;
    e->next_attempt_ms = now + back;
    b->failures++;
    if (b->failures >= c->cfg.breaker_failures) {
        if (b->open_until_ms == 0)
            log_warn("topic_cache", "%s: %d failures in a row, pausing the source for %lld s: %s",
                     source_name(e->id), b->failures, (long long)(c->cfg.breaker_open_ms / 1000),
                     e->last_error);
        b->open_until_ms = now + c->cfg.breaker_open_ms;
    }
    log_info("topic_cache", "%s: refresh failed (%d in a row), next try in %lld ms: %s",
             source_name(e->id), e->failures, (long long)back, e->last_error);
}

static void *worker_main(void *arg)
{
    struct topic_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->stop && !c->qhead) pthread_cond_wait(&c->work_cv, &c->mu);
        if (c->stop && !c->qhead) break;
        struct entry *e = c->qhead;
        c->qhead = e->qnext;
        if (!c->qhead) c->qtail = NULL;
        e->queued = false;
        e->inflight = true;
        struct source_params p = e->p;
        struct source_meta meta;
        source_meta_init(&meta);
        if (e->has_data) meta = e->meta; /* validators only make sense with a list to keep */
        meta.not_modified = false;
        enum source_id id = e->id;
        pthread_mutex_unlock(&c->mu);

        struct topic_list got = {0};
        struct err err = {0};
        int rc = c->stop ? err_set(&err, ERR_UPSTREAM, "topic cache stopping")
                         : c->cfg.fetch(c->cfg.fetch_ud, id, &p, &meta, &got, &err);

        pthread_mutex_lock(&c->mu);
        complete(c, e, rc, &got, &meta, &err);
        source_topics_clear(&got);
        e->inflight = false;
        e->generation++;
        c->busy--;
        pthread_cond_broadcast(&c->done_cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static void scan_locked(struct topic_cache *c)
{
    int64_t now = now_ms(c);
    for (struct entry *e = c->entries; e; e = e->next) {
        if (!e->has_data || now - e->last_used_ms > c->cfg.idle_ms) continue;
        if (now >= e->refresh_due_ms && may_fetch(c, e, now, true)) schedule(c, e);
    }
}

static void *scanner_main(void *arg)
{
    struct topic_cache *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (c->cfg.scan_interval_ms % 1000) * 1000000;
        ts.tv_sec += (time_t)(c->cfg.scan_interval_ms / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        pthread_cond_timedwait(&c->scan_cv, &c->mu, &ts);
        if (!c->stop) scan_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct topic_cache *topic_cache_new(const struct topic_cache_cfg *cfg, struct err *err)
{
    struct topic_cache *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (cfg) c->cfg = *cfg;
    struct topic_cache_cfg *k = &c->cfg;
    if (k->ttl_ms <= 0) k->ttl_ms = 15 * 60 * 1000;
    if (k->refresh_frac <= 0 || k->refresh_frac >= 1) k->refresh_frac = 0.8;
    if (k->jitter_frac <= 0 || k->jitter_frac >= 0.5) k->jitter_frac = 0.1;
    if (k->stale_ms <= 0) k->stale_ms = 24LL * 3600 * 1000;
    if (k->idle_ms <= 0) k->idle_ms = 3600LL * 1000;
    if (k->backoff_base_ms <= 0) k->backoff_base_ms = 10 * 1000;
    if (k->backoff_max_ms <= 0) k->backoff_max_ms = 30 * 60 * 1000;
    if (k->breaker_failures <= 0) k->breaker_failures = 5;
    if (k->breaker_open_ms <= 0) k->breaker_open_ms = 5 * 60 * 1000;
    if (k->workers <= 0) k->workers = 2;
    if (k->workers > 16) k->workers = 16;
    if (k->max_entries <= 0) k->max_entries = 256;
    if (k->scan_interval_ms <= 0) k->scan_interval_ms = 1000;
    if (!k->now_ms) k->now_ms = mono_ms;
    if (!k->fetch) {
        k->fetch = default_fetch;
        k->fetch_ud = k->fetcher;
    }
    c->rng = k->seed ? k->seed : (uint64_t)mono_ms(NULL) * 0x9E3779B97F4A7C15ull + 1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work_cv, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    pthread_cond_init(&c->scan_cv, NULL);
    c->workers = calloc((size_t)k->workers, sizeof *c->workers);
    if (!c->workers) {
        topic_cache_free(c);
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < k->workers; i++) {
        if (pthread_create(&c->workers[i], NULL, worker_main, c) != 0) {
            topic_cache_free(c);
            err_set(err, ERR_IO, "could not start topic cache workers");
            return NULL;
        }
        c->n_workers++;
    }
    if (!k->no_scanner) {
        if (pthread_create(&c->scanner, NULL, scanner_main, c) != 0) {
            topic_cache_free(c);
            err_set(err, ERR_IO, "could not start the topic cache scanner");
            return NULL;
        }
        c->scanner_started = true;
    }
    return c;
}

void topic_cache_free(struct topic_cache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->work_cv);
    pthread_cond_broadcast(&c->scan_cv);
    pthread_mutex_unlock(&c->mu);
    if (c->scanner_started) pthread_join(c->scanner, NULL);
    for (int i = 0; i < c->n_workers; i++) pthread_join(c->workers[i], NULL);
    free(c->workers);
    struct entry *e = c->entries;
    while (e) {
        struct entry *n = e->next;
        source_topics_clear(&e->topics);
        free(e);
        e = n;
    }
    pthread_cond_destroy(&c->scan_cv);
    pthread_cond_destroy(&c->done_cv);
    pthread_cond_destroy(&c->work_cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static struct entry *find_entry(struct topic_cache *c, const char *key)
{
    for (struct entry *e = c->entries; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

/* Evicts the least recently used idle entry when the table is full. */
static void make_room(struct topic_cache *c)
{
    while (c->n_entries >= c->cfg.max_entries) {
        struct entry **victim = NULL;
        for (struct entry **pp = &c->entries; *pp; pp = &(*pp)->next) {
            struct entry *e = *pp;
            if (e->queued || e->inflight) continue;
            if (!victim || e->last_used_ms < (*victim)->last_used_ms) victim = pp;
        }
        if (!victim) return;
        struct entry *e = *victim;
        *victim = e->next;
        source_topics_clear(&e->topics);
        free(e);
        c->n_entries--;
    }
}

static int copy_out(struct entry *e, int64_t now, int64_t ttl, struct topic_result *out,
                    struct err *err)
{
    if (source_topics_copy(&out->topics, &e->topics) < 0)
        return err_set(err, ERR_NOMEM, "out of memory copying topics");
    out->age_ms = now - e->fetched_ms;
    out->stale = out->age_ms > ttl;
    snprintf(out->last_error, sizeof out->last_error, "%s", e->last_error);
    return 0;
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = (int64_t)ts->tv_nsec + (ms % 1000) * 1000000;
    ts->tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

int topic_cache_get(struct topic_cache *c, enum source_id id, const struct source_params *p_in,
                    int64_t wait_ms, struct topic_result *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    struct source_params p = *p_in;
    int rc = source_params_check(id, &p, err);
    if (rc < 0) return rc;
    char key[sizeof((struct entry *)0)->key];
    source_key(id, &p, key, sizeof key);

    pthread_mutex_lock(&c->mu);
    int64_t now = now_ms(c);
    struct entry *e = find_entry(c, key);
    if (!e) {
        make_room(c);
        e = calloc(1, sizeof *e);
        if (!e) {
            pthread_mutex_unlock(&c->mu);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
        snprintf(e->key, sizeof e->key, "%s", key);
        e->id = id;
        e->p = p;
        source_meta_init(&e->meta);
        e->next = c->entries;
        c->entries = e;
        c->n_entries++;
    }
    e->last_used_ms = now;
    int64_t ttl = ttl_of(c, id);
    bool usable = e->has_data && now - e->fetched_ms < c->cfg.stale_ms;
    if (usable) {
        bool stale = now - e->fetched_ms > ttl;
        if ((stale || now >= e->refresh_due_ms) && may_fetch(c, e, now, true)) schedule(c, e);
        if (stale) c->stats.stale_hits++;
        else c->stats.hits++;
        rc = copy_out(e, now, ttl, out, err);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    c->stats.misses++;
    if (!e->queued && !e->inflight) {
        if (!may_fetch(c, e, now, true)) {
            struct breaker *b = &c->breakers[id];
            if (b->open_until_ms && (now < b->open_until_ms || b->probing)) {
                c->stats.breaker_rejects++;
                rc = err_set(err, ERR_UPSTREAM,
                             "%s is paused after %d failures in a row (retry in %lld s); last "
                             "error: %s",
                             source_name(id), b->failures,
                             (long long)((b->open_until_ms - now + 999) / 1000),
                             e->last_error[0] ? e->last_error : "none for this key");
            } else {
                rc = err_set(err, e->last_code ? e->last_code : ERR_UPSTREAM,
                             "%s (backing off, next try in %lld s)", e->last_error,
                             (long long)((e->next_attempt_ms - now + 999) / 1000));
            }
            pthread_mutex_unlock(&c->mu);
            return rc;
        }
        schedule(c, e);
    }
    uint64_t gen = e->generation;
    struct timespec dl;
    deadline_after(&dl, wait_ms > 0 ? wait_ms : 0);
    while (e->generation == gen && !c->stop) {
        if (wait_ms <= 0 || pthread_cond_timedwait(&c->done_cv, &c->mu, &dl) != 0) break;
    }
    now = now_ms(c);
    if (e->has_data && now - e->fetched_ms < c->cfg.stale_ms) {
        rc = copy_out(e, now, ttl, out, err);
    } else if (e->generation == gen) {
        rc = err_set(err, ERR_TIMEOUT,
                     "%s: no topics yet, the fetch is still running after %lld ms",
                     source_name(id), (long long)wait_ms);
    } else {
        rc = err_set(err, e->last_code ? e->last_code : ERR_UPSTREAM, "%s", e->last_error);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void topic_cache_tick(struct topic_cache *c)
{
    pthread_mutex_lock(&c->mu);
    scan_locked(c);
    pthread_mutex_unlock(&c->mu);
}

int topic_cache_wait_idle(struct topic_cache *c, int64_t timeout_ms)
{
    struct timespec dl;
    deadline_after(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->busy > 0) {
        if (pthread_cond_timedwait(&c->done_cv, &c->mu, &dl) != 0) {
            rc = c->busy > 0 ? ERR_TIMEOUT : 0;
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void topic_cache_info(struct topic_cache *c, enum source_id id, const struct source_params *p_in,
                      struct topic_cache_info *out)
{
    memset(out, 0, sizeof *out);
    out->age_ms = -1;
    struct source_params p = *p_in;
    if (source_params_check(id, &p, NULL) < 0) return;
    char key[sizeof((struct entry *)0)->key];
    source_key(id, &p, key, sizeof key);
    pthread_mutex_lock(&c->mu);
    int64_t now = now_ms(c);
    struct breaker *b = &c->breakers[id];
    out->breaker_open = b->open_until_ms != 0 && (now < b->open_until_ms || b->probing);
    struct entry *e = find_entry(c, key);
    if (e) {
        out->exists = true;
        out->has_data = e->has_data;
        out->inflight = e->inflight || e->queued;
        out->failures = e->failures;
        out->age_ms = e->has_data ? now - e->fetched_ms : -1;
        out->next_attempt_ms = e->next_attempt_ms;
        out->refresh_due_ms = e->refresh_due_ms;
        out->fetches = e->fetches;
    }
    pthread_mutex_unlock(&c->mu);
}

void topic_cache_stats(struct topic_cache *c, struct topic_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    pthread_mutex_unlock(&c->mu);
}

void topic_result_clear(struct topic_result *r)
{
    if (!r) return;
    source_topics_clear(&r->topics);
}
