/* The SASRec-style user encoder: parameters, forward with saved activations, losses,
 * backward, AdamW (see encoder.h and docs/encoder.md). */
#include "recsys/encoder.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/ops.h"
#include "engine/ops_backward.h"

#define L2_EPS 1e-6f
#define LOSS_CHUNK 256       /* rows of logits computed at a time: R x n_items floats */
#define ATT_MAX_THREADS 256  /* attention scratch slots, one per pool thread (lazily touched) */

struct layer_acts {
    float *ln1, *rstd1, *q, *k, *v, *att, *y, *xmid, *ln2, *rstd2, *g, *u, *s, *xout;
};

struct encoder_acts {
    size_t cap_bt; /* B*T rows the buffers hold */
    int cap_b, cap_t;
    int B, T;
    bool has_targets;
    uint32_t *ids, *targets;
    int *pos;
    unsigned char *mask;
    float *x0;
    struct layer_acts *la;
    float *lnf, *rstdf, *z, *znorm, *uvec;
    /* loss */
    int n_loss, n_cand;
    int *loss_rows, *target_idx, *item_to_cand;
    uint32_t *cand;
    float *cand_bias, *etab, *enorm, *detab, *U, *dU, *logits, *row_loss;
    /* backward scratch */
    float *dx, *dln, *dtmp, *dq, *dk, *dv, *dy, *dg, *du, *ds, *att_scratch;
};

void encoder_config_default(struct encoder_config *c)
{
    memset(c, 0, sizeof(*c));
    c->dim = 64;
    c->n_layers = 2;
    c->n_heads = 2;
    c->ffn = 256;
    c->max_len = 200;
    c->dropout = 0.2f;
    c->rope_theta = 500.0f;
    c->norm_eps = 1e-6f;
    c->loss = ENCODER_LOSS_SOFTMAX;
    c->temperature = 0.05f;
    c->logq = true;
    c->norm_items = true;
}

int encoder_config_check(const struct encoder_config *c, struct err *err)
{
    if (c->n_items < 1 || c->n_items > 50000000)
        return err_set(err, ERR_INVALID, "encoder: n_items %d out of range [1, 5e7]", c->n_items);
    if (c->dim < 2 || c->dim > 4096)
        return err_set(err, ERR_INVALID, "encoder: dim %d out of range [2, 4096]", c->dim);
    if (c->n_layers < 0 || c->n_layers > 64)
        return err_set(err, ERR_INVALID, "encoder: layers %d out of range [0, 64]", c->n_layers);
    if (c->n_heads < 1 || c->dim % c->n_heads != 0 || (c->dim / c->n_heads) % 2 != 0)
        return err_set(err, ERR_INVALID,
                       "encoder: heads %d must divide dim %d into an even head size",
                       c->n_heads, c->dim);
    if (c->ffn < 1 || c->ffn > 65536)
        return err_set(err, ERR_INVALID, "encoder: ffn %d out of range [1, 65536]", c->ffn);
    if (c->max_len < 1 || c->max_len > 4096)
        return err_set(err, ERR_INVALID, "encoder: max_len %d out of range [1, 4096]",
                       c->max_len);
    if (!(c->dropout >= 0.0f && c->dropout < 0.95f))
        return err_set(err, ERR_INVALID, "encoder: dropout %g out of range [0, 0.95)",
                       (double)c->dropout);
    if (!(c->rope_theta > 1.0f))
        return err_set(err, ERR_INVALID, "encoder: rope theta %g must be > 1",
                       (double)c->rope_theta);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return err_set(err, ERR_INVALID, "encoder: norm eps %g out of range (0, 1)",
                       (double)c->norm_eps);
    if (c->loss != ENCODER_LOSS_SOFTMAX && c->loss != ENCODER_LOSS_INFONCE)
        return err_set(err, ERR_INVALID, "encoder: unknown loss %d", (int)c->loss);
    if (!(c->temperature >= 1e-3f && c->temperature <= 100.0f))
        return err_set(err, ERR_INVALID, "encoder: temperature %g out of range [1e-3, 100]",
                       (double)c->temperature);
    return 0;
}

const char *encoder_loss_name(enum encoder_loss l)
{
    return l == ENCODER_LOSS_INFONCE ? "infonce" : "softmax";
}

int encoder_loss_parse(const char *s)
{
    if (!strcmp(s, "softmax"))
        return ENCODER_LOSS_SOFTMAX;
    if (!strcmp(s, "infonce"))
        return ENCODER_LOSS_INFONCE;
    return -1;
}

/* ---- random numbers: splitmix64, reproducible everywhere ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float rand_normal(uint64_t *s)
{
    double u1 = ((splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Dropout multiplier of element idx at a site: a hash, so forward and backward agree and
 * the mask does not depend on which thread computes it. */
static inline float drop_scale(uint64_t seed, uint32_t site, size_t idx, float p)
{
    uint64_t s = seed ^ ((uint64_t)site * 0xD1B54A32D192ED03ull) ^ ((uint64_t)idx << 1);
    uint64_t h = splitmix64(&s);
    float u = (float)(h >> 40) * (1.0f / 16777216.0f);
    return u < p ? 0.0f : 1.0f / (1.0f - p);
}


/* ---- element-wise and row-wise work split over the pool (each output element is computed
 * by exactly one thread, so results do not depend on the thread count) ---- */

enum par_kind { PAR_DROPOUT_ADD, PAR_SWIGLU_FWD, PAR_SWIGLU_BWD, PAR_RMSNORM_FWD };

struct par_job {
    enum par_kind kind;
    float *o1, *o2;
    const float *i1, *i2, *i3;
    int cols;
    float p, eps;
    uint64_t seed;
    uint32_t site;
};

#define PAR_ROWS 64 /* rows per chunk */

static void par_body(void *ctx, size_t r0, size_t r1, int tid)
{
    (void)tid;
    const struct par_job *j = ctx;
    const size_t C = (size_t)j->cols, b = r0 * C, n = (r1 - r0) * C;
    switch (j->kind) {
    case PAR_DROPOUT_ADD: /* o1 = o1 * mask (+ i1) */
        if (j->p > 0.0f)
            for (size_t i = b; i < b + n; i++)
                j->o1[i] *= drop_scale(j->seed, j->site, i, j->p);
        if (j->i1)
            for (size_t i = b; i < b + n; i++)
                j->o1[i] += j->i1[i];
        break;
    case PAR_SWIGLU_FWD:
        ops_swiglu_forward(j->o1 + b, j->i1 + b, j->i2 + b, (int)(r1 - r0), j->cols);
        break;
    case PAR_SWIGLU_BWD:
        ops_swiglu_backward(j->o1 + b, j->o2 + b, j->i1 + b, j->i2 + b, j->i3 + b,
                            (int)(r1 - r0), j->cols);
        break;
    case PAR_RMSNORM_FWD:
        ops_rmsnorm_forward(j->o1 + b, j->o2 + r0, j->i1 + b, j->i2, (int)(r1 - r0), j->cols,
                            j->eps);
        break;
    }
}

/* x (rows,C) = dropout(x) + res; res may be NULL, p may be 0 */
static void par_dropout_add(struct pool *pool, float *x, const float *res, int rows, int C,
                            uint64_t seed, uint32_t site, float p)
{
    if (p <= 0.0f && !res)
        return;
    struct par_job j = {.kind = PAR_DROPOUT_ADD, .o1 = x, .i1 = res, .cols = C, .p = p,
                        .seed = seed, .site = site};
    pool_for(pool, (size_t)rows, PAR_ROWS, par_body, &j);
}

static void par_swiglu_forward(struct pool *pool, float *out, const float *g, const float *u,
                               int rows, int F)
{
    struct par_job j = {.kind = PAR_SWIGLU_FWD, .o1 = out, .i1 = g, .i2 = u, .cols = F};
    pool_for(pool, (size_t)rows, PAR_ROWS, par_body, &j);
}

static void par_swiglu_backward(struct pool *pool, float *dg, float *du, const float *dout,
                                const float *g, const float *u, int rows, int F)
{
    struct par_job j = {.kind = PAR_SWIGLU_BWD, .o1 = dg, .o2 = du, .i1 = dout, .i2 = g,
                        .i3 = u, .cols = F};
    pool_for(pool, (size_t)rows, PAR_ROWS, par_body, &j);
}

static void par_rmsnorm_forward(struct pool *pool, float *out, float *rstd, const float *x,
                                const float *w, int rows, int C, float eps)
{
    struct par_job j = {.kind = PAR_RMSNORM_FWD, .o1 = out, .o2 = rstd, .i1 = x, .i2 = w,
                        .cols = C, .eps = eps};
    pool_for(pool, (size_t)rows, PAR_ROWS, par_body, &j);
}

/* ---- GEMMs split over the pool ----
 * Training runs OpenBLAS at one thread and splits each whole-batch GEMM over the pool itself:
 * OpenBLAS's own threads spin in sched_yield between calls, which on a shared 2-core machine
 * took about a quarter of the cycles and fought the pool threads for the cores. A product is
 * cut into MM_PARTS_PER_THREAD parts per pool thread (a descheduled thread holds up one small
 * part): rows of the output for forward and dinp, rows of dW (output features) for dW and db,
 * so every part writes its own slice and the sums run in the same order as one call. */
#define MM_PARTS_PER_THREAD 2

struct mm_job {
    float *out, *dinp, *dw, *db;
    const float *inp, *w, *bias, *dout;
    int N, C, OC, parts, unit; /* rows are split at multiples of `unit` (a sequence) */
};

static int mm_parts(const struct pool *pool)
{
    return pool ? pool_threads(pool) * MM_PARTS_PER_THREAD : 1;
}

/* [p * n / parts, (p + 1) * n / parts): part p of n */
static int part_at(int n, size_t p, int parts)
{
    return (int)((int64_t)n * (int64_t)p / parts);
}

/* Part p of N rows cut at multiples of `unit` rows, where unit is a whole number of
 * sequences (T rows) and of 16 rows: a sequence's rows then always go through one product
 * whose operands start 64-byte aligned, as when it runs alone. OpenBLAS's result for a row
 * depends on the alignment of the operands (and on the kernel it picks by size), and the tests
 * hold a sequence's vector to be bit-identical alone and in a batch. */
static int rows_at(int N, int T, size_t p, int parts)
{
    int unit = T;
    while (unit % 16)
        unit += T;
    int units = (N + unit - 1) / unit, r = part_at(units, p, parts) * unit;
    return r < N ? r : N;
}

static void mm_fwd_part(void *ctx, size_t p0, size_t p1, int tid)
{
    (void)tid;
    const struct mm_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        int r0 = rows_at(j->N, j->unit, p, j->parts);
        int r1 = rows_at(j->N, j->unit, p + 1, j->parts);
        if (r1 <= r0)
            continue;
        /* the bias is added after the product, not as beta = 1 over a bias-filled output,
         * whose rounding depends on which OpenBLAS kernel runs */
        float *o = j->out + (size_t)r0 * j->OC;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, j->OC, j->C, 1.0f,
                    j->inp + (size_t)r0 * j->C, j->C, j->w, j->C, 0.0f, o, j->OC);
        if (j->bias)
            for (int r = 0; r < r1 - r0; r++)
                for (int c = 0; c < j->OC; c++)
                    o[(size_t)r * j->OC + c] += j->bias[c];
    }
}

/* out (N,OC) = inp (N,C) . w^T + bias, rows split over the pool at whole sequences (T rows) */
static void par_matmul_forward(struct pool *pool, float *out, const float *inp, const float *w,
                               const float *bias, int N, int C, int OC, int T)
{
    struct mm_job j = {.out = out, .inp = inp, .w = w, .bias = bias, .N = N, .C = C, .OC = OC,
                       .parts = mm_parts(pool), .unit = T};
    pool_for(pool, (size_t)j.parts, 1, mm_fwd_part, &j);
}

static void mm_bwd_part(void *ctx, size_t p0, size_t p1, int tid)
{
    (void)tid;
    const struct mm_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        int r0 = rows_at(j->N, j->unit, p, j->parts);
        int r1 = rows_at(j->N, j->unit, p + 1, j->parts);
        if (j->dinp && r1 > r0) /* dinp rows += dout rows . w */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, j->C, j->OC, 1.0f,
                        j->dout + (size_t)r0 * j->OC, j->OC, j->w, j->C, 1.0f,
                        j->dinp + (size_t)r0 * j->C, j->C);
        int o0 = part_at(j->OC, p, j->parts), o1 = part_at(j->OC, p + 1, j->parts);
        if (o1 <= o0)
            continue;
        if (j->dw) /* dw rows o0..o1 += dout[:, o0..o1]^T . inp */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, j->C, j->N, 1.0f,
                        j->dout + o0, j->OC, j->inp, j->C, 1.0f, j->dw + (size_t)o0 * j->C,
                        j->C);
        if (j->db)
            for (int n = 0; n < j->N; n++) {
                const float *d = j->dout + (size_t)n * j->OC;
                for (int o = o0; o < o1; o++)
                    j->db[o] += d[o];
            }
    }
}

/* ops_matmul_backward (accumulating into dinp, dw, db) split over the pool */
static void par_matmul_backward(struct pool *pool, float *dinp, float *dw, float *db,
                                const float *dout, const float *inp, const float *w, int N,
                                int C, int OC, int T)
{
    if (N <= 0)
        return;
    struct mm_job j = {.dinp = dinp, .dw = dw, .db = db, .dout = dout, .inp = inp, .w = w,
                       .N = N, .C = C, .OC = OC, .parts = mm_parts(pool), .unit = T};
    pool_for(pool, (size_t)j.parts, 1, mm_bwd_part, &j);
}

/* ---- parameters ---- */

static void add_tensor(struct encoder *e, size_t *off, const char *name, int rows, int cols,
                       bool decay)
{
    struct encoder_tensor *t = &e->tensors[e->n_tensors++];
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->offset = *off;
    t->rows = rows;
    t->cols = cols;
    t->decay = decay;
    *off += (size_t)rows * cols;
}

struct encoder *encoder_new(const struct encoder_config *cfg, uint64_t seed, struct err *err)
{
    if (encoder_config_check(cfg, err))
        return NULL;
    struct encoder *e = calloc(1, sizeof(*e));
    if (!e)
        goto nomem;
    e->cfg = *cfg;
    const int C = cfg->dim, F = cfg->ffn, L = cfg->n_layers;
    e->tensors = calloc((size_t)(1 + 13 * L + 3), sizeof(*e->tensors));
    e->layers = calloc(L > 0 ? (size_t)L : 1, sizeof(*e->layers));
    if (!e->tensors || !e->layers)
        goto nomem;
    size_t off = 0;
    char nm[48];
    add_tensor(e, &off, "token_embd.weight", cfg->n_items + 1, C, true);
    for (int l = 0; l < L; l++) {
#define T_(suffix, r, c, d)                                                                      \
    snprintf(nm, sizeof(nm), "blk.%d." suffix, l);                                               \
    add_tensor(e, &off, nm, r, c, d)
        T_("attn_norm.weight", 1, C, false);
        T_("attn_q.weight", C, C, true);
        T_("attn_q.bias", 1, C, false);
        T_("attn_k.weight", C, C, true);
        T_("attn_k.bias", 1, C, false);
        T_("attn_v.weight", C, C, true);
        T_("attn_v.bias", 1, C, false);
        T_("attn_output.weight", C, C, true);
        T_("attn_output.bias", 1, C, false);
        T_("ffn_norm.weight", 1, C, false);
        T_("ffn_gate.weight", F, C, true);
        T_("ffn_up.weight", F, C, true);
        T_("ffn_down.weight", C, F, true);
#undef T_
    }
    add_tensor(e, &off, "output_norm.weight", 1, C, false);
    add_tensor(e, &off, "proj.weight", C, C, true);
    add_tensor(e, &off, "proj.bias", 1, C, false);
    e->n_params = off;
    e->params = calloc(off, sizeof(float));
    e->grads = calloc(off, sizeof(float));
    e->adam_m = calloc(off, sizeof(float));
    e->adam_v = calloc(off, sizeof(float));
    e->acts = calloc(1, sizeof(*e->acts));
    if (!e->params || !e->grads || !e->adam_m || !e->adam_v || !e->acts)
        goto nomem;

    int ti = 0;
    e->tok_emb = e->params + e->tensors[ti++].offset;
    for (int l = 0; l < L; l++) {
        struct encoder_layer *ly = &e->layers[l];
        float **views[13] = {&ly->attn_norm, &ly->wq, &ly->bq,       &ly->wk,     &ly->bk,
                             &ly->wv,        &ly->bv, &ly->wo,       &ly->bo,     &ly->ffn_norm,
                             &ly->w_gate,    &ly->w_up, &ly->w_down};
        for (int j = 0; j < 13; j++)
            *views[j] = e->params + e->tensors[ti++].offset;
    }
    e->out_norm = e->params + e->tensors[ti++].offset;
    e->proj_w = e->params + e->tensors[ti++].offset;
    e->proj_b = e->params + e->tensors[ti++].offset;

    /* init: normal(0.02) matrices, residual outputs scaled down, unit norms, the final
     * projection near orthogonal scale so the L2 normalisation starts well conditioned */
    uint64_t s = seed ^ 0x5EEDull;
    for (int t = 0; t < e->n_tensors; t++) {
        const struct encoder_tensor *tt = &e->tensors[t];
        float *p = e->params + tt->offset;
        size_t n = (size_t)tt->rows * tt->cols;
        const char *dot = strrchr(tt->name, '.');
        if (strstr(tt->name, "norm.weight")) {
            for (size_t i = 0; i < n; i++)
                p[i] = 1.0f;
        } else if (dot && !strcmp(dot, ".bias")) {
            /* zero */
        } else {
            float std = 0.02f;
            if (strstr(tt->name, "attn_output") || strstr(tt->name, "ffn_down"))
                std = 0.02f / sqrtf(2.0f * (float)(L > 0 ? L : 1));
            if (!strcmp(tt->name, "proj.weight"))
                std = 1.0f / sqrtf((float)C);
            for (size_t i = 0; i < n; i++)
                p[i] = std * rand_normal(&s);
        }
    }
    memset(e->tok_emb, 0, (size_t)C * sizeof(float)); /* padding row */
    return e;
nomem:
    encoder_free(e);
    err_set(err, ERR_NOMEM, "encoder: out of memory allocating the model");
    return NULL;
}

static void acts_free(struct encoder_acts *a, int L)
{
    if (!a)
        return;
    void *ptrs[] = {a->ids,    a->targets,    a->pos,          a->mask,  a->x0,     a->lnf,
                    a->rstdf,  a->z,          a->znorm,        a->uvec,  a->loss_rows,
                    a->target_idx, a->item_to_cand, a->cand, a->cand_bias, a->etab, a->enorm,
                    a->detab,  a->U,          a->dU,           a->logits, a->row_loss, a->dx,
                    a->dln,    a->dtmp,       a->dq,           a->dk,    a->dv,     a->dy,
                    a->dg,     a->du,         a->ds,           a->att_scratch};
    for (size_t i = 0; i < sizeof(ptrs) / sizeof(ptrs[0]); i++)
        free(ptrs[i]);
    if (a->la)
        for (int l = 0; l < L; l++) {
            struct layer_acts *x = &a->la[l];
            void *lp[] = {x->ln1, x->rstd1, x->q, x->k,     x->v, x->att, x->y,
                          x->xmid, x->ln2,  x->rstd2, x->g, x->u, x->s,   x->xout};
            for (size_t i = 0; i < sizeof(lp) / sizeof(lp[0]); i++)
                free(lp[i]);
        }
    free(a->la);
    memset(a, 0, sizeof(*a));
}

void encoder_free(struct encoder *e)
{
    if (!e)
        return;
    acts_free(e->acts, e->cfg.n_layers);
    free(e->acts);
    free(e->params);
    free(e->grads);
    free(e->adam_m);
    free(e->adam_v);
    free(e->tensors);
    free(e->layers);
    free(e);
}

const struct encoder_tensor *encoder_find_tensor(const struct encoder *e, const char *name)
{
    for (int i = 0; i < e->n_tensors; i++)
        if (!strcmp(e->tensors[i].name, name))
            return &e->tensors[i];
    return NULL;
}

/* Grows the activation buffers to hold (B, T); keeps them when they are large enough. */
static int acts_reserve(struct encoder *e, int B, int T)
{
    struct encoder_acts *a = e->acts;
    if (a->la && B <= a->cap_b && T <= a->cap_t)
        return 0;
    const int L = e->cfg.n_layers, C = e->cfg.dim, F = e->cfg.ffn, H = e->cfg.n_heads;
    const int K = e->cfg.n_items;
    int nb = B > a->cap_b ? B : a->cap_b, nt = T > a->cap_t ? T : a->cap_t;
    acts_free(a, L);
    size_t bt = (size_t)nb * nt, btc = bt * C, btf = bt * F;
    a->cap_b = nb;
    a->cap_t = nt;
    a->cap_bt = bt;
    int ok = 1;
#define A_(p, n) ok &= ((p) = calloc((n), sizeof(*(p)))) != NULL
    A_(a->ids, bt);
    A_(a->targets, bt);
    A_(a->pos, bt);
    A_(a->mask, bt);
    A_(a->x0, btc);
    A_(a->la, L > 0 ? (size_t)L : 1);
    if (!ok)
        goto fail;
    for (int l = 0; l < L; l++) {
        struct layer_acts *x = &a->la[l];
        A_(x->ln1, btc);
        A_(x->rstd1, bt);
        A_(x->q, btc);
        A_(x->k, btc);
        A_(x->v, btc);
        A_(x->att, (size_t)nb * H * nt * nt);
        A_(x->y, btc);
        A_(x->xmid, btc);
        A_(x->ln2, btc);
        A_(x->rstd2, bt);
        A_(x->g, btf);
        A_(x->u, btf);
        A_(x->s, btf);
        A_(x->xout, btc);
    }
    A_(a->lnf, btc);
    A_(a->rstdf, bt);
    A_(a->z, btc);
    A_(a->znorm, bt);
    A_(a->uvec, btc);
    A_(a->loss_rows, bt);
    A_(a->target_idx, bt);
    A_(a->item_to_cand, (size_t)K + 1);
    A_(a->cand, (size_t)K);
    A_(a->cand_bias, (size_t)K);
    A_(a->etab, (size_t)K * C);
    A_(a->enorm, (size_t)K);
    A_(a->detab, (size_t)K * C);
    A_(a->U, btc);
    A_(a->dU, btc);
    A_(a->logits, (size_t)LOSS_CHUNK * K);
    A_(a->row_loss, bt);
    A_(a->dx, btc);
    A_(a->dln, btc);
    A_(a->dtmp, btc);
    A_(a->dq, btc);
    A_(a->dk, btc);
    A_(a->dv, btc);
    A_(a->dy, btc);
    A_(a->dg, btf);
    A_(a->du, btf);
    A_(a->ds, btf);
    A_(a->att_scratch, (size_t)ATT_MAX_THREADS * nt * nt);
#undef A_
    if (ok)
        return 0;
fail:
    acts_free(a, L);
    return ERR_NOMEM;
}

int encoder_reserve(struct encoder *e, int B, int T)
{
    if (B < 1 || T < 1 || T > e->cfg.max_len)
        return ERR_INVALID;
    return acts_reserve(e, B, T);
}

/* ---- per-sequence parallel work ---- */

struct seq_job {
    struct encoder *e;
    int l, T;
};

static void attn_forward_seq(void *ctx, size_t b0, size_t b1, int tid)
{
    (void)tid;
    const struct seq_job *j = ctx;
    const struct encoder_config *c = &j->e->cfg;
    struct encoder_acts *a = j->e->acts;
    struct layer_acts *la = &a->la[j->l];
    const int T = j->T, C = c->dim, H = c->n_heads, D = C / H;
    for (size_t b = b0; b < b1; b++) {
        size_t r = b * T;
        ops_rope_forward(la->q + r * C, a->pos + r, T, H, D, c->rope_theta);
        ops_rope_forward(la->k + r * C, a->pos + r, T, H, D, c->rope_theta);
        ops_attention_forward_blas(la->y + r * C, la->att + b * (size_t)H * T * T,
                                   la->q + r * C, la->k + r * C, la->v + r * C, a->mask + r, T,
                                   H, H, D);
    }
}

static void attn_backward_seq(void *ctx, size_t b0, size_t b1, int tid)
{
    const struct seq_job *j = ctx;
    const struct encoder_config *c = &j->e->cfg;
    struct encoder_acts *a = j->e->acts;
    struct layer_acts *la = &a->la[j->l];
    const int T = j->T, C = c->dim, H = c->n_heads, D = C / H;
    for (size_t b = b0; b < b1; b++) {
        size_t r = b * T;
        ops_attention_backward_blas(a->dq + r * C, a->dk + r * C, a->dv + r * C,
                                    a->att_scratch + (size_t)tid * T * T, a->dy + r * C,
                                    la->att + b * (size_t)H * T * T, la->q + r * C,
                                    la->k + r * C, la->v + r * C, T, H, H, D);
        ops_rope_backward(a->dq + r * C, a->pos + r, T, H, D, c->rope_theta);
        ops_rope_backward(a->dk + r * C, a->pos + r, T, H, D, c->rope_theta);
    }
}

/* Runs a per-sequence job over the pool (each sequence's small GEMMs run inside one pool
 * thread, with OpenBLAS at one thread: see blas_single). */
static void seq_parallel(struct pool *pool, size_t B, pool_fn fn, void *ctx)
{
    pool_for(pool, B, 1, fn, ctx);
}

/* With a pool, forward and backward run OpenBLAS at one thread (the pool is the parallelism);
 * returns the thread count to restore. */
static int blas_single(const struct pool *pool)
{
    int nb = openblas_get_num_threads();
    if (pool && nb != 1)
        openblas_set_num_threads(1);
    return nb;
}

static void blas_restore(const struct pool *pool, int nb)
{
    if (pool && nb != 1)
        openblas_set_num_threads(nb);
}

/* One chunk of R loss rows over K candidates, split over the pool in two passes: by rows
 * (logits = U_r . etab^T / t, the fused softmax cross-entropy turning them into (p - onehot)/M,
 * then dU_r = P . etab / t), then by candidates (detab[k] += P[:, k]^T . U_r / t). */
struct loss_job {
    float *logits, *row_loss, *dU, *detab;
    const float *U, *etab, *bias;
    const int *target_idx;
    int R, K, C, parts;
    float inv_t, inv_m;
};

static void loss_rows_part(void *ctx, size_t p0, size_t p1, int tid)
{
    (void)tid;
    const struct loss_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        int r0 = part_at(j->R, p, j->parts), r1 = part_at(j->R, p + 1, j->parts);
        if (r1 <= r0)
            continue;
        float *lg = j->logits + (size_t)r0 * j->K;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, j->K, j->C, j->inv_t,
                    j->U + (size_t)r0 * j->C, j->C, j->etab, j->C, 0.0f, lg, j->K);
        ops_xent_rows(lg, j->row_loss + r0, j->bias, j->target_idx + r0, r1 - r0, j->K,
                      j->inv_m);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, j->C, j->K, j->inv_t, lg,
                    j->K, j->etab, j->C, 0.0f, j->dU + (size_t)r0 * j->C, j->C);
    }
}

static void loss_items_part(void *ctx, size_t p0, size_t p1, int tid)
{
    (void)tid;
    const struct loss_job *j = ctx;
    for (size_t p = p0; p < p1; p++) {
        int k0 = part_at(j->K, p, j->parts), k1 = part_at(j->K, p + 1, j->parts);
        if (k1 > k0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k1 - k0, j->C, j->R, j->inv_t,
                        j->logits + k0, j->K, j->U, j->C, 1.0f, j->detab + (size_t)k0 * j->C,
                        j->C);
    }
}

/* Builds the candidate set and the gathered (optionally normalised) item table. */
static void loss_candidates(struct encoder *e, const float *item_logq)
{
    struct encoder_acts *a = e->acts;
    const struct encoder_config *c = &e->cfg;
    const int C = c->dim;
    int K = 0;
    if (c->loss == ENCODER_LOSS_SOFTMAX) {
        for (int i = 1; i <= c->n_items; i++) {
            a->cand[K] = (uint32_t)i;
            a->cand_bias[K] = 0.0f;
            a->item_to_cand[i] = K++;
        }
    } else {
        for (int m = 0; m < a->n_loss; m++) {
            uint32_t it = a->targets[a->loss_rows[m]];
            a->item_to_cand[it] = -1;
        }
        for (int m = 0; m < a->n_loss; m++) {
            uint32_t it = a->targets[a->loss_rows[m]];
            if (a->item_to_cand[it] >= 0)
                continue;
            a->cand[K] = it;
            a->cand_bias[K] = (c->logq && item_logq) ? -item_logq[it] : 0.0f;
            a->item_to_cand[it] = K++;
        }
    }
    a->n_cand = K;
    for (int m = 0; m < a->n_loss; m++)
        a->target_idx[m] = a->item_to_cand[a->targets[a->loss_rows[m]]];
    for (int i = 0; i < K; i++)
        memcpy(a->etab + (size_t)i * C, e->tok_emb + (size_t)a->cand[i] * C,
               (size_t)C * sizeof(float));
    if (c->norm_items)
        ops_l2norm_forward(a->etab, a->enorm, a->etab, K, C, L2_EPS);
}

/* Mean cross-entropy over the target rows; leaves dL/dU in dU and dL/d(etab) in detab. */
static double loss_forward(struct encoder *e, const float *item_logq, struct pool *pool)
{
    struct encoder_acts *a = e->acts;
    const struct encoder_config *c = &e->cfg;
    const int C = c->dim, M = a->n_loss;
    loss_candidates(e, item_logq);
    const int K = a->n_cand;
    for (int m = 0; m < M; m++)
        memcpy(a->U + (size_t)m * C, a->uvec + (size_t)a->loss_rows[m] * C,
               (size_t)C * sizeof(float));
    memset(a->detab, 0, (size_t)K * C * sizeof(float));
    const float inv_t = 1.0f / c->temperature;
    const bool biased = c->loss == ENCODER_LOSS_INFONCE && c->logq && item_logq;
    for (int r0 = 0; r0 < M; r0 += LOSS_CHUNK) {
        int R = M - r0 < LOSS_CHUNK ? M - r0 : LOSS_CHUNK;
        struct loss_job j = {a->logits, a->row_loss + r0, a->dU + (size_t)r0 * C, a->detab,
                             a->U + (size_t)r0 * C, a->etab, biased ? a->cand_bias : NULL,
                             a->target_idx + r0, R, K, C, mm_parts(pool), inv_t,
                             1.0f / (float)M};
        pool_for(pool, (size_t)j.parts, 1, loss_rows_part, &j);
        pool_for(pool, (size_t)j.parts, 1, loss_items_part, &j);
    }
    double loss = 0.0;
    for (int m = 0; m < M; m++)
        loss += a->row_loss[m];
    return M > 0 ? loss / M : 0.0;
}

static int forward_impl(struct encoder *e, const uint32_t *ids, const uint32_t *targets, int B,
                        int T, const float *item_logq, float *loss, struct pool *pool,
                        struct err *err)
{
    const struct encoder_config *c = &e->cfg;
    if (B < 1 || T < 1 || T > c->max_len)
        return err_set(err, ERR_INVALID, "encoder: batch shape (%d, %d) out of range (T <= %d)",
                       B, T, c->max_len);
    size_t bt = (size_t)B * T;
    for (size_t i = 0; i < bt; i++)
        if (ids[i] > (uint32_t)c->n_items || (targets && targets[i] > (uint32_t)c->n_items))
            return err_set(err, ERR_INVALID, "encoder: item id %u above n_items %d",
                           ids[i] > (uint32_t)c->n_items ? ids[i] : targets[i], c->n_items);
    if (pool && pool_threads(pool) > ATT_MAX_THREADS)
        return err_set(err, ERR_INVALID, "encoder: at most %d threads", ATT_MAX_THREADS);
    if (acts_reserve(e, B, T))
        return err_set(err, ERR_NOMEM, "encoder: out of memory for a batch of (%d, %d)", B, T);
    struct encoder_acts *a = e->acts;
    const int C = c->dim, F = c->ffn, L = c->n_layers;
    const float p = e->training ? c->dropout : 0.0f;
    const uint64_t ds = e->dropout_seed;
    a->B = B;
    a->T = T;
    memcpy(a->ids, ids, bt * sizeof(uint32_t));
    a->has_targets = targets != NULL;
    if (targets)
        memcpy(a->targets, targets, bt * sizeof(uint32_t));
    for (int b = 0; b < B; b++) {
        const uint32_t *row = ids + (size_t)b * T;
        int first = 0;
        while (first < T && row[first] == 0)
            first++;
        for (int t = 0; t < T; t++) {
            a->mask[(size_t)b * T + t] = row[t] != 0;
            a->pos[(size_t)b * T + t] = t >= first ? t - first : 0;
        }
    }
    /* embeddings */
    for (size_t i = 0; i < bt; i++)
        memcpy(a->x0 + i * C, e->tok_emb + (size_t)ids[i] * C, (size_t)C * sizeof(float));
    par_dropout_add(pool, a->x0, NULL, (int)bt, C, ds, 0, p);
    const float *x = a->x0;
    for (int l = 0; l < L; l++) {
        struct layer_acts *la = &a->la[l];
        const struct encoder_layer *w = &e->layers[l];
        par_rmsnorm_forward(pool, la->ln1, la->rstd1, x, w->attn_norm, (int)bt, C, c->norm_eps);
        par_matmul_forward(pool, la->q, la->ln1, w->wq, w->bq, (int)bt, C, C, T);
        par_matmul_forward(pool, la->k, la->ln1, w->wk, w->bk, (int)bt, C, C, T);
        par_matmul_forward(pool, la->v, la->ln1, w->wv, w->bv, (int)bt, C, C, T);
        struct seq_job sj = {e, l, T};
        seq_parallel(pool, (size_t)B, attn_forward_seq, &sj);
        par_matmul_forward(pool, la->xmid, la->y, w->wo, w->bo, (int)bt, C, C, T);
        par_dropout_add(pool, la->xmid, x, (int)bt, C, ds, 1 + 2 * (uint32_t)l, p);
        par_rmsnorm_forward(pool, la->ln2, la->rstd2, la->xmid, w->ffn_norm, (int)bt, C,
                            c->norm_eps);
        par_matmul_forward(pool, la->g, la->ln2, w->w_gate, NULL, (int)bt, C, F, T);
        par_matmul_forward(pool, la->u, la->ln2, w->w_up, NULL, (int)bt, C, F, T);
        par_swiglu_forward(pool, la->s, la->g, la->u, (int)bt, F);
        par_matmul_forward(pool, la->xout, la->s, w->w_down, NULL, (int)bt, F, C, T);
        par_dropout_add(pool, la->xout, la->xmid, (int)bt, C, ds, 2 + 2 * (uint32_t)l, p);
        x = la->xout;
    }
    par_rmsnorm_forward(pool, a->lnf, a->rstdf, x, e->out_norm, (int)bt, C, c->norm_eps);
    par_matmul_forward(pool, a->z, a->lnf, e->proj_w, e->proj_b, (int)bt, C, C, T);
    ops_l2norm_forward(a->uvec, a->znorm, a->z, (int)bt, C, L2_EPS);

    a->n_loss = 0;
    if (targets) {
        for (size_t i = 0; i < bt; i++)
            if (targets[i])
                a->loss_rows[a->n_loss++] = (int)i;
        double lv = a->n_loss ? loss_forward(e, item_logq, pool) : 0.0;
        if (loss)
            *loss = (float)lv;
    } else if (loss) {
        *loss = 0.0f;
    }
    return 0;
}

int encoder_forward(struct encoder *e, const uint32_t *ids, const uint32_t *targets, int B,
                    int T, const float *item_logq, float *loss, struct pool *pool,
                    struct err *err)
{
    int nb = blas_single(pool);
    int rc = forward_impl(e, ids, targets, B, T, item_logq, loss, pool, err);
    blas_restore(pool, nb);
    return rc;
}

void encoder_last_vectors(const struct encoder *e, float *out)
{
    const struct encoder_acts *a = e->acts;
    const int C = e->cfg.dim;
    for (int b = 0; b < a->B; b++)
        memcpy(out + (size_t)b * C, a->uvec + ((size_t)b * a->T + a->T - 1) * C,
               (size_t)C * sizeof(float));
}

void encoder_zero_grad(struct encoder *e)
{
    memset(e->grads, 0, e->n_params * sizeof(float));
}

static float *grad_of(struct encoder *e, const float *param)
{
    return e->grads + (param - e->params);
}

static int backward_impl(struct encoder *e, struct pool *pool, struct err *err)
{
    struct encoder_acts *a = e->acts;
    if (!a->la || !a->has_targets)
        return err_set(err, ERR_INVALID, "encoder: backward without a forward with targets");
    const struct encoder_config *c = &e->cfg;
    const int B = a->B, T = a->T, C = c->dim, F = c->ffn, L = c->n_layers;
    const int bt = B * T;
    const size_t btc = (size_t)bt * C, btf = (size_t)bt * F;
    const float p = e->training ? c->dropout : 0.0f;
    const uint64_t dseed = e->dropout_seed;
    float *dE = grad_of(e, e->tok_emb);

    /* loss -> item table (through the normalisation) */
    if (a->n_loss > 0) {
        const int K = a->n_cand;
        float *detab_raw = a->logits; /* free now: holds K x LOSS_CHUNK >= K x C? */
        float *tmp = NULL;
        if ((size_t)LOSS_CHUNK < (size_t)C) {
            tmp = calloc((size_t)K * C, sizeof(float));
            if (!tmp)
                return err_set(err, ERR_NOMEM, "encoder: out of memory in backward");
            detab_raw = tmp;
        }
        if (c->norm_items) {
            memset(detab_raw, 0, (size_t)K * C * sizeof(float));
            ops_l2norm_backward(detab_raw, a->detab, a->etab, a->enorm, K, C, L2_EPS);
        } else {
            memcpy(detab_raw, a->detab, (size_t)K * C * sizeof(float));
        }
        for (int i = 0; i < K; i++) {
            float *g = dE + (size_t)a->cand[i] * C;
            const float *d = detab_raw + (size_t)i * C;
            for (int j = 0; j < C; j++)
                g[j] += d[j];
        }
        free(tmp);
    }
    /* loss -> user vectors -> z */
    memset(a->dtmp, 0, btc * sizeof(float));
    for (int m = 0; m < a->n_loss; m++)
        memcpy(a->dtmp + (size_t)a->loss_rows[m] * C, a->dU + (size_t)m * C,
               (size_t)C * sizeof(float));
    memset(a->dln, 0, btc * sizeof(float));
    ops_l2norm_backward(a->dln, a->dtmp, a->uvec, a->znorm, bt, C, L2_EPS); /* dz */
    memset(a->dtmp, 0, btc * sizeof(float));
    par_matmul_backward(pool, a->dtmp, grad_of(e, e->proj_w), grad_of(e, e->proj_b), a->dln,
                        a->lnf, e->proj_w, bt, C, C, T); /* dlnf */
    memset(a->dx, 0, btc * sizeof(float));
    const float *xl = L > 0 ? a->la[L - 1].xout : a->x0;
    ops_rmsnorm_backward(a->dx, grad_of(e, e->out_norm), a->dtmp, xl, e->out_norm, a->rstdf, bt, C);

    for (int l = L - 1; l >= 0; l--) {
        struct layer_acts *la = &a->la[l];
        const struct encoder_layer *w = &e->layers[l];
        const float *x_in = l > 0 ? a->la[l - 1].xout : a->x0;
        /* FFN branch: xout = xmid + drop(s . Wd^T) */
        memcpy(a->dtmp, a->dx, btc * sizeof(float));
        par_dropout_add(pool, a->dtmp, NULL, bt, C, dseed, 2 + 2 * (uint32_t)l, p);
        memset(a->ds, 0, btf * sizeof(float));
        par_matmul_backward(pool, a->ds, grad_of(e, w->w_down), NULL, a->dtmp, la->s, w->w_down, bt,
                            F, C, T);
        memset(a->dg, 0, btf * sizeof(float));
        memset(a->du, 0, btf * sizeof(float));
        par_swiglu_backward(pool, a->dg, a->du, a->ds, la->g, la->u, bt, F);
        memset(a->dln, 0, btc * sizeof(float));
        par_matmul_backward(pool, a->dln, grad_of(e, w->w_gate), NULL, a->dg, la->ln2, w->w_gate,
                            bt, C, F, T);
        par_matmul_backward(pool, a->dln, grad_of(e, w->w_up), NULL, a->du, la->ln2, w->w_up, bt, C,
                            F, T);
        ops_rmsnorm_backward(a->dx, grad_of(e, w->ffn_norm), a->dln, la->xmid, w->ffn_norm,
                             la->rstd2, bt, C);
        /* attention branch: xmid = x_in + drop(y . Wo^T + bo) */
        memcpy(a->dtmp, a->dx, btc * sizeof(float));
        par_dropout_add(pool, a->dtmp, NULL, bt, C, dseed, 1 + 2 * (uint32_t)l, p);
        memset(a->dy, 0, btc * sizeof(float));
        par_matmul_backward(pool, a->dy, grad_of(e, w->wo), grad_of(e, w->bo), a->dtmp, la->y,
                            w->wo, bt, C, C, T);
        memset(a->dq, 0, btc * sizeof(float));
        memset(a->dk, 0, btc * sizeof(float));
        memset(a->dv, 0, btc * sizeof(float));
        struct seq_job sj = {e, l, T};
        seq_parallel(pool, (size_t)B, attn_backward_seq, &sj);
        memset(a->dln, 0, btc * sizeof(float));
        par_matmul_backward(pool, a->dln, grad_of(e, w->wq), grad_of(e, w->bq), a->dq, la->ln1,
                            w->wq, bt, C, C, T);
        par_matmul_backward(pool, a->dln, grad_of(e, w->wk), grad_of(e, w->bk), a->dk, la->ln1,
                            w->wk, bt, C, C, T);
        par_matmul_backward(pool, a->dln, grad_of(e, w->wv), grad_of(e, w->bv), a->dv, la->ln1,
                            w->wv, bt, C, C, T);
        ops_rmsnorm_backward(a->dx, grad_of(e, w->attn_norm), a->dln, x_in, w->attn_norm, la->rstd1,
                             bt, C);
    }
    /* embeddings (the padding row stays untouched) */
    par_dropout_add(pool, a->dx, NULL, bt, C, dseed, 0, p);
    for (int i = 0; i < bt; i++) {
        if (!a->ids[i])
            continue;
        float *g = dE + (size_t)a->ids[i] * C;
        const float *d = a->dx + (size_t)i * C;
        for (int j = 0; j < C; j++)
            g[j] += d[j];
    }
    return 0;
}

int encoder_backward(struct encoder *e, struct pool *pool, struct err *err)
{
    int nb = blas_single(pool);
    int rc = backward_impl(e, pool, err);
    blas_restore(pool, nb);
    return rc;
}

void encoder_item_table(const struct encoder *e, float *out)
{
    const int C = e->cfg.dim, N = e->cfg.n_items;
    memset(out, 0, (size_t)C * sizeof(float));
    if (e->cfg.norm_items)
        ops_l2norm_forward(out + C, NULL, e->tok_emb + C, N, C, L2_EPS);
    else
        memcpy(out + C, e->tok_emb + C, (size_t)N * C * sizeof(float));
}

float encoder_clip_grad(struct encoder *e, float max_norm)
{
    double ss = 0.0;
    for (size_t i = 0; i < e->n_params; i++)
        ss += (double)e->grads[i] * e->grads[i];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = max_norm / norm;
        for (size_t i = 0; i < e->n_params; i++)
            e->grads[i] *= s;
    }
    return norm;
}

void encoder_adamw_step(struct encoder *e, const struct adamw_config *o, uint64_t step)
{
    const double bc1 = 1.0 - pow(o->beta1, (double)step);
    const double bc2 = 1.0 - pow(o->beta2, (double)step);
    const float lr_t = (float)(o->lr / bc1);
    const float inv_bc2 = (float)(1.0 / bc2);
    for (int t = 0; t < e->n_tensors; t++) {
        const struct encoder_tensor *tt = &e->tensors[t];
        size_t n = (size_t)tt->rows * tt->cols;
        float *p = e->params + tt->offset, *g = e->grads + tt->offset;
        float *m = e->adam_m + tt->offset, *v = e->adam_v + tt->offset;
        const float wd = tt->decay ? o->weight_decay : 0.0f;
        for (size_t i = 0; i < n; i++) {
            m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * g[i];
            v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * g[i] * g[i];
            float upd = m[i] / (sqrtf(v[i] * inv_bc2) + o->eps);
            p[i] -= lr_t * upd + o->lr * wd * p[i];
        }
    }
    memset(e->tok_emb, 0, (size_t)e->cfg.dim * sizeof(float)); /* padding stays zero */
}

double encoder_train_flops(const struct encoder_config *c, int B, int T, int n_loss,
                           int n_candidates)
{
    const double C = c->dim, F = c->ffn, bt = (double)B * T;
    double per_tok = 2.0 * (4.0 * C * C + 3.0 * C * F) * c->n_layers + 2.0 * C * C;
    double attn = 2.0 * 2.0 * C * (T * (T + 1.0) / 2.0) * B * c->n_layers; /* QK^T and PV */
    double fwd = per_tok * bt + attn;
    double loss = 2.0 * (double)n_loss * n_candidates * C; /* logits */
    return 3.0 * fwd + 3.0 * loss;
}

/* ---- GGUF files ---- */

#define ARCH "nanorec.encoder"
#define KEY(k) ARCH "." k

int encoder_save(const struct encoder *e, const struct encoder_train_state *ts, const char *path,
                 struct err *err)
{
    const struct encoder_config *c = &e->cfg;
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return err_set(err, ERR_NOMEM, "encoder: out of memory writing %s", path);
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", ARCH);
    rc |= gguf_writer_set_str(w, "general.name", ts ? "nanorec encoder checkpoint"
                                                    : "nanorec user encoder");
    rc |= gguf_writer_set_u32(w, KEY("n_items"), (uint32_t)c->n_items);
    rc |= gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)c->dim);
    rc |= gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)c->n_layers);
    rc |= gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)c->n_heads);
    rc |= gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)c->ffn);
    rc |= gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)c->max_len);
    rc |= gguf_writer_set_f32(w, KEY("dropout"), c->dropout);
    rc |= gguf_writer_set_f32(w, KEY("rope.freq_base"), c->rope_theta);
    rc |= gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), c->norm_eps);
    rc |= gguf_writer_set_str(w, KEY("loss"), encoder_loss_name(c->loss));
    rc |= gguf_writer_set_f32(w, KEY("temperature"), c->temperature);
    rc |= gguf_writer_set_bool(w, KEY("logq"), c->logq);
    rc |= gguf_writer_set_bool(w, KEY("norm_items"), c->norm_items);
    if (ts) {
        rc |= gguf_writer_set_u64(w, "train.step", ts->step);
        rc |= gguf_writer_set_u64(w, "train.rng", ts->rng);
        rc |= gguf_writer_set_u32(w, "train.epoch", ts->epoch);
        rc |= gguf_writer_set_u64(w, "train.seed", ts->seed);
    }
    if (rc) {
        gguf_writer_free(w);
        return err_set(err, ERR_NOMEM, "encoder: out of memory writing %s", path);
    }
    for (int i = 0; i < e->n_tensors && !rc; i++) {
        const struct encoder_tensor *t = &e->tensors[i];
        uint64_t ne[2] = {(uint64_t)t->cols, (uint64_t)t->rows};
        rc = gguf_writer_add_tensor(w, t->name, GGML_TYPE_F32, t->rows > 1 ? 2 : 1, ne,
                                    e->params + t->offset, true, err);
    }
    float *items = NULL;
    if (!ts && !rc) { /* the export carries the scoring table the vector indexes store */
        items = malloc(sizeof(float) * ((size_t)c->n_items + 1) * c->dim);
        if (!items) {
            gguf_writer_free(w);
            return err_set(err, ERR_NOMEM, "encoder: out of memory writing %s", path);
        }
        encoder_item_table(e, items);
        uint64_t ne[2] = {(uint64_t)c->dim, (uint64_t)c->n_items + 1};
        rc = gguf_writer_add_tensor(w, "item_vectors", GGML_TYPE_F32, 2, ne, items, true, err);
    }
    if (ts && !rc) {
        uint64_t ne[1] = {e->n_params};
        rc = gguf_writer_add_tensor(w, "adam.m", GGML_TYPE_F32, 1, ne, e->adam_m, true, err);
        if (!rc)
            rc = gguf_writer_add_tensor(w, "adam.v", GGML_TYPE_F32, 1, ne, e->adam_v, true, err);
    }
    if (!rc)
        rc = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    free(items);
    if (rc)
        err_prefix(err, "saving encoder %s", path);
    return rc;
}

/* Copies one f32 tensor of exactly `n` elements (shape checked by the caller's numbers). */
static int load_f32(const struct gguf_file *f, const char *name, uint64_t cols, uint64_t rows,
                    float *dst, struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return err_set(err, ERR_INVALID, "tensor '%s' is missing", name);
    if (t->type != GGML_TYPE_F32)
        return err_set(err, ERR_UNSUPPORTED, "tensor '%s' is %s, expected f32", name,
                       ggml_type_name(t->type) ? ggml_type_name(t->type) : "unknown");
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++)
        n *= t->ne[i];
    if (t->ne[0] != cols || n != cols * rows || t->nbytes != n * sizeof(float))
        return err_set(err, ERR_INVALID,
                       "tensor '%s' has shape [%llu x %llu], expected [%llu x %llu]", name,
                       (unsigned long long)t->ne[0], (unsigned long long)(n / t->ne[0]),
                       (unsigned long long)cols, (unsigned long long)rows);
    memcpy(dst, t->data, n * sizeof(float));
    return 0;
}

static int get_int(const struct gguf_file *f, const char *key, int *out, struct err *err)
{
    uint32_t v;
    int rc = gguf_get_u32(f, key, &v, err);
    if (rc == ERR_NOTFOUND)
        return err_set(err, ERR_INVALID, "key '%s' is missing", key);
    if (rc)
        return rc;
    if (v > 100000000u)
        return err_set(err, ERR_INVALID, "key '%s' = %u is out of range", key, v);
    *out = (int)v;
    return 0;
}

struct encoder *encoder_load(const char *path, struct encoder_train_state *ts, struct err *err)
{
    struct gguf_file *f = gguf_open(path, err);
    if (!f)
        return NULL;
    struct encoder *e = NULL;
    struct encoder_config c;
    encoder_config_default(&c);
    struct gguf_str s;
    int rc = gguf_get_str(f, "general.architecture", &s, err);
    if (rc || !gguf_str_eq(s, ARCH)) {
        err_set(err, ERR_INVALID, "general.architecture is not '" ARCH "'");
        goto fail;
    }
    if (get_int(f, KEY("n_items"), &c.n_items, err) ||
        get_int(f, KEY("embedding_length"), &c.dim, err) ||
        get_int(f, KEY("block_count"), &c.n_layers, err) ||
        get_int(f, KEY("attention.head_count"), &c.n_heads, err) ||
        get_int(f, KEY("feed_forward_length"), &c.ffn, err) ||
        get_int(f, KEY("context_length"), &c.max_len, err) ||
        gguf_get_f32(f, KEY("dropout"), &c.dropout, err) ||
        gguf_get_f32(f, KEY("rope.freq_base"), &c.rope_theta, err) ||
        gguf_get_f32(f, KEY("attention.layer_norm_rms_epsilon"), &c.norm_eps, err) ||
        gguf_get_f32(f, KEY("temperature"), &c.temperature, err) ||
        gguf_get_bool(f, KEY("logq"), &c.logq, err) ||
        gguf_get_bool(f, KEY("norm_items"), &c.norm_items, err) ||
        gguf_get_str(f, KEY("loss"), &s, err))
        goto fail;
    c.loss = gguf_str_eq(s, "infonce") ? ENCODER_LOSS_INFONCE : ENCODER_LOSS_SOFTMAX;
    if (!gguf_str_eq(s, "infonce") && !gguf_str_eq(s, "softmax")) {
        err_set(err, ERR_INVALID, "key '" KEY("loss") "' is neither softmax nor infonce");
        goto fail;
    }
    e = encoder_new(&c, 0, err);
    if (!e)
        goto fail;
    for (int i = 0; i < e->n_tensors; i++) {
        const struct encoder_tensor *t = &e->tensors[i];
        if (load_f32(f, t->name, (uint64_t)t->cols, (uint64_t)t->rows, e->params + t->offset,
                     err))
            goto fail;
    }
    if (ts && gguf_find(f, "train.step")) {
        if (gguf_get_u64(f, "train.step", &ts->step, err) ||
            gguf_get_u64(f, "train.rng", &ts->rng, err) ||
            gguf_get_u32(f, "train.epoch", &ts->epoch, err) ||
            gguf_get_u64(f, "train.seed", &ts->seed, err) ||
            load_f32(f, "adam.m", e->n_params, 1, e->adam_m, err) ||
            load_f32(f, "adam.v", e->n_params, 1, e->adam_v, err))
            goto fail;
    } else if (ts) {
        memset(ts, 0, sizeof(*ts));
    }
    gguf_close(f);
    return e;
fail:
    err_prefix(err, "loading encoder %s", path);
    encoder_free(e);
    gguf_close(f);
    return NULL;
}
