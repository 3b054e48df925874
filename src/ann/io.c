/* Index files: GGUF v3 with our own general.architecture ("nanorec.index.<kind>"),
 * hyper-parameters as "nanorec.index.*" keys, and every array as a tensor. Loading maps the
 * file and points the index at the tensors (no copy), after checking every shape, type,
 * list offset, id and graph link, so a corrupted file is an error, never a crash. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ann/index.h"
#include "engine/gguf.h"

#define ARCH_PREFIX "nanorec.index."
#define KEY(s) ARCH_PREFIX s

void ann_io_close(struct ann_index *idx)
{
    if (idx && idx->file) {
        gguf_close(idx->file);
        idx->file = NULL;
    }
}

/* ---------------------------------------------------------------------------- save ---- */

static int add_t(struct gguf_writer *w, const char *name, enum ggml_type t, uint64_t ne0,
                 uint64_t ne1, const void *data, struct err *err)
{
    uint64_t ne[2] = {ne0, ne1};
    static const char zero[8];
    if (!data) data = zero; /* empty tensors (n = 0) have no bytes to read */
    return gguf_writer_add_tensor(w, name, t, ne1 > 1 || ne1 == 0 ? 2 : 1, ne, data, true, err);
}

int ann_save(const struct ann_index *idx, const char *path, struct err *err)
{
    const struct ann_cfg *c = &idx->cfg;
    struct gguf_writer *w = gguf_writer_new();
    if (!w) return err_set(err, ERR_NOMEM, "saving index: out of memory");
    gguf_writer_set_alignment(w, ANN_ALIGN); /* mapped rows start on cache lines */
    char arch[64];
    snprintf(arch, sizeof arch, ARCH_PREFIX "%s", ann_kind_name(c->kind));
    size_t n = idx->n, d = (size_t)idx->dim;
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", arch);
    rc |= gguf_writer_set_str(w, "general.name", "nanorec vector index");
    rc |= gguf_writer_set_u32(w, KEY("dim"), (uint32_t)idx->dim);
    rc |= gguf_writer_set_u64(w, KEY("count"), (uint64_t)n);
    rc |= gguf_writer_set_str(w, KEY("metric"), c->metric == ANN_METRIC_IP ? "ip" : "l2");
    rc |= gguf_writer_set_u64(w, KEY("seed"), c->seed);
    rc |= gguf_writer_set_u32(w, KEY("kmeans_iters"), (uint32_t)c->kmeans_iters);
    rc |= gguf_writer_set_u32(w, KEY("pq_iters"), (uint32_t)c->pq_iters);
    rc |= gguf_writer_set_u32(w, KEY("max_train_per_centroid"), (uint32_t)c->max_train_per_centroid);
    rc |= gguf_writer_set_bool(w, KEY("kmeans_plusplus"), c->kmeans_plusplus != 0);
    if (c->kind == ANN_KIND_FLAT_SQ8 || c->kind == ANN_KIND_IVF_SQ8)
        rc |= gguf_writer_set_u32(w, KEY("sq_levels"), (uint32_t)idx->sq_levels);
    if (rc) {
        rc = err_set(err, ERR_NOMEM, "saving index: out of memory");
        goto out;
    }
    switch (c->kind) {
    case ANN_KIND_FLAT:
        rc = add_t(w, "vectors", GGML_TYPE_F32, d, n, idx->vecs, err);
        break;
    case ANN_KIND_FLAT_SQ8:
        rc = add_t(w, "sq.vmin", GGML_TYPE_F32, d, 1, idx->sq_vmin, err);
        if (!rc) rc = add_t(w, "sq.vdiff", GGML_TYPE_F32, d, 1, idx->sq_vdiff, err);
        if (!rc) rc = add_t(w, "codes", GGML_TYPE_I8, d, n, idx->codes, err);
        break;
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ:
        rc = gguf_writer_set_u32(w, KEY("nlist"), (uint32_t)idx->nlist);
        if (!rc && c->kind == ANN_KIND_IVF_PQ) rc = gguf_writer_set_u32(w, KEY("pq_m"), (uint32_t)idx->pq_m);
        if (rc) {
            rc = err_set(err, ERR_NOMEM, "saving index: out of memory");
            break;
        }
        rc = add_t(w, "ivf.centroids", GGML_TYPE_F32, d, (uint64_t)idx->nlist, idx->centroids, err);
        if (!rc)
            rc = add_t(w, "ivf.list_offsets", GGML_TYPE_I64, (uint64_t)idx->nlist + 1, 1,
                       idx->list_off, err);
        if (!rc) rc = add_t(w, "ivf.ids", GGML_TYPE_I32, n, 1, idx->list_ids, err);
        if (!rc) {
            if (c->kind == ANN_KIND_IVF_FLAT)
                rc = add_t(w, "ivf.codes", GGML_TYPE_F32, d, n, idx->list_codes, err);
            else
                rc = add_t(w, "ivf.codes", GGML_TYPE_I8, idx->code_size, n, idx->list_codes, err);
        }
        if (!rc && idx->list_terms) rc = add_t(w, "ivf.terms", GGML_TYPE_F32, n, 1, idx->list_terms, err);
        if (!rc && c->kind == ANN_KIND_IVF_SQ8) {
            rc = add_t(w, "sq.vmin", GGML_TYPE_F32, d, 1, idx->sq_vmin, err);
            if (!rc) rc = add_t(w, "sq.vdiff", GGML_TYPE_F32, d, 1, idx->sq_vdiff, err);
        }
        if (!rc && c->kind == ANN_KIND_IVF_PQ) {
            uint64_t ne[3] = {ANN_PQ_K, (uint64_t)idx->pq_dsub, (uint64_t)idx->pq_m};
            rc = gguf_writer_add_tensor(w, "pq.codebooks", GGML_TYPE_F32, 3, ne, idx->pq_cb, true, err);
        }
        break;
    case ANN_KIND_HNSW:
        rc = gguf_writer_set_u32(w, KEY("hnsw_m"), (uint32_t)c->hnsw_m);
        rc |= gguf_writer_set_u32(w, KEY("ef_construction"), (uint32_t)c->ef_construction);
        rc |= gguf_writer_set_u32(w, KEY("max_level"), (uint32_t)idx->max_level);
        rc |= gguf_writer_set_u32(w, KEY("entry"), idx->entry);
        if (rc) {
            rc = err_set(err, ERR_NOMEM, "saving index: out of memory");
            break;
        }
        rc = add_t(w, "vectors", GGML_TYPE_F32, d, n, idx->vecs, err);
        if (!rc) rc = add_t(w, "hnsw.levels", GGML_TYPE_I8, n, 1, idx->levels, err);
        if (!rc)
            rc = add_t(w, "hnsw.links0", GGML_TYPE_I32, 1 + 2 * (uint64_t)c->hnsw_m, n, idx->links0, err);
        if (!rc) rc = add_t(w, "hnsw.upper_offsets", GGML_TYPE_I32, n, 1, idx->upper_off, err);
        if (!rc) rc = add_t(w, "hnsw.upper", GGML_TYPE_I32, idx->upper_len, 1, idx->upper, err);
        break;
    default: rc = err_set(err, ERR_INVALID, "saving index: bad kind"); break;
    }
    if (!rc) rc = gguf_writer_write(w, path, err);
    if (rc) err_prefix(err, "saving index to %s", path);
out:
    gguf_writer_free(w);
    return rc;
}

/* ---------------------------------------------------------------------------- load ---- */

/* Finds tensor `name` and checks its type and shape (ne0, ne1, ne2; 1 for unused dims). */
static const void *get_t(const struct gguf_file *f, const char *name, enum ggml_type type,
                         uint64_t ne0, uint64_t ne1, uint64_t ne2, size_t align, struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        err_set(err, ERR_INVALID, "tensor '%s' is missing", name);
        return NULL;
    }
    uint64_t want[GGUF_MAX_DIMS] = {ne0, ne1, ne2, 1};
    if (t->type != type) {
        err_set(err, ERR_INVALID, "tensor '%s' has type %s, expected %s", name,
                ggml_type_name(t->type) ? ggml_type_name(t->type) : "?", ggml_type_name(type));
        return NULL;
    }
    for (int i = 0; i < GGUF_MAX_DIMS; i++) {
        uint64_t have = i < (int)t->n_dims ? t->ne[i] : 1;
        if (have != want[i]) {
            err_set(err, ERR_INVALID,
                    "tensor '%s' has shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 "], expected [%" PRIu64
                    ", %" PRIu64 ", %" PRIu64 "]",
                    name, t->ne[0], t->n_dims > 1 ? t->ne[1] : 1, t->n_dims > 2 ? t->ne[2] : 1, ne0,
                    ne1, ne2);
            return NULL;
        }
    }
    if (((uintptr_t)t->data % align) != 0) {
        err_set(err, ERR_INVALID, "tensor '%s' data is not %zu-byte aligned", name, align);
        return NULL;
    }
    return t->data;
}

static int get_u32_key(const struct gguf_file *f, const char *key, uint32_t lo, uint32_t hi,
                       uint32_t *out, struct err *err)
{
    int rc = gguf_get_u32(f, key, out, err);
    if (rc == ERR_NOTFOUND) return err_set(err, ERR_INVALID, "metadata key '%s' is missing", key);
    if (rc) return rc;
    if (*out < lo || *out > hi)
        return err_set(err, ERR_INVALID, "metadata '%s' = %" PRIu32 " outside %" PRIu32 "..%" PRIu32,
                       key, *out, lo, hi);
    return 0;
}

static int check_ivf(struct ann_index *idx, struct err *err)
{
    size_t n = idx->n;
    int L = idx->nlist;
    if (idx->list_off[0] != 0 || idx->list_off[L] != n)
        return err_set(err, ERR_INVALID,
                       "ivf.list_offsets: first %" PRIu64 " and last %" PRIu64 " must be 0 and %zu",
                       idx->list_off[0], idx->list_off[L], n);
    for (int l = 0; l < L; l++)
        if (idx->list_off[l + 1] < idx->list_off[l])
            return err_set(err, ERR_INVALID,
                           "ivf.list_offsets: list %d ends (%" PRIu64 ") before it starts (%" PRIu64 ")",
                           l, idx->list_off[l + 1], idx->list_off[l]);
    uint8_t *seen = calloc(n / 8 + 1, 1);
    if (!seen) return err_set(err, ERR_NOMEM, "out of memory checking ids");
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = idx->list_ids[i];
        if (id >= n) {
            rc = err_set(err, ERR_INVALID, "ivf.ids[%zu] = %" PRIu32 " is not below the count %zu",
                         i, id, n);
            break;
        }
        if (seen[id >> 3] & (1u << (id & 7))) {
            rc = err_set(err, ERR_INVALID, "ivf.ids: id %" PRIu32 " appears twice", id);
            break;
        }
        seen[id >> 3] |= (uint8_t)(1u << (id & 7));
    }
    free(seen);
    return rc;
}

static int check_hnsw(struct ann_index *idx, struct err *err)
{
    size_t n = idx->n;
    int M = idx->cfg.hnsw_m;
    size_t l0 = 1 + 2 * (size_t)M, lu = 1 + (size_t)M;
    if (n == 0) return 0;
    if (idx->entry >= n)
        return err_set(err, ERR_INVALID, "hnsw: entry point %" PRIu32 " is not below the count %zu",
                       idx->entry, n);
    if (idx->levels[idx->entry] != idx->max_level)
        return err_set(err, ERR_INVALID, "hnsw: entry point level %d differs from max_level %d",
                       idx->levels[idx->entry], idx->max_level);
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (idx->levels[i] > idx->max_level)
            return err_set(err, ERR_INVALID, "hnsw.levels[%zu] = %d exceeds max_level %d", i,
                           idx->levels[i], idx->max_level);
        if (idx->upper_off[i] != off)
            return err_set(err, ERR_INVALID,
                           "hnsw.upper_offsets[%zu] = %" PRIu32 ", expected %" PRIu64, i,
                           idx->upper_off[i], off);
        off += idx->levels[i] * lu;
    }
    if (off != idx->upper_len)
        return err_set(err, ERR_INVALID, "hnsw.upper has %zu entries, the levels need %" PRIu64,
                       idx->upper_len, off);
    for (size_t i = 0; i < n; i++) {
        for (int l = 0; l <= idx->levels[i]; l++) {
            const uint32_t *lk = l == 0 ? idx->links0 + i * l0
                                        : idx->upper + idx->upper_off[i] + (size_t)(l - 1) * lu;
            uint32_t maxn = l == 0 ? 2 * (uint32_t)M : (uint32_t)M;
            if (lk[0] > maxn)
                return err_set(err, ERR_INVALID, "hnsw: node %zu level %d has %" PRIu32
                               " links, at most %" PRIu32, i, l, lk[0], maxn);
            for (uint32_t j = 0; j < lk[0]; j++) {
                uint32_t nb = lk[1 + j];
                if (nb >= n)
                    return err_set(err, ERR_INVALID,
                                   "hnsw: node %zu level %d links to %" PRIu32
                                   ", not below the count %zu", i, l, nb, n);
                if (idx->levels[nb] < l)
                    return err_set(err, ERR_INVALID,
                                   "hnsw: node %zu level %d links to node %" PRIu32
                                   " which has no level %d", i, l, nb, l);
            }
        }
    }
    return 0;
}

static struct ann_index *load_from(struct gguf_file *f, struct err *err)
{
    struct ann_index *idx = calloc(1, sizeof *idx);
    if (!idx) {
        gguf_close(f);
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    idx->file = f;
    idx->mapped = true;
    struct ann_cfg *c = &idx->cfg;
    struct gguf_str s;
    int rc = gguf_get_str(f, "general.architecture", &s, err);
    if (rc) {
        if (rc == ERR_NOTFOUND) err_set(err, ERR_INVALID, "not an index file: no general.architecture");
        goto fail;
    }
    int kind = -1;
    for (int k = 0; k < ANN_KIND_COUNT; k++) {
        char arch[64];
        snprintf(arch, sizeof arch, ARCH_PREFIX "%s", ann_kind_name((enum ann_kind)k));
        if (gguf_str_eq(s, arch)) kind = k;
    }
    if (kind < 0) {
        err_set(err, ERR_INVALID, "general.architecture '%.*s' is not a nanorec.index.* kind",
                (int)(s.len > 60 ? 60 : s.len), s.ptr);
        goto fail;
    }
    c->kind = (enum ann_kind)kind;
    uint32_t dim, u;
    uint64_t cnt;
    if ((rc = get_u32_key(f, KEY("dim"), 1, ANN_MAX_DIM, &dim, err))) goto fail;
    idx->dim = (int)dim;
    rc = gguf_get_u64(f, KEY("count"), &cnt, err);
    if (rc == ERR_NOTFOUND) err_set(err, ERR_INVALID, "metadata key '" KEY("count") "' is missing");
    if (rc) goto fail;
    if (cnt >= UINT32_MAX) {
        err_set(err, ERR_INVALID, KEY("count") " = %" PRIu64 " exceeds 32-bit ids", cnt);
        goto fail;
    }
    idx->n = (size_t)cnt;
    rc = gguf_get_str(f, KEY("metric"), &s, err);
    if (rc == ERR_NOTFOUND) err_set(err, ERR_INVALID, "metadata key '" KEY("metric") "' is missing");
    if (rc) goto fail;
    if (gguf_str_eq(s, "ip")) c->metric = ANN_METRIC_IP;
    else if (gguf_str_eq(s, "l2")) c->metric = ANN_METRIC_L2;
    else {
        err_set(err, ERR_INVALID, KEY("metric") " must be 'ip' or 'l2'");
        goto fail;
    }
    uint64_t seed = 0;
    if (gguf_get_u64(f, KEY("seed"), &seed, NULL) == 0) c->seed = seed;
    if (gguf_get_u32(f, KEY("kmeans_iters"), &u, NULL) == 0 && u <= 100000) c->kmeans_iters = (int)u;
    if (gguf_get_u32(f, KEY("pq_iters"), &u, NULL) == 0 && u <= 100000) c->pq_iters = (int)u;
    if (gguf_get_u32(f, KEY("max_train_per_centroid"), &u, NULL) == 0 && u <= 1000000)
        c->max_train_per_centroid = (int)u;
    bool pp = false;
    if (gguf_get_bool(f, KEY("kmeans_plusplus"), &pp, NULL) == 0) c->kmeans_plusplus = pp;
    /* SQ8 steps: files from before the key used 256 bins */
    idx->sq_levels = 256;
    rc = gguf_get_u32(f, KEY("sq_levels"), &u, NULL);
    if (rc == 0) {
        if (u != 255 && u != 256) {
            err_set(err, ERR_INVALID, KEY("sq_levels") " = %u: must be 255 or 256", u);
            goto fail;
        }
        idx->sq_levels = (int)u;
    } else if (rc != ERR_NOTFOUND) {
        err_set(err, ERR_INVALID, KEY("sq_levels") " must be a u32");
        goto fail;
    }
    rc = 0;

    size_t n = idx->n, d = dim;
    switch (c->kind) {
    case ANN_KIND_FLAT:
        if (!(idx->vecs = (float *)get_t(f, "vectors", GGML_TYPE_F32, d, n, 1, 4, err))) goto fail;
        break;
    case ANN_KIND_FLAT_SQ8:
        if (!(idx->sq_vmin = (float *)get_t(f, "sq.vmin", GGML_TYPE_F32, d, 1, 1, 4, err)) ||
            !(idx->sq_vdiff = (float *)get_t(f, "sq.vdiff", GGML_TYPE_F32, d, 1, 1, 4, err)) ||
            !(idx->codes = (uint8_t *)get_t(f, "codes", GGML_TYPE_I8, d, n, 1, 1, err)))
            goto fail;
        break;
    case ANN_KIND_IVF_FLAT:
    case ANN_KIND_IVF_SQ8:
    case ANN_KIND_IVF_PQ: {
        uint32_t nlist, m = 0;
        if ((rc = get_u32_key(f, KEY("nlist"), 1, 1u << 20, &nlist, err))) goto fail;
        idx->nlist = c->nlist = (int)nlist;
        if (c->kind == ANN_KIND_IVF_PQ) {
            if ((rc = get_u32_key(f, KEY("pq_m"), 1, dim, &m, err))) goto fail;
            if (dim % m) {
                err_set(err, ERR_INVALID, KEY("pq_m") " = %" PRIu32 " does not divide dim %" PRIu32, m, dim);
                goto fail;
            }
            idx->pq_m = c->pq_m = (int)m;
            idx->pq_dsub = (int)(dim / m);
            idx->code_size = m;
        } else {
            idx->code_size = c->kind == ANN_KIND_IVF_FLAT ? 4 * d : d;
        }
        if (!(idx->centroids = (float *)get_t(f, "ivf.centroids", GGML_TYPE_F32, d, nlist, 1, 4, err)) ||
            !(idx->list_off = (uint64_t *)get_t(f, "ivf.list_offsets", GGML_TYPE_I64, (uint64_t)nlist + 1, 1, 1, 8, err)) ||
            !(idx->list_ids = (uint32_t *)get_t(f, "ivf.ids", GGML_TYPE_I32, n, 1, 1, 4, err)))
            goto fail;
        if (c->kind == ANN_KIND_IVF_FLAT)
            idx->list_codes = (uint8_t *)get_t(f, "ivf.codes", GGML_TYPE_F32, d, n, 1, 4, err);
        else
            idx->list_codes = (uint8_t *)get_t(f, "ivf.codes", GGML_TYPE_I8, idx->code_size, n, 1, 1, err);
        if (!idx->list_codes) goto fail;
        if (c->kind == ANN_KIND_IVF_PQ && c->metric == ANN_METRIC_L2 &&
            !(idx->list_terms = (float *)get_t(f, "ivf.terms", GGML_TYPE_F32, n, 1, 1, 4, err)))
            goto fail;
        if (c->kind == ANN_KIND_IVF_SQ8 &&
            (!(idx->sq_vmin = (float *)get_t(f, "sq.vmin", GGML_TYPE_F32, d, 1, 1, 4, err)) ||
             !(idx->sq_vdiff = (float *)get_t(f, "sq.vdiff", GGML_TYPE_F32, d, 1, 1, 4, err))))
            goto fail;
        if (c->kind == ANN_KIND_IVF_PQ &&
            !(idx->pq_cb = (float *)get_t(f, "pq.codebooks", GGML_TYPE_F32, ANN_PQ_K, dim / m, m, 4, err)))
            goto fail;
        if ((rc = check_ivf(idx, err))) goto fail;
        idx->cnorm = malloc((size_t)nlist * sizeof(float));
        idx->cinv = malloc((size_t)nlist * sizeof(float));
        if (!idx->cnorm || !idx->cinv) {
            err_set(err, ERR_NOMEM, "out of memory");
            goto fail;
        }
        ann_ivf_centroid_norms(idx);
        break;
    }
    case ANN_KIND_HNSW: {
        uint32_t M, efc, maxl, entry;
        if ((rc = get_u32_key(f, KEY("hnsw_m"), 2, 256, &M, err)) ||
            (rc = get_u32_key(f, KEY("ef_construction"), 1, 100000, &efc, err)) ||
            (rc = get_u32_key(f, KEY("max_level"), 0, ANN_HNSW_MAX_LEVEL, &maxl, err)) ||
            (rc = get_u32_key(f, KEY("entry"), 0, UINT32_MAX, &entry, err)))
            goto fail;
        c->hnsw_m = (int)M;
        c->ef_construction = (int)efc;
        idx->max_level = (int)maxl;
        idx->entry = entry;
        const struct gguf_tensor *up = gguf_find_tensor(f, "hnsw.upper");
        if (!up) {
            err_set(err, ERR_INVALID, "tensor 'hnsw.upper' is missing");
            goto fail;
        }
        idx->upper_len = (size_t)up->ne[0];
        if (!(idx->vecs = (float *)get_t(f, "vectors", GGML_TYPE_F32, d, n, 1, 4, err)) ||
            !(idx->levels = (uint8_t *)get_t(f, "hnsw.levels", GGML_TYPE_I8, n, 1, 1, 1, err)) ||
            !(idx->links0 = (uint32_t *)get_t(f, "hnsw.links0", GGML_TYPE_I32, 1 + 2 * (uint64_t)M, n, 1, 4, err)) ||
            !(idx->upper_off = (uint32_t *)get_t(f, "hnsw.upper_offsets", GGML_TYPE_I32, n, 1, 1, 4, err)) ||
            !(idx->upper = (uint32_t *)get_t(f, "hnsw.upper", GGML_TYPE_I32, idx->upper_len, 1, 1, 4, err)))
            goto fail;
        if ((rc = check_hnsw(idx, err))) goto fail;
        break;
    }
    default: goto fail;
    }
    if ((rc = ann_cfg_resolve(c, idx->dim, err))) goto fail;
    return idx;
fail:
    if (err && err->code == ERR_OK) err_set(err, ERR_INVALID, "invalid index file");
    ann_free(idx);
    return NULL;
}

struct ann_index *ann_load(const char *path, struct err *err)
{
    struct gguf_file *f = gguf_open(path, err);
    if (!f) {
        err_prefix(err, "loading index %s", path);
        return NULL;
    }
    struct ann_index *idx = load_from(f, err);
    if (!idx) err_prefix(err, "loading index %s", path);
    return idx;
}

struct ann_index *ann_load_mem(const void *buf, size_t len, struct err *err)
{
    struct gguf_file *f = gguf_open_mem(buf, len, err);
    if (!f) {
        err_prefix(err, "loading index");
        return NULL;
    }
    struct ann_index *idx = load_from(f, err);
    if (!idx) err_prefix(err, "loading index");
    return idx;
}
