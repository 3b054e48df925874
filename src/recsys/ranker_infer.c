/* Serving ranker forward with int8 weights (see ranker_infer.h). */
#include "recsys/ranker_infer.h"

#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"

#define QT GGML_TYPE_Q8_0
#define QBLK 32

struct ranker_infer {
    int D, Y, G, R, Rp; /* R item-block inputs, padded to Rp (a Q8_0 block multiple) */
    int H[RANKER_LAYERS];
    int in[RANKER_LAYERS];  /* padded input width of each layer */
    float *w_user;          /* (H1, D) f32: W1[:, 0:D] */
    void *w[RANKER_LAYERS]; /* Q8_0 (H_l, in_l) */
    float *b[RANKER_LAYERS];
    float *out_w, out_b;
    float *year_emb, *genre_emb;
    uint32_t n_items;
    float *pop_z;
    uint8_t *year_bucket;
    uint32_t *genres;
};

struct ranker_infer_scratch {
    int max_n;
    float *x, *h[RANKER_LAYERS], *bias1;
    void *kscratch;
};

static int round_up(int x, int m)
{
    return (x + m - 1) / m * m;
}

void ranker_infer_free(struct ranker_infer *m)
{
    if (!m)
        return;
    free(m->w_user);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        free(m->w[l]);
        free(m->b[l]);
    }
    free(m->out_w);
    free(m->year_emb);
    free(m->genre_emb);
    free(m->pop_z);
    free(m->year_bucket);
    free(m->genres);
    free(m);
}

/* Quantizes `rows` rows of src (row stride src_cols, first `cols` columns used starting at
 * column c0) into Q8_0 rows of `padded` columns (zeros past cols). */
static void *quantize_rows(const float *src, int rows, int src_cols, int c0, int cols, int padded)
{
    size_t row_bytes = ggml_row_size(QT, (uint64_t)padded);
    char *out = malloc((size_t)rows * row_bytes);
    float *tmp = calloc((size_t)padded, sizeof(float));
    if (!out || !tmp) {
        free(out);
        free(tmp);
        return NULL;
    }
    for (int r = 0; r < rows; r++) {
        memcpy(tmp, src + (size_t)r * src_cols + c0, (size_t)cols * sizeof(float));
        kern_quantize_row(QT, tmp, out + (size_t)r * row_bytes, padded);
    }
    free(tmp);
    return out;
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
    m->Rp = round_up(m->R, QBLK);
    for (int l = 0; l < RANKER_LAYERS; l++)
        m->H[l] = r->cfg.hidden[l];
    m->in[0] = m->Rp;
    m->in[1] = m->H[0];
    m->in[2] = m->H[1];
    if (m->H[0] % QBLK || m->H[1] % QBLK) {
        err_set(err, ERR_UNSUPPORTED, "ranker: hidden sizes %d, %d are not multiples of %d",
                m->H[0], m->H[1], QBLK);
        ranker_infer_free(m);
        return NULL;
    }
    m->w_user = malloc((size_t)m->H[0] * D * sizeof(float));
    if (!m->w_user)
        goto nomem;
    for (int h = 0; h < m->H[0]; h++)
        memcpy(m->w_user + (size_t)h * D, r->layer[0].w + (size_t)h * r->in_dim,
               (size_t)D * sizeof(float));
    m->w[0] = quantize_rows(r->layer[0].w, m->H[0], r->in_dim, D, m->R, m->Rp);
    m->w[1] = quantize_rows(r->layer[1].w, m->H[1], m->H[0], 0, m->H[0], m->H[0]);
    m->w[2] = quantize_rows(r->layer[2].w, m->H[2], m->H[1], 0, m->H[1], m->H[1]);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        m->b[l] = malloc((size_t)m->H[l] * sizeof(float));
        if (!m->w[l] || !m->b[l])
            goto nomem;
        memcpy(m->b[l], r->layer[l].b, (size_t)m->H[l] * sizeof(float));
    }
    m->out_w = malloc((size_t)m->H[2] * sizeof(float));
    m->year_emb = malloc((size_t)RANKER_YEAR_BUCKETS * Y * sizeof(float));
    m->genre_emb = malloc((size_t)RANKER_GENRES * G * sizeof(float));
    m->n_items = it->n_items;
    m->pop_z = malloc(((size_t)it->n_items + 1) * sizeof(float));
    m->year_bucket = malloc((size_t)it->n_items + 1);
    m->genres = malloc(((size_t)it->n_items + 1) * sizeof(uint32_t));
    if (!m->out_w || !m->year_emb || !m->genre_emb || !m->pop_z || !m->year_bucket || !m->genres)
        goto nomem;
    memcpy(m->out_w, r->out_w, (size_t)m->H[2] * sizeof(float));
    m->out_b = r->out_b[0];
    memcpy(m->year_emb, r->year_emb, (size_t)RANKER_YEAR_BUCKETS * Y * sizeof(float));
    memcpy(m->genre_emb, r->genre_emb, (size_t)RANKER_GENRES * G * sizeof(float));
    memcpy(m->pop_z, it->pop_z, ((size_t)it->n_items + 1) * sizeof(float));
    memcpy(m->year_bucket, it->year_bucket, (size_t)it->n_items + 1);
    memcpy(m->genres, it->genres, ((size_t)it->n_items + 1) * sizeof(uint32_t));
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
    bool ok = (s->x = calloc((size_t)max_n * m->Rp, sizeof(float))) != NULL;
    for (int l = 0; l < RANKER_LAYERS; l++)
        ok = ok && (s->h[l] = malloc((size_t)max_n * m->H[l] * sizeof(float))) != NULL;
    ok = ok && (s->bias1 = malloc((size_t)m->H[0] * sizeof(float))) != NULL;
    size_t ks = 0;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        size_t need = kern_scratch_size(QT, m->in[l], max_n);
        if (need > ks)
            ks = need;
    }
    ok = ok && (s->kscratch = malloc(ks + 64)) != NULL;
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

/* The item-block features of one candidate, in ranker.c's order after the user block:
 * v, u*v, popularity, year embedding, mean genre embedding, cold flag (0), zero padding. */
static void features(const struct ranker_infer *m, const float *u, const float *v,
                     uint32_t item, float *x)
{
    const int D = m->D, Y = m->Y, G = m->G;
    for (int d = 0; d < D; d++) {
        x[d] = v[d];
        x[D + d] = u[d] * v[d];
    }
    float *f = x + 2 * D;
    f[0] = m->pop_z[item];
    memcpy(f + 1, m->year_emb + (size_t)m->year_bucket[item] * Y, (size_t)Y * sizeof(float));
    float *g = f + 1 + Y;
    memset(g, 0, (size_t)(m->Rp - (2 * D + 1 + Y)) * sizeof(float)); /* genres, flag, padding */
    uint32_t mask = m->genres[item];
    int cnt = __builtin_popcount(mask);
    if (cnt) {
        for (int k = 0; k < RANKER_GENRES; k++)
            if (mask & (1u << k))
                for (int j = 0; j < G; j++)
                    g[j] += m->genre_emb[(size_t)k * G + j];
        for (int j = 0; j < G; j++)
            g[j] /= (float)cnt;
    }
}

static void add_bias_relu(float *y, const float *b, int n, int H)
{
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            float z = y[(size_t)i * H + h] + b[h];
            y[(size_t)i * H + h] = z > 0.0f ? z : 0.0f;
        }
}

int ranker_infer_score(const struct ranker_infer *m, struct ranker_infer_scratch *s,
                       const float *user, const float *item_table, const uint32_t *items, int n,
                       float *logits)
{
    if (n < 1 || n > s->max_n)
        return ERR_INVALID;
    const int D = m->D;
    for (int i = 0; i < n; i++) {
        if (items[i] == 0 || items[i] > m->n_items)
            return ERR_INVALID;
        features(m, user, item_table + (size_t)items[i] * D, items[i], s->x + (size_t)i * m->Rp);
    }
    /* the user block once: bias1 = b1 + W1[:, 0:D] . u */
    for (int h = 0; h < m->H[0]; h++) {
        const float *w = m->w_user + (size_t)h * D;
        float acc = m->b[0][h];
        for (int d = 0; d < D; d++)
            acc += w[d] * user[d];
        s->bias1[h] = acc;
    }
    kern_matmul(QT, m->w[0], s->x, s->h[0], m->H[0], m->Rp, n, s->kscratch, NULL);
    add_bias_relu(s->h[0], s->bias1, n, m->H[0]);
    kern_matmul(QT, m->w[1], s->h[0], s->h[1], m->H[1], m->H[0], n, s->kscratch, NULL);
    add_bias_relu(s->h[1], m->b[1], n, m->H[1]);
    kern_matmul(QT, m->w[2], s->h[1], s->h[2], m->H[2], m->H[1], n, s->kscratch, NULL);
    add_bias_relu(s->h[2], m->b[2], n, m->H[2]);
    for (int i = 0; i < n; i++) {
        const float *h = s->h[2] + (size_t)i * m->H[2];
        float acc = m->out_b;
        for (int j = 0; j < m->H[2]; j++)
            acc += m->out_w[j] * h[j];
        logits[i] = acc;
    }
    return 0;
}
