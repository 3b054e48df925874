/* quantize and make-model: every converted tensor dequantizes back to the original within the
 * type's bound; untouched tensors are bit-identical; metadata is copied with
 * general.file_type updated; the Q4_K_M layer rule matches llama.cpp's; make-model writes a
 * valid, deterministic file with llama.cpp's tensor names.
 *
 * Bounds (relative RMS error over a tensor of Gaussian values): q8_0 1 %, q4_0 12 %,
 * q4_K 9 %, q6_K 2.5 %, f16 0.1 %, bf16 0.4 %. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/make_model.h"
#include "engine/quantize.h"

struct src_tensor {
    const char *name;
    uint32_t n_dims;
    uint64_t ne0, ne1;
    enum ggml_type type;
    float *vals; /* ne0 * ne1 f32 values (as stored, after f16 rounding for f16 tensors) */
};

static struct src_tensor g_src[] = {
    {"token_embd.weight", 2, 256, 40, GGML_TYPE_F32, NULL},
    {"blk.0.attn_norm.weight", 1, 256, 1, GGML_TYPE_F32, NULL},
    {"blk.0.attn_q.weight", 2, 512, 16, GGML_TYPE_F32, NULL},
    {"blk.0.attn_v.weight", 2, 256, 64, GGML_TYPE_F32, NULL},
    {"blk.0.ffn_down.weight", 2, 512, 32, GGML_TYPE_F16, NULL},
    {"blk.0.odd.weight", 2, 100, 8, GGML_TYPE_F32, NULL},
    {"output.weight", 2, 256, 40, GGML_TYPE_F32, NULL},
};
#define N_SRC (sizeof g_src / sizeof g_src[0])

static uint64_t g_rng = 12345;
static float gauss(void)
{
    float s = 0;
    for (int k = 0; k < 4; k++) {
        g_rng ^= g_rng << 13;
        g_rng ^= g_rng >> 7;
        g_rng ^= g_rng << 17;
        s += (float)((g_rng >> 40) & 0xFFFFFF) / 16777216.0f;
    }
    return (s - 2.0f) * 1.732f;
}

static char g_dir[256], g_in[300];

static int setup(void **state)
{
    (void)state;
    test_tmpdir(g_dir, sizeof g_dir);
    snprintf(g_in, sizeof g_in, "%s/src.gguf", g_dir);
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(gguf_writer_set_u32(w, "llama.block_count", 1), 0);
    assert_int_equal(gguf_writer_set_str(w, "general.name", "quantize test"), 0);
    assert_int_equal(gguf_writer_set_u32(w, "general.file_type", 0), 0);
    for (size_t i = 0; i < N_SRC; i++) {
        struct src_tensor *t = &g_src[i];
        size_t n = t->ne0 * t->ne1;
        t->vals = malloc(n * sizeof(float));
        assert_non_null(t->vals);
        for (size_t j = 0; j < n; j++)
            t->vals[j] = t->n_dims == 1 ? 1.0f + 0.01f * (float)j : 0.05f * gauss();
        t->vals[3] = 0.4f; /* an outlier */
        uint64_t ne[2] = {t->ne0, t->ne1};
        void *data = t->vals;
        uint16_t *h = NULL;
        if (t->type == GGML_TYPE_F16) {
            h = malloc(n * 2);
            assert_non_null(h);
            for (size_t j = 0; j < n; j++) {
                h[j] = kern_f32_to_f16(t->vals[j]);
                t->vals[j] = kern_f16_to_f32(h[j]);
            }
            data = h;
        }
        struct err err = {0};
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, ne, data, false, &err), 0);
        free(h);
    }
    struct err err = {0};
    assert_int_equal(gguf_writer_write(w, g_in, &err), 0);
    gguf_writer_free(w);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SRC; i++) free(g_src[i].vals);
    test_rmtree(g_dir);
    return 0;
}

static double type_bound(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_Q8_0: return 0.01;
    case GGML_TYPE_Q4_0: return 0.12;
    case GGML_TYPE_Q4_K: return 0.09;
    case GGML_TYPE_Q6_K: return 0.025;
    case GGML_TYPE_F16: return 1e-3;
    case GGML_TYPE_BF16: return 4e-3;
    default: return 0;
    }
}

/* Expected target of each source tensor for a file type (written out, not via the rule). */
static enum ggml_type expected(enum quant_ftype ft, const struct src_tensor *t)
{
    if (t->n_dims == 1) return t->type;
    bool out = strcmp(t->name, "output.weight") == 0;
    bool vdown = strstr(t->name, "attn_v") || strstr(t->name, "ffn_down");
    enum ggml_type want;
    switch (ft) {
    case QUANT_FTYPE_Q8_0: want = GGML_TYPE_Q8_0; break;
    case QUANT_FTYPE_F16: want = GGML_TYPE_F16; break;
    case QUANT_FTYPE_BF16: want = GGML_TYPE_BF16; break;
    case QUANT_FTYPE_Q4_0: want = out ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_0; break;
    case QUANT_FTYPE_Q4_K_M: /* one layer: layer 0 is in the last eighth -> more bits */
        want = out || vdown ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K;
        break;
    default: return t->type;
    }
    return t->ne0 % ggml_blck_size(want) ? t->type : want; /* rows of 100 stay as they are */
}

static void check_quantized(enum quant_ftype ft)
{
    char out[320];
    snprintf(out, sizeof out, "%s/out_%s.gguf", g_dir, quant_ftype_name(ft));
    struct err err = {0};
    int rc = quant_file(g_in, out, ft, 2, &err);
    if (rc) print_message("quant_file: %s\n", err.msg);
    assert_int_equal(rc, 0);
    struct gguf_file *f = gguf_open(out, &err);
    assert_non_null(f);
    uint32_t ftv = 99;
    assert_int_equal(gguf_get_u32(f, "general.file_type", &ftv, &err), 0);
    assert_int_equal(ftv, (uint32_t)ft);
    struct gguf_str nm;
    assert_int_equal(gguf_get_str(f, "general.name", &nm, &err), 0);
    assert_true(gguf_str_eq(nm, "quantize test"));
    assert_int_equal(gguf_n_tensors(f), N_SRC);
    for (size_t i = 0; i < N_SRC; i++) {
        const struct src_tensor *s = &g_src[i];
        const struct gguf_tensor *t = gguf_find_tensor(f, s->name);
        assert_non_null(t);
        assert_int_equal(t->ne[0], s->ne0);
        assert_int_equal(t->n_dims, s->n_dims);
        enum ggml_type want = expected(ft, s);
        if (t->type != want)
            print_message("%s %s: type %s, expected %s\n", quant_ftype_name(ft), s->name,
                          ggml_type_name(t->type), ggml_type_name(want));
        assert_int_equal(t->type, want);
        size_t n = s->ne0 * s->ne1;
        float *y = malloc(n * sizeof(float));
        assert_non_null(y);
        size_t rb = ggml_row_size(t->type, s->ne0);
        for (uint64_t r = 0; r < s->ne1; r++)
            assert_int_equal(kern_dequantize_row(t->type, (const uint8_t *)t->data + r * rb,
                                                 y + r * s->ne0, (int64_t)s->ne0), 0);
        double se = 0, sx = 0;
        for (size_t j = 0; j < n; j++) {
            se += (double)(y[j] - s->vals[j]) * (y[j] - s->vals[j]);
            sx += (double)s->vals[j] * s->vals[j];
        }
        double rel = sqrt(se / sx), bound = t->type == s->type ? 0 : type_bound(t->type);
        if (!(rel <= bound))
            print_message("%s %s (%s): rel rms error %.5f > %.5f\n", quant_ftype_name(ft),
                          s->name, ggml_type_name(t->type), rel, bound);
        assert_true(rel <= bound);
        free(y);
    }
    gguf_close(f);
}

static void test_quantize_q8_0(void **state)
{
    (void)state;
    check_quantized(QUANT_FTYPE_Q8_0);
}
static void test_quantize_q4_0(void **state)
{
    (void)state;
    check_quantized(QUANT_FTYPE_Q4_0);
}
static void test_quantize_q4_k_m(void **state)
{
    (void)state;
    check_quantized(QUANT_FTYPE_Q4_K_M);
}
static void test_quantize_f16_bf16(void **state)
{
    (void)state;
    check_quantized(QUANT_FTYPE_F16);
    check_quantized(QUANT_FTYPE_BF16);
}

static void test_quantize_errors(void **state)
{
    (void)state;
    char out[320];
    snprintf(out, sizeof out, "%s/never.gguf", g_dir);
    struct err err = {0};
    assert_int_not_equal(quant_file("/nonexistent/model.gguf", out, QUANT_FTYPE_Q8_0, 1, &err), 0);
    assert_true(strlen(err.msg) > 0);
    assert_false(test_path_exists(out));
    assert_int_equal(quant_ftype_parse("Q4_K_M"), QUANT_FTYPE_Q4_K_M);
    assert_int_equal(quant_ftype_parse("q5_1"), -1);
    char *argv_bad[] = {"quantize", g_in, out, "q3_k", NULL};
    assert_int_equal(quantize_cli(4, argv_bad), 2);
    char *argv_few[] = {"quantize", g_in, NULL};
    assert_int_equal(quantize_cli(2, argv_few), 2);
}

/* llama.cpp's use_more_bits on TinyLlama's 22 layers: 0, 1, 4, 7, 10, 13, 16, 19, 20, 21. */
static void test_q4_k_m_rule(void **state)
{
    (void)state;
    int more[22] = {0};
    const int want[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) more[want[k]] = 1;
    for (int l = 0; l < 22; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        enum ggml_type t = quant_tensor_type(QUANT_FTYPE_Q4_K_M, name, 2, 2048, 22, GGML_TYPE_F32);
        assert_int_equal(t, more[l] ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        t = quant_tensor_type(QUANT_FTYPE_Q4_K_M, name, 2, 5632, 22, GGML_TYPE_F32);
        assert_int_equal(t, more[l] ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q4_K_M, name, 2, 2048, 22, GGML_TYPE_F32),
                         GGML_TYPE_Q4_K);
    }
    assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q4_K_M, "output.weight", 2, 2048, 22, GGML_TYPE_F32),
                     GGML_TYPE_Q6_K);
    assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q4_0, "output.weight", 2, 2048, 22, GGML_TYPE_F32),
                     GGML_TYPE_Q6_K);
    assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q4_0, "blk.3.ffn_norm.weight", 1, 2048, 22, GGML_TYPE_F32),
                     GGML_TYPE_F32);
    /* stories260K-like rows of 64: not a multiple of 256, stays as is for q4_k_m */
    assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q4_K_M, "blk.0.attn_q.weight", 2, 64, 5, GGML_TYPE_F32),
                     GGML_TYPE_F32);
    assert_int_equal(quant_tensor_type(QUANT_FTYPE_Q8_0, "blk.0.attn_q.weight", 2, 64, 5, GGML_TYPE_F32),
                     GGML_TYPE_Q8_0);
}

static void test_make_model(void **state)
{
    (void)state;
    char vocab[512];
    test_data_path(vocab, sizeof vocab, "models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    TEST_REQUIRE_PATH(vocab);
    char out1[320], out2[320];
    snprintf(out1, sizeof out1, "%s/mm1.gguf", g_dir);
    snprintf(out2, sizeof out2, "%s/mm2.gguf", g_dir);
    struct make_model_opts o = {.shape = make_model_shape_find("test"), .ftype = QUANT_FTYPE_Q4_K_M,
                                .seed = 7, .vocab_path = vocab, .out_path = out1, .n_threads = 2};
    assert_non_null(o.shape);
    struct err err = {0};
    int rc = make_model_write(&o, &err);
    if (rc) print_message("make_model_write: %s\n", err.msg);
    assert_int_equal(rc, 0);
    o.out_path = out2;
    o.n_threads = 1; /* same seed, other thread count: same bytes */
    assert_int_equal(make_model_write(&o, &err), 0);
    struct gguf_file *f = gguf_open(out1, &err), *g = gguf_open(out2, &err);
    assert_non_null(f);
    assert_non_null(g);
    assert_int_equal(gguf_file_size(f), gguf_file_size(g));
    assert_int_equal(gguf_n_tensors(f), 2 + 9 * 2 + 1);
    uint32_t v = 0;
    assert_int_equal(gguf_get_u32(f, "llama.embedding_length", &v, &err), 0);
    assert_int_equal(v, 256);
    assert_int_equal(gguf_get_u32(f, "llama.attention.head_count_kv", &v, &err), 0);
    assert_int_equal(v, 2);
    const struct gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->arr_n, 32000);
    static const char *names[] = {"token_embd.weight", "blk.0.attn_norm.weight",
                                  "blk.1.attn_q.weight", "blk.1.attn_k.weight",
                                  "blk.1.attn_v.weight", "blk.1.attn_output.weight",
                                  "blk.1.ffn_norm.weight", "blk.1.ffn_gate.weight",
                                  "blk.1.ffn_up.weight", "blk.1.ffn_down.weight",
                                  "output_norm.weight", "output.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const struct gguf_tensor *t = gguf_find_tensor(f, names[i]);
        assert_non_null(t);
        const struct gguf_tensor *t2 = gguf_find_tensor(g, names[i]);
        assert_int_equal(t->nbytes, t2->nbytes);
        assert_memory_equal(t->data, t2->data, t->nbytes);
    }
    const struct gguf_tensor *k = gguf_find_tensor(f, "blk.0.attn_k.weight");
    assert_int_equal(k->ne[0], 256);
    assert_int_equal(k->ne[1], 128); /* head_dim 64 x 2 KV heads */
    assert_int_equal(k->type, GGML_TYPE_Q4_K);
    const struct gguf_tensor *dn = gguf_find_tensor(f, "blk.1.ffn_down.weight");
    assert_int_equal(dn->ne[0], 512);
    assert_int_equal(dn->type, GGML_TYPE_Q6_K);
    /* attn_q values: mean ~0, sd ~ 0.5 / sqrt(256) */
    const struct gguf_tensor *q = gguf_find_tensor(f, "blk.0.attn_q.weight");
    float *y = malloc(256 * 256 * sizeof(float));
    size_t rb = ggml_row_size(q->type, 256);
    for (int r = 0; r < 256; r++)
        assert_int_equal(kern_dequantize_row(q->type, (const uint8_t *)q->data + r * rb, y + r * 256, 256), 0);
    double s = 0, s2 = 0;
    for (int i = 0; i < 256 * 256; i++) {
        assert_true(isfinite(y[i]));
        s += y[i];
        s2 += (double)y[i] * y[i];
    }
    double mean = s / 65536, sd = sqrt(s2 / 65536 - mean * mean);
    assert_true(fabs(mean) < 0.002);
    assert_true(sd > 0.5 / 16 * 0.9 && sd < 0.5 / 16 * 1.1);
    free(y);
    const struct gguf_tensor *nrm = gguf_find_tensor(f, "output_norm.weight");
    assert_int_equal(nrm->type, GGML_TYPE_F32);
    assert_true(((const float *)nrm->data)[17] == 1.0f);
    gguf_close(f);
    gguf_close(g);
    /* CLI: bad shape and missing -o are usage errors */
    char *argv_bad[] = {"make-model", "--shape", "huge", "-o", out1, NULL};
    assert_int_equal(make_model_cli(5, argv_bad), 2);
    char *argv_noout[] = {"make-model", "--shape", "test", NULL};
    assert_int_equal(make_model_cli(3, argv_noout), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantize_q8_0),      cmocka_unit_test(test_quantize_q4_0),
        cmocka_unit_test(test_quantize_q4_k_m),    cmocka_unit_test(test_quantize_f16_bf16),
        cmocka_unit_test(test_quantize_errors),    cmocka_unit_test(test_q4_k_m_rule),
        cmocka_unit_test(test_make_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
