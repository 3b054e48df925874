/* Writes a benchmark artifact set for `make bench-serve`: the ml-20m catalogue (27,278 movies
 * with their titles, genres and years from ml-20m-metadata/movies.csv; ml-20m's ratings are
 * not shipped here), synthetic users with taste clusters and Zipf popularity, an encoder of
 * the reference's size (dim 256, 4 layers, 8 heads, FFN 1024, max_len 200) and a ranker
 * (512, 256, 128), then `nanorec export` with an HNSW index.
 *
 * The weights are seeded, not trained: one training epoch at this size takes about half an
 * hour on the 2-core benchmark machine, and latency does not depend on weight values.
 *
 *   rec_synth --out DIR [--movies movies.csv] [--users N (20000)] [--seed S] [--index KIND]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "recsys/dataset.h"
#include "recsys/encoder.h"
#include "recsys/movielens.h"
#include "recsys/ranker.h"
#include "recsys/rec_export.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0;
}

struct movie {
    uint32_t id, genres;
    uint16_t year;
    char *title;
};

/* Reads movies.csv; returns the count (0 on failure). */
static size_t read_movies(const char *path, struct movie **out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = 0, cap = 32768;
    struct movie *m = calloc(cap, sizeof *m);
    char *line = malloc(MOVIELENS_MAX_LINE), *buf = malloc(4 * MOVIELENS_MAX_LINE + 8);
    bool header = true;
    while (fgets(line, MOVIELENS_MAX_LINE, f)) {
        if (header) {
            header = false;
            continue;
        }
        size_t len = strcspn(line, "\r\n");
        struct movielens_movie mv;
        char why[128];
        if (movielens_parse_movie(MOVIELENS_CSV, line, len, buf, 4 * MOVIELENS_MAX_LINE + 8, &mv,
                                  why, sizeof why) != 0)
            continue;
        if (n == cap) {
            cap *= 2;
            m = realloc(m, cap * sizeof *m);
        }
        m[n++] = (struct movie){mv.id, mv.genres, mv.year, strdup(mv.title)};
    }
    fclose(f);
    free(line);
    free(buf);
    *out = m;
    return n;
}

int main(int argc, char **argv)
{
    const char *out = NULL, *movies = "../shared/data/movielens/ml-20m-metadata/movies.csv";
    const char *index = "hnsw";
    long users = 20000;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--movies") && i + 1 < argc) movies = argv[++i];
        else if (!strcmp(argv[i], "--users") && i + 1 < argc) users = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = (uint64_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--index") && i + 1 < argc) index = argv[++i];
        else {
            fprintf(stderr, "usage: rec_synth --out DIR [--movies movies.csv] [--users N] "
                            "[--seed S] [--index KIND]\n");
            return 2;
        }
    }
    if (!out || users < 1 || users > 10000000) {
        fprintf(stderr, "rec_synth: --out is required and --users must be 1..10000000\n");
        return 2;
    }
    struct movie *mv = NULL;
    size_t n_items = read_movies(movies, &mv);
    if (n_items == 0) { /* no metadata: a synthetic catalogue of the same size */
        n_items = 27278;
        mv = calloc(n_items, sizeof *mv);
        for (size_t i = 0; i < n_items; i++) {
            char t[64];
            snprintf(t, sizeof t, "Movie %zu (%zu)", i + 1, 1930 + i % 85);
            mv[i] = (struct movie){(uint32_t)i + 1, 1u << (i % REC_GENRE_COUNT),
                                   (uint16_t)(1930 + i % 85), strdup(t)};
        }
    }
    printf("rec_synth: %zu movies, %ld users\n", n_items, users);
    /* users: a taste cluster (a band of the popularity order) and a history length of 5..400
     * (log-uniform, median about 45, like MovieLens' skew) */
    const int n_clusters = 64;
    uint64_t rs = seed;
    uint64_t *off = malloc(((size_t)users + 1) * sizeof *off);
    size_t cap = (size_t)users * 64, n = 0;
    uint32_t *seq = malloc(cap * sizeof *seq);
    uint8_t *mark = calloc(n_items + 1, 1);
    for (long u = 0; u < users; u++) {
        off[u] = n;
        int len = (int)(5.0 * pow(80.0, rng_unit(&rs)));
        size_t cl = rng_next(&rs) % n_clusters;
        if (n + (size_t)len > cap) {
            cap = cap * 2 + (size_t)len;
            seq = realloc(seq, cap * sizeof *seq);
        }
        size_t start = n;
        for (int i = 0; i < len; i++) {
            uint32_t it;
            for (int tries = 0;; tries++) {
                double r = rng_unit(&rs);
                if (r < 0.5) /* global Zipf-like popularity: low ids popular */
                    it = 1 + (uint32_t)((double)n_items * pow(rng_unit(&rs), 3.0));
                else /* the cluster's own items */
                    it = 1 + (uint32_t)((cl * 7919 + (size_t)(400.0 * pow(rng_unit(&rs), 2.0)) * 61) %
                                        n_items);
                if (it > n_items) it = (uint32_t)n_items;
                if (!mark[it] || tries > 20) break;
            }
            if (mark[it]) continue;
            mark[it] = 1;
            seq[n++] = it;
        }
        for (size_t i = start; i < n; i++)
            mark[seq[i]] = 0;
    }
    off[users] = n;
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_from_sequences((uint32_t)users, (uint32_t)n_items, off, seq,
                                                       &err);
    if (!d) {
        fprintf(stderr, "rec_synth: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 1; i <= n_items; i++) {
        d->item_orig[i] = mv[i - 1].id;
        d->item_genres[i] = mv[i - 1].genres;
        d->item_year[i] = mv[i - 1].year;
        free(d->item_title[i]);
        d->item_title[i] = mv[i - 1].title;
    }
    for (long u = 0; u < users; u++)
        d->user_orig[u] = (uint32_t)u + 1;
    snprintf(d->source, sizeof d->source, "synthetic");
    printf("rec_synth: %zu interactions (%.1f per user)\n", n, (double)n / (double)users);
    char src[1024], path[1200], enc_path[1200], rk_path[1200];
    snprintf(src, sizeof src, "%s.src", out);
    mkdir(src, 0755);
    snprintf(path, sizeof path, "%s/dataset.gguf", src);
    if (rec_dataset_save(d, path, &err)) goto fail;

    struct encoder_config c;
    encoder_config_default(&c);
    c.n_items = (int)n_items;
    c.dim = 256;
    c.n_layers = 4;
    c.n_heads = 8;
    c.ffn = 1024;
    c.max_len = 200;
    struct encoder *e = encoder_new(&c, seed, &err);
    if (!e) goto fail;
    snprintf(enc_path, sizeof enc_path, "%s/encoder.gguf", src);
    if (encoder_save(e, NULL, enc_path, &err)) goto fail;
    encoder_free(e);

    struct ranker_config rc;
    ranker_config_default(&rc, 256);
    struct ranker *r = ranker_new(&rc, seed, &err);
    if (!r) goto fail;
    struct ranker_items it = {0};
    if (ranker_items_init(&it, (uint32_t)n_items, d->item_year, d->item_genres, d->item_pop_train,
                          &err))
        goto fail;
    snprintf(rk_path, sizeof rk_path, "%s/ranker.gguf", src);
    if (ranker_save(r, &it, rk_path, &err)) goto fail;
    ranker_items_free(&it);
    ranker_free(r);

    struct rec_export_cfg ec = {.data = path, .encoder = enc_path, .ranker = rk_path, .out = out,
                                .index_kind = index, .threads = 2};
    if (rec_export(&ec, &err)) goto fail;
    rec_dataset_free(d);
    free(mv);
    free(off);
    free(seq);
    free(mark);
    return 0;
fail:
    fprintf(stderr, "rec_synth: %s\n", err.msg);
    return 1;
}
