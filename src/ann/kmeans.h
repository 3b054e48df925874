/** k-means for the IVF coarse quantizer and the PQ codebooks: Lloyd iterations over a seeded
 *  sample, assignment threaded over a pool with a register-blocked kernel. The result depends
 *  only on the data, k, the iteration count, the init method and the seed (not on threads). */
#ifndef ANN_KMEANS_H
#define ANN_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"

struct ann_kmeans_cfg {
    int iters;             /* Lloyd iterations (20 if 0) */
    int plusplus;          /* 1: k-means++ seeding (O(n k d)); 0: k distinct random points */
    int max_per_centroid;  /* train on at most this * k sampled points (256 if 0) */
    uint64_t seed;
    int ip;                /* 1: assign points to the centroid of largest inner product (the
                              clustering FAISS does for an inner-product IVF); 0: nearest (L2) */
    int spherical;         /* 1: centroids rescaled to unit L2 norm after every update (FAISS
                              turns this on for an inner-product IVF: without it, IP
                              assignment favours long centroids and the lists grow unbalanced) */
};

/** Clusters x (n, dim) into k centroids (k, dim), written to `centroids`. Needs n >= k.
 *  Empty clusters are re-seeded by splitting the largest one. Returns 0 or a negative
 *  err_code with err filled. */
int ann_kmeans(const float *x, size_t n, int dim, int k, const struct ann_kmeans_cfg *cfg,
               float *centroids, struct pool *pool, struct err *err);

/** For each of the n rows of x, the best of k centroids: smallest squared L2 (ip == 0) or
 *  largest inner product (ip == 1). Writes ids (and the squared distance or the inner product
 *  to best when not NULL). cnorm (k) holds ||c||^2 (needed for L2, may be NULL for ip).
 *  Returns 0 or ERR_NOMEM. */
int ann_assign(const float *x, size_t n, int dim, const float *centroids, const float *cnorm,
               int k, int ip, uint32_t *ids, float *best, struct pool *pool);

/** Picks min(n, want) distinct row indices of [0, n) with a seeded shuffle, sorted ascending.
 *  Returns the count written to out (sized want), or a negative err_code. */
long ann_sample_rows(size_t n, size_t want, uint64_t seed, uint32_t *out);

/** Deterministic pseudo-random numbers (splitmix64 / xoshiro256**). */
struct ann_rng {
    uint64_t s[4];
};
void ann_rng_seed(struct ann_rng *r, uint64_t seed);
uint64_t ann_rng_next(struct ann_rng *r);
/** Uniform in [0, 1). */
double ann_rng_uniform(struct ann_rng *r);
/** Standard normal (Box-Muller). */
double ann_rng_normal(struct ann_rng *r);

#endif
