/* k-means (Lloyd) with seeded sampling and init, threaded assignment. */
#include "ann/kmeans.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann/dist.h"

/* ------------------------------------------------------------------------------ rng ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ann_rng_seed(struct ann_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t ann_rng_next(struct ann_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double ann_rng_uniform(struct ann_rng *r)
{
    return (double)(ann_rng_next(r) >> 11) * 0x1.0p-53;
}

double ann_rng_normal(struct ann_rng *r)
{
    double u1 = ann_rng_uniform(r), u2 = ann_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t rng_below(struct ann_rng *r, uint64_t n)
{
    return n ? ann_rng_next(r) % n : 0; /* bias < n / 2^64: irrelevant here */
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

long ann_sample_rows(size_t n, size_t want, uint64_t seed, uint32_t *out)
{
    if (n > UINT32_MAX) return ERR_INVALID;
    if (want >= n) {
        for (size_t i = 0; i < n; i++) out[i] = (uint32_t)i;
        return (long)n;
    }
    struct ann_rng r;
    ann_rng_seed(&r, seed ^ 0x5a3b1e);
    uint32_t *perm = malloc(n * sizeof *perm);
    if (!perm) return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) perm[i] = (uint32_t)i;
    for (size_t i = 0; i < want; i++) {
        size_t j = i + (size_t)rng_below(&r, n - i);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(out, perm, want * sizeof *out);
    free(perm);
    qsort(out, want, sizeof *out, cmp_u32);
    return (long)want;
}

/* ------------------------------------------------------------------------ assignment ---- */

#define ASSIGN_ROWS 32   /* points per task */
#define ASSIGN_COLS 512  /* centroids per gemm call (keeps the block in L2) */

struct assign_ctx {
    const float *x, *c, *cnorm;
    size_t n;
    int dim, k, ip;
    uint32_t *ids;
    float *best;
    float **scratch; /* per thread: ASSIGN_ROWS * ASSIGN_COLS floats */
    const float *ct; /* centroids transposed (dim, k) when dim is small, else NULL */
    const struct ann_dist_ops *ops;
};

static void assign_task(void *vctx, size_t begin, size_t end, int tid)
{
    struct assign_ctx *a = vctx;
    float *buf = a->scratch[tid];
    for (size_t blk = begin; blk < end; blk++) {
        size_t r0 = blk * ASSIGN_ROWS;
        size_t nr = a->n - r0 < ASSIGN_ROWS ? a->n - r0 : ASSIGN_ROWS;
        float bv[ASSIGN_ROWS];
        uint32_t bi[ASSIGN_ROWS];
        for (size_t r = 0; r < nr; r++) {
            bv[r] = FLT_MAX; /* for ip the running minimum is of -<x, c> */
            bi[r] = 0;
        }
        for (int c0 = 0; c0 < a->k; c0 += ASSIGN_COLS) {
            int nc = a->k - c0 < ASSIGN_COLS ? a->k - c0 : ASSIGN_COLS;
            if (a->ct) {
                /* small dim: centroids transposed, vectorized over centroids */
                for (size_t r = 0; r < nr; r++)
                    a->ops->dot_cols(a->x + (r0 + r) * (size_t)a->dim, a->ct, a->dim,
                                     (size_t)a->k, buf + r * (size_t)a->k);
                nc = a->k; /* one pass covers all centroids (k <= ASSIGN_COLS) */
            } else {
                a->ops->gemm_nt(a->x + r0 * (size_t)a->dim, nr, a->c + (size_t)c0 * a->dim,
                                (size_t)nc, a->dim, buf);
            }
            for (size_t r = 0; r < nr; r++) {
                const float *row = buf + r * (size_t)nc;
                if (a->ip)
                    a->ops->argmin(row, NULL, -1.0f, (size_t)nc, &bv[r], &bi[r], (uint32_t)c0);
                else
                    a->ops->argmin(row, a->cnorm + c0, -2.0f, (size_t)nc, &bv[r], &bi[r],
                                   (uint32_t)c0);
            }
        }
        for (size_t r = 0; r < nr; r++) {
            a->ids[r0 + r] = bi[r];
            if (a->best) {
                if (a->ip) {
                    a->best[r0 + r] = -bv[r];
                } else {
                    const float *xr = a->x + (r0 + r) * (size_t)a->dim;
                    float d = bv[r] + a->ops->dot(xr, xr, a->dim);
                    a->best[r0 + r] = d > 0 ? d : 0;
                }
            }
        }
    }
}

int ann_assign(const float *x, size_t n, int dim, const float *centroids, const float *cnorm,
               int k, int ip, uint32_t *ids, float *best, struct pool *pool)
{
    int nt = pool ? pool_threads(pool) : 1;
    float **scratch = calloc((size_t)nt, sizeof *scratch);
    float *own_norm = NULL, *ct = NULL;
    int rc = ERR_NOMEM;
    if (!scratch) return ERR_NOMEM;
    const struct ann_dist_ops *ops = ann_dist_get();
    if (!ip && !cnorm) {
        own_norm = malloc((size_t)k * sizeof *own_norm);
        if (!own_norm) goto out;
        for (int j = 0; j < k; j++)
            own_norm[j] = ops->dot(centroids + (size_t)j * dim, centroids + (size_t)j * dim, dim);
        cnorm = own_norm;
    }
    for (int t = 0; t < nt; t++) {
        scratch[t] = malloc(sizeof(float) * ASSIGN_ROWS * ASSIGN_COLS);
        if (!scratch[t]) goto out;
    }
    if (dim < 16 && k <= ASSIGN_COLS) {
        ct = malloc((size_t)k * dim * sizeof *ct);
        if (!ct) goto out;
        for (int j = 0; j < k; j++)
            for (int t = 0; t < dim; t++) ct[(size_t)t * k + j] = centroids[(size_t)j * dim + t];
    }
    struct assign_ctx a = {x, centroids, cnorm, n, dim, k, ip, ids, best, scratch, ct, ops};
    pool_for(pool, (n + ASSIGN_ROWS - 1) / ASSIGN_ROWS, 1, assign_task, &a);
    rc = 0;
out:
    for (int t = 0; t < nt; t++) free(scratch[t]);
    free(scratch);
    free(own_norm);
    free(ct);
    return rc;
}

/* --------------------------------------------------------------------------- k-means ---- */

/* k-means++ seeding: each next centre drawn with probability proportional to the squared
 * distance to the nearest centre chosen so far. */
static void init_plusplus(const float *x, size_t n, int dim, int k, struct ann_rng *r,
                          float *cent, float *mind, float *tmp)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    size_t first = (size_t)rng_below(r, n);
    memcpy(cent, x + first * (size_t)dim, sizeof(float) * (size_t)dim);
    ops->l2_rows(cent, x, n, dim, mind);
    for (int c = 1; c < k; c++) {
        double total = 0;
        for (size_t i = 0; i < n; i++) total += mind[i];
        size_t pick = (size_t)rng_below(r, n);
        if (total > 0) {
            double u = ann_rng_uniform(r) * total, acc = 0;
            for (size_t i = 0; i < n; i++) {
                acc += mind[i];
                if (acc >= u) {
                    pick = i;
                    break;
                }
            }
        }
        float *cc = cent + (size_t)c * dim;
        memcpy(cc, x + pick * (size_t)dim, sizeof(float) * (size_t)dim);
        ops->l2_rows(cc, x, n, dim, tmp);
        for (size_t i = 0; i < n; i++)
            if (tmp[i] < mind[i]) mind[i] = tmp[i];
    }
}

/* One Lloyd run on the sample xs (ns, dim). Sums are in double so the update does not
 * depend on summation order beyond what doubles absorb; it is single-threaded and ordered,
 * so results are identical for any thread count. */
/* Rescales each centroid to unit L2 norm (spherical k-means); zero centroids stay. */
static void renorm(float *cent, int k, int dim)
{
    for (int c = 0; c < k; c++) {
        float *cc = cent + (size_t)c * dim;
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)cc[j] * cc[j];
        if (s <= 0) continue;
        float inv = (float)(1.0 / sqrt(s));
        for (int j = 0; j < dim; j++) cc[j] *= inv;
    }
}

static int lloyd(const float *xs, size_t ns, int dim, int k, int iters, int plusplus, int ip,
                 int spherical, struct ann_rng *r, float *cent, struct pool *pool,
                 struct err *err)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int rc = ERR_NOMEM;
    uint32_t *assign = malloc(ns * sizeof *assign);
    double *sums = malloc((size_t)k * dim * sizeof *sums);
    size_t *counts = malloc((size_t)k * sizeof *counts);
    float *cnorm = malloc((size_t)k * sizeof *cnorm);
    float *mind = NULL, *tmp = NULL;
    if (!assign || !sums || !counts || !cnorm) goto out;

    if (plusplus) {
        mind = malloc(ns * sizeof *mind);
        tmp = malloc(ns * sizeof *tmp);
        if (!mind || !tmp) goto out;
        init_plusplus(xs, ns, dim, k, r, cent, mind, tmp);
    } else {
        uint32_t *pick = malloc((size_t)k * sizeof *pick);
        if (!pick) goto out;
        long got = ann_sample_rows(ns, (size_t)k, ann_rng_next(r), pick);
        if (got != k) {
            free(pick);
            rc = err_set(err, ERR_NOMEM, "k-means: sampling %d initial centroids failed", k);
            goto out;
        }
        for (int c = 0; c < k; c++)
            memcpy(cent + (size_t)c * dim, xs + (size_t)pick[c] * dim, sizeof(float) * (size_t)dim);
        free(pick);
    }
    if (spherical) renorm(cent, k, dim);

    for (int it = 0; it < iters; it++) {
        for (int c = 0; c < k; c++)
            cnorm[c] = ops->dot(cent + (size_t)c * dim, cent + (size_t)c * dim, dim);
        if (ann_assign(xs, ns, dim, cent, cnorm, k, ip, assign, NULL, pool) != 0) goto out;
        memset(sums, 0, (size_t)k * dim * sizeof *sums);
        memset(counts, 0, (size_t)k * sizeof *counts);
        for (size_t i = 0; i < ns; i++) {
            double *s = sums + (size_t)assign[i] * dim;
            const float *xi = xs + i * (size_t)dim;
            for (int j = 0; j < dim; j++) s[j] += xi[j];
            counts[assign[i]]++;
        }
        for (int c = 0; c < k; c++) {
            if (!counts[c]) continue;
            float *cc = cent + (size_t)c * dim;
            const double *s = sums + (size_t)c * dim;
            for (int j = 0; j < dim; j++) cc[j] = (float)(s[j] / (double)counts[c]);
        }
        /* Empty clusters: split the largest cluster (as FAISS does) with a small symmetric
         * perturbation, so the two halves separate on the next assignment. */
        for (int c = 0; c < k; c++) {
            if (counts[c]) continue;
            int big = 0;
            for (int j = 1; j < k; j++)
                if (counts[j] > counts[big]) big = j;
            if (counts[big] < 2) break;
            float *cc = cent + (size_t)c * dim, *cb = cent + (size_t)big * dim;
            for (int j = 0; j < dim; j++) {
                float eps = (ann_rng_uniform(r) < 0.5 ? 1.0f : -1.0f) * 1e-3f *
                            (fabsf(cb[j]) + 1e-3f);
                cc[j] = cb[j] + eps;
                cb[j] = cb[j] - eps;
            }
            counts[c] = counts[big] / 2;
            counts[big] -= counts[c];
        }
        if (spherical) renorm(cent, k, dim);
    }
    rc = 0;
out:
    if (rc == ERR_NOMEM && err && err->code == ERR_OK)
        err_set(err, ERR_NOMEM, "k-means: out of memory (n=%zu, k=%d, dim=%d)", ns, k, dim);
    free(assign);
    free(sums);
    free(counts);
    free(cnorm);
    free(mind);
    free(tmp);
    return rc;
}

int ann_kmeans(const float *x, size_t n, int dim, int k, const struct ann_kmeans_cfg *cfg,
               float *centroids, struct pool *pool, struct err *err)
{
    if (k < 1 || dim < 1 || n < (size_t)k)
        return err_set(err, ERR_INVALID, "k-means: need at least k=%d points, have %zu", k, n);
    int iters = cfg && cfg->iters > 0 ? cfg->iters : 20;
    int per = cfg && cfg->max_per_centroid > 0 ? cfg->max_per_centroid : 256;
    uint64_t seed = cfg ? cfg->seed : 0;
    struct ann_rng r;
    ann_rng_seed(&r, seed);

    size_t want = (size_t)per * (size_t)k;
    const float *xs = x;
    float *sample = NULL;
    size_t ns = n;
    if (want < n) {
        uint32_t *rows = malloc(want * sizeof *rows);
        sample = malloc(want * (size_t)dim * sizeof *sample);
        if (!rows || !sample) {
            free(rows);
            free(sample);
            return err_set(err, ERR_NOMEM, "k-means: out of memory for a %zu-point sample", want);
        }
        long got = ann_sample_rows(n, want, ann_rng_next(&r), rows);
        if (got < 0) {
            free(rows);
            free(sample);
            return err_set(err, (int)got, "k-means: sampling failed (n=%zu)", n);
        }
        for (size_t i = 0; i < (size_t)got; i++)
            memcpy(sample + i * (size_t)dim, x + (size_t)rows[i] * dim, sizeof(float) * (size_t)dim);
        free(rows);
        xs = sample;
        ns = (size_t)got;
    }
    int rc = lloyd(xs, ns, dim, k, iters, cfg ? cfg->plusplus : 0, cfg ? cfg->ip : 0,
                   cfg ? cfg->spherical : 0, &r, centroids, pool, err);
    free(sample);
    return rc;
}
