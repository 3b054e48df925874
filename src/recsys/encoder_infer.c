/* Serving forward of the user encoder for one history (see encoder_infer.h). Mirrors
 * encoder_forward (recsys/encoder.c) operation for operation; what differs is that padding
 * rows are never computed and the last layer works on one query row. */
#include "recsys/encoder_infer.h"

#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/ops.h"
#include "engine/ops_backward.h"
#include "recsys/i8gemm.h"

#define ARCH "nanorec.encoder"
#define KEY(k) ARCH "." k
#define L2_EPS 1e-6f

/* A weight matrix as stored: rows x cols of `type`, memory-mapped; for a quantized file also
 * its packed W8A8 copy (i8gemm.h), which is what the forward multiplies with. */
struct w_mat {
    enum ggml_type type;
    const void *data;
    int rows, cols;
    struct i8_mat *q;
};

struct infer_layer {
    const float *attn_norm, *bq, *bk, *bv, *bo, *ffn_norm;
    struct w_mat wq, wk, wv, wo, w_gate, w_up, w_down;
};

struct encoder_infer {
    struct gguf_file *f;
    struct encoder_config cfg;
    struct w_mat tok_emb; /* (n_items + 1, C) */
    struct infer_layer *layers;
    const float *out_norm, *proj_b;
    struct w_mat proj_w;
    size_t kscratch; /* bytes kern_matmul / i8_gemm need for the largest product */
    float *rope_cos, *rope_sin;   /* (max_len, D/2): the rotation of each position and pair */
    float *rope_cdup, *rope_sdup; /* (max_len, D): (cos, cos) and (-sin, sin) per pair */
};

struct encoder_infer_scratch {
    int cap; /* rows (max_len) */
    float *x, *ln, *q, *k, *v, *y, *tmp, *g, *u, *att;
    float *kt, *vh; /* one head's keys transposed (D, Tp) and values (T, D) */
    void *kscratch;
};

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

/* Finds tensor `name` with `rows` x `cols` elements. A vector (rows == 0) must be f32; a
 * matrix may be f32 or any type kern_matmul supports whose block divides cols. */
static int find_tensor(const struct gguf_file *f, const char *name, int rows, int cols,
                       struct w_mat *out, struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        return err_set(err, ERR_INVALID, "tensor '%s' is missing", name);
    uint64_t n = 1;
    for (uint32_t i = 0; i < t->n_dims; i++)
        n *= t->ne[i];
    uint64_t want_rows = rows > 0 ? (uint64_t)rows : 1;
    if (t->ne[0] != (uint64_t)cols || n != (uint64_t)cols * want_rows)
        return err_set(err, ERR_INVALID, "tensor '%s' has %llu x %llu elements, expected %d x %llu",
                       name, (unsigned long long)t->ne[0], (unsigned long long)(n / t->ne[0]),
                       cols, (unsigned long long)want_rows);
    bool ok = t->type == GGML_TYPE_F32 || (rows > 0 && kern_type_supported(t->type) &&
                                           cols % (int)ggml_blck_size(t->type) == 0);
    if (!ok)
        return err_set(err, ERR_UNSUPPORTED, "tensor '%s' has type %s, which is not supported here",
                       name, ggml_type_name(t->type) ? ggml_type_name(t->type) : "unknown");
    if (t->nbytes != ggml_row_size(t->type, (uint64_t)cols) * want_rows)
        return err_set(err, ERR_INVALID, "tensor '%s' has %llu bytes, expected %llu", name,
                       (unsigned long long)t->nbytes,
                       (unsigned long long)(ggml_row_size(t->type, (uint64_t)cols) * want_rows));
    out->type = t->type;
    out->data = t->data;
    out->rows = (int)want_rows;
    out->cols = cols;
    return 0;
}

static int find_vec(const struct gguf_file *f, const char *name, int n, const float **out,
                    struct err *err)
{
    struct w_mat m;
    int rc = find_tensor(f, name, 0, n, &m, err);
    if (rc)
        return rc;
    if (m.type != GGML_TYPE_F32)
        return err_set(err, ERR_UNSUPPORTED, "tensor '%s' must be f32", name);
    *out = m.data;
    return 0;
}

/* A quantized matrix gets its W8A8 copy (dequantized rows requantized with one scale per
 * row): the Q8_0 kernels spend more time converting per-block scales than multiplying, the
 * packed VNNI product is ~4x faster. f32 matrices stay exact (kern_matmul). */
static int pack_mat(struct w_mat *w, const char *name, size_t *kscratch, int max_n,
                    struct err *err)
{
    if (w->type == GGML_TYPE_F32) {
        size_t need = kern_scratch_size(w->type, w->cols, max_n);
        *kscratch = need > *kscratch ? need : *kscratch;
        return 0;
    }
    float *tmp = malloc((size_t)w->rows * w->cols * sizeof(float));
    if (!tmp)
        return err_set(err, ERR_NOMEM, "out of memory unpacking '%s'", name);
    const size_t rb = ggml_row_size(w->type, (uint64_t)w->cols);
    for (int r = 0; r < w->rows; r++)
        if (kern_dequantize_row(w->type, (const char *)w->data + (size_t)r * rb,
                                tmp + (size_t)r * w->cols, w->cols)) {
            free(tmp);
            return err_set(err, ERR_UNSUPPORTED, "tensor '%s': cannot dequantize %s", name,
                           ggml_type_name(w->type) ? ggml_type_name(w->type) : "?");
        }
    w->q = i8_mat_new(tmp, w->rows, w->cols, (size_t)w->cols);
    free(tmp);
    if (!w->q)
        return err_set(err, ERR_NOMEM, "out of memory packing '%s'", name);
    size_t need = i8_gemm_scratch_size(w->cols, max_n);
    *kscratch = need > *kscratch ? need : *kscratch;
    return 0;
}

struct encoder_infer *encoder_infer_load(const char *path, struct err *err)
{
    kern_init();
    struct encoder_infer *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, ERR_NOMEM, "out of memory loading %s", path);
        return NULL;
    }
    m->f = gguf_open(path, err);
    if (!m->f)
        goto fail;
    struct encoder_config *c = &m->cfg;
    encoder_config_default(c);
    struct gguf_str s;
    if (gguf_get_str(m->f, "general.architecture", &s, err) || !gguf_str_eq(s, ARCH)) {
        err_set(err, ERR_INVALID, "general.architecture is not '" ARCH "'");
        goto fail;
    }
    bool norm_items = true;
    if (get_int(m->f, KEY("n_items"), &c->n_items, err) ||
        get_int(m->f, KEY("embedding_length"), &c->dim, err) ||
        get_int(m->f, KEY("block_count"), &c->n_layers, err) ||
        get_int(m->f, KEY("attention.head_count"), &c->n_heads, err) ||
        get_int(m->f, KEY("feed_forward_length"), &c->ffn, err) ||
        get_int(m->f, KEY("context_length"), &c->max_len, err) ||
        gguf_get_f32(m->f, KEY("rope.freq_base"), &c->rope_theta, err) ||
        gguf_get_f32(m->f, KEY("attention.layer_norm_rms_epsilon"), &c->norm_eps, err) ||
        gguf_get_bool(m->f, KEY("norm_items"), &norm_items, err))
        goto fail;
    c->norm_items = norm_items;
    if (encoder_config_check(c, err))
        goto fail;
    const int C = c->dim, F = c->ffn, L = c->n_layers;
    m->layers = calloc((size_t)L, sizeof *m->layers);
    if (!m->layers) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (find_tensor(m->f, "token_embd.weight", c->n_items + 1, C, &m->tok_emb, err))
        goto fail;
    char nm[64];
#define MAT(field, suffix, r, cc)                                                                 \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                \
    if (find_tensor(m->f, nm, r, cc, &ly->field, err))                                           \
        goto fail;
#define VEC(field, suffix, cc)                                                                    \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                \
    if (find_vec(m->f, nm, cc, &ly->field, err))                                                 \
        goto fail;
    for (int l = 0; l < L; l++) {
        struct infer_layer *ly = &m->layers[l];
        VEC(attn_norm, "attn_norm.weight", C);
        MAT(wq, "attn_q.weight", C, C);
        VEC(bq, "attn_q.bias", C);
        MAT(wk, "attn_k.weight", C, C);
        VEC(bk, "attn_k.bias", C);
        MAT(wv, "attn_v.weight", C, C);
        VEC(bv, "attn_v.bias", C);
        MAT(wo, "attn_output.weight", C, C);
        VEC(bo, "attn_output.bias", C);
        VEC(ffn_norm, "ffn_norm.weight", C);
        MAT(w_gate, "ffn_gate.weight", F, C);
        MAT(w_up, "ffn_up.weight", F, C);
        MAT(w_down, "ffn_down.weight", C, F);
        struct w_mat *all[] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo,
                               &ly->w_gate, &ly->w_up, &ly->w_down};
        for (int i = 0; i < 7; i++) {
            snprintf(nm, sizeof nm, "blk.%d", l);
            if (pack_mat(all[i], nm, &m->kscratch, c->max_len, err))
                goto fail;
        }
    }
#undef MAT
#undef VEC
    if (find_vec(m->f, "output_norm.weight", C, &m->out_norm, err) ||
        find_tensor(m->f, "proj.weight", C, C, &m->proj_w, err) ||
        find_vec(m->f, "proj.bias", C, &m->proj_b, err))
        goto fail;
    if (pack_mat(&m->proj_w, "proj.weight", &m->kscratch, 1, err))
        goto fail;
    /* RoPE angles as ops_rope_forward computes them, once instead of per call */
    const int D = C / c->n_heads, half = D / 2;
    m->rope_cos = malloc((size_t)c->max_len * half * sizeof(float));
    m->rope_sin = malloc((size_t)c->max_len * half * sizeof(float));
    m->rope_cdup = malloc((size_t)c->max_len * D * sizeof(float));
    m->rope_sdup = malloc((size_t)c->max_len * D * sizeof(float));
    if (!m->rope_cos || !m->rope_sin || !m->rope_cdup || !m->rope_sdup) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int t = 0; t < c->max_len; t++)
        for (int i = 0; i < half; i++) {
            float freq = powf(c->rope_theta, -(float)(2 * i) / (float)D);
            float ang = (float)t * freq;
            m->rope_cos[(size_t)t * half + i] = cosf(ang);
            m->rope_sin[(size_t)t * half + i] = sinf(ang);
            m->rope_cdup[(size_t)t * D + 2 * i] = cosf(ang);
            m->rope_cdup[(size_t)t * D + 2 * i + 1] = cosf(ang);
            m->rope_sdup[(size_t)t * D + 2 * i] = -sinf(ang);
            m->rope_sdup[(size_t)t * D + 2 * i + 1] = sinf(ang);
        }
    return m;
fail:
    err_prefix(err, "loading encoder %s", path);
    encoder_infer_free(m);
    return NULL;
}

void encoder_infer_free(struct encoder_infer *m)
{
    if (!m)
        return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            struct infer_layer *ly = &m->layers[l];
            i8_mat_free(ly->wq.q);
            i8_mat_free(ly->wk.q);
            i8_mat_free(ly->wv.q);
            i8_mat_free(ly->wo.q);
            i8_mat_free(ly->w_gate.q);
            i8_mat_free(ly->w_up.q);
            i8_mat_free(ly->w_down.q);
        }
    i8_mat_free(m->proj_w.q);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->rope_cdup);
    free(m->rope_sdup);
    free(m->layers);
    gguf_close(m->f);
    free(m);
}

const struct encoder_config *encoder_infer_config(const struct encoder_infer *m)
{
    return &m->cfg;
}

const char *encoder_infer_weight_type(const struct encoder_infer *m)
{
    const char *n = m->cfg.n_layers > 0 ? ggml_type_name(m->layers[0].wq.type)
                                        : ggml_type_name(m->proj_w.type);
    return n ? n : "unknown";
}

struct encoder_infer_scratch *encoder_infer_scratch_new(const struct encoder_infer *m)
{
    struct encoder_infer_scratch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    const size_t T = (size_t)m->cfg.max_len, C = (size_t)m->cfg.dim, F = (size_t)m->cfg.ffn;
    s->cap = (int)T;
    float **tc[] = {&s->x, &s->ln, &s->q, &s->k, &s->v, &s->y, &s->tmp};
    bool ok = true;
    for (size_t i = 0; i < sizeof tc / sizeof tc[0]; i++)
        ok = ok && (*tc[i] = malloc(T * C * sizeof(float))) != NULL;
    ok = ok && (s->g = malloc(T * F * sizeof(float))) != NULL;
    ok = ok && (s->u = malloc(T * F * sizeof(float))) != NULL;
    const size_t Tp = (T + 15) / 16 * 16, D = C / (size_t)m->cfg.n_heads;
    ok = ok && (s->att = calloc(Tp, sizeof(float))) != NULL;
    ok = ok && (s->kt = calloc(D * Tp, sizeof(float))) != NULL;
    ok = ok && (s->vh = malloc(T * D * sizeof(float))) != NULL;
    ok = ok && (s->kscratch = malloc(m->kscratch ? m->kscratch : 1)) != NULL;
    if (!ok) {
        encoder_infer_scratch_free(s);
        return NULL;
    }
    return s;
}

void encoder_infer_scratch_free(struct encoder_infer_scratch *s)
{
    if (!s)
        return;
    free(s->x);
    free(s->ln);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->y);
    free(s->tmp);
    free(s->g);
    free(s->u);
    free(s->att);
    free(s->kt);
    free(s->vh);
    free(s->kscratch);
    free(s);
}

/* Y (n, W.rows) = X (n, W.cols) . W^T (+ bias): the quantized kernels, single-threaded (a
 * serving worker owns one core). */
static void linear(const struct w_mat *w, const float *X, float *Y, const float *bias, int n,
                   void *kscratch)
{
    if (w->q) {
        i8_gemm(w->q, X, (size_t)w->cols, Y, (size_t)w->rows, n, &(struct i8_epilogue){.bias = bias},
                kscratch);
        return;
    }
    kern_matmul(w->type, w->data, X, Y, w->rows, w->cols, n, kscratch, NULL);
    if (bias)
        for (int i = 0; i < n; i++)
            for (int r = 0; r < w->rows; r++)
                Y[(size_t)i * w->rows + r] += bias[r];
}

/* Causal attention for the query rows of positions t0 .. t0+nt-1 (q: (nt, H, D)) over the
 * keys and values of positions 0 .. t0+nt-1 (k, v: (n, H, D)): out (nt, H, D). Position t
 * attends to positions 0..t (all real: padding is never computed). Scalar reference. */
static void attend_ref(float *out, float *sc, const float *q, const float *k, const float *v,
                       int t0, int nt, int H, int D)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int C = H * D;
    for (int i = 0; i < nt; i++) {
        const int t = t0 + i;
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)i * C + h * D;
            for (int j = 0; j <= t; j++) {
                const float *kj = k + (size_t)j * C + h * D;
                float d = 0.0f;
                for (int e = 0; e < D; e++)
                    d += qh[e] * kj[e];
                sc[j] = d * scale;
            }
            ops_softmax(sc, t + 1);
            float *oh = out + (size_t)i * C + h * D;
            memset(oh, 0, (size_t)D * sizeof(float));
            for (int j = 0; j <= t; j++) {
                const float *vj = v + (size_t)j * C + h * D;
                for (int e = 0; e < D; e++)
                    oh[e] += sc[j] * vj[e];
            }
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_ATTN512 1

/* exp(x) for x <= 0 (softmax after subtracting the max): 2^k * p(r), |r| <= ln2/2, degree-6
 * Taylor polynomial; relative error about 2e-7. Inputs are clamped at -87 (exp = 1.6e-38). */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 kf = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(0.693145752f), x);
    r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i ki = _mm512_cvtps_epi32(kf);
    __m512 two_k =
        _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(ki, _mm512_set1_epi32(127)), 23));
    return _mm512_mul_ps(p, two_k);
}

/* attend_ref with 16-wide vectors: per head, keys transposed into kt (D, Tp) so the scores of
 * 16 positions come from D broadcast FMAs; exp vectorised; values accumulated as D/16
 * vectors. Needs D % 16 == 0. */
__attribute__((target("avx512f"))) static void attend_512(float *out, float *sc, float *kt,
                                                          float *vh, const float *q,
                                                          const float *k, const float *v, int t0,
                                                          int nt, int H, int D)
{
    const float scale = 1.0f / sqrtf((float)D);
    const int C = H * D, n = t0 + nt, Tp = (n + 15) / 16 * 16, DV = D / 16;
    for (int h = 0; h < H; h++) {
        for (int j = 0; j < n; j++) {
            const float *kj = k + (size_t)j * C + h * D;
            for (int e = 0; e < D; e++)
                kt[(size_t)e * Tp + j] = kj[e];
            memcpy(vh + (size_t)j * D, v + (size_t)j * C + h * D, (size_t)D * sizeof(float));
        }
        for (int i = 0; i < nt; i++) {
            const int t = t0 + i, nb = (t + 16) / 16;
            const float *qh = q + (size_t)i * C + h * D;
            /* scores: four blocks of 16 keys at a time, so four FMA chains are in flight
             * (one chain over D is bound by the FMA latency) */
            int b = 0;
            for (; b + 4 <= nb; b += 4) {
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                const float *kb = kt + (size_t)b * 16;
                for (int e = 0; e < D; e++) {
                    const __m512 qe = _mm512_set1_ps(qh[e]);
                    const float *ke = kb + (size_t)e * Tp;
                    a0 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(ke), a0);
                    a1 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(ke + 16), a1);
                    a2 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(ke + 32), a2);
                    a3 = _mm512_fmadd_ps(qe, _mm512_loadu_ps(ke + 48), a3);
                }
                const __m512 sv = _mm512_set1_ps(scale);
                _mm512_storeu_ps(sc + b * 16, _mm512_mul_ps(a0, sv));
                _mm512_storeu_ps(sc + b * 16 + 16, _mm512_mul_ps(a1, sv));
                _mm512_storeu_ps(sc + b * 16 + 32, _mm512_mul_ps(a2, sv));
                _mm512_storeu_ps(sc + b * 16 + 48, _mm512_mul_ps(a3, sv));
            }
            for (; b < nb; b++) {
                __m512 acc = _mm512_setzero_ps();
                for (int e = 0; e < D; e++)
                    acc = _mm512_fmadd_ps(_mm512_set1_ps(qh[e]),
                                          _mm512_loadu_ps(kt + (size_t)e * Tp + b * 16), acc);
                _mm512_storeu_ps(sc + b * 16, _mm512_mul_ps(acc, _mm512_set1_ps(scale)));
            }
            /* max and sum over keys 0..t as vectors (scalar loops are one long dependency
             * chain); the last block's lanes past t are masked out */
            const __mmask16 last = (__mmask16)(0xFFFFu >> (15 - t % 16));
            __m512 mv = _mm512_set1_ps(-INFINITY);
            for (b = 0; b + 1 < nb; b++)
                mv = _mm512_max_ps(mv, _mm512_loadu_ps(sc + b * 16));
            mv = _mm512_mask_max_ps(mv, last, mv, _mm512_loadu_ps(sc + b * 16));
            const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
            __m512 sv = _mm512_setzero_ps();
            for (b = 0; b < nb; b++) {
                __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(sc + b * 16), m));
                _mm512_storeu_ps(sc + b * 16, e);
                sv = b + 1 < nb ? _mm512_add_ps(sv, e) : _mm512_mask_add_ps(sv, last, sv, e);
            }
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sv));
            float *oh = out + (size_t)i * C + h * D;
            for (int dv = 0; dv < DV; dv++) {
                /* four chains over the keys, summed at the end */
                __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                const float *vd = vh + dv * 16;
                int j = 0;
                for (; j + 3 <= t; j += 4) {
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(sc[j]), _mm512_loadu_ps(vd + (size_t)j * D), a0);
                    a1 = _mm512_fmadd_ps(_mm512_set1_ps(sc[j + 1]),
                                         _mm512_loadu_ps(vd + (size_t)(j + 1) * D), a1);
                    a2 = _mm512_fmadd_ps(_mm512_set1_ps(sc[j + 2]),
                                         _mm512_loadu_ps(vd + (size_t)(j + 2) * D), a2);
                    a3 = _mm512_fmadd_ps(_mm512_set1_ps(sc[j + 3]),
                                         _mm512_loadu_ps(vd + (size_t)(j + 3) * D), a3);
                }
                for (; j <= t; j++)
                    a0 = _mm512_fmadd_ps(_mm512_set1_ps(sc[j]), _mm512_loadu_ps(vd + (size_t)j * D), a0);
                const __m512 acc = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
                _mm512_storeu_ps(oh + dv * 16, _mm512_mul_ps(acc, inv));
            }
        }
    }
}

/* out = silu(g) * u over n values: ops_swiglu_forward with exp16 (silu(z) = z / (1 + e^-z),
 * computed from e = exp(-|z|) <= 1 so that nothing overflows). */
__attribute__((target("avx512f"))) static void swiglu_512(float *out, const float *g,
                                                          const float *u, size_t n)
{
    size_t i = 0;
    const __m512 one = _mm512_set1_ps(1.0f);
    for (; i + 16 <= n; i += 16) {
        __m512 z = _mm512_loadu_ps(g + i);
        __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_abs_ps(z)));
        __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, e));
        __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
        __m512 sig = _mm512_mask_mul_ps(r, neg, e, r);
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(z, sig), _mm512_loadu_ps(u + i)));
    }
    if (i < n)
        ops_swiglu_forward(out + i, g + i, u + i, 1, (int)(n - i));
}
#endif

static void swiglu(float *out, const float *g, const float *u, int N, int F)
{
#ifdef HAVE_ATTN512
    if (__builtin_cpu_supports("avx512f")) {
        swiglu_512(out, g, u, (size_t)N * F);
        return;
    }
#endif
    ops_swiglu_forward(out, g, u, N, F);
}

#ifdef HAVE_ATTN512
/* ops_rmsnorm_forward with the sum of squares in 16 float lanes (the reference accumulates
 * one double chain); for the encoder's widths (C of a few hundred) the difference is ~1e-7. */
__attribute__((target("avx512f"))) static void rmsnorm_512(float *out, const float *x,
                                                           const float *w, int N, int C,
                                                           float eps)
{
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *o = out + (size_t)n * C;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;
        int c = 0;
        for (; c + 32 <= C; c += 32) {
            const __m512 v0 = _mm512_loadu_ps(xr + c), v1 = _mm512_loadu_ps(xr + c + 16);
            a0 = _mm512_fmadd_ps(v0, v0, a0);
            a1 = _mm512_fmadd_ps(v1, v1, a1);
        }
        float ss = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        for (; c < C; c++)
            ss += xr[c] * xr[c];
        const float r = 1.0f / sqrtf(ss / (float)C + eps);
        const __m512 rv = _mm512_set1_ps(r);
        for (c = 0; c + 16 <= C; c += 16)
            _mm512_storeu_ps(o + c, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(xr + c), rv),
                                                  _mm512_loadu_ps(w + c)));
        for (; c < C; c++)
            o[c] = xr[c] * r * w[c];
    }
}
#endif

static void rmsnorm(float *out, const float *x, const float *w, int N, int C, float eps)
{
#ifdef HAVE_ATTN512
    if (__builtin_cpu_supports("avx512f")) {
        rmsnorm_512(out, x, w, N, C, eps);
        return;
    }
#endif
    ops_rmsnorm_forward(out, NULL, x, w, N, C, eps);
}

#ifdef HAVE_ATTN512
/* kern_dequantize_row for Q8_0 (f16 scale + 32 int8 per 34-byte block), 16 lanes at a time;
 * the same products d * q as the reference, so the same floats. */
__attribute__((target("avx512f,f16c"))) static void dequant_q8_0_512(const uint8_t *row, float *y,
                                                                     int n)
{
    for (int b = 0; b < n / 32; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        uint16_t h;
        memcpy(&h, blk, 2);
        const __m512 d = _mm512_set1_ps(_cvtsh_ss(h));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
        _mm512_storeu_ps(y + b * 32, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0))));
        _mm512_storeu_ps(y + b * 32 + 16,
                         _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1))));
    }
}
#endif

/* One embedding row into f32. */
static void embed_row(enum ggml_type t, const char *row, float *y, int C)
{
    if (t == GGML_TYPE_F32) {
        memcpy(y, row, (size_t)C * sizeof(float));
        return;
    }
#ifdef HAVE_ATTN512
    if (t == GGML_TYPE_Q8_0 && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("f16c")) {
        dequant_q8_0_512((const uint8_t *)row, y, C);
        return;
    }
#endif
    kern_dequantize_row(t, row, y, C);
}

/* ops_rope_forward for rows at positions p0, p0+1, ... with the load-time angle table. */
static void rope_ref(const struct encoder_infer *m, float *x, int p0, int N, int H, int D)
{
    const int half = D / 2;
    for (int n = 0; n < N; n++) {
        const float *cs = m->rope_cos + (size_t)(p0 + n) * half;
        const float *sn = m->rope_sin + (size_t)(p0 + n) * half;
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)n * H + h) * D;
            for (int i = 0; i < half; i++) {
                const float v0 = v[2 * i], v1 = v[2 * i + 1];
                v[2 * i] = v0 * cs[i] - v1 * sn[i];
                v[2 * i + 1] = v0 * sn[i] + v1 * cs[i];
            }
        }
    }
}

#ifdef HAVE_ATTN512
/* rope_ref on 8 pairs per vector: v * (c, c) + swap(v) * (-s, s), with the angle table
 * expanded to one (cos, cos) / (-sin, sin) entry per element at load. Needs D % 16 == 0. */
__attribute__((target("avx512f"))) static void rope_512(const struct encoder_infer *m, float *x,
                                                        int p0, int N, int H, int D)
{
    for (int n = 0; n < N; n++) {
        const float *cd = m->rope_cdup + (size_t)(p0 + n) * D;
        const float *sd = m->rope_sdup + (size_t)(p0 + n) * D;
        for (int h = 0; h < H; h++) {
            float *v = x + ((size_t)n * H + h) * D;
            for (int e = 0; e < D; e += 16) {
                const __m512 a = _mm512_loadu_ps(v + e);
                const __m512 sw = _mm512_permute_ps(a, 0xB1); /* (v1, v0) per pair */
                _mm512_storeu_ps(v + e, _mm512_fmadd_ps(sw, _mm512_loadu_ps(sd + e),
                                                        _mm512_mul_ps(a, _mm512_loadu_ps(cd + e))));
            }
        }
    }
}
#endif

static void rope(const struct encoder_infer *m, float *x, int p0, int N, int H, int D)
{
#ifdef HAVE_ATTN512
    if (D % 16 == 0 && __builtin_cpu_supports("avx512f")) {
        rope_512(m, x, p0, N, H, D);
        return;
    }
#endif
    rope_ref(m, x, p0, N, H, D);
}

static void attend(struct encoder_infer_scratch *s, float *out, const float *q, const float *k,
                   const float *v, int t0, int nt, int H, int D)
{
#ifdef HAVE_ATTN512
    if (D % 16 == 0 && __builtin_cpu_supports("avx512f")) {
        attend_512(out, s->att, s->kt, s->vh, q, k, v, t0, nt, H, D);
        return;
    }
#endif
    attend_ref(out, s->att, q, k, v, t0, nt, H, D);
}

int encoder_infer_user(const struct encoder_infer *m, struct encoder_infer_scratch *s,
                       const uint32_t *history, int n, float *out, struct err *err)
{
    const struct encoder_config *c = &m->cfg;
    if (n < 1)
        return err_set(err, ERR_INVALID, "encoder: an empty history has no user vector");
    if (n > c->max_len) {
        history += n - c->max_len;
        n = c->max_len;
    }
    const int C = c->dim, F = c->ffn, L = c->n_layers, H = c->n_heads, D = C / H;
    const size_t emb_row = ggml_row_size(m->tok_emb.type, (uint64_t)C);
    for (int t = 0; t < n; t++) {
        uint32_t id = history[t];
        if (id == 0 || id > (uint32_t)c->n_items)
            return err_set(err, ERR_INVALID, "encoder: item id %u outside 1..%d", id, c->n_items);
        const char *row = (const char *)m->tok_emb.data + (size_t)id * emb_row;
        embed_row(m->tok_emb.type, row, s->x + (size_t)t * C, C);
    }
    for (int l = 0; l < L; l++) {
        const struct infer_layer *w = &m->layers[l];
        const bool last = l == L - 1;
        /* rows whose outputs are needed: all of them, or only the last in the last layer */
        const int r0 = last ? n - 1 : 0, nr = n - r0;
        rmsnorm(s->ln, s->x, w->attn_norm, n, C, c->norm_eps);
        if (w->wk.q && w->wv.q && w->wq.q && !last) { /* one quantization of ln for K, V, Q */
            linear(&w->wk, s->ln, s->k, w->bk, n, s->kscratch);
            i8_gemm_again(w->wv.q, s->v, (size_t)C, n, &(struct i8_epilogue){.bias = w->bv},
                          s->kscratch);
            i8_gemm_again(w->wq.q, s->q, (size_t)C, n, &(struct i8_epilogue){.bias = w->bq},
                          s->kscratch);
        } else {
            linear(&w->wk, s->ln, s->k, w->bk, n, s->kscratch);
            linear(&w->wv, s->ln, s->v, w->bv, n, s->kscratch);
            linear(&w->wq, s->ln + (size_t)r0 * C, s->q, w->bq, nr, s->kscratch);
        }
        rope(m, s->k, 0, n, H, D);
        rope(m, s->q, r0, nr, H, D);
        attend(s, s->y, s->q, s->k, s->v, r0, nr, H, D);
        float *xr = s->x + (size_t)r0 * C;
        linear(&w->wo, s->y, s->tmp, w->bo, nr, s->kscratch);
        for (size_t i = 0; i < (size_t)nr * C; i++)
            xr[i] += s->tmp[i];
        rmsnorm(s->ln, xr, w->ffn_norm, nr, C, c->norm_eps);
        linear(&w->w_gate, s->ln, s->g, NULL, nr, s->kscratch);
        if (w->w_gate.q && w->w_up.q) /* the same quantized ln */
            i8_gemm_again(w->w_up.q, s->u, (size_t)F, nr, NULL, s->kscratch);
        else
            linear(&w->w_up, s->ln, s->u, NULL, nr, s->kscratch);
        swiglu(s->g, s->g, s->u, nr, F);
        linear(&w->w_down, s->g, s->tmp, NULL, nr, s->kscratch);
        for (size_t i = 0; i < (size_t)nr * C; i++)
            xr[i] += s->tmp[i];
    }
    const float *xl = s->x + (size_t)(n - 1) * C;
    rmsnorm(s->ln, xl, m->out_norm, 1, C, c->norm_eps);
    linear(&m->proj_w, s->ln, s->tmp, m->proj_b, 1, s->kscratch);
    ops_l2norm_forward(out, NULL, s->tmp, 1, C, L2_EPS);
    return 0;
}
