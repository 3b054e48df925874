/* An artifact set and the cold path over it (see rec_model.h). */
#include "recsys/rec_model.h"

#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ann/ann.h"
#include "engine/gguf.h"
#include "recsys/encoder_infer.h"
#include "recsys/ranker.h"
#include "recsys/ranker_infer.h"

/* Per-worker state: everything one cold-path call writes. */
struct rec_worker {
    struct encoder_infer_scratch *esc;
    struct ann_scratch *asc;
    struct ranker_infer_scratch *rsc;
    float *user;           /* (dim) */
    uint32_t *seen;        /* sorted ann ids to exclude */
    size_t seen_cap;
    struct ann_hit hits[REC_MODEL_CANDIDATES];
    uint32_t cand[REC_MODEL_CANDIDATES];
    float scores[REC_MODEL_CANDIDATES];
};

struct id_pair {
    int64_t orig;
    uint32_t dense;
};

struct rec_model {
    atomic_int refs;
    char version[20];
    char dir[1024];
    double load_seconds;
    struct rec_dataset *ds;
    struct encoder_infer *enc;
    struct gguf_file *items_f;
    const float *item_table; /* (n_items + 1, dim) */
    int dim;
    struct ann_index *idx;
    struct ranker_infer *rk;
    uint32_t *pop_order; /* item ids by train popularity, most popular first */
    uint64_t pop_total;
    struct id_pair *users, *items; /* sorted by orig */
    int n_workers;
    struct rec_worker *workers;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_pair(const void *a, const void *b)
{
    const struct id_pair *x = a, *y = b;
    return (x->orig > y->orig) - (x->orig < y->orig);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* FNV-1a over a file's bytes, folded into *h: the model version changes with any byte. */
static int hash_file(const char *path, uint64_t *h, struct err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(err, ERR_IO, "cannot open %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return err_set(err, ERR_IO, "cannot stat %s", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return err_set(err, ERR_IO, "cannot map %s", path);
        }
        /* 8 bytes at a time: fast enough for tens of MB at load */
        const unsigned char *b = p;
        size_t n = (size_t)st.st_size, i = 0;
        uint64_t x = *h;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            x = (x ^ w) * 0x100000001b3ULL;
            x ^= x >> 29;
        }
        for (; i < n; i++)
            x = (x ^ b[i]) * 0x100000001b3ULL;
        *h = x ^ (uint64_t)st.st_size;
        munmap(p, (size_t)st.st_size);
    }
    close(fd);
    return 0;
}

static void worker_free(struct rec_worker *w)
{
    encoder_infer_scratch_free(w->esc);
    ann_scratch_free(w->asc);
    ranker_infer_scratch_free(w->rsc);
    free(w->user);
    free(w->seen);
}

static void model_free(struct rec_model *m)
{
    if (!m)
        return;
    if (m->workers)
        for (int i = 0; i < m->n_workers; i++)
            worker_free(&m->workers[i]);
    free(m->workers);
    free(m->users);
    free(m->items);
    free(m->pop_order);
    ranker_infer_free(m->rk);
    ann_free(m->idx);
    gguf_close(m->items_f);
    encoder_infer_free(m->enc);
    rec_dataset_free(m->ds);
    free(m);
}

void rec_model_ref(struct rec_model *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void rec_model_unref(struct rec_model *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1)
        model_free(m);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The item table file: tensor "item_table" f32 (n_items + 1, dim). */
static int load_items(struct rec_model *m, const char *path, struct err *err)
{
    m->items_f = gguf_open(path, err);
    if (!m->items_f)
        return err->code ? err->code : ERR_IO;
    const struct gguf_tensor *t = gguf_find_tensor(m->items_f, "item_table");
    if (!t)
        return err_set(err, ERR_INVALID, "%s: tensor 'item_table' is missing", path);
    if (t->type != GGML_TYPE_F32 || t->n_dims != 2 || t->ne[0] != (uint64_t)m->dim ||
        t->ne[1] != (uint64_t)m->ds->n_items + 1 ||
        t->nbytes != t->ne[0] * t->ne[1] * sizeof(float))
        return err_set(err, ERR_INVALID,
                       "%s: item_table must be f32 [%d x %u] (the encoder's dim x n_items + 1)",
                       path, m->dim, m->ds->n_items + 1);
    m->item_table = t->data;
    return 0;
}

struct rec_model *rec_model_load(const char *dir, int n_workers, struct err *err)
{
    double t0 = now_ms();
    struct rec_model *m = calloc(1, sizeof *m);
    if (!m || n_workers < 1) {
        err_set(err, m ? ERR_INVALID : ERR_NOMEM, "artifacts: bad worker count or no memory");
        free(m);
        return NULL;
    }
    atomic_init(&m->refs, 1);
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    char path[1200];
    static const char *const files[] = {"dataset.gguf", "encoder_q8.gguf", "items.gguf",
                                        "index.gguf", "ranker.gguf"};
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (hash_file(path, &h, err))
            goto fail;
    }
    snprintf(m->version, sizeof m->version, "%016llx", (unsigned long long)h);

    snprintf(path, sizeof path, "%s/dataset.gguf", dir);
    m->ds = rec_dataset_load(path, err);
    if (!m->ds)
        goto fail;
    snprintf(path, sizeof path, "%s/encoder_q8.gguf", dir);
    m->enc = encoder_infer_load(path, err);
    if (!m->enc)
        goto fail;
    const struct encoder_config *ec = encoder_infer_config(m->enc);
    m->dim = ec->dim;
    if ((uint32_t)ec->n_items != m->ds->n_items) {
        err_set(err, ERR_INVALID, "%s: the encoder has %d items but the dataset %u", dir,
                ec->n_items, m->ds->n_items);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/items.gguf", dir);
    if (load_items(m, path, err))
        goto fail;
    snprintf(path, sizeof path, "%s/index.gguf", dir);
    m->idx = ann_load(path, err);
    if (!m->idx)
        goto fail;
    if (ann_size(m->idx) != m->ds->n_items || ann_dim(m->idx) != m->dim ||
        ann_metric_of(m->idx) != ANN_METRIC_IP) {
        err_set(err, ERR_INVALID, "%s: the index must hold %u inner-product vectors of dim %d",
                path, m->ds->n_items, m->dim);
        goto fail;
    }
    m->n_workers = n_workers;
    m->workers = calloc((size_t)n_workers, sizeof *m->workers);
    if (!m->workers)
        goto nomem;
    size_t max_user = 0;
    for (uint32_t u = 0; u < m->ds->n_users; u++)
        if (rec_user_len(m->ds, u) > max_user)
            max_user = rec_user_len(m->ds, u);
    snprintf(path, sizeof path, "%s/ranker.gguf", dir);
    {
        struct ranker_items rit = {0};
        struct ranker *r = ranker_load(path, &rit, err);
        if (!r)
            goto fail;
        bool ok = r->cfg.dim == m->dim && rit.n_items == m->ds->n_items;
        if (ok)
            m->rk = ranker_infer_new(r, &rit, err);
        else
            err_set(err, ERR_INVALID, "%s: ranker (dim %d, %u items) does not match the encoder "
                    "(dim %d) and dataset (%u items)", path, r->cfg.dim, rit.n_items, m->dim,
                    m->ds->n_items);
        ranker_free(r);
        ranker_items_free(&rit);
        if (!m->rk)
            goto fail;
    }
    for (int i = 0; i < n_workers; i++) {
        struct rec_worker *w = &m->workers[i];
        w->esc = encoder_infer_scratch_new(m->enc);
        w->asc = ann_scratch_new(m->idx);
        w->rsc = ranker_infer_scratch_new(m->rk, REC_MODEL_CANDIDATES);
        w->user = malloc((size_t)m->dim * sizeof(float));
        /* a user's dataset history, events and explicit ids, with room to spare */
        w->seen_cap = max_user + 8192;
        w->seen = malloc(w->seen_cap * sizeof(uint32_t));
        if (!w->esc || !w->asc || !w->rsc || !w->user || !w->seen)
            goto nomem;
    }
    /* id maps and popularity order */
    m->users = malloc(((size_t)m->ds->n_users + 1) * sizeof *m->users);
    m->items = malloc(((size_t)m->ds->n_items + 1) * sizeof *m->items);
    m->pop_order = malloc(((size_t)m->ds->n_items + 1) * sizeof *m->pop_order);
    if (!m->users || !m->items || !m->pop_order)
        goto nomem;
    for (uint32_t u = 0; u < m->ds->n_users; u++)
        m->users[u] = (struct id_pair){m->ds->user_orig[u], u};
    qsort(m->users, m->ds->n_users, sizeof *m->users, cmp_pair);
    for (uint32_t i = 1; i <= m->ds->n_items; i++) {
        m->items[i - 1] = (struct id_pair){m->ds->item_orig[i], i};
        m->pop_total += m->ds->item_pop_train[i];
    }
    qsort(m->items, m->ds->n_items, sizeof *m->items, cmp_pair);
    /* popularity order: sort (UINT32_MAX - pop, id) keys, most popular first, ties by id */
    uint64_t *keys = malloc((size_t)m->ds->n_items * sizeof *keys + 1);
    if (!keys)
        goto nomem;
    for (uint32_t i = 1; i <= m->ds->n_items; i++)
        keys[i - 1] = ((uint64_t)(UINT32_MAX - m->ds->item_pop_train[i]) << 32) | i;
    qsort(keys, m->ds->n_items, sizeof *keys, cmp_u64);
    for (uint32_t i = 0; i < m->ds->n_items; i++)
        m->pop_order[i] = (uint32_t)keys[i];
    free(keys);
    m->load_seconds = (now_ms() - t0) / 1e3;
    return m;
nomem:
    err_set(err, ERR_NOMEM, "artifacts %s: out of memory", dir);
fail:
    model_free(m);
    return NULL;
}

void rec_model_info(const struct rec_model *m, struct rec_model_info *out)
{
    const struct encoder_config *c = encoder_infer_config(m->enc);
    *out = (struct rec_model_info){
        .version = m->version,
        .dir = m->dir,
        .n_users = m->ds->n_users,
        .n_items = m->ds->n_items,
        .dim = c->dim,
        .n_layers = c->n_layers,
        .n_heads = c->n_heads,
        .ffn = c->ffn,
        .max_len = c->max_len,
        .weight_type = encoder_infer_weight_type(m->enc),
        .index_kind = ann_kind_name(ann_kind_of(m->idx)),
        .load_seconds = m->load_seconds,
    };
}

const struct rec_dataset *rec_model_dataset(const struct rec_model *m)
{
    return m->ds;
}

static const struct id_pair *find_pair(const struct id_pair *a, size_t n, int64_t orig)
{
    struct id_pair key = {orig, 0};
    return bsearch(&key, a, n, sizeof *a, cmp_pair);
}

int64_t rec_model_user(const struct rec_model *m, int64_t user_id)
{
    const struct id_pair *p = find_pair(m->users, m->ds->n_users, user_id);
    return p ? (int64_t)p->dense : -1;
}

uint32_t rec_model_item(const struct rec_model *m, int64_t movie_id)
{
    const struct id_pair *p = find_pair(m->items, m->ds->n_items, movie_id);
    return p ? p->dense : 0;
}

static bool in_list(const uint32_t *a, int n, uint32_t x)
{
    for (int i = 0; i < n; i++)
        if (a[i] == x)
            return true;
    return false;
}

void rec_model_popular(const struct rec_model *m, const struct rec_query *q,
                       struct rec_result *out)
{
    memset(out, 0, sizeof *out);
    out->popularity = true;
    int k = q->k < 1 ? 1 : q->k > REC_MODEL_MAX_K ? REC_MODEL_MAX_K : q->k;
    double total = m->pop_total ? (double)m->pop_total : 1.0;
    for (uint32_t i = 0; i < m->ds->n_items && out->n < k; i++) {
        uint32_t it = m->pop_order[i];
        if (in_list(q->history, q->n_history, it) || in_list(q->exclude, q->n_exclude, it))
            continue;
        out->item[out->n] = it;
        out->score[out->n] = (float)(m->ds->item_pop_train[it] / total);
        out->n++;
    }
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

int rec_model_recommend(struct rec_model *m, int worker, const struct rec_query *q,
                        struct rec_result *out, struct err *err)
{
    if (worker < 0 || worker >= m->n_workers)
        return err_set(err, ERR_INVALID, "worker %d out of range", worker);
    if (q->n_history < 1) {
        rec_model_popular(m, q, out);
        return 0;
    }
    memset(out, 0, sizeof *out);
    struct rec_worker *w = &m->workers[worker];
    const int k = q->k < 1 ? 1 : q->k > REC_MODEL_MAX_K ? REC_MODEL_MAX_K : q->k;
    const int D = m->dim;
    double t0 = now_ms();
    int rc = encoder_infer_user(m->enc, w->esc, q->history, q->n_history, w->user, err);
    if (rc)
        return rc;
    double t1 = now_ms();
    /* exclusion set in ann ids (item - 1), sorted; bounded by the scratch */
    size_t ns = 0;
    for (int i = 0; i < q->n_history && ns < w->seen_cap; i++)
        w->seen[ns++] = q->history[i] - 1;
    for (int i = 0; i < q->n_exclude && ns < w->seen_cap; i++)
        if (q->exclude[i] >= 1)
            w->seen[ns++] = q->exclude[i] - 1;
    qsort(w->seen, ns, sizeof *w->seen, cmp_u32);
    struct ann_search_opts so = {.k = REC_MODEL_CANDIDATES, .nprobe = 16, .ef = 128,
                                 .exclude = w->seen, .n_exclude = ns};
    int nh = ann_search(m->idx, w->user, &so, w->asc, w->hits);
    if (nh < 0)
        return err_set(err, nh, "vector search failed");
    for (int i = 0; i < nh; i++)
        w->cand[i] = w->hits[i].id + 1;
    double t2 = now_ms();
    if (nh > 0 &&
        ranker_infer_score(m->rk, w->rsc, w->user, m->item_table, w->cand, nh, w->scores) != 0)
        return err_set(err, ERR_INVALID, "ranker: bad candidates");
    /* top k by ranker logit (selection; n <= 100) */
    bool taken[REC_MODEL_CANDIDATES] = {0};
    int n = nh < k ? nh : k;
    for (int r = 0; r < n; r++) {
        int best = -1;
        for (int i = 0; i < nh; i++)
            if (!taken[i] && (best < 0 || w->scores[i] > w->scores[best]))
                best = i;
        taken[best] = true;
        out->item[r] = w->cand[best];
        out->score[r] = 1.0f / (1.0f + expf(-w->scores[best]));
    }
    out->n = n;
    if (q->explain) {
        /* the most similar of the recent history items the encoder read */
        int h0 = q->n_history > 200 ? q->n_history - 200 : 0;
        for (int r = 0; r < n; r++) {
            const float *v = m->item_table + (size_t)out->item[r] * D;
            float best = -INFINITY;
            uint32_t arg = 0;
            for (int i = q->n_history - 1; i >= h0; i--) {
                float s = dot(v, m->item_table + (size_t)q->history[i] * D, D);
                if (s > best) {
                    best = s;
                    arg = q->history[i];
                }
            }
            out->because[r] = arg;
            out->because_sim[r] = best;
        }
    }
    double t3 = now_ms();
    out->embedding_ms = t1 - t0;
    out->retrieval_ms = t2 - t1;
    out->ranking_ms = t3 - t2;
    return 0;
}
