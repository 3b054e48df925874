/* libFuzzer harness for the MovieLens ingest. The first input byte picks a mode, the rest is
 * the text:
 *   bits 0-1: layout (csv, dat, 100k, sasrec)
 *   bit 2:    the text is a whole ratings file loaded through movielens_load (line reader,
 *             BOM/CRLF handling, reports, sequence building); otherwise each line of the text
 *             goes through every line parser
 *   bit 3:    strict mode for the whole-file load; in whole-file mode a line holding only
 *             the byte 0x1E splits the text into the ratings file and the movies file
 *   bit 4:    the text is a dataset artifact (GGUF) loaded through rec_dataset_load
 * Besides the sanitizers it checks the parsers' promises: CSV fields lie inside the buffer and
 * are NUL-terminated, titles are UTF-8 within the bound, years are 0 or plausible, genre masks
 * use known bits, a loaded dataset validates, a failure carries a message. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "recsys/dataset.h"
#include "base/utf8.h"
#include "recsys/movielens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum movielens_layout layouts[4] = {MOVIELENS_CSV, MOVIELENS_DAT, MOVIELENS_100K,
                                                 MOVIELENS_SASREC};
static const char *const rating_names[4] = {"ratings.csv", "ratings.dat", "u.data",
                                            "fuzz_sasrec.txt"};
static const char *const movie_names[4] = {"movies.csv", "movies.dat", "u.item", "movies.dat"};

static bool write_to(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return false;
    bool ok = fwrite(p, 1, n, fp) == n;
    return fclose(fp) == 0 && ok;
}

static void remove_in(const char *dir, const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void one_line(enum movielens_layout layout, const char *line, size_t len)
{
    char why[160];
    size_t cap = 4 * len + 8;
    char *buf = malloc(cap);
    struct movielens_field f[32];
    if (!buf) return;

    int n = movielens_csv_split(line, len, buf, 2 * len + 2, f, 32, why, sizeof why);
    if (n > 32) abort();
    for (int k = 0; k < n; k++) {
        if (f[k].ptr < buf || f[k].ptr + f[k].len >= buf + 2 * len + 2) abort();
        if (f[k].ptr[f[k].len] != '\0') abort();
    }
    n = movielens_sep_split(line, len, "::", f, 32);
    for (int k = 0; k < n; k++)
        if (f[k].ptr < line || f[k].ptr + f[k].len > line + len) abort();

    struct movielens_rating r;
    (void)movielens_parse_rating(layout, line, len, &r, why, sizeof why);

    struct movielens_movie m;
    if (movielens_parse_movie(layout, line, len, buf, cap, &m, why, sizeof why) == 0) {
        size_t tl = strlen(m.title);
        if (tl > MOVIELENS_MAX_TITLE || !utf8_valid(m.title, tl)) abort();
        if (m.year != 0 && (m.year < 1870 || m.year > 2100)) abort();
        if (m.genres >> REC_GENRE_COUNT) abort();
    } else if (why[0] == '\0') {
        abort();
    }
    uint16_t y = movielens_parse_year(line, len);
    if (y != 0 && (y < 1870 || y > 2100)) abort();
    if (movielens_parse_genres(line, len, NULL) >> REC_GENRE_COUNT) abort();
    size_t ul = movielens_to_utf8(line, len, buf, cap);
    if (ul >= cap || !utf8_valid(buf, ul)) abort();
    free(buf);
}

static void whole_file(int li, bool strict, const uint8_t *text, size_t len)
{
    char dir[] = "/tmp/fuzz_movielens.XXXXXX";
    if (!mkdtemp(dir)) return;
    size_t rlen = len;
    const uint8_t *movies = NULL;
    size_t mlen = 0;
    for (size_t i = 0; i + 2 < len; i++) {
        if (text[i] == '\n' && text[i + 1] == 0x1E && text[i + 2] == '\n') {
            rlen = i + 1;
            movies = text + i + 3;
            mlen = len - (i + 3);
            break;
        }
    }
    if (write_to(dir, rating_names[li], text, rlen) &&
        (!movies || write_to(dir, movie_names[li], movies, mlen))) {
        struct movielens_cfg cfg = {.strict = strict};
        struct movielens_report rep;
        struct err err = {0};
        struct rec_dataset *d = movielens_load(dir, &cfg, &rep, &err);
        if (d) {
            if (rec_dataset_validate(d, &err) != 0) abort();
            if (rep.n_reports > MOVIELENS_MAX_REPORTS) abort();
            /* what was loaded saves and loads back the same */
            char path[160];
            snprintf(path, sizeof path, "%s/%s", dir, REC_DATASET_FILE);
            if (rec_dataset_save(d, path, &err) != 0) abort();
            struct rec_dataset *b = rec_dataset_load(path, &err);
            if (!b || b->n_interactions != d->n_interactions || b->n_items != d->n_items ||
                memcmp(b->seq, d->seq, (size_t)d->n_interactions * sizeof *d->seq) != 0)
                abort();
            rec_dataset_free(b);
            rec_dataset_free(d);
            remove_in(dir, REC_DATASET_FILE);
        } else if (err.msg[0] == '\0') {
            abort();
        }
    }
    remove_in(dir, rating_names[li]);
    remove_in(dir, movie_names[li]);
    rmdir(dir);
}

static void artifact(const uint8_t *text, size_t len)
{
    char dir[] = "/tmp/fuzz_movielens.XXXXXX";
    if (!mkdtemp(dir)) return;
    if (write_to(dir, REC_DATASET_FILE, text, len)) {
        struct err err = {0};
        struct rec_dataset *d = rec_dataset_load(dir, &err);
        if (d) {
            if (rec_dataset_validate(d, &err) != 0) abort();
            rec_dataset_free(d);
        } else if (err.msg[0] == '\0') {
            abort();
        }
    }
    remove_in(dir, REC_DATASET_FILE);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20)) return 0;
    uint8_t mode = data[0];
    int li = mode & 3;
    const uint8_t *text = data + 1;
    size_t len = size - 1;
    if (mode & 16) {
        artifact(text, len);
        return 0;
    }
    if (mode & 4) {
        whole_file(li, (mode & 8) != 0, text, len);
        return 0;
    }
    /* each line separately, in an exact-size copy so over-reads are seen */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            size_t l = i - start;
            char *line = malloc(l ? l : 1);
            if (!line) return 0;
            memcpy(line, text + start, l);
            one_line(layouts[li], line, l);
            free(line);
            start = i + 1;
        }
    }
    return 0;
}
