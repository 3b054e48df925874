/* engine/sampler: greedy, top-k / top-p / min-p sets, penalty, seeds, stop strings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "engine/sampler.h"

static struct sampler_params plain(float temp)
{
    struct sampler_params p = {.temp = temp,
                               .top_k = 0,
                               .top_p = 1.0f,
                               .min_p = 0.0f,
                               .repeat_penalty = 1.0f,
                               .repeat_last_n = 0,
                               .seed = 7};
    return p;
}

static struct sampler *mk(struct sampler_params p, int n)
{
    struct err e = {0};
    struct sampler *s = sampler_new(&p, n, &e);
    assert_non_null(s);
    return s;
}

static void test_greedy(void **st)
{
    (void)st;
    const int n = 1000;
    float *l = malloc(n * sizeof *l);
    struct sampler *s = mk(plain(0.0f), n);
    unsigned x = 1;
    for (int round = 0; round < 20; round++) {
        int best = 0;
        for (int i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            l[i] = (float)(x >> 8) / 1e6f - 5.0f;
            if (l[i] > l[best]) best = i;
        }
        assert_int_equal(sampler_sample(s, l), best);
    }
    sampler_free(s);
    free(l);
}

/* logits = log(p): the softmax at temperature 1 gives p back */
static void set_probs(float *l, const double *p, int n)
{
    for (int i = 0; i < n; i++)
        l[i] = (float)log(p[i]);
}

static void test_filters(void **st)
{
    (void)st;
    const double p[6] = {0.05, 0.5, 0.02, 0.3, 0.08, 0.05};
    float l[6];
    int ids[6];
    float pr[6];
    set_probs(l, p, 6);

    struct sampler_params k = plain(1.0f);
    k.top_k = 3;
    struct sampler *s = mk(k, 6);
    int m = sampler_candidates(s, l, ids, pr);
    assert_int_equal(m, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    assert_int_equal(ids[2], 4);
    assert_true(fabs(pr[0] - 0.5 / 0.88) < 1e-5 && fabs(pr[2] - 0.08 / 0.88) < 1e-5);
    sampler_free(s);

    struct sampler_params tp = plain(1.0f);
    tp.top_p = 0.8f; /* 0.5 + 0.3 reaches it */
    s = mk(tp, 6);
    m = sampler_candidates(s, l, ids, pr);
    assert_int_equal(m, 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 3);
    sampler_free(s);
    tp.top_p = 0.85f; /* needs the 0.08 too */
    s = mk(tp, 6);
    assert_int_equal(sampler_candidates(s, l, ids, pr), 3);
    assert_int_equal(ids[2], 4);
    sampler_free(s);

    struct sampler_params mp = plain(1.0f);
    mp.min_p = 0.12f; /* limit 0.06: keeps 0.5, 0.3, 0.08 */
    s = mk(mp, 6);
    m = sampler_candidates(s, l, ids, pr);
    assert_int_equal(m, 3);
    assert_int_equal(ids[2], 4);
    double sum = 0;
    for (int i = 0; i < m; i++)
        sum += pr[i];
    assert_true(fabs(sum - 1.0) < 1e-5);
    sampler_free(s);

    /* temperature sharpens: at 0.5 the probabilities are p^2 renormalised */
    s = mk(plain(0.5f), 6);
    m = sampler_candidates(s, l, ids, pr);
    assert_int_equal(m, 6);
    double z = 0;
    for (int i = 0; i < 6; i++)
        z += p[i] * p[i];
    assert_true(fabs(pr[0] - 0.25 / z) < 1e-4);
    sampler_free(s);

    struct err e = {0};
    struct sampler_params bad = plain(1.0f);
    bad.top_p = 0.0f;
    assert_null(sampler_new(&bad, 6, &e));
    assert_non_null(strstr(e.msg, "top_p"));
}

static void test_seed_and_frequencies(void **st)
{
    (void)st;
    const double p[3] = {0.5, 0.3, 0.2};
    float l[3];
    set_probs(l, p, 3);
    struct sampler_params sp = plain(1.0f);
    sp.seed = 42;
    struct sampler *a = mk(sp, 3), *b = mk(sp, 3);
    sp.seed = 43;
    struct sampler *c = mk(sp, 3);
    int same_ab = 0, same_ac = 0, count[3] = {0};
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        int x = sampler_sample(a, l), y = sampler_sample(b, l), z = sampler_sample(c, l);
        same_ab += x == y;
        same_ac += x == z;
        count[x]++;
    }
    assert_int_equal(same_ab, N);
    assert_true(same_ac < N * 0.6); /* independent streams agree ~38% of the time */
    for (int i = 0; i < 3; i++)
        assert_true(fabs((double)count[i] / N - p[i]) < 0.015);
    /* reset with the same seed replays the stream */
    sampler_reset(a, 42);
    sampler_reset(b, 42);
    for (int i = 0; i < 100; i++)
        assert_int_equal(sampler_sample(a, l), sampler_sample(b, l));
    sampler_free(a);
    sampler_free(b);
    sampler_free(c);
}

static void test_repeat_penalty(void **st)
{
    (void)st;
    float l[4] = {2.0f, 1.9f, -1.0f, -1.2f};
    struct sampler_params sp = plain(0.0f);
    sp.repeat_penalty = 1.5f;
    sp.repeat_last_n = 2;
    struct sampler *s = mk(sp, 4);
    assert_int_equal(sampler_sample(s, l), 0); /* nothing in history yet; 0 is recorded */
    assert_int_equal(sampler_sample(s, l), 1); /* 2.0 / 1.5 < 1.9 */
    /* history {0, 1}: both penalised; the negative ones get more negative (x 1.5) */
    int ids[4];
    float pr[4];
    struct sampler_params sp2 = sp;
    sp2.temp = 1.0f;
    struct sampler *t = mk(sp2, 4);
    sampler_accept(t, 2);
    sampler_accept(t, 2); /* a repeated token is penalised once */
    assert_int_equal(sampler_candidates(t, l, ids, pr), 4);
    double z = exp(2.0) + exp(1.9) + exp(-1.5) + exp(-1.2);
    assert_true(fabs(pr[3] - exp(-1.5) / z) < 1e-5); /* token 2 is now last */
    assert_int_equal(ids[3], 2);
    /* the window forgets: after two more tokens, 2 is no longer penalised */
    sampler_accept(t, 0);
    sampler_accept(t, 0);
    assert_int_equal(sampler_candidates(t, l, ids, pr), 4);
    assert_int_equal(ids[2], 2);
    sampler_free(s);
    sampler_free(t);
}

static size_t feed_all(struct sampler_stop *s, const char *const *chunks, int n, char *out)
{
    size_t o = 0;
    for (int i = 0; i < n; i++)
        o += sampler_stop_feed(s, chunks[i], strlen(chunks[i]), out + o);
    o += sampler_stop_flush(s, out + o);
    out[o] = 0;
    return o;
}

static void test_stop_strings(void **st)
{
    (void)st;
    struct sampler_stop s;
    char out[4096];
    const char *stops[] = {"The END", "</s>"};
    assert_int_equal(sampler_stop_init(&s, stops, 2, NULL), 0);
    /* split over three tokens */
    const char *a[] = {"Hello wor", "ld! The E", "ND is here", "more"};
    char first[64];
    size_t n1 = sampler_stop_feed(&s, a[0], strlen(a[0]), first);
    assert_int_equal(n1, 9);
    size_t n2 = sampler_stop_feed(&s, a[1], strlen(a[1]), first);
    assert_int_equal(n2, 4); /* "ld! " shown, "The E" held back */
    assert_memory_equal(first, "ld! ", 4);
    assert_false(s.stopped);
    assert_int_equal(sampler_stop_feed(&s, a[2], strlen(a[2]), first), 0);
    assert_true(s.stopped);
    assert_int_equal(sampler_stop_feed(&s, a[3], 4, first), 0);

    /* a held-back prefix that turns out not to be a stop string is released */
    assert_int_equal(sampler_stop_init(&s, stops, 2, NULL), 0);
    const char *b[] = {"a <", "/b> The", " ENDING"};
    feed_all(&s, b, 3, out);
    assert_true(s.stopped); /* "The END" inside "The ENDING" */
    assert_string_equal(out, "a </b> ");
    assert_int_equal(sampler_stop_init(&s, stops, 2, NULL), 0);
    const char *c[] = {"x</", "s", ">"};
    feed_all(&s, c, 3, out);
    assert_string_equal(out, "x");
    assert_int_equal(sampler_stop_init(&s, stops, 2, NULL), 0);
    const char *d[] = {"tail </"};
    feed_all(&s, d, 1, out);
    assert_false(s.stopped);
    assert_string_equal(out, "tail </");

    /* no stop strings: everything passes */
    assert_int_equal(sampler_stop_init(&s, NULL, 0, NULL), 0);
    feed_all(&s, a, 4, out);
    assert_string_equal(out, "Hello world! The END is heremore");

    char longs[100];
    memset(longs, 'x', 99);
    longs[99] = 0;
    const char *ls[] = {longs};
    struct err e = {0};
    assert_int_equal(sampler_stop_init(&s, ls, 1, &e), ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_seed_and_frequencies),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_stop_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
