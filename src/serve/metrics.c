/* Metrics registry: families of counter / gauge / histogram series, Prometheus text output.
 *
 * Creation and rendering take the registry mutex; updates are single atomic operations on
 * the series (doubles are stored as their bit patterns and updated with compare-exchange,
 * because C17 has no atomic add for floating types). Series are allocated one by one and
 * never move, so the pointers handed out stay valid until metrics_free. */
#include "serve/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/log.h"

const double METRICS_LATENCY_BUCKETS[METRICS_LATENCY_NBUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
};

enum mtype { MT_COUNTER, MT_GAUGE, MT_HIST };

struct metrics_counter {
    _Atomic uint64_t v;
};

struct metrics_gauge {
    _Atomic uint64_t bits;   /* a double's bit pattern */
    double (*fn)(void *ctx); /* non-NULL: sampled at render time instead */
    void *ctx;
};

struct metrics_hist {
    int n;                                            /* finite bounds */
    const double *bounds;                             /* the family's */
    _Atomic uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n]=+Inf */
    _Atomic uint64_t sum_bits;
};

struct series {
    struct series *next;
    char *labels; /* escaped `k="v",k="v"` without braces; "" when none */
    struct metrics_counter c;
    struct metrics_gauge g;
    struct metrics_hist h;
};

struct family {
    struct family *next;
    char *name, *help;
    enum mtype type;
    int n_bounds;
    double bounds[METRICS_MAX_BUCKETS];
    struct series *head, *tail;
};

struct metrics {
    pthread_mutex_t mu;
    struct family *head, *tail;
};

static uint64_t dbits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double bitsd(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* Adds to a double kept as bits; retries when another thread won the race. */
static void atomic_add_double(_Atomic uint64_t *p, double d)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    for (;;) {
        uint64_t nw = dbits(bitsd(old) + d);
        if (atomic_compare_exchange_weak_explicit(p, &old, nw, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
    }
}

static bool valid_metric_name(const char *s)
{
    if (!s || !*s) return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

static bool valid_label_name(const char *s)
{
    if (!s || !*s || strncmp(s, "__", 2) == 0) return false;
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) return false;
    }
    return true;
}

/* ---- a growable text buffer for rendering ---- */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_reserve(struct sbuf *b, size_t extra)
{
    if (b->oom || b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    sb_reserve(b, n);
    if (b->oom) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    sb_reserve(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Label values escape backslash, double quote and newline; help text escapes backslash and
 * newline (the exposition format's two escaping rules). */
static void sb_escape(struct sbuf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            sb_puts(b, "\\\\");
        else if (*s == '\n')
            sb_puts(b, "\\n");
        else if (quote && *s == '"')
            sb_puts(b, "\\\"");
        else
            sb_put(b, s, 1);
    }
}

/* Prometheus floats: shortest form that reads back exactly enough for a dashboard. */
static void sb_double(struct sbuf *b, double v)
{
    if (isnan(v))
        sb_puts(b, "NaN");
    else if (isinf(v))
        sb_puts(b, v > 0 ? "+Inf" : "-Inf");
    else
        sb_printf(b, "%.15g", v);
}

/* Builds the escaped label text, or NULL (with a log line) when a label is invalid. */
static char *format_labels(const char *name, const char *const *labels, bool is_hist)
{
    struct sbuf b = {0};
    sb_puts(&b, "");
    int n = 0;
    for (int i = 0; labels && labels[i]; i += 2) {
        const char *k = labels[i], *v = labels[i + 1];
        if (!valid_label_name(k) || !v || (is_hist && strcmp(k, "le") == 0) ||
            ++n > METRICS_MAX_LABELS) {
            log_error("metrics",
                      "%s: invalid label '%s' (names are [a-zA-Z_][a-zA-Z0-9_]*, "
                      "values non-NULL, at most %d pairs, no 'le' on histograms)",
                      name, k ? k : "(null)", METRICS_MAX_LABELS);
            free(b.p);
            return NULL;
        }
        if (i) sb_puts(&b, ",");
        sb_puts(&b, k);
        sb_puts(&b, "=\"");
        sb_escape(&b, v, true);
        sb_puts(&b, "\"");
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    struct family *f = m->head;
    while (f) {
        struct family *fn = f->next;
        struct series *s = f->head;
        while (s) {
            struct series *sn = s->next;
            free(s->labels);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* Finds or creates family + series under the lock. For histograms, `bounds` must match the
 * family's. Returns NULL on any mismatch or allocation failure. */
static struct series *lookup(struct metrics *m, const char *name, const char *help,
                             const char *const *labels, enum mtype type, const double *bounds,
                             int n_bounds)
{
    if (!m) return NULL;
    if (!valid_metric_name(name)) {
        log_error("metrics", "invalid metric name '%s'", name ? name : "(null)");
        return NULL;
    }
    if (type == MT_HIST) {
        if (n_bounds < 1 || n_bounds > METRICS_MAX_BUCKETS || !bounds) {
            log_error("metrics", "%s: need 1..%d bucket bounds", name, METRICS_MAX_BUCKETS);
            return NULL;
        }
        for (int i = 0; i < n_bounds; i++)
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1]))) {
                log_error("metrics", "%s: bucket bounds must be finite and increasing", name);
                return NULL;
            }
    }
    char *lab = format_labels(name, labels, type == MT_HIST);
    if (!lab) return NULL;

    struct series *res = NULL;
    pthread_mutex_lock(&m->mu);
    struct family *f = m->head;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    if (f) {
        if (f->type != type) {
            log_error("metrics", "%s is already registered with another type", name);
            goto out;
        }
        if (type == MT_HIST && (f->n_bounds != n_bounds ||
                                memcmp(f->bounds, bounds, sizeof(double) * (size_t)n_bounds))) {
            log_error("metrics", "%s: histogram series must share the family's bounds", name);
            goto out;
        }
        for (struct series *s = f->head; s; s = s->next)
            if (strcmp(s->labels, lab) == 0) {
                res = s;
                goto out;
            }
    } else {
        f = calloc(1, sizeof *f);
        if (!f) goto out;
        f->name = strdup(name);
        f->help = strdup(help ? help : "");
        if (!f->name || !f->help) {
            free(f->name);
            free(f->help);
            free(f);
            goto out;
        }
        f->type = type;
        if (type == MT_HIST) {
            f->n_bounds = n_bounds;
            memcpy(f->bounds, bounds, sizeof(double) * (size_t)n_bounds);
        }
        if (m->tail)
            m->tail->next = f;
        else
            m->head = f;
        m->tail = f;
    }
    struct series *s = calloc(1, sizeof *s);
    if (!s) goto out;
    s->labels = lab;
    lab = NULL;
    if (type == MT_HIST) {
        s->h.n = f->n_bounds;
        s->h.bounds = f->bounds;
    }
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    res = s;
out:
    pthread_mutex_unlock(&m->mu);
    free(lab);
    return res;
}

struct metrics_counter *metrics_counter(struct metrics *m, const char *name, const char *help,
                                        const char *const *labels)
{
    struct series *s = lookup(m, name, help, labels, MT_COUNTER, NULL, 0);
    return s ? &s->c : NULL;
}

void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
    if (c) atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void metrics_counter_inc(struct metrics_counter *c)
{
    metrics_counter_add(c, 1);
}

uint64_t metrics_counter_get(const struct metrics_counter *c)
{
    return c ? atomic_load_explicit(&((struct metrics_counter *)c)->v, memory_order_relaxed) : 0;
}

struct metrics_gauge *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *const *labels)
{
    struct series *s = lookup(m, name, help, labels, MT_GAUGE, NULL, 0);
    return s ? &s->g : NULL;
}

void metrics_gauge_set(struct metrics_gauge *g, double v)
{
    if (g) atomic_store_explicit(&g->bits, dbits(v), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_gauge *g, double delta)
{
    if (g) atomic_add_double(&g->bits, delta);
}

double metrics_gauge_get(const struct metrics_gauge *g)
{
    if (!g) return 0.0;
    return bitsd(atomic_load_explicit(&((struct metrics_gauge *)g)->bits, memory_order_relaxed));
}

int metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
                     const char *const *labels, double (*fn)(void *ctx), void *ctx)
{
    if (!fn) return ERR_INVALID;
    struct series *s = lookup(m, name, help, labels, MT_GAUGE, NULL, 0);
    if (!s) return ERR_INVALID;
    pthread_mutex_lock(&m->mu);
    s->g.fn = fn;
    s->g.ctx = ctx;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

struct metrics_hist *metrics_hist(struct metrics *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, int n_bounds)
{
    struct series *s = lookup(m, name, help, labels, MT_HIST, bounds, n_bounds);
    return s ? &s->h : NULL;
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
    if (!h || isnan(v)) return;
    int i = 0;
    while (i < h->n && v > h->bounds[i])
        i++; /* le: v <= bound lands in bucket i */
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_add_double(&h->sum_bits, v);
}

uint64_t metrics_hist_count(const struct metrics_hist *h)
{
    if (!h) return 0;
    uint64_t n = 0;
    for (int i = 0; i <= h->n; i++)
        n += atomic_load_explicit(&((struct metrics_hist *)h)->counts[i], memory_order_relaxed);
    return n;
}

double metrics_hist_sum(const struct metrics_hist *h)
{
    if (!h) return 0.0;
    return bitsd(atomic_load_explicit(&((struct metrics_hist *)h)->sum_bits, memory_order_relaxed));
}

/* One sample line: name[suffix]{labels[,extra]} value */
static void render_name(struct sbuf *b, const char *name, const char *suffix, const char *labels,
                        const char *extra)
{
    sb_puts(b, name);
    sb_puts(b, suffix);
    bool any = labels[0] || extra;
    if (any) sb_puts(b, "{");
    sb_puts(b, labels);
    if (extra) {
        if (labels[0]) sb_puts(b, ",");
        sb_puts(b, extra);
    }
    if (any) sb_puts(b, "}");
    sb_puts(b, " ");
}

/* Histogram buckets are rendered cumulatively, and _count is the +Inf bucket, so a scrape
 * that races with observations is still self-consistent (count == last bucket). */
static void render_hist(struct sbuf *b, const struct family *f, const struct series *s)
{
    uint64_t cum = 0;
    char le[64];
    for (int i = 0; i <= s->h.n; i++) {
        cum += atomic_load_explicit(&((struct series *)s)->h.counts[i], memory_order_relaxed);
        if (i < s->h.n)
            snprintf(le, sizeof le, "le=\"%.15g\"", s->h.bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        render_name(b, f->name, "_bucket", s->labels, le);
        sb_printf(b, "%llu\n", (unsigned long long)cum);
    }
    render_name(b, f->name, "_sum", s->labels, NULL);
    sb_double(b, metrics_hist_sum(&s->h));
    sb_puts(b, "\n");
    render_name(b, f->name, "_count", s->labels, NULL);
    sb_printf(b, "%llu\n", (unsigned long long)cum);
}

char *metrics_render(struct metrics *m, size_t *len)
{
    static const char *type_names[] = {"counter", "gauge", "histogram"};
    struct sbuf b = {0};
    sb_puts(&b, "");
    if (m) {
        pthread_mutex_lock(&m->mu);
        for (struct family *f = m->head; f; f = f->next) {
            sb_puts(&b, "# HELP ");
            sb_puts(&b, f->name);
            sb_puts(&b, " ");
            sb_escape(&b, f->help, false);
            sb_puts(&b, "\n# TYPE ");
            sb_puts(&b, f->name);
            sb_puts(&b, " ");
            sb_puts(&b, type_names[f->type]);
            sb_puts(&b, "\n");
            for (struct series *s = f->head; s; s = s->next) {
                if (f->type == MT_HIST) {
                    render_hist(&b, f, s);
                    continue;
                }
                render_name(&b, f->name, "", s->labels, NULL);
                if (f->type == MT_COUNTER)
                    sb_printf(&b, "%llu\n", (unsigned long long)metrics_counter_get(&s->c));
                else {
                    sb_double(&b, s->g.fn ? s->g.fn(s->g.ctx) : metrics_gauge_get(&s->g));
                    sb_puts(&b, "\n");
                }
            }
        }
        pthread_mutex_unlock(&m->mu);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    if (len) *len = b.len;
    return b.p;
}
