/* Private to engine/kernels*.c: block layouts, the activation formats kept in the caller's
 * scratch, and the per-ISA function tables. Not part of the engine's public API. */
#ifndef ENGINE_KERNELS_IMPL_H
#define ENGINE_KERNELS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"
#include "engine/kernels.h"

#define QK4_0 32
#define QK8_0 32
#define QK_K 256

/* GGUF/ggml block layouts (little-endian, packed with no padding). */
struct blk_q8_0 {
    uint16_t d; /* f16 scale */
    int8_t qs[QK8_0];
};
struct blk_q4_0 {
    uint16_t d;             /* f16 scale; value = (q - 8) * d */
    uint8_t qs[QK4_0 / 2];  /* low nibble = element j, high nibble = element j + 16 */
};
struct blk_q4_k {
    uint16_t d, dmin;       /* f16 super-block scales for the 6-bit scales and mins */
    uint8_t scales[12];     /* 8 scales + 8 mins, 6 bits each, packed (see kern_q4k_scale) */
    uint8_t qs[QK_K / 2];   /* per 64 elements: 32 bytes, low nibbles first 32, high next 32 */
};
struct blk_q6_k {
    uint8_t ql[QK_K / 2];   /* low 4 bits */
    uint8_t qh[QK_K / 4];   /* high 2 bits */
    int8_t scales[QK_K / 16];
    uint16_t d;             /* f16 super-block scale; value = d * scale * (q - 32) */
};

_Static_assert(sizeof(struct blk_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(struct blk_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(struct blk_q4_k) == 144, "q4_K block");
_Static_assert(sizeof(struct blk_q6_k) == 210, "q6_K block");

/* Packed layouts (kern_repack). Rows in groups of 16; a group of a matrix with nb = cols/32
 * blocks per row takes 16 row sizes of bytes, as the 16 GGUF rows did:
 *   Q4_0_R16: nb block columns of 256 bytes, then nb x 16 f16 scales (scale of row i of block
 *             column b at [16 b + i]). In block column b, 64-byte chunk k (0..3) holds in
 *             bytes 4i..4i+3 row i's qs[4k..4k+3]: low nibbles are elements 4k..4k+3, high
 *             nibbles elements 16+4k..16+4k+3.
 *   Q8_0_R16: nb block columns of 512 bytes (chunk k of 8: bytes 4i..4i+3 = row i's
 *             qs[4k..4k+3]), then nb x 16 f16 scales.
 *   Q4_K_R16: per super-block column (nk = cols/256 of them) 2304 bytes: 16 f16 d, 16 f16
 *             dmin, then three 64-byte vectors whose lane i (4 bytes) is row i's scales[0..3],
 *             [4..7], [8..11] (so kern_q4k_unpack's word operations run on 16 rows at once),
 *             then 32 chunks of 64 bytes: chunk 8g + k, lane i = row i's qs[32g + 4k..+3]
 *             (low nibbles: sub-block 2g, high nibbles: sub-block 2g + 1).
 *   Q6_K_R16: per super-block column 3360 bytes: 16 f16 d, then four 64-byte vectors (lane i
 *             = row i's scales[4v..4v+3]), then 32 chunks of ql (chunk c, lane i = row i's
 *             ql[4c..4c+3]), then 16 chunks of qh (lane i = row i's qh[4c..4c+3]). */
#define KERN_R16 16

/* Activation formats: one row of `cols` values quantized into scratch, laid out as separate
 * arrays so SIMD code can load 32 int8 (and a block's scale as 8 lanes) at a time:
 *   ACT_Q8_0 (for Q8_0, Q4_0 weights), nb = cols/32:
 *        int8 qs[cols] | f32 d[nb] | i32 sum[nb] | f32 dx[8*nb] | i32 nsx[8*nb]
 *        value = qs * d; sum = sum of the block's qs; dx = d and nsx = -sum, each repeated 8
 *        times (ready-made vector operands: Q4_0 folds its "-8" in by adding nsx per lane).
 *   ACT_Q8_K (for Q4_K, Q6_K weights), nk = cols/256:
 *        int8 qs[cols] | f32 d[nk] | i16 bsum[16*nk] | i16 bsum32[8*nk]
 *        like ggml's block_q8_K: one scale per 256, sums per 16 (Q6_K's "-32") and per 32
 *        (Q4_K's mins).
 *   ACT_F32 (for F32, F16, BF16 weights): the caller's X is used as is. */
enum kern_act { KERN_ACT_F32, KERN_ACT_Q8_0, KERN_ACT_Q8_K };

/* A quantized activation row inside scratch. */
struct kern_arow {
    const int8_t *qs;
    const float *d;
    const int32_t *sum;   /* ACT_Q8_0 */
    const float *dx;      /* ACT_Q8_0 */
    const int32_t *nsx;   /* ACT_Q8_0 */
    const int16_t *bsum;  /* ACT_Q8_K */
    const int16_t *bsum32; /* ACT_Q8_K */
};

enum kern_act kern_act_of(enum ggml_type t);
/* Bytes of one quantized activation row (a multiple of 64). */
size_t kern_act_stride(enum kern_act a, int cols);
/* Views row `base` (kern_act_stride bytes) as a kern_arow. */
struct kern_arow kern_arow_at(enum kern_act a, const void *base, int cols);
/* Quantizes one f32 row into the activation format (scalar; identical results on all ISAs). */
void kern_act_quantize(enum kern_act a, const float *x, void *out, int cols);

/* Weight-row range job: Y[c*ldy + r] = dot(W row r, activation row c) for r in [r0, r1),
 * c in [0, n). W rows are `wstride` bytes apart; activation rows `astride` apart (for ACT_F32
 * A is the f32 X with astride = cols * 4). */
typedef void (*kern_rows_fn)(const uint8_t *W, size_t wstride, const uint8_t *A, size_t astride,
                             float *Y, int ldy, int r0, int r1, int n, int cols);

/* One ISA's kernels; a NULL entry falls back to the scalar one. */
struct kern_ops {
    kern_rows_fn rows[KERN_TYPE_END]; /* GGUF types, then the packed KERN_TYPE_* */
    /* Optional fast activation quantizer (must give the same bytes as the scalar one). */
    void (*act_quantize)(enum kern_act a, const float *x, void *out, int cols);
    /* Optional attention helpers (kern_attn_*), only called with D % 16 == 0. */
    void (*attn_scores)(enum ggml_type kv, const float *q, const void *K, size_t stride, int T,
                        int D, float scale, float *out);
    void (*attn_accum)(enum ggml_type kv, const float *a, const void *V, size_t stride, int T,
                       int D, float *o);
    void (*softmax)(float *x, int n); /* optional */
};

void kern_ops_scalar(struct kern_ops *o);
void kern_ops_avx2(struct kern_ops *o);
void kern_ops_avx512(struct kern_ops *o);

/* Unpacks scale j (0..7) and min j of a Q4_K super-block's 12 packed bytes. */
static inline void kern_q4k_scale(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Unpacks a Q4_K block's 12 scale bytes into 8 scales (bytes 0..7) and 8 mins (8..15) with
 * 32-bit word operations (same result as kern_q4k_scale for j = 0..7). */
static inline void kern_q4k_unpack(const uint8_t *q, uint32_t u[4])
{
    uint32_t w0, w1, w2;
    __builtin_memcpy(&w0, q, 4);
    __builtin_memcpy(&w1, q + 4, 4);
    __builtin_memcpy(&w2, q + 8, 4);
    u[0] = w0 & 0x3f3f3f3fu;                                         /* scales 0-3 */
    u[1] = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);    /* scales 4-7 */
    u[2] = w1 & 0x3f3f3f3fu;                                         /* mins 0-3 */
    u[3] = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4); /* mins 4-7 */
}

#endif
