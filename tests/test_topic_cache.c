/* The topic cache with a clock the test controls and a fake fetch function whose outcome
 * each test scripts; one test at the end goes through the real fetcher and the fixture
 * server (429 + Retry-After, stale-while-error, 304). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_server.h"
#include "story/fetch.h"
#include "story/topic_cache.h"
#include "testutil.h"

#define MIN_MS (60LL * 1000)
#define HOUR_MS (60LL * MIN_MS)

struct fake {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_llong now;  /* the clock, ms */
    int calls;         /* fetches made */
    int fail;          /* next fetches fail with this code (0 = succeed) */
    long retry_after;  /* seconds to report on failure */
    bool gate;         /* fetches block until the gate opens */
    int entered;       /* fetches waiting at the gate */
    int version;       /* the topics carry it in their titles */
    bool not_modified; /* answer 304 */
};

static struct fake F;

static int64_t fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&F.now);
}

static int fake_fetch(void *ud, enum source_id id, const struct source_params *p,
                      struct source_meta *meta, struct topic_list *out, struct err *err)
{
    (void)ud;
    (void)p;
    pthread_mutex_lock(&F.mu);
    F.calls++;
    F.entered++;
    pthread_cond_broadcast(&F.cv);
    while (F.gate) pthread_cond_wait(&F.cv, &F.mu);
    F.entered--;
    int fail = F.fail;
    long ra = F.retry_after;
    int version = F.version;
    bool nm = F.not_modified;
    pthread_mutex_unlock(&F.mu);
    out->v = NULL;
    out->n = 0;
    if (fail) {
        meta->retry_after_s = ra > 0 ? ra : -1;
        return err_set(err, fail, "%s: HTTP 503 (scripted failure)", source_name(id));
    }
    if (nm) {
        meta->not_modified = true;
        return 0;
    }
    out->v = calloc(2, sizeof *out->v);
    for (int i = 0; i < 2; i++) {
        char t[64];
        snprintf(t, sizeof t, "topic %d v%d", i, version);
        out->v[i].title = strdup(t);
        out->v[i].url = strdup("https://example.test/");
        out->v[i].traffic = 100 - i;
        out->v[i].source = source_name(id);
    }
    out->n = 2;
    snprintf(meta->etag, sizeof meta->etag, "\"v%d\"", version);
    return 0;
}

static struct topic_cache *make_cache(int64_t ttl)
{
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    atomic_store(&F.now, 1000000);
    F.calls = F.fail = F.entered = 0;
    F.retry_after = 0;
    F.gate = F.not_modified = false;
    F.version = 1;
    struct topic_cache_cfg cfg = {
        .ttl_ms = ttl,
        .no_scanner = true,
        .seed = 42,
        .now_ms = fake_clock,
        .fetch = fake_fetch,
        .workers = 2,
    };
    struct err e = {0};
    struct topic_cache *c = topic_cache_new(&cfg, &e);
    assert_non_null(c);
    return c;
}

static void advance(int64_t ms)
{
    atomic_fetch_add(&F.now, ms);
}

static int calls(void)
{
    pthread_mutex_lock(&F.mu);
    int n = F.calls;
    pthread_mutex_unlock(&F.mu);
    return n;
}

static void set_fail(int code, long retry_after)
{
    pthread_mutex_lock(&F.mu);
    F.fail = code;
    F.retry_after = retry_after;
    pthread_mutex_unlock(&F.mu);
}

static const struct source_params GB = {.geo = "GB"};

static void test_miss_then_hit(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_int_equal(r.topics.n, 2);
    assert_string_equal(r.topics.v[0].title, "topic 0 v1");
    assert_false(r.stale);
    assert_int_equal(r.age_ms, 0);
    topic_result_clear(&r);
    assert_int_equal(calls(), 1);

    advance(5 * MIN_MS);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_int_equal(r.age_ms, 5 * MIN_MS);
    assert_false(r.stale);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 1); /* a hit, no refresh yet */

    /* Different parameters are a different key; "gb" normalizes to "GB". */
    struct source_params gb = {.geo = "gb"}, us = {.geo = "US"};
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &gb, 2000, &r, &e), 0);
    topic_result_clear(&r);
    assert_int_equal(calls(), 1);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &us, 2000, &r, &e), 0);
    topic_result_clear(&r);
    assert_int_equal(calls(), 2);

    struct topic_cache_stats st;
    topic_cache_stats(c, &st);
    assert_int_equal(st.hits, 2);
    assert_int_equal(st.misses, 2);
    topic_cache_free(c);
}

static void test_refresh_near_ttl(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(10 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    topic_result_clear(&r);
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_GOOGLE, &GB, &info);
    /* Planned at 80 % of the TTL +- 10 % jitter. */
    int64_t due = info.refresh_due_ms - 1000000;
    assert_true(due >= 7 * MIN_MS - 6000 && due <= 9 * MIN_MS + 6000);

    /* The background scan before the due time does nothing; after it, refreshes. */
    atomic_store(&F.now, info.refresh_due_ms - 1);
    topic_cache_tick(c);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 1);
    F.version = 2;
    atomic_store(&F.now, info.refresh_due_ms);
    topic_cache_tick(c);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 2);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 0, &r, &e), 0);
    assert_string_equal(r.topics.v[0].title, "topic 0 v2");
    assert_int_equal(r.age_ms, 0);
    topic_result_clear(&r);

    /* A request that finds the entry due starts the refresh itself but does not wait. */
    topic_cache_info(c, SOURCE_GOOGLE, &GB, &info);
    atomic_store(&F.now, info.refresh_due_ms + 1);
    F.version = 3;
    pthread_mutex_lock(&F.mu);
    F.gate = true;
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_string_equal(r.topics.v[0].title, "topic 0 v2"); /* the old list, at once */
    assert_false(r.stale);
    topic_result_clear(&r);
    pthread_mutex_lock(&F.mu);
    F.gate = false;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 3);
    topic_cache_free(c);
}

static void test_per_source_ttl(void **state)
{
    (void)state;
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    atomic_store(&F.now, 0);
    F.calls = F.fail = 0;
    F.gate = F.not_modified = false;
    struct topic_cache_cfg cfg = {.no_scanner = true, .now_ms = fake_clock, .fetch = fake_fetch};
    cfg.ttl_ms_source[SOURCE_WIKIPEDIA] = 2 * HOUR_MS;
    struct err e = {0};
    struct topic_cache *c = topic_cache_new(&cfg, &e);
    struct topic_result r;
    struct source_params none = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_WIKIPEDIA, &none, 2000, &r, &e), 0);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_get(c, SOURCE_HACKERNEWS, &none, 2000, &r, &e), 0);
    topic_result_clear(&r);
    advance(20 * MIN_MS); /* past the default 15 min, well inside 2 h */
    assert_int_equal(topic_cache_get(c, SOURCE_WIKIPEDIA, &none, 0, &r, &e), 0);
    assert_false(r.stale);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_get(c, SOURCE_HACKERNEWS, &none, 0, &r, &e), 0);
    assert_true(r.stale);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 3); /* only hackernews refreshed */
    topic_cache_free(c);
}

static void test_stale_while_error(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    topic_result_clear(&r);
    set_fail(ERR_UPSTREAM, 0);
    advance(16 * MIN_MS);
    /* Past the TTL: served at once, flagged stale; the refresh runs behind it and fails. */
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_true(r.stale);
    assert_int_equal(r.age_ms, 16 * MIN_MS);
    assert_string_equal(r.topics.v[0].title, "topic 0 v1");
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 2);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_true(r.stale);
    assert_non_null(strstr(r.last_error, "scripted failure"));
    topic_result_clear(&r);

    /* Still served 23 h later (retries back off meanwhile)... */
    advance(23 * HOUR_MS);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_true(r.stale);
    assert_int_equal(r.topics.n, 2);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);

    /* ...but not past 24 h: then the error, and no topics at all. */
    advance(2 * HOUR_MS);
    assert_true(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e) < 0);
    assert_int_equal(r.topics.n, 0);
    assert_non_null(strstr(e.msg, "scripted failure"));

    /* The source recovers: fresh again. */
    set_fail(0, 0);
    F.version = 7;
    advance(HOUR_MS);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    assert_false(r.stale);
    assert_string_equal(r.topics.v[0].title, "topic 0 v7");
    assert_string_equal(r.last_error, "");
    topic_result_clear(&r);
    topic_cache_free(c);
}

struct getter {
    struct topic_cache *c;
    int rc;
    size_t n;
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    struct topic_result r;
    struct err e = {0};
    g->rc = topic_cache_get(g->c, SOURCE_HACKERNEWS, &(struct source_params){0}, 2000, &r, &e);
    g->n = r.topics.n;
    topic_result_clear(&r);
    return NULL;
}

static void test_single_flight(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    pthread_mutex_lock(&F.mu);
    F.gate = true;
    pthread_mutex_unlock(&F.mu);
    enum { N = 8 };
    pthread_t th[N];
    struct getter g[N];
    for (int i = 0; i < N; i++) {
        g[i] = (struct getter){.c = c, .rc = -100};
        pthread_create(&th[i], NULL, getter_main, &g[i]);
    }
    /* Wait until the one fetch is at the gate, give the others time to pile up. */
    pthread_mutex_lock(&F.mu);
    while (F.entered < 1) pthread_cond_wait(&F.cv, &F.mu);
    pthread_mutex_unlock(&F.mu);
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_HACKERNEWS, &(struct source_params){0}, &info);
    assert_true(info.inflight);
    pthread_mutex_lock(&F.mu);
    F.gate = false;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(g[i].rc, 0);
        assert_int_equal(g[i].n, 2);
    }
    assert_int_equal(calls(), 1);

    /* A waiter whose deadline passes gets ERR_TIMEOUT; the fetch goes on and fills the entry. */
    pthread_mutex_lock(&F.mu);
    F.gate = true;
    pthread_mutex_unlock(&F.mu);
    struct source_params other = {.mode = "firebase"};
    struct topic_result r;
    struct err e = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_HACKERNEWS, &other, 50, &r, &e), ERR_TIMEOUT);
    assert_int_equal(r.topics.n, 0);
    pthread_mutex_lock(&F.mu);
    F.gate = false;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(topic_cache_get(c, SOURCE_HACKERNEWS, &other, 0, &r, &e), 0);
    assert_int_equal(r.topics.n, 2);
    topic_result_clear(&r);
    assert_int_equal(calls(), 2);
    topic_cache_free(c);
}

static void test_backoff_and_retry_after(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    set_fail(ERR_UPSTREAM, 0);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), ERR_UPSTREAM);
    assert_int_equal(r.topics.n, 0); /* nothing invented */
    assert_int_equal(calls(), 1);
    /* Backing off: an immediate retry fails fast without a fetch. */
    assert_true(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e) < 0);
    assert_non_null(strstr(e.msg, "backing off"));
    assert_int_equal(calls(), 1);
    /* Delays grow: base 10 s, equal jitter -> [5, 10] s, then [10, 20] s, [20, 40] s. */
    int64_t prev = 0;
    for (int k = 0; k < 3; k++) {
        struct topic_cache_info info;
        topic_cache_info(c, SOURCE_GOOGLE, &GB, &info);
        int64_t d = info.next_attempt_ms - atomic_load(&F.now);
        int64_t base = 10000LL << k;
        assert_true(d >= base / 2 && d <= base);
        assert_true(d > prev / 2);
        prev = d;
        atomic_store(&F.now, info.next_attempt_ms);
        assert_true(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e) < 0);
        assert_int_equal(calls(), 2 + k);
    }
    topic_cache_free(c);

    /* Retry-After pushes the next attempt out to at least that. */
    c = make_cache(15 * MIN_MS);
    set_fail(ERR_BUSY, 120);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), ERR_BUSY);
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_GOOGLE, &GB, &info);
    assert_true(info.next_attempt_ms - atomic_load(&F.now) >= 120000);
    advance(119000);
    assert_true(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e) < 0);
    assert_int_equal(calls(), 1);
    advance(2000);
    set_fail(0, 0);
    assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e), 0);
    topic_result_clear(&r);
    assert_int_equal(calls(), 2);
    topic_cache_free(c);
}

static void test_circuit_breaker(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    set_fail(ERR_UPSTREAM, 0);
    /* Five different keys of one source fail once each: the source opens. */
    for (int i = 0; i < 5; i++) {
        struct source_params p = {.limit = i + 1};
        assert_true(topic_cache_get(c, SOURCE_NEWSAPI, &p, 2000, &r, &e) < 0);
    }
    assert_int_equal(calls(), 5);
    struct source_params p6 = {.limit = 6};
    assert_true(topic_cache_get(c, SOURCE_NEWSAPI, &p6, 2000, &r, &e) < 0);
    assert_non_null(strstr(e.msg, "paused"));
    assert_int_equal(calls(), 5); /* rejected without a fetch */
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_NEWSAPI, &p6, &info);
    assert_true(info.breaker_open);
    /* Other sources are not affected. */
    assert_true(topic_cache_get(c, SOURCE_GOOGLE, &GB, 2000, &r, &e) < 0);
    assert_int_equal(calls(), 6);

    /* After the open period one probe goes through; it fails, the breaker re-opens. */
    advance(5 * MIN_MS + 1);
    assert_true(topic_cache_get(c, SOURCE_NEWSAPI, &p6, 2000, &r, &e) < 0);
    assert_int_equal(calls(), 7);
    struct source_params p7 = {.limit = 7};
    assert_true(topic_cache_get(c, SOURCE_NEWSAPI, &p7, 2000, &r, &e) < 0);
    assert_non_null(strstr(e.msg, "paused"));
    assert_int_equal(calls(), 7);

    /* Next probe succeeds: closed again, other keys fetch normally. */
    advance(5 * MIN_MS + 1);
    set_fail(0, 0);
    assert_int_equal(topic_cache_get(c, SOURCE_NEWSAPI, &p7, 2000, &r, &e), 0);
    topic_result_clear(&r);
    struct source_params p8 = {.limit = 8};
    assert_int_equal(topic_cache_get(c, SOURCE_NEWSAPI, &p8, 2000, &r, &e), 0);
    topic_result_clear(&r);
    topic_cache_info(c, SOURCE_NEWSAPI, &p8, &info);
    assert_false(info.breaker_open);
    topic_cache_free(c);
}

static void test_not_modified_keeps_list(void **state)
{
    (void)state;
    struct topic_cache *c = make_cache(15 * MIN_MS);
    struct topic_result r;
    struct err e = {0};
    assert_int_equal(topic_cache_get(c, SOURCE_RSS,
                                     &(struct source_params){.url = "http://127.0.0.1:1/x"}, 2000,
                                     &r, &e),
                     0);
    topic_result_clear(&r);
    F.not_modified = true;
    advance(16 * MIN_MS);
    struct source_params p = {.url = "http://127.0.0.1:1/x"};
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_true(r.stale);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_false(r.stale); /* confirmed by the 304 */
    assert_int_equal(r.age_ms, 0);
    assert_string_equal(r.topics.v[0].title, "topic 0 v1");
    topic_result_clear(&r);
    struct topic_cache_stats st;
    topic_cache_stats(c, &st);
    assert_int_equal(st.not_modified, 1);
    topic_cache_free(c);
}

static void test_bad_params_and_eviction(void **state)
{
    (void)state;
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    F.calls = F.fail = 0;
    F.gate = F.not_modified = false;
    struct topic_cache_cfg cfg = {.no_scanner = true, .now_ms = fake_clock, .fetch = fake_fetch,
                                  .max_entries = 3};
    struct err e = {0};
    struct topic_cache *c = topic_cache_new(&cfg, &e);
    struct topic_result r;
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &(struct source_params){0}, 0, &r, &e),
                     ERR_INVALID);
    assert_int_equal(calls(), 0);
    for (int i = 1; i <= 5; i++) {
        advance(1);
        assert_int_equal(
            topic_cache_get(c, SOURCE_GOOGLE, &(struct source_params){.limit = i}, 2000, &r, &e), 0);
        topic_result_clear(&r);
    }
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_GOOGLE, &(struct source_params){.limit = 1}, &info);
    assert_false(info.exists); /* least recently used went first */
    topic_cache_info(c, SOURCE_GOOGLE, &(struct source_params){.limit = 5}, &info);
    assert_true(info.exists);
    topic_cache_free(c);
}

/* Through the real fetcher and the fixture server. */
static void test_real_fetcher(void **state)
{
    (void)state;
    char dir[1024];
    test_data_path(dir, sizeof dir, "trends");
    TEST_REQUIRE_PATH(dir);
    struct fixture_server *srv = fixture_server_start(dir);
    assert_non_null(srv);
    struct fetch_cfg fc = {.connect_timeout_ms = 1000, .timeout_ms = 1000};
    struct err e = {0};
    struct fetcher *f = fetch_new(&fc, &e);
    assert_non_null(f);
    atomic_store(&F.now, 1000000);
    struct topic_cache_cfg cfg = {.no_scanner = true, .now_ms = fake_clock, .fetcher = f};
    struct topic_cache *c = topic_cache_new(&cfg, &e);
    assert_non_null(c);

    /* 429 with Retry-After: 120 -> no new request for 120 s. */
    struct source_params p = {0};
    snprintf(p.url, sizeof p.url, "%s/trending/rss?geo=US&case=429", fixture_server_url(srv));
    struct topic_result r;
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), ERR_BUSY);
    assert_non_null(strstr(e.msg, "429"));
    struct topic_cache_info info;
    topic_cache_info(c, SOURCE_RSS, &p, &info);
    assert_true(info.next_attempt_ms - atomic_load(&F.now) >= 120000);
    assert_true(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e) < 0);
    assert_int_equal(fixture_server_hits(srv, "/trending/rss"), 1);

    /* A feed that works, then fails with 500: the last good list, stale. */
    struct fixture_route ok = {.path = "/flaky", .file = "generic_rss2_emarley.rss",
                               .content_type = "application/rss+xml"};
    assert_int_equal(fixture_server_add(srv, &ok), 0);
    snprintf(p.url, sizeof p.url, "%s/flaky", fixture_server_url(srv));
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_string_equal(r.topics.v[0].title, "UI Automation & screenshots");
    topic_result_clear(&r);
    struct fixture_route bad = {.path = "/flaky", .status = 500};
    assert_int_equal(fixture_server_add(srv, &bad), 0);
    advance(16 * MIN_MS);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_true(r.stale);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 3000), 0);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_true(r.stale);
    assert_non_null(strstr(r.last_error, "HTTP 500"));
    assert_string_equal(r.topics.v[0].title, "UI Automation & screenshots");
    topic_result_clear(&r);
    assert_int_equal(fixture_server_hits(srv, "/flaky"), 2);

    /* The source turns slow (3 s, over the 1 s timeout): requests still answer at once. */
    struct fixture_route fast = {.path = "/turns-slow", .file = "generic_rss2_emarley.rss"};
    assert_int_equal(fixture_server_add(srv, &fast), 0);
    snprintf(p.url, sizeof p.url, "%s/turns-slow", fixture_server_url(srv));
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    topic_result_clear(&r);
    struct fixture_route slow = {.path = "/turns-slow", .file = "generic_rss2_emarley.rss",
                                 .behavior = FX_DELAY, .delay_ms = 3000};
    assert_int_equal(fixture_server_add(srv, &slow), 0);
    advance(16 * MIN_MS);
    for (int k = 0; k < 3; k++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 5000, &r, &e), 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        assert_true(ms < 500); /* waiting on the fetch would take >= 1 s */
        assert_true(r.stale);
        assert_int_equal(r.topics.n, 10);
        topic_result_clear(&r);
    }
    assert_int_equal(topic_cache_wait_idle(c, 3000), 0);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 5000, &r, &e), 0);
    assert_non_null(strstr(r.last_error, "timed out"));
    topic_result_clear(&r);

    /* ETag route: the refresh is a 304 and keeps the list. */
    snprintf(p.url, sizeof p.url, "%s/feeds/etag", fixture_server_url(srv));
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    topic_result_clear(&r);
    advance(16 * MIN_MS);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    topic_result_clear(&r);
    assert_int_equal(topic_cache_wait_idle(c, 3000), 0);
    assert_int_equal(topic_cache_get(c, SOURCE_RSS, &p, 2000, &r, &e), 0);
    assert_false(r.stale);
    assert_int_equal(r.topics.n, 10);
    topic_result_clear(&r);
    struct topic_cache_stats st;
    topic_cache_stats(c, &st);
    assert_int_equal(st.not_modified, 1);

    topic_cache_free(c);
    fetch_free(f);
    fixture_server_stop(srv);
}

static void test_scanner_thread_and_jitter(void **state)
{
    (void)state;
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
    atomic_store(&F.now, 0);
    F.calls = F.fail = 0;
    F.gate = F.not_modified = false;
    F.version = 1;
    struct topic_cache_cfg cfg = {.ttl_ms = 10 * MIN_MS, .scan_interval_ms = 20,
                                  .now_ms = fake_clock, .fetch = fake_fetch, .seed = 7};
    struct err e = {0};
    struct topic_cache *c = topic_cache_new(&cfg, &e);
    assert_non_null(c);
    /* Ten keys: their refresh points spread over 72..88 % of the TTL. */
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 1; i <= 10; i++) {
        struct topic_result r;
        struct source_params p = {.limit = i};
        assert_int_equal(topic_cache_get(c, SOURCE_GOOGLE, &p, 2000, &r, &e), 0);
        topic_result_clear(&r);
        struct topic_cache_info info;
        topic_cache_info(c, SOURCE_GOOGLE, &p, &info);
        int64_t due = info.refresh_due_ms;
        assert_true(due >= 72 * 6000 && due <= 88 * 6000);
        if (due < lo) lo = due;
        if (due > hi) hi = due;
    }
    assert_true(hi - lo > 6000); /* not in lockstep */
    assert_int_equal(calls(), 10);
    /* The scanner (real 20 ms period) refreshes all of them once the clock passes 88 %,
     * with no request at all. */
    atomic_store(&F.now, 89 * 6000);
    for (int k = 0; k < 200 && calls() < 20; k++) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(topic_cache_wait_idle(c, 2000), 0);
    assert_int_equal(calls(), 20);
    topic_cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_miss_then_hit),
        cmocka_unit_test(test_refresh_near_ttl),
        cmocka_unit_test(test_per_source_ttl),
        cmocka_unit_test(test_stale_while_error),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_backoff_and_retry_after),
        cmocka_unit_test(test_circuit_breaker),
        cmocka_unit_test(test_not_modified_keeps_list),
        cmocka_unit_test(test_bad_params_and_eviction),
        cmocka_unit_test(test_scanner_thread_and_jitter),
        cmocka_unit_test(test_real_fetcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
