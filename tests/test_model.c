/* engine/model: stories260K golden text from GGUF and llama2.c files, logits agreement,
 * Q8_0, batched vs single-sequence decoding, prefix copy, and load errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "engine/generate.h"
#include "engine/gguf.h"
#include "engine/kernels.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

#define GGUF_REL "models/gguf/stories260K.gguf"
#define BIN_REL "models/llama2c/stories260K.bin"
#define TOK_REL "models/llama2c/tok512.bin"
#define GOLD_REL "models/llama2c/expected_stories260K_t0_n200.txt"

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

static struct llm *load(const char *path, const char *tok, int threads)
{
    struct err e = {0};
    struct llm_opts o = {.n_threads = threads, .tokenizer_path = tok};
    struct llm *m = llm_load(path, &o, &e);
    if (!m) print_message("load %s: %s\n", path, e.msg);
    assert_non_null(m);
    return m;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy decoding from BOS for `steps` positions, printed as llama2.c prints (the token after
 * BOS loses its leading space). Writes the token ids to `ids` when given. */
static char *greedy_text(struct llm *m, int steps, int *ids)
{
    struct err e = {0};
    struct llm_ctx *c = llm_ctx_new(m, 1, 0, 0, &e);
    assert_non_null(c);
    const struct tok *t = llm_tokenizer(m);
    assert_non_null(t);
    int nv = llm_n_vocab(m);
    float *logits = malloc((size_t)nv * sizeof *logits);
    size_t cap = 16384, len = 0;
    char *out = malloc(cap);
    struct tok_stream ts;
    tok_stream_init(&ts, t);
    char piece[TOK_STREAM_OUT_MAX];
    tok_stream_push(&ts, llm_bos(m), piece);
    int token = llm_bos(m), seq = 0;
    for (int pos = 0; pos < steps; pos++) {
        struct llm_batch b = {1, &token, &pos, &seq, NULL};
        assert_int_equal(llm_decode(c, &b, logits, &e), 0);
        int next = argmax(logits, nv);
        if (ids) ids[pos] = next;
        if (next == llm_bos(m)) break;
        size_t n = tok_stream_push(&ts, next, piece);
        assert_true(len + n < cap);
        memcpy(out + len, piece, n);
        len += n;
        token = next;
    }
    len += tok_stream_flush(&ts, out + len);
    out[len] = 0;
    free(logits);
    llm_ctx_free(c);
    return out;
}

static void check_golden(const char *model_path, const char *tok_path)
{
    char gp[512];
    test_data_path(gp, sizeof gp, GOLD_REL);
    TEST_REQUIRE_PATH(gp);
    size_t glen;
    char *gold = read_all(gp, &glen);
    while (glen > 0 && gold[glen - 1] == '\n') gold[--glen] = 0; /* llama2.c ends with "\n" */
    struct llm *m = load(model_path, tok_path, 2);
    char *text = greedy_text(m, 200, NULL);
    size_t tlen = strlen(text);
    while (tlen > 0 && text[tlen - 1] == '\n') text[--tlen] = 0;
    if (tlen != glen || memcmp(text, gold, glen) != 0) {
        size_t i = 0;
        while (i < tlen && i < glen && text[i] == gold[i]) i++;
        print_message("first difference at byte %zu:\n got: %.60s\nwant: %.60s\n", i, text + i,
                      gold + i);
        fail();
    }
    free(text);
    free(gold);
    llm_free(m);
}

static void test_golden_bin(void **st)
{
    (void)st;
    char bp[512], tp[512];
    test_data_path(bp, sizeof bp, BIN_REL);
    test_data_path(tp, sizeof tp, TOK_REL);
    TEST_REQUIRE_PATH(bp);
    TEST_REQUIRE_PATH(tp);
    check_golden(bp, tp);
}

static void test_golden_gguf(void **st)
{
    (void)st;
    char gp[512];
    test_data_path(gp, sizeof gp, GGUF_REL);
    TEST_REQUIRE_PATH(gp);
    check_golden(gp, NULL);
}

/* Runs `n` tokens of one sequence one at a time; returns all logits (n, n_vocab). */
static float *single_logits(struct llm *m, const int *tokens, int n)
{
    struct err e = {0};
    struct llm_ctx *c = llm_ctx_new(m, 1, 0, 0, &e);
    assert_non_null(c);
    int nv = llm_n_vocab(m), seq = 0;
    float *out = malloc((size_t)n * nv * sizeof *out);
    for (int p = 0; p < n; p++) {
        struct llm_batch b = {1, &tokens[p], &p, &seq, NULL};
        assert_int_equal(llm_decode(c, &b, out + (size_t)p * nv, &e), 0);
    }
    llm_ctx_free(c);
    return out;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double d = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (x > d) d = x;
    }
    return d;
}

static const int some_tokens[12] = {1, 403, 407, 261, 378, 436, 378, 275, 260, 264, 413, 30};

static void test_bin_gguf_same_logits(void **st)
{
    (void)st;
    char gp[512], bp[512];
    test_data_path(gp, sizeof gp, GGUF_REL);
    test_data_path(bp, sizeof bp, BIN_REL);
    TEST_REQUIRE_PATH(gp);
    TEST_REQUIRE_PATH(bp);
    struct llm *a = load(gp, NULL, 1), *b = load(bp, NULL, 1);
    const struct llm_hparams *ha = llm_hparams(a), *hb = llm_hparams(b);
    assert_int_equal(ha->n_embd, hb->n_embd);
    assert_int_equal(ha->n_layer, hb->n_layer);
    assert_int_equal(ha->n_head_kv, hb->n_head_kv);
    assert_int_equal(ha->n_ff, hb->n_ff);
    assert_int_equal(ha->n_vocab, hb->n_vocab);
    float *la = single_logits(a, some_tokens, 12), *lb = single_logits(b, some_tokens, 12);
    double d = max_abs_diff(la, lb, (size_t)12 * llm_n_vocab(a));
    print_message("gguf vs bin: max |diff| = %g\n", d);
    assert_true(d < 1e-5);
    free(la);
    free(lb);
    llm_free(a);
    llm_free(b);
}

/* Four sequences of different lengths decoded together (prefill chunks and single tokens in
 * one batch) give the logits of four separate single-sequence runs. */
static void test_batched_equals_single(void **st)
{
    (void)st;
    char gp[512];
    test_data_path(gp, sizeof gp, GGUF_REL);
    TEST_REQUIRE_PATH(gp);
    struct llm *m = load(gp, NULL, 3);
    const int nv = llm_n_vocab(m), S = 4, L = 9;
    int toks[4][9];
    for (int s = 0; s < S; s++)
        for (int p = 0; p < L; p++) toks[s][p] = p == 0 ? 1 : 3 + (s * 37 + p * 11) % 500;
    float *ref[4];
    for (int s = 0; s < S; s++) ref[s] = single_logits(m, toks[s], L);

    struct err e = {0};
    struct llm_ctx *c = llm_ctx_new(m, S, 64, 8, &e); /* n_batch 8: big batches are split */
    assert_non_null(c);
    /* step 1: prefill sequence s with s + 2 tokens, all in one batch, logits for all rows */
    int tok[64], pos[64], seq[64], have[4] = {0};
    unsigned char want[64];
    float *out = malloc((size_t)64 * nv * sizeof *out);
    int n = 0;
    for (int s = 0; s < S; s++)
        for (int p = 0; p < s + 2; p++, n++) {
            tok[n] = toks[s][p];
            pos[n] = p;
            seq[n] = s;
            want[n] = 1;
        }
    struct llm_batch b = {n, tok, pos, seq, want};
    assert_int_equal(llm_decode(c, &b, out, &e), 0);
    for (int i = 0; i < n; i++) {
        double d = max_abs_diff(out + (size_t)i * nv, ref[seq[i]] + (size_t)pos[i] * nv, nv);
        assert_true(d < 1e-4);
    }
    for (int s = 0; s < S; s++) have[s] = s + 2;
    /* then one token per unfinished sequence per step, interleaved, sequences in mixed order */
    for (;;) {
        n = 0;
        for (int s = S - 1; s >= 0; s--)
            if (have[s] < L) {
                tok[n] = toks[s][have[s]];
                pos[n] = have[s];
                seq[n] = s;
                want[n] = 1;
                n++;
            }
        if (n == 0) break;
        struct llm_batch bb = {n, tok, pos, seq, want};
        assert_int_equal(llm_decode(c, &bb, out, &e), 0);
        for (int i = 0; i < n; i++) {
            double d = max_abs_diff(out + (size_t)i * nv, ref[seq[i]] + (size_t)pos[i] * nv, nv);
            if (d >= 1e-4) print_message("seq %d pos %d: diff %g\n", seq[i], pos[i], d);
            assert_true(d < 1e-4);
            have[seq[i]]++;
        }
    }
    for (int s = 0; s < S; s++) assert_int_equal(llm_seq_len(c, s), L);

    /* prefix reuse: copy 5 positions of sequence 3 into slot 0, continue from there */
    assert_int_equal(llm_seq_copy(c, 3, 0, 5), 0);
    assert_int_equal(llm_seq_len(c, 0), 5);
    int p5 = 5, s0 = 0;
    struct llm_batch bc = {1, &toks[3][5], &p5, &s0, NULL};
    assert_int_equal(llm_decode(c, &bc, out, &e), 0);
    assert_true(max_abs_diff(out, ref[3] + (size_t)5 * nv, nv) < 1e-4);

    /* bad rows are refused before anything runs */
    int bad_pos = 9, bad_tok = nv;
    struct llm_batch gap = {1, &toks[0][0], &bad_pos, &s0, NULL};
    assert_int_equal(llm_decode(c, &gap, out, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "gap"));
    struct llm_batch badt = {1, &bad_tok, &p5, &s0, NULL};
    assert_int_equal(llm_decode(c, &badt, out, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "vocabulary"));
    assert_int_equal(llm_seq_copy(c, 0, 1, 50), ERR_INVALID);
    llm_seq_clear(c, 2);
    assert_int_equal(llm_seq_len(c, 2), 0);

    free(out);
    for (int s = 0; s < S; s++) free(ref[s]);
    llm_ctx_free(c);
    llm_free(m);
}

/* ---- files written with the gguf writer ---- */

enum variant { V_COPY, V_Q8, V_ARCH, V_TYPE, V_SHAPE, V_MISSING };

static void write_variant(const char *src, const char *dst, enum variant v)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open(src, &e);
    assert_non_null(f);
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        if (gguf_str_eq(kv->key, "general.alignment")) continue;
        assert_int_equal(gguf_writer_copy_kv(w, kv), 0);
    }
    if (v == V_ARCH) assert_int_equal(gguf_writer_set_str(w, "general.architecture", "mamba"), 0);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        uint64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (v == V_MISSING && strcmp(name, "blk.2.attn_k.weight") == 0) continue;
        if (v == V_SHAPE && strcmp(name, "blk.1.ffn_up.weight") == 0) {
            ne[0] = t->ne[1]; /* transposed */
            ne[1] = t->ne[0];
        }
        if (v == V_TYPE && strcmp(name, "blk.0.attn_q.weight") == 0) {
            size_t nb = ggml_row_size(GGML_TYPE_Q5_1, ne[0]) * ne[1];
            void *z = calloc(1, nb);
            assert_int_equal(gguf_writer_add_tensor(w, name, GGML_TYPE_Q5_1, t->n_dims, ne, z,
                                                    false, &e), 0);
            free(z);
            continue;
        }
        if (v == V_Q8 && t->n_dims == 2 && t->type == GGML_TYPE_F32 && ne[0] % 32 == 0) {
            size_t rb = ggml_row_size(GGML_TYPE_Q8_0, ne[0]);
            char *q = malloc(rb * ne[1]);
            for (uint64_t r = 0; r < ne[1]; r++)
                assert_int_equal(kern_quantize_row(GGML_TYPE_Q8_0,
                                                   (const float *)t->data + r * ne[0], q + r * rb,
                                                   (int64_t)ne[0]), 0);
            assert_int_equal(gguf_writer_add_tensor(w, name, GGML_TYPE_Q8_0, t->n_dims, ne, q,
                                                    false, &e), 0);
            free(q);
            continue;
        }
        assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, ne, t->data, false,
                                                &e), 0);
    }
    if (gguf_writer_write(w, dst, &e) != 0) print_message("write: %s\n", e.msg);
    gguf_writer_free(w);
    gguf_close(f);
}

static void test_q8_0_same_text(void **st)
{
    (void)st;
    char gp[512], dir[64], qp[128];
    test_data_path(gp, sizeof gp, GGUF_REL);
    TEST_REQUIRE_PATH(gp);
    kern_init();
    test_tmpdir(dir, sizeof dir);
    snprintf(qp, sizeof qp, "%s/q8.gguf", dir);
    write_variant(gp, qp, V_Q8);
    struct llm *f32 = load(gp, NULL, 2), *q8 = load(qp, NULL, 2);
    assert_true(llm_weight_bytes(q8) < llm_weight_bytes(f32));
    int a[200], b[200];
    memset(a, 0xff, sizeof a);
    memset(b, 0xff, sizeof b);
    char *ta = greedy_text(f32, 200, a), *tb = greedy_text(q8, 200, b);
    int same = 0;
    while (same < 200 && a[same] == b[same]) same++;
    print_message("q8_0 agrees with f32 for %d of 200 greedy tokens\n", same);
    assert_true(same >= 50);
    free(ta);
    free(tb);
    llm_free(f32);
    llm_free(q8);
    test_rmtree(dir);
}

static void expect_load_error(enum variant v, enum err_code code, const char *needle)
{
    char gp[512], dir[64], p[128];
    test_data_path(gp, sizeof gp, GGUF_REL);
    TEST_REQUIRE_PATH(gp);
    test_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/bad.gguf", dir);
    write_variant(gp, p, v);
    struct err e = {0};
    struct llm *m = llm_load(p, NULL, &e);
    print_message("error: %s\n", e.msg);
    assert_null(m);
    assert_int_equal(e.code, code);
    assert_non_null(strstr(e.msg, needle));
    test_rmtree(dir);
}

static void test_errors(void **st)
{
    (void)st;
    expect_load_error(V_ARCH, ERR_UNSUPPORTED, "architecture 'mamba'");
    expect_load_error(V_TYPE, ERR_UNSUPPORTED, "blk.0.attn_q.weight' has type q5_1");
    expect_load_error(V_SHAPE, ERR_INVALID, "blk.1.ffn_up.weight' has shape");
    expect_load_error(V_MISSING, ERR_INVALID, "blk.2.attn_k.weight' is missing");

    /* a copy written by our writer loads and agrees exactly */
    char gp[512], dir[64], p[128];
    test_data_path(gp, sizeof gp, GGUF_REL);
    test_tmpdir(dir, sizeof dir);
    snprintf(p, sizeof p, "%s/copy.gguf", dir);
    write_variant(gp, p, V_COPY);
    struct llm *a = load(gp, NULL, 1), *b = load(p, NULL, 1);
    float *la = single_logits(a, some_tokens, 4), *lb = single_logits(b, some_tokens, 4);
    assert_true(max_abs_diff(la, lb, (size_t)4 * llm_n_vocab(a)) == 0.0);
    free(la);
    free(lb);
    llm_free(a);
    llm_free(b);

    /* a truncated llama2.c checkpoint */
    char bp[512];
    test_data_path(bp, sizeof bp, BIN_REL);
    size_t n;
    char *bin = read_all(bp, &n);
    snprintf(p, sizeof p, "%s/short.bin", dir);
    FILE *f = fopen(p, "wb");
    fwrite(bin, 1, n / 2, f);
    fclose(f);
    struct err e = {0};
    assert_null(llm_load(p, NULL, &e));
    assert_non_null(strstr(e.msg, "the header implies"));
    /* a header with zero layers */
    int32_t zero = 0;
    memcpy(bin + 8, &zero, 4);
    f = fopen(p, "wb");
    fwrite(bin, 1, n, f);
    fclose(f);
    assert_null(llm_load(p, NULL, &e));
    assert_non_null(strstr(e.msg, "bad llama2.c header"));
    free(bin);
    test_rmtree(dir);
}

/* generate_run: the golden text again through the streaming path, a stop string, a limit. */
static void test_generate_run(void **st)
{
    (void)st;
    char gp[512], gold_p[512];
    test_data_path(gp, sizeof gp, GGUF_REL);
    test_data_path(gold_p, sizeof gold_p, GOLD_REL);
    TEST_REQUIRE_PATH(gp);
    TEST_REQUIRE_PATH(gold_p);
    size_t glen;
    char *gold = read_all(gold_p, &glen);
    struct llm *m = load(gp, NULL, 1);
    struct generate_opts o = {.n_predict = 200, .echo_prompt = true,
                              .sampling = sampler_default_params()};
    o.sampling.temp = 0;
    struct generate_stats gs;
    struct err e = {0};
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    assert_int_equal(generate_run(m, &o, f, &gs, &e), 0);
    fclose(f);
    assert_int_equal(gs.n_prompt, 1);
    assert_int_equal(gs.n_gen, 200);
    assert_int_equal(blen, glen);
    assert_memory_equal(buf, gold, glen);
    free(buf);

    /* stop at "park" (spread over tokens): the text before it, nothing after */
    const char *stop[] = {"park"};
    o.stop = stop;
    o.n_stop = 1;
    f = open_memstream(&buf, &blen);
    assert_int_equal(generate_run(m, &o, f, &gs, &e), 0);
    fclose(f);
    assert_true(gs.hit_stop);
    const char *at = strstr(gold, "park");
    assert_non_null(at);
    assert_int_equal(blen, (size_t)(at - gold));
    assert_memory_equal(buf, gold, blen);
    free(buf);

    /* a prompt is echoed, then continued; -n limits the new tokens */
    o.n_stop = 0;
    o.n_predict = 10;
    o.prompt = "Once upon a time";
    f = open_memstream(&buf, &blen);
    assert_int_equal(generate_run(m, &o, f, &gs, &e), 0);
    fclose(f);
    assert_int_equal(gs.n_gen, 10);
    assert_true(gs.n_prompt == 5);
    assert_true(strncmp(buf, gold, 16) == 0); /* the golden text starts the same way */
    free(buf);

    /* chat mode with an explicit template runs (the tiny model knows no chat) */
    o.chat = true;
    o.template_name = "zephyr";
    o.system = "Tell a story.";
    f = open_memstream(&buf, &blen);
    assert_int_equal(generate_run(m, &o, f, &gs, &e), 0);
    fclose(f);
    assert_true(gs.n_prompt > 10);
    free(buf);
    o.template_name = "vicuna";
    f = open_memstream(&buf, &blen);
    assert_int_equal(generate_run(m, &o, f, &gs, &e), ERR_INVALID);
    fclose(f);
    assert_non_null(strstr(e.msg, "vicuna"));
    free(buf);
    free(gold);
    llm_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_bin),
        cmocka_unit_test(test_golden_gguf),
        cmocka_unit_test(test_bin_gguf_same_logits),
        cmocka_unit_test(test_batched_equals_single),
        cmocka_unit_test(test_q8_0_same_text),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_generate_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
