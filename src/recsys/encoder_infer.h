/** Inference-only user encoder for serving: one history at a time, weights memory-mapped from
 *  an encoder GGUF (f32 as written by `train encoder`, or its Q8_0 copy from `nanorec export`).
 *  f32 matrices are multiplied exactly with engine/kernels.h; quantized ones are repacked at
 *  load into recsys/i8gemm.h's W8A8 layout (int8 VNNI). Attention, norms, RoPE and SwiGLU are
 *  local AVX-512 versions of engine/ops.h's, with those as the fallback.
 *
 *  It computes exactly what the user vector at the last position needs: only real
 *  (non-padding) positions, and in the last layer keys and values for every position but the
 *  query, attention, output projection and FFN for the last position only. The result equals
 *  encoder_forward + encoder_last_vectors on the same history (left-padded), up to the weight
 *  quantization. */
#ifndef RECSYS_ENCODER_INFER_H
#define RECSYS_ENCODER_INFER_H

#include <stdint.h>

#include "base/err.h"
#include "recsys/encoder.h"

struct encoder_infer;         /* opaque, read-only after load: share across threads */
struct encoder_infer_scratch; /* per-thread activations for one history */

/** Maps and validates an encoder GGUF (architecture nanorec.encoder; every tensor present with
 *  its shape; matrices f32 or a type kern_matmul supports, vectors f32). NULL + err. */
struct encoder_infer *encoder_infer_load(const char *path, struct err *err);
void encoder_infer_free(struct encoder_infer *m);
/** The hyper-parameters read from the file. */
const struct encoder_config *encoder_infer_config(const struct encoder_infer *m);
/** Name of the matrices' weight type ("q8_0", "f32", ...). */
const char *encoder_infer_weight_type(const struct encoder_infer *m);

/** Scratch for histories of up to max_len items; NULL when out of memory. */
struct encoder_infer_scratch *encoder_infer_scratch_new(const struct encoder_infer *m);
void encoder_infer_scratch_free(struct encoder_infer_scratch *s);

/** The L2-normalised user vector (dim floats) after history[0..n) (oldest first; only the
 *  last max_len items are read). n >= 1 and every id in 1..n_items, else ERR_INVALID.
 *  No allocation. */
int encoder_infer_user(const struct encoder_infer *m, struct encoder_infer_scratch *s,
                       const uint32_t *history, int n, float *out, struct err *err);

#endif
