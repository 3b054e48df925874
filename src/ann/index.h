/** Internals shared by the files of src/ann: the index struct, the search scratch, the top-k
 *  heap and the exclusion check. Not part of the public API (use ann/ann.h). */
#ifndef ANN_INDEX_H
#define ANN_INDEX_H

#include <float.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ann/ann.h"
#include "ann/dist.h"

#if defined(__SSE2__)
#include <emmintrin.h> /* baseline on x86-64: the scan pre-filter needs no target attribute */
#endif

struct gguf_file;

#define ANN_PQ_K 256       /* centroids per sub-quantizer (8-bit codes) */
/* SQ8 steps per dimension, as FAISS's QT_8bit: code = floor(255 t), t = (x - vmin) / vdiff
 * clamped to [0, 1], decoded at vmin + (code + 0.5) / 255 * vdiff, so our codes are FAISS's
 * bit for bit. Index files written before the sq_levels key used 256 bins (code = floor(256
 * t)) and are read with that (ann_index.sq_levels). */
#define ANN_SQ_LEVELS 255
#define ANN_HNSW_MAX_LEVEL 30
#define ANN_MAX_DIM 65536

struct ann_index {
    struct ann_cfg cfg; /* defaults filled in */
    int dim;
    size_t n;
    /* When loaded from a file, the arrays below point into the read-only mapping; ann_add
     * first copies them (ann_index_own). `file` is a struct gguf_file *. */
    struct gguf_file *file;
    bool mapped;

    /* FLAT and HNSW: vectors (n, dim). */
    float *vecs;
    /* SQ8 (flat and IVF): per-dimension range; codes of FLAT_SQ8 are (n, dim). */
    float *sq_vmin, *sq_vdiff;
    int sq_levels;         /* ANN_SQ_LEVELS, or 256 for files written before the key */
    uint8_t *codes;

    /* IVF: centroids (nlist, dim), their squared norms and inverse norms (inner product ranks
     * lists by <q, c> / ||c||: the centroid's direction), lists as offsets into ids/codes. */
    int nlist;
    float *centroids, *cnorm, *cinv;
    uint64_t *list_off;    /* nlist + 1 entries, list l holds [off[l], off[l+1]) */
    uint32_t *list_ids;    /* n */
    uint8_t *list_codes;   /* n * code_size */
    float *list_terms;     /* IVF-PQ with L2: ||r||^2 + 2<c, r> per vector; else NULL */
    size_t code_size;      /* bytes per vector in list_codes */

    /* PQ: codebooks (m, 256, dsub). */
    int pq_m, pq_dsub;
    float *pq_cb;

    /* HNSW: levels (n), level-0 links (n, 1 + 2M) = count then ids, upper links: node i's
     * level l >= 1 list at upper + upper_off[i] + (l-1)*(1+M). */
    int max_level;
    uint32_t entry;
    uint8_t *levels;
    uint32_t *links0;
    uint32_t *upper_off;   /* 32-bit: the upper lists hold < 2^32 entries (checked) */
    uint32_t *upper;
    size_t upper_len;
};

/** A bounded max-heap on distance (worst on top): the current top-k. */
struct ann_topk {
    int k, n;
    float *d;
    uint32_t *id;
};

struct ann_scratch {
    size_t n_cap;      /* vectors the visited array covers */
    int heap_cap;      /* entries each heap array holds */
    float *buf;        /* ANN_SCAN_BLOCK scores */
    float *qtmp;       /* 2 * dim floats: transformed query */
    float *lut;        /* PQ lookup table (m * 256) */
    uint16_t *lut16;   /* the same in 16-bit fixed point (m >= 32; ann_pq_lut16), then its
                          byte planes (ann_pq_lut16_planes): 2 * lut_cap uint16 */
    size_t lut_cap;
    float *cscore;     /* IVF: per-list coarse distance */
    uint32_t *probe;   /* IVF: lists to scan */
    int cap_lists;
    struct ann_topk top;
    /* HNSW */
    uint16_t *visited;
    uint16_t epoch;
    float *cand_d;
    uint32_t *cand_id;
    int cand_cap;      /* entries cand_d / cand_id hold (grows during a search) */
    int dim_cap;
};

#define ANN_SCAN_BLOCK 512

/** True if id is in the sorted exclusion set. */
static inline bool ann_excluded(const struct ann_search_opts *o, uint32_t id)
{
    size_t lo = 0, hi = o->n_exclude;
    const uint32_t *e = o->exclude;
    while (lo < hi) {
        size_t mid = (lo + hi) >> 1;
        if (e[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < o->n_exclude && e[lo] == id;
}

/** Pushes (d, id) when the heap has room or d beats the worst; keeps the heap property. */
static inline void ann_topk_push(struct ann_topk *h, float d, uint32_t id)
{
    if (h->n < h->k) {
        int i = h->n++;
        while (i > 0) {
            int p = (i - 1) >> 1;
            if (h->d[p] >= d) break;
            h->d[i] = h->d[p];
            h->id[i] = h->id[p];
            i = p;
        }
        h->d[i] = d;
        h->id[i] = id;
        return;
    }
    if (d >= h->d[0]) return;
    int i = 0, n = h->n;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        float dm = d;
        if (l < n && h->d[l] > dm) {
            m = l;
            dm = h->d[l];
        }
        if (r < n && h->d[r] > dm) m = r;
        if (m == i) break;
        h->d[i] = h->d[m];
        h->id[i] = h->id[m];
        i = m;
    }
    h->d[i] = d;
    h->id[i] = id;
}

static inline float ann_topk_worst(const struct ann_topk *h)
{
    return h->n < h->k ? FLT_MAX : h->d[0];
}

/** Offers nb scanned scores to the heap: distance = sign * buf[i] + add (sign -1 turns an
 *  inner product into a distance). Ids are ids[i], or base + i when ids is NULL. The
 *  exclusion set is consulted only for candidates that would enter the heap.
 *
 *  Once the heap is full almost no score enters it, so each group of 16 is first tested with
 *  a branch-free count that the compiler vectorizes; only groups holding a candidate take
 *  the per-score loop (same distances, same order of pushes, so the same heap). */
static inline void ann_scan_push(struct ann_topk *h, const float *buf, size_t nb, float sign,
                                 float add, const uint32_t *ids, uint32_t base,
                                 const struct ann_search_opts *o)
{
    float thr = ann_topk_worst(h);
    for (size_t g = 0; g < nb; g += 16) {
        size_t e = nb - g < 16 ? nb : g + 16;
        if (e == g + 16) {
#if defined(__SSE2__)
            const __m128 vs = _mm_set1_ps(sign), va = _mm_set1_ps(add), vt = _mm_set1_ps(thr);
            __m128 c0 = _mm_cmplt_ps(_mm_add_ps(_mm_mul_ps(vs, _mm_loadu_ps(buf + g)), va), vt);
            __m128 c1 = _mm_cmplt_ps(_mm_add_ps(_mm_mul_ps(vs, _mm_loadu_ps(buf + g + 4)), va), vt);
            __m128 c2 = _mm_cmplt_ps(_mm_add_ps(_mm_mul_ps(vs, _mm_loadu_ps(buf + g + 8)), va), vt);
            __m128 c3 = _mm_cmplt_ps(_mm_add_ps(_mm_mul_ps(vs, _mm_loadu_ps(buf + g + 12)), va), vt);
            if (!_mm_movemask_ps(_mm_or_ps(_mm_or_ps(c0, c1), _mm_or_ps(c2, c3)))) continue;
#else
            int any = 0;
            for (size_t i = g; i < g + 16; i++) any |= sign * buf[i] + add < thr;
            if (!any) continue;
#endif
        }
        for (size_t i = g; i < e; i++) {
            float d = sign * buf[i] + add;
            if (d < thr) {
                uint32_t id = ids ? ids[i] : base + (uint32_t)i;
                if (o->n_exclude && ann_excluded(o, id)) continue;
                ann_topk_push(h, d, id);
                thr = ann_topk_worst(h);
            }
        }
    }
}

/** Empties the heap into out, best first, converting distances to scores (IP: -d).
 *  Returns the count. */
int ann_topk_drain(struct ann_topk *h, enum ann_metric metric, struct ann_hit *out);

/** Ensures the scratch can hold heaps of `cap` entries and `lists` coarse scores and a LUT
 *  of `lut` floats. 0 or ERR_NOMEM. */
int ann_scratch_reserve(struct ann_scratch *s, int cap, int lists, size_t lut, int dim);

/** Cache-line alignment of the vector and code arrays the index owns. */
#define ANN_ALIGN 64
/** realloc for the large row arrays (vectors, codes): the block returned is ANN_ALIGN-byte
 *  aligned, keeps the first old_bytes of p and is freed with free(). A 1 KB row that starts
 *  16 bytes past a cache line (plain malloc of a large block) makes every 64-byte load span
 *  two lines: the exact scan then streams ~30 % below the memory bandwidth. p is left
 *  untouched and NULL returned when out of memory. */
void *ann_realloc_aligned(void *p, size_t old_bytes, size_t new_bytes);

/** Frees arrays this index owns (not the mapped ones). */
void ann_index_release(struct ann_index *idx);
/** Copies mapped arrays into owned memory so the index can grow. 0 or ERR_NOMEM. */
int ann_index_own(struct ann_index *idx);
/** Fills cfg defaults for dim; ERR_INVALID with err on bad parameters. */
int ann_cfg_resolve(struct ann_cfg *cfg, int dim, struct err *err);

/* Per-layout entry points (flat.c, ivf.c, hnsw.c). */
int ann_flat_train(struct ann_index *idx, const float *x, size_t n, struct err *err);
int ann_flat_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                 struct err *err);
int ann_flat_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                    struct ann_scratch *s);

/** Exact batched search (blocked over queries); same results as ann_flat_search per query. */
int ann_flat_search_batch(const struct ann_index *idx, const float *q, size_t nq,
                          const struct ann_search_opts *o, size_t n_opts, struct ann_hit *out,
                          int *counts, struct pool *pool);

int ann_ivf_train(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                  struct err *err);
/** Fills cnorm (||c||^2) and cinv (1 / ||c||, 0 for a zero centroid) from the centroids. */
void ann_ivf_centroid_norms(struct ann_index *idx);
int ann_ivf_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                struct err *err);
int ann_ivf_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                   struct ann_scratch *s);

int ann_hnsw_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool,
                 struct err *err);
int ann_hnsw_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
                    struct ann_scratch *s);

/** Unmaps a loaded index's file (io.c); no-op for built indexes. */
void ann_io_close(struct ann_index *idx);

/** Trains the SQ8 range (per-dimension min / max) on rows of x. */
int ann_sq8_train(const float *x, size_t n, int dim, float *vmin, float *vdiff);
/** Encodes one vector to dim bytes with `levels` steps per range (ANN_SQ_LEVELS). */
void ann_sq8_encode(const float *vmin, const float *vdiff, int levels, const float *x, int dim,
                    uint8_t *c);
/** Decodes dim bytes to floats (bin centres). */
void ann_sq8_decode(const float *vmin, const float *vdiff, int levels, const uint8_t *c, int dim,
                    float *x);

#endif
