/* Vector search benchmark (our side). Builds every configuration of the ablation on one set
 * of vectors and queries, measures recall@k against exact search, single-query latency
 * (median, p99; one thread: the serving case), batch throughput (all threads), bytes per
 * vector and build time, and writes:
 *   DATA           vectors, queries and exact ground truth for the FAISS peer (same inputs);
 *                  default OUT/data.bin. The file is memory-mapped (the 3m set is 3.1 GB) and
 *                  reused by later runs when its header matches (set, sizes, seed), so the
 *                  vectors exist once on disk and neither side holds a second private copy.
 *   OUT/ours.tsv   one row per configuration and search parameter
 *   OUT/env.tsv    measured single-thread memory bandwidth and the exact-search bound
 *
 *   bench_ann --set 27k [--items FILE [--tensor NAME]] --out DIR [--data FILE]
 *   bench_ann --set 3m  --out DIR [--data var/ann-3m/data.bin]   (expansion to 3,000,000)
 *   --only flat,ivf_sq8,...  runs only these families (flat, flat_sq8, ivf_sq8, ivf_pq, hnsw)
 *                            and appends to OUT/ours.tsv (split runs, one lock hold each)
 *
 * Without --items the 27k set is a clustered synthetic set (ann_synth_clustered) and the 3m
 * set is the reference's expansion (per-dimension mean and variance kept) of that set. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* One streaming read pass over p (the widest loads this CPU has). */
static float stream_sum(const float *p, size_t n)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) return sum_avx512(p, n);
#endif
    return sum_scalar(p, n);
}

/* Single-thread streaming read bandwidth: `passes` full read passes over a buffer of `bytes`
 * (far above the last-level cache, so every pass comes from DRAM); best and median pass.
 * The best pass is the bound an exact scan can approach; the median shows how much the
 * shared machine took away during the run. */
struct bw_probe {
    double best, median; /* bytes per second */
};

static struct bw_probe measure_bw(size_t bytes, int passes)
{
    struct bw_probe bp = {0, 0};
    size_t n = bytes / sizeof(float);
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64); /* aligned like the index rows */
    double t_pass[16];
    if (!p || passes < 1 || passes > 16) {
        free(p);
        return bp;
    }
    for (size_t i = 0; i < n; i++) p[i] = (float)(i & 7);
    volatile float sink = 0;
    for (int r = 0; r < passes; r++) {
        double t = now_s();
        sink += stream_sum(p, n);
        t_pass[r] = now_s() - t;
    }
    (void)sink;
    free(p);
    qsort(t_pass, (size_t)passes, sizeof t_pass[0], cmp_double);
    bp.best = (double)bytes / t_pass[0];
    bp.median = (double)bytes / t_pass[passes / 2];
    return bp;
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
/* 3m: a short sweep (the run must fit one lock hold); FAISS runs 1..256, we add 320, 384 and
 * 512 so our curve reaches past FAISS's highest-recall point, with steps fine enough that
 * the recall-matched comparison does not jump a whole doubling of nprobe */
static const int nprobes_big[] = {1, 4, 16, 64, 256, 320, 384, 512};
static const int efs[] = {100, 128, 192, 256, 384, 512};

struct result {
    double recall, lat_med, lat_p99, qps, bpv, build_s;
    int done_q;
};

/* Exact scan against the bandwidth bound, measured in pairs so both sides of the ratio see
 * the same machine state (the VM shares memory bandwidth with other jobs, which moves both
 * numbers by 2x within minutes): `rounds` times, one streaming-read pass over a 1 GiB buffer
 * (gives that moment's bound: bytes scanned / bandwidth) then one exact query. */
struct pair_result {
    int rounds;
    double ratio_med, ratio_min, q_med_us, bound_med_us;
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
    struct pair_result *pair; /* flat: paired bandwidth check (NULL: skip) */
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

static void pair_check(const struct run *r, const struct ann_index *idx, struct pair_result *pr)
{
    size_t pbytes = (size_t)1 << 30, pn = pbytes / sizeof(float);
    float *p = aligned_alloc(64, (pbytes + 63) / 64 * 64);
    struct ann_scratch *s = ann_scratch_new(idx);
    struct ann_hit *hits = malloc(sizeof *hits * (size_t)r->k);
    double ratio[64], tq[64], tb[64];
    int rounds = pr->rounds > 64 ? 64 : pr->rounds;
    if (!p || !s || !hits || rounds < 1) {
        pr->rounds = 0;
        goto out;
    }
    for (size_t i = 0; i < pn; i++) p[i] = (float)(i & 7);
    double flat_bytes = (double)r->n * r->dim * sizeof(float);
    struct ann_search_opts o = {.k = r->k};
    volatile float sink = 0;
    for (int i = 0; i < rounds; i++) {
        double t = now_s();
        sink += stream_sum(p, pn);
        tb[i] = (now_s() - t) * flat_bytes / (double)pbytes; /* this moment's bound */
        t = now_s();
        ann_search(idx, r->q + (size_t)(i % (int)r->nq) * r->dim, &o, s, hits);
        tq[i] = now_s() - t;
        ratio[i] = tq[i] / tb[i];
    }
    (void)sink;
    qsort(ratio, (size_t)rounds, sizeof ratio[0], cmp_double);
    qsort(tq, (size_t)rounds, sizeof tq[0], cmp_double);
    qsort(tb, (size_t)rounds, sizeof tb[0], cmp_double);
    pr->rounds = rounds;
    pr->ratio_med = ratio[rounds / 2];
    pr->ratio_min = ratio[0];
    pr->q_med_us = tq[rounds / 2] * 1e6;
    pr->bound_med_us = tb[rounds / 2] * 1e6;
    fprintf(stderr,
            "bench_ann: paired check, %d rounds: exact query %.0f us, bound %.0f us (medians); "
            "query / bound median %.2f, best %.2f\n",
            rounds, pr->q_med_us, pr->bound_med_us, pr->ratio_med, pr->ratio_min);
out:
    free(p);
    ann_scratch_free(s);
    free(hits);
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
    if (cfg.kind == ANN_KIND_FLAT && r->pair) pair_check(r, idx, r->pair);
    ann_free(idx);
}

/* ------------------------------------------------------------------- data file ---- */

/* DATA layout (read by bench/peers/faiss_bench.py): 8 u32 header {magic "ANNB", version 1, n,
 * nq, dim, k, seed (low 32 bits), source}, then x (n, dim) f32, q (nq, dim) f32 and the exact
 * top-k ids gt (nq, k) u32. */
#define DATA_MAGIC 0x424e4e41u
enum { SRC_CLUSTERED = 0, SRC_EXPANSION = 1, SRC_ITEMS = 2 };

struct data_map {
    void *map;
    size_t len;
    float *x, *q;
    uint32_t *gt;
};

static size_t data_len(size_t n, size_t nq, int dim, int k)
{
    return 32 + sizeof(float) * (n + nq) * (size_t)dim + sizeof(uint32_t) * nq * (size_t)k;
}

static void data_point(struct data_map *dm, size_t n, size_t nq, int dim)
{
    dm->x = (float *)((char *)dm->map + 32);
    dm->q = dm->x + n * (size_t)dim;
    dm->gt = (uint32_t *)(dm->q + nq * (size_t)dim);
}

/* Maps an existing data file read-only when its header is exactly `want` and its length
 * matches; 0 on success, -1 when it is absent or describes another set. */
static int data_reuse(const char *path, const uint32_t want[8], struct data_map *dm)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    struct stat st;
    size_t len = data_len(want[2], want[3], (int)want[4], (int)want[5]);
    uint32_t hdr[8];
    int ok = fstat(fd, &st) == 0 && (size_t)st.st_size == len &&
             pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr && !memcmp(hdr, want, sizeof hdr);
    void *m = ok ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    close(fd);
    if (m == MAP_FAILED) return -1;
    dm->map = m;
    dm->len = len;
    data_point(dm, want[2], want[3], (int)want[4]);
    return 0;
}

/* Creates PATH.tmp of the right length, mapped read-write; the caller fills it and calls
 * data_commit, which renames it into place (a killed run never leaves a file that looks
 * complete). */
static int data_create(const char *path, const uint32_t hdr[8], struct data_map *dm)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    size_t len = data_len(hdr[2], hdr[3], (int)hdr[4], (int)hdr[5]);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(tmp);
        return -1;
    }
    if (ftruncate(fd, (off_t)len) != 0) {
        perror(tmp);
        close(fd);
        return -1;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        perror(tmp);
        return -1;
    }
    memcpy(m, hdr, 32);
    dm->map = m;
    dm->len = len;
    data_point(dm, hdr[2], hdr[3], (int)hdr[4]);
    return 0;
}

static int data_commit(const char *path, struct data_map *dm)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (msync(dm->map, dm->len, MS_SYNC) != 0 || munmap(dm->map, dm->len) != 0 ||
        rename(tmp, path) != 0) {
        perror(path);
        return -1;
    }
    dm->map = NULL;
    return 0;
}

/* -------------------------------------------------------------------------- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_ann --set 27k|3m --out DIR [--data FILE] [--items FILE [--tensor NAME]]\n"
            "                 [--dim 256] [--nq 1000] [--k 100] [--threads 2] [--seed 1]\n"
            "                 [--hnsw 0|1] [--only flat,flat_sq8,ivf_sq8,ivf_pq,hnsw] [--n N]\n"
            "                 [--quick]\n");
}

/* `only` is NULL (everything) or a comma-separated list of families. */
static bool wanted(const char *only, const char *family)
{
    if (!only) return true;
    size_t fl = strlen(family);
    for (const char *p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == fl && !strncmp(p, family, l)) return true;
        p += l + (e ? 1 : 0);
    }
    return false;
}

int main(int argc, char **argv)
{
    const char *set = "27k", *out = NULL, *items = NULL, *tensor = NULL, *data = NULL, *only = NULL;
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
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--only")) only = v;
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
    /* HNSW: on by default at 27k only; `--only ...,hnsw` asks for it explicitly */
    if (hnsw < 0) hnsw = only ? wanted(only, "hnsw") : !big;
    size_t nbase = 27278;
    if (!n) n = big ? 3000000 : nbase;
    struct pool *pool = pool_new(threads);
    char dpath[1024];
    if (data) snprintf(dpath, sizeof dpath, "%s", data);
    else snprintf(dpath, sizeof dpath, "%s/data.bin", out);

    /* Base vectors: trained item embeddings if given, else the clustered synthetic set. The
     * 3m set is the reference's expansion of the 27k set. A data file with the same header
     * (never for --items: the file may have changed) is reused as it is. */
    const char *source = items ? "item-embeddings" : big ? "expansion-of-clustered-synthetic"
                                                         : "clustered-synthetic";
    float *base = NULL;
    if (items) {
        base = read_items(items, tensor, &dim, &nbase);
        if (!base) return 1;
        if (!big) n = nbase;
    }
    uint32_t hdr[8] = {DATA_MAGIC, 1, (uint32_t)n, (uint32_t)nq, (uint32_t)dim, (uint32_t)k,
                       (uint32_t)seed, items ? SRC_ITEMS : big ? SRC_EXPANSION : SRC_CLUSTERED};
    struct data_map dm = {0};
    double t0 = now_s();
    if (!items && data_reuse(dpath, hdr, &dm) == 0) {
        fprintf(stderr, "bench_ann: reusing %s (vectors, queries, ground truth)\n", dpath);
    } else {
        if (data_create(dpath, hdr, &dm) != 0) return 1;
        if (!base) {
            base = malloc(sizeof(float) * nbase * dim);
            if (!base) return 1;
            ann_synth_clustered(nbase, dim, 300, 0.6f, seed, 0, base, pool);
        }
        if (!big) {
            memcpy(dm.x, base, sizeof(float) * n * dim);
            /* queries: the clustered generator's later rows, or an expansion (alpha 0.9) of
             * the item embeddings, so queries sit near items as user vectors do */
            if (items) ann_synth_expand(base, nbase, dim, (size_t)nq, 0.9f, seed + 7, dm.q, pool);
            else ann_synth_clustered((size_t)nq, dim, 300, 0.6f, seed, nbase, dm.q, pool);
        } else {
            /* the reference's scale-up: N items with the base set's per-dimension moments */
            ann_synth_expand(base, nbase, dim, n, 0.0f, seed + 3, dm.x, pool);
            ann_synth_expand(base, nbase, dim, (size_t)nq, 0.0f, seed + 5, dm.q, pool);
        }
        fprintf(stderr, "bench_ann: vectors generated in %.1f s\n", now_s() - t0);
        /* Exact ground truth: our flat index, batched (blocked A.B^T) over all threads. */
        struct err e;
        err_clear(&e);
        struct ann_cfg fc = {.kind = ANN_KIND_FLAT};
        t0 = now_s();
        struct ann_index *flat = ann_build(&fc, dm.x, n, dim, pool, &e);
        struct ann_hit *gth = malloc(sizeof *gth * (size_t)nq * k);
        int *cnt = malloc(sizeof *cnt * (size_t)nq);
        struct ann_search_opts fo = {.k = k};
        if (!flat || !gth || !cnt) {
            fprintf(stderr, "bench_ann: %s\n", e.msg[0] ? e.msg : "out of memory");
            return 1;
        }
        ann_search_batch(flat, dm.q, (size_t)nq, &fo, 1, gth, cnt, pool);
        for (size_t i = 0; i < (size_t)nq * k; i++) dm.gt[i] = gth[i].id;
        ann_free(flat);
        free(gth);
        free(cnt);
        fprintf(stderr, "bench_ann: ground truth in %.1f s\n", now_s() - t0);
        if (data_commit(dpath, &dm) != 0 || data_reuse(dpath, hdr, &dm) != 0) {
            fprintf(stderr, "bench_ann: %s: cannot map the file just written\n", dpath);
            return 1;
        }
    }
    free(base);
    const float *x = dm.x, *q = dm.q;
    const uint32_t *gt = dm.gt;
    fprintf(stderr, "bench_ann: set %s, %zu x %d (%s), %d queries, k %d, %d threads, isa %s\n",
            set, n, dim, source, nq, k, threads, ann_isa_name(ann_dist_get()->isa));

    /* Memory bandwidth (one thread, 7 passes over 1 GiB) and the exact-search bound. */
    struct bw_probe bw = measure_bw((size_t)1 << 30, 7);
    char path[1100];
    snprintf(path, sizeof path, "%s/ours.tsv", out);
    struct stat st;
    bool append = only && stat(path, &st) == 0 && st.st_size > 0;
    FILE *tsv = fopen(path, append ? "a" : "w");
    if (!tsv) {
        perror(path);
        return 1;
    }
    if (!append)
        fputs("sys\tset\tn\tdim\tconfig\tfamily\tnlist\tm\tparam\trecall\tlat_med_us\tlat_p99_us\t"
              "qps\tbytes_per_vec\tbuild_s\n", tsv);
    struct pair_result pair = {big ? 20 : 60, 0, 0, 0, 0};
    struct run r = {x, q, n, (size_t)nq, dim, k, threads, gt, pool, big ? 75.0 : 30.0, tsv, set,
                    &pair};

    /* Flat first: its latency against the bandwidth bound (3m: ~200 queries in 75 s). */
    if (wanted(only, "flat")) {
        struct bconf flat_c = {"flat", {.kind = ANN_KIND_FLAT}, NULL, 0};
        bench_config(&r, &flat_c, NULL, 0);
    }
    r.lat_budget_s = big ? 10.0 : 30.0;

    double bytes = (double)n * dim * 4;
    snprintf(path, sizeof path, "%s/env.tsv", out);
    FILE *ef = fopen(path, "w");
    if (ef) {
        fprintf(ef,
                "key\tvalue\nbandwidth_gbs\t%.2f\nbandwidth_median_gbs\t%.2f\nflat_bytes\t%.0f\n"
                "flat_bound_us\t%.1f\nisa\t%s\nthreads\t%d\nsource\t%s\nn\t%zu\nnq\t%d\nk\t%d\n",
                bw.best / 1e9, bw.median / 1e9, bytes, bytes / bw.best * 1e6,
                ann_isa_name(ann_dist_get()->isa), threads, source, n, nq, k);
        if (pair.rounds > 0 && wanted(only, "flat"))
            fprintf(ef,
                    "pair_rounds\t%d\npair_ratio_median\t%.3f\npair_ratio_best\t%.3f\n"
                    "pair_query_median_us\t%.1f\npair_bound_median_us\t%.1f\n",
                    pair.rounds, pair.ratio_med, pair.ratio_min, pair.q_med_us, pair.bound_med_us);
        fclose(ef);
    }
    fprintf(stderr,
            "bench_ann: memory bandwidth %.1f GB/s best, %.1f median (one thread): exact-scan "
            "bound %.1f us\n",
            bw.best / 1e9, bw.median / 1e9, bytes / bw.best * 1e6);

    if (!big && wanted(only, "flat_sq8")) {
        struct bconf sq = {"flat_sq8", {.kind = ANN_KIND_FLAT_SQ8}, NULL, 0};
        bench_config(&r, &sq, NULL, 0);
    }

    static const int nlists_small[] = {256, 512, 1024}, nlists_big[] = {4096};
    const int *nlists = big ? nlists_big : nlists_small;
    int n_nlists = big ? 1 : (quick ? 1 : 3);
    const int *np = big ? nprobes_big : nprobes;
    int n_np = big ? (int)(sizeof nprobes_big / sizeof nprobes_big[0])
                   : (int)(sizeof nprobes / sizeof nprobes[0]);
    bool any_ivf = wanted(only, "ivf_sq8") || wanted(only, "ivf_pq");
    for (int li = 0; any_ivf && li < n_nlists; li++) {
        int nlist = nlists[li];
        /* One coarse quantizer per nlist, shared by the code types (FAISS does the same with a
         * trained quantizer); its k-means time is added to each build time. 3m: trained on
         * 64 points per centroid (262,144), as the FAISS side. */
        float *cent = malloc(sizeof(float) * (size_t)nlist * dim);
        struct ann_kmeans_cfg kc = {10, 0, big ? 64 : 256, seed, 1, 1}; /* as ivf.c for IP */
        struct err e;
        err_clear(&e);
        double tk = now_s();
        if (!cent || ann_kmeans(x, n, dim, nlist, &kc, cent, pool, &e) != 0) {
            fprintf(stderr, "bench_ann: k-means: %s\n", cent ? e.msg : "out of memory");
            return 1;
        }
        tk = now_s() - tk;
        fprintf(stderr, "bench_ann: k-means nlist %d in %.1f s\n", nlist, tk);
        struct bconf bcs[] = {
            {"ivf_sq8", {.kind = ANN_KIND_IVF_SQ8, .nlist = nlist}, np, n_np},
            {"ivf_pq", {.kind = ANN_KIND_IVF_PQ, .nlist = nlist, .pq_m = 32}, np, n_np},
            {"ivf_pq", {.kind = ANN_KIND_IVF_PQ, .nlist = nlist, .pq_m = 64}, np, n_np},
        };
        for (size_t c = 0; c < sizeof bcs / sizeof bcs[0]; c++)
            if (wanted(only, bcs[c].family)) bench_config(&r, &bcs[c], cent, tk);
        free(cent);
    }
    if (hnsw && wanted(only, "hnsw")) {
        struct bconf h = {"hnsw", {.kind = ANN_KIND_HNSW, .hnsw_m = 32, .ef_construction = 40},
                          efs, (int)(sizeof efs / sizeof efs[0])};
        bench_config(&r, &h, NULL, 0);
    }
    fclose(tsv);
    munmap(dm.map, dm.len);
    pool_free(pool);
    return 0;
}
