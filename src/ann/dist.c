/* Distance kernels: scalar reference, AVX2+FMA and AVX-512 variants, one table per ISA.
 *
 * SIMD functions carry __attribute__((target(...))) so the file builds without -m flags and
 * runs on any x86-64; the table is chosen once with __builtin_cpu_supports. */
#include "ann/dist.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ANN_X86 1
#else
#define ANN_X86 0
#endif

/* ---------------------------------------------------------------- scalar reference ---- */

static float dot_scalar(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int j = 0; j < d; j++) s += a[j] * b[j];
    return s;
}

static float l2_scalar(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int j = 0; j < d; j++) {
        float t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

static void dot_rows_scalar(const float *q, const float *x, size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = dot_scalar(q, x + i * (size_t)d, d);
}

static void l2_rows_scalar(const float *q, const float *x, size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = l2_scalar(q, x + i * (size_t)d, d);
}

static void gemm_nt_scalar(const float *A, size_t na, const float *B, size_t nb, int d, float *C)
{
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            C[i * nb + j] = dot_scalar(A + i * (size_t)d, B + j * (size_t)d, d);
}

static void dot_cols_scalar(const float *x, const float *ct, int d, size_t k, float *out)
{
    for (size_t j = 0; j < k; j++) out[j] = 0.0f;
    for (int t = 0; t < d; t++)
        for (size_t j = 0; j < k; j++) out[j] += x[t] * ct[(size_t)t * k + j];
}

static void argmin_scalar(const float *s, const float *bias, float mult, size_t n, float *best,
                          uint32_t *best_i, uint32_t base)
{
    float b = *best;
    uint32_t bi = *best_i;
    for (size_t j = 0; j < n; j++) {
        float v = (bias ? bias[j] : 0.0f) + mult * s[j];
        if (v < b) {
            b = v;
            bi = base + (uint32_t)j;
        }
    }
    *best = b;
    *best_i = bi;
}

static void sq8_dot_rows_scalar(const float *w, const uint8_t *codes, size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        float s = 0.0f;
        for (int j = 0; j < d; j++) s += w[j] * (float)c[j];
        out[i] = s;
    }
}

static void sq8_l2_rows_scalar(const float *r, const float *sc, const uint8_t *codes, size_t n,
                               int d, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        float s = 0.0f;
        for (int j = 0; j < d; j++) {
            float t = r[j] - sc[j] * (float)c[j];
            s += t * t;
        }
        out[i] = s;
    }
}

static void pq_adc_rows_scalar(const float *lut, const uint8_t *codes, size_t n, int m,
                               float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)m;
        float s = 0.0f;
        for (int j = 0; j < m; j++) s += lut[(size_t)j * 256 + c[j]];
        out[i] = s;
    }
}

/* Four independent sums break the add dependency chain; same result up to rounding. */
static void pq_adc_rows_unrolled(const float *lut, const uint8_t *codes, size_t n, int m,
                                 float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)m;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        for (; j + 4 <= m; j += 4) {
            s0 += lut[(size_t)j * 256 + c[j]];
            s1 += lut[(size_t)(j + 1) * 256 + c[j + 1]];
            s2 += lut[(size_t)(j + 2) * 256 + c[j + 2]];
            s3 += lut[(size_t)(j + 3) * 256 + c[j + 3]];
        }
        for (; j < m; j++) s0 += lut[(size_t)j * 256 + c[j]];
        out[i] = (s0 + s1) + (s2 + s3);
    }
}

void ann_pq_lut16(const float *lut, int m, uint16_t *q, float *scale, float *bias)
{
    float range = 0.0f;
    double b = 0.0;
    for (int j = 0; j < m; j++) {
        const float *l = lut + (size_t)j * 256;
        float mn = l[0], mx = l[0];
        for (int c = 1; c < 256; c++) {
            mn = l[c] < mn ? l[c] : mn;
            mx = l[c] > mx ? l[c] : mx;
        }
        range = mx - mn > range ? mx - mn : range;
        b += mn;
    }
    float sc = range > 0.0f ? range / 65535.0f : 1.0f;
    float inv = 1.0f / sc;
    for (int j = 0; j < m; j++) {
        const float *l = lut + (size_t)j * 256;
        float mn = l[0];
        for (int c = 1; c < 256; c++) mn = l[c] < mn ? l[c] : mn;
        for (int c = 0; c < 256; c++) {
            float v = (l[c] - mn) * inv + 0.5f;
            q[(size_t)j * 256 + c] = (uint16_t)(v >= 65535.0f ? 65535.0f : v);
        }
    }
    *scale = sc;
    *bias = (float)b;
}

void ann_pq_adc_rows_u16(const uint16_t *q, const uint8_t *codes, size_t n, int m, float scale,
                         float bias, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)m;
        uint32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int j = 0;
        for (; j + 4 <= m; j += 4) {
            s0 += q[(size_t)j * 256 + c[j]];
            s1 += q[(size_t)(j + 1) * 256 + c[j + 1]];
            s2 += q[(size_t)(j + 2) * 256 + c[j + 2]];
            s3 += q[(size_t)(j + 3) * 256 + c[j + 3]];
        }
        for (; j < m; j++) s0 += q[(size_t)j * 256 + c[j]];
        out[i] = scale * (float)((s0 + s1) + (s2 + s3)) + bias;
    }
}

#if ANN_X86
/* ---------------------------------------------------------------------- AVX2 + FMA ---- */

#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v)
{
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

AVX2 static float dot_avx2(const float *a, const float *b, int d)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), s1);
    }
    for (; j + 8 <= d; j += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

AVX2 static float l2_avx2(const float *a, const float *b, int d)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int j = 0;
    for (; j + 16 <= d; j += 16) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
        __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8));
        s0 = _mm256_fmadd_ps(t0, t0, s0);
        s1 = _mm256_fmadd_ps(t1, t1, s1);
    }
    for (; j + 8 <= d; j += 8) {
        __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
        s0 = _mm256_fmadd_ps(t0, t0, s0);
    }
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < d; j++) {
        float t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* One row at a time with four accumulators: one sequential stream (see dot_rows_avx512). */
AVX2 static void dot_rows_avx2(const float *q, const float *x, size_t n, int d, float *out)
{
    if ((d & 31) != 0) {
        for (size_t i = 0; i < n; i++) out[i] = dot_avx2(q, x + i * (size_t)d, d);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (int j = 0; j < d; j += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(xi + j), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), _mm256_loadu_ps(xi + j + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 16), _mm256_loadu_ps(xi + j + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 24), _mm256_loadu_ps(xi + j + 24), a3);
        }
        out[i] = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    }
}

AVX2 static void l2_rows_avx2(const float *q, const float *x, size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = l2_avx2(q, x + i * (size_t)d, d);
}

AVX2 static void gemm_nt_avx2(const float *A, size_t na, const float *B, size_t nb, int d,
                              float *C)
{
    for (size_t i = 0; i < na; i++) dot_rows_avx2(A + i * (size_t)d, B, nb, d, C + i * nb);
}

AVX2 static void dot_cols_avx2(const float *x, const float *ct, int d, size_t k, float *out)
{
    size_t j = 0;
    for (; j + 8 <= k; j += 8) {
        __m256 s = _mm256_setzero_ps();
        for (int t = 0; t < d; t++)
            s = _mm256_fmadd_ps(_mm256_set1_ps(x[t]), _mm256_loadu_ps(ct + (size_t)t * k + j), s);
        _mm256_storeu_ps(out + j, s);
    }
    for (; j < k; j++) {
        float s = 0.0f;
        for (int t = 0; t < d; t++) s += x[t] * ct[(size_t)t * k + j];
        out[j] = s;
    }
}

AVX2 static void sq8_dot_rows_avx2(const float *w, const uint8_t *codes, size_t n, int d,
                                   float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int j = 0;
        for (; j + 16 <= d; j += 16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(c + j));
            __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
            __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), f0, s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), f1, s1);
        }
        float s = hsum256(_mm256_add_ps(s0, s1));
        for (; j < d; j++) s += w[j] * (float)c[j];
        out[i] = s;
    }
}

AVX2 static void sq8_l2_rows_avx2(const float *r, const float *sc, const uint8_t *codes,
                                  size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int j = 0;
        for (; j + 16 <= d; j += 16) {
            __m128i b = _mm_loadu_si128((const __m128i *)(c + j));
            __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
            __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
            __m256 t0 = _mm256_fnmadd_ps(_mm256_loadu_ps(sc + j), f0, _mm256_loadu_ps(r + j));
            __m256 t1 =
                _mm256_fnmadd_ps(_mm256_loadu_ps(sc + j + 8), f1, _mm256_loadu_ps(r + j + 8));
            s0 = _mm256_fmadd_ps(t0, t0, s0);
            s1 = _mm256_fmadd_ps(t1, t1, s1);
        }
        float s = hsum256(_mm256_add_ps(s0, s1));
        for (; j < d; j++) {
            float t = r[j] - sc[j] * (float)c[j];
            s += t * t;
        }
        out[i] = s;
    }
}

/* ---------------------------------------------------------------------------- AVX-512 ---- */

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

AVX512 static inline __mmask16 tail_mask(int r)
{
    return (__mmask16)((1u << r) - 1u);
}

AVX512 static float dot_avx512(const float *a, const float *b, int d)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int j = 0;
    for (; j + 32 <= d; j += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), s1);
    }
    for (; j + 16 <= d; j += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), s0);
    if (j < d) {
        __mmask16 m = tail_mask(d - j);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j),
                             s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

AVX512 static float l2_avx512(const float *a, const float *b, int d)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int j = 0;
    for (; j + 32 <= d; j += 32) {
        __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j));
        __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16));
        s0 = _mm512_fmadd_ps(t0, t0, s0);
        s1 = _mm512_fmadd_ps(t1, t1, s1);
    }
    for (; j + 16 <= d; j += 16) {
        __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j));
        s0 = _mm512_fmadd_ps(t0, t0, s0);
    }
    if (j < d) {
        __mmask16 m = tail_mask(d - j);
        __m512 t1 = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, a + j), _mm512_maskz_loadu_ps(m, b + j));
        s1 = _mm512_fmadd_ps(t1, t1, s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* One row at a time with four accumulators, so the rows are read as one sequential stream.
 * The scan is bound by memory bandwidth for large n, and the hardware prefetchers follow a
 * single stream at full speed; an earlier version read four rows interleaved (1 KB apart,
 * sharing each load of q) and streamed at under half the single-thread bandwidth on the 3m
 * exact scan (11 of 24 GB/s). q (d floats) stays in L1. */
AVX512 static void dot_rows_avx512(const float *q, const float *x, size_t n, int d, float *out)
{
    if ((d & 63) != 0) {
        for (size_t i = 0; i < n; i++) out[i] = dot_avx512(q, x + i * (size_t)d, d);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int j = 0; j < d; j += 64) {
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), _mm512_loadu_ps(xi + j), a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 16), _mm512_loadu_ps(xi + j + 16), a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 32), _mm512_loadu_ps(xi + j + 32), a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(q + j + 48), _mm512_loadu_ps(xi + j + 48), a3);
        }
        out[i] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

/* As dot_rows_avx512: one sequential stream of rows. */
AVX512 static void l2_rows_avx512(const float *q, const float *x, size_t n, int d, float *out)
{
    if ((d & 63) != 0) {
        for (size_t i = 0; i < n; i++) out[i] = l2_avx512(q, x + i * (size_t)d, d);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const float *xi = x + i * (size_t)d;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (int j = 0; j < d; j += 64) {
            __m512 t0 = _mm512_sub_ps(_mm512_loadu_ps(q + j), _mm512_loadu_ps(xi + j));
            __m512 t1 = _mm512_sub_ps(_mm512_loadu_ps(q + j + 16), _mm512_loadu_ps(xi + j + 16));
            __m512 t2 = _mm512_sub_ps(_mm512_loadu_ps(q + j + 32), _mm512_loadu_ps(xi + j + 32));
            __m512 t3 = _mm512_sub_ps(_mm512_loadu_ps(q + j + 48), _mm512_loadu_ps(xi + j + 48));
            a0 = _mm512_fmadd_ps(t0, t0, a0);
            a1 = _mm512_fmadd_ps(t1, t1, a1);
            a2 = _mm512_fmadd_ps(t2, t2, a2);
            a3 = _mm512_fmadd_ps(t3, t3, a3);
        }
        out[i] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

/* 4 x 4 register block: per 16 floats of depth, 8 loads feed 16 FMAs. */
AVX512 static void gemm_nt_avx512(const float *A, size_t na, const float *B, size_t nb, int d,
                                  float *C)
{
    if ((d & 15) != 0) {
        for (size_t i = 0; i < na; i++)
            for (size_t j = 0; j < nb; j++)
                C[i * nb + j] = dot_avx512(A + i * (size_t)d, B + j * (size_t)d, d);
        return;
    }
    size_t i = 0;
    for (; i + 4 <= na; i += 4) {
        const float *a0 = A + i * (size_t)d, *a1 = a0 + d, *a2 = a1 + d, *a3 = a2 + d;
        size_t j = 0;
        for (; j + 4 <= nb; j += 4) {
            const float *b0 = B + j * (size_t)d, *b1 = b0 + d, *b2 = b1 + d, *b3 = b2 + d;
            __m512 c[16];
            for (int t = 0; t < 16; t++) c[t] = _mm512_setzero_ps();
            for (int k = 0; k < d; k += 16) {
                __m512 va0 = _mm512_loadu_ps(a0 + k), va1 = _mm512_loadu_ps(a1 + k);
                __m512 va2 = _mm512_loadu_ps(a2 + k), va3 = _mm512_loadu_ps(a3 + k);
                __m512 vb = _mm512_loadu_ps(b0 + k);
                c[0] = _mm512_fmadd_ps(va0, vb, c[0]);
                c[4] = _mm512_fmadd_ps(va1, vb, c[4]);
                c[8] = _mm512_fmadd_ps(va2, vb, c[8]);
                c[12] = _mm512_fmadd_ps(va3, vb, c[12]);
                vb = _mm512_loadu_ps(b1 + k);
                c[1] = _mm512_fmadd_ps(va0, vb, c[1]);
                c[5] = _mm512_fmadd_ps(va1, vb, c[5]);
                c[9] = _mm512_fmadd_ps(va2, vb, c[9]);
                c[13] = _mm512_fmadd_ps(va3, vb, c[13]);
                vb = _mm512_loadu_ps(b2 + k);
                c[2] = _mm512_fmadd_ps(va0, vb, c[2]);
                c[6] = _mm512_fmadd_ps(va1, vb, c[6]);
                c[10] = _mm512_fmadd_ps(va2, vb, c[10]);
                c[14] = _mm512_fmadd_ps(va3, vb, c[14]);
                vb = _mm512_loadu_ps(b3 + k);
                c[3] = _mm512_fmadd_ps(va0, vb, c[3]);
                c[7] = _mm512_fmadd_ps(va1, vb, c[7]);
                c[11] = _mm512_fmadd_ps(va2, vb, c[11]);
                c[15] = _mm512_fmadd_ps(va3, vb, c[15]);
            }
            for (int r = 0; r < 4; r++)
                for (int t = 0; t < 4; t++)
                    C[(i + (size_t)r) * nb + j + (size_t)t] = _mm512_reduce_add_ps(c[r * 4 + t]);
        }
        for (; j < nb; j++) {
            const float *b0 = B + j * (size_t)d;
            C[i * nb + j] = dot_avx512(a0, b0, d);
            C[(i + 1) * nb + j] = dot_avx512(a1, b0, d);
            C[(i + 2) * nb + j] = dot_avx512(a2, b0, d);
            C[(i + 3) * nb + j] = dot_avx512(a3, b0, d);
        }
    }
    for (; i < na; i++) dot_rows_avx512(A + i * (size_t)d, B, nb, d, C + i * nb);
}

AVX512 static void dot_cols_avx512(const float *x, const float *ct, int d, size_t k, float *out)
{
    size_t j = 0;
    for (; j + 32 <= k; j += 32) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        for (int t = 0; t < d; t++) {
            __m512 xv = _mm512_set1_ps(x[t]);
            const float *r = ct + (size_t)t * k + j;
            s0 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r), s0);
            s1 = _mm512_fmadd_ps(xv, _mm512_loadu_ps(r + 16), s1);
        }
        _mm512_storeu_ps(out + j, s0);
        _mm512_storeu_ps(out + j + 16, s1);
    }
    for (; j < k; j += 16) {
        __mmask16 m = k - j >= 16 ? (__mmask16)0xffff : tail_mask((int)(k - j));
        __m512 s = _mm512_setzero_ps();
        for (int t = 0; t < d; t++)
            s = _mm512_fmadd_ps(_mm512_set1_ps(x[t]),
                                _mm512_maskz_loadu_ps(m, ct + (size_t)t * k + j), s);
        _mm512_mask_storeu_ps(out + j, m, s);
    }
}

/* Lane-wise minimum with the index of its first occurrence, then a reduction that prefers
 * the smallest index among equal minima (same answer as the scalar loop). */
AVX512 static void argmin_avx512(const float *s, const float *bias, float mult, size_t n,
                                 float *best, uint32_t *best_i, uint32_t base)
{
    if (n < 16) {
        argmin_scalar(s, bias, mult, n, best, best_i, base);
        return;
    }
    __m512 vm = _mm512_set1_ps(mult), vb = _mm512_set1_ps(INFINITY);
    __m512i vi = _mm512_setzero_si512(), idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
                                                                  10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32(16);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 v = _mm512_mul_ps(vm, _mm512_loadu_ps(s + j));
        if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + j));
        __mmask16 lt = _mm512_cmp_ps_mask(v, vb, _CMP_LT_OQ);
        vb = _mm512_mask_mov_ps(vb, lt, v);
        vi = _mm512_mask_mov_epi32(vi, lt, idx);
        idx = _mm512_add_epi32(idx, step);
    }
    float m = _mm512_reduce_min_ps(vb);
    if (m < *best) {
        /* the smallest index among the lanes holding the minimum is its first occurrence */
        __mmask16 eq = _mm512_cmp_ps_mask(vb, _mm512_set1_ps(m), _CMP_EQ_OQ);
        *best = m;
        *best_i = base + _mm512_mask_reduce_min_epu32(eq, vi);
    }
    if (j < n) argmin_scalar(s + j, bias ? bias + j : NULL, mult, n - j, best, best_i, base + (uint32_t)j);
}

AVX512 static void sq8_dot_rows_avx512(const float *w, const uint8_t *codes, size_t n, int d,
                                       float *out)
{
    size_t i = 0;
    if ((d & 15) == 0) {
        /* Two rows per pass share the loads of w. */
        for (; i + 2 <= n; i += 2) {
            const uint8_t *c0 = codes + i * (size_t)d, *c1 = c0 + d;
            __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
            for (int j = 0; j < d; j += 16) {
                __m512 wv = _mm512_loadu_ps(w + j);
                __m512 f0 = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c0 + j))));
                __m512 f1 = _mm512_cvtepi32_ps(
                    _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c1 + j))));
                s0 = _mm512_fmadd_ps(wv, f0, s0);
                s1 = _mm512_fmadd_ps(wv, f1, s1);
            }
            out[i] = _mm512_reduce_add_ps(s0);
            out[i + 1] = _mm512_reduce_add_ps(s1);
        }
    }
    for (; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        __m512 s0 = _mm512_setzero_ps();
        int j = 0;
        for (; j + 16 <= d; j += 16) {
            __m512 f0 =
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + j))));
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + j), f0, s0);
        }
        float s = _mm512_reduce_add_ps(s0);
        for (; j < d; j++) s += w[j] * (float)c[j];
        out[i] = s;
    }
}

AVX512 static void sq8_l2_rows_avx512(const float *r, const float *sc, const uint8_t *codes,
                                      size_t n, int d, float *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)d;
        __m512 s0 = _mm512_setzero_ps();
        int j = 0;
        for (; j + 16 <= d; j += 16) {
            __m512 f0 =
                _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + j))));
            __m512 t0 = _mm512_fnmadd_ps(_mm512_loadu_ps(sc + j), f0, _mm512_loadu_ps(r + j));
            s0 = _mm512_fmadd_ps(t0, t0, s0);
        }
        float s = _mm512_reduce_add_ps(s0);
        for (; j < d; j++) {
            float t = r[j] - sc[j] * (float)c[j];
            s += t * t;
        }
        out[i] = s;
    }
}

/* Sixteen table lookups per gather: codes widened to 32-bit indices plus j*256. */
/* Gathers sixteen table entries at a time. AVX-512 gathers are slow on the AMD cores this
 * runs on: while the table fits L1 (m <= 32: 32 KB) four scalar load chains are faster
 * (measured 1.8x at m = 32 over 200k codes); with m = 64 (64 KB, L2) the gathers win 1.5x. */
AVX512 static void pq_adc_rows_avx512(const float *lut, const uint8_t *codes, size_t n, int m,
                                      float *out)
{
    if ((m & 15) != 0 || m <= 32) {
        pq_adc_rows_unrolled(lut, codes, n, m, out);
        return;
    }
    const __m512i base = _mm512_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304,
                                           2560, 2816, 3072, 3328, 3584, 3840);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * (size_t)m;
        __m512 s = _mm512_setzero_ps();
        for (int j = 0; j < m; j += 16) {
            __m512i idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(c + j)));
            idx = _mm512_add_epi32(idx, base);
            s = _mm512_add_ps(s, _mm512_i32gather_ps(idx, lut + (size_t)j * 256, 4));
        }
        out[i] = _mm512_reduce_add_ps(s);
    }
}
#endif /* ANN_X86 */

/* ------------------------------------------------------------------------- dispatch ---- */

static const struct ann_dist_ops ops_scalar = {
    ANN_ISA_SCALAR,      dot_scalar,          l2_scalar,          dot_rows_scalar,
    l2_rows_scalar,      gemm_nt_scalar,      dot_cols_scalar,     argmin_scalar,     sq8_dot_rows_scalar, sq8_l2_rows_scalar,
    pq_adc_rows_scalar,
};

#if ANN_X86
static const struct ann_dist_ops ops_avx2 = {
    ANN_ISA_AVX2,        dot_avx2,          l2_avx2,          dot_rows_avx2,
    l2_rows_avx2,        gemm_nt_avx2,      dot_cols_avx2,     argmin_scalar,     sq8_dot_rows_avx2, sq8_l2_rows_avx2,
    pq_adc_rows_unrolled,
};

static const struct ann_dist_ops ops_avx512 = {
    ANN_ISA_AVX512,        dot_avx512,          l2_avx512,          dot_rows_avx512,
    l2_rows_avx512,        gemm_nt_avx512,      dot_cols_avx512,     argmin_avx512,     sq8_dot_rows_avx512, sq8_l2_rows_avx512,
    pq_adc_rows_avx512,
};
#endif

static const struct ann_dist_ops *g_ops = &ops_scalar;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static int cpu_has(enum ann_isa isa)
{
#if ANN_X86
    __builtin_cpu_init();
    if (isa == ANN_ISA_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ANN_ISA_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && cpu_has(ANN_ISA_AVX2);
#endif
    return isa == ANN_ISA_SCALAR;
}

const struct ann_dist_ops *ann_dist_for(enum ann_isa isa)
{
    if (!cpu_has(isa)) return NULL;
    switch (isa) {
    case ANN_ISA_SCALAR: return &ops_scalar;
#if ANN_X86
    case ANN_ISA_AVX2: return &ops_avx2;
    case ANN_ISA_AVX512: return &ops_avx512;
#endif
    default: return NULL;
    }
}

static void pick_ops(void)
{
    enum ann_isa cap = ANN_ISA_AVX512;
    const char *env = getenv("NR_ISA");
    if (env && strcmp(env, "scalar") == 0) cap = ANN_ISA_SCALAR;
    else if (env && strcmp(env, "avx2") == 0) cap = ANN_ISA_AVX2;
    for (int isa = (int)cap; isa >= 0; isa--) {
        const struct ann_dist_ops *o = ann_dist_for((enum ann_isa)isa);
        if (o) {
            g_ops = o;
            return;
        }
    }
}

const struct ann_dist_ops *ann_dist_get(void)
{
    pthread_once(&g_once, pick_ops);
    return g_ops;
}

const char *ann_isa_name(enum ann_isa isa)
{
    switch (isa) {
    case ANN_ISA_SCALAR: return "scalar";
    case ANN_ISA_AVX2: return "avx2";
    case ANN_ISA_AVX512: return "avx512";
    }
    return "?";
}
