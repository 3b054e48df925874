/* Synthetic vectors: per-row seeded generators, threaded over a pool. */
#include "ann/synth.h"

#include <math.h>
#include <stdlib.h>

#include "ann/kmeans.h"
#include "base/err.h"

void ann_synth_stats(const float *x, size_t n, int dim, double *mean, double *var)
{
    for (int j = 0; j < dim; j++) mean[j] = var[j] = 0;
    if (n == 0) return;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) mean[j] += x[i * (size_t)dim + j];
    for (int j = 0; j < dim; j++) mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++) {
            double t = x[i * (size_t)dim + j] - mean[j];
            var[j] += t * t;
        }
    for (int j = 0; j < dim; j++) var[j] /= (double)n;
}

static void row_rng(struct ann_rng *r, uint64_t seed, uint64_t i)
{
    ann_rng_seed(r, seed * 0x2545f4914f6cdd1dull + i * 0x9e3779b97f4a7c15ull + 0x73796e74ull);
}

struct expand_ctx {
    const float *base;
    size_t nb;
    int dim;
    float alpha;
    uint64_t seed;
    const double *mean, *sd;
    float *out;
};

static void expand_task(void *vctx, size_t begin, size_t end, int tid)
{
    (void)tid;
    struct expand_ctx *c = vctx;
    double a = c->alpha, s = sqrt(1.0 - a * a);
    for (size_t i = begin; i < end; i++) {
        struct ann_rng r;
        row_rng(&r, c->seed, i);
        float *o = c->out + i * (size_t)c->dim;
        const float *b = a > 0 ? c->base + (size_t)(ann_rng_next(&r) % c->nb) * c->dim : NULL;
        for (int j = 0; j < c->dim; j++) {
            double z = ann_rng_normal(&r);
            double v = c->mean[j] + s * c->sd[j] * z;
            if (b) v += a * (b[j] - c->mean[j]);
            o[j] = (float)v;
        }
    }
}

int ann_synth_expand(const float *base, size_t nb, int dim, size_t n, float alpha,
                     uint64_t seed, float *out, struct pool *pool)
{
    if (nb == 0 || dim < 1 || !(alpha >= 0.0f && alpha < 1.0f)) return ERR_INVALID;
    double *mean = malloc((size_t)dim * sizeof *mean), *sd = malloc((size_t)dim * sizeof *sd);
    if (!mean || !sd) {
        free(mean);
        free(sd);
        return ERR_NOMEM;
    }
    ann_synth_stats(base, nb, dim, mean, sd);
    for (int j = 0; j < dim; j++) sd[j] = sqrt(sd[j]);
    struct expand_ctx c = {base, nb, dim, alpha, seed, mean, sd, out};
    pool_for(pool, n, 1024, expand_task, &c);
    free(mean);
    free(sd);
    return 0;
}

struct clus_ctx {
    const float *centres;
    const double *cdf;
    int k, dim;
    float spread;
    uint64_t seed;
    size_t first;
    float *out;
};

static void clus_task(void *vctx, size_t begin, size_t end, int tid)
{
    (void)tid;
    struct clus_ctx *c = vctx;
    for (size_t i = begin; i < end; i++) {
        struct ann_rng r;
        row_rng(&r, c->seed, c->first + i);
        double u = ann_rng_uniform(&r);
        int lo = 0, hi = c->k - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (c->cdf[mid] < u) lo = mid + 1;
            else hi = mid;
        }
        const float *ce = c->centres + (size_t)lo * c->dim;
        float *o = c->out + i * (size_t)c->dim;
        for (int j = 0; j < c->dim; j++) o[j] = ce[j] + c->spread * (float)ann_rng_normal(&r);
    }
}

int ann_synth_clustered(size_t n, int dim, int n_clusters, float spread, uint64_t seed,
                        size_t first, float *out, struct pool *pool)
{
    if (dim < 1 || n_clusters < 1 || !(spread >= 0)) return ERR_INVALID;
    float *centres = malloc((size_t)n_clusters * dim * sizeof *centres);
    double *cdf = malloc((size_t)n_clusters * sizeof *cdf);
    if (!centres || !cdf) {
        free(centres);
        free(cdf);
        return ERR_NOMEM;
    }
    /* Centres come from the seed alone (not from n or first), so rows drawn in separate
     * calls (a base set and its queries) share them. */
    struct ann_rng r;
    ann_rng_seed(&r, seed ^ 0x63656e74ull);
    for (size_t i = 0; i < (size_t)n_clusters * dim; i++) centres[i] = (float)ann_rng_normal(&r);
    /* Zipf-like sizes: weight 1 / (rank + 10)^0.8. */
    double tot = 0;
    for (int c = 0; c < n_clusters; c++) tot += pow(c + 10.0, -0.8);
    double acc = 0;
    for (int c = 0; c < n_clusters; c++) {
        acc += pow(c + 10.0, -0.8) / tot;
        cdf[c] = acc;
    }
    cdf[n_clusters - 1] = 1.0;
    struct clus_ctx c = {centres, cdf, n_clusters, dim, spread, seed, first, out};
    pool_for(pool, n, 1024, clus_task, &c);
    free(centres);
    free(cdf);
    return 0;
}
