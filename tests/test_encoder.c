/* The user encoder: whole-model gradient checks against finite differences for both losses,
 * and (with recsys/train) learning an obvious sequential rule, bit-identical reruns and
 * checkpoint resume.
 *
 * Gradient checks: a tiny model (11 items, dim 8, 2 layers, 2 heads, ffn 12, T 6, B 3, with
 * left padding and some positions without a target) whose parameters are redrawn at scale
 * 0.3 so every path carries signal. Central differences with eps 1e-3 on every parameter;
 * analytic g and numeric n agree when |g - n| <= 3e-2 * max(|g|, |n|) + 3e-3. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "recsys/encoder.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

enum { GB = 3, GT = 6 };
static const uint32_t g_ids[GB * GT] = {0, 0, 3, 5, 7, 2,   /* left padded */
                                        1, 2, 3, 4, 5, 6,   /* full */
                                        0, 0, 0, 0, 9, 10}; /* short */
static const uint32_t g_tgt[GB * GT] = {0, 0, 5, 7, 2, 4,   1, 0, 4, 5, 6, 7,
                                        0, 0, 0, 0, 10, 11};

struct gc_ctx {
    struct encoder *e;
    float logq[12];
};

static double gc_loss(struct gc_ctx *c)
{
    float loss = 0.0f;
    assert_int_equal(encoder_forward(c->e, g_ids, g_tgt, GB, GT, c->logq, &loss, NULL, NULL), 0);
    return loss;
}

static void grad_check(enum encoder_loss kind, bool norm_items, float dropout, float temp)
{
    struct encoder_config cfg;
    encoder_config_default(&cfg);
    cfg.n_items = 11;
    cfg.dim = 8;
    cfg.n_layers = 2;
    cfg.n_heads = 2;
    cfg.ffn = 12;
    cfg.max_len = GT;
    cfg.dropout = dropout;
    cfg.loss = kind;
    cfg.norm_items = norm_items;
    cfg.temperature = temp;
    struct err err;
    struct gc_ctx c;
    c.e = encoder_new(&cfg, 7, &err);
    assert_non_null(c.e);
    struct encoder *e = c.e;
    for (size_t i = 0; i < e->n_params; i++)
        e->params[i] += 0.3f * frand();
    memset(e->tok_emb, 0, sizeof(float) * (size_t)cfg.dim);
    for (int i = 0; i < 12; i++)
        c.logq[i] = logf((float)(i + 1) / 78.0f);
    e->training = dropout > 0.0f;
    e->dropout_seed = 12345;

    float loss0 = 0.0f;
    encoder_zero_grad(e);
    assert_int_equal(encoder_forward(e, g_ids, g_tgt, GB, GT, c.logq, &loss0, NULL, &err), 0);
    assert_true(isfinite(loss0) && loss0 > 0.0f);
    assert_int_equal(encoder_backward(e, NULL, &err), 0);
    float *grad = malloc(e->n_params * sizeof(float));
    memcpy(grad, e->grads, e->n_params * sizeof(float));

    const float eps = 1e-3f;
    int bad = 0;
    double max_rel = 0.0;
    size_t nonzero = 0;
    for (int t = 0; t < e->n_tensors; t++) {
        const struct encoder_tensor *tt = &e->tensors[t];
        size_t n = (size_t)tt->rows * tt->cols;
        for (size_t i = 0; i < n; i++) {
            float *x = e->params + tt->offset + i;
            float keep = *x;
            *x = keep + eps;
            double lp = gc_loss(&c);
            *x = keep - eps;
            double lm = gc_loss(&c);
            *x = keep;
            double num = (lp - lm) / (2.0 * eps);
            double ana = grad[tt->offset + i];
            double diff = fabs(num - ana), scale = fmax(fabs(num), fabs(ana));
            if (scale > 0.05 && diff / scale > max_rel)
                max_rel = diff / scale;
            if (fabs(ana) > 1e-6)
                nonzero++;
            if (diff > 3e-2 * scale + 3e-3) {
                if (bad < 8)
                    print_error("%s %s[%zu]: analytic %.6g numeric %.6g\n",
                                encoder_loss_name(kind), tt->name, i, ana, num);
                bad++;
            }
        }
    }
    print_message("  %s norm_items=%d dropout=%.1f: loss %.4f, %zu params (%zu non-zero "
                  "gradients), max relative difference %.2e (values above 0.05)\n",
                  encoder_loss_name(kind), norm_items, (double)dropout, (double)loss0,
                  e->n_params, nonzero, max_rel);
    assert_int_equal(bad, 0);
    assert_true(nonzero > e->n_params / 2); /* the check saw real gradients */
    /* the padding row never gets a gradient */
    for (int j = 0; j < cfg.dim; j++)
        assert_true(grad[j] == 0.0f);
    free(grad);
    encoder_free(e);
}

static void test_grad_softmax(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_SOFTMAX, true, 0.0f, 0.5f);
    grad_check(ENCODER_LOSS_SOFTMAX, false, 0.0f, 1.0f);
}

static void test_grad_infonce(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_INFONCE, true, 0.0f, 0.5f);
    grad_check(ENCODER_LOSS_INFONCE, false, 0.0f, 1.0f);
}

static void test_grad_dropout(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_SOFTMAX, true, 0.3f, 0.5f);
}

/* The pool (per-sequence threads) and the batch layout do not change the result: each
 * sequence's vector is the same alone and in a batch, with 1 or 2 threads. */
static void test_batch_and_threads_consistent(void **state)
{
    (void)state;
    struct encoder_config cfg;
    encoder_config_default(&cfg);
    cfg.n_items = 11;
    cfg.dim = 8;
    cfg.ffn = 12;
    cfg.max_len = GT;
    struct err err;
    struct encoder *e = encoder_new(&cfg, 3, &err);
    assert_non_null(e);
    float all[GB * 8], one[8];
    struct pool *p = pool_new(2);
    assert_int_equal(encoder_forward(e, g_ids, NULL, GB, GT, NULL, NULL, p, &err), 0);
    encoder_last_vectors(e, all);
    for (int b = 0; b < GB; b++) {
        assert_int_equal(encoder_forward(e, g_ids + b * GT, NULL, 1, GT, NULL, NULL, NULL, &err),
                         0);
        encoder_last_vectors(e, one);
        double n2 = 0.0;
        for (int j = 0; j < 8; j++) {
            assert_true(one[j] == all[b * 8 + j]);
            n2 += (double)one[j] * one[j];
        }
        assert_true(fabs(n2 - 1.0) < 1e-5); /* L2-normalised */
    }
    /* a bad id is an error, not a crash */
    uint32_t bad[GT] = {0, 0, 0, 0, 1, 12};
    assert_int_equal(encoder_forward(e, bad, NULL, 1, GT, NULL, NULL, NULL, &err), ERR_INVALID);
    pool_free(p);
    encoder_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_softmax),
        cmocka_unit_test(test_grad_infonce),
        cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_batch_and_threads_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
