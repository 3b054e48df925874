/* AVX-512 (F, BW, VL, VNNI) kernels: the bodies of kernels_x86.h built with vpdpbusd for the
 * u8 x s8 dots and the 32 vector registers AVX-512 gives (larger register tiles). See
 * kernels_avx2.c for how the target is selected. */
#include "engine/kernels_impl.h"

#if defined(__x86_64__)
#include <immintrin.h> /* before the target switch: the intrinsics carry their own targets */
/* GCC: a target pragma for the rest of the file; clang (the libFuzzer build) has no such
 * pragma and takes the same features as an attribute applied to every function below. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")
#endif

#define KX(name) name##_avx512
#define KX_VNNI 1
#define KX_FLOAT_ONLY 1
#define KX_NR_F 4
#define KX_NC_F 4
#define KX_NR_Q8 4
#define KX_NC_Q8 4
#define KX_NR_K 2
#define KX_NC_K 4
#include "engine/kernels_x86.h"

/* ---- 512-bit tiles for the quantized types: two Q4_0/Q8_0 blocks, or 64 elements of a K
 * super-block, per vector. Same arithmetic (and scalar references) as the 256-bit bodies. */

#define KZ_UNROLL _Pragma("GCC unroll 8")
/* Matvec (n = 1) row tile and software prefetch distance in blocks (0 = off). */
#ifndef KZ_NR_MV
#define KZ_NR_MV 8
#endif
#ifndef KZ_PREFETCH
#define KZ_PREFETCH 16
#endif

static inline __attribute__((always_inline)) __m512 kz_pair_ps(float a, float b)
{
    return _mm512_mask_mov_ps(_mm512_set1_ps(a), 0xFF00, _mm512_set1_ps(b));
}

static inline __attribute__((always_inline)) void
kz_tile_q80(const uint8_t *W, size_t wstride, const struct KX(act8) *a, float *Y, int ldy, int r,
            int c, int nb, const int is_q4, const int NR, const int NC)
{
    __m512 acc[8][4];
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), perm = _mm512_setr_epi64(0, 1, 4, 5, 2, 3, 6, 7);
    const __m512i x80 = _mm512_set1_epi8((char)0x80);
    for (int b = 0; b < nb; b += 2) {
        const int two = b + 1 < nb;
        __m512i q[8];
        __m512 dw[8];
        KZ_UNROLL
        for (int i = 0; i < NR; i++) {
            const uint8_t *row = W + (size_t)(r + i) * wstride;
#if KZ_PREFETCH
            _mm_prefetch((const char *)row + (size_t)(b + KZ_PREFETCH) * (is_q4 ? 18 : 34), _MM_HINT_T0);
#endif
            if (is_q4) {
                const struct blk_q4_0 *blk = (const struct blk_q4_0 *)row + b;
                __m128i r0 = _mm_loadu_si128((const __m128i *)blk[0].qs);
                __m128i r1 = two ? _mm_loadu_si128((const __m128i *)blk[1].qs) : _mm_setzero_si128();
                __m256i raw = _mm256_inserti128_si256(_mm256_castsi128_si256(r0), r1, 1);
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(raw), _mm256_srli_epi16(raw, 4), 1);
                q[i] = _mm512_and_si512(_mm512_permutexvar_epi64(perm, z), m4);
                dw[i] = kz_pair_ps(_cvtsh_ss(blk[0].d), two ? _cvtsh_ss(blk[1].d) : 0.0f);
            } else {
                const struct blk_q8_0 *blk = (const struct blk_q8_0 *)row + b;
                __m256i v0 = _mm256_loadu_si256((const __m256i *)blk[0].qs);
                __m512i v = two ? _mm512_inserti64x4(_mm512_castsi256_si512(v0),
                                                     _mm256_loadu_si256((const __m256i *)blk[1].qs), 1)
                                : _mm512_zextsi256_si512(v0);
                q[i] = _mm512_xor_si512(v, x80); /* w + 128 as u8 */
                if (!two) q[i] = _mm512_zextsi256_si512(_mm512_castsi512_si256(q[i]));
                dw[i] = kz_pair_ps(_cvtsh_ss(blk[0].d), two ? _cvtsh_ss(blk[1].d) : 0.0f);
            }
        }
        KZ_UNROLL
        for (int j = 0; j < NC; j++) {
            __m512i y, ns;
            __m512 dy;
            if (two) {
                y = _mm512_loadu_si512((const void *)(a[j].qs + 32 * b));
                dy = _mm512_loadu_ps(a[j].dx + 8 * b);
                ns = _mm512_loadu_si512((const void *)(a[j].nsx + 8 * b));
            } else { /* last odd block: upper half zero, never read past the row */
                y = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(a[j].qs + 32 * b)));
                dy = _mm512_zextps256_ps512(_mm256_loadu_ps(a[j].dx + 8 * b));
                ns = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(a[j].nsx + 8 * b)));
            }
            if (!is_q4) ns = _mm512_slli_epi32(ns, 4); /* 8 lanes x -16 sum = -128 sum */
            KZ_UNROLL
            for (int i = 0; i < NR; i++) {
                __m512i p = _mm512_dpbusd_epi32(ns, q[i], y);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(dw[i], dy), acc[i][j]);
            }
        }
    }
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
}

static inline __attribute__((always_inline)) void
kz_tile_q4k(const uint8_t *W, size_t wstride, const struct KX(actk) *a, float *Y, int ldy, int r,
            int c, int nk, const int NR, const int NC)
{
    __m512 acc[4][4];
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i shv = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    /* permutexvar indices spreading scale 2g over the low 256 bits and 2g+1 over the high */
    const __m512i sidx[4] = {
        _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(1), 1),
        _mm512_inserti64x4(_mm512_set1_epi16(2), _mm256_set1_epi16(3), 1),
        _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(5), 1),
        _mm512_inserti64x4(_mm512_set1_epi16(6), _mm256_set1_epi16(7), 1),
    };
    for (int b = 0; b < nk; b++) {
        const struct blk_q4_k *blk[4];
        __m512i sc16[4];
        __m128i mins[4];
        __m512i isum[4][4];
        KZ_UNROLL
        for (int i = 0; i < NR; i++) {
            blk[i] = (const struct blk_q4_k *)(W + (size_t)(r + i) * wstride) + b;
            uint32_t u[4];
            kern_q4k_unpack(blk[i]->scales, u);
            __m128i su = _mm_loadu_si128((const __m128i *)u);
            sc16[i] = _mm512_castsi128_si512(_mm_cvtepu8_epi16(su));
            mins[i] = _mm_cvtepu8_epi16(_mm_srli_si128(su, 8));
            KZ_UNROLL
            for (int j = 0; j < NC; j++) isum[i][j] = _mm512_setzero_si512();
        }
        KZ_UNROLL
        for (int g = 0; g < 4; g++) {
            __m512i q[4], scv[4];
            KZ_UNROLL
            for (int i = 0; i < NR; i++) {
                __m512i raw = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk[i]->qs + 32 * g)));
                q[i] = _mm512_and_si512(_mm512_srlv_epi16(raw, shv), m4); /* [low | high nibbles] */
                scv[i] = _mm512_permutexvar_epi16(sidx[g], sc16[i]);
            }
            KZ_UNROLL
            for (int j = 0; j < NC; j++) {
                __m512i y = _mm512_loadu_si512((const void *)(a[j].qs + 256 * b + 64 * g));
                KZ_UNROLL
                for (int i = 0; i < NR; i++)
                    isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(q[i], y), scv[i]);
            }
        }
        KZ_UNROLL
        for (int i = 0; i < NR; i++) {
            float d = _cvtsh_ss(blk[i]->d), dmin = _cvtsh_ss(blk[i]->dmin);
            KZ_UNROLL
            for (int j = 0; j < NC; j++) {
                float dy = a[j].d[b];
                __m128i bs = _mm_loadu_si128((const __m128i *)(a[j].bsum32 + 8 * b));
                __m512 msum = _mm512_zextps128_ps512(_mm_cvtepi32_ps(_mm_madd_epi16(mins[i], bs)));
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][j]), _mm512_set1_ps(d * dy), acc[i][j]);
                acc[i][j] = _mm512_fnmadd_ps(msum, _mm512_set1_ps(dmin * dy), acc[i][j]);
            }
        }
    }
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
}

static inline __attribute__((always_inline)) void
kz_tile_q6k(const uint8_t *W, size_t wstride, const struct KX(actk) *a, float *Y, int ldy, int r,
            int c, int nk, const int NR, const int NC)
{
    __m512 acc[4][4];
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) acc[i][j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x30);
    /* per-256-bit-half shift counts: quarter pair (0,1) takes qh bits 0-1 / 2-3 to 4-5,
     * pair (2,3) bits 4-5 / 6-7 */
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i widx = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                          1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int b = 0; b < nk; b++) {
        const struct blk_q6_k *blk[4];
        __m512i isum[4][4];
        KZ_UNROLL
        for (int i = 0; i < NR; i++) {
            blk[i] = (const struct blk_q6_k *)(W + (size_t)(r + i) * wstride) + b;
            __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)blk[i]->scales));
            KZ_UNROLL
            for (int j = 0; j < NC; j++) {
                __m256i bs = _mm256_loadu_si256((const __m256i *)(a[j].bsum + 16 * b));
                __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(sc16, bs), 5);
                isum[i][j] = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), corr));
            }
        }
        KZ_UNROLL
        for (int h = 0; h < 2; h++)
            KZ_UNROLL
            for (int p = 0; p < 2; p++) {
                __m512i q[4], scv[4];
                KZ_UNROLL
                for (int i = 0; i < NR; i++) {
                    __m512i L = _mm512_loadu_si512((const void *)(blk[i]->ql + 64 * h));
                    __m512i hb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk[i]->qh + 32 * h)));
                    __m512i lo, hi;
                    if (p == 0) {
                        lo = _mm512_and_si512(L, m4);
                        hi = _mm512_and_si512(_mm512_sllv_epi16(hb, sh01), m3);
                    } else {
                        lo = _mm512_and_si512(_mm512_srli_epi16(L, 4), m4);
                        hi = _mm512_and_si512(_mm512_srlv_epi16(hb, sh23), m3);
                    }
                    q[i] = _mm512_or_si512(lo, hi);
                    int32_t s4;
                    memcpy(&s4, blk[i]->scales + 8 * h + 4 * p, 4);
                    __m128i s16 = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(s4));
                    scv[i] = _mm512_permutexvar_epi16(widx, _mm512_castsi128_si512(s16));
                }
                KZ_UNROLL
                for (int j = 0; j < NC; j++) {
                    __m512i y = _mm512_loadu_si512((const void *)(a[j].qs + 256 * b + 128 * h + 64 * p));
                    KZ_UNROLL
                    for (int i = 0; i < NR; i++)
                        isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(q[i], y), scv[i]);
                }
            }
        KZ_UNROLL
        for (int i = 0; i < NR; i++) {
            float d = _cvtsh_ss(blk[i]->d);
            KZ_UNROLL
            for (int j = 0; j < NC; j++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[i][j]),
                                            _mm512_set1_ps(d * a[j].d[b]), acc[i][j]);
        }
    }
    KZ_UNROLL
    for (int i = 0; i < NR; i++)
        KZ_UNROLL
        for (int j = 0; j < NC; j++) Y[(size_t)(c + j) * ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Tile walk as in kernels_x86.h: NR x NC tiles, then 1 x nc for leftover rows. */
#define KZ_DISPATCH(CALL, NR_, NC_)                                                            \
    do {                                                                                       \
        if (full) {                                                                            \
            if (nc == NC_) CALL(NR_, NC_);                                                     \
            else if (NC_ > 3 && nc == 3) CALL(NR_, 3);                                         \
            else if (NC_ > 2 && nc == 2) CALL(NR_, 2);                                         \
            else CALL(NR_, 1);                                                                 \
        } else {                                                                               \
            if (nc == NC_) CALL(1, NC_);                                                       \
            else if (NC_ > 3 && nc == 3) CALL(1, 3);                                           \
            else if (NC_ > 2 && nc == 2) CALL(1, 2);                                           \
            else CALL(1, 1);                                                                   \
        }                                                                                      \
    } while (0)

#define KZ_NR_Q8 4
#define KZ_NC_Q8 4
#define KZ_NR_K 2
#define KZ_NC_K 4

#define KZ_CALL_Q8(nr, nc) kz_tile_q80(W, wstride, act + (c - cg), Y, ldy, r, c, cols / 32, is_q4, nr, nc)

static inline __attribute__((always_inline)) void
kz_rows_q8(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride, float *Y, int ldy,
           int r0, int r1, int n, int cols, const int is_q4)
{
    struct KX(act8) act[KX_CGROUP];
    for (int cg = 0; cg < n; cg += KX_CGROUP) {
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;
        for (int c = cg; c < ce; c++) {
            struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_0, A + (size_t)c * astride, cols);
            act[c - cg] = (struct KX(act8)){ar.qs, ar.dx, ar.nsx};
        }
        if (n == 1) { /* matvec: more rows in flight, the weights come from DRAM */
            int r = r0;
            for (; r + KZ_NR_MV <= r1; r += KZ_NR_MV)
                kz_tile_q80(W, wstride, act, Y, ldy, r, 0, cols / 32, is_q4, KZ_NR_MV, 1);
            for (; r < r1; r++) kz_tile_q80(W, wstride, act, Y, ldy, r, 0, cols / 32, is_q4, 1, 1);
            continue;
        }
        for (int r = r0; r < r1;) {
            int full = r1 - r >= KZ_NR_Q8;
            for (int c = cg; c < ce;) {
                int nc = ce - c >= KZ_NC_Q8 ? KZ_NC_Q8 : ce - c;
                KZ_DISPATCH(KZ_CALL_Q8, KZ_NR_Q8, KZ_NC_Q8);
                c += nc;
            }
            r += full ? KZ_NR_Q8 : 1;
        }
    }
}

static void kz_rows_q8_0(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                         float *Y, int ldy, int r0, int r1, int n, int cols)
{
    kz_rows_q8(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 0);
}

static void kz_rows_q4_0(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                         float *Y, int ldy, int r0, int r1, int n, int cols)
{
    kz_rows_q8(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 1);
}

#define KZ_ROWS_K(name, tilefn)                                                                \
    static void name(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,      \
                     float *Y, int ldy, int r0, int r1, int n, int cols)                       \
    {                                                                                          \
        struct KX(actk) act[KX_CGROUP];                                                        \
        for (int cg = 0; cg < n; cg += KX_CGROUP) {                                            \
            int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;                                  \
            for (int c = cg; c < ce; c++) {                                                    \
                struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_K, A + (size_t)c * astride, cols); \
                act[c - cg] = (struct KX(actk)){ar.qs, ar.d, ar.bsum, ar.bsum32};              \
            }                                                                                  \
            if (n == 1) { /* matvec: 4 rows in flight */                                     \
                int r = r0, c = 0;                                                             \
                for (; r + 4 <= r1; r += 4) KZ_CALL_K(4, 1);                                   \
                for (; r < r1; r++) KZ_CALL_K(1, 1);                                           \
                continue;                                                                      \
            }                                                                                  \
            for (int r = r0; r < r1;) {                                                        \
                int full = r1 - r >= KZ_NR_K;                                                  \
                for (int c = cg; c < ce;) {                                                    \
                    int nc = ce - c >= KZ_NC_K ? KZ_NC_K : ce - c;                             \
                    KZ_DISPATCH(KZ_CALL_K, KZ_NR_K, KZ_NC_K);                                  \
                    c += nc;                                                                   \
                }                                                                              \
                r += full ? KZ_NR_K : 1;                                                       \
            }                                                                                  \
        }                                                                                      \
    }
#define KZ_CALL_K(nr, nc) TILEFN(W, wstride, act + (c - cg), Y, ldy, r, c, cols / 256, nr, nc)

#define TILEFN kz_tile_q4k
KZ_ROWS_K(kz_rows_q4_k, kz_tile_q4k)
#undef TILEFN
#define TILEFN kz_tile_q6k
KZ_ROWS_K(kz_rows_q6_k, kz_tile_q6k)
#undef TILEFN

/* ---- packed Q4_0_R16 / Q8_0_R16 (layouts in kernels_impl.h; scalar references
 * dot_q4_0_r16 / dot_q8_0_r16 in kernels.c). One 512-bit load holds 4 bytes of each of 16
 * rows; vpdpbusd against the activation's matching 4 bytes broadcast to every lane gives the
 * 16 rows' partial sums in the 16 lanes. A block's sum starts at -8 * sum(y) (Q4_0, the
 * nibbles are q + 8) or -128 * sum(y) (Q8_0, weights are biased to unsigned by xor 0x80), and
 * ends in one f32 multiply-add by the 16 rows' scales (one vcvtph2ps) times the activation
 * block's scale. No horizontal sums, no shuffles: a group of 16 rows and NC activation rows
 * is an NC x 16 output tile. */

static inline __attribute__((always_inline)) __m512i kz_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

static inline __attribute__((always_inline)) void
kz_tile_r16(const uint8_t *G, int nb, const struct KX(act8) *a, float *Y, int ldy, int r,
            const int is_q4, const int NC)
{
    __m512 acc[4];
    KZ_UNROLL
    for (int j = 0; j < NC; j++) acc[j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), x80 = _mm512_set1_epi8((char)0x80);
    const size_t cb = is_q4 ? 256 : 512; /* bytes per block column */
    const uint16_t *dd = (const uint16_t *)(G + (size_t)nb * cb);
    for (int b = 0; b < nb; b++) {
        const uint8_t *qb = G + (size_t)b * cb;
#if KZ_PREFETCH
        KZ_UNROLL
        for (size_t l = 0; l < cb; l += 64) _mm_prefetch((const char *)qb + 4 * cb + l, _MM_HINT_T0);
#endif
        __m512i s0[4], s1[4];
        KZ_UNROLL
        for (int j = 0; j < NC; j++) {
            s0[j] = _mm512_slli_epi32(_mm512_set1_epi32(a[j].nsx[8 * b]), is_q4 ? 3 : 7);
            s1[j] = _mm512_setzero_si512();
        }
        if (is_q4) {
            KZ_UNROLL
            for (int k = 0; k < 4; k++) {
                __m512i z = _mm512_loadu_si512((const void *)(qb + 64 * k));
                __m512i lo = _mm512_and_si512(z, m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                KZ_UNROLL
                for (int j = 0; j < NC; j++) {
                    const int8_t *y = a[j].qs + 32 * b + 4 * k;
                    s0[j] = _mm512_dpbusd_epi32(s0[j], lo, kz_bcast4(y));
                    s1[j] = _mm512_dpbusd_epi32(s1[j], hi, kz_bcast4(y + 16));
                }
            }
        } else {
            KZ_UNROLL
            for (int k = 0; k < 8; k++) {
                __m512i z = _mm512_xor_si512(_mm512_loadu_si512((const void *)(qb + 64 * k)), x80);
                KZ_UNROLL
                for (int j = 0; j < NC; j++) {
                    __m512i y = kz_bcast4(a[j].qs + 32 * b + 4 * k);
                    if (k & 1) s1[j] = _mm512_dpbusd_epi32(s1[j], z, y);
                    else s0[j] = _mm512_dpbusd_epi32(s0[j], z, y);
                }
            }
        }
        __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dd + 16 * b)));
        KZ_UNROLL
        for (int j = 0; j < NC; j++)
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[j], s1[j])),
                                     _mm512_mul_ps(dw, _mm512_set1_ps(a[j].dx[8 * b])), acc[j]);
    }
    KZ_UNROLL
    for (int j = 0; j < NC; j++) _mm512_storeu_ps(Y + (size_t)j * ldy + r, acc[j]);
}

#define KZ_NC_R16 4

/* r0, r1: multiples of 16 (kern_matmul hands out whole groups). Activation rows in groups
 * of KX_CGROUP; within a group, each 16-row weight group meets NC_R16 rows at a time. */
static inline __attribute__((always_inline)) void
kz_rows_r16(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride, float *Y, int ldy,
            int r0, int r1, int n, int cols, const int is_q4)
{
    struct KX(act8) act[KX_CGROUP];
    const int nb = cols / 32;
    for (int cg = 0; cg < n; cg += KX_CGROUP) {
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;
        for (int c = cg; c < ce; c++) {
            struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_0, A + (size_t)c * astride, cols);
            act[c - cg] = (struct KX(act8)){ar.qs, ar.dx, ar.nsx};
        }
        for (int r = r0; r < r1; r += KERN_R16) {
            const uint8_t *G = W + (size_t)r * wstride;
            for (int c = cg; c < ce;) {
                int nc = ce - c >= KZ_NC_R16 ? KZ_NC_R16 : ce - c;
                float *y = Y + (size_t)c * ldy;
                const struct KX(act8) *ac = act + (c - cg);
                if (nc == 4) kz_tile_r16(G, nb, ac, y, ldy, r, is_q4, 4);
                else if (nc == 3) kz_tile_r16(G, nb, ac, y, ldy, r, is_q4, 3);
                else if (nc == 2) kz_tile_r16(G, nb, ac, y, ldy, r, is_q4, 2);
                else kz_tile_r16(G, nb, ac, y, ldy, r, is_q4, 1);
                c += nc;
            }
        }
    }
}

static void kz_rows_q4_0_r16(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                             float *Y, int ldy, int r0, int r1, int n, int cols)
{
    kz_rows_r16(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 1);
}

static void kz_rows_q8_0_r16(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                             float *Y, int ldy, int r0, int r1, int n, int cols)
{
    kz_rows_r16(W, wstride, A, astride, Y, ldy, r0, r1, n, cols, 0);
}

/* Packed Q4_K_R16 (layout in kernels_impl.h; scalar reference dot_q4_k_r16): per super-block
 * the 16 rows' 6-bit scales and mins are unpacked with kern_q4k_unpack's word operations, one
 * 32-bit lane per row; each sub-block's u8 x s8 dot (vpdpbusd against broadcast activation
 * words) is scaled in int32 by its lane's scale (vpmulld), and the mins meet the activation's
 * per-32 sums through vpdpwssd on (min a, min b) int16 pairs. Two f32 multiply-adds per
 * super-block and column. SPL partial sums per dot keep the vpdpbusd chains short when few
 * activation rows share a weight load (matvec). */
static inline __attribute__((always_inline)) void
kz_tile_q4k_r16(const uint8_t *G, int nk, const struct KX(actk) *a, float *Y, int ldy, int r,
                const int NC)
{
    const int SPL = NC <= 2 ? 2 : 1; /* NC x 2 x SPL dot accumulators in registers */
    __m512 acc[4];
    KZ_UNROLL
    for (int j = 0; j < NC; j++) acc[j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3f = _mm512_set1_epi8(0x3F);
    const __m512i m03 = _mm512_set1_epi8(0x03), lo16 = _mm512_set1_epi32(0x00FF00FF);
    const __m512i mff = _mm512_set1_epi32(0xFF);
    const size_t csize = KERN_R16 * sizeof(struct blk_q4_k);
    for (int b = 0; b < nk; b++) {
        const uint8_t *col = G + (size_t)b * csize;
#if KZ_PREFETCH
        KZ_UNROLL
        for (size_t l = 0; l < csize; l += 64) _mm_prefetch((const char *)col + csize + l, _MM_HINT_T0);
#endif
        __m512i w0 = _mm512_loadu_si512((const void *)(col + 64));
        __m512i w2 = _mm512_loadu_si512((const void *)(col + 192));
        __m512i u0 = _mm512_and_si512(w0, m3f);
        __m512i u1 = _mm512_or_si512(_mm512_and_si512(w2, m4),
                                     _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w0, 6), m03), 4));
        __m512i isum[4];
        KZ_UNROLL
        for (int j = 0; j < NC; j++) isum[j] = _mm512_setzero_si512();
        const uint8_t *qs = col + 256;
        KZ_UNROLL
        for (int g = 0; g < 4; g++) {
            __m512i p[4][4];
            KZ_UNROLL
            for (int j = 0; j < NC; j++)
                KZ_UNROLL
                for (int t = 0; t < 2 * SPL; t++) p[j][t] = _mm512_setzero_si512();
            KZ_UNROLL
            for (int k = 0; k < 8; k++) {
                __m512i z = _mm512_loadu_si512((const void *)(qs + 64 * (8 * g + k)));
                __m512i lo = _mm512_and_si512(z, m4);
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
                KZ_UNROLL
                for (int j = 0; j < NC; j++) {
                    const int8_t *y = a[j].qs + 256 * b + 64 * g + 4 * k;
                    p[j][2 * (k % SPL)] = _mm512_dpbusd_epi32(p[j][2 * (k % SPL)], lo, kz_bcast4(y));
                    p[j][2 * (k % SPL) + 1] =
                        _mm512_dpbusd_epi32(p[j][2 * (k % SPL) + 1], hi, kz_bcast4(y + 32));
                }
            }
            const __m512i su = g < 2 ? u0 : u1;
            const int sh = 16 * (g & 1);
            __m512i sc0 = _mm512_and_si512(_mm512_srli_epi32(su, sh), mff);
            __m512i sc1 = _mm512_and_si512(_mm512_srli_epi32(su, sh + 8), mff);
            KZ_UNROLL
            for (int j = 0; j < NC; j++) {
                __m512i s0 = p[j][0], s1 = p[j][1];
                KZ_UNROLL
                for (int t = 1; t < SPL; t++) {
                    s0 = _mm512_add_epi32(s0, p[j][2 * t]);
                    s1 = _mm512_add_epi32(s1, p[j][2 * t + 1]);
                }
                isum[j] = _mm512_add_epi32(isum[j], _mm512_mullo_epi32(s0, sc0));
                isum[j] = _mm512_add_epi32(isum[j], _mm512_mullo_epi32(s1, sc1));
            }
        }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)col));
        __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(col + 32)));
        __m512i w1 = _mm512_loadu_si512((const void *)(col + 128));
        __m512i u2 = _mm512_and_si512(w1, m3f);
        __m512i u3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(w2, 4), m4),
                                     _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(w1, 6), m03), 4));
        /* mins as int16 pairs: (m0, m2), (m1, m3), (m4, m6), (m5, m7) */
        __m512i mp[4] = {_mm512_and_si512(u2, lo16), _mm512_and_si512(_mm512_srli_epi32(u2, 8), lo16),
                         _mm512_and_si512(u3, lo16), _mm512_and_si512(_mm512_srli_epi32(u3, 8), lo16)};
        KZ_UNROLL
        for (int j = 0; j < NC; j++) {
            const int16_t *bs = a[j].bsum32 + 8 * b;
            __m512i msum = _mm512_setzero_si512();
            KZ_UNROLL
            for (int t = 0; t < 4; t++) {
                int e0 = (t / 2) * 4 + (t & 1); /* pairs (0,2) (1,3) (4,6) (5,7) */
                uint32_t pr = (uint16_t)bs[e0] | (uint32_t)(uint16_t)bs[e0 + 2] << 16;
                msum = _mm512_dpwssd_epi32(msum, mp[t], _mm512_set1_epi32((int32_t)pr));
            }
            __m512 dy = _mm512_set1_ps(a[j].d[b]);
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[j]), _mm512_mul_ps(d, dy), acc[j]);
            acc[j] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, dy), acc[j]);
        }
    }
    KZ_UNROLL
    for (int j = 0; j < NC; j++) _mm512_storeu_ps(Y + (size_t)j * ldy + r, acc[j]);
}

static void kz_rows_q4_k_r16(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                             float *Y, int ldy, int r0, int r1, int n, int cols)
{
    struct KX(actk) act[KX_CGROUP];
    const int nk = cols / 256;
    for (int cg = 0; cg < n; cg += KX_CGROUP) {
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;
        for (int c = cg; c < ce; c++) {
            struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_K, A + (size_t)c * astride, cols);
            act[c - cg] = (struct KX(actk)){ar.qs, ar.d, ar.bsum, ar.bsum32};
        }
        for (int r = r0; r < r1; r += KERN_R16) {
            const uint8_t *G = W + (size_t)r * wstride;
            for (int c = cg; c < ce;) {
                int nc = ce - c >= 4 ? 4 : ce - c;
                float *y = Y + (size_t)c * ldy;
                const struct KX(actk) *ac = act + (c - cg);
                if (nc == 4) kz_tile_q4k_r16(G, nk, ac, y, ldy, r, 4);
                else if (nc == 3) kz_tile_q4k_r16(G, nk, ac, y, ldy, r, 3);
                else if (nc == 2) kz_tile_q4k_r16(G, nk, ac, y, ldy, r, 2);
                else kz_tile_q4k_r16(G, nk, ac, y, ldy, r, 1);
                c += nc;
            }
        }
    }
}

/* Packed Q6_K_R16 (layout in kernels_impl.h; scalar reference dot_q6_k_r16). Per half h and
 * 4-element step l4, one load each of the ql words at 32h.. and 32h+8.. and of the qh word
 * gives the 6-bit values of 4 quarters (sub-blocks 8h + 2 quarter + l4/4) for 16 rows; each
 * meets its broadcast activation word in vpdpbusd; sub-block sums are scaled by their lane's
 * sign-extended int8 scale (vpmulld) and the -32 offset is taken off once per super-block
 * as 32 * sum_k scale_k * bsum_k (vpdpwssd on int16 scale pairs). */
static inline __attribute__((always_inline)) void
kz_tile_q6k_r16(const uint8_t *G, int nk, const struct KX(actk) *a, float *Y, int ldy, int r,
                const int NC)
{
    __m512 acc[2];
    KZ_UNROLL
    for (int j = 0; j < NC; j++) acc[j] = _mm512_setzero_ps();
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(0x03);
    const size_t csize = KERN_R16 * sizeof(struct blk_q6_k);
    for (int b = 0; b < nk; b++) {
        const uint8_t *col = G + (size_t)b * csize;
#if KZ_PREFETCH
        KZ_UNROLL
        for (size_t l = 0; l < csize; l += 64) _mm_prefetch((const char *)col + csize + l, _MM_HINT_T0);
#endif
        const uint8_t *sc = col + 32, *ql = col + 288, *qh = col + 288 + 2048;
        __m512i isum[2];
        KZ_UNROLL
        for (int j = 0; j < NC; j++) isum[j] = _mm512_setzero_si512();
        KZ_UNROLL
        for (int h = 0; h < 2; h++)
            KZ_UNROLL
            for (int half = 0; half < 2; half++) {
                __m512i p[4][2];
                KZ_UNROLL
                for (int qq = 0; qq < 4; qq++)
                    KZ_UNROLL
                    for (int j = 0; j < NC; j++) p[qq][j] = _mm512_setzero_si512();
                KZ_UNROLL
                for (int l4 = 4 * half; l4 < 4 * half + 4; l4++) {
                    __m512i zA = _mm512_loadu_si512((const void *)(ql + 64 * (16 * h + l4)));
                    __m512i zB = _mm512_loadu_si512((const void *)(ql + 64 * (16 * h + 8 + l4)));
                    __m512i zH = _mm512_loadu_si512((const void *)(qh + 64 * (8 * h + l4)));
                    __m512i q[4];
                    q[0] = _mm512_or_si512(_mm512_and_si512(zA, m4),
                                           _mm512_slli_epi16(_mm512_and_si512(zH, m3), 4));
                    q[1] = _mm512_or_si512(_mm512_and_si512(zB, m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(zH, 2), m3), 4));
                    q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(zA, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(zH, 4), m3), 4));
                    q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(zB, 4), m4),
                                           _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(zH, 6), m3), 4));
                    KZ_UNROLL
                    for (int j = 0; j < NC; j++)
                        KZ_UNROLL
                        for (int qq = 0; qq < 4; qq++)
                            p[qq][j] = _mm512_dpbusd_epi32(
                                p[qq][j], q[qq], kz_bcast4(a[j].qs + 256 * b + 128 * h + 32 * qq + 4 * l4));
                }
                KZ_UNROLL
                for (int qq = 0; qq < 4; qq++) {
                    const int sb = 8 * h + 2 * qq + half; /* sub-block of 16 */
                    __m512i w = _mm512_loadu_si512((const void *)(sc + 64 * (sb / 4)));
                    __m512i scv = _mm512_srai_epi32(_mm512_slli_epi32(w, 24 - 8 * (sb % 4)), 24);
                    KZ_UNROLL
                    for (int j = 0; j < NC; j++) isum[j] = _mm512_add_epi32(isum[j], _mm512_mullo_epi32(p[qq][j], scv));
                }
            }
        __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)col));
        KZ_UNROLL
        for (int j = 0; j < NC; j++) {
            const int16_t *bs = a[j].bsum + 16 * b;
            __m512i corr = _mm512_setzero_si512();
            KZ_UNROLL
            for (int v = 0; v < 4; v++) {
                __m512i w = _mm512_loadu_si512((const void *)(sc + 64 * v));
                __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(w, 8), 8); /* (s0, s2) */
                __m512i odd = _mm512_srai_epi16(w, 8);                        /* (s1, s3) */
                uint32_t pe = (uint16_t)bs[4 * v] | (uint32_t)(uint16_t)bs[4 * v + 2] << 16;
                uint32_t po = (uint16_t)bs[4 * v + 1] | (uint32_t)(uint16_t)bs[4 * v + 3] << 16;
                corr = _mm512_dpwssd_epi32(corr, even, _mm512_set1_epi32((int32_t)pe));
                corr = _mm512_dpwssd_epi32(corr, odd, _mm512_set1_epi32((int32_t)po));
            }
            __m512i tot = _mm512_sub_epi32(isum[j], _mm512_slli_epi32(corr, 5));
            acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(tot), _mm512_mul_ps(d, _mm512_set1_ps(a[j].d[b])), acc[j]);
        }
    }
    KZ_UNROLL
    for (int j = 0; j < NC; j++) _mm512_storeu_ps(Y + (size_t)j * ldy + r, acc[j]);
}

static void kz_rows_q6_k_r16(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                             float *Y, int ldy, int r0, int r1, int n, int cols)
{
    struct KX(actk) act[KX_CGROUP];
    const int nk = cols / 256;
    for (int cg = 0; cg < n; cg += KX_CGROUP) {
        int ce = cg + KX_CGROUP < n ? cg + KX_CGROUP : n;
        for (int c = cg; c < ce; c++) {
            struct kern_arow ar = kern_arow_at(KERN_ACT_Q8_K, A + (size_t)c * astride, cols);
            act[c - cg] = (struct KX(actk)){ar.qs, ar.d, ar.bsum, ar.bsum32};
        }
        for (int r = r0; r < r1; r += KERN_R16) {
            const uint8_t *G = W + (size_t)r * wstride;
            for (int c = cg; c < ce;) {
                int nc = ce - c >= 2 ? 2 : ce - c;
                if (nc == 2) kz_tile_q6k_r16(G, nk, act + (c - cg), Y + (size_t)c * ldy, ldy, r, 2);
                else kz_tile_q6k_r16(G, nk, act + (c - cg), Y + (size_t)c * ldy, ldy, r, 1);
                c += nc;
            }
        }
    }
}

/* ---- attention helpers (scalar references attn_*_scalar in kernels.c); D % 16 == 0. */

static inline __attribute__((always_inline)) __m512 kz_load_kv(const uint8_t *row, int d, const int f16)
{
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * (size_t)d)));
    return _mm512_loadu_ps((const float *)row + d);
}

/* Four keys at a time: four independent FMA chains, one reduction each. */
static inline __attribute__((always_inline)) void
kz_scores(const float *q, const uint8_t *K, size_t stride, int T, int D, float scale, float *out,
          const int f16)
{
    int t = 0;
    for (; t + 4 <= T; t += 4) {
        const uint8_t *k0 = K + (size_t)t * stride;
        __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        for (int d = 0; d < D; d += 16) {
            __m512 qv = _mm512_loadu_ps(q + d);
            KZ_UNROLL
            for (int u = 0; u < 4; u++) s[u] = _mm512_fmadd_ps(qv, kz_load_kv(k0 + u * stride, d, f16), s[u]);
        }
        KZ_UNROLL
        for (int u = 0; u < 4; u++) out[t + u] = _mm512_reduce_add_ps(s[u]) * scale;
    }
    for (; t < T; t++) {
        const uint8_t *kr = K + (size_t)t * stride;
        __m512 s0 = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(q + d), kz_load_kv(kr, d, f16), s0);
        out[t] = _mm512_reduce_add_ps(s0) * scale;
    }
}

static void kz_attn_scores(enum ggml_type kv, const float *q, const void *K, size_t stride, int T,
                           int D, float scale, float *out)
{
    if (kv == GGML_TYPE_F16) kz_scores(q, K, stride, T, D, scale, out, 1);
    else kz_scores(q, K, stride, T, D, scale, out, 0);
}

/* 64 output values at a time in registers, two positions per step (two FMA chains each). */
static inline __attribute__((always_inline)) void
kz_accum(const float *a, const uint8_t *V, size_t stride, int T, int D, float *o, const int f16)
{
    int d = 0;
    for (; d + 64 <= D; d += 64) {
        __m512 x[4], y[4];
        KZ_UNROLL
        for (int u = 0; u < 4; u++) {
            x[u] = _mm512_loadu_ps(o + d + 16 * u);
            y[u] = _mm512_setzero_ps();
        }
        int t = 0;
        for (; t + 2 <= T; t += 2) {
            const uint8_t *v0 = V + (size_t)t * stride, *v1 = v0 + stride;
            __m512 a0 = _mm512_set1_ps(a[t]), a1 = _mm512_set1_ps(a[t + 1]);
            KZ_UNROLL
            for (int u = 0; u < 4; u++) {
                x[u] = _mm512_fmadd_ps(a0, kz_load_kv(v0, d + 16 * u, f16), x[u]);
                y[u] = _mm512_fmadd_ps(a1, kz_load_kv(v1, d + 16 * u, f16), y[u]);
            }
        }
        if (t < T) {
            const uint8_t *v0 = V + (size_t)t * stride;
            __m512 a0 = _mm512_set1_ps(a[t]);
            KZ_UNROLL
            for (int u = 0; u < 4; u++) x[u] = _mm512_fmadd_ps(a0, kz_load_kv(v0, d + 16 * u, f16), x[u]);
        }
        KZ_UNROLL
        for (int u = 0; u < 4; u++) _mm512_storeu_ps(o + d + 16 * u, _mm512_add_ps(x[u], y[u]));
    }
    for (; d < D; d += 16) {
        __m512 x0 = _mm512_loadu_ps(o + d);
        for (int t = 0; t < T; t++)
            x0 = _mm512_fmadd_ps(_mm512_set1_ps(a[t]), kz_load_kv(V + (size_t)t * stride, d, f16), x0);
        _mm512_storeu_ps(o + d, x0);
    }
}

static void kz_attn_accum(enum ggml_type kv, const float *a, const void *V, size_t stride, int T,
                          int D, float *o)
{
    if (kv == GGML_TYPE_F16) kz_accum(a, V, stride, T, D, o, 1);
    else kz_accum(a, V, stride, T, D, o, 0);
}

/* exp(x) for x <= 0 (softmax arguments; anything below -87 gives 0 through vscalefps):
 * x = k ln2 + r, |r| <= ln2/2 (ln2 split in two for exactness), e^r by its Taylor polynomial
 * to degree 6 (truncation error < 2e-7 relative), then scaled by 2^k. */
static inline __attribute__((always_inline)) __m512 kz_exp(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, k);
}

static void kz_softmax(float *x, int n)
{
    if (n <= 0) return;
    __m512 mv = _mm512_set1_ps(x[0]);
    int i = 0;
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_loadu_ps(x + i));
    if (i < n) mv = _mm512_mask_max_ps(mv, (__mmask16)((1u << (n - i)) - 1), mv, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i));
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512 sum = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = kz_exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), m));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = kz_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), m));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(x + i, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
    }
}

/* ---- activation quantization: the same bytes as kern_act_quantize (same products, same
 * round-half-even conversion), 16 values per instruction. */

static void kz_act_q8_0(const float *x, void *out, int cols)
{
    struct kern_arow r = kern_arow_at(KERN_ACT_Q8_0, out, cols);
    int8_t *qs = (int8_t *)r.qs;
    float *d = (float *)r.d, *dx = (float *)r.dx;
    int32_t *sum = (int32_t *)r.sum, *nsx = (int32_t *)r.nsx;
    for (int i = 0; i < cols / 32; i++) {
        __m512 a = _mm512_loadu_ps(x + 32 * i), b = _mm512_loadu_ps(x + 32 * i + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
        __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, vid));
        _mm_storeu_si128((__m128i *)(qs + 32 * i), _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(qs + 32 * i + 16), _mm512_cvtsepi32_epi8(qb));
        int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
        d[i] = dd;
        sum[i] = s;
        _mm256_storeu_ps(dx + 8 * i, _mm256_set1_ps(dd));
        /* wrapping negation: NaN / inf activations convert to INT_MIN lanes, whose sum may be
         * INT_MIN (garbage in, garbage out, but no undefined behaviour) */
        _mm256_storeu_si256((__m256i *)(nsx + 8 * i), _mm256_set1_epi32((int32_t)(0u - (uint32_t)s)));
    }
}

static void kz_act_q8_k(const float *x, void *out, int cols)
{
    struct kern_arow r = kern_arow_at(KERN_ACT_Q8_K, out, cols);
    int8_t *qs = (int8_t *)r.qs;
    float *d = (float *)r.d;
    int16_t *bsum = (int16_t *)r.bsum, *bsum32 = (int16_t *)r.bsum32;
    for (int i = 0; i < cols / 256; i++) {
        const float *xb = x + 256 * i;
        __m512 am = _mm512_setzero_ps();
        for (int k = 0; k < 16; k++) am = _mm512_max_ps(am, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * k)));
        float amax = _mm512_reduce_max_ps(am);
        if (amax == 0) {
            d[i] = 0;
            memset(qs + 256 * i, 0, 256);
            memset(bsum + 16 * i, 0, 32);
            memset(bsum32 + 8 * i, 0, 16);
            continue;
        }
        float max = 0; /* the first value of largest magnitude, as the scalar loop picks */
        for (int k = 0; k < 16; k++) {
            __mmask16 m = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(xb + 16 * k)),
                                             _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (m) {
                max = xb[16 * k + __builtin_ctz(m)];
                break;
            }
        }
        float iscale = -128.0f / max;
        __m512 vis = _mm512_set1_ps(iscale);
        const __m512i lim = _mm512_set1_epi32(127);
        for (int k = 0; k < 16; k++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * k), vis));
            q = _mm512_min_epi32(q, lim);
            _mm_storeu_si128((__m128i *)(qs + 256 * i + 16 * k), _mm512_cvtsepi32_epi8(q));
            bsum[16 * i + k] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        for (int k = 0; k < 8; k++)
            bsum32[8 * i + k] = (int16_t)(bsum[16 * i + 2 * k] + bsum[16 * i + 2 * k + 1]);
        d[i] = 1.0f / iscale;
    }
}

static void kz_act_quantize(enum kern_act a, const float *x, void *out, int cols)
{
    if (a == KERN_ACT_Q8_0) kz_act_q8_0(x, out, cols);
    else if (a == KERN_ACT_Q8_K) kz_act_q8_k(x, out, cols);
}

void kern_ops_avx512(struct kern_ops *o)
{
    KX(fill_ops)(o);
    o->rows[GGML_TYPE_Q8_0] = kz_rows_q8_0;
    o->rows[GGML_TYPE_Q4_0] = kz_rows_q4_0;
    o->rows[GGML_TYPE_Q4_K] = kz_rows_q4_k;
    o->rows[GGML_TYPE_Q6_K] = kz_rows_q6_k;
    o->rows[KERN_TYPE_Q4_0_R16] = kz_rows_q4_0_r16;
    o->rows[KERN_TYPE_Q8_0_R16] = kz_rows_q8_0_r16;
    o->rows[KERN_TYPE_Q4_K_R16] = kz_rows_q4_k_r16;
    o->rows[KERN_TYPE_Q6_K_R16] = kz_rows_q6_k_r16;
    o->attn_scores = kz_attn_scores;
    o->attn_accum = kz_attn_accum;
    o->softmax = kz_softmax;
    o->act_quantize = kz_act_quantize;
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
void kern_ops_avx512(struct kern_ops *o)
{
    (void)o;
}
#endif
