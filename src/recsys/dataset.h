/** The nanorec dataset: dense id maps, per-user chronological item sequences, item metadata
 *  (titles, genres, years, popularity), the leave-one-out split over it, and its GGUF
 *  artifact (general.architecture = "nanorec.dataset"; format in docs/recsys-data.md).
 *
 *  Ids: users are dense 0..n_users-1; items are dense 1..n_items and 0 is the padding id, so
 *  every per-item array has n_items + 1 entries with entry 0 unused (zero / empty).
 *
 *  Split (leave-one-out, as SASRec's data_partition): for a user with n >= 3 interactions,
 *  train = seq[off .. off+n-2), valid = seq[off+n-2], test = seq[off+n-1]. A user with n < 3
 *  keeps the whole sequence as train and has neither a validation nor a test item (such users
 *  are skipped by evaluation, as in the reference). */
#ifndef RECSYS_DATASET_H
#define RECSYS_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/** MovieLens genres as bits of rec_dataset.item_genres (bit i = 1u << i). "Children's" (ml-1m,
 *  ml-100k) and "Children" (CSV releases) are the same genre. "(no genres listed)" and the
 *  ml-100k "unknown" flag give an empty mask. */
enum rec_genre {
    REC_GENRE_ACTION = 0,
    REC_GENRE_ADVENTURE,
    REC_GENRE_ANIMATION,
    REC_GENRE_CHILDREN,
    REC_GENRE_COMEDY,
    REC_GENRE_CRIME,
    REC_GENRE_DOCUMENTARY,
    REC_GENRE_DRAMA,
    REC_GENRE_FANTASY,
    REC_GENRE_FILM_NOIR,
    REC_GENRE_HORROR,
    REC_GENRE_IMAX,
    REC_GENRE_MUSICAL,
    REC_GENRE_MYSTERY,
    REC_GENRE_ROMANCE,
    REC_GENRE_SCI_FI,
    REC_GENRE_THRILLER,
    REC_GENRE_WAR,
    REC_GENRE_WESTERN,
    REC_GENRE_COUNT
};

/** The dataset. All arrays are owned (malloc) and freed by rec_dataset_free. The first five
 *  fields are a contract shared with the encoder training code: keep them first and as they
 *  are. */
struct rec_dataset {
    uint32_t n_users;
    uint32_t n_items; /* item ids are 1..n_items; 0 is padding */
    uint64_t n_interactions;
    uint64_t *user_off; /* n_users + 1 offsets into seq */
    uint32_t *seq;      /* per-user chronological item ids (1..n_items) */

    int64_t *ts;              /* n_interactions: unix seconds beside seq; 0 where the source
                                 has no timestamps (the SASRec layout) */
    uint32_t *user_orig;      /* n_users: the source's user id */
    uint32_t *item_orig;      /* n_items + 1: the source's movie id; [0] = 0 */
    uint32_t *item_genres;    /* n_items + 1: bitmask of enum rec_genre */
    uint16_t *item_year;      /* n_items + 1: release year from the title; 0 = unknown */
    uint32_t *item_pop;       /* n_items + 1: interactions in the whole dataset */
    uint32_t *item_pop_train; /* n_items + 1: interactions in the train part of the split
                                 (what popularity-based models and baselines may use) */
    char **item_title;        /* n_items + 1 NUL-terminated UTF-8 strings; [0] = "" */
    char source[64];          /* layout it came from: "csv", "ml-1m", "ml-100k", "sasrec" */
};

/** Splits of the leave-one-out protocol. */
enum rec_split { REC_SPLIT_TRAIN = 0, REC_SPLIT_VALID = 1, REC_SPLIT_TEST = 2 };

/** Builds a dataset from plain sequences (copied): user u's items are
 *  seq[user_off[u] .. user_off[u+1]). Metadata gets defaults (original ids = dense ids, empty
 *  titles, no genres, year 0, ts 0) and popularity is counted. For tests and synthetic data.
 *  NULL + err if the input breaks an invariant (see rec_dataset_validate). */
struct rec_dataset *rec_dataset_from_sequences(uint32_t n_users, uint32_t n_items,
                                               const uint64_t *user_off, const uint32_t *seq,
                                               struct err *err);

/** Frees everything; NULL is fine. */
void rec_dataset_free(struct rec_dataset *d);

/** Number of interactions of user u (u < n_users). */
static inline uint64_t rec_user_len(const struct rec_dataset *d, uint32_t u)
{
    return d->user_off[u + 1] - d->user_off[u];
}

/** True if user u has a validation and a test item (>= 3 interactions). */
static inline bool rec_user_in_eval(const struct rec_dataset *d, uint32_t u)
{
    return rec_user_len(d, u) >= 3;
}

/** The train part of user u: *n items from the returned pointer (all of them when the user
 *  has fewer than 3 interactions). */
const uint32_t *rec_split_train(const struct rec_dataset *d, uint32_t u, uint64_t *n);

/** The model input (history) when predicting `split`'s item of user u: train items for
 *  REC_SPLIT_VALID, train + valid for REC_SPLIT_TEST, train for REC_SPLIT_TRAIN. */
const uint32_t *rec_split_history(const struct rec_dataset *d, uint32_t u, enum rec_split split,
                                  uint64_t *n);

/** The held-out item of user u for REC_SPLIT_VALID or REC_SPLIT_TEST, or 0 when the user has
 *  fewer than 3 interactions (or for REC_SPLIT_TRAIN). */
uint32_t rec_split_target(const struct rec_dataset *d, uint32_t u, enum rec_split split);

/** Number of users with a validation and test item. */
uint32_t rec_split_n_eval_users(const struct rec_dataset *d);

/** Recomputes item_pop and item_pop_train from the sequences (allocating them if NULL).
 *  Returns 0 or ERR_NOMEM. */
int rec_dataset_count_popularity(struct rec_dataset *d, struct err *err);

/** Checks every invariant: offsets start at 0, are monotone and end at n_interactions; every
 *  item id is in 1..n_items; per-item arrays present; titles valid UTF-8. Returns 0 or
 *  ERR_INVALID with a message naming the first violation. */
int rec_dataset_validate(const struct rec_dataset *d, struct err *err);

/** Writes the dataset as a GGUF artifact (general.architecture = "nanorec.dataset"),
 *  atomically. Returns 0 or a negative err_code. */
int rec_dataset_save(const struct rec_dataset *d, const char *path, struct err *err);

/** Loads and validates an artifact written by rec_dataset_save; `path` is the .gguf file or a
 *  folder holding REC_DATASET_FILE. NULL + err on any problem (wrong architecture, missing or
 *  mistyped tensor, offsets out of range, ids out of range). */
struct rec_dataset *rec_dataset_load(const char *path, struct err *err);

/** The artifact's file name inside a `data prepare --out DIR` folder. */
#define REC_DATASET_FILE "dataset.gguf"

/** Name of a genre ("Action", "Children", "Film-Noir", ...); NULL if out of range. */
const char *rec_genre_name(enum rec_genre g);

#endif
