/** The generation scheduler: continuous batching of many text generations over one model.
 *
 *  One scheduler thread owns the llm_ctx. Each step it gathers one decode row for every
 *  running request plus prefill chunks of newly admitted ones (and of shared prompt
 *  prefixes) into a single llm_decode call, samples each request's next token, pushes the
 *  text (whole UTF-8 characters, stop strings held back) to the request's sink, and retires
 *  requests that finished or were cancelled. New requests join at the next step: nobody
 *  waits for a batch to drain.
 *
 *  Slots: the context has `max_batch` request slots plus one reserved slot per registered
 *  prefix. A prefix (a theme's system message through the chat template) is computed once,
 *  the first time a request needs it, and copied into the request's slot with llm_seq_copy
 *  at admission, so its tokens are never prefilled again.
 *
 *  Prompt cache: besides prefixes, the KV of whole prompts (and the logits of their last
 *  position) is kept in `prompt_cache` more slots, keyed by the exact token sequence, least
 *  recently used out first. A request whose whole prompt is cached copies that KV and samples
 *  its first token at once, with no prefill row; a request whose prompt is being computed
 *  for another request waits for it instead of computing it again (one fill in flight per
 *  prompt). Requests sample with their own seeds, so the texts still differ.
 *
 *  Bounds: at most `max_batch` requests run, at most `queue` wait (sched_submit answers
 *  ERR_BUSY beyond that), max_tokens is capped by `max_tokens_cap` and by the context.
 *
 *  Callbacks (on_text, on_done) run on the scheduler thread: they must be quick and must
 *  not call back into the scheduler. After on_done the scheduler never touches the request
 *  again, so on_done may free whatever `ud` points to. See docs/story.md. */
#ifndef STORY_SCHEDULER_H
#define STORY_SCHEDULER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "serve/metrics.h"

#define SCHED_MAX_PREFIXES 32
#define SCHED_MAX_BATCH 256
#define SCHED_MAX_PROMPT_CACHE 64

struct sched_cfg {
    int max_batch;      /* request slots (concurrent generations); 0 = 8 */
    int queue;          /* requests that may wait for a slot; 0 = 64 */
    int n_ctx;          /* positions per slot; 0 = min(model context, 2048) */
    int max_tokens_cap; /* hard cap on generated tokens per request; 0 = 1024 */
    int prefill_chunk;  /* prompt tokens prefilled per step over all requests; 0 = 128 */
    int max_prefixes;   /* KV slots reserved for shared prefixes; 0 = 8 (SCHED_MAX_PREFIXES at most) */
    int prompt_cache;   /* whole prompts whose KV (and last logits) are kept for reuse: 0 = 8,
                           < 0 = none (SCHED_MAX_PROMPT_CACHE at most) */
    bool kv_f16;        /* keep K and V as f16 (half the memory and traffic; llama.cpp's default) */
    enum chat_family chat; /* its end-of-turn string is a stop string (CHAT_NONE: none) */
    struct metrics *metrics; /* where the story_* series go; NULL = none */
};

/** Why a generation ended. */
enum sched_finish {
    SCHED_FINISH_EOS = 0, /* the model ended its text */
    SCHED_FINISH_STOP,    /* a stop string (the chat template's end of turn) */
    SCHED_FINISH_LENGTH,  /* max_tokens or the context was reached */
    SCHED_FINISH_CANCELLED,
    SCHED_FINISH_ERROR,
};

/** Per-request timings and counts, final when on_done runs. */
struct sched_stats {
    double queue_ms;    /* submit -> admitted to a slot */
    double prefill_ms;  /* admitted -> first token sampled (includes a first prefix fill) */
    double decode_ms;   /* first token -> end */
    double ttft_ms;     /* submit -> first token */
    int prompt_tokens;  /* whole prompt, prefix included */
    int prefix_tokens;  /* of which reused from a KV cache (theme prefix or whole prompt) */
    bool prompt_cached; /* the whole prompt came from the prompt cache (no prefill at all) */
    int completion_tokens;
    enum sched_finish finish;
};

/** Receives text; return non-zero to cancel the request (e.g. the client is gone). */
typedef int (*sched_text_fn)(void *ud, const char *text, size_t len);
/** The end: stats are final; `error` is NULL unless finish is SCHED_FINISH_ERROR. */
typedef void (*sched_done_fn)(void *ud, const struct sched_stats *st, const char *error);

struct sched_req {
    int prefix;         /* from sched_add_prefix, or -1 */
    const char *prompt; /* text after the prefix (special tokens parsed; no BOS unless no prefix) */
    const int *tokens;  /* or: the WHOLE prompt as tokens (BOS included), copied at submit; the
                           prefix is reused only when these tokens start with exactly its
                           tokens, else the request runs without it */
    int n_tokens;
    int max_tokens;     /* 1..; capped by cfg.max_tokens_cap and the context */
    struct sampler_params sampling;
    atomic_bool *cancel; /* may be NULL; set it (any thread) to cancel; must outlive on_done */
    sched_text_fn on_text;
    sched_done_fn on_done;
    void *ud;
};

struct sched; /* opaque */

/** Makes the context and starts the scheduler thread. The model must outlive the scheduler.
 *  NULL + err on a bad config or no memory. */
struct sched *sched_new(const struct llm *m, const struct sched_cfg *cfg, struct err *err);
/** Stops the thread: running and waiting requests end with SCHED_FINISH_CANCELLED (their
 *  on_done runs), then frees. NULL is fine. */
void sched_free(struct sched *s);

/** Registers a shared prompt prefix (tokenized now, with BOS and special tokens; its KV is
 *  computed on first use). Returns its id (>= 0), or a negative err_code: ERR_INVALID if it
 *  does not fit the context, ERR_BUSY past cfg.max_prefixes or after requests started. */
int sched_add_prefix(struct sched *s, const char *text, struct err *err);

/** Queues a request. 0: on_done will be called exactly once (maybe before this returns
 *  when the scheduler is fast). ERR_BUSY: the queue is full (nothing is called). ERR_INVALID:
 *  a bad prefix id, an empty prompt, or a prompt that leaves no room in the context (err says
 *  how many tokens). ERR_UNSUPPORTED: the scheduler is stopping. */
int sched_submit(struct sched *s, const struct sched_req *r, struct err *err);

/** Encodes a whole prompt as the scheduler would (BOS when the vocabulary wants one, special
 *  tokens parsed) into out[cap]. Returns the count or a negative err_code (ERR_NOMEM when
 *  cap is too small). */
int sched_tokenize(struct sched *s, const char *text, int *out, int cap, struct err *err);

/** Tokens `text` would take after `prefix` (-1: with BOS) — for callers that want to fit
 *  a prompt to the context before submitting. Negative err_code on failure. */
int sched_count_tokens(struct sched *s, int prefix, const char *text, struct err *err);

/** Asks the scheduler to compute every registered prefix now (in prefill chunks, between
 *  requests' steps) instead of on first use, so early requests do not pay for it. */
void sched_warm_prefixes(struct sched *s);

/** Tokens of prefix `id` (BOS included); 0 for -1 or an unknown id. */
int sched_prefix_tokens(struct sched *s, int id);

/** Live numbers (any thread). */
struct sched_info {
    int running, waiting, max_batch, queue, n_ctx, max_tokens_cap;
    long long steps, tokens_generated, prompt_tokens_prefilled, prefix_tokens_reused;
    int prefixes, prefixes_ready;
    int prompt_cache;                                 /* entries (0: off) */
    long long prompt_cache_hits, prompt_cache_misses; /* hits include waits on a fill */
};
void sched_info(struct sched *s, struct sched_info *out);

const char *sched_finish_name(enum sched_finish f);

#endif
