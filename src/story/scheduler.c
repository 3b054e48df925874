/* Continuous-batching generation scheduler; see scheduler.h and docs/story.md.
 *
 * Threading: the scheduler thread is the only one that touches the llm_ctx, the slots and
 * the prefixes' KV. Other threads touch only the wait queue, the counters and the prefix
 * registry before the first submit, all under `mu`. Cancellation is an atomic flag read at
 * the start of every step. */
#include "story/scheduler.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "engine/tokenizer.h"

enum seq_state { SEQ_FREE = 0, SEQ_WAIT_CACHE, SEQ_WAIT_PREFIX, SEQ_PREFILL, SEQ_DECODE };
enum prefix_state { PREFIX_EMPTY = 0, PREFIX_FILLING, PREFIX_READY };

/* A queued request: its tokens are made by sched_submit on the caller's thread. */
struct pending {
    struct sched_req r;
    int *tok; /* prompt tokens after the prefix */
    int n_tok;
    int max_gen;
    double t_submit;
    struct pending *next;
};

/* A request slot (one KV sequence). */
struct seq {
    enum seq_state st;
    struct pending *p; /* the request (owned while the slot is busy) */
    long long admit_no; /* admission order: prefill goes first-come first-served */
    int n_fed;          /* prompt tokens of p->tok already in the KV */
    int n_past;         /* positions the KV holds */
    int last;           /* the token to feed next (DECODE) */
    int n_gen;
    bool text_started;  /* leading whitespace of the story is dropped */
    bool pc_checked;    /* the prompt cache was consulted */
    bool pc_owner;      /* this request's prefill fills prompt-cache entry `pc` */
    int pc;             /* prompt-cache entry filled or awaited, or -1 */
    int reused;         /* prompt positions copied from a prefix or the prompt cache */
    struct sampler *smp;
    struct tok_stream ts;
    struct sampler_stop stop;
    double t_admit, t_first;
};

struct prefix {
    int *tok; /* BOS + the prefix text */
    int n;
    int n_fed;
    enum prefix_state st;
    int seq; /* reserved KV slot */
};

/* A prompt-cache entry: the KV of a whole prompt in its own slot, and the logits of the
 * prompt's last position, so a hit samples its first token without a forward row. */
struct pcache {
    enum prefix_state st; /* EMPTY, FILLING (by the slot whose pc_owner is set) or READY */
    int *tok;             /* the whole prompt (prefix tokens included) */
    int n;
    uint64_t hash;
    int seq;        /* reserved KV slot */
    float *logits;  /* n_vocab */
    long long used; /* LRU stamp */
};

struct sched {
    const struct llm *m;
    const struct tok *tok;
    struct sched_cfg cfg;
    struct llm_ctx *ctx;
    int n_vocab, eos;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool thread_started, stop, started_submits, warm_requested;
    int prefixes_ready;
    struct pending *wait_head, *wait_tail;
    int n_waiting, n_running;
    long long steps, tokens_generated, prompt_prefilled, prefix_reused;

    int n_prefix;
    struct prefix prefix[SCHED_MAX_PREFIXES];

    int n_pc; /* prompt-cache entries (0: off) */
    struct pcache *pc;
    long long pc_clock, pc_hits, pc_misses;

    /* scheduler-thread state */
    struct seq *slots; /* max_batch */
    long long admit_counter;
    int cap_rows;
    int *b_tok, *b_pos, *b_seq, *b_owner; /* owner: slot index, or -1 - prefix index */
    unsigned char *b_logits;
    float *logits; /* max_batch * n_vocab */

    /* metrics (NULL without a registry) */
    struct metrics_hist *h_ttft, *h_tps, *h_queue, *h_prefill, *h_step, *h_rows;
    struct metrics_counter *c_finish[SCHED_FINISH_ERROR + 1];
    struct metrics_counter *c_gen, *c_prompt, *c_reused, *c_busy, *c_pc_hit, *c_pc_miss;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *sched_finish_name(enum sched_finish f)
{
    switch (f) {
    case SCHED_FINISH_EOS: return "eos";
    case SCHED_FINISH_STOP: return "stop";
    case SCHED_FINISH_LENGTH: return "length";
    case SCHED_FINISH_CANCELLED: return "cancelled";
    case SCHED_FINISH_ERROR: return "error";
    }
    return "unknown";
}

static void pending_free(struct pending *p)
{
    if (!p) return;
    free(p->tok);
    free(p);
}

static double tps_state(void *ctx)
{
    struct sched *s = ctx;
    pthread_mutex_lock(&s->mu);
    double v = s->n_running;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static double prefixes_ready_state(void *ctx)
{
    struct sched *s = ctx;
    pthread_mutex_lock(&s->mu);
    double v = s->prefixes_ready;
    pthread_mutex_unlock(&s->mu);
    return v;
}

static double waiting_state(void *ctx)
{
    struct sched *s = ctx;
    pthread_mutex_lock(&s->mu);
    double v = s->n_waiting;
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Registers the story_* series. Missing series (a name clash) just go uncounted. */
static void metrics_setup(struct sched *s)
{
    struct metrics *m = s->cfg.metrics;
    if (!m) return;
    static const double ttft_b[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120};
    static const double tps_b[] = {1, 2, 5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000};
    static const double rows_b[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    s->h_ttft = metrics_hist(m, "story_time_to_first_token_seconds",
                             "Request submitted to first token sampled", NULL, ttft_b,
                             (int)(sizeof ttft_b / sizeof ttft_b[0]));
    s->h_tps = metrics_hist(m, "story_decode_tokens_per_second",
                            "Per request: generated tokens / decode time", NULL, tps_b,
                            (int)(sizeof tps_b / sizeof tps_b[0]));
    s->h_queue = metrics_hist(m, "story_queue_seconds", "Waiting for a generation slot", NULL,
                              ttft_b, (int)(sizeof ttft_b / sizeof ttft_b[0]));
    s->h_prefill = metrics_hist(m, "story_prefill_seconds",
                                "Admitted to first token (prompt prefill)", NULL, ttft_b,
                                (int)(sizeof ttft_b / sizeof ttft_b[0]));
    s->h_step = metrics_hist(m, "story_step_seconds", "One batched forward step", NULL,
                             METRICS_LATENCY_BUCKETS, METRICS_LATENCY_NBUCKETS);
    s->h_rows = metrics_hist(m, "story_step_rows", "Rows (tokens) in one batched step", NULL,
                             rows_b, (int)(sizeof rows_b / sizeof rows_b[0]));
    for (int f = 0; f <= SCHED_FINISH_ERROR; f++) {
        const char *labels[] = {"finish", sched_finish_name((enum sched_finish)f), NULL};
        s->c_finish[f] = metrics_counter(m, "story_generations_total",
                                         "Generations ended, by reason", labels);
    }
    s->c_gen = metrics_counter(m, "story_generated_tokens_total", "Tokens generated", NULL);
    s->c_prompt = metrics_counter(m, "story_prompt_tokens_prefilled_total",
                                  "Prompt tokens run through the model", NULL);
    s->c_reused = metrics_counter(m, "story_prefix_tokens_reused_total",
                                  "Prompt tokens taken from a shared prefix's KV cache", NULL);
    s->c_busy = metrics_counter(m, "story_rejected_queue_full_total",
                                "Requests refused because the queue was full", NULL);
    if (s->n_pc) {
        const char *hit[] = {"result", "hit", NULL}, *miss[] = {"result", "miss", NULL};
        const char *help = "Whole-prompt KV cache lookups (a hit skips the prefill)";
        s->c_pc_hit = metrics_counter(m, "story_prompt_cache_lookups_total", help, hit);
        s->c_pc_miss = metrics_counter(m, "story_prompt_cache_lookups_total", help, miss);
    }
    metrics_gauge_fn(m, "story_running", "Generations in a slot", NULL, tps_state, s);
    metrics_gauge_fn(m, "story_prefixes_ready", "Shared prompt prefixes whose KV is computed",
                     NULL, prefixes_ready_state, s);
    metrics_gauge_fn(m, "story_waiting", "Generations waiting for a slot", NULL,
                     waiting_state, s);
}

static void *sched_main(void *arg);

struct sched *sched_new(const struct llm *m, const struct sched_cfg *cfg, struct err *err)
{
    const struct tok *t = llm_tokenizer(m);
    if (!t) {
        err_set(err, ERR_INVALID, "the model has no tokenizer: the scheduler needs one");
        return NULL;
    }
    struct sched *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->tok = t;
    s->cfg = *cfg;
    if (s->cfg.max_batch <= 0) s->cfg.max_batch = 8;
    if (s->cfg.queue <= 0) s->cfg.queue = 64;
    if (s->cfg.max_tokens_cap <= 0) s->cfg.max_tokens_cap = 1024;
    if (s->cfg.prefill_chunk <= 0) s->cfg.prefill_chunk = 128;
    if (s->cfg.n_ctx <= 0) {
        s->cfg.n_ctx = llm_n_ctx_train(m);
        if (s->cfg.n_ctx > 2048) s->cfg.n_ctx = 2048;
    }
    if (s->cfg.max_prefixes <= 0) s->cfg.max_prefixes = 8;
    if (s->cfg.max_prefixes > SCHED_MAX_PREFIXES) s->cfg.max_prefixes = SCHED_MAX_PREFIXES;
    if (s->cfg.prompt_cache == 0) s->cfg.prompt_cache = 8;
    if (s->cfg.prompt_cache > SCHED_MAX_PROMPT_CACHE) s->cfg.prompt_cache = SCHED_MAX_PROMPT_CACHE;
    s->n_pc = s->cfg.prompt_cache > 0 ? s->cfg.prompt_cache : 0;
    if (s->cfg.max_batch > SCHED_MAX_BATCH) {
        err_set(err, ERR_INVALID, "max_batch %d is over %d", s->cfg.max_batch, SCHED_MAX_BATCH);
        free(s);
        return NULL;
    }
    s->n_vocab = llm_n_vocab(m);
    s->eos = llm_eos(m);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int mb = s->cfg.max_batch;
    s->cap_rows = mb + s->cfg.prefill_chunk;
    s->slots = calloc((size_t)mb, sizeof *s->slots);
    s->b_tok = malloc((size_t)s->cap_rows * sizeof(int));
    s->b_pos = malloc((size_t)s->cap_rows * sizeof(int));
    s->b_seq = malloc((size_t)s->cap_rows * sizeof(int));
    s->b_owner = malloc((size_t)s->cap_rows * sizeof(int));
    s->b_logits = malloc((size_t)s->cap_rows);
    s->logits = malloc((size_t)mb * (size_t)s->n_vocab * sizeof(float));
    s->pc = calloc((size_t)s->n_pc + 1, sizeof *s->pc);
    bool pc_ok = s->pc != NULL;
    for (int k = 0; pc_ok && k < s->n_pc; k++) {
        s->pc[k].seq = mb + s->cfg.max_prefixes + k;
        s->pc[k].logits = malloc((size_t)s->n_vocab * sizeof(float));
        pc_ok = s->pc[k].logits != NULL;
    }
    if (!s->slots || !s->b_tok || !s->b_pos || !s->b_seq || !s->b_owner || !s->b_logits ||
        !s->logits || !pc_ok) {
        err_set(err, ERR_NOMEM, "out of memory for the scheduler's batch buffers");
        sched_free(s);
        return NULL;
    }
    /* Room for every slot plus the prefixes and the prompt cache. */
    struct llm_ctx_cfg cc = {mb + s->cfg.max_prefixes + s->n_pc, s->cfg.n_ctx, s->cap_rows,
                             s->cfg.kv_f16};
    s->ctx = llm_ctx_new_cfg(m, &cc, err);
    if (!s->ctx) {
        sched_free(s);
        return NULL;
    }
    metrics_setup(s);
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        err_set(err, ERR_NOMEM, "cannot start the scheduler thread");
        sched_free(s);
        return NULL;
    }
    s->thread_started = true;
    return s;
}

/* Tokenizes text into a malloc'd array of at most n_ctx tokens. */
static int encode(struct sched *s, const char *text, bool bos, int **out, struct err *err)
{
    int cap = s->cfg.n_ctx;
    int *v = malloc((size_t)cap * sizeof(int));
    if (!v) return err_set(err, ERR_NOMEM, "out of memory");
    int n = tok_encode(s->tok, text, strlen(text), bos, true, v, cap, err);
    if (n < 0) {
        free(v);
        if (n == ERR_NOMEM)
            return err_set(err, ERR_INVALID, "the prompt is longer than the context (%d tokens)",
                           cap);
        return n;
    }
    *out = v;
    return n;
}

int sched_add_prefix(struct sched *s, const char *text, struct err *err)
{
    int *tok = NULL;
    int n = encode(s, text, true, &tok, err);
    if (n < 0) return n;
    pthread_mutex_lock(&s->mu);
    int id;
    if (s->started_submits || s->n_prefix >= s->cfg.max_prefixes) {
        pthread_mutex_unlock(&s->mu);
        free(tok);
        return err_set(err, ERR_BUSY, "prefixes must be added before the first request (at "
                                      "most %d)", s->cfg.max_prefixes);
    }
    id = s->n_prefix++;
    s->prefix[id] = (struct prefix){.tok = tok, .n = n, .seq = s->cfg.max_batch + id};
    pthread_mutex_unlock(&s->mu);
    return id;
}

void sched_warm_prefixes(struct sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->warm_requested = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int sched_prefix_tokens(struct sched *s, int id)
{
    pthread_mutex_lock(&s->mu);
    int n = id >= 0 && id < s->n_prefix ? s->prefix[id].n : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int sched_tokenize(struct sched *s, const char *text, int *out, int cap, struct err *err)
{
    return tok_encode(s->tok, text, strlen(text), tok_add_bos(s->tok), true, out, cap, err);
}

int sched_count_tokens(struct sched *s, int prefix, const char *text, struct err *err)
{
    int *tok = NULL;
    int n = encode(s, text, prefix < 0 && tok_add_bos(s->tok), &tok, err);
    free(tok);
    return n;
}

int sched_submit(struct sched *s, const struct sched_req *r, struct err *err)
{
    if ((!r->prompt && !r->tokens) || !r->on_done || r->max_tokens < 1)
        return err_set(err, ERR_INVALID, "a request needs a prompt, on_done and max_tokens >= 1");
    if (r->prefix < -1 || r->prefix >= s->n_prefix)
        return err_set(err, ERR_INVALID, "unknown prompt prefix %d", r->prefix);
    if (r->tokens && (r->n_tokens < 1 || r->n_tokens > s->cfg.n_ctx))
        return err_set(err, ERR_INVALID, "the prompt takes %d tokens; the context holds %d",
                       r->n_tokens, s->cfg.n_ctx);
    struct pending *p = calloc(1, sizeof *p);
    if (!p) return err_set(err, ERR_NOMEM, "out of memory");
    p->r = *r;
    p->r.prompt = NULL; /* not kept: the tokens are */
    p->r.tokens = NULL;
    int n;
    if (r->tokens) {
        /* The whole prompt as tokens: reuse the prefix only if it is a token-exact match. */
        int skip = 0;
        if (r->prefix >= 0) {
            const struct prefix *pf = &s->prefix[r->prefix];
            if (pf->n < r->n_tokens && memcmp(pf->tok, r->tokens, (size_t)pf->n * sizeof(int)) == 0)
                skip = pf->n;
            else
                p->r.prefix = -1;
        }
        n = r->n_tokens - skip;
        p->tok = malloc((size_t)n * sizeof(int));
        if (!p->tok) {
            free(p);
            return err_set(err, ERR_NOMEM, "out of memory");
        }
        memcpy(p->tok, r->tokens + skip, (size_t)n * sizeof(int));
    } else {
        n = encode(s, r->prompt, r->prefix < 0 && tok_add_bos(s->tok), &p->tok, err);
        if (n < 0) {
            free(p);
            return n;
        }
    }
    p->n_tok = n;
    r = &p->r; /* the prefix may have been dropped */
    int n_pre = r->prefix >= 0 ? s->prefix[r->prefix].n : 0;
    int room = s->cfg.n_ctx - n_pre - n;
    if (n == 0 || room < 1) {
        pending_free(p);
        return err_set(err, ERR_INVALID,
                       "the prompt takes %d tokens (%d shared + %d); the context holds %d",
                       n_pre + n, n_pre, n, s->cfg.n_ctx);
    }
    p->max_gen = r->max_tokens;
    if (p->max_gen > s->cfg.max_tokens_cap) p->max_gen = s->cfg.max_tokens_cap;
    if (p->max_gen > room) p->max_gen = room;
    p->t_submit = now_ms();
    pthread_mutex_lock(&s->mu);
    s->started_submits = true;
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        pending_free(p);
        return err_set(err, ERR_UNSUPPORTED, "the scheduler is stopping");
    }
    /* A request may wait only if there is a queue place, counting the free slots it will
     * take at once. */
    int free_slots = s->cfg.max_batch - s->n_running;
    if (s->n_waiting - (free_slots > 0 ? free_slots : 0) >= s->cfg.queue) {
        pthread_mutex_unlock(&s->mu);
        pending_free(p);
        if (s->c_busy) metrics_counter_inc(s->c_busy);
        return err_set(err, ERR_BUSY, "all %d generation slots are busy and %d requests are "
                                      "waiting", s->cfg.max_batch, s->cfg.queue);
    }
    if (s->wait_tail)
        s->wait_tail->next = p;
    else
        s->wait_head = p;
    s->wait_tail = p;
    s->n_waiting++;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_info(struct sched *s, struct sched_info *o)
{
    pthread_mutex_lock(&s->mu);
    *o = (struct sched_info){.running = s->n_running,
                             .waiting = s->n_waiting,
                             .max_batch = s->cfg.max_batch,
                             .queue = s->cfg.queue,
                             .n_ctx = s->cfg.n_ctx,
                             .max_tokens_cap = s->cfg.max_tokens_cap,
                             .steps = s->steps,
                             .tokens_generated = s->tokens_generated,
                             .prompt_tokens_prefilled = s->prompt_prefilled,
                             .prefix_tokens_reused = s->prefix_reused,
                             .prefixes = s->n_prefix,
                             .prefixes_ready = s->prefixes_ready,
                             .prompt_cache = s->n_pc,
                             .prompt_cache_hits = s->pc_hits,
                             .prompt_cache_misses = s->pc_misses};
    pthread_mutex_unlock(&s->mu);
}

/* ---- the scheduler thread ---- */

/* Ends the request in slot i: flushes held-back text (unless cancelled), reports, frees. */
static void finish(struct sched *s, int i, enum sched_finish why, const char *error)
{
    struct seq *q = &s->slots[i];
    struct pending *p = q->p;
    double t = now_ms();
    if (why != SCHED_FINISH_CANCELLED && why != SCHED_FINISH_ERROR && p->r.on_text) {
        char a[TOK_STREAM_OUT_MAX], b[SAMPLER_STOP_LEN_MAX + TOK_STREAM_OUT_MAX];
        size_t n = tok_stream_flush(&q->ts, a);
        size_t m = n ? sampler_stop_feed(&q->stop, a, n, b) : 0;
        if (m) p->r.on_text(p->r.ud, b, m);
        if (!q->stop.stopped) {
            m = sampler_stop_flush(&q->stop, b);
            if (m) p->r.on_text(p->r.ud, b, m);
        }
    }
    struct sched_stats st = {0};
    st.queue_ms = q->t_admit - p->t_submit;
    if (q->t_first > 0) {
        st.prefill_ms = q->t_first - q->t_admit;
        st.decode_ms = t - q->t_first;
        st.ttft_ms = q->t_first - p->t_submit;
    } else {
        st.prefill_ms = t - q->t_admit;
    }
    int n_pre = p->r.prefix >= 0 ? s->prefix[p->r.prefix].n : 0;
    st.prompt_tokens = n_pre + p->n_tok;
    st.prefix_tokens = q->reused;
    st.prompt_cached = q->reused == st.prompt_tokens;
    if (q->pc >= 0 && q->pc_owner) { /* ended before its prompt was computed: nothing to keep */
        struct pcache *e = &s->pc[q->pc];
        free(e->tok);
        e->tok = NULL;
        e->st = PREFIX_EMPTY;
    }
    st.completion_tokens = q->n_gen;
    st.finish = why;
    if (s->c_finish[why]) metrics_counter_inc(s->c_finish[why]);
    if (q->t_first > 0 && why != SCHED_FINISH_CANCELLED) {
        if (s->h_ttft) metrics_hist_observe(s->h_ttft, st.ttft_ms / 1e3);
        if (s->h_prefill) metrics_hist_observe(s->h_prefill, st.prefill_ms / 1e3);
        if (s->h_tps && q->n_gen > 1 && st.decode_ms > 0)
            metrics_hist_observe(s->h_tps, (q->n_gen - 1) / (st.decode_ms / 1e3));
    }
    sampler_free(q->smp);
    llm_seq_clear(s->ctx, i);
    q->smp = NULL;
    q->p = NULL;
    q->st = SEQ_FREE;
    pthread_mutex_lock(&s->mu);
    s->n_running--;
    pthread_mutex_unlock(&s->mu);
    p->r.on_done(p->r.ud, &st, error);
    pending_free(p);
}

/* Moves waiting requests into free slots (under mu). The KV work happens in step(). */
static void admit(struct sched *s)
{
    for (int i = 0; i < s->cfg.max_batch && s->wait_head; i++) {
        struct seq *q = &s->slots[i];
        if (q->st != SEQ_FREE) continue;
        struct pending *p = s->wait_head;
        s->wait_head = p->next;
        if (!s->wait_head) s->wait_tail = NULL;
        p->next = NULL;
        s->n_waiting--;
        s->n_running++;
        memset(q, 0, sizeof *q);
        q->pc = -1;
        q->p = p;
        q->admit_no = s->admit_counter++;
        q->t_admit = now_ms();
        q->st = p->r.prefix >= 0 ? SEQ_WAIT_PREFIX : SEQ_PREFILL;
    }
}

/* Sets up the per-request sampler and text pipeline. Errors end the request. */
static int seq_start(struct sched *s, int i)
{
    struct seq *q = &s->slots[i];
    struct err err = {0};
    q->smp = sampler_new(&q->p->r.sampling, s->n_vocab, &err);
    if (!q->smp) {
        finish(s, i, SCHED_FINISH_ERROR, err.msg);
        return -1;
    }
    tok_stream_init(&q->ts, s->tok);
    const char *stop = chat_stop_string(s->cfg.chat);
    sampler_stop_init(&q->stop, stop ? &stop : NULL, stop ? 1 : 0, NULL);
    if (s->h_queue) metrics_hist_observe(s->h_queue, (q->t_admit - q->p->t_submit) / 1e3);
    return 0;
}

/* Emits generated bytes through the stop matcher; returns non-zero if the sink cancels. */
static int emit(struct seq *q, const char *text, size_t n)
{
    if (!q->text_started) {
        while (n && (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')) {
            text++;
            n--;
        }
        if (!n) return 0;
        q->text_started = true;
    }
    char out[SAMPLER_STOP_LEN_MAX + TOK_STREAM_OUT_MAX];
    size_t m = sampler_stop_feed(&q->stop, text, n, out);
    if (m && q->p->r.on_text) return q->p->r.on_text(q->p->r.ud, out, m);
    return 0;
}

/* Handles the token sampled for slot i: text out, then the end conditions. */
static void on_token(struct sched *s, int i, int token)
{
    struct seq *q = &s->slots[i];
    if (q->t_first <= 0) q->t_first = now_ms();
    q->n_gen++;
    if (token == s->eos) {
        finish(s, i, SCHED_FINISH_EOS, NULL);
        return;
    }
    char buf[TOK_STREAM_OUT_MAX];
    size_t n = tok_stream_push(&q->ts, token, buf);
    if (n && emit(q, buf, n)) {
        finish(s, i, SCHED_FINISH_CANCELLED, NULL);
        return;
    }
    if (q->stop.stopped) {
        finish(s, i, SCHED_FINISH_STOP, NULL);
        return;
    }
    if (q->n_gen >= q->p->max_gen || q->n_past >= s->cfg.n_ctx) {
        finish(s, i, SCHED_FINISH_LENGTH, NULL);
        return;
    }
    q->last = token;
    q->st = SEQ_DECODE;
}

/* ---- the prompt cache (scheduler thread only, except the counters under mu) ---- */

static uint64_t tok_hash(uint64_t h, const int *t, int n)
{
    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)t[i];
        h *= 1099511628211ull; /* FNV-1a over the token ids */
    }
    return h;
}

/* A request's whole prompt is its prefix's tokens (if any) then its own. */
static uint64_t prompt_hash(const struct sched *s, const struct pending *p, int *n_all)
{
    uint64_t h = 1469598103934665603ull;
    int n = 0;
    if (p->r.prefix >= 0) {
        const struct prefix *pf = &s->prefix[p->r.prefix];
        h = tok_hash(h, pf->tok, pf->n);
        n = pf->n;
    }
    *n_all = n + p->n_tok;
    return tok_hash(h, p->tok, p->n_tok);
}

/* Whether entry e holds (or is computing) exactly p's whole prompt. */
static bool pcache_matches(const struct sched *s, const struct pcache *e, const struct pending *p,
                           uint64_t h, int n_all)
{
    if (e->st == PREFIX_EMPTY || e->hash != h || e->n != n_all) return false;
    int n_pre = 0;
    if (p->r.prefix >= 0) {
        const struct prefix *pf = &s->prefix[p->r.prefix];
        n_pre = pf->n;
        if (memcmp(e->tok, pf->tok, (size_t)n_pre * sizeof(int)) != 0) return false;
    }
    return memcmp(e->tok + n_pre, p->tok, (size_t)p->n_tok * sizeof(int)) == 0;
}

static void on_token(struct sched *s, int i, int token);

/* Slot i takes ready entry e: the prompt's KV is copied in and the first token is sampled
 * from the stored logits, so the request goes straight to decoding. */
static void pcache_take(struct sched *s, int i, struct pcache *e)
{
    struct seq *q = &s->slots[i];
    llm_seq_copy(s->ctx, e->seq, i, e->n);
    e->used = ++s->pc_clock;
    q->n_past = e->n;
    q->n_fed = q->p->n_tok;
    q->reused = e->n;
    q->pc = -1;
    q->st = SEQ_PREFILL;
    pthread_mutex_lock(&s->mu);
    s->prefix_reused += e->n;
    s->tokens_generated++;
    pthread_mutex_unlock(&s->mu);
    if (s->c_reused) metrics_counter_add(s->c_reused, (uint64_t)e->n);
    if (s->c_gen) metrics_counter_inc(s->c_gen);
    on_token(s, i, sampler_sample(q->smp, e->logits));
}

/* Consults the prompt cache for the request in slot i: takes a ready entry, waits for one
 * another request is computing, or reserves an entry (empty, else the least recently used
 * ready one) for its own prefill to fill. `count`: this is the request's first lookup. */
static void pcache_admit(struct sched *s, int i, bool count)
{
    struct seq *q = &s->slots[i];
    q->pc_checked = true;
    if (!s->n_pc) return;
    int n_all;
    uint64_t h = prompt_hash(s, q->p, &n_all);
    int victim = -1;
    for (int k = 0; k < s->n_pc; k++) {
        struct pcache *e = &s->pc[k];
        if (pcache_matches(s, e, q->p, h, n_all)) {
            if (count) {
                pthread_mutex_lock(&s->mu);
                s->pc_hits++;
                pthread_mutex_unlock(&s->mu);
                if (s->c_pc_hit) metrics_counter_inc(s->c_pc_hit);
            }
            if (e->st == PREFIX_READY) {
                pcache_take(s, i, e);
            } else {
                q->pc = k;
                q->st = SEQ_WAIT_CACHE;
            }
            return;
        }
        if (e->st == PREFIX_FILLING) continue;
        const struct pcache *v = victim >= 0 ? &s->pc[victim] : NULL;
        if (!v || (v->st != PREFIX_EMPTY && (e->st == PREFIX_EMPTY || e->used < v->used)))
            victim = k;
    }
    if (count) {
        pthread_mutex_lock(&s->mu);
        s->pc_misses++;
        pthread_mutex_unlock(&s->mu);
        if (s->c_pc_miss) metrics_counter_inc(s->c_pc_miss);
    }
    if (victim < 0) return; /* every entry is being filled: this prompt is not kept */
    struct pcache *e = &s->pc[victim];
    int *tok = malloc((size_t)n_all * sizeof(int));
    if (!tok) return; /* not kept; the request runs as usual */
    int n_pre = n_all - q->p->n_tok;
    if (n_pre) memcpy(tok, s->prefix[q->p->r.prefix].tok, (size_t)n_pre * sizeof(int));
    memcpy(tok + n_pre, q->p->tok, (size_t)q->p->n_tok * sizeof(int));
    free(e->tok);
    *e = (struct pcache){.st = PREFIX_FILLING,
                         .tok = tok,
                         .n = n_all,
                         .hash = h,
                         .seq = e->seq,
                         .logits = e->logits,
                         .used = ++s->pc_clock};
    q->pc = victim;
    q->pc_owner = true;
}

/* Slot i waits for entry q->pc: takes it once ready; looks again if the fill was abandoned
 * (its request ended first). */
static void pcache_wait(struct sched *s, int i)
{
    struct seq *q = &s->slots[i];
    struct pcache *e = &s->pc[q->pc];
    int n_all;
    uint64_t h = prompt_hash(s, q->p, &n_all);
    if (pcache_matches(s, e, q->p, h, n_all)) {
        if (e->st == PREFIX_READY) pcache_take(s, i, e);
        return;
    }
    q->pc = -1;
    q->st = q->p->r.prefix >= 0 ? SEQ_WAIT_PREFIX : SEQ_PREFILL;
    pcache_admit(s, i, false);
}

/* The owner's prompt is computed (`lg`: its last position's logits): keep it. */
static void pcache_fill(struct sched *s, int i, const float *lg)
{
    struct seq *q = &s->slots[i];
    struct pcache *e = &s->pc[q->pc];
    llm_seq_copy(s->ctx, i, e->seq, q->n_past);
    memcpy(e->logits, lg, (size_t)s->n_vocab * sizeof(float));
    e->st = PREFIX_READY;
    e->used = ++s->pc_clock;
    q->pc_owner = false;
    q->pc = -1;
}

static void add_row(struct sched *s, int *n, int token, int pos, int seq, int owner, bool logits)
{
    s->b_tok[*n] = token;
    s->b_pos[*n] = pos;
    s->b_seq[*n] = seq;
    s->b_owner[*n] = owner;
    s->b_logits[*n] = logits;
    (*n)++;
}

/* One step: cancellations, prefix copies, then one batched forward of every decode row and
 * as much prefill as the chunk allows, then sampling. */
static void step(struct sched *s)
{
    int mb = s->cfg.max_batch;
    for (int i = 0; i < mb; i++) {
        struct seq *q = &s->slots[i];
        if (q->st == SEQ_FREE) continue;
        if (q->p->r.cancel && atomic_load(q->p->r.cancel)) {
            finish(s, i, SCHED_FINISH_CANCELLED, NULL);
            continue;
        }
        if (!q->smp && seq_start(s, i)) continue;
        if (!q->pc_checked)
            pcache_admit(s, i, true);
        else if (q->st == SEQ_WAIT_CACHE)
            pcache_wait(s, i);
        if (q->st == SEQ_WAIT_PREFIX) {
            struct prefix *pf = &s->prefix[q->p->r.prefix];
            if (pf->st == PREFIX_EMPTY) pf->st = PREFIX_FILLING;
            if (pf->st == PREFIX_READY) {
                llm_seq_copy(s->ctx, pf->seq, i, pf->n);
                q->n_past = pf->n;
                q->reused = pf->n;
                q->st = SEQ_PREFILL;
                pthread_mutex_lock(&s->mu);
                s->prefix_reused += pf->n;
                pthread_mutex_unlock(&s->mu);
                if (s->c_reused) metrics_counter_add(s->c_reused, (uint64_t)pf->n);
            }
        }
    }
    int n = 0;
    for (int i = 0; i < mb; i++) {
        struct seq *q = &s->slots[i];
        if (q->st == SEQ_DECODE) add_row(s, &n, q->last, q->n_past, i, i, true);
    }
    int n_decode = n;
    int budget = s->cfg.prefill_chunk;
    for (int k = 0; k < s->n_prefix && budget > 0; k++) {
        struct prefix *pf = &s->prefix[k];
        if (pf->st != PREFIX_FILLING) continue;
        int take = pf->n - pf->n_fed;
        if (take > budget) take = budget;
        for (int j = 0; j < take; j++)
            add_row(s, &n, pf->tok[pf->n_fed + j], pf->n_fed + j, pf->seq, -1 - k, false);
        budget -= take;
    }
    /* prefill in admission order */
    while (budget > 0) {
        int best = -1;
        for (int i = 0; i < mb; i++) {
            struct seq *q = &s->slots[i];
            if (q->st != SEQ_PREFILL || q->n_fed >= q->p->n_tok) continue;
            bool in_batch = false; /* already given a chunk this step */
            for (int r = n_decode; r < n && !in_batch; r++) in_batch = s->b_owner[r] == i;
            if (in_batch) continue;
            if (best < 0 || q->admit_no < s->slots[best].admit_no) best = i;
        }
        if (best < 0) break;
        struct seq *q = &s->slots[best];
        int take = q->p->n_tok - q->n_fed;
        if (take > budget) take = budget;
        for (int j = 0; j < take; j++) {
            int at = q->n_fed + j;
            add_row(s, &n, q->p->tok[at], q->n_past + j, best, best, at == q->p->n_tok - 1);
        }
        budget -= take;
    }
    if (n == 0) return;

    struct err err = {0};
    double t0 = now_ms();
    int rc = llm_decode(s->ctx, &(struct llm_batch){.n = n, .token = s->b_tok, .pos = s->b_pos,
                                                    .seq = s->b_seq, .logits = s->b_logits},
                        s->logits, &err);
    double dt = now_ms() - t0;
    if (s->h_step) metrics_hist_observe(s->h_step, dt / 1e3);
    if (s->h_rows) metrics_hist_observe(s->h_rows, n);
    if (rc) { /* a bug, not input: end everything that was in the batch */
        log_error("sched", "batched forward failed: %s", err.msg);
        for (int r = 0; r < n; r++) {
            int o = s->b_owner[r];
            if (o >= 0 && s->slots[o].st != SEQ_FREE) finish(s, o, SCHED_FINISH_ERROR, err.msg);
            if (o < 0) { /* the prefix is lost; requests waiting on it fail next time */
                s->prefix[-1 - o].st = PREFIX_EMPTY;
                s->prefix[-1 - o].n_fed = 0;
            }
        }
        return;
    }
    long long prefilled = 0;
    for (int r = 0; r < n; r++) {
        int o = s->b_owner[r];
        if (o < 0) {
            struct prefix *pf = &s->prefix[-1 - o];
            pf->n_fed++;
            prefilled++;
            if (pf->n_fed == pf->n) {
                pf->st = PREFIX_READY;
                pthread_mutex_lock(&s->mu);
                s->prefixes_ready++;
                pthread_mutex_unlock(&s->mu);
            }
        } else {
            struct seq *q = &s->slots[o];
            q->n_past++;
            if (q->st == SEQ_PREFILL) {
                q->n_fed++;
                prefilled++;
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    s->steps++;
    s->prompt_prefilled += prefilled;
    pthread_mutex_unlock(&s->mu);
    if (s->c_prompt) metrics_counter_add(s->c_prompt, (uint64_t)prefilled);
    int li = 0, n_sampled = 0;
    for (int r = 0; r < n; r++) {
        if (!s->b_logits[r]) continue;
        int o = s->b_owner[r];
        const float *lg = s->logits + (size_t)li * s->n_vocab;
        li++;
        struct seq *q = &s->slots[o];
        if (q->st == SEQ_FREE) continue;
        if (q->pc_owner) pcache_fill(s, o, lg);
        int token = sampler_sample(q->smp, lg);
        n_sampled++;
        on_token(s, o, token);
    }
    pthread_mutex_lock(&s->mu);
    s->tokens_generated += n_sampled;
    pthread_mutex_unlock(&s->mu);
    if (s->c_gen) metrics_counter_add(s->c_gen, (uint64_t)n_sampled);
}

/* Whether a prefix is being computed (scheduler thread only, so no lock needed for the
 * states; called under mu for the wait condition). */
static bool prefix_filling(const struct sched *s)
{
    for (int k = 0; k < s->n_prefix; k++)
        if (s->prefix[k].st == PREFIX_FILLING) return true;
    return false;
}

static void *sched_main(void *arg)
{
    struct sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && s->n_running == 0 && !s->wait_head && !s->warm_requested &&
               !prefix_filling(s))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        if (s->warm_requested) {
            s->warm_requested = false;
            for (int k = 0; k < s->n_prefix; k++)
                if (s->prefix[k].st == PREFIX_EMPTY) s->prefix[k].st = PREFIX_FILLING;
        }
        admit(s);
        pthread_mutex_unlock(&s->mu);
        step(s);
        pthread_mutex_lock(&s->mu);
    }
    /* Stopping: everything still here is cancelled. */
    struct pending *w = s->wait_head;
    s->wait_head = s->wait_tail = NULL;
    s->n_waiting = 0;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->cfg.max_batch; i++)
        if (s->slots[i].st != SEQ_FREE) {
            if (!s->slots[i].smp) s->slots[i].t_admit = now_ms();
            finish(s, i, SCHED_FINISH_CANCELLED, NULL);
        }
    while (w) {
        struct pending *next = w->next;
        struct sched_stats st = {.finish = SCHED_FINISH_CANCELLED,
                                 .queue_ms = now_ms() - w->t_submit,
                                 .prompt_tokens = w->n_tok};
        w->r.on_done(w->r.ud, &st, NULL);
        pending_free(w);
        w = next;
    }
    return NULL;
}

void sched_free(struct sched *s)
{
    if (!s) return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int k = 0; k < s->n_prefix; k++) free(s->prefix[k].tok);
    for (int k = 0; s->pc && k < s->n_pc; k++) {
        free(s->pc[k].tok);
        free(s->pc[k].logits);
    }
    free(s->pc);
    llm_ctx_free(s->ctx);
    free(s->slots);
    free(s->b_tok);
    free(s->b_pos);
    free(s->b_seq);
    free(s->b_owner);
    free(s->b_logits);
    free(s->logits);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
