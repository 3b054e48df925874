/** Serving forward of the ranker (recsys/ranker.h) for one user and n candidates, with its
 *  Linear layers as W8A8 products (recsys/i8gemm.h: int8 weights with one scale per row,
 *  activations quantized per candidate; AVX-512 VNNI) instead of f32 BLAS.
 *
 *  The first layer is split by input block: the user block W1[:, 0:D] . u is the same for
 *  every candidate, so it is computed once per request (f32) and folded into the bias; each
 *  item's static features (popularity, year embedding, mean genre embedding, cold flag) are
 *  built once at creation; per request only v and u*v are assembled, and the item blocks go
 *  through the int8 product. Any hidden sizes work (the product pads internally). Scores
 *  match ranker_score up to the quantization (tests/test_ranker_infer.c). */
#ifndef RECSYS_RANKER_INFER_H
#define RECSYS_RANKER_INFER_H

#include <stdint.h>

#include "base/err.h"
#include "recsys/ranker.h"

struct ranker_infer;         /* read-only after creation: share across threads */
struct ranker_infer_scratch; /* per-thread */

/** Builds the serving copy from a folded ranker (ranker_load gives one) and its item
 *  features; both may be freed afterwards. NULL + err if not folded or out of memory. */
struct ranker_infer *ranker_infer_new(const struct ranker *r, const struct ranker_items *it,
                                      struct err *err);
void ranker_infer_free(struct ranker_infer *m);

/** Scratch for up to max_n candidates; NULL when out of memory. */
struct ranker_infer_scratch *ranker_infer_scratch_new(const struct ranker_infer *m, int max_n);
void ranker_infer_scratch_free(struct ranker_infer_scratch *s);

/** logits (n) of items (n, ids 1..n_items) for user vector `user` (D); item vectors are rows
 *  of item_table (n_items + 1, D). 1 <= n <= max_n. Returns 0 or ERR_INVALID. No allocation. */
int ranker_infer_score(const struct ranker_infer *m, struct ranker_infer_scratch *s,
                       const float *user, const float *item_table, const uint32_t *items, int n,
                       float *logits);

#endif
