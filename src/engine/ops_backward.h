/** Backward passes of the transformer block's operations (engine/ops.h), llm.c style: each
 *  `_backward` takes the upstream gradient `dout` and the forward's saved inputs/activations
 *  and ACCUMULATES (+=) into the gradient buffers of its inputs and parameters, so a caller
 *  zeroes gradients once per step and residual branches simply add up.
 *
 *  Fast paths (OpenBLAS GEMMs, threads over a pool) sit beside a naive `_ref` kernel with the
 *  same contract; the tests use the naive kernels and finite differences as the oracle.
 *  Results are deterministic for a fixed thread count: every output element is reduced by a
 *  single thread in a fixed order (GEMMs by OpenBLAS's static partitioning).
 *
 *  Shapes are given as comments: (N, C) is N rows of C contiguous floats. */
#ifndef ENGINE_OPS_BACKWARD_H
#define ENGINE_OPS_BACKWARD_H

/** Given out = x * rstd * w (rstd saved by ops_rmsnorm_forward):
 *  dinp (N,C) += dL/dx, dweight (C) += dL/dw.  dout (N,C), inp (N,C), weight (C), rstd (N).
 *  dweight may be NULL (frozen weight). Deterministic: rows in order. */
void ops_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                          const float *weight, const float *rstd, int N, int C);

/** out (N,OC) = inp (N,C) . w^T + bias through OpenBLAS (cblas_sgemm); same contract as
 *  ops_matmul_forward (the engine's own kernel, used as the oracle in tests). Training uses
 *  this one because its GEMMs dominate the step; OpenBLAS threads are set by the caller
 *  (openblas_set_num_threads). */
void ops_matmul_forward_blas(float *out, const float *inp, const float *w, const float *bias,
                             int N, int C, int OC);

/** Backward of out = inp . w^T + bias:
 *  dinp (N,C) += dout . w;  dweight (OC,C) += dout^T . inp;  dbias (OC) += column sums of dout.
 *  Any of dinp, dweight, dbias may be NULL (not needed). OpenBLAS GEMMs. */
void ops_matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *weight, int N, int C, int OC);
/** Naive triple loop with the same contract (test oracle). */
void ops_matmul_backward_ref(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int N, int C, int OC);

/** Backward of ops_rope_forward, in place on the gradient dx (N, n_heads, head_dim): the
 *  rotation is orthogonal, so its gradient is the rotation by the opposite angle. Unlike the
 *  other backward functions this transforms (does not accumulate): dx holds dL/d(rotated x)
 *  on entry and dL/d(x) on return. */
void ops_rope_backward(float *dx, const int *pos, int N, int n_heads, int head_dim,
                       float theta);

/** Backward of ops_attention_forward for one sequence, given its saved probabilities
 *  att (H,T,T): dq (T,H,D) += ..., dk and dv (T,Hkv,D) += ... .  dout, q (T,H,D); k, v
 *  (T,Hkv,D). key_mask as in the forward (masked keys have att == 0 and get no gradient).
 *  `scratch` holds T floats. */
void ops_attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout,
                            const float *att, const float *q, const float *k, const float *v,
                            int T, int H, int Hkv, int D);

/** ops_attention_forward through OpenBLAS GEMMs per head (full T x T score blocks, then the
 *  causal and key masks): same contract, except that `att` (H,T,T) is required. Faster for
 *  T beyond a few dozen; call with OpenBLAS at one thread when sequences run in parallel. */
void ops_attention_forward_blas(float *out, float *att, const float *q, const float *k,
                                const float *v, const unsigned char *key_mask, int T, int H,
                                int Hkv, int D);
/** ops_attention_backward through OpenBLAS GEMMs; `scratch` holds T*T floats. */
void ops_attention_backward_blas(float *dq, float *dk, float *dv, float *scratch,
                                 const float *dout, const float *att, const float *q,
                                 const float *k, const float *v, int T, int H, int Hkv, int D);

/** Backward of out = silu(g) * u: dg (N,F) += ..., du (N,F) += ... . */
void ops_swiglu_backward(float *dg, float *du, const float *dout, const float *g,
                         const float *u, int N, int F);

/** Softmax cross-entropy over rows of logits, forward and backward in one pass: for each of
 *  the R rows of `logits` (R,K) (plus `bias` (K) when not NULL), writes the row's loss
 *  -log softmax(row)[target[r]] into loss[r] and replaces the row by
 *  (softmax(row) - onehot(target[r])) * grad_scale. Rows are independent (thread over them).
 *  The exp is vectorised 16 floats at a time (AVX-512 when the CPU has it, else the baseline
 *  ISA; relative error < 2e-7). */
void ops_xent_rows(float *logits, float *loss, const float *bias, const int *target, int R,
                   int K, float grad_scale);
/** The scalar reference of ops_xent_rows (expf, one element at a time). */
void ops_xent_rows_ref(float *logits, float *loss, const float *bias, const int *target, int R,
                       int K, float grad_scale);

/** Row-wise L2 normalisation out (N,C) = x / max(||x||, eps); norm (N) receives ||x||
 *  (may be NULL). Used for the encoder's output vectors and cosine scoring. */
void ops_l2norm_forward(float *out, float *norm, const float *x, int N, int C, float eps);
/** Backward of ops_l2norm_forward given its saved output and norms: dinp (N,C) += ... .
 *  Rows whose norm was clamped to eps get the gradient of x / eps. */
void ops_l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm,
                         int N, int C, float eps);

#endif
