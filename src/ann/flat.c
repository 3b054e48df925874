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
        ann_sq8_encode(c->idx->sq_vmin, c->idx->sq_vdiff, c->x + i * d, c->idx->dim, c->out + i * d);
}

int ann_flat_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                 struct err *err)
{
    size_t d = (size_t)idx->dim, total = idx->n + n;
    if (idx->cfg.kind == ANN_KIND_FLAT) {
        float *v = realloc(idx->vecs, total * d * sizeof *v);
        if (!v) return err_set(err, ERR_NOMEM, "flat: out of memory for %zu vectors", total);
        idx->vecs = v;
        memcpy(v + idx->n * d, x, n * d * sizeof *v);
    } else {
        uint8_t *c = realloc(idx->codes, total * d);
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
            sc[j] = idx->sq_vdiff[j] / (float)ANN_SQ_LEVELS;
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
