/* Tests for src/recsys/ranker.c: gradients, learning, BatchNorm folding, files. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "recsys/ranker.h"

#define NI 40

static uint64_t tr_state = 12345;
static float frand(void)
{
    tr_state = tr_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((tr_state >> 40) / 16777216.0) * 2.0f - 1.0f;
}

static void make_items(struct ranker_items *it)
{
    uint16_t year[NI + 1];
    uint32_t genres[NI + 1], pop[NI + 1];
    for (int i = 0; i <= NI; i++) {
        year[i] = (uint16_t)(i % 4 == 0 ? 0 : 1920 + 3 * i);
        genres[i] = (uint32_t)(i * 2654435761u) & 0x7FFFFu;
        if (i % 5 == 0) genres[i] = 0;
        pop[i] = (uint32_t)(i * i);
    }
    struct err e;
    assert_int_equal(ranker_items_init(it, NI, year, genres, pop, &e), 0);
}

static double loss_at(struct ranker *r, const struct ranker_items *it, const struct ranker_batch *b)
{
    float loss;
    struct err e;
    assert_int_equal(ranker_forward(r, it, b, NULL, &loss, &e), 0);
    return loss;
}

static void check_gradients(float dropout)
{
    struct ranker_config cfg;
    ranker_config_default(&cfg, 4);
    cfg.year_dim = 3;
    cfg.genre_dim = 2;
    cfg.hidden[0] = 7;
    cfg.hidden[1] = 6;
    cfg.hidden[2] = 5;
    cfg.dropout = dropout;
    struct err e;
    struct ranker *r = ranker_new(&cfg, 7, &e);
    assert_non_null(r);
    struct ranker_items it;
    make_items(&it);
    enum { N = 8 };
    float user[N * 4], vec[N * 4], labels[N];
    uint32_t items[N];
    uint8_t masked[N];
    for (int i = 0; i < N * 4; i++) user[i] = frand(), vec[i] = frand();
    for (int n = 0; n < N; n++) {
        items[n] = (uint32_t)(1 + (n * 7) % NI);
        labels[n] = (float)(n % 2);
        masked[n] = n == 3;
    }
    struct ranker_batch b = {N, user, vec, items, masked, labels};
    r->training = true;
    ranker_zero_grad(r);
    loss_at(r, &it, &b);
    assert_int_equal(ranker_backward(r, &e), 0);
    float *analytic = malloc(r->n_params * sizeof(float));
    memcpy(analytic, r->grads, r->n_params * sizeof(float));
    int checked = 0, bad = 0;
    for (size_t i = 0; i < r->n_params; i++) {
        float keep = r->params[i];
        const float h = 1e-3f;
        r->params[i] = keep + h;
        double lp = loss_at(r, &it, &b);
        r->params[i] = keep - h;
        double lm = loss_at(r, &it, &b);
        r->params[i] = keep;
        double num = (lp - lm) / (2 * h);
        double tol = 2e-3 + 5e-2 * fabs(num);
        if (fabs(num - analytic[i]) > tol) {
            if (bad < 5) print_message("param %zu: numeric %.6f analytic %.6f\n", i, num, analytic[i]);
            bad++;
        }
        checked++;
    }
    /* ReLU kinks can make a rare finite difference disagree; demand near-total agreement. */
    print_message("gradient check (dropout %.1f): %d of %d parameters disagree\n", dropout, bad, checked);
    assert_true(bad <= checked / 50);
    assert_true(checked > 300);
    free(analytic);
    ranker_free(r);
    ranker_items_free(&it);
}

static void test_gradients(void **state)
{
    (void)state;
    check_gradients(0.0f);
    check_gradients(0.3f);
}

/* Synthetic task: label 1 when u.v > 0 (needs the u*v features), except cold-start items,
 * whose label is their genre bit 0 (content features alone must carry them). */
static void make_batch(int N, float *user, float *vec, uint32_t *items, uint8_t *masked,
                       float *labels, const struct ranker_items *it, int D)
{
    for (int n = 0; n < N; n++) {
        float dot = 0;
        for (int d = 0; d < D; d++) {
            user[n * D + d] = frand();
            vec[n * D + d] = frand();
            dot += user[n * D + d] * vec[n * D + d];
        }
        items[n] = (uint32_t)(1 + (tr_state >> 33) % NI);
        masked[n] = (tr_state >> 20) % 4 == 0;
        labels[n] = masked[n] ? (float)(it->genres[items[n]] & 1u) : dot > 0 ? 1.0f : 0.0f;
    }
}

static void test_learns_and_folds(void **state)
{
    (void)state;
    enum { D = 8, N = 64 };
    struct ranker_config cfg;
    ranker_config_default(&cfg, D);
    cfg.hidden[0] = 64;
    cfg.hidden[1] = 32;
    cfg.hidden[2] = 16;
    struct err e;
    struct ranker *r = ranker_new(&cfg, 1, &e);
    struct ranker_items it;
    make_items(&it);
    float user[N * D], vec[N * D], labels[N], logits[N];
    uint32_t items[N];
    uint8_t masked[N];
    r->training = true;
    float first = 0, last = 0;
    for (int step = 1; step <= 600; step++) {
        make_batch(N, user, vec, items, masked, labels, &it, D);
        struct ranker_batch b = {N, user, vec, items, masked, labels};
        float loss;
        ranker_zero_grad(r);
        assert_int_equal(ranker_forward(r, &it, &b, NULL, &loss, &e), 0);
        assert_int_equal(ranker_backward(r, &e), 0);
        ranker_adamw_step(r, 3e-3f, 1e-4f, (uint64_t)step);
        if (step <= 20) first += loss / 20;
        if (step > 580) last += loss / 20;
    }
    print_message("ranker loss: first 20 steps %.3f, last 20 steps %.3f\n", first, last);
    assert_true(last < 0.6f * first);

    /* Held-out accuracy in inference mode (running statistics). */
    r->training = false;
    int correct = 0, total = 0;
    float ref[N];
    for (int rep = 0; rep < 10; rep++) {
        make_batch(N, user, vec, items, masked, labels, &it, D);
        struct ranker_batch b = {N, user, vec, items, masked, labels};
        assert_int_equal(ranker_forward(r, &it, &b, logits, NULL, &e), 0);
        for (int n = 0; n < N; n++, total++) correct += (logits[n] > 0) == (labels[n] > 0.5f);
    }
    print_message("ranker held-out accuracy %.3f\n", (double)correct / total);
    assert_true(correct > 0.85 * total);

    /* Folding BatchNorm into the Linear layers changes nothing at inference. */
    struct ranker_batch b = {N, user, vec, items, masked, NULL};
    assert_int_equal(ranker_forward(r, &it, &b, ref, NULL, &e), 0);
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ranker.gguf", dir);
    assert_int_equal(ranker_save(r, &it, path, &e), 0); /* saves folded weights of a copy */
    ranker_fold(r);
    assert_int_equal(ranker_forward(r, &it, &b, logits, NULL, &e), 0);
    for (int n = 0; n < N; n++) assert_float_equal(logits[n], ref[n], 1e-3 * (1 + fabsf(ref[n])));
    r->training = true;
    assert_int_not_equal(ranker_forward(r, &it, &b, logits, NULL, &e), 0); /* folded: no training */
    r->training = false;

    /* Round trip through the file, and ranker_score over an item table. */
    struct ranker_items it2;
    struct ranker *r2 = ranker_load(path, &it2, &e);
    if (!r2) fail_msg("%s", e.msg);
    assert_int_equal(it2.n_items, NI);
    float table[(NI + 1) * D];
    for (int i = 0; i < (NI + 1) * D; i++) table[i] = frand();
    uint32_t cand[5] = {1, 2, 3, 17, NI};
    float s1[5], s2[5];
    assert_int_equal(ranker_score(r, &it, user, table, cand, 5, false, s1, &e), 0);
    assert_int_equal(ranker_score(r2, &it2, user, table, cand, 5, false, s2, &e), 0);
    for (int i = 0; i < 5; i++) assert_float_equal(s1[i], s2[i], 1e-4);
    assert_int_equal(ranker_score(r2, &it2, user, table, cand, 5, true, s2, &e), 0);
    ranker_free(r2);
    ranker_items_free(&it2);

    /* Damaged files are refused with a message. */
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size / 2), 0);
    assert_null(ranker_load(path, &it2, &e));
    assert_true(strlen(e.msg) > 0);
    test_rmtree(dir);
    ranker_free(r);
    ranker_items_free(&it);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    struct ranker_config cfg;
    ranker_config_default(&cfg, 0);
    struct err e;
    assert_null(ranker_new(&cfg, 1, &e));
    assert_non_null(strstr(e.msg, "dim"));
    ranker_config_default(&cfg, 4);
    cfg.dropout = 1.0f;
    assert_null(ranker_new(&cfg, 1, &e));
    assert_int_equal(ranker_year_bucket(0), 0);
    assert_int_equal(ranker_year_bucket(1915), 1);
    assert_int_equal(ranker_year_bucket(1935), 2);
    assert_int_equal(ranker_year_bucket(1999), 8);
    assert_int_equal(ranker_year_bucket(2005), 9);
    assert_int_equal(ranker_year_bucket(2023), 10);
    ranker_config_default(&cfg, 4);
    struct ranker *r = ranker_new(&cfg, 1, &e);
    struct ranker_items it;
    make_items(&it);
    float u[8] = {0}, v[8] = {0};
    uint32_t items[2] = {1, NI + 1};
    struct ranker_batch b = {2, u, v, items, NULL, NULL};
    assert_int_not_equal(ranker_forward(r, &it, &b, NULL, NULL, &e), 0);
    assert_non_null(strstr(e.msg, "out of range"));
    ranker_items_free(&it);
    assert_null(ranker_load("/nonexistent.gguf", &it, &e));
    ranker_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_learns_and_folds),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests_name("ranker", tests, NULL, NULL);
}
