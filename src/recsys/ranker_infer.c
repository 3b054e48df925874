/* Serving ranker forward with int8 weights (see ranker_infer.h). */
#include "recsys/ranker_infer.h"

#include <stdlib.h>
#include <string.h>

#include "engine/kernels.h"
#include "recsys/i8gemm.h"

struct ranker_infer {
    int D, Y, G, R, S; /* R item-block inputs; S = R - 2D static ones (pop, year, genres, flag) */
    int H[RANKER_LAYERS];
    float *w_user;                /* (H1, D) f32: W1[:, 0:D] */
    struct i8_mat *w1[3];            /* W1's v, u*v and static-feature columns as W8A8 */
    struct i8_mat *w[RANKER_LAYERS]; /* [1], [2]: W2, W3 as W8A8 (i8gemm.h); [0] unused */
    float *b[RANKER_LAYERS];
    float *out_w, out_b;
    uint32_t n_items;
    float *stat; /* (n_items + 1, S): each item's static features, built once */
};

struct ranker_infer_scratch {
    int max_n;
    float *x, *h[RANKER_LAYERS], *bias1;
    void *kscratch;
};

void ranker_infer_free(struct ranker_infer *m)
{
    if (!m)
        return;
    free(m->w_user);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        i8_mat_free(m->w[l]);
        free(m->b[l]);
    }
    for (int i = 0; i < 3; i++)
        i8_mat_free(m->w1[i]);
    free(m->out_w);
    free(m->stat);
    free(m);
}

/* The static features of one item, in ranker.c's order after v and u*v: popularity, year
 * embedding, mean genre embedding, cold flag (0 for a served item). */
static void static_features(const struct ranker *r, const struct ranker_items *it,
                            uint32_t item, float *f)
{
    const int Y = r->cfg.year_dim, G = r->cfg.genre_dim;
    f[0] = it->pop_z[item];
    memcpy(f + 1, r->year_emb + (size_t)it->year_bucket[item] * Y, (size_t)Y * sizeof(float));
    float *g = f + 1 + Y;
    memset(g, 0, (size_t)(G + 1) * sizeof(float)); /* genres, flag */
    uint32_t mask = it->genres[item];
    int cnt = __builtin_popcount(mask);
    if (cnt) {
        for (int k = 0; k < RANKER_GENRES; k++)
            if (mask & (1u << k))
                for (int j = 0; j < G; j++)
                    g[j] += r->genre_emb[(size_t)k * G + j];
        for (int j = 0; j < G; j++)
            g[j] /= (float)cnt;
    }
}

struct ranker_infer *ranker_infer_new(const struct ranker *r, const struct ranker_items *it,
                                      struct err *err)
{
    if (!r->folded) {
        err_set(err, ERR_INVALID, "ranker: the serving copy needs a folded ranker");
        return NULL;
    }
    kern_init();
    struct ranker_infer *m = calloc(1, sizeof *m);
    if (!m)
        goto nomem;
    const int D = r->cfg.dim, Y = r->cfg.year_dim, G = r->cfg.genre_dim;
    m->D = D;
    m->Y = Y;
    m->G = G;
    m->R = r->in_dim - D;
    m->S = m->R - 2 * D;
    if (m->S != 1 + Y + G + 1) {
        err_set(err, ERR_INVALID, "ranker: input width %d does not match dim %d, year %d, genre %d",
                r->in_dim, D, Y, G);
        ranker_infer_free(m);
        return NULL;
    }
    for (int l = 0; l < RANKER_LAYERS; l++)
        m->H[l] = r->cfg.hidden[l];
    m->w_user = malloc((size_t)m->H[0] * D * sizeof(float));
    if (!m->w_user)
        goto nomem;
    for (int h = 0; h < m->H[0]; h++)
        memcpy(m->w_user + (size_t)h * D, r->layer[0].w + (size_t)h * r->in_dim,
               (size_t)D * sizeof(float));
    /* Layer 1's item blocks as three products: their values differ in scale by orders of
     * magnitude (u*v is ~|u| times smaller than v, popularity is a z-score), so each gets its
     * own per-candidate activation scale. Any hidden sizes: i8gemm pads rows and columns. */
    const float *w1 = r->layer[0].w;
    const size_t ld1 = (size_t)r->in_dim;
    m->w1[0] = i8_mat_new(w1 + D, m->H[0], D, ld1);
    m->w1[1] = i8_mat_new(w1 + 2 * D, m->H[0], D, ld1);
    m->w1[2] = i8_mat_new(w1 + 3 * D, m->H[0], m->S, ld1);
    if (!m->w1[0] || !m->w1[1] || !m->w1[2])
        goto nomem;
    m->w[1] = i8_mat_new(r->layer[1].w, m->H[1], m->H[0], (size_t)m->H[0]);
    m->w[2] = i8_mat_new(r->layer[2].w, m->H[2], m->H[1], (size_t)m->H[1]);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        m->b[l] = malloc((size_t)m->H[l] * sizeof(float));
        if ((l > 0 && !m->w[l]) || !m->b[l])
            goto nomem;
        memcpy(m->b[l], r->layer[l].b, (size_t)m->H[l] * sizeof(float));
    }
    m->out_w = malloc((size_t)m->H[2] * sizeof(float));
    m->n_items = it->n_items;
    m->stat = malloc(((size_t)it->n_items + 1) * m->S * sizeof(float));
    if (!m->out_w || !m->stat)
        goto nomem;
    memcpy(m->out_w, r->out_w, (size_t)m->H[2] * sizeof(float));
    m->out_b = r->out_b[0];
    for (uint32_t i = 0; i <= it->n_items; i++)
        static_features(r, it, i, m->stat + (size_t)i * m->S);
    return m;
nomem:
    ranker_infer_free(m);
    err_set(err, ERR_NOMEM, "ranker: out of memory for the serving copy");
    return NULL;
}

struct ranker_infer_scratch *ranker_infer_scratch_new(const struct ranker_infer *m, int max_n)
{
    struct ranker_infer_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->max_n = max_n;
    bool ok = (s->x = calloc((size_t)max_n * m->R, sizeof(float))) != NULL;
    for (int l = 0; l < RANKER_LAYERS; l++)
        ok = ok && (s->h[l] = malloc((size_t)max_n * m->H[l] * sizeof(float))) != NULL;
    ok = ok && (s->bias1 = malloc((size_t)m->H[0] * sizeof(float))) != NULL;
    size_t ks = i8_gemm_scratch_size(m->D > m->S ? m->D : m->S, max_n);
    for (int l = 1; l < RANKER_LAYERS; l++) {
        size_t need = i8_gemm_scratch_size(m->H[l - 1], max_n);
        if (need > ks)
            ks = need;
    }
    ok = ok && (s->kscratch = malloc(ks)) != NULL;
    if (!ok) {
        ranker_infer_scratch_free(s);
        return NULL;
    }
    return s;
}

void ranker_infer_scratch_free(struct ranker_infer_scratch *s)
{
    if (!s)
        return;
    free(s->x);
    for (int l = 0; l < RANKER_LAYERS; l++)
        free(s->h[l]);
    free(s->bias1);
    free(s->kscratch);
    free(s);
}

int ranker_infer_score(const struct ranker_infer *m, struct ranker_infer_scratch *s,
                       const float *user, const float *item_table, const uint32_t *items, int n,
                       float *logits)
{
    if (n < 1 || n > s->max_n)
        return ERR_INVALID;
    const int D = m->D, R = m->R, S = m->S;
    for (int i = 0; i < n; i++) {
        if (items[i] == 0 || items[i] > m->n_items)
            return ERR_INVALID;
        /* the item block: v, u*v, then the item's precomputed static features */
        const float *v = item_table + (size_t)items[i] * D;
        float *x = s->x + (size_t)i * R;
        for (int d = 0; d < D; d++) {
            x[d] = v[d];
            x[D + d] = user[d] * v[d];
        }
        memcpy(x + 2 * D, m->stat + (size_t)items[i] * S, (size_t)S * sizeof(float));
    }
    /* the user block once: bias1 = b1 + W1[:, 0:D] . u (f32, vectorised matvec) */
    kern_matmul(GGML_TYPE_F32, m->w_user, user, s->bias1, m->H[0], D, 1, NULL, NULL);
    for (int h = 0; h < m->H[0]; h++)
        s->bias1[h] += m->b[0][h];
    const size_t H0 = (size_t)m->H[0];
    i8_gemm(m->w1[0], s->x, (size_t)R, s->h[0], H0, n, NULL, s->kscratch);
    i8_gemm(m->w1[1], s->x + D, (size_t)R, s->h[0], H0, n,
            &(struct i8_epilogue){.accumulate = true}, s->kscratch);
    i8_gemm(m->w1[2], s->x + 2 * D, (size_t)R, s->h[0], H0, n,
            &(struct i8_epilogue){.bias = s->bias1, .accumulate = true, .relu = true},
            s->kscratch);
    i8_gemm(m->w[1], s->h[0], H0, s->h[1], (size_t)m->H[1], n,
            &(struct i8_epilogue){.bias = m->b[1], .relu = true}, s->kscratch);
    i8_gemm(m->w[2], s->h[1], (size_t)m->H[1], s->h[2], (size_t)m->H[2], n,
            &(struct i8_epilogue){.bias = m->b[2], .relu = true}, s->kscratch);
    for (int i = 0; i < n; i++) {
        const float *h = s->h[2] + (size_t)i * m->H[2];
        float acc = m->out_b;
        for (int j = 0; j < m->H[2]; j++)
            acc += m->out_w[j] * h[j];
        logits[i] = acc;
    }
    return 0;
}
