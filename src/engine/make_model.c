/* make-model: a random-weight LLaMA GGUF of a known shape. Each row's values come from its
 * own generator seeded by (seed, tensor, row), so rows can be filled by any thread in any
 * order and the file is the same for a seed. Rows are generated in f32 and converted straight
 * to the target type (quant_tensor_type decides per tensor), so only the output is held in
 * memory. */
#include "engine/make_model.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/log.h"
#include "base/pool.h"
#include "engine/gguf.h"
#include "engine/kernels.h"

static const struct make_model_shape k_shapes[] = {
    {"tinyllama", 2048, 22, 32, 4, 5632, 2048, 10000.0f, 1e-5f},
    {"test", 256, 2, 4, 2, 512, 256, 10000.0f, 1e-5f},
};

const struct make_model_shape *make_model_shape_find(const char *name)
{
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (strcmp(name, k_shapes[i].name) == 0) return &k_shapes[i];
    return NULL;
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct gen_ctx {
    enum ggml_type type;
    uint8_t *dst;
    size_t drow;
    int cols;
    float sd;     /* 0: constant 1 (norm weights) */
    uint64_t seed;
    float *bufs[256];
    int failed;
};

/* Approximately Gaussian values (sum of four uniforms, scaled to unit variance). */
static void gen_job(void *ctx, size_t b, size_t e, int tid)
{
    struct gen_ctx *g = ctx;
    float *x = g->bufs[tid];
    for (size_t r = b; r < e; r++) {
        uint64_t s = g->seed ^ (r * 0xD1B54A32D192ED03ull);
        for (int c = 0; c < g->cols; c++) {
            if (g->sd == 0) {
                x[c] = 1.0f;
                continue;
            }
            uint64_t v = splitmix64(&s);
            float u = (float)(v & 0xFFFF) + (float)((v >> 16) & 0xFFFF) +
                      (float)((v >> 32) & 0xFFFF) + (float)(v >> 48);
            x[c] = (u / 65536.0f - 2.0f) * 1.7320508f * g->sd;
        }
        if (kern_quantize_row(g->type, x, g->dst + r * g->drow, g->cols) != 0) g->failed = 1;
    }
}

struct mm_state {
    struct gguf_writer *w;
    struct pool *pool;
    void **bufs;
    int n_bufs, cap_bufs;
    uint64_t seed;
    int tensor_idx;
    enum quant_ftype ft;
    int n_layer;
    uint64_t bytes;
};

/* Adds one tensor of ne[0] x ne[1] (ne[1] = 1 for 1-D) filled with N(0, sd) or ones. */
static int add_tensor(struct mm_state *st, const char *name, int n_dims, uint64_t ne0,
                      uint64_t ne1, float sd, struct err *err)
{
    enum ggml_type t = quant_tensor_type(st->ft, name, (uint32_t)n_dims, ne0, st->n_layer,
                                         GGML_TYPE_F32);
    size_t drow = (size_t)ggml_row_size(t, ne0);
    size_t nbytes = drow * ne1;
    if (st->n_bufs == st->cap_bufs) {
        int cap = st->cap_bufs ? 2 * st->cap_bufs : 64;
        void **nb = realloc(st->bufs, sizeof *nb * (size_t)cap);
        if (!nb) return err_set(err, ERR_NOMEM, "out of memory");
        st->bufs = nb;
        st->cap_bufs = cap;
    }
    uint8_t *dst = malloc(nbytes ? nbytes : 1);
    if (!dst) return err_set(err, ERR_NOMEM, "out of memory for '%s' (%zu bytes)", name, nbytes);
    st->bufs[st->n_bufs++] = dst;
    struct gen_ctx g = {.type = t, .dst = dst, .drow = drow, .cols = (int)ne0, .sd = sd,
                        .seed = st->seed * 0x9E3779B97F4A7C15ull + (uint64_t)st->tensor_idx++};
    int nt = pool_threads(st->pool), rc = 0;
    for (int i = 0; i < nt; i++) {
        g.bufs[i] = malloc(sizeof(float) * ne0);
        if (!g.bufs[i]) rc = err_set(err, ERR_NOMEM, "out of memory");
    }
    if (rc == 0) {
        pool_for(st->pool, (size_t)ne1, 0, gen_job, &g);
        if (g.failed) rc = err_set(err, ERR_INVALID, "'%s': converting rows to %s failed", name,
                                   ggml_type_name(t));
    }
    for (int i = 0; i < nt; i++) free(g.bufs[i]);
    if (rc) return rc;
    uint64_t ne[2] = {ne0, ne1};
    st->bytes += nbytes;
    return gguf_writer_add_tensor(st->w, name, t, (uint32_t)n_dims, ne, dst, true, err);
}

int make_model_write(const struct make_model_opts *o, struct err *err)
{
    const struct make_model_shape *sh = o->shape;
    if (!sh || sh->n_head <= 0 || sh->n_head_kv <= 0 || sh->n_embd % sh->n_head ||
        sh->n_head % sh->n_head_kv)
        return err_set(err, ERR_INVALID, "make-model: inconsistent shape");
    struct gguf_file *voc = gguf_open(o->vocab_path, err);
    if (!voc) return err_prefix(err, "tokenizer file");
    const struct gguf_kv *tok = gguf_find(voc, "tokenizer.ggml.tokens");
    if (!tok || tok->type != GGUF_TYPE_ARRAY || tok->arr_type != GGUF_TYPE_STRING ||
        tok->arr_n == 0 || tok->arr_n > 1000000) {
        gguf_close(voc);
        return err_set(err, ERR_INVALID, "%s: no usable tokenizer.ggml.tokens array",
                       o->vocab_path);
    }
    uint64_t n_vocab = tok->arr_n;
    struct mm_state st = {.w = gguf_writer_new(), .pool = pool_new(o->n_threads),
                          .seed = o->seed, .ft = o->ftype, .n_layer = sh->n_layer};
    int rc = 0;
    if (!st.w || !st.pool) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    struct gguf_writer *w = st.w;
    char name[96];
    snprintf(name, sizeof name, "random %s (seed %" PRIu64 ")", sh->name, o->seed);
    int head_dim = sh->n_embd / sh->n_head, n_embd_kv = head_dim * sh->n_head_kv;
    if (gguf_writer_set_str(w, "general.architecture", "llama") ||
        gguf_writer_set_str(w, "general.name", name) ||
        gguf_writer_set_u32(w, "general.file_type", (uint32_t)o->ftype) ||
        gguf_writer_set_u32(w, "llama.context_length", (uint32_t)sh->n_ctx) ||
        gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)sh->n_embd) ||
        gguf_writer_set_u32(w, "llama.block_count", (uint32_t)sh->n_layer) ||
        gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)sh->n_ff) ||
        gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim) ||
        gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)sh->n_head) ||
        gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)sh->n_head_kv) ||
        gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", sh->rms_eps) ||
        gguf_writer_set_f32(w, "llama.rope.freq_base", sh->rope_theta) ||
        gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab)) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    int n_tok_keys = 0;
    for (uint64_t i = 0; i < gguf_n_kv(voc); i++) {
        const struct gguf_kv *kv = gguf_kv_at(voc, i);
        if (kv->key.len > 10 && memcmp(kv->key.ptr, "tokenizer.", 10) == 0) {
            if ((rc = gguf_writer_copy_kv(w, kv)) != 0) {
                err_set(err, rc, "copying %.*s failed", (int)kv->key.len, kv->key.ptr);
                goto done;
            }
            n_tok_keys++;
        }
    }
    float s_embd = 0.5f / sqrtf((float)sh->n_embd), s_ff = 0.5f / sqrtf((float)sh->n_ff);
    uint64_t E = (uint64_t)sh->n_embd;
    if ((rc = add_tensor(&st, "token_embd.weight", 2, E, n_vocab, 1.0f, err))) goto done;
    for (int l = 0; l < sh->n_layer && rc == 0; l++) {
        char tn[64];
#define ADD(suffix, nd, a, b, sd)                                                              \
    do {                                                                                       \
        snprintf(tn, sizeof tn, "blk.%d.%s", l, suffix);                                       \
        if (rc == 0) rc = add_tensor(&st, tn, nd, a, b, sd, err);                              \
    } while (0)
        ADD("attn_norm.weight", 1, E, 1, 0.0f);
        ADD("attn_q.weight", 2, E, E, s_embd);
        ADD("attn_k.weight", 2, E, (uint64_t)n_embd_kv, s_embd);
        ADD("attn_v.weight", 2, E, (uint64_t)n_embd_kv, s_embd);
        ADD("attn_output.weight", 2, E, E, s_embd);
        ADD("ffn_norm.weight", 1, E, 1, 0.0f);
        ADD("ffn_gate.weight", 2, E, (uint64_t)sh->n_ff, s_embd);
        ADD("ffn_down.weight", 2, (uint64_t)sh->n_ff, E, s_ff);
        ADD("ffn_up.weight", 2, E, (uint64_t)sh->n_ff, s_embd);
#undef ADD
    }
    if (rc) goto done;
    if ((rc = add_tensor(&st, "output_norm.weight", 1, E, 1, 0.0f, err))) goto done;
    if ((rc = add_tensor(&st, "output.weight", 2, E, n_vocab, s_embd, err))) goto done;
    if ((rc = gguf_writer_write(w, o->out_path, err))) goto done;
    log_info("make-model", "%s: %s shape, %s, vocab %" PRIu64 " (%d tokenizer keys), %.1f MB",
             o->out_path, sh->name, quant_ftype_name(o->ftype), n_vocab, n_tok_keys,
             st.bytes / 1e6);
done:
    for (int i = 0; i < st.n_bufs; i++) free(st.bufs[i]);
    free(st.bufs);
    gguf_writer_free(st.w);
    pool_free(st.pool);
    gguf_close(voc);
    return rc;
}

int make_model_cli(int argc, char **argv)
{
    const char *shape = "tinyllama", *type = "q4_0", *out = NULL, *vocab = NULL;
    long seed = 1, threads = 2;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(MAKE_MODEL_USAGE, stdout);
            return 0;
        }
        if (cli_opt_str(argc, argv, &i, "--shape", &shape, &bad) ||
            cli_opt_str(argc, argv, &i, "--type", &type, &bad) ||
            cli_opt_str(argc, argv, &i, "-o", &out, &bad) ||
            cli_opt_str(argc, argv, &i, "--vocab", &vocab, &bad) ||
            cli_opt_int(argc, argv, &i, "--seed", 0, 0x7fffffffL, &seed, &bad) ||
            cli_opt_int(argc, argv, &i, "--threads", 1, 256, &threads, &bad)) {
            if (bad) return 2;
            continue;
        }
        fprintf(stderr, "make-model: unexpected argument '%s'\n%s", argv[i], MAKE_MODEL_USAGE);
        return 2;
    }
    if (!out) {
        fprintf(stderr, "make-model: -o FILE is required\n%s", MAKE_MODEL_USAGE);
        return 2;
    }
    const struct make_model_shape *sh = make_model_shape_find(shape);
    if (!sh) {
        fprintf(stderr, "make-model: unknown shape '%s' (tinyllama, test)\n", shape);
        return 2;
    }
    int ft = quant_ftype_parse(type);
    if (ft < 0) {
        fprintf(stderr, "make-model: unknown type '%s' (f32, f16, bf16, q8_0, q4_0, q4_k_m)\n",
                type);
        return 2;
    }
    char vbuf[4096];
    if (!vocab) {
        const char *data = getenv("DATA");
        snprintf(vbuf, sizeof vbuf, "%s/models/gguf-vocab/ggml-vocab-llama-spm.gguf",
                 data && *data ? data : "../shared/data");
        vocab = vbuf;
    }
    struct make_model_opts o = {.shape = sh, .ftype = (enum quant_ftype)ft,
                                .seed = (uint64_t)seed, .vocab_path = vocab, .out_path = out,
                                .n_threads = (int)threads};
    struct err err = {0};
    if (make_model_write(&o, &err) != 0) {
        fprintf(stderr, "make-model: %s\n", err.msg);
        return 1;
    }
    return 0;
}
