/* engine/tokenizer: llama.cpp's SentencePiece test suite, round trips, the streaming UTF-8
 * decoder, special tokens, and the llama2.c tokenizer.bin format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "engine/gguf.h"
#include "engine/tokenizer.h"

#define VOCAB_REL "models/gguf-vocab/ggml-vocab-llama-spm.gguf"
#define MARK "\n__ggml_vocab_test__\n"

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

static struct tok *load_vocab(struct gguf_file **fout)
{
    char p[512];
    test_data_path(p, sizeof p, VOCAB_REL);
    struct err e = {0};
    struct gguf_file *f = gguf_open(p, &e);
    assert_non_null(f);
    struct tok *t = tok_load_gguf(f, &e);
    if (!t) print_message("%s\n", e.msg);
    assert_non_null(t);
    if (fout)
        *fout = f;
    else
        gguf_close(f);
    return t;
}

/* Every case of the .inp file (separated by MARK lines) against its line of ids in .out, with
 * no BOS and no special-token parsing, as llama.cpp's test-tokenizer-0 runs them. Also checks
 * that each decodes back to its text. */
static void run_suite(const struct tok *t, int *n_cases)
{
    char ip[512], op[512];
    test_data_path(ip, sizeof ip, VOCAB_REL ".inp");
    test_data_path(op, sizeof op, VOCAB_REL ".out");
    size_t ilen, olen;
    char *inp = read_all(ip, &ilen), *out = read_all(op, &olen);
    char *ic = inp, *oc = out;
    int cases = 0, failed = 0;
    int ids[4096];
    for (;;) {
        char *m = strstr(ic, MARK);
        if (!m) break;
        char *nl = strchr(oc, '\n');
        assert_non_null(nl);
        *nl = 0;
        size_t tlen = (size_t)(m - ic);
        struct err e = {0};
        int n = tok_encode(t, ic, tlen, false, false, ids, 4096, &e);
        assert_true(n >= 0);
        /* expected ids */
        int want[4096], nw = 0;
        for (char *s = oc; *s;) {
            char *end;
            long v = strtol(s, &end, 10);
            if (end == s) break;
            want[nw++] = (int)v;
            s = end;
        }
        bool ok = n == nw && memcmp(ids, want, (size_t)n * sizeof(int)) == 0;
        if (!ok) {
            failed++;
            print_message("case %d '%.*s': got", cases, (int)tlen, ic);
            for (int i = 0; i < n; i++)
                print_message(" %d", ids[i]);
            print_message("\n   want %s\n", oc);
        }
        /* round trip: BOS + ids through the streaming decoder gives the text back */
        struct tok_stream ts;
        tok_stream_init(&ts, t);
        char buf[TOK_STREAM_OUT_MAX], *dec = malloc(tlen * 3 + 64);
        size_t dl = tok_stream_push(&ts, tok_bos(t), buf);
        for (int i = 0; i < n; i++) {
            size_t k = tok_stream_push(&ts, ids[i], buf);
            memcpy(dec + dl, buf, k);
            dl += k;
        }
        dl += tok_stream_flush(&ts, dec + dl);
        if (dl != tlen || memcmp(dec, ic, tlen) != 0) {
            failed++;
            print_message("case %d: decodes to '%.*s'\n", cases, (int)dl, dec);
        }
        free(dec);
        cases++;
        ic = m + strlen(MARK);
        oc = nl + 1;
    }
    free(inp);
    free(out);
    assert_int_equal(failed, 0);
    *n_cases = cases;
}

static void test_llama_spm_suite(void **st)
{
    (void)st;
    char p[512];
    test_data_path(p, sizeof p, VOCAB_REL ".inp");
    TEST_REQUIRE_PATH(p);
    struct tok *t = load_vocab(NULL);
    assert_int_equal(tok_n_vocab(t), 32000);
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2);
    int cases = 0;
    run_suite(t, &cases);
    print_message("%d cases\n", cases);
    assert_true(cases >= 40);
    tok_free(t);
}

/* llama2.c's tokenizer.bin of the same vocabulary encodes the suite identically. */
static void test_llama2c_tokenizer_bin(void **st)
{
    (void)st;
    char p[512], ip[512];
    test_data_path(p, sizeof p, "models/llama2c/tokenizer.bin");
    test_data_path(ip, sizeof ip, VOCAB_REL ".inp");
    TEST_REQUIRE_PATH(p);
    TEST_REQUIRE_PATH(ip);
    struct err e = {0};
    struct tok *t = tok_load_llama2c(p, 32000, &e);
    assert_non_null(t);
    assert_int_equal(tok_token_type(t, 13), TOK_TYPE_BYTE); /* <0x0A> */
    size_t len;
    const char *pc = tok_piece(t, 2, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(pc, "</s>", 4);
    int cases = 0;
    run_suite(t, &cases);
    tok_free(t);

    /* truncated file */
    char dir[64], q[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(q, sizeof q, "%s/t.bin", dir);
    char *b = read_all(p, &len);
    FILE *f = fopen(q, "wb");
    fwrite(b, 1, len - 10, f);
    fclose(f);
    assert_null(tok_load_llama2c(q, 32000, &e));
    assert_non_null(strstr(e.msg, "ends early"));
    free(b);
    test_rmtree(dir);
}

static void test_stream_utf8(void **st)
{
    (void)st;
    char p[512];
    test_data_path(p, sizeof p, VOCAB_REL);
    TEST_REQUIRE_PATH(p);
    struct tok *t = load_vocab(NULL);
    int b0 = tok_find(t, "<0xF0>", 6), b1 = tok_find(t, "<0x9F>", 6);
    int b2 = tok_find(t, "<0xA6>", 6), b3 = tok_find(t, "<0x99>", 6);
    int bff = tok_find(t, "<0xFF>", 6), hello = tok_find(t, "\xe2\x96\x81Hello", 8);
    assert_true(b0 >= 0 && b1 >= 0 && b2 >= 0 && b3 >= 0 && bff >= 0 && hello >= 0);
    struct tok_stream s;
    tok_stream_init(&s, t);
    char out[TOK_STREAM_OUT_MAX];
    /* no BOS before: the leading space is kept */
    assert_int_equal(tok_stream_push(&s, hello, out), 6);
    assert_memory_equal(out, " Hello", 6);
    /* a 4-byte character over four byte tokens comes out whole, at the end */
    assert_int_equal(tok_stream_push(&s, b0, out), 0);
    assert_int_equal(tok_stream_push(&s, b1, out), 0);
    assert_int_equal(tok_stream_push(&s, b2, out), 0);
    assert_int_equal(tok_stream_push(&s, b3, out), 4);
    assert_memory_equal(out, "\xf0\x9f\xa6\x99", 4);
    /* an invalid byte is replaced; a sequence cut short by a new start is replaced too */
    assert_int_equal(tok_stream_push(&s, bff, out), 3);
    assert_memory_equal(out, "\xef\xbf\xbd", 3);
    assert_int_equal(tok_stream_push(&s, b0, out), 0);
    size_t n = tok_stream_push(&s, hello, out);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "\xef\xbf\xbd Hello", 9);
    /* incomplete at the end */
    assert_int_equal(tok_stream_push(&s, b0, out), 0);
    assert_int_equal(tok_stream_flush(&s, out), 3);
    /* control tokens print nothing */
    assert_int_equal(tok_stream_push(&s, tok_eos(t), out), 0);
    tok_free(t);
}

static void test_special_tokens(void **st)
{
    (void)st;
    char p[512];
    test_data_path(p, sizeof p, VOCAB_REL);
    TEST_REQUIRE_PATH(p);
    struct tok *t = load_vocab(NULL);
    int ids[64], plain[64];
    const char *txt = "Hi</s>there";
    int n = tok_encode(t, txt, strlen(txt), true, true, ids, 64, NULL);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    int eos_at = -1;
    for (int i = 0; i < n; i++)
        if (ids[i] == 2) eos_at = i;
    assert_true(eos_at > 1 && eos_at < n - 1);
    /* without parsing, "</s>" is ordinary text */
    int m = tok_encode(t, txt, strlen(txt), false, false, plain, 64, NULL);
    for (int i = 0; i < m; i++)
        assert_int_not_equal(plain[i], 2);
    /* too little room: an error saying how many were needed */
    struct err e = {0};
    assert_int_equal(tok_encode(t, txt, strlen(txt), true, false, ids, 2, &e), ERR_NOMEM);
    assert_non_null(strstr(e.msg, "needs"));
    tok_free(t);
}

/* The stories260K GGUF vocabulary and llama2.c's tok512.bin are the same tokenizer. */
static void test_tok512_matches_gguf(void **st)
{
    (void)st;
    char gp[512], tp[512];
    test_data_path(gp, sizeof gp, "models/gguf/stories260K.gguf");
    test_data_path(tp, sizeof tp, "models/llama2c/tok512.bin");
    TEST_REQUIRE_PATH(gp);
    TEST_REQUIRE_PATH(tp);
    struct err e = {0};
    struct gguf_file *f = gguf_open(gp, &e);
    assert_non_null(f);
    struct tok *a = tok_load_gguf(f, &e), *b = tok_load_llama2c(tp, 512, &e);
    assert_non_null(a);
    assert_non_null(b);
    const char *texts[] = {"Once upon a time, there was a little girl named Lily.",
                           "She said, \"I can't find my ball!\"\nHe smiled.", "  a\tb  ",
                           "caf\xc3\xa9 \xe2\x82\xac 42"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int x[256], y[256];
        int nx = tok_encode(a, texts[i], strlen(texts[i]), true, false, x, 256, &e);
        int ny = tok_encode(b, texts[i], strlen(texts[i]), true, false, y, 256, &e);
        assert_int_equal(nx, ny);
        assert_memory_equal(x, y, (size_t)nx * sizeof(int));
    }
    tok_free(a);
    tok_free(b);
    gguf_close(f);
}

/* tokenizer.ggml.add_space_prefix = false and add_bos_token = false are honoured; an
 * unsupported tokenizer model is refused by name. */
static void test_gguf_flags(void **st)
{
    (void)st;
    char p[512], dir[64], q[128];
    test_data_path(p, sizeof p, VOCAB_REL);
    TEST_REQUIRE_PATH(p);
    struct err e = {0};
    struct gguf_file *f = gguf_open(p, &e);
    assert_non_null(f);
    test_tmpdir(dir, sizeof dir);
    snprintf(q, sizeof q, "%s/v.gguf", dir);
    for (int variant = 0; variant < 2; variant++) {
        struct gguf_writer *w = gguf_writer_new();
        for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
            const struct gguf_kv *kv = gguf_kv_at(f, i);
            if (gguf_str_eq(kv->key, "general.alignment")) continue;
            assert_int_equal(gguf_writer_copy_kv(w, kv), 0);
        }
        if (variant == 0) {
            gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", false);
            gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
        } else {
            gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        }
        assert_int_equal(gguf_writer_write(w, q, &e), 0);
        gguf_writer_free(w);
        struct gguf_file *g = gguf_open(q, &e);
        assert_non_null(g);
        struct tok *t = tok_load_gguf(g, &e);
        if (variant == 0) {
            assert_non_null(t);
            assert_false(tok_add_bos(t));
            int ids[16];
            int n = tok_encode(t, "Hello world", 11, false, false, ids, 16, &e);
            assert_int_equal(n, 2);
            size_t len;
            const char *pc = tok_piece(t, ids[0], &len);
            assert_int_equal(len, 5);
            assert_memory_equal(pc, "Hello", 5);
            pc = tok_piece(t, ids[1], &len);
            assert_memory_equal(pc, "\xe2\x96\x81world", len);
            tok_free(t);
        } else {
            assert_null(t);
            assert_int_equal(e.code, ERR_UNSUPPORTED);
            assert_non_null(strstr(e.msg, "'gpt2'"));
        }
        gguf_close(g);
    }
    gguf_close(f);
    test_rmtree(dir);
}

/* A small vocabulary in llama2.c's tokenizer.bin format (spaces as ' '), with the
 * fuzz_tokenizer input header: u16 n_vocab, u16 text length, text, then the file. */
static int write_seed(const char *path, const char *text, int variant)
{
    static const char *const pieces[] = {
        "<unk>", "\n<s>\n", "\n</s>\n", " ",  "a",  "b",      "c",      "e",      "h",  "t",
        " t",    " the",    "he",       "at", " c", "<0x0A>", "<0xC3>", "<0xA9>", "ca", "ab"};
    const uint16_t nv = (uint16_t)(sizeof pieces / sizeof *pieces);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    uint16_t tl = (uint16_t)strlen(text);
    fwrite(&nv, 2, 1, f);
    fwrite(&tl, 2, 1, f);
    fwrite(text, 1, tl, f);
    int32_t maxlen = 8;
    fwrite(&maxlen, 4, 1, f);
    for (int i = 0; i < nv; i++) {
        float score = variant ? (float)(i % 5) : -(float)i; /* variant: many ties */
        int32_t l = (int32_t)strlen(pieces[i]);
        fwrite(&score, 4, 1, f);
        fwrite(&l, 4, 1, f);
        fwrite(pieces[i], 1, (size_t)l, f);
    }
    return fclose(f) != 0;
}

static int write_corpus(const char *dir)
{
    char p[512];
    int rc = 0;
    snprintf(p, sizeof p, "%s/small.bin", dir);
    rc |= write_seed(p, "the cat ate a cab\n", 0);
    snprintf(p, sizeof p, "%s/ties.bin", dir);
    rc |= write_seed(p, "caf\xc3\xa9 </s>ab<s> \xff\xfe", 1);
    snprintf(p, sizeof p, "%s/empty_text.bin", dir);
    rc |= write_seed(p, "", 0);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_spm_suite),     cmocka_unit_test(test_llama2c_tokenizer_bin),
        cmocka_unit_test(test_stream_utf8),         cmocka_unit_test(test_special_tokens),
        cmocka_unit_test(test_tok512_matches_gguf), cmocka_unit_test(test_gguf_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
