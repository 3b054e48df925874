/* Flat indexes: every vector scanned. FLAT keeps f32 rows (exact search, bound by memory
 * bandwidth); FLAT_SQ8 keeps one byte per dimension (4x less to read, approximate). */
#include <stdlib.h>
#include <string.h>

#include "ann/index.h"

int ann_flat_train(struct ann_index *idx, const float *x, size_t n, struct err *err)
{
    if (n == 0) return err_set(err, ERR_INVALID, "flat_sq8: needs training vectors (n = 0)");
    idx->sq_vmin = malloc((size_t)idx->dim * sizeof(float));
    idx->sq_vdiff = malloc((size_t)idx->dim * sizeof(float));
    if (!idx->sq_vmin || !idx->sq_vdiff) return err_set(err, ERR_NOMEM, "flat_sq8: out of memory");
    idx->sq_levels = ANN_SQ_LEVELS;
    return ann_sq8_train(x, n, idx->dim, idx->sq_vmin, idx->sq_vdiff);
}

struct enc_ctx {
    const struct ann_index *idx;
    const float *x;
    uint8_t *out;
};

static void sq8_encode_task(void *vctx, size_t begin, size_t end, int tid)
{
    (void)tid;
    struct enc_ctx *c = vctx;
    size_t d = (size_t)c->idx->dim;
    for (size_t i = begin; i < end; i++)
        ann_sq8_encode(c->idx->sq_vmin, c->idx->sq_vdiff, c->idx->sq_levels, c->x + i * d,
                       c->idx->dim, c->out + i * d);
}

int ann_flat_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                 struct err *err)
{
    size_t d = (size_t)idx->dim, total = idx->n + n;
    if (idx->cfg.kind == ANN_KIND_FLAT) {
        float *v = ann_realloc_aligned(idx->vecs, idx->n * d * sizeof *v, total * d * sizeof *v);
        if (!v) return err_set(err, ERR_NOMEM, "flat: out of memory for %zu vectors", total);
        idx->vecs = v;
        memcpy(v + idx->n * d, x, n * d * sizeof *v);
    } else {
        uint8_t *c = ann_realloc_aligned(idx->codes, idx->n * d, total * d);
        if (!c) return err_set(err, ERR_NOMEM, "flat_sq8: out of memory for %zu vectors", total);
        idx->codes = c;
        struct enc_ctx ec = {idx, x, c + idx->n * d};
        pool_for(pool, n, 256, sq8_encode_task, &ec);
    }
    idx->n = total;
    return 0;
}

int ann_flat_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                    struct ann_scratch *s)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int d = idx->dim;
    int k = o->k < (int)idx->n || idx->n > (size_t)INT32_MAX ? o->k : (int)idx->n;
    if (ann_scratch_reserve(s, k, 0, 0, d) != 0) return ERR_NOMEM;
    s->top.k = k;
    s->top.n = 0;
    bool ip = idx->cfg.metric == ANN_METRIC_IP;
    float sign = ip ? -1.0f : 1.0f, add = 0.0f;
    float *w = s->qtmp, *sc = s->qtmp + d;
    if (idx->cfg.kind == ANN_KIND_FLAT_SQ8) {
        /* x[j] = vmin[j] + (c[j] + 0.5) * sc[j]; fold everything but the codes into w and a
         * constant so the kernel is one multiply-add per byte. */
        double c0 = 0;
        for (int j = 0; j < d; j++) {
            sc[j] = idx->sq_vdiff[j] / (float)idx->sq_levels;
            if (ip) {
                w[j] = q[j] * sc[j];
                c0 += (double)q[j] * (idx->sq_vmin[j] + 0.5f * sc[j]);
            } else {
                w[j] = q[j] - idx->sq_vmin[j] - 0.5f * sc[j];
            }
        }
        add = ip ? -(float)c0 : 0.0f;
    }
    for (size_t b = 0; b < idx->n; b += ANN_SCAN_BLOCK) {
        size_t nb = idx->n - b < ANN_SCAN_BLOCK ? idx->n - b : ANN_SCAN_BLOCK;
        if (idx->cfg.kind == ANN_KIND_FLAT) {
            const float *x = idx->vecs + b * (size_t)d;
            if (ip) ops->dot_rows(q, x, nb, d, s->buf);
            else ops->l2_rows(q, x, nb, d, s->buf);
        } else {
            const uint8_t *c = idx->codes + b * (size_t)d;
            if (ip) ops->sq8_dot_rows(w, c, nb, d, s->buf);
            else ops->sq8_l2_rows(w, sc, c, nb, d, s->buf);
        }
        ann_scan_push(&s->top, s->buf, nb, sign, add, NULL, (uint32_t)b, o);
    }
    return 0;
}

/* Batched exact search: QB queries at a time against blocks of FB rows with the
 * register-blocked A.B^T kernel, so each row is read once per QB queries instead of once per
 * query (compute-bound instead of bandwidth-bound). Each query keeps its own heap and its own
 * exclusion set. */
#define QB 8
#define FB 256

struct fbatch_ctx {
    const struct ann_index *idx;
    const float *q;
    size_t nq;
    const struct ann_search_opts *o;
    size_t n_opts;
    struct ann_hit *out;
    int *counts;
    int k, kk;
    float **buf;  /* per thread: QB * FB scores */
    float **hd;   /* per thread: QB * kk distances */
    uint32_t **hi;
    int failed;
};

static void fbatch_task(void *vctx, size_t begin, size_t end, int tid)
{
    struct fbatch_ctx *c = vctx;
    const struct ann_index *idx = c->idx;
    const struct ann_dist_ops *ops = ann_dist_get();
    int d = idx->dim;
    bool ip = idx->cfg.metric == ANN_METRIC_IP;
    for (size_t g = begin; g < end; g++) {
        size_t q0 = g * QB, nqb = c->nq - q0 < QB ? c->nq - q0 : QB;
        struct ann_topk h[QB];
        float qn[QB];
        for (size_t j = 0; j < nqb; j++) {
            h[j] = (struct ann_topk){c->kk, 0, c->hd[tid] + j * (size_t)c->kk,
                                     c->hi[tid] + j * (size_t)c->kk};
            const float *qq = c->q + (q0 + j) * (size_t)d;
            qn[j] = ip ? 0.0f : ops->dot(qq, qq, d);
        }
        float *buf = c->buf[tid];
        for (size_t b = 0; b < idx->n; b += FB) {
            size_t nb = idx->n - b < FB ? idx->n - b : FB;
            const float *x = idx->vecs + b * (size_t)d;
            ops->gemm_nt(c->q + q0 * (size_t)d, nqb, x, nb, d, buf);
            for (size_t j = 0; j < nqb; j++) {
                const struct ann_search_opts *o = c->n_opts == 1 ? c->o : c->o + q0 + j;
                float *row = buf + j * nb;
                if (!ip) {
                    /* ||q - x||^2 = ||q||^2 + ||x||^2 - 2<q, x>: row norms on the fly */
                    for (size_t i = 0; i < nb; i++) {
                        const float *xi = x + i * (size_t)d;
                        row[i] = qn[j] + ops->dot(xi, xi, d) - 2.0f * row[i];
                    }
                }
                ann_scan_push(&h[j], row, nb, ip ? -1.0f : 1.0f, 0.0f, NULL, (uint32_t)b, o);
            }
        }
        for (size_t j = 0; j < nqb; j++)
            c->counts[q0 + j] = ann_topk_drain(&h[j], idx->cfg.metric, c->out + (q0 + j) * (size_t)c->k);
    }
}

int ann_flat_search_batch(const struct ann_index *idx, const float *q, size_t nq,
                          const struct ann_search_opts *o, size_t n_opts, struct ann_hit *out,
                          int *counts, struct pool *pool)
{
    int nt = pool ? pool_threads(pool) : 1, k = o[0].k;
    int kk = k < (int)idx->n || idx->n > (size_t)INT32_MAX ? k : (int)idx->n;
    struct fbatch_ctx c = {idx, q, nq, o, n_opts, out, counts, k, kk, NULL, NULL, NULL, 0};
    int rc = ERR_NOMEM;
    c.buf = calloc((size_t)nt, sizeof *c.buf);
    c.hd = calloc((size_t)nt, sizeof *c.hd);
    c.hi = calloc((size_t)nt, sizeof *c.hi);
    if (!c.buf || !c.hd || !c.hi) goto out;
    for (int t = 0; t < nt; t++) {
        c.buf[t] = malloc(sizeof(float) * QB * FB);
        c.hd[t] = malloc(sizeof(float) * QB * (size_t)kk);
        c.hi[t] = malloc(sizeof(uint32_t) * QB * (size_t)kk);
        if (!c.buf[t] || !c.hd[t] || !c.hi[t]) goto out;
    }
    pool_for(pool, (nq + QB - 1) / QB, 1, fbatch_task, &c);
    rc = 0;
out:
    for (int t = 0; t < nt; t++) {
        if (c.buf) free(c.buf[t]);
        if (c.hd) free(c.hd[t]);
        if (c.hi) free(c.hi[t]);
    }
    free(c.buf);
    free(c.hd);
    free(c.hi);
    return rc;
}
