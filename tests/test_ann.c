/* Vector search: kernels against their scalar reference, k-means, exact search against brute
 * force, recall floors of every approximate index on a clustered set, exclusion sets, batch
 * search, save/load round trips, and truncated or corrupted index files. Small sets (a few
 * thousand vectors) so the whole binary runs in seconds. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ann/ann.h"
#include "ann/dist.h"
#include "ann/index.h"
#include "ann/kmeans.h"
#include "ann/synth.h"
#include "engine/gguf.h"

#define N 5000
#define D 64
#define NQ 100
#define K 10

static float *g_x, *g_q;    /* clustered base set and queries */
static struct pool *g_pool; /* two threads */

static int group_setup(void **state)
{
    (void)state;
    g_pool = pool_new(2);
    g_x = malloc(sizeof(float) * N * D);
    g_q = malloc(sizeof(float) * NQ * D);
    if (!g_pool || !g_x || !g_q) return -1;
    if (ann_synth_clustered(N, D, 50, 0.35f, 42, 0, g_x, g_pool)) return -1;
    if (ann_synth_clustered(NQ, D, 50, 0.35f, 42, N, g_q, g_pool)) return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    free(g_x);
    free(g_q);
    pool_free(g_pool);
    return 0;
}

static void fill_uniform(float *x, size_t n, uint64_t seed)
{
    struct ann_rng r;
    ann_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(ann_rng_uniform(&r) * 2.0 - 1.0);
}

/* ---------------------------------------------------------------- brute force oracle ---- */

struct ref_hit {
    float d;
    uint32_t id;
};

static int cmp_ref(const void *a, const void *b)
{
    const struct ref_hit *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Exact top k by double-precision brute force, skipping excluded ids. Returns count. */
static int brute(const float *x, size_t n, int d, const float *q, int k, enum ann_metric m,
                 const uint32_t *excl, size_t nex, struct ann_hit *out)
{
    struct ref_hit *h = malloc(n * sizeof *h);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        bool skip = false;
        for (size_t e = 0; e < nex; e++)
            if (excl[e] == i) skip = true;
        if (skip) continue;
        double s = 0;
        for (int j = 0; j < d; j++) {
            double a = q[j], b = x[i * d + j];
            s += m == ANN_METRIC_IP ? a * b : (a - b) * (a - b);
        }
        h[w].d = (float)(m == ANN_METRIC_IP ? -s : s);
        h[w].id = (uint32_t)i;
        w++;
    }
    qsort(h, w, sizeof *h, cmp_ref);
    int c = (int)(w < (size_t)k ? w : (size_t)k);
    for (int i = 0; i < c; i++) {
        out[i].id = h[i].id;
        out[i].score = m == ANN_METRIC_IP ? -h[i].d : h[i].d;
    }
    free(h);
    return c;
}

static double recall_of(const struct ann_hit *got, int ng, const struct ann_hit *ref, int nr)
{
    int hit = 0;
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < ng; j++)
            if (got[j].id == ref[i].id) {
                hit++;
                break;
            }
    return nr ? (double)hit / nr : 1.0;
}

/* Mean recall@K of idx over the clustered queries against exact search. */
static double index_recall(const struct ann_index *idx, const struct ann_search_opts *o,
                           enum ann_metric m)
{
    struct ann_hit got[K], ref[K];
    double sum = 0;
    struct ann_scratch *s = ann_scratch_new(idx);
    assert_non_null(s);
    for (int qi = 0; qi < NQ; qi++) {
        int ng = ann_search(idx, g_q + qi * D, o, s, got);
        assert_int_equal(ng, K);
        for (int i = 1; i < ng; i++) {
            /* best first */
            if (m == ANN_METRIC_IP) assert_true(got[i - 1].score >= got[i].score);
            else assert_true(got[i - 1].score <= got[i].score);
        }
        int nr = brute(g_x, N, D, g_q + qi * D, K, m, NULL, 0, ref);
        sum += recall_of(got, ng, ref, nr);
    }
    ann_scratch_free(s);
    return sum / NQ;
}

/* ---------------------------------------------------------------------------- kernels ---- */

static void test_kernels_match_scalar(void **state)
{
    (void)state;
    const struct ann_dist_ops *ref = ann_dist_for(ANN_ISA_SCALAR);
    assert_non_null(ref);
    assert_non_null(ann_dist_get());
    static const int dims[] = {1, 7, 16, 31, 64, 100, 256};
    enum { NR = 13 };
    float *a = malloc(sizeof(float) * 256 * NR), *b = malloc(sizeof(float) * 256 * NR);
    uint8_t *codes = malloc(256 * NR);
    float *lut = malloc(sizeof(float) * 256 * 64);
    float o1[NR * NR + 64], o2[NR * NR + 64];
    fill_uniform(a, 256 * NR, 1);
    fill_uniform(b, 256 * NR, 2);
    fill_uniform(lut, 256 * 64, 3);
    for (int i = 0; i < 256 * NR; i++) codes[i] = (uint8_t)((i * 131 + 7) ^ (i >> 3));
    int tested = 0;
    for (int isa = ANN_ISA_AVX2; isa <= ANN_ISA_AVX512; isa++) {
        const struct ann_dist_ops *o = ann_dist_for((enum ann_isa)isa);
        if (!o) continue;
        tested++;
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            int d = dims[di];
            float tol = 1e-4f * (float)d;
            assert_float_equal(o->dot(a, b, d), ref->dot(a, b, d), tol);
            assert_float_equal(o->l2(a, b, d), ref->l2(a, b, d), tol);
            o->dot_rows(a, b, NR, d, o1);
            ref->dot_rows(a, b, NR, d, o2);
            for (int i = 0; i < NR; i++) assert_float_equal(o1[i], o2[i], tol);
            o->l2_rows(a, b, NR, d, o1);
            ref->l2_rows(a, b, NR, d, o2);
            for (int i = 0; i < NR; i++) assert_float_equal(o1[i], o2[i], tol);
            o->gemm_nt(a, 6, b, NR, d, o1);
            ref->gemm_nt(a, 6, b, NR, d, o2);
            for (int i = 0; i < 6 * NR; i++) assert_float_equal(o1[i], o2[i], tol);
            o->dot_cols(a, b, d, NR, o1);
            ref->dot_cols(a, b, d, NR, o2);
            for (int i = 0; i < NR; i++) assert_float_equal(o1[i], o2[i], tol);
            if (d * 40 <= 256 * NR) { /* b holds (d, 40) */
                o->dot_cols(a, b, d, 40, o1);
                ref->dot_cols(a, b, d, 40, o2);
                for (int i = 0; i < 40; i++) assert_float_equal(o1[i], o2[i], tol);
            }
            o->sq8_dot_rows(a, codes, NR, d, o1);
            ref->sq8_dot_rows(a, codes, NR, d, o2);
            for (int i = 0; i < NR; i++) assert_float_equal(o1[i], o2[i], tol * 255);
            o->sq8_l2_rows(a, b, codes, NR, d, o1);
            ref->sq8_l2_rows(a, b, codes, NR, d, o2);
            for (int i = 0; i < NR; i++)
                assert_float_equal(o1[i], o2[i], tol * 255 * 255 * 1e-2f + fabsf(o2[i]) * 1e-5f);
        }
        for (int m = 1; m <= 64; m *= 2) {
            o->pq_adc_rows(lut, codes, NR, m, o1);
            ref->pq_adc_rows(lut, codes, NR, m, o2);
            for (int i = 0; i < NR; i++) assert_float_equal(o1[i], o2[i], 1e-4f * m);
        }
    }
    print_message("  kernels: %d SIMD table(s) checked against scalar (dispatch: %s)\n", tested,
                  ann_isa_name(ann_dist_get()->isa));
    free(a);
    free(b);
    free(codes);
    free(lut);
}

/* ---------------------------------------------------------------------------- k-means ---- */

static void test_kmeans_recovers_clusters_deterministically(void **state)
{
    (void)state;
    enum { KC = 8, DIM = 16, PER = 300 };
    float *x = malloc(sizeof(float) * KC * PER * DIM), centres[KC * DIM];
    struct ann_rng r;
    ann_rng_seed(&r, 7);
    for (int c = 0; c < KC * DIM; c++) centres[c] = (float)(ann_rng_normal(&r) * 10.0);
    for (int i = 0; i < KC * PER; i++)
        for (int j = 0; j < DIM; j++)
            x[i * DIM + j] = centres[(i % KC) * DIM + j] + (float)(ann_rng_normal(&r) * 0.1);
    float c1[KC * DIM], c2[KC * DIM], c3[KC * DIM];
    struct err e;
    struct ann_kmeans_cfg kc = {15, 1, 256, 99, 0, 0};
    assert_int_equal(ann_kmeans(x, KC * PER, DIM, KC, &kc, c1, g_pool, &e), 0);
    assert_int_equal(ann_kmeans(x, KC * PER, DIM, KC, &kc, c2, NULL, &e), 0);
    assert_memory_equal(c1, c2, sizeof c1); /* same seed, 2 threads or 1: same result */
    /* k-means++ on well separated blobs: every true centre has a centroid within 0.5 */
    for (int c = 0; c < KC; c++) {
        float best = 1e30f;
        for (int j = 0; j < KC; j++) {
            float dd = 0;
            for (int t = 0; t < DIM; t++) {
                float df = centres[c * DIM + t] - c1[j * DIM + t];
                dd += df * df;
            }
            if (dd < best) best = dd;
        }
        assert_true(best < 0.25f);
    }
    kc.seed = 100;
    kc.plusplus = 0;
    assert_int_equal(ann_kmeans(x, KC * PER, DIM, KC, &kc, c3, g_pool, &e), 0);
    assert_int_equal(ann_kmeans(x, 5, DIM, KC, &kc, c3, g_pool, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "at least"));
    free(x);
}

/* Spherical inner-product k-means (what an IP IVF trains, as FAISS): unit-norm centroids,
 * deterministic, and far more even lists than plain IP k-means on data with a common offset
 * (where IP assignment favours the longest centroids). */
static size_t largest_list(const float *x, size_t n, int dim, const float *cent, int k)
{
    uint32_t *ids = malloc(n * sizeof *ids);
    size_t *cnt = calloc((size_t)k, sizeof *cnt), big = 0;
    assert_non_null(ids);
    assert_non_null(cnt);
    assert_int_equal(ann_assign(x, n, dim, cent, NULL, k, 1, ids, NULL, g_pool), 0);
    for (size_t i = 0; i < n; i++) cnt[ids[i]]++;
    for (int c = 0; c < k; c++)
        if (cnt[c] > big) big = cnt[c];
    free(ids);
    free(cnt);
    return big;
}

static void test_kmeans_spherical_ip(void **state)
{
    (void)state;
    enum { KS = 32, DIM = 16, NS = 4000 };
    float *x = malloc(sizeof(float) * NS * DIM);
    struct ann_rng r;
    ann_rng_seed(&r, 11);
    for (int i = 0; i < NS * DIM; i++) x[i] = (float)(3.0 + ann_rng_normal(&r));
    float cs[KS * DIM], cs2[KS * DIM], cp[KS * DIM];
    struct err e;
    struct ann_kmeans_cfg sph = {10, 0, 256, 5, 1, 1}, plain = {10, 0, 256, 5, 1, 0};
    assert_int_equal(ann_kmeans(x, NS, DIM, KS, &sph, cs, g_pool, &e), 0);
    assert_int_equal(ann_kmeans(x, NS, DIM, KS, &sph, cs2, NULL, &e), 0);
    assert_memory_equal(cs, cs2, sizeof cs);
    for (int c = 0; c < KS; c++) {
        double s = 0;
        for (int j = 0; j < DIM; j++) s += (double)cs[c * DIM + j] * cs[c * DIM + j];
        assert_float_equal(s, 1.0, 1e-4);
    }
    assert_int_equal(ann_kmeans(x, NS, DIM, KS, &plain, cp, g_pool, &e), 0);
    size_t big_s = largest_list(x, NS, DIM, cs, KS), big_p = largest_list(x, NS, DIM, cp, KS);
    if (!(big_s * 2 < big_p)) fail_msg("largest list: spherical %zu, plain IP %zu", big_s, big_p);
    free(x);
}

/* ------------------------------------------------------------------------ exact search ---- */

static void check_exact(enum ann_metric m)
{
    enum { NN = 3000, DD = 48, Q = 20, KK = 25 };
    float *x = malloc(sizeof(float) * NN * DD), *q = malloc(sizeof(float) * Q * DD);
    fill_uniform(x, NN * DD, 11);
    fill_uniform(q, Q * DD, 12);
    struct err e;
    struct ann_cfg cfg = {.kind = ANN_KIND_FLAT, .metric = m};
    struct ann_index *idx = ann_build(&cfg, x, NN, DD, g_pool, &e);
    assert_non_null(idx);
    assert_int_equal(ann_size(idx), NN);
    struct ann_hit got[KK], ref[KK];
    struct ann_search_opts o = {.k = KK};
    for (int qi = 0; qi < Q; qi++) {
        int ng = ann_search(idx, q + qi * DD, &o, NULL, got);
        int nr = brute(x, NN, DD, q + qi * DD, KK, m, NULL, 0, ref);
        assert_int_equal(ng, nr);
        for (int i = 0; i < ng; i++) {
            /* identical ids, unless two scores tie within float rounding */
            if (got[i].id != ref[i].id) assert_float_equal(got[i].score, ref[i].score, 1e-4);
            assert_float_equal(got[i].score, ref[i].score, 1e-3 * (1 + fabsf(ref[i].score)));
        }
    }
    /* k above n returns n hits */
    struct ann_search_opts big = {.k = NN + 50};
    struct ann_hit *all = malloc(sizeof *all * (NN + 50));
    assert_int_equal(ann_search(idx, q, &big, NULL, all), NN);
    free(all);
    ann_free(idx);
    free(x);
    free(q);
}

static void test_flat_ip_equals_brute_force(void **state)
{
    (void)state;
    check_exact(ANN_METRIC_IP);
}

static void test_flat_l2_equals_brute_force(void **state)
{
    (void)state;
    check_exact(ANN_METRIC_L2);
}

/* ----------------------------------------------------------------------------- recall ---- */

struct recall_case {
    struct ann_cfg cfg;
    struct ann_search_opts o;
    double floor;
};

static const struct recall_case recall_cases[] = {
    {{.kind = ANN_KIND_FLAT_SQ8, .metric = ANN_METRIC_IP}, {.k = K}, 0.90},
    {{.kind = ANN_KIND_FLAT_SQ8, .metric = ANN_METRIC_L2}, {.k = K}, 0.90},
    {{.kind = ANN_KIND_IVF_FLAT, .metric = ANN_METRIC_IP, .nlist = 64}, {.k = K, .nprobe = 8}, 0.90},
    {{.kind = ANN_KIND_IVF_FLAT, .metric = ANN_METRIC_L2, .nlist = 64}, {.k = K, .nprobe = 8}, 0.90},
    {{.kind = ANN_KIND_IVF_SQ8, .metric = ANN_METRIC_IP, .nlist = 64}, {.k = K, .nprobe = 8}, 0.85},
    {{.kind = ANN_KIND_IVF_SQ8, .metric = ANN_METRIC_L2, .nlist = 64}, {.k = K, .nprobe = 8}, 0.85},
    {{.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_IP, .nlist = 64, .pq_m = 16},
     {.k = K, .nprobe = 8}, 0.45},
    {{.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_L2, .nlist = 64, .pq_m = 16},
     {.k = K, .nprobe = 8}, 0.45},
    /* m = 64 > 32: the 16-bit lookup table path */
    {{.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_IP, .nlist = 64, .pq_m = 64},
     {.k = K, .nprobe = 8}, 0.80},
    {{.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_L2, .nlist = 64, .pq_m = 64},
     {.k = K, .nprobe = 8}, 0.80},
    {{.kind = ANN_KIND_HNSW, .metric = ANN_METRIC_IP, .hnsw_m = 16}, {.k = K, .ef = 64}, 0.90},
    {{.kind = ANN_KIND_HNSW, .metric = ANN_METRIC_L2, .hnsw_m = 16}, {.k = K, .ef = 64}, 0.90},
};

static void test_recall_floors(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof recall_cases / sizeof recall_cases[0]; c++) {
        const struct recall_case *rc = &recall_cases[c];
        struct err e;
        struct ann_index *idx = ann_build(&rc->cfg, g_x, N, D, g_pool, &e);
        if (!idx) fail_msg("build %s: %s", ann_kind_name(rc->cfg.kind), e.msg);
        double r = index_recall(idx, &rc->o, rc->cfg.metric);
        print_message("  %-9s %s recall@%d = %.3f (floor %.2f), %.1f bytes/vector\n",
                      ann_kind_name(rc->cfg.kind), rc->cfg.metric == ANN_METRIC_IP ? "ip" : "l2",
                      K, r, rc->floor, ann_bytes_per_vector(idx));
        assert_true(r >= rc->floor);
        ann_free(idx);
    }
}

/* Inner product IVF on vectors of norm ~20: lists are chosen by the centroids' directions,
 * each list's stored centroid sits among its vectors (the residuals SQ8 / PQ encode are far
 * smaller than against the unit direction), and scores are still the inner products. */
static void test_ip_centroids_recentred(void **state)
{
    (void)state;
    const int n = N, L = 16;
    float *x = malloc(sizeof(float) * (size_t)n * D);
    assert_non_null(x);
    for (size_t i = 0; i < (size_t)n * D; i++) x[i] = 20.0f * g_x[i];
    enum ann_kind kinds[] = {ANN_KIND_IVF_SQ8, ANN_KIND_IVF_PQ};
    for (int kk = 0; kk < 2; kk++) {
        struct ann_cfg cfg = {.kind = kinds[kk], .metric = ANN_METRIC_IP, .nlist = L, .pq_m = 16};
        struct err e;
        struct ann_index *idx = ann_build(&cfg, x, (size_t)n, D, g_pool, &e);
        if (!idx) fail_msg("build: %s", e.msg);
        double e_stored = 0, e_unit = 0;
        for (int l = 0; l < L; l++) {
            const float *c = idx->centroids + (size_t)l * D;
            assert_true(idx->cinv[l] > 0);
            for (uint64_t a = idx->list_off[l]; a < idx->list_off[l + 1]; a++) {
                const float *v = x + (size_t)idx->list_ids[a] * D;
                double best = -1e30, mine = 0;
                for (int l2 = 0; l2 < L; l2++) { /* the list of largest cosine */
                    const float *c2 = idx->centroids + (size_t)l2 * D;
                    double dot = 0;
                    for (int j = 0; j < D; j++) dot += (double)v[j] * c2[j];
                    dot *= idx->cinv[l2];
                    if (l2 == l) mine = dot;
                    if (dot > best) best = dot;
                }
                assert_true(mine >= best - 1e-3 * fabs(best));
                for (int j = 0; j < D; j++) {
                    double ds = v[j] - c[j], du = v[j] - c[j] * idx->cinv[l];
                    e_stored += ds * ds;
                    e_unit += du * du;
                }
            }
        }
        print_message("  %s: residual energy %.4g against stored centroids, %.4g against unit "
                      "directions\n", ann_kind_name(cfg.kind), e_stored, e_unit);
        assert_true(e_stored < 0.75 * e_unit); /* 1.0 without recentring */
        /* the best hit's score is its inner product with the query, up to the code's error */
        struct ann_scratch *s = ann_scratch_new(idx);
        struct ann_hit got[K];
        struct ann_search_opts o = {.k = K, .nprobe = L};
        double worst = 0;
        for (int qi = 0; qi < NQ; qi++) {
            const float *q = g_q + qi * D;
            assert_int_equal(ann_search(idx, q, &o, s, got), K);
            const float *v = x + (size_t)got[0].id * D;
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)q[j] * v[j];
            double qq = 0, vv = 0;
            for (int j = 0; j < D; j++) {
                qq += (double)q[j] * q[j];
                vv += (double)v[j] * v[j];
            }
            double rel = fabs(got[0].score - dot) / sqrt(qq * vv);
            worst = rel > worst ? rel : worst;
        }
        print_message("  %s: worst |score - <q, x>| / (|q| |x|) = %.4f\n", ann_kind_name(cfg.kind),
                      worst);
        assert_true(worst < (kinds[kk] == ANN_KIND_IVF_SQ8 ? 0.01 : 0.1));
        ann_scratch_free(s);
        ann_free(idx);
    }
    free(x);
}

/* SQ8 codes follow FAISS's QT_8bit rule (code = floor(255 t), t clamped to [0, 1], decoded at
 * (code + 0.5) / 255), so ours and FAISS's codes are the same bytes; new indexes record it. */
static void test_sq8_codes_faiss_rule(void **state)
{
    (void)state;
    enum { DD = 64 };
    float vmin[DD], vdiff[DD], x[DD], y[DD];
    uint8_t c[DD];
    fill_uniform(vmin, DD, 3);
    fill_uniform(vdiff, DD, 4);
    for (int j = 0; j < DD; j++) vdiff[j] = 0.5f + fabsf(vdiff[j]);
    for (int r = 0; r < 200; r++) {
        fill_uniform(x, DD, 100 + (uint64_t)r);
        if (r == 0)
            for (int j = 0; j < DD; j++) x[j] = vmin[j] + vdiff[j]; /* the maximum: code 255 */
        if (r == 1)
            for (int j = 0; j < DD; j++) x[j] = vmin[j] - 1.0f; /* below the range: code 0 */
        ann_sq8_encode(vmin, vdiff, ANN_SQ_LEVELS, x, DD, c);
        ann_sq8_decode(vmin, vdiff, ANN_SQ_LEVELS, c, DD, y);
        for (int j = 0; j < DD; j++) {
            float t = (x[j] - vmin[j]) / vdiff[j];
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            assert_int_equal(c[j], (int)(255.0f * t));
            assert_float_equal(y[j], vmin[j] + ((float)c[j] + 0.5f) / 255.0f * vdiff[j], 1e-5);
        }
    }
    struct ann_cfg cfg = {.kind = ANN_KIND_FLAT_SQ8, .metric = ANN_METRIC_IP};
    struct err e;
    struct ann_index *idx = ann_build(&cfg, g_x, 500, D, g_pool, &e);
    assert_non_null(idx);
    assert_int_equal(idx->sq_levels, 255);
    ann_free(idx);
}

/* More probes / a bigger ef never lowers recall much, and the full probe of IVF-flat is exact. */
static void test_recall_grows_with_effort(void **state)
{
    (void)state;
    struct err e;
    struct ann_cfg cfg = {.kind = ANN_KIND_IVF_FLAT, .metric = ANN_METRIC_IP, .nlist = 32};
    struct ann_index *idx = ann_build(&cfg, g_x, N, D, g_pool, &e);
    assert_non_null(idx);
    struct ann_search_opts o1 = {.k = K, .nprobe = 1}, oall = {.k = K, .nprobe = 32};
    double r1 = index_recall(idx, &o1, ANN_METRIC_IP), rall = index_recall(idx, &oall, ANN_METRIC_IP);
    assert_true(rall >= r1);
    assert_true(rall > 0.999);
    ann_free(idx);
    cfg = (struct ann_cfg){.kind = ANN_KIND_HNSW, .metric = ANN_METRIC_IP, .hnsw_m = 8};
    idx = ann_build(&cfg, g_x, N, D, g_pool, &e);
    assert_non_null(idx);
    struct ann_search_opts h1 = {.k = K, .ef = K}, h2 = {.k = K, .ef = 200};
    double a = index_recall(idx, &h1, ANN_METRIC_IP), b = index_recall(idx, &h2, ANN_METRIC_IP);
    assert_true(b + 0.01 >= a);
    assert_true(b > 0.95);
    ann_free(idx);
}

/* ---------------------------------------------------------------------- exclusion ---- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static void test_exclusion_never_returned_and_k_kept(void **state)
{
    (void)state;
    const struct ann_cfg cfgs[] = {
        {.kind = ANN_KIND_FLAT},
        {.kind = ANN_KIND_FLAT_SQ8},
        {.kind = ANN_KIND_IVF_FLAT, .nlist = 32},
        {.kind = ANN_KIND_IVF_SQ8, .nlist = 32},
        {.kind = ANN_KIND_IVF_PQ, .nlist = 32, .pq_m = 16},
        {.kind = ANN_KIND_HNSW, .hnsw_m = 12},
        {.kind = ANN_KIND_HNSW, .hnsw_m = 12, .metric = ANN_METRIC_L2},
    };
    enum { NEX = 300 };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        struct err e;
        struct ann_index *idx = ann_build(&cfgs[c], g_x, N, D, g_pool, &e);
        if (!idx) fail_msg("build: %s", e.msg);
        for (int qi = 0; qi < 20; qi++) {
            const float *q = g_q + qi * D;
            /* exclude the unfiltered top 100 (what a user has "seen") plus spread-out ids */
            struct ann_hit first[100], got[K];
            struct ann_search_opts o = {.k = 100, .nprobe = 8, .ef = 128};
            int n1 = ann_search(idx, q, &o, NULL, first);
            assert_true(n1 == 100);
            uint32_t ex[NEX];
            for (int i = 0; i < 100; i++) ex[i] = first[i].id;
            for (int i = 100; i < NEX; i++) ex[i] = (uint32_t)((i * 7919 + qi) % N);
            qsort(ex, NEX, sizeof ex[0], cmp_u32);
            struct ann_search_opts ox = {.k = K, .nprobe = 8, .ef = 64, .exclude = ex, .n_exclude = NEX};
            int n = ann_search(idx, q, &ox, NULL, got);
            assert_int_equal(n, K);
            for (int i = 0; i < n; i++)
                assert_null(bsearch(&got[i].id, ex, NEX, sizeof ex[0], cmp_u32));
        }
        ann_free(idx);
    }
    /* flat: exclude everything but three ids -> exactly those three come back */
    struct err e;
    struct ann_cfg cfg = {.kind = ANN_KIND_FLAT};
    struct ann_index *idx = ann_build(&cfg, g_x, 200, D, NULL, &e);
    assert_non_null(idx);
    uint32_t ex[197];
    int w = 0;
    for (uint32_t i = 0; i < 200; i++)
        if (i != 5 && i != 77 && i != 150) ex[w++] = i;
    struct ann_search_opts o = {.k = K, .exclude = ex, .n_exclude = 197};
    struct ann_hit got[K];
    int n = ann_search(idx, g_q, &o, NULL, got);
    assert_int_equal(n, 3);
    for (int i = 0; i < n; i++) assert_true(got[i].id == 5 || got[i].id == 77 || got[i].id == 150);
    /* exclusion of ids the index does not hold is harmless; bad options are rejected */
    struct ann_search_opts bad = {.k = 0};
    assert_int_equal(ann_search(idx, g_q, &bad, NULL, got), ERR_INVALID);
    struct ann_search_opts bad2 = {.k = 3, .n_exclude = 4};
    assert_int_equal(ann_search(idx, g_q, &bad2, NULL, got), ERR_INVALID);
    ann_free(idx);
}

/* --------------------------------------------------------------------------- batch ---- */

static void test_batch_equals_single(void **state)
{
    (void)state;
    struct err e;
    struct ann_cfg cfg = {.kind = ANN_KIND_IVF_PQ, .nlist = 32, .pq_m = 16};
    struct ann_index *idx = ann_build(&cfg, g_x, N, D, g_pool, &e);
    assert_non_null(idx);
    struct ann_search_opts o[NQ];
    uint32_t ex[NQ][3];
    for (int i = 0; i < NQ; i++) {
        for (int j = 0; j < 3; j++) ex[i][j] = (uint32_t)(i * 3 + j);
        o[i] = (struct ann_search_opts){.k = K, .nprobe = 4, .exclude = ex[i], .n_exclude = 3};
    }
    struct ann_hit *bo = malloc(sizeof *bo * NQ * K);
    int counts[NQ];
    assert_int_equal(ann_search_batch(idx, g_q, NQ, o, NQ, bo, counts, g_pool), 0);
    for (int i = 0; i < NQ; i++) {
        struct ann_hit one[K];
        int n = ann_search(idx, g_q + i * D, &o[i], NULL, one);
        assert_int_equal(counts[i], n);
        for (int j = 0; j < n; j++) {
            assert_int_equal(bo[i * K + j].id, one[j].id);
            assert_float_equal(bo[i * K + j].score, one[j].score, 0);
        }
    }
    /* mixed k is rejected */
    o[3].k = K + 1;
    assert_int_equal(ann_search_batch(idx, g_q, NQ, o, NQ, bo, counts, g_pool), ERR_INVALID);
    free(bo);
    ann_free(idx);
}

/* The blocked exact batch path gives the single-query results (scores up to rounding). */
static void test_flat_batch_matches_single(void **state)
{
    (void)state;
    for (int m = 0; m < 2; m++) {
        struct err e;
        struct ann_cfg cfg = {.kind = ANN_KIND_FLAT, .metric = (enum ann_metric)m};
        struct ann_index *idx = ann_build(&cfg, g_x, N, D, g_pool, &e);
        assert_non_null(idx);
        enum { Q = 37 }; /* not a multiple of the query block */
        struct ann_search_opts o[Q];
        uint32_t ex[Q][2];
        for (int i = 0; i < Q; i++) {
            ex[i][0] = (uint32_t)i;
            ex[i][1] = (uint32_t)(N - 1 - i);
            o[i] = (struct ann_search_opts){.k = K, .exclude = ex[i], .n_exclude = 2};
        }
        struct ann_hit bo[Q * K];
        int counts[Q];
        assert_int_equal(ann_search_batch(idx, g_q, Q, o, Q, bo, counts, g_pool), 0);
        for (int i = 0; i < Q; i++) {
            struct ann_hit one[K];
            int n = ann_search(idx, g_q + i * D, &o[i], NULL, one);
            assert_int_equal(counts[i], n);
            for (int j = 0; j < n; j++) {
                float tol = 1e-3f * (1.0f + fabsf(one[j].score));
                if (bo[i * K + j].id != one[j].id) assert_float_equal(bo[i * K + j].score, one[j].score, tol);
                assert_float_equal(bo[i * K + j].score, one[j].score, tol);
                assert_true(bo[i * K + j].id != ex[i][0] && bo[i * K + j].id != ex[i][1]);
            }
        }
        ann_free(idx);
    }
}

/* ----------------------------------------------------------------------- save / load ---- */

static void save_load_kind(const struct ann_cfg *cfg, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, ann_kind_name(cfg->kind));
    struct err e;
    struct ann_index *idx = ann_build(cfg, g_x, N / 2, D, g_pool, &e);
    if (!idx) fail_msg("build: %s", e.msg);
    if (ann_save(idx, path, &e) != 0) fail_msg("save: %s", e.msg);
    /* bytes per vector is the index's real memory: the file holds the same arrays (all but
     * the IVF centroid norms and inverse norms, recomputed on load), so their sizes must add
     * up to it */
    struct gguf_file *gf = gguf_open(path, &e);
    if (!gf) fail_msg("gguf_open %s: %s", path, e.msg);
    double file_bytes = 0;
    for (uint64_t i = 0; i < gguf_n_tensors(gf); i++) file_bytes += (double)gguf_tensor_at(gf, i)->nbytes;
    gguf_close(gf);
    bool ivf = cfg->kind == ANN_KIND_IVF_FLAT || cfg->kind == ANN_KIND_IVF_SQ8 ||
               cfg->kind == ANN_KIND_IVF_PQ;
    if (ivf) file_bytes += 2.0 * ann_config(idx).nlist * sizeof(float);
    double bpv = ann_bytes_per_vector(idx) * (double)ann_size(idx);
    if (fabs(bpv - file_bytes) > 1e-6 * file_bytes)
        fail_msg("%s: bytes per vector x n = %.0f, arrays in the file = %.0f", ann_kind_name(cfg->kind),
                 bpv, file_bytes);
    struct ann_index *ld = ann_load(path, &e);
    if (!ld) fail_msg("load %s: %s", path, e.msg);
    assert_int_equal(ann_size(ld), ann_size(idx));
    assert_int_equal(ann_dim(ld), D);
    assert_int_equal(ann_kind_of(ld), cfg->kind);
    assert_int_equal(ann_metric_of(ld), cfg->metric);
    struct ann_search_opts o = {.k = K, .nprobe = 4, .ef = 32};
    for (int qi = 0; qi < 10; qi++) {
        struct ann_hit a[K], b[K];
        int na = ann_search(idx, g_q + qi * D, &o, NULL, a);
        int nb = ann_search(ld, g_q + qi * D, &o, NULL, b);
        assert_int_equal(na, nb);
        for (int i = 0; i < na; i++) {
            assert_int_equal(a[i].id, b[i].id);
            assert_float_equal(a[i].score, b[i].score, 0);
        }
    }
    /* adding to a loaded index copies it and keeps working; ids continue */
    if (ann_add(ld, g_x + (size_t)(N / 2) * D, N / 2, g_pool, &e) != 0) fail_msg("add: %s", e.msg);
    assert_int_equal(ann_size(ld), N);
    struct ann_search_opts o2 = {.k = 1, .nprobe = 64, .ef = 64};
    struct ann_hit h;
    /* an added vector finds itself under L2 */
    if (cfg->metric == ANN_METRIC_L2 && cfg->kind != ANN_KIND_IVF_PQ) {
        assert_int_equal(ann_search(ld, g_x + (size_t)(N - 3) * D, &o2, NULL, &h), 1);
        assert_int_equal(h.id, N - 3);
    }
    ann_free(ld);
    ann_free(idx);
}

static void test_save_load_round_trip(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    const struct ann_cfg cfgs[] = {
        {.kind = ANN_KIND_FLAT, .metric = ANN_METRIC_L2},
        {.kind = ANN_KIND_FLAT_SQ8, .metric = ANN_METRIC_L2},
        {.kind = ANN_KIND_IVF_FLAT, .metric = ANN_METRIC_L2, .nlist = 16},
        {.kind = ANN_KIND_IVF_SQ8, .metric = ANN_METRIC_L2, .nlist = 16},
        {.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_L2, .nlist = 16, .pq_m = 8},
        {.kind = ANN_KIND_IVF_PQ, .metric = ANN_METRIC_IP, .nlist = 16, .pq_m = 8},
        {.kind = ANN_KIND_HNSW, .metric = ANN_METRIC_L2, .hnsw_m = 8},
    };
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) save_load_kind(&cfgs[c], dir);
    test_rmtree(dir);
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 64);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void write_all(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* File offset of a tensor's data, found with the GGUF reader over the file's bytes. */
static size_t tensor_offset(const unsigned char *b, size_t len, const char *name)
{
    struct err e;
    struct gguf_file *f = gguf_open_mem(b, len, &e);
    if (!f) fail_msg("gguf_open_mem: %s", e.msg);
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    assert_non_null(t);
    size_t off = (size_t)((const unsigned char *)t->data - b);
    gguf_close(f);
    return off;
}

static void expect_load_error(const char *path, const char *needle)
{
    struct err e;
    err_clear(&e);
    struct ann_index *idx = ann_load(path, &e);
    assert_null(idx);
    assert_int_not_equal(e.code, ERR_OK);
    if (needle && !strstr(e.msg, needle)) fail_msg("error '%s' does not mention '%s'", e.msg, needle);
}

static void test_truncated_and_corrupted_files(void **state)
{
    (void)state;
    char dir[64], path[512], bad[512];
    test_tmpdir(dir, sizeof dir);
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    struct err e;

    /* IVF-SQ8 */
    struct ann_cfg cfg = {.kind = ANN_KIND_IVF_SQ8, .nlist = 16};
    struct ann_index *idx = ann_build(&cfg, g_x, 1000, D, g_pool, &e);
    assert_non_null(idx);
    snprintf(path, sizeof path, "%s/ivf.gguf", dir);
    assert_int_equal(ann_save(idx, path, &e), 0);
    ann_free(idx);
    size_t len;
    unsigned char *b = read_all(path, &len);
    /* truncation anywhere: header, metadata, tensor table, data */
    size_t cuts[] = {0, 3, 20, 100, len / 3, len / 2, len - 1000, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_all(bad, b, cuts[i]);
        expect_load_error(bad, NULL);
    }
    /* an id out of range, then a duplicate id */
    unsigned char *c = malloc(len);
    size_t ids_at = tensor_offset(b, len, "ivf.ids");
    memcpy(c, b, len);
    uint32_t v = 123456789u;
    memcpy(c + ids_at + 4 * 10, &v, 4);
    write_all(bad, c, len);
    expect_load_error(bad, "ivf.ids");
    memcpy(c, b, len);
    memcpy(c + ids_at + 4 * 10, c + ids_at + 4 * 11, 4);
    write_all(bad, c, len);
    expect_load_error(bad, "twice");
    /* list offsets out of order */
    size_t off_at = tensor_offset(b, len, "ivf.list_offsets");
    memcpy(c, b, len);
    uint64_t big = 5000;
    memcpy(c + off_at + 8 * 3, &big, 8);
    write_all(bad, c, len);
    expect_load_error(bad, "list_offsets");
    /* an SQ8 step count other than 255 or 256 (the u32 after the key's type) */
    const char *key = "nanorec.index.sq_levels";
    unsigned char *kp = memmem(b, len, key, strlen(key));
    assert_non_null(kp);
    memcpy(c, b, len);
    uint32_t levels = 7;
    memcpy(c + (kp - b) + strlen(key) + 4, &levels, 4);
    write_all(bad, c, len);
    expect_load_error(bad, "sq_levels");
    /* a foreign architecture */
    memcpy(c, b, len);
    char *arch = memmem(c, len, "nanorec.index.ivf_sq8", 21);
    assert_non_null(arch);
    memcpy(arch, "nanorec.index.ivf_xx8", 21);
    write_all(bad, c, len);
    expect_load_error(bad, "architecture");
    free(c);
    free(b);

    /* HNSW: a neighbour id out of range */
    cfg = (struct ann_cfg){.kind = ANN_KIND_HNSW, .hnsw_m = 8};
    idx = ann_build(&cfg, g_x, 500, D, g_pool, &e);
    assert_non_null(idx);
    snprintf(path, sizeof path, "%s/hnsw.gguf", dir);
    assert_int_equal(ann_save(idx, path, &e), 0);
    ann_free(idx);
    b = read_all(path, &len);
    c = malloc(len);
    memcpy(c, b, len);
    /* a neighbour id out of range, then a link count above 2M */
    size_t lk = tensor_offset(b, len, "hnsw.links0");
    uint32_t bad_id = 777777u, bad_cnt = 17;
    memcpy(c + lk + 4, &bad_id, 4);
    write_all(bad, c, len);
    expect_load_error(bad, "links to");
    memcpy(c, b, len);
    memcpy(c + lk, &bad_cnt, 4);
    write_all(bad, c, len);
    expect_load_error(bad, "links, at most");
    memcpy(c, b, len);
    /* not a GGUF file at all */
    memset(c, 'x', 64);
    write_all(bad, c, len);
    expect_load_error(bad, NULL);
    expect_load_error("/nonexistent/dir/index.gguf", NULL);
    free(c);
    free(b);
    test_rmtree(dir);
}

/* ---------------------------------------------------------------------- synthetic ---- */

/* The 16-bit PQ table gives the f32 sums within m * scale / 2 (plus float rounding). */
static void test_pq_lut16_matches_f32(void **state)
{
    (void)state;
    const struct ann_dist_ops *ref = ann_dist_for(ANN_ISA_SCALAR);
    static const int ms[] = {32, 33, 64, 95};
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
        int m = ms[mi];
        float *lut = malloc(sizeof *lut * 256 * (size_t)m);
        uint16_t *q = malloc(sizeof *q * 256 * (size_t)m);
        const size_t n = 300;
        uint8_t *codes = malloc(n * (size_t)m);
        float *a = malloc(sizeof *a * n), *b = malloc(sizeof *b * n);
        assert_true(lut && q && codes && a && b);
        uint32_t st = 12345u + (uint32_t)m;
        for (int i = 0; i < 256 * m; i++) {
            st = st * 1664525u + 1013904223u;
            /* per-sub-quantizer offsets and ranges differ, as in real tables */
            lut[i] = (float)(st >> 8) / 16777216.0f * (1.0f + (float)(i / 256 % 7)) - 3.0f;
        }
        for (size_t i = 0; i < n * (size_t)m; i++) {
            st = st * 1664525u + 1013904223u;
            codes[i] = (uint8_t)(st >> 24);
        }
        float scale, bias;
        ann_pq_lut16(lut, m, q, &scale, &bias);
        assert_true(scale > 0.0f);
        ref->pq_adc_rows(lut, codes, n, m, a);
        ann_pq_adc_rows_u16(q, codes, n, m, scale, bias, b);
        double tol = (double)m * scale * 0.5 + 1e-4 * m;
        for (size_t i = 0; i < n; i++)
            if (fabs((double)a[i] - b[i]) > tol)
                fail_msg("m %d row %zu: f32 %.6f u16 %.6f (tolerance %.6f)", m, i, a[i], b[i], tol);
        free(lut);
        free(q);
        free(codes);
        free(a);
        free(b);
    }
}

/* Every table's 16-bit PQ scan (the VBMI byte-permute kernel where the CPU has it) gives
 * bit-identical scores to the scalar reference: the integer sums are exact and the final
 * scale and bias are applied with the same rounding. Counts around the 64-code block and
 * tables whose entries use all 16 bits (both byte planes, indices >= 128) included. */
static void test_pq_adc_u16_kernels_match_scalar(void **state)
{
    (void)state;
    static const int ms[] = {8, 16, 32, 33, 64};
    static const size_t ns[] = {1, 5, 63, 64, 65, 130, 517};
    const size_t nmax = 517;
    int tables = 0;
    for (int isa = ANN_ISA_SCALAR; isa <= ANN_ISA_AVX512; isa++) {
        const struct ann_dist_ops *o = ann_dist_for((enum ann_isa)isa);
        if (!o) continue;
        tables++;
        for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
            int m = ms[mi];
            uint16_t *q = malloc(sizeof *q * 256 * (size_t)m);
            uint8_t *planes = malloc(512 * (size_t)m);
            uint8_t *codes = malloc(nmax * (size_t)m);
            float *a = malloc(sizeof *a * nmax), *b = malloc(sizeof *b * nmax);
            assert_true(q && planes && codes && a && b);
            uint32_t st = 777u + (uint32_t)m;
            for (int i = 0; i < 256 * m; i++) {
                st = st * 1664525u + 1013904223u;
                q[i] = (uint16_t)(st >> 16);
            }
            q[0] = 65535; /* extremes: the largest sum must not wrap */
            q[255] = 0;
            for (size_t i = 0; i < nmax * (size_t)m; i++) {
                st = st * 1664525u + 1013904223u;
                codes[i] = (uint8_t)(st >> 24);
            }
            for (int j = 0; j < m; j++) codes[(size_t)7 * m + j] = 0; /* row 7: all 65535 at j 0 */
            ann_pq_lut16_planes(q, m, planes);
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
                size_t n = ns[ni];
                ann_pq_adc_rows_u16(q, codes, n, m, 0.37f, -5.5f, a);
                for (size_t i = 0; i < n; i++) b[i] = NAN;
                o->pq_adc_rows_u16(q, planes, codes, n, m, 0.37f, -5.5f, b);
                for (size_t i = 0; i < n; i++)
                    if (a[i] != b[i])
                        fail_msg("%s m %d n %zu row %zu: scalar %.9g kernel %.9g",
                                 ann_isa_name((enum ann_isa)isa), m, n, i, a[i], b[i]);
                o->pq_adc_rows_u16(q, NULL, codes, n, m, 0.37f, -5.5f, b); /* no planes */
                for (size_t i = 0; i < n; i++) assert_true(a[i] == b[i]);
            }
            free(q);
            free(planes);
            free(codes);
            free(a);
            free(b);
        }
    }
    print_message("  pq u16 scan: %d table(s) equal to scalar\n", tables);
}

/* Rows start on cache lines (a 1 KB row 16 bytes past a line makes every 64-byte load span
 * two lines: ~30 % slower exact scans), in memory after growth and in saved files. */
static void test_rows_cache_line_aligned(void **state)
{
    (void)state;
    unsigned char *p = NULL;
    size_t have = 0;
    for (size_t n = 1; n < 200000; n = n * 3 + 7) {
        p = ann_realloc_aligned(p, have, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % ANN_ALIGN, 0);
        for (size_t i = 0; i < have && i < n; i++) assert_int_equal(p[i], (unsigned char)(i * 7));
        for (size_t i = have; i < n; i++) p[i] = (unsigned char)(i * 7);
        have = n;
    }
    free(p);

    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/flat.gguf", dir);
    const int d = 20; /* 80-byte rows: the file's alignment, not the row size, aligns them */
    float *x = malloc(sizeof *x * 300 * d);
    assert_non_null(x);
    for (int i = 0; i < 300 * d; i++) x[i] = (float)((i * 37) % 101) / 101.0f;
    struct err e;
    err_clear(&e);
    struct ann_cfg cfg = {.kind = ANN_KIND_FLAT, .metric = ANN_METRIC_IP};
    struct ann_index *idx = ann_build(&cfg, x, 100, d, NULL, &e);
    assert_non_null(idx);
    assert_int_equal(ann_add(idx, x + 100 * d, 200, NULL, &e), 0);
    assert_int_equal(ann_save(idx, path, &e), 0);
    ann_free(idx);
    size_t len;
    unsigned char *b = read_all(path, &len);
    assert_int_equal(tensor_offset(b, len, "vectors") % ANN_ALIGN, 0);
    free(b);
    free(x);
    test_rmtree(dir);
}

static void test_synth_expansion_preserves_moments(void **state)
{
    (void)state;
    enum { NB = 2000, NE = 20000, DIM = 8 };
    float *base = malloc(sizeof(float) * NB * DIM), *out = malloc(sizeof(float) * NE * DIM);
    float *out2 = malloc(sizeof(float) * NE * DIM);
    struct ann_rng r;
    ann_rng_seed(&r, 5);
    for (int i = 0; i < NB; i++)
        for (int j = 0; j < DIM; j++) base[i * DIM + j] = (float)(j - 3 + (j + 1) * ann_rng_normal(&r));
    double bm[DIM], bv[DIM], m[DIM], v[DIM];
    ann_synth_stats(base, NB, DIM, bm, bv);
    const float alphas[] = {0.0f, 0.8f};
    for (int a = 0; a < 2; a++) {
        assert_int_equal(ann_synth_expand(base, NB, DIM, NE, alphas[a], 77, out, g_pool), 0);
        assert_int_equal(ann_synth_expand(base, NB, DIM, NE, alphas[a], 77, out2, NULL), 0);
        assert_memory_equal(out, out2, sizeof(float) * NE * DIM); /* deterministic by seed */
        ann_synth_stats(out, NE, DIM, m, v);
        for (int j = 0; j < DIM; j++) {
            double sd = sqrt(bv[j]);
            assert_true(fabs(m[j] - bm[j]) < 0.05 * sd + 0.02);
            assert_true(fabs(v[j] / bv[j] - 1.0) < 0.06);
        }
    }
    assert_int_equal(ann_synth_expand(base, NB, DIM, NE, 1.0f, 77, out, NULL), ERR_INVALID);
    /* clustered: row i is the same whether generated alone or in a batch */
    float one[DIM];
    assert_int_equal(ann_synth_clustered(NE, DIM, 10, 0.1f, 3, 0, out, g_pool), 0);
    assert_int_equal(ann_synth_clustered(1, DIM, 10, 0.1f, 3, 1234, one, NULL), 0);
    assert_memory_equal(one, out + 1234 * DIM, sizeof one);
    free(base);
    free(out);
    free(out2);
}

/* -------------------------------------------------------------------- build errors ---- */

static void test_build_rejects_bad_parameters(void **state)
{
    (void)state;
    struct err e;
    struct ann_cfg cfg = {.kind = ANN_KIND_IVF_PQ, .pq_m = 7};
    assert_null(ann_build(&cfg, g_x, N, D, NULL, &e));
    assert_non_null(strstr(e.msg, "divide"));
    cfg = (struct ann_cfg){.kind = ANN_KIND_IVF_FLAT, .nlist = 100};
    assert_null(ann_build(&cfg, g_x, 50, D, NULL, &e));
    assert_non_null(strstr(e.msg, "training vectors"));
    cfg = (struct ann_cfg){.kind = (enum ann_kind)17};
    assert_null(ann_build(&cfg, g_x, 50, D, NULL, &e));
    cfg = (struct ann_cfg){.kind = ANN_KIND_FLAT};
    assert_null(ann_build(&cfg, g_x, 50, 0, NULL, &e));
    /* an empty flat index answers with no hits */
    struct ann_index *idx = ann_build(&cfg, NULL, 0, D, NULL, &e);
    assert_non_null(idx);
    struct ann_search_opts o = {.k = 5};
    struct ann_hit h[5];
    assert_int_equal(ann_search(idx, g_q, &o, NULL, h), 0);
    ann_free(idx);
    assert_int_equal(ann_kind_parse("ivf_pq"), ANN_KIND_IVF_PQ);
    assert_int_equal(ann_kind_parse("nope"), -1);
}

/* Writes the fuzzing seed corpus (`make check` puts it in $BUILD/fuzz-corpus/ann_index/): one small file of each kind and
 * metric, built from the clustered set. */
static int write_corpus(const char *dir)
{
    if (group_setup(NULL) != 0) return 1;
    enum { CN = 300, CD = 8 };
    float *x = malloc(sizeof(float) * CN * CD);
    ann_synth_clustered(CN, CD, 6, 0.3f, 9, 0, x, NULL);
    const struct ann_cfg cfgs[] = {
        {.kind = ANN_KIND_FLAT},
        {.kind = ANN_KIND_FLAT_SQ8, .metric = ANN_METRIC_L2},
        {.kind = ANN_KIND_IVF_FLAT, .nlist = 4},
        {.kind = ANN_KIND_IVF_SQ8, .nlist = 4, .metric = ANN_METRIC_L2},
        {.kind = ANN_KIND_IVF_PQ, .nlist = 4, .pq_m = 2},
        {.kind = ANN_KIND_IVF_PQ, .nlist = 4, .pq_m = 4, .metric = ANN_METRIC_L2},
        {.kind = ANN_KIND_HNSW, .hnsw_m = 4},
    };
    int rc = 0;
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        struct err e;
        char path[1024];
        struct ann_index *idx = ann_build(&cfgs[c], x, CN, CD, NULL, &e);
        snprintf(path, sizeof path, "%s/%s_%s.gguf", dir, ann_kind_name(cfgs[c].kind),
                 cfgs[c].metric == ANN_METRIC_IP ? "ip" : "l2");
        if (!idx || ann_save(idx, path, &e) != 0) {
            fprintf(stderr, "write-corpus: %s: %s\n", path, e.msg);
            rc = 1;
        }
        ann_free(idx);
    }
    free(x);
    group_teardown(NULL);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0) return write_corpus(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_match_scalar),
        cmocka_unit_test(test_kmeans_recovers_clusters_deterministically),
        cmocka_unit_test(test_kmeans_spherical_ip),
        cmocka_unit_test(test_flat_ip_equals_brute_force),
        cmocka_unit_test(test_flat_l2_equals_brute_force),
        cmocka_unit_test(test_recall_floors),
        cmocka_unit_test(test_recall_grows_with_effort),
        cmocka_unit_test(test_ip_centroids_recentred),
        cmocka_unit_test(test_sq8_codes_faiss_rule),
        cmocka_unit_test(test_exclusion_never_returned_and_k_kept),
        cmocka_unit_test(test_batch_equals_single),
        cmocka_unit_test(test_flat_batch_matches_single),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_truncated_and_corrupted_files),
        cmocka_unit_test(test_rows_cache_line_aligned),
        cmocka_unit_test(test_pq_lut16_matches_f32),
        cmocka_unit_test(test_pq_adc_u16_kernels_match_scalar),
        cmocka_unit_test(test_synth_expansion_preserves_moments),
        cmocka_unit_test(test_build_rejects_bad_parameters),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
