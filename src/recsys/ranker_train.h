/** Training and evaluating the ranker on top of a trained encoder.
 *
 *  The encoder is frozen. The ranker learns on the validation item of each user (history =
 *  train items, which the encoder never saw as targets in this role), so its inputs look like
 *  the test-time ones: the positive is the held-out item, hard negatives are drawn from the
 *  encoder's own top candidates (skipping the very top, which are often unlabelled
 *  positives), random negatives from the whole catalogue; a share of pairs has the item
 *  vector masked, so the ranker also learns to score cold-start items from content alone.
 *  Evaluation re-ranks the encoder's top candidates for the test item and reports HR@10 and
 *  NDCG@10 of retrieval alone, of the re-ranked list, and of the re-ranked list with every
 *  item id masked (the cold-start case). */
#ifndef RECSYS_RANKER_TRAIN_H
#define RECSYS_RANKER_TRAIN_H

#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "recsys/dataset.h"
#include "recsys/encoder.h"
#include "recsys/ranker.h"

struct ranker_train_config {
    struct ranker_config model; /* dim is taken from the encoder */
    int epochs;                 /* passes over the training users (default 8) */
    int users_per_batch;        /* default 32: a batch has users * (1 + hard + random) rows */
    int n_candidates;           /* retrieval depth re-ranked (default 100) */
    int hard_negatives;         /* per positive (default 4) */
    int hard_skip;              /* top candidates never used as negatives (default 3) */
    int random_negatives;       /* per positive (default 4) */
    float mask_prob;            /* share of pairs with the item vector masked (default 0.2) */
    float lr, weight_decay;     /* AdamW (default 1e-3, 1e-4) */
    uint64_t seed;
    int threads;
    uint32_t max_users;         /* train and evaluate on at most this many users (0 = all) */
    int progress;               /* draw a progress bar */
};

void ranker_train_config_default(struct ranker_train_config *c);

struct ranker_eval {
    uint32_t n_users;
    double retrieval_recall;           /* share of test items inside the candidates */
    double hr10[3], ndcg10[3];         /* [0] retrieval order, [1] re-ranked, [2] masked ids */
};

/** Trains a ranker; *out receives it (caller frees) and *items its item features. */
int ranker_train(const struct rec_dataset *d, struct encoder *enc,
                 const struct ranker_train_config *cfg, struct ranker **out,
                 struct ranker_items *items, struct err *err);

/** Evaluates retrieval and re-ranking on `split` (REC_SPLIT_VALID or REC_SPLIT_TEST). */
int ranker_evaluate(const struct rec_dataset *d, struct encoder *enc, struct ranker *r,
                    const struct ranker_items *items, enum rec_split split, int n_candidates,
                    uint32_t max_users, int threads, struct ranker_eval *out, struct err *err);

/** `nanorec train ranker` */
int ranker_train_cli(int argc, char **argv);
extern const char ranker_train_usage[];

#endif
