/** Compute kernels with run-time CPU dispatch: dot products and matrix multiplication over
 *  weights in the GGUF block layouts (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K), activations in
 *  f32 (quantized on the fly to Q8 blocks where the format needs it).
 *
 *  Every kernel has a scalar reference (KERN_ISA_SCALAR) used as the test oracle; the SIMD
 *  variants (AVX2+FMA, AVX-512 with VNNI/BF16 where present) are chosen once at kern_init().
 *  Weight matrices are row-major: W has `rows` rows of `cols` elements, each row
 *  ggml_row_size(type, cols) bytes, exactly as a GGUF tensor with ne[0] = cols, ne[1] = rows. */
#ifndef ENGINE_KERNELS_H
#define ENGINE_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"
#include "engine/gguf.h"

enum kern_isa { KERN_ISA_SCALAR = 0, KERN_ISA_AVX2 = 1, KERN_ISA_AVX512 = 2 };

/** Detects the CPU and picks kernels; idempotent and thread-safe. $NR_ISA=scalar|avx2|avx512
 *  caps the choice (for tests and benchmarks). */
void kern_init(void);
enum kern_isa kern_isa(void);
const char *kern_isa_name(enum kern_isa isa);
/** Forces an ISA (never above what the CPU has); returns the one in effect. Tests only. */
enum kern_isa kern_force_isa(enum kern_isa isa);

/** Packed weight layouts (not GGUF types) that kern_repack makes and kern_matmul accepts in
 *  place of the GGUF type. Rows are interleaved in groups of 16 so one 512-bit vector holds
 *  4 bytes of each of 16 rows: a VNNI dot against a broadcast activation word then yields 16
 *  rows' partial sums with no horizontal reduction and no per-row scale shuffling (the
 *  layout llama.cpp's CPU "repack" buffers use, with groups of 16 instead of 8). Same bytes
 *  as the GGUF matrix they come from. See docs/kernels.md. */
#define KERN_TYPE_Q4_0_R16 ((enum ggml_type)(GGML_TYPE_COUNT + 0))
#define KERN_TYPE_Q8_0_R16 ((enum ggml_type)(GGML_TYPE_COUNT + 1))
#define KERN_TYPE_Q4_K_R16 ((enum ggml_type)(GGML_TYPE_COUNT + 2))
#define KERN_TYPE_Q6_K_R16 ((enum ggml_type)(GGML_TYPE_COUNT + 3))
#define KERN_TYPE_END (GGML_TYPE_COUNT + 4)

/** The packed type kern_repack turns a (rows x cols) matrix of type `t` into, or `t` itself
 *  when there is none worth using on this CPU (no AVX-512 VNNI, rows not a multiple of 16,
 *  or a type without a packed layout). */
enum ggml_type kern_repack_type(enum ggml_type t, int rows, int cols);

/** Writes W (rows x cols of type `t`, GGUF layout) into `out` in the layout of
 *  kern_repack_type(t, rows, cols); `out` holds as many bytes as W and must not overlap it.
 *  Returns 0, or -1 when there is no packed layout for these arguments. */
int kern_repack(enum ggml_type t, const void *W, void *out, int rows, int cols);

/** True if kern_matmul handles weights of this type. */
bool kern_type_supported(enum ggml_type t);

/** Bytes of scratch kern_matmul needs for n activation rows of `cols` (quantized copy). */
size_t kern_scratch_size(enum ggml_type t, int cols, int n);

/** Y[i][r] = sum_c X[i][c] * W[r][c] for i < n, r < rows.   X: (n, cols)  Y: (n, rows)
 *  `scratch` holds kern_scratch_size() bytes (may be NULL when that is 0). Rows are split
 *  across the pool's threads in dynamic chunks; pool may be NULL. cols must be a multiple of
 *  the type's block size. */
void kern_matmul(enum ggml_type t, const void *W, const float *X, float *Y, int rows, int cols,
                 int n, void *scratch, struct pool *pool);

/** Single-thread dot of one weight row with an f32 vector (reference path, embeddings). */
float kern_dot_row(enum ggml_type t, const void *wrow, const float *x, int cols);

/** Attention over cached rows: T rows of D elements of type `kv` (F32 or F16), `stride`
 *  bytes apart, starting at K (or V).
 *  kern_attn_scores: out[t] = scale * dot(q, K row t), t < T.
 *  kern_attn_accum:  o[d] += sum_t a[t] * V row t [d], d < D (summed in t order).
 *  SIMD when the ISA has it and D is a multiple of 16; the scalar reference otherwise. */
void kern_attn_scores(enum ggml_type kv, const float *q, const void *K, size_t stride, int T,
                      int D, float scale, float *out);
void kern_attn_accum(enum ggml_type kv, const float *a, const void *V, size_t stride, int T,
                     int D, float *o);

/** In-place softmax of x[0..n) (max-subtracted, as ops_softmax). The SIMD version computes
 *  exp with a degree-6 polynomial on the reduced argument and vscalefps (relative error
 *  ~2e-7 against expf). */
void kern_softmax(float *x, int n);

/** Row conversion. Return 0, or -1 if the type is unsupported or n not a block multiple. */
int kern_quantize_row(enum ggml_type t, const float *x, void *out, int64_t n);
int kern_dequantize_row(enum ggml_type t, const void *in, float *y, int64_t n);

float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f);

#endif
