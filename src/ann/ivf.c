/* Inverted-file indexes: a k-means coarse quantizer splits the vectors into nlist lists; a
 * search scans the nprobe lists whose centroids are closest to the query.
 *
 * Codes per kind:
 *   IVF_FLAT  the f32 vector itself (4 * dim bytes)
 *   IVF_SQ8   the residual x - c quantized per dimension to 8 bits (dim bytes)
 *   IVF_PQ    the residual product-quantized: m bytes, one 256-entry codebook per sub-space
 *
 * With inner product, <q, c + r> = <q, c> + <q, r>: the SQ weights and the PQ lookup table
 * depend on the query only, so they are computed once per query, and each list adds its
 * centroid's <q, c>. With L2, SQ8 needs a per-list residual query (dim flops); PQ uses
 * ||q - c - r||^2 = ||q - c||^2 + (||r||^2 + 2<c, r>) - 2<q, r>, with the bracket stored
 * per vector (4 bytes), so the table is again per query. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann/index.h"
#include "ann/kmeans.h"

#define PQ_TRAIN_MAX 65536   /* residuals sampled to train PQ codebooks (256 per centroid) */
#define SQ_TRAIN_MAX 262144  /* residuals sampled to train the SQ8 range */
#define RECENTER_MIN 64      /* training members a list needs for its mean to be its centroid */

/* ------------------------------------------------------------------------- PQ codec ---- */

/* Squared norms of every codeword, (m, 256): the encoder's bias term. */
static void pq_cb_norms(const struct ann_index *idx, float *norms)
{
    int dsub = idx->pq_dsub;
    for (int m = 0; m < idx->pq_m; m++) {
        const float *cbT = idx->pq_cb + (size_t)m * dsub * ANN_PQ_K;
        float *nm = norms + (size_t)m * ANN_PQ_K;
        for (int j = 0; j < ANN_PQ_K; j++) nm[j] = 0.0f;
        for (int t = 0; t < dsub; t++)
            for (int j = 0; j < ANN_PQ_K; j++) nm[j] += cbT[(size_t)t * ANN_PQ_K + j] * cbT[(size_t)t * ANN_PQ_K + j];
    }
}

/* Nearest codeword per sub-space: argmin ||c||^2 - 2 <r, c>, the inner products taken with
 * the transposed codebook (vectorized over the 256 codewords). */
static void pq_encode(const struct ann_index *idx, const float *norms, const float *r,
                      uint8_t *code, float *tmp)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int dsub = idx->pq_dsub;
    for (int m = 0; m < idx->pq_m; m++) {
        ops->dot_cols(r + (size_t)m * dsub, idx->pq_cb + (size_t)m * dsub * ANN_PQ_K, dsub,
                      ANN_PQ_K, tmp);
        float best = FLT_MAX;
        uint32_t bi = 0;
        ops->argmin(tmp, norms + (size_t)m * ANN_PQ_K, -2.0f, ANN_PQ_K, &best, &bi, 0);
        code[m] = (uint8_t)bi;
    }
}

static void pq_decode(const struct ann_index *idx, const uint8_t *code, float *r)
{
    int dsub = idx->pq_dsub;
    for (int m = 0; m < idx->pq_m; m++) {
        const float *cbT = idx->pq_cb + (size_t)m * dsub * ANN_PQ_K;
        for (int t = 0; t < dsub; t++) r[m * dsub + t] = cbT[(size_t)t * ANN_PQ_K + code[m]];
    }
}

/* lut[m*256 + j] = scale * <q_m, codeword_mj>. */
static void pq_lut(const struct ann_index *idx, const float *q, float scale, float *lut)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int dsub = idx->pq_dsub;
    for (int m = 0; m < idx->pq_m; m++) {
        float *l = lut + (size_t)m * ANN_PQ_K;
        ops->dot_cols(q + (size_t)m * dsub, idx->pq_cb + (size_t)m * dsub * ANN_PQ_K, dsub,
                      ANN_PQ_K, l);
        if (scale != 1.0f)
            for (int j = 0; j < ANN_PQ_K; j++) l[j] *= scale;
    }
}

struct pqtrain_ctx {
    const float *res; /* (ns, dim) residuals */
    size_t ns;
    int dim, dsub, iters;
    uint64_t seed;
    float *cb; /* (m, dsub, 256) */
    int failed;
};

static void pq_train_task(void *vctx, size_t begin, size_t end, int tid)
{
    (void)tid;
    struct pqtrain_ctx *c = vctx;
    float *sub = malloc(c->ns * (size_t)c->dsub * sizeof *sub);
    float *cent = malloc((size_t)ANN_PQ_K * c->dsub * sizeof *cent);
    if (!sub || !cent) {
        c->failed = ERR_NOMEM;
        goto out;
    }
    for (size_t m = begin; m < end; m++) {
        for (size_t i = 0; i < c->ns; i++)
            memcpy(sub + i * (size_t)c->dsub, c->res + i * (size_t)c->dim + m * (size_t)c->dsub,
                   sizeof(float) * (size_t)c->dsub);
        struct ann_kmeans_cfg kc = {c->iters, 0, 256, c->seed + 1000003u * (m + 1), 0, 0};
        struct err e;
        err_clear(&e);
        if (ann_kmeans(sub, c->ns, c->dsub, ANN_PQ_K, &kc, cent, NULL, &e) != 0) {
            c->failed = e.code;
            goto out;
        }
        float *cbT = c->cb + m * (size_t)c->dsub * ANN_PQ_K;
        for (int j = 0; j < ANN_PQ_K; j++)
            for (int t = 0; t < c->dsub; t++) cbT[(size_t)t * ANN_PQ_K + j] = cent[j * c->dsub + t];
    }
out:
    free(sub);
    free(cent);
}

/* ------------------------------------------------------------------------- training ---- */

void ann_ivf_centroid_norms(struct ann_index *idx)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    for (int l = 0; l < idx->nlist; l++) {
        const float *c = idx->centroids + (size_t)l * idx->dim;
        idx->cnorm[l] = ops->dot(c, c, idx->dim);
        idx->cinv[l] = idx->cnorm[l] > 0 ? 1.0f / sqrtf(idx->cnorm[l]) : 0.0f;
    }
}

/* The centroids scaled to unit norm (malloc'd; NULL when out of memory): inner-product
 * assignment goes by a list's direction, whatever the stored centroid's length. */
static float *unit_centroids(const struct ann_index *idx)
{
    size_t d = (size_t)idx->dim;
    float *u = malloc((size_t)idx->nlist * d * sizeof *u);
    if (!u) return NULL;
    for (int l = 0; l < idx->nlist; l++)
        for (size_t j = 0; j < d; j++)
            u[(size_t)l * d + j] = idx->centroids[(size_t)l * d + j] * idx->cinv[l];
    return u;
}

/* Inner product: which list a vector joins, and which lists a query probes, depends only on
 * the centroids' directions (spherical k-means, as FAISS). The residual that SQ8 and PQ
 * encode, x - c, depends on the stored centroid too, and a unit-norm centroid is far from
 * vectors of norm ~18 (the 3m expansion): the residual is nearly the whole vector and the
 * codes spend their precision on it. So each list's centroid is moved to where its
 * vectors are: the mean of its training members when it has at least RECENTER_MIN of them,
 * else its direction scaled by their mean projection on it (one number, well estimated from
 * a few points, where a 256-dimensional mean of 16 points would add more noise than it
 * removes). Search ranks lists by <q, c> / ||c|| and adds <q, c> to the residual scores,
 * so the results stay exact inner products of the decoded vectors. `rows` (ns, dim) are the
 * training vectors, `asg` their lists. */
static void recenter_lists(struct ann_index *idx, const float *rows, size_t ns,
                           const uint32_t *asg)
{
    int L = idx->nlist, d = idx->dim;
    double *sum = calloc((size_t)L * d, sizeof *sum);
    size_t *cnt = calloc((size_t)L, sizeof *cnt);
    if (!sum || !cnt) goto out; /* keep the unit centroids: correct, only less precise */
    for (size_t i = 0; i < ns; i++) {
        double *s = sum + (size_t)asg[i] * d;
        const float *x = rows + i * (size_t)d;
        for (int j = 0; j < d; j++) s[j] += x[j];
        cnt[asg[i]]++;
    }
    for (int l = 0; l < L; l++) {
        if (!cnt[l] || idx->cinv[l] <= 0) continue;
        float *c = idx->centroids + (size_t)l * d;
        const double *s = sum + (size_t)l * d;
        if (cnt[l] >= RECENTER_MIN) {
            for (int j = 0; j < d; j++) c[j] = (float)(s[j] / (double)cnt[l]);
            continue;
        }
        double proj = 0; /* mean of <x, u> over the members, u = c / ||c|| */
        for (int j = 0; j < d; j++) proj += s[j] * c[j] * idx->cinv[l];
        proj /= (double)cnt[l];
        if (proj <= 0) continue;
        float k = (float)proj * idx->cinv[l];
        for (int j = 0; j < d; j++) c[j] *= k;
    }
    ann_ivf_centroid_norms(idx);
out:
    free(sum);
    free(cnt);
}

/* Each of the n vectors' list: nearest centroid (L2) or largest <x, c> / ||c|| (IP). */
static int ivf_assign(const struct ann_index *idx, const float *x, size_t n, uint32_t *asg,
                      struct pool *pool)
{
    if (idx->cfg.metric != ANN_METRIC_IP)
        return ann_assign(x, n, idx->dim, idx->centroids, idx->cnorm, idx->nlist, 0, asg, NULL,
                          pool);
    float *u = unit_centroids(idx);
    if (!u) return ERR_NOMEM;
    int rc = ann_assign(x, n, idx->dim, u, NULL, idx->nlist, 1, asg, NULL, pool);
    free(u);
    return rc;
}

int ann_ivf_train(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                  struct err *err)
{
    const struct ann_cfg *c = &idx->cfg;
    int d = idx->dim, rc = 0;
    size_t need = (size_t)c->nlist;
    if (c->kind == ANN_KIND_IVF_PQ && need < ANN_PQ_K) need = ANN_PQ_K;
    if (n < need)
        return err_set(err, ERR_INVALID,
                       "%s: needs at least %zu training vectors (nlist %d%s), got %zu",
                       ann_kind_name(c->kind), need, c->nlist,
                       c->kind == ANN_KIND_IVF_PQ ? ", 256 PQ centroids" : "", n);
    idx->nlist = c->nlist;
    idx->centroids = malloc((size_t)c->nlist * d * sizeof(float));
    idx->cnorm = malloc((size_t)c->nlist * sizeof(float));
    idx->cinv = malloc((size_t)c->nlist * sizeof(float));
    idx->list_off = calloc((size_t)c->nlist + 1, sizeof(uint64_t));
    if (!idx->centroids || !idx->cnorm || !idx->cinv || !idx->list_off)
        return err_set(err, ERR_NOMEM, "ivf: out of memory for %d centroids", c->nlist);
    /* inner product: spherical k-means with IP assignment, as FAISS's IndexIVF */
    struct ann_kmeans_cfg kc = {c->kmeans_iters, c->kmeans_plusplus, c->max_train_per_centroid,
                                c->seed, c->metric == ANN_METRIC_IP, c->metric == ANN_METRIC_IP};
    if (c->centroids) {
        memcpy(idx->centroids, c->centroids, (size_t)c->nlist * d * sizeof(float));
        idx->cfg.centroids = NULL; /* the caller's array need not outlive the build */
    } else {
        rc = ann_kmeans(x, n, d, c->nlist, &kc, idx->centroids, pool, err);
        if (rc != 0) return err_prefix(err, "ivf coarse quantizer");
    }
    ann_ivf_centroid_norms(idx);

    switch (c->kind) {
    case ANN_KIND_IVF_FLAT: idx->code_size = (size_t)d * sizeof(float); return 0;
    case ANN_KIND_IVF_SQ8: idx->code_size = (size_t)d; break;
    case ANN_KIND_IVF_PQ:
        idx->code_size = (size_t)c->pq_m;
        idx->pq_m = c->pq_m;
        idx->pq_dsub = d / c->pq_m;
        break;
    default: return err_set(err, ERR_INVALID, "ivf: bad kind");
    }

    /* Residuals of a seeded sample train the code quantizer. */
    size_t want = c->kind == ANN_KIND_IVF_PQ ? PQ_TRAIN_MAX : SQ_TRAIN_MAX;
    if (want > n) want = n;
    uint32_t *rows = malloc(want * sizeof *rows), *asg = malloc(want * sizeof *asg);
    float *res = malloc(want * (size_t)d * sizeof *res);
    if (!rows || !asg || !res) {
        rc = err_set(err, ERR_NOMEM, "ivf: out of memory for %zu training residuals", want);
        goto out;
    }
    long ns = ann_sample_rows(n, want, c->seed ^ 0x9e3779b9u, rows);
    if (ns < 0) {
        rc = err_set(err, (int)ns, "ivf: sampling failed");
        goto out;
    }
    for (long i = 0; i < ns; i++)
        memcpy(res + (size_t)i * d, x + (size_t)rows[i] * d, sizeof(float) * (size_t)d);
    rc = ivf_assign(idx, res, (size_t)ns, asg, pool);
    if (rc != 0) {
        err_set(err, rc, "ivf: out of memory assigning training vectors");
        goto out;
    }
    if (c->metric == ANN_METRIC_IP) recenter_lists(idx, res, (size_t)ns, asg);
    for (long i = 0; i < ns; i++) {
        float *r = res + (size_t)i * d;
        const float *cc = idx->centroids + (size_t)asg[i] * d;
        for (int j = 0; j < d; j++) r[j] -= cc[j];
    }
    if (c->kind == ANN_KIND_IVF_SQ8) {
        idx->sq_vmin = malloc((size_t)d * sizeof(float));
        idx->sq_vdiff = malloc((size_t)d * sizeof(float));
        if (!idx->sq_vmin || !idx->sq_vdiff) {
            rc = err_set(err, ERR_NOMEM, "ivf_sq8: out of memory");
            goto out;
        }
        idx->sq_levels = ANN_SQ_LEVELS;
        ann_sq8_train(res, (size_t)ns, d, idx->sq_vmin, idx->sq_vdiff);
    } else {
        idx->pq_cb = malloc((size_t)d * ANN_PQ_K * sizeof(float));
        if (!idx->pq_cb) {
            rc = err_set(err, ERR_NOMEM, "ivf_pq: out of memory for codebooks");
            goto out;
        }
        struct pqtrain_ctx pc = {res, (size_t)ns, d, idx->pq_dsub, c->pq_iters, c->seed,
                                 idx->pq_cb, 0};
        pool_for(pool, (size_t)c->pq_m, 1, pq_train_task, &pc);
        if (pc.failed) rc = err_set(err, pc.failed, "ivf_pq: training the codebooks failed");
    }
out:
    free(rows);
    free(asg);
    free(res);
    return rc;
}

/* ---------------------------------------------------------------------------- adding ---- */

struct ivf_enc_ctx {
    const struct ann_index *idx;
    const float *x;
    const uint32_t *asg;
    uint8_t *codes; /* (n, code_size) in input order */
    float *terms;   /* (n) or NULL */
    const float *cb_norms; /* PQ: (m, 256) */
    int failed;
};

static void ivf_encode_task(void *vctx, size_t begin, size_t end, int tid)
{
    (void)tid;
    struct ivf_enc_ctx *c = vctx;
    const struct ann_index *idx = c->idx;
    int d = idx->dim;
    float *r = malloc((2 * (size_t)d + ANN_PQ_K) * sizeof *r);
    if (!r) {
        c->failed = ERR_NOMEM;
        return;
    }
    float *rh = r + d, *tmp = r + 2 * (size_t)d;
    for (size_t i = begin; i < end; i++) {
        const float *xi = c->x + i * (size_t)d;
        uint8_t *code = c->codes + i * idx->code_size;
        if (idx->cfg.kind == ANN_KIND_IVF_FLAT) {
            memcpy(code, xi, idx->code_size);
            continue;
        }
        const float *cc = idx->centroids + (size_t)c->asg[i] * d;
        for (int j = 0; j < d; j++) r[j] = xi[j] - cc[j];
        if (idx->cfg.kind == ANN_KIND_IVF_SQ8) {
            ann_sq8_encode(idx->sq_vmin, idx->sq_vdiff, idx->sq_levels, r, d, code);
        } else {
            pq_encode(idx, c->cb_norms, r, code, tmp);
            if (c->terms) {
                pq_decode(idx, code, rh);
                double t = 0;
                for (int j = 0; j < d; j++) t += (double)rh[j] * rh[j] + 2.0 * cc[j] * rh[j];
                c->terms[i] = (float)t;
            }
        }
    }
    free(r);
}

int ann_ivf_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                struct err *err)
{
    int L = idx->nlist, rc = 0;
    size_t cs = idx->code_size, old = idx->n, total = old + n;
    bool want_terms = idx->cfg.kind == ANN_KIND_IVF_PQ && idx->cfg.metric == ANN_METRIC_L2;
    uint32_t *asg = malloc(n * sizeof *asg);
    uint8_t *codes = malloc(n * cs);
    float *terms = want_terms ? malloc(n * sizeof *terms) : NULL;
    uint64_t *off = calloc((size_t)L + 1, sizeof *off);
    uint32_t *ids = malloc(total * sizeof *ids);
    uint8_t *lc = ann_realloc_aligned(NULL, 0, total * cs);
    float *lt = want_terms ? malloc(total * sizeof *lt) : NULL;
    if (!asg || !codes || !off || !ids || !lc || (want_terms && (!terms || !lt))) {
        rc = err_set(err, ERR_NOMEM, "ivf: out of memory adding %zu vectors", n);
        goto out;
    }
    if (ivf_assign(idx, x, n, asg, pool) != 0) {
        rc = err_set(err, ERR_NOMEM, "ivf: out of memory assigning %zu vectors", n);
        goto out;
    }
    float *cbn = NULL;
    if (idx->pq_cb) {
        cbn = malloc((size_t)idx->pq_m * ANN_PQ_K * sizeof *cbn);
        if (!cbn) {
            rc = err_set(err, ERR_NOMEM, "ivf: out of memory");
            goto out;
        }
        pq_cb_norms(idx, cbn);
    }
    struct ivf_enc_ctx ec = {idx, x, asg, codes, terms, cbn, 0};
    pool_for(pool, n, 64, ivf_encode_task, &ec);
    free(cbn);
    if (ec.failed) {
        rc = err_set(err, ec.failed, "ivf: out of memory encoding");
        goto out;
    }
    /* Merge: each list keeps its old entries, then the new ones in input order. */
    for (int l = 0; l < L; l++) off[l + 1] = idx->list_off[l + 1] - idx->list_off[l];
    for (size_t i = 0; i < n; i++) off[asg[i] + 1]++;
    for (int l = 0; l < L; l++) off[l + 1] += off[l];
    uint64_t *pos = malloc((size_t)L * sizeof *pos);
    if (!pos) {
        rc = err_set(err, ERR_NOMEM, "ivf: out of memory");
        goto out;
    }
    for (int l = 0; l < L; l++) {
        uint64_t a = idx->list_off[l], cnt = idx->list_off[l + 1] - a;
        if (cnt) {
            memcpy(ids + off[l], idx->list_ids + a, cnt * sizeof *ids);
            memcpy(lc + off[l] * cs, idx->list_codes + a * cs, cnt * cs);
            if (lt) memcpy(lt + off[l], idx->list_terms + a, cnt * sizeof *lt);
        }
        pos[l] = off[l] + cnt;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t p = pos[asg[i]]++;
        ids[p] = (uint32_t)(old + i);
        memcpy(lc + p * cs, codes + i * cs, cs);
        if (lt) lt[p] = terms[i];
    }
    free(pos);
    free(idx->list_ids);
    free(idx->list_codes);
    free(idx->list_terms);
    free(idx->list_off);
    idx->list_ids = ids;
    idx->list_codes = lc;
    idx->list_terms = lt;
    idx->list_off = off;
    idx->n = total;
    ids = NULL;
    lc = NULL;
    lt = NULL;
    off = NULL;
out:
    free(asg);
    free(codes);
    free(terms);
    free(off);
    free(ids);
    free(lc);
    free(lt);
    return rc;
}

/* --------------------------------------------------------------------------- search ---- */

/* The nprobe lists with the smallest coarse distance, nearest first. */
static int select_probes(const float *cd, int L, int nprobe, struct ann_scratch *s)
{
    struct ann_topk h = {nprobe, 0, s->cscore + L, s->probe};
    for (int l = 0; l < L; l++)
        if (cd[l] < ann_topk_worst(&h)) ann_topk_push(&h, cd[l], (uint32_t)l);
    /* Heap-sort in place: drain into a temporary ordering via repeated pops. */
    int n = h.n;
    struct ann_hit tmp[64];
    if (n <= 64) {
        ann_topk_drain(&h, ANN_METRIC_L2, tmp);
        for (int i = 0; i < n; i++) {
            s->probe[i] = tmp[i].id;
            s->cscore[L + i] = tmp[i].score;
        }
    } else {
        struct ann_hit *t2 = malloc((size_t)n * sizeof *t2);
        if (!t2) return n; /* unsorted order is still correct, only slower to converge */
        ann_topk_drain(&h, ANN_METRIC_L2, t2);
        for (int i = 0; i < n; i++) {
            s->probe[i] = t2[i].id;
            s->cscore[L + i] = t2[i].score;
        }
        free(t2);
    }
    return n;
}

int ann_ivf_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                   struct ann_scratch *s)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int d = idx->dim, L = idx->nlist;
    int k = o->k < (int)idx->n || idx->n > (size_t)INT32_MAX ? o->k : (int)idx->n;
    int nprobe = o->nprobe > 0 ? o->nprobe : 8;
    if (nprobe > L) nprobe = L;
    size_t lut_n = idx->pq_m ? (size_t)idx->pq_m * ANN_PQ_K : 0;
    if (ann_scratch_reserve(s, k, 2 * L, lut_n, d) != 0) return ERR_NOMEM;
    bool ip = idx->cfg.metric == ANN_METRIC_IP;
    s->top.k = k;
    s->top.n = 0;

    /* Coarse distances: IP -> -<q, c>; L2 -> ||q||^2 + ||c||^2 - 2<q, c>. */
    float *cd = s->cscore;
    ops->dot_rows(q, idx->centroids, (size_t)L, d, cd);
    float qn = ip ? 0.0f : ops->dot(q, q, d);
    for (int l = 0; l < L; l++) cd[l] = ip ? -cd[l] * idx->cinv[l] : qn + idx->cnorm[l] - 2.0f * cd[l];
    int np = select_probes(cd, L, nprobe, s);
    const float *pd = s->cscore + L;

    float *w = s->qtmp, *sc = s->qtmp + d;
    float sq_c0 = 0, l16_scale = 1.0f, l16_bias = 0.0f;
    uint8_t *l16_planes = (uint8_t *)(s->lut16 + lut_n); /* ann_scratch_reserve: 2 lut_n */
    if (idx->cfg.kind == ANN_KIND_IVF_SQ8) {
        double c0 = 0;
        for (int j = 0; j < d; j++) {
            sc[j] = idx->sq_vdiff[j] / (float)idx->sq_levels;
            if (ip) {
                w[j] = q[j] * sc[j];
                c0 += (double)q[j] * (idx->sq_vmin[j] + 0.5f * sc[j]);
            }
        }
        sq_c0 = (float)c0;
    } else if (idx->cfg.kind == ANN_KIND_IVF_PQ) {
        pq_lut(idx, q, ip ? 1.0f : -2.0f, s->lut);
        if (idx->pq_m >= ANN_PQ_U16_MIN_M) {
            ann_pq_lut16(s->lut, idx->pq_m, s->lut16, &l16_scale, &l16_bias);
            ann_pq_lut16_planes(s->lut16, idx->pq_m, l16_planes);
        }
    }

    for (int p = 0; p < np; p++) {
        uint32_t l = s->probe[p];
        uint64_t a = idx->list_off[l], cnt = idx->list_off[l + 1] - a;
        if (p + 1 < np && idx->cfg.kind == ANN_KIND_IVF_PQ) {
            /* the next list's codes towards L2 while this one is scanned (PQ lists are a
             * few tens of KB; measured 1-2 % at 3m, nprobe 256) */
            uint32_t nl = s->probe[p + 1];
            uint64_t na = idx->list_off[nl];
            uint64_t nbytes = (idx->list_off[nl + 1] - na) * idx->code_size;
            const char *nc = (const char *)(idx->list_codes + na * idx->code_size);
            for (uint64_t off = 0; off < nbytes; off += 64) __builtin_prefetch(nc + off, 0, 2);
        }
        if (!cnt) continue;
        const uint32_t *ids = idx->list_ids + a;
        const uint8_t *codes = idx->list_codes + a * idx->code_size;
        float add = 0, sign = ip ? -1.0f : 1.0f;
        /* IP lists were ranked by -<q, c> / ||c||; the score needs -<q, c> itself */
        float base = ip ? (idx->cinv[l] > 0 ? pd[p] / idx->cinv[l] : 0.0f) : pd[p];
        if (idx->cfg.kind == ANN_KIND_IVF_SQ8) {
            if (ip) {
                add = -(sq_c0 - base); /* base = -<q, c> */
            } else {
                const float *cc = idx->centroids + (size_t)l * d;
                for (int j = 0; j < d; j++) w[j] = q[j] - cc[j] - idx->sq_vmin[j] - 0.5f * sc[j];
            }
        } else if (idx->cfg.kind == ANN_KIND_IVF_PQ) {
            add = base; /* -<q,c> or ||q - c||^2 */
        }
        for (uint64_t b = 0; b < cnt; b += ANN_SCAN_BLOCK) {
            size_t nb = cnt - b < ANN_SCAN_BLOCK ? (size_t)(cnt - b) : ANN_SCAN_BLOCK;
            const uint8_t *cb = codes + b * idx->code_size;
            switch (idx->cfg.kind) {
            case ANN_KIND_IVF_FLAT:
                if (ip) ops->dot_rows(q, (const float *)(const void *)cb, nb, d, s->buf);
                else ops->l2_rows(q, (const float *)(const void *)cb, nb, d, s->buf);
                break;
            case ANN_KIND_IVF_SQ8:
                if (ip) ops->sq8_dot_rows(w, cb, nb, d, s->buf);
                else ops->sq8_l2_rows(w, sc, cb, nb, d, s->buf);
                break;
            default:
                if (idx->pq_m >= ANN_PQ_U16_MIN_M)
                    ops->pq_adc_rows_u16(s->lut16, l16_planes, cb, nb, idx->pq_m, l16_scale,
                                         l16_bias, s->buf);
                else
                    ops->pq_adc_rows(s->lut, cb, nb, idx->pq_m, s->buf);
                if (!ip) {
                    const float *t = idx->list_terms + a + b;
                    for (size_t i = 0; i < nb; i++) s->buf[i] += t[i];
                }
                break;
            }
            /* Without exclusions the heap holds list positions, turned into ids once at
             * the end: an id is then read for the k results only, not for every push (each
             * a cache miss: the ids of a list are otherwise never touched). */
            if (o->n_exclude) ann_scan_push(&s->top, s->buf, nb, sign, add, ids + b, 0, o);
            else ann_scan_push(&s->top, s->buf, nb, sign, add, NULL, (uint32_t)(a + b), o);
        }
    }
    if (!o->n_exclude)
        for (int i = 0; i < s->top.n; i++) s->top.id[i] = idx->list_ids[s->top.id[i]];
    return 0;
}
