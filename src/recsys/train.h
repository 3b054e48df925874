/** Training the user encoder on a dataset's leave-one-out split: epochs over shuffled train
 *  users (a seeded RNG), AdamW with linear warm-up then cosine decay (or constant), gradient
 *  clipping, validation HR@10 / NDCG@10 after each epoch, resumable GGUF checkpoints, loss and
 *  validation curves as TSV plus PNG plots (gnuplot), and the trained encoder exported as a
 *  GGUF file (general.architecture = nanorec.encoder).
 *
 *  Samples: for each user, the last max_len + 1 items of the train part give inputs (all but
 *  the last) and next-item targets (all but the first), left-padded to the longest sample of
 *  the batch (batches are drawn from length-sorted windows of shuffled users, so padding
 *  stays small). Results are bit-identical for a fixed seed and thread count. */
#ifndef RECSYS_TRAIN_H
#define RECSYS_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "recsys/dataset.h"
#include "recsys/encoder.h"

struct train_config {
    struct encoder_config enc; /* n_items is taken from the dataset */
    int epochs;
    int batch;                 /* users per step */
    float lr, min_lr_ratio;    /* cosine decays lr to lr * min_lr_ratio */
    bool cosine;               /* false: constant after warm-up */
    int warmup_steps;
    float weight_decay, beta1, beta2, adam_eps;
    float grad_clip;           /* global-norm clipping; <= 0 disables */
    uint64_t seed;
    int threads;               /* pool threads and OpenBLAS threads */
    const char *out_dir;       /* checkpoint, curves, export; NULL writes nothing */
    bool resume;               /* continue from out_dir/checkpoint.gguf when present */
    int stop_after_epoch;      /* >0: stop (with a checkpoint) after this epoch, as if
                                  interrupted; the schedule still spans `epochs` */
    double time_budget_s;      /* >0: wall seconds of training (validation included): no
                                  epoch is started that would end past it (judged by the
                                  last epoch's length), and the cosine decay's progress is
                                  the larger of the step and the budget fraction, so it
                                  completes within the budget */
    int eval_every;            /* validate every N epochs (0 = only at the end) */
    uint32_t eval_max_users;   /* per-epoch validation on at most this many users (0 = all);
                                  the final validation and test always use all */
    bool progress;             /* draw a progress bar on stderr */
    bool bucket;               /* length-bucketed batches (each padded to its longest user) */
    /* optional per-step observer (tests, logs) */
    void (*on_step)(void *ctx, uint64_t step, float loss);
    void *on_step_ctx;
};

/** Defaults: the encoder defaults, 200 epochs, batch 128, lr 1e-3, min ratio 0.1, cosine,
 *  warm-up 100 steps, weight decay 0.01 (not on norms, biases), betas 0.9/0.98, eps 1e-8,
 *  clip 1.0, seed 42, 1 thread, evaluate every epoch on all users, progress on, length
 *  buckets on. */
void train_config_default(struct train_config *c);

struct train_result {
    uint64_t steps;             /* optimizer steps done in total (resume included) */
    int epochs_done;
    float last_loss;            /* mean loss of the last epoch */
    double val_hr10, val_ndcg10;   /* last validation */
    double test_hr10, test_ndcg10; /* at the end, on the test item */
    double seconds;             /* wall time of this run's training steps */
    double gflop;               /* work in those steps (encoder_train_flops) */
};

/** Trains (or resumes) and returns the model in *out (caller frees; may be NULL if not
 *  wanted). Returns 0 or a negative err_code with err filled. */
int train_encoder(const struct rec_dataset *d, const struct train_config *cfg,
                  struct encoder **out, struct train_result *res, struct err *err);

/** Full-ranking leave-one-out evaluation: for each user with a held-out item in `split`
 *  (REC_SPLIT_VALID or REC_SPLIT_TEST), score every item against the user vector of the last
 *  max_len history items, exclude items already in the history, and report HR@k and NDCG@k
 *  of the held-out item, ranked by recsys/eval's rule (rec_eval_rank: ties broken by item id).
 *  At most max_users users (0 = all, else evenly spaced ones). */
int train_evaluate(struct encoder *e, const struct rec_dataset *d, enum rec_split split,
                   int k, uint32_t max_users, struct pool *pool, double *hr, double *ndcg,
                   struct err *err);

#endif
