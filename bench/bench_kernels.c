/* Kernel benchmark: matvec (n = 1, generation) and batched matmul (n = 64, prompt
 * processing) on TinyLlama weight shapes for every type, at 1 and 2 threads, next to a
 * memory read-bandwidth measurement taken in the same run.
 *
 *   build/bench_kernels [--seconds S] [--threads LIST] [--types LIST] [--isa scalar|avx2|avx512]
 *                       [--repack] [--huge]
 *   build/bench_kernels --pq [--seconds S]
 *
 * --pq: the IVF-PQ scan kernels (ns per code) at m = 32 and 64 over 200k codes in blocks of
 * 512, as ann_ivf_search calls them: the f32 table, the 16-bit table (scalar) and the table's
 * 16-bit kernel of this CPU (VBMI byte permutes where present), in one process.
 *
 * Matvec weights are cycled through enough copies (>= 256 MiB) that they come from DRAM as
 * in real decoding, not from cache. GB/s counts weight bytes; GFLOP/s counts 2*rows*cols*n. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ann/dist.h"
#include "base/pool.h"
#include "engine/kernels.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (all threads): on a shared machine it shows what the kernel
 * costs when it does run, apart from time spent descheduled. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct bw_ctx {
    const uint64_t *buf;
    size_t n;
    uint64_t sums[64];
};

static void bw_job(void *ctx, size_t b, size_t e, int tid)
{
    struct bw_ctx *c = ctx;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    const size_t step = 4096 / 8;
    for (size_t blk = b; blk < e; blk++) {
        const uint64_t *p = c->buf + blk * step;
        for (size_t i = 0; i < step; i += 4) {
            s0 += p[i];
            s1 += p[i + 1];
            s2 += p[i + 2];
            s3 += p[i + 3];
        }
    }
    c->sums[tid] += s0 + s1 + s2 + s3;
}

/* Read bandwidth over a 512 MiB buffer, best of a few passes. */
static double mem_bandwidth(struct pool *pool, double seconds)
{
    size_t bytes = (size_t)512 << 20;
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    for (size_t i = 0; i < bytes / 8; i++) buf[i] = i;
    struct bw_ctx c = {.buf = buf, .n = bytes / 8};
    double best = 0, t_end = now_s() + seconds;
    do {
        double t0 = now_s();
        pool_for(pool, bytes / 4096, 64, bw_job, &c);
        double dt = now_s() - t0;
        if (bytes / dt > best) best = bytes / dt;
    } while (now_s() < t_end);
    free(buf);
    return best / 1e9;
}

struct shape {
    const char *name;
    int rows, cols;
};

static const struct shape k_shapes[] = {
    {"attn 2048x2048", 2048, 2048},
    {"ffn up 5632x2048", 5632, 2048},
    {"ffn down 2048x5632", 2048, 5632},
    {"output 32000x2048", 32000, 2048},
};

static const struct {
    const char *name;
    enum ggml_type t;
    int blck, bytes;
} k_types[] = {
    {"f32", GGML_TYPE_F32, 1, 4},      {"f16", GGML_TYPE_F16, 1, 2},
    {"bf16", GGML_TYPE_BF16, 1, 2},    {"q8_0", GGML_TYPE_Q8_0, 32, 34},
    {"q4_0", GGML_TYPE_Q4_0, 32, 18},  {"q4_K", GGML_TYPE_Q4_K, 256, 144},
    {"q6_K", GGML_TYPE_Q6_K, 256, 210},
};

static uint64_t g_rng = 88172645463325252ull;
static float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((g_rng >> 40) & 0xFFFFFF) / 16777216.0f - 0.5f;
}

/* One (type, shape, threads, n) measurement: runs for about `seconds`, reports the median
 * time of the repetitions. */
static int g_hot;    /* --hot: one copy of the weights (cache-resident for small shapes) */
static int g_repack; /* --repack: the packed layout the model loader uses (kern_repack) */
static int g_huge;   /* --huge: weights in 2 MiB pages (madvise), as the model loader does */

static void bench_one(int ti, const struct shape *sh, struct pool *pool, int n, double seconds)
{
    enum ggml_type t = k_types[ti].t, tq = t;
    if (g_repack) t = kern_repack_type(t, sh->rows, sh->cols);
    size_t rb = (size_t)sh->cols / k_types[ti].blck * k_types[ti].bytes;
    size_t mbytes = rb * sh->rows;
    size_t copies = n == 1 && !g_hot ? ((size_t)256 << 20) / mbytes + 1 : 1;
    if (copies > 64) copies = 64;
    size_t wlen = (mbytes * copies + ((size_t)2 << 20)) & ~(((size_t)2 << 20) - 1);
    uint8_t *w = mmap(NULL, wlen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) w = NULL;
    else if (g_huge) madvise(w, wlen, MADV_HUGEPAGE);
    float *row = malloc(sizeof(float) * sh->cols);
    float *x = malloc(sizeof(float) * sh->cols * n);
    float *y = malloc(sizeof(float) * sh->rows * n);
    size_t ss = kern_scratch_size(t, sh->cols, n);
    void *scratch = ss ? malloc(ss) : NULL;
    if (!w || !row || !x || !y || (ss && !scratch)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (int r = 0; r < sh->rows; r++) {
        for (int c = 0; c < sh->cols; c++) row[c] = frand() * 0.1f;
        kern_quantize_row(tq, row, w + rb * r, sh->cols);
    }
    if (t != tq) {
        uint8_t *tmp = malloc(mbytes);
        if (!tmp) exit(1);
        memcpy(tmp, w, mbytes);
        kern_repack(tq, tmp, w, sh->rows, sh->cols);
        free(tmp);
    }
    for (size_t k = 1; k < copies; k++) memcpy(w + mbytes * k, w, mbytes);
    for (int i = 0; i < sh->cols * n; i++) x[i] = frand();
    double times[4096], cpu0 = 0, cpu_total = 0;
    int reps = 0;
    double t_end = now_s() + seconds;
    size_t k = 0;
    kern_matmul(t, w, x, y, sh->rows, sh->cols, n, scratch, pool); /* warm-up */
    do {
        double t0 = now_s();
        cpu0 = cpu_s();
        kern_matmul(t, w + mbytes * k, x, y, sh->rows, sh->cols, n, scratch, pool);
        cpu_total += cpu_s() - cpu0;
        times[reps++] = now_s() - t0;
        k = (k + 1) % copies;
    } while (now_s() < t_end && reps < 4096);
    /* median */
    for (int i = 1; i < reps; i++)
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
            double tmp = times[j];
            times[j] = times[j - 1];
            times[j - 1] = tmp;
        }
    double med = times[reps / 2];
    double gbs = mbytes / med / 1e9, gflops = 2.0 * sh->rows * sh->cols * n / med / 1e9;
    double cpu_ms = cpu_total / reps * 1e3;
    printf("%-5s %-20s threads %d n %3d  %8.3f ms  %6.1f GB/s  %6.1f GFLOP/s  cpu %8.3f ms/call"
           "  (%d reps)\n",
           k_types[ti].name, sh->name, pool_threads(pool), n, med * 1e3, gbs, gflops, cpu_ms, reps);
    fflush(stdout);
    munmap(w, wlen);
    free(row);
    free(x);
    free(y);
    free(scratch);
}

/* ns per code of one PQ scan variant (0 = f32 table, 1 = u16 scalar, 2 = u16 dispatch). */
static double pq_time(int variant, const struct ann_dist_ops *o, const float *lut,
                      const uint16_t *q, const uint8_t *planes, const uint8_t *codes, size_t n,
                      int m, float *out, double seconds)
{
    double t0 = now_s(), t;
    size_t done = 0;
    volatile float sink = 0;
    do {
        for (size_t b = 0; b < n; b += 512) {
            size_t nb = n - b < 512 ? n - b : 512;
            const uint8_t *cb = codes + b * (size_t)m;
            if (variant == 0) o->pq_adc_rows(lut, cb, nb, m, out);
            else if (variant == 1) ann_pq_adc_rows_u16(q, cb, nb, m, 0.01f, 1.0f, out);
            else o->pq_adc_rows_u16(q, planes, cb, nb, m, 0.01f, 1.0f, out);
            sink += out[nb - 1];
        }
        done += n;
        t = now_s() - t0;
    } while (t < seconds);
    (void)sink;
    return t * 1e9 / (double)done;
}

static int bench_pq(double seconds)
{
    const struct ann_dist_ops *o = ann_dist_get();
    const size_t n = 200000;
    printf("pq scan, isa %s, %zu codes in blocks of 512, ns per code (best of 3)\n",
           ann_isa_name(o->isa), n);
    for (int m = 32; m <= 64; m *= 2) {
        float *lut = malloc(sizeof *lut * 256 * (size_t)m), *out = malloc(sizeof *out * 512);
        uint16_t *q = malloc(sizeof *q * 256 * (size_t)m);
        uint8_t *planes = malloc(512 * (size_t)m), *codes = malloc(n * (size_t)m);
        if (!lut || !out || !q || !planes || !codes) return 1;
        uint64_t st = 88172645463325252ull;
        for (int i = 0; i < 256 * m; i++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            lut[i] = (float)((double)(st >> 11) / 9007199254740992.0 - 0.5) * 0.3f;
        }
        for (size_t i = 0; i < n * (size_t)m; i++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            codes[i] = (uint8_t)(st >> 32);
        }
        float scale, bias;
        ann_pq_lut16(lut, m, q, &scale, &bias);
        ann_pq_lut16_planes(q, m, planes);
        static const char *names[] = {"f32 table", "u16 scalar", "u16 dispatch"};
        double best[3] = {1e30, 1e30, 1e30};
        for (int rep = 0; rep < 3; rep++)
            for (int v = 0; v < 3; v++) {
                double t = pq_time(v, o, lut, q, planes, codes, n, m, out, seconds);
                best[v] = t < best[v] ? t : best[v];
            }
        for (int v = 0; v < 3; v++)
            printf("  m %2d  %-13s %7.2f ns/code  (%.2fx the f32 table)\n", m, names[v], best[v],
                   best[0] / best[v]);
        free(lut);
        free(out);
        free(q);
        free(planes);
        free(codes);
    }
    return 0;
}

static int list_has(const char *list, const char *name)
{
    if (!list) return 1;
    size_t ln = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += ln)
        if ((p == list || p[-1] == ',') && (p[ln] == 0 || p[ln] == ',')) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    double seconds = 0.3;
    const char *threads = "1,2", *types = NULL, *isa = NULL, *ns = "1,64";
    int pq = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = argv[++i];
        else if (!strcmp(argv[i], "--types") && i + 1 < argc) types = argv[++i];
        else if (!strcmp(argv[i], "--repack")) g_repack = 1;
        else if (!strcmp(argv[i], "--huge")) g_huge = 1;
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "--n") && i + 1 < argc) ns = argv[++i];
        else if (!strcmp(argv[i], "--hot")) g_hot = 1;
        else if (!strcmp(argv[i], "--pq")) pq = 1;
        else {
            fprintf(stderr,
                    "usage: bench_kernels [--seconds S] [--threads 1,2] [--types q4_0,q8_0]"
                    " [--isa scalar|avx2|avx512] [--repack] [--huge] [--n 1,64] [--hot] [--pq]\n");
            return 2;
        }
    }
    if (pq) return bench_pq(seconds);
    kern_init();
    if (isa) {
        enum kern_isa want = !strcmp(isa, "scalar") ? KERN_ISA_SCALAR
                             : !strcmp(isa, "avx2") ? KERN_ISA_AVX2
                                                    : KERN_ISA_AVX512;
        kern_force_isa(want);
    }
    printf("isa %s, %.2f s per measurement\n", kern_isa_name(kern_isa()), seconds);
    for (int nt = 1; nt <= 2; nt++) {
        char tn[8];
        snprintf(tn, sizeof tn, "%d", nt);
        if (!list_has(threads, tn)) continue;
        struct pool *pool = pool_new(nt);
        printf("memory read bandwidth, %d thread(s): %.1f GB/s\n", nt, mem_bandwidth(pool, 1.0));
        for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
            if (!list_has(types, k_types[ti].name)) continue;
            for (size_t si = 0; si < sizeof k_shapes / sizeof k_shapes[0]; si++) {
                if (list_has(ns, "1")) bench_one((int)ti, &k_shapes[si], pool, 1, seconds);
                if (list_has(ns, "64") && si < 3) bench_one((int)ti, &k_shapes[si], pool, 64, seconds);
            }
        }
        pool_free(pool);
    }
    return 0;
}
