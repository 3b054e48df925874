/** The SASRec-style user encoder: a small LLaMA-block transformer over a user's item history,
 *  with training (forward with saved activations, backward, losses, AdamW) written in C.
 *
 *    ids (B,T), left-padded with 0  ->  x = E[ids]            shared item table E (n_items+1, C)
 *    L x pre-norm block:  x += Wo attn(rope(Wq rms(x)+bq), rope(Wk rms(x)+bk), Wv rms(x)+bv)+bo
 *                         x += Wd (silu(Wg rms(x)) * Wu rms(x))
 *    u = l2norm(Wp rms(x) + bp)                                 user vector per position
 *    score(u, item i) = u . e_i / temperature,  e_i = E[i] (L2-normalised when norm_items)
 *
 *  Padding positions are masked as keys; RoPE positions count from the user's first real item.
 *  Training predicts the next item at every position (targets (B,T), 0 = no loss there) with
 *  either full softmax cross-entropy over all items, or in-batch InfoNCE: the candidates are
 *  the distinct target items of the batch, each logit minus log q(item) (its popularity
 *  share) when logq is on. The block ops are engine/ops.h with engine/ops_backward.h.
 *  See docs/encoder.md. */
#ifndef RECSYS_ENCODER_H
#define RECSYS_ENCODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"

enum encoder_loss { ENCODER_LOSS_SOFTMAX = 0, ENCODER_LOSS_INFONCE = 1 };

struct encoder_config {
    int n_items;       /* item ids are 1..n_items; 0 is padding */
    int dim;           /* C */
    int n_layers;
    int n_heads;       /* dim % n_heads == 0, head_dim even */
    int ffn;           /* SwiGLU hidden size F */
    int max_len;       /* T: history length the encoder reads */
    float dropout;     /* on the embeddings and on each residual branch (training only) */
    float rope_theta;  /* RoPE base (reference 500) */
    float norm_eps;    /* RMSNorm epsilon */
    enum encoder_loss loss;
    float temperature; /* logits = u . e / temperature */
    bool logq;         /* InfoNCE: subtract log q(item) */
    bool norm_items;   /* score against L2-normalised item embeddings (cosine) */
};

/** Defaults: dim 64, 2 layers, 2 heads, ffn 256, max_len 200, dropout 0.2, theta 500,
 *  eps 1e-6, softmax loss, temperature 0.05, logq on, norm_items on. n_items is left 0. */
void encoder_config_default(struct encoder_config *c);
/** Checks ranges and divisibility; ERR_INVALID naming the field. */
int encoder_config_check(const struct encoder_config *c, struct err *err);
const char *encoder_loss_name(enum encoder_loss l);
/** "softmax" | "infonce" -> the enum, or -1. */
int encoder_loss_parse(const char *s);

/** One named parameter tensor: a view into the contiguous parameter buffer. A matrix is
 *  rows x cols row-major (GGUF ne = {cols, rows}); a vector has rows == 1. */
struct encoder_tensor {
    char name[48];
    size_t offset; /* in floats, into params / grads / Adam state */
    int rows, cols;
    bool decay;    /* AdamW weight decay applies (matrices and the item table) */
};

struct encoder_layer {
    float *attn_norm;              /* (C) */
    float *wq, *wk, *wv, *wo;      /* (C,C) */
    float *bq, *bk, *bv, *bo;      /* (C) */
    float *ffn_norm;               /* (C) */
    float *w_gate, *w_up;          /* (F,C) */
    float *w_down;                 /* (C,F) */
};

struct encoder_acts; /* saved activations and scratch, private */

/** The model: parameters, their gradients and Adam moments in four parallel contiguous
 *  buffers of n_params floats, with named views. Exposed (llm.c style) so training, tests
 *  and export can walk the tensors. */
struct encoder {
    struct encoder_config cfg;
    size_t n_params;
    float *params, *grads, *adam_m, *adam_v;
    int n_tensors;
    struct encoder_tensor *tensors;
    float *tok_emb;                /* (n_items+1, C) */
    struct encoder_layer *layers;  /* n_layers views into params */
    float *out_norm;               /* (C) */
    float *proj_w, *proj_b;        /* (C,C), (C) */
    /* training state used by forward: dropout is on when `training`, with masks drawn from
     * a counter-based hash of (dropout_seed, site, element), so they are independent of
     * threads and reproducible in backward */
    bool training;
    uint64_t dropout_seed;
    struct encoder_acts *acts;
};

/** Allocates a model and initialises it from `seed` (normal 0.02 weights, output
 *  projections of the residual branches scaled by 1/sqrt(2 L), unit norms, zero biases).
 *  NULL + err on a bad config or no memory. */
struct encoder *encoder_new(const struct encoder_config *cfg, uint64_t seed, struct err *err);
void encoder_free(struct encoder *e);
/** Finds a tensor by name, NULL if absent. */
const struct encoder_tensor *encoder_find_tensor(const struct encoder *e, const char *name);

/** Forward over a batch: ids (B,T) item ids (0 = padding, left-padded; T <= max_len; ids above
 *  n_items are an error). With targets (B,T) (0 = no loss at that position), computes the mean
 *  loss over the target positions into *loss (0 when there are none) and keeps what backward
 *  needs. item_logq (n_items+1) gives log q(item) for InfoNCE's correction (NULL = uniform).
 *  Without targets only the user vectors are produced. `pool` threads the per-sequence work
 *  (may be NULL); GEMMs run on OpenBLAS's threads. Returns 0 or a negative err_code. */
int encoder_forward(struct encoder *e, const uint32_t *ids, const uint32_t *targets, int B,
                    int T, const float *item_logq, float *loss, struct pool *pool,
                    struct err *err);
/** Allocates activations for batches up to (B, T) now (forward grows them on demand).
 *  Returns 0, ERR_INVALID for a bad shape or ERR_NOMEM. */
int encoder_reserve(struct encoder *e, int B, int T);
/** The user vectors (B, C) at the last position of the last forward (L2-normalised). */
void encoder_last_vectors(const struct encoder *e, float *out);
/** Zeroes the gradients. */
void encoder_zero_grad(struct encoder *e);
/** Backward of the last forward (which must have had targets): ACCUMULATES into grads. */
int encoder_backward(struct encoder *e, struct pool *pool, struct err *err);

/** The scoring table (n_items+1, C) row i = e_i as used by the loss (normalised when
 *  norm_items; row 0 zero), for evaluation and export. */
void encoder_item_table(const struct encoder *e, float *out);

/** Scales gradients so their global L2 norm is at most max_norm (<= 0: no clipping); returns
 *  the norm before clipping. */
float encoder_clip_grad(struct encoder *e, float max_norm);

struct adamw_config {
    float lr, beta1, beta2, eps, weight_decay;
};
/** One AdamW step with bias correction and decoupled weight decay (only on tensors with
 *  decay); `step` counts from 1. */
void encoder_adamw_step(struct encoder *e, const struct adamw_config *opt, uint64_t step);

/** FLOPs of one forward+backward over (B, T) with `n_loss` target positions (GEMMs and
 *  attention, the 3x-forward rule), for throughput reports. */
double encoder_train_flops(const struct encoder_config *c, int B, int T, int n_loss,
                           int n_candidates);

/** Training state a checkpoint carries beside the Adam moments: optimizer steps done, the
 *  batch sampler's RNG state, epochs done, the run's seed. */
struct encoder_train_state {
    uint64_t step, rng;
    uint32_t epoch;
    uint64_t seed;
};
/** Writes the encoder as GGUF (general.architecture = nanorec.encoder, hyper-parameters as
 *  nanorec.encoder.* keys, weights as f32 tensors named as in e->tensors); with the Adam
 *  moments (adam.m, adam.v) and train.* keys when `ts` is given (a checkpoint); without `ts`
 *  (an export) with `item_vectors` (n_items+1, C): the scoring table of encoder_item_table,
 *  which vector indexes store and search with the user vectors (inner product). Atomic. */
int encoder_save(const struct encoder *e, const struct encoder_train_state *ts, const char *path,
                 struct err *err);
/** Loads a file written by encoder_save (Adam moments and *ts too when ts is not NULL and the
 *  file has them). Every key, shape and type is validated. NULL + err on a problem. */
struct encoder *encoder_load(const char *path, struct encoder_train_state *ts, struct err *err);

#endif
