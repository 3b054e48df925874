/* Backward ops against central finite differences of the engine's forward ops, and the
 * OpenBLAS paths against their naive references.
 *
 * Every check uses the scalar loss L = sum(out * R) with a fixed random R, so dout = R.
 * Finite differences: eps = 1e-3 on f32 inputs with the loss summed in double; an analytic
 * gradient g and a numeric one n agree when |g - n| <= 1e-2 * max(|g|, |n|) + 2e-3
 * (f32 forward noise at eps 1e-3 is about 1e-4 per unit of loss). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ops.h"
#include "engine/ops_backward.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
static float *rand_buf(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float));
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = frand() * scale;
    return p;
}
static float *zeros(size_t n)
{
    float *p = calloc(n, sizeof(float));
    assert_non_null(p);
    return p;
}

typedef double (*loss_fn)(void *ctx);

/* Compares grad[i] with the central difference of fn over x[i], for every i. */
static void check_grad(const char *what, loss_fn fn, void *ctx, float *x, const float *grad,
                       size_t n)
{
    const float eps = 1e-3f;
    int bad = 0;
    double max_rel = 0.0;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + eps;
        double lp = fn(ctx);
        x[i] = keep - eps;
        double lm = fn(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * eps);
        double ana = grad[i];
        double diff = fabs(num - ana);
        double scale = fmax(fabs(num), fabs(ana));
        if (scale > 0.05 && diff / scale > max_rel)
            max_rel = diff / scale;
        if (diff > 1e-2 * scale + 2e-3) {
            if (bad < 5)
                print_error("%s[%zu]: analytic %.6g numeric %.6g\n", what, i, ana, num);
            bad++;
        }
    }
    print_message("  %s: %zu values, max relative difference %.2e (values above 0.05)\n", what, n, max_rel);
    assert_int_equal(bad, 0);
}

static double dot_loss(const float *out, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)out[i] * r[i];
    return s;
}

/* ---- rmsnorm ---- */
struct rms_ctx {
    float *x, *w, *out, *r;
    int N, C;
};
static double rms_loss(void *p)
{
    struct rms_ctx *c = p;
    ops_rmsnorm_forward(c->out, NULL, c->x, c->w, c->N, c->C, 1e-5f);
    return dot_loss(c->out, c->r, (size_t)c->N * c->C);
}
static void test_rmsnorm_backward(void **state)
{
    (void)state;
    int N = 4, C = 16;
    struct rms_ctx c = {rand_buf(N * C, 1.0f), rand_buf(C, 1.0f), zeros(N * C),
                        rand_buf(N * C, 1.0f), N, C};
    for (int i = 0; i < C; i++)
        c.w[i] += 1.0f;
    float *rstd = zeros(N), *dx = zeros(N * C), *dw = zeros(C);
    ops_rmsnorm_forward(c.out, rstd, c.x, c.w, N, C, 1e-5f);
    ops_rmsnorm_backward(dx, dw, c.r, c.x, c.w, rstd, N, C);
    check_grad("rmsnorm dx", rms_loss, &c, c.x, dx, (size_t)N * C);
    check_grad("rmsnorm dw", rms_loss, &c, c.w, dw, (size_t)C);
    free(c.x), free(c.w), free(c.out), free(c.r), free(rstd), free(dx), free(dw);
}

/* ---- matmul ---- */
struct mm_ctx {
    float *x, *w, *b, *out, *r;
    int N, C, OC;
};
static double mm_loss(void *p)
{
    struct mm_ctx *c = p;
    ops_matmul_forward(c->out, c->x, c->w, c->b, c->N, c->C, c->OC, NULL);
    return dot_loss(c->out, c->r, (size_t)c->N * c->OC);
}
static void test_matmul_backward(void **state)
{
    (void)state;
    int N = 5, C = 12, OC = 7;
    struct mm_ctx c = {rand_buf(N * C, 1.0f), rand_buf(OC * C, 1.0f), rand_buf(OC, 1.0f),
                       zeros(N * OC), rand_buf(N * OC, 1.0f), N, C, OC};
    float *dx = zeros(N * C), *dw = zeros(OC * C), *db = zeros(OC);
    ops_matmul_backward_ref(dx, dw, db, c.r, c.x, c.w, N, C, OC);
    check_grad("matmul dx", mm_loss, &c, c.x, dx, (size_t)N * C);
    check_grad("matmul dw", mm_loss, &c, c.w, dw, (size_t)OC * C);
    check_grad("matmul db", mm_loss, &c, c.b, db, (size_t)OC);
    free(c.x), free(c.w), free(c.b), free(c.out), free(c.r), free(dx), free(dw), free(db);
}

/* The OpenBLAS forward and backward against the engine forward and the naive backward, on a
 * size where blocking matters, accumulating onto non-zero gradients. */
static void test_matmul_blas_matches_ref(void **state)
{
    (void)state;
    int N = 67, C = 45, OC = 33;
    float *x = rand_buf(N * C, 1.0f), *w = rand_buf(OC * C, 1.0f), *b = rand_buf(OC, 1.0f);
    float *dout = rand_buf(N * OC, 1.0f);
    float *o1 = zeros(N * OC), *o2 = zeros(N * OC);
    ops_matmul_forward(o1, x, w, b, N, C, OC, NULL);
    ops_matmul_forward_blas(o2, x, w, b, N, C, OC);
    for (int i = 0; i < N * OC; i++)
        assert_true(fabsf(o1[i] - o2[i]) <= 1e-4f * (1.0f + fabsf(o1[i])));
    ops_matmul_forward_blas(o2, x, w, NULL, N, C, OC);
    ops_matmul_forward(o1, x, w, NULL, N, C, OC, NULL);
    for (int i = 0; i < N * OC; i++)
        assert_true(fabsf(o1[i] - o2[i]) <= 1e-4f * (1.0f + fabsf(o1[i])));
    float *dx1 = rand_buf(N * C, 1.0f), *dw1 = rand_buf(OC * C, 1.0f), *db1 = rand_buf(OC, 1.0f);
    float *dx2 = malloc(sizeof(float) * N * C), *dw2 = malloc(sizeof(float) * OC * C),
          *db2 = malloc(sizeof(float) * OC);
    memcpy(dx2, dx1, sizeof(float) * N * C);
    memcpy(dw2, dw1, sizeof(float) * OC * C);
    memcpy(db2, db1, sizeof(float) * OC);
    ops_matmul_backward_ref(dx1, dw1, db1, dout, x, w, N, C, OC);
    ops_matmul_backward(dx2, dw2, db2, dout, x, w, N, C, OC);
    for (int i = 0; i < N * C; i++)
        assert_true(fabsf(dx1[i] - dx2[i]) <= 1e-4f * (1.0f + fabsf(dx1[i])));
    for (int i = 0; i < OC * C; i++)
        assert_true(fabsf(dw1[i] - dw2[i]) <= 1e-4f * (1.0f + fabsf(dw1[i])));
    for (int i = 0; i < OC; i++)
        assert_true(fabsf(db1[i] - db2[i]) <= 1e-4f * (1.0f + fabsf(db1[i])));
    /* NULL gradients are skipped */
    ops_matmul_backward(NULL, NULL, db2, dout, x, w, N, C, OC);
    free(x), free(w), free(b), free(dout), free(o1), free(o2);
    free(dx1), free(dw1), free(db1), free(dx2), free(dw2), free(db2);
}

/* ---- rope ---- */
struct rope_ctx {
    float *x, *tmp, *r;
    int *pos;
    int N, H, D;
};
static double rope_loss(void *p)
{
    struct rope_ctx *c = p;
    size_t n = (size_t)c->N * c->H * c->D;
    memcpy(c->tmp, c->x, n * sizeof(float));
    ops_rope_forward(c->tmp, c->pos, c->N, c->H, c->D, 500.0f);
    return dot_loss(c->tmp, c->r, n);
}
static void test_rope_backward(void **state)
{
    (void)state;
    int N = 5, H = 2, D = 8;
    int pos[5] = {0, 1, 2, 7, 31};
    size_t n = (size_t)N * H * D;
    struct rope_ctx c = {rand_buf(n, 1.0f), zeros(n), rand_buf(n, 1.0f), pos, N, H, D};
    float *dx = malloc(n * sizeof(float));
    memcpy(dx, c.r, n * sizeof(float));
    ops_rope_backward(dx, pos, N, H, D, 500.0f);
    check_grad("rope dx", rope_loss, &c, c.x, dx, n);
    free(c.x), free(c.tmp), free(c.r), free(dx);
}

/* ---- attention ---- */
struct att_ctx {
    float *q, *k, *v, *out, *att, *r;
    const unsigned char *mask;
    int T, H, Hkv, D;
};
static double att_loss(void *p)
{
    struct att_ctx *c = p;
    ops_attention_forward(c->out, c->att, c->q, c->k, c->v, c->mask, c->T, c->H, c->Hkv, c->D);
    return dot_loss(c->out, c->r, (size_t)c->T * c->H * c->D);
}
static void attention_case(int T, int H, int Hkv, int D, const unsigned char *mask)
{
    size_t nq = (size_t)T * H * D, nk = (size_t)T * Hkv * D;
    struct att_ctx c = {rand_buf(nq, 1.0f), rand_buf(nk, 1.0f), rand_buf(nk, 1.0f), zeros(nq),
                        zeros((size_t)H * T * T), rand_buf(nq, 1.0f), mask, T, H, Hkv, D};
    float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk), *scratch = zeros(T);
    att_loss(&c);
    ops_attention_backward(dq, dk, dv, scratch, c.r, c.att, c.q, c.k, c.v, T, H, Hkv, D);
    check_grad("attention dq", att_loss, &c, c.q, dq, nq);
    check_grad("attention dk", att_loss, &c, c.k, dk, nk);
    check_grad("attention dv", att_loss, &c, c.v, dv, nk);
    if (mask) /* masked keys get exactly nothing */
        for (int t = 0; t < T; t++)
            if (!mask[t])
                for (int i = 0; i < Hkv * D; i++) {
                    assert_true(dk[(size_t)t * Hkv * D + i] == 0.0f);
                    assert_true(dv[(size_t)t * Hkv * D + i] == 0.0f);
                }
    free(c.q), free(c.k), free(c.v), free(c.out), free(c.att), free(c.r);
    free(dq), free(dk), free(dv), free(scratch);
}
static void test_attention_backward(void **state)
{
    (void)state;
    attention_case(6, 2, 2, 4, NULL);
}
static void test_attention_backward_masked_gqa(void **state)
{
    (void)state;
    const unsigned char mask[7] = {0, 0, 1, 1, 1, 1, 1}; /* left padding */
    attention_case(7, 4, 2, 4, mask);
}

/* The OpenBLAS attention against the naive forward and backward, masked and grouped, with T
 * large enough for blocking and one fully padded prefix row. */
static void test_attention_blas_matches_ref(void **state)
{
    (void)state;
    const int T = 37, H = 4, Hkv = 2, D = 8;
    size_t nq = (size_t)T * H * D, nk = (size_t)T * Hkv * D, na = (size_t)H * T * T;
    unsigned char mask[37];
    for (int t = 0; t < T; t++)
        mask[t] = t >= 5;
    float *q = rand_buf(nq, 1.0f), *k = rand_buf(nk, 1.0f), *v = rand_buf(nk, 1.0f);
    float *dout = rand_buf(nq, 1.0f);
    float *o1 = zeros(nq), *o2 = zeros(nq), *a1 = zeros(na), *a2 = rand_buf(na, 1.0f);
    ops_attention_forward(o1, a1, q, k, v, mask, T, H, Hkv, D);
    ops_attention_forward_blas(o2, a2, q, k, v, mask, T, H, Hkv, D);
    for (size_t i = 0; i < nq; i++)
        assert_true(fabsf(o1[i] - o2[i]) <= 1e-5f * (1.0f + fabsf(o1[i])));
    for (size_t i = 0; i < na; i++)
        assert_true(fabsf(a1[i] - a2[i]) <= 1e-5f);
    float *dq1 = zeros(nq), *dk1 = zeros(nk), *dv1 = zeros(nk);
    float *dq2 = zeros(nq), *dk2 = zeros(nk), *dv2 = zeros(nk), *s1 = zeros(T), *s2 = zeros(T * T);
    ops_attention_backward(dq1, dk1, dv1, s1, dout, a1, q, k, v, T, H, Hkv, D);
    ops_attention_backward_blas(dq2, dk2, dv2, s2, dout, a2, q, k, v, T, H, Hkv, D);
    for (size_t i = 0; i < nq; i++)
        assert_true(fabsf(dq1[i] - dq2[i]) <= 1e-4f * (1.0f + fabsf(dq1[i])));
    for (size_t i = 0; i < nk; i++) {
        assert_true(fabsf(dk1[i] - dk2[i]) <= 1e-4f * (1.0f + fabsf(dk1[i])));
        assert_true(fabsf(dv1[i] - dv2[i]) <= 1e-4f * (1.0f + fabsf(dv1[i])));
    }
    free(q), free(k), free(v), free(dout), free(o1), free(o2), free(a1), free(a2);
    free(dq1), free(dk1), free(dv1), free(dq2), free(dk2), free(dv2), free(s1), free(s2);
}

/* The vectorised softmax cross-entropy against the scalar one, with and without a bias, on
 * rows whose length is not a multiple of 16 and with very negative logits. */
static void test_xent_fast_matches_ref(void **state)
{
    (void)state;
    const int R = 5, K = 301;
    float *a = rand_buf((size_t)R * K, 20.0f), *bias = rand_buf(K, 5.0f);
    a[7] = -500.0f;
    float *b = malloc(sizeof(float) * R * K), *la = zeros(R), *lb = zeros(R);
    int tgt[5] = {0, 7, 150, 299, 300};
    for (int pass = 0; pass < 2; pass++) {
        const float *bs = pass ? bias : NULL;
        float *x = rand_buf((size_t)R * K, 20.0f);
        memcpy(a, x, sizeof(float) * R * K);
        memcpy(b, x, sizeof(float) * R * K);
        ops_xent_rows_ref(a, la, bs, tgt, R, K, 0.25f);
        ops_xent_rows(b, lb, bs, tgt, R, K, 0.25f);
        for (int r = 0; r < R; r++) {
            assert_true(fabsf(la[r] - lb[r]) <= 1e-5f * (1.0f + fabsf(la[r])));
            double s = 0.0;
            for (int i = 0; i < K; i++) {
                assert_true(fabsf(a[r * K + i] - b[r * K + i]) <= 1e-6f);
                s += b[r * K + i];
            }
            assert_true(fabs(s) < 1e-5); /* softmax - onehot sums to zero */
        }
        free(x);
    }
    free(a), free(b), free(bias), free(la), free(lb);
}

/* ---- swiglu ---- */
struct sw_ctx {
    float *g, *u, *out, *r;
    int N, F;
};
static double sw_loss(void *p)
{
    struct sw_ctx *c = p;
    ops_swiglu_forward(c->out, c->g, c->u, c->N, c->F);
    return dot_loss(c->out, c->r, (size_t)c->N * c->F);
}
static void test_swiglu_backward(void **state)
{
    (void)state;
    int N = 4, F = 10;
    size_t n = (size_t)N * F;
    struct sw_ctx c = {rand_buf(n, 3.0f), rand_buf(n, 1.0f), zeros(n), rand_buf(n, 1.0f), N, F};
    float *dg = zeros(n), *du = zeros(n);
    ops_swiglu_backward(dg, du, c.r, c.g, c.u, N, F);
    check_grad("swiglu dg", sw_loss, &c, c.g, dg, n);
    check_grad("swiglu du", sw_loss, &c, c.u, du, n);
    free(c.g), free(c.u), free(c.out), free(c.r), free(dg), free(du);
}

/* ---- l2norm ---- */
struct l2_ctx {
    float *x, *out, *r;
    int N, C;
};
static double l2_loss(void *p)
{
    struct l2_ctx *c = p;
    ops_l2norm_forward(c->out, NULL, c->x, c->N, c->C, 1e-6f);
    return dot_loss(c->out, c->r, (size_t)c->N * c->C);
}
static void test_l2norm_backward(void **state)
{
    (void)state;
    int N = 4, C = 9;
    size_t n = (size_t)N * C;
    struct l2_ctx c = {rand_buf(n, 1.0f), zeros(n), rand_buf(n, 1.0f), N, C};
    float *norm = zeros(N), *dx = zeros(n);
    ops_l2norm_forward(c.out, norm, c.x, N, C, 1e-6f);
    for (int i = 0; i < N; i++) { /* unit rows */
        double s = 0.0;
        for (int j = 0; j < C; j++)
            s += (double)c.out[i * C + j] * c.out[i * C + j];
        assert_true(fabs(s - 1.0) < 1e-5);
    }
    ops_l2norm_backward(dx, c.r, c.out, norm, N, C, 1e-6f);
    check_grad("l2norm dx", l2_loss, &c, c.x, dx, n);
    free(c.x), free(c.out), free(c.r), free(norm), free(dx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_backward),
        cmocka_unit_test(test_matmul_backward),
        cmocka_unit_test(test_matmul_blas_matches_ref),
        cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_attention_backward_masked_gqa),
        cmocka_unit_test(test_attention_blas_matches_ref),
        cmocka_unit_test(test_xent_fast_matches_ref),
        cmocka_unit_test(test_swiglu_backward),
        cmocka_unit_test(test_l2norm_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
