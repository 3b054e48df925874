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

/* Minimum and maximum of 256 floats with eight independent lanes: a single running minimum
 * is a chain of dependent compares (ann_pq_lut16 at m = 32 took 17-23 us per query, now
 * 13-15); min and max do not depend on the order, so the table is the same. */
static void minmax256(const float *l, float *mn_out, float *mx_out)
{
    float mn[8], mx[8];
    for (int t = 0; t < 8; t++) mn[t] = mx[t] = l[t];
    for (int c = 8; c < 256; c += 8)
        for (int t = 0; t < 8; t++) {
            mn[t] = l[c + t] < mn[t] ? l[c + t] : mn[t];
            mx[t] = l[c + t] > mx[t] ? l[c + t] : mx[t];
        }
    for (int t = 1; t < 8; t++) {
        mn[0] = mn[t] < mn[0] ? mn[t] : mn[0];
        mx[0] = mx[t] > mx[0] ? mx[t] : mx[0];
    }
    *mn_out = mn[0];
    *mx_out = mx[0];
}

void ann_pq_lut16(const float *lut, int m, uint16_t *q, float *scale, float *bias)
{
    float range = 0.0f;
    double b = 0.0;
    for (int j = 0; j < m; j++) {
        float mn, mx;
        minmax256(lut + (size_t)j * 256, &mn, &mx);
        range = mx - mn > range ? mx - mn : range;
        b += mn;
    }
    float sc = range > 0.0f ? range / 65535.0f : 1.0f;
    float inv = 1.0f / sc;
    for (int j = 0; j < m; j++) {
        const float *l = lut + (size_t)j * 256;
        float mn, mx;
        minmax256(l, &mn, &mx);
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

void ann_pq_lut16_planes(const uint16_t *q, int m, uint8_t *planes)
{
    for (int j = 0; j < m; j++) {
        uint8_t *lo = planes + (size_t)j * 512, *hi = lo + 256;
        for (int c = 0; c < 256; c++) {
            lo[c] = (uint8_t)(q[(size_t)j * 256 + c] & 0xff);
            hi[c] = (uint8_t)(q[(size_t)j * 256 + c] >> 8);
        }
    }
}

static void pq_adc_rows_u16_scalar(const uint16_t *q, const uint8_t *planes,
                                   const uint8_t *codes, size_t n, int m, float scale,
                                   float bias, float *out)
{
    (void)planes;
    ann_pq_adc_rows_u16(q, codes, n, m, scale, bias, out);
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

/* ------------------------------------------------------------- AVX-512 VBMI PQ scan ---- */

#define VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx2,fma")))

/* 8 x 8 transpose of 64-bit elements: r[i] holds row i; afterwards r[i] holds column i. */
#define VBMI_INLINE VBMI static inline __attribute__((always_inline))

VBMI_INLINE void tr8x8_epi64(__m512i r[8])
{
    __m512i t[8], u[8];
    for (int k = 0; k < 4; k++) {
        /* t[2k] = (row 2k, row 2k+1) at columns 0,2,4,6; t[2k+1] at 1,3,5,7 */
        t[2 * k] = _mm512_unpacklo_epi64(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_epi64(r[2 * k], r[2 * k + 1]);
    }
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
    const __m512i hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    for (int h = 0; h < 2; h++) {
        /* rows 4h..4h+3: u[4h+0] = columns 0,4; u[4h+1] = 1,5; u[4h+2] = 2,6; u[4h+3] = 3,7 */
        __m512i *tt = t + 4 * h, *uu = u + 4 * h;
        uu[0] = _mm512_permutex2var_epi64(tt[0], lo, tt[2]);
        uu[2] = _mm512_permutex2var_epi64(tt[0], hi, tt[2]);
        uu[1] = _mm512_permutex2var_epi64(tt[1], lo, tt[3]);
        uu[3] = _mm512_permutex2var_epi64(tt[1], hi, tt[3]);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm512_shuffle_i64x2(u[c], u[4 + c], _MM_SHUFFLE(1, 0, 1, 0));
        r[c + 4] = _mm512_shuffle_i64x2(u[c], u[4 + c], _MM_SHUFFLE(3, 2, 3, 2));
    }
}

/* Transposes 64 codes of m = 8 * G bytes (G = 4 or 8) so that t[j] (64 bytes) holds
 * sub-quantizer j of codes 0..63 in order: per 8 codes, qword g of each code is brought
 * together (a qword transpose), an in-register byte transpose (vpermb) turns 8 codes x 8
 * sub-quantizers into 8 sub-quantizers x 8 codes, and a final qword transpose over the 8
 * groups of codes joins the 64 codes of one sub-quantizer. */
VBMI_INLINE void pq_transpose64(const uint8_t *c, int G, __m512i *t)
{
    /* bt[cc * 8 + s] -> [s * 8 + cc]: byte s of code cc to qword s */
    const __m512i bt = _mm512_set_epi8(63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22, 14,
                                       6, 61, 53, 45, 37, 29, 21, 13, 5, 60, 52, 44, 36, 28, 20,
                                       12, 4, 59, 51, 43, 35, 27, 19, 11, 3, 58, 50, 42, 34, 26,
                                       18, 10, 2, 57, 49, 41, 33, 25, 17, 9, 1, 56, 48, 40, 32,
                                       24, 16, 8, 0);
#pragma GCC unroll 8
    for (int blk = 0; blk < 8; blk++) {
        const uint8_t *cb = c + (size_t)blk * 8 * 8 * (size_t)G;
        __m512i q[8];
        if (G == 8) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) q[i] = _mm512_loadu_si512(cb + 64 * i);
            tr8x8_epi64(q); /* q[g] = qword g of the 8 codes */
        } else {
            /* z[r] = codes 2r, 2r+1 (4 qwords each) */
            __m512i z0 = _mm512_loadu_si512(cb), z1 = _mm512_loadu_si512(cb + 64);
            __m512i z2 = _mm512_loadu_si512(cb + 128), z3 = _mm512_loadu_si512(cb + 192);
            const __m512i ia = _mm512_setr_epi64(0, 4, 8, 12, 1, 5, 9, 13);
            const __m512i ib = _mm512_setr_epi64(2, 6, 10, 14, 3, 7, 11, 15);
            __m512i pa01 = _mm512_permutex2var_epi64(z0, ia, z1); /* codes 0-3: q0, q1 */
            __m512i pb01 = _mm512_permutex2var_epi64(z0, ib, z1); /* codes 0-3: q2, q3 */
            __m512i pa23 = _mm512_permutex2var_epi64(z2, ia, z3); /* codes 4-7 */
            __m512i pb23 = _mm512_permutex2var_epi64(z2, ib, z3);
            q[0] = _mm512_shuffle_i64x2(pa01, pa23, _MM_SHUFFLE(1, 0, 1, 0));
            q[1] = _mm512_shuffle_i64x2(pa01, pa23, _MM_SHUFFLE(3, 2, 3, 2));
            q[2] = _mm512_shuffle_i64x2(pb01, pb23, _MM_SHUFFLE(1, 0, 1, 0));
            q[3] = _mm512_shuffle_i64x2(pb01, pb23, _MM_SHUFFLE(3, 2, 3, 2));
        }
        /* qword s of t[g * 8 + blk] = sub-quantizer 8g + s of codes 8 blk .. 8 blk + 7 */
#pragma GCC unroll 8
        for (int g = 0; g < G; g++) t[g * 8 + blk] = _mm512_permutexvar_epi8(bt, q[g]);
    }
#pragma GCC unroll 8
    for (int g = 0; g < G; g++) tr8x8_epi64(t + g * 8);
}

/* Writes scale * (lo + 256 hi) + bias for 64 codes whose sums of low (l*) and high (h*) table
 * bytes sit in 16-bit lanes, even codes (*e) and odd codes (*o) apart. */
VBMI_INLINE void pq_adc64_finish(__m512i le, __m512i lo, __m512i he, __m512i ho, float scale,
                                 float bias, float *out)
{
    const __m512 vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(bias);
    const __m512i i0 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i1 = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30,
                                         15, 31);
    for (int half = 0; half < 2; half++) {
        /* even codes 32 half + 0, 2, .., 30 and odd codes 32 half + 1, .., 31 as uint32 */
        __m256i le8 = half ? _mm512_extracti64x4_epi64(le, 1) : _mm512_castsi512_si256(le);
        __m256i lo8 = half ? _mm512_extracti64x4_epi64(lo, 1) : _mm512_castsi512_si256(lo);
        __m256i he8 = half ? _mm512_extracti64x4_epi64(he, 1) : _mm512_castsi512_si256(he);
        __m256i ho8 = half ? _mm512_extracti64x4_epi64(ho, 1) : _mm512_castsi512_si256(ho);
        __m512i e = _mm512_add_epi32(_mm512_cvtepu16_epi32(le8),
                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(he8), 8));
        __m512i o = _mm512_add_epi32(_mm512_cvtepu16_epi32(lo8),
                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(ho8), 8));
        __m512i s0 = _mm512_permutex2var_epi32(e, i0, o), s1 = _mm512_permutex2var_epi32(e, i1, o);
        /* multiply, then add: the scalar kernel's rounding (no FMA) */
        _mm512_storeu_ps(out + 32 * half,
                         _mm512_add_ps(_mm512_mul_ps(vs, _mm512_cvtepi32_ps(s0)), vb));
        _mm512_storeu_ps(out + 32 * half + 16,
                         _mm512_add_ps(_mm512_mul_ps(vs, _mm512_cvtepi32_ps(s1)), vb));
    }
}

/* 64 * NB codes (NB = 1 or 2): out[i] = scale * sum_j q[j][c_i[j]] + bias, exactly as
 * ann_pq_adc_rows_u16. Each 16-bit entry is looked up as two bytes from the planes
 * (ann_pq_lut16_planes): a 256-entry byte table is four registers, read with two vpermt2b
 * (7 index bits) and a blend on bit 7. Low and high bytes are summed separately in 16-bit
 * lanes (at most 255 m, no overflow for m <= 257), even and odd codes apart, and combined as
 * lo + 256 hi at the end, so the integer sum is the scalar one. The eight table registers of
 * a sub-quantizer are loaded once for 128 codes (NB = 2): with 64 the loads (512 bytes per
 * sub-quantizer) were the limit. */
VBMI_INLINE void pq_adc_vbmi(const uint8_t *planes, const uint8_t *codes, int m, int NB,
                             float scale, float bias, float *out)
{
    __m512i t[2][64];
#pragma GCC unroll 2
    for (int k = 0; k < NB; k++) {
        pq_transpose64(codes + (size_t)k * 64 * m, m / 8, t[k]);
    }
    const __m512i low = _mm512_set1_epi16(0xff);
    __m512i le[2], lo[2], he[2], ho[2];
#pragma GCC unroll 2
    for (int k = 0; k < NB; k++) le[k] = lo[k] = he[k] = ho[k] = _mm512_setzero_si512();
    for (int j = 0; j < m; j++) {
        const uint8_t *p = planes + (size_t)j * 512;
        __m512i T0 = _mm512_loadu_si512(p), T1 = _mm512_loadu_si512(p + 64);
        __m512i T2 = _mm512_loadu_si512(p + 128), T3 = _mm512_loadu_si512(p + 192);
        __m512i H0 = _mm512_loadu_si512(p + 256), H1 = _mm512_loadu_si512(p + 320);
        __m512i H2 = _mm512_loadu_si512(p + 384), H3 = _mm512_loadu_si512(p + 448);
#pragma GCC unroll 2
        for (int k = 0; k < NB; k++) {
            __m512i v = t[k][j];
            __mmask64 top = _mm512_movepi8_mask(v);
            __m512i l = _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(T0, v, T1),
                                               _mm512_permutex2var_epi8(T2, v, T3));
            __m512i h = _mm512_mask_blend_epi8(top, _mm512_permutex2var_epi8(H0, v, H1),
                                               _mm512_permutex2var_epi8(H2, v, H3));
            le[k] = _mm512_add_epi16(le[k], _mm512_and_si512(l, low));
            lo[k] = _mm512_add_epi16(lo[k], _mm512_srli_epi16(l, 8));
            he[k] = _mm512_add_epi16(he[k], _mm512_and_si512(h, low));
            ho[k] = _mm512_add_epi16(ho[k], _mm512_srli_epi16(h, 8));
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < NB; k++) pq_adc64_finish(le[k], lo[k], he[k], ho[k], scale, bias, out + 64 * k);
}

/* All codes of n (m a constant so the block kernel unrolls): blocks of 128, then one of 64,
 * then the rest copied into a zero-padded block of 64. */
VBMI_INLINE void pq_adc_rows_m(const uint8_t *planes, const uint8_t *codes, size_t n, int m,
                               float scale, float bias, float *out)
{
    size_t i = 0;
    for (; i + 128 <= n; i += 128)
        pq_adc_vbmi(planes, codes + i * (size_t)m, m, 2, scale, bias, out + i);
    if (i + 64 <= n) {
        pq_adc_vbmi(planes, codes + i * (size_t)m, m, 1, scale, bias, out + i);
        i += 64;
    }
    if (i < n) {
        _Alignas(64) uint8_t tail[64 * 64];
        float o[64];
        size_t r = n - i;
        memcpy(tail, codes + i * (size_t)m, r * (size_t)m);
        memset(tail + r * (size_t)m, 0, (64 - r) * (size_t)m);
        pq_adc_vbmi(planes, tail, m, 1, scale, bias, o);
        memcpy(out + i, o, r * sizeof *o);
    }
}

VBMI static void pq_adc_rows32_vbmi(const uint8_t *planes, const uint8_t *codes, size_t n,
                                    float scale, float bias, float *out)
{
    pq_adc_rows_m(planes, codes, n, 32, scale, bias, out);
}

VBMI static void pq_adc_rows64_vbmi(const uint8_t *planes, const uint8_t *codes, size_t n,
                                    float scale, float bias, float *out)
{
    pq_adc_rows_m(planes, codes, n, 64, scale, bias, out);
}

/* m = 32 and 64 (with planes); other m take the scalar kernel. */
VBMI static void pq_adc_rows_u16_vbmi(const uint16_t *q, const uint8_t *planes,
                                      const uint8_t *codes, size_t n, int m, float scale,
                                      float bias, float *out)
{
    if (planes && m == 32) pq_adc_rows32_vbmi(planes, codes, n, scale, bias, out);
    else if (planes && m == 64) pq_adc_rows64_vbmi(planes, codes, n, scale, bias, out);
    else ann_pq_adc_rows_u16(q, codes, n, m, scale, bias, out);
}
#endif /* ANN_X86 */

/* ------------------------------------------------------------------------- dispatch ---- */

static const struct ann_dist_ops ops_scalar = {
    ANN_ISA_SCALAR,      dot_scalar,          l2_scalar,          dot_rows_scalar,
    l2_rows_scalar,      gemm_nt_scalar,      dot_cols_scalar,     argmin_scalar,     sq8_dot_rows_scalar, sq8_l2_rows_scalar,
    pq_adc_rows_scalar,  pq_adc_rows_u16_scalar,
};

#if ANN_X86
static const struct ann_dist_ops ops_avx2 = {
    ANN_ISA_AVX2,        dot_avx2,          l2_avx2,          dot_rows_avx2,
    l2_rows_avx2,        gemm_nt_avx2,      dot_cols_avx2,     argmin_scalar,     sq8_dot_rows_avx2, sq8_l2_rows_avx2,
    pq_adc_rows_unrolled, pq_adc_rows_u16_scalar,
};

static const struct ann_dist_ops ops_avx512 = {
    ANN_ISA_AVX512,        dot_avx512,          l2_avx512,          dot_rows_avx512,
    l2_rows_avx512,        gemm_nt_avx512,      dot_cols_avx512,     argmin_avx512,     sq8_dot_rows_avx512, sq8_l2_rows_avx512,
    pq_adc_rows_avx512,    pq_adc_rows_u16_scalar,
};

/* The same with the VBMI byte-permute PQ scan (Ice Lake, Zen 4 and later). */
static const struct ann_dist_ops ops_avx512_vbmi = {
    ANN_ISA_AVX512,        dot_avx512,          l2_avx512,          dot_rows_avx512,
    l2_rows_avx512,        gemm_nt_avx512,      dot_cols_avx512,     argmin_avx512,     sq8_dot_rows_avx512, sq8_l2_rows_avx512,
    pq_adc_rows_avx512,    pq_adc_rows_u16_vbmi,
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
    case ANN_ISA_AVX512:
        return __builtin_cpu_supports("avx512vbmi") ? &ops_avx512_vbmi : &ops_avx512;
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
