/* LLaMA-architecture model: loading (GGUF or llama2.c .bin) and the batched forward pass. */
#include "engine/model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/kernels.h"
#include "engine/ops.h"

#define LLM_MAX_DIM (1 << 20)
#define LLM_MAX_LAYERS 1024
#define LLM_MAX_CTX (1 << 20)
#define LLM_MAX_VOCAB (1 << 22)
#define LLM_MAX_OWNED 4096

/* A weight matrix: `rows` rows of `cols` elements in a GGUF block layout. */
struct llm_w {
    enum ggml_type type;
    const void *data;
    int rows, cols;
};

struct llm_layer {
    const float *attn_norm, *ffn_norm; /* (n_embd) */
    const float *bq, *bk, *bv, *bo;    /* optional biases */
    struct llm_w wq, wk, wv, wo;       /* (q_dim, n_embd) (kv_dim, n_embd) x2 (n_embd, q_dim) */
    struct llm_w w_gate, w_up, w_down; /* (n_ff, n_embd) x2 (n_embd, n_ff) */
};

struct llm {
    struct llm_hparams hp;
    struct llm_w tok_embd; /* (n_vocab, n_embd) */
    struct llm_w output;   /* (n_vocab, n_embd); the embedding when tied */
    const float *output_norm;
    struct llm_layer *layers;
    struct gguf_file *gguf;
    void *map;
    size_t map_len;
    void *wmem; /* GGUF matrices copied / repacked into 2 MiB pages (NULL: in the mapping) */
    size_t wmem_len;
    float *owned[LLM_MAX_OWNED]; /* 1-D tensors converted to f32 */
    int n_owned;
    struct tok *tok;
    struct pool *pool;
    bool own_pool;
    float *rope_inv_freq; /* (n_rot / 2) */
    size_t weight_bytes;
};

/* ---- loading: GGUF ---- */

static int get_u32_req(const struct gguf_file *f, const char *key, uint32_t lo, uint32_t hi,
                       int *out, struct err *err)
{
    uint32_t v;
    int rc = gguf_get_u32(f, key, &v, err);
    if (rc == ERR_NOTFOUND) return err_set(err, ERR_INVALID, "metadata key %s is missing", key);
    if (rc) return rc;
    if (v < lo || v > hi)
        return err_set(err, ERR_INVALID, "metadata %s = %u is out of range [%u, %u]", key, v, lo,
                       hi);
    *out = (int)v;
    return 0;
}

static int get_u32_opt(const struct gguf_file *f, const char *key, uint32_t lo, uint32_t hi,
                       int *out, struct err *err)
{
    uint32_t v;
    int rc = gguf_get_u32(f, key, &v, err);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return rc;
    if (v < lo || v > hi)
        return err_set(err, ERR_INVALID, "metadata %s = %u is out of range [%u, %u]", key, v, lo,
                       hi);
    *out = (int)v;
    return 0;
}

static int get_f32_opt(const struct gguf_file *f, const char *key, float lo, float hi, float *out,
                       struct err *err)
{
    float v;
    int rc = gguf_get_f32(f, key, &v, err);
    if (rc == ERR_NOTFOUND) return 0;
    if (rc) return rc;
    if (!(v >= lo && v <= hi))
        return err_set(err, ERR_INVALID, "metadata %s = %g is out of range [%g, %g]", key,
                       (double)v, (double)lo, (double)hi);
    *out = v;
    return 0;
}

static const struct gguf_tensor *find_tensor(const struct llm *m, const char *name, bool required,
                                             struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    if (!t && required) err_set(err, ERR_INVALID, "tensor '%s' is missing", name);
    return t;
}

/* The tensor must be [ne0] (ne1 == 1) or [ne0, ne1], nothing in higher dimensions. */
static int check_shape(const struct gguf_tensor *t, const char *name, uint64_t ne0, uint64_t ne1,
                       struct err *err)
{
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return err_set(err, ERR_INVALID,
                       "tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                       name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                       (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                       (unsigned long long)ne0, (unsigned long long)ne1);
    return 0;
}

/* A matrix (ne0 = cols, ne1 = rows) whose type kern_matmul handles. */
static int load_matrix(struct llm *m, const char *name, int cols, int rows, bool required,
                       struct llm_w *w, struct err *err)
{
    memset(w, 0, sizeof *w);
    const struct gguf_tensor *t = find_tensor(m, name, required, err);
    if (!t) return required ? ERR_INVALID : 0;
    if (check_shape(t, name, (uint64_t)cols, (uint64_t)rows, err)) return ERR_INVALID;
    if (!kern_type_supported(t->type)) {
        const char *tn = ggml_type_name(t->type);
        return err_set(err, ERR_UNSUPPORTED,
                       "tensor '%s' has type %s, which has no kernel (supported: f32, f16, "
                       "bf16, q8_0, q4_0, q4_K, q6_K)",
                       name, tn ? tn : "unknown");
    }
    if (ggml_row_size(t->type, (uint64_t)cols) == 0)
        return err_set(err, ERR_INVALID,
                       "tensor '%s': %d columns are not a multiple of the %s "
                       "block size",
                       name, cols, ggml_type_name(t->type));
    w->type = t->type;
    w->data = t->data;
    w->rows = rows;
    w->cols = cols;
    m->weight_bytes += t->nbytes;
    return 0;
}

/* A vector of n floats: used in place when f32, else converted into memory the model owns. */
static int load_vector(struct llm *m, const char *name, int n, bool required, const float **out,
                       struct err *err)
{
    *out = NULL;
    const struct gguf_tensor *t = find_tensor(m, name, required, err);
    if (!t) return required ? ERR_INVALID : 0;
    if (check_shape(t, name, (uint64_t)n, 1, err)) return ERR_INVALID;
    m->weight_bytes += t->nbytes;
    if (t->type == GGML_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return 0;
    }
    if (m->n_owned == LLM_MAX_OWNED)
        return err_set(err, ERR_NOMEM, "too many converted tensors (at '%s')", name);
    float *buf = malloc((size_t)n * sizeof *buf);
    if (!buf) return err_set(err, ERR_NOMEM, "out of memory converting tensor '%s'", name);
    m->owned[m->n_owned++] = buf;
    if (t->type == GGML_TYPE_F32) {
        memcpy(buf, t->data, (size_t)n * sizeof *buf);
    } else if (kern_dequantize_row(t->type, t->data, buf, n) != 0) {
        const char *tn = ggml_type_name(t->type);
        return err_set(err, ERR_UNSUPPORTED, "tensor '%s' has type %s, which cannot be read", name,
                       tn ? tn : "unknown");
    }
    *out = buf;
    return 0;
}

static int load_gguf_hparams(struct llm *m, struct err *err)
{
    const struct gguf_file *f = m->gguf;
    struct gguf_str arch;
    int rc = gguf_get_str(f, "general.architecture", &arch, err);
    if (rc == ERR_NOTFOUND) return err_set(err, ERR_INVALID, "no general.architecture in the file");
    if (rc) return rc;
    if (!gguf_str_eq(arch, "llama"))
        return err_set(err, ERR_UNSUPPORTED, "architecture '%.*s' is not supported (only llama)",
                       (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    struct llm_hparams *hp = &m->hp;
    if (get_u32_req(f, "llama.embedding_length", 1, LLM_MAX_DIM, &hp->n_embd, err) ||
        get_u32_req(f, "llama.block_count", 1, LLM_MAX_LAYERS, &hp->n_layer, err) ||
        get_u32_req(f, "llama.attention.head_count", 1, 4096, &hp->n_head, err) ||
        get_u32_req(f, "llama.feed_forward_length", 1, LLM_MAX_DIM, &hp->n_ff, err))
        return ERR_INVALID;
    hp->n_head_kv = hp->n_head;
    hp->n_ctx_train = 2048;
    hp->rope_theta = 10000.0f;
    hp->rms_eps = 1e-5f;
    if (get_u32_opt(f, "llama.attention.head_count_kv", 1, 4096, &hp->n_head_kv, err) ||
        get_u32_opt(f, "llama.context_length", 1, LLM_MAX_CTX, &hp->n_ctx_train, err) ||
        get_f32_opt(f, "llama.rope.freq_base", 1.0f, 1e12f, &hp->rope_theta, err) ||
        get_f32_opt(f, "llama.attention.layer_norm_rms_epsilon", 0.0f, 1.0f, &hp->rms_eps, err))
        return ERR_INVALID;
    if (hp->n_embd % hp->n_head != 0)
        return err_set(err, ERR_INVALID, "embedding length %d is not a multiple of %d heads",
                       hp->n_embd, hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return err_set(err, ERR_INVALID, "%d heads is not a multiple of %d KV heads", hp->n_head,
                       hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    hp->n_rot = hp->head_dim;
    int key_len = hp->head_dim;
    if (get_u32_opt(f, "llama.attention.key_length", 1, LLM_MAX_DIM, &key_len, err) ||
        get_u32_opt(f, "llama.rope.dimension_count", 0, LLM_MAX_DIM, &hp->n_rot, err))
        return ERR_INVALID;
    if (key_len != hp->head_dim)
        return err_set(err, ERR_UNSUPPORTED,
                       "llama.attention.key_length %d differs from "
                       "embedding / heads = %d: not supported",
                       key_len, hp->head_dim);
    if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return err_set(err, ERR_INVALID,
                       "llama.rope.dimension_count %d must be even and at "
                       "most the head size %d",
                       hp->n_rot, hp->head_dim);
    int n_expert = 0;
    if (get_u32_opt(f, "llama.expert_count", 0, 1u << 20, &n_expert, err)) return ERR_INVALID;
    if (n_expert > 0)
        return err_set(err, ERR_UNSUPPORTED,
                       "llama.expert_count = %d: mixture-of-experts "
                       "models are not supported",
                       n_expert);
    struct gguf_str scaling;
    rc = gguf_get_str(f, "llama.rope.scaling.type", &scaling, err);
    if (rc == 0 && !gguf_str_eq(scaling, "none"))
        return err_set(err, ERR_UNSUPPORTED, "llama.rope.scaling.type '%.*s' is not supported",
                       (int)(scaling.len > 32 ? 32 : scaling.len), scaling.ptr);
    if (rc && rc != ERR_NOTFOUND) return rc;
    const struct gguf_tensor *emb = find_tensor(m, "token_embd.weight", true, err);
    if (!emb) return ERR_INVALID;
    if (emb->ne[1] < 1 || emb->ne[1] > LLM_MAX_VOCAB)
        return err_set(err, ERR_INVALID, "tensor 'token_embd.weight' has %llu rows (vocabulary)",
                       (unsigned long long)emb->ne[1]);
    hp->n_vocab = (int)emb->ne[1];
    if (get_u32_opt(f, "llama.vocab_size", 1, LLM_MAX_VOCAB, &hp->n_vocab, err)) return ERR_INVALID;
    return 0;
}

static int load_gguf_tensors(struct llm *m, struct err *err)
{
    const struct llm_hparams *hp = &m->hp;
    int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    if (load_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->tok_embd, err) ||
        load_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm, err) ||
        load_matrix(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output, err))
        return err->code;
    if (!m->output.data) m->output = m->tok_embd;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return err_set(err, ERR_NOMEM, "out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        struct llm_layer *L = &m->layers[l];
        char n[12][64];
        static const char *const suffix[12] = {
            "attn_norm.weight",   "attn_q.weight",   "attn_k.weight",   "attn_v.weight",
            "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
            "ffn_down.weight",    "attn_q.bias",     "attn_k.bias",     "attn_v.bias"};
        for (int i = 0; i < 12; i++)
            snprintf(n[i], sizeof n[i], "blk.%d.%s", l, suffix[i]);
        char nbo[64];
        snprintf(nbo, sizeof nbo, "blk.%d.attn_output.bias", l);
        if (load_vector(m, n[0], hp->n_embd, true, &L->attn_norm, err) ||
            load_matrix(m, n[1], hp->n_embd, q_dim, true, &L->wq, err) ||
            load_matrix(m, n[2], hp->n_embd, kv_dim, true, &L->wk, err) ||
            load_matrix(m, n[3], hp->n_embd, kv_dim, true, &L->wv, err) ||
            load_matrix(m, n[4], q_dim, hp->n_embd, true, &L->wo, err) ||
            load_vector(m, n[5], hp->n_embd, true, &L->ffn_norm, err) ||
            load_matrix(m, n[6], hp->n_embd, hp->n_ff, true, &L->w_gate, err) ||
            load_matrix(m, n[7], hp->n_embd, hp->n_ff, true, &L->w_up, err) ||
            load_matrix(m, n[8], hp->n_ff, hp->n_embd, true, &L->w_down, err) ||
            load_vector(m, n[9], q_dim, false, &L->bq, err) ||
            load_vector(m, n[10], kv_dim, false, &L->bk, err) ||
            load_vector(m, n[11], kv_dim, false, &L->bv, err) ||
            load_vector(m, nbo, hp->n_embd, false, &L->bo, err))
            return err->code;
    }
    return 0;
}

/* ---- loading: llama2.c checkpoint ---- */

static void bin_matrix(struct llm_w *w, const float **p, int rows, int cols)
{
    w->type = GGML_TYPE_F32;
    w->data = *p;
    w->rows = rows;
    w->cols = cols;
    *p += (size_t)rows * cols;
}

/* The llama2.c layout: a 7 x int32 header, then all f32 weights, each kind stacked over the
 * layers (all rms_att weights, then all wq, ...), then the RoPE tables it no longer uses, then
 * the classifier when the header's vocab_size is negative (unshared). */
static int load_bin(struct llm *m, const char *path, struct err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 28) {
        close(fd);
        return err_set(err, ERR_INVALID, "%s: too small for a llama2.c checkpoint", path);
    }
    m->map_len = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        return err_set(err, ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    }
    int32_t h[7];
    memcpy(h, m->map, sizeof h);
    int dim = h[0], hidden = h[1], n_layer = h[2], n_head = h[3], n_kv = h[4], vocab = h[5],
        seq_len = h[6];
    bool shared = vocab > 0;
    if (vocab < 0) vocab = -vocab;
    if (dim < 1 || dim > LLM_MAX_DIM || hidden < 1 || hidden > LLM_MAX_DIM || n_layer < 1 ||
        n_layer > LLM_MAX_LAYERS || n_head < 1 || n_head > dim || n_kv < 1 || n_kv > n_head ||
        vocab < 1 || vocab > LLM_MAX_VOCAB || seq_len < 1 || seq_len > LLM_MAX_CTX ||
        dim % n_head || n_head % n_kv || (dim / n_head) % 2)
        return err_set(err, ERR_INVALID,
                       "%s: bad llama2.c header (dim %d, hidden %d, layers %d, "
                       "heads %d, kv heads %d, vocab %d, seq_len %d)",
                       path, dim, hidden, n_layer, n_head, n_kv, h[5], seq_len);
    struct llm_hparams *hp = &m->hp;
    *hp = (struct llm_hparams){.n_vocab = vocab,
                               .n_embd = dim,
                               .n_ff = hidden,
                               .n_layer = n_layer,
                               .n_head = n_head,
                               .n_head_kv = n_kv,
                               .head_dim = dim / n_head,
                               .n_rot = dim / n_head,
                               .n_ctx_train = seq_len,
                               .rope_theta = 10000.0f,
                               .rms_eps = 1e-5f};
    size_t hd = (size_t)hp->head_dim, kv_dim = (size_t)n_kv * hd, L = (size_t)n_layer;
    size_t need = (size_t)vocab * dim + L * dim * 2 + L * dim * dim * 2 + L * dim * kv_dim * 2 +
                  L * dim * (size_t)hidden * 3 + dim + (size_t)seq_len * hd +
                  (shared ? 0 : (size_t)vocab * dim);
    if (m->map_len - 28 < need * 4)
        return err_set(err, ERR_INVALID, "%s: %zu bytes of weights, the header implies %zu", path,
                       m->map_len - 28, need * 4);
    m->weight_bytes = need * 4;
    m->layers = calloc(L, sizeof *m->layers);
    if (!m->layers) return err_set(err, ERR_NOMEM, "out of memory");
    const float *p = (const float *)((const char *)m->map + 28);
    bin_matrix(&m->tok_embd, &p, vocab, dim);
    for (size_t l = 0; l < L; l++)
        m->layers[l].attn_norm = p + l * dim;
    p += L * dim;
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].wq, &p, dim, dim);
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].wk, &p, (int)kv_dim, dim);
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].wv, &p, (int)kv_dim, dim);
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].wo, &p, dim, dim);
    for (size_t l = 0; l < L; l++)
        m->layers[l].ffn_norm = p + l * dim;
    p += L * dim;
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].w_gate, &p, hidden, dim);
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].w_down, &p, dim, hidden);
    for (size_t l = 0; l < L; l++)
        bin_matrix(&m->layers[l].w_up, &p, hidden, dim);
    m->output_norm = p;
    p += dim;
    p += (size_t)seq_len * hd; /* freq_cis_real and _imag, (seq_len, head_dim / 2) each */
    if (shared)
        m->output = m->tok_embd;
    else
        bin_matrix(&m->output, &p, vocab, dim);
    return 0;
}

/* ---- load / free ---- */

/* Everything after the weights are in place: tokenizer check, RoPE table, pool. */
static int llm_finish(struct llm *m, const struct llm_opts *opts, const char *name, struct err *err)
{
    if (m->tok && tok_n_vocab(m->tok) != m->hp.n_vocab)
        return err_set(err, ERR_INVALID, "%s: the tokenizer has %d tokens, the model %d", name,
                       tok_n_vocab(m->tok), m->hp.n_vocab);
    int half = m->hp.n_rot / 2;
    m->rope_inv_freq = malloc((size_t)(half ? half : 1) * sizeof *m->rope_inv_freq);
    if (!m->rope_inv_freq) return err_set(err, ERR_NOMEM, "out of memory");
    /* Same float expression as llama2.c, so the two agree to the last bit. */
    for (int i = 0; i < half; i++)
        m->rope_inv_freq[i] = 1.0f / powf(m->hp.rope_theta, (float)(2 * i) / (float)m->hp.n_rot);
    if (opts->pool) {
        m->pool = opts->pool;
    } else if (opts->n_threads > 1) {
        m->pool = pool_new(opts->n_threads);
        if (!m->pool) return err_set(err, ERR_NOMEM, "cannot start %d threads", opts->n_threads);
        m->own_pool = true;
    }
    return 0;
}

static const struct llm_opts llm_default_opts;

/* Copies every weight matrix used by matmuls (not the embedding table, which is only read a
 * row per token) out of the file mapping into one anonymous region backed by transparent huge
 * pages, repacking the types with a faster interleaved layout (kern_repack_type). Why: a
 * matvec streams the whole model per token; with 4 KiB file pages the hardware prefetchers
 * stop at every page boundary and every page costs a TLB walk, which held Q4_0 and Q8_0
 * matvecs to ~13-17 GB/s against ~23-27 GB/s from 2 MiB pages. The copied file pages are
 * dropped from our RSS at once (MADV_DONTNEED; they stay in the page cache), so peak RSS stays
 * about one model. Failure to get memory is not an error: the mapping is used as before. */
static void pack_weights(struct llm *m)
{
    struct llm_w *ws[8 * 1024];
    int nw = 0;
    for (int l = 0; l < m->hp.n_layer && nw + 7 <= (int)(sizeof ws / sizeof ws[0]) - 1; l++) {
        struct llm_layer *L = &m->layers[l];
        struct llm_w *lw[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) ws[nw++] = lw[i];
    }
    if (m->output.data != m->tok_embd.data) ws[nw++] = &m->output;
    size_t total = 0;
    for (int i = 0; i < nw; i++)
        total += (ggml_row_size(ws[i]->type, (uint64_t)ws[i]->cols) * ws[i]->rows + 63) & ~(size_t)63;
    const size_t huge = (size_t)2 << 20;
    size_t len = (total + huge - 1) & ~(huge - 1);
    if (len == 0) return;
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return;
#ifdef MADV_HUGEPAGE
    madvise(mem, len, MADV_HUGEPAGE);
#endif
    const bool drop = gguf_is_mapped(m->gguf);
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uint8_t *at = mem;
    for (int i = 0; i < nw; i++) {
        struct llm_w *w = ws[i];
        if ((const uint8_t *)w->data >= (const uint8_t *)mem &&
            (const uint8_t *)w->data < (const uint8_t *)mem + len)
            continue; /* already copied under another name */
        size_t bytes = ggml_row_size(w->type, (uint64_t)w->cols) * w->rows;
        enum ggml_type pt = kern_repack_type(w->type, w->rows, w->cols);
        if (pt == w->type || kern_repack(w->type, w->data, at, w->rows, w->cols) != 0) {
            memcpy(at, w->data, bytes);
            pt = w->type;
        }
        if (drop) { /* the whole pages inside the copied tensor */
            uintptr_t b = ((uintptr_t)w->data + page - 1) & ~(page - 1);
            uintptr_t e = ((uintptr_t)w->data + bytes) & ~(page - 1);
            if (e > b) madvise((void *)b, e - b, MADV_DONTNEED);
        }
        /* the same matrix under two names (never in GGUF llama files, but cheap to honour) */
        for (int j = i + 1; j < nw; j++)
            if (ws[j]->data == w->data) *ws[j] = (struct llm_w){pt, at, w->rows, w->cols};
        w->type = pt;
        w->data = at;
        at += (bytes + 63) & ~(size_t)63;
    }
    m->wmem = mem;
    m->wmem_len = len;
}

struct llm *llm_load_gguf(struct gguf_file *f, const struct llm_opts *opts, const char *name,
                          struct err *err)
{
    if (!opts) opts = &llm_default_opts;
    if (!name) name = "model";
    kern_init();
    struct llm *m = calloc(1, sizeof *m);
    if (!m) {
        gguf_close(f);
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->gguf = f;
    if (load_gguf_hparams(m, err) || load_gguf_tensors(m, err)) {
        err_prefix(err, "%s", name);
        goto fail;
    }
    if (!opts->no_tokenizer) {
        m->tok = tok_load_gguf(m->gguf, err);
        if (!m->tok) {
            err_prefix(err, "%s", name);
            goto fail;
        }
    }
    if (llm_finish(m, opts, name, err)) goto fail;
    if (!opts->map_weights) pack_weights(m);
    return m;
fail:
    llm_free(m);
    return NULL;
}

struct llm *llm_load(const char *path, const struct llm_opts *opts, struct err *err)
{
    if (!opts) opts = &llm_default_opts;
    uint32_t magic = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        err_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t got = fread(&magic, 1, 4, fp);
    fclose(fp);
    if (got == 4 && magic == GGUF_MAGIC) {
        struct gguf_file *f = gguf_open(path, err);
        return f ? llm_load_gguf(f, opts, path, err) : NULL;
    }
    kern_init();
    struct llm *m = calloc(1, sizeof *m);
    if (!m) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (load_bin(m, path, err)) goto fail;
    if (opts->tokenizer_path && !opts->no_tokenizer) {
        m->tok = tok_load_llama2c(opts->tokenizer_path, m->hp.n_vocab, err);
        if (!m->tok) goto fail;
    }
    if (llm_finish(m, opts, path, err)) goto fail;
    return m;
fail:
    llm_free(m);
    return NULL;
}

void llm_free(struct llm *m)
{
    if (!m) return;
    if (m->own_pool) pool_free(m->pool);
    tok_free(m->tok);
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->layers);
    free(m->rope_inv_freq);
    gguf_close(m->gguf);
    if (m->map) munmap(m->map, m->map_len);
    if (m->wmem) munmap(m->wmem, m->wmem_len);
    free(m);
}

const struct llm_hparams *llm_hparams(const struct llm *m)
{
    return &m->hp;
}
int llm_n_vocab(const struct llm *m)
{
    return m->hp.n_vocab;
}
int llm_n_ctx_train(const struct llm *m)
{
    return m->hp.n_ctx_train;
}
int llm_bos(const struct llm *m)
{
    return m->tok ? tok_bos(m->tok) : 1;
}
int llm_eos(const struct llm *m)
{
    return m->tok ? tok_eos(m->tok) : 2;
}
const struct tok *llm_tokenizer(const struct llm *m)
{
    return m->tok;
}
const struct gguf_file *llm_gguf(const struct llm *m)
{
    return m->gguf;
}
struct pool *llm_pool(const struct llm *m)
{
    return m->pool;
}
size_t llm_weight_bytes(const struct llm *m)
{
    return m->weight_bytes;
}

/* ---- context ---- */

struct llm_ctx {
    const struct llm *m;
    int n_seq, n_ctx, n_batch, n_threads;
    enum ggml_type kv_type;     /* F32 or F16 */
    size_t kv_elt;              /* bytes per cached value */
    uint8_t *k_cache, *v_cache; /* (n_layer, n_seq, n_ctx, kv_dim) of kv_type */
    float *f16_table;           /* (65536) f16 bits -> f32, for an f16 cache */
    int *seq_len;               /* (n_seq) positions held */
    int *tmp_len;               /* (n_seq) validation scratch */
    unsigned char *tmp_seen;    /* (n_seq) */
    unsigned char *want;        /* (n_batch) */
    /* activations for n_batch rows */
    float *x, *xb, *xo; /* (B, n_embd) */
    float *q, *att_out; /* (B, q_dim) */
    float *k, *v;       /* (B, kv_dim) */
    float *hb, *hb2;    /* (B, n_ff) */
    float *att;         /* (n_threads, n_ctx + head_dim) scores, then a V row */
    float *rope_cs;     /* (B, n_rot) cos, sin pairs */
    void *kscratch;
};

/* Byte offset of (layer, seq, pos) in the K or V cache. */
static size_t kv_offset(const struct llm_ctx *c, int l, int seq, int pos)
{
    size_t kv_dim = (size_t)c->m->hp.n_head_kv * c->m->hp.head_dim;
    return (((size_t)l * c->n_seq + seq) * c->n_ctx + pos) * kv_dim * c->kv_elt;
}

static size_t max_scratch(size_t cur, const struct llm_w *w, int n)
{
    size_t s = kern_scratch_size(w->type, w->cols, n);
    return s > cur ? s : cur;
}

struct llm_ctx *llm_ctx_new(const struct llm *m, int n_seq, int n_ctx, int n_batch, struct err *err)
{
    struct llm_ctx_cfg cfg = {n_seq, n_ctx, n_batch, false};
    return llm_ctx_new_cfg(m, &cfg, err);
}

struct llm_ctx *llm_ctx_new_cfg(const struct llm *m, const struct llm_ctx_cfg *cfg, struct err *err)
{
    const struct llm_hparams *hp = &m->hp;
    int n_seq = cfg->n_seq, n_ctx = cfg->n_ctx, n_batch = cfg->n_batch;
    if (n_ctx == 0) n_ctx = hp->n_ctx_train;
    if (n_batch == 0) n_batch = 256;
    if (n_seq < 1 || n_seq > 4096 || n_ctx < 1 || n_ctx > LLM_MAX_CTX || n_batch < 1 ||
        n_batch > 65536) {
        err_set(err, ERR_INVALID, "context: n_seq %d, n_ctx %d, n_batch %d out of range", n_seq,
                n_ctx, n_batch);
        return NULL;
    }
    struct llm_ctx *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->m = m;
    c->n_seq = n_seq;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    c->n_threads = m->pool ? pool_threads(m->pool) : 1;
    c->kv_type = cfg->kv_f16 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    c->kv_elt = cfg->kv_f16 ? 2 : 4;
    size_t B = (size_t)n_batch, q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t kv;
    if (__builtin_mul_overflow((size_t)hp->n_layer * n_seq, (size_t)n_ctx * kv_dim, &kv) ||
        kv > ((size_t)1 << 40) / c->kv_elt)
        goto oom;
    c->k_cache = calloc(kv, c->kv_elt);
    c->v_cache = calloc(kv, c->kv_elt);
    c->seq_len = calloc((size_t)n_seq, sizeof(int));
    c->tmp_len = calloc((size_t)n_seq, sizeof(int));
    c->tmp_seen = calloc((size_t)n_seq, 1);
    c->want = calloc(B, 1);
    c->x = malloc(B * hp->n_embd * sizeof(float));
    c->xb = malloc(B * hp->n_embd * sizeof(float));
    c->xo = malloc(B * hp->n_embd * sizeof(float));
    c->q = malloc(B * q_dim * sizeof(float));
    c->att_out = malloc(B * q_dim * sizeof(float));
    c->k = malloc(B * kv_dim * sizeof(float));
    c->v = malloc(B * kv_dim * sizeof(float));
    c->hb = malloc(B * hp->n_ff * sizeof(float));
    c->hb2 = malloc(B * hp->n_ff * sizeof(float));
    c->att = malloc((size_t)c->n_threads * n_ctx * sizeof(float));
    if (cfg->kv_f16) {
        /* A table beats converting bit by bit in the attention loops (4x on one core). */
        c->f16_table = malloc(65536 * sizeof(float));
        if (!c->f16_table) goto oom;
        for (unsigned i = 0; i < 65536; i++)
            c->f16_table[i] = kern_f16_to_f32((uint16_t)i);
    }
    c->rope_cs = malloc(B * (hp->n_rot + 2) * sizeof(float));
    size_t ks = max_scratch(0, &m->output, n_batch);
    for (int l = 0; l < hp->n_layer; l++) {
        const struct llm_layer *L = &m->layers[l];
        ks = max_scratch(ks, &L->wq, n_batch);
        ks = max_scratch(ks, &L->wk, n_batch);
        ks = max_scratch(ks, &L->wv, n_batch);
        ks = max_scratch(ks, &L->wo, n_batch);
        ks = max_scratch(ks, &L->w_gate, n_batch);
        ks = max_scratch(ks, &L->w_up, n_batch);
        ks = max_scratch(ks, &L->w_down, n_batch);
    }
    c->kscratch = ks ? aligned_alloc(64, (ks + 63) / 64 * 64) : NULL;
    if (!c->k_cache || !c->v_cache || !c->seq_len || !c->tmp_len || !c->tmp_seen || !c->want ||
        !c->x || !c->xb || !c->xo || !c->q || !c->att_out || !c->k || !c->v || !c->hb || !c->hb2 ||
        !c->att || !c->rope_cs || (ks && !c->kscratch))
        goto oom;
    return c;
oom:
    llm_ctx_free(c);
    err_set(err, ERR_NOMEM, "context: out of memory for a KV cache of %d x %d positions", n_seq,
            n_ctx);
    return NULL;
}

void llm_ctx_free(struct llm_ctx *c)
{
    if (!c) return;
    free(c->k_cache);
    free(c->f16_table);
    free(c->v_cache);
    free(c->seq_len);
    free(c->tmp_len);
    free(c->tmp_seen);
    free(c->want);
    free(c->x);
    free(c->xb);
    free(c->xo);
    free(c->q);
    free(c->att_out);
    free(c->k);
    free(c->v);
    free(c->hb);
    free(c->hb2);
    free(c->att);
    free(c->rope_cs);
    free(c->kscratch);
    free(c);
}

int llm_ctx_n_ctx(const struct llm_ctx *c)
{
    return c->n_ctx;
}
int llm_ctx_n_seq(const struct llm_ctx *c)
{
    return c->n_seq;
}

size_t llm_ctx_kv_bytes(const struct llm_ctx *c)
{
    const struct llm_hparams *hp = &c->m->hp;
    return 2 * (size_t)hp->n_layer * c->n_seq * c->n_ctx * hp->n_head_kv * hp->head_dim * c->kv_elt;
}

int llm_seq_len(const struct llm_ctx *c, int seq)
{
    return seq >= 0 && seq < c->n_seq ? c->seq_len[seq] : 0;
}

void llm_seq_clear(struct llm_ctx *c, int seq)
{
    if (seq >= 0 && seq < c->n_seq) c->seq_len[seq] = 0;
}

void llm_seq_truncate(struct llm_ctx *c, int seq, int n_pos)
{
    if (seq >= 0 && seq < c->n_seq && n_pos >= 0 && n_pos < c->seq_len[seq])
        c->seq_len[seq] = n_pos;
}

int llm_seq_copy(struct llm_ctx *c, int src, int dst, int n_pos)
{
    if (src < 0 || src >= c->n_seq || dst < 0 || dst >= c->n_seq) return ERR_INVALID;
    if (n_pos < 0 || n_pos > c->seq_len[src]) return ERR_INVALID;
    if (src != dst) {
        size_t kv_dim = (size_t)c->m->hp.n_head_kv * c->m->hp.head_dim;
        for (int l = 0; l < c->m->hp.n_layer; l++) {
            memcpy(c->k_cache + kv_offset(c, l, dst, 0), c->k_cache + kv_offset(c, l, src, 0),
                   (size_t)n_pos * kv_dim * c->kv_elt);
            memcpy(c->v_cache + kv_offset(c, l, dst, 0), c->v_cache + kv_offset(c, l, src, 0),
                   (size_t)n_pos * kv_dim * c->kv_elt);
        }
    }
    c->seq_len[dst] = n_pos;
    return 0;
}

/* ---- forward ---- */

struct step {
    struct llm_ctx *c;
    int layer, n;
    const int *pos, *seq;
};

/* Attention for (row, head) pairs [b, e): the row's query against its sequence's cached keys
 * at positions 0..pos, softmax, weighted sum of the cached values. */
static void attention_chunk(void *ctx, size_t b, size_t e, int tid)
{
    const struct step *s = ctx;
    struct llm_ctx *c = s->c;
    const struct llm_hparams *hp = &c->m->hp;
    const int H = hp->n_head, D = hp->head_dim, group = hp->n_head / hp->n_head_kv;
    const size_t kv_dim = (size_t)hp->n_head_kv * D, q_dim = (size_t)H * D;
    const float scale = 1.0f / sqrtf((float)D);
    float *att = c->att + (size_t)tid * c->n_ctx;
    const float *tab = c->f16_table;
    const size_t kv_row = kv_dim * c->kv_elt, head_off = (size_t)D * c->kv_elt;
    for (size_t i = b; i < e; i++) {
        int r = (int)(i / (size_t)H), h = (int)(i % (size_t)H), hk = h / group;
        int T = s->pos[r] + 1;
        const float *q = c->q + r * q_dim + (size_t)h * D;
        const uint8_t *kc = c->k_cache + kv_offset(c, s->layer, s->seq[r], 0) + hk * head_off;
        const uint8_t *vc = c->v_cache + kv_offset(c, s->layer, s->seq[r], 0) + hk * head_off;
        float *o = c->att_out + r * q_dim + (size_t)h * D;
        for (int d = 0; d < D; d++)
            o[d] = 0.0f;
        if (tab && kern_isa() < KERN_ISA_AVX512) {
            /* f16 cache without AVX-512: the table beats converting bit by bit */
            for (int t = 0; t < T; t++) {
                const uint16_t *kr = (const uint16_t *)(kc + (size_t)t * kv_row);
                float sum = 0.0f;
                for (int d = 0; d < D; d++)
                    sum += tab[kr[d]] * q[d];
                att[t] = sum * scale;
            }
            ops_softmax(att, T);
            for (int t = 0; t < T; t++) {
                const uint16_t *vr = (const uint16_t *)(vc + (size_t)t * kv_row);
                float a = att[t];
                for (int d = 0; d < D; d++)
                    o[d] += a * tab[vr[d]];
            }
            continue;
        }
        kern_attn_scores(c->kv_type, q, kc, kv_row, T, D, scale, att);
        kern_softmax(att, T);
        kern_attn_accum(c->kv_type, att, vc, kv_row, T, D, o);
    }
}

/* Work below this many multiply-adds runs on the calling thread: waking the pool costs more
 * than it saves (tiny models, and machines shared with other processes). */
#define LLM_PAR_MIN_WORK (1u << 17)

static void matmul(struct llm_ctx *c, const struct llm_w *w, const float *x, float *y, int n)
{
    size_t work = (size_t)w->rows * w->cols * n;
    kern_matmul(w->type, w->data, x, y, w->rows, w->cols, n, c->kscratch,
                work >= LLM_PAR_MIN_WORK ? c->m->pool : NULL);
}

static void add_bias(float *y, const float *bias, int n, int dim)
{
    if (!bias) return;
    for (int r = 0; r < n; r++)
        for (int i = 0; i < dim; i++)
            y[(size_t)r * dim + i] += bias[i];
}

static void kv_store(const struct llm_ctx *c, uint8_t *dst, const float *src, int n)
{
    if (c->kv_type == GGML_TYPE_F32)
        memcpy(dst, src, (size_t)n * sizeof(float));
    else
        kern_quantize_row(c->kv_type, src, dst, n);
}

/* Rotates pairs (2i, 2i+1), i < n_rot / 2, of every head of n rows of x (n, n_heads, D). */
static void rope_rows(const struct llm_ctx *c, float *x, int n, int n_heads)
{
    const int D = c->m->hp.head_dim, half = c->m->hp.n_rot / 2;
    for (int r = 0; r < n; r++) {
        const float *cs = c->rope_cs + (size_t)r * (c->m->hp.n_rot + 2);
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)r * n_heads + h) * D;
            for (int i = 0; i < half; i++) {
                float fcr = cs[2 * i], fci = cs[2 * i + 1];
                float v0 = v[2 * i], v1 = v[2 * i + 1];
                v[2 * i] = v0 * fcr - v1 * fci;
                v[2 * i + 1] = v0 * fci + v1 * fcr;
            }
        }
    }
}

/* Row-wise element work (norms, residual adds, SwiGLU) spread over the pool for big batches
 * (prompt prefill); one row at a time is too small to be worth waking threads for. */
enum rowop { ROW_NORM, ROW_ADD, ROW_ADD_NORM, ROW_SWIGLU };

struct rowjob {
    enum rowop op;
    float *x, *xb, *hb;
    const float *xo, *hb2, *w;
    int E, F;
    float eps;
};

static void rowjob_chunk(void *ctx, size_t b, size_t e, int tid)
{
    (void)tid;
    const struct rowjob *j = ctx;
    for (size_t r = b; r < e; r++) {
        float *x = j->x + r * j->E;
        switch (j->op) {
        case ROW_ADD:
            for (int i = 0; i < j->E; i++)
                x[i] += j->xo[r * j->E + i];
            break;
        case ROW_ADD_NORM:
            for (int i = 0; i < j->E; i++)
                x[i] += j->xo[r * j->E + i];
            /* fall through */
        case ROW_NORM:
            ops_rmsnorm_forward(j->xb + r * j->E, NULL, x, j->w, 1, j->E, j->eps);
            break;
        case ROW_SWIGLU:
            ops_swiglu_forward(j->hb + r * j->F, j->hb + r * j->F, j->hb2 + r * j->F, 1, j->F);
            break;
        }
    }
}

static void rows_run(struct llm_ctx *c, struct rowjob *j, int n)
{
    size_t work = (size_t)n * (j->op == ROW_SWIGLU ? (size_t)j->F * 8 : (size_t)j->E * 4);
    if (c->m->pool && n > 1 && work >= LLM_PAR_MIN_WORK)
        pool_for(c->m->pool, (size_t)n, 0, rowjob_chunk, j);
    else
        rowjob_chunk(j, 0, (size_t)n, 0);
}

/* One forward over n <= n_batch validated rows; logits of rows with want != 0 go to `out`
 * in order. Returns the number of logit rows written. */
static int forward_chunk(struct llm_ctx *c, const int *token, const int *pos, const int *seq,
                         const unsigned char *want, int n, float *out)
{
    const struct llm *m = c->m;
    const struct llm_hparams *hp = &m->hp;
    const int E = hp->n_embd, F = hp->n_ff;
    const int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    const size_t row_bytes = ggml_row_size(m->tok_embd.type, (uint64_t)E);
    for (int r = 0; r < n; r++) {
        const char *er = (const char *)m->tok_embd.data + (size_t)token[r] * row_bytes;
        kern_dequantize_row(m->tok_embd.type, er, c->x + (size_t)r * E, E);
        float *cs = c->rope_cs + (size_t)r * (hp->n_rot + 2);
        for (int i = 0; i < hp->n_rot / 2; i++) {
            float a = (float)pos[r] * m->rope_inv_freq[i];
            cs[2 * i] = cosf(a);
            cs[2 * i + 1] = sinf(a);
        }
    }
    struct step st = {c, 0, n, pos, seq};
    for (int l = 0; l < hp->n_layer; l++) {
        const struct llm_layer *L = &m->layers[l];
        st.layer = l;
        if (l == 0) { /* later layers fuse this norm with the previous residual add */
            struct rowjob rj = {ROW_NORM, c->x,         c->xb, NULL, NULL,
                                NULL,     L->attn_norm, E,     F,    hp->rms_eps};
            rows_run(c, &rj, n);
        }
        matmul(c, &L->wq, c->xb, c->q, n);
        matmul(c, &L->wk, c->xb, c->k, n);
        matmul(c, &L->wv, c->xb, c->v, n);
        add_bias(c->q, L->bq, n, q_dim);
        add_bias(c->k, L->bk, n, kv_dim);
        add_bias(c->v, L->bv, n, kv_dim);
        rope_rows(c, c->q, n, hp->n_head);
        rope_rows(c, c->k, n, hp->n_head_kv);
        for (int r = 0; r < n; r++) {
            size_t at = kv_offset(c, l, seq[r], pos[r]);
            kv_store(c, c->k_cache + at, c->k + (size_t)r * kv_dim, kv_dim);
            kv_store(c, c->v_cache + at, c->v + (size_t)r * kv_dim, kv_dim);
        }
        size_t work = (size_t)n * hp->n_head, macs = 0;
        for (int r = 0; r < n; r++)
            macs += (size_t)(pos[r] + 1) * 2 * q_dim;
        if (m->pool && work > 1 && macs >= LLM_PAR_MIN_WORK)
            pool_for(m->pool, work, 1, attention_chunk, &st);
        else
            attention_chunk(&st, 0, work, 0);
        matmul(c, &L->wo, c->att_out, c->xo, n);
        add_bias(c->xo, L->bo, n, E);
        struct rowjob rj = {ROW_ADD_NORM, c->x,        c->xb, c->hb, c->xo,
                            c->hb2,       L->ffn_norm, E,     F,     hp->rms_eps};
        rows_run(c, &rj, n); /* x += attention out; xb = norm(x) */
        matmul(c, &L->w_gate, c->xb, c->hb, n);
        matmul(c, &L->w_up, c->xb, c->hb2, n);
        rj.op = ROW_SWIGLU;
        rows_run(c, &rj, n);
        matmul(c, &L->w_down, c->hb, c->xo, n);
        /* x += ffn out, then the next layer's attention norm in the same pass */
        rj.op = l + 1 < hp->n_layer ? ROW_ADD_NORM : ROW_ADD;
        rj.w = l + 1 < hp->n_layer ? m->layers[l + 1].attn_norm : NULL;
        rows_run(c, &rj, n);
    }
    /* Final norm only for the rows that want logits, packed, then one classifier matmul. */
    int k = 0;
    for (int r = 0; r < n; r++) {
        if (!want[r]) continue;
        ops_rmsnorm_forward(c->xb + (size_t)k * E, NULL, c->x + (size_t)r * E, m->output_norm, 1, E,
                            hp->rms_eps);
        k++;
    }
    if (k > 0 && out) matmul(c, &m->output, c->xb, out, k);
    return k;
}

int llm_decode(struct llm_ctx *c, const struct llm_batch *b, float *logits_out, struct err *err)
{
    const struct llm_hparams *hp = &c->m->hp;
    if (b->n < 1) return err_set(err, ERR_INVALID, "decode: empty batch");
    if (!b->token || !b->pos || !b->seq)
        return err_set(err, ERR_INVALID, "decode: batch without token, pos or seq arrays");
    memcpy(c->tmp_len, c->seq_len, (size_t)c->n_seq * sizeof(int));
    memset(c->tmp_seen, 0, (size_t)c->n_seq);
    for (int i = 0; i < b->n; i++) {
        int t = b->token[i], p = b->pos[i], s = b->seq[i];
        if (t < 0 || t >= hp->n_vocab)
            return err_set(err, ERR_INVALID,
                           "decode: row %d: token %d outside the vocabulary "
                           "(%d)",
                           i, t, hp->n_vocab);
        if (s < 0 || s >= c->n_seq)
            return err_set(err, ERR_INVALID, "decode: row %d: sequence %d outside [0, %d)", i, s,
                           c->n_seq);
        if (p < 0 || p >= c->n_ctx)
            return err_set(err, ERR_INVALID,
                           "decode: row %d: position %d outside the context "
                           "(%d)",
                           i, p, c->n_ctx);
        if (c->tmp_seen[s] ? p != c->tmp_len[s] : p > c->tmp_len[s])
            return err_set(err, ERR_INVALID,
                           "decode: row %d: position %d of sequence %d leaves "
                           "a gap or goes back (it holds %d)",
                           i, p, s, c->tmp_len[s]);
        c->tmp_seen[s] = 1;
        c->tmp_len[s] = p + 1;
    }
    memcpy(c->seq_len, c->tmp_len, (size_t)c->n_seq * sizeof(int));
    float *out = logits_out;
    for (int at = 0; at < b->n; at += c->n_batch) {
        int n = b->n - at < c->n_batch ? b->n - at : c->n_batch;
        /* which rows want logits: the caller's flags, or the batch's last row */
        const unsigned char *want = c->want;
        if (b->logits) {
            want = b->logits + at;
        } else {
            memset(c->want, 0, (size_t)n);
            if (at + n == b->n) c->want[n - 1] = 1;
        }
        int k = forward_chunk(c, b->token + at, b->pos + at, b->seq + at, want, n, out);
        if (out) out += (size_t)k * hp->n_vocab;
    }
    return 0;
}
