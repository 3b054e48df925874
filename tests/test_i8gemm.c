/* recsys/i8gemm: the packed int8 product against the f32 product (within the quantization
 * error) and the SIMD paths against the scalar reference (same integer sums), for shapes that
 * are and are not multiples of the tiles, with bias and ReLU. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "recsys/i8gemm.h"

static uint64_t g_seed = 12345;

static float frand(void)
{
    g_seed = g_seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((g_seed >> 40) & 0xFFFFFF) / 16777216.0f * 2.0f - 1.0f;
}

struct shape {
    int rows, cols, n;
};

static const struct shape k_shapes[] = {
    {1, 1, 1},     {17, 5, 3},    {64, 256, 1},  {64, 256, 89}, {256, 1024, 13},
    {512, 256, 100}, {40, 24, 7}, {130, 33, 6},  {1024, 256, 2}, {16, 4, 12},
};

/* Runs every shape: Y from i8_gemm vs i8_gemm_ref (close: same integers, float epilogue may
 * round differently) and vs the f32 product (within 3 % of the output's scale). */
static void check_shapes(bool compare_f32)
{
    for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
        const struct shape s = k_shapes[si];
        const size_t ldx = (size_t)s.cols + 3, ldy = (size_t)s.rows + 5;
        float *W = malloc(sizeof(float) * (size_t)s.rows * s.cols);
        float *X = malloc(sizeof(float) * (size_t)s.n * ldx);
        float *bias = malloc(sizeof(float) * (size_t)s.rows);
        float *Y = malloc(sizeof(float) * (size_t)s.n * ldy);
        float *R = malloc(sizeof(float) * (size_t)s.n * ldy);
        void *scratch = malloc(i8_gemm_scratch_size(s.cols, s.n));
        assert_non_null(W);
        assert_non_null(X);
        assert_non_null(bias);
        assert_non_null(Y);
        assert_non_null(R);
        assert_non_null(scratch);
        for (int i = 0; i < s.rows * s.cols; i++)
            W[i] = frand() * (1.0f + (float)(i % 7)); /* uneven magnitudes per row */
        for (size_t i = 0; i < (size_t)s.n * ldx; i++)
            X[i] = frand() * 3.0f;
        for (int r = 0; r < s.rows; r++)
            bias[r] = frand();
        struct i8_mat *m = i8_mat_new(W, s.rows, s.cols, (size_t)s.cols);
        assert_non_null(m);
        assert_int_equal(i8_mat_rows(m), s.rows);
        assert_int_equal(i8_mat_cols(m), s.cols);
        for (int pass = 0; pass < 3; pass++) {
            /* 0: plain; 1: bias + ReLU; 2: accumulate onto 0.5 + bias, ReLU */
            const bool relu = pass >= 1, accum = pass == 2;
            const float *b = pass >= 1 ? bias : NULL;
            const struct i8_epilogue ep = {.bias = b, .accumulate = accum, .relu = relu};
            /* sentinel past the rows: must stay untouched */
            for (size_t i = 0; i < (size_t)s.n * ldy; i++)
                Y[i] = R[i] = 1234.5f;
            if (accum)
                for (int i = 0; i < s.n; i++)
                    for (int r = 0; r < s.rows; r++)
                        Y[(size_t)i * ldy + r] = R[(size_t)i * ldy + r] = 0.5f;
            if (pass == 1) { /* quantize through another matrix, then reuse the activations */
                struct i8_mat *other = i8_mat_new(W, 1, s.cols, (size_t)s.cols);
                assert_non_null(other);
                float *Z = malloc(sizeof(float) * (size_t)s.n);
                assert_non_null(Z);
                i8_gemm(other, X, ldx, Z, 1, s.n, NULL, scratch);
                i8_gemm_again(m, Y, ldy, s.n, &ep, scratch);
                free(Z);
                i8_mat_free(other);
            } else {
                i8_gemm(m, X, ldx, Y, ldy, s.n, pass == 0 ? NULL : &ep, scratch);
            }
            i8_gemm_ref(m, X, ldx, R, ldy, s.n, &ep, scratch);
            double scale = 0.0, worst_ref = 0.0, worst_f32 = 0.0;
            for (int i = 0; i < s.n; i++) {
                for (int r = 0; r < s.rows; r++) {
                    double want = (b ? b[r] : 0.0) + (accum ? 0.5 : 0.0);
                    for (int c = 0; c < s.cols; c++)
                        want += (double)W[(size_t)r * s.cols + c] * X[(size_t)i * ldx + c];
                    if (relu && want < 0)
                        want = 0;
                    const float y = Y[(size_t)i * ldy + r], ref = R[(size_t)i * ldy + r];
                    if (relu)
                        assert_true(y >= 0.0f);
                    if (fabs(want) > scale)
                        scale = fabs(want);
                    if (fabs(y - ref) > worst_ref)
                        worst_ref = fabs(y - ref);
                    if (fabs(y - want) > worst_f32)
                        worst_f32 = fabs(y - want);
                }
                for (size_t r = (size_t)s.rows; r < ldy; r++)
                    assert_true(Y[(size_t)i * ldy + r] == 1234.5f);
            }
            assert_true(worst_ref <= 1e-5 * scale + 1e-6);
            if (compare_f32)
                assert_true(worst_f32 <= 0.03 * scale + 1e-4);
        }
        /* the packed values are the row-scaled int8 copy */
        for (int r = 0; r < s.rows; r += 1 + s.rows / 5)
            for (int c = 0; c < s.cols; c += 1 + s.cols / 5) {
                float amax = 0.0f;
                for (int k = 0; k < s.cols; k++)
                    amax = fmaxf(amax, fabsf(W[(size_t)r * s.cols + k]));
                assert_true(fabsf(i8_mat_get(m, r, c) - W[(size_t)r * s.cols + c]) <=
                            amax / 254.0f * 1.0001f + 1e-7f);
            }
        i8_mat_free(m);
        free(W);
        free(X);
        free(bias);
        free(Y);
        free(R);
        free(scratch);
    }
}

static void test_best_isa(void **state)
{
    (void)state;
    print_message("  isa %s\n", kern_isa_name(kern_isa()));
    check_shapes(true);
}

/* Every ISA the CPU has, down to scalar (which then compares the reference with itself on
 * the f32 bound only). */
static void test_each_isa(void **state)
{
    (void)state;
    const enum kern_isa best = kern_isa();
    for (int isa = (int)best; isa >= KERN_ISA_SCALAR; isa--) {
        kern_force_isa((enum kern_isa)isa);
        check_shapes(true);
    }
    kern_force_isa(best);
}

/* A zero row and a zero activation row give exact zeros (plus bias), not NaN. */
static void test_zeros(void **state)
{
    (void)state;
    float W[2 * 8] = {0}, X[2 * 8] = {0}, Y[4], bias[2] = {0.5f, -0.25f};
    for (int c = 0; c < 8; c++)
        W[8 + c] = (float)c - 3.5f;
    for (int c = 0; c < 8; c++)
        X[8 + c] = 1.0f;
    struct i8_mat *m = i8_mat_new(W, 2, 8, 8);
    assert_non_null(m);
    void *scratch = malloc(i8_gemm_scratch_size(8, 2));
    assert_non_null(scratch);
    i8_gemm(m, X, 8, Y, 2, 2, &(struct i8_epilogue){.bias = bias}, scratch);
    assert_true(Y[0] == 0.5f && Y[1] == -0.25f); /* X row 0 is zero */
    assert_true(Y[2] == 0.5f);                   /* W row 0 is zero */
    assert_true(fabsf(Y[3] - (-0.25f + 0.0f)) < 1e-5f); /* sum of (c - 3.5) is 0 */
    free(scratch);
    i8_mat_free(m);
}

static void test_bad_sizes(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4};
    assert_null(i8_mat_new(w, 0, 4, 4));
    assert_null(i8_mat_new(w, 1, 0, 4));
    assert_null(i8_mat_new(w, 1, 4, 3));
    assert_null(i8_mat_new(NULL, 1, 4, 4));
    i8_mat_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_best_isa),
        cmocka_unit_test(test_each_isa),
        cmocka_unit_test(test_zeros),
        cmocka_unit_test(test_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
