/** Token sampling (greedy, temperature, top-k, top-p, min-p, repetition penalty, seeded RNG)
 *  and stop-string matching across token boundaries.
 *
 *  Order of the chain, as in llama2.c and Hugging Face: repetition penalty on the logits,
 *  then temperature, softmax, top-k, top-p (smallest set whose mass reaches p), min-p (drop
 *  tokens below min_p times the best one's probability), renormalise and draw. temp <= 0 is
 *  greedy (argmax after the penalty). A sampler allocates only in sampler_new. */
#ifndef ENGINE_SAMPLER_H
#define ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct sampler_params {
    float temp;           /* <= 0: greedy */
    int top_k;            /* keep the k most likely; 0 = off */
    float top_p;          /* nucleus mass in (0, 1]; >= 1 = off */
    float min_p;          /* in [0, 1); 0 = off */
    float repeat_penalty; /* > 0; 1 = off. logit > 0 ? logit / r : logit * r */
    int repeat_last_n;    /* how many recent tokens the penalty looks at; 0 = off */
    uint64_t seed;
};

/** temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off), last_n 64, seed 0. */
struct sampler_params sampler_default_params(void);

struct sampler; /* opaque; one per sequence (it keeps that sequence's history and RNG) */

/** NULL + err for a parameter out of range (the message names it) or no memory. */
struct sampler *sampler_new(const struct sampler_params *p, int n_vocab, struct err *err);
void sampler_free(struct sampler *s);
/** Forgets the history and reseeds the RNG with `seed`. */
void sampler_reset(struct sampler *s, uint64_t seed);
/** Records a token in the history the repetition penalty looks at (prompt tokens too). */
void sampler_accept(struct sampler *s, int token);

/** The candidate set after penalty, temperature and filters: ids sorted by probability,
 *  highest first, with their renormalised probabilities. Returns how many. `ids` and `probs`
 *  hold n_vocab entries. With temp <= 0 the set is the single argmax. */
int sampler_candidates(struct sampler *s, const float *logits, int *ids, float *probs);

/** Picks the next token from `logits` (n_vocab, unchanged) and records it in the history. */
int sampler_sample(struct sampler *s, const float *logits);

/** Uniform float in [0, 1) from the sampler's RNG (xorshift64*). */
float sampler_rand(struct sampler *s);

/* ---- stop strings ---- */

#define SAMPLER_STOP_MAX 8          /* stop strings per matcher */
#define SAMPLER_STOP_LEN_MAX 64     /* bytes per stop string */
#define SAMPLER_STOP_CHUNK_MAX 1024 /* bytes per sampler_stop_feed call */

/** Watches the generated text for any of up to SAMPLER_STOP_MAX strings, even when one is
 *  split over several tokens: text that could be the start of a stop string is held back
 *  until it is known not to be. Plain struct, no allocation. */
struct sampler_stop {
    int n;
    char str[SAMPLER_STOP_MAX][SAMPLER_STOP_LEN_MAX + 1];
    size_t len[SAMPLER_STOP_MAX];
    size_t npend;
    char pend[SAMPLER_STOP_LEN_MAX + SAMPLER_STOP_CHUNK_MAX];
    bool stopped;
};

/** Sets up the matcher. Empty strings are ignored. ERR_INVALID if there are too many or one
 *  is too long. */
int sampler_stop_init(struct sampler_stop *s, const char *const *strs, int n, struct err *err);
/** Feeds `len` (<= SAMPLER_STOP_CHUNK_MAX) bytes; writes the bytes now safe to show to `out`
 *  (room for SAMPLER_STOP_LEN_MAX + len) and returns their count. Once a stop string is seen,
 *  `out` gets the text before it, s->stopped becomes true and later feeds emit nothing. */
size_t sampler_stop_feed(struct sampler_stop *s, const char *text, size_t len, char *out);
/** At the end of generation: the held-back text (not a stop string after all). */
size_t sampler_stop_flush(struct sampler_stop *s, char *out);

#endif
