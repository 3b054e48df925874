/* Full-ranking leave-one-out evaluation (HR@K, NDCG@K) and the popularity and random baselines.
 * The protocol and the tie rule are stated in eval.h. */
#include "recsys/eval.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/progress.h"

const uint32_t rec_eval_ks[REC_EVAL_NK] = {10, 20, 50, 100};

/* NaN ranks below everything; -inf stays -inf (ties with NaN are then broken by id). */
static inline float score_key(float s)
{
    return isnan(s) ? -INFINITY : s;
}

uint32_t rec_eval_rank(const float *scores, uint32_t n_items, uint32_t target, const uint32_t *excl,
                       size_t n_excl, uint32_t *mark, uint32_t stamp)
{
    for (size_t k = 0; k < n_excl; k++) {
        uint32_t it = excl[k];
        if (it >= 1 && it <= n_items && it != target) mark[it] = stamp;
    }
    float st = score_key(scores[target]);
    uint32_t rank = 0;
    /* items below the target's id win ties, items above it need a strictly higher score */
    for (uint32_t j = 1; j < target; j++)
        rank += (mark[j] != stamp) & (score_key(scores[j]) >= st);
    for (uint32_t j = target + 1; j <= n_items; j++)
        rank += (mark[j] != stamp) & (score_key(scores[j]) > st);
    return rank;
}

void rec_eval_accumulate(uint32_t rank, double hr[REC_EVAL_NK], double ndcg[REC_EVAL_NK])
{
    double g = 1.0 / log2((double)rank + 2.0);
    for (int k = 0; k < REC_EVAL_NK; k++) {
        if (rank < rec_eval_ks[k]) {
            hr[k] += 1.0;
            ndcg[k] += g;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */

struct eval_job {
    const struct rec_dataset *d;
    const struct rec_scorer *sc;
    enum rec_split split;
    const uint32_t *users; /* eligible users in order */
    size_t n_users;
    uint32_t batch;
    uint32_t *ranks;     /* one per eligible user */
    float **scores;      /* per thread: batch * (n_items + 1) */
    uint32_t **mark;     /* per thread: n_items + 1 */
    struct progress *pg; /* NULL: none; drawn by thread 0 only */
    uint64_t done;       /* users scored, for the progress bar (atomic) */
    pthread_mutex_t mu;
    int failed; /* read without the lock only as a hint to stop early */
    struct err first_err;
};

/* One pool chunk = a range of batch indices. */
static void eval_batches(void *ctx, size_t begin, size_t end, int tid)
{
    struct eval_job *J = ctx;
    size_t stride = (size_t)J->d->n_items + 1;
    for (size_t bi = begin; bi < end; bi++) {
        if (__atomic_load_n(&J->failed, __ATOMIC_RELAXED)) return;
        size_t u0 = bi * J->batch;
        size_t nb = J->n_users - u0 < J->batch ? J->n_users - u0 : J->batch;
        float *sc = J->scores[tid];
        struct err e = {0};
        int rc = J->sc->score(J->sc->ctx, J->d, J->split, J->users + u0, nb, sc, stride, tid, &e);
        if (rc < 0) {
            pthread_mutex_lock(&J->mu);
            if (!J->failed) {
                J->first_err = e;
                if (J->first_err.code == ERR_OK) J->first_err.code = rc;
                __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
            }
            pthread_mutex_unlock(&J->mu);
            return;
        }
        for (size_t b = 0; b < nb; b++) {
            uint32_t u = J->users[u0 + b];
            uint64_t nh;
            const uint32_t *hist = rec_split_history(J->d, u, J->split, &nh);
            uint32_t target = rec_split_target(J->d, u, J->split);
            /* stamp u + 1 is unique per user, so the mark array never needs clearing */
            J->ranks[u0 + b] = rec_eval_rank(sc + b * stride, J->d->n_items, target, hist,
                                             (size_t)nh, J->mark[tid], u + 1);
        }
        uint64_t done = __atomic_add_fetch(&J->done, nb, __ATOMIC_RELAXED);
        if (J->pg && tid == 0) progress_update(J->pg, done, NULL);
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int rec_eval_run(const struct rec_dataset *d, const struct rec_scorer *scorer,
                 const struct rec_eval_cfg *cfg, struct rec_eval_result *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    if (cfg->split != REC_SPLIT_VALID && cfg->split != REC_SPLIT_TEST)
        return err_set(err, ERR_INVALID, "evaluation needs the validation or the test split");
    if (!scorer || !scorer->score) return err_set(err, ERR_INVALID, "no scorer given");
    if (d->n_items == 0) return err_set(err, ERR_INVALID, "the dataset has no items");
    double t0 = now_s();
    int n_threads = cfg->pool ? pool_threads(cfg->pool) : 1;
    uint32_t batch = cfg->batch ? cfg->batch : 64;
    size_t stride = (size_t)d->n_items + 1;
    struct eval_job J = {.d = d, .sc = scorer, .split = cfg->split, .batch = batch};
    pthread_mutex_init(&J.mu, NULL);
    int rc = 0;
    uint32_t *users = malloc(((size_t)d->n_users + 1) * sizeof *users);
    J.scores = calloc((size_t)n_threads, sizeof *J.scores);
    J.mark = calloc((size_t)n_threads, sizeof *J.mark);
    if (!users || !J.scores || !J.mark) goto oom;
    for (uint32_t u = 0; u < d->n_users; u++) {
        if (!rec_user_in_eval(d, u)) continue;
        if (cfg->max_users && J.n_users >= cfg->max_users) break;
        users[J.n_users++] = u;
    }
    J.users = users;
    J.ranks = malloc((J.n_users ? J.n_users : 1) * sizeof *J.ranks);
    if (!J.ranks) goto oom;
    for (int t = 0; t < n_threads; t++) {
        J.scores[t] = malloc((size_t)batch * stride * sizeof *J.scores[t]);
        /* stamps are u + 1 >= 1, so a zeroed array has no marks */
        J.mark[t] = calloc(stride, sizeof *J.mark[t]);
        if (!J.scores[t] || !J.mark[t]) goto oom;
    }
    size_t n_batches = (J.n_users + batch - 1) / batch;
    struct progress pg;
    if (cfg->progress) {
        progress_begin(&pg, scorer->name ? scorer->name : "eval", "users", J.n_users);
        J.pg = &pg;
    }
    pool_for(cfg->pool, n_batches, 1, eval_batches, &J);
    if (J.pg) {
        progress_update(&pg, J.done, NULL);
        progress_end(&pg);
    }
    if (J.failed) {
        if (err) *err = J.first_err;
        rc = J.first_err.code ? J.first_err.code : ERR_INVALID;
        err_prefix(err, "scoring with %s", scorer->name ? scorer->name : "the model");
        goto out;
    }
    double rank_sum = 0;
    for (size_t k = 0; k < J.n_users; k++) {
        rec_eval_accumulate(J.ranks[k], out->hr, out->ndcg);
        rank_sum += J.ranks[k];
    }
    out->n_users = (uint32_t)J.n_users;
    if (J.n_users) {
        for (int k = 0; k < REC_EVAL_NK; k++) {
            out->hr[k] /= (double)J.n_users;
            out->ndcg[k] /= (double)J.n_users;
        }
        out->mean_rank = rank_sum / (double)J.n_users;
    }
    out->seconds = now_s() - t0;
    goto out;
oom:
    rc = err_set(err, ERR_NOMEM, "out of memory for evaluation buffers (%d threads, %u items)",
                 n_threads, d->n_items);
out:
    if (J.scores)
        for (int t = 0; t < n_threads; t++)
            free(J.scores[t]);
    if (J.mark)
        for (int t = 0; t < n_threads; t++)
            free(J.mark[t]);
    free(J.scores);
    free(J.mark);
    free(J.ranks);
    free(users);
    pthread_mutex_destroy(&J.mu);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* baselines                                                                                   */

static int popularity_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                            const uint32_t *users, size_t n_users, float *scores, size_t stride,
                            int tid, struct err *err)
{
    (void)ctx;
    (void)split;
    (void)users;
    (void)tid;
    (void)err;
    for (size_t b = 0; b < n_users; b++) {
        float *s = scores + b * stride;
        s[0] = 0;
        for (uint32_t i = 1; i <= d->n_items; i++)
            s[i] = (float)d->item_pop_train[i];
    }
    return 0;
}

struct rec_scorer rec_eval_popularity_scorer(void)
{
    return (struct rec_scorer){"popularity", popularity_score, NULL};
}

static inline uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int random_score(void *ctx, const struct rec_dataset *d, enum rec_split split,
                        const uint32_t *users, size_t n_users, float *scores, size_t stride,
                        int tid, struct err *err)
{
    (void)tid;
    (void)err;
    uint64_t seed = *(const uint64_t *)ctx;
    for (size_t b = 0; b < n_users; b++) {
        float *s = scores + b * stride;
        uint64_t hu = splitmix64(seed ^ splitmix64(((uint64_t)users[b] << 2) | (uint64_t)split));
        s[0] = 0;
        for (uint32_t i = 1; i <= d->n_items; i++)
            s[i] = (float)(splitmix64(hu + i) >> 40) * (1.0f / 16777216.0f);
    }
    return 0;
}

struct rec_scorer rec_eval_random_scorer(uint64_t *seed_store)
{
    return (struct rec_scorer){"random", random_score, seed_store};
}

void rec_eval_print(void *stdio_file, const char *name, const struct rec_eval_result *r, int header)
{
    FILE *f = stdio_file;
    char col[16];
    if (header) {
        fprintf(f, "%-12s %6s", "model", "users");
        for (int k = 0; k < REC_EVAL_NK; k++) {
            snprintf(col, sizeof col, "HR@%u", rec_eval_ks[k]);
            fprintf(f, " %8s", col);
        }
        for (int k = 0; k < REC_EVAL_NK; k++) {
            snprintf(col, sizeof col, "NDCG@%u", rec_eval_ks[k]);
            fprintf(f, " %8s", col);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "%-12s %6u", name, r->n_users);
    for (int k = 0; k < REC_EVAL_NK; k++)
        fprintf(f, " %8.4f", r->hr[k]);
    for (int k = 0; k < REC_EVAL_NK; k++)
        fprintf(f, " %8.4f", r->ndcg[k]);
    fprintf(f, "\n");
}
