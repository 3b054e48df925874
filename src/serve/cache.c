/* Response cache: local TTL LRU (hash table + recency list) or Redis through hiredis. */
#include "serve/cache.h"

#include <hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"

struct lru_entry {
    struct lru_entry *hnext;        /* hash chain */
    struct lru_entry *prev, *next;  /* recency list, most recent at head */
    uint64_t hash;
    double expires;
    size_t klen, vlen;
    char *key, *val;                /* one allocation: key NUL, value NUL */
};

enum redis_state { REDIS_UNTRIED = 0, REDIS_UP = 1, REDIS_DOWN = 2 };

struct redis_slot {
    redisContext *ctx;
    double retry_at;       /* no reconnect before this time */
    _Atomic int state;     /* enum redis_state; read by cache_get_stats from other threads */
};

struct cache {
    struct cache_cfg cfg;
    bool use_redis;
    char redis_host[256];
    int redis_port, redis_db;
    struct redis_slot *slots;
    pthread_mutex_t mu; /* guards the LRU and redis_last_error */
    struct lru_entry **table;
    size_t n_buckets, n_entries, bytes;
    struct lru_entry *head, *tail;
    char redis_last_error[160];
    _Atomic uint64_t hits, misses, sets, evictions, expired, redis_errors;
};

static double cache_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t cache_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Parses redis://host:port[/db]; host may be a name or an IPv4 address. */
static int cache_parse_url(struct cache *c, const char *url, struct err *err)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0)
        return err_set(err, ERR_INVALID, "redis URL '%s' must start with redis://", url);
    p += 8;
    const char *colon = strchr(p, ':'), *slash = strchr(p, '/');
    const char *hend = colon ? colon : slash ? slash : p + strlen(p);
    size_t hl = (size_t)(hend - p);
    if (hl == 0 || hl >= sizeof c->redis_host)
        return err_set(err, ERR_INVALID, "redis URL '%s' has no usable host", url);
    memcpy(c->redis_host, p, hl);
    c->redis_host[hl] = '\0';
    c->redis_port = 6379;
    c->redis_db = 0;
    if (colon && (!slash || colon < slash)) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end == colon + 1 || port < 1 || port > 65535 || (*end && *end != '/'))
            return err_set(err, ERR_INVALID, "redis URL '%s' has a bad port", url);
        c->redis_port = (int)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 255)
            return err_set(err, ERR_INVALID, "redis URL '%s' has a bad database number", url);
        c->redis_db = (int)db;
    }
    return 0;
}

static redisContext *redis_conn(struct cache *c, int slot);

struct cache *cache_new(const struct cache_cfg *cfg, struct err *err)
{
    struct cache *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, ERR_NOMEM, "cache: out of memory");
        return NULL;
    }
    c->cfg = *cfg;
    if (!c->cfg.max_entries) c->cfg.max_entries = 100000;
    if (!c->cfg.max_bytes) c->cfg.max_bytes = (size_t)256 << 20;
    if (!c->cfg.max_value_bytes) c->cfg.max_value_bytes = (size_t)1 << 20;
    if (c->cfg.ttl_s <= 0) c->cfg.ttl_s = 300;
    if (c->cfg.redis_timeout_ms <= 0) c->cfg.redis_timeout_ms = 5;
    if (c->cfg.redis_retry_s <= 0) c->cfg.redis_retry_s = 1.0;
    if (c->cfg.n_slots <= 0) c->cfg.n_slots = 1;
    if (!c->cfg.now) c->cfg.now = cache_mono;
    c->cfg.redis_url = NULL; /* not kept: the caller's string may go away */
    pthread_mutex_init(&c->mu, NULL);
    if (cfg->redis_url && cfg->redis_url[0]) {
        if (cache_parse_url(c, cfg->redis_url, err) != 0) {
            cache_free(c);
            return NULL;
        }
        c->use_redis = true;
        c->slots = calloc((size_t)c->cfg.n_slots, sizeof *c->slots);
        if (!c->slots) {
            cache_free(c);
            err_set(err, ERR_NOMEM, "cache: out of memory");
            return NULL;
        }
        /* Connect slot 0 now so /readyz can tell at once whether Redis answers. Failure is
         * not fatal: requests are served uncached and the connection is retried. */
        redis_conn(c, 0);
    } else {
        c->n_buckets = 1024;
        while (c->n_buckets < c->cfg.max_entries && c->n_buckets < ((size_t)1 << 24))
            c->n_buckets *= 2;
        c->table = calloc(c->n_buckets, sizeof *c->table);
        if (!c->table) {
            cache_free(c);
            err_set(err, ERR_NOMEM, "cache: out of memory for %zu buckets", c->n_buckets);
            return NULL;
        }
    }
    return c;
}

static void lru_unlink(struct cache *c, struct lru_entry *e)
{
    if (e->prev) e->prev->next = e->next;
    else c->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct cache *c, struct lru_entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static struct lru_entry **lru_slot(struct cache *c, const char *key, size_t klen, uint64_t h)
{
    struct lru_entry **pp = &c->table[h & (c->n_buckets - 1)];
    while (*pp && !((*pp)->hash == h && (*pp)->klen == klen && memcmp((*pp)->key, key, klen) == 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void lru_remove(struct cache *c, struct lru_entry **pp)
{
    struct lru_entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(c, e);
    c->n_entries--;
    c->bytes -= e->klen + e->vlen;
    free(e);
}

void cache_free(struct cache *c)
{
    if (!c) return;
    if (c->table) {
        for (size_t i = 0; i < c->n_buckets; i++) {
            struct lru_entry *e = c->table[i];
            while (e) {
                struct lru_entry *n = e->hnext;
                free(e);
                e = n;
            }
        }
        free(c->table);
    }
    if (c->slots) {
        for (int i = 0; i < c->cfg.n_slots; i++)
            if (c->slots[i].ctx) redisFree(c->slots[i].ctx);
        free(c->slots);
    }
    pthread_mutex_destroy(&c->mu);
    free(c);
}

const char *cache_backend(const struct cache *c)
{
    return c->use_redis ? "redis" : "local";
}

/* ---- Redis ---- */

static void redis_fail(struct cache *c, struct redis_slot *s, const char *what)
{
    atomic_fetch_add(&c->redis_errors, 1);
    bool was_up = atomic_load(&s->state) != REDIS_DOWN;
    pthread_mutex_lock(&c->mu);
    snprintf(c->redis_last_error, sizeof c->redis_last_error, "%s", what);
    pthread_mutex_unlock(&c->mu);
    if (was_up)
        log_warn("cache", "redis %s:%d: %s; serving without cache, retrying in %.1f s",
                 c->redis_host, c->redis_port, what, c->cfg.redis_retry_s);
    if (s->ctx) redisFree(s->ctx);
    s->ctx = NULL;
    atomic_store(&s->state, REDIS_DOWN);
    s->retry_at = c->cfg.now() + c->cfg.redis_retry_s;
}

/* A connected context for the slot, or NULL while Redis is unreachable (back-off). */
static redisContext *redis_conn(struct cache *c, int slot)
{
    if (slot < 0 || slot >= c->cfg.n_slots) return NULL;
    struct redis_slot *s = &c->slots[slot];
    if (s->ctx) return s->ctx;
    if (c->cfg.now() < s->retry_at) return NULL;
    struct timeval tv = {c->cfg.redis_timeout_ms / 1000, (c->cfg.redis_timeout_ms % 1000) * 1000};
    redisContext *ctx = redisConnectWithTimeout(c->redis_host, c->redis_port, tv);
    if (!ctx || ctx->err) {
        char msg[160];
        snprintf(msg, sizeof msg, "connect failed: %s", ctx ? ctx->errstr : "out of memory");
        if (ctx) redisFree(ctx);
        redis_fail(c, s, msg);
        return NULL;
    }
    redisSetTimeout(ctx, tv);
    if (c->redis_db) {
        redisReply *r = redisCommand(ctx, "SELECT %d", c->redis_db);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            s->ctx = ctx;
            redis_fail(c, s, "SELECT failed");
            return NULL;
        }
    }
    if (atomic_load(&s->state) == REDIS_DOWN)
        log_info("cache", "redis %s:%d reconnected", c->redis_host, c->redis_port);
    s->ctx = ctx;
    atomic_store(&s->state, REDIS_UP);
    return ctx;
}

static int redis_get(struct cache *c, int slot, const char *key, char **val, size_t *len)
{
    redisContext *ctx = redis_conn(c, slot);
    if (!ctx) return 0;
    redisReply *r = redisCommand(ctx, "GET %b", key, strlen(key));
    if (!r || r->type == REDIS_REPLY_ERROR) {
        char msg[160];
        snprintf(msg, sizeof msg, "GET failed: %s", r ? r->str : ctx->errstr);
        if (r) freeReplyObject(r);
        redis_fail(c, &c->slots[slot], msg);
        return 0;
    }
    int hit = 0;
    if (r->type == REDIS_REPLY_STRING) {
        *val = malloc(r->len + 1);
        if (*val) {
            memcpy(*val, r->str, r->len);
            (*val)[r->len] = '\0';
            *len = r->len;
            hit = 1;
        }
    }
    freeReplyObject(r);
    return hit;
}

static int redis_set(struct cache *c, int slot, const char *key, const char *val, size_t len,
                     double ttl)
{
    redisContext *ctx = redis_conn(c, slot);
    if (!ctx) return ERR_UPSTREAM;
    long long ms = (long long)(ttl * 1000);
    if (ms < 1) ms = 1;
    redisReply *r = redisCommand(ctx, "SET %b %b PX %lld", key, strlen(key), val, len, ms);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        char msg[160];
        snprintf(msg, sizeof msg, "SET failed: %s", r ? r->str : ctx->errstr);
        if (r) freeReplyObject(r);
        redis_fail(c, &c->slots[slot], msg);
        return ERR_UPSTREAM;
    }
    freeReplyObject(r);
    return 0;
}

static int redis_del(struct cache *c, int slot, const char *key)
{
    redisContext *ctx = redis_conn(c, slot);
    if (!ctx) return ERR_UPSTREAM;
    redisReply *r = redisCommand(ctx, "DEL %b", key, strlen(key));
    if (!r || r->type == REDIS_REPLY_ERROR) {
        if (r) freeReplyObject(r);
        redis_fail(c, &c->slots[slot], "DEL failed");
        return ERR_UPSTREAM;
    }
    freeReplyObject(r);
    return 0;
}

/* ---- public ---- */

int cache_get(struct cache *c, int slot, const char *key, char **val, size_t *len)
{
    *val = NULL;
    *len = 0;
    int hit;
    if (c->use_redis) {
        hit = redis_get(c, slot, key, val, len);
    } else {
        size_t klen = strlen(key);
        uint64_t h = cache_hash(key, klen);
        hit = 0;
        pthread_mutex_lock(&c->mu);
        struct lru_entry **pp = lru_slot(c, key, klen, h);
        if (*pp) {
            struct lru_entry *e = *pp;
            if (e->expires <= c->cfg.now()) {
                lru_remove(c, pp);
                atomic_fetch_add(&c->expired, 1);
            } else if ((*val = malloc(e->vlen + 1))) {
                memcpy(*val, e->val, e->vlen + 1);
                *len = e->vlen;
                lru_unlink(c, e);
                lru_push_front(c, e);
                hit = 1;
            }
        }
        pthread_mutex_unlock(&c->mu);
    }
    atomic_fetch_add(hit ? &c->hits : &c->misses, 1);
    return hit;
}

int cache_set(struct cache *c, int slot, const char *key, const char *val, size_t len,
              double ttl_s)
{
    if (len > c->cfg.max_value_bytes) return ERR_NOMEM;
    if (ttl_s <= 0) ttl_s = c->cfg.ttl_s;
    atomic_fetch_add(&c->sets, 1);
    if (c->use_redis) return redis_set(c, slot, key, val, len, ttl_s);

    size_t klen = strlen(key);
    if (klen + len > c->cfg.max_bytes) return ERR_NOMEM;
    struct lru_entry *e = malloc(sizeof *e + klen + 1 + len + 1);
    if (!e) return ERR_NOMEM;
    e->key = (char *)(e + 1);
    e->val = e->key + klen + 1;
    memcpy(e->key, key, klen + 1);
    memcpy(e->val, val, len);
    e->val[len] = '\0';
    e->klen = klen;
    e->vlen = len;
    e->hash = cache_hash(key, klen);
    e->prev = e->next = e->hnext = NULL;
    pthread_mutex_lock(&c->mu);
    e->expires = c->cfg.now() + ttl_s;
    struct lru_entry **pp = lru_slot(c, key, klen, e->hash);
    if (*pp) lru_remove(c, pp);
    /* Evict from the cold end until the new entry fits. */
    while (c->tail && (c->n_entries + 1 > c->cfg.max_entries ||
                       c->bytes + klen + len > c->cfg.max_bytes)) {
        struct lru_entry *t = c->tail;
        lru_remove(c, lru_slot(c, t->key, t->klen, t->hash));
        atomic_fetch_add(&c->evictions, 1);
    }
    pp = lru_slot(c, key, klen, e->hash);
    *pp = e;
    lru_push_front(c, e);
    c->n_entries++;
    c->bytes += klen + len;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int cache_del(struct cache *c, int slot, const char *key)
{
    if (c->use_redis) return redis_del(c, slot, key);
    size_t klen = strlen(key);
    pthread_mutex_lock(&c->mu);
    struct lru_entry **pp = lru_slot(c, key, klen, cache_hash(key, klen));
    if (*pp) lru_remove(c, pp);
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void cache_get_stats(struct cache *c, struct cache_stats *out)
{
    memset(out, 0, sizeof *out);
    out->hits = atomic_load(&c->hits);
    out->misses = atomic_load(&c->misses);
    out->sets = atomic_load(&c->sets);
    out->evictions = atomic_load(&c->evictions);
    out->expired = atomic_load(&c->expired);
    out->redis_errors = atomic_load(&c->redis_errors);
    out->redis = c->use_redis;
    if (c->use_redis) {
        bool any_up = false, any_down = false;
        for (int i = 0; i < c->cfg.n_slots; i++) {
            int st = atomic_load(&c->slots[i].state);
            any_up |= st == REDIS_UP;
            any_down |= st == REDIS_DOWN;
        }
        out->redis_up = any_up && !any_down;
        pthread_mutex_lock(&c->mu);
        snprintf(out->redis_last_error, sizeof out->redis_last_error, "%s", c->redis_last_error);
        pthread_mutex_unlock(&c->mu);
    }
}
