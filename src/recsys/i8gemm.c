/* W8A8 matrix products with per-row scales (see i8gemm.h): packing, the scalar reference, and
 * the AVX2 and AVX-512 VNNI kernels. */
#include "recsys/i8gemm.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "engine/kernels.h"

#define RB 16 /* rows per packed block: one 512-bit vector of int32 outputs */
#define UNROLL _Pragma("GCC unroll 8")

struct i8_mat {
    int rows, cols, rows_p, cols_p; /* rows padded to RB, cols to 4 */
    int8_t *w;                      /* per RB-row block: cols_p/4 groups of [RB rows][4 bytes] */
    float *scale;                   /* rows_p: max|row| / 127 (0 for padding rows) */
    int32_t *wsum128;               /* rows_p: 128 x sum of the row's int8 values */
};

static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

static inline int8_t *w_at(const struct i8_mat *m, int r, int c)
{
    size_t blk = (size_t)(r / RB) * (size_t)m->cols_p * RB;
    return m->w + blk + (size_t)(c / 4) * (RB * 4) + (size_t)(r % RB) * 4 + (size_t)(c % 4);
}

struct i8_mat *i8_mat_new(const float *W, int rows, int cols, size_t ld)
{
    if (!W || rows < 1 || cols < 1 || ld < (size_t)cols)
        return NULL;
    struct i8_mat *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->rows = rows;
    m->cols = cols;
    m->rows_p = (rows + RB - 1) / RB * RB;
    m->cols_p = (cols + 3) / 4 * 4;
    m->w = aligned_alloc(64, round64((size_t)m->rows_p * m->cols_p));
    m->scale = aligned_alloc(64, round64((size_t)m->rows_p * sizeof(float)));
    m->wsum128 = aligned_alloc(64, round64((size_t)m->rows_p * sizeof(int32_t)));
    if (!m->w || !m->scale || !m->wsum128) {
        i8_mat_free(m);
        return NULL;
    }
    memset(m->w, 0, round64((size_t)m->rows_p * m->cols_p));
    memset(m->scale, 0, (size_t)m->rows_p * sizeof(float));
    memset(m->wsum128, 0, (size_t)m->rows_p * sizeof(int32_t));
    for (int r = 0; r < rows; r++) {
        const float *row = W + (size_t)r * ld;
        float amax = 0.0f;
        for (int c = 0; c < cols; c++)
            amax = fabsf(row[c]) > amax ? fabsf(row[c]) : amax;
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int c = 0; c < cols; c++) {
            float v = row[c] * inv;
            v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
            int q = (int)lrintf(v);
            *w_at(m, r, c) = (int8_t)q;
            sum += q;
        }
        m->scale[r] = amax / 127.0f;
        m->wsum128[r] = 128 * sum;
    }
    return m;
}

void i8_mat_free(struct i8_mat *m)
{
    if (!m)
        return;
    free(m->w);
    free(m->scale);
    free(m->wsum128);
    free(m);
}

int i8_mat_rows(const struct i8_mat *m)
{
    return m->rows;
}

int i8_mat_cols(const struct i8_mat *m)
{
    return m->cols;
}

float i8_mat_get(const struct i8_mat *m, int r, int c)
{
    if (r < 0 || r >= m->rows || c < 0 || c >= m->cols)
        return 0.0f;
    return (float)*w_at(m, r, c) * m->scale[r];
}

/* ---- activations: scratch = [sa: n floats, 64-aligned][n rows of cols_p u8, stride cols_p] */

size_t i8_gemm_scratch_size(int cols, int n)
{
    if (cols < 1 || n < 1)
        return 64;
    size_t cp = (size_t)(cols + 3) / 4 * 4;
    return 64 + round64((size_t)n * sizeof(float)) + (size_t)n * cp + 64;
}

struct acts {
    const float *sa;  /* n per-row scales */
    const uint8_t *q; /* n rows of u8 (value + 128) */
    size_t stride;
};

static struct acts acts_at(void *scratch, int n, int cols_p)
{
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    return (struct acts){.sa = (const float *)base,
                         .q = base + round64((size_t)n * sizeof(float)),
                         .stride = (size_t)cols_p};
}

/* One row: sa = max|x| / 127, q = round_half_even(x * 127 / max|x|) + 128 in [1, 255];
 * padding columns get 128 (the packed weights are zero there). Scalar reference of
 * quant_row_512. */
static void quant_row_ref(const float *x, int cols, int cols_p, uint8_t *q, float *sa)
{
    float amax = 0.0f;
    for (int c = 0; c < cols; c++)
        amax = fabsf(x[c]) > amax ? fabsf(x[c]) : amax;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    for (int c = 0; c < cols; c++) {
        float v = x[c] * inv;
        v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
        q[c] = (uint8_t)((int)lrintf(v) + 128);
    }
    for (int c = cols; c < cols_p; c++)
        q[c] = 128;
    *sa = amax / 127.0f;
}

/* ---- scalar reference */

static void gemm_ref(const struct i8_mat *m, struct acts a, float *Y, size_t ldy, int n,
                     struct i8_epilogue ep)
{
    const float *bias = ep.bias;
    const bool relu = ep.relu;
    for (int i = 0; i < n; i++) {
        const uint8_t *q = a.q + (size_t)i * a.stride;
        for (int r = 0; r < m->rows; r++) {
            int32_t d = 0;
            for (int c = 0; c < m->cols_p; c++)
                d += ((int32_t)q[c] - 128) * (int32_t)*w_at(m, r, c);
            float add = bias ? bias[r] : 0.0f;
            if (ep.accumulate)
                add += Y[(size_t)i * ldy + r];
            float v = fmaf((float)d, m->scale[r] * a.sa[i], add);
            Y[(size_t)i * ldy + r] = relu && v < 0.0f ? 0.0f : v;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86 1
#define T512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512vnni")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* quant_row_ref with 16 lanes; cvtps_epi32 rounds half to even like lrintf. */
T512 static void quant_row_512(const float *x, int cols, int cols_p, uint8_t *q, float *sa)
{
    __m512 mx = _mm512_setzero_ps();
    int c = 0;
    for (; c + 16 <= cols; c += 16)
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + c)));
    const __mmask16 tail = (__mmask16)((1u << (cols - c)) - 1u);
    if (c < cols)
        mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_maskz_loadu_ps(tail, x + c)));
    const float amax = _mm512_reduce_max_ps(mx);
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    const __m512i z = _mm512_set1_epi32(128);
    for (c = 0; c + 16 <= cols; c += 16) {
        __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + c), inv), lo), hi);
        __m512i iv = _mm512_add_epi32(_mm512_cvtps_epi32(v), z);
        _mm_storeu_si128((__m128i *)(q + c), _mm512_cvtepi32_epi8(iv));
    }
    if (c < cols) {
        __m512 v = _mm512_min_ps(
            _mm512_max_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + c), inv), lo), hi);
        __m512i iv = _mm512_add_epi32(_mm512_cvtps_epi32(v), z);
        _mm_mask_storeu_epi8(q + c, tail, _mm512_cvtepi32_epi8(iv));
    }
    for (c = cols; c < cols_p; c++)
        q[c] = 128;
    *sa = amax / 127.0f;
}

/* MR row blocks (16 rows each) x NC activation rows: per group of 4 columns, MR 64-byte
 * weight loads, NC 4-byte broadcasts, MR x NC vpdpbusd. The epilogue removes the zero point
 * (128 x row sum), scales, adds the bias, applies ReLU, and stores the rows that exist. */
INLINE T512 void tile_512(const struct i8_mat *m, int rb, struct acts a, int j0, float *Y,
                          size_t ldy, struct i8_epilogue ep, const int MR, const int NC)
{
    __m512i acc[4][6];
    UNROLL for (int i = 0; i < MR; i++) UNROLL for (int j = 0; j < NC; j++) acc[i][j] =
        _mm512_setzero_si512();
    const int8_t *wp = m->w + (size_t)rb * m->cols_p * RB;
    const size_t wblk = (size_t)m->cols_p * RB;
    const uint8_t *ap = a.q + (size_t)j0 * a.stride;
    const int K4 = m->cols_p / 4;
    for (int k = 0; k < K4; k++) {
        __m512i w[4];
        UNROLL for (int i = 0; i < MR; i++) w[i] =
            _mm512_load_si512((const void *)(wp + (size_t)i * wblk + (size_t)k * 64));
        UNROLL for (int j = 0; j < NC; j++)
        {
            int32_t v;
            memcpy(&v, ap + (size_t)j * a.stride + (size_t)k * 4, 4);
            const __m512i av = _mm512_set1_epi32(v);
            UNROLL for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, w[i]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
    {
        const int r = (rb + i) * RB;
        if (r >= m->rows)
            break;
        const __mmask16 mask =
            m->rows - r >= RB ? (__mmask16)0xFFFF : (__mmask16)((1u << (m->rows - r)) - 1u);
        const __m512i ws = _mm512_load_si512((const void *)(m->wsum128 + r));
        const __m512 sc = _mm512_load_ps(m->scale + r);
        const __m512 b = ep.bias ? _mm512_maskz_loadu_ps(mask, ep.bias + r) : _mm512_setzero_ps();
        UNROLL for (int j = 0; j < NC; j++)
        {
            float *y = Y + (size_t)(j0 + j) * ldy + r;
            const __m512 add = ep.accumulate ? _mm512_add_ps(b, _mm512_maskz_loadu_ps(mask, y)) : b;
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][j], ws));
            v = _mm512_fmadd_ps(v, _mm512_mul_ps(sc, _mm512_set1_ps(a.sa[j0 + j])), add);
            if (ep.relu)
                v = _mm512_max_ps(v, _mm512_setzero_ps());
            _mm512_mask_storeu_ps(y, mask, v);
        }
    }
}

#define NC512 6
#define CALL512(mr, nc) tile_512(m, rb, a, j, Y, ldy, ep, mr, nc)
#define SWITCH_NC(mr)                                                                             \
    switch (nc) {                                                                                 \
    case 1: CALL512(mr, 1); break;                                                                \
    case 2: CALL512(mr, 2); break;                                                                \
    case 3: CALL512(mr, 3); break;                                                                \
    case 4: CALL512(mr, 4); break;                                                                \
    case 5: CALL512(mr, 5); break;                                                                \
    default: CALL512(mr, 6); break;                                                               \
    }

/* Row blocks in groups of 4 (64 rows, 16 to 64 KiB of weights that stay in L1/L2 while every
 * activation row passes), activation rows in groups of 6. */
T512 static void gemm_512(const struct i8_mat *m, struct acts a, float *Y, size_t ldy, int n,
                          struct i8_epilogue ep)
{
    const int nrb = m->rows_p / RB;
    for (int rb = 0; rb < nrb;) {
        const bool four = nrb - rb >= 4;
        for (int j = 0; j < n; j += NC512) {
            const int nc = n - j < NC512 ? n - j : NC512;
            if (four) {
                SWITCH_NC(4)
            } else {
                SWITCH_NC(1)
            }
        }
        rb += four ? 4 : 1;
    }
}

/* AVX2: 8 rows per 256-bit half of a packed block; the activation byte a - 128 is signed and
 * |a - 128| <= 127, so maddubs(|a|, sign(w, a)) never saturates (2 x 127 x 127 < 32767) and
 * the integer sums equal the VNNI ones without the zero-point term. */
INLINE T256 void tile_256(const struct i8_mat *m, int rb, struct acts a, int j0, float *Y,
                          size_t ldy, struct i8_epilogue ep, const int NC)
{
    __m256i acc[2][4];
    UNROLL for (int h = 0; h < 2; h++) UNROLL for (int j = 0; j < NC; j++) acc[h][j] =
        _mm256_setzero_si256();
    const int8_t *wp = m->w + (size_t)rb * m->cols_p * RB;
    const uint8_t *ap = a.q + (size_t)j0 * a.stride;
    const __m256i ones = _mm256_set1_epi16(1);
    const int K4 = m->cols_p / 4;
    for (int k = 0; k < K4; k++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(wp + (size_t)k * 64));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(wp + (size_t)k * 64 + 32));
        UNROLL for (int j = 0; j < NC; j++)
        {
            int32_t v;
            memcpy(&v, ap + (size_t)j * a.stride + (size_t)k * 4, 4);
            const __m256i av = _mm256_set1_epi32(v ^ (int32_t)0x80808080u);
            const __m256i aa = _mm256_abs_epi8(av);
            acc[0][j] = _mm256_add_epi32(
                acc[0][j], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w0, av)), ones));
            acc[1][j] = _mm256_add_epi32(
                acc[1][j], _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(w1, av)), ones));
        }
    }
    const int r = rb * RB, live = m->rows - r < RB ? m->rows - r : RB;
    UNROLL for (int j = 0; j < NC; j++)
    {
        float out[RB];
        const __m256 s = _mm256_set1_ps(a.sa[j0 + j]);
        UNROLL for (int h = 0; h < 2; h++)
        {
            __m256 v = _mm256_cvtepi32_ps(acc[h][j]);
            __m256 sc = _mm256_mul_ps(_mm256_load_ps(m->scale + r + 8 * h), s);
            v = _mm256_mul_ps(v, sc);
            _mm256_storeu_ps(out + 8 * h, v);
        }
        float *y = Y + (size_t)(j0 + j) * ldy + r;
        for (int t = 0; t < live; t++) {
            float v = out[t] + (ep.bias ? ep.bias[r + t] : 0.0f) + (ep.accumulate ? y[t] : 0.0f);
            y[t] = ep.relu && v < 0.0f ? 0.0f : v;
        }
    }
}

T256 static void gemm_256(const struct i8_mat *m, struct acts a, float *Y, size_t ldy, int n,
                          struct i8_epilogue ep)
{
    const int nrb = m->rows_p / RB;
    for (int rb = 0; rb < nrb; rb++)
        for (int j = 0; j < n; j += 4) {
            switch (n - j) {
            case 1: tile_256(m, rb, a, j, Y, ldy, ep, 1); break;
            case 2: tile_256(m, rb, a, j, Y, ldy, ep, 2); break;
            case 3: tile_256(m, rb, a, j, Y, ldy, ep, 3); break;
            default: tile_256(m, rb, a, j, Y, ldy, ep, 4); break;
            }
        }
}
#endif

enum path { PATH_REF, PATH_256, PATH_512 };

static enum path pick(void)
{
#ifdef HAVE_X86
    enum kern_isa isa = kern_isa();
    if (isa >= KERN_ISA_AVX512) /* kernels.c requires VNNI for this level */
        return PATH_512;
    if (isa >= KERN_ISA_AVX2)
        return PATH_256;
#endif
    return PATH_REF;
}

static void quantize_acts(const struct i8_mat *m, const float *X, size_t ldx, int n,
                          void *scratch, enum path p)
{
    struct acts a = acts_at(scratch, n, m->cols_p);
    float *sa = (float *)(uintptr_t)a.sa;
    uint8_t *q = (uint8_t *)(uintptr_t)a.q;
    for (int i = 0; i < n; i++) {
#ifdef HAVE_X86
        if (p == PATH_512) {
            quant_row_512(X + (size_t)i * ldx, m->cols, m->cols_p, q + (size_t)i * a.stride, sa + i);
            continue;
        }
#endif
        quant_row_ref(X + (size_t)i * ldx, m->cols, m->cols_p, q + (size_t)i * a.stride, sa + i);
    }
}

static void compute(const struct i8_mat *m, float *Y, size_t ldy, int n,
                    const struct i8_epilogue *epp, void *scratch, enum path p)
{
    struct acts a = acts_at(scratch, n, m->cols_p);
    const struct i8_epilogue ep = epp ? *epp : (struct i8_epilogue){0};
    switch (p) {
#ifdef HAVE_X86
    case PATH_512: gemm_512(m, a, Y, ldy, n, ep); return;
    case PATH_256: gemm_256(m, a, Y, ldy, n, ep); return;
#endif
    default: gemm_ref(m, a, Y, ldy, n, ep); return;
    }
}

static void run(const struct i8_mat *m, const float *X, size_t ldx, float *Y, size_t ldy, int n,
                const struct i8_epilogue *epp, void *scratch, enum path p)
{
    if (n < 1)
        return;
    quantize_acts(m, X, ldx, n, scratch, p);
    compute(m, Y, ldy, n, epp, scratch, p);
}

void i8_gemm_again(const struct i8_mat *m, float *Y, size_t ldy, int n,
                   const struct i8_epilogue *ep, void *scratch)
{
    if (n >= 1)
        compute(m, Y, ldy, n, ep, scratch, pick());
}

void i8_gemm(const struct i8_mat *m, const float *X, size_t ldx, float *Y, size_t ldy, int n,
             const struct i8_epilogue *ep, void *scratch)
{
    run(m, X, ldx, Y, ldy, n, ep, scratch, pick());
}

void i8_gemm_ref(const struct i8_mat *m, const float *X, size_t ldx, float *Y, size_t ldy, int n,
                 const struct i8_epilogue *ep, void *scratch)
{
    run(m, X, ldx, Y, ldy, n, ep, scratch, PATH_REF);
}
