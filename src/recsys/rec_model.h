/** A loaded nanorec artifact set and the recommendation pipeline over it.
 *
 *  An artifact set is a folder written by `nanorec export`:
 *    dataset.gguf     titles, genres, years, popularity, per-user histories (recsys/dataset.h)
 *    encoder_q8.gguf  the user encoder with Q8_0 matrices (served; recsys/encoder_infer.h)
 *    encoder.gguf     the f32 encoder it came from (kept for retraining and checks)
 *    items.gguf       the item table (n_items + 1, dim) f32, tensor "item_table"
 *    index.gguf       the vector index over items 1..n_items (ann id = item - 1)
 *    ranker.gguf      the BatchNorm-folded ranker and its item features
 *  The model version is a hash of the served files' bytes, so any change gives a new version
 *  (and new cache keys).
 *
 *  Cold path (rec_model_recommend): history -> encoder (last position only) -> vector search
 *  for the top candidates with every seen or excluded item excluded inside the search ->
 *  ranker -> top k, with an explanation per item: the history item whose embedding is the
 *  most similar. Each compute worker has its own scratch (and ranker copy: its forward keeps
 *  state), so calls on different workers never contend.
 *
 *  Sets are reference counted so that a reload can swap in a new one while requests finish
 *  on the old one. */
#ifndef RECSYS_REC_MODEL_H
#define RECSYS_REC_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"
#include "recsys/dataset.h"

#define REC_MODEL_CANDIDATES 100 /* retrieval depth the ranker re-scores */
#define REC_MODEL_MAX_K 100

struct rec_model;

/** Loads and validates the set in `dir` with scratch for `n_workers` workers. The set starts
 *  with one reference (the caller's). NULL + err naming the file and the problem. */
struct rec_model *rec_model_load(const char *dir, int n_workers, struct err *err);
void rec_model_ref(struct rec_model *m);
/** Drops a reference; the last one frees the set. NULL is fine. */
void rec_model_unref(struct rec_model *m);

struct rec_model_info {
    const char *version; /* 16 hex digits */
    const char *dir;
    uint32_t n_users, n_items;
    int dim, n_layers, n_heads, ffn, max_len;
    const char *weight_type; /* encoder matrices, e.g. "q8_0" */
    const char *index_kind;  /* "hnsw", "flat", ... */
    double load_seconds;
};
void rec_model_info(const struct rec_model *m, struct rec_model_info *out);
const struct rec_dataset *rec_model_dataset(const struct rec_model *m);

/** Dense user index of a source user id, or -1 when the dataset does not know the user. */
int64_t rec_model_user(const struct rec_model *m, int64_t user_id);
/** Dense item id (1..n_items) of a source movie id, or 0 when unknown. */
uint32_t rec_model_item(const struct rec_model *m, int64_t movie_id);

/** What to recommend from. `history` holds dense item ids, oldest first (unknown ones already
 *  dropped); every one of them is excluded, as are `exclude` (dense ids). */
struct rec_query {
    const uint32_t *history;
    int n_history;
    const uint32_t *exclude;
    int n_exclude;
    int k; /* 1..REC_MODEL_MAX_K */
    bool explain;
};

struct rec_result {
    int n;                          /* items returned (<= k) */
    bool popularity;                /* answered by the popularity fallback */
    uint32_t item[REC_MODEL_MAX_K]; /* dense ids, best first */
    float score[REC_MODEL_MAX_K];   /* ranker probability (model) or popularity share */
    uint32_t because[REC_MODEL_MAX_K]; /* most similar history item (0 = none) */
    float because_sim[REC_MODEL_MAX_K];
    double embedding_ms, retrieval_ms, ranking_ms;
};

/** The cold path on compute worker `worker` (0..n_workers-1; one call per worker at a time).
 *  An empty history gives the popularity fallback. 0 or a negative err_code. */
int rec_model_recommend(struct rec_model *m, int worker, const struct rec_query *q,
                        struct rec_result *out, struct err *err);
/** The popularity fallback: the k most popular items (train popularity) not in the query's
 *  history or exclusions. Thread-safe, no scratch. */
void rec_model_popular(const struct rec_model *m, const struct rec_query *q,
                       struct rec_result *out);

#endif
