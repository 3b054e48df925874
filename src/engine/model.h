/** LLaMA-architecture decoder: weights memory-mapped from a GGUF file (general.architecture
 *  "llama") or a llama2.c checkpoint (.bin), and a batched forward pass with a KV cache.
 *
 *  The model (`struct llm`) is immutable after load and may be shared by several contexts.
 *  A context (`struct llm_ctx`) owns a KV cache of `n_seq` sequence slots of `n_ctx` positions
 *  each and all scratch memory of the forward pass, allocated once: decoding allocates
 *  nothing. One llm_decode at a time per context, and per pool (contexts of one model share
 *  its pool). See docs/engine.md. */
#ifndef ENGINE_MODEL_H
#define ENGINE_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "base/pool.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

struct llm;     /* opaque */
struct llm_ctx; /* opaque */

/** Load options. Zero-initialised is a valid default. */
struct llm_opts {
    int n_threads;              /* threads for the forward pass when `pool` is NULL (0 = 1) */
    struct pool *pool;          /* borrowed: shared with the caller; must outlive the model */
    const char *tokenizer_path; /* llama2.c tokenizer.bin for a .bin model (GGUF: ignored) */
    bool no_tokenizer;          /* do not load a tokenizer (a .bin model has none then) */
    bool map_weights;           /* GGUF: compute from the file mapping in place (no copy, no
                                 * repacking; slower: 4 KiB pages, GGUF layout) */
};

/** Hyper-parameters, as read from the file. */
struct llm_hparams {
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim, n_rot, n_ctx_train;
    float rope_theta, rms_eps;
};

/** Loads `path` (GGUF or llama2.c .bin, told apart by the GGUF magic). Every tensor is
 *  checked for presence, type and shape; an unsupported architecture or tensor type gives
 *  ERR_UNSUPPORTED naming it. NULL + err on failure. */
struct llm *llm_load(const char *path, const struct llm_opts *opts, struct err *err);
/** Same from an opened GGUF (a file or gguf_open_mem), which the model takes over: it is
 *  closed by llm_free, or at once on failure. `name` prefixes error messages. */
struct llm *llm_load_gguf(struct gguf_file *f, const struct llm_opts *opts, const char *name,
                          struct err *err);
void llm_free(struct llm *m);

const struct llm_hparams *llm_hparams(const struct llm *m);
int llm_n_vocab(const struct llm *m);
int llm_n_ctx_train(const struct llm *m);
/** BOS / EOS ids from the tokenizer (or 1 / 2 when there is none). */
int llm_bos(const struct llm *m);
int llm_eos(const struct llm *m);
/** The tokenizer loaded with the model, or NULL. Owned by the model. */
const struct tok *llm_tokenizer(const struct llm *m);
/** The GGUF file behind the model (metadata such as tokenizer.chat_template), or NULL for a
 *  .bin checkpoint. Owned by the model. */
const struct gguf_file *llm_gguf(const struct llm *m);
/** The pool the forward pass runs on (may be NULL = single thread). */
struct pool *llm_pool(const struct llm *m);
/** Bytes of weights mapped. */
size_t llm_weight_bytes(const struct llm *m);

/** Makes a context with `n_seq` KV-cache slots of `n_ctx` positions (0 = the model's training
 *  context) and room for `n_batch` rows per internal forward step (0 = 256; larger batches
 *  are split). NULL + err when memory is short or arguments are out of range. */
struct llm_ctx *llm_ctx_new(const struct llm *m, int n_seq, int n_ctx, int n_batch,
                            struct err *err);
/** Context settings; llm_ctx_new(m, s, c, b) is llm_ctx_new_cfg with {s, c, b, false}. */
struct llm_ctx_cfg {
    int n_seq, n_ctx, n_batch; /* as for llm_ctx_new */
    bool kv_f16;               /* keep K and V as f16 (half the memory, as llama.cpp does) */
};
struct llm_ctx *llm_ctx_new_cfg(const struct llm *m, const struct llm_ctx_cfg *cfg,
                                struct err *err);
void llm_ctx_free(struct llm_ctx *c);
int llm_ctx_n_ctx(const struct llm_ctx *c);
int llm_ctx_n_seq(const struct llm_ctx *c);
/** Bytes of the KV cache. */
size_t llm_ctx_kv_bytes(const struct llm_ctx *c);

/** One forward call: `n` rows, each a token of sequence `seq[i]` at position `pos[i]`.
 *  Rows of one sequence must come in position order; a position must be at most the number
 *  of positions the sequence already holds (no gaps), and below n_ctx. Writing position p
 *  forgets what the slot held at p and after. `logits[i]` != 0 asks for row i's logits;
 *  `logits` NULL asks for the last row only. */
struct llm_batch {
    int n;
    const int *token;
    const int *pos;
    const int *seq;
    const unsigned char *logits;
};

/** Runs the batch; writes n_vocab floats per row that asked for logits, in row order, to
 *  `logits_out`. All rows' matrix products of one layer are one kern_matmul each; attention
 *  is threaded over (row, head). Returns 0 or a negative err_code (bad token, position or
 *  sequence id: nothing is computed then). */
int llm_decode(struct llm_ctx *c, const struct llm_batch *b, float *logits_out, struct err *err);

/** Number of positions sequence `seq` holds. */
int llm_seq_len(const struct llm_ctx *c, int seq);
/** Forgets sequence `seq` (its slot can take a new one). */
void llm_seq_clear(struct llm_ctx *c, int seq);
/** Copies the first `n_pos` positions of `src`'s cache to `dst` (a shared prompt prefix is
 *  computed once and reused); `dst` then holds exactly n_pos positions. Returns 0 or
 *  ERR_INVALID for a bad id or n_pos beyond what src holds. */
int llm_seq_copy(struct llm_ctx *c, int src, int dst, int n_pos);
/** Keeps only the first `n_pos` positions of `seq` (n_pos <= its length). */
void llm_seq_truncate(struct llm_ctx *c, int seq, int n_pos);

#endif
