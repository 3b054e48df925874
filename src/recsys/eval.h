/** Offline evaluation of next-item models on the leave-one-out split: HR@K and NDCG@K for
 *  K = 10, 20, 50, 100 with full ranking over all items.
 *
 *  Protocol. For each user with >= 3 interactions (others are skipped, as in SASRec), the
 *  model scores every item 1..n_items given the user's history (train items for the
 *  validation split; train + validation item for the test split). Items of the history are
 *  excluded from the ranking (never the target itself, even when the user saw it before). The
 *  target's 0-based rank is
 *      rank = #{ j : j not excluded, j != t, s_j > s_t  or  (s_j == s_t and j < t) }
 *  i.e. ties are broken by item id, lower first — the order a top-K list sorted by score and
 *  then id would show. A NaN score counts as -infinity. Then HR@K = [rank < K] and
 *  NDCG@K = [rank < K] / log2(rank + 2), averaged over the evaluated users.
 *
 *  Determinism: per-user results are written to their own slot and summed in user order, so
 *  the numbers do not depend on the thread count or on scheduling. */
#ifndef RECSYS_EVAL_H
#define RECSYS_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "recsys/dataset.h"

#define REC_EVAL_NK 4
/** The cut-offs: 10, 20, 50, 100. */
extern const uint32_t rec_eval_ks[REC_EVAL_NK];

/** Scores a batch of users. For b in 0..n_users-1, fills scores[b * stride + i] for every
 *  item i in 1..n_items (stride = n_items + 1; entry 0 is ignored) with the model's score
 *  of item i as user users[b]'s next item, given that user's history for `split` (see
 *  rec_split_history). Called concurrently from several threads: `tid` (0..n_threads-1)
 *  selects per-thread scratch. Returns 0, or a negative err_code (with err filled) to stop
 *  the evaluation. */
typedef int (*rec_score_fn)(void *ctx, const struct rec_dataset *d, enum rec_split split,
                            const uint32_t *users, size_t n_users, float *scores, size_t stride,
                            int tid, struct err *err);

/** A model as the evaluator sees it. */
struct rec_scorer {
    const char *name; /* shown in tables: "popularity", "random", "sasrec" */
    rec_score_fn score;
    void *ctx;
};

struct rec_eval_cfg {
    enum rec_split split; /* REC_SPLIT_VALID or REC_SPLIT_TEST */
    struct pool *pool;    /* NULL: run on the calling thread */
    uint32_t batch;       /* users per score call (0 = 64) */
    uint32_t max_users;   /* evaluate only the first max_users eligible users (0 = all) */
    bool progress;        /* draw a progress bar on stderr (users done) */
};

struct rec_eval_result {
    uint32_t n_users;       /* users evaluated */
    double hr[REC_EVAL_NK]; /* indexed like rec_eval_ks */
    double ndcg[REC_EVAL_NK];
    double mean_rank; /* mean 0-based rank of the target (diagnostic) */
    double seconds;   /* wall time of the evaluation */
};

/** Evaluates `scorer` on cfg->split. Returns 0 or a negative err_code (a scorer failure, an
 *  invalid split, out of memory). */
int rec_eval_run(const struct rec_dataset *d, const struct rec_scorer *scorer,
                 const struct rec_eval_cfg *cfg, struct rec_eval_result *out, struct err *err);

/** The target's 0-based rank among items 1..n_items by the rule above (target must be in
 *  1..n_items; scores has n_items + 1 entries); `excl` lists the
 *  history items (duplicates allowed; entries equal to the target or outside 1..n_items are
 *  ignored). `mark` is caller scratch of n_items + 1 uint32 entries and `stamp` a value not
 *  yet used in it (marks are compared, never cleared). Exposed for tests. */
uint32_t rec_eval_rank(const float *scores, uint32_t n_items, uint32_t target, const uint32_t *excl,
                       size_t n_excl, uint32_t *mark, uint32_t stamp);

/** Adds one user's HR and NDCG at every cut-off for a 0-based rank to hr[] and ndcg[]. */
void rec_eval_accumulate(uint32_t rank, double hr[REC_EVAL_NK], double ndcg[REC_EVAL_NK]);

/* ---- baselines ---- */

/** Popularity: score(i) = item_pop_train[i] (interactions in the train part of the split; no
 *  validation or test item is counted, so it leaks nothing). ctx is unused. */
struct rec_scorer rec_eval_popularity_scorer(void);

/** Random: score(u, i) is a uniform float drawn from a hash of (seed, user, item), so it is
 *  the same for any thread count or batch size. `seed` is stored in *seed_store, which must
 *  outlive the scorer. */
struct rec_scorer rec_eval_random_scorer(uint64_t *seed_store);

/** Prints a result as one table row ("name  users  HR@10 ... NDCG@100") to a FILE *; with
 *  header = 1, the header line first. */
void rec_eval_print(void *stdio_file, const char *name, const struct rec_eval_result *r,
                    int header);

#endif
