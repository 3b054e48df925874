/* The dataset artifact: one GGUF v3 file, general.architecture = "nanorec.dataset".
 *
 * Metadata: nanorec.dataset.{version, source, n_users, n_items, n_interactions}, the genre
 * names in bit order (nanorec.dataset.genres) and the item titles (nanorec.dataset.titles,
 * n_items + 1 strings, [0] = ""). Tensors, all one-dimensional:
 *   user_off       i64  n_users + 1
 *   seq            i32  n_interactions      item ids 1..n_items
 *   ts             i64  n_interactions      unix seconds (0 = unknown)
 *   user_orig      i32  n_users             source user ids (u32 bit pattern)
 *   item_orig      i32  n_items + 1         source movie ids (u32 bit pattern)
 *   item_genres    i32  n_items + 1         enum rec_genre bitmask
 *   item_year      i16  n_items + 1
 *   item_pop       i32  n_items + 1
 *   item_pop_train i32  n_items + 1
 * Loading copies everything out of the mapping and checks every invariant, including that the
 * stored popularity agrees with the sequences. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/gguf.h"
#include "recsys/dataset.h"

#define ARCH "nanorec.dataset"
#define KEY(k) ARCH "." k
#define DATASET_VERSION 1
#define TITLE_MAX 4096

int rec_dataset_save(const struct rec_dataset *d, const char *path, struct err *err)
{
    int rc = rec_dataset_validate(d, err);
    if (rc < 0) return err_prefix(err, "not saving %s", path);
    if (d->n_users == 0 || d->n_interactions == 0)
        return err_set(err, ERR_INVALID, "not saving %s: the dataset is empty", path);
    if (d->n_items >= (1u << 31))
        return err_set(err, ERR_UNSUPPORTED, "not saving %s: %u items do not fit i32 ids", path,
                       d->n_items);
    struct gguf_writer *w = gguf_writer_new();
    if (!w) return err_set(err, ERR_NOMEM, "out of memory writing %s", path);
    uint64_t ni = (uint64_t)d->n_items + 1;
    const char *genres[REC_GENRE_COUNT];
    for (int g = 0; g < REC_GENRE_COUNT; g++)
        genres[g] = rec_genre_name((enum rec_genre)g);
    rc = gguf_writer_set_str(w, "general.architecture", ARCH);
    rc = rc ? rc : gguf_writer_set_str(w, "general.name", "MovieLens dataset");
    rc = rc ? rc : gguf_writer_set_u32(w, KEY("version"), DATASET_VERSION);
    rc = rc ? rc : gguf_writer_set_str(w, KEY("source"), d->source);
    rc = rc ? rc : gguf_writer_set_u32(w, KEY("n_users"), d->n_users);
    rc = rc ? rc : gguf_writer_set_u32(w, KEY("n_items"), d->n_items);
    rc = rc ? rc : gguf_writer_set_u64(w, KEY("n_interactions"), d->n_interactions);
    rc = rc ? rc : gguf_writer_set_arr(w, KEY("genres"), GGUF_TYPE_STRING, genres, REC_GENRE_COUNT);
    rc = rc ? rc : gguf_writer_set_arr(w, KEY("titles"), GGUF_TYPE_STRING, d->item_title, ni);
    if (rc) {
        rc = err_set(err, ERR_NOMEM, "out of memory writing %s's metadata", path);
        goto out;
    }
    struct {
        const char *name;
        enum ggml_type type;
        uint64_t n;
        const void *data;
    } t[] = {
        {"user_off", GGML_TYPE_I64, (uint64_t)d->n_users + 1, d->user_off},
        {"seq", GGML_TYPE_I32, d->n_interactions, d->seq},
        {"ts", GGML_TYPE_I64, d->n_interactions, d->ts},
        {"user_orig", GGML_TYPE_I32, d->n_users, d->user_orig},
        {"item_orig", GGML_TYPE_I32, ni, d->item_orig},
        {"item_genres", GGML_TYPE_I32, ni, d->item_genres},
        {"item_year", GGML_TYPE_I16, ni, d->item_year},
        {"item_pop", GGML_TYPE_I32, ni, d->item_pop},
        {"item_pop_train", GGML_TYPE_I32, ni, d->item_pop_train},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++) {
        uint64_t ne[1] = {t[k].n};
        rc = gguf_writer_add_tensor(w, t[k].name, t[k].type, 1, ne, t[k].data, true, err);
        if (rc < 0) goto out;
    }
    rc = gguf_writer_write(w, path, err);
out:
    gguf_writer_free(w);
    if (rc < 0) err_prefix(err, "writing dataset %s", path);
    return rc;
}

/* Copies tensor `name` (1-D, `type`, exactly n elements of `elem` bytes) into a new buffer. */
static void *take_tensor(const struct gguf_file *f, const char *name, enum ggml_type type,
                         size_t elem, uint64_t n, struct err *err)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        err_set(err, ERR_INVALID, "tensor '%s' is missing", name);
        return NULL;
    }
    if (t->type != type) {
        err_set(err, ERR_INVALID, "tensor '%s' has type %s, expected %s", name,
                ggml_type_name(t->type) ? ggml_type_name(t->type) : "?", ggml_type_name(type));
        return NULL;
    }
    uint64_t count = 1;
    for (uint32_t k = 0; k < t->n_dims; k++)
        count *= t->ne[k];
    if (t->n_dims != 1 || count != n) {
        err_set(err, ERR_INVALID, "tensor '%s' has %llu elements in %u dims, expected %llu in 1",
                name, (unsigned long long)count, t->n_dims, (unsigned long long)n);
        return NULL;
    }
    if (n > SIZE_MAX / elem || t->nbytes != n * elem) {
        err_set(err, ERR_INVALID, "tensor '%s' has %llu bytes, expected %llu", name,
                (unsigned long long)t->nbytes, (unsigned long long)(n * elem));
        return NULL;
    }
    void *p = malloc(n ? (size_t)(n * elem) : 1);
    if (!p) {
        err_set(err, ERR_NOMEM, "out of memory loading tensor '%s'", name);
        return NULL;
    }
    if (n) memcpy(p, t->data, (size_t)(n * elem));
    return p;
}

static struct rec_dataset *load_file(const char *path, struct err *err)
{
    struct gguf_file *f = gguf_open(path, err);
    if (!f) return NULL;
    struct rec_dataset *d = calloc(1, sizeof *d);
    uint32_t *pop = NULL, *pop_train = NULL;
    if (!d) {
        err_set(err, ERR_NOMEM, "out of memory");
        goto fail;
    }
    struct gguf_str s;
    if (gguf_get_str(f, "general.architecture", &s, err) < 0) {
        err_set(err, ERR_INVALID, "no general.architecture: not a nanorec dataset");
        goto fail;
    }
    if (!gguf_str_eq(s, ARCH)) {
        err_set(err, ERR_INVALID, "general.architecture is '%.*s', expected '" ARCH "'",
                (int)(s.len > 64 ? 64 : s.len), s.ptr);
        goto fail;
    }
    uint32_t version = 0;
    if (gguf_get_u32(f, KEY("version"), &version, err) < 0) goto fail;
    if (version != DATASET_VERSION) {
        err_set(err, ERR_UNSUPPORTED, "dataset version %u; this build reads version %u", version,
                DATASET_VERSION);
        goto fail;
    }
    if (gguf_get_u32(f, KEY("n_users"), &d->n_users, err) < 0 ||
        gguf_get_u32(f, KEY("n_items"), &d->n_items, err) < 0 ||
        gguf_get_u64(f, KEY("n_interactions"), &d->n_interactions, err) < 0)
        goto fail;
    if (d->n_items >= (1u << 31)) {
        err_set(err, ERR_INVALID, "n_items %u out of range", d->n_items);
        goto fail;
    }
    if (gguf_get_str(f, KEY("source"), &s, err) == 0)
        snprintf(d->source, sizeof d->source, "%.*s", (int)(s.len > 63 ? 63 : s.len), s.ptr);
    uint64_t ni = (uint64_t)d->n_items + 1, nu = d->n_users, n = d->n_interactions;
    /* tensors: the element counts are checked against the file's own tensor sizes, which the
     * GGUF reader has checked against the file length, so no count here can overrun */
    if (!(d->user_off = take_tensor(f, "user_off", GGML_TYPE_I64, 8, nu + 1, err)) ||
        !(d->seq = take_tensor(f, "seq", GGML_TYPE_I32, 4, n, err)) ||
        !(d->ts = take_tensor(f, "ts", GGML_TYPE_I64, 8, n, err)) ||
        !(d->user_orig = take_tensor(f, "user_orig", GGML_TYPE_I32, 4, nu, err)) ||
        !(d->item_orig = take_tensor(f, "item_orig", GGML_TYPE_I32, 4, ni, err)) ||
        !(d->item_genres = take_tensor(f, "item_genres", GGML_TYPE_I32, 4, ni, err)) ||
        !(d->item_year = take_tensor(f, "item_year", GGML_TYPE_I16, 2, ni, err)) ||
        !(pop = take_tensor(f, "item_pop", GGML_TYPE_I32, 4, ni, err)) ||
        !(pop_train = take_tensor(f, "item_pop_train", GGML_TYPE_I32, 4, ni, err)))
        goto fail;
    const struct gguf_kv *kv = gguf_find(f, KEY("titles"));
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || kv->arr_n != ni) {
        err_set(err, ERR_INVALID, KEY("titles") " must be an array of %llu strings",
                (unsigned long long)ni);
        goto fail;
    }
    d->item_title = calloc((size_t)ni, sizeof *d->item_title);
    if (!d->item_title) {
        err_set(err, ERR_NOMEM, "out of memory for %llu titles", (unsigned long long)ni);
        goto fail;
    }
    for (uint64_t i = 0; i < ni; i++) {
        struct gguf_str t = gguf_arr_str(kv, i);
        if (t.len > TITLE_MAX || memchr(t.ptr, '\0', (size_t)t.len)) {
            err_set(err, ERR_INVALID, "title of item %llu is longer than %d bytes or holds a NUL",
                    (unsigned long long)i, TITLE_MAX);
            goto fail;
        }
        d->item_title[i] = strndup(t.ptr, (size_t)t.len);
        if (!d->item_title[i]) {
            err_set(err, ERR_NOMEM, "out of memory for titles");
            goto fail;
        }
    }
    /* structure first (offsets, ids, titles), then the stored popularity against a fresh count:
     * counting walks the sequences through the offsets, so it must come after validation */
    d->item_pop = pop;
    d->item_pop_train = pop_train;
    pop = pop_train = NULL;
    if (rec_dataset_validate(d, err) < 0) goto fail;
    pop = d->item_pop;
    pop_train = d->item_pop_train;
    d->item_pop = d->item_pop_train = NULL;
    if (rec_dataset_count_popularity(d, err) < 0) goto fail;
    if (memcmp(pop, d->item_pop, (size_t)ni * 4) != 0 ||
        memcmp(pop_train, d->item_pop_train, (size_t)ni * 4) != 0) {
        err_set(err, ERR_INVALID, "stored item popularity disagrees with the sequences");
        goto fail;
    }
    free(pop);
    free(pop_train);
    gguf_close(f);
    return d;
fail:
    free(pop);
    free(pop_train);
    rec_dataset_free(d);
    gguf_close(f);
    return NULL;
}

struct rec_dataset *rec_dataset_load(const char *path, struct err *err)
{
    char buf[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/%s", path, REC_DATASET_FILE);
        path = buf;
    }
    struct rec_dataset *d = load_file(path, err);
    if (!d) err_prefix(err, "loading dataset %s", path);
    return d;
}
