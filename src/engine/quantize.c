/* Quantizing GGUF models: the per-tensor type rule, the row converter, and the `quantize`
 * subcommand. Conversion goes through f32 one row at a time (dequantize the source row,
 * quantize it to the target), so memory stays at the output's size plus a row per thread. */
#include "engine/quantize.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/cli.h"
#include "base/log.h"
#include "engine/kernels.h"

static const struct {
    const char *name;
    enum quant_ftype ft;
} k_ftypes[] = {
    {"f32", QUANT_FTYPE_F32},   {"f16", QUANT_FTYPE_F16},   {"bf16", QUANT_FTYPE_BF16},
    {"q8_0", QUANT_FTYPE_Q8_0}, {"q4_0", QUANT_FTYPE_Q4_0}, {"q4_k_m", QUANT_FTYPE_Q4_K_M},
};

int quant_ftype_parse(const char *s)
{
    for (size_t i = 0; i < sizeof k_ftypes / sizeof k_ftypes[0]; i++)
        if (strcasecmp(s, k_ftypes[i].name) == 0) return (int)k_ftypes[i].ft;
    return -1;
}

const char *quant_ftype_name(enum quant_ftype ft)
{
    for (size_t i = 0; i < sizeof k_ftypes / sizeof k_ftypes[0]; i++)
        if (k_ftypes[i].ft == ft) return k_ftypes[i].name;
    return "?";
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* "blk.N." prefix -> N, else -1. */
static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long v = strtol(name + 4, &end, 10);
    if (end == name + 4 || *end != '.' || v < 0 || v > 100000) return -1;
    return (int)v;
}

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer
 * in between, are the most sensitive to attn_v / ffn_down precision. */
static bool more_bits(int i, int n)
{
    if (n <= 0 || i < 0) return false;
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

enum ggml_type quant_tensor_type(enum quant_ftype ft, const char *name, uint32_t n_dims,
                                 uint64_t row_len, int n_layer, enum ggml_type src_type)
{
    if (n_dims != 2 || !ends_with(name, ".weight")) return src_type;
    enum ggml_type t;
    switch (ft) {
    case QUANT_FTYPE_F32: t = GGML_TYPE_F32; break;
    case QUANT_FTYPE_F16: t = GGML_TYPE_F16; break;
    case QUANT_FTYPE_BF16: t = GGML_TYPE_BF16; break;
    case QUANT_FTYPE_Q8_0: t = GGML_TYPE_Q8_0; break;
    case QUANT_FTYPE_Q4_0:
        t = strcmp(name, "output.weight") == 0 ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_0;
        break;
    case QUANT_FTYPE_Q4_K_M:
        t = GGML_TYPE_Q4_K;
        if (strcmp(name, "output.weight") == 0) t = GGML_TYPE_Q6_K;
        else if ((ends_with(name, ".attn_v.weight") || ends_with(name, ".ffn_down.weight")) &&
                 more_bits(layer_of(name), n_layer))
            t = GGML_TYPE_Q6_K;
        break;
    default: return src_type;
    }
    if (t == GGML_TYPE_Q6_K && row_len % 256 != 0 && ft == QUANT_FTYPE_Q4_0) t = GGML_TYPE_Q4_0;
    uint32_t bs = ggml_blck_size(t);
    if (bs == 0 || row_len % bs != 0) return src_type;
    if (!kern_type_supported(src_type)) return src_type; /* cannot read it: copy */
    return t;
}

struct conv_ctx {
    enum ggml_type dt, st;
    uint8_t *dst;
    const uint8_t *src;
    uint64_t row_len;
    size_t drow, srow;
    float *bufs[256];
    int failed;
};

static void conv_job(void *ctx, size_t b, size_t e, int tid)
{
    struct conv_ctx *c = ctx;
    float *buf = c->bufs[tid];
    for (size_t r = b; r < e; r++) {
        if (kern_dequantize_row(c->st, c->src + r * c->srow, buf, (int64_t)c->row_len) != 0 ||
            kern_quantize_row(c->dt, buf, c->dst + r * c->drow, (int64_t)c->row_len) != 0)
            c->failed = 1;
    }
}

int quant_convert(enum ggml_type dst_type, void *dst, enum ggml_type src_type, const void *src,
                  uint64_t row_len, uint64_t nrows, struct pool *pool, struct err *err)
{
    size_t drow = (size_t)ggml_row_size(dst_type, row_len);
    size_t srow = (size_t)ggml_row_size(src_type, row_len);
    if (!kern_type_supported(dst_type) || !kern_type_supported(src_type) || drow == 0 ||
        srow == 0)
        return err_set(err, ERR_UNSUPPORTED, "cannot convert %s rows of %" PRIu64 " to %s",
                       ggml_type_name(src_type) ? ggml_type_name(src_type) : "?", row_len,
                       ggml_type_name(dst_type) ? ggml_type_name(dst_type) : "?");
    if (src_type == dst_type) {
        memcpy(dst, src, srow * nrows);
        return 0;
    }
    struct conv_ctx c = {.dt = dst_type, .st = src_type, .dst = dst, .src = src,
                         .row_len = row_len, .drow = drow, .srow = srow};
    int nt = pool_threads(pool);
    int rc = 0;
    for (int t = 0; t < nt; t++) {
        c.bufs[t] = malloc(sizeof(float) * row_len);
        if (!c.bufs[t]) rc = err_set(err, ERR_NOMEM, "out of memory for a row of %" PRIu64, row_len);
    }
    if (rc == 0) {
        pool_for(pool, (size_t)nrows, 0, conv_job, &c);
        if (c.failed) rc = err_set(err, ERR_INVALID, "row conversion failed");
    }
    for (int t = 0; t < nt; t++) free(c.bufs[t]);
    return rc;
}

/* Number of layers from the architecture's block_count, else one past the largest blk.N. */
static int model_layers(const struct gguf_file *f)
{
    struct gguf_str arch;
    if (gguf_get_str(f, "general.architecture", &arch, NULL) == 0 && arch.len < 64) {
        char key[128];
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch.len, arch.ptr);
        uint32_t n;
        if (gguf_get_u32(f, key, &n, NULL) == 0) return (int)n;
    }
    int n = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        int l = layer_of(name);
        if (l + 1 > n) n = l + 1;
    }
    return n;
}

int quant_file(const char *in, const char *out, enum quant_ftype ft, int n_threads,
               struct err *err)
{
    struct gguf_file *f = gguf_open(in, err);
    if (!f) return err ? err->code : ERR_INVALID;
    int rc = 0;
    struct gguf_writer *w = gguf_writer_new();
    struct pool *pool = pool_new(n_threads);
    void **bufs = calloc(gguf_n_tensors(f) + 1, sizeof *bufs);
    if (!w || !pool || !bufs) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    gguf_writer_set_alignment(w, (uint32_t)gguf_alignment(f));
    for (uint64_t i = 0; i < gguf_n_kv(f) && rc == 0; i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        if (gguf_str_eq(kv->key, "general.alignment")) continue; /* the writer sets it */
        rc = gguf_writer_copy_kv(w, kv);
        if (rc) err_set(err, rc, "%s: copying metadata key %.*s failed", in, (int)kv->key.len,
                        kv->key.ptr);
    }
    if (rc == 0 && gguf_writer_set_u32(w, "general.file_type", (uint32_t)ft))
        rc = err_set(err, ERR_NOMEM, "out of memory");
    int n_layer = model_layers(f);
    uint64_t n_conv = 0, bytes_in = 0, bytes_out = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f) && rc == 0; i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char name[256];
        if (t->name.len >= sizeof name) {
            rc = err_set(err, ERR_INVALID, "%s: tensor %" PRIu64 " has a name of %" PRIu64
                         " bytes (at most 255 supported)", in, i, t->name.len);
            break;
        }
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        enum ggml_type dt = quant_tensor_type(ft, name, t->n_dims, t->ne[0], n_layer, t->type);
        const void *data = t->data;
        uint64_t nbytes = t->nbytes;
        if (dt != t->type) {
            uint64_t nrows = t->ne[1] * t->ne[2] * t->ne[3];
            nbytes = ggml_row_size(dt, t->ne[0]) * nrows;
            bufs[i] = malloc(nbytes ? nbytes : 1);
            if (!bufs[i]) {
                rc = err_set(err, ERR_NOMEM, "out of memory for tensor '%s' (%" PRIu64 " bytes)",
                             name, nbytes);
                break;
            }
            rc = quant_convert(dt, bufs[i], t->type, t->data, t->ne[0], nrows, pool, err);
            if (rc) {
                err_prefix(err, "tensor '%s'", name);
                break;
            }
            data = bufs[i];
            n_conv++;
        } else if (t->n_dims == 2 && ends_with(name, ".weight") && ft != QUANT_FTYPE_F32) {
            log_info("quantize", "%s: kept as %s (row length %" PRIu64 ")", name,
                     ggml_type_name(t->type) ? ggml_type_name(t->type) : "?", t->ne[0]);
        }
        bytes_in += t->nbytes;
        bytes_out += nbytes;
        rc = gguf_writer_add_tensor(w, name, dt, t->n_dims, t->ne, data, true, err);
    }
    if (rc == 0) rc = gguf_writer_write(w, out, err);
    if (rc == 0)
        log_info("quantize", "%s -> %s (%s): %" PRIu64 " tensors converted, %.1f MB -> %.1f MB",
                 in, out, quant_ftype_name(ft), n_conv, bytes_in / 1e6, bytes_out / 1e6);
done:
    if (bufs)
        for (uint64_t i = 0; i < gguf_n_tensors(f); i++) free(bufs[i]);
    free(bufs);
    pool_free(pool);
    gguf_writer_free(w);
    gguf_close(f);
    return rc;
}

int quantize_cli(int argc, char **argv)
{
    const char *pos[3];
    int npos = 0;
    long threads = 2;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(QUANTIZE_USAGE, stdout);
            return 0;
        }
        if (cli_opt_int(argc, argv, &i, "--threads", 1, 256, &threads, &bad)) {
            if (bad) return 2;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "quantize: unknown option '%s'\n%s", argv[i], QUANTIZE_USAGE);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            fprintf(stderr, "quantize: too many arguments ('%s')\n%s", argv[i], QUANTIZE_USAGE);
            return 2;
        }
    }
    if (npos != 3) {
        fprintf(stderr, "quantize: expected IN.gguf OUT.gguf TYPE\n%s", QUANTIZE_USAGE);
        return 2;
    }
    int ft = quant_ftype_parse(pos[2]);
    if (ft < 0) {
        fprintf(stderr, "quantize: unknown TYPE '%s' (q8_0, q4_0, q4_k_m, f16, bf16, f32)\n",
                pos[2]);
        return 2;
    }
    if (strcmp(pos[0], pos[1]) == 0) {
        fprintf(stderr, "quantize: IN and OUT are the same file\n");
        return 2;
    }
    struct err err = {0};
    if (quant_file(pos[0], pos[1], (enum quant_ftype)ft, (int)threads, &err) != 0) {
        fprintf(stderr, "quantize: %s\n", err.msg);
        return 1;
    }
    return 0;
}
