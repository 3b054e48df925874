/** Distance kernels for vector search, with a scalar reference and AVX2 / AVX-512 variants
 *  chosen once at run time (__builtin_cpu_supports). The scalar versions are the test oracle.
 *
 *  Batch kernels write one score per database row so the caller can filter against its
 *  top-k threshold in a second, branchy pass (kept out of the arithmetic loop). */
#ifndef ANN_DIST_H
#define ANN_DIST_H

#include <stddef.h>
#include <stdint.h>

enum ann_isa { ANN_ISA_SCALAR = 0, ANN_ISA_AVX2 = 1, ANN_ISA_AVX512 = 2 };

/** The kernel table. All pointers are non-NULL after ann_dist_get(). */
struct ann_dist_ops {
    enum ann_isa isa;
    /** <a, b> over d floats. */
    float (*dot)(const float *a, const float *b, int d);
    /** ||a - b||^2 over d floats. */
    float (*l2)(const float *a, const float *b, int d);
    /** out[i] = <q, x_i> for n rows of d floats (row stride d). */
    void (*dot_rows)(const float *q, const float *x, size_t n, int d, float *out);
    /** out[i] = ||q - x_i||^2. */
    void (*l2_rows)(const float *q, const float *x, size_t n, int d, float *out);
    /** C (na, nb) = A (na, d) . B (nb, d)^T, row-major, ldc = nb. Register-blocked: k-means
     *  assignment and batched exact search. */
    void (*gemm_nt)(const float *A, size_t na, const float *B, size_t nb, int d, float *C);
    /** out[j] = sum_t x[t] * ct[t*k + j] for j < k: inner products with k vectors stored
     *  transposed (d, k). Vectorizes over the k vectors, for small d (PQ sub-spaces). */
    void (*dot_cols)(const float *x, const float *ct, int d, size_t k, float *out);
    /** Running argmin of v[j] = bias[j] + mult * s[j] over j < n (bias may be NULL = 0):
     *  where some v[j] < *best, sets *best and *best_i = base + j (first such j on ties).
     *  Nearest-centroid search: bias = ||c||^2, mult = -2, s = inner products. */
    void (*argmin)(const float *s, const float *bias, float mult, size_t n, float *best,
                   uint32_t *best_i, uint32_t base);
    /** out[i] = sum_j w[j] * c_i[j] for n rows of d uint8 codes (SQ8 inner product). */
    void (*sq8_dot_rows)(const float *w, const uint8_t *codes, size_t n, int d, float *out);
    /** out[i] = sum_j (r[j] - s[j] * c_i[j])^2 (SQ8 squared L2). */
    void (*sq8_l2_rows)(const float *r, const float *s, const uint8_t *codes, size_t n, int d,
                        float *out);
    /** out[i] = sum_j lut[j*256 + c_i[j]] for n codes of m bytes (PQ asymmetric distance). */
    void (*pq_adc_rows)(const float *lut, const uint8_t *codes, size_t n, int m, float *out);
    /** ann_pq_adc_rows_u16 (same integer sums, same rounding), reading the byte planes of
     *  ann_pq_lut16_planes where the kernel wants them (planes may be NULL: then q only). */
    void (*pq_adc_rows_u16)(const uint16_t *q, const uint8_t *planes, const uint8_t *codes,
                            size_t n, int m, float scale, float bias, float *out);
};

/** PQ lookup table in 16-bit fixed point (IVF-PQ search with m >= 32: half the f32 table,
 *  and the input of the VBMI byte-permute scan): q[j*256 + c] = round((lut[j*256 + c] - min_j) / scale) with one
 *  scale for all j (the largest per-j range / 65535), and bias = sum_j min_j, so
 *  sum_j lut[j][c_j] = scale * sum_j q[j][c_j] + bias within m * scale / 2. */
void ann_pq_lut16(const float *lut, int m, uint16_t *q, float *scale, float *bias);
/** out[i] = scale * sum_j q[j*256 + c_i[j]] + bias (four scalar load chains; the table stays
 *  in L1, where these loads beat AVX-512 gathers on the AMD cores we measured). */
void ann_pq_adc_rows_u16(const uint16_t *q, const uint8_t *codes, size_t n, int m, float scale,
                         float bias, float *out);
/** The 16-bit table split into byte planes for the AVX-512 VBMI scan: planes[j*512 + c] is
 *  the low byte of q[j*256 + c], planes[j*512 + 256 + c] the high byte (2 * 256 * m bytes). */
void ann_pq_lut16_planes(const uint16_t *q, int m, uint8_t *planes);
/** m from which IVF-PQ search uses the 16-bit table. */
#define ANN_PQ_U16_MIN_M 32

/** The best table this CPU supports, capped by $NR_ISA (scalar|avx2|avx512). Thread-safe. */
const struct ann_dist_ops *ann_dist_get(void);
/** The table for one ISA, or NULL if the CPU lacks it (tests compare each with scalar). */
const struct ann_dist_ops *ann_dist_for(enum ann_isa isa);
const char *ann_isa_name(enum ann_isa isa);

#endif
