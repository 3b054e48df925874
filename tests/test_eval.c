/* Offline evaluation: ranks and metrics on hand-computed cases, exclusion of history items,
 * baselines, determinism across threads and batch sizes, and error propagation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "recsys/dataset.h"
#include "recsys/eval.h"
#include "recsys/eval_cli.h"
#include "recsys/movielens.h"
#include "testutil.h"

#define EPS 1e-12

static void test_rank_rule(void **state)
{
    (void)state;
    uint32_t mark[8] = {0};
    /* items 1..6 */
    float s[7] = {0, 0.1f, 0.5f, 0.9f, 0.3f, 0.5f, 0.5f};
    assert_int_equal(rec_eval_rank(s, 6, 3, NULL, 0, mark, 1), 0);
    /* item 2 (0.5): only 3 scores higher; ties 5 and 6 have larger ids -> rank 1 */
    assert_int_equal(rec_eval_rank(s, 6, 2, NULL, 0, mark, 2), 1);
    /* item 5 (0.5): 3 higher, tie 2 has a lower id and wins, tie 6 loses -> rank 2 */
    assert_int_equal(rec_eval_rank(s, 6, 5, NULL, 0, mark, 3), 2);
    assert_int_equal(rec_eval_rank(s, 6, 6, NULL, 0, mark, 4), 3);
    assert_int_equal(rec_eval_rank(s, 6, 1, NULL, 0, mark, 5), 5);
    /* excluding 3 and 2 moves item 5 to rank 0; the target itself is never excluded, and
     * out-of-range entries and duplicates are ignored */
    uint32_t ex[] = {3, 2, 5, 0, 99, 3};
    assert_int_equal(rec_eval_rank(s, 6, 5, ex, 6, mark, 6), 0);
    /* marks from an earlier stamp do not leak into the next call */
    assert_int_equal(rec_eval_rank(s, 6, 5, NULL, 0, mark, 7), 2);
    /* NaN is lowest: a NaN target ranks below every number; NaN items never beat a number */
    float n[5] = {0, NAN, 0.2f, NAN, -INFINITY};
    assert_int_equal(rec_eval_rank(n, 4, 2, NULL, 0, mark, 8), 0);
    /* target 3 (NaN): 2 beats it; 1 (NaN, lower id) wins the tie; 4 (-inf, higher id) loses */
    assert_int_equal(rec_eval_rank(n, 4, 3, NULL, 0, mark, 9), 2);
}

static void test_metric_values(void **state)
{
    (void)state;
    double hr[REC_EVAL_NK], nd[REC_EVAL_NK];
    struct {
        uint32_t rank;
        int first_hit; /* index of the first K with a hit, REC_EVAL_NK for none */
    } cases[] = {{0, 0},  {1, 0},  {9, 0},  {10, 1},  {19, 1},  {20, 2},
                 {49, 2}, {50, 3}, {99, 3}, {100, 4}, {5000, 4}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        memset(hr, 0, sizeof hr);
        memset(nd, 0, sizeof nd);
        rec_eval_accumulate(cases[c].rank, hr, nd);
        double g = 1.0 / log2((double)cases[c].rank + 2.0);
        for (int k = 0; k < REC_EVAL_NK; k++) {
            double want_hr = k >= cases[c].first_hit ? 1.0 : 0.0;
            assert_true(fabs(hr[k] - want_hr) < EPS);
            assert_true(fabs(nd[k] - want_hr * g) < EPS);
        }
    }
    /* the hand values: rank 0 -> 1, rank 1 -> 1/log2(3), rank 2 -> 0.5 */
    memset(nd, 0, sizeof nd);
    rec_eval_accumulate(0, hr, nd);
    assert_true(fabs(nd[0] - 1.0) < EPS);
    memset(nd, 0, sizeof nd);
    rec_eval_accumulate(2, hr, nd);
    assert_true(fabs(nd[0] - 0.5) < EPS);
    memset(nd, 0, sizeof nd);
    rec_eval_accumulate(1, hr, nd);
    assert_true(fabs(nd[0] - 0.6309297535714574) < 1e-12);
    assert_int_equal(rec_eval_ks[0], 10);
    assert_int_equal(rec_eval_ks[3], 100);
}

/* A scorer that prefers lower item ids: s_i = -i. */
static int by_id_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                       const uint32_t *users, size_t n_users, float *scores, size_t stride, int tid,
                       struct err *err)
{
    (void)ctx;
    (void)split;
    (void)users;
    (void)tid;
    (void)err;
    for (size_t b = 0; b < n_users; b++)
        for (uint32_t i = 1; i <= d->n_items; i++)
            scores[b * stride + i] = -(float)i;
    return 0;
}

/* A scorer that puts every history item first: they must be excluded. */
static int history_first_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                               const uint32_t *users, size_t n_users, float *scores, size_t stride,
                               int tid, struct err *err)
{
    by_id_score(ctx, d, split, users, n_users, scores, stride, tid, err);
    for (size_t b = 0; b < n_users; b++) {
        uint64_t n;
        const uint32_t *h = rec_split_history(d, users[b], split, &n);
        for (uint64_t k = 0; k < n; k++)
            scores[b * stride + h[k]] = 1000.0f;
    }
    return 0;
}

static struct rec_dataset *small_dataset(void)
{
    /* user 0: 4 5 2 | user 1: 1 2 (skipped) | user 2: 1 3 1 */
    uint64_t off[] = {0, 3, 5, 8};
    uint32_t seq[] = {4, 5, 2, 1, 2, 1, 3, 1};
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_from_sequences(3, 5, off, seq, &err);
    assert_non_null(d);
    return d;
}

static void test_run_hand_computed(void **state)
{
    (void)state;
    struct rec_dataset *d = small_dataset();
    struct rec_scorer sc = {"by-id", by_id_score, NULL};
    struct rec_eval_result r;
    struct err err = {0};
    /* valid: user 0 target 5, history {4}: 1,2,3 above -> rank 3;
     *        user 2 target 3, history {1}: 2 above -> rank 1 */
    struct rec_eval_cfg cfg = {.split = REC_SPLIT_VALID};
    assert_int_equal(rec_eval_run(d, &sc, &cfg, &r, &err), 0);
    assert_int_equal(r.n_users, 2);
    assert_true(fabs(r.hr[0] - 1.0) < EPS);
    assert_true(fabs(r.ndcg[0] - (1.0 / log2(5.0) + 1.0 / log2(3.0)) / 2) < EPS);
    assert_true(fabs(r.mean_rank - 2.0) < EPS);
    /* test: user 0 target 2, history {4,5}: 1 above -> rank 1;
     *       user 2 target 1 (seen before, still ranked), history {1,3} -> rank 0 */
    cfg.split = REC_SPLIT_TEST;
    assert_int_equal(rec_eval_run(d, &sc, &cfg, &r, &err), 0);
    assert_true(fabs(r.ndcg[0] - (1.0 / log2(3.0) + 1.0) / 2) < EPS);
    assert_true(fabs(r.mean_rank - 0.5) < EPS);
    /* history items scored highest change nothing: they are excluded */
    struct rec_scorer hf = {"history-first", history_first_score, NULL};
    struct rec_eval_result r2;
    assert_int_equal(rec_eval_run(d, &hf, &cfg, &r2, &err), 0);
    assert_memory_equal(r.hr, r2.hr, sizeof r.hr);
    assert_memory_equal(r.ndcg, r2.ndcg, sizeof r.ndcg);
    /* max_users takes the first eligible users */
    cfg.max_users = 1;
    assert_int_equal(rec_eval_run(d, &sc, &cfg, &r, &err), 0);
    assert_int_equal(r.n_users, 1);
    assert_true(fabs(r.ndcg[0] - 1.0 / log2(3.0)) < EPS);
    /* the train split is not an evaluation split */
    cfg.split = REC_SPLIT_TRAIN;
    assert_int_equal(rec_eval_run(d, &sc, &cfg, &r, &err), ERR_INVALID);
    rec_dataset_free(d);
}

static void test_popularity_uses_train_counts(void **state)
{
    (void)state;
    /* item 9 is everyone's test item, so it is the most frequent item overall, but it never
     * occurs in train: popularity must not see it. Train parts: {1,2}, {1}, {1}, so the train
     * counts are item 1: 3, item 2: 1, every other item 0. */
    uint64_t off[] = {0, 4, 7, 10};
    uint32_t seq[] = {1, 2, 3, 9, 1, 2, 9, 1, 3, 9};
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_from_sequences(3, 9, off, seq, &err);
    assert_non_null(d);
    assert_int_equal(d->item_pop[9], 3);
    assert_int_equal(d->item_pop_train[9], 0);
    struct rec_scorer pop = rec_eval_popularity_scorer();
    struct rec_eval_cfg cfg = {.split = REC_SPLIT_TEST};
    struct rec_eval_result r;
    assert_int_equal(rec_eval_run(d, &pop, &cfg, &r, &err), 0);
    /* zero-count items below id 9 win the tie with it; history excluded:
     * user 0 (hist 1,2,3): 4..8 -> rank 5; user 1 (hist 1,2): 3 and 4..8 -> 6;
     * user 2 (hist 1,3): 2 (count 1) and 4..8 -> 6 */
    assert_true(fabs(r.mean_rank - 17.0 / 3.0) < EPS);
    assert_true(fabs(r.hr[0] - 1.0) < EPS);
    /* validation: user 0 target 3 (hist 1,2): nothing left above it -> 0; user 1 target 2
     * (hist 1) -> 0; user 2 target 3 (hist 1): item 2 has a higher count -> 1 */
    cfg.split = REC_SPLIT_VALID;
    assert_int_equal(rec_eval_run(d, &pop, &cfg, &r, &err), 0);
    assert_true(fabs(r.mean_rank - 1.0 / 3.0) < EPS);
    rec_dataset_free(d);
}

/* A synthetic dataset with n_users users of 3..22 items drawn from a fixed LCG. */
static struct rec_dataset *synthetic(uint32_t n_users, uint32_t n_items)
{
    uint64_t *off = malloc(((size_t)n_users + 1) * sizeof *off);
    uint32_t *seq = malloc((size_t)n_users * 22 * sizeof *seq);
    assert_non_null(off);
    assert_non_null(seq);
    uint64_t x = 12345, n = 0;
    off[0] = 0;
    for (uint32_t u = 0; u < n_users; u++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t len = 3 + (uint32_t)((x >> 33) % 20);
        for (uint32_t k = 0; k < len; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            /* skewed: low ids more frequent */
            uint32_t a = (uint32_t)((x >> 33) % n_items), b = (uint32_t)((x >> 13) % n_items);
            seq[n++] = (a < b ? a : b) + 1;
        }
        off[u + 1] = n;
    }
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_from_sequences(n_users, n_items, off, seq, &err);
    assert_non_null(d);
    free(off);
    free(seq);
    return d;
}

static void test_determinism_threads_and_batches(void **state)
{
    (void)state;
    struct rec_dataset *d = synthetic(700, 500);
    uint64_t seed = 7;
    struct rec_scorer rnd = rec_eval_random_scorer(&seed);
    struct rec_scorer pop = rec_eval_popularity_scorer();
    struct err err = {0};
    struct rec_eval_result base_r, base_p, r;
    struct rec_eval_cfg cfg = {.split = REC_SPLIT_TEST, .batch = 64};
    assert_int_equal(rec_eval_run(d, &rnd, &cfg, &base_r, &err), 0);
    assert_int_equal(rec_eval_run(d, &pop, &cfg, &base_p, &err), 0);
    assert_int_equal(base_r.n_users, 700);
    int threads[] = {1, 2, 3};
    uint32_t batches[] = {1, 7, 64, 1000};
    for (size_t t = 0; t < 3; t++) {
        struct pool *p = pool_new(threads[t]);
        assert_non_null(p);
        for (size_t b = 0; b < 4; b++) {
            /* the progress bar (on stderr) must not change anything either */
            struct rec_eval_cfg c = {
                .split = REC_SPLIT_TEST, .pool = p, .batch = batches[b], .progress = b == 2};
            assert_int_equal(rec_eval_run(d, &rnd, &c, &r, &err), 0);
            assert_memory_equal(r.hr, base_r.hr, sizeof r.hr);
            assert_memory_equal(r.ndcg, base_r.ndcg, sizeof r.ndcg);
            assert_int_equal(rec_eval_run(d, &pop, &c, &r, &err), 0);
            assert_memory_equal(r.hr, base_p.hr, sizeof r.hr);
            assert_memory_equal(r.ndcg, base_p.ndcg, sizeof r.ndcg);
        }
        pool_free(p);
    }
    /* another seed gives other numbers */
    seed = 8;
    assert_int_equal(rec_eval_run(d, &rnd, &cfg, &r, &err), 0);
    assert_true(memcmp(r.ndcg, base_r.ndcg, sizeof r.ndcg) != 0);
    /* random is near its expectation: HR@K ~ K / (items left after exclusion) */
    double want = 0;
    for (uint32_t u = 0; u < d->n_users; u++) {
        uint64_t nh;
        rec_split_history(d, u, REC_SPLIT_TEST, &nh);
        want += 100.0 / (double)(d->n_items - nh); /* nh over-counts repeats: a lower bound */
    }
    want /= d->n_users;
    assert_true(fabs(base_r.hr[3] - want) < 0.05);
    /* and the skewed data makes popularity better than random */
    assert_true(base_p.ndcg[0] > base_r.ndcg[0]);
    rec_dataset_free(d);
}

static int failing_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                         const uint32_t *users, size_t n_users, float *scores, size_t stride,
                         int tid, struct err *err)
{
    (void)ctx;
    (void)d;
    (void)split;
    (void)scores;
    (void)stride;
    (void)tid;
    for (size_t b = 0; b < n_users; b++)
        if (users[b] == 500) return err_set(err, ERR_INVALID, "user %u has no embedding", users[b]);
    return 0;
}

static void test_scorer_error(void **state)
{
    (void)state;
    struct rec_dataset *d = synthetic(600, 50);
    struct rec_scorer sc = {"broken", failing_score, NULL};
    struct pool *p = pool_new(2);
    struct rec_eval_cfg cfg = {.split = REC_SPLIT_VALID, .pool = p, .batch = 16};
    struct rec_eval_result r;
    struct err err = {0};
    assert_int_equal(rec_eval_run(d, &sc, &cfg, &r, &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "scoring with broken"));
    assert_non_null(strstr(err.msg, "user 500 has no embedding"));
    pool_free(p);
    rec_dataset_free(d);
}

/* The reference: sort the candidates by (score desc, id asc) and find the target. */
struct cand {
    float s;
    uint32_t id;
};

static int cmp_cand(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static void test_rank_matches_sorting_reference(void **state)
{
    (void)state;
    struct rec_dataset *d = synthetic(200, 300);
    uint64_t seed = 99;
    struct rec_scorer scorers[2] = {rec_eval_popularity_scorer(), rec_eval_random_scorer(&seed)};
    size_t stride = (size_t)d->n_items + 1;
    float *sc = malloc(stride * sizeof *sc);
    struct cand *c = malloc(stride * sizeof *c);
    uint32_t *mark = calloc(stride, sizeof *mark);
    unsigned char *ex = malloc(stride);
    assert_non_null(sc);
    assert_non_null(c);
    assert_non_null(mark);
    assert_non_null(ex);
    struct err err = {0};
    for (int m = 0; m < 2; m++) {
        for (int sp = REC_SPLIT_VALID; sp <= REC_SPLIT_TEST; sp++) {
            double sum_fast = 0, sum_ref = 0;
            for (uint32_t u = 0; u < d->n_users; u++) {
                assert_int_equal(scorers[m].score(scorers[m].ctx, d, (enum rec_split)sp, &u, 1, sc,
                                                  stride, 0, &err),
                                 0);
                uint64_t nh;
                const uint32_t *h = rec_split_history(d, u, (enum rec_split)sp, &nh);
                uint32_t t = rec_split_target(d, u, (enum rec_split)sp);
                memset(ex, 0, stride);
                for (uint64_t k = 0; k < nh; k++)
                    ex[h[k]] = 1;
                ex[t] = 0;
                size_t nc = 0;
                for (uint32_t i = 1; i <= d->n_items; i++)
                    if (!ex[i]) c[nc++] = (struct cand){sc[i], i};
                qsort(c, nc, sizeof *c, cmp_cand);
                size_t pos = 0;
                while (c[pos].id != t)
                    pos++;
                uint32_t fast = rec_eval_rank(sc, d->n_items, t, h, nh, mark,
                                              u + 1 + (uint32_t)(sp * 1000 + m * 10000));
                assert_int_equal(fast, pos);
                sum_fast += fast;
                sum_ref += (double)pos;
            }
            /* and the whole run agrees with the per-user reference */
            struct rec_eval_cfg cfg = {.split = (enum rec_split)sp};
            struct rec_eval_result r;
            assert_int_equal(rec_eval_run(d, &scorers[m], &cfg, &r, &err), 0);
            assert_true(fabs(r.mean_rank - sum_ref / d->n_users) < 1e-9);
            assert_true(sum_fast == sum_ref);
        }
    }
    free(sc);
    free(c);
    free(mark);
    free(ex);
    rec_dataset_free(d);
}

static void test_real_ml_1m_baselines(void **state)
{
    (void)state;
    char path[512];
    test_data_path(path, sizeof path, "movielens/ml-1m-sasrec");
    TEST_REQUIRE_PATH(path);
    struct err err = {0};
    struct rec_dataset *d = movielens_load(path, NULL, NULL, &err);
    if (!d) fail_msg("%s", err.msg);
    struct pool *p = pool_new(2);
    uint64_t seed = 42;
    struct rec_scorer pop = rec_eval_popularity_scorer(), rnd = rec_eval_random_scorer(&seed);
    struct rec_eval_cfg cfg = {.split = REC_SPLIT_TEST, .pool = p};
    struct rec_eval_result rp, rr;
    assert_int_equal(rec_eval_run(d, &pop, &cfg, &rp, &err), 0);
    assert_int_equal(rec_eval_run(d, &rnd, &cfg, &rr, &err), 0);
    assert_int_equal(rp.n_users, 6040);
    /* random: HR@100 ~ 100 / (3416 - history), about 0.03-0.04 on ML-1M; 6,040 users put
     * the standard error near 0.0023 */
    double want = 0;
    for (uint32_t u = 0; u < d->n_users; u++) {
        uint64_t nh;
        rec_split_history(d, u, REC_SPLIT_TEST, &nh);
        want += 100.0 / (double)(d->n_items - (nh < d->n_items - 100 ? nh : d->n_items - 100));
    }
    want /= d->n_users;
    assert_true(fabs(rr.hr[3] - want) < 0.012);
    /* popularity is far better than chance on MovieLens */
    assert_true(rp.hr[0] > 5 * rr.hr[0]);
    assert_true(rp.ndcg[3] > 3 * rr.ndcg[3]);
    for (int k = 1; k < REC_EVAL_NK; k++)
        assert_true(rp.hr[k] >= rp.hr[k - 1]);
    pool_free(p);
    rec_dataset_free(d);
}

static int fake_open(const char *path, const struct rec_dataset *d, int n_threads,
                     struct rec_scorer *sc, struct err *err)
{
    (void)d;
    (void)n_threads;
    if (strstr(path, "missing")) return err_set(err, ERR_NOTFOUND, "%s: no such model", path);
    *sc = (struct rec_scorer){"by-id", by_id_score, NULL};
    return 0;
}

static int n_closed;
static void fake_close(struct rec_scorer *sc)
{
    (void)sc;
    n_closed++;
}

static void test_cli_eval(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    struct rec_dataset *d = synthetic(50, 40);
    struct err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, REC_DATASET_FILE);
    assert_int_equal(rec_dataset_save(d, path, &err), 0);
    rec_dataset_free(d);
    char *ok[] = {"eval", "--data", dir, "--split", "valid", "--threads", "2", NULL};
    assert_int_equal(eval_cli(7, ok), 0);
    char *bad_split[] = {"eval", "--data", dir, "--split", "train", NULL};
    assert_int_equal(eval_cli(5, bad_split), 2);
    char *no_data[] = {"eval", NULL};
    assert_int_equal(eval_cli(1, no_data), 2);
    char *model[] = {"eval", "--data", dir, "--model", "m.gguf", NULL};
    assert_int_equal(eval_cli(5, model), 2); /* no loader in this build */
    struct rec_model_loader loader = {fake_open, fake_close};
    n_closed = 0;
    assert_int_equal(eval_cli_main(5, model, &loader), 0);
    assert_int_equal(n_closed, 1);
    char *missing[] = {"eval", "--data", dir, "--model", "missing.gguf", NULL};
    assert_int_equal(eval_cli_main(5, missing, &loader), 1);
    snprintf(path, sizeof path, "%s/none", dir);
    char *absent[] = {"eval", "--data", path, NULL};
    assert_int_equal(eval_cli(3, absent), 1);
    test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_rule),
        cmocka_unit_test(test_metric_values),
        cmocka_unit_test(test_run_hand_computed),
        cmocka_unit_test(test_popularity_uses_train_counts),
        cmocka_unit_test(test_determinism_threads_and_batches),
        cmocka_unit_test(test_scorer_error),
        cmocka_unit_test(test_rank_matches_sorting_reference),
        cmocka_unit_test(test_cli_eval),
        cmocka_unit_test(test_real_ml_1m_baselines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
