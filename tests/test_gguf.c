/* Tests for engine/gguf: reading real files, exact writer round trips, malformed input
 * (truncation at many cut points, byte flips, hand-made bad fields), and the gguf-info CLI.
 *
 * `test_gguf --write-corpus DIR` writes the fuzzing seed corpus (`make check` puts it in $BUILD/fuzz-corpus/gguf/) from the
 * same sample builders the tests use, then exits. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/gguf.h"
#include "testutil.h"

#define STORIES "models/gguf/stories260K.gguf"
#define VOCAB "models/gguf-vocab/ggml-vocab-llama-spm.gguf"
#define LLAMA2C "models/llama2c/stories260K.bin"

/* ---- helpers ---- */

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    uint8_t *b = malloc(n ? (size_t)n : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* Deterministic generator (xorshift64*) so failures reproduce. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Touches everything a consumer could touch in an opened file, so sanitizers see any bad
 * pointer the reader handed out. */
static void walk_all(const struct gguf_file *f)
{
    FILE *null = fopen("/dev/null", "w");
    assert_non_null(null);
    struct gguf_info_opts all = {.all_array_items = true};
    gguf_print_info(f, "walk", &all, null);
    fclose(null);
    uint64_t sum = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        if (t->nbytes) sum += p[0] + p[t->nbytes - 1];
        assert_ptr_equal(gguf_find_tensor(f, "walk-no-such-tensor"), NULL);
    }
    (void)sum;
}

/* Opens a private heap copy of buf[0..len) (so ASan sees any read past `len`) and checks the
 * contract: either a handle, or NULL with a non-empty message. Returns whether it opened. */
static bool try_open_copy(const uint8_t *buf, size_t len, char *msg, size_t msg_cap)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, buf, len);
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(copy, len, &e);
    if (f) {
        walk_all(f);
        gguf_close(f);
    } else {
        if (e.msg[0] == '\0') fail_msg("NULL without a message (len %zu)", len);
        assert_int_not_equal(e.code, ERR_OK);
        if (msg) snprintf(msg, msg_cap, "%s", e.msg);
    }
    free(copy);
    return f != NULL;
}

/* Expects buf to be rejected with a message containing every given fragment. */
static void expect_reject(const uint8_t *buf, size_t len, const char *frag1, const char *frag2)
{
    char msg[ERR_MSG_MAX];
    if (try_open_copy(buf, len, msg, sizeof msg)) fail_msg("accepted; expected '%s'", frag1 ? frag1 : "(any error)");
    if (frag1 && !strstr(msg, frag1)) fail_msg("message '%s' lacks '%s'", msg, frag1);
    if (frag2 && !strstr(msg, frag2)) fail_msg("message '%s' lacks '%s'", msg, frag2);
}

static uint8_t *find_bytes(uint8_t *hay, size_t n, const char *needle)
{
    uint8_t *p = memmem(hay, n, needle, strlen(needle));
    if (!p) fail_msg("'%s' not in buffer", needle);
    return p;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* ---- sample files built with the writer ---- */

static const char *const sample_strs[] = {"alpha", "", "gamma with spaces", "\xc3\xa9t\xc3\xa9",
                                          "quote\" and \\ and \n"};

#define SAMPLE_N_TENSORS 9

struct sample_tensor {
    const char *name;
    enum ggml_type type;
    uint32_t n_dims;
    uint64_t ne[4];
};

static const struct sample_tensor sample_tensors[SAMPLE_N_TENSORS] = {
    {"t.f32", GGML_TYPE_F32, 2, {3, 4, 1, 1}},
    {"t.f16", GGML_TYPE_F16, 1, {8, 1, 1, 1}},
    {"t.q4_0", GGML_TYPE_Q4_0, 2, {64, 2, 1, 1}},
    {"t.q8_0", GGML_TYPE_Q8_0, 1, {32, 1, 1, 1}},
    {"t.q4_K", GGML_TYPE_Q4_K, 1, {256, 1, 1, 1}},
    {"t.q6_K", GGML_TYPE_Q6_K, 2, {256, 2, 1, 1}},
    {"t.i32", GGML_TYPE_I32, 1, {5, 1, 1, 1}},
    {"t.bf16", GGML_TYPE_BF16, 3, {4, 2, 3, 1}},
    {"t.4d", GGML_TYPE_F32, 4, {2, 3, 4, 5}},
};

static uint64_t sample_nbytes(const struct sample_tensor *s)
{
    return ggml_row_size(s->type, s->ne[0]) * s->ne[1] * s->ne[2] * s->ne[3];
}

/* Tensor i's bytes: a pattern that differs per tensor and per byte. */
static void sample_fill(uint8_t *p, uint64_t n, int i)
{
    for (uint64_t k = 0; k < n; k++) p[k] = (uint8_t)(k * 31 + (uint64_t)i * 7 + 1);
}

/* Sets one key of every scalar type, arrays of every element type (strings, empty), and adds
 * `n_tensors` of the sample tensors. */
static struct gguf_writer *sample_writer(uint32_t align, int n_tensors)
{
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    if (align) gguf_writer_set_alignment(w, align);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "sample"), 0);
    assert_int_equal(gguf_writer_set_scalar(w, "s.u8", GGUF_TYPE_UINT8, &u8), 0);
    assert_int_equal(gguf_writer_set_scalar(w, "s.i8", GGUF_TYPE_INT8, &i8), 0);
    assert_int_equal(gguf_writer_set_scalar(w, "s.u16", GGUF_TYPE_UINT16, &u16), 0);
    assert_int_equal(gguf_writer_set_scalar(w, "s.i16", GGUF_TYPE_INT16, &i16), 0);
    assert_int_equal(gguf_writer_set_u32(w, "s.u32", 4000000000u), 0);
    assert_int_equal(gguf_writer_set_i32(w, "s.i32", -2000000000), 0);
    assert_int_equal(gguf_writer_set_f32(w, "s.f32", 0.15625f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "s.bool", true), 0);
    assert_int_equal(gguf_writer_set_bool(w, "s.false", false), 0);
    assert_int_equal(gguf_writer_set_str(w, "s.str", "hello, \"gguf\"\n"), 0);
    assert_int_equal(gguf_writer_set_str(w, "s.empty", ""), 0);
    assert_int_equal(gguf_writer_set_u64(w, "s.u64", 18000000000000000000ull), 0);
    assert_int_equal(gguf_writer_set_i64(w, "s.i64", INT64_MIN), 0);
    assert_int_equal(gguf_writer_set_f64(w, "s.f64", -1.0 / 3.0), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.str", GGUF_TYPE_STRING, sample_strs, 5), 0);
    const uint8_t au8[] = {1, 2, 255};
    const int8_t ai8[] = {-128, 0, 127};
    const uint16_t au16[] = {0, 65535};
    const int16_t ai16[] = {-32768, 32767};
    const uint32_t au32[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const int32_t ai32[] = {-1, 0, 1};
    const float af32[] = {0.5f, -2.25f, 1e-5f};
    const uint8_t abool[] = {1, 0, 1};
    const uint64_t au64[] = {UINT64_MAX, 0};
    const int64_t ai64[] = {INT64_MIN, INT64_MAX};
    const double af64[] = {3.141592653589793, -0.0};
    assert_int_equal(gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, au8, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i8", GGUF_TYPE_INT8, ai8, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u16", GGUF_TYPE_UINT16, au16, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, ai16, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u32", GGUF_TYPE_UINT32, au32, 12), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i32", GGUF_TYPE_INT32, ai32, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.f32", GGUF_TYPE_FLOAT32, af32, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.bool", GGUF_TYPE_BOOL, abool, 3), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.u64", GGUF_TYPE_UINT64, au64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.i64", GGUF_TYPE_INT64, ai64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, af64, 2), 0);
    assert_int_equal(gguf_writer_set_arr(w, "a.empty", GGUF_TYPE_UINT32, NULL, 0), 0);
    for (int i = 0; i < n_tensors && i < SAMPLE_N_TENSORS; i++) {
        const struct sample_tensor *s = &sample_tensors[i];
        uint64_t n = sample_nbytes(s);
        uint8_t *d = malloc((size_t)n);
        assert_non_null(d);
        sample_fill(d, n, i);
        struct err e = {0};
        int rc = gguf_writer_add_tensor(w, s->name, s->type, s->n_dims, s->ne, d, false, &e);
        if (rc) fail_msg("add %s: %s", s->name, e.msg);
        free(d);
    }
    return w;
}

static void write_or_fail(struct gguf_writer *w, const char *path)
{
    struct err e = {0};
    if (gguf_writer_write(w, path, &e) != 0) fail_msg("write %s: %s", path, e.msg);
}

/* A hand-made v3 file with arrays of arrays (the writer's set_* API cannot express them):
 * key "nest" = [[1, 2], [[..depth..]]], "nest.str" = [["a", "bc"], []], no tensors. With
 * `depth` > 0 the second element nests that many more levels of single-element arrays. */
static size_t build_nested(uint8_t *buf, size_t cap, int depth)
{
    size_t o = 0;
#define PUT(ptr, n)                                                                              \
    do {                                                                                         \
        assert_true(o + (n) <= cap);                                                             \
        memcpy(buf + o, (ptr), (n));                                                             \
        o += (n);                                                                                \
    } while (0)
#define PU32(v) do { uint32_t v_ = (v); PUT(&v_, 4); } while (0)
#define PU64(v) do { uint64_t v_ = (v); PUT(&v_, 8); } while (0)
#define PSTR(s) do { PU64(strlen(s)); PUT((s), strlen(s)); } while (0)
    PU32(GGUF_MAGIC);
    PU32(3);
    PU64(0); /* tensors */
    PU64(2); /* kvs */
    PSTR("nest");
    PU32(GGUF_TYPE_ARRAY);
    PU32(GGUF_TYPE_ARRAY);
    PU64(2);
    PU32(GGUF_TYPE_UINT16);
    PU64(2);
    PU32(0x00020001u); /* u16 1, 2 */
    for (int d = 0; d < depth; d++) {
        PU32(GGUF_TYPE_ARRAY);
        PU64(1);
    }
    PU32(GGUF_TYPE_INT8);
    PU64(1);
    uint8_t m1 = 0xff;
    PUT(&m1, 1);
    PSTR("nest.str");
    PU32(GGUF_TYPE_ARRAY);
    PU32(GGUF_TYPE_ARRAY);
    PU64(2);
    PU32(GGUF_TYPE_STRING);
    PU64(2);
    PSTR("a");
    PSTR("bc");
    PU32(GGUF_TYPE_STRING);
    PU64(0);
#undef PUT
#undef PU32
#undef PU64
#undef PSTR
    return o;
}

/* ---- reading real files ---- */

static void test_read_stories(void **state)
{
    (void)state;
    char path[4096];
    test_data_path(path, sizeof path, STORIES);
    TEST_REQUIRE_PATH(path);
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) fail_msg("%s", e.msg);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_n_kv(f), 19);
    assert_int_equal(gguf_n_tensors(f), 48);
    assert_int_equal(gguf_data_offset(f) % 32, 0);

    struct gguf_str s;
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, &e), 0);
    assert_true(gguf_str_eq(s, "llama"));
    uint32_t u = 0;
    assert_int_equal(gguf_get_u32(f, "llama.block_count", &u, &e), 0);
    assert_int_equal(u, 5);
    assert_int_equal(gguf_get_u32(f, "llama.embedding_length", &u, &e), 0);
    assert_int_equal(u, 64);
    assert_int_equal(gguf_get_u32(f, "llama.feed_forward_length", &u, &e), 0);
    assert_int_equal(u, 172);
    assert_int_equal(gguf_get_u32(f, "llama.attention.head_count", &u, &e), 0);
    assert_int_equal(u, 8);
    assert_int_equal(gguf_get_u32(f, "llama.attention.head_count_kv", &u, &e), 0);
    assert_int_equal(u, 4);
    float eps = 0;
    assert_int_equal(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps, &e), 0);
    assert_float_equal(eps, 1e-5, 1e-9);

    const struct gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->type, GGUF_TYPE_ARRAY);
    assert_int_equal(tok->arr_type, GGUF_TYPE_STRING);
    assert_int_equal(tok->arr_n, 512);
    assert_true(gguf_str_eq(gguf_arr_str(tok, 0), "<unk>"));
    assert_true(gguf_str_eq(gguf_arr_str(tok, 1), "<s>"));
    assert_true(gguf_str_eq(gguf_arr_str(tok, 2), "</s>"));
    assert_int_equal(gguf_arr_str(tok, 512).len, 0); /* out of range: empty view */

    /* every tensor: shapes of the llama layout, f32, aligned, inside the file */
    const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGML_TYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    struct { const char *name; uint64_t ne0, ne1; } want[] = {
        {"output_norm.weight", 64, 1},      {"output.weight", 64, 512},
        {"blk.0.attn_q.weight", 64, 64},    {"blk.0.attn_k.weight", 64, 32},
        {"blk.0.attn_v.weight", 64, 32},    {"blk.4.attn_output.weight", 64, 64},
        {"blk.4.ffn_gate.weight", 64, 172}, {"blk.4.ffn_down.weight", 172, 64},
        {"blk.4.ffn_up.weight", 64, 172},   {"blk.2.ffn_norm.weight", 64, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        t = gguf_find_tensor(f, want[i].name);
        if (!t) fail_msg("tensor %s missing", want[i].name);
        assert_int_equal(t->type, GGML_TYPE_F32);
        assert_int_equal(t->ne[0], want[i].ne0);
        assert_int_equal(t->ne[1], want[i].ne1);
    }
    assert_null(gguf_find_tensor(f, "blk.5.attn_q.weight"));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        t = gguf_tensor_at(f, i);
        assert_int_equal((uintptr_t)t->data % 32, 0);
        assert_true(gguf_data_offset(f) + t->offset + t->nbytes <= gguf_file_size(f));
        assert_ptr_equal(gguf_find_tensor(f, "token_embd.weight"), gguf_tensor_at(f, 0));
    }
    assert_null(gguf_tensor_at(f, 48));
    assert_null(gguf_kv_at(f, 19));

    /* The llama2.c checkpoint of the same model holds bit-identical weights: its token
     * embedding table follows a 7-int header. Comparing proves the data offsets are right. */
    char bin[4096];
    test_data_path(bin, sizeof bin, LLAMA2C);
    if (test_path_exists(bin)) {
        size_t blen;
        uint8_t *b = slurp(bin, &blen);
        t = gguf_find_tensor(f, "token_embd.weight");
        assert_true(blen >= 28 + t->nbytes);
        assert_memory_equal(b + 28, t->data, t->nbytes);
        free(b);
    }
    gguf_close(f);
}

static void test_read_vocab(void **state)
{
    (void)state;
    char path[4096];
    test_data_path(path, sizeof path, VOCAB);
    TEST_REQUIRE_PATH(path);
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) fail_msg("%s", e.msg);
    assert_int_equal(gguf_n_tensors(f), 0);
    const struct gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->arr_type, GGUF_TYPE_STRING);
    assert_int_equal(tok->arr_n, 32000);
    uint64_t total = 0;
    for (uint64_t i = 0; i < tok->arr_n; i++) total += gguf_arr_str(tok, i).len;
    assert_true(total > 32000);
    assert_true(gguf_str_eq(gguf_arr_str(tok, 0), "<unk>"));
    assert_true(gguf_str_eq(gguf_arr_str(tok, 3), "<0x00>"));
    const struct gguf_kv *sc = gguf_find(f, "tokenizer.ggml.scores");
    assert_non_null(sc);
    assert_int_equal(sc->arr_type, GGUF_TYPE_FLOAT32);
    assert_int_equal(sc->arr_n, 32000);
    double d;
    int64_t iv;
    assert_true(gguf_arr_f64(sc, 31999, &d));
    assert_false(gguf_arr_f64(sc, 32000, &d));
    assert_false(gguf_arr_i64(sc, 0, &iv)); /* floats are not integers */
    const struct gguf_kv *tt = gguf_find(f, "tokenizer.ggml.token_type");
    assert_non_null(tt);
    assert_true(gguf_arr_i64(tt, 1, &iv));
    assert_int_equal(iv, 3); /* <s> is a control token */
    bool b = false;
    assert_int_equal(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, &e), 0);
    assert_true(b);
    uint32_t u;
    assert_int_equal(gguf_get_u32(f, "llama.vocab_size", &u, &e), 0);
    assert_int_equal(u, 32000);
    gguf_close(f);
}

static void test_getters(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/g.gguf", dir);
    struct gguf_writer *w = sample_writer(0, 0);
    write_or_fail(w, path);
    gguf_writer_free(w);
    struct err e = {0};
    struct gguf_file *f = gguf_open(path, &e);
    if (!f) fail_msg("%s", e.msg);

    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f32;
    bool b;
    struct gguf_str s;
    /* widening and narrowing when the value fits */
    assert_int_equal(gguf_get_u32(f, "s.u8", &u32, &e), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_i64(f, "s.i16", &i64, &e), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(gguf_get_i64(f, "s.i64", &i64, &e), 0);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(gguf_get_u64(f, "s.u64", &u64, &e), 0);
    assert_true(u64 == 18000000000000000000ull);
    assert_int_equal(gguf_get_u32(f, "s.u32", &u32, &e), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_f32(f, "s.f64", &f32, &e), 0);
    assert_float_equal(f32, -1.0 / 3.0, 1e-7);
    /* values that do not fit */
    assert_int_equal(gguf_get_u32(f, "s.i8", &u32, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "s.i8"));
    assert_non_null(strstr(e.msg, "-100"));
    assert_int_equal(gguf_get_u32(f, "s.u64", &u32, &e), ERR_INVALID);
    assert_int_equal(gguf_get_i64(f, "s.u64", &i64, &e), ERR_INVALID);
    assert_int_equal(gguf_get_u64(f, "s.i32", &u64, &e), ERR_INVALID);
    /* wrong types name the key and both types */
    assert_int_equal(gguf_get_u32(f, "s.str", &u32, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "'s.str'"));
    assert_non_null(strstr(e.msg, "string"));
    assert_non_null(strstr(e.msg, "u32"));
    assert_int_equal(gguf_get_f32(f, "s.u32", &f32, &e), ERR_INVALID);
    assert_int_equal(gguf_get_bool(f, "s.u8", &b, &e), ERR_INVALID);
    assert_int_equal(gguf_get_str(f, "a.str", &s, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "array"));
    assert_int_equal(gguf_get_u32(f, "s.bool", &u32, &e), ERR_INVALID);
    /* absent keys */
    assert_int_equal(gguf_get_u32(f, "no.such.key", &u32, &e), ERR_NOTFOUND);
    assert_non_null(strstr(e.msg, "no.such.key"));
    assert_int_equal(gguf_get_str(f, "s", &s, &e), ERR_NOTFOUND); /* prefix is not a match */
    assert_null(gguf_find(f, "s.u3"));
    /* type facts */
    assert_string_equal(ggml_type_name(GGML_TYPE_Q4_K), "q4_K");
    assert_null(ggml_type_name((enum ggml_type)16)); /* iq2_xxs: not listed */
    assert_null(ggml_type_name((enum ggml_type)1000));
    assert_int_equal(ggml_row_size(GGML_TYPE_Q4_0, 64), 36);
    assert_int_equal(ggml_row_size(GGML_TYPE_Q4_0, 33), 0);
    assert_int_equal(ggml_row_size(GGML_TYPE_Q6_K, 512), 420);
    assert_string_equal(gguf_type_name(GGUF_TYPE_FLOAT64), "f64");
    assert_null(gguf_type_name(GGUF_TYPE_COUNT));
    gguf_close(f);
    test_rmtree(dir);
}

/* Block facts against ggml-common.h's block structs (checked there by static_assert). */
static void test_type_sizes(void **state)
{
    (void)state;
    static const struct { enum ggml_type t; uint32_t blck, bytes; } want[] = {
        {GGML_TYPE_F32, 1, 4},      {GGML_TYPE_F16, 1, 2},      {GGML_TYPE_BF16, 1, 2},
        {GGML_TYPE_Q4_0, 32, 18},   {GGML_TYPE_Q4_1, 32, 20},   {GGML_TYPE_Q5_0, 32, 22},
        {GGML_TYPE_Q5_1, 32, 24},   {GGML_TYPE_Q8_0, 32, 34},   {GGML_TYPE_Q8_1, 32, 36},
        {GGML_TYPE_Q2_K, 256, 84},  {GGML_TYPE_Q3_K, 256, 110}, {GGML_TYPE_Q4_K, 256, 144},
        {GGML_TYPE_Q5_K, 256, 176}, {GGML_TYPE_Q6_K, 256, 210}, {GGML_TYPE_Q8_K, 256, 292},
        {GGML_TYPE_I8, 1, 1},       {GGML_TYPE_I16, 1, 2},      {GGML_TYPE_I32, 1, 4},
        {GGML_TYPE_I64, 1, 8},      {GGML_TYPE_F64, 1, 8},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(ggml_blck_size(want[i].t), want[i].blck);
        assert_int_equal(ggml_type_size(want[i].t), want[i].bytes);
        assert_non_null(ggml_type_name(want[i].t));
    }
    int known = 0;
    for (int t = 0; t < GGML_TYPE_COUNT + 5; t++) known += ggml_type_name((enum ggml_type)t) != NULL;
    assert_int_equal(known, (int)(sizeof want / sizeof want[0]));
}

/* ---- writer round trip ---- */

static void check_sample(const struct gguf_file *f, uint32_t align, int n_tensors)
{
    struct err e = {0};
    uint32_t u32;
    int64_t i64;
    uint64_t u64;
    float f32;
    bool b;
    struct gguf_str s;
    assert_int_equal(gguf_alignment(f), align);
    assert_int_equal(gguf_get_u32(f, "s.u8", &u32, &e), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_find(f, "s.u8")->type, GGUF_TYPE_UINT8);
    assert_int_equal(gguf_get_i64(f, "s.i8", &i64, &e), 0);
    assert_int_equal(i64, -100);
    assert_int_equal(gguf_find(f, "s.i8")->type, GGUF_TYPE_INT8);
    assert_int_equal(gguf_get_u32(f, "s.u16", &u32, &e), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(gguf_get_i64(f, "s.i16", &i64, &e), 0);
    assert_int_equal(i64, -30000);
    assert_int_equal(gguf_get_u32(f, "s.u32", &u32, &e), 0);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(gguf_get_i64(f, "s.i32", &i64, &e), 0);
    assert_int_equal(i64, -2000000000);
    assert_int_equal(gguf_get_f32(f, "s.f32", &f32, &e), 0);
    assert_true(f32 == 0.15625f);
    assert_int_equal(gguf_get_bool(f, "s.bool", &b, &e), 0);
    assert_true(b);
    assert_int_equal(gguf_get_bool(f, "s.false", &b, &e), 0);
    assert_false(b);
    assert_int_equal(gguf_get_str(f, "s.str", &s, &e), 0);
    assert_true(gguf_str_eq(s, "hello, \"gguf\"\n"));
    assert_int_equal(gguf_get_str(f, "s.empty", &s, &e), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(gguf_get_u64(f, "s.u64", &u64, &e), 0);
    assert_true(u64 == 18000000000000000000ull);
    assert_int_equal(gguf_get_i64(f, "s.i64", &i64, &e), 0);
    assert_true(i64 == INT64_MIN);
    const struct gguf_kv *kv = gguf_find(f, "s.f64");
    double d;
    memcpy(&d, kv->data, 8);
    assert_true(d == -1.0 / 3.0);

    kv = gguf_find(f, "a.str");
    assert_int_equal(kv->arr_n, 5);
    for (int i = 0; i < 5; i++) assert_true(gguf_str_eq(gguf_arr_str(kv, (uint64_t)i), sample_strs[i]));
    kv = gguf_find(f, "a.u32");
    assert_int_equal(kv->arr_type, GGUF_TYPE_UINT32);
    assert_int_equal(kv->arr_n, 12);
    assert_true(gguf_arr_i64(kv, 11, &i64));
    assert_int_equal(i64, 12);
    kv = gguf_find(f, "a.i8");
    assert_true(gguf_arr_i64(kv, 0, &i64));
    assert_int_equal(i64, -128);
    kv = gguf_find(f, "a.i64");
    assert_true(gguf_arr_i64(kv, 0, &i64));
    assert_true(i64 == INT64_MIN);
    kv = gguf_find(f, "a.u64");
    assert_false(gguf_arr_i64(kv, 0, &i64)); /* UINT64_MAX does not fit */
    assert_true(gguf_arr_f64(kv, 1, &d));
    assert_true(d == 0.0);
    kv = gguf_find(f, "a.f32");
    assert_true(gguf_arr_f64(kv, 1, &d));
    assert_true(d == -2.25);
    kv = gguf_find(f, "a.f64");
    assert_true(gguf_arr_f64(kv, 0, &d));
    assert_true(d == 3.141592653589793);
    kv = gguf_find(f, "a.bool");
    assert_int_equal(kv->arr_type, GGUF_TYPE_BOOL);
    assert_int_equal(((const uint8_t *)kv->data)[1], 0);
    kv = gguf_find(f, "a.empty");
    assert_int_equal(kv->type, GGUF_TYPE_ARRAY);
    assert_int_equal(kv->arr_n, 0);
    assert_int_equal(gguf_find(f, "a.u16")->arr_type, GGUF_TYPE_UINT16);
    assert_int_equal(gguf_find(f, "a.i16")->arr_type, GGUF_TYPE_INT16);
    assert_int_equal(gguf_find(f, "a.u8")->arr_type, GGUF_TYPE_UINT8);
    assert_int_equal(gguf_find(f, "a.i32")->arr_type, GGUF_TYPE_INT32);

    assert_int_equal(gguf_n_tensors(f), (uint64_t)n_tensors);
    for (int i = 0; i < n_tensors; i++) {
        const struct sample_tensor *st = &sample_tensors[i];
        const struct gguf_tensor *t = gguf_tensor_at(f, (uint64_t)i);
        assert_true(gguf_str_eq(t->name, st->name));
        assert_ptr_equal(gguf_find_tensor(f, st->name), t);
        assert_int_equal(t->type, st->type);
        assert_int_equal(t->n_dims, st->n_dims);
        for (int k = 0; k < 4; k++) assert_int_equal(t->ne[k], st->ne[k]);
        assert_int_equal(t->nbytes, sample_nbytes(st));
        assert_int_equal(t->offset % align, 0);
        assert_int_equal((gguf_data_offset(f) + t->offset) % align, 0);
        uint8_t *want = malloc((size_t)t->nbytes);
        sample_fill(want, t->nbytes, i);
        assert_memory_equal(t->data, want, t->nbytes);
        free(want);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    char dir[64], p1[128], p2[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(p1, sizeof p1, "%s/a.gguf", dir);
    snprintf(p2, sizeof p2, "%s/b.gguf", dir);
    struct gguf_writer *w = sample_writer(64, SAMPLE_N_TENSORS);
    write_or_fail(w, p1);
    gguf_writer_free(w);

    struct err e = {0};
    struct gguf_file *f = gguf_open(p1, &e);
    if (!f) fail_msg("%s", e.msg);
    assert_int_equal(gguf_version(f), 3);
    check_sample(f, 64, SAMPLE_N_TENSORS);
    uint32_t al;
    assert_int_equal(gguf_get_u32(f, "general.alignment", &al, &e), 0);
    assert_int_equal(al, 64);
    assert_int_equal((uintptr_t)gguf_tensor_at(f, 1)->data % 64, 0);

    /* copy every key and tensor into a second writer: the bytes must be identical */
    w = gguf_writer_new();
    gguf_writer_set_alignment(w, (uint32_t)gguf_alignment(f));
    for (uint64_t i = 0; i < gguf_n_kv(f); i++)
        assert_int_equal(gguf_writer_copy_kv(w, gguf_kv_at(f, i)), 0);
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data,
                                                true, &e), 0);
    }
    write_or_fail(w, p2);
    gguf_writer_free(w);
    size_t n1, n2;
    uint8_t *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    assert_int_equal(n1, gguf_file_size(f));
    gguf_close(f);

    /* the same bytes labelled version 2 read the same (v2 and v3 share the layout) */
    put_u32(b1 + 4, 2);
    f = gguf_open_mem(b1, n1, &e);
    if (!f) fail_msg("%s", e.msg);
    assert_int_equal(gguf_version(f), 2);
    check_sample(f, 64, SAMPLE_N_TENSORS);
    gguf_close(f);
    free(b1);
    free(b2);

    /* overwriting an existing file replaces it atomically; no temporary files are left */
    w = sample_writer(0, 2);
    assert_int_equal(gguf_writer_set_u32(w, "s.u32", 7), 0); /* replaces, keeps position */
    write_or_fail(w, p2);
    gguf_writer_free(w);
    f = gguf_open(p2, &e);
    if (!f) fail_msg("%s", e.msg);
    assert_int_equal(gguf_alignment(f), 32);
    assert_null(gguf_find(f, "general.alignment")); /* default alignment: key not written */
    assert_int_equal(gguf_get_u32(f, "s.u32", &al, &e), 0);
    assert_int_equal(al, 7);
    assert_true(gguf_str_eq(gguf_kv_at(f, 5)->key, "s.u32"));
    gguf_close(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c tmp", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    assert_int_equal(n, 0);
    test_rmtree(dir);
}

static void test_writer_errors(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    struct err e = {0};
    struct gguf_writer *w = gguf_writer_new();
    const uint64_t ne[2] = {33, 1};
    uint8_t data[64] = {0};
    assert_int_equal(gguf_writer_add_tensor(w, "q", GGML_TYPE_Q4_0, 1, ne, data, true, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "multiple"));
    assert_int_equal(gguf_writer_add_tensor(w, "q", GGML_TYPE_F32, 5, ne, data, true, &e),
                     ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "q", (enum ggml_type)16, 1, ne, data, true, &e),
                     ERR_UNSUPPORTED);
    assert_int_equal(gguf_writer_add_tensor(w, "", GGML_TYPE_F32, 1, ne, data, true, &e),
                     ERR_INVALID);
    assert_int_equal(gguf_writer_add_tensor(w, "q", GGML_TYPE_I8, 1, ne, data, true, &e), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "q", GGML_TYPE_I8, 1, ne, data, true, &e),
                     ERR_INVALID);
    assert_non_null(strstr(e.msg, "twice"));
    const uint64_t huge[4] = {1ull << 40, 1ull << 40, 1, 1};
    assert_int_equal(gguf_writer_add_tensor(w, "h", GGML_TYPE_F32, 2, huge, data, true, &e),
                     ERR_INVALID);
    assert_int_equal(gguf_writer_set_str(w, "", "v"), ERR_INVALID);
    assert_int_equal(gguf_writer_set_str(w, "k", NULL), ERR_INVALID);
    assert_int_equal(gguf_writer_set_arr(w, "k", GGUF_TYPE_ARRAY, data, 1), ERR_INVALID);
    gguf_writer_set_alignment(w, 48);
    assert_int_equal(gguf_writer_write(w, path, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "48"));
    assert_false(test_path_exists(path));
    gguf_writer_set_alignment(w, 16);
    snprintf(path, sizeof path, "%s/no/such/dir/x.gguf", dir);
    assert_int_equal(gguf_writer_write(w, path, &e), ERR_IO);
    assert_non_null(strstr(e.msg, "no/such/dir"));
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
    test_rmtree(dir);
}

static void test_nested_arrays(void **state)
{
    (void)state;
    uint8_t buf[1024];
    size_t n = build_nested(buf, sizeof buf, 0);
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(buf, n, &e);
    if (!f) fail_msg("%s", e.msg);
    const struct gguf_kv *kv = gguf_find(f, "nest");
    assert_int_equal(kv->arr_type, GGUF_TYPE_ARRAY);
    assert_int_equal(kv->arr_n, 2);
    const struct gguf_kv *a0 = gguf_arr_arr(kv, 0), *a1 = gguf_arr_arr(kv, 1);
    assert_int_equal(a0->arr_type, GGUF_TYPE_UINT16);
    int64_t v;
    assert_true(gguf_arr_i64(a0, 1, &v));
    assert_int_equal(v, 2);
    assert_true(gguf_arr_i64(a1, 0, &v));
    assert_int_equal(v, -1);
    assert_null(gguf_arr_arr(kv, 2));
    kv = gguf_find(f, "nest.str");
    assert_true(gguf_str_eq(gguf_arr_str(gguf_arr_arr(kv, 0), 1), "bc"));
    assert_int_equal(gguf_arr_arr(kv, 1)->arr_n, 0);

    /* the writer copies nested arrays byte for byte */
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/n.gguf", dir);
    struct gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < gguf_n_kv(f); i++)
        assert_int_equal(gguf_writer_copy_kv(w, gguf_kv_at(f, i)), 0);
    write_or_fail(w, path);
    gguf_writer_free(w);
    size_t n2;
    uint8_t *b2 = slurp(path, &n2);
    assert_true(n2 >= n);
    assert_memory_equal(b2, buf, n);
    free(b2);
    gguf_close(f);
    test_rmtree(dir);

    /* depth 7 more levels is within the bound; 8 is over it */
    n = build_nested(buf, sizeof buf, 6);
    assert_true(try_open_copy(buf, n, NULL, 0));
    n = build_nested(buf, sizeof buf, 8);
    expect_reject(buf, n, "nested deeper", "'nest'");
}

/* ---- malformed input ---- */

static void truncation_sweep(const uint8_t *buf, size_t len, bool tail_ok)
{
    size_t opened = 0;
    for (size_t cut = 0; cut < len; cut += cut < 600 ? 1 : (len / 100 + 1)) {
        if (try_open_copy(buf, cut, NULL, 0)) opened++;
    }
    /* only a file whose tail is padding could open when cut; none of these is */
    if (!tail_ok) assert_int_equal(opened, 0);
    for (size_t cut = len > 16 ? len - 16 : 0; cut < len; cut++) try_open_copy(buf, cut, NULL, 0);
}

static void flip_sweep(uint8_t *buf, size_t len, size_t region, uint64_t seed, int rounds)
{
    uint64_t rng = seed;
    if (region > len) region = len;
    for (int r = 0; r < rounds; r++) {
        size_t pos[4];
        uint8_t old[4];
        int k = 1 + (int)(rng_next(&rng) % 4);
        for (int j = 0; j < k; j++) {
            pos[j] = (size_t)(rng_next(&rng) % region);
            old[j] = buf[pos[j]];
            uint64_t how = rng_next(&rng);
            buf[pos[j]] = (how & 3) == 0 ? 0xff : (how & 3) == 1 ? 0 : (uint8_t)(how >> 8);
        }
        try_open_copy(buf, len, NULL, 0);
        for (int j = k - 1; j >= 0; j--) buf[pos[j]] = old[j];
    }
}

static void test_truncated_and_flipped_real(void **state)
{
    (void)state;
    char path[4096];
    test_data_path(path, sizeof path, STORIES);
    TEST_REQUIRE_PATH(path);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    truncation_sweep(buf, len, false);
    /* flips in the metadata and tensor infos (the data section has nothing to validate) */
    flip_sweep(buf, len, 14176, 12345, 400);
    free(buf);

    test_data_path(path, sizeof path, VOCAB);
    if (test_path_exists(path)) {
        buf = slurp(path, &len);
        size_t opened = 0;
        for (size_t cut = 0; cut < 400; cut++) opened += try_open_copy(buf, cut, NULL, 0);
        for (size_t cut = 400; cut < len; cut += len / 40) opened += try_open_copy(buf, cut, NULL, 0);
        assert_int_equal(opened, 0);
        flip_sweep(buf, len, 4096, 777, 150);
        free(buf);
    }
}

static void test_truncated_and_flipped_written(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/w.gguf", dir);
    struct gguf_writer *w = sample_writer(64, SAMPLE_N_TENSORS);
    write_or_fail(w, path);
    gguf_writer_free(w);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    /* every cut inside the header, metadata and tensor infos must fail; cuts in the last
     * tensor's trailing padding may open */
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(buf, len, &e);
    assert_non_null(f);
    uint64_t data_off = gguf_data_offset(f);
    gguf_close(f);
    for (size_t cut = 0; cut < data_off; cut++)
        if (try_open_copy(buf, cut, NULL, 0)) fail_msg("cut at %zu opened", cut);
    truncation_sweep(buf, len, true);
    flip_sweep(buf, len, (size_t)data_off, 99, 3000);
    free(buf);
    test_rmtree(dir);
}

/* Hand-made bad fields, each checked for a message that names the problem. */
static void test_bad_fields(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/w.gguf", dir);
    struct gguf_writer *w = sample_writer(64, SAMPLE_N_TENSORS);
    write_or_fail(w, path);
    gguf_writer_free(w);
    size_t len;
    uint8_t *orig = slurp(path, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);
#define FRESH() memcpy(b, orig, len)

    FRESH();
    memcpy(b, "GGUG", 4);
    expect_reject(b, len, "not a GGUF file", "offset 0");
    FRESH();
    put_u32(b + 4, 1);
    expect_reject(b, len, "version 1", NULL);
    FRESH();
    put_u32(b + 4, 4);
    expect_reject(b, len, "version 4", NULL);
    FRESH();
    put_u32(b + 4, 0x03000000u);
    expect_reject(b, len, "big-endian", NULL);
    FRESH();
    put_u64(b + 8, UINT64_MAX); /* tensor count */
    expect_reject(b, len, "tensor count", NULL);
    FRESH();
    put_u64(b + 16, 1ull << 60); /* kv count */
    expect_reject(b, len, "metadata key count", NULL);
    FRESH();
    put_u64(b + 16, get_u64(orig + 16) + 1); /* one kv more than there is */
    expect_reject(b, len, NULL, NULL);
    FRESH();
    put_u64(b + 24, UINT64_MAX); /* first key length */
    expect_reject(b, len, "metadata entry 0", "length");
    FRESH();
    put_u64(b + 24, 0);
    expect_reject(b, len, "empty key", NULL);

    uint8_t *k = find_bytes(b, len, "s.u16"); /* value type follows the key */
    FRESH();
    put_u32(k + 5, 13);
    expect_reject(b, len, "unknown value type 13", "'s.u16'");
    FRESH();
    put_u32(k + 5, 0xffffffffu);
    expect_reject(b, len, "'s.u16'", NULL);
    FRESH();
    memcpy(k, "s.u32", 5); /* duplicate key */
    expect_reject(b, len, "duplicate metadata key 's.u32'", NULL);
    k = find_bytes(b, len, "s.bool");
    FRESH();
    k[6 + 4] = 2;
    expect_reject(b, len, "'s.bool'", "not 0 or 1");
    k = find_bytes(b, len, "s.str");
    FRESH();
    put_u64(k + 5 + 4, 1ull << 62); /* string value length */
    expect_reject(b, len, "'s.str'", "length");
    k = find_bytes(b, len, "a.str");
    FRESH();
    put_u32(k + 5 + 4, 42); /* array element type */
    expect_reject(b, len, "unknown array element type 42", "'a.str'");
    FRESH();
    put_u64(k + 5 + 8, 1ull << 61); /* string array count */
    expect_reject(b, len, "'a.str'", "strings");
    k = find_bytes(b, len, "a.u32");
    FRESH();
    put_u64(k + 5 + 8, UINT64_MAX / 2); /* numeric array count: n * 4 overflows */
    expect_reject(b, len, "'a.u32'", NULL);
    k = find_bytes(b, len, "a.bool");
    FRESH();
    k[6 + 4 + 4 + 8 + 1] = 7;
    expect_reject(b, len, "'a.bool'", "not 0 or 1");

    k = find_bytes(b, len, "general.alignment"); /* u32 value follows */
    FRESH();
    put_u32(k + 17 + 4, 48);
    expect_reject(b, len, "general.alignment", "power of two");
    FRESH();
    put_u32(k + 17 + 4, 0);
    expect_reject(b, len, "general.alignment", "power of two");
    FRESH();
    put_u32(k + 17, GGUF_TYPE_INT32);
    expect_reject(b, len, "general.alignment", "expected u32");
    FRESH();
    put_u32(k + 17 + 4, 128); /* valid, but the tensor offsets are only 64-aligned */
    expect_reject(b, len, "not a multiple of the alignment 128", NULL);

    /* tensor infos: name, n_dims (4), ne (8 each), type (4), offset (8) */
    uint8_t *t = find_bytes(b, len, "t.q4_0") + 6;
    FRESH();
    put_u32(t, 0);
    expect_reject(b, len, "'t.q4_0'", "n_dims 0");
    FRESH();
    put_u32(t, 5);
    expect_reject(b, len, "'t.q4_0'", "n_dims 5");
    FRESH();
    put_u64(t + 4, 48); /* 48 is not a multiple of 32 */
    expect_reject(b, len, "'t.q4_0'", "multiple of the q4_0 block size 32");
    FRESH();
    put_u64(t + 4, 1ull << 40);
    put_u64(t + 12, 1ull << 40);
    expect_reject(b, len, "'t.q4_0'", "overflow");
    FRESH();
    put_u64(t + 4, 1ull << 30); /* fits arithmetically, not in the file */
    expect_reject(b, len, "'t.q4_0'", "runs past end of file");
    FRESH();
    put_u32(t + 20, 99);
    expect_reject(b, len, "'t.q4_0'", "unknown tensor type 99");
    FRESH();
    put_u32(t + 20, 16);
    expect_reject(b, len, "'t.q4_0'", "iq2_xxs");
    FRESH();
    put_u64(t + 24, get_u64(t + 24) + 32);
    expect_reject(b, len, "'t.q4_0'", "not a multiple of the alignment 64");
    FRESH();
    put_u64(t + 24, UINT64_MAX - 63);
    expect_reject(b, len, "'t.q4_0'", "runs past end of file");
    FRESH();
    put_u64(t + 24, get_u64(find_bytes(orig, len, "t.f16") + 5 + 4 + 8 + 4)); /* t.f16's offset */
    expect_reject(b, len, "overlap", NULL);
    FRESH();
    memcpy(t - 6, "t.f32x", 6);
    memcpy(find_bytes(b, len, "t.q8_0"), "t.f32x", 6); /* two tensors named t.f32x */
    expect_reject(b, len, "duplicate tensor name 't.f32x'", NULL);
    FRESH();
    put_u64(t - 14, 65); /* name over 64 bytes */
    expect_reject(b, len, "name of tensor 2", "limit");
    /* the data section must fit: cut the file inside the padding after the infos */
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(orig, len, &e);
    assert_non_null(f);
    uint64_t d0 = gguf_data_offset(f);
    gguf_close(f);
    expect_reject(orig, (size_t)d0 - 1, NULL, NULL);
    free(b);
    free(orig);
    test_rmtree(dir);
#undef FRESH
}

static void test_open_errors(void **state)
{
    (void)state;
    struct err e = {0};
    assert_null(gguf_open("/nonexistent/x.gguf", &e));
    assert_int_equal(e.code, ERR_IO);
    assert_non_null(strstr(e.msg, "/nonexistent/x.gguf"));
    assert_null(gguf_open("/tmp", &e));
    assert_non_null(strstr(e.msg, "not a regular file"));
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    spit(path, "", 0);
    assert_null(gguf_open(path, &e));
    assert_non_null(strstr(e.msg, "empty"));
    assert_null(gguf_open_mem(NULL, 0, &e));
    assert_true(e.msg[0] != '\0');
    test_rmtree(dir);
}

/* ---- CLI ---- */

/* Runs a shell command, capturing stdout+stderr; returns the exit status. */
static int run_cmd(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    while (fgetc(p) != EOF) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_cli(void **state)
{
    (void)state;
    char bin[512], path[4096], cmd[8192];
    static char out[1 << 17];
    snprintf(bin, sizeof bin, "%s/nanorec", test_build_dir());
    TEST_REQUIRE_PATH(bin);
    test_data_path(path, sizeof path, STORIES);
    TEST_REQUIRE_PATH(path);

    snprintf(cmd, sizeof cmd, "'%s' gguf-info '%s' 2>&1", bin, path);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "version:       3"));
    assert_non_null(strstr(out, "\"llama\""));
    assert_true(strstr(out, "llama.block_count") && strstr(strstr(out, "llama.block_count"), " 5\n"));
    assert_true(strstr(out, "llama.embedding_length") &&
                strstr(strstr(out, "llama.embedding_length"), " 64\n"));
    assert_non_null(strstr(out, "[512 strings: \"<unk>\", \"<s>\", \"</s>\", ...]"));
    assert_non_null(strstr(out, "token_embd.weight"));
    assert_non_null(strstr(out, "64 x 512"));
    assert_non_null(strstr(out, "total: 48 tensors"));

    snprintf(cmd, sizeof cmd, "'%s' gguf-info --all '%s' 2>&1 | grep -c '<0x0A>'", bin, path);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 0);
    assert_int_equal(atoi(out), 1);

    /* a truncated copy: status 1 and "gguf-info: FILE: message" on stderr */
    char dir[64], cut[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(cut, sizeof cut, "%s/cut.gguf", dir);
    size_t len;
    uint8_t *buf = slurp(path, &len);
    spit(cut, buf, len / 2);
    free(buf);
    snprintf(cmd, sizeof cmd, "'%s' gguf-info '%s' 2>&1 >/dev/null", bin, cut);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 1);
    char want[200];
    snprintf(want, sizeof want, "gguf-info: %s: ", cut);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "past end of file"));

    snprintf(cmd, sizeof cmd, "'%s' gguf-info 2>&1", bin);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "usage"));
    snprintf(cmd, sizeof cmd, "'%s' gguf-info --bogus '%s' 2>&1", bin, path);
    assert_int_equal(run_cmd(cmd, out, sizeof out), 2);
    test_rmtree(dir);
}

/* ---- seed corpus for fuzz/fuzz_gguf ---- */

static int write_corpus(const char *dir)
{
    char path[4096];
    struct err e = {0};
    mkdir(dir, 0755);
    struct { const char *name; uint32_t align; int nt; } specs[] = {
        {"meta_only.gguf", 0, 0},   {"all_types_a64.gguf", 64, SAMPLE_N_TENSORS},
        {"f32_f16.gguf", 0, 2},     {"quant_a32.gguf", 32, 6},
        {"a128_4d.gguf", 128, SAMPLE_N_TENSORS},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct gguf_writer *w = sample_writer(specs[i].align, specs[i].nt);
        snprintf(path, sizeof path, "%s/%s", dir, specs[i].name);
        if (gguf_writer_write(w, path, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        gguf_writer_free(w);
    }
    /* minimal: empty file apart from the header */
    struct gguf_writer *w = gguf_writer_new();
    snprintf(path, sizeof path, "%s/empty_v3.gguf", dir);
    if (gguf_writer_write(w, path, &e)) return 1;
    gguf_writer_free(w);
    /* v2 header of the sample, nested arrays, and malformed variants */
    size_t len;
    snprintf(path, sizeof path, "%s/f32_f16.gguf", dir);
    FILE *fp = fopen(path, "rb");
    if (!fp) return 1;
    static uint8_t buf[1 << 16];
    len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    put_u32(buf + 4, 2);
    snprintf(path, sizeof path, "%s/v2_f32_f16.gguf", dir);
    spit(path, buf, len);
    put_u32(buf + 4, 1);
    snprintf(path, sizeof path, "%s/bad_version1.gguf", dir);
    spit(path, buf, len);
    put_u32(buf + 4, 3);
    snprintf(path, sizeof path, "%s/bad_truncated.gguf", dir);
    spit(path, buf, len / 3);
    uint8_t *t = memmem(buf, len, "t.f16", 5);
    put_u32(t + 5 + 4 + 8, 19);
    snprintf(path, sizeof path, "%s/bad_tensor_type.gguf", dir);
    spit(path, buf, len);
    put_u32(t + 5 + 4 + 8, GGML_TYPE_F16);
    put_u64(t + 5 + 4 + 8 + 4, 8);
    snprintf(path, sizeof path, "%s/bad_misaligned.gguf", dir);
    spit(path, buf, len);
    put_u64(t + 5 + 4 + 8 + 4, 1u << 20);
    snprintf(path, sizeof path, "%s/bad_offset_range.gguf", dir);
    spit(path, buf, len);
    uint8_t *k = memmem(buf, len, "a.str", 5);
    put_u64(k + 5 + 4 + 4, 1ull << 40);
    snprintf(path, sizeof path, "%s/bad_huge_count.gguf", dir);
    spit(path, buf, len);
    static uint8_t nb[1024];
    len = build_nested(nb, sizeof nb, 2);
    snprintf(path, sizeof path, "%s/nested_arrays.gguf", dir);
    spit(path, nb, len);
    len = build_nested(nb, sizeof nb, 9);
    snprintf(path, sizeof path, "%s/bad_nested_too_deep.gguf", dir);
    spit(path, nb, len);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_sizes),
        cmocka_unit_test(test_read_stories),
        cmocka_unit_test(test_read_vocab),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_truncated_and_flipped_real),
        cmocka_unit_test(test_truncated_and_flipped_written),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests_name("gguf", tests, NULL, NULL);
}
