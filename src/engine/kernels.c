/* Kernel dispatch, the scalar reference kernels, number conversions and row (de)quantization.
 *
 * The scalar code here is the oracle for every SIMD kernel (tests/test_kernels.c compares
 * them). It follows ggml's arithmetic: weights stay in their block format, activations are
 * quantized per row to int8 blocks (Q8_0-style for Q4_0/Q8_0 weights, Q8_K-style 256-blocks
 * with per-16 sums for the K types), integer block dots are scaled by both block scales and
 * summed in f32, so results are close to llama.cpp's for the same file. */
#include "engine/kernels.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kernels_impl.h"

/* ---------------------------------------------------------------- type facts */

/* The GGUF type whose blocks a packed layout holds (the type itself for GGUF types). */
static enum ggml_type kt_base(enum ggml_type t)
{
    if ((int)t == (int)KERN_TYPE_Q4_0_R16) return GGML_TYPE_Q4_0;
    if ((int)t == (int)KERN_TYPE_Q8_0_R16) return GGML_TYPE_Q8_0;
    if ((int)t == (int)KERN_TYPE_Q4_K_R16) return GGML_TYPE_Q4_K;
    if ((int)t == (int)KERN_TYPE_Q6_K_R16) return GGML_TYPE_Q6_K;
    return t;
}

/* Block size and bytes per block of the types with kernels (kept here so the kernels do not
 * depend on the GGUF reader; they agree with ggml_blck_size / ggml_type_size). */
static uint32_t kt_blck(enum ggml_type t)
{
    switch (kt_base(t)) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: return 1;
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0: return 32;
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K: return QK_K;
    default: return 0;
    }
}

static uint32_t kt_bytes(enum ggml_type t)
{
    switch (kt_base(t)) {
    case GGML_TYPE_F32: return 4;
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16: return 2;
    case GGML_TYPE_Q8_0: return sizeof(struct blk_q8_0);
    case GGML_TYPE_Q4_0: return sizeof(struct blk_q4_0);
    case GGML_TYPE_Q4_K: return sizeof(struct blk_q4_k);
    case GGML_TYPE_Q6_K: return sizeof(struct blk_q6_k);
    default: return 0;
    }
}

static size_t kt_row_size(enum ggml_type t, int64_t n)
{
    uint32_t bs = kt_blck(t);
    if (bs == 0 || n < 0 || n % bs) return 0;
    return (size_t)(n / bs) * kt_bytes(t);
}

/* ---------------------------------------------------------------- number conversions */

float kern_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, x;
    if (e == 0) {
        float v = (float)m * 0x1p-24f; /* zero or subnormal: exact */
        return sign ? -v : v;
    }
    if (e == 31)
        x = sign | 0x7f800000u | (m << 13); /* inf, nan (payload kept) */
    else
        x = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Round to nearest even; overflow gives inf, nan stays nan (quiet), tiny values become
 * subnormals or signed zero. */
uint16_t kern_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((ax >> 13) & 0x3ff));
        return (uint16_t)(sign | 0x7c00);
    }
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {                                   /* below 2^-14: subnormal */
        if (ax < 0x33000000u) return (uint16_t)sign;          /* <= 2^-25 rounds to 0 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = ax + 0xfff + ((ax >> 13) & 1);
    r -= 0x38000000u;
    return (uint16_t)(sign | (r >> 13));
}

float kern_bf16_to_f32(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t kern_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---------------------------------------------------------------- activation formats */

static size_t round64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

enum kern_act kern_act_of(enum ggml_type t)
{
    switch (kt_base(t)) {
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0: return KERN_ACT_Q8_0;
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K: return KERN_ACT_Q8_K;
    default: return KERN_ACT_F32;
    }
}

size_t kern_act_stride(enum kern_act a, int cols)
{
    size_t c = (size_t)cols;
    switch (a) {
    case KERN_ACT_Q8_0: return round64(c + (c / 32) * (8 + 64));
    case KERN_ACT_Q8_K: return round64(c + (c / 256) * (4 + 32 + 16));
    default: return c * sizeof(float);
    }
}

struct kern_arow kern_arow_at(enum kern_act a, const void *base, int cols)
{
    const uint8_t *b = base;
    struct kern_arow r = {0};
    r.qs = (const int8_t *)b;
    r.d = (const float *)(b + cols);
    if (a == KERN_ACT_Q8_0) {
        int nb = cols / 32;
        r.sum = (const int32_t *)(r.d + nb);
        r.dx = (const float *)(r.sum + nb);
        r.nsx = (const int32_t *)(r.dx + 8 * nb);
    } else {
        int nk = cols / 256;
        r.bsum = (const int16_t *)(r.d + nk);
        r.bsum32 = r.bsum + 16 * nk;
    }
    return r;
}

/* Round to nearest, ties to even, for |v| < 2^22 (all callers clamp to small ranges): adding
 * 1.5 * 2^23 puts the integer in the low mantissa bits. Same result as nearbyintf in the
 * default rounding mode, without a libm call (generic x86-64 has no roundss). */
static inline int nearest_int(float v)
{
    float f = v + 12582912.0f;
    int32_t i;
    memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* Q8_0-style: d = amax / 127 per 32; Q8_K-style: the largest-magnitude value maps to -128 so
 * the full int8 range is used (as ggml's quantize_row_q8_K does). */
void kern_act_quantize(enum kern_act a, const float *x, void *out, int cols)
{
    struct kern_arow r = kern_arow_at(a, out, cols);
    int8_t *qs = (int8_t *)r.qs;
    float *d = (float *)r.d;
    if (a == KERN_ACT_Q8_0) {
        int32_t *sum = (int32_t *)r.sum, *nsx = (int32_t *)r.nsx;
        float *dx = (float *)r.dx;
        for (int i = 0; i < cols / 32; i++) {
            const float *xb = x + i * 32;
            float amax = 0;
            for (int j = 0; j < 32; j++) { /* not fmaxf: a libm call per element at -O2 */
                float ax = fabsf(xb[j]);
                amax = ax > amax ? ax : amax;
            }
            float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
            int32_t s = 0;
            for (int j = 0; j < 32; j++) {
                int q = nearest_int(xb[j] * id);
                qs[i * 32 + j] = (int8_t)q;
                s += q;
            }
            d[i] = dd;
            sum[i] = s;
            for (int j = 0; j < 8; j++) {
                dx[i * 8 + j] = dd;
                nsx[i * 8 + j] = -s;
            }
        }
    } else if (a == KERN_ACT_Q8_K) {
        int16_t *bsum = (int16_t *)r.bsum, *bsum32 = (int16_t *)r.bsum32;
        for (int i = 0; i < cols / 256; i++) {
            const float *xb = x + i * 256;
            float amax = 0, max = 0;
            for (int j = 0; j < 256; j++) {
                float ax = fabsf(xb[j]);
                if (ax > amax) {
                    amax = ax;
                    max = xb[j];
                }
            }
            if (amax == 0) {
                d[i] = 0;
                memset(qs + i * 256, 0, 256);
            } else {
                float iscale = -128.0f / max;
                for (int j = 0; j < 256; j++) {
                    int q = nearest_int(iscale * xb[j]);
                    qs[i * 256 + j] = (int8_t)(q < 127 ? q : 127);
                }
                d[i] = 1.0f / iscale;
            }
            for (int k = 0; k < 16; k++) {
                int s = 0;
                for (int j = 0; j < 16; j++) s += qs[i * 256 + k * 16 + j];
                bsum[i * 16 + k] = (int16_t)s;
            }
            for (int k = 0; k < 8; k++)
                bsum32[i * 8 + k] = (int16_t)(bsum[i * 16 + 2 * k] + bsum[i * 16 + 2 * k + 1]);
        }
    }
}

/* ---------------------------------------------------------------- scalar dot products */

static float dot_f32(const void *w, const float *x, int n)
{
    const float *a = w;
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * x[i];
    return s;
}

static float dot_f16(const void *w, const float *x, int n)
{
    const uint16_t *a = w;
    float s = 0;
    for (int i = 0; i < n; i++) s += kern_f16_to_f32(a[i]) * x[i];
    return s;
}

static float dot_bf16(const void *w, const float *x, int n)
{
    const uint16_t *a = w;
    float s = 0;
    for (int i = 0; i < n; i++) s += kern_bf16_to_f32(a[i]) * x[i];
    return s;
}

static float dot_q8_0(const void *w, const struct kern_arow *a, int n)
{
    const struct blk_q8_0 *b = w;
    float s = 0;
    for (int i = 0; i < n / 32; i++) {
        int32_t acc = 0;
        for (int j = 0; j < 32; j++) acc += b[i].qs[j] * a->qs[i * 32 + j];
        s += kern_f16_to_f32(b[i].d) * a->d[i] * (float)acc;
    }
    return s;
}

static float dot_q4_0(const void *w, const struct kern_arow *a, int n)
{
    const struct blk_q4_0 *b = w;
    float s = 0;
    for (int i = 0; i < n / 32; i++) {
        const int8_t *y = a->qs + i * 32;
        int32_t acc = 0;
        for (int j = 0; j < 16; j++) {
            acc += ((b[i].qs[j] & 0xF) - 8) * y[j];
            acc += ((b[i].qs[j] >> 4) - 8) * y[j + 16];
        }
        s += kern_f16_to_f32(b[i].d) * a->d[i] * (float)acc;
    }
    return s;
}

/* sum_j d*sc_j * sum(q*y) - dmin*m_j * sum(y), with sum(y) from the activation's per-16 sums. */
static float dot_q4_k(const void *w, const struct kern_arow *a, int n)
{
    const struct blk_q4_k *b = w;
    float s = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const int8_t *y = a->qs + i * QK_K;
        const int16_t *bs = a->bsum + i * 16;
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kern_q4k_scale(j, b[i].scales, &sc, &m);
            const uint8_t *q = b[i].qs + (j / 2) * 32;
            int shift = (j & 1) * 4;
            int32_t acc = 0;
            for (int l = 0; l < 32; l++) acc += ((q[l] >> shift) & 0xF) * y[j * 32 + l];
            sumi += sc * acc;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        float dy = a->d[i];
        s += kern_f16_to_f32(b[i].d) * dy * (float)sumi - kern_f16_to_f32(b[i].dmin) * dy * (float)summ;
    }
    return s;
}

/* Element e (0..255) of a Q6_K block as 0..63 (subtract 32 for the signed value). */
static inline int q6k_get(const struct blk_q6_k *b, int e)
{
    int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t *ql = b->ql + h * 64, *qh = b->qh + h * 32;
    int lo = quarter & 1 ? ql[l + 32] : ql[l];
    lo = quarter >= 2 ? lo >> 4 : lo & 0xF;
    int hi = (qh[l] >> (2 * quarter)) & 3;
    return lo | (hi << 4);
}

static float dot_q6_k(const void *w, const struct kern_arow *a, int n)
{
    const struct blk_q6_k *b = w;
    float s = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const int8_t *y = a->qs + i * QK_K;
        int32_t sumi = 0;
        for (int k = 0; k < 16; k++) {
            int32_t acc = 0;
            for (int l = 0; l < 16; l++) acc += (q6k_get(&b[i], k * 16 + l) - 32) * y[k * 16 + l];
            sumi += b[i].scales[k] * acc;
        }
        s += kern_f16_to_f32(b[i].d) * a->d[i] * (float)sumi;
    }
    return s;
}

/* Packed Q4_0_R16 / Q8_0_R16 (see kernels_impl.h): the same sums in the same order as
 * dot_q4_0 / dot_q8_0 on the row before packing, so the results are bit-identical. */
static float dot_q4_0_r16(const uint8_t *group, int i, const struct kern_arow *a, int n)
{
    const int nb = n / 32;
    const uint16_t *d = (const uint16_t *)(group + (size_t)nb * 256);
    float s = 0;
    for (int b = 0; b < nb; b++) {
        const uint8_t *qb = group + (size_t)b * 256;
        const int8_t *y = a->qs + b * 32;
        int32_t acc = 0;
        for (int j = 0; j < 16; j++) {
            uint8_t q = qb[(j / 4) * 64 + 4 * i + j % 4];
            acc += ((q & 0xF) - 8) * y[j];
            acc += ((q >> 4) - 8) * y[j + 16];
        }
        uint16_t h;
        memcpy(&h, d + 16 * b + i, 2);
        s += kern_f16_to_f32(h) * a->d[b] * (float)acc;
    }
    return s;
}

static float dot_q8_0_r16(const uint8_t *group, int i, const struct kern_arow *a, int n)
{
    const int nb = n / 32;
    const uint16_t *d = (const uint16_t *)(group + (size_t)nb * 512);
    float s = 0;
    for (int b = 0; b < nb; b++) {
        const int8_t *qb = (const int8_t *)group + (size_t)b * 512;
        int32_t acc = 0;
        for (int j = 0; j < 32; j++) acc += qb[(j / 4) * 64 + 4 * i + j % 4] * a->qs[b * 32 + j];
        uint16_t h;
        memcpy(&h, d + 16 * b + i, 2);
        s += kern_f16_to_f32(h) * a->d[b] * (float)acc;
    }
    return s;
}

/* Same sums in the same order as dot_q4_k. */
static float dot_q4_k_r16(const uint8_t *group, int i, const struct kern_arow *a, int n)
{
    float s = 0;
    for (int b = 0; b < n / QK_K; b++) {
        const uint8_t *col = group + (size_t)b * KERN_R16 * sizeof(struct blk_q4_k);
        uint16_t d, dmin;
        memcpy(&d, col + 2 * i, 2);
        memcpy(&dmin, col + 32 + 2 * i, 2);
        uint8_t scales[12];
        for (int w = 0; w < 3; w++) memcpy(scales + 4 * w, col + 64 + 64 * w + 4 * i, 4);
        const uint8_t *qs = col + 256;
        const int8_t *y = a->qs + b * QK_K;
        const int16_t *bs = a->bsum + b * 16;
        int32_t sumi = 0, summ = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kern_q4k_scale(j, scales, &sc, &m);
            int shift = (j & 1) * 4, g = j / 2;
            int32_t acc = 0;
            for (int l = 0; l < 32; l++) {
                uint8_t q = qs[64 * (8 * g + l / 4) + 4 * i + l % 4];
                acc += ((q >> shift) & 0xF) * y[j * 32 + l];
            }
            sumi += sc * acc;
            summ += m * (bs[2 * j] + bs[2 * j + 1]);
        }
        float dy = a->d[b];
        s += kern_f16_to_f32(d) * dy * (float)sumi - kern_f16_to_f32(dmin) * dy * (float)summ;
    }
    return s;
}

/* Rebuilds row i's GGUF Q6_K block from a packed column, then the same sums as dot_q6_k. */
static float dot_q6_k_r16(const uint8_t *group, int i, const struct kern_arow *a, int n)
{
    float s = 0;
    for (int b = 0; b < n / QK_K; b++) {
        const uint8_t *col = group + (size_t)b * KERN_R16 * sizeof(struct blk_q6_k);
        struct blk_q6_k blk;
        memcpy(&blk.d, col + 2 * i, 2);
        for (int v = 0; v < 4; v++) memcpy(blk.scales + 4 * v, col + 32 + 64 * v + 4 * i, 4);
        for (int c = 0; c < 32; c++) memcpy(blk.ql + 4 * c, col + 288 + 64 * c + 4 * i, 4);
        for (int c = 0; c < 16; c++) memcpy(blk.qh + 4 * c, col + 288 + 2048 + 64 * c + 4 * i, 4);
        struct kern_arow one = *a;
        one.qs = a->qs + b * QK_K;
        one.d = a->d + b;
        s += dot_q6_k(&blk, &one, QK_K);
    }
    return s;
}

/* ---------------------------------------------------------------- scalar row jobs */

#define SCALAR_ROWS_F(name, dotfn)                                                             \
    static void name(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,      \
                     float *Y, int ldy, int r0, int r1, int n, int cols)                       \
    {                                                                                          \
        for (int c = 0; c < n; c++)                                                            \
            for (int r = r0; r < r1; r++)                                                      \
                Y[(size_t)c * ldy + r] = dotfn(W + (size_t)r * wstride,                        \
                                               (const float *)(A + (size_t)c * astride), cols); \
    }

#define SCALAR_ROWS_Q(name, dotfn, act)                                                        \
    static void name(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,      \
                     float *Y, int ldy, int r0, int r1, int n, int cols)                       \
    {                                                                                          \
        for (int c = 0; c < n; c++) {                                                          \
            struct kern_arow ar = kern_arow_at(act, A + (size_t)c * astride, cols);            \
            for (int r = r0; r < r1; r++)                                                      \
                Y[(size_t)c * ldy + r] = dotfn(W + (size_t)r * wstride, &ar, cols);            \
        }                                                                                      \
    }

/* Packed rows: row r is row r % 16 of the group starting at (r / 16) * 16 row sizes. */
#define SCALAR_ROWS_R16(name, dotfn, act)                                                         \
    static void name(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,      \
                     float *Y, int ldy, int r0, int r1, int n, int cols)                       \
    {                                                                                          \
        for (int c = 0; c < n; c++) {                                                          \
            struct kern_arow ar = kern_arow_at(act, A + (size_t)c * astride, cols);            \
            for (int r = r0; r < r1; r++)                                                      \
                Y[(size_t)c * ldy + r] = dotfn(W + (size_t)(r / KERN_R16) * KERN_R16 * wstride, \
                                               r % KERN_R16, &ar, cols);                       \
        }                                                                                      \
    }

SCALAR_ROWS_R16(rows_q4_0_r16, dot_q4_0_r16, KERN_ACT_Q8_0)
SCALAR_ROWS_R16(rows_q8_0_r16, dot_q8_0_r16, KERN_ACT_Q8_0)
SCALAR_ROWS_R16(rows_q4_k_r16, dot_q4_k_r16, KERN_ACT_Q8_K)
SCALAR_ROWS_R16(rows_q6_k_r16, dot_q6_k_r16, KERN_ACT_Q8_K)
SCALAR_ROWS_F(rows_f32, dot_f32)
SCALAR_ROWS_F(rows_f16, dot_f16)
SCALAR_ROWS_F(rows_bf16, dot_bf16)
SCALAR_ROWS_Q(rows_q8_0, dot_q8_0, KERN_ACT_Q8_0)
SCALAR_ROWS_Q(rows_q4_0, dot_q4_0, KERN_ACT_Q8_0)
SCALAR_ROWS_Q(rows_q4_k, dot_q4_k, KERN_ACT_Q8_K)
SCALAR_ROWS_Q(rows_q6_k, dot_q6_k, KERN_ACT_Q8_K)

void kern_ops_scalar(struct kern_ops *o)
{
    memset(o, 0, sizeof *o);
    o->rows[GGML_TYPE_F32] = rows_f32;
    o->rows[GGML_TYPE_F16] = rows_f16;
    o->rows[GGML_TYPE_BF16] = rows_bf16;
    o->rows[GGML_TYPE_Q8_0] = rows_q8_0;
    o->rows[GGML_TYPE_Q4_0] = rows_q4_0;
    o->rows[GGML_TYPE_Q4_K] = rows_q4_k;
    o->rows[GGML_TYPE_Q6_K] = rows_q6_k;
    o->rows[KERN_TYPE_Q4_0_R16] = rows_q4_0_r16;
    o->rows[KERN_TYPE_Q8_0_R16] = rows_q8_0_r16;
    o->rows[KERN_TYPE_Q4_K_R16] = rows_q4_k_r16;
    o->rows[KERN_TYPE_Q6_K_R16] = rows_q6_k_r16;
    o->act_quantize = kern_act_quantize;
}

/* ---------------------------------------------------------------- dispatch */

static struct kern_ops g_ops_by_isa[3];
static enum kern_isa g_isa_max = KERN_ISA_SCALAR;
static _Atomic int g_isa = KERN_ISA_SCALAR;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static enum kern_isa detect_isa(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    /* clang before 16 does not know "f16c" here; no CPU with AVX2 + FMA lacks it. */
#if defined(__clang__) && __clang_major__ < 16
    const bool f16c = true;
#else
    const bool f16c = __builtin_cpu_supports("f16c");
#endif
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") && f16c &&
        __builtin_cpu_supports("fma"))
        return KERN_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c)
        return KERN_ISA_AVX2;
#endif
    return KERN_ISA_SCALAR;
}

/* Builds each ISA's table with scalar fallbacks for entries it leaves NULL. */
static void kern_init_once(void)
{
    g_isa_max = detect_isa();
    struct kern_ops scalar;
    kern_ops_scalar(&scalar);
    for (int i = 0; i <= (int)g_isa_max; i++) {
        struct kern_ops *o = &g_ops_by_isa[i];
        if (i == KERN_ISA_SCALAR) *o = scalar;
#if defined(__x86_64__) || defined(__i386__)
        else if (i == KERN_ISA_AVX2) kern_ops_avx2(o);
        else kern_ops_avx512(o);
#endif
        for (int t = 0; t < KERN_TYPE_END; t++)
            if (!o->rows[t]) o->rows[t] = scalar.rows[t];
        if (!o->act_quantize) o->act_quantize = scalar.act_quantize;
    }
    enum kern_isa isa = g_isa_max;
    const char *env = getenv("NR_ISA");
    if (env) {
        enum kern_isa cap = isa;
        if (!strcmp(env, "scalar")) cap = KERN_ISA_SCALAR;
        else if (!strcmp(env, "avx2")) cap = KERN_ISA_AVX2;
        else if (!strcmp(env, "avx512")) cap = KERN_ISA_AVX512;
        if (cap < isa) isa = cap;
    }
    atomic_store(&g_isa, (int)isa);
}

void kern_init(void)
{
    pthread_once(&g_once, kern_init_once);
}

enum kern_isa kern_isa(void)
{
    kern_init();
    return (enum kern_isa)atomic_load(&g_isa);
}

const char *kern_isa_name(enum kern_isa isa)
{
    switch (isa) {
    case KERN_ISA_SCALAR: return "scalar";
    case KERN_ISA_AVX2: return "avx2";
    case KERN_ISA_AVX512: return "avx512";
    }
    return "?";
}

enum kern_isa kern_force_isa(enum kern_isa isa)
{
    kern_init();
    if (isa > g_isa_max) isa = g_isa_max;
    if (isa < KERN_ISA_SCALAR) isa = KERN_ISA_SCALAR;
    atomic_store(&g_isa, (int)isa);
    return isa;
}

enum ggml_type kern_repack_type(enum ggml_type t, int rows, int cols)
{
    if (rows <= 0 || rows % KERN_R16 || cols <= 0 || cols % 32 || kern_isa() < KERN_ISA_AVX512)
        return t;
    if (t == GGML_TYPE_Q4_0) return KERN_TYPE_Q4_0_R16;
    if (t == GGML_TYPE_Q8_0) return KERN_TYPE_Q8_0_R16;
    if (t == GGML_TYPE_Q4_K && cols % QK_K == 0) return KERN_TYPE_Q4_K_R16;
    if (t == GGML_TYPE_Q6_K && cols % QK_K == 0) return KERN_TYPE_Q6_K_R16;
    return t;
}

/* Interleaves each group of 16 rows 4 bytes at a time (layouts in kernels_impl.h). Does not
 * depend on the CPU: a packed matrix is valid for every ISA (the scalar kernel reads it). */
int kern_repack(enum ggml_type t, const void *W, void *out, int rows, int cols)
{
    if (rows <= 0 || rows % KERN_R16 || cols <= 0 || cols % 32) return -1;
    if (t == GGML_TYPE_Q4_K) {
        if (cols % QK_K) return -1;
        const int nk = cols / QK_K;
        const size_t rsize = kt_row_size(t, cols), csize = KERN_R16 * sizeof(struct blk_q4_k);
        for (int g = 0; g < rows / KERN_R16; g++) {
            uint8_t *dst = (uint8_t *)out + (size_t)g * KERN_R16 * rsize;
            for (int i = 0; i < KERN_R16; i++) {
                const struct blk_q4_k *row =
                    (const struct blk_q4_k *)((const uint8_t *)W + ((size_t)g * KERN_R16 + i) * rsize);
                for (int b = 0; b < nk; b++) {
                    uint8_t *col = dst + (size_t)b * csize;
                    memcpy(col + 2 * i, &row[b].d, 2);
                    memcpy(col + 32 + 2 * i, &row[b].dmin, 2);
                    for (int w = 0; w < 3; w++) memcpy(col + 64 + 64 * w + 4 * i, row[b].scales + 4 * w, 4);
                    for (int c = 0; c < 32; c++) memcpy(col + 256 + 64 * c + 4 * i, row[b].qs + 4 * c, 4);
                }
            }
        }
        return 0;
    }
    if (t == GGML_TYPE_Q6_K) {
        if (cols % QK_K) return -1;
        const int nk = cols / QK_K;
        const size_t rsize = kt_row_size(t, cols), csize = KERN_R16 * sizeof(struct blk_q6_k);
        for (int g = 0; g < rows / KERN_R16; g++) {
            uint8_t *dst = (uint8_t *)out + (size_t)g * KERN_R16 * rsize;
            for (int i = 0; i < KERN_R16; i++) {
                const struct blk_q6_k *row =
                    (const struct blk_q6_k *)((const uint8_t *)W + ((size_t)g * KERN_R16 + i) * rsize);
                for (int b = 0; b < nk; b++) {
                    uint8_t *col = dst + (size_t)b * csize;
                    memcpy(col + 2 * i, &row[b].d, 2);
                    for (int v = 0; v < 4; v++) memcpy(col + 32 + 64 * v + 4 * i, row[b].scales + 4 * v, 4);
                    for (int c = 0; c < 32; c++) memcpy(col + 288 + 64 * c + 4 * i, row[b].ql + 4 * c, 4);
                    for (int c = 0; c < 16; c++)
                        memcpy(col + 288 + 2048 + 64 * c + 4 * i, row[b].qh + 4 * c, 4);
                }
            }
        }
        return 0;
    }
    if (t != GGML_TYPE_Q4_0 && t != GGML_TYPE_Q8_0) return -1;
    const int nb = cols / 32, q4 = t == GGML_TYPE_Q4_0;
    const size_t qbytes = q4 ? 16 : 32, rsize = kt_row_size(t, cols), bsize = q4 ? 18 : 34;
    for (int g = 0; g < rows / KERN_R16; g++) {
        uint8_t *dst = (uint8_t *)out + (size_t)g * KERN_R16 * rsize;
        uint8_t *dd = dst + (size_t)nb * KERN_R16 * qbytes;
        for (int i = 0; i < KERN_R16; i++) {
            const uint8_t *row = (const uint8_t *)W + ((size_t)g * KERN_R16 + i) * rsize;
            for (int b = 0; b < nb; b++) {
                const uint8_t *blk = row + (size_t)b * bsize; /* f16 d, then qs */
                memcpy(dd + 2 * ((size_t)b * KERN_R16 + i), blk, 2);
                for (size_t k = 0; k < qbytes / 4; k++)
                    memcpy(dst + (size_t)b * KERN_R16 * qbytes + 64 * k + 4 * i, blk + 2 + 4 * k, 4);
            }
        }
    }
    return 0;
}

bool kern_type_supported(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K: return true;
    default: return false;
    }
}

size_t kern_scratch_size(enum ggml_type t, int cols, int n)
{
    enum kern_act a = kern_act_of(t);
    if (a == KERN_ACT_F32 || n <= 0 || cols <= 0) return 0;
    return kern_act_stride(a, cols) * (size_t)n + 64; /* + room to align the start */
}

/* ---------------------------------------------------------------- matmul */

struct mm_ctx {
    const struct kern_ops *ops;
    kern_rows_fn fn;
    enum kern_act act;
    const uint8_t *W;
    size_t wstride;
    const float *X;
    uint8_t *A;
    size_t astride;
    float *Y;
    int rows, cols, n, tile;
};

static void mm_quantize_job(void *ctx, size_t b, size_t e, int tid)
{
    (void)tid;
    struct mm_ctx *m = ctx;
    for (size_t c = b; c < e; c++)
        m->ops->act_quantize(m->act, m->X + c * (size_t)m->cols, m->A + c * m->astride, m->cols);
}

static void mm_rows_job(void *ctx, size_t b, size_t e, int tid)
{
    (void)tid;
    struct mm_ctx *m = ctx;
    m->fn(m->W, m->wstride, m->A, m->astride, m->Y, m->rows, (int)b, (int)e, m->n, m->cols);
}

/* Quantizes X once into scratch (in parallel over rows of X), then hands out weight rows in
 * chunks: each chunk's rows are read once for all n activation rows, which the per-ISA jobs
 * tile so that a weight block in registers meets several activations. Chunks are small
 * enough that two threads stay balanced when one of them is slowed by a busy neighbour. */
void kern_matmul(enum ggml_type t, const void *W, const float *X, float *Y, int rows, int cols,
                 int n, void *scratch, struct pool *pool)
{
    if (rows <= 0 || n <= 0 || cols <= 0 || (unsigned)t >= (unsigned)KERN_TYPE_END) return;
    if (kt_base(t) != t && rows % KERN_R16) return; /* packed: whole groups only */
    kern_init();
    const struct kern_ops *ops = &g_ops_by_isa[atomic_load(&g_isa)];
    struct mm_ctx m = {.ops = ops, .fn = ops->rows[t], .act = kern_act_of(t), .W = W,
                       .wstride = kt_row_size(t, cols), .X = X, .Y = Y,
                       .rows = rows, .cols = cols, .n = n};
    if (!m.fn || m.wstride == 0) return; /* unsupported type or bad cols: caller's bug */
    if (m.act == KERN_ACT_F32) {
        m.A = (uint8_t *)(uintptr_t)X;
        m.astride = (size_t)cols * sizeof(float);
    } else {
        m.A = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        m.astride = kern_act_stride(m.act, cols);
        pool_for(n >= 8 ? pool : NULL, (size_t)n, 0, mm_quantize_job, &m);
    }
    /* Chunk of weight rows: ~16 KiB of weights per chunk for matvec, fewer rows when many
     * activation rows make each chunk expensive; a multiple of 16 so tiles stay whole. */
    size_t chunk = (16384 / (m.wstride ? m.wstride : 1) + 15) & ~(size_t)15;
    if (chunk < 16) chunk = 16;
    if (n > 16 && chunk > 32) chunk = 32;
    int nt = pool_threads(pool);
    while (nt > 1 && chunk > 16 && (size_t)rows / chunk < (size_t)nt * 4) chunk /= 2;
    chunk = chunk > 16 ? chunk & ~(size_t)15 : 16; /* packed types need whole 16-row groups */
    pool_for(pool, (size_t)rows, chunk, mm_rows_job, &m);
}

/* Scalar references: plain sums in index order. */
static void attn_scores_scalar(enum ggml_type kv, const float *q, const void *K, size_t stride,
                               int T, int D, float scale, float *out)
{
    for (int t = 0; t < T; t++) {
        const uint8_t *kr = (const uint8_t *)K + (size_t)t * stride;
        float sum = 0.0f;
        if (kv == GGML_TYPE_F16)
            for (int d = 0; d < D; d++) {
                uint16_t h;
                memcpy(&h, kr + 2 * d, 2);
                sum += kern_f16_to_f32(h) * q[d];
            }
        else
            for (int d = 0; d < D; d++) sum += ((const float *)kr)[d] * q[d];
        out[t] = sum * scale;
    }
}

static void attn_accum_scalar(enum ggml_type kv, const float *a, const void *V, size_t stride,
                              int T, int D, float *o)
{
    for (int t = 0; t < T; t++) {
        const uint8_t *vr = (const uint8_t *)V + (size_t)t * stride;
        if (kv == GGML_TYPE_F16)
            for (int d = 0; d < D; d++) {
                uint16_t h;
                memcpy(&h, vr + 2 * d, 2);
                o[d] += a[t] * kern_f16_to_f32(h);
            }
        else
            for (int d = 0; d < D; d++) o[d] += a[t] * ((const float *)vr)[d];
    }
}

void kern_attn_scores(enum ggml_type kv, const float *q, const void *K, size_t stride, int T,
                      int D, float scale, float *out)
{
    kern_init();
    const struct kern_ops *ops = &g_ops_by_isa[atomic_load(&g_isa)];
    if (ops->attn_scores && D % 16 == 0) ops->attn_scores(kv, q, K, stride, T, D, scale, out);
    else attn_scores_scalar(kv, q, K, stride, T, D, scale, out);
}

void kern_attn_accum(enum ggml_type kv, const float *a, const void *V, size_t stride, int T,
                     int D, float *o)
{
    kern_init();
    const struct kern_ops *ops = &g_ops_by_isa[atomic_load(&g_isa)];
    if (ops->attn_accum && D % 16 == 0) ops->attn_accum(kv, a, V, stride, T, D, o);
    else attn_accum_scalar(kv, a, V, stride, T, D, o);
}

void kern_softmax(float *x, int n)
{
    kern_init();
    const struct kern_ops *ops = &g_ops_by_isa[atomic_load(&g_isa)];
    if (ops->softmax) {
        ops->softmax(x, n);
        return;
    }
    if (n <= 0) return; /* scalar reference, the same as ops_softmax */
    float maxv = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > maxv) maxv = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - maxv);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

float kern_dot_row(enum ggml_type t, const void *wrow, const float *x, int cols)
{
    uint32_t bs = kt_blck(t);
    if (!kern_type_supported(t) || cols <= 0 || bs == 0 || cols % (int)bs) return 0;
    switch (t) {
    case GGML_TYPE_F32: return dot_f32(wrow, x, cols);
    case GGML_TYPE_F16: return dot_f16(wrow, x, cols);
    case GGML_TYPE_BF16: return dot_bf16(wrow, x, cols);
    default: break;
    }
    /* Quantized types: dequantize block by block and dot in f32 (exact weights, no
     * activation rounding). */
    float buf[QK_K];
    size_t bbytes = kt_bytes(t);
    float s = 0;
    const uint8_t *w = wrow;
    for (int i = 0; i < cols / (int)bs; i++) {
        kern_dequantize_row(t, w + (size_t)i * bbytes, buf, bs);
        for (uint32_t j = 0; j < bs; j++) s += buf[j] * x[(size_t)i * bs + j];
    }
    return s;
}

/* ---------------------------------------------------------------- dequantize */

int kern_dequantize_row(enum ggml_type t, const void *in, float *y, int64_t n)
{
    uint32_t bs = kt_blck(t);
    if (!kern_type_supported(t) || n < 0 || bs == 0 || n % bs) return -1;
    switch (t) {
    case GGML_TYPE_F32: memcpy(y, in, (size_t)n * 4); return 0;
    case GGML_TYPE_F16: {
        const uint16_t *h = in;
        for (int64_t i = 0; i < n; i++) y[i] = kern_f16_to_f32(h[i]);
        return 0;
    }
    case GGML_TYPE_BF16: {
        const uint16_t *h = in;
        for (int64_t i = 0; i < n; i++) y[i] = kern_bf16_to_f32(h[i]);
        return 0;
    }
    case GGML_TYPE_Q8_0: {
        const struct blk_q8_0 *b = in;
        for (int64_t i = 0; i < n / 32; i++) {
            float d = kern_f16_to_f32(b[i].d);
            for (int j = 0; j < 32; j++) y[i * 32 + j] = d * b[i].qs[j];
        }
        return 0;
    }
    case GGML_TYPE_Q4_0: {
        const struct blk_q4_0 *b = in;
        for (int64_t i = 0; i < n / 32; i++) {
            float d = kern_f16_to_f32(b[i].d);
            for (int j = 0; j < 16; j++) {
                y[i * 32 + j] = d * ((b[i].qs[j] & 0xF) - 8);
                y[i * 32 + j + 16] = d * ((b[i].qs[j] >> 4) - 8);
            }
        }
        return 0;
    }
    case GGML_TYPE_Q4_K: {
        const struct blk_q4_k *b = in;
        for (int64_t i = 0; i < n / QK_K; i++) {
            float d = kern_f16_to_f32(b[i].d), dmin = kern_f16_to_f32(b[i].dmin);
            for (int j = 0; j < 8; j++) {
                uint8_t sc, m;
                kern_q4k_scale(j, b[i].scales, &sc, &m);
                const uint8_t *q = b[i].qs + (j / 2) * 32;
                int shift = (j & 1) * 4;
                for (int l = 0; l < 32; l++)
                    y[i * QK_K + j * 32 + l] = d * sc * ((q[l] >> shift) & 0xF) - dmin * m;
            }
        }
        return 0;
    }
    case GGML_TYPE_Q6_K: {
        const struct blk_q6_k *b = in;
        for (int64_t i = 0; i < n / QK_K; i++) {
            float d = kern_f16_to_f32(b[i].d);
            for (int e = 0; e < QK_K; e++)
                y[i * QK_K + e] = d * b[i].scales[e / 16] * (q6k_get(&b[i], e) - 32);
        }
        return 0;
    }
    default: return -1;
    }
}

/* ---------------------------------------------------------------- quantize */

static void quantize_q8_0(const float *x, struct blk_q8_0 *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * 32;
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < 32; j++) b[i].qs[j] = (int8_t)nearest_int(xb[j] * id);
    }
}

/* ggml's Q4_0 rule: the largest-magnitude value maps to -8 exactly (d = max / -8). */
static void quantize_q4_0(const float *x, struct blk_q4_0 *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * 32;
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = (int)(int8_t)(xb[j] * id + 8.5f), q1 = (int)(int8_t)(xb[j + 16] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Fits x ≈ scale * L - mn (L in 0..nmax, mn >= 0) for one sub-block by trying a few step
 * sizes around (max - min) / nmax and solving the weighted least-squares scale and offset for
 * each rounding; keeps the best. Weights favour large magnitudes (they matter most to dots).
 * Returns scale, stores mn (the positive "min"). */
static float fit_scale_min(const float *x, int n, int nmax, float *mn_out)
{
    float mn = x[0], mx = x[0], sumx2 = 0;
    for (int i = 0; i < n; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
        sumx2 += x[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx <= mn) {
        *mn_out = -mn;
        return 0;
    }
    float av = sqrtf(sumx2 / n), w[QK_K];
    for (int i = 0; i < n; i++) w[i] = av + fabsf(x[i]);
    float best_scale = (mx - mn) / nmax, best_min = mn, best_err = INFINITY;
    for (int step = -4; step <= 8; step++) {
        float iscale = (nmax + 0.1f * step) / (mx - mn);
        float sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - mn));
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            sw += w[i];
            sl += w[i] * l;
            sl2 += w[i] * l * l;
            sx += w[i] * x[i];
            slx += w[i] * l * x[i];
        }
        float det = sw * sl2 - sl * sl;
        if (det <= 0) continue;
        float scale = (sw * slx - sl * sx) / det, off = (sl2 * sx - sl * slx) / det;
        if (off > 0) { /* offset must be <= 0: refit scale alone */
            off = 0;
            scale = sl2 > 0 ? slx / sl2 : 0;
        }
        if (scale <= 0) continue;
        float err = 0, inv = 1.0f / scale;
        for (int i = 0; i < n; i++) {
            int l = nearest_int((x[i] - off) * inv);
            l = l < 0 ? 0 : (l > nmax ? nmax : l);
            float dlt = scale * l + off - x[i];
            err += w[i] * dlt * dlt;
        }
        if (err < best_err) {
            best_err = err;
            best_scale = scale;
            best_min = off;
        }
    }
    *mn_out = -best_min;
    return best_scale;
}

static void quantize_q4_k(const float *x, struct blk_q4_k *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK_K;
        float scales[8], mins[8], max_sc = 0, max_mn = 0;
        for (int j = 0; j < 8; j++) {
            scales[j] = fit_scale_min(xb + j * 32, 32, 15, &mins[j]);
            max_sc = fmaxf(max_sc, scales[j]);
            max_mn = fmaxf(max_mn, mins[j]);
        }
        float isc = max_sc > 0 ? 63.0f / max_sc : 0, imn = max_mn > 0 ? 63.0f / max_mn : 0;
        uint8_t ls[8], lm[8];
        memset(b[i].scales, 0, sizeof b[i].scales);
        for (int j = 0; j < 8; j++) {
            int a = nearest_int(isc * scales[j]), c = nearest_int(imn * mins[j]);
            ls[j] = (uint8_t)(a > 63 ? 63 : a);
            lm[j] = (uint8_t)(c > 63 ? 63 : c);
            if (j < 4) {
                b[i].scales[j] = ls[j];
                b[i].scales[j + 4] = lm[j];
            } else {
                b[i].scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                b[i].scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
                b[i].scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
            }
        }
        b[i].d = kern_f32_to_f16(max_sc / 63.0f);
        b[i].dmin = kern_f32_to_f16(max_mn / 63.0f);
        float d = kern_f16_to_f32(b[i].d), dmin = kern_f16_to_f32(b[i].dmin);
        uint8_t L[QK_K];
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            kern_q4k_scale(j, b[i].scales, &sc, &m);
            float ds = d * sc, dm = dmin * m;
            for (int l = 0; l < 32; l++) {
                int q = ds > 0 ? nearest_int((xb[j * 32 + l] + dm) / ds) : 0;
                L[j * 32 + l] = (uint8_t)(q < 0 ? 0 : (q > 15 ? 15 : q));
            }
        }
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++)
                b[i].qs[g * 32 + l] = (uint8_t)(L[g * 64 + l] | (L[g * 64 + 32 + l] << 4));
    }
}

/* Signed symmetric fit x ≈ scale * l, l in [-nmax, nmax-1], for one sub-block of 16: tries
 * step sizes around the one mapping the largest-magnitude value to -nmax, keeps the weighted
 * least-squares best. */
static float fit_scale_sym(const float *x, int n, int nmax)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax == 0) return 0;
    float best = max / -nmax, best_err = INFINITY;
    for (int step = -9; step <= 9; step++) {
        float iscale = -(nmax + 0.1f * step) / max;
        float slx = 0, sl2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
            float w = x[i] * x[i];
            slx += w * l * x[i];
            sl2 += w * l * l;
        }
        if (sl2 <= 0) continue;
        float scale = slx / sl2, err = 0, inv = 1.0f / scale;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(x[i] * inv);
            l = l < -nmax ? -nmax : (l > nmax - 1 ? nmax - 1 : l);
            float dlt = scale * l - x[i];
            err += x[i] * x[i] * dlt * dlt;
        }
        if (err < best_err) {
            best_err = err;
            best = scale;
        }
    }
    return best;
}

static void quantize_q6_k(const float *x, struct blk_q6_k *b, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float *xb = x + i * QK_K;
        float scales[16], amax = 0, max = 0;
        for (int k = 0; k < 16; k++) {
            scales[k] = fit_scale_sym(xb + k * 16, 16, 32);
            if (fabsf(scales[k]) > amax) {
                amax = fabsf(scales[k]);
                max = scales[k];
            }
        }
        uint8_t L[QK_K];
        memset(b[i].ql, 0, sizeof b[i].ql);
        memset(b[i].qh, 0, sizeof b[i].qh);
        if (amax == 0) {
            memset(b[i].scales, 0, sizeof b[i].scales);
            b[i].d = 0;
            memset(L, 32, sizeof L);
        } else {
            float iscale = -128.0f / max;
            b[i].d = kern_f32_to_f16(1.0f / iscale);
            float d = kern_f16_to_f32(b[i].d);
            for (int k = 0; k < 16; k++) {
                int s = nearest_int(iscale * scales[k]);
                b[i].scales[k] = (int8_t)(s > 127 ? 127 : (s < -128 ? -128 : s));
                float ds = d * b[i].scales[k];
                for (int l = 0; l < 16; l++) {
                    int q = ds != 0 ? nearest_int(xb[k * 16 + l] / ds) : 0;
                    q = q < -32 ? -32 : (q > 31 ? 31 : q);
                    L[k * 16 + l] = (uint8_t)(q + 32);
                }
            }
        }
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + h * 64, *qh = b[i].qh + h * 32;
            const uint8_t *Lh = L + h * 128;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                  ((Lh[l + 96] >> 4) << 6));
            }
        }
    }
}

int kern_quantize_row(enum ggml_type t, const float *x, void *out, int64_t n)
{
    uint32_t bs = kt_blck(t);
    if (!kern_type_supported(t) || n < 0 || bs == 0 || n % bs) return -1;
    switch (t) {
    case GGML_TYPE_F32: memcpy(out, x, (size_t)n * 4); return 0;
    case GGML_TYPE_F16: {
        uint16_t *h = out;
        for (int64_t i = 0; i < n; i++) h[i] = kern_f32_to_f16(x[i]);
        return 0;
    }
    case GGML_TYPE_BF16: {
        uint16_t *h = out;
        for (int64_t i = 0; i < n; i++) h[i] = kern_f32_to_bf16(x[i]);
        return 0;
    }
    case GGML_TYPE_Q8_0: quantize_q8_0(x, out, n / 32); return 0;
    case GGML_TYPE_Q4_0: quantize_q4_0(x, out, n / 32); return 0;
    case GGML_TYPE_Q4_K: quantize_q4_k(x, out, n / QK_K); return 0;
    case GGML_TYPE_Q6_K: quantize_q6_k(x, out, n / QK_K); return 0;
    default: return -1;
    }
}
