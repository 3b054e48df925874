/* The serving encoder (recsys/encoder_infer.h) against the training forward: same user vector
 * from the f32 file (tight tolerance) and from its Q8_0 copy (cosine > 0.998), history
 * truncation to max_len, and input errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/quantize.h"
#include "recsys/encoder.h"
#include "recsys/encoder_infer.h"
#include "testutil.h"

#define N_ITEMS 120
#define MAXLEN 24

struct fix {
    char dir[256], f32[300], q8[300];
    struct encoder *e;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    test_tmpdir(f->dir, sizeof f->dir);
    snprintf(f->f32, sizeof f->f32, "%s/encoder.gguf", f->dir);
    snprintf(f->q8, sizeof f->q8, "%s/encoder_q8.gguf", f->dir);
    struct encoder_config c;
    encoder_config_default(&c);
    c.n_items = N_ITEMS;
    c.dim = 64;
    c.n_layers = 3;
    c.n_heads = 4;
    c.ffn = 96;
    c.max_len = MAXLEN;
    struct err err = {0};
    f->e = encoder_new(&c, 7, &err);
    assert_non_null(f->e);
    /* larger weights than the 0.02 init (x2), so attention is far from uniform and a wrong
     * position, mask or row would show */
    for (size_t i = 0; i < f->e->n_params; i++)
        f->e->params[i] *= 2.0f;
    assert_int_equal(encoder_save(f->e, NULL, f->f32, &err), 0);
    assert_int_equal(quant_file(f->f32, f->q8, QUANT_FTYPE_Q8_0, 1, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    encoder_free(f->e);
    test_rmtree(f->dir);
    free(f);
    return 0;
}

/* The training forward's user vector: the history's last MAXLEN items, left-padded. */
static void reference_user(struct encoder *e, const uint32_t *hist, int n, float *out);
static void reference_user(struct encoder *e, const uint32_t *hist, int n, float *out)
{
    uint32_t ids[MAXLEN] = {0};
    int take = n > MAXLEN ? MAXLEN : n;
    for (int i = 0; i < take; i++)
        ids[MAXLEN - take + i] = hist[n - take + i];
    struct err err = {0};
    e->training = false;
    assert_int_equal(encoder_forward(e, ids, NULL, 1, MAXLEN, NULL, NULL, NULL, &err), 0);
    encoder_last_vectors(e, out);
}

static double cosine(const float *a, const float *b, int n)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb + 1e-30);
}

static void check_file(struct fix *f, const char *path, double min_cos, float max_abs)
{
    struct err err = {0};
    struct encoder_infer *m = encoder_infer_load(path, &err);
    assert_non_null(m);
    struct encoder_infer_scratch *s = encoder_infer_scratch_new(m);
    assert_non_null(s);
    const int C = 64;
    float want[64], got[64];
    uint64_t rng = 12345;
    /* lengths: 1, short, exactly max_len, longer than max_len (truncated) */
    const int lens[] = {1, 2, 5, 13, MAXLEN, MAXLEN + 9, 60};
    double worst = 1.0;
    float worst_abs = 0.0f;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        uint32_t hist[64];
        for (int i = 0; i < lens[li]; i++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            hist[i] = 1 + (uint32_t)((rng >> 33) % N_ITEMS);
        }
        reference_user(f->e, hist, lens[li], want);
        assert_int_equal(encoder_infer_user(m, s, hist, lens[li], got, &err), 0);
        double cs = cosine(want, got, C);
        if (cs < worst) worst = cs;
        for (int i = 0; i < C; i++)
            if (fabsf(want[i] - got[i]) > worst_abs) worst_abs = fabsf(want[i] - got[i]);
    }
    print_message("  %s: worst cosine %.6f, worst |diff| %.2e\n",
                  encoder_infer_weight_type(m), worst, worst_abs);
    assert_true(worst > min_cos);
    assert_true(worst_abs <= max_abs);
    encoder_infer_scratch_free(s);
    encoder_infer_free(m);
}

static void test_f32_matches_training_forward(void **state)
{
    check_file(*state, ((struct fix *)*state)->f32, 0.99999, 1e-4f);
}

static void test_q8_close_to_training_forward(void **state)
{
    struct fix *f = *state;
    struct err err = {0};
    struct encoder_infer *m = encoder_infer_load(f->q8, &err);
    assert_non_null(m);
    assert_string_equal(encoder_infer_weight_type(m), "q8_0");
    encoder_infer_free(m);
    check_file(f, f->q8, 0.998, 0.05f); /* W8A8 repack of Q8_0: cosine ~0.9995 */
}

/* head_dim 24 (not a multiple of 16) takes the scalar attention reference instead of the
 * AVX-512 one; both must match the training forward. */
static void test_scalar_attention_path(void **state)
{
    struct fix *f = *state;
    struct encoder_config c;
    encoder_config_default(&c);
    c.n_items = N_ITEMS;
    c.dim = 48;
    c.n_layers = 2;
    c.n_heads = 2;
    c.ffn = 64;
    c.max_len = MAXLEN;
    struct err err = {0};
    struct encoder *e = encoder_new(&c, 11, &err);
    assert_non_null(e);
    for (size_t i = 0; i < e->n_params; i++)
        e->params[i] *= 2.0f;
    char path[300];
    snprintf(path, sizeof path, "%s/enc48.gguf", f->dir);
    assert_int_equal(encoder_save(e, NULL, path, &err), 0);
    struct encoder_infer *m = encoder_infer_load(path, &err);
    assert_non_null(m);
    struct encoder_infer_scratch *s = encoder_infer_scratch_new(m);
    uint32_t hist[40];
    for (int i = 0; i < 40; i++)
        hist[i] = 1 + (uint32_t)(i * 37 % N_ITEMS);
    float want[48], got[48];
    const int lens[] = {1, 7, MAXLEN, 40};
    for (int li = 0; li < 4; li++) {
        reference_user(e, hist, lens[li], want);
        assert_int_equal(encoder_infer_user(m, s, hist, lens[li], got, &err), 0);
        for (int i = 0; i < 48; i++)
            assert_true(fabsf(want[i] - got[i]) < 1e-4f);
    }
    encoder_infer_scratch_free(s);
    encoder_infer_free(m);
    encoder_free(e);
}

static void test_bad_input(void **state)
{
    struct fix *f = *state;
    struct err err = {0};
    struct encoder_infer *m = encoder_infer_load(f->q8, &err);
    struct encoder_infer_scratch *s = encoder_infer_scratch_new(m);
    float out[64];
    uint32_t h[3] = {1, N_ITEMS + 1, 2};
    assert_int_equal(encoder_infer_user(m, s, h, 3, out, &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "item id"));
    h[1] = 0;
    assert_int_equal(encoder_infer_user(m, s, h, 3, out, &err), ERR_INVALID);
    assert_int_equal(encoder_infer_user(m, s, h, 0, out, &err), ERR_INVALID);
    encoder_infer_scratch_free(s);
    encoder_infer_free(m);
    /* not an encoder: a truncated file */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/bad.gguf", f->dir);
    FILE *fp = fopen(bad, "wb");
    fwrite("GGUF\3\0\0\0", 1, 8, fp);
    fclose(fp);
    assert_null(encoder_infer_load(bad, &err));
    assert_non_null(strstr(err.msg, "bad.gguf"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_matches_training_forward),
        cmocka_unit_test(test_q8_close_to_training_forward),
        cmocka_unit_test(test_scalar_attention_path),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
