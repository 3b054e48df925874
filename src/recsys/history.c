#include "recsys/history.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#define HIST_MAGIC "NRHIST01"
#define HIST_VERSION 1u
#define HIST_HEADER 16
#define HIST_REC 24

struct hist_user {
    uint32_t user;
    uint32_t n, cap;    /* events in the ring, ring capacity */
    uint32_t start;     /* index of the oldest */
    uint64_t version;
    uint32_t *items;
    struct hist_user *next;
};

struct hist_store {
    int fd;
    bool sync;
    uint32_t max_per_user;
    uint32_t seq;
    uint64_t total;
    pthread_rwlock_t lock;
    struct hist_user **table;
    size_t n_buckets, n_users;
};

static uint32_t hist_crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Doubles the bucket array when chains get long (many users). Caller holds the lock. */
static void hist_grow(struct hist_store *h)
{
    size_t nb = h->n_buckets * 2;
    struct hist_user **t = calloc(nb, sizeof *t);
    if (!t) return; /* keep the old table: slower, still correct */
    for (size_t b = 0; b < h->n_buckets; b++) {
        struct hist_user *u = h->table[b];
        while (u) {
            struct hist_user *n = u->next;
            size_t k = (u->user * 2654435761u) & (nb - 1);
            u->next = t[k];
            t[k] = u;
            u = n;
        }
    }
    free(h->table);
    h->table = t;
    h->n_buckets = nb;
}

static struct hist_user *hist_find(struct hist_store *h, uint32_t user, bool create)
{
    if (create && h->n_users >= 2 * h->n_buckets) hist_grow(h);
    size_t b = (user * 2654435761u) & (h->n_buckets - 1);
    for (struct hist_user *u = h->table[b]; u; u = u->next)
        if (u->user == user) return u;
    if (!create) return NULL;
    struct hist_user *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    u->user = user;
    u->next = h->table[b];
    h->table[b] = u;
    h->n_users++;
    return u;
}

/* Adds an item to the user's ring (growing it up to max_per_user). Caller holds the lock. */
static int hist_push(struct hist_store *h, uint32_t user, uint32_t item)
{
    struct hist_user *u = hist_find(h, user, true);
    if (!u) return ERR_NOMEM;
    if (u->n == u->cap && u->cap < h->max_per_user) {
        uint32_t cap = u->cap ? u->cap * 2 : 8;
        if (cap > h->max_per_user) cap = h->max_per_user;
        uint32_t *items = malloc((size_t)cap * sizeof *items);
        if (!items) return ERR_NOMEM;
        for (uint32_t i = 0; i < u->n; i++) items[i] = u->items[(u->start + i) % u->cap];
        free(u->items);
        u->items = items;
        u->cap = cap;
        u->start = 0;
    }
    if (u->n < u->cap) {
        u->items[(u->start + u->n) % u->cap] = item;
        u->n++;
    } else { /* full: overwrite the oldest */
        u->items[u->start] = item;
        u->start = (u->start + 1) % u->cap;
    }
    u->version++;
    h->total++;
    return 0;
}

static void hist_encode(unsigned char *r, uint32_t user, uint32_t item, int64_t ms, uint32_t seq)
{
    put32(r, user);
    put32(r + 4, item);
    put32(r + 8, (uint32_t)(uint64_t)ms);
    put32(r + 12, (uint32_t)((uint64_t)ms >> 32));
    put32(r + 16, seq);
    put32(r + 20, hist_crc32(r, 20));
}

/* Replays the log; cuts a torn tail. */
static int hist_replay(struct hist_store *h, const char *path, struct hist_open_stats *st,
                       struct err *err)
{
    struct stat sb;
    if (fstat(h->fd, &sb) != 0)
        return err_set(err, ERR_IO, "history log %s: %s", path, strerror(errno));
    unsigned char hdr[HIST_HEADER];
    if (sb.st_size < HIST_HEADER) {
        /* New (or torn while writing the header): write a fresh header. */
        memcpy(hdr, HIST_MAGIC, 8);
        put32(hdr + 8, HIST_VERSION);
        put32(hdr + 12, HIST_REC);
        if (ftruncate(h->fd, 0) != 0 || pwrite(h->fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
            return err_set(err, ERR_IO, "history log %s: cannot write header: %s", path,
                           strerror(errno));
        if (sb.st_size > 0) st->torn_bytes = (uint64_t)sb.st_size;
        return 0;
    }
    if (pread(h->fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr)
        return err_set(err, ERR_IO, "history log %s: cannot read header", path);
    if (memcmp(hdr, HIST_MAGIC, 8) != 0 || get32(hdr + 8) != HIST_VERSION ||
        get32(hdr + 12) != HIST_REC)
        return err_set(err, ERR_INVALID,
                       "history log %s is not a nanorec event log (bad magic or version); "
                       "move it away or point --events at another file",
                       path);
    uint64_t body = (uint64_t)sb.st_size - HIST_HEADER;
    uint64_t n = body / HIST_REC;
    uint64_t good_end = HIST_HEADER;
    unsigned char buf[HIST_REC * 1024];
    for (uint64_t i = 0; i < n;) {
        uint64_t chunk = n - i < 1024 ? n - i : 1024;
        off_t off = (off_t)(HIST_HEADER + i * HIST_REC);
        if (pread(h->fd, buf, chunk * HIST_REC, off) != (ssize_t)(chunk * HIST_REC))
            return err_set(err, ERR_IO, "history log %s: read failed at byte %lld", path,
                           (long long)off);
        for (uint64_t k = 0; k < chunk; k++, i++) {
            const unsigned char *r = buf + k * HIST_REC;
            if (hist_crc32(r, 20) != get32(r + 20)) {
                st->skipped++;
                continue;
            }
            if (hist_push(h, get32(r), get32(r + 4)) != 0)
                return err_set(err, ERR_NOMEM, "history log %s: out of memory", path);
            h->seq = get32(r + 16) + 1;
            st->records++;
            good_end = HIST_HEADER + (i + 1) * HIST_REC;
        }
    }
    /* A partial record at the end, and corrupt records after the last good one, are a torn
     * write: cut them so new records follow the last good one. */
    if ((uint64_t)sb.st_size > good_end) {
        st->torn_bytes = (uint64_t)sb.st_size - good_end;
        uint64_t trailing_bad = (HIST_HEADER + n * HIST_REC - good_end) / HIST_REC;
        st->skipped -= trailing_bad < st->skipped ? trailing_bad : st->skipped;
        if (ftruncate(h->fd, (off_t)good_end) != 0)
            return err_set(err, ERR_IO, "history log %s: cannot cut torn tail: %s", path,
                           strerror(errno));
    }
    return 0;
}

struct hist_store *hist_open(const char *path, uint32_t max_per_user, bool sync,
                             struct hist_open_stats *stats, struct err *err)
{
    struct hist_open_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (max_per_user == 0 || max_per_user > 1u << 20) {
        err_set(err, ERR_INVALID, "history: max events per user must be 1..1048576 (got %u)",
                max_per_user);
        return NULL;
    }
    struct hist_store *h = calloc(1, sizeof *h);
    if (!h) {
        err_set(err, ERR_NOMEM, "history: out of memory");
        return NULL;
    }
    h->fd = -1;
    h->sync = sync;
    h->max_per_user = max_per_user;
    h->n_buckets = 4096;
    h->table = calloc(h->n_buckets, sizeof *h->table);
    pthread_rwlock_init(&h->lock, NULL);
    if (!h->table) {
        err_set(err, ERR_NOMEM, "history: out of memory");
        goto fail;
    }
    h->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (h->fd < 0) {
        err_set(err, ERR_IO, "history log %s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (hist_replay(h, path, stats, err) != 0) goto fail;
    if (lseek(h->fd, 0, SEEK_END) < 0) {
        err_set(err, ERR_IO, "history log %s: seek failed", path);
        goto fail;
    }
    if (stats->skipped || stats->torn_bytes)
        log_warn("history", "%s: replayed %llu events, skipped %llu corrupt, cut %llu torn bytes",
                 path, (unsigned long long)stats->records, (unsigned long long)stats->skipped,
                 (unsigned long long)stats->torn_bytes);
    return h;
fail:
    hist_close(h);
    return NULL;
}

void hist_close(struct hist_store *h)
{
    if (!h) return;
    if (h->fd >= 0) close(h->fd);
    if (h->table) {
        for (size_t b = 0; b < h->n_buckets; b++) {
            struct hist_user *u = h->table[b];
            while (u) {
                struct hist_user *n = u->next;
                free(u->items);
                free(u);
                u = n;
            }
        }
        free(h->table);
    }
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

int hist_append(struct hist_store *h, uint32_t user, uint32_t item, int64_t unix_ms,
                struct err *err)
{
    unsigned char r[HIST_REC];
    pthread_rwlock_wrlock(&h->lock);
    hist_encode(r, user, item, unix_ms, h->seq);
    ssize_t w = write(h->fd, r, sizeof r);
    int rc = 0;
    if (w != (ssize_t)sizeof r) {
        rc = err_set(err, ERR_IO, "history log: write failed: %s",
                     w < 0 ? strerror(errno) : "short write");
        /* Cut a partial write so the log stays a whole number of records. */
        if (w > 0) {
            off_t end = lseek(h->fd, 0, SEEK_END);
            if (end >= w && ftruncate(h->fd, end - w) == 0) lseek(h->fd, 0, SEEK_END);
        }
    } else {
        if (h->sync) fdatasync(h->fd);
        h->seq++;
        rc = hist_push(h, user, item);
        if (rc) err_set(err, rc, "history: out of memory");
    }
    pthread_rwlock_unlock(&h->lock);
    return rc;
}

int hist_get(struct hist_store *h, uint32_t user, uint32_t *out, int max)
{
    pthread_rwlock_rdlock(&h->lock);
    struct hist_user *u = hist_find(h, user, false);
    int n = 0;
    if (u && max > 0) {
        uint32_t take = u->n < (uint32_t)max ? u->n : (uint32_t)max;
        uint32_t skip = u->n - take;
        for (uint32_t i = 0; i < take; i++) out[n++] = u->items[(u->start + skip + i) % u->cap];
    }
    pthread_rwlock_unlock(&h->lock);
    return n;
}

uint64_t hist_version(struct hist_store *h, uint32_t user)
{
    pthread_rwlock_rdlock(&h->lock);
    struct hist_user *u = hist_find(h, user, false);
    uint64_t v = u ? u->version : 0;
    pthread_rwlock_unlock(&h->lock);
    return v;
}

uint64_t hist_total_events(struct hist_store *h)
{
    pthread_rwlock_rdlock(&h->lock);
    uint64_t t = h->total;
    pthread_rwlock_unlock(&h->lock);
    return t;
}
