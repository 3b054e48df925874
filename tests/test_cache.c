/* Tests for src/serve/cache.c: the local TTL LRU and Redis (a real redis-server). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_fixture.h"
#include "serve/cache.h"

static double fake_now;
static double fake_clock(void)
{
    return fake_now;
}

static int get_str(struct cache *c, const char *key, char *out, size_t n)
{
    char *v;
    size_t len;
    int hit = cache_get(c, 0, key, &v, &len);
    if (hit) {
        snprintf(out, n, "%s", v);
        assert_int_equal(strlen(v), len);
        free(v);
    }
    return hit;
}

static void test_local_hit_miss_ttl(void **state)
{
    (void)state;
    fake_now = 1000;
    struct err e;
    struct cache_cfg cfg = {.ttl_s = 10, .now = fake_clock};
    struct cache *c = cache_new(&cfg, &e);
    assert_non_null(c);
    assert_string_equal(cache_backend(c), "local");
    char buf[64];
    assert_int_equal(get_str(c, "a", buf, sizeof buf), 0);
    assert_int_equal(cache_set(c, 0, "a", "alpha", 5, 0), 0);
    assert_int_equal(get_str(c, "a", buf, sizeof buf), 1);
    assert_string_equal(buf, "alpha");
    assert_int_equal(cache_set(c, 0, "a", "again", 5, 0), 0); /* overwrite */
    assert_int_equal(get_str(c, "a", buf, sizeof buf), 1);
    assert_string_equal(buf, "again");
    assert_int_equal(cache_set(c, 0, "short", "s", 1, 2), 0);
    fake_now += 5; /* "short" expired, "a" not yet */
    assert_int_equal(get_str(c, "short", buf, sizeof buf), 0);
    assert_int_equal(get_str(c, "a", buf, sizeof buf), 1);
    fake_now += 6;
    assert_int_equal(get_str(c, "a", buf, sizeof buf), 0);
    cache_set(c, 0, "d", "x", 1, 0);
    cache_del(c, 0, "d");
    assert_int_equal(get_str(c, "d", buf, sizeof buf), 0);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 4);
    assert_int_equal(st.expired, 2);
    assert_false(st.redis);
    cache_free(c);
}

static void test_local_eviction(void **state)
{
    (void)state;
    fake_now = 0;
    struct err e;
    struct cache_cfg cfg = {.max_entries = 3, .max_value_bytes = 100, .now = fake_clock};
    struct cache *c = cache_new(&cfg, &e);
    char buf[16];
    cache_set(c, 0, "1", "a", 1, 0);
    cache_set(c, 0, "2", "b", 1, 0);
    cache_set(c, 0, "3", "c", 1, 0);
    assert_int_equal(get_str(c, "1", buf, sizeof buf), 1); /* 1 becomes most recent */
    cache_set(c, 0, "4", "d", 1, 0);                        /* evicts 2, the coldest */
    assert_int_equal(get_str(c, "2", buf, sizeof buf), 0);
    assert_int_equal(get_str(c, "1", buf, sizeof buf), 1);
    assert_int_equal(get_str(c, "3", buf, sizeof buf), 1);
    assert_int_equal(get_str(c, "4", buf, sizeof buf), 1);
    char big[200] = {0};
    assert_true(cache_set(c, 0, "big", big, sizeof big, 0) < 0); /* over max_value_bytes */
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.evictions, 1);
    cache_free(c);

    /* Byte bound: 10 values of 10 bytes in a 50-byte cache keep only the newest few. */
    struct cache_cfg cfg2 = {.max_bytes = 50, .now = fake_clock};
    c = cache_new(&cfg2, &e);
    for (int i = 0; i < 10; i++) {
        char k[4];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(cache_set(c, 0, k, "0123456789", 10, 0), 0);
    }
    assert_int_equal(get_str(c, "k0", buf, sizeof buf), 0);
    assert_int_equal(get_str(c, "k9", buf, sizeof buf), 1);
    cache_free(c);
}

static void test_bad_redis_url(void **state)
{
    (void)state;
    struct err e;
    const char *bad[] = {"http://x:1", "redis://", "redis://h:0", "redis://h:99999",
                         "redis://h:12/x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct cache_cfg cfg = {.redis_url = bad[i]};
        assert_null(cache_new(&cfg, &e));
        assert_non_null(strstr(e.msg, "redis URL"));
    }
}

static void test_redis_roundtrip_and_outage(void **state)
{
    (void)state;
    if (!redis_fixture_available()) {
        print_message("[ SKIPPING ] redis-server is not installed (scripts/setup.sh installs it)\n");
        skip();
    }
    struct redis_fixture r;
    assert_int_equal(redis_fixture_start(&r, 0), 0);
    struct err e;
    struct cache_cfg cfg = {.redis_url = r.url, .redis_timeout_ms = 50, .redis_retry_s = 0.05,
                            .n_slots = 2};
    struct cache *c = cache_new(&cfg, &e);
    assert_non_null(c);
    assert_string_equal(cache_backend(c), "redis");
    char buf[64];
    cache_del(c, 0, "t:key");
    assert_int_equal(get_str(c, "t:key", buf, sizeof buf), 0);
    assert_int_equal(cache_set(c, 0, "t:key", "va\0lue", 6, 0), 0); /* binary-safe */
    char *v;
    size_t len;
    assert_int_equal(cache_get(c, 1, "t:key", &v, &len), 1); /* another slot sees it */
    assert_int_equal(len, 6);
    assert_memory_equal(v, "va\0lue", 6);
    free(v);
    assert_int_equal(cache_set(c, 0, "t:ttl", "x", 1, 0.05), 0);
    struct timespec ts = {0, 150 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_int_equal(get_str(c, "t:ttl", buf, sizeof buf), 0); /* Redis expired it */
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_true(st.redis_up);

    /* Redis dies: gets are misses, sets fail softly, nothing crashes. */
    redis_fixture_kill(&r);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(get_str(c, "t:key", buf, sizeof buf), 0);
        assert_true(cache_set(c, i % 2, "t:key2", "y", 1, 0) < 0);
    }
    cache_get_stats(c, &st);
    assert_false(st.redis_up);
    assert_true(st.redis_errors >= 1);
    assert_true(strlen(st.redis_last_error) > 0);

    /* Redis returns on the same port: the cache reconnects by itself after the back-off. */
    assert_int_equal(redis_fixture_start(&r, r.port), 0);
    nanosleep(&ts, NULL);
    int ok = 0;
    for (int i = 0; i < 50 && !ok; i++) {
        ok = cache_set(c, 0, "t:back", "z", 1, 0) == 0 && cache_set(c, 1, "t:back", "z", 1, 0) == 0;
        if (!ok) nanosleep(&ts, NULL);
    }
    assert_true(ok);
    assert_int_equal(get_str(c, "t:back", buf, sizeof buf), 1);
    cache_get_stats(c, &st);
    assert_true(st.redis_up);
    cache_free(c);
    redis_fixture_kill(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_hit_miss_ttl),
        cmocka_unit_test(test_local_eviction),
        cmocka_unit_test(test_bad_redis_url),
        cmocka_unit_test(test_redis_roundtrip_and_outage),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
