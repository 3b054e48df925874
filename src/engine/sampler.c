/* Token sampling and stop strings (see engine/sampler.h). */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sampler {
    struct sampler_params p;
    int n_vocab;
    uint64_t rng;
    float *work;     /* (n_vocab) penalised, scaled logits, then probabilities */
    int *ids;        /* (n_vocab) candidates */
    float *probs;    /* (n_vocab) */
    unsigned *stamp; /* (n_vocab) marks tokens already penalised in this call */
    unsigned stamp_now;
    int *hist; /* ring of repeat_last_n tokens */
    int hist_n, hist_at;
};

struct sampler_params sampler_default_params(void)
{
    return (struct sampler_params){.temp = 0.8f,
                                   .top_k = 40,
                                   .top_p = 0.95f,
                                   .min_p = 0.05f,
                                   .repeat_penalty = 1.0f,
                                   .repeat_last_n = 64,
                                   .seed = 0};
}

static uint64_t seed_mix(uint64_t seed)
{
    /* splitmix64: any seed, 0 included, gives a well-mixed non-zero state */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return z ? z : 1;
}

struct sampler *sampler_new(const struct sampler_params *p, int n_vocab, struct err *err)
{
    if (n_vocab < 1) {
        err_set(err, ERR_INVALID, "sampler: vocabulary size %d", n_vocab);
        return NULL;
    }
    if (!(p->temp <= 100.0f) || p->top_k < 0 || !(p->top_p > 0.0f) || !(p->min_p >= 0.0f) ||
        !(p->min_p < 1.0f) || !(p->repeat_penalty > 0.0f) || p->repeat_last_n < 0 ||
        p->repeat_last_n > 1 << 20) {
        err_set(err, ERR_INVALID,
                "sampler: parameter out of range (temp %g in [0, 100], top_k "
                "%d >= 0, top_p %g in (0, 1], min_p %g in [0, 1), repeat_penalty %g > 0, "
                "repeat_last_n %d >= 0)",
                (double)p->temp, p->top_k, (double)p->top_p, (double)p->min_p,
                (double)p->repeat_penalty, p->repeat_last_n);
        return NULL;
    }
    struct sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->ids = malloc((size_t)n_vocab * sizeof *s->ids);
    s->probs = malloc((size_t)n_vocab * sizeof *s->probs);
    s->stamp = calloc((size_t)n_vocab, sizeof *s->stamp);
    s->hist = malloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1) * sizeof *s->hist);
    if (!s->work || !s->ids || !s->probs || !s->stamp || !s->hist) goto oom;
    sampler_reset(s, p->seed);
    return s;
oom:
    sampler_free(s);
    err_set(err, ERR_NOMEM, "sampler: out of memory");
    return NULL;
}

void sampler_free(struct sampler *s)
{
    if (!s) return;
    free(s->work);
    free(s->ids);
    free(s->probs);
    free(s->stamp);
    free(s->hist);
    free(s);
}

void sampler_reset(struct sampler *s, uint64_t seed)
{
    s->rng = seed_mix(seed);
    s->hist_n = 0;
    s->hist_at = 0;
}

void sampler_accept(struct sampler *s, int token)
{
    if (s->p.repeat_last_n <= 0) return;
    s->hist[s->hist_at] = token;
    s->hist_at = (s->hist_at + 1) % s->p.repeat_last_n;
    if (s->hist_n < s->p.repeat_last_n) s->hist_n++;
}

float sampler_rand(struct sampler *s)
{
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f;
}

/* Copies logits into work with the repetition penalty applied once per distinct token. */
static void penalise(struct sampler *s, const float *logits)
{
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    if (s->p.repeat_penalty == 1.0f || s->hist_n == 0) return;
    if (++s->stamp_now == 0) { /* wrapped: clear the marks */
        memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
        s->stamp_now = 1;
    }
    for (int i = 0; i < s->hist_n; i++) {
        int t = s->hist[i];
        if (t < 0 || t >= s->n_vocab || s->stamp[t] == s->stamp_now) continue;
        s->stamp[t] = s->stamp_now;
        float v = s->work[t];
        s->work[t] = v > 0 ? v / s->p.repeat_penalty : v * s->p.repeat_penalty;
    }
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Candidate order: higher probability first, lower id on ties (deterministic). */
static int cmp_cand(const void *a, const void *b, void *ctx)
{
    const float *pr = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (pr[ia] != pr[ib]) return pr[ia] > pr[ib] ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

/* Min-heap on probability (then id reversed) of the k best so far. */
static bool worse(const float *pr, int a, int b)
{
    return pr[a] < pr[b] || (pr[a] == pr[b] && a > b);
}

static void sift_down(int *h, int n, int i, const float *pr)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(pr, h[l], h[m])) m = l;
        if (r < n && worse(pr, h[r], h[m])) m = r;
        if (m == i) return;
        int t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

int sampler_candidates(struct sampler *s, const float *logits, int *ids, float *probs)
{
    const int n = s->n_vocab;
    penalise(s, logits);
    float *pr = s->work;
    if (s->p.temp <= 0.0f) {
        ids[0] = argmax(pr, n);
        probs[0] = 1.0f;
        return 1;
    }
    /* softmax(logits / temp) into pr */
    float mx = pr[argmax(pr, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        pr[i] = expf((pr[i] - mx) / s->p.temp);
        sum += pr[i];
    }
    float inv = (float)(1.0 / sum), best = 0;
    for (int i = 0; i < n; i++) {
        pr[i] *= inv;
        if (pr[i] > best) best = pr[i];
    }
    /* Cheap pre-filter: a token below (1 - top_p) / (n - 1) can never be in the nucleus
     * (llama2.c's argument), and below min_p * best it is dropped anyway. */
    float cut = 0;
    if (s->p.top_p < 1.0f && n > 1) cut = (1.0f - s->p.top_p) / (float)(n - 1);
    if (s->p.min_p > 0 && s->p.min_p * best > cut) cut = s->p.min_p * best;
    int m = 0;
    int k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    if (k < n) {
        /* keep the k best in a min-heap */
        for (int i = 0; i < n; i++) {
            if (pr[i] < cut) continue;
            if (m < k) {
                ids[m++] = i;
                if (m == k)
                    for (int j = k / 2 - 1; j >= 0; j--)
                        sift_down(ids, k, j, pr);
            } else if (worse(pr, ids[0], i)) {
                ids[0] = i;
                sift_down(ids, k, 0, pr);
            }
        }
    } else {
        for (int i = 0; i < n; i++)
            if (pr[i] >= cut) ids[m++] = i;
    }
    if (m == 0) ids[m++] = argmax(pr, n); /* cannot happen (best >= cut), kept for safety */
    qsort_r(ids, (size_t)m, sizeof *ids, cmp_cand, pr);
    /* top-p over what is left: the smallest prefix whose mass reaches top_p */
    if (s->p.top_p < 1.0f) {
        double acc = 0, total = 0;
        for (int i = 0; i < m; i++)
            total += pr[ids[i]];
        for (int i = 0; i < m; i++) {
            acc += pr[ids[i]];
            if (acc >= s->p.top_p * total) {
                m = i + 1;
                break;
            }
        }
    }
    /* min-p */
    if (s->p.min_p > 0) {
        float lim = s->p.min_p * pr[ids[0]];
        int j = 1;
        while (j < m && pr[ids[j]] >= lim)
            j++;
        m = j;
    }
    double t = 0;
    for (int i = 0; i < m; i++)
        t += pr[ids[i]];
    for (int i = 0; i < m; i++)
        probs[i] = (float)(pr[ids[i]] / t);
    return m;
}

int sampler_sample(struct sampler *s, const float *logits)
{
    int m = sampler_candidates(s, logits, s->ids, s->probs);
    int tok = s->ids[m - 1];
    if (m > 1) {
        float r = sampler_rand(s), acc = 0;
        for (int i = 0; i < m; i++) {
            acc += s->probs[i];
            if (r < acc) {
                tok = s->ids[i];
                break;
            }
        }
    } else {
        tok = s->ids[0];
    }
    sampler_accept(s, tok);
    return tok;
}

/* ---- stop strings ---- */

int sampler_stop_init(struct sampler_stop *s, const char *const *strs, int n, struct err *err)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        size_t l = strs[i] ? strlen(strs[i]) : 0;
        if (l == 0) continue;
        if (s->n == SAMPLER_STOP_MAX)
            return err_set(err, ERR_INVALID, "at most %d stop strings", SAMPLER_STOP_MAX);
        if (l > SAMPLER_STOP_LEN_MAX)
            return err_set(err, ERR_INVALID, "stop string of %zu bytes (max %d)", l,
                           SAMPLER_STOP_LEN_MAX);
        memcpy(s->str[s->n], strs[i], l + 1);
        s->len[s->n] = l;
        s->n++;
    }
    return 0;
}

size_t sampler_stop_feed(struct sampler_stop *s, const char *text, size_t len, char *out)
{
    if (s->stopped) return 0;
    if (len > SAMPLER_STOP_CHUNK_MAX) len = SAMPLER_STOP_CHUNK_MAX;
    if (s->n == 0) {
        memcpy(out, text, len);
        return len;
    }
    memcpy(s->pend + s->npend, text, len);
    s->npend += len;
    /* earliest complete stop string */
    size_t first = s->npend;
    for (int k = 0; k < s->n; k++) {
        if (s->len[k] > s->npend) continue;
        for (size_t i = 0; i + s->len[k] <= s->npend && i < first; i++)
            if (memcmp(s->pend + i, s->str[k], s->len[k]) == 0) {
                first = i;
                break;
            }
    }
    if (first < s->npend) {
        memcpy(out, s->pend, first);
        s->npend = 0;
        s->stopped = true;
        return first;
    }
    /* hold back the longest tail that is a proper prefix of a stop string */
    size_t keep = 0;
    for (int k = 0; k < s->n; k++)
        for (size_t l = s->len[k] - 1; l > keep; l--)
            if (l <= s->npend && memcmp(s->pend + s->npend - l, s->str[k], l) == 0) {
                keep = l;
                break;
            }
    size_t emit = s->npend - keep;
    memcpy(out, s->pend, emit);
    memmove(s->pend, s->pend + emit, keep);
    s->npend = keep;
    return emit;
}

size_t sampler_stop_flush(struct sampler_stop *s, char *out)
{
    size_t n = s->stopped ? 0 : s->npend;
    memcpy(out, s->pend, n);
    s->npend = 0;
    return n;
}
