/* engine/ops: each f32 forward against an independent double-precision reference. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "base/pool.h"
#include "engine/ops.h"

static unsigned long long rng_state = 12345;
static float frand(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}
static float *rand_vec(size_t n)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = frand();
    return v;
}

static void assert_close(const float *a, const double *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > tol * (1.0 + fabs(b[i]))) {
            print_message("mismatch at %zu: got %.8g want %.8g\n", i, (double)a[i], b[i]);
            fail();
        }
    }
}

static void test_rmsnorm(void **st)
{
    (void)st;
    const int N = 5, C = 37;
    float *x = rand_vec((size_t)N * C), *w = rand_vec(C), out[5 * 37], rstd[5];
    double ref[5 * 37], rref[5];
    x[3] = 40.0f; /* a large value */
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int c = 0; c < C; c++)
            ss += (double)x[n * C + c] * x[n * C + c];
        rref[n] = 1.0 / sqrt(ss / C + 1e-5);
        for (int c = 0; c < C; c++)
            ref[n * C + c] = x[n * C + c] * rref[n] * w[c];
    }
    ops_rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    assert_close(out, ref, (size_t)N * C, 1e-5);
    assert_close(rstd, rref, (size_t)N, 1e-5);
    ops_rmsnorm_forward(out, NULL, x, w, N, C, 1e-5f); /* rstd optional */
    assert_close(out, ref, (size_t)N * C, 1e-5);
    free(x);
    free(w);
}

static void check_matmul(int N, int C, int OC, bool bias, struct pool *pool)
{
    float *x = rand_vec((size_t)N * C), *w = rand_vec((size_t)OC * C);
    float *b = bias ? rand_vec(OC) : NULL;
    float *out = malloc((size_t)N * OC * sizeof *out);
    double *ref = malloc((size_t)N * OC * sizeof *ref);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++)
                s += (double)x[n * C + c] * w[(size_t)o * C + c];
            ref[(size_t)n * OC + o] = s;
        }
    ops_matmul_forward(out, x, w, b, N, C, OC, pool);
    assert_close(out, ref, (size_t)N * OC, 1e-4);
    free(x);
    free(w);
    free(b);
    free(out);
    free(ref);
}

static void test_matmul(void **st)
{
    (void)st;
    struct pool *pool = pool_new(3);
    assert_non_null(pool);
    check_matmul(1, 7, 5, false, NULL);
    check_matmul(3, 64, 33, true, NULL);
    check_matmul(4, 128, 300, true, pool); /* large enough to use the pool */
    check_matmul(1, 256, 513, false, pool);
    pool_free(pool);
}

/* Rotating by pos a then by pos b equals rotating by a + b; pos 0 is the identity; pair
 * norms are kept; and one pair matches cos/sin of the documented angle. */
static void test_rope(void **st)
{
    (void)st;
    const int H = 3, D = 8;
    float *x = rand_vec((size_t)H * D), y[3 * 8], z[3 * 8];
    double ref[3 * 8];
    memcpy(y, x, sizeof y);
    int p0 = 0;
    ops_rope_forward(y, &p0, 1, H, D, 10000.0f);
    for (int i = 0; i < H * D; i++)
        ref[i] = x[i];
    assert_close(y, ref, (size_t)H * D, 1e-7);

    int p = 7;
    memcpy(y, x, sizeof y);
    ops_rope_forward(y, &p, 1, H, D, 10000.0f);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < D; i += 2) {
            double a = 7.0 * pow(10000.0, -(double)i / D);
            double x0 = x[h * D + i], x1 = x[h * D + i + 1];
            ref[h * D + i] = x0 * cos(a) - x1 * sin(a);
            ref[h * D + i + 1] = x0 * sin(a) + x1 * cos(a);
        }
    assert_close(y, ref, (size_t)H * D, 1e-5);

    /* composition over two rows with different positions */
    float two[2 * 3 * 8];
    memcpy(two, x, sizeof y);
    memcpy(two + H * D, x, sizeof y);
    int pos2[2] = {3, 4};
    ops_rope_forward(two, pos2, 2, H, D, 10000.0f);
    memcpy(z, two, sizeof z);                         /* row 0 rotated by 3 */
    ops_rope_forward(z, pos2 + 1, 1, H, D, 10000.0f); /* +4 = 7 */
    assert_close(z, ref, (size_t)H * D, 1e-5);
    free(x);
}

/* Reference attention: full score matrix per head with K/V heads repeated, in double. */
static void ref_attention(double *out, const float *q, const float *k, const float *v,
                          const unsigned char *mask, int T, int H, int Hkv, int D)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int hk = h * Hkv / H;
            double sc[64], mx = -1e300;
            int any = 0;
            for (int j = 0; j < T; j++) {
                sc[j] = -1e300;
                if (j > t || (mask && !mask[j])) continue;
                double s = 0;
                for (int d = 0; d < D; d++)
                    s += (double)q[(t * H + h) * D + d] * k[(j * Hkv + hk) * D + d];
                sc[j] = s / sqrt((double)D);
                if (sc[j] > mx) mx = sc[j];
                any = 1;
            }
            for (int d = 0; d < D; d++)
                out[(t * H + h) * D + d] = 0;
            if (!any) continue;
            double sum = 0;
            for (int j = 0; j <= t; j++)
                if (sc[j] > -1e299) sum += exp(sc[j] - mx);
            for (int j = 0; j <= t; j++) {
                if (sc[j] < -1e299) continue;
                double p = exp(sc[j] - mx) / sum;
                for (int d = 0; d < D; d++)
                    out[(t * H + h) * D + d] += p * v[(j * Hkv + hk) * D + d];
            }
        }
}

static void test_attention(void **st)
{
    (void)st;
    const int T = 6, H = 4, Hkv = 2, D = 8;
    float *q = rand_vec((size_t)T * H * D), *k = rand_vec((size_t)T * Hkv * D);
    float *v = rand_vec((size_t)T * Hkv * D);
    float out[6 * 4 * 8], att[4 * 6 * 6];
    double ref[6 * 4 * 8];
    ref_attention(ref, q, k, v, NULL, T, H, Hkv, D);
    ops_attention_forward(out, att, q, k, v, NULL, T, H, Hkv, D);
    assert_close(out, ref, (size_t)T * H * D, 1e-5);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int j = 0; j < T; j++) {
                if (j > t) assert_true(att[(h * T + t) * T + j] == 0.0f);
                s += att[(h * T + t) * T + j];
            }
            assert_true(fabs(s - 1.0) < 1e-5);
        }
    memset(out, 0xff, sizeof out);
    ops_attention_forward(out, NULL, q, k, v, NULL, T, H, Hkv, D); /* att optional */
    assert_close(out, ref, (size_t)T * H * D, 1e-5);

    /* left padding: the first two keys masked; rows 0 and 1 attend to nothing -> zeros */
    unsigned char mask[6] = {0, 0, 1, 1, 1, 1};
    ref_attention(ref, q, k, v, mask, T, H, Hkv, D);
    ops_attention_forward(out, att, q, k, v, mask, T, H, Hkv, D);
    assert_close(out, ref, (size_t)T * H * D, 1e-5);
    for (int i = 0; i < 2 * H * D; i++)
        assert_true(out[i] == 0.0f);
    free(q);
    free(k);
    free(v);
}

static void test_swiglu_softmax(void **st)
{
    (void)st;
    const int N = 3, F = 11;
    float *g = rand_vec((size_t)N * F), *u = rand_vec((size_t)N * F), out[33];
    double ref[33];
    g[0] = 30.0f;
    g[1] = -30.0f;
    for (int i = 0; i < N * F; i++)
        ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
    ops_swiglu_forward(out, g, u, N, F);
    assert_close(out, ref, (size_t)N * F, 1e-6);

    float x[4] = {1000.0f, 1001.0f, 999.0f, -5.0f};
    double e[4], s = 0;
    for (int i = 0; i < 4; i++)
        s += e[i] = exp((double)x[i] - 1001.0);
    for (int i = 0; i < 4; i++)
        e[i] /= s;
    ops_softmax(x, 4);
    assert_close(x, e, 4, 1e-6);
    free(g);
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rope),           cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu_softmax),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
