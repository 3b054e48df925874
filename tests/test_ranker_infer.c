/* The int8 serving ranker (recsys/ranker_infer.h) against ranker_score on the same folded
 * ranker: logits within a quantization tolerance and the same top candidates. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "recsys/ranker.h"
#include "recsys/ranker_infer.h"
#include "testutil.h"

#define N_ITEMS 400
#define D 64

static uint64_t rng = 5;
static float frand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* The serving copy of a ranker with hidden sizes h0, h1, h2 against ranker_score. */
static void check_hidden(int h0, int h1, int h2)
{
    char dir[256], path[300];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ranker.gguf", dir);
    struct err err = {0};
    struct ranker_config rc;
    ranker_config_default(&rc, D);
    rc.hidden[0] = h0;
    rc.hidden[1] = h1;
    rc.hidden[2] = h2;
    struct ranker *r = ranker_new(&rc, 3, &err);
    assert_non_null(r);
    /* non-trivial weights and BatchNorm statistics, so folding and every block matter */
    for (size_t i = 0; i < r->n_params; i++)
        r->params[i] += 0.05f * frand();
    for (int l = 0; l < RANKER_LAYERS; l++)
        for (int h = 0; h < rc.hidden[l]; h++) {
            r->run_mean[l][h] = 0.1f * frand();
            r->run_var[l][h] = 0.5f + 0.4f * frand();
        }
    uint16_t year[N_ITEMS + 1];
    uint32_t genres[N_ITEMS + 1], pop[N_ITEMS + 1];
    for (int i = 0; i <= N_ITEMS; i++) {
        year[i] = (uint16_t)(i % 7 ? 1920 + i % 100 : 0);
        genres[i] = (uint32_t)(i * 2654435761u) & ((1u << RANKER_GENRES) - 1) & (i % 5 ? ~0u : 0u);
        pop[i] = (uint32_t)(i * 37 % 1000);
    }
    struct ranker_items it = {0};
    assert_int_equal(ranker_items_init(&it, N_ITEMS, year, genres, pop, &err), 0);
    assert_int_equal(ranker_save(r, &it, path, &err), 0);
    ranker_free(r);
    ranker_items_free(&it);
    struct ranker_items it2 = {0};
    r = ranker_load(path, &it2, &err);
    assert_non_null(r);
    struct ranker_infer *m = ranker_infer_new(r, &it2, &err);
    assert_non_null(m);
    struct ranker_infer_scratch *s = ranker_infer_scratch_new(m, 100);
    assert_non_null(s);
    float *table = calloc((size_t)(N_ITEMS + 1) * D, sizeof(float));
    for (size_t i = D; i < (size_t)(N_ITEMS + 1) * D; i++)
        table[i] = 0.2f * frand();
    float user[D];
    uint32_t items[100];
    float want[100], got[100];
    double worst = 0, scale = 0;
    int same_top = 0;
    for (int trial = 0; trial < 5; trial++) {
        for (int d = 0; d < D; d++)
            user[d] = 0.2f * frand();
        for (int i = 0; i < 100; i++)
            items[i] = 1 + (uint32_t)((trial * 131 + i * 7) % N_ITEMS);
        assert_int_equal(ranker_score(r, &it2, user, table, items, 100, false, want, &err), 0);
        assert_int_equal(ranker_infer_score(m, s, user, table, items, 100, got), 0);
        int bw = 0, bg = 0;
        for (int i = 0; i < 100; i++) {
            if (fabs(want[i] - got[i]) > worst) worst = fabs(want[i] - got[i]);
            if (fabs(want[i]) > scale) scale = fabs(want[i]);
            if (want[i] > want[bw]) bw = i;
            if (got[i] > got[bg]) bg = i;
        }
        same_top += bw == bg;
    }
    print_message("  hidden (%d, %d, %d): worst |logit diff| %.4f (largest |logit| %.3f), same best item %d/5\n", h0, h1, h2, worst,
                  scale, same_top);
    assert_true(worst <= 0.06 * scale + 1e-3); /* int8 weights and activations: ~1-4 % */
    assert_true(same_top >= 4);
    /* bad input */
    items[3] = N_ITEMS + 1;
    assert_int_equal(ranker_infer_score(m, s, user, table, items, 10, got), ERR_INVALID);
    assert_int_equal(ranker_infer_score(m, s, user, table, items, 101, got), ERR_INVALID);
    free(table);
    ranker_infer_scratch_free(s);
    ranker_infer_free(m);
    ranker_free(r);
    ranker_items_free(&it2);
    test_rmtree(dir);
}

static void test_matches_ranker_score(void **state)
{
    (void)state;
    check_hidden(64, 32, 16);
}

/* Hidden sizes that are not multiples of 32 (nor of the kernels' 16-row blocks): the int8
 * product pads them, so the serving copy exists and scores like ranker_score. */
static void test_odd_hidden_sizes(void **state)
{
    (void)state;
    check_hidden(40, 24, 8);
    check_hidden(33, 17, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_matches_ranker_score),
                                       cmocka_unit_test(test_odd_hidden_sizes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
