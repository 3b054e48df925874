/* The common index API: parameter checks, build/add/search dispatch, batch search, scratch,
 * and the scalar quantizer shared by FLAT_SQ8 and IVF_SQ8. */
#include "ann/ann.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann/index.h"

static const char *const kind_names[ANN_KIND_COUNT] = {"flat",    "flat_sq8", "ivf_flat",
                                                       "ivf_sq8", "ivf_pq",   "hnsw"};

const char *ann_kind_name(enum ann_kind kind)
{
    return (unsigned)kind < ANN_KIND_COUNT ? kind_names[kind] : NULL;
}

int ann_kind_parse(const char *s)
{
    for (int i = 0; i < ANN_KIND_COUNT; i++)
        if (s && strcmp(s, kind_names[i]) == 0) return i;
    return -1;
}

static bool is_ivf(enum ann_kind k)
{
    return k == ANN_KIND_IVF_FLAT || k == ANN_KIND_IVF_SQ8 || k == ANN_KIND_IVF_PQ;
}

int ann_cfg_resolve(struct ann_cfg *c, int dim, struct err *err)
{
    if ((unsigned)c->kind >= ANN_KIND_COUNT)
        return err_set(err, ERR_INVALID, "index kind %d is not one of flat, flat_sq8, ivf_flat, "
                                         "ivf_sq8, ivf_pq, hnsw", (int)c->kind);
    if (c->metric != ANN_METRIC_IP && c->metric != ANN_METRIC_L2)
        return err_set(err, ERR_INVALID, "metric %d is neither inner product nor L2", (int)c->metric);
    if (dim < 1 || dim > ANN_MAX_DIM)
        return err_set(err, ERR_INVALID, "dimension %d outside 1..%d", dim, ANN_MAX_DIM);
    if (c->nlist <= 0) c->nlist = 256;
    if (c->pq_m <= 0) c->pq_m = dim >= 4 ? dim / 4 : dim;
    if (c->hnsw_m <= 0) c->hnsw_m = 32;
    if (c->ef_construction <= 0) c->ef_construction = 40;
    if (c->kmeans_iters <= 0) c->kmeans_iters = 10;
    if (c->pq_iters <= 0) c->pq_iters = 25;
    if (c->max_train_per_centroid <= 0) c->max_train_per_centroid = 256;
    if (c->nlist > (1 << 20)) return err_set(err, ERR_INVALID, "nlist %d above 2^20", c->nlist);
    if (c->kind == ANN_KIND_IVF_PQ && (dim % c->pq_m != 0 || c->pq_m > dim))
        return err_set(err, ERR_INVALID, "PQ: m=%d sub-quantizers must divide dimension %d",
                       c->pq_m, dim);
    if (c->hnsw_m < 2 || c->hnsw_m > 256)
        return err_set(err, ERR_INVALID, "HNSW: M=%d outside 2..256", c->hnsw_m);
    if (c->ef_construction > 100000)
        return err_set(err, ERR_INVALID, "HNSW: efConstruction=%d above 100000", c->ef_construction);
    return 0;
}

struct ann_index *ann_build(const struct ann_cfg *cfg, const float *x, size_t n, int dim,
                            struct pool *pool, struct err *err)
{
    struct ann_cfg c = *cfg;
    if (ann_cfg_resolve(&c, dim, err) != 0) return NULL;
    if (n > 0 && !x) {
        err_set(err, ERR_INVALID, "build: %zu vectors but no data", n);
        return NULL;
    }
    if (n >= UINT32_MAX) {
        err_set(err, ERR_INVALID, "build: %zu vectors; ids are 32-bit (at most %u)", n,
                UINT32_MAX - 1);
        return NULL;
    }
    struct ann_index *idx = calloc(1, sizeof *idx);
    if (!idx) {
        err_set(err, ERR_NOMEM, "build: out of memory");
        return NULL;
    }
    idx->cfg = c;
    idx->dim = dim;
    int rc = 0;
    switch (c.kind) {
    case ANN_KIND_FLAT_SQ8: rc = ann_flat_train(idx, x, n, err); break;
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ: rc = ann_ivf_train(idx, x, n, pool, err); break;
    default: break;
    }
    idx->cfg.centroids = NULL;
    if (rc == 0) rc = ann_add(idx, x, n, pool, err);
    if (rc != 0) {
        ann_free(idx);
        return NULL;
    }
    return idx;
}

int ann_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool, struct err *err)
{
    if (n == 0) return 0;
    if (!x) return err_set(err, ERR_INVALID, "add: %zu vectors but no data", n);
    if (idx->n + n >= UINT32_MAX)
        return err_set(err, ERR_INVALID, "add: %zu + %zu vectors exceed 32-bit ids", idx->n, n);
    if (idx->mapped && ann_index_own(idx) != 0)
        return err_set(err, ERR_NOMEM, "add: out of memory copying the loaded index");
    switch (idx->cfg.kind) {
    case ANN_KIND_FLAT:
    case ANN_KIND_FLAT_SQ8: return ann_flat_add(idx, x, n, pool, err);
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ: return ann_ivf_add(idx, x, n, pool, err);
    case ANN_KIND_HNSW: return ann_hnsw_add(idx, x, n, pool, err);
    default: return err_set(err, ERR_INVALID, "add: bad index kind");
    }
}

size_t ann_size(const struct ann_index *idx)
{
    return idx->n;
}
int ann_dim(const struct ann_index *idx)
{
    return idx->dim;
}
enum ann_kind ann_kind_of(const struct ann_index *idx)
{
    return idx->cfg.kind;
}
enum ann_metric ann_metric_of(const struct ann_index *idx)
{
    return idx->cfg.metric;
}
struct ann_cfg ann_config(const struct ann_index *idx)
{
    return idx->cfg;
}

/* Sizes come from the element types of the arrays the index actually holds (so they follow
 * any change of layout): per-vector arrays count in full, shared ones (centroids, their
 * norms, list offsets, quantizer ranges, codebooks, upper HNSW levels) are amortized over n.
 * Per-thread search scratch (heaps, HNSW visited marks) is not index memory. */
double ann_bytes_per_vector(const struct ann_index *idx)
{
    double n = idx->n ? (double)idx->n : 1.0, d = idx->dim, per = 0, shared = 0;
    double nl = idx->nlist, sq = 2.0 * d * sizeof *idx->sq_vmin;
    switch (idx->cfg.kind) {
    case ANN_KIND_FLAT: per = d * sizeof *idx->vecs; break;
    case ANN_KIND_FLAT_SQ8: per = d * sizeof *idx->codes; shared = sq; break;
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ:
        per = (double)idx->code_size + sizeof *idx->list_ids +
              (idx->list_terms ? sizeof *idx->list_terms : 0);
        shared = nl * (d * sizeof *idx->centroids + sizeof *idx->cnorm + sizeof *idx->cinv) +
                 (nl + 1) * sizeof *idx->list_off + (idx->sq_vmin ? sq : 0) +
                 (idx->pq_cb ? (double)ANN_PQ_K * d * sizeof *idx->pq_cb : 0);
        break;
    case ANN_KIND_HNSW:
        per = d * sizeof *idx->vecs + (1.0 + 2.0 * idx->cfg.hnsw_m) * sizeof *idx->links0 +
              sizeof *idx->levels + sizeof *idx->upper_off;
        shared = (double)idx->upper_len * sizeof *idx->upper;
        break;
    default: break;
    }
    return per + shared / n;
}

/* ----------------------------------------------------------------------- scratch ---- */

struct ann_scratch *ann_scratch_new(const struct ann_index *idx)
{
    struct ann_scratch *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->buf = malloc(ANN_SCAN_BLOCK * sizeof *s->buf);
    if (!s->buf) goto fail;
    if (idx && idx->cfg.kind == ANN_KIND_HNSW) {
        s->n_cap = idx->n;
        s->visited = calloc(idx->n ? idx->n : 1, sizeof *s->visited);
        if (!s->visited) goto fail;
    }
    if (idx && ann_scratch_reserve(s, 128, is_ivf(idx->cfg.kind) ? idx->nlist : 0,
                                   idx->pq_cb ? (size_t)idx->pq_m * ANN_PQ_K : 0, idx->dim) != 0)
        goto fail;
    return s;
fail:
    ann_scratch_free(s);
    return NULL;
}

void ann_scratch_free(struct ann_scratch *s)
{
    if (!s) return;
    free(s->buf);
    free(s->qtmp);
    free(s->lut);
    free(s->lut16);
    free(s->cscore);
    free(s->probe);
    free(s->top.d);
    free(s->top.id);
    free(s->visited);
    free(s->cand_d);
    free(s->cand_id);
    free(s);
}

void *ann_realloc_aligned(void *p, size_t old_bytes, size_t new_bytes)
{
    size_t bytes = (new_bytes + ANN_ALIGN - 1) / ANN_ALIGN * ANN_ALIGN;
    void *q = aligned_alloc(ANN_ALIGN, bytes ? bytes : ANN_ALIGN);
    if (!q) return NULL;
    if (p) memcpy(q, p, old_bytes < new_bytes ? old_bytes : new_bytes);
    free(p);
    return q;
}

static int grow(void **p, size_t bytes)
{
    void *q = realloc(*p, bytes ? bytes : 1);
    if (!q) return ERR_NOMEM;
    *p = q;
    return 0;
}

int ann_scratch_reserve(struct ann_scratch *s, int cap, int lists, size_t lut, int dim)
{
    if (cap > s->heap_cap) {
        if (grow((void **)&s->top.d, (size_t)cap * sizeof(float)) ||
            grow((void **)&s->top.id, (size_t)cap * sizeof(uint32_t)))
            return ERR_NOMEM;
        s->heap_cap = cap;
    }
    if (cap > s->cand_cap) {
        if (grow((void **)&s->cand_d, (size_t)cap * sizeof(float)) ||
            grow((void **)&s->cand_id, (size_t)cap * sizeof(uint32_t)))
            return ERR_NOMEM;
        s->cand_cap = cap;
    }
    if (lists > s->cap_lists) {
        if (grow((void **)&s->cscore, (size_t)lists * sizeof(float)) ||
            grow((void **)&s->probe, (size_t)lists * sizeof(uint32_t)))
            return ERR_NOMEM;
        s->cap_lists = lists;
    }
    if (lut > s->lut_cap) {
        if (grow((void **)&s->lut, lut * sizeof(float)) ||
            grow((void **)&s->lut16, 2 * lut * sizeof(uint16_t))) /* table + byte planes */
            return ERR_NOMEM;
        s->lut_cap = lut;
    }
    if (dim > s->dim_cap) {
        if (grow((void **)&s->qtmp, 2 * (size_t)dim * sizeof(float))) return ERR_NOMEM;
        s->dim_cap = dim;
    }
    return 0;
}

int ann_topk_drain(struct ann_topk *h, enum ann_metric metric, struct ann_hit *out)
{
    int n = h->n;
    for (int last = n - 1; last >= 0; last--) {
        out[last].id = h->id[0];
        out[last].score = metric == ANN_METRIC_IP ? -h->d[0] : h->d[0];
        /* pop: move the last element to the root and sift down */
        float d = h->d[last];
        uint32_t id = h->id[last];
        int i = 0;
        for (;;) {
            int l = 2 * i + 1, r = l + 1, m = i;
            float dm = d;
            if (l < last && h->d[l] > dm) {
                m = l;
                dm = h->d[l];
            }
            if (r < last && h->d[r] > dm) m = r;
            if (m == i) break;
            h->d[i] = h->d[m];
            h->id[i] = h->id[m];
            i = m;
        }
        h->d[i] = d;
        h->id[i] = id;
    }
    h->n = 0;
    return n;
}

/* ------------------------------------------------------------------------ search ---- */

int ann_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
               struct ann_scratch *s, struct ann_hit *out)
{
    if (!idx || !q || !o || !out || o->k < 1 || o->k > (1 << 24) ||
        (o->n_exclude > 0 && !o->exclude))
        return ERR_INVALID;
    if (idx->n == 0) return 0;
    struct ann_scratch *own = NULL;
    if (!s) {
        own = s = ann_scratch_new(idx);
        if (!s) return ERR_NOMEM;
    }
    if (idx->cfg.kind == ANN_KIND_HNSW && s->n_cap < idx->n) {
        uint16_t *v = calloc(idx->n, sizeof *v);
        if (!v) {
            ann_scratch_free(own);
            return ERR_NOMEM;
        }
        free(s->visited);
        s->visited = v;
        s->n_cap = idx->n;
        s->epoch = 0;
    }
    int rc;
    switch (idx->cfg.kind) {
    case ANN_KIND_FLAT:
    case ANN_KIND_FLAT_SQ8: rc = ann_flat_search(idx, q, o, s); break;
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ: rc = ann_ivf_search(idx, q, o, s); break;
    case ANN_KIND_HNSW: rc = ann_hnsw_search(idx, q, o, s); break;
    default: rc = ERR_INVALID;
    }
    if (rc >= 0) rc = ann_topk_drain(&s->top, idx->cfg.metric, out);
    ann_scratch_free(own);
    return rc;
}

struct batch_ctx {
    const struct ann_index *idx;
    const float *q;
    const struct ann_search_opts *o;
    size_t n_opts;
    struct ann_hit *out;
    int *counts;
    struct ann_scratch **scr;
    int k;
    int failed;
};

static void batch_task(void *vctx, size_t begin, size_t end, int tid)
{
    struct batch_ctx *b = vctx;
    for (size_t i = begin; i < end; i++) {
        const struct ann_search_opts *o = b->n_opts == 1 ? b->o : b->o + i;
        int r = ann_search(b->idx, b->q + i * (size_t)b->idx->dim, o, b->scr[tid],
                           b->out + i * (size_t)b->k);
        b->counts[i] = r < 0 ? 0 : r;
        if (r < 0) b->failed = r;
    }
}

int ann_search_batch(const struct ann_index *idx, const float *q, size_t nq,
                     const struct ann_search_opts *o, size_t n_opts, struct ann_hit *out,
                     int *counts, struct pool *pool)
{
    if (!idx || !o || (n_opts != 1 && n_opts != nq) || (nq && (!q || !out || !counts)))
        return ERR_INVALID;
    for (size_t i = 0; i < n_opts; i++)
        if (o[i].k != o[0].k || o[i].k < 1 || o[i].k > (1 << 24) ||
            (o[i].n_exclude && !o[i].exclude))
            return ERR_INVALID;
    if (nq == 0) return 0;
    if (idx->n == 0) {
        memset(counts, 0, nq * sizeof *counts);
        return 0;
    }
    if (idx->cfg.kind == ANN_KIND_FLAT && nq >= 4)
        return ann_flat_search_batch(idx, q, nq, o, n_opts, out, counts, pool);
    int nt = pool ? pool_threads(pool) : 1;
    struct ann_scratch **scr = calloc((size_t)nt, sizeof *scr);
    if (!scr) return ERR_NOMEM;
    int rc = 0;
    for (int t = 0; t < nt; t++)
        if (!(scr[t] = ann_scratch_new(idx))) rc = ERR_NOMEM;
    if (rc == 0) {
        struct batch_ctx b = {idx, q, o, n_opts, out, counts, scr, o[0].k, 0};
        pool_for(pool, nq, 1, batch_task, &b);
        rc = b.failed;
    }
    for (int t = 0; t < nt; t++) ann_scratch_free(scr[t]);
    free(scr);
    return rc;
}

/* ---------------------------------------------------------------------- ownership ---- */

void ann_index_release(struct ann_index *idx)
{
    free(idx->cnorm); /* always owned: computed at build or load */
    free(idx->cinv);
    idx->cnorm = idx->cinv = NULL;
    if (idx->mapped) return;
    free(idx->vecs);
    free(idx->sq_vmin);
    free(idx->sq_vdiff);
    free(idx->codes);
    free(idx->centroids);
    free(idx->list_off);
    free(idx->list_ids);
    free(idx->list_codes);
    free(idx->list_terms);
    free(idx->pq_cb);
    free(idx->levels);
    free(idx->links0);
    free(idx->upper_off);
    free(idx->upper);
}

static int dup_arr(void **p, size_t bytes)
{
    if (!*p) return 0;
    void *q = ann_realloc_aligned(NULL, 0, bytes);
    if (!q) return ERR_NOMEM;
    memcpy(q, *p, bytes);
    *p = q;
    return 0;
}

int ann_index_own(struct ann_index *idx)
{
    if (!idx->mapped) return 0;
    size_t n = idx->n, d = (size_t)idx->dim, L = (size_t)idx->nlist;
    struct ann_index c = *idx;
    c.mapped = false;
    /* Copy one by one; on failure free what was copied and keep the mapped view. */
    void **arrs[] = {(void **)&c.vecs,      (void **)&c.sq_vmin,    (void **)&c.sq_vdiff,
                     (void **)&c.codes,     (void **)&c.centroids,
                     (void **)&c.list_off,  (void **)&c.list_ids,   (void **)&c.list_codes,
                     (void **)&c.list_terms, (void **)&c.pq_cb,     (void **)&c.levels,
                     (void **)&c.links0,    (void **)&c.upper_off,  (void **)&c.upper};
    size_t sizes[] = {n * d * 4, d * 4, d * 4, n * d, L * d * 4, (L + 1) * 8, n * 4,
                      n * idx->code_size, n * 4, (size_t)idx->pq_m * ANN_PQ_K * idx->pq_dsub * 4,
                      n, n * (1 + 2 * (size_t)idx->cfg.hnsw_m) * 4, n * 4, idx->upper_len * 4};
    size_t na = sizeof sizes / sizeof sizes[0];
    for (size_t i = 0; i < na; i++) {
        if (dup_arr(arrs[i], sizes[i]) != 0) {
            for (size_t j = 0; j < i; j++)
                if (*arrs[j]) free(*arrs[j]);
            return ERR_NOMEM;
        }
    }
    *idx = c;
    return 0;
}

/* ------------------------------------------------------------------ scalar quantizer ---- */

int ann_sq8_train(const float *x, size_t n, int dim, float *vmin, float *vdiff)
{
    if (n == 0) return ERR_INVALID;
    for (int j = 0; j < dim; j++) {
        vmin[j] = x[j];
        vdiff[j] = x[j];
    }
    for (size_t i = 1; i < n; i++) {
        const float *r = x + i * (size_t)dim;
        for (int j = 0; j < dim; j++) {
            if (r[j] < vmin[j]) vmin[j] = r[j];
            if (r[j] > vdiff[j]) vdiff[j] = r[j]; /* max for now */
        }
    }
    for (int j = 0; j < dim; j++) {
        float d = vdiff[j] - vmin[j];
        vdiff[j] = d > 1e-20f ? d : 1e-20f;
    }
    return 0;
}

void ann_sq8_encode(const float *vmin, const float *vdiff, int levels, const float *x, int dim,
                    uint8_t *c)
{
    for (int j = 0; j < dim; j++) {
        float t = (x[j] - vmin[j]) / vdiff[j] * (float)levels;
        int v = (int)floorf(t);
        if (!(t >= 0)) v = 0; /* also catches NaN */
        if (v > 255) v = 255; /* 255 levels: only t = 1 (the maximum) gets code 255 */
        c[j] = (uint8_t)v;
    }
}

void ann_sq8_decode(const float *vmin, const float *vdiff, int levels, const uint8_t *c, int dim,
                    float *x)
{
    for (int j = 0; j < dim; j++)
        x[j] = vmin[j] + ((float)c[j] + 0.5f) * vdiff[j] / (float)levels;
}

void ann_free(struct ann_index *idx)
{
    if (!idx) return;
    ann_index_release(idx);
    ann_io_close(idx);
    free(idx);
}
