/* trendstory serve: trending topics -> a themed story from a local model, over HTTP.
 *
 *   POST /v1/stories   validate (I/O thread) -> deferred job: topics from the topic cache
 *                      (never the network while a usable entry exists) -> prompt (theme's
 *                      system message = a shared KV prefix, topics as delimited data, the
 *                      model's chat template) -> the generation scheduler -> JSON or SSE
 *   GET  /v1/trends    cached topics of a source with their age
 *   GET  /v1/themes    the themes and their descriptions
 *   + the standard routes of serve/service.h (healthz, readyz, metrics, the page).
 *
 * A non-streamed request holds a compute worker while it waits for its story (the worker
 * sleeps; the scheduler thread does the work), so the service runs max_batch + queue + a
 * few workers. A streamed request gives its worker back at once: the scheduler thread pushes
 * events into the stream. See docs/story.md. */
#include "story/story_service.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/cli.h"
#include "base/log.h"
#include "engine/chat.h"
#include "engine/model.h"
#include "serve/service.h"
#include "story/fetch.h"
#include "story/prompts.h"
#include "story/scheduler.h"
#include "story/sources.h"
#include "story/text.h"
#include "story/topic_cache.h"

const char *const story_service_sources[] = {"google",  "hackernews", "wikipedia", "rss",
                                             "youtube", "newsapi",    "all",       NULL};
const char *const story_service_themes[] = {"comedy",  "tragedy", "sarcasm", "mystery",
                                            "romance", "sci-fi",  "default", NULL};
#define N_THEMES 7

/* Bytes of story text kept per request (max tokens times a generous piece size). */
#define STORY_TEXT_MAX (STORY_SERVICE_MAX_TOKENS * 64)
/* Tokens a prompt must leave free for the story; topics are dropped until it does. */
#define MIN_STORY_ROOM 32

struct story_opts {
    const char *model_path;
    const char *themes_path;
    const char *template_name;
    const char *prefetch;
    int compute_threads;
    int max_batch, queue, max_tokens_cap, default_tokens, n_ctx, prefill_chunk, prompt_cache;
    long trend_wait_ms;
    long ttl_s;
    bool lazy_prefixes;
    bool kv_f32;
};

struct story_service {
    struct service *svc;
    struct story_opts o;
    struct llm *model; /* NULL: no model loaded (503 not_ready) */
    char model_name[128];
    struct sched *sched;
    enum chat_family chat;
    struct prompts *prompts;
    int prefix[N_THEMES];
    char *prefix_text[N_THEMES]; /* the system turn through the chat template */
    const char *system[N_THEMES];
    struct fetcher *fetcher;
    struct topic_cache *topics;
    atomic_uint_fast64_t seed_counter;
    struct metrics_hist *h_trend;
    struct metrics_counter *c_stale, *c_trend_err;
};

/* ---- request validation ---- */

static int fail(struct jv_invalid *inv, const char *field, const char *msg)
{
    snprintf(inv->field, sizeof inv->field, "%s", field);
    snprintf(inv->message, sizeof inv->message, "%.255s", msg);
    return -1;
}

/* The reference's optional "topics" (a list of strings): absent or null = fetch from the
 * source; otherwise 1..20 strings, each cleaned like a fetched title (controls, entities and
 * tags handled, at most STORY_SERVICE_MAX_TOPIC bytes) and non-empty after cleaning. */
static int parse_topics(const struct jv *root, struct story_service_req *out,
                        struct jv_invalid *inv)
{
    const struct jv *t = jv_get(root, "topics");
    if (!t || jv_kind(t) == JV_NULL) return 0;
    if (jv_kind(t) != JV_ARRAY || jv_len(t) < 1 || jv_len(t) > STORY_SERVICE_MAX_LIMIT)
        return fail(inv, "topics", "topics must be a list of 1 to 20 strings");
    for (size_t i = 0; i < jv_len(t); i++) {
        size_t len = 0;
        const char *v = jv_str(jv_at(t, i), &len);
        if (!v) return fail(inv, "topics", "topics must be a list of 1 to 20 strings");
        char *c = text_clean(v, len, TEXT_ENTITIES | TEXT_TAGS, STORY_SERVICE_MAX_TOPIC);
        if (!c) return fail(inv, "topics", "out of memory reading topics");
        bool empty = c[0] == 0;
        snprintf(out->topics[out->n_topics], sizeof out->topics[0], "%s", c);
        free(c);
        if (empty) {
            char msg[64];
            snprintf(msg, sizeof msg, "topics[%zu] is empty", i);
            return fail(inv, "topics", msg);
        }
        out->n_topics++;
    }
    return 0;
}

int story_service_req_parse(const struct jv *root, struct story_service_req *out,
                            struct jv_invalid *inv)
{
    memset(out, 0, sizeof *out);
    if (jv_require_object(root, inv)) return -1;
    int source, theme;
    int64_t limit, max_tokens;
    const char *geo, *url;
    size_t geo_len, url_len;
    if (jv_field_enum(root, "source", false, story_service_sources, STORY_SERVICE_SRC_GOOGLE,
                      &source, NULL, inv) ||
        jv_field_enum(root, "theme", false, story_service_themes, STORY_SERVICE_THEME_DEFAULT,
                      &theme, NULL, inv) ||
        jv_field_int(root, "limit", false, 1, STORY_SERVICE_MAX_LIMIT, 5, &limit, NULL, inv) ||
        jv_field_str(root, "geo", false, STORY_SERVICE_MAX_GEO, "", &geo, &geo_len, NULL, inv) ||
        jv_field_str(root, "url", false, STORY_SERVICE_MAX_URL, "", &url, &url_len, NULL, inv) ||
        jv_field_int(root, "max_tokens", false, 1, STORY_SERVICE_MAX_TOKENS, 0, &max_tokens,
                     &out->has_max_tokens, inv) ||
        jv_field_num(root, "temperature", false, 0, 2, 0, &out->temperature, &out->has_temperature,
                     inv) ||
        jv_field_num(root, "top_p", false, 0, 1, 0, &out->top_p, &out->has_top_p, inv) ||
        jv_field_int(root, "seed", false, INT64_MIN, INT64_MAX, 0, &out->seed, &out->has_seed,
                     inv) ||
        jv_field_bool(root, "stream", false, false, &out->stream, NULL, inv))
        return -1;
    out->source = (enum story_service_source)source;
    out->theme = (enum story_service_theme)theme;
    out->limit = (int)limit;
    out->max_tokens = (int)max_tokens;
    memcpy(out->geo, geo, geo_len);
    out->geo[geo_len] = '\0';
    memcpy(out->url, url, url_len);
    out->url[url_len] = '\0';
    for (size_t i = 0; i < geo_len; i++) {
        char c = geo[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-'))
            return fail(inv, "geo",
                        "geo must be a region code such as US or GB (letters and "
                        "'-', at most 8)");
    }
    if (url_len && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return fail(inv, "url", "url must start with http:// or https://");
    if (out->source == STORY_SERVICE_SRC_RSS && url_len == 0)
        return fail(inv, "url", "url is required when source is rss");
    return parse_topics(root, out, inv);
}

/* ---- helpers ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* An error answer with our fields and the reference's (status_code, error_message from its
 * gRPC answer, detail from its FastAPI one). */
static void story_error(struct http_resp *resp, int status, const char *code, const char *field,
                        const char *msg)
{
    struct jw w;
    jw_init(&w, 4096);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_str(&w, code);
    if (field && *field) {
        jw_key(&w, "field");
        jw_str(&w, field);
    }
    jw_key(&w, "message");
    jw_str(&w, msg);
    jw_key(&w, "status_code");
    jw_int(&w, status);
    jw_key(&w, "error_message");
    jw_str(&w, msg);
    jw_key(&w, "detail"); /* what the reference's FastAPI errors carry */
    jw_str(&w, msg);
    jw_obj_end(&w);
    if (w.overflow) {
        jw_free(&w);
        http_resp_error(resp, status, code, "%s", msg);
        return;
    }
    http_resp_take(resp, status, "application/json", w.buf, w.len);
}

static void story_invalid(struct http_resp *resp, const struct jv_invalid *inv)
{
    story_error(resp, 400, "invalid_field", inv->field, inv->message);
}

/* Source parameters for a request: topics are fetched at the source's default limit (20)
 * and cut per request, so every limit shares one cache entry. */
static int params_for(enum source_id id, const char *geo, const char *url,
                      struct source_params *p, struct jv_invalid *inv)
{
    memset(p, 0, sizeof *p);
    snprintf(p->geo, sizeof p->geo, "%s", geo ? geo : "");
    if (url && strlen(url) >= sizeof p->url)
        return fail(inv, "url", "url is too long for a feed (at most 1023 bytes)");
    snprintf(p->url, sizeof p->url, "%s", url ? url : "");
    p->limit = SOURCE_LIMIT_DEFAULT;
    struct err err = {0};
    if (source_params_check(id, p, &err)) {
        const char *field = strstr(err.msg, "url") ? "url" : strstr(err.msg, "geo") ? "geo"
                                                                                     : "source";
        return fail(inv, field, err.msg);
    }
    return 0;
}

/* Maps a topic cache failure to an answer: 504 when the source is slow, 502 otherwise. */
static void trend_error(struct story_service *ss, struct http_resp *resp, const char *source,
                        int rc, const struct err *err)
{
    if (ss->c_trend_err) metrics_counter_inc(ss->c_trend_err);
    char msg[ERR_MSG_MAX + 128];
    if (rc == ERR_TIMEOUT) {
        snprintf(msg, sizeof msg, "trend source '%s' did not answer in time and nothing is "
                 "cached: %s", source, err->msg);
        story_error(resp, 504, "upstream_timeout", "source", msg);
    } else {
        snprintf(msg, sizeof msg, "trend source '%s' failed and nothing is cached: %s", source,
                 err->msg);
        story_error(resp, 502, "upstream_error", "source", msg);
    }
}

/* ---- POST /v1/stories ---- */

struct story_job {
    struct story_service *ss;
    struct story_service_req rq;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool cancel;
    bool done;
    struct http_sse *sse; /* streamed requests */
    char *text;           /* the story so far */
    size_t len;
    int n_topics;
    char *titles[STORY_SERVICE_MAX_LIMIT];
    bool stale;
    int64_t topics_age_ms;
    double t0, trend_ms;
    struct sched_stats st;
    char error[ERR_MSG_MAX];
};

/* The source named in answers: "request" when the caller gave the topics. */
static const char *job_source(const struct story_job *j)
{
    return j->rq.n_topics ? "request" : story_service_sources[j->rq.source];
}

static void job_free(struct story_job *j)
{
    if (!j) return;
    for (int i = 0; i < j->n_topics; i++) free(j->titles[i]);
    free(j->text);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* The story object: the same for the JSON answer and the stream's final event. */
static void write_result(struct story_job *j, struct jw *w)
{
    struct story_service *ss = j->ss;
    const struct sched_stats *st = &j->st;
    double gen_s = (now_ms() - j->t0) / 1e3;
    jw_obj_begin(w);
    jw_key(w, "story");
    jw_strn(w, j->text ? j->text : "", j->len);
    jw_key(w, "topics_used");
    jw_arr_begin(w);
    for (int i = 0; i < j->n_topics; i++) jw_str(w, j->titles[i]);
    jw_arr_end(w);
    jw_key(w, "metadata");
    jw_obj_begin(w);
    jw_key(w, "generation_time");
    jw_num(w, gen_s, 6);
    jw_key(w, "model_name");
    jw_str(w, ss->model_name);
    jw_key(w, "source");
    jw_str(w, job_source(j));
    jw_key(w, "theme");
    jw_str(w, story_service_themes[j->rq.theme]);
    jw_key(w, "stale");
    jw_bool(w, j->stale);
    jw_key(w, "topics_age_s");
    jw_num(w, (double)j->topics_age_ms / 1e3, 6);
    jw_key(w, "finish_reason");
    jw_str(w, sched_finish_name(st->finish));
    jw_obj_end(w);
    jw_key(w, "timings");
    jw_obj_begin(w);
    jw_key(w, "trend_ms");
    jw_num(w, j->trend_ms, 6);
    jw_key(w, "queue_ms");
    jw_num(w, st->queue_ms, 6);
    jw_key(w, "prefill_ms");
    jw_num(w, st->prefill_ms, 6);
    jw_key(w, "decode_ms");
    jw_num(w, st->decode_ms, 6);
    jw_key(w, "ttft_ms");
    jw_num(w, st->ttft_ms, 6);
    jw_key(w, "prompt_tokens");
    jw_int(w, st->prompt_tokens);
    jw_key(w, "prefix_tokens_reused");
    jw_int(w, st->prefix_tokens);
    jw_key(w, "prompt_cached");
    jw_bool(w, st->prompt_cached);
    jw_key(w, "completion_tokens");
    jw_int(w, st->completion_tokens);
    jw_key(w, "tokens_per_second");
    jw_num(w, st->decode_ms > 0 && st->completion_tokens > 1
                  ? (st->completion_tokens - 1) / (st->decode_ms / 1e3)
                  : 0,
           6);
    jw_obj_end(w);
    jw_key(w, "status_code");
    jw_int(w, 200);
    jw_key(w, "error_message");
    jw_null(w);
    jw_obj_end(w);
}

static void write_topics_event(struct story_job *j, struct jw *w)
{
    jw_obj_begin(w);
    jw_key(w, "topics_used");
    jw_arr_begin(w);
    for (int i = 0; i < j->n_topics; i++) jw_str(w, j->titles[i]);
    jw_arr_end(w);
    jw_key(w, "source");
    jw_str(w, job_source(j));
    jw_key(w, "theme");
    jw_str(w, story_service_themes[j->rq.theme]);
    jw_key(w, "stale");
    jw_bool(w, j->stale);
    jw_key(w, "trend_ms");
    jw_num(w, j->trend_ms, 6);
    jw_obj_end(w);
}

/* Scheduler thread: a piece of story text. Streams it, keeps it for the final answer. */
static int job_on_text(void *ud, const char *text, size_t n)
{
    struct story_job *j = ud;
    int cancel = 0;
    pthread_mutex_lock(&j->mu);
    if (j->len + n <= STORY_TEXT_MAX) {
        memcpy(j->text + j->len, text, n);
        j->len += n;
        j->text[j->len] = 0;
    }
    if (j->sse) {
        struct jw w;
        jw_init(&w, 16384);
        jw_obj_begin(&w);
        jw_key(&w, "text");
        jw_strn(&w, text, n);
        jw_obj_end(&w);
        int rc = w.overflow ? 0 : http_sse_send(j->sse, "token", w.buf, w.len);
        jw_free(&w);
        if (rc) cancel = 1; /* the client went away (ERR_IO) or cannot keep up (ERR_NOMEM) */
    }
    pthread_mutex_unlock(&j->mu);
    return cancel;
}

/* Scheduler thread: the end. A streamed job ends its stream and is freed here; a buffered
 * one wakes its worker, which answers and frees it. */
static void job_on_done(void *ud, const struct sched_stats *st, const char *error)
{
    struct story_job *j = ud;
    pthread_mutex_lock(&j->mu);
    j->st = *st;
    if (error) snprintf(j->error, sizeof j->error, "%s", error);
    if (!j->rq.stream) {
        j->done = true;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        return;
    }
    if (j->sse) {
        struct jw w;
        jw_init(&w, STORY_TEXT_MAX * 2 + 8192);
        if (st->finish == SCHED_FINISH_ERROR || st->finish == SCHED_FINISH_CANCELLED) {
            const char *msg = st->finish == SCHED_FINISH_ERROR
                                  ? j->error
                                  : "the generation was cancelled (the server is stopping)";
            jw_obj_begin(&w);
            jw_key(&w, "error");
            jw_str(&w, st->finish == SCHED_FINISH_ERROR ? "generation_failed" : "cancelled");
            jw_key(&w, "message");
            jw_str(&w, msg);
            jw_key(&w, "status_code");
            jw_int(&w, st->finish == SCHED_FINISH_ERROR ? 500 : 503);
            jw_key(&w, "error_message");
            jw_str(&w, msg);
            jw_obj_end(&w);
            if (!w.overflow) http_sse_send(j->sse, "error", w.buf, w.len);
        } else {
            write_result(j, &w);
            if (!w.overflow) http_sse_send(j->sse, "done", w.buf, w.len);
        }
        jw_free(&w);
        http_sse_end(j->sse);
        j->sse = NULL;
    }
    pthread_mutex_unlock(&j->mu);
    job_free(j);
}

/* I/O thread, under the stream's lock: the client left. */
static void job_on_close(void *ctx)
{
    struct story_job *j = ctx;
    atomic_store(&j->cancel, true);
}

/* The whole prompt: the theme's system message and the topics (as delimited data) through
 * the chat template, tokenized. The scheduler reuses the theme's prefix KV when these tokens
 * start with the prefix's (they do: the system turn comes first and ends where the user turn
 * starts). Returns the token count, or a negative err_code. */
static int prompt_tokens(struct story_service *ss, int theme, char *const *titles, int n,
                         int *out, int cap, struct err *err)
{
    char user[PROMPTS_MAX_TOPICS * (PROMPTS_TOPIC_MAX_BYTES + 8) + 256];
    prompts_user_message((const char *const *)titles, n, user, sizeof user);
    struct chat_msg msgs[2] = {{"system", ss->system[theme]}, {"user", user}};
    size_t need = chat_apply(ss->chat, msgs, 2, true, NULL, 0);
    char *full = malloc(need + 1);
    if (!full) return err_set(err, ERR_NOMEM, "out of memory");
    chat_apply(ss->chat, msgs, 2, true, full, need + 1);
    int k = sched_tokenize(ss->sched, full, out, cap, err);
    free(full);
    return k;
}

/* Fills j->titles: the caller's own topics (all of them), or at most rq->limit topics from
 * the topic cache (never the network while a usable entry is cached). "all" reads YouTube
 * (when a key is set) and Google Trends, takes their lists in turn and drops
 * case-insensitive duplicates; it fails only when every one of them fails. Returns 0, or -1
 * with the answer (400/502/504) in resp. */
static int job_topics(struct story_job *j, struct http_resp *resp)
{
    struct story_service *ss = j->ss;
    const struct story_service_req *rq = &j->rq;
    if (rq->n_topics) {
        for (int i = 0; i < rq->n_topics; i++) {
            j->titles[i] = strdup(rq->topics[i]);
            if (!j->titles[i]) break;
            j->n_topics++;
        }
        return 0;
    }
    enum source_id ids[2];
    int n_ids = 0;
    if (rq->source == STORY_SERVICE_SRC_ALL) { /* the reference's order: YouTube, Google */
        const char *key = getenv("TRENDSTORY_YOUTUBE_API_KEY");
        if (key && *key) ids[n_ids++] = SOURCE_YOUTUBE;
        ids[n_ids++] = SOURCE_GOOGLE;
    } else {
        ids[n_ids++] = (enum source_id)rq->source;
    }
    struct source_params p[2];
    for (int s = 0; s < n_ids; s++) {
        struct jv_invalid inv;
        if (params_for(ids[s], rq->geo, rq->url, &p[s], &inv)) {
            story_invalid(resp, &inv);
            return -1;
        }
    }
    struct topic_result tr[2];
    bool ok[2] = {false, false};
    int first_rc = 0;
    struct err first_err = {0};
    const char *failed = NULL;
    double t = now_ms();
    /* with two sources, start both fetches (wait 0) before waiting for either */
    bool started[2] = {false, false};
    for (int s = 0; s < n_ids; s++) {
        memset(&tr[s], 0, sizeof tr[s]);
        if (n_ids < 2) continue;
        struct err err = {0};
        int rc = topic_cache_get(ss->topics, ids[s], &p[s], 0, &tr[s], &err);
        ok[s] = rc == 0;
        started[s] = rc == ERR_TIMEOUT;
        if (rc == 0 || rc == ERR_TIMEOUT || failed) continue;
        failed = source_name(ids[s]);
        first_rc = rc;
        first_err = err;
    }
    for (int s = 0; s < n_ids; s++) {
        if (n_ids > 1 && !started[s]) continue;
        struct err err = {0};
        int rc = topic_cache_get(ss->topics, ids[s], &p[s], ss->o.trend_wait_ms, &tr[s], &err);
        if (rc == 0) {
            ok[s] = true;
            continue;
        }
        if (!failed) {
            failed = source_name(ids[s]);
            first_rc = rc;
            first_err = err;
        }
    }
    j->trend_ms = now_ms() - t;
    if (ss->h_trend) metrics_hist_observe(ss->h_trend, j->trend_ms / 1e3);
    if (!ok[0] && (n_ids < 2 || !ok[1])) {
        trend_error(ss, resp, failed, first_rc, &first_err);
        return -1;
    }
    if (failed) { /* "all" with one source down: the other's topics are enough */
        if (ss->c_trend_err) metrics_counter_inc(ss->c_trend_err);
        log_warn("story", "source all: %s skipped: %s", failed, first_err.msg);
    }
    char *keys[STORY_SERVICE_MAX_LIMIT] = {0};
    size_t next[2] = {0, 0};
    bool more = true;
    while (more && j->n_topics < rq->limit) {
        more = false;
        for (int s = 0; s < n_ids && j->n_topics < rq->limit; s++) {
            if (!ok[s] || next[s] >= tr[s].topics.n) continue;
            more = true;
            const char *title = tr[s].topics.v[next[s]++].title;
            char *key = n_ids > 1 ? text_fold_key(title) : NULL;
            bool dup = false;
            for (int k = 0; key && k < j->n_topics && !dup; k++)
                dup = keys[k] && strcmp(keys[k], key) == 0;
            char *copy = dup ? NULL : strdup(title);
            if (!copy) {
                free(key);
                if (!dup) more = false; /* out of memory: go on with what we have */
                continue;
            }
            keys[j->n_topics] = key;
            j->titles[j->n_topics++] = copy;
        }
    }
    for (int k = 0; k < j->n_topics; k++) free(keys[k]);
    for (int s = 0; s < n_ids; s++) {
        if (!ok[s]) continue;
        j->stale = j->stale || tr[s].stale;
        if (tr[s].age_ms > j->topics_age_ms) j->topics_age_ms = tr[s].age_ms;
        topic_result_clear(&tr[s]);
    }
    if (j->stale && ss->c_stale) metrics_counter_inc(ss->c_stale);
    return 0;
}

static void job_story(const struct http_req *req, struct http_resp *resp, void *arg, int worker)
{
    (void)worker;
    struct story_job *j = arg;
    struct story_service *ss = j->ss;
    const struct story_service_req *rq = &j->rq;
    if (job_topics(j, resp)) {
        job_free(j);
        return;
    }
    struct err err = {0};
    int rc;

    /* the prompt: drop topics from the end until the story has room in the context */
    int theme = (int)rq->theme;
    struct sched_info si;
    sched_info(ss->sched, &si);
    int *toks = malloc((size_t)si.n_ctx * sizeof(int));
    int n_tok = toks ? 0 : ERR_NOMEM;
    while (toks) {
        n_tok = prompt_tokens(ss, theme, j->titles, j->n_topics, toks, si.n_ctx, &err);
        bool fits = n_tok >= 0 && n_tok + MIN_STORY_ROOM <= si.n_ctx;
        if (fits || j->n_topics <= 1 || (n_tok < 0 && n_tok != ERR_NOMEM)) break;
        free(j->titles[--j->n_topics]);
    }
    if (n_tok < 0) {
        free(toks);
        if (n_tok == ERR_NOMEM && toks)
            story_error(resp, 400, "prompt_too_long", "limit",
                        "even one topic makes the prompt longer than the model's context");
        else
            story_error(resp, 500, "internal", NULL, err.msg[0] ? err.msg : "out of memory");
        job_free(j);
        return;
    }
    struct sampler_params sp = sampler_default_params();
    sp.temp = rq->has_temperature ? (float)rq->temperature : 0.8f;
    sp.top_p = rq->has_top_p ? (float)rq->top_p : 0.95f;
    if (sp.top_p <= 0) sp.top_p = 1e-6f; /* top_p 0 means "only the best": the smallest set */
    sp.seed = rq->has_seed ? (uint64_t)rq->seed
                           : (uint64_t)time(NULL) * 2654435761u + atomic_fetch_add(&ss->seed_counter, 1);
    struct sched_req sr = {.prefix = ss->prefix[theme],
                           .tokens = toks,
                           .n_tokens = n_tok,
                           .max_tokens = rq->has_max_tokens ? rq->max_tokens : ss->o.default_tokens,
                           .sampling = sp,
                           .cancel = &j->cancel,
                           .on_text = job_on_text,
                           .on_done = job_on_done,
                           .ud = j};
    j->text = malloc(STORY_TEXT_MAX + 1);
    if (!j->text) {
        free(toks);
        story_error(resp, 500, "internal", NULL, "out of memory");
        job_free(j);
        return;
    }
    j->text[0] = 0;

    pthread_mutex_lock(&j->mu); /* callbacks wait until the stream is attached */
    rc = sched_submit(ss->sched, &sr, &err);
    free(toks);
    if (rc) {
        pthread_mutex_unlock(&j->mu);
        if (rc == ERR_BUSY) {
            story_error(resp, 503, "overloaded", NULL, err.msg);
            http_resp_header(resp, "Retry-After", "1");
        } else if (rc == ERR_INVALID) {
            story_error(resp, 400, "prompt_too_long", "limit", err.msg);
        } else {
            story_error(resp, 503, "unavailable", NULL, err.msg);
        }
        job_free(j);
        return;
    }
    if (rq->stream) {
        j->sse = http_sse_start(req, resp, 0, job_on_close, j);
        if (!j->sse) {
            atomic_store(&j->cancel, true); /* on_done frees the job */
        } else {
            struct jw w;
            jw_init(&w, 65536);
            write_topics_event(j, &w);
            if (!w.overflow) http_sse_send(j->sse, "topics", w.buf, w.len);
            jw_free(&w);
        }
        pthread_mutex_unlock(&j->mu);
        return; /* the scheduler thread owns j now */
    }
    /* buffered: wait, watching for a client that hangs up */
    while (!j->done) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 100 * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&j->cv, &j->mu, &dl);
        if (!j->done && !atomic_load(&j->cancel) && http_req_peer_closed(req))
            atomic_store(&j->cancel, true);
    }
    pthread_mutex_unlock(&j->mu);
    if (j->st.finish == SCHED_FINISH_ERROR) {
        story_error(resp, 500, "generation_failed", NULL, j->error);
    } else if (j->st.finish == SCHED_FINISH_CANCELLED) {
        story_error(resp, 503, "cancelled", NULL, "the generation was cancelled");
    } else {
        struct jw w;
        jw_init(&w, STORY_TEXT_MAX * 2 + 8192);
        write_result(j, &w);
        if (w.overflow) {
            jw_free(&w);
            story_error(resp, 500, "internal", NULL, "the answer is too large");
        } else {
            http_resp_take(resp, 200, "application/json", w.buf, w.len);
        }
    }
    job_free(j);
}

/* POST /v1/stories, and POST /generate (`reference`): the reference's REST model defaults
 * "source" to "all", so a body without one gets "all" there and "google" here. */
static void stories(const struct http_req *req, struct http_resp *resp, struct story_service *ss,
                    bool reference)
{
    struct jv *root = service_parse_body(req, resp);
    if (!root) return;
    struct story_job *j = calloc(1, sizeof *j);
    if (!j) {
        jv_free(root);
        story_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    atomic_init(&j->cancel, false);
    j->ss = ss;
    j->t0 = now_ms();
    struct jv_invalid inv;
    int rc = story_service_req_parse(root, &j->rq, &inv);
    if (rc == 0 && reference && !jv_get(root, "source")) j->rq.source = STORY_SERVICE_SRC_ALL;
    jv_free(root);
    if (rc) {
        story_invalid(resp, &inv);
        job_free(j);
        return;
    }
    if (!ss->model) {
        service_not_ready(ss->svc, resp);
        job_free(j);
        return;
    }
    if (http_defer(req, job_story, j) != 0) job_free(j); /* resp is a 503 already */
}

static void h_stories(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    stories(req, resp, ctx, false);
}

static void h_generate(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    stories(req, resp, ctx, true);
}

/* ---- GET /v1/trends, GET /v1/themes ---- */

struct trends_job {
    struct story_service *ss;
    enum source_id id;
    struct source_params p;
    int limit;
};

static void job_trends(const struct http_req *req, struct http_resp *resp, void *arg, int worker)
{
    (void)req;
    (void)worker;
    struct trends_job *tj = arg;
    struct story_service *ss = tj->ss;
    struct topic_result tr = {0};
    struct err err = {0};
    double t = now_ms();
    int rc = topic_cache_get(ss->topics, tj->id, &tj->p, ss->o.trend_wait_ms, &tr, &err);
    double trend_ms = now_ms() - t;
    if (rc) {
        trend_error(ss, resp, source_name(tj->id), rc, &err);
        free(tj);
        return;
    }
    struct jw w;
    jw_init(&w, 1 << 20);
    jw_obj_begin(&w);
    jw_key(&w, "source");
    jw_str(&w, source_name(tj->id));
    jw_key(&w, "age_s");
    jw_num(&w, (double)tr.age_ms / 1e3, 6);
    jw_key(&w, "stale");
    jw_bool(&w, tr.stale);
    jw_key(&w, "last_error");
    if (tr.last_error[0])
        jw_str(&w, tr.last_error);
    else
        jw_null(&w);
    jw_key(&w, "trend_ms");
    jw_num(&w, trend_ms, 6);
    jw_key(&w, "topics");
    jw_arr_begin(&w);
    for (size_t i = 0; i < tr.topics.n && (int)i < tj->limit; i++) {
        const struct topic *tp = &tr.topics.v[i];
        jw_obj_begin(&w);
        jw_key(&w, "title");
        jw_str(&w, tp->title);
        jw_key(&w, "url");
        jw_str(&w, tp->url ? tp->url : "");
        jw_key(&w, "traffic");
        jw_int(&w, tp->traffic);
        jw_key(&w, "published");
        jw_int(&w, tp->published);
        jw_key(&w, "age_s");
        jw_num(&w, (double)tr.age_ms / 1e3, 6);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_key(&w, "status_code");
    jw_int(&w, 200);
    jw_obj_end(&w);
    topic_result_clear(&tr);
    free(tj);
    if (w.overflow) {
        jw_free(&w);
        story_error(resp, 500, "internal", NULL, "the answer is too large");
        return;
    }
    http_resp_take(resp, 200, "application/json", w.buf, w.len);
}

static void h_trends(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct story_service *ss = ctx;
    const char *src = http_req_query(req, "source");
    const char *lim = http_req_query(req, "limit");
    int id = source_lookup(src && *src ? src : "google");
    if (id < 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown source '%.64s' (google, hackernews, wikipedia, rss, "
                 "youtube, newsapi)", src);
        story_error(resp, 400, "invalid_field", "source", msg);
        return;
    }
    long limit = SOURCE_LIMIT_DEFAULT;
    if (lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (!*lim || *end || limit < 1 || limit > STORY_SERVICE_MAX_LIMIT) {
            story_error(resp, 400, "invalid_field", "limit", "limit must be an integer from 1 to 20");
            return;
        }
    }
    struct trends_job *tj = calloc(1, sizeof *tj);
    if (!tj) {
        story_error(resp, 500, "internal", NULL, "out of memory");
        return;
    }
    tj->ss = ss;
    tj->id = (enum source_id)id;
    tj->limit = (int)limit;
    struct jv_invalid inv;
    if (params_for(tj->id, http_req_query(req, "geo"), http_req_query(req, "url"), &tj->p, &inv)) {
        free(tj);
        story_invalid(resp, &inv);
        return;
    }
    if (http_defer(req, job_trends, tj) != 0) free(tj);
}

static void h_themes(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    struct story_service *ss = ctx;
    struct jw w;
    jw_init(&w, 65536);
    jw_obj_begin(&w);
    jw_key(&w, "themes");
    jw_arr_begin(&w);
    for (int i = 0; i < N_THEMES; i++) {
        const struct prompt_theme *t = ss->prompts ? prompts_find(ss->prompts, story_service_themes[i]) : NULL;
        jw_obj_begin(&w);
        jw_key(&w, "name");
        jw_str(&w, story_service_themes[i]);
        jw_key(&w, "description");
        jw_str(&w, t ? t->description : "");
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    jw_obj_end(&w);
    http_resp_take(resp, 200, "application/json", w.buf, w.len);
}

static bool model_ready(void *ctx, char *why, size_t n)
{
    struct story_service *ss = ctx;
    if (ss->model) return true;
    snprintf(why, n, "model: no language model loaded (start with --model FILE.gguf, e.g. "
             "../shared/data/models/gguf/stories260K.gguf)");
    return false;
}

/* ---- start-up ---- */

/* Loads the model, the themes and the scheduler; registers one prefix per theme. */
static int setup_model(struct story_service *ss, struct err *err)
{
    struct story_opts *o = &ss->o;
    ss->model = llm_load(o->model_path, &(struct llm_opts){.n_threads = o->compute_threads}, err);
    if (!ss->model) return err->code ? err->code : ERR_INVALID;
    const char *base = strrchr(o->model_path, '/');
    base = base ? base + 1 : o->model_path;
    snprintf(ss->model_name, sizeof ss->model_name, "%s", base);
    const struct gguf_file *g = llm_gguf(ss->model);
    struct gguf_str t;
    if (o->template_name) {
        int f = chat_family_parse(o->template_name);
        if (f < 0)
            return err_set(err, ERR_INVALID, "unknown --template '%s' (zephyr, llama2, chatml, "
                           "none)", o->template_name);
        ss->chat = (enum chat_family)f;
    } else if (g && gguf_get_str(g, "tokenizer.chat_template", &t, NULL) == 0) {
        ss->chat = chat_detect(t.ptr, t.len);
    } else {
        ss->chat = CHAT_NONE;
    }
    struct sched_cfg sc = {.max_batch = o->max_batch,
                           .queue = o->queue,
                           .n_ctx = o->n_ctx,
                           .max_tokens_cap = o->max_tokens_cap,
                           .prefill_chunk = o->prefill_chunk,
                           .max_prefixes = N_THEMES,
                           .prompt_cache = o->prompt_cache > 0 ? o->prompt_cache : -1,
                           .kv_f16 = !o->kv_f32,
                           .chat = ss->chat,
                           .metrics = service_metrics(ss->svc)};
    ss->sched = sched_new(ss->model, &sc, err);
    if (!ss->sched) return err->code ? err->code : ERR_INVALID;
    for (int i = 0; i < N_THEMES; i++) {
        const struct prompt_theme *th = prompts_find(ss->prompts, story_service_themes[i]);
        if (!th)
            return err_set(err, ERR_INVALID, "%s: theme '%s' is missing", o->themes_path,
                           story_service_themes[i]);
        ss->system[i] = th->system;
        struct chat_msg m = {"system", th->system};
        size_t need = chat_apply(ss->chat, &m, 1, false, NULL, 0);
        ss->prefix_text[i] = malloc(need + 1);
        if (!ss->prefix_text[i]) return err_set(err, ERR_NOMEM, "out of memory");
        chat_apply(ss->chat, &m, 1, false, ss->prefix_text[i], need + 1);
        ss->prefix[i] = sched_add_prefix(ss->sched, ss->prefix_text[i], err);
        if (ss->prefix[i] < 0) return ss->prefix[i];
    }
    if (!o->lazy_prefixes) sched_warm_prefixes(ss->sched);
    /* the positions actually used (the scheduler caps the model's at 2048) and where they
     * come from: a GGUF's llama.context_length is whatever its converter wrote (2048 for
     * stories260K.gguf, trained with 512), so say which number this is */
    struct sched_info si;
    sched_info(ss->sched, &si);
    log_info("story", "model %s (%s template), %d slots x %d positions (%s; the file says %d), "
             "queue %d",
             ss->model_name, chat_family_name(ss->chat), o->max_batch, si.n_ctx,
             o->n_ctx ? "--ctx" : "llama.context_length, at most 2048", llm_n_ctx_train(ss->model),
             o->queue);
    return 0;
}

/* Starts background fetches for the listed sources, so the first stories find topics
 * cached. Never waits: topic_cache_get with a zero wait only starts the fetch. */
static void prefetch(struct story_service *ss)
{
    const char *list = ss->o.prefetch;
    if (!list || !*list || strcmp(list, "none") == 0) return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int id = source_lookup(tok);
        if (id < 0 || id == SOURCE_RSS) {
            log_warn("story", "--prefetch: skipping '%s' (not a source that needs no url)", tok);
            continue;
        }
        struct source_params p;
        struct jv_invalid inv;
        if (params_for((enum source_id)id, "", "", &p, &inv)) continue;
        struct topic_result tr = {0};
        struct err err = {0};
        topic_cache_get(ss->topics, (enum source_id)id, &p, 0, &tr, &err);
        topic_result_clear(&tr);
    }
}

static void service_teardown(struct story_service *ss)
{
    service_free(ss->svc); /* stops HTTP first: no new jobs, streams ended */
    sched_free(ss->sched);
    topic_cache_free(ss->topics);
    fetch_free(ss->fetcher);
    for (int i = 0; i < N_THEMES; i++) free(ss->prefix_text[i]);
    prompts_free(ss->prompts);
    llm_free(ss->model);
}

static bool parse_own_opt(struct story_opts *o, int argc, char **argv, int *i, bool *bad)
{
    long v;
    if (cli_opt_str(argc, argv, i, "--model", &o->model_path, bad)) return true;
    if (cli_opt_str(argc, argv, i, "--themes", &o->themes_path, bad)) return true;
    if (cli_opt_str(argc, argv, i, "--template", &o->template_name, bad)) return true;
    if (cli_opt_str(argc, argv, i, "--prefetch", &o->prefetch, bad)) return true;
    if (strcmp(argv[*i], "--lazy-prefixes") == 0) {
        o->lazy_prefixes = true;
        return true;
    }
    if (strcmp(argv[*i], "--kv-f32") == 0) {
        o->kv_f32 = true;
        return true;
    }
    struct {
        const char *name;
        long lo, hi;
        int *out;
    } ints[] = {
        {"--threads", 1, 256, &o->compute_threads},
        {"--max-batch", 1, SCHED_MAX_BATCH, &o->max_batch},
        {"--queue", 1, 4096, &o->queue},
        {"--max-tokens", 1, STORY_SERVICE_MAX_TOKENS, &o->max_tokens_cap},
        {"--default-tokens", 1, STORY_SERVICE_MAX_TOKENS, &o->default_tokens},
        {"--ctx", 16, 32768, &o->n_ctx},
        {"--prefill-chunk", 1, 4096, &o->prefill_chunk},
        {"--prompt-cache", 0, SCHED_MAX_PROMPT_CACHE, &o->prompt_cache},
    };
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
        if (cli_opt_int(argc, argv, i, ints[k].name, ints[k].lo, ints[k].hi, &v, bad)) {
            *ints[k].out = (int)v;
            return true;
        }
    if (cli_opt_int(argc, argv, i, "--trend-wait-ms", 0, 120000, &v, bad)) {
        o->trend_wait_ms = v;
        return true;
    }
    if (cli_opt_int(argc, argv, i, "--ttl", 1, 7 * 86400, &v, bad)) {
        o->ttl_s = v;
        return true;
    }
    return false;
}

int story_service_cmd(int argc, char **argv)
{
    struct service_cfg cfg = {.name = "trendstory", .port = STORY_SERVICE_DEFAULT_PORT};
    struct story_opts o = {.themes_path = "config/themes.json",
                           .prefetch = "google,hackernews,wikipedia",
                           .max_batch = 8,
                           .queue = 64,
                           .max_tokens_cap = 512,
                           .prompt_cache = 8,
                           .default_tokens = 256,
                           .trend_wait_ms = 10000,
                           .ttl_s = 900};
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(STORY_SERVICE_USAGE, stdout);
            return 0;
        }
        long v;
        if (cli_opt_int(argc, argv, &i, "--io-threads", 1, 64, &v, &bad)) {
            if (bad) return 2;
            cfg.io_threads = (int)v;
            continue;
        }
        if (parse_own_opt(&o, argc, argv, &i, &bad) || service_parse_opt(&cfg, argc, argv, &i, &bad)) {
            if (bad) return 2;
            continue;
        }
        fprintf(stderr, "trendstory serve: unknown option '%s' (see trendstory serve --help)\n",
                argv[i]);
        return 2;
    }
    if (o.default_tokens > o.max_tokens_cap) o.default_tokens = o.max_tokens_cap;
    /* Non-streamed requests sleep on a worker while they run or wait: one per slot and queue
     * place, plus a few for /v1/trends and topic fetches. */
    if (cfg.workers == 0) cfg.workers = o.max_batch + o.queue + 4;
    if (cfg.workers > 1024) cfg.workers = 1024;
    cfg.queue_capacity = o.queue;
    service_block_signals();
    struct err err = {0};
    struct story_service ss = {.o = o};
    int status = 1;
    for (int i = 0; i < N_THEMES; i++) ss.prefix[i] = -1;
    ss.prompts = prompts_load(o.themes_path, &err);
    if (!ss.prompts) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        return 1;
    }
    ss.svc = service_new(&cfg, &err);
    if (!ss.svc) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        prompts_free(ss.prompts);
        return 1;
    }
    if (o.model_path && setup_model(&ss, &err)) {
        fprintf(stderr, "trendstory serve: %s: %s\n", o.model_path, err.msg);
        goto out;
    }
    ss.fetcher = fetch_new(&(struct fetch_cfg){0}, &err);
    if (!ss.fetcher) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        goto out;
    }
    ss.topics = topic_cache_new(&(struct topic_cache_cfg){.ttl_ms = o.ttl_s * 1000,
                                                          .fetcher = ss.fetcher},
                                &err);
    if (!ss.topics) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        goto out;
    }
    struct metrics *mx = service_metrics(ss.svc);
    static const double tb[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30};
    ss.h_trend = metrics_hist(mx, "story_trend_seconds",
                              "Time a story request spent getting its topics", NULL, tb,
                              (int)(sizeof tb / sizeof tb[0]));
    ss.c_stale = metrics_counter(mx, "story_stale_topics_total",
                                 "Stories written from topics past their TTL", NULL);
    ss.c_trend_err = metrics_counter(mx, "story_trend_errors_total",
                                     "Requests answered 502/504: the source failed, nothing cached", NULL);
    if (service_route(ss.svc, "POST", "/v1/stories", h_stories, &ss) ||
        service_route(ss.svc, "POST", "/generate", h_generate, &ss) || /* the reference's path */
        service_route(ss.svc, "GET", "/v1/trends", h_trends, &ss) ||
        service_route(ss.svc, "GET", "/v1/themes", h_themes, &ss) ||
        service_add_check(ss.svc, model_ready, &ss)) {
        fprintf(stderr, "trendstory serve: out of memory\n");
        goto out;
    }
    if (service_start(ss.svc, &err)) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        goto out;
    }
    if (ss.model) prefetch(&ss); /* without a model nothing needs topics ahead of time */
    service_wait(ss.svc);
    status = 0;
out:
    service_teardown(&ss);
    return status;
}
