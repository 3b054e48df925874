/** Vector search: one opaque index type with a common API over six layouts.
 *
 *   ANN_KIND_FLAT      exact, f32 vectors scanned in full
 *   ANN_KIND_FLAT_SQ8  every vector scalar-quantized to 8 bits per dimension, scanned in full
 *   ANN_KIND_IVF_FLAT  inverted lists (k-means coarse quantizer), f32 residual-free vectors
 *   ANN_KIND_IVF_SQ8   inverted lists, residuals to the centroid quantized to 8 bits/dim
 *   ANN_KIND_IVF_PQ    inverted lists, residuals product-quantized (m sub-quantizers x 8 bits,
 *                      asymmetric distance with per-query lookup tables)
 *   ANN_KIND_HNSW      hierarchical navigable small-world graph over f32 vectors
 *
 *  Metrics: inner product (bigger is better; hits carry the inner product) or squared L2
 *  (smaller is better; hits carry the squared distance). Hits always come best first.
 *  Ids are positions: the i-th vector added gets id i.
 *
 *  An exclusion set (sorted ids, e.g. the items a user has seen) is checked inside the scan,
 *  so k hits come back whenever k allowed vectors are reachable.
 *
 *  Files are GGUF v3 with general.architecture "nanorec.index.<kind>"; loading maps the file
 *  read-only and validates every tensor shape, list offset, id and graph link (docs/ann.md). */
#ifndef ANN_ANN_H
#define ANN_ANN_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"

enum ann_metric { ANN_METRIC_IP = 0, ANN_METRIC_L2 = 1 };

enum ann_kind {
    ANN_KIND_FLAT = 0,
    ANN_KIND_FLAT_SQ8 = 1,
    ANN_KIND_IVF_FLAT = 2,
    ANN_KIND_IVF_SQ8 = 3,
    ANN_KIND_IVF_PQ = 4,
    ANN_KIND_HNSW = 5,
    ANN_KIND_COUNT
};

/** Build parameters. Zero fields take the defaults shown. */
struct ann_cfg {
    enum ann_kind kind;
    enum ann_metric metric;
    int nlist;              /* IVF: inverted lists (256) */
    int pq_m;               /* IVF-PQ: sub-quantizers, dim % pq_m == 0 (dim / 4) */
    int hnsw_m;             /* HNSW: links per node on upper levels, 2M on level 0 (32) */
    int ef_construction;    /* HNSW: candidate list while inserting (40) */
    int kmeans_iters;       /* k-means iterations of the coarse quantizer (10, as FAISS) */
    int pq_iters;           /* k-means iterations of each PQ sub-quantizer (25, as FAISS) */
    int kmeans_plusplus;    /* 1: k-means++ seeding; 0: random distinct points */
    int max_train_per_centroid; /* training sample = min(n, this * k) (256, as FAISS) */
    uint64_t seed;          /* every random choice derives from it (0 is a valid seed) */
    const float *centroids; /* IVF: a trained coarse quantizer (nlist, dim) to use instead of
                               running k-means (shared between indexes); NULL = train */
};

/** Search parameters. */
struct ann_search_opts {
    int k;                   /* hits wanted, >= 1 */
    int nprobe;              /* IVF: lists scanned (default 8, capped at nlist) */
    int ef;                  /* HNSW: candidate list size (default max(k, 64); raised to k) */
    const uint32_t *exclude; /* ids never returned, sorted ascending (duplicates allowed) */
    size_t n_exclude;
};

struct ann_hit {
    uint32_t id;
    float score; /* inner product (IP) or squared distance (L2) */
};

struct ann_index;   /* opaque */
struct ann_scratch; /* per-thread search memory (heaps, lookup tables, visited marks) */

/** Names: "flat", "flat_sq8", "ivf_flat", "ivf_sq8", "ivf_pq", "hnsw"; NULL if unknown. */
const char *ann_kind_name(enum ann_kind kind);
/** Parses a kind name; -1 if unknown. */
int ann_kind_parse(const char *s);

/** Builds an index over x (n, dim): trains quantizers (k-means on a seeded sample), then adds
 *  the n vectors with ids 0..n-1. Threads over `pool` (may be NULL). n may be 0 for FLAT and
 *  HNSW; FLAT_SQ8 needs 1 vector, IVF kinds nlist, IVF-PQ also 256 (one per codeword).
 *  NULL + err on bad parameters or memory. */
struct ann_index *ann_build(const struct ann_cfg *cfg, const float *x, size_t n, int dim,
                            struct pool *pool, struct err *err);

/** Appends n vectors (ids continue from ann_size()). Quantizers are not retrained. An index
 *  loaded from a file is copied into memory first. Returns 0 or a negative err_code. */
int ann_add(struct ann_index *idx, const float *x, size_t n, struct pool *pool, struct err *err);

void ann_free(struct ann_index *idx);

size_t ann_size(const struct ann_index *idx);
int ann_dim(const struct ann_index *idx);
enum ann_kind ann_kind_of(const struct ann_index *idx);
enum ann_metric ann_metric_of(const struct ann_index *idx);
/** The build parameters in effect (defaults filled in). */
struct ann_cfg ann_config(const struct ann_index *idx);
/** Bytes of index memory per stored vector (codes, ids, links; shared codebooks and
 *  centroids amortized over n), the number FAISS reports as code size + id. */
double ann_bytes_per_vector(const struct ann_index *idx);

/** Scratch for one thread's searches on `idx` (or on any index of the same kind and no
 *  more vectors). NULL on allocation failure. */
struct ann_scratch *ann_scratch_new(const struct ann_index *idx);
void ann_scratch_free(struct ann_scratch *s);

/** Searches one query q (dim floats). Writes up to o->k hits to out, best first, and returns
 *  how many (fewer than k only when fewer allowed vectors are reachable), or a negative
 *  err_code for bad options. `s` may be NULL (then allocated for this call). */
int ann_search(const struct ann_index *idx, const float *q, const struct ann_search_opts *o,
               struct ann_scratch *s, struct ann_hit *out);

/** Searches nq queries (nq, dim) over the pool's threads. `o` points at n_opts options: 1
 *  (shared by every query) or nq (one per query, e.g. per-user exclusion sets); all must have
 *  the same k. out holds nq * k hits (row i at out + i*k), counts[i] the hits of query i.
 *  Returns 0 or a negative err_code. */
int ann_search_batch(const struct ann_index *idx, const float *q, size_t nq,
                     const struct ann_search_opts *o, size_t n_opts, struct ann_hit *out,
                     int *counts, struct pool *pool);

/** Writes the index as a GGUF v3 file (atomically). 0 or negative err_code. */
int ann_save(const struct ann_index *idx, const char *path, struct err *err);
/** Maps a file written by ann_save and validates it completely. NULL + err naming the
 *  problem on a truncated, corrupted or foreign file. */
struct ann_index *ann_load(const char *path, struct err *err);
/** Same over a caller-owned buffer that outlives the index (tests, fuzzing). */
struct ann_index *ann_load_mem(const void *buf, size_t len, struct err *err);

#endif
