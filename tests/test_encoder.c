/* The user encoder: whole-model gradient checks against finite differences for both losses,
 * and (with recsys/train) learning an obvious sequential rule, bit-identical reruns and
 * checkpoint resume.
 *
 * Gradient checks: a tiny model (11 items, dim 8, 2 layers, 2 heads, ffn 12, T 6, B 3, with
 * left padding and some positions without a target) whose parameters are redrawn at scale
 * 0.3 so every path carries signal. Central differences with eps 1e-3 on every parameter;
 * analytic g and numeric n agree when |g - n| <= 3e-2 * max(|g|, |n|) + 3e-3. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/pool.h"
#include "engine/gguf.h"
#include "recsys/dataset.h"
#include "recsys/encoder.h"
#include "recsys/eval.h"
#include "recsys/train.h"
#include "recsys/train_cli.h"

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

enum { GB = 3, GT = 6 };
static const uint32_t g_ids[GB * GT] = {0, 0, 3, 5, 7, 2,   /* left padded */
                                        1, 2, 3, 4, 5, 6,   /* full */
                                        0, 0, 0, 0, 9, 10}; /* short */
static const uint32_t g_tgt[GB * GT] = {0, 0, 5, 7, 2, 4,   1, 0, 4, 5, 6, 7,
                                        0, 0, 0, 0, 10, 11};

struct gc_ctx {
    struct encoder *e;
    float logq[12];
};

static double gc_loss(struct gc_ctx *c)
{
    float loss = 0.0f;
    assert_int_equal(encoder_forward(c->e, g_ids, g_tgt, GB, GT, c->logq, &loss, NULL, NULL), 0);
    return loss;
}

static void grad_check(enum encoder_loss kind, bool norm_items, float dropout, float temp)
{
    struct encoder_config cfg;
    encoder_config_default(&cfg);
    cfg.n_items = 11;
    cfg.dim = 8;
    cfg.n_layers = 2;
    cfg.n_heads = 2;
    cfg.ffn = 12;
    cfg.max_len = GT;
    cfg.dropout = dropout;
    cfg.loss = kind;
    cfg.norm_items = norm_items;
    cfg.temperature = temp;
    struct err err;
    struct gc_ctx c;
    c.e = encoder_new(&cfg, 7, &err);
    assert_non_null(c.e);
    struct encoder *e = c.e;
    for (size_t i = 0; i < e->n_params; i++)
        e->params[i] += 0.3f * frand();
    memset(e->tok_emb, 0, sizeof(float) * (size_t)cfg.dim);
    for (int i = 0; i < 12; i++)
        c.logq[i] = logf((float)(i + 1) / 78.0f);
    e->training = dropout > 0.0f;
    e->dropout_seed = 12345;

    float loss0 = 0.0f;
    encoder_zero_grad(e);
    assert_int_equal(encoder_forward(e, g_ids, g_tgt, GB, GT, c.logq, &loss0, NULL, &err), 0);
    assert_true(isfinite(loss0) && loss0 > 0.0f);
    assert_int_equal(encoder_backward(e, NULL, &err), 0);
    float *grad = malloc(e->n_params * sizeof(float));
    memcpy(grad, e->grads, e->n_params * sizeof(float));

    const float eps = 1e-3f;
    int bad = 0;
    double max_rel = 0.0;
    size_t nonzero = 0;
    for (int t = 0; t < e->n_tensors; t++) {
        const struct encoder_tensor *tt = &e->tensors[t];
        size_t n = (size_t)tt->rows * tt->cols;
        for (size_t i = 0; i < n; i++) {
            float *x = e->params + tt->offset + i;
            float keep = *x;
            *x = keep + eps;
            double lp = gc_loss(&c);
            *x = keep - eps;
            double lm = gc_loss(&c);
            *x = keep;
            double num = (lp - lm) / (2.0 * eps);
            double ana = grad[tt->offset + i];
            double diff = fabs(num - ana), scale = fmax(fabs(num), fabs(ana));
            if (scale > 0.05 && diff / scale > max_rel)
                max_rel = diff / scale;
            if (fabs(ana) > 1e-6)
                nonzero++;
            if (diff > 3e-2 * scale + 3e-3) {
                if (bad < 8)
                    print_error("%s %s[%zu]: analytic %.6g numeric %.6g\n",
                                encoder_loss_name(kind), tt->name, i, ana, num);
                bad++;
            }
        }
    }
    print_message("  %s norm_items=%d dropout=%.1f: loss %.4f, %zu params (%zu non-zero "
                  "gradients), max relative difference %.2e (values above 0.05)\n",
                  encoder_loss_name(kind), norm_items, (double)dropout, (double)loss0,
                  e->n_params, nonzero, max_rel);
    assert_int_equal(bad, 0);
    assert_true(nonzero > e->n_params / 2); /* the check saw real gradients */
    /* the padding row never gets a gradient */
    for (int j = 0; j < cfg.dim; j++)
        assert_true(grad[j] == 0.0f);
    free(grad);
    encoder_free(e);
}

static void test_grad_softmax(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_SOFTMAX, true, 0.0f, 0.5f);
    grad_check(ENCODER_LOSS_SOFTMAX, false, 0.0f, 1.0f);
}

static void test_grad_infonce(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_INFONCE, true, 0.0f, 0.5f);
    grad_check(ENCODER_LOSS_INFONCE, false, 0.0f, 1.0f);
}

static void test_grad_dropout(void **state)
{
    (void)state;
    grad_check(ENCODER_LOSS_SOFTMAX, true, 0.3f, 0.5f);
}

/* The pool (per-sequence threads) and the batch layout do not change the result: each
 * sequence's vector is the same alone and in a batch, with 1 or 2 threads. */
static void test_batch_and_threads_consistent(void **state)
{
    (void)state;
    struct encoder_config cfg;
    encoder_config_default(&cfg);
    cfg.n_items = 11;
    cfg.dim = 8;
    cfg.ffn = 12;
    cfg.max_len = GT;
    struct err err;
    struct encoder *e = encoder_new(&cfg, 3, &err);
    assert_non_null(e);
    float all[GB * 8], one[8];
    struct pool *p = pool_new(2);
    assert_int_equal(encoder_forward(e, g_ids, NULL, GB, GT, NULL, NULL, p, &err), 0);
    encoder_last_vectors(e, all);
    for (int b = 0; b < GB; b++) {
        assert_int_equal(encoder_forward(e, g_ids + b * GT, NULL, 1, GT, NULL, NULL, NULL, &err),
                         0);
        encoder_last_vectors(e, one);
        double n2 = 0.0;
        for (int j = 0; j < 8; j++) {
            assert_true(one[j] == all[b * 8 + j]);
            n2 += (double)one[j] * one[j];
        }
        assert_true(fabs(n2 - 1.0) < 1e-5); /* L2-normalised */
    }
    /* a bad id is an error, not a crash */
    uint32_t bad[GT] = {0, 0, 0, 0, 1, 12};
    assert_int_equal(encoder_forward(e, bad, NULL, 1, GT, NULL, NULL, NULL, &err), ERR_INVALID);
    pool_free(p);
    encoder_free(e);
}

/* The pool splits every GEMM and the loss (rows, output features, candidates): gradients and
 * loss with 2 threads match the single-threaded ones on a batch large enough to be split
 * (8 sequences of 16, with padding), for both losses. */
static void test_pool_split_matches(void **state)
{
    (void)state;
    enum { B = 8, T = 16, N = 40 };
    uint32_t ids[B * T], tgt[B * T];
    for (int b = 0; b < B; b++) {
        int pad = b % 5; /* left padding of 0..4 positions */
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = t < pad ? 0 : 1 + (uint32_t)((b * 7 + t * 3) % N);
            tgt[b * T + t] = t < pad ? 0 : 1 + (uint32_t)((b * 5 + t * 11 + 1) % N);
        }
    }
    struct pool *p = pool_new(2);
    assert_non_null(p);
    for (int kind = 0; kind < 2; kind++) {
        struct encoder_config cfg;
        encoder_config_default(&cfg);
        cfg.n_items = N;
        cfg.dim = 32;
        cfg.ffn = 48;
        cfg.max_len = T;
        cfg.loss = kind ? ENCODER_LOSS_INFONCE : ENCODER_LOSS_SOFTMAX;
        struct err err;
        struct encoder *e = encoder_new(&cfg, 5, &err);
        assert_non_null(e);
        for (size_t i = 0; i < e->n_params; i++)
            e->params[i] += 0.1f * frand();
        memset(e->tok_emb, 0, sizeof(float) * (size_t)cfg.dim);
        float l1 = 0.0f, l2 = 0.0f;
        encoder_zero_grad(e);
        assert_int_equal(encoder_forward(e, ids, tgt, B, T, NULL, &l1, NULL, &err), 0);
        assert_int_equal(encoder_backward(e, NULL, &err), 0);
        float *g1 = malloc(e->n_params * sizeof(float));
        assert_non_null(g1);
        memcpy(g1, e->grads, e->n_params * sizeof(float));
        encoder_zero_grad(e);
        assert_int_equal(encoder_forward(e, ids, tgt, B, T, NULL, &l2, p, &err), 0);
        assert_int_equal(encoder_backward(e, p, &err), 0);
        assert_true(fabsf(l1 - l2) <= 1e-5f * fabsf(l1));
        double gmax = 0.0, dmax = 0.0;
        for (size_t i = 0; i < e->n_params; i++) {
            gmax = fmax(gmax, fabs(g1[i]));
            dmax = fmax(dmax, fabs((double)g1[i] - e->grads[i]));
        }
        print_message("  %s: loss %.6f, max |gradient| %.3g, max difference 2 vs 1 thread %.3g\n",
                      encoder_loss_name(cfg.loss), (double)l1, gmax, dmax);
        assert_true(gmax > 1e-3);
        assert_true(dmax <= 1e-5 * gmax);
        free(g1);
        encoder_free(e);
    }
    pool_free(p);
}

/* ---- training ---- */

/* 200 users over 50 items; each sequence starts at a random item and follows the rule
 * next = prev + 1 (mod 50), 8 to 30 items long. */
static struct rec_dataset *rule_dataset(void)
{
    enum { U = 200, N = 50 };
    uint64_t off[U + 1];
    uint32_t *seq = malloc(sizeof(uint32_t) * U * 30);
    uint64_t s = 99;
    off[0] = 0;
    for (int u = 0; u < U; u++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int len = 8 + (int)((s >> 33) % 23);
        uint32_t it = 1 + (uint32_t)((s >> 13) % N);
        for (int i = 0; i < len; i++) {
            seq[off[u] + i] = it;
            it = it % N + 1;
        }
        off[u + 1] = off[u] + (uint64_t)len;
    }
    struct err err;
    struct rec_dataset *d = rec_dataset_from_sequences(U, N, off, seq, &err);
    free(seq);
    assert_non_null(d);
    return d;
}

static void rule_config(struct train_config *tc, enum encoder_loss loss)
{
    train_config_default(tc);
    tc->enc.dim = 32;
    tc->enc.n_layers = 1;
    tc->enc.n_heads = 2;
    tc->enc.ffn = 64;
    tc->enc.max_len = 16;
    tc->enc.dropout = 0.1f;
    tc->enc.loss = loss;
    tc->epochs = 30;
    tc->batch = 32;
    tc->lr = 5e-3f;
    tc->warmup_steps = 10;
    tc->eval_every = 0;
    tc->progress = false;
    tc->threads = 1;
}

static void learn_rule(enum encoder_loss loss, bool norm_items)
{
    struct rec_dataset *d = rule_dataset();
    struct train_config tc;
    rule_config(&tc, loss);
    tc.enc.norm_items = norm_items;
    if (!norm_items)
        tc.enc.temperature = 1.0f;
    struct train_result r;
    struct err err;
    struct encoder *e = NULL;
    int rc = train_encoder(d, &tc, &e, &r, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    print_message("  %s%s: %d epochs, %llu steps in %.2f s: loss %.4f, valid HR@10 %.3f NDCG@10 "
                  "%.3f, test HR@10 %.3f\n",
                  encoder_loss_name(loss), norm_items ? "" : " (raw items)", r.epochs_done, (unsigned long long)r.steps,
                  r.seconds, (double)r.last_loss, r.val_hr10, r.val_ndcg10, r.test_hr10);
    assert_true(r.val_hr10 > 0.9);
    assert_true(r.test_hr10 > 0.9);
    /* an untrained model is far from that: the rule is really learned */
    struct encoder *fresh = encoder_new(&e->cfg, 1, &err);
    double hr0, nd0;
    assert_int_equal(train_evaluate(fresh, d, REC_SPLIT_VALID, 10, 0, NULL, &hr0, &nd0, &err), 0);
    assert_true(hr0 < 0.5);
    encoder_free(fresh);
    encoder_free(e);
    rec_dataset_free(d);
}

static void test_learns_rule_softmax(void **state)
{
    (void)state;
    learn_rule(ENCODER_LOSS_SOFTMAX, true);
    learn_rule(ENCODER_LOSS_SOFTMAX, false);
}

static void test_learns_rule_infonce(void **state)
{
    (void)state;
    learn_rule(ENCODER_LOSS_INFONCE, true);
    learn_rule(ENCODER_LOSS_INFONCE, false);
}

struct loss_log {
    float loss[256];
    uint64_t step[256];
    int n;
};
static void log_step(void *ctx, uint64_t step, float loss)
{
    struct loss_log *l = ctx;
    if (l->n < 256) {
        l->step[l->n] = step;
        l->loss[l->n++] = loss;
    }
}

/* Same seed and threads: bit-identical losses and weights, with 2 threads (pool + OpenBLAS). */
static void test_deterministic(void **state)
{
    (void)state;
    struct rec_dataset *d = rule_dataset();
    struct train_config tc;
    rule_config(&tc, ENCODER_LOSS_SOFTMAX);
    tc.epochs = 3;
    tc.threads = 2;
    struct loss_log a = {0}, b = {0};
    struct encoder *ea = NULL, *eb = NULL;
    struct train_result r;
    struct err err;
    tc.on_step = log_step;
    tc.on_step_ctx = &a;
    assert_int_equal(train_encoder(d, &tc, &ea, &r, &err), 0);
    tc.on_step_ctx = &b;
    assert_int_equal(train_encoder(d, &tc, &eb, &r, &err), 0);
    assert_int_equal(a.n, b.n);
    assert_true(a.n > 10);
    assert_memory_equal(a.loss, b.loss, sizeof(float) * (size_t)a.n);
    assert_int_equal(ea->n_params, eb->n_params);
    assert_memory_equal(ea->params, eb->params, sizeof(float) * ea->n_params);
    /* another seed gives another run */
    struct loss_log c = {0};
    tc.seed = 43;
    tc.on_step_ctx = &c;
    struct encoder *ec = NULL;
    assert_int_equal(train_encoder(d, &tc, &ec, &r, &err), 0);
    assert_true(memcmp(a.loss, c.loss, sizeof(float) * (size_t)a.n) != 0);
    encoder_free(ea);
    encoder_free(eb);
    encoder_free(ec);
    rec_dataset_free(d);
}

/* The lr of the last line of DIR/loss.tsv (step, epoch, loss, lr, grad_norm). */
static double last_lr(const char *dir)
{
    char path[512], line[256], last[256] = "";
    snprintf(path, sizeof(path), "%s/loss.tsv", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof(line), f))
        memcpy(last, line, sizeof(last));
    fclose(f);
    unsigned long long step;
    int epoch;
    double loss, lr;
    assert_int_equal(sscanf(last, "%llu\t%d\t%lf\t%lf", &step, &epoch, &loss, &lr), 4);
    return lr;
}

/* A time budget stops the run at an epoch boundary and completes the cosine decay within it:
 * with a budget far below one epoch, a run planned for 100 epochs stops after the first and
 * its steps already use the final lr (lr x min_lr_ratio); stopped after epoch 1 without a
 * budget, the same run's steps are still near the peak lr. */
static void test_time_budget_schedule(void **state)
{
    (void)state;
    struct rec_dataset *d = rule_dataset();
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct train_config tc;
    rule_config(&tc, ENCODER_LOSS_SOFTMAX);
    tc.epochs = 100;
    tc.warmup_steps = 0;
    tc.out_dir = dir;
    tc.time_budget_s = 1e-9;
    struct train_result r;
    struct err err;
    assert_int_equal(train_encoder(d, &tc, NULL, &r, &err), 0);
    assert_int_equal(r.epochs_done, 1);
    double lr_budget = last_lr(dir);
    tc.time_budget_s = 0.0;
    tc.stop_after_epoch = 1;
    assert_int_equal(train_encoder(d, &tc, NULL, &r, &err), 0);
    assert_int_equal(r.epochs_done, 1);
    double lr_epochs = last_lr(dir);
    print_message("  last lr of epoch 1: %.6g with a spent budget, %.6g without (peak %.6g)\n",
                  lr_budget, lr_epochs, (double)tc.lr);
    assert_true(fabs(lr_budget - (double)tc.lr * tc.min_lr_ratio) < 1e-6 * tc.lr);
    assert_true(lr_epochs > 0.99 * tc.lr);
    test_rmtree(dir);
    rec_dataset_free(d);
}

/* Interrupt after epoch 1 and resume from the checkpoint: the following steps' losses and the
 * final weights equal those of an uninterrupted run; the exported file loads back. */
static void test_checkpoint_resume(void **state)
{
    (void)state;
    struct rec_dataset *d = rule_dataset();
    char dir1[256], dir2[256];
    test_tmpdir(dir1, sizeof(dir1));
    test_tmpdir(dir2, sizeof(dir2));
    struct train_config tc;
    rule_config(&tc, ENCODER_LOSS_INFONCE);
    tc.epochs = 3;
    tc.on_step = log_step;
    struct loss_log full = {0}, part = {0}, rest = {0};
    struct encoder *ef = NULL, *er = NULL;
    struct train_result r;
    struct err err;
    tc.out_dir = dir1;
    tc.on_step_ctx = &full;
    assert_int_equal(train_encoder(d, &tc, &ef, &r, &err), 0);

    tc.out_dir = dir2;
    tc.stop_after_epoch = 1;
    tc.on_step_ctx = &part;
    assert_int_equal(train_encoder(d, &tc, NULL, &r, &err), 0);
    assert_int_equal(r.epochs_done, 1);
    tc.stop_after_epoch = 0;
    tc.resume = true;
    tc.on_step_ctx = &rest;
    int rc = train_encoder(d, &tc, &er, &r, &err);
    if (rc)
        print_error("%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(part.n + rest.n, full.n);
    assert_int_equal(rest.step[0], part.step[part.n - 1] + 1);
    assert_memory_equal(part.loss, full.loss, sizeof(float) * (size_t)part.n);
    assert_memory_equal(rest.loss, full.loss + part.n, sizeof(float) * (size_t)rest.n);
    assert_memory_equal(ef->params, er->params, sizeof(float) * ef->n_params);

    /* the export loads back into the same model; curves and plots were written */
    char path[512];
    snprintf(path, sizeof(path), "%s/encoder.gguf", dir1);
    struct encoder *el = encoder_load(path, NULL, &err);
    assert_non_null(el);
    assert_int_equal(el->n_params, ef->n_params);
    assert_memory_equal(el->params, ef->params, sizeof(float) * ef->n_params);
    assert_true(el->cfg.loss == ENCODER_LOSS_INFONCE && el->cfg.dim == 32);
    {   /* the item vectors in the export are the scoring table */
        struct gguf_file *gf = gguf_open(path, &err);
        assert_non_null(gf);
        const struct gguf_tensor *iv = gguf_find_tensor(gf, "item_vectors");
        assert_non_null(iv);
        assert_int_equal(iv->ne[0], 32);
        assert_int_equal(iv->ne[1], 51);
        float *tab = malloc(sizeof(float) * 51 * 32);
        encoder_item_table(ef, tab);
        assert_memory_equal(iv->data, tab, sizeof(float) * 51 * 32);
        free(tab);
        gguf_close(gf);
    }
    snprintf(path, sizeof(path), "%s/loss.tsv", dir2);
    assert_true(test_path_exists(path));
    snprintf(path, sizeof(path), "%s/valid.tsv", dir2);
    assert_true(test_path_exists(path));
    /* a truncated file is an error, not a crash */
    snprintf(path, sizeof(path), "%s/encoder.gguf", dir1);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, sz / 2), 0);
    assert_null(encoder_load(path, NULL, &err));
    encoder_free(el);
    encoder_free(ef);
    encoder_free(er);
    rec_dataset_free(d);
    test_rmtree(dir1);
    test_rmtree(dir2);
}

/* The scorer behind `nanorec eval --model` (one model per thread) agrees with the training
 * loop's own evaluation, and refuses a model trained on another item count. */
static void test_eval_scorer_matches(void **state)
{
    (void)state;
    struct rec_dataset *d = rule_dataset();
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct train_config tc;
    rule_config(&tc, ENCODER_LOSS_SOFTMAX);
    tc.epochs = 1; /* partly trained: metrics strictly between 0 and 1 */
    tc.warmup_steps = 0;
    tc.lr = 3e-4f;
    tc.out_dir = dir;
    struct train_result r;
    struct err err;
    struct encoder *e = NULL;
    assert_int_equal(train_encoder(d, &tc, &e, &r, &err), 0);
    double hr, nd;
    assert_int_equal(train_evaluate(e, d, REC_SPLIT_TEST, 10, 0, NULL, &hr, &nd, &err), 0);
    char path[512];
    snprintf(path, sizeof(path), "%s/encoder.gguf", dir);
    struct rec_scorer sc = {0};
    assert_int_equal(train_encoder_loader.open(path, d, 2, &sc, &err), 0);
    struct pool *p = pool_new(2);
    struct rec_eval_cfg ec = {.split = REC_SPLIT_TEST, .pool = p};
    struct rec_eval_result er;
    assert_int_equal(rec_eval_run(d, &sc, &ec, &er, &err), 0);
    print_message("  1 epoch: train_evaluate HR@10 %.4f NDCG@10 %.4f, evaluator %.4f %.4f\n", hr,
                  nd, er.hr[0], er.ndcg[0]);
    assert_true(hr > 0.05 && hr < 0.95);
    assert_true(fabs(er.hr[0] - hr) < 1e-9);
    assert_true(fabs(er.ndcg[0] - nd) < 1e-6);
    train_encoder_loader.close(&sc);
    /* another dataset shape is refused with a message */
    d->n_items = 60;
    struct rec_scorer sc2 = {0};
    assert_true(train_encoder_loader.open(path, d, 1, &sc2, &err) < 0);
    assert_non_null(strstr(err.msg, "items"));
    d->n_items = 50;
    pool_free(p);
    encoder_free(e);
    rec_dataset_free(d);
    test_rmtree(dir);
}

/* Bad command lines answer 2 with a message; a resume into another shape is refused. */
static void test_cli_and_resume_errors(void **state)
{
    (void)state;
    char a0[] = "train encoder", a1[] = "--out", a2[] = "/tmp/x", a3[] = "--loss", a4[] = "bce",
         a5[] = "--data", a6[] = "/nonexistent/dataset.gguf", a7[] = "--dim", a8[] = "-3";
    char *v1[] = {a0, a1, a2, NULL}; /* no --data */
    assert_int_equal(train_cli_encoder(3, v1), 2);
    char *v2[] = {a0, a5, a6, a1, a2, a3, a4, NULL}; /* unknown loss */
    assert_int_equal(train_cli_encoder(7, v2), 2);
    char *v3[] = {a0, a5, a6, a1, a2, a7, a8, NULL}; /* dim out of range */
    assert_int_equal(train_cli_encoder(7, v3), 2);
    char *v4[] = {a0, a5, a6, a1, a2, NULL}; /* missing dataset: a failure, not a crash */
    assert_int_equal(train_cli_encoder(5, v4), 1);

    struct rec_dataset *d = rule_dataset();
    char dir[256];
    test_tmpdir(dir, sizeof(dir));
    struct train_config tc;
    rule_config(&tc, ENCODER_LOSS_SOFTMAX);
    tc.epochs = 1;
    tc.out_dir = dir;
    struct train_result r;
    struct err err;
    assert_int_equal(train_encoder(d, &tc, NULL, &r, &err), 0);
    tc.resume = true;
    tc.epochs = 2;
    tc.enc.dim = 16;
    assert_int_equal(train_encoder(d, &tc, NULL, &r, &err), ERR_INVALID);
    assert_non_null(strstr(err.msg, "shape"));
    rec_dataset_free(d);
    test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_softmax),
        cmocka_unit_test(test_grad_infonce),
        cmocka_unit_test(test_grad_dropout),
        cmocka_unit_test(test_batch_and_threads_consistent),
        cmocka_unit_test(test_pool_split_matches),
        cmocka_unit_test(test_learns_rule_softmax),
        cmocka_unit_test(test_learns_rule_infonce),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_time_budget_schedule),
        cmocka_unit_test(test_checkpoint_resume),
        cmocka_unit_test(test_eval_scorer_matches),
        cmocka_unit_test(test_cli_and_resume_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
