/* nanorec serve: POST /recommend (cache -> history -> encoder -> vector search -> ranker),
 * POST /events, POST /admin/reload (and SIGHUP), readiness and metrics (see rec_service.h).
 *
 * Threads: I/O threads parse, validate, answer cache hits and the popularity fallback inline;
 * the cold path runs on the compute workers (http_defer), each with its own scratch in the
 * artifact set and its own cache slot. The artifact set is a reference-counted pointer that a
 * reload swaps under a mutex: a request takes a reference for its whole life, so requests in
 * flight finish on the set they started with. */
#include "recsys/rec_service.h"

#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/log.h"
#include "recsys/history.h"
#include "recsys/rec_model.h"
#include "serve/cache.h"
#include "serve/service.h"

#define HISTORY_OUT 50 /* most history items echoed by include_history */

enum { MODE_MODEL = 0, MODE_POP = 1 };
enum { CACHE_HIT = 0, CACHE_MISS = 1, CACHE_BYPASS = 2 };
enum { ST_EMBED, ST_RETR, ST_RANK, ST_COMPUTE, ST_HIT, ST_TOTAL, ST_COUNT };

struct rec_service {
    struct service *svc;
    const char *artifacts;
    pthread_mutex_t model_mu; /* guards cur (taking a reference) */
    struct rec_model *cur;
    pthread_mutex_t reload_mu; /* one reload at a time */
    char reload_error[512];    /* last failed load (under reload_mu) */
    struct cache *cache;
    double cache_ttl;
    int n_workers, n_io;
    int worker_nice;        /* applied by each compute worker to itself at its first job */
    pthread_mutex_t *io_mu; /* one per I/O cache slot (slots n_workers..) */
    atomic_int io_next;
    struct hist_store *hist;
    atomic_ullong seq;
    unsigned long long boot;
    atomic_bool stopping;
    struct metrics_counter *req[2][3];
    struct metrics_counter *events, *reload_ok, *reload_fail, *errors;
    struct metrics_hist *stage[ST_COUNT];
};

static _Thread_local int tl_io_slot = -1;
static _Thread_local bool tl_niced;

/* Lowers the calling worker thread's priority once by worker_nice (its nice value becomes the
 * process's plus worker_nice, at most 19; Linux: nice is per thread), so that on a
 * machine with as many busy workers as cores the I/O threads still answer cache hits
 * promptly. Failure only costs that preference. */
static void worker_nice_once(const struct rec_service *rs)
{
    if (tl_niced || rs->worker_nice <= 0)
        return;
    tl_niced = true;
    const id_t tid = (id_t)syscall(SYS_gettid);
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, tid);
    if (cur == -1 && errno != 0)
        cur = 0;
    int want = cur + rs->worker_nice > 19 ? 19 : cur + rs->worker_nice;
    if (setpriority(PRIO_PROCESS, tid, want) != 0)
        log_warn("nanorec", "--worker-nice %d: %s", rs->worker_nice, strerror(errno));
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int rec_service_req_parse(const struct jv *root, struct rec_service_req *out,
                          struct jv_invalid *inv)
{
    memset(out, 0, sizeof *out);
    if (jv_require_object(root, inv)) return -1;
    int64_t k;
    bool has_user;
    if (jv_field_int_array(root, "history", false, REC_SERVICE_MAX_IDS, 0, REC_SERVICE_MAX_ID,
                           out->history, &out->n_history, NULL, inv) ||
        jv_field_int(root, "user_id", false, 0, REC_SERVICE_MAX_ID, -1, &out->user_id, &has_user,
                     inv) ||
        jv_field_int(root, "k", false, 1, REC_SERVICE_MAX_K, 10, &k, NULL, inv) ||
        jv_field_bool(root, "explain", false, false, &out->explain, NULL, inv) ||
        jv_field_bool(root, "include_history", false, false, &out->include_history, NULL, inv) ||
        jv_field_int_array(root, "exclude", false, REC_SERVICE_MAX_IDS, 0, REC_SERVICE_MAX_ID,
                           out->exclude, &out->n_exclude, NULL, inv))
        return -1;
    out->k = (int)k;
    if (!has_user && out->n_history == 0) {
        snprintf(inv->field, sizeof inv->field, "user_id");
        snprintf(inv->message, sizeof inv->message,
                 "user_id is required unless a non-empty history is given");
        return -1;
    }
    return 0;
}

/* ---- the artifact set pointer ---- */

static struct rec_model *model_get(struct rec_service *rs)
{
    pthread_mutex_lock(&rs->model_mu);
    struct rec_model *m = rs->cur;
    if (m)
        rec_model_ref(m);
    pthread_mutex_unlock(&rs->model_mu);
    return m;
}

/* Loads the set in rs->artifacts and swaps it in. The old set is freed when its last request
 * finishes. 0, or a negative err_code (the old set stays). */
static int model_reload(struct rec_service *rs, struct err *err)
{
    pthread_mutex_lock(&rs->reload_mu);
    struct rec_model *m = rec_model_load(rs->artifacts, rs->n_workers, err);
    if (!m) {
        snprintf(rs->reload_error, sizeof rs->reload_error, "%s", err->msg);
        pthread_mutex_unlock(&rs->reload_mu);
        metrics_counter_inc(rs->reload_fail);
        log_error("nanorec", "artifacts not loaded: %s", err->msg);
        return err->code ? err->code : ERR_INVALID;
    }
    rs->reload_error[0] = 0;
    pthread_mutex_lock(&rs->model_mu);
    struct rec_model *old = rs->cur;
    rs->cur = m;
    pthread_mutex_unlock(&rs->model_mu);
    pthread_mutex_unlock(&rs->reload_mu);
    struct rec_model_info mi;
    rec_model_info(m, &mi);
    log_info("nanorec", "artifacts %s loaded: version %s, %u items, %u users, encoder dim %d x %d "
                        "layers (%s), index %s, %.2f s",
             mi.dir, mi.version, mi.n_items, mi.n_users, mi.dim, mi.n_layers, mi.weight_type,
             mi.index_kind, mi.load_seconds);
    metrics_counter_inc(rs->reload_ok);
    rec_model_unref(old);
    return 0;
}

/* ---- cache slots ---- */

/* The calling I/O thread's cache slot (locked while used: MHD's pool has n_io threads, but
 * the lock keeps a slot's Redis connection single-user whatever the thread count). */
static int io_slot_take(struct rec_service *rs)
{
    if (tl_io_slot < 0)
        tl_io_slot = atomic_fetch_add(&rs->io_next, 1) % rs->n_io;
    pthread_mutex_lock(&rs->io_mu[tl_io_slot]);
    return rs->n_workers + tl_io_slot;
}

static void io_slot_give(struct rec_service *rs, int slot)
{
    pthread_mutex_unlock(&rs->io_mu[slot - rs->n_workers]);
}

/* ---- response building ---- */

static void write_genres(struct jw *w, uint32_t mask)
{
    jw_arr_begin(w);
    for (int g = 0; g < REC_GENRE_COUNT; g++)
        if (mask & (1u << g))
            jw_str(w, rec_genre_name((enum rec_genre)g));
    jw_arr_end(w);
}

/* The cacheable members of a /recommend answer, as an object (its braces are cut off by the
 * caller to splice the members into the final object). */
static void write_core(struct jw *w, const struct rec_model *m, const struct rec_result *r,
                       const struct rec_service_req *rq, const uint32_t *hist, int n_hist)
{
    const struct rec_dataset *d = rec_model_dataset(m);
    struct rec_model_info mi;
    rec_model_info(m, &mi);
    jw_obj_begin(w);
    jw_key(w, "model_version");
    jw_str(w, mi.version);
    jw_key(w, "mode");
    jw_str(w, r->popularity ? "popularity" : "model");
    jw_key(w, "movie_ids");
    jw_arr_begin(w);
    for (int i = 0; i < r->n; i++)
        jw_int(w, d->item_orig[r->item[i]]);
    jw_arr_end(w);
    jw_key(w, "titles");
    jw_arr_begin(w);
    for (int i = 0; i < r->n; i++)
        jw_str(w, d->item_title[r->item[i]]);
    jw_arr_end(w);
    jw_key(w, "genres");
    jw_arr_begin(w);
    for (int i = 0; i < r->n; i++)
        write_genres(w, d->item_genres[r->item[i]]);
    jw_arr_end(w);
    jw_key(w, "years");
    jw_arr_begin(w);
    for (int i = 0; i < r->n; i++)
        jw_int(w, d->item_year[r->item[i]]);
    jw_arr_end(w);
    jw_key(w, "scores");
    jw_arr_begin(w);
    for (int i = 0; i < r->n; i++)
        jw_num(w, r->score[i], 6);
    jw_arr_end(w);
    if (rq->explain) {
        jw_key(w, "explanations");
        jw_arr_begin(w);
        for (int i = 0; i < r->n; i++) {
            jw_obj_begin(w);
            jw_key(w, "movie_id");
            jw_int(w, d->item_orig[r->item[i]]);
            uint32_t b = r->because[i];
            if (b) {
                jw_key(w, "because_movie_id");
                jw_int(w, d->item_orig[b]);
                jw_key(w, "because_title");
                jw_str(w, d->item_title[b]);
                jw_key(w, "similarity");
                jw_num(w, r->because_sim[i], 4);
                char text[600];
                snprintf(text, sizeof text, "because you watched %s", d->item_title[b]);
                jw_key(w, "text");
                jw_str(w, text);
            } else {
                jw_key(w, "text");
                jw_str(w, "popular with everyone");
            }
            jw_obj_end(w);
        }
        jw_arr_end(w);
    }
    if (rq->include_history) {
        jw_key(w, "history");
        jw_arr_begin(w);
        int h0 = n_hist > HISTORY_OUT ? n_hist - HISTORY_OUT : 0;
        for (int i = n_hist - 1; i >= h0; i--) { /* most recent first */
            uint32_t it = hist[i];
            jw_obj_begin(w);
            jw_key(w, "movie_id");
            jw_int(w, d->item_orig[it]);
            jw_key(w, "title");
            jw_str(w, d->item_title[it]);
            jw_key(w, "genres");
            write_genres(w, d->item_genres[it]);
            jw_key(w, "year");
            jw_int(w, d->item_year[it]);
            jw_obj_end(w);
        }
        jw_arr_end(w);
    }
    jw_obj_end(w);
}

/* Answers with the per-request members plus the core members (`core` is "{...}"). */
static void respond(struct rec_service *rs, struct http_resp *resp,
                    const struct rec_service_req *rq, const char *core, size_t core_len,
                    bool from_cache, const struct rec_result *r, double t_start)
{
    struct jw w;
    jw_init(&w, 4u << 20);
    jw_obj_begin(&w);
    char rid[48];
    snprintf(rid, sizeof rid, "%llx-%llu", rs->boot,
             (unsigned long long)atomic_fetch_add(&rs->seq, 1));
    jw_key(&w, "request_id");
    jw_str(&w, rid);
    jw_key(&w, "served_from_cache");
    jw_bool(&w, from_cache);
    jw_key(&w, "user_id");
    if (rq->user_id >= 0)
        jw_int(&w, rq->user_id);
    else
        jw_null(&w);
    jw_key(&w, "k");
    jw_int(&w, rq->k);
    double total = now_ms() - t_start;
    jw_key(&w, "timings");
    jw_obj_begin(&w);
    jw_key(&w, "embedding_ms");
    jw_num(&w, r ? r->embedding_ms : 0.0, 4);
    jw_key(&w, "retrieval_ms");
    jw_num(&w, r ? r->retrieval_ms : 0.0, 4);
    jw_key(&w, "ranking_ms");
    jw_num(&w, r ? r->ranking_ms : 0.0, 4);
    jw_key(&w, "total_ms");
    jw_num(&w, total, 4);
    jw_obj_end(&w);
    if (core_len >= 2 && core[0] == '{' && core[core_len - 1] == '}' && core_len > 2)
        jw_raw(&w, core + 1, core_len - 2);
    jw_obj_end(&w);
    metrics_hist_observe(rs->stage[ST_TOTAL], total / 1e3);
    http_resp_json(resp, 200, &w);
}

static void cache_key(char *key, size_t n, const struct rec_model *m, struct rec_service *rs,
                      const struct rec_service_req *rq)
{
    struct rec_model_info mi;
    rec_model_info(m, &mi);
    snprintf(key, n, "rec:%s:%lld:%llu:%d:%d:%d", mi.version, (long long)rq->user_id,
             (unsigned long long)hist_version(rs->hist, (uint32_t)rq->user_id), rq->k,
             rq->explain ? 1 : 0, rq->include_history ? 1 : 0);
}

/* ---- the cold path job ---- */

struct rec_job {
    struct rec_service *rs;
    struct rec_model *m; /* a reference */
    struct rec_service_req *rq;
    uint32_t *hist; /* dense, oldest first */
    int n_hist;
    uint32_t exclude[REC_SERVICE_MAX_IDS];
    int n_exclude;
    bool cacheable;
    char key[160];
    double t_start;
};

static void job_free(struct rec_job *j)
{
    if (!j)
        return;
    rec_model_unref(j->m);
    free(j->rq);
    free(j->hist);
    free(j);
}

static void finish(struct rec_job *j, struct http_resp *resp, const struct rec_result *r,
                   int cache_outcome, int slot, bool on_io)
{
    struct rec_service *rs = j->rs;
    struct jw core;
    jw_init(&core, 4u << 20);
    write_core(&core, j->m, r, j->rq, j->hist, j->n_hist);
    if (core.overflow || !core.buf) {
        jw_free(&core);
        http_resp_error(resp, 500, "internal", "response too large");
        return;
    }
    if (j->cacheable) {
        if (on_io)
            slot = io_slot_take(rs);
        cache_set(rs->cache, slot, j->key, core.buf, core.len, rs->cache_ttl);
        if (on_io)
            io_slot_give(rs, slot);
    }
    metrics_counter_inc(rs->req[r->popularity ? MODE_POP : MODE_MODEL][cache_outcome]);
    respond(rs, resp, j->rq, core.buf, core.len, false, r, j->t_start);
    jw_free(&core);
}

static void recommend_job(const struct http_req *req, struct http_resp *resp, void *arg,
                          int worker)
{
    (void)req;
    struct rec_job *j = arg;
    struct rec_service *rs = j->rs;
    worker_nice_once(rs);
    struct rec_result *r = malloc(sizeof *r);
    struct err err = {0};
    if (!r) {
        http_resp_error(resp, 500, "internal", "out of memory");
    } else {
        double t0 = now_ms();
        struct rec_query q = {.history = j->hist, .n_history = j->n_hist,
                              .exclude = j->exclude, .n_exclude = j->n_exclude,
                              .k = j->rq->k, .explain = j->rq->explain};
        if (rec_model_recommend(j->m, worker, &q, r, &err)) {
            metrics_counter_inc(rs->errors);
            http_resp_error(resp, 500, "internal", "recommendation failed: %s", err.msg);
        } else {
            metrics_hist_observe(rs->stage[ST_EMBED], r->embedding_ms / 1e3);
            metrics_hist_observe(rs->stage[ST_RETR], r->retrieval_ms / 1e3);
            metrics_hist_observe(rs->stage[ST_RANK], r->ranking_ms / 1e3);
            metrics_hist_observe(rs->stage[ST_COMPUTE], (now_ms() - t0) / 1e3);
            finish(j, resp, r, j->cacheable ? CACHE_MISS : CACHE_BYPASS, worker, false);
        }
    }
    free(r);
    job_free(j);
}

/* Dense history of the request: the dataset's sequence for a known user, the user's events,
 * then any explicit history (unknown movie ids are dropped). NULL when out of memory. */
static uint32_t *build_history(struct rec_service *rs, const struct rec_model *m,
                               const struct rec_service_req *rq, int *n_out)
{
    const struct rec_dataset *d = rec_model_dataset(m);
    int64_t u = rq->user_id >= 0 ? rec_model_user(m, rq->user_id) : -1;
    uint64_t nd = u >= 0 ? rec_user_len(d, (uint32_t)u) : 0;
    enum { EV_MAX = 256 };
    uint32_t ev[EV_MAX];
    int ne = rq->user_id >= 0 ? hist_get(rs->hist, (uint32_t)rq->user_id, ev, EV_MAX) : 0;
    uint32_t *h = malloc((nd + (uint64_t)ne + rq->n_history + 1) * sizeof *h);
    if (!h)
        return NULL;
    int n = 0;
    if (u >= 0)
        for (uint64_t i = 0; i < nd; i++)
            h[n++] = d->seq[d->user_off[u] + i];
    for (int i = 0; i < ne; i++) {
        uint32_t it = rec_model_item(m, ev[i]);
        if (it)
            h[n++] = it;
    }
    for (size_t i = 0; i < rq->n_history; i++) {
        uint32_t it = rec_model_item(m, rq->history[i]);
        if (it)
            h[n++] = it;
    }
    *n_out = n;
    return h;
}

static void h_recommend(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct rec_service *rs = ctx;
    double t_start = now_ms();
    struct jv *root = service_parse_body(req, resp);
    if (!root) return;
    struct rec_job *j = calloc(1, sizeof *j);
    struct rec_service_req *rq = malloc(sizeof *rq);
    if (!j || !rq) {
        jv_free(root);
        free(j);
        free(rq);
        http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    j->rs = rs;
    j->rq = rq;
    j->t_start = t_start;
    struct jv_invalid inv;
    int bad = rec_service_req_parse(root, rq, &inv);
    jv_free(root);
    if (bad) {
        service_invalid(resp, &inv);
        job_free(j);
        return;
    }
    j->m = model_get(rs);
    if (!j->m) {
        service_not_ready(rs->svc, resp);
        job_free(j);
        return;
    }
    j->cacheable = rq->user_id >= 0 && rq->n_history == 0 && rq->n_exclude == 0;
    if (j->cacheable) {
        cache_key(j->key, sizeof j->key, j->m, rs, rq);
        char *val = NULL;
        size_t len = 0;
        int slot = io_slot_take(rs);
        int hit = cache_get(rs->cache, slot, j->key, &val, &len);
        io_slot_give(rs, slot);
        if (hit == 1) {
            metrics_counter_inc(rs->req[strstr(val, "\"mode\":\"popularity\"") ? MODE_POP
                                                                               : MODE_MODEL]
                                       [CACHE_HIT]);
            respond(rs, resp, rq, val, len, true, NULL, t_start);
            metrics_hist_observe(rs->stage[ST_HIT], (now_ms() - t_start) / 1e3);
            free(val);
            job_free(j);
            return;
        }
    }
    j->hist = build_history(rs, j->m, rq, &j->n_hist);
    if (!j->hist) {
        http_resp_error(resp, 500, "internal", "out of memory");
        job_free(j);
        return;
    }
    for (size_t i = 0; i < rq->n_exclude; i++) {
        uint32_t it = rec_model_item(j->m, rq->exclude[i]);
        if (it)
            j->exclude[j->n_exclude++] = it;
    }
    if (j->n_hist == 0) { /* nothing known about this user: popularity, answered here */
        struct rec_result *r = malloc(sizeof *r);
        if (!r) {
            http_resp_error(resp, 500, "internal", "out of memory");
        } else {
            struct rec_query q = {.exclude = j->exclude, .n_exclude = j->n_exclude, .k = rq->k};
            rec_model_popular(j->m, &q, r);
            finish(j, resp, r, j->cacheable ? CACHE_MISS : CACHE_BYPASS, -1, true);
            free(r);
        }
        job_free(j);
        return;
    }
    if (http_defer(req, recommend_job, j) != 0) /* resp is already a 503 */
        job_free(j);
}

/* ---- events ---- */

static void h_events(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct rec_service *rs = ctx;
    struct jv *root = service_parse_body(req, resp);
    if (!root) return;
    struct jv_invalid inv;
    int64_t user, item;
    int bad = jv_require_object(root, &inv) ||
              jv_field_int(root, "user_id", true, 0, REC_SERVICE_MAX_ID, 0, &user, NULL, &inv) ||
              jv_field_int(root, "item_id", true, 0, REC_SERVICE_MAX_ID, 0, &item, NULL, &inv);
    jv_free(root);
    if (bad) {
        service_invalid(resp, &inv);
        return;
    }
    struct rec_model *m = model_get(rs);
    if (m && !rec_model_item(m, item)) {
        rec_model_unref(m);
        snprintf(inv.field, sizeof inv.field, "item_id");
        snprintf(inv.message, sizeof inv.message, "item_id %lld is not a movie in the catalogue",
                 (long long)item);
        service_invalid(resp, &inv);
        return;
    }
    rec_model_unref(m);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct err err = {0};
    if (hist_append(rs->hist, (uint32_t)user, (uint32_t)item,
                    (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, &err)) {
        metrics_counter_inc(rs->errors);
        http_resp_error(resp, 500, "internal", "event not stored: %s", err.msg);
        return;
    }
    metrics_counter_inc(rs->events);
    struct jw w;
    jw_init(&w, 4096);
    jw_obj_begin(&w);
    jw_key(&w, "ok");
    jw_bool(&w, true);
    jw_key(&w, "user_id");
    jw_int(&w, user);
    jw_key(&w, "item_id");
    jw_int(&w, item);
    jw_key(&w, "history_version");
    jw_int(&w, (int64_t)hist_version(rs->hist, (uint32_t)user));
    jw_obj_end(&w);
    http_resp_json(resp, 200, &w);
}

/* ---- reload ---- */

static void write_model(struct jw *w, const struct rec_model *m)
{
    struct rec_model_info mi;
    rec_model_info(m, &mi);
    jw_obj_begin(w);
    jw_key(w, "dir");
    jw_str(w, mi.dir);
    jw_key(w, "model_version");
    jw_str(w, mi.version);
    jw_key(w, "users");
    jw_int(w, mi.n_users);
    jw_key(w, "items");
    jw_int(w, mi.n_items);
    char enc[160];
    snprintf(enc, sizeof enc, "dim %d, %d layers, %d heads, ffn %d, max_len %d, %s weights",
             mi.dim, mi.n_layers, mi.n_heads, mi.ffn, mi.max_len, mi.weight_type);
    jw_key(w, "encoder");
    jw_str(w, enc);
    jw_key(w, "index");
    jw_str(w, mi.index_kind);
    jw_key(w, "load_seconds");
    jw_num(w, mi.load_seconds, 3);
    jw_obj_end(w);
}

static void h_reload(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    struct rec_service *rs = ctx;
    struct err err = {0};
    if (model_reload(rs, &err)) {
        http_resp_error(resp, 500, "reload_failed", "%s (the previous artifacts stay in use)",
                        err.msg);
        return;
    }
    struct rec_model *m = model_get(rs);
    struct jw w;
    jw_init(&w, 16384);
    jw_obj_begin(&w);
    jw_key(&w, "reloaded");
    jw_bool(&w, true);
    jw_key(&w, "artifacts");
    write_model(&w, m);
    jw_obj_end(&w);
    rec_model_unref(m);
    http_resp_json(resp, 200, &w);
}

/* SIGHUP arrives through a self-pipe rather than sigwait: threads that libraries start before
 * main (OpenBLAS) do not have it blocked, and the default action would end the process. The
 * handler only writes a byte; the reload thread does the work. */
static int hup_pipe[2] = {-1, -1};

static void on_hup(int sig)
{
    (void)sig;
    int saved = errno;
    ssize_t r = write(hup_pipe[1], "h", 1);
    (void)r;
    errno = saved;
}

static void *hup_thread(void *arg)
{
    struct rec_service *rs = arg;
    for (;;) {
        char c;
        ssize_t r = read(hup_pipe[0], &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || atomic_load(&rs->stopping))
            break;
        log_info("nanorec", "SIGHUP: reloading %s", rs->artifacts);
        struct err err = {0};
        model_reload(rs, &err);
    }
    return NULL;
}

/* ---- readiness and metrics ---- */

static bool model_ready(void *ctx, char *why, size_t n)
{
    struct rec_service *rs = ctx;
    struct rec_model *m = model_get(rs);
    if (m) {
        rec_model_unref(m);
        return true;
    }
    if (!rs->artifacts) {
        snprintf(why, n, "model: no artifacts loaded (start with --artifacts DIR; `make run` "
                         "builds a set)");
    } else {
        pthread_mutex_lock(&rs->reload_mu);
        snprintf(why, n, "model: artifacts %s could not be loaded: %s (fix it, then POST "
                         "/admin/reload or send SIGHUP)",
                 rs->artifacts, rs->reload_error[0] ? rs->reload_error : "not yet loaded");
        pthread_mutex_unlock(&rs->reload_mu);
    }
    return false;
}

static void ready_info(void *ctx, struct jw *w)
{
    struct rec_service *rs = ctx;
    struct rec_model *m = model_get(rs);
    jw_key(w, "artifacts");
    if (m)
        write_model(w, m);
    else
        jw_null(w);
    rec_model_unref(m);
    struct cache_stats st;
    cache_get_stats(rs->cache, &st);
    jw_key(w, "cache");
    jw_obj_begin(w);
    jw_key(w, "backend");
    jw_str(w, cache_backend(rs->cache));
    if (st.redis) {
        jw_key(w, "redis_up");
        jw_bool(w, st.redis_up);
        jw_key(w, "redis_errors");
        jw_int(w, (int64_t)st.redis_errors);
        if (!st.redis_up) {
            jw_key(w, "note");
            jw_str(w, "Redis is unreachable: every lookup is a miss and answers are computed; "
                      "it reconnects by itself");
            jw_key(w, "last_error");
            jw_str(w, st.redis_last_error);
        }
    }
    jw_key(w, "ttl_s");
    jw_num(w, rs->cache_ttl, 1);
    jw_obj_end(w);
    jw_key(w, "events");
    jw_int(w, (int64_t)hist_total_events(rs->hist));
}

static double g_hit_ratio(void *ctx)
{
    struct cache_stats st;
    cache_get_stats(((struct rec_service *)ctx)->cache, &st);
    uint64_t n = st.hits + st.misses;
    return n ? (double)st.hits / (double)n : 0.0;
}

static double g_redis_up(void *ctx)
{
    struct cache_stats st;
    cache_get_stats(((struct rec_service *)ctx)->cache, &st);
    return st.redis ? (st.redis_up ? 1.0 : 0.0) : -1.0;
}

static double g_redis_errors(void *ctx)
{
    struct cache_stats st;
    cache_get_stats(((struct rec_service *)ctx)->cache, &st);
    return (double)st.redis_errors;
}

static double g_cache_hits(void *ctx)
{
    struct cache_stats st;
    cache_get_stats(((struct rec_service *)ctx)->cache, &st);
    return (double)st.hits;
}

static double g_cache_misses(void *ctx)
{
    struct cache_stats st;
    cache_get_stats(((struct rec_service *)ctx)->cache, &st);
    return (double)st.misses;
}

/* Stage buckets in seconds: fine below a few ms, where the answers live. */
static const double STAGE_BUCKETS[] = {25e-6, 50e-6, 100e-6, 150e-6, 200e-6, 300e-6,
                                       400e-6, 500e-6, 750e-6, 1e-3, 1.25e-3, 1.5e-3,
                                       2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 7.5e-3,
                                       10e-3, 15e-3, 25e-3, 50e-3, 100e-3, 250e-3};

static int register_metrics(struct rec_service *rs, struct metrics *mx)
{
    static const char *modes[2] = {"model", "popularity"};
    static const char *outcomes[3] = {"hit", "miss", "bypass"};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 3; b++)
            rs->req[a][b] = metrics_counter(
                mx, "nanorec_recommend_total",
                "POST /recommend answers by mode (model or popularity) and cache outcome",
                (const char *[]){"mode", modes[a], "cache", outcomes[b], NULL});
    static const char *stages[ST_COUNT] = {"embedding", "retrieval", "ranking",
                                           "compute",   "cache_hit", "total"};
    for (int s = 0; s < ST_COUNT; s++)
        rs->stage[s] = metrics_hist(
            mx, "nanorec_stage_seconds",
            "server-side time per stage: embedding, retrieval, ranking, compute (the cold path "
            "on a worker), cache_hit (a whole hit), total (every answer)",
            (const char *[]){"stage", stages[s], NULL}, STAGE_BUCKETS,
            (int)(sizeof STAGE_BUCKETS / sizeof STAGE_BUCKETS[0]));
    rs->events = metrics_counter(mx, "nanorec_events_total", "events appended by POST /events",
                                 NULL);
    rs->reload_ok = metrics_counter(mx, "nanorec_reloads_total", "artifact loads",
                                    (const char *[]){"result", "ok", NULL});
    rs->reload_fail = metrics_counter(mx, "nanorec_reloads_total", "artifact loads",
                                      (const char *[]){"result", "failed", NULL});
    rs->errors = metrics_counter(mx, "nanorec_errors_total", "requests that failed with 500",
                                 NULL);
    int rc = 0;
    rc |= metrics_gauge_fn(mx, "nanorec_cache_hit_ratio", "cache hits / lookups since start",
                           NULL, g_hit_ratio, rs);
    rc |= metrics_gauge_fn(mx, "nanorec_cache_hits", "cache hits since start", NULL,
                           g_cache_hits, rs);
    rc |= metrics_gauge_fn(mx, "nanorec_cache_misses", "cache misses since start (Redis "
                                                       "failures included)", NULL,
                           g_cache_misses, rs);
    rc |= metrics_gauge_fn(mx, "nanorec_redis_up", "1 Redis answers, 0 it does not, -1 no Redis",
                           NULL, g_redis_up, rs);
    rc |= metrics_gauge_fn(mx, "nanorec_redis_errors", "failed Redis commands and connects",
                           NULL, g_redis_errors, rs);
    return rc;
}

/* ---- the command ---- */

int rec_service_cmd(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(REC_SERVICE_USAGE, stdout);
        return 0;
    }
    struct service_cfg cfg = {.name = "nanorec", .port = REC_SERVICE_DEFAULT_PORT};
    const char *artifacts = NULL, *redis = NULL, *events = NULL;
    double ttl = 300.0;
    long hist_max = 200, redis_ms = 5, wnice = 0;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (service_parse_opt(&cfg, argc, argv, &i, &bad)) {
            if (bad) return 2;
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--artifacts", &artifacts, &bad) ||
            cli_opt_str(argc, argv, &i, "--redis", &redis, &bad) ||
            cli_opt_str(argc, argv, &i, "--events", &events, &bad) ||
            cli_opt_double(argc, argv, &i, "--cache-ttl", 0.001, 86400 * 30, &ttl, &bad) ||
            cli_opt_int(argc, argv, &i, "--history-max", 1, 100000, &hist_max, &bad) ||
            cli_opt_int(argc, argv, &i, "--redis-timeout-ms", 1, 10000, &redis_ms, &bad) ||
            cli_opt_int(argc, argv, &i, "--worker-nice", 0, 19, &wnice, &bad)) {
            if (bad) return 2;
            continue;
        }
        fprintf(stderr, "nanorec serve: unknown option '%s' (see nanorec serve --help)\n", argv[i]);
        return 2;
    }
    if (cfg.workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg.workers = n > 0 ? (int)n : 1;
    }
    if (cfg.io_threads <= 0)
        cfg.io_threads = 2;
    /* one core per worker: BLAS inside the ranker must not spawn its own threads */
    openblas_set_num_threads(1);
    service_block_signals();
    if (pipe(hup_pipe) != 0) {
        fprintf(stderr, "nanorec serve: cannot make a pipe for SIGHUP\n");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);

    struct err err = {0};
    struct rec_service rs = {0}; /* threads using it are joined before this returns */
    pthread_mutex_init(&rs.model_mu, NULL);
    pthread_mutex_init(&rs.reload_mu, NULL);
    rs.artifacts = artifacts;
    rs.n_workers = cfg.workers;
    rs.n_io = cfg.io_threads;
    rs.worker_nice = (int)wnice;
    rs.cache_ttl = ttl;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rs.boot = (unsigned long long)ts.tv_sec ^ ((unsigned long long)getpid() << 32);
    int rc = 1;
    char evpath[1200];
    bool ev_temp = false;
    pthread_t hup_th;
    bool hup_started = false;
    rs.io_mu = calloc((size_t)rs.n_io, sizeof *rs.io_mu);
    if (!rs.io_mu) {
        fprintf(stderr, "nanorec serve: out of memory\n");
        return 1;
    }
    for (int i = 0; i < rs.n_io; i++)
        pthread_mutex_init(&rs.io_mu[i], NULL);
    struct cache_cfg cc = {.ttl_s = ttl, .redis_url = redis, .redis_timeout_ms = (int)redis_ms,
                           .n_slots = rs.n_workers + rs.n_io};
    rs.cache = cache_new(&cc, &err);
    if (!rs.cache) {
        fprintf(stderr, "nanorec serve: cache: %s\n", err.msg);
        goto done;
    }
    if (!events && artifacts) {
        snprintf(evpath, sizeof evpath, "%s/events.log", artifacts);
        events = evpath;
    } else if (!events) { /* nothing to persist next to: a private file, removed at exit */
        snprintf(evpath, sizeof evpath, "/tmp/nanorec-events-%ld.log", (long)getpid());
        events = evpath;
        ev_temp = true;
        log_warn("nanorec", "no --events or --artifacts: events are not kept across restarts");
    }
    struct hist_open_stats hs;
    rs.hist = hist_open(events, (uint32_t)hist_max, false, &hs, &err);
    if (!rs.hist) {
        fprintf(stderr, "nanorec serve: events log: %s\n", err.msg);
        goto done;
    }
    log_info("nanorec", "events log %s: %llu events replayed, %llu corrupt skipped, %llu torn "
                        "bytes cut", events, (unsigned long long)hs.records,
             (unsigned long long)hs.skipped, (unsigned long long)hs.torn_bytes);
    rs.svc = service_new(&cfg, &err);
    if (!rs.svc) {
        fprintf(stderr, "nanorec serve: %s\n", err.msg);
        goto done;
    }
    if (service_route(rs.svc, "POST", "/recommend", h_recommend, &rs) ||
        service_route(rs.svc, "POST", "/events", h_events, &rs) ||
        service_route(rs.svc, "POST", "/admin/reload", h_reload, &rs) ||
        service_add_check(rs.svc, model_ready, &rs) ||
        register_metrics(&rs, service_metrics(rs.svc))) {
        fprintf(stderr, "nanorec serve: out of memory\n");
        goto done;
    }
    service_set_ready_info(rs.svc, ready_info, &rs);
    if (artifacts && model_reload(&rs, &err))
        fprintf(stderr, "nanorec serve: %s (serving 503 until a reload succeeds)\n", err.msg);

    if (pthread_create(&hup_th, NULL, hup_thread, &rs) == 0)
        hup_started = true;
    if (service_start(rs.svc, &err)) {
        fprintf(stderr, "nanorec serve: %s\n", err.msg);
        goto done;
    }
    service_wait(rs.svc);
    rc = 0;
done:
    atomic_store(&rs.stopping, true);
    if (hup_started) {
        ssize_t w = write(hup_pipe[1], "q", 1);
        (void)w;
        pthread_join(hup_th, NULL);
    }
    service_free(rs.svc);
    rec_model_unref(rs.cur);
    hist_close(rs.hist);
    if (ev_temp)
        unlink(evpath);
    cache_free(rs.cache);
    for (int i = 0; i < rs.n_io; i++)
        pthread_mutex_destroy(&rs.io_mu[i]);
    free(rs.io_mu);
    signal(SIGHUP, SIG_IGN);
    close(hup_pipe[0]);
    close(hup_pipe[1]);
    hup_pipe[0] = hup_pipe[1] = -1;
    return rc;
}
