/* Private x86 kernel bodies shared by kernels_avx2.c and kernels_avx512.c, written once with
 * 256-bit intrinsics and instantiated per ISA (the including file sets the target pragma and
 * these macros):
 *   KX(name)        suffixes a name with the ISA
 *   KX_VNNI         1 to use vpdpbusd (AVX-512 VNNI + VL) for u8 x s8 dots
 *   KX_NR_*, KX_NC_* register tile: weight rows x activation rows per type family
 *   KX_FLOAT_ONLY   1 to build only the f32/f16/bf16 bodies (the AVX-512 file has its own
 *                   512-bit quantized ones)
 * A tile keeps NR x NC accumulators in registers; each weight block is decoded once per tile
 * and met with NC activation rows, which is what makes prompt processing compute-bound
 * rather than weight-bandwidth-bound. The scalar reference for every function here is the
 * matching dot_* in kernels.c. */
#ifndef ENGINE_KERNELS_X86_H
#define ENGINE_KERNELS_X86_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "engine/kernels_impl.h"

#define KX_AI static inline __attribute__((always_inline))
/* Register tiles only stay in registers when their small loops are fully unrolled. */
#define KX_UNROLL _Pragma("GCC unroll 8")

/* Activation rows grouped so a weight chunk's tiles reuse them from L2. */
#define KX_CGROUP 64

KX_AI float KX(hsum)(__m256 v)
{
    __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

KX_AI float KX(h2f)(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* acc + sum over groups of 4 of u8(u) * s8(s), as 8 int32 lanes. */
KX_AI __m256i KX(dot_u8s8)(__m256i acc, __m256i u, __m256i s)
{
#if KX_VNNI
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* ---------------------------------------------------------------- f32 / f16 / bf16 */

enum { KX_W_F32, KX_W_F16, KX_W_BF16 };

KX_AI __m256 KX(loadw)(const uint8_t *row, int i, const int kind)
{
    if (kind == KX_W_F32) return _mm256_loadu_ps((const float *)row + i);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (kind == KX_W_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

KX_AI float KX(scalarw)(const uint8_t *row, int i, const int kind)
{
    if (kind == KX_W_F32) return ((const float *)row)[i];
    uint16_t h;
    memcpy(&h, row + 2 * (size_t)i, 2);
    if (kind == KX_W_F16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

KX_AI void KX(tile_f)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                      float *Y, int ldy, int r, int c, int cols, const int kind, const int NR,
                      const int NC)
{
    __m256 acc[4][4];
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm256_setzero_ps();
    const uint8_t *wr[4];
    const float *xr[4];
    KX_UNROLL
    for (int i = 0; i < NR; i++) wr[i] = W + (size_t)(r + i) * wstride;
    KX_UNROLL
    for (int j = 0; j < NC; j++) xr[j] = (const float *)(A + (size_t)(c + j) * astride);
    int k = 0;
    for (; k + 8 <= cols; k += 8) {
        __m256 w[4];
        KX_UNROLL
        for (int i = 0; i < NR; i++) w[i] = KX(loadw)(wr[i], k, kind);
        KX_UNROLL
        for (int j = 0; j < NC; j++) {
            __m256 x = _mm256_loadu_ps(xr[j] + k);
            KX_UNROLL
            for (int i = 0; i < NR; i++) acc[i][j] = _mm256_fmadd_ps(w[i], x, acc[i][j]);
        }
    }
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) {
            float s = KX(hsum)(acc[i][j]);
            for (int kk = k; kk < cols; kk++) s += KX(scalarw)(wr[i], kk, kind) * xr[j][kk];
            Y[(size_t)(c + j) * ldy + r + i] = s;
        }
}

/* Quantized activation rows as the tiles see them (see kernels_impl.h). */
struct KX(act8) {
    const int8_t *qs;
    const float *dx;
    const int32_t *nsx;
};

struct KX(actk) {
    const int8_t *qs;
    const float *d;
    const int16_t *bsum;
    const int16_t *bsum32;
};

#if !KX_FLOAT_ONLY
/* ---------------------------------------------------------------- q4_0 / q8_0 */

KX_AI void KX(tile_q80)(const uint8_t *W, size_t wstride, const struct KX(act8) *a, float *Y,
                        int ldy, int r, int c, int nb, const int is_q4, const int NR, const int NC)
{
    __m256 acc[4][4];
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int b = 0; b < nb; b++) {
        __m256i q[4];
        __m256 dw[4];
        KX_UNROLL
        for (int i = 0; i < NR; i++) {
            const uint8_t *row = W + (size_t)(r + i) * wstride;
            if (is_q4) {
                const struct blk_q4_0 *blk = (const struct blk_q4_0 *)row + b;
                __m128i raw = _mm_loadu_si128((const __m128i *)blk->qs);
                q[i] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), m4);
                dw[i] = _mm256_set1_ps(KX(h2f)(blk->d));
            } else {
                const struct blk_q8_0 *blk = (const struct blk_q8_0 *)row + b;
                __m256i v = _mm256_loadu_si256((const __m256i *)blk->qs);
#if KX_VNNI
                q[i] = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)); /* w + 128 as u8 */
#else
                q[i] = v;
#endif
                dw[i] = _mm256_set1_ps(KX(h2f)(blk->d));
            }
        }
        KX_UNROLL
        for (int j = 0; j < NC; j++) {
            __m256i y = _mm256_loadu_si256((const __m256i *)(a[j].qs + 32 * b));
            __m256 dy = _mm256_loadu_ps(a[j].dx + 8 * b);
            __m256i p0;
            if (is_q4) {
                p0 = _mm256_loadu_si256((const __m256i *)(a[j].nsx + 8 * b)); /* -sum(y) per lane */
            } else {
#if KX_VNNI
                p0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(a[j].nsx + 8 * b)), 4); /* 8 lanes x -16 sum */
#else
                p0 = _mm256_setzero_si256();
#endif
            }
            KX_UNROLL
            for (int i = 0; i < NR; i++) {
                __m256i p;
                if (is_q4) {
                    p = KX(dot_u8s8)(p0, q[i], y);
                } else {
#if KX_VNNI
                    p = _mm256_dpbusd_epi32(p0, q[i], y);
#else
                    p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(_mm256_abs_epi8(q[i]), _mm256_sign_epi8(y, q[i])),
                        _mm256_set1_epi16(1));
#endif
                }
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[i], dy), acc[i][j]);
            }
        }
    }
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = KX(hsum)(acc[i][j]);
}

/* ---------------------------------------------------------------- q4_K / q6_K */

/* Per super-block: sum_j sc_j * dot(q_j, y_j) in int32 lanes (scales applied by madd), then
 * f32: d*dy*isum - dmin*dy*sum_j m_j*bsum32_j. */
KX_AI void KX(tile_q4k)(const uint8_t *W, size_t wstride, const struct KX(actk) *a, float *Y,
                        int ldy, int r, int c, int nk, const int NR, const int NC)
{
    __m256 acc[4][4];
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int b = 0; b < nk; b++) {
        const struct blk_q4_k *blk[4];
        uint32_t u[4][4]; /* per row: 8 scales then 8 mins, one byte each */
        __m256i isum[4][4];
        KX_UNROLL
        for (int i = 0; i < NR; i++) {
            blk[i] = (const struct blk_q4_k *)(W + (size_t)(r + i) * wstride) + b;
            kern_q4k_unpack(blk[i]->scales, u[i]);
            KX_UNROLL
            for (int j = 0; j < NC; j++) isum[i][j] = _mm256_setzero_si256();
        }
        KX_UNROLL
        for (int s = 0; s < 8; s++) {
            __m256i q[4], scv[4];
            KX_UNROLL
            for (int i = 0; i < NR; i++) {
                __m256i raw = _mm256_loadu_si256((const __m256i *)(blk[i]->qs + 32 * (s / 2)));
                q[i] = (s & 1) ? _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)
                               : _mm256_and_si256(raw, m4);
                scv[i] = _mm256_set1_epi16(((const uint8_t *)u[i])[s]);
            }
            KX_UNROLL
            for (int j = 0; j < NC; j++) {
                __m256i y = _mm256_loadu_si256((const __m256i *)(a[j].qs + 256 * b + 32 * s));
                KX_UNROLL
                for (int i = 0; i < NR; i++)
                    isum[i][j] = _mm256_add_epi32(
                        isum[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i], y), scv[i]));
            }
        }
        KX_UNROLL
        for (int i = 0; i < NR; i++) {
            __m128i mins = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)&u[i][2]));
            float d = KX(h2f)(blk[i]->d), dmin = KX(h2f)(blk[i]->dmin);
            KX_UNROLL
            for (int j = 0; j < NC; j++) {
                float dy = a[j].d[b];
                __m128i bs = _mm_loadu_si128((const __m128i *)(a[j].bsum32 + 8 * b));
                __m256 msum = _mm256_zextps128_ps256(_mm_cvtepi32_ps(_mm_madd_epi16(mins, bs)));
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_set1_ps(d * dy), acc[i][j]);
                acc[i][j] = _mm256_fnmadd_ps(msum, _mm256_set1_ps(dmin * dy), acc[i][j]);
            }
        }
    }
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = KX(hsum)(acc[i][j]);
}

/* Per super-block: sum_k sc_k * dot(q_k, y_k) with q in 0..63, minus 32 * sum_k sc_k*bsum_k. */
KX_AI void KX(tile_q6k)(const uint8_t *W, size_t wstride, const struct KX(actk) *a, float *Y,
                        int ldy, int r, int c, int nk, const int NR, const int NC)
{
    __m256 acc[4][4];
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x30);
    for (int b = 0; b < nk; b++) {
        const struct blk_q6_k *blk[4];
        __m256i isum[4][4];
        KX_UNROLL
        for (int i = 0; i < NR; i++) {
            blk[i] = (const struct blk_q6_k *)(W + (size_t)(r + i) * wstride) + b;
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk[i]->scales));
            KX_UNROLL
            for (int j = 0; j < NC; j++) {
                __m256i bs = _mm256_loadu_si256((const __m256i *)(a[j].bsum + 16 * b));
                isum[i][j] = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
                isum[i][j] = _mm256_sub_epi32(_mm256_setzero_si256(), isum[i][j]);
            }
        }
        KX_UNROLL
        for (int h = 0; h < 2; h++)
            KX_UNROLL
            for (int k = 0; k < 4; k++) {
                __m256i q[4], scv[4];
                KX_UNROLL
                for (int i = 0; i < NR; i++) {
                    const uint8_t *ql = blk[i]->ql + 64 * h, *qh = blk[i]->qh + 32 * h;
                    __m256i l = _mm256_loadu_si256((const __m256i *)(ql + 32 * (k & 1)));
                    __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
                    l = k < 2 ? _mm256_and_si256(l, m4) : _mm256_and_si256(_mm256_srli_epi16(l, 4), m4);
                    __m256i hi;
                    switch (k) {
                    case 0: hi = _mm256_and_si256(_mm256_slli_epi16(hb, 4), m3); break;
                    case 1: hi = _mm256_and_si256(_mm256_slli_epi16(hb, 2), m3); break;
                    case 2: hi = _mm256_and_si256(hb, m3); break;
                    default: hi = _mm256_and_si256(_mm256_srli_epi16(hb, 2), m3); break;
                    }
                    q[i] = _mm256_or_si256(l, hi);
                    int si = h * 8 + 2 * k;
                    scv[i] = _mm256_set_m128i(_mm_set1_epi16(blk[i]->scales[si + 1]),
                                              _mm_set1_epi16(blk[i]->scales[si]));
                }
                KX_UNROLL
                for (int j = 0; j < NC; j++) {
                    __m256i y = _mm256_loadu_si256((const __m256i *)(a[j].qs + 256 * b + 128 * h + 32 * k));
                    KX_UNROLL
                    for (int i = 0; i < NR; i++)
                        isum[i][j] = _mm256_add_epi32(
                            isum[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(q[i], y), scv[i]));
                }
            }
        KX_UNROLL
        for (int i = 0; i < NR; i++) {
            float d = KX(h2f)(blk[i]->d);
            KX_UNROLL
            for (int j = 0; j < NC; j++)
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]),
                                            _mm256_set1_ps(d * a[j].d[b]), acc[i][j]);
        }
    }
    KX_UNROLL
    for (int i = 0; i < NR; i++)
        KX_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = KX(hsum)(acc[i][j]);
}

#endif

/* ---------------------------------------------------------------- row jobs */

/* Walks [r0, r1) x [0, n) in tiles of NR x NC (then 1 x nc for leftover rows), activation
 * rows in groups of KX_CGROUP. CALL(nr, nc) expands to the tile call with constants. */
#define KX_WALK(NR_, NC_, CALL)                                                                \
    for (int cg = 0; cg < n; cg += KX_CGROUP) {                                                \
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;                                      \
        for (int r = r0; r < r1;) {                                                            \
            int full = r1 - r >= NR_;                                                          \
            for (int c = cg; c < ce;) {                                                        \
                int nc = ce - c >= NC_ ? NC_ : ce - c;                                         \
                if (full) {                                                                    \
                    if (nc == NC_) CALL(NR_, NC_); else if (NC_ > 3 && nc == 3) CALL(NR_, 3); else if (NC_ > 2 && nc == 2) CALL(NR_, 2); else CALL(NR_, 1);                                                                          \
                } else {                                                                       \
                    if (nc == NC_) CALL(1, NC_); else if (NC_ > 3 && nc == 3) CALL(1, 3); else if (NC_ > 2 && nc == 2) CALL(1, 2); else CALL(1, 1);                                                                          \
                }                                                                              \
                c += nc;                                                                       \
            }                                                                                  \
            r += full ? NR_ : 1;                                                               \
        }                                                                                      \
    }

#define KX_CALL_F(nr, nc) KX(tile_f)(W, wstride, A, astride, Y, ldy, r, c, cols, kind_, nr, nc)

static void KX(rows_f32)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                         float *Y, int ldy, int r0, int r1, int n, int cols)
{
    const int kind_ = KX_W_F32;
    KX_WALK(KX_NR_F, KX_NC_F, KX_CALL_F)
}

static void KX(rows_f16)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                         float *Y, int ldy, int r0, int r1, int n, int cols)
{
    const int kind_ = KX_W_F16;
    KX_WALK(KX_NR_F, KX_NC_F, KX_CALL_F)
}

static void KX(rows_bf16)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                          float *Y, int ldy, int r0, int r1, int n, int cols)
{
    const int kind_ = KX_W_BF16;
    KX_WALK(KX_NR_F, KX_NC_F, KX_CALL_F)
}

#if !KX_FLOAT_ONLY
#define KX_CALL_Q8(nr, nc)                                                                     \
    KX(tile_q80)(W, wstride, act + (c - cg), Y, ldy, r, c, cols / 32, is_q4, nr, nc)

KX_AI void KX(rows_q8_common)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                              float *Y, int ldy, int r0, int r1, int n, int cols, const int is_q4)
{
    struct KX(act8) act[KX_CGROUP];
    for (int cg = 0; cg < n; cg += KX_CGROUP) {
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;
        for (int c = cg; c < ce; c++) {
            struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_0, A + (size_t)c * astride, cols);
            act[c - cg] = (struct KX(act8)){ar.qs, ar.dx, ar.nsx};
        }
        for (int r = r0; r < r1;) {
            int full = r1 - r >= KX_NR_Q8;
            for (int c = cg; c < ce;) {
                int nc = ce - c >= KX_NC_Q8 ? KX_NC_Q8 : ce - c;
                if (full) {
                    if (nc == KX_NC_Q8) KX_CALL_Q8(KX_NR_Q8, KX_NC_Q8); else if (KX_NC_Q8 > 3 && nc == 3) KX_CALL_Q8(KX_NR_Q8, 3); else if (KX_NC_Q8 > 2 && nc == 2) KX_CALL_Q8(KX_NR_Q8, 2); else KX_CALL_Q8(KX_NR_Q8, 1);
                } else {
                    if (nc == KX_NC_Q8) KX_CALL_Q8(1, KX_NC_Q8); else if (KX_NC_Q8 > 3 && nc == 3) KX_CALL_Q8(1, 3); else if (KX_NC_Q8 > 2 && nc == 2) KX_CALL_Q8(1, 2); else KX_CALL_Q8(1, 1);
                }
                c += nc;
            }
            r += full ? KX_NR_Q8 : 1;
        }
    }
}

static void KX(rows_q8_0)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                          float *Y, int ldy, int r0, int r1, int n, int cols)
{
    KX(rows_q8_common)(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 0);
}

static void KX(rows_q4_0)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                          float *Y, int ldy, int r0, int r1, int n, int cols)
{
    KX(rows_q8_common)(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 1);
}

#define KX_ROWS_K(name, tilefn_)                                                               \
    static void KX(name)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,  \
                         float *Y, int ldy, int r0, int r1, int n, int cols)                   \
    {                                                                                          \
        struct KX(actk) act[KX_CGROUP];                                                        \
        for (int cg = 0; cg < n; cg += KX_CGROUP) {                                            \
            int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;                                  \
            for (int c = cg; c < ce; c++) {                                                    \
                struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_K, A + (size_t)c * astride, cols); \
                act[c - cg] = (struct KX(actk)){ar.qs, ar.d, ar.bsum, ar.bsum32};              \
            }                                                                                  \
            for (int r = r0; r < r1;) {                                                        \
                int full = r1 - r >= KX_NR_K;                                                  \
                for (int c = cg; c < ce;) {                                                    \
                    int nc = ce - c >= KX_NC_K ? KX_NC_K : ce - c;                             \
                    if (full) {                                                                \
                        if (nc == KX_NC_K) KX_CALL_K_(tilefn_, KX_NR_K, KX_NC_K); else if (KX_NC_K > 3 && nc == 3) KX_CALL_K_(tilefn_, KX_NR_K, 3); else if (KX_NC_K > 2 && nc == 2) KX_CALL_K_(tilefn_, KX_NR_K, 2); else KX_CALL_K_(tilefn_, KX_NR_K, 1);                                                                      \
                    } else {                                                                   \
                        if (nc == KX_NC_K) KX_CALL_K_(tilefn_, 1, KX_NC_K); else if (KX_NC_K > 3 && nc == 3) KX_CALL_K_(tilefn_, 1, 3); else if (KX_NC_K > 2 && nc == 2) KX_CALL_K_(tilefn_, 1, 2); else KX_CALL_K_(tilefn_, 1, 1);                                                                      \
                    }                                                                          \
                    c += nc;                                                                   \
                }                                                                              \
                r += full ? KX_NR_K : 1;                                                       \
            }                                                                                  \
        }                                                                                      \
    }
#define KX_CALL_K_(tilefn_, nr, nc)                                                            \
    tilefn_(W, wstride, act + (c - cg), Y, ldy, r, c, cols / 256, nr, nc)

KX_ROWS_K(rows_q4_k, KX(tile_q4k))
KX_ROWS_K(rows_q6_k, KX(tile_q6k))

#endif

KX_AI void KX(fill_ops)(struct kern_ops *o)
{
    memset(o, 0, sizeof *o);
    o->rows[GGML_TYPE_F32] = KX(rows_f32);
    o->rows[GGML_TYPE_F16] = KX(rows_f16);
    o->rows[GGML_TYPE_BF16] = KX(rows_bf16);
#if !KX_FLOAT_ONLY
    o->rows[GGML_TYPE_Q8_0] = KX(rows_q8_0);
    o->rows[GGML_TYPE_Q4_0] = KX(rows_q4_0);
    o->rows[GGML_TYPE_Q4_K] = KX(rows_q4_k);
    o->rows[GGML_TYPE_Q6_K] = KX(rows_q6_k);
#endif
}

#endif
