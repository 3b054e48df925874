/* `nanorec train encoder`, and the encoder scorer behind `nanorec eval --model`. */
#include "recsys/train_cli.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cli.h"
#include "base/log.h"
#include "recsys/train.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double train_sgemm_gflops(int threads)
{
    const int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    double best = 0.0;
    if (a && b && c) {
        for (int i = 0; i < n * n; i++) {
            a[i] = (float)(i % 7) * 0.1f;
            b[i] = (float)(i % 5) * 0.1f;
        }
        openblas_set_num_threads(threads);
        for (int rep = 0; rep < 4; rep++) {
            double t0 = now_s();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                        0.0f, c, n);
            double g = 2.0 * n * n * n / (now_s() - t0) * 1e-9;
            if (rep > 0 && g > best) /* the first warms up */
                best = g;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int train_cli_encoder(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *loss_s = NULL;
    struct train_config tc;
    train_config_default(&tc);
    bool bad = false;
    long v;
    double x;
    for (int i = 1; i < argc; i++) {
        if (cli_opt_str(argc, argv, &i, "--data", &data, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--out", &out, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--loss", &loss_s, &bad)) continue;
#define OPT_I(name, lo, hi, dst)                                                                 \
    if (cli_opt_int(argc, argv, &i, name, lo, hi, &v, &bad)) {                                   \
        dst = v;                                                                                 \
        continue;                                                                                \
    }
#define OPT_D(name, lo, hi, dst)                                                                 \
    if (cli_opt_double(argc, argv, &i, name, lo, hi, &x, &bad)) {                                \
        dst = x;                                                                                 \
        continue;                                                                                \
    }
        OPT_I("--dim", 2, 4096, tc.enc.dim)
        OPT_I("--layers", 0, 64, tc.enc.n_layers)
        OPT_I("--heads", 1, 256, tc.enc.n_heads)
        OPT_I("--ffn", 1, 65536, tc.enc.ffn)
        OPT_I("--max-len", 1, 4096, tc.enc.max_len)
        OPT_D("--dropout", 0.0, 0.9, tc.enc.dropout)
        OPT_D("--rope-theta", 1.5, 1e7, tc.enc.rope_theta)
        OPT_D("--temperature", 1e-3, 100.0, tc.enc.temperature)
        OPT_I("--epochs", 1, 100000, tc.epochs)
        OPT_I("--batch", 1, 65536, tc.batch)
        OPT_D("--lr", 1e-7, 1.0, tc.lr)
        OPT_D("--min-lr-ratio", 0.0, 1.0, tc.min_lr_ratio)
        OPT_D("--beta2", 0.5, 0.99999, tc.beta2)
        OPT_I("--warmup", 0, 10000000, tc.warmup_steps)
        OPT_D("--weight-decay", 0.0, 10.0, tc.weight_decay)
        OPT_D("--clip", 0.0, 1e6, tc.grad_clip)
        OPT_I("--seed", 0, 0x7fffffffL, tc.seed)
        OPT_I("--threads", 1, 256, tc.threads)
        OPT_D("--time-budget", 0.0, 1e7, tc.time_budget_s)
        OPT_I("--eval-every", 0, 100000, tc.eval_every)
        OPT_I("--eval-users", 0, 100000000, tc.eval_max_users)
#undef OPT_I
#undef OPT_D
        if (bad)
            return 2;
        if (!strcmp(argv[i], "--resume"))
            tc.resume = true;
        else if (!strcmp(argv[i], "--no-logq"))
            tc.enc.logq = false;
        else if (!strcmp(argv[i], "--raw-items"))
            tc.enc.norm_items = false;
        else if (!strcmp(argv[i], "--no-bucket"))
            tc.bucket = false;
        else if (!strcmp(argv[i], "--constant-lr"))
            tc.cosine = false;
        else if (!strcmp(argv[i], "--quiet"))
            tc.progress = false;
        else {
            fprintf(stderr, "train encoder: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (bad)
        return 2;
    if (!data || !out) {
        fprintf(stderr, "train encoder: --data DATASET and --out DIR are required (see --help)\n");
        return 2;
    }
    if (loss_s) {
        int l = encoder_loss_parse(loss_s);
        if (l < 0) {
            fprintf(stderr, "train encoder: --loss must be softmax or infonce, not '%s'\n",
                    loss_s);
            return 2;
        }
        tc.enc.loss = (enum encoder_loss)l;
    }
    tc.out_dir = out;
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_load(data, &err);
    if (!d) {
        fprintf(stderr, "train encoder: %s\n", err.msg);
        return 1;
    }
    double peak = train_sgemm_gflops(tc.threads);
    log_info("train", "OpenBLAS sgemm peak (1024^3, %d threads): %.1f GFLOP/s", tc.threads, peak);
    struct train_result r;
    int rc = train_encoder(d, &tc, NULL, &r, &err);
    rec_dataset_free(d);
    if (rc) {
        fprintf(stderr, "train encoder: %s\n", err.msg);
        return 1;
    }
    printf("epochs %d  steps %llu  train time %.1f s  last loss %.4f\n", r.epochs_done,
           (unsigned long long)r.steps, r.seconds, (double)r.last_loss);
    printf("valid HR@10 %.4f  NDCG@10 %.4f\n", r.val_hr10, r.val_ndcg10);
    printf("test  HR@10 %.4f  NDCG@10 %.4f\n", r.test_hr10, r.test_ndcg10);
    printf("throughput %.1f GFLOP/s over whole steps (sgemm peak %.1f GFLOP/s, %d threads)\n",
           r.seconds > 0 ? r.gflop / r.seconds : 0.0, peak, tc.threads);
    printf("wrote %s/encoder.gguf, checkpoint.gguf, loss.tsv, valid.tsv, loss.png, valid.png\n",
           out);
    return 0;
}

/* ---- the evaluator's scorer: one model copy (with its own activations) per thread ---- */

struct enc_scorer {
    int n;
    struct encoder **models;
    float *table;      /* (n_items+1, C) scoring table */
    uint32_t *ids;     /* per thread (64, T) */
    float *uv;         /* per thread (64, C) */
};

#define SCORER_BATCH 64

static int enc_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                     const uint32_t *users, size_t n_users, float *scores, size_t stride, int tid,
                     struct err *err)
{
    struct enc_scorer *s = ctx;
    if (tid < 0 || tid >= s->n)
        return err_set(err, ERR_INVALID, "encoder scorer: thread %d of %d", tid, s->n);
    struct encoder *e = s->models[tid];
    const int T = e->cfg.max_len, C = e->cfg.dim, N = e->cfg.n_items;
    uint32_t *ids = s->ids + (size_t)tid * SCORER_BATCH * T;
    float *uv = s->uv + (size_t)tid * SCORER_BATCH * C;
    for (size_t b0 = 0; b0 < n_users; b0 += SCORER_BATCH) {
        int B = (int)(n_users - b0 < SCORER_BATCH ? n_users - b0 : SCORER_BATCH);
        for (int b = 0; b < B; b++) {
            uint64_t n;
            const uint32_t *h = rec_split_history(d, users[b0 + b], split, &n);
            uint64_t take = n < (uint64_t)T ? n : (uint64_t)T;
            uint32_t *row = ids + (size_t)b * T;
            memset(row, 0, sizeof(uint32_t) * (size_t)T);
            memcpy(row + (T - (int)take), h + (n - take), sizeof(uint32_t) * take);
        }
        int rc = encoder_forward(e, ids, NULL, B, T, NULL, NULL, NULL, err);
        if (rc)
            return rc;
        encoder_last_vectors(e, uv);
        for (int b = 0; b < B; b++) /* scores (1, N+1) = u . table^T; entry 0 ignored */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, N + 1, C, 1.0f, s->table, C,
                        uv + (size_t)b * C, 1, 0.0f, scores + (b0 + (size_t)b) * stride, 1);
    }
    return 0;
}

static void enc_close(struct rec_scorer *sc)
{
    struct enc_scorer *s = sc->ctx;
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        encoder_free(s->models[i]);
    free(s->models);
    free(s->table);
    free(s->ids);
    free(s->uv);
    free(s);
    sc->ctx = NULL;
}

static int enc_open(const char *path, const struct rec_dataset *d, int n_threads,
                    struct rec_scorer *sc, struct err *err)
{
    if (n_threads < 1)
        n_threads = 1;
    struct enc_scorer *s = calloc(1, sizeof(*s));
    if (!s)
        return err_set(err, ERR_NOMEM, "encoder scorer: out of memory");
    sc->name = "encoder";
    sc->score = enc_score;
    sc->ctx = s;
    s->models = calloc((size_t)n_threads, sizeof(*s->models));
    if (!s->models)
        goto nomem;
    for (int i = 0; i < n_threads; i++) {
        s->models[i] = encoder_load(path, NULL, err);
        if (!s->models[i]) {
            enc_close(sc);
            return ERR_INVALID;
        }
        s->n = i + 1;
    }
    const struct encoder_config *c = &s->models[0]->cfg;
    if ((uint32_t)c->n_items != d->n_items) {
        int n_items = c->n_items;
        enc_close(sc);
        return err_set(err, ERR_INVALID,
                       "encoder %s was trained on %d items but the dataset has %u", path,
                       n_items, d->n_items);
    }
    s->table = malloc(sizeof(float) * ((size_t)c->n_items + 1) * c->dim);
    s->ids = malloc(sizeof(uint32_t) * (size_t)n_threads * SCORER_BATCH * c->max_len);
    s->uv = malloc(sizeof(float) * (size_t)n_threads * SCORER_BATCH * c->dim);
    if (!s->table || !s->ids || !s->uv)
        goto nomem;
    encoder_item_table(s->models[0], s->table);
    openblas_set_num_threads(1); /* the evaluator's threads are the parallelism */
    return 0;
nomem:
    enc_close(sc);
    return err_set(err, ERR_NOMEM, "encoder scorer: out of memory");
}

const struct rec_model_loader train_encoder_loader = {enc_open, enc_close};

int train_cli_eval(int argc, char **argv)
{
    return eval_cli_main(argc, argv, &train_encoder_loader);
}
