/* Kernels: conversions, quantize/dequantize error bounds, the scalar kernels against f32
 * math on dequantized weights, and every SIMD ISA the CPU has against the scalar reference.
 *
 * Tolerances (stated once, used below):
 *  - SIMD vs scalar, same quantized activations: integer block sums are exact, only the f32
 *    accumulation order differs, so |y - y_ref| <= 1e-4 * sum_j |w_j x_j| + 1e-6.
 *  - scalar quantized kernel vs f32 dot on dequantized weights: the activation rounding
 *    (int8, per block) costs at most ~1 % relative over a whole output vector.
 *  - quantize -> dequantize: Q8_0 |err| <= d/2 (+ f16 rounding of d), Q4_0 |err| <= |d|,
 *    and relative RMS error per type (Q8_0 0.5 %, Q4_0 12 %, Q4_K 9 %, Q6_K 2.5 %) on Gaussian
 *    data, which a wrong bit layout would exceed by far. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/pool.h"
#include "engine/kernels.h"
#include "engine/kernels_impl.h"

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s)
{
    g_rng = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint32_t rng_u32(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

static float rng_unif(void)
{
    return (float)(rng_u32() & 0xFFFFFF) / 16777216.0f;
}

/* Roughly Gaussian (sum of 4 uniforms), mean 0, sd ~ sd. */
static float rng_gauss(float sd)
{
    float s = rng_unif() + rng_unif() + rng_unif() + rng_unif() - 2.0f;
    return s * sd * 1.732f;
}

static const enum ggml_type k_types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16,
                                         GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                         GGML_TYPE_Q6_K};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

static int blck(enum ggml_type t)
{
    return (t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K) ? 256
           : (t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0) ? 32
                                                          : 1;
}

static size_t row_bytes(enum ggml_type t, int cols)
{
    switch (t) {
    case GGML_TYPE_F32: return (size_t)cols * 4;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: return (size_t)cols * 2;
    case GGML_TYPE_Q8_0: return (size_t)cols / 32 * 34;
    case GGML_TYPE_Q4_0: return (size_t)cols / 32 * 18;
    case GGML_TYPE_Q4_K: return (size_t)cols / 256 * 144;
    case GGML_TYPE_Q6_K: return (size_t)cols / 256 * 210;
    default: return 0;
    }
}

static const char *tname(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32: return "f32";
    case GGML_TYPE_F16: return "f16";
    case GGML_TYPE_BF16: return "bf16";
    case GGML_TYPE_Q8_0: return "q8_0";
    case GGML_TYPE_Q4_0: return "q4_0";
    case GGML_TYPE_Q4_K: return "q4_K";
    case GGML_TYPE_Q6_K: return "q6_K";
    default: return "?";
    }
}

/* Runs in a child so that $NR_ISA is read by a fresh kern_init (it is read once per process). */
static int isa_under_env(const char *val)
{
    pid_t pid = fork();
    if (pid == 0) {
        setenv("NR_ISA", val, 1);
        kern_init();
        _exit((int)kern_isa());
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_nr_isa_env(void **state)
{
    (void)state;
    assert_int_equal(isa_under_env("scalar"), KERN_ISA_SCALAR);
    int a2 = isa_under_env("avx2");
    assert_true(a2 == KERN_ISA_SCALAR || a2 == KERN_ISA_AVX2);
    kern_init();
    int best = (int)kern_isa();
    assert_true(isa_under_env("avx512") <= best);
    assert_int_equal(isa_under_env("bogus"), best);
    if (best >= KERN_ISA_AVX2) assert_int_equal(a2, KERN_ISA_AVX2);
    print_message("cpu isa: %s\n", kern_isa_name((enum kern_isa)best));
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_f16_conversion(void **state)
{
    (void)state;
    assert_int_equal(kern_f32_to_f16(1.0f), 0x3c00);
    assert_int_equal(kern_f32_to_f16(-2.0f), 0xc000);
    assert_int_equal(kern_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(kern_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(kern_f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    assert_int_equal(kern_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(kern_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(kern_f32_to_f16(-0.0f), 0x8000);
    uint16_t hn = kern_f32_to_f16(NAN);
    assert_true((hn & 0x7c00) == 0x7c00 && (hn & 0x3ff) != 0);
    assert_true(isnan(kern_f16_to_f32(hn)));
    /* subnormals: 2^-24 is the smallest; 2^-25 ties to even (0); 3 * 2^-25 ties to 2 */
    assert_int_equal(kern_f32_to_f16(0x1p-24f), 0x0001);
    assert_int_equal(kern_f32_to_f16(0x1p-25f), 0x0000);
    assert_int_equal(kern_f32_to_f16(0x1.8p-24f), 0x0002);
    assert_int_equal(kern_f32_to_f16(0x1p-14f), 0x0400);
    assert_int_equal(kern_f32_to_f16(0x1.ff8p-15f), 0x03ff);
    assert_int_equal(kern_f32_to_f16(0x1.ffcp-15f), 0x0400); /* ties up into normals */
    /* ties to even in normals: 1 + 2^-11 -> 1, 1 + 3 * 2^-11 -> 1 + 2^-9 */
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    assert_int_equal(kern_f32_to_f16(1.0f + 0x1.8p-10f), 0x3c02);
    assert_true(kern_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(kern_f16_to_f32(0x83ff) == -0x1.ff8p-15f);
    assert_true(isinf(kern_f16_to_f32(0x7c00)));
    /* every non-nan half survives a round trip exactly */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(kern_f32_to_f16(f), h);
    }
}

static void test_bf16_conversion(void **state)
{
    (void)state;
    assert_int_equal(kern_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(kern_f32_to_bf16(-1.0f), 0xbf80);
    assert_true(kern_bf16_to_f32(0x3f80) == 1.0f);
    /* ties to even: 1 + 2^-8 -> 1; 1 + 3 * 2^-8 -> 1 + 2^-6 */
    assert_int_equal(kern_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
    assert_int_equal(kern_f32_to_bf16(1.0f + 0x1.8p-7f), 0x3f82);
    assert_int_equal(kern_f32_to_bf16(INFINITY), 0x7f80);
    uint16_t n = kern_f32_to_bf16(NAN);
    assert_true(isnan(kern_bf16_to_f32(n)));
    float big;
    uint32_t bb = 0x7f7fffffu; /* FLT_MAX rounds to inf */
    memcpy(&big, &bb, 4);
    assert_int_equal(kern_f32_to_bf16(big), 0x7f80);
    assert_int_equal(fbits(kern_bf16_to_f32(0x0001)), 0x00010000u); /* subnormal kept */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(kern_f32_to_bf16(f), h);
    }
}

static void test_quantize_roundtrip(void **state)
{
    (void)state;
    const int n = 4096;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    void *q = malloc(row_bytes(GGML_TYPE_F32, n));
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(q);
    rng_seed(1);
    for (int i = 0; i < n; i++) x[i] = rng_gauss(0.02f);
    x[5] = 0.5f; /* outliers, as real weights have */
    x[700] = -0.3f;
    for (int i = 2048; i < 2048 + 256; i++) x[i] = 0; /* an all-zero block */
    for (size_t k = 0; k < N_TYPES; k++) {
        enum ggml_type t = k_types[k];
        assert_int_equal(kern_quantize_row(t, x, q, n), 0);
        assert_int_equal(kern_dequantize_row(t, q, y, n), 0);
        double se = 0, sx = 0;
        for (int i = 0; i < n; i++) {
            se += (double)(y[i] - x[i]) * (y[i] - x[i]);
            sx += (double)x[i] * x[i];
        }
        double rel = sqrt(se / sx);
        double lim = t == GGML_TYPE_F32   ? 0
                     : t == GGML_TYPE_F16 ? 1e-3
                     : t == GGML_TYPE_BF16 ? 4e-3
                     : t == GGML_TYPE_Q8_0 ? 0.01
                     : t == GGML_TYPE_Q4_0 ? 0.12
                     : t == GGML_TYPE_Q4_K ? 0.09
                                           : 0.025;
        print_message("%-5s rel rms error %.5f (limit %.3f)\n", tname(t), rel, lim);
        assert_true(rel <= lim);
        for (int i = 2048; i < 2048 + 256; i++) assert_true(y[i] == 0.0f);
        if (t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_0) {
            for (int b = 0; b < n / 32; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
                float d = t == GGML_TYPE_Q8_0 ? amax / 127 : amax / 8;
                float bound = t == GGML_TYPE_Q8_0 ? d * 0.5f + 127 * d * 0x1p-11f : d * 1.01f;
                for (int j = 0; j < 32; j++)
                    assert_true(fabsf(y[b * 32 + j] - x[b * 32 + j]) <= bound + 1e-9f);
            }
        }
    }
    /* bad sizes are refused */
    assert_int_equal(kern_quantize_row(GGML_TYPE_Q4_K, x, q, 100), -1);
    assert_int_equal(kern_dequantize_row(GGML_TYPE_Q4_0, q, y, 33), -1);
    assert_int_equal(kern_quantize_row(GGML_TYPE_Q5_0, x, q, 32), -1);
    free(x);
    free(y);
    free(q);
}

/* A random weight matrix of type t (rows x cols), quantized from Gaussian data; also returns
 * its exact dequantized values in *deq. */
static void *make_weights(enum ggml_type t, int rows, int cols, float **deq)
{
    size_t rb = row_bytes(t, cols);
    uint8_t *w = malloc(rb * rows);
    float *tmp = malloc(sizeof(float) * cols);
    float *d = malloc(sizeof(float) * cols * rows);
    assert_non_null(w);
    assert_non_null(tmp);
    assert_non_null(d);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) tmp[c] = rng_gauss(0.05f) + (r % 3 == 0 ? 0.01f : 0);
        assert_int_equal(kern_quantize_row(t, tmp, w + rb * r, cols), 0);
        assert_int_equal(kern_dequantize_row(t, w + rb * r, d + (size_t)r * cols, cols), 0);
    }
    free(tmp);
    *deq = d;
    return w;
}

/* Known answers for hand-built blocks in ggml's byte layouts (independent of our quantizers,
 * so a layout misread in both quantize and dequantize cannot pass). */
static void test_block_layouts(void **state)
{
    (void)state;
    float y[256];
    /* Q4_0: d = 1; byte 0 = 0x1F: element 0 = 15 - 8, element 16 = 1 - 8 */
    uint8_t q40[18] = {0x00, 0x3c, 0x1F};
    for (int i = 3; i < 18; i++) q40[i] = 0x88;
    assert_int_equal(kern_dequantize_row(GGML_TYPE_Q4_0, q40, y, 32), 0);
    assert_true(y[0] == 7.0f && y[16] == -7.0f && y[1] == 0.0f && y[31] == 0.0f);
    /* Q8_0: d = 0.5, qs[3] = -6 */
    uint8_t q80[34] = {0x00, 0x38};
    q80[2 + 3] = (uint8_t)-6;
    assert_int_equal(kern_dequantize_row(GGML_TYPE_Q8_0, q80, y, 32), 0);
    assert_true(y[3] == -3.0f && y[0] == 0.0f);
    /* Q4_K: d = dmin = 1. Sub-block 5 (high nibbles of bytes 64..95): scale = low 4 bits of
     * scales[9] | top 2 bits of scales[1] << 4 = 1 | 16; min = high 4 bits of scales[9] | top
     * 2 bits of scales[5] << 4 = 2 | 32. Sub-block 1 keeps scale 0 (scales[1] & 63 = 0). */
    uint8_t q4k[144] = {0x00, 0x3c, 0x00, 0x3c};
    uint8_t *sc = q4k + 4, *qs = q4k + 16;
    sc[9] = 0x21;
    sc[1] = 0x40;
    sc[5] = 0x80;
    sc[0] = 3; /* sub-block 0: scale 3, min scales[4] & 63 = 0 */
    qs[64 + 3] = 0xA0;
    qs[7] = 0x05; /* sub-block 0 element 7 = 5; its high nibble is sub-block 1 */
    assert_int_equal(kern_dequantize_row(GGML_TYPE_Q4_K, q4k, y, 256), 0);
    assert_true(y[5 * 32 + 3] == 17.0f * 10 - 34);
    assert_true(y[5 * 32 + 4] == -34.0f);
    assert_true(y[7] == 15.0f && y[32 + 7] == 0.0f);
    /* Q6_K: d = 1. Element 130 (second half, first quarter, l = 2): low 4 bits of ql[66],
     * bits 0-1 of qh[34]; element 194 (third quarter): high 4 bits of ql[66], bits 4-5. */
    uint8_t q6k[210] = {0};
    uint8_t *ql = q6k, *qh = q6k + 128;
    int8_t *s6 = (int8_t *)(q6k + 192);
    for (int i = 0; i < 128; i++) ql[i] = 0x00;
    for (int i = 0; i < 64; i++) qh[i] = 0xAA; /* high bits 2 -> value 32 -> 0 */
    ql[66] = 0x75;
    qh[34] = 0x92; /* bits 0-1 = 2, bits 2-3 = 0, bits 4-5 = 1, bits 6-7 = 2 */
    for (int k = 0; k < 16; k++) s6[k] = 1;
    s6[8] = 3;
    s6[12] = 2;
    q6k[208] = 0x00;
    q6k[209] = 0x3c;
    assert_int_equal(kern_dequantize_row(GGML_TYPE_Q6_K, q6k, y, 256), 0);
    assert_true(y[130] == 3.0f * ((5 | 2 << 4) - 32));
    assert_true(y[194] == 2.0f * ((7 | 1 << 4) - 32));
    assert_true(y[162] == 1.0f * (0 - 32)); /* second quarter: ql[98] low, qh bits 2-3 = 0 */
    assert_true(y[0] == 0.0f);
}

/* The word-wise Q4_K scale unpack used by the SIMD kernels equals the byte-wise reference. */
static void test_q4k_unpack(void **state)
{
    (void)state;
    rng_seed(9);
    for (int it = 0; it < 2000; it++) {
        uint8_t q[12];
        for (int i = 0; i < 12; i++) q[i] = (uint8_t)rng_u32();
        uint32_t u[4];
        kern_q4k_unpack(q, u);
        const uint8_t *b = (const uint8_t *)u;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kern_q4k_scale(j, q, &sc, &m);
            assert_int_equal(b[j], sc);
            assert_int_equal(b[8 + j], m);
        }
    }
}

/* Each ISA's activation quantizer writes exactly the scalar one's bytes (the kernels rely on
 * every ISA seeing the same int8 activations). Includes an all-zero block and a block where
 * +a and -a tie for the largest magnitude (the first one wins). */
static void test_act_quantize_isa(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_force_isa(KERN_ISA_AVX512);
    const int cols = 1024;
    float *x = malloc(sizeof(float) * cols);
    assert_non_null(x);
    rng_seed(11);
    for (int i = 0; i < cols; i++) x[i] = rng_gauss(1.0f);
    for (int i = 256; i < 512; i++) x[i] = 0;
    x[600] = -9.0f;
    x[700] = 9.0f;
    x[40] = 0.0f;
    for (int a = KERN_ACT_Q8_0; a <= KERN_ACT_Q8_K; a++) {
        size_t st = kern_act_stride((enum kern_act)a, cols);
        uint8_t *ref = calloc(1, st), *got = calloc(1, st);
        assert_non_null(ref);
        assert_non_null(got);
        kern_act_quantize((enum kern_act)a, x, ref, cols);
        for (int isa = KERN_ISA_AVX2; isa <= (int)best; isa++) {
            struct kern_ops o;
            if (isa == KERN_ISA_AVX2) kern_ops_avx2(&o);
            else kern_ops_avx512(&o);
            if (!o.act_quantize) continue;
            memset(got, 0, st);
            o.act_quantize((enum kern_act)a, x, got, cols);
            assert_memory_equal(ref, got, st);
        }
        free(ref);
        free(got);
    }
    free(x);
    kern_force_isa(best);
}

static void test_scalar_vs_f32(void **state)
{
    (void)state;
    kern_force_isa(KERN_ISA_SCALAR);
    rng_seed(2);
    const int rows = 24, cols = 512, n = 3;
    for (size_t k = 0; k < N_TYPES; k++) {
        enum ggml_type t = k_types[k];
        float *deq;
        void *w = make_weights(t, rows, cols, &deq);
        float *x = malloc(sizeof(float) * cols * n), *y = malloc(sizeof(float) * rows * n);
        for (int i = 0; i < cols * n; i++) x[i] = rng_gauss(1.0f);
        void *scratch = malloc(kern_scratch_size(t, cols, n) + 1);
        kern_matmul(t, w, x, y, rows, cols, n, scratch, NULL);
        double se = 0, sr = 0;
        for (int c = 0; c < n; c++)
            for (int r = 0; r < rows; r++) {
                double ref = 0;
                for (int j = 0; j < cols; j++) ref += (double)deq[(size_t)r * cols + j] * x[c * cols + j];
                double e = y[c * rows + r] - ref;
                se += e * e;
                sr += ref * ref;
                /* kern_dot_row is the f32 path on exact weights */
                float dr = kern_dot_row(t, (uint8_t *)w + row_bytes(t, cols) * r, x + c * cols, cols);
                assert_true(fabs(dr - ref) <= 1e-4 * sqrt(cols) * 0.05 + 1e-5 * fabs(ref));
            }
        double rel = sqrt(se / sr);
        double lim = kern_scratch_size(t, cols, n) ? 0.01 : 1e-6;
        print_message("%-5s scalar matmul rel error vs f64 %.2e (limit %.0e)\n", tname(t), rel, lim);
        assert_true(rel <= lim);
        free(w);
        free(deq);
        free(x);
        free(y);
        free(scratch);
    }
    kern_force_isa(KERN_ISA_AVX512);
}

/* Compares kern_matmul under `isa` with the scalar kernel on the same inputs, per element
 * within 1e-4 of the sum of absolute products. */
static void check_isa(enum kern_isa isa, enum ggml_type t, int rows, int cols, int n,
                      struct pool *pool)
{
    float *deq;
    void *w = make_weights(t, rows, cols, &deq);
    float *x = malloc(sizeof(float) * cols * n);
    float *y = malloc(sizeof(float) * rows * n), *yr = malloc(sizeof(float) * rows * n);
    for (int i = 0; i < cols * n; i++) x[i] = rng_gauss(1.0f);
    x[0] = 7.5f; /* an outlier activation */
    size_t ss = kern_scratch_size(t, cols, n);
    void *scratch = ss ? malloc(ss) : NULL;
    kern_force_isa(KERN_ISA_SCALAR);
    kern_matmul(t, w, x, yr, rows, cols, n, scratch, NULL);
    kern_force_isa(isa);
    for (int i = 0; i < rows * n; i++) y[i] = NAN;
    kern_matmul(t, w, x, y, rows, cols, n, scratch, pool);
    for (int c = 0; c < n; c++)
        for (int r = 0; r < rows; r++) {
            double absdot = 0;
            for (int j = 0; j < cols; j++)
                absdot += fabs((double)deq[(size_t)r * cols + j] * x[c * cols + j]);
            double diff = fabs((double)y[c * rows + r] - yr[c * rows + r]);
            if (!(diff <= 1e-4 * absdot + 1e-6)) {
                print_message("%s %s rows %d cols %d n %d: y[%d][%d] = %g, scalar %g\n",
                              kern_isa_name(isa), tname(t), rows, cols, n, c, r,
                              y[c * rows + r], yr[c * rows + r]);
                fail();
            }
        }
    free(w);
    free(deq);
    free(x);
    free(y);
    free(yr);
    free(scratch);
}

static void test_isa_vs_scalar(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_isa();
    struct pool *pool = pool_new(2);
    assert_non_null(pool);
    rng_seed(3);
    static const int shapes[][3] = {{1, 256, 1}, {5, 512, 1}, {37, 256, 3}, {64, 512, 7},
                                    {19, 768, 16}, {130, 256, 1}, {33, 1024, 5},
                                    {9, 37, 2},   {4, 8, 5},     {70, 1000, 1}, {8, 256, 64},
                                    {6, 512, 67},  {5, 96, 3},    {3, 160, 4}};
    int checked = 0;
    for (int isa = KERN_ISA_SCALAR; isa <= (int)best; isa++)
        for (size_t k = 0; k < N_TYPES; k++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int cols = shapes[s][1];
                if (cols % blck(k_types[k])) continue;
                check_isa((enum kern_isa)isa, k_types[k], shapes[s][0], cols, shapes[s][2],
                          s % 2 ? pool : NULL);
                checked++;
            }
    print_message("checked %d (isa, type, shape) cases up to %s\n", checked, kern_isa_name(best));
    kern_force_isa(best);
    pool_free(pool);
}

/* Larger matvec and batched shapes through 2 threads: rows not a multiple of the chunk. */
static void test_threads_odd_rows(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_isa();
    struct pool *pool = pool_new(2);
    rng_seed(4);
    check_isa(best, GGML_TYPE_Q4_0, 1000, 512, 1, pool);
    check_isa(best, GGML_TYPE_Q4_K, 333, 512, 7, pool);
    check_isa(best, GGML_TYPE_Q6_K, 250, 256, 3, pool);
    check_isa(best, GGML_TYPE_F16, 301, 96, 2, pool);
    kern_force_isa(best);
    pool_free(pool);
}

/* Packed Q4_0_R16 / Q8_0_R16 against the GGUF layout: the scalar packed kernel must give the
 * very same floats as the scalar GGUF kernel (same sums, same order); every SIMD ISA the
 * packed matrix within the SIMD-vs-scalar tolerance, single- and two-threaded. */
static void test_repacked(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_isa();
    struct pool *pool = pool_new(2);
    assert_non_null(pool);
    rng_seed(5);
    static const enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                           GGML_TYPE_Q6_K};
    static const enum ggml_type packed[] = {KERN_TYPE_Q4_0_R16, KERN_TYPE_Q8_0_R16,
                                            KERN_TYPE_Q4_K_R16, KERN_TYPE_Q6_K_R16};
    static const int shapes[][3] = {{16, 32, 1},  {16, 256, 1}, {32, 512, 1}, {48, 1024, 5},
                                    {64, 512, 7}, {16, 96, 3},  {32, 256, 67}, {160, 2048, 1},
                                    {96, 352, 9},  {32, 768, 2}, {16, 256, 66}};
    for (size_t k = 0; k < 4; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            enum ggml_type t = types[k];
            int rows = shapes[s][0], cols = shapes[s][1], n = shapes[s][2];
            if (cols % blck(t)) continue;
            float *deq;
            void *w = make_weights(t, rows, cols, &deq);
            size_t bytes = row_bytes(t, cols) * rows;
            uint8_t *p = malloc(bytes);
            memset(p, 0xAB, bytes);
            assert_int_equal(kern_repack(t, w, p, rows, cols), 0);
            float *x = malloc(sizeof(float) * cols * n);
            float *yr = malloc(sizeof(float) * rows * n), *y = malloc(sizeof(float) * rows * n);
            for (int i = 0; i < cols * n; i++) x[i] = rng_gauss(1.0f);
            x[1] = -9.0f;
            void *scratch = malloc(kern_scratch_size(packed[k], cols, n));
            assert_true(kern_scratch_size(packed[k], cols, n) == kern_scratch_size(t, cols, n));
            kern_force_isa(KERN_ISA_SCALAR);
            kern_matmul(t, w, x, yr, rows, cols, n, scratch, NULL);
            for (int isa = KERN_ISA_SCALAR; isa <= (int)best; isa++) {
                kern_force_isa((enum kern_isa)isa);
                for (int th = 0; th < 2; th++) {
                    for (int i = 0; i < rows * n; i++) y[i] = NAN;
                    kern_matmul(packed[k], p, x, y, rows, cols, n, scratch, th ? pool : NULL);
                    for (int c = 0; c < n; c++)
                        for (int r = 0; r < rows; r++) {
                            double absdot = 0;
                            for (int j = 0; j < cols; j++)
                                absdot += fabs((double)deq[(size_t)r * cols + j] * x[c * cols + j]);
                            float got = y[c * rows + r], want = yr[c * rows + r];
                            int ok = isa == KERN_ISA_SCALAR ? got == want
                                                            : fabs((double)got - want) <= 1e-4 * absdot + 1e-6;
                            if (!ok) {
                                print_message("%s packed %s rows %d cols %d n %d: y[%d][%d] = %g, "
                                              "want %g\n",
                                              kern_isa_name((enum kern_isa)isa), tname(t), rows,
                                              cols, n, c, r, got, want);
                                fail();
                            }
                        }
                }
            }
            free(w);
            free(deq);
            free(p);
            free(x);
            free(y);
            free(yr);
            free(scratch);
        }
    kern_force_isa(best);
    /* which matrices get packed */
    enum ggml_type want = best >= KERN_ISA_AVX512 ? KERN_TYPE_Q4_0_R16 : GGML_TYPE_Q4_0;
    assert_int_equal(kern_repack_type(GGML_TYPE_Q4_0, 64, 256), want);
    assert_int_equal(kern_repack_type(GGML_TYPE_Q4_0, 24, 256), GGML_TYPE_Q4_0);
    assert_int_equal(kern_repack_type(GGML_TYPE_Q4_K, 64, 256),
                     best >= KERN_ISA_AVX512 ? KERN_TYPE_Q4_K_R16 : GGML_TYPE_Q4_K);
    assert_int_equal(kern_repack_type(GGML_TYPE_Q6_K, 64, 256),
                     best >= KERN_ISA_AVX512 ? KERN_TYPE_Q6_K_R16 : GGML_TYPE_Q6_K);
    assert_int_equal(kern_repack_type(GGML_TYPE_F16, 64, 256), GGML_TYPE_F16);
    uint8_t buf[16 * 34];
    assert_int_equal(kern_repack(GGML_TYPE_Q4_0, buf, buf, 8, 32), -1);
    assert_int_equal(kern_repack(GGML_TYPE_Q6_K, buf, buf, 16, 96), -1);
    assert_int_equal(kern_repack(GGML_TYPE_F16, buf, buf, 16, 32), -1);
    pool_free(pool);
}

/* kern_attn_scores / kern_attn_accum on every ISA against the scalar reference, f32 and f16
 * rows with a row stride wider than D (as in the KV cache), odd T, and D not a multiple of
 * 16 (scalar path on every ISA: bit-identical). Tolerance: 1e-5 of the sum of |products|. */
static void test_attn_helpers(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_isa();
    rng_seed(6);
    static const int dims[][2] = {{64, 37}, {128, 5}, {16, 1}, {80, 130}, {8, 9}, {64, 0}};
    for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
        for (int f16 = 0; f16 < 2; f16++) {
            int D = dims[s][0], T = dims[s][1];
            enum ggml_type kv = f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
            size_t elt = f16 ? 2 : 4, stride = (size_t)(D + 24) * elt;
            uint8_t *K = malloc(stride * (T + 1)), *V = malloc(stride * (T + 1));
            float *kf = malloc(sizeof(float) * D * (T + 1)), *vf = malloc(sizeof(float) * D * (T + 1));
            for (int t = 0; t < T; t++)
                for (int d = 0; d < D; d++) {
                    float a = rng_gauss(1.0f), b = rng_gauss(1.0f);
                    if (f16) {
                        uint16_t ha = kern_f32_to_f16(a), hb = kern_f32_to_f16(b);
                        memcpy(K + t * stride + 2 * d, &ha, 2);
                        memcpy(V + t * stride + 2 * d, &hb, 2);
                        a = kern_f16_to_f32(ha);
                        b = kern_f16_to_f32(hb);
                    } else {
                        memcpy(K + t * stride + 4 * d, &a, 4);
                        memcpy(V + t * stride + 4 * d, &b, 4);
                    }
                    kf[t * D + d] = a;
                    vf[t * D + d] = b;
                }
            float q[128], att[160], ref_s[160], o[128], ref_o[128], w[160];
            for (int d = 0; d < D; d++) q[d] = rng_gauss(1.0f);
            for (int t = 0; t < T; t++) w[t] = rng_unif();
            kern_force_isa(KERN_ISA_SCALAR);
            kern_attn_scores(kv, q, K, stride, T, D, 0.125f, ref_s);
            for (int d = 0; d < D; d++) ref_o[d] = 0.5f;
            kern_attn_accum(kv, w, V, stride, T, D, ref_o);
            for (int t = 0; t < T; t++) { /* the reference itself against plain math */
                double sd = 0;
                for (int d = 0; d < D; d++) sd += (double)q[d] * kf[t * D + d];
                assert_true(fabs(sd * 0.125 - ref_s[t]) <= 1e-5 * D);
            }
            for (int isa = KERN_ISA_SCALAR; isa <= (int)best; isa++) {
                kern_force_isa((enum kern_isa)isa);
                kern_attn_scores(kv, q, K, stride, T, D, 0.125f, att);
                for (int d = 0; d < D; d++) o[d] = 0.5f;
                kern_attn_accum(kv, w, V, stride, T, D, o);
                for (int t = 0; t < T; t++) {
                    double absd = 0;
                    for (int d = 0; d < D; d++) absd += fabs((double)q[d] * kf[t * D + d]);
                    assert_true(fabs((double)att[t] - ref_s[t]) <= 1e-5 * absd * 0.125 + 1e-7);
                    if (D % 16) assert_true(att[t] == ref_s[t]);
                }
                for (int d = 0; d < D; d++) {
                    double absd = 0.5;
                    for (int t = 0; t < T; t++) absd += fabs((double)w[t] * vf[t * D + d]);
                    assert_true(fabs((double)o[d] - ref_o[d]) <= 1e-5 * absd);
                    if (D % 16) assert_true(o[d] == ref_o[d]);
                }
            }
            free(K);
            free(V);
            free(kf);
            free(vf);
        }
    kern_force_isa(best);
}

/* kern_softmax on every ISA against a double-precision softmax: relative error <= 1e-5 per
 * element (f32 sums of up to 70 terms; the polynomial exp is within 2e-7), sums to 1, tails of every length mod 16, very
 * negative scores give 0 (not NaN), one huge score gives a one-hot vector. */
static void test_softmax(void **state)
{
    (void)state;
    kern_init();
    enum kern_isa best = kern_isa();
    rng_seed(7);
    for (int isa = KERN_ISA_SCALAR; isa <= (int)best; isa++) {
        kern_force_isa((enum kern_isa)isa);
        for (int n = 1; n <= 70; n += (n < 34 ? 1 : 9)) {
            float x[80];
            double ref[80], mx = -1e30, sum = 0;
            for (int i = 0; i < n; i++) x[i] = rng_gauss(6.0f);
            if (n > 3) x[2] = -200.0f;
            for (int i = 0; i < n; i++) mx = fmax(mx, x[i]);
            for (int i = 0; i < n; i++) sum += ref[i] = exp((double)x[i] - mx);
            kern_softmax(x, n);
            double got = 0;
            for (int i = 0; i < n; i++) {
                ref[i] /= sum;
                got += x[i];
                assert_false(isnan(x[i]));
                assert_true(fabs(x[i] - ref[i]) <= 1e-5 * ref[i] + 1e-30);
            }
            assert_true(fabs(got - 1.0) < 1e-5);
        }
        float one[17];
        for (int i = 0; i < 17; i++) one[i] = -1.0f;
        one[16] = 1e4f;
        kern_softmax(one, 17);
        assert_true(one[16] == 1.0f && one[0] == 0.0f);
    }
    kern_force_isa(best);
}

static void test_supported_and_scratch(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_TYPES; k++) assert_true(kern_type_supported(k_types[k]));
    assert_false(kern_type_supported(GGML_TYPE_Q5_1));
    assert_int_equal(kern_scratch_size(GGML_TYPE_F32, 2048, 4), 0);
    assert_true(kern_scratch_size(GGML_TYPE_Q4_0, 2048, 4) >= 4 * 2048);
    assert_true(kern_scratch_size(GGML_TYPE_Q4_K, 2048, 1) >= 2048);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nr_isa_env),
        cmocka_unit_test(test_f16_conversion),
        cmocka_unit_test(test_bf16_conversion),
        cmocka_unit_test(test_block_layouts),
        cmocka_unit_test(test_q4k_unpack),
        cmocka_unit_test(test_quantize_roundtrip),
        cmocka_unit_test(test_act_quantize_isa),
        cmocka_unit_test(test_scalar_vs_f32),
        cmocka_unit_test(test_isa_vs_scalar),
        cmocka_unit_test(test_threads_odd_rows),
        cmocka_unit_test(test_repacked),
        cmocka_unit_test(test_attn_helpers),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_supported_and_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
