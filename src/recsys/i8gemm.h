/** Int8 matrix products for the serving forwards of the recsys models (encoder_infer.c,
 *  ranker_infer.c): W8A8 with one scale per weight row and one per activation row.
 *
 *  The weights are quantized once at load (symmetric, scale = max|row| / 127) and packed for
 *  the AVX-512 VNNI kernel: for each block of 16 rows, groups of 4 columns as [16 rows][4
 *  bytes], so one 64-byte load feeds one vpdpbusd that updates 16 output rows for one
 *  activation row (the 4 activation bytes are broadcast). A register tile of 64 rows x 6
 *  activation rows reads each weight block once per 6 positions; no horizontal sums, no
 *  per-block float work (the Q8_0 kernels convert and scale every 32 elements). Activations
 *  are quantized per row on the fly to u8 with zero point 128; the zero point's contribution
 *  (128 x sum of the row's weights) is subtracted once per output.
 *
 *  Dispatch: AVX-512 VNNI, else AVX2 (maddubs on |a| and sign-moved weights, exact integer
 *  sums as well), else the scalar reference; kern_isa() (NR_ISA) caps the choice. All three
 *  compute the same integer dot products, so they agree up to float rounding in the
 *  epilogue. Any rows and cols >= 1 are accepted (padded internally). */
#ifndef RECSYS_I8GEMM_H
#define RECSYS_I8GEMM_H

#include <stdbool.h>
#include <stddef.h>

struct i8_mat; /* opaque, read-only after creation: share across threads */

/** Quantizes and packs W (rows x cols, row stride ld floats). NULL when out of memory or a
 *  size is < 1. */
struct i8_mat *i8_mat_new(const float *W, int rows, int cols, size_t ld);
void i8_mat_free(struct i8_mat *m);
int i8_mat_rows(const struct i8_mat *m);
int i8_mat_cols(const struct i8_mat *m);

/** Bytes of scratch i8_gemm needs for n activation rows of `cols`. */
size_t i8_gemm_scratch_size(int cols, int n);

/** Options of one product: what is added before the activation, and the activation. */
struct i8_epilogue {
    const float *bias; /* rows floats, or NULL */
    bool accumulate;   /* add the Y already there (sum of products over input blocks whose
                        * values have different scales, each with its own activation scale) */
    bool relu;         /* ReLU, else identity */
};

/** Y[i][r] = act(sum_c X[i][c] W[r][c] + bias[r] (+ Y[i][r])) for i < n, r < rows, with X
 *  quantized per row to int8. X: (n, cols) row stride ldx; Y: row stride ldy >= rows. ep may
 *  be NULL (plain product). scratch: i8_gemm_scratch_size(cols, n) bytes. Single-threaded,
 *  no allocation. */
void i8_gemm(const struct i8_mat *m, const float *X, size_t ldx, float *Y, size_t ldy, int n,
             const struct i8_epilogue *ep, void *scratch);

/** The product of another matrix with the same cols with the activations that the previous
 *  i8_gemm call left quantized in scratch (same X, n and cols: the caller's contract), e.g.
 *  the K, V and Q projections of one normalised input. */
void i8_gemm_again(const struct i8_mat *m, float *Y, size_t ldy, int n,
                   const struct i8_epilogue *ep, void *scratch);

/** The same product with the scalar reference kernel (tests). */
void i8_gemm_ref(const struct i8_mat *m, const float *X, size_t ldx, float *Y, size_t ldy, int n,
                 const struct i8_epilogue *ep, void *scratch);

/** The value of W[r][c] as packed (q x scale), for tests. */
float i8_mat_get(const struct i8_mat *m, int r, int c);

#endif
