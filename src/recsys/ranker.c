/* The ranker MLP: features, Linear + BatchNorm + ReLU + dropout layers, BCE, backward, AdamW,
 * BatchNorm folding and GGUF artifacts. See ranker.h. */
#include "recsys/ranker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/ops.h"
#include "engine/ops_backward.h"

#define BN_EPS 1e-5f

struct ranker_acts {
    int cap; /* rows allocated */
    float *x;                      /* (N, in) features */
    float *lin[RANKER_LAYERS];     /* (N, H) Linear outputs */
    float *xhat[RANKER_LAYERS];    /* (N, H) normalised */
    float *relu[RANKER_LAYERS];    /* (N, H) after BN + ReLU */
    float *out[RANKER_LAYERS];     /* (N, H) after dropout: next layer's input */
    float *mean[RANKER_LAYERS], *rstd[RANKER_LAYERS]; /* (H) batch statistics */
    float *logits, *labels;        /* (N) */
    float *dbuf_a, *dbuf_b;        /* (N, max(in, H)) gradient scratch */
    uint32_t *items;               /* (N) */
    uint8_t *masked;               /* (N) */
    int n;
    bool have_labels;
    const struct ranker_items *it;
};

/* ---- small helpers ---- */

static uint64_t rk_mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static float rk_normal(uint64_t *state)
{
    uint64_t a = rk_mix((*state)++), b = rk_mix((*state)++);
    double u1 = ((a >> 11) + 1.0) / 9007199254740993.0, u2 = (b >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Dropout keep decision for element idx of layer l: a hash, so backward recomputes it. */
static bool rk_keep(uint64_t seed, int l, uint64_t idx, float p)
{
    uint64_t h = rk_mix(seed ^ rk_mix(((uint64_t)l << 56) ^ idx));
    return (float)((h >> 40) * (1.0 / 16777216.0)) >= p;
}

void ranker_config_default(struct ranker_config *c, int dim)
{
    memset(c, 0, sizeof *c);
    c->dim = dim;
    c->year_dim = 8;
    c->genre_dim = 8;
    c->hidden[0] = 512;
    c->hidden[1] = 256;
    c->hidden[2] = 128;
    c->dropout = 0.1f;
    c->bn_momentum = 0.1f;
}

int ranker_config_check(const struct ranker_config *c, struct err *err)
{
    if (c->dim < 1 || c->dim > 4096)
        return err_set(err, ERR_INVALID, "ranker: dim must be 1..4096 (got %d)", c->dim);
    if (c->year_dim < 1 || c->year_dim > 256 || c->genre_dim < 1 || c->genre_dim > 256)
        return err_set(err, ERR_INVALID, "ranker: year_dim and genre_dim must be 1..256");
    for (int l = 0; l < RANKER_LAYERS; l++)
        if (c->hidden[l] < 1 || c->hidden[l] > 8192)
            return err_set(err, ERR_INVALID, "ranker: hidden[%d] must be 1..8192 (got %d)", l,
                           c->hidden[l]);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return err_set(err, ERR_INVALID, "ranker: dropout must be in [0, 1)");
    if (!(c->bn_momentum > 0 && c->bn_momentum <= 1))
        return err_set(err, ERR_INVALID, "ranker: bn_momentum must be in (0, 1]");
    return 0;
}

int ranker_input_dim(const struct ranker_config *c)
{
    return 3 * c->dim + 1 + c->year_dim + c->genre_dim + 1;
}

int ranker_year_bucket(int year)
{
    if (year <= 0) return 0;
    if (year < 1930) return 1;
    if (year >= 2010) return RANKER_YEAR_BUCKETS - 1;
    return 2 + (year - 1930) / 10; /* 1930s -> 2 ... 2000s -> 9 */
}

int ranker_items_init(struct ranker_items *it, uint32_t n_items, const uint16_t *year,
                      const uint32_t *genres, const uint32_t *pop, struct err *err)
{
    memset(it, 0, sizeof *it);
    it->n_items = n_items;
    it->pop_z = calloc((size_t)n_items + 1, sizeof *it->pop_z);
    it->year_bucket = calloc((size_t)n_items + 1, 1);
    it->genres = calloc((size_t)n_items + 1, sizeof *it->genres);
    if (!it->pop_z || !it->year_bucket || !it->genres) {
        ranker_items_free(it);
        return err_set(err, ERR_NOMEM, "ranker: out of memory for %u items", n_items);
    }
    double s = 0, s2 = 0;
    for (uint32_t i = 1; i <= n_items; i++) {
        double l = log1p(pop ? (double)pop[i] : 0.0);
        s += l;
        s2 += l * l;
    }
    double mean = n_items ? s / n_items : 0;
    double var = n_items ? s2 / n_items - mean * mean : 0;
    double sd = var > 1e-12 ? sqrt(var) : 1.0;
    for (uint32_t i = 1; i <= n_items; i++) {
        it->pop_z[i] = (float)((log1p(pop ? (double)pop[i] : 0.0) - mean) / sd);
        it->year_bucket[i] = (uint8_t)ranker_year_bucket(year ? year[i] : 0);
        it->genres[i] = genres ? genres[i] & ((1u << RANKER_GENRES) - 1) : 0;
    }
    return 0;
}

void ranker_items_free(struct ranker_items *it)
{
    if (!it) return;
    free(it->pop_z);
    free(it->year_bucket);
    free(it->genres);
    memset(it, 0, sizeof *it);
}

/* ---- construction ---- */

static int rk_in(const struct ranker *r, int l)
{
    return l == 0 ? r->in_dim : r->cfg.hidden[l - 1];
}

struct ranker *ranker_new(const struct ranker_config *cfg, uint64_t seed, struct err *err)
{
    if (ranker_config_check(cfg, err) != 0) return NULL;
    struct ranker *r = calloc(1, sizeof *r);
    if (!r) goto nomem;
    r->cfg = *cfg;
    r->in_dim = ranker_input_dim(cfg);
    size_t n = 0;
    for (int l = 0; l < RANKER_LAYERS; l++)
        n += (size_t)cfg->hidden[l] * rk_in(r, l) + 3 * (size_t)cfg->hidden[l];
    n += (size_t)cfg->hidden[RANKER_LAYERS - 1] + 1;
    n += (size_t)RANKER_YEAR_BUCKETS * cfg->year_dim + (size_t)RANKER_GENRES * cfg->genre_dim;
    r->n_params = n;
    r->params = calloc(n, sizeof(float));
    r->grads = calloc(n, sizeof(float));
    r->adam_m = calloc(n, sizeof(float));
    r->adam_v = calloc(n, sizeof(float));
    r->acts = calloc(1, sizeof *r->acts);
    if (!r->params || !r->grads || !r->adam_m || !r->adam_v || !r->acts) goto nomem;
    float *p = r->params;
    uint64_t rng = seed * 0x2545F4914F6CDD1Dull + 1;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        int H = cfg->hidden[l], in = rk_in(r, l);
        struct ranker_layer *L = &r->layer[l];
        L->w = p, p += (size_t)H * in;
        L->b = p, p += H;
        L->gamma = p, p += H;
        L->beta = p, p += H;
        float sd = sqrtf(2.0f / (float)in); /* He initialisation for ReLU */
        for (size_t i = 0; i < (size_t)H * in; i++) L->w[i] = sd * rk_normal(&rng);
        for (int h = 0; h < H; h++) L->gamma[h] = 1.0f;
        r->run_mean[l] = calloc((size_t)H, sizeof(float));
        r->run_var[l] = malloc((size_t)H * sizeof(float));
        if (!r->run_mean[l] || !r->run_var[l]) goto nomem;
        for (int h = 0; h < H; h++) r->run_var[l][h] = 1.0f;
    }
    int H3 = cfg->hidden[RANKER_LAYERS - 1];
    r->out_w = p, p += H3;
    r->out_b = p, p += 1;
    for (int h = 0; h < H3; h++) r->out_w[h] = sqrtf(1.0f / (float)H3) * rk_normal(&rng);
    r->year_emb = p, p += (size_t)RANKER_YEAR_BUCKETS * cfg->year_dim;
    r->genre_emb = p, p += (size_t)RANKER_GENRES * cfg->genre_dim;
    for (int i = 0; i < RANKER_YEAR_BUCKETS * cfg->year_dim; i++)
        r->year_emb[i] = 0.1f * rk_normal(&rng);
    for (int i = 0; i < RANKER_GENRES * cfg->genre_dim; i++)
        r->genre_emb[i] = 0.1f * rk_normal(&rng);
    r->dropout_seed = rk_mix(seed ^ 0xD15EA5Eull);
    return r;
nomem:
    err_set(err, ERR_NOMEM, "ranker: out of memory");
    ranker_free(r);
    return NULL;
}

static void rk_acts_release(struct ranker_acts *a)
{
    free(a->x);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        free(a->lin[l]);
        free(a->xhat[l]);
        free(a->relu[l]);
        free(a->out[l]);
        free(a->mean[l]);
        free(a->rstd[l]);
    }
    free(a->logits);
    free(a->labels);
    free(a->dbuf_a);
    free(a->dbuf_b);
    free(a->items);
    free(a->masked);
    memset(a, 0, sizeof *a);
}

void ranker_free(struct ranker *r)
{
    if (!r) return;
    if (r->acts) rk_acts_release(r->acts);
    free(r->acts);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        free(r->run_mean[l]);
        free(r->run_var[l]);
    }
    free(r->params);
    free(r->grads);
    free(r->adam_m);
    free(r->adam_v);
    free(r);
}

static int rk_acts_reserve(struct ranker *r, int n, struct err *err)
{
    struct ranker_acts *a = r->acts;
    if (a->cap >= n) return 0;
    rk_acts_release(a);
    size_t N = (size_t)n, maxw = (size_t)r->in_dim;
    a->x = malloc(N * r->in_dim * sizeof(float));
    bool ok = a->x != NULL;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        size_t H = (size_t)r->cfg.hidden[l];
        if (H > maxw) maxw = H;
        a->lin[l] = malloc(N * H * sizeof(float));
        a->xhat[l] = malloc(N * H * sizeof(float));
        a->relu[l] = malloc(N * H * sizeof(float));
        a->out[l] = malloc(N * H * sizeof(float));
        a->mean[l] = malloc(H * sizeof(float));
        a->rstd[l] = malloc(H * sizeof(float));
        ok = ok && a->lin[l] && a->xhat[l] && a->relu[l] && a->out[l] && a->mean[l] && a->rstd[l];
    }
    a->logits = malloc(N * sizeof(float));
    a->labels = malloc(N * sizeof(float));
    a->dbuf_a = malloc(N * maxw * sizeof(float));
    a->dbuf_b = malloc(N * maxw * sizeof(float));
    a->items = malloc(N * sizeof(uint32_t));
    a->masked = malloc(N);
    ok = ok && a->logits && a->labels && a->dbuf_a && a->dbuf_b && a->items && a->masked;
    if (!ok) {
        rk_acts_release(a);
        return err_set(err, ERR_NOMEM, "ranker: out of memory for a batch of %d", n);
    }
    a->cap = n;
    return 0;
}

/* ---- forward ---- */

static void rk_features(const struct ranker *r, const struct ranker_items *it, const float *u,
                        const float *v, uint32_t item, bool masked, float *x)
{
    int D = r->cfg.dim, Y = r->cfg.year_dim, G = r->cfg.genre_dim;
    memcpy(x, u, (size_t)D * sizeof(float));
    for (int d = 0; d < D; d++) {
        float vd = masked ? 0.0f : v[d];
        x[D + d] = vd;
        x[2 * D + d] = u[d] * vd;
    }
    float *f = x + 3 * D;
    f[0] = it->pop_z[item];
    memcpy(f + 1, r->year_emb + (size_t)it->year_bucket[item] * Y, (size_t)Y * sizeof(float));
    float *g = f + 1 + Y;
    memset(g, 0, (size_t)G * sizeof(float));
    uint32_t mask = it->genres[item];
    int cnt = __builtin_popcount(mask);
    if (cnt) {
        for (int k = 0; k < RANKER_GENRES; k++)
            if (mask & (1u << k))
                for (int j = 0; j < G; j++) g[j] += r->genre_emb[(size_t)k * G + j];
        for (int j = 0; j < G; j++) g[j] /= (float)cnt;
    }
    g[G] = masked ? 1.0f : 0.0f;
}

static float rk_softplus(float z)
{
    return z > 0 ? z + log1pf(expf(-z)) : log1pf(expf(z));
}

int ranker_forward(struct ranker *r, const struct ranker_items *it, const struct ranker_batch *b,
                   float *logits, float *loss, struct err *err)
{
    int N = b->n;
    if (N < 1) return err_set(err, ERR_INVALID, "ranker: empty batch");
    if (r->training && N < 2)
        return err_set(err, ERR_INVALID, "ranker: a training batch needs at least 2 rows");
    if (r->training && r->folded)
        return err_set(err, ERR_INVALID, "ranker: a folded ranker cannot be trained");
    if (rk_acts_reserve(r, N, err) != 0) return ERR_NOMEM;
    struct ranker_acts *a = r->acts;
    int D = r->cfg.dim;
    for (int n = 0; n < N; n++) {
        uint32_t item = b->items[n];
        if (item == 0 || item > it->n_items)
            return err_set(err, ERR_INVALID, "ranker: item id %u out of range 1..%u", item,
                           it->n_items);
        bool m = b->masked && b->masked[n];
        a->items[n] = item;
        a->masked[n] = m;
        rk_features(r, it, b->user + (size_t)n * D, b->item_vec + (size_t)n * D, item, m,
                    a->x + (size_t)n * r->in_dim);
    }
    const float *in = a->x;
    float p = r->cfg.dropout;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        struct ranker_layer *L = &r->layer[l];
        int H = r->cfg.hidden[l], C = rk_in(r, l);
        float *lin = a->lin[l], *xh = a->xhat[l], *re = a->relu[l], *out = a->out[l];
        ops_matmul_forward_blas(lin, in, L->w, L->b, N, C, H);
        if (r->folded) {
            for (size_t i = 0; i < (size_t)N * H; i++) out[i] = lin[i] > 0 ? lin[i] : 0;
            in = out;
            continue;
        }
        float *mean = a->mean[l], *rstd = a->rstd[l];
        if (r->training) {
            memset(mean, 0, (size_t)H * sizeof(float));
            float *var = a->rstd[l];
            memset(var, 0, (size_t)H * sizeof(float));
            for (int n = 0; n < N; n++)
                for (int h = 0; h < H; h++) mean[h] += lin[(size_t)n * H + h];
            for (int h = 0; h < H; h++) mean[h] /= (float)N;
            for (int n = 0; n < N; n++)
                for (int h = 0; h < H; h++) {
                    float d = lin[(size_t)n * H + h] - mean[h];
                    var[h] += d * d;
                }
            float m = r->cfg.bn_momentum;
            for (int h = 0; h < H; h++) {
                float v = var[h] / (float)N;
                r->run_mean[l][h] = (1 - m) * r->run_mean[l][h] + m * mean[h];
                r->run_var[l][h] = (1 - m) * r->run_var[l][h] + m * v * (float)N / (float)(N - 1);
                rstd[h] = 1.0f / sqrtf(v + BN_EPS);
            }
        } else {
            for (int h = 0; h < H; h++) {
                mean[h] = r->run_mean[l][h];
                rstd[h] = 1.0f / sqrtf(r->run_var[l][h] + BN_EPS);
            }
        }
        for (int n = 0; n < N; n++) {
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * H + h;
                xh[i] = (lin[i] - mean[h]) * rstd[h];
                float y = L->gamma[h] * xh[i] + L->beta[h];
                re[i] = y > 0 ? y : 0;
                if (r->training && p > 0)
                    out[i] = rk_keep(r->dropout_seed, l, i, p) ? re[i] / (1 - p) : 0;
                else out[i] = re[i];
            }
        }
        in = out;
    }
    int H3 = r->cfg.hidden[RANKER_LAYERS - 1];
    double total = 0;
    for (int n = 0; n < N; n++) {
        float z = r->out_b[0];
        for (int h = 0; h < H3; h++) z += in[(size_t)n * H3 + h] * r->out_w[h];
        a->logits[n] = z;
        if (logits) logits[n] = z;
        if (b->labels) {
            float y = b->labels[n];
            a->labels[n] = y;
            total += rk_softplus(z) - y * z;
        }
    }
    a->n = N;
    a->have_labels = b->labels != NULL;
    a->it = it;
    if (loss) *loss = b->labels ? (float)(total / N) : 0.0f;
    return 0;
}

/* ---- backward ---- */

void ranker_zero_grad(struct ranker *r)
{
    memset(r->grads, 0, r->n_params * sizeof(float));
}

static float *rk_grad(struct ranker *r, const float *param)
{
    return r->grads + (param - r->params);
}

int ranker_backward(struct ranker *r, struct err *err)
{
    struct ranker_acts *a = r->acts;
    if (!r->training || !a->have_labels || a->n < 2)
        return err_set(err, ERR_INVALID, "ranker: backward needs a training forward with labels");
    int N = a->n, H3 = r->cfg.hidden[RANKER_LAYERS - 1];
    float p = r->cfg.dropout;
    /* dL/dz = (sigmoid(z) - y) / N */
    float *dout = a->dbuf_a; /* (N, H3): gradient wrt the last layer's output */
    const float *last = a->out[RANKER_LAYERS - 1];
    float *g_out_w = rk_grad(r, r->out_w), *g_out_b = rk_grad(r, r->out_b);
    for (int n = 0; n < N; n++) {
        float z = a->logits[n];
        float dz = (1.0f / (1.0f + expf(-z)) - a->labels[n]) / (float)N;
        g_out_b[0] += dz;
        for (int h = 0; h < H3; h++) {
            g_out_w[h] += dz * last[(size_t)n * H3 + h];
            dout[(size_t)n * H3 + h] = dz * r->out_w[h];
        }
    }
    for (int l = RANKER_LAYERS - 1; l >= 0; l--) {
        struct ranker_layer *L = &r->layer[l];
        int H = r->cfg.hidden[l], C = rk_in(r, l);
        const float *xh = a->xhat[l], *re = a->relu[l], *rstd = a->rstd[l];
        float *g_gamma = rk_grad(r, L->gamma), *g_beta = rk_grad(r, L->beta);
        /* dout -> dy (BN output), in place: undo dropout and ReLU. */
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * H + h;
                float d = dout[i];
                if (p > 0) d = rk_keep(r->dropout_seed, l, i, p) ? d / (1 - p) : 0;
                dout[i] = re[i] > 0 ? d : 0;
            }
        /* BatchNorm backward (batch statistics): per column h,
         * dlin = rstd/N * (N dxhat - sum dxhat - xhat sum(dxhat xhat)), dxhat = dy gamma. */
        float *s1 = a->mean[l]; /* reuse as sums: the forward's mean is no longer needed */
        float *s2 = calloc((size_t)H, sizeof(float));
        if (!s2) return err_set(err, ERR_NOMEM, "ranker: out of memory");
        memset(s1, 0, (size_t)H * sizeof(float));
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * H + h;
                float dy = dout[i];
                g_gamma[h] += dy * xh[i];
                g_beta[h] += dy;
                float dxh = dy * L->gamma[h];
                s1[h] += dxh;
                s2[h] += dxh * xh[i];
            }
        float *dlin = a->dbuf_b;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < H; h++) {
                size_t i = (size_t)n * H + h;
                float dxh = dout[i] * L->gamma[h];
                dlin[i] = rstd[h] / (float)N * ((float)N * dxh - s1[h] - xh[i] * s2[h]);
            }
        free(s2);
        const float *in = l == 0 ? a->x : a->out[l - 1];
        float *din = a->dbuf_a; /* (N, C): dout is consumed, so reuse its buffer */
        memset(din, 0, (size_t)N * C * sizeof(float));
        ops_matmul_backward(din, rk_grad(r, L->w), rk_grad(r, L->b), dlin, in, L->w, N, C, H);
        dout = din;
    }
    /* dout is now dL/dx (N, in): route the year and genre parts to their embeddings. */
    int D = r->cfg.dim, Y = r->cfg.year_dim, G = r->cfg.genre_dim;
    const struct ranker_items *it = a->it;
    float *g_year = rk_grad(r, r->year_emb), *g_genre = rk_grad(r, r->genre_emb);
    for (int n = 0; n < N; n++) {
        const float *dx = dout + (size_t)n * r->in_dim + 3 * D + 1;
        uint32_t item = a->items[n];
        float *gy = g_year + (size_t)it->year_bucket[item] * Y;
        for (int j = 0; j < Y; j++) gy[j] += dx[j];
        uint32_t mask = it->genres[item];
        int cnt = __builtin_popcount(mask);
        if (!cnt) continue;
        for (int k = 0; k < RANKER_GENRES; k++)
            if (mask & (1u << k))
                for (int j = 0; j < G; j++) g_genre[(size_t)k * G + j] += dx[Y + j] / (float)cnt;
    }
    return 0;
}

void ranker_adamw_step(struct ranker *r, float lr, float weight_decay, uint64_t step)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)step), c2 = 1.0f - powf(b2, (float)step);
    /* Weight decay only on the Linear weight matrices. */
    for (size_t i = 0; i < r->n_params; i++) {
        float g = r->grads[i];
        r->adam_m[i] = b1 * r->adam_m[i] + (1 - b1) * g;
        r->adam_v[i] = b2 * r->adam_v[i] + (1 - b2) * g * g;
        float upd = (r->adam_m[i] / c1) / (sqrtf(r->adam_v[i] / c2) + eps);
        r->params[i] -= lr * upd;
    }
    if (weight_decay > 0)
        for (int l = 0; l < RANKER_LAYERS; l++) {
            size_t n = (size_t)r->cfg.hidden[l] * rk_in(r, l);
            for (size_t i = 0; i < n; i++) r->layer[l].w[i] -= lr * weight_decay * r->layer[l].w[i];
        }
}

/* ---- folding, scoring, files ---- */

/* Folded weights of layer l into w (H, in) and b (H). */
static void rk_fold_layer(const struct ranker *r, int l, float *w, float *b)
{
    const struct ranker_layer *L = &r->layer[l];
    int H = r->cfg.hidden[l], C = rk_in(r, l);
    for (int h = 0; h < H; h++) {
        float s = L->gamma[h] / sqrtf(r->run_var[l][h] + BN_EPS);
        for (int c = 0; c < C; c++) w[(size_t)h * C + c] = L->w[(size_t)h * C + c] * s;
        b[h] = (L->b[h] - r->run_mean[l][h]) * s + L->beta[h];
    }
}

void ranker_fold(struct ranker *r)
{
    if (r->folded) return;
    for (int l = 0; l < RANKER_LAYERS; l++) rk_fold_layer(r, l, r->layer[l].w, r->layer[l].b);
    r->folded = true;
    r->training = false;
}

int ranker_score(struct ranker *r, const struct ranker_items *it, const float *user,
                 const float *item_table, const uint32_t *items, int n, bool masked_all,
                 float *scores, struct err *err)
{
    if (n <= 0) return 0;
    int D = r->cfg.dim;
    float *u = malloc((size_t)n * D * sizeof(float));
    float *v = malloc((size_t)n * D * sizeof(float));
    uint8_t *m = malloc((size_t)n);
    if (!u || !v || !m) {
        free(u);
        free(v);
        free(m);
        return err_set(err, ERR_NOMEM, "ranker: out of memory");
    }
    for (int i = 0; i < n; i++) {
        memcpy(u + (size_t)i * D, user, (size_t)D * sizeof(float));
        uint32_t id = items[i] <= it->n_items ? items[i] : 0;
        memcpy(v + (size_t)i * D, item_table + (size_t)id * D, (size_t)D * sizeof(float));
        m[i] = masked_all;
    }
    bool was = r->training;
    r->training = false;
    struct ranker_batch b = {.n = n, .user = u, .item_vec = v, .items = items, .masked = m};
    int rc = ranker_forward(r, it, &b, scores, NULL, err);
    r->training = was;
    free(u);
    free(v);
    free(m);
    return rc;
}

#define RK_ARCH "nanorec.ranker"

int ranker_save(const struct ranker *r, const struct ranker_items *it, const char *path,
                struct err *err)
{
    struct gguf_writer *w = gguf_writer_new();
    float *fw[RANKER_LAYERS] = {0}, *fb[RANKER_LAYERS] = {0};
    int rc = ERR_NOMEM;
    if (!w) {
        err_set(err, ERR_NOMEM, "ranker: out of memory");
        goto done;
    }
    gguf_writer_set_str(w, "general.architecture", RK_ARCH);
    gguf_writer_set_u32(w, RK_ARCH ".dim", (uint32_t)r->cfg.dim);
    gguf_writer_set_u32(w, RK_ARCH ".year_dim", (uint32_t)r->cfg.year_dim);
    gguf_writer_set_u32(w, RK_ARCH ".genre_dim", (uint32_t)r->cfg.genre_dim);
    uint32_t hid[RANKER_LAYERS];
    for (int l = 0; l < RANKER_LAYERS; l++) hid[l] = (uint32_t)r->cfg.hidden[l];
    gguf_writer_set_arr(w, RK_ARCH ".hidden", GGUF_TYPE_UINT32, hid, RANKER_LAYERS);
    gguf_writer_set_u32(w, RK_ARCH ".n_items", it->n_items);
    for (int l = 0; l < RANKER_LAYERS; l++) {
        int H = r->cfg.hidden[l], C = rk_in(r, l);
        fw[l] = malloc((size_t)H * C * sizeof(float));
        fb[l] = malloc((size_t)H * sizeof(float));
        if (!fw[l] || !fb[l]) {
            err_set(err, ERR_NOMEM, "ranker: out of memory");
            goto done;
        }
        if (r->folded) {
            memcpy(fw[l], r->layer[l].w, (size_t)H * C * sizeof(float));
            memcpy(fb[l], r->layer[l].b, (size_t)H * sizeof(float));
        } else {
            rk_fold_layer(r, l, fw[l], fb[l]);
        }
        char name[64];
        uint64_t ne_w[2] = {(uint64_t)C, (uint64_t)H}, ne_b[1] = {(uint64_t)H};
        snprintf(name, sizeof name, "ranker.l%d.weight", l);
        if ((rc = gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 2, ne_w, fw[l], true, err))) goto done;
        snprintf(name, sizeof name, "ranker.l%d.bias", l);
        if ((rc = gguf_writer_add_tensor(w, name, GGML_TYPE_F32, 1, ne_b, fb[l], true, err))) goto done;
    }
    uint64_t ne_o[1] = {(uint64_t)r->cfg.hidden[RANKER_LAYERS - 1]}, ne_1[1] = {1};
    uint64_t ne_y[2] = {(uint64_t)r->cfg.year_dim, RANKER_YEAR_BUCKETS};
    uint64_t ne_g[2] = {(uint64_t)r->cfg.genre_dim, RANKER_GENRES};
    uint64_t ne_it[1] = {(uint64_t)it->n_items + 1};
    if ((rc = gguf_writer_add_tensor(w, "ranker.out.weight", GGML_TYPE_F32, 1, ne_o, r->out_w, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "ranker.out.bias", GGML_TYPE_F32, 1, ne_1, r->out_b, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "ranker.year_emb", GGML_TYPE_F32, 2, ne_y, r->year_emb, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "ranker.genre_emb", GGML_TYPE_F32, 2, ne_g, r->genre_emb, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "items.pop_z", GGML_TYPE_F32, 1, ne_it, it->pop_z, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "items.year_bucket", GGML_TYPE_I8, 1, ne_it, it->year_bucket, true, err)) ||
        (rc = gguf_writer_add_tensor(w, "items.genres", GGML_TYPE_I32, 1, ne_it, it->genres, true, err)))
        goto done;
    rc = gguf_writer_write(w, path, err);
done:
    for (int l = 0; l < RANKER_LAYERS; l++) {
        free(fw[l]);
        free(fb[l]);
    }
    gguf_writer_free(w);
    return rc;
}

/* Copies tensor `name` (f32 or as given type) of exactly ne0 x ne1 into dst. */
static int rk_load_tensor(const struct gguf_file *f, const char *path, const char *name,
                          enum ggml_type type, uint64_t ne0, uint64_t ne1, void *dst,
                          struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) return err_set(err, ERR_INVALID, "%s: missing tensor '%s'", path, name);
    if (t->type != type || t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return err_set(err, ERR_INVALID,
                       "%s: tensor '%s' is %s %llux%llu, expected %s %llux%llu", path, name,
                       ggml_type_name(t->type) ? ggml_type_name(t->type) : "?",
                       (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       ggml_type_name(type), (unsigned long long)ne0, (unsigned long long)ne1);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

struct ranker *ranker_load(const char *path, struct ranker_items *it, struct err *err)
{
    memset(it, 0, sizeof *it);
    struct gguf_file *f = gguf_open(path, err);
    if (!f) return NULL;
    struct ranker *r = NULL;
    struct gguf_str arch;
    if (gguf_get_str(f, "general.architecture", &arch, err) != 0 || !gguf_str_eq(arch, RK_ARCH)) {
        err_set(err, ERR_INVALID, "%s: not a ranker (general.architecture must be %s)", path,
                RK_ARCH);
        goto fail;
    }
    uint32_t dim, yd, gd, n_items;
    if (gguf_get_u32(f, RK_ARCH ".dim", &dim, err) || gguf_get_u32(f, RK_ARCH ".year_dim", &yd, err) ||
        gguf_get_u32(f, RK_ARCH ".genre_dim", &gd, err) ||
        gguf_get_u32(f, RK_ARCH ".n_items", &n_items, err)) {
        err_prefix(err, "%s", path);
        goto fail;
    }
    const struct gguf_kv *hk = gguf_find(f, RK_ARCH ".hidden");
    if (!hk || hk->type != GGUF_TYPE_ARRAY || hk->arr_type != GGUF_TYPE_UINT32 ||
        hk->arr_n != RANKER_LAYERS) {
        err_set(err, ERR_INVALID, "%s: %s.hidden must be an array of %d u32", path, RK_ARCH,
                RANKER_LAYERS);
        goto fail;
    }
    if (n_items == 0 || n_items > 50000000) {
        err_set(err, ERR_INVALID, "%s: n_items %u out of range", path, n_items);
        goto fail;
    }
    struct ranker_config cfg;
    ranker_config_default(&cfg, (int)dim);
    cfg.year_dim = (int)yd;
    cfg.genre_dim = (int)gd;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        uint32_t h;
        memcpy(&h, (const char *)hk->data + 4 * l, 4);
        cfg.hidden[l] = h > 8192 ? -1 : (int)h;
    }
    if (dim > 4096 || yd > 256 || gd > 256) cfg.dim = -1;
    if (ranker_config_check(&cfg, err) != 0) {
        err_prefix(err, "%s", path);
        goto fail;
    }
    r = ranker_new(&cfg, 0, err);
    if (!r) goto fail;
    for (int l = 0; l < RANKER_LAYERS; l++) {
        char name[64];
        uint64_t H = (uint64_t)cfg.hidden[l], C = (uint64_t)rk_in(r, l);
        snprintf(name, sizeof name, "ranker.l%d.weight", l);
        if (rk_load_tensor(f, path, name, GGML_TYPE_F32, C, H, r->layer[l].w, err)) goto fail;
        snprintf(name, sizeof name, "ranker.l%d.bias", l);
        if (rk_load_tensor(f, path, name, GGML_TYPE_F32, H, 1, r->layer[l].b, err)) goto fail;
    }
    if (rk_load_tensor(f, path, "ranker.out.weight", GGML_TYPE_F32,
                       (uint64_t)cfg.hidden[RANKER_LAYERS - 1], 1, r->out_w, err) ||
        rk_load_tensor(f, path, "ranker.out.bias", GGML_TYPE_F32, 1, 1, r->out_b, err) ||
        rk_load_tensor(f, path, "ranker.year_emb", GGML_TYPE_F32, yd, RANKER_YEAR_BUCKETS,
                       r->year_emb, err) ||
        rk_load_tensor(f, path, "ranker.genre_emb", GGML_TYPE_F32, gd, RANKER_GENRES,
                       r->genre_emb, err))
        goto fail;
    if (ranker_items_init(it, n_items, NULL, NULL, NULL, err) != 0) goto fail;
    if (rk_load_tensor(f, path, "items.pop_z", GGML_TYPE_F32, n_items + 1, 1, it->pop_z, err) ||
        rk_load_tensor(f, path, "items.year_bucket", GGML_TYPE_I8, n_items + 1, 1,
                       it->year_bucket, err) ||
        rk_load_tensor(f, path, "items.genres", GGML_TYPE_I32, n_items + 1, 1, it->genres, err))
        goto fail;
    for (uint32_t i = 0; i <= n_items; i++) {
        if (it->year_bucket[i] >= RANKER_YEAR_BUCKETS || it->genres[i] >> RANKER_GENRES ||
            !isfinite(it->pop_z[i])) {
            err_set(err, ERR_INVALID, "%s: item %u has out-of-range features", path, i);
            goto fail;
        }
    }
    for (size_t i = 0; i < r->n_params; i++)
        if (!isfinite(r->params[i])) {
            err_set(err, ERR_INVALID, "%s: a weight is not finite (NaN or inf)", path);
            goto fail;
        }
    r->folded = true;
    gguf_close(f);
    return r;
fail:
    ranker_free(r);
    ranker_items_free(it);
    gguf_close(f);
    return NULL;
}
