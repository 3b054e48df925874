/** A process-wide registry of counters, gauges and latency histograms, rendered in the
 *  Prometheus text exposition format (version 0.0.4) for GET /metrics.
 *
 *  A metric family has a name, a help line and a type; each family holds series that differ
 *  by their labels (`http_requests_total{route="/recommend",code="2xx"}`). Looking a series
 *  up takes a mutex (do it once, at start-up or per route, and keep the pointer); updating it
 *  is lock-free (atomics), so hot paths on many threads never contend on the registry.
 *
 *  Labels are given as a NULL-terminated array of key, value pairs:
 *      metrics_counter(m, "x_total", "help", (const char *[]){"route", "/a", NULL});
 *  Every handle function accepts NULL (and then does nothing), so code can run without a
 *  registry. */
#ifndef SERVE_METRICS_H
#define SERVE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct metrics;         /* opaque registry */
struct metrics_counter; /* one counter series */
struct metrics_gauge;   /* one gauge series */
struct metrics_hist;    /* one histogram series */

/** Most buckets one histogram may have (not counting +Inf). */
#define METRICS_MAX_BUCKETS 24
/** Most label pairs on one series. */
#define METRICS_MAX_LABELS 6

/** Latency buckets in seconds, 0.5 ms .. 10 s (METRICS_LATENCY_NBUCKETS of them). */
extern const double METRICS_LATENCY_BUCKETS[];
#define METRICS_LATENCY_NBUCKETS 14

struct metrics *metrics_new(void);
/** Frees the registry and every series; handles taken from it become invalid. NULL is fine. */
void metrics_free(struct metrics *m);

/** Finds or creates the counter series name{labels}. NULL if the name or a label is not a
 *  valid Prometheus name, the name already belongs to a family of another type, or memory
 *  runs out (logged). `help` is taken from the first call for that name. */
struct metrics_counter *metrics_counter(struct metrics *m, const char *name, const char *help,
                                        const char *const *labels);
void metrics_counter_add(struct metrics_counter *c, uint64_t n);
void metrics_counter_inc(struct metrics_counter *c);
uint64_t metrics_counter_get(const struct metrics_counter *c);

/** Finds or creates a gauge series (a value that goes up and down). */
struct metrics_gauge *metrics_gauge(struct metrics *m, const char *name, const char *help,
                                    const char *const *labels);
void metrics_gauge_set(struct metrics_gauge *g, double v);
void metrics_gauge_add(struct metrics_gauge *g, double delta);
double metrics_gauge_get(const struct metrics_gauge *g);
/** A gauge whose value is read by calling fn(ctx) at render time (queue depth, cache size).
 *  fn runs under the registry lock and must not call back into the registry. Returns 0, or
 *  a negative err_code. */
int metrics_gauge_fn(struct metrics *m, const char *name, const char *help,
                     const char *const *labels, double (*fn)(void *ctx), void *ctx);

/** Finds or creates a histogram series with the given strictly increasing finite upper
 *  bounds (at most METRICS_MAX_BUCKETS; +Inf is implicit). The bounds of a family are fixed
 *  by its first series; a later call with different bounds gets NULL. */
struct metrics_hist *metrics_hist(struct metrics *m, const char *name, const char *help,
                                  const char *const *labels, const double *bounds, int n_bounds);
/** Records one observation (NaN is ignored). */
void metrics_hist_observe(struct metrics_hist *h, double v);
/** Observations so far and their sum (for tests and summaries). */
uint64_t metrics_hist_count(const struct metrics_hist *h);
double metrics_hist_sum(const struct metrics_hist *h);

/** Renders every family in registration order, series in creation order. Returns a malloc'd
 *  NUL-terminated text (length in *len if len is not NULL), or NULL if memory runs out. */
char *metrics_render(struct metrics *m, size_t *len);

#endif
