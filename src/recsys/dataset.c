/* The nanorec dataset in memory: the leave-one-out split, popularity and invariants. The GGUF
 * artifact is in dataset_file.c. */
#include "recsys/dataset.h"

#include "base/utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const genre_names[REC_GENRE_COUNT] = {
    "Action",  "Adventure", "Animation", "Children", "Comedy",  "Crime",   "Documentary",
    "Drama",   "Fantasy",   "Film-Noir", "Horror",   "IMAX",    "Musical", "Mystery",
    "Romance", "Sci-Fi",    "Thriller",  "War",      "Western",
};

const char *rec_genre_name(enum rec_genre g)
{
    return ((unsigned)g < REC_GENRE_COUNT) ? genre_names[g] : NULL;
}

void rec_dataset_free(struct rec_dataset *d)
{
    if (!d) return;
    if (d->item_title) {
        for (uint64_t i = 0; i <= d->n_items; i++)
            free(d->item_title[i]);
        free(d->item_title);
    }
    free(d->user_off);
    free(d->seq);
    free(d->ts);
    free(d->user_orig);
    free(d->item_orig);
    free(d->item_genres);
    free(d->item_year);
    free(d->item_pop);
    free(d->item_pop_train);
    free(d);
}

const uint32_t *rec_split_train(const struct rec_dataset *d, uint32_t u, uint64_t *n)
{
    uint64_t len = rec_user_len(d, u);
    *n = len >= 3 ? len - 2 : len;
    return d->seq + d->user_off[u];
}

const uint32_t *rec_split_history(const struct rec_dataset *d, uint32_t u, enum rec_split split,
                                  uint64_t *n)
{
    uint64_t len = rec_user_len(d, u);
    if (len < 3 || split == REC_SPLIT_TRAIN) return rec_split_train(d, u, n);
    *n = split == REC_SPLIT_TEST ? len - 1 : len - 2;
    return d->seq + d->user_off[u];
}

uint32_t rec_split_target(const struct rec_dataset *d, uint32_t u, enum rec_split split)
{
    uint64_t len = rec_user_len(d, u);
    if (len < 3) return 0;
    if (split == REC_SPLIT_VALID) return d->seq[d->user_off[u + 1] - 2];
    if (split == REC_SPLIT_TEST) return d->seq[d->user_off[u + 1] - 1];
    return 0;
}

uint32_t rec_split_n_eval_users(const struct rec_dataset *d)
{
    uint32_t n = 0;
    for (uint32_t u = 0; u < d->n_users; u++)
        n += rec_user_in_eval(d, u);
    return n;
}

int rec_dataset_count_popularity(struct rec_dataset *d, struct err *err)
{
    size_t ni = (size_t)d->n_items + 1;
    if (!d->item_pop) d->item_pop = malloc(ni * sizeof *d->item_pop);
    if (!d->item_pop_train) d->item_pop_train = malloc(ni * sizeof *d->item_pop_train);
    if (!d->item_pop || !d->item_pop_train)
        return err_set(err, ERR_NOMEM, "out of memory counting popularity of %u items", d->n_items);
    memset(d->item_pop, 0, ni * sizeof *d->item_pop);
    memset(d->item_pop_train, 0, ni * sizeof *d->item_pop_train);
    for (uint32_t u = 0; u < d->n_users; u++) {
        uint64_t a = d->user_off[u], b = d->user_off[u + 1], nt;
        rec_split_train(d, u, &nt);
        for (uint64_t k = a; k < b; k++) {
            uint32_t it = d->seq[k];
            if (it == 0 || it > d->n_items) continue; /* validate() reports it */
            d->item_pop[it]++;
            if (k - a < nt) d->item_pop_train[it]++;
        }
    }
    return 0;
}

int rec_dataset_validate(const struct rec_dataset *d, struct err *err)
{
    if (!d) return err_set(err, ERR_INVALID, "no dataset");
    if (d->n_items == UINT32_MAX) return err_set(err, ERR_INVALID, "n_items too large");
    if (!d->user_off || !d->seq)
        return err_set(err, ERR_INVALID, "dataset without offsets or sequences");
    if (d->user_off[0] != 0)
        return err_set(err, ERR_INVALID, "user offsets must start at 0 (found %llu)",
                       (unsigned long long)d->user_off[0]);
    for (uint32_t u = 0; u < d->n_users; u++) {
        if (d->user_off[u + 1] < d->user_off[u])
            return err_set(err, ERR_INVALID, "user offsets decrease at user %u (%llu then %llu)", u,
                           (unsigned long long)d->user_off[u],
                           (unsigned long long)d->user_off[u + 1]);
        if (d->user_off[u + 1] > d->n_interactions)
            return err_set(err, ERR_INVALID, "user %u's offset %llu is past the %llu interactions",
                           u, (unsigned long long)d->user_off[u + 1],
                           (unsigned long long)d->n_interactions);
    }
    if (d->user_off[d->n_users] != d->n_interactions)
        return err_set(err, ERR_INVALID, "offsets end at %llu but there are %llu interactions",
                       (unsigned long long)d->user_off[d->n_users],
                       (unsigned long long)d->n_interactions);
    for (uint64_t k = 0; k < d->n_interactions; k++)
        if (d->seq[k] == 0 || d->seq[k] > d->n_items)
            return err_set(err, ERR_INVALID, "interaction %llu has item id %u outside 1..%u",
                           (unsigned long long)k, d->seq[k], d->n_items);
    if (!d->ts || !d->user_orig || !d->item_orig || !d->item_genres || !d->item_year ||
        !d->item_pop || !d->item_pop_train || !d->item_title)
        return err_set(err, ERR_INVALID, "dataset is missing a per-user or per-item array");
    uint32_t all_genres = (1u << REC_GENRE_COUNT) - 1;
    for (uint64_t i = 0; i <= d->n_items; i++) {
        if (d->item_genres[i] & ~all_genres)
            return err_set(err, ERR_INVALID, "item %llu has unknown genre bits 0x%x",
                           (unsigned long long)i, d->item_genres[i]);
        if (!d->item_title[i])
            return err_set(err, ERR_INVALID, "item %llu has no title string",
                           (unsigned long long)i);
        if (!utf8_valid(d->item_title[i], strlen(d->item_title[i])))
            return err_set(err, ERR_INVALID, "item %llu's title is not valid UTF-8",
                           (unsigned long long)i);
    }
    return 0;
}

struct rec_dataset *rec_dataset_from_sequences(uint32_t n_users, uint32_t n_items,
                                               const uint64_t *user_off, const uint32_t *seq,
                                               struct err *err)
{
    if (n_items == UINT32_MAX) {
        err_set(err, ERR_INVALID, "n_items too large");
        return NULL;
    }
    struct rec_dataset *d = calloc(1, sizeof *d);
    if (!d) goto oom;
    uint64_t n = user_off[n_users];
    size_t ni = (size_t)n_items + 1;
    d->n_users = n_users;
    d->n_items = n_items;
    d->n_interactions = n;
    d->user_off = malloc(((size_t)n_users + 1) * sizeof *d->user_off);
    d->seq = malloc((n ? n : 1) * sizeof *d->seq);
    d->ts = calloc(n ? n : 1, sizeof *d->ts);
    d->user_orig = malloc((n_users ? n_users : 1) * sizeof *d->user_orig);
    d->item_orig = malloc(ni * sizeof *d->item_orig);
    d->item_genres = calloc(ni, sizeof *d->item_genres);
    d->item_year = calloc(ni, sizeof *d->item_year);
    d->item_title = calloc(ni, sizeof *d->item_title);
    if (!d->user_off || !d->seq || !d->ts || !d->user_orig || !d->item_orig || !d->item_genres ||
        !d->item_year || !d->item_title)
        goto oom;
    memcpy(d->user_off, user_off, ((size_t)n_users + 1) * sizeof *user_off);
    /* check offsets before touching seq through them */
    if (user_off[0] != 0) {
        err_set(err, ERR_INVALID, "user offsets must start at 0");
        goto fail;
    }
    for (uint32_t u = 0; u < n_users; u++)
        if (user_off[u + 1] < user_off[u]) {
            err_set(err, ERR_INVALID, "user offsets decrease at user %u", u);
            goto fail;
        }
    if (n) memcpy(d->seq, seq, n * sizeof *seq);
    for (uint32_t u = 0; u < n_users; u++)
        d->user_orig[u] = u;
    for (size_t i = 0; i < ni; i++) {
        d->item_orig[i] = (uint32_t)i;
        d->item_title[i] = strdup("");
        if (!d->item_title[i]) goto oom;
    }
    snprintf(d->source, sizeof d->source, "synthetic");
    if (rec_dataset_count_popularity(d, err) < 0) goto fail;
    if (rec_dataset_validate(d, err) < 0) goto fail;
    return d;
oom:
    err_set(err, ERR_NOMEM, "out of memory building a dataset of %u users, %u items", n_users,
            n_items);
fail:
    rec_dataset_free(d);
    return NULL;
}
