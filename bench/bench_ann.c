/* Vector search benchmark (our side). Builds every configuration of the ablation on one set
 * of vectors and queries, measures recall@k against exact search, single-query latency
 * (median, p99; one thread: the serving case), batch throughput (all threads), bytes per
 * vector and build time, and writes:
 *   OUT/data.bin   vectors, queries and exact ground truth for the FAISS peer (same inputs)
 *   OUT/ours.tsv   one row per configuration and search parameter
 *   OUT/env.tsv    measured single-thread memory bandwidth and the exact-search bound
 *
 *   bench_ann --set 27k [--items FILE [--tensor NAME]] --out DIR
 *   bench_ann --set 3m  [--items FILE] --out DIR          (expansion to 3,000,000 items)
 *
 * Without --items the 27k set is a clustered synthetic set (ann_synth_clustered) and the 3m
 * set is the reference's expansion (per-dimension mean and variance kept) of that set. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ann/ann.h"
#include "ann/dist.h"
#include "ann/kmeans.h"
#include "ann/synth.h"
#include "base/pool.h"
#include "engine/gguf.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ memory bandwidth ---- */

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static float sum_avx512(const float *p, size_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(p + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(p + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(p + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}
#endif

static float sum_scalar(const float *p, size_t n)
{
    float a[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) a[j] += p[i + j];
    return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
}

/* Best of 5 single-thread read passes over `bytes` (well above the last-level cache). */
static double measure_bw(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *p = malloc(bytes);
    if (!p) return 0;
    for (size_t i = 0; i < n; i++) p[i] = (float)(i & 7);
    double best = 1e30;
    volatile float sink = 0;
    for (int r = 0; r < 5; r++) {
        double t = now_s();
#if defined(__x86_64__)
        sink += __builtin_cpu_supports("avx512f") ? sum_avx512(p, n) : sum_scalar(p, n);
#else
        sink += sum_scalar(p, n);
#endif
        t = now_s() - t;
        if (t < best) best = t;
    }
    (void)sink;
    free(p);
    return (double)bytes / best;
}

/* ----------------------------------------------------------------------------- input ---- */

/* Reads base vectors from a GGUF file (tensor `name`, or the first 2-D F32 tensor) or a raw
 * little-endian f32 file of rows of `dim`. */
static float *read_items(const char *path, const char *name, int *dim, size_t *n)
{
    struct err e;
    err_clear(&e);
    size_t plen = strlen(path);
    if (plen > 5 && strcmp(path + plen - 5, ".gguf") == 0) {
        struct gguf_file *f = gguf_open(path, &e);
        if (!f) {
            fprintf(stderr, "bench_ann: %s\n", e.msg);
            return NULL;
        }
        const struct gguf_tensor *t = name ? gguf_find_tensor(f, name) : NULL;
        for (uint64_t i = 0; !t && !name && i < gguf_n_tensors(f); i++) {
            const struct gguf_tensor *c = gguf_tensor_at(f, i);
            if (c->type == GGML_TYPE_F32 && c->n_dims == 2) t = c;
        }
        if (!t || t->type != GGML_TYPE_F32 || t->n_dims != 2) {
            fprintf(stderr, "bench_ann: %s: no 2-D f32 tensor%s%s\n", path, name ? " named " : "",
                    name ? name : "");
            gguf_close(f);
            return NULL;
        }
        *dim = (int)t->ne[0];
        *n = (size_t)t->ne[1];
        float *x = malloc(t->nbytes);
        if (x) memcpy(x, t->data, t->nbytes);
        gguf_close(f);
        return x;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *n = (size_t)sz / (sizeof(float) * (size_t)*dim);
    float *x = malloc(*n * (size_t)*dim * sizeof(float));
    if (x && fread(x, sizeof(float) * (size_t)*dim, *n, fp) != *n) {
        free(x);
        x = NULL;
    }
    fclose(fp);
    return x;
}

/* ------------------------------------------------------------------------ configs ---- */

struct bconf {
    const char *family; /* "flat", "flat_sq8", "ivf_sq8", "ivf_pq", "hnsw" */
    struct ann_cfg cfg;
    const int *params;  /* nprobe or ef values; NULL = one run */
    int n_params;
};

static const int nprobes[] = {1, 2, 4, 8, 16, 32, 64, 128};
static const int efs[] = {100, 128, 192, 256, 384, 512};

struct result {
    double recall, lat_med, lat_p99, qps, bpv, build_s;
    int done_q;
};

struct run {
    const float *x, *q;
    size_t n, nq;
    int dim, k, threads;
    const uint32_t *gt; /* (nq, k) */
    struct pool *pool;
    double lat_budget_s;
    FILE *tsv;
    const char *set;
};

/* Single-query latency over the queries (stopping once lat_budget_s is spent and at least
 * 100 were timed), recall over the timed queries, then batch throughput on all threads. */
static struct result measure(const struct run *r, const struct ann_index *idx,
                             const struct ann_search_opts *o)
{
    struct result res = {0};
    struct ann_scratch *s = ann_scratch_new(idx);
    struct ann_hit *hits = malloc(sizeof *hits * (size_t)r->k * r->nq);
    double *lat = malloc(sizeof *lat * r->nq);
    int *counts = malloc(sizeof *counts * r->nq);
    if (!s || !hits || !lat || !counts) {
        fprintf(stderr, "bench_ann: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < 20 && i < r->nq; i++) ann_search(idx, r->q + i * r->dim, o, s, hits);
    double t_all = now_s();
    size_t done = 0;
    for (; done < r->nq; done++) {
        double t = now_s();
        ann_search(idx, r->q + done * r->dim, o, s, hits + done * (size_t)r->k);
        lat[done] = now_s() - t;
        if (done >= 100 && now_s() - t_all > r->lat_budget_s) {
            done++;
            break;
        }
    }
    long hit = 0;
    for (size_t i = 0; i < done; i++) {
        const struct ann_hit *h = hits + i * (size_t)r->k;
        const uint32_t *g = r->gt + i * (size_t)r->k;
        /* both lists are small: a linear check is fine */
        for (int a = 0; a < r->k; a++)
            for (int b = 0; b < r->k; b++)
                if (h[a].id == g[b]) {
                    hit++;
                    break;
                }
    }
    res.recall = (double)hit / ((double)done * r->k);
    qsort(lat, done, sizeof *lat, cmp_double);
    res.lat_med = lat[done / 2] * 1e6;
    res.lat_p99 = lat[(size_t)((double)(done - 1) * 0.99)] * 1e6;
    res.done_q = (int)done;
    /* batch: all queries at once over the pool (only when the single pass finished) */
    if (done == r->nq) {
        double t = now_s();
        ann_search_batch(idx, r->q, r->nq, o, 1, hits, counts, r->pool);
        res.qps = (double)r->nq / (now_s() - t);
    }
    ann_scratch_free(s);
    free(hits);
    free(lat);
    free(counts);
    return res;
}

static void emit(const struct run *r, const char *config, const char *family, int nlist, int m,
                 int param, const struct result *res)
{
    char line[512];
    snprintf(line, sizeof line,
             "ours\t%s\t%zu\t%d\t%s\t%s\t%d\t%d\t%d\t%.4f\t%.1f\t%.1f\t%.0f\t%.2f\t%.2f\n", r->set,
             r->n, r->dim, config, family, nlist, m, param, res->recall, res->lat_med,
             res->lat_p99, res->qps, res->bpv, res->build_s);
    fputs(line, stdout);
    fflush(stdout);
    fputs(line, r->tsv);
    fflush(r->tsv);
}

static void bench_config(const struct run *r, const struct bconf *bc, const float *centroids,
                         double kmeans_s)
{
    struct err e;
    err_clear(&e);
    struct ann_cfg cfg = bc->cfg;
    cfg.centroids = centroids;
    double t = now_s();
    struct ann_index *idx = ann_build(&cfg, r->x, r->n, r->dim, r->pool, &e);
    double build = now_s() - t + kmeans_s;
    if (!idx) {
        fprintf(stderr, "bench_ann: build %s: %s\n", bc->family, e.msg);
        return;
    }
    char name[64];
    int np = bc->params ? bc->n_params : 1;
    for (int p = 0; p < np; p++) {
        int param = bc->params ? bc->params[p] : 0;
        struct ann_search_opts o = {.k = r->k, .nprobe = param, .ef = param};
        struct result res = measure(r, idx, &o);
        res.bpv = ann_bytes_per_vector(idx);
        res.build_s = build;
        switch (cfg.kind) {
        case ANN_KIND_FLAT: snprintf(name, sizeof name, "Flat"); break;
        case ANN_KIND_FLAT_SQ8: snprintf(name, sizeof name, "SQ8"); break;
        case ANN_KIND_IVF_FLAT: snprintf(name, sizeof name, "IVF%d,Flat", cfg.nlist); break;
        case ANN_KIND_IVF_SQ8: snprintf(name, sizeof name, "IVF%d,SQ8", cfg.nlist); break;
        case ANN_KIND_IVF_PQ: snprintf(name, sizeof name, "IVF%d,PQ%d", cfg.nlist, cfg.pq_m); break;
        default: snprintf(name, sizeof name, "HNSW%d", cfg.hnsw_m); break;
        }
        emit(r, name, bc->family, cfg.kind >= ANN_KIND_IVF_FLAT && cfg.kind <= ANN_KIND_IVF_PQ ? cfg.nlist : 0,
             cfg.kind == ANN_KIND_IVF_PQ ? cfg.pq_m : cfg.kind == ANN_KIND_HNSW ? cfg.hnsw_m : 0, param,
             &res);
        /* stop raising nprobe / ef once recall is saturated */
        if (res.recall >= 0.9995) break;
    }
    ann_free(idx);
}

/* -------------------------------------------------------------------------- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_ann --set 27k|3m --out DIR [--items FILE [--tensor NAME]] [--dim 256]\n"
            "                 [--nq 1000] [--k 100] [--threads 2] [--seed 1] [--hnsw 0|1]\n"
            "                 [--n N] [--quick]\n");
}

int main(int argc, char **argv)
{
    const char *set = "27k", *out = NULL, *items = NULL, *tensor = NULL;
    int dim = 256, nq = 1000, k = 100, threads = 2, hnsw = -1, quick = 0;
    size_t n = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) {
            quick = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--set")) set = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--items")) items = v;
        else if (!strcmp(a, "--tensor")) tensor = v;
        else if (!strcmp(a, "--dim")) dim = atoi(v);
        else if (!strcmp(a, "--nq")) nq = atoi(v);
        else if (!strcmp(a, "--k")) k = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--hnsw")) hnsw = atoi(v);
        else if (!strcmp(a, "--n")) n = strtoull(v, NULL, 10);
        else {
            usage();
            return 2;
        }
        i++;
    }
    bool big = !strcmp(set, "3m");
    if (!out || (!big && strcmp(set, "27k")) || dim < 1 || nq < 1 || k < 1 || threads < 1) {
        usage();
        return 2;
    }
    if (hnsw < 0) hnsw = big ? 0 : 1;
    size_t nbase = 27278;
    if (!n) n = big ? 3000000 : nbase;
    struct pool *pool = pool_new(threads);

    /* Base vectors: trained item embeddings if given, else the clustered synthetic set. */
    float *base = NULL;
    const char *source = "clustered-synthetic";
    if (items) {
        base = read_items(items, tensor, &dim, &nbase);
        if (!base) return 1;
        source = "item-embeddings";
    } else {
        base = malloc(sizeof(float) * nbase * dim);
        ann_synth_clustered(nbase, dim, 300, 0.6f, seed, 0, base, pool);
    }
    float *x, *q = malloc(sizeof(float) * (size_t)nq * dim);
    if (!big) {
        n = nbase;
        x = base;
        /* queries: the clustered generator's later rows, or an expansion (alpha 0.9) of the
         * item embeddings, so queries sit near items as user vectors do */
        if (items) ann_synth_expand(base, nbase, dim, (size_t)nq, 0.9f, seed + 7, q, pool);
        else ann_synth_clustered((size_t)nq, dim, 300, 0.6f, seed, nbase, q, pool);
    } else {
        /* the reference's scale-up: N items with the base set's per-dimension moments */
        x = malloc(sizeof(float) * n * dim);
        if (!x) {
            fprintf(stderr, "bench_ann: out of memory for %zu x %d\n", n, dim);
            return 1;
        }
        ann_synth_expand(base, nbase, dim, n, 0.0f, seed + 3, x, pool);
        ann_synth_expand(base, nbase, dim, (size_t)nq, 0.0f, seed + 5, q, pool);
        free(base);
        base = NULL;
    }
    fprintf(stderr, "bench_ann: set %s, %zu x %d (%s), %d queries, k %d, %d threads, isa %s\n",
            set, n, dim, source, nq, k, threads, ann_isa_name(ann_dist_get()->isa));

    /* Exact ground truth with our flat index over all threads. */
    struct err e;
    err_clear(&e);
    struct ann_cfg fc = {.kind = ANN_KIND_FLAT};
    double t0 = now_s();
    struct ann_index *flat = ann_build(&fc, x, n, dim, pool, &e);
    struct ann_hit *gth = malloc(sizeof *gth * (size_t)nq * k);
    int *cnt = malloc(sizeof *cnt * (size_t)nq);
    uint32_t *gt = malloc(sizeof *gt * (size_t)nq * k);
    struct ann_search_opts fo = {.k = k};
    if (!flat || !gth || !cnt || !gt) {
        fprintf(stderr, "bench_ann: %s\n", e.msg[0] ? e.msg : "out of memory");
        return 1;
    }
    ann_search_batch(flat, q, (size_t)nq, &fo, 1, gth, cnt, pool);
    for (size_t i = 0; i < (size_t)nq * k; i++) gt[i] = gth[i].id;
    fprintf(stderr, "bench_ann: ground truth in %.1f s\n", now_s() - t0);

    char path[1024];
    snprintf(path, sizeof path, "%s/data.bin", out);
    FILE *df = fopen(path, "wb");
    if (!df) {
        perror(path);
        return 1;
    }
    uint32_t hdr[8] = {0x424e4e41u /* "ANNB" */, 1, (uint32_t)n, (uint32_t)nq, (uint32_t)dim,
                       (uint32_t)k, 0, 0};
    fwrite(hdr, sizeof hdr, 1, df);
    fwrite(x, sizeof(float) * dim, n, df);
    fwrite(q, sizeof(float) * dim, (size_t)nq, df);
    fwrite(gt, sizeof(uint32_t) * k, (size_t)nq, df);
    fclose(df);

    /* Memory bandwidth (one thread) and the exact-search bound. */
    double bw = measure_bw((size_t)1 << 30);
    snprintf(path, sizeof path, "%s/ours.tsv", out);
    FILE *tsv = fopen(path, "w");
    if (!tsv) {
        perror(path);
        return 1;
    }
    fputs("sys\tset\tn\tdim\tconfig\tfamily\tnlist\tm\tparam\trecall\tlat_med_us\tlat_p99_us\t"
          "qps\tbytes_per_vec\tbuild_s\n", tsv);
    struct run r = {x, q, n, (size_t)nq, dim, k, threads, gt, pool, big ? 20.0 : 30.0, tsv, set};

    /* Flat first: its latency against the bandwidth bound. */
    struct bconf flat_c = {"flat", {.kind = ANN_KIND_FLAT}, NULL, 0};
    bench_config(&r, &flat_c, NULL, 0);
    ann_free(flat);
    flat = NULL;

    snprintf(path, sizeof path, "%s/env.tsv", out);
    FILE *ef = fopen(path, "w");
    if (ef) {
        double bytes = (double)n * dim * 4;
        fprintf(ef, "key\tvalue\nbandwidth_gbs\t%.2f\nflat_bytes\t%.0f\nflat_bound_us\t%.1f\n"
                    "isa\t%s\nthreads\t%d\nsource\t%s\nn\t%zu\nnq\t%d\nk\t%d\n",
                bw / 1e9, bytes, bytes / bw * 1e6, ann_isa_name(ann_dist_get()->isa), threads,
                source, n, nq, k);
        fclose(ef);
    }
    fprintf(stderr, "bench_ann: memory bandwidth %.1f GB/s (one thread): exact-scan bound %.1f us\n",
            bw / 1e9, (double)n * dim * 4 / bw * 1e6);

    if (!big) {
        struct bconf sq = {"flat_sq8", {.kind = ANN_KIND_FLAT_SQ8}, NULL, 0};
        bench_config(&r, &sq, NULL, 0);
    }

    static const int nlists_small[] = {256, 512, 1024}, nlists_big[] = {4096};
    const int *nlists = big ? nlists_big : nlists_small;
    int n_nlists = big ? 1 : (quick ? 1 : 3);
    for (int li = 0; li < n_nlists; li++) {
        int nlist = nlists[li];
        /* One coarse quantizer per nlist, shared by the code types (FAISS does the same with a
         * trained quantizer); its k-means time is added to each build time. */
        float *cent = malloc(sizeof(float) * (size_t)nlist * dim);
        struct ann_kmeans_cfg kc = {10, 0, big ? 64 : 256, seed, 1};
        double tk = now_s();
        if (ann_kmeans(x, n, dim, nlist, &kc, cent, pool, &e) != 0) {
            fprintf(stderr, "bench_ann: k-means: %s\n", e.msg);
            return 1;
        }
        tk = now_s() - tk;
        fprintf(stderr, "bench_ann: k-means nlist %d in %.1f s\n", nlist, tk);
        struct bconf bcs[] = {
            {"ivf_sq8", {.kind = ANN_KIND_IVF_SQ8, .nlist = nlist}, nprobes, 8},
            {"ivf_pq", {.kind = ANN_KIND_IVF_PQ, .nlist = nlist, .pq_m = 32}, nprobes, 8},
            {"ivf_pq", {.kind = ANN_KIND_IVF_PQ, .nlist = nlist, .pq_m = 64}, nprobes, 8},
        };
        for (size_t c = 0; c < sizeof bcs / sizeof bcs[0]; c++) bench_config(&r, &bcs[c], cent, tk);
        free(cent);
    }
    if (hnsw) {
        struct bconf h = {"hnsw", {.kind = ANN_KIND_HNSW, .hnsw_m = 32, .ef_construction = 40},
                          efs, (int)(sizeof efs / sizeof efs[0])};
        bench_config(&r, &h, NULL, 0);
    }
    fclose(tsv);
    free(x);
    free(q);
    free(gt);
    free(gth);
    free(cnt);
    pool_free(pool);
    return 0;
}
