/* HNSW (Malkov & Yashunin): a layered proximity graph. Level 0 holds every node with up to
 * 2M links; each node also appears on levels 1..L (L geometric with ratio 1/M) with up to M
 * links. A search descends greedily through the upper levels, then runs a best-first search
 * with a candidate list of size ef on level 0.
 *
 * Layout: links0 is (n, 1 + 2M) uint32, the first entry a count; upper lists are (1 + M)
 * uint32 per level at upper + upper_off[i] + (l - 1) * (1 + M).
 *
 * Build: nodes are inserted in parallel (pool), each thread with its own visited marks and
 * heaps; link lists are guarded by striped mutexes and the entry point by one mutex. Levels
 * come from a per-node seeded generator, so the level structure does not depend on threads;
 * the links do (insertion order), as in every parallel HNSW build. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ann/index.h"
#include "ann/kmeans.h"

#define HNSW_STRIPES 4096

static inline uint32_t *links_at(const struct ann_index *idx, uint32_t i, int level)
{
    int M = idx->cfg.hnsw_m;
    if (level == 0) return idx->links0 + (size_t)i * (1 + 2 * (size_t)M);
    return idx->upper + idx->upper_off[i] + (size_t)(level - 1) * (1 + (size_t)M);
}

static inline float node_dist(const struct ann_index *idx, const struct ann_dist_ops *ops,
                              const float *q, uint32_t i)
{
    const float *v = idx->vecs + (size_t)i * idx->dim;
    return idx->cfg.metric == ANN_METRIC_IP ? -ops->dot(q, v, idx->dim) : ops->l2(q, v, idx->dim);
}

/* ------------------------------------------------------------------ heaps (search) ---- */

struct minheap { /* candidates: smallest distance on top; grows */
    float *d;
    uint32_t *id;
    int n, cap;
};

static int minheap_push(struct minheap *h, float d, uint32_t id)
{
    if (h->n == h->cap) {
        int nc = h->cap ? h->cap * 2 : 256;
        float *nd = realloc(h->d, (size_t)nc * sizeof *nd);
        if (!nd) return ERR_NOMEM;
        h->d = nd;
        uint32_t *ni = realloc(h->id, (size_t)nc * sizeof *ni);
        if (!ni) return ERR_NOMEM;
        h->id = ni;
        h->cap = nc;
    }
    int i = h->n++;
    while (i > 0) {
        int p = (i - 1) >> 1;
        if (h->d[p] <= d) break;
        h->d[i] = h->d[p];
        h->id[i] = h->id[p];
        i = p;
    }
    h->d[i] = d;
    h->id[i] = id;
    return 0;
}

static void minheap_pop(struct minheap *h)
{
    int n = --h->n;
    if (n == 0) return;
    float d = h->d[n];
    uint32_t id = h->id[n];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        float dm = d;
        if (l < n && h->d[l] < dm) {
            m = l;
            dm = h->d[l];
        }
        if (r < n && h->d[r] < dm) m = r;
        if (m == i) break;
        h->d[i] = h->d[m];
        h->id[i] = h->id[m];
        i = m;
    }
    h->d[i] = d;
    h->id[i] = id;
}

/* Per-thread search state. */
struct hstate {
    uint16_t *visited;
    size_t vcap;
    uint16_t epoch;
    struct minheap cand;
    struct ann_topk res; /* max-heap of size ef */
    int res_cap;
    uint32_t *nbuf;  /* copy of one link list (build) */
    float *sel_d;    /* neighbour selection scratch */
    uint32_t *sel_id;
    int sel_cap;
};

static void hstate_free(struct hstate *st)
{
    free(st->visited);
    free(st->cand.d);
    free(st->cand.id);
    free(st->res.d);
    free(st->res.id);
    free(st->nbuf);
    free(st->sel_d);
    free(st->sel_id);
}

static int hstate_reserve(struct hstate *st, int ef, int sel)
{
    if (ef > st->res_cap) {
        float *d = realloc(st->res.d, (size_t)ef * sizeof *d);
        if (!d) return ERR_NOMEM;
        st->res.d = d;
        uint32_t *id = realloc(st->res.id, (size_t)ef * sizeof *id);
        if (!id) return ERR_NOMEM;
        st->res.id = id;
        st->res_cap = ef;
    }
    if (sel > st->sel_cap) {
        float *d = realloc(st->sel_d, (size_t)sel * sizeof *d);
        if (!d) return ERR_NOMEM;
        st->sel_d = d;
        uint32_t *id = realloc(st->sel_id, (size_t)sel * sizeof *id);
        if (!id) return ERR_NOMEM;
        st->sel_id = id;
        uint32_t *nb = realloc(st->nbuf, (size_t)sel * sizeof *nb);
        if (!nb) return ERR_NOMEM;
        st->nbuf = nb;
        st->sel_cap = sel;
    }
    return 0;
}

static void next_epoch(uint16_t *visited, size_t n, uint16_t *epoch)
{
    if (++*epoch == 0) {
        memset(visited, 0, n * sizeof *visited);
        *epoch = 1;
    }
}

struct build_ctx; /* below */
static void lock_node(struct build_ctx *b, uint32_t i);
static void unlock_node(struct build_ctx *b, uint32_t i);

/* Best-first search on one level from entry `ep`. Fills st->res with up to ef nodes (max-heap)
 * that are not excluded; excluded nodes are still traversed. With `b` non-NULL (building),
 * each link list is copied under its lock. */
static int search_level(const struct ann_index *idx, const struct ann_dist_ops *ops,
                        const float *q, uint32_t ep, float ep_d, int ef, int level,
                        struct hstate *st, const struct ann_search_opts *o, struct build_ctx *b)
{
    int M = idx->cfg.hnsw_m;
    int maxn = level == 0 ? 2 * M : M;
    next_epoch(st->visited, st->vcap, &st->epoch);
    uint16_t ep_mark = st->epoch;
    st->cand.n = 0;
    st->res.k = ef;
    st->res.n = 0;
    if (minheap_push(&st->cand, ep_d, ep) != 0) return ERR_NOMEM;
    if (!o || !o->n_exclude || !ann_excluded(o, ep)) ann_topk_push(&st->res, ep_d, ep);
    st->visited[ep] = ep_mark;
    size_t d = (size_t)idx->dim;
    while (st->cand.n > 0) {
        float cd = st->cand.d[0];
        uint32_t c = st->cand.id[0];
        if (cd > ann_topk_worst(&st->res)) break;
        minheap_pop(&st->cand);
        const uint32_t *lk = links_at(idx, c, level);
        uint32_t cnt;
        if (b) {
            lock_node(b, c);
            cnt = lk[0];
            if (cnt > (uint32_t)maxn) cnt = (uint32_t)maxn;
            memcpy(st->nbuf, lk + 1, cnt * sizeof *lk);
            unlock_node(b, c);
            lk = st->nbuf;
        } else {
            cnt = lk[0];
            lk++;
        }
        /* Two passes: first mark the unvisited neighbours and start loading their vectors
         * (all loads in flight at once), then compute the distances. */
        uint32_t todo[2 * 256];
        uint32_t nt = 0;
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t nb = lk[j];
            if (st->visited[nb] == ep_mark) continue;
            st->visited[nb] = ep_mark;
            const char *v = (const char *)(idx->vecs + (size_t)nb * d);
            __builtin_prefetch(v);
            __builtin_prefetch(v + 64);
            todo[nt++] = nb;
        }
        for (uint32_t j = 0; j < nt; j++) {
            uint32_t nb = todo[j];
            float nd = node_dist(idx, ops, q, nb);
            if (nd < ann_topk_worst(&st->res)) {
                if (minheap_push(&st->cand, nd, nb) != 0) return ERR_NOMEM;
                if (!o || !o->n_exclude || !ann_excluded(o, nb)) ann_topk_push(&st->res, nd, nb);
            }
        }
    }
    return 0;
}

/* Greedy descent on one upper level: move to the best neighbour while it improves. */
static uint32_t greedy(const struct ann_index *idx, const struct ann_dist_ops *ops,
                       const float *q, uint32_t cur, float *cur_d, int level, struct hstate *st,
                       struct build_ctx *b)
{
    int M = idx->cfg.hnsw_m;
    bool changed = true;
    while (changed) {
        changed = false;
        const uint32_t *lk = links_at(idx, cur, level);
        uint32_t cnt;
        if (b) {
            lock_node(b, cur);
            cnt = lk[0] > (uint32_t)M ? (uint32_t)M : lk[0];
            memcpy(st->nbuf, lk + 1, cnt * sizeof *lk);
            unlock_node(b, cur);
            lk = st->nbuf;
        } else {
            cnt = lk[0];
            lk++;
        }
        for (uint32_t j = 0; j < cnt; j++) {
            float nd = node_dist(idx, ops, q, lk[j]);
            if (nd < *cur_d) {
                *cur_d = nd;
                cur = lk[j];
                changed = true;
            }
        }
    }
    return cur;
}

/* ------------------------------------------------------------------------- search ---- */

int ann_hnsw_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                    struct ann_scratch *s)
{
    const struct ann_dist_ops *ops = ann_dist_get();
    int k = o->k < (int)idx->n || idx->n > (size_t)INT32_MAX ? o->k : (int)idx->n;
    int ef = o->ef > 0 ? o->ef : 64;
    if (ef < k) ef = k;
    if (ann_scratch_reserve(s, ef, 0, 0, idx->dim) != 0) return ERR_NOMEM;
    struct hstate st = {0};
    st.visited = s->visited;
    st.vcap = s->n_cap;
    st.epoch = s->epoch;
    st.cand.d = s->cand_d;
    st.cand.id = s->cand_id;
    st.cand.cap = s->cand_cap;
    st.res.d = s->top.d; /* results land straight in the scratch top-k (size ef) */
    st.res.id = s->top.id;
    st.res_cap = s->heap_cap;

    float cd = node_dist(idx, ops, q, idx->entry);
    uint32_t cur = idx->entry;
    for (int l = idx->max_level; l >= 1; l--) cur = greedy(idx, ops, q, cur, &cd, l, &st, NULL);
    int rc = search_level(idx, ops, q, cur, cd, ef, 0, &st, o, NULL);
    /* The candidate heap may have grown: hand its arrays back to the scratch. */
    s->cand_d = st.cand.d;
    s->cand_id = st.cand.id;
    s->cand_cap = st.cand.cap;
    s->epoch = st.epoch;
    if (rc != 0) {
        s->top.n = 0;
        return rc;
    }
    /* Keep the best k of the ef results. */
    s->top = st.res;
    while (s->top.n > k) {
        /* pop worst */
        int n = --s->top.n;
        float d = s->top.d[n];
        uint32_t id = s->top.id[n];
        int i = 0;
        for (;;) {
            int l = 2 * i + 1, r = l + 1, m = i;
            float dm = d;
            if (l < n && s->top.d[l] > dm) {
                m = l;
                dm = s->top.d[l];
            }
            if (r < n && s->top.d[r] > dm) m = r;
            if (m == i) break;
            s->top.d[i] = s->top.d[m];
            s->top.id[i] = s->top.id[m];
            i = m;
        }
        s->top.d[i] = d;
        s->top.id[i] = id;
    }
    s->top.k = k;
    return 0;
}

/* -------------------------------------------------------------------------- build ---- */

struct build_ctx {
    struct ann_index *idx;
    const struct ann_dist_ops *ops;
    pthread_mutex_t *locks;
    pthread_mutex_t entry_lock;
    struct hstate *st; /* per thread */
    size_t first;      /* first node of this add */
    int failed;
};

static void lock_node(struct build_ctx *b, uint32_t i)
{
    pthread_mutex_lock(&b->locks[i % HNSW_STRIPES]);
}

static void unlock_node(struct build_ctx *b, uint32_t i)
{
    pthread_mutex_unlock(&b->locks[i % HNSW_STRIPES]);
}

static float pair_dist(const struct ann_index *idx, const struct ann_dist_ops *ops, uint32_t a,
                       uint32_t b)
{
    return node_dist(idx, ops, idx->vecs + (size_t)a * idx->dim, b);
}

/* The HNSW heuristic: walk candidates nearest first and keep one only if it is closer to
 * the base than to every neighbour kept so far (diverse directions, fewer redundant links).
 * Sorts (d, id) in place and returns how many of the first entries are kept (<= maxk). */
static int select_heuristic(const struct ann_index *idx, const struct ann_dist_ops *ops,
                            float *d, uint32_t *id, int n, int maxk)
{
    /* insertion sort: n is at most ef + 2M */
    for (int i = 1; i < n; i++) {
        float dv = d[i];
        uint32_t iv = id[i];
        int j = i - 1;
        while (j >= 0 && d[j] > dv) {
            d[j + 1] = d[j];
            id[j + 1] = id[j];
            j--;
        }
        d[j + 1] = dv;
        id[j + 1] = iv;
    }
    if (n <= maxk) return n;
    int kept = 0;
    for (int i = 0; i < n && kept < maxk; i++) {
        bool good = true;
        for (int j = 0; j < kept; j++) {
            if (pair_dist(idx, ops, id[i], id[j]) < d[i]) {
                good = false;
                break;
            }
        }
        if (good) {
            d[kept] = d[i];
            id[kept] = id[i];
            kept++;
        }
    }
    return kept;
}

/* Adds link node -> nb at `level` (nb's list), pruning nb's list with the heuristic when
 * full. Caller holds nothing; this takes nb's lock. */
static void add_link(struct build_ctx *b, struct hstate *st, uint32_t nb, uint32_t node,
                     float dist, int level)
{
    struct ann_index *idx = b->idx;
    int maxn = level == 0 ? 2 * idx->cfg.hnsw_m : idx->cfg.hnsw_m;
    lock_node(b, nb);
    uint32_t *lk = links_at(idx, nb, level);
    uint32_t cnt = lk[0];
    for (uint32_t j = 0; j < cnt; j++)
        if (lk[1 + j] == node) {
            unlock_node(b, nb);
            return;
        }
    if (cnt < (uint32_t)maxn) {
        lk[1 + cnt] = node;
        lk[0] = cnt + 1;
    } else {
        int n = 0;
        for (uint32_t j = 0; j < cnt; j++) {
            st->sel_id[n] = lk[1 + j];
            st->sel_d[n] = pair_dist(idx, b->ops, nb, lk[1 + j]);
            n++;
        }
        st->sel_id[n] = node;
        st->sel_d[n] = dist;
        n++;
        int kept = select_heuristic(idx, b->ops, st->sel_d, st->sel_id, n, maxn);
        for (int j = 0; j < kept; j++) lk[1 + j] = st->sel_id[j];
        lk[0] = (uint32_t)kept;
    }
    unlock_node(b, nb);
}

static int insert_node(struct build_ctx *b, struct hstate *st, uint32_t node)
{
    struct ann_index *idx = b->idx;
    const struct ann_dist_ops *ops = b->ops;
    int M = idx->cfg.hnsw_m, efc = idx->cfg.ef_construction;
    int lvl = idx->levels[node];
    const float *q = idx->vecs + (size_t)node * idx->dim;

    pthread_mutex_lock(&b->entry_lock);
    uint32_t ep = idx->entry;
    int maxl = idx->max_level;
    bool raise = lvl > maxl;
    if (!raise) pthread_mutex_unlock(&b->entry_lock);
    /* A node that raises the top level keeps the entry lock for its whole insertion, so no
     * other thread starts from an entry point whose upper lists are still empty. */

    float cd = node_dist(idx, ops, q, ep);
    uint32_t cur = ep;
    for (int l = maxl; l > lvl; l--) cur = greedy(idx, ops, q, cur, &cd, l, st, b);
    int rc = 0;
    for (int l = lvl < maxl ? lvl : maxl; l >= 0; l--) {
        rc = search_level(idx, ops, q, cur, cd, efc, l, st, NULL, b);
        if (rc != 0) break;
        int n = st->res.n;
        memcpy(st->sel_d, st->res.d, (size_t)n * sizeof *st->sel_d);
        memcpy(st->sel_id, st->res.id, (size_t)n * sizeof *st->sel_id);
        /* drop the node itself if present (re-added vectors) */
        int w = 0;
        for (int j = 0; j < n; j++)
            if (st->sel_id[j] != node) {
                st->sel_d[w] = st->sel_d[j];
                st->sel_id[w] = st->sel_id[j];
                w++;
            }
        int kept = select_heuristic(idx, ops, st->sel_d, st->sel_id, w, l == 0 ? 2 * M : M);
        if (kept > 0) {
            cur = st->sel_id[0];
            cd = st->sel_d[0];
        }
        /* Our own links first (a copy, since add_link reuses the selection buffers). */
        uint32_t mine[2 * 256 + 1];
        float mined[2 * 256 + 1];
        memcpy(mine, st->sel_id, (size_t)kept * sizeof *mine);
        memcpy(mined, st->sel_d, (size_t)kept * sizeof *mined);
        lock_node(b, node);
        uint32_t *lk = links_at(idx, node, l);
        for (int j = 0; j < kept; j++) lk[1 + j] = mine[j];
        lk[0] = (uint32_t)kept;
        unlock_node(b, node);
        for (int j = 0; j < kept; j++) add_link(b, st, mine[j], node, mined[j], l);
    }
    if (raise) {
        idx->entry = node;
        idx->max_level = lvl;
        pthread_mutex_unlock(&b->entry_lock);
    }
    return rc;
}

static void insert_task(void *vctx, size_t begin, size_t end, int tid)
{
    struct build_ctx *b = vctx;
    for (size_t i = begin; i < end; i++) {
        if (b->failed) return;
        int rc = insert_node(b, &b->st[tid], (uint32_t)(b->first + i));
        if (rc != 0) b->failed = rc;
    }
}

static uint8_t draw_level(uint64_t seed, uint64_t node, int M)
{
    struct ann_rng r;
    ann_rng_seed(&r, seed ^ (node * 0x9e3779b97f4a7c15ull) ^ 0x484e5357ull);
    double u = ann_rng_uniform(&r);
    if (u < 1e-300) u = 1e-300;
    double l = -log(u) / log((double)M);
    int lv = (int)l;
    return (uint8_t)(lv > ANN_HNSW_MAX_LEVEL ? ANN_HNSW_MAX_LEVEL : lv);
}

int ann_hnsw_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                 struct err *err)
{
    size_t old = idx->n, total = old + n, d = (size_t)idx->dim;
    int M = idx->cfg.hnsw_m;
    size_t l0 = 1 + 2 * (size_t)M, lu = 1 + (size_t)M;
    int nt = pool ? pool_threads(pool) : 1;

    float *v = ann_realloc_aligned(idx->vecs, old * d * sizeof *v, total * d * sizeof *v);
    if (!v) return err_set(err, ERR_NOMEM, "hnsw: out of memory for %zu vectors", total);
    idx->vecs = v;
    memcpy(v + old * d, x, n * d * sizeof *v);
    uint8_t *lv = realloc(idx->levels, total);
    if (!lv) return err_set(err, ERR_NOMEM, "hnsw: out of memory");
    idx->levels = lv;
    uint32_t *uo = realloc(idx->upper_off, total * sizeof *uo);
    if (!uo) return err_set(err, ERR_NOMEM, "hnsw: out of memory");
    idx->upper_off = uo;
    uint32_t *ln = realloc(idx->links0, total * l0 * sizeof *ln);
    if (!ln) return err_set(err, ERR_NOMEM, "hnsw: out of memory for links (%zu nodes)", total);
    idx->links0 = ln;
    memset(ln + old * l0, 0, n * l0 * sizeof *ln);
    size_t ulen = idx->upper_len;
    for (size_t i = old; i < total; i++) {
        lv[i] = draw_level(idx->cfg.seed, i, M);
        if (ulen + lv[i] * lu > UINT32_MAX)
            return err_set(err, ERR_NOMEM, "hnsw: upper levels exceed 2^32 links");
        uo[i] = (uint32_t)ulen;
        ulen += lv[i] * lu;
    }
    uint32_t *up = realloc(idx->upper, (ulen ? ulen : 1) * sizeof *up);
    if (!up) return err_set(err, ERR_NOMEM, "hnsw: out of memory for upper links");
    memset(up + idx->upper_len, 0, (ulen - idx->upper_len) * sizeof *up);
    idx->upper = up;
    idx->upper_len = ulen;
    idx->n = total;

    struct build_ctx b = {0};
    b.idx = idx;
    b.ops = ann_dist_get();
    b.locks = malloc(HNSW_STRIPES * sizeof *b.locks);
    b.st = calloc((size_t)nt, sizeof *b.st);
    int rc = 0;
    if (!b.locks || !b.st) {
        rc = err_set(err, ERR_NOMEM, "hnsw: out of memory");
        goto out;
    }
    for (int i = 0; i < HNSW_STRIPES; i++) pthread_mutex_init(&b.locks[i], NULL);
    pthread_mutex_init(&b.entry_lock, NULL);
    for (int t = 0; t < nt; t++) {
        b.st[t].visited = calloc(total, sizeof *b.st[t].visited);
        b.st[t].vcap = total;
        if (!b.st[t].visited ||
            hstate_reserve(&b.st[t], idx->cfg.ef_construction, idx->cfg.ef_construction + 2 * M + 2)) {
            rc = err_set(err, ERR_NOMEM, "hnsw: out of memory for build state");
            goto out;
        }
    }
    size_t start = old;
    if (old == 0) {
        idx->entry = 0;
        idx->max_level = lv[0];
        start = 1;
    }
    b.first = start;
    pool_for(pool, total - start, 16, insert_task, &b);
    if (b.failed) rc = err_set(err, b.failed, "hnsw: out of memory while inserting");
out:
    if (b.locks) {
        for (int i = 0; i < HNSW_STRIPES; i++) pthread_mutex_destroy(&b.locks[i]);
        pthread_mutex_destroy(&b.entry_lock);
    }
    free(b.locks);
    if (b.st)
        for (int t = 0; t < nt; t++) hstate_free(&b.st[t]);
    free(b.st);
    return rc;
}
