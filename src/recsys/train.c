/* Training loop of the user encoder (see train.h). */
#include "recsys/train.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/log.h"
#include "base/progress.h"
#include "recsys/eval.h"

#define CKPT_FILE "checkpoint.gguf"
#define MODEL_FILE "encoder.gguf"
#define BUCKET_BATCHES 16 /* batches per length-sorting window */

void train_config_default(struct train_config *c)
{
    memset(c, 0, sizeof(*c));
    encoder_config_default(&c->enc);
    c->epochs = 200;
    c->batch = 128;
    c->lr = 1e-3f;
    c->min_lr_ratio = 0.1f;
    c->cosine = true;
    c->warmup_steps = 100;
    c->weight_decay = 0.01f;
    c->beta1 = 0.9f;
    c->beta2 = 0.98f;
    c->adam_eps = 1e-8f;
    c->grad_clip = 1.0f;
    c->seed = 42;
    c->threads = 1;
    c->eval_every = 1;
    c->progress = true;
    c->bucket = true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* xorshift64* for the batch sampler: its whole state is one u64 a checkpoint can carry */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* The lr at `step` (from 1): linear warm-up over warmup_steps, then cosine decay to
 * lr * min_lr_ratio. The decay's progress is the larger of the step fraction (of `total`) and
 * `time_frac`, the fraction of the time budget spent (0 without a budget), so a run stopped by
 * its budget still ends its decay instead of stopping near the peak lr. */
static float lr_at(const struct train_config *c, uint64_t step, uint64_t total, double time_frac)
{
    if (c->warmup_steps > 0 && step <= (uint64_t)c->warmup_steps)
        return c->lr * (float)step / (float)c->warmup_steps;
    if (!c->cosine || total <= (uint64_t)c->warmup_steps)
        return c->lr;
    double prog = (double)(step - (uint64_t)c->warmup_steps) /
                  (double)(total - (uint64_t)c->warmup_steps);
    if (time_frac > prog)
        prog = time_frac;
    if (prog > 1.0)
        prog = 1.0;
    double minlr = c->lr * c->min_lr_ratio;
    return (float)(minlr + 0.5 * (c->lr - minlr) * (1.0 + cos(M_PI * prog)));
}

/* Left-pads the last `T` items of hist[0..n) into row (T). */
static void fill_row(uint32_t *row, int T, const uint32_t *hist, uint64_t n)
{
    uint64_t take = n < (uint64_t)T ? n : (uint64_t)T;
    memset(row, 0, (size_t)T * sizeof(uint32_t));
    memcpy(row + (T - (int)take), hist + (n - take), (size_t)take * sizeof(uint32_t));
}

/* Input positions of user u's training sample: min(train items - 1, T). */
static int train_len(const struct rec_dataset *d, uint32_t u, int T)
{
    uint64_t n;
    rec_split_train(d, u, &n);
    return n < 2 ? 0 : (n - 1 < (uint64_t)T ? (int)(n - 1) : T);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Training sample of user u: inputs and next-item targets over the last T+1 train items. */
static void fill_sample(const struct rec_dataset *d, uint32_t u, int T, uint32_t *ids,
                        uint32_t *tgt)
{
    uint64_t n;
    const uint32_t *tr = rec_split_train(d, u, &n);
    uint64_t take = n < (uint64_t)T + 1 ? n : (uint64_t)T + 1; /* >= 2 for train users */
    const uint32_t *w = tr + (n - take);
    int len = (int)take - 1, pad = T - len;
    memset(ids, 0, (size_t)T * sizeof(uint32_t));
    memset(tgt, 0, (size_t)T * sizeof(uint32_t));
    for (int i = 0; i < len; i++) {
        ids[pad + i] = w[i];
        tgt[pad + i] = w[i + 1];
    }
}

int train_evaluate(struct encoder *e, const struct rec_dataset *d, enum rec_split split, int k,
                   uint32_t max_users, struct pool *pool, double *hr, double *ndcg,
                   struct err *err)
{
    const int T = e->cfg.max_len, C = e->cfg.dim, N = e->cfg.n_items;
    const int EB = 128; /* users per forward: the training batch's activation size */
    int rc = 0;
    uint32_t *users = malloc(sizeof(uint32_t) * (d->n_users ? d->n_users : 1));
    uint32_t *ids = malloc(sizeof(uint32_t) * (size_t)EB * T);
    float *uv = malloc(sizeof(float) * (size_t)EB * C);
    float *table = malloc(sizeof(float) * (size_t)(N + 1) * C);
    float *scores = malloc(sizeof(float) * (size_t)EB * (N + 1));
    uint32_t *stamp = calloc((size_t)N + 1, sizeof(uint32_t));
    if (!users || !ids || !uv || !table || !scores || !stamp) {
        rc = err_set(err, ERR_NOMEM, "evaluate: out of memory");
        goto out;
    }
    uint32_t n_eval = 0;
    for (uint32_t u = 0; u < d->n_users; u++)
        if (rec_split_target(d, u, split))
            users[n_eval++] = u;
    if (max_users && n_eval > max_users) { /* evenly spaced subset, deterministic */
        for (uint32_t i = 0; i < max_users; i++)
            users[i] = users[(uint64_t)i * n_eval / max_users];
        n_eval = max_users;
    }
    bool was_training = e->training;
    e->training = false;
    encoder_item_table(e, table);
    double sum_hr = 0.0, sum_ndcg = 0.0;
    for (uint32_t b0 = 0; b0 < n_eval; b0 += EB) {
        int B = (int)(n_eval - b0 < (uint32_t)EB ? n_eval - b0 : (uint32_t)EB);
        for (int b = 0; b < B; b++) {
            uint64_t n;
            const uint32_t *h = rec_split_history(d, users[b0 + b], split, &n);
            fill_row(ids + (size_t)b * T, T, h, n);
        }
        rc = encoder_forward(e, ids, NULL, B, T, NULL, NULL, pool, err);
        if (rc)
            break;
        encoder_last_vectors(e, uv);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N + 1, C, 1.0f, uv, C, table, C,
                    0.0f, scores, N + 1);
        for (int b = 0; b < B; b++) {
            uint32_t u = users[b0 + b];
            uint32_t tgt = rec_split_target(d, u, split);
            uint64_t n;
            const uint32_t *h = rec_split_history(d, u, split, &n);
            uint32_t rank = rec_eval_rank(scores + (size_t)b * (N + 1), (uint32_t)N, tgt, h,
                                          (size_t)n, stamp, b0 + (uint32_t)b + 1);
            if (rank < (uint32_t)k) {
                sum_hr += 1.0;
                sum_ndcg += 1.0 / log2(rank + 2.0);
            }
        }
    }
    e->training = was_training;
    *hr = n_eval ? sum_hr / n_eval : 0.0;
    *ndcg = n_eval ? sum_ndcg / n_eval : 0.0;
out:
    free(users);
    free(ids);
    free(uv);
    free(table);
    free(scores);
    free(stamp);
    return rc;
}

/* Writes plot.gp next to the TSVs and runs gnuplot on it; a missing gnuplot is a warning. */
static void write_plots(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/plot.gp", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    fprintf(f, "set terminal png size 900,500 noenhanced\n"
               "set datafile separator '\\t'\n"
               "set key autotitle columnhead\n"
               "set grid\n"
               "set output '%s/loss.png'\n"
               "set title 'encoder training loss'\n"
               "set xlabel 'step'\nset ylabel 'loss'\n"
               "plot '%s/loss.tsv' using 1:3 with lines title 'train loss'\n"
               "set output '%s/valid.png'\n"
               "set title 'validation (full ranking, seen items excluded)'\n"
               "set xlabel 'epoch'\nset ylabel 'metric'\n"
               "plot '%s/valid.tsv' using 1:3 with linespoints title 'HR@10', "
               "'' using 1:4 with linespoints title 'NDCG@10'\n",
            dir, dir, dir, dir);
    fclose(f);
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "gnuplot '%s' >/dev/null 2>&1", path);
    if (system(cmd) != 0)
        log_warn("train", "gnuplot failed or is missing: curves stay as TSV in %s", dir);
}

static FILE *open_tsv(const char *dir, const char *name, const char *header, bool append)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    bool fresh = !append || stat(path, &st) != 0 || st.st_size == 0;
    FILE *f = fopen(path, fresh ? "w" : "a");
    if (f && fresh)
        fprintf(f, "%s\n", header);
    return f;
}

int train_encoder(const struct rec_dataset *d, const struct train_config *cfg,
                  struct encoder **out, struct train_result *res, struct err *err)
{
    struct train_result r;
    memset(&r, 0, sizeof(r));
    struct encoder *e = NULL;
    struct pool *pool = NULL;
    uint32_t *users = NULL, *users_base = NULL, *ids = NULL, *tgt = NULL;
    uint64_t *keys = NULL, *order = NULL;
    float *logq = NULL;
    FILE *loss_f = NULL, *val_f = NULL;
    int rc = 0;
    const int T = cfg->enc.max_len, B = cfg->batch;
    if (B < 1 || B > 65536 || cfg->epochs < 1 || cfg->threads < 1 || cfg->threads > 256 ||
        !(cfg->lr > 0.0f) || cfg->warmup_steps < 0)
        return err_set(err, ERR_INVALID,
                       "train: batch %d, epochs %d, threads %d, lr %g or warmup %d out of range",
                       B, cfg->epochs, cfg->threads, (double)cfg->lr, cfg->warmup_steps);
    if (d->n_items < 1)
        return err_set(err, ERR_INVALID, "train: the dataset has no items");

    struct encoder_config ec = cfg->enc;
    ec.n_items = (int)d->n_items;
    struct encoder_train_state ts = {0, cfg->seed ? cfg->seed : 1, 0, cfg->seed};
    char ckpt[4096] = "";
    if (cfg->out_dir) {
        if (mkdir(cfg->out_dir, 0755) != 0 && errno != EEXIST)
            return err_set(err, ERR_IO, "train: cannot create %s: %s", cfg->out_dir,
                           strerror(errno));
        snprintf(ckpt, sizeof(ckpt), "%s/%s", cfg->out_dir, CKPT_FILE);
    }
    struct stat st;
    bool resumed = false;
    if (cfg->resume && ckpt[0] && stat(ckpt, &st) == 0) {
        e = encoder_load(ckpt, &ts, err);
        if (!e)
            return err_prefix(err, "resuming from %s", ckpt);
        if (e->cfg.n_items != ec.n_items || e->cfg.dim != ec.dim ||
            e->cfg.n_layers != ec.n_layers || e->cfg.max_len != ec.max_len ||
            e->cfg.n_heads != ec.n_heads || e->cfg.ffn != ec.ffn) {
            err_set(err, ERR_INVALID,
                    "train: checkpoint %s has another shape (items %d dim %d layers %d heads "
                    "%d ffn %d max_len %d) than asked for; use another --out or drop --resume",
                    ckpt, e->cfg.n_items, e->cfg.dim, e->cfg.n_layers, e->cfg.n_heads,
                    e->cfg.ffn, e->cfg.max_len);
            encoder_free(e);
            return ERR_INVALID;
        }
        resumed = true;
        log_info("train", "resumed from %s at epoch %u, step %llu", ckpt, ts.epoch,
                 (unsigned long long)ts.step);
    } else {
        e = encoder_new(&ec, cfg->seed, err);
        if (!e)
            return ERR_INVALID;
    }

    pool = cfg->threads > 1 ? pool_new(cfg->threads) : NULL;
    /* the pool splits every GEMM itself (encoder.c); OpenBLAS's own threads would only spin */
    openblas_set_num_threads(pool ? 1 : cfg->threads);
    /* train users: at least one (input, target) pair */
    users = malloc(sizeof(uint32_t) * (d->n_users ? d->n_users : 1));
    users_base = malloc(sizeof(uint32_t) * (d->n_users ? d->n_users : 1));
    ids = malloc(sizeof(uint32_t) * (size_t)B * T);
    tgt = malloc(sizeof(uint32_t) * (size_t)B * T);
    logq = malloc(sizeof(float) * ((size_t)d->n_items + 1));
    keys = malloc(sizeof(uint64_t) * (size_t)B * BUCKET_BATCHES);
    if (!users || !users_base || !ids || !tgt || !logq || !keys || (cfg->threads > 1 && !pool)) {
        rc = err_set(err, ERR_NOMEM, "train: out of memory");
        goto out;
    }
    uint32_t n_train = 0;
    {
        double *cnt = calloc((size_t)d->n_items + 1, sizeof(double));
        if (!cnt) {
            rc = err_set(err, ERR_NOMEM, "train: out of memory");
            goto out;
        }
        double total = 0.0;
        for (uint32_t u = 0; u < d->n_users; u++) {
            uint64_t n;
            const uint32_t *tr = rec_split_train(d, u, &n);
            if (n >= 2)
                users_base[n_train++] = u;
            for (uint64_t i = 1; i < n; i++) {
                cnt[tr[i]] += 1.0;
                total += 1.0;
            }
        }
        /* log q(item): its share of training targets (unseen items get half a count) */
        for (uint32_t i = 0; i <= d->n_items; i++)
            logq[i] = (float)log((cnt[i] > 0 ? cnt[i] : 0.5) / (total > 0 ? total : 1.0));
        free(cnt);
    }
    if (n_train == 0) {
        rc = err_set(err, ERR_INVALID, "train: no user has two training interactions");
        goto out;
    }
    const uint64_t steps_per_epoch = (n_train + (uint32_t)B - 1) / (uint32_t)B;
    const uint64_t total_steps = steps_per_epoch * (uint64_t)cfg->epochs;
    order = malloc(sizeof(uint64_t) * steps_per_epoch);
    if (!order) {
        rc = err_set(err, ERR_NOMEM, "train: out of memory");
        goto out;
    }
    if (cfg->out_dir) {
        loss_f = open_tsv(cfg->out_dir, "loss.tsv", "step\tepoch\tloss\tlr\tgrad_norm", resumed);
        val_f = open_tsv(cfg->out_dir, "valid.tsv", "epoch\tstep\tHR@10\tNDCG@10\tseconds",
                         resumed);
        if (!loss_f || !val_f) {
            rc = err_set(err, ERR_IO, "train: cannot write curves in %s", cfg->out_dir);
            goto out;
        }
    }
    log_info("train",
             "%u train users, %llu steps/epoch, %d epochs, %zu parameters, loss %s, "
             "dim %d layers %d heads %d ffn %d max_len %d, batch %d, threads %d",
             n_train, (unsigned long long)steps_per_epoch, cfg->epochs, e->n_params,
             encoder_loss_name(e->cfg.loss), ec.dim, ec.n_layers, ec.n_heads, ec.ffn,
             ec.max_len, B, cfg->threads);

    /* activations for the largest batch once, not regrown as bucket lengths vary */
    if (encoder_reserve(e, B > 128 ? B : 128, T)) {
        rc = err_set(err, ERR_NOMEM, "train: out of memory for activations of (%d, %d)", B, T);
        goto out;
    }
    struct adamw_config opt = {cfg->lr, cfg->beta1, cfg->beta2, cfg->adam_eps,
                               cfg->weight_decay};
    struct progress pb;
    if (cfg->progress)
        progress_begin(&pb, "train", "steps", total_steps);
    const double t0 = now_s();
    double gflop = 0.0;
    int epoch = (int)ts.epoch;
    r.val_hr10 = r.val_ndcg10 = 0.0;
    double eval_s = 0.0; /* wall time of the last per-epoch validation */
    while (epoch < cfg->epochs) {
        const double te = now_s();
        /* shuffle (Fisher-Yates) from the sampler's RNG, starting each epoch from user order so
         * that an epoch depends only on the RNG state a checkpoint carries */
        for (uint32_t i = 0; i < n_train; i++)
            users[i] = users_base[i];
        for (uint32_t i = n_train - 1; i > 0; i--) {
            uint32_t j = (uint32_t)(rng_next(&ts.rng) % (i + 1));
            uint32_t t = users[i];
            users[i] = users[j];
            users[j] = t;
        }
        /* length buckets: within windows of BUCKET_BATCHES batches, users sorted by length
         * (longest first, ties by id), then the batches visited in a random order, so a batch
         * pads to its own longest user instead of max_len */
        if (cfg->bucket) {
            uint32_t W = (uint32_t)B * BUCKET_BATCHES;
            for (uint32_t w0 = 0; w0 < n_train; w0 += W) {
                uint32_t wn = n_train - w0 < W ? n_train - w0 : W;
                for (uint32_t i = 0; i < wn; i++) {
                    uint32_t u = users[w0 + i];
                    keys[i] = ((uint64_t)(0xFFFFFFFFu - train_len(d, u, T)) << 32) | u;
                }
                qsort(keys, wn, sizeof(uint64_t), cmp_u64);
                for (uint32_t i = 0; i < wn; i++)
                    users[w0 + i] = (uint32_t)keys[i];
            }
        }
        for (uint64_t i = 0; i < steps_per_epoch; i++)
            order[i] = i;
        if (cfg->bucket)
            for (uint64_t i = steps_per_epoch - 1; i > 0; i--) {
                uint64_t j = rng_next(&ts.rng) % (i + 1), t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        double loss_sum = 0.0;
        for (uint64_t s = 0; s < steps_per_epoch; s++) {
            uint32_t b0 = (uint32_t)(order[s] * (uint64_t)B);
            int nb = (int)(n_train - b0 < (uint32_t)B ? n_train - b0 : (uint32_t)B);
            int n_loss = 0, Tb = 1;
            for (int b = 0; b < nb; b++) {
                int len = train_len(d, users[b0 + b], T);
                if (len > Tb)
                    Tb = len;
            }
            for (int b = 0; b < nb; b++) {
                fill_sample(d, users[b0 + b], Tb, ids + (size_t)b * Tb, tgt + (size_t)b * Tb);
                for (int t = 0; t < Tb; t++)
                    n_loss += tgt[(size_t)b * Tb + t] != 0;
            }
            ts.step++;
            e->training = true;
            e->dropout_seed = cfg->seed * 0x9E3779B97F4A7C15ull + ts.step;
            float loss = 0.0f;
            encoder_zero_grad(e);
            rc = encoder_forward(e, ids, tgt, nb, Tb, logq, &loss, pool, err);
            if (!rc)
                rc = encoder_backward(e, pool, err);
            if (rc)
                goto out;
            if (!isfinite(loss)) {
                rc = err_set(err, ERR_INVALID,
                             "train: loss became %g at step %llu; lower --lr or raise "
                             "--temperature",
                             (double)loss, (unsigned long long)ts.step);
                goto out;
            }
            float gnorm = encoder_clip_grad(e, cfg->grad_clip);
            opt.lr = lr_at(cfg, ts.step, total_steps,
                           cfg->time_budget_s > 0 ? (now_s() - t0) / cfg->time_budget_s : 0.0);
            encoder_adamw_step(e, &opt, ts.step);
            loss_sum += loss;
            gflop += encoder_train_flops(&e->cfg, nb, Tb, n_loss,
                                         e->cfg.loss == ENCODER_LOSS_SOFTMAX
                                             ? e->cfg.n_items
                                             : (n_loss < e->cfg.n_items ? n_loss
                                                                        : e->cfg.n_items)) *
                     1e-9;
            if (loss_f)
                fprintf(loss_f, "%llu\t%d\t%.6f\t%.6g\t%.4f\n", (unsigned long long)ts.step,
                        epoch + 1, (double)loss, (double)opt.lr, (double)gnorm);
            if (cfg->on_step)
                cfg->on_step(cfg->on_step_ctx, ts.step, loss);
            if (cfg->progress) {
                char extra[128];
                snprintf(extra, sizeof(extra), "epoch %d loss %.4f", epoch + 1, (double)loss);
                progress_update(&pb, ts.step, extra);
            }
        }
        epoch++;
        ts.epoch = (uint32_t)epoch;
        r.last_loss = (float)(loss_sum / (double)steps_per_epoch);
        /* the budget stops the run at the last epoch boundary that fits: another epoch is
         * not started when one more of the last epoch's length would end past it */
        const double tn = now_s();
        bool stop_time = cfg->time_budget_s > 0 &&
                         (tn - t0) + 2.0 * eval_s + (tn - te) > cfg->time_budget_s;
        bool stop = (cfg->stop_after_epoch > 0 && epoch >= cfg->stop_after_epoch) || stop_time;
        bool last = epoch >= cfg->epochs || stop;
        if ((cfg->eval_every > 0 && epoch % cfg->eval_every == 0) || last) {
            const double tv = now_s();
            rc = train_evaluate(e, d, REC_SPLIT_VALID, 10, cfg->eval_max_users, pool,
                                &r.val_hr10, &r.val_ndcg10, err);
            if (rc)
                goto out;
            if (val_f) {
                fprintf(val_f, "%d\t%llu\t%.5f\t%.5f\t%.1f\n", epoch,
                        (unsigned long long)ts.step, r.val_hr10, r.val_ndcg10, now_s() - t0);
                fflush(val_f);
            }
            eval_s = now_s() - tv;
            if (!cfg->progress)
                log_debug("train", "epoch %d loss %.4f valid HR@10 %.4f NDCG@10 %.4f", epoch,
                          (double)r.last_loss, r.val_hr10, r.val_ndcg10);
            else
                log_info("train", "epoch %d loss %.4f valid HR@10 %.4f NDCG@10 %.4f", epoch,
                         (double)r.last_loss, r.val_hr10, r.val_ndcg10);
        }
        if (loss_f)
            fflush(loss_f);
        if (ckpt[0]) {
            rc = encoder_save(e, &ts, ckpt, err);
            if (rc)
                goto out;
        }
        if (stop)
            break;
    }
    r.seconds = now_s() - t0;
    r.gflop = gflop;
    if (cfg->progress)
        progress_end(&pb);
    r.steps = ts.step;
    r.epochs_done = epoch;
    /* the final numbers always use every user */
    if (cfg->eval_max_users) {
        rc = train_evaluate(e, d, REC_SPLIT_VALID, 10, 0, pool, &r.val_hr10, &r.val_ndcg10, err);
        if (rc)
            goto out;
    }
    rc = train_evaluate(e, d, REC_SPLIT_TEST, 10, 0, pool, &r.test_hr10, &r.test_ndcg10, err);
    if (rc)
        goto out;
    if (cfg->out_dir) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", cfg->out_dir, MODEL_FILE);
        rc = encoder_save(e, NULL, path, err);
        if (rc)
            goto out;
        fclose(loss_f);
        fclose(val_f);
        loss_f = val_f = NULL;
        write_plots(cfg->out_dir);
    }
out:
    if (loss_f)
        fclose(loss_f);
    if (val_f)
        fclose(val_f);
    free(users);
    free(users_base);
    free(keys);
    free(order);
    free(ids);
    free(tgt);
    free(logq);
    pool_free(pool);
    if (res)
        *res = r;
    if (rc == 0 && out)
        *out = e;
    else
        encoder_free(e);
    return rc;
}
