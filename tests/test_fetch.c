/* The curl multi fetcher against the fixture server with inline routes only (no shared
 * data needed): many parallel async requests, redirects, protocol refusal, timeouts, body
 * caps (plain and gzip bomb), Retry-After, conditional headers, refused connections and
 * shutdown with requests in flight. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_server.h"
#include "story/fetch.h"
#include "testutil.h"

static struct fixture_server *srv;

static const char FEED[] = "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>t</title>"
                           "<item><title>one</title></item></channel></rss>";

static int setup(void **state)
{
    (void)state;
    srv = fixture_server_start(NULL);
    if (!srv) return -1;
    struct fixture_route routes[] = {
        {.path = "/feed", .body = FEED, .body_len = sizeof FEED - 1,
         .content_type = "application/rss+xml", .headers = "ETag: \"e1\"\r\n"},
        {.path = "/feed", .query = "v=2", .body = "second", .body_len = 6},
        {.path = "/etag", .body = FEED, .body_len = sizeof FEED - 1, .behavior = FX_ETAG,
         .headers = "ETag: \"e1\"\r\nLast-Modified: Mon, 26 Jun 2017 19:41:48 GMT\r\n"},
        {.path = "/loop", .status = 302, .headers = "Location: /loop\r\n"},
        {.path = "/hop1", .status = 301, .headers = "Location: /hop2\r\n"},
        {.path = "/hop2", .status = 302, .headers = "Location: /feed\r\n"},
        {.path = "/to-file", .status = 302, .headers = "Location: file:///etc/passwd\r\n"},
        {.path = "/to-ftp", .status = 302, .headers = "Location: ftp://127.0.0.1/x\r\n"},
        {.path = "/slow", .body = FEED, .body_len = sizeof FEED - 1, .behavior = FX_DELAY,
         .delay_ms = 3000},
        {.path = "/huge", .behavior = FX_HUGE, .huge_bytes = 8u << 20},
        {.path = "/bomb", .behavior = FX_GZIP_BOMB, .huge_bytes = 16u << 20},
        {.path = "/gzip", .body = FEED, .body_len = sizeof FEED - 1, .behavior = FX_GZIP},
        {.path = "/short", .body = FEED, .body_len = sizeof FEED - 1, .behavior = FX_TRUNCATE},
        {.path = "/429", .status = 429, .headers = "Retry-After: 30\r\n", .body = "slow down",
         .body_len = 9},
        {.path = "/503", .status = 503, .headers = "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (fixture_server_add(srv, &routes[i]) < 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture_server_stop(srv);
    return 0;
}

static struct fetcher *make(long timeout_ms, size_t max_bytes)
{
    struct fetch_cfg cfg = {.connect_timeout_ms = 1000, .timeout_ms = timeout_ms,
                            .max_bytes = max_bytes};
    struct err e = {0};
    struct fetcher *f = fetch_new(&cfg, &e);
    assert_non_null(f);
    return f;
}

static int get(struct fetcher *f, const char *path, struct fetch_resp *r, struct err *e)
{
    char url[512];
    snprintf(url, sizeof url, "%s%s", fixture_server_url(srv), path);
    struct fetch_req req = {.url = url};
    memset(e, 0, sizeof *e);
    return fetch_sync(f, &req, r, e);
}

static void test_basic_and_headers(void **state)
{
    (void)state;
    struct fetcher *f = make(2000, 1u << 20);
    struct fetch_resp r;
    struct err e;
    assert_int_equal(get(f, "/feed", &r, &e), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, sizeof FEED - 1);
    assert_memory_equal(r.body, FEED, r.len);
    assert_string_equal(r.content_type, "application/rss+xml");
    assert_string_equal(r.etag, "\"e1\"");
    assert_int_equal(r.retry_after_s, -1);
    fetch_resp_clear(&r);
    char ua[256];
    assert_true(fixture_server_last_header(srv, "/feed", "User-Agent", ua, sizeof ua));
    assert_string_equal(ua, FETCH_USER_AGENT);
    /* Query routing reaches the more specific route. */
    assert_int_equal(get(f, "/feed?v=2&x=1", &r, &e), 0);
    assert_string_equal(r.body, "second");
    fetch_resp_clear(&r);
    /* A 404 is a response, not a transport error. */
    assert_int_equal(get(f, "/nothing-here", &r, &e), 0);
    assert_int_equal(r.status, 404);
    fetch_resp_clear(&r);
    /* gzip is decoded. */
    assert_int_equal(get(f, "/gzip", &r, &e), 0);
    assert_int_equal(r.len, sizeof FEED - 1);
    assert_memory_equal(r.body, FEED, r.len);
    fetch_resp_clear(&r);
    fetch_free(f);
}

static void test_conditional(void **state)
{
    (void)state;
    struct fetcher *f = make(2000, 1u << 20);
    char url[512];
    snprintf(url, sizeof url, "%s/etag", fixture_server_url(srv));
    struct fetch_req req = {.url = url, .etag = "\"e1\"",
                            .last_modified = "Mon, 26 Jun 2017 19:41:48 GMT",
                            .accept = "application/rss+xml"};
    struct fetch_resp r;
    struct err e = {0};
    assert_int_equal(fetch_sync(f, &req, &r, &e), 0);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    fetch_resp_clear(&r);
    char h[128];
    assert_true(fixture_server_last_header(srv, "/etag", "If-None-Match", h, sizeof h));
    assert_string_equal(h, "\"e1\"");
    assert_true(fixture_server_last_header(srv, "/etag", "If-Modified-Since", h, sizeof h));
    assert_string_equal(h, "Mon, 26 Jun 2017 19:41:48 GMT");
    assert_true(fixture_server_last_header(srv, "/etag", "Accept", h, sizeof h));
    assert_string_equal(h, "application/rss+xml");
    req.etag = "\"old\"";
    req.last_modified = NULL;
    assert_int_equal(fetch_sync(f, &req, &r, &e), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.last_modified, "Mon, 26 Jun 2017 19:41:48 GMT");
    fetch_resp_clear(&r);
    fetch_free(f);
}

static void test_redirects(void **state)
{
    (void)state;
    struct fetcher *f = make(2000, 1u << 20);
    struct fetch_resp r;
    struct err e;
    assert_int_equal(get(f, "/hop1", &r, &e), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.redirects, 2);
    assert_string_equal(r.etag, "\"e1\""); /* headers of the final response */
    fetch_resp_clear(&r);
    fixture_server_reset_hits(srv);
    assert_int_equal(get(f, "/loop", &r, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "more than 5 redirects"));
    assert_int_equal(fixture_server_hits(srv, "/loop"), 6);
    assert_int_equal(get(f, "/to-file", &r, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "non-http(s)"));
    assert_int_equal(get(f, "/to-ftp", &r, &e), ERR_INVALID);
    struct fetch_req req = {.url = "file:///etc/passwd"};
    assert_int_equal(fetch_sync(f, &req, &r, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "only http:// and https://"));
    req.url = "gopher://127.0.0.1/";
    assert_int_equal(fetch_start(f, &req, NULL, NULL, &e), ERR_INVALID);
    fetch_free(f);
}

static void test_timeouts_and_failures(void **state)
{
    (void)state;
    struct fetcher *f = make(1500, 1u << 20);
    struct fetch_resp r;
    struct err e;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(get(f, "/slow", &r, &e), ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(s >= 1.45 && s < 2.9); /* the delay is 3 s */
    /* A per-request timeout overrides the fetcher's. */
    char url[512];
    snprintf(url, sizeof url, "%s/slow", fixture_server_url(srv));
    struct fetch_req req = {.url = url, .timeout_ms = 200};
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(fetch_sync(f, &req, &r, &e), ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(s >= 0.19 && s < 1.2); /* well under the fetcher's 1.5 s */
    /* Short body: the advertised length never arrives. */
    assert_int_equal(get(f, "/short", &r, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "closed before"));
    /* Nothing listening. */
    req.url = "http://127.0.0.1:1/";
    req.timeout_ms = 0;
    assert_int_equal(fetch_sync(f, &req, &r, &e), ERR_UPSTREAM);
    assert_true(e.msg[0] != 0);
    fetch_free(f);
}

static void test_caps(void **state)
{
    (void)state;
    struct fetcher *f = make(5000, 1u << 20);
    struct fetch_resp r;
    struct err e;
    assert_int_equal(get(f, "/huge", &r, &e), ERR_NOMEM);
    assert_non_null(strstr(e.msg, "1048576-byte limit"));
    assert_int_equal(get(f, "/bomb", &r, &e), ERR_NOMEM);
    assert_non_null(strstr(e.msg, "decompressed"));
    fetch_free(f);
    /* With a cap above the bomb's size it inflates completely, so the bomb is real. */
    f = make(5000, 20u << 20);
    assert_int_equal(get(f, "/bomb", &r, &e), 0);
    assert_true(r.len > (15u << 20) && r.len <= (16u << 20));
    assert_non_null(strstr(r.body, "<title>bomb</title>"));
    fetch_resp_clear(&r);
    fetch_free(f);
}

static void test_retry_after(void **state)
{
    (void)state;
    struct fetcher *f = make(2000, 1u << 20);
    struct fetch_resp r;
    struct err e;
    assert_int_equal(get(f, "/429", &r, &e), 0);
    assert_int_equal(r.status, 429);
    assert_int_equal(r.retry_after_s, 30);
    assert_string_equal(r.body, "slow down");
    fetch_resp_clear(&r);
    assert_int_equal(get(f, "/503", &r, &e), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.retry_after_s, 0); /* a date in the past */
    fetch_resp_clear(&r);
    fetch_free(f);
}

struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, ok, stopped;
};

static void on_done(void *ud, struct fetch_resp *r)
{
    struct collect *c = ud;
    pthread_mutex_lock(&c->mu);
    c->done++;
    if (r->code == 0 && r->status == 200 && r->len == sizeof FEED - 1) c->ok++;
    if (r->code && strstr(r->msg, "fetcher stopped")) c->stopped++;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    fetch_resp_free(r);
}

static void test_parallel_async_and_shutdown(void **state)
{
    (void)state;
    struct fetcher *f = make(5000, 1u << 20);
    struct collect c = {.done = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cv, NULL);
    char url[512];
    snprintf(url, sizeof url, "%s/feed", fixture_server_url(srv));
    struct fetch_req req = {.url = url};
    enum { N = 40 };
    for (int i = 0; i < N; i++) assert_int_equal(fetch_start(f, &req, on_done, &c, NULL), 0);
    pthread_mutex_lock(&c.mu);
    while (c.done < N) pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    assert_int_equal(c.ok, N);

    /* Stopping with slow requests in flight completes them as "fetcher stopped". */
    c.done = c.ok = 0;
    snprintf(url, sizeof url, "%s/slow", fixture_server_url(srv));
    for (int i = 0; i < 3; i++) assert_int_equal(fetch_start(f, &req, on_done, &c, NULL), 0);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    fetch_free(f);
    assert_int_equal(c.done, 3);
    assert_int_equal(c.stopped, 3);
    pthread_cond_destroy(&c.cv);
    pthread_mutex_destroy(&c.mu);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_and_headers),
        cmocka_unit_test(test_conditional),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_timeouts_and_failures),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_parallel_async_and_shutdown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
