/** The ranker: the reference's feature MLP that re-scores retrieval candidates.
 *
 *  Features of a (user, item) pair, concatenated (width ranker_input_dim):
 *    u (D)  user vector from the encoder          v (D)  item vector (0 when masked)
 *    u*v (D)                                       pop    z-scored log(1 + train popularity)
 *    year (Y) embedding of the release-decade bucket
 *    genre (G) mean of the item's genre embeddings (0 when it has none)
 *    unk    1 when the item vector is masked (a cold-start item), else 0
 *  MLP: in -> h1 -> h2 -> h3 -> 1, each hidden layer Linear, BatchNorm, ReLU, dropout.
 *  Trained with binary cross-entropy on positives against hard negatives (mined from
 *  retrieval) and random negatives. For serving, BatchNorm is folded into the preceding
 *  Linear (ranker_fold), leaving three Linear+ReLU layers and the output. */
#ifndef RECSYS_RANKER_H
#define RECSYS_RANKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define RANKER_YEAR_BUCKETS 11 /* unknown, <1930, 1930s, ..., 2000s, 2010 and later */
#define RANKER_GENRES 19       /* enum rec_genre */
#define RANKER_LAYERS 3

struct ranker_config {
    int dim;        /* D: user and item vector size */
    int year_dim;   /* Y (default 8) */
    int genre_dim;  /* G (default 8) */
    int hidden[RANKER_LAYERS]; /* default 512, 256, 128 */
    float dropout;  /* default 0.1 */
    float bn_momentum; /* running statistics update (default 0.1) */
};

void ranker_config_default(struct ranker_config *c, int dim);
int ranker_config_check(const struct ranker_config *c, struct err *err);
int ranker_input_dim(const struct ranker_config *c);

/** Per-item side features, shared by training and serving (n_items + 1 rows; row 0 unused). */
struct ranker_items {
    uint32_t n_items;
    float *pop_z;          /* z-scored log(1 + train popularity) */
    uint8_t *year_bucket;  /* 0..RANKER_YEAR_BUCKETS-1 */
    uint32_t *genres;      /* bitmask of enum rec_genre */
};

/** Year -> bucket (0 = unknown year). */
int ranker_year_bucket(int year);
/** Builds item features from per-item years, genre masks and train popularity counts. */
int ranker_items_init(struct ranker_items *it, uint32_t n_items, const uint16_t *year,
                      const uint32_t *genres, const uint32_t *pop, struct err *err);
void ranker_items_free(struct ranker_items *it);

struct ranker_layer {
    float *w, *b;            /* (H, in), (H) */
    float *gamma, *beta;     /* (H) BatchNorm scale and shift */
};

struct ranker_acts;

/** Parameters (and their gradients and Adam moments) in parallel contiguous buffers. */
struct ranker {
    struct ranker_config cfg;
    int in_dim;
    size_t n_params;
    float *params, *grads, *adam_m, *adam_v;
    struct ranker_layer layer[RANKER_LAYERS];
    float *out_w, *out_b;    /* (h3), (1) */
    float *year_emb;         /* (RANKER_YEAR_BUCKETS, Y) */
    float *genre_emb;        /* (RANKER_GENRES, G) */
    float *run_mean[RANKER_LAYERS], *run_var[RANKER_LAYERS]; /* BatchNorm running stats */
    bool folded;             /* BatchNorm folded into w, b: inference only */
    bool training;           /* batch statistics and dropout on */
    uint64_t dropout_seed;
    struct ranker_acts *acts;
};

struct ranker *ranker_new(const struct ranker_config *cfg, uint64_t seed, struct err *err);
void ranker_free(struct ranker *r);

/** A batch of N pairs. user (N, D) rows; item_vec (N, D) rows (ignored where masked);
 *  items (N) ids into `it`; masked (N) may be NULL (none masked); labels (N) 0/1 may be NULL
 *  for scoring. */
struct ranker_batch {
    int n;
    const float *user;
    const float *item_vec;
    const uint32_t *items;
    const uint8_t *masked;
    const float *labels;
};

/** Forward: logits (N) (may be NULL) and, with labels, the mean BCE into *loss. In training
 *  mode BatchNorm uses batch statistics (N >= 2) and updates the running ones, and dropout is
 *  on; otherwise running statistics (or folded weights). Returns 0 or an err_code. */
int ranker_forward(struct ranker *r, const struct ranker_items *it, const struct ranker_batch *b,
                   float *logits, float *loss, struct err *err);
/** Backward of the last training forward (which had labels); accumulates into grads. */
int ranker_backward(struct ranker *r, struct err *err);
void ranker_zero_grad(struct ranker *r);
/** AdamW step (decay on Linear weights only); step counts from 1. */
void ranker_adamw_step(struct ranker *r, float lr, float weight_decay, uint64_t step);

/** Folds BatchNorm (running statistics) into the Linear layers, for serving. Irreversible. */
void ranker_fold(struct ranker *r);

/** Scores n candidate items for one user (inference: running stats or folded): scores (n).
 *  item_table (n_items + 1, D); masked_all scores every item as cold-start (ids masked). */
int ranker_score(struct ranker *r, const struct ranker_items *it, const float *user,
                 const float *item_table, const uint32_t *items, int n, bool masked_all,
                 float *scores, struct err *err);

/** Saves as GGUF (general.architecture "nanorec.ranker"): config as metadata, weights (with
 *  BatchNorm folded on a copy unless already folded) and item features as tensors. */
int ranker_save(const struct ranker *r, const struct ranker_items *it, const char *path,
                struct err *err);
/** Loads a saved ranker (folded, inference only) and its item features; validates shapes. */
struct ranker *ranker_load(const char *path, struct ranker_items *it, struct err *err);

#endif
