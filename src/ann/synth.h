/** Synthetic vector sets for tests and benchmarks, deterministic by seed (each row has its
 *  own generator, so the output does not depend on the number of threads).
 *
 *  Expansion (the reference's scale-up method): given base embeddings, draw new vectors whose
 *  per-dimension mean and variance match the base set. With alpha = 0 every dimension is an
 *  independent Gaussian N(mean_j, var_j) (the reference's method: the structure between
 *  dimensions is lost). With 0 < alpha < 1 (the clustered variant) each new vector is
 *      x = mean + alpha * (b - mean) + sqrt(1 - alpha^2) * std * z,   z ~ N(0, I),
 *  around a random base vector b, which keeps the same mean and variance per dimension while
 *  preserving clusters (the closer alpha is to 1, the tighter). */
#ifndef ANN_SYNTH_H
#define ANN_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "base/pool.h"

/** Per-dimension mean and (population) variance of x (n, dim). */
void ann_synth_stats(const float *x, size_t n, int dim, double *mean, double *var);

/** Writes n vectors (n, dim) to out from base (nb, dim), as described above. Returns 0, or
 *  ERR_INVALID for nb == 0 or alpha outside [0, 1), ERR_NOMEM. */
int ann_synth_expand(const float *base, size_t nb, int dim, size_t n, float alpha,
                     uint64_t seed, float *out, struct pool *pool);

/** A clustered set from scratch: n_clusters centres drawn N(0, 1) per dimension (from the
 *  seed alone), cluster sizes skewed (popular clusters hold more items, as in item
 *  catalogues), each vector its centre plus N(0, spread^2) noise. Writes rows
 *  first .. first+n-1 of the seed's infinite sequence (so queries can be rows past the base
 *  set). Row i depends only on (seed, i). 0, ERR_INVALID or ERR_NOMEM. */
int ann_synth_clustered(size_t n, int dim, int n_clusters, float spread, uint64_t seed,
                        size_t first, float *out, struct pool *pool);

#endif
