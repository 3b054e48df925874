/** The transformer block's operations as plain f32 kernels, llm.c style: every forward writes
 *  into caller-provided buffers (so training keeps them as saved activations), and training
 *  adds the matching `_backward` in engine/ops_backward.h. Inference (engine/model.c) and the
 *  recommender's encoder (training and serving) both use these: the block is written once.
 *
 *  Shapes are given as comments: (N, C) is N rows of C contiguous floats. */
#ifndef ENGINE_OPS_H
#define ENGINE_OPS_H

#include "base/pool.h"

/** out (N,C) = x / sqrt(mean(x^2) + eps) * w.  rstd (N) receives 1/rms (may be NULL). */
void ops_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                         float eps);

/** out (N,OC) = inp (N,C) . w^T + bias, with w (OC,C) row-major; bias (OC) may be NULL.
 *  Threads over the pool (may be NULL). */
void ops_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N,
                        int C, int OC, struct pool *pool);

/** Rotary embedding in place on x (N, n_heads, head_dim), rotating adjacent pairs
 *  (x[2i], x[2i+1]) by angle pos[n] * theta^(-2i/head_dim), as llama.cpp's "normal" mode and
 *  llama2.c do. */
void ops_rope_forward(float *x, const int *pos, int N, int n_heads, int head_dim, float theta);

/** Causal multi-head attention over one sequence of T positions, grouped-query:
 *  q (T, H, D), k and v (T, Hkv, D) with H % Hkv == 0 -> out (T, H, D).
 *  att (H, T, T) receives the softmax probabilities (row t valid for columns <= t; may be
 *  NULL). Scale 1/sqrt(D). `key_mask` (T) may be NULL; positions with key_mask[j] == 0 are
 *  never attended to (left padding); a row with nothing to attend outputs zeros. */
void ops_attention_forward(float *out, float *att, const float *q, const float *k,
                           const float *v, const unsigned char *key_mask, int T, int H, int Hkv,
                           int D);

/** SwiGLU: out (N,F) = silu(g) * u, silu(z) = z / (1 + exp(-z)). */
void ops_swiglu_forward(float *out, const float *g, const float *u, int N, int F);

/** In-place softmax of x (n); numerically stable. */
void ops_softmax(float *x, int n);

#endif
