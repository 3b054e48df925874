/* Tests for serve/metrics: series identity, atomic updates from many threads, histogram
 * bucketing, and the Prometheus text rendering checked by a strict line parser. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom_parse.h"
#include "serve/metrics.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})

static void test_counter_identity(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metrics_counter *a = metrics_counter(m, "req_total", "Requests.", L("route", "/a"));
    struct metrics_counter *a2 = metrics_counter(m, "req_total", "ignored", L("route", "/a"));
    struct metrics_counter *b = metrics_counter(m, "req_total", "Requests.", L("route", "/b"));
    assert_non_null(a);
    assert_ptr_equal(a, a2);
    assert_ptr_not_equal(a, b);
    metrics_counter_inc(a);
    metrics_counter_add(a2, 4);
    metrics_counter_inc(b);
    assert_int_equal(metrics_counter_get(a), 5);
    assert_int_equal(metrics_counter_get(b), 1);
    /* a name of another type, bad names and bad labels are refused */
    assert_null(metrics_gauge(m, "req_total", "x", NULL));
    assert_null(metrics_counter(m, "9bad", "x", NULL));
    assert_null(metrics_counter(m, "bad-name", "x", NULL));
    assert_null(metrics_counter(m, "ok_total", "x", L("bad-label", "v")));
    assert_null(metrics_counter(m, "ok_total", "x", L("__reserved", "v")));
    /* NULL handles are no-ops */
    metrics_counter_inc(NULL);
    metrics_gauge_set(NULL, 1);
    metrics_hist_observe(NULL, 1);
    assert_int_equal(metrics_counter_get(NULL), 0);
    metrics_free(m);
    metrics_free(NULL);
}

static void test_gauge(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct metrics_gauge *g = metrics_gauge(m, "in_flight", "Requests in flight.", NULL);
    metrics_gauge_set(g, 3);
    metrics_gauge_add(g, 2.5);
    metrics_gauge_add(g, -1);
    assert_true(fabs(metrics_gauge_get(g) - 4.5) < 1e-12);
    metrics_free(m);
}

static void test_hist_buckets(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    const double b[] = {0.1, 1, 10};
    struct metrics_hist *h = metrics_hist(m, "lat_seconds", "Latency.", NULL, b, 3);
    assert_non_null(h);
    /* a different bound list for the same family is refused */
    const double b2[] = {0.5, 1, 10};
    assert_null(metrics_hist(m, "lat_seconds", "Latency.", L("x", "y"), b2, 3));
    /* non-increasing bounds are refused */
    const double bad[] = {1, 1};
    assert_null(metrics_hist(m, "bad_seconds", "x", NULL, bad, 2));
    metrics_hist_observe(h, 0.05); /* <= 0.1 */
    metrics_hist_observe(h, 0.1);  /* le is inclusive */
    metrics_hist_observe(h, 0.5);
    metrics_hist_observe(h, 20);  /* only +Inf */
    metrics_hist_observe(h, NAN); /* ignored */
    assert_int_equal(metrics_hist_count(h), 4);
    assert_true(fabs(metrics_hist_sum(h) - 20.65) < 1e-9);
    char *text = metrics_render(m, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"0.1\"} 2\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"1\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(text, "lat_seconds_count 4\n"));
    assert_non_null(strstr(text, "lat_seconds_sum 20.65\n"));
    free(text);
    metrics_free(m);
}

static double five(void *ctx)
{
    return *(int *)ctx + 0.0;
}

static void test_render_parses(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_counter_add(metrics_counter(m, "http_requests_total",
                                        "Requests by route.\nSecond line \\ ok",
                                        L("route", "/x", "code", "2xx")),
                        7);
    metrics_counter_add(
        metrics_counter(m, "http_requests_total", "", L("route", "we\"ird\\path\n", "code", "4xx")),
        2);
    metrics_gauge_set(metrics_gauge(m, "temp", "A gauge.", NULL), -1.5);
    int depth = 5;
    assert_int_equal(metrics_gauge_fn(m, "queue_depth", "Jobs waiting.", NULL, five, &depth), 0);
    struct metrics_hist *h = metrics_hist(m, "lat_seconds", "Latency.", L("route", "/x"),
                                          METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS);
    for (int i = 0; i < 100; i++)
        metrics_hist_observe(h, i * 0.001);
    metrics_hist(m, "lat_seconds", "Latency.", L("route", "/empty"), METRICS_LATENCY_BUCKETS,
                 METRICS_LATENCY_NBUCKETS);
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    struct prom_doc *doc = malloc(sizeof *doc);
    char err[256] = "";
    bool ok = prom_parse(text, doc, err, sizeof err);
    if (!ok) print_message("parse error: %s\n%s", err, text);
    assert_true(ok);
    assert_int_equal(doc->n_families, 4);
    const struct prom_sample *s = prom_find(doc, "http_requests_total", "route=\"/x\"");
    assert_non_null(s);
    assert_true(s->value == 7);
    s = prom_find(doc, "http_requests_total", "code=\"4xx\"");
    assert_non_null(s);
    assert_string_equal(s->labels, "route=\"we\\\"ird\\\\path\\n\",code=\"4xx\"");
    s = prom_find(doc, "queue_depth", NULL);
    assert_non_null(s);
    assert_true(s->value == 5);
    s = prom_find(doc, "lat_seconds_count", "route=\"/x\"");
    assert_true(s && s->value == 100);
    s = prom_find(doc, "lat_seconds_bucket", "le=\"0.01\"");
    assert_true(s && s->value == 11); /* 0.000 .. 0.010 */
    s = prom_find(doc, "lat_seconds_count", "route=\"/empty\"");
    assert_true(s && s->value == 0);
    /* the help text's newline and backslash are escaped */
    assert_non_null(
        strstr(text, "# HELP http_requests_total Requests by route.\\nSecond line \\\\ ok\n"));
    assert_non_null(strstr(text, "# TYPE lat_seconds histogram\n"));
    free(doc);
    free(text);
    metrics_free(m);
}

/* The parser itself must reject what Prometheus rejects, or the test above proves nothing. */
static void test_parser_rejects(void **state)
{
    (void)state;
    struct prom_doc *doc = malloc(sizeof *doc);
    char err[256];
    assert_true(prom_parse("# TYPE a counter\na 1\n", doc, err, sizeof err));
    assert_false(prom_parse("a 1\n", doc, err, sizeof err));                          /* no TYPE */
    assert_false(prom_parse("# TYPE a counter\na{x=\"1} 1\n", doc, err, sizeof err)); /* quote */
    assert_false(prom_parse("# TYPE a counter\na one\n", doc, err, sizeof err));      /* value */
    assert_false(prom_parse("# TYPE a counter\na 1", doc, err, sizeof err));          /* newline */
    assert_false(prom_parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                            "h_sum 1\nh_count 1\n",
                            doc, err, sizeof err)); /* decreasing */
    assert_false(prom_parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
                            "h_sum 1\nh_count 3\n",
                            doc, err, sizeof err)); /* count */
    free(doc);
}

struct hammer {
    struct metrics *m;
    int n;
};

static void *hammer_thread(void *arg)
{
    struct hammer *hm = arg;
    struct metrics_counter *c = metrics_counter(hm->m, "hits_total", "h", NULL);
    struct metrics_gauge *g = metrics_gauge(hm->m, "level", "g", NULL);
    const double b[] = {1};
    struct metrics_hist *h = metrics_hist(hm->m, "obs", "o", NULL, b, 1);
    for (int i = 0; i < hm->n; i++) {
        metrics_counter_inc(c);
        metrics_gauge_add(g, 1);
        metrics_hist_observe(h, 0.5);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    struct hammer hm = {m, 50000};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, hammer_thread, &hm);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(metrics_counter_get(metrics_counter(m, "hits_total", "h", NULL)), 200000);
    assert_true(metrics_gauge_get(metrics_gauge(m, "level", "g", NULL)) == 200000.0);
    const double b[] = {1};
    struct metrics_hist *h = metrics_hist(m, "obs", "o", NULL, b, 1);
    assert_int_equal(metrics_hist_count(h), 200000);
    assert_true(metrics_hist_sum(h) == 100000.0);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_identity), cmocka_unit_test(test_gauge),
        cmocka_unit_test(test_hist_buckets),     cmocka_unit_test(test_render_parses),
        cmocka_unit_test(test_parser_rejects),   cmocka_unit_test(test_concurrent_updates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
