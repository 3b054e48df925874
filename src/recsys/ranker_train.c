#include "recsys/ranker_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "base/log.h"
#include "base/progress.h"

void ranker_train_config_default(struct ranker_train_config *c)
{
    memset(c, 0, sizeof *c);
    ranker_config_default(&c->model, 0);
    c->epochs = 8;
    c->users_per_batch = 32;
    c->n_candidates = 100;
    c->hard_negatives = 4;
    c->hard_skip = 3;
    c->random_negatives = 4;
    c->mask_prob = 0.2f;
    c->lr = 1e-3f;
    c->weight_decay = 1e-4f;
    c->seed = 42;
    c->threads = 1;
}

static uint64_t rt_rng(uint64_t *s)
{
    uint64_t x = (*s += 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The users the protocol evaluates (>= 3 interactions), at most max evenly spaced. */
static uint32_t *rt_eval_users(const struct rec_dataset *d, uint32_t max, uint32_t *n_out)
{
    uint32_t n = 0;
    for (uint32_t u = 0; u < d->n_users; u++) n += rec_user_in_eval(d, u);
    uint32_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    if (!all) return NULL;
    n = 0;
    for (uint32_t u = 0; u < d->n_users; u++)
        if (rec_user_in_eval(d, u)) all[n++] = u;
    if (max && n > max) {
        for (uint32_t i = 0; i < max; i++) all[i] = all[(uint64_t)i * n / max];
        n = max;
    }
    *n_out = n;
    return all;
}

/* User vectors (n, C) of the users' histories for `split`, batched through the encoder. */
static int rt_user_vectors(struct encoder *e, const struct rec_dataset *d, const uint32_t *users,
                           uint32_t n, enum rec_split split, struct pool *pool, float *out,
                           struct err *err)
{
    int T = e->cfg.max_len, C = e->cfg.dim, B = 64;
    uint32_t *ids = malloc((size_t)B * T * sizeof *ids);
    if (!ids) return err_set(err, ERR_NOMEM, "ranker: out of memory");
    int rc = 0;
    bool was = e->training;
    e->training = false;
    for (uint32_t s = 0; s < n && rc == 0; s += (uint32_t)B) {
        int nb = n - s < (uint32_t)B ? (int)(n - s) : B;
        for (int b = 0; b < nb; b++) {
            uint64_t len;
            const uint32_t *h = rec_split_history(d, users[s + b], split, &len);
            uint64_t take = len < (uint64_t)T ? len : (uint64_t)T;
            uint32_t *row = ids + (size_t)b * T;
            memset(row, 0, (size_t)T * sizeof *row);
            memcpy(row + (T - take), h + (len - take), take * sizeof *row);
        }
        rc = encoder_forward(e, ids, NULL, nb, T, NULL, NULL, pool, err);
        if (rc == 0) encoder_last_vectors(e, out + (size_t)s * C);
    }
    e->training = was;
    free(ids);
    return rc;
}

/* Top-k items by u . table, excluding the history and item 0; sorted by score then id. */
static int rt_topk(const float *u, const float *table, uint32_t n_items, int C,
                   const uint32_t *excl, uint64_t n_excl, uint8_t *seen, int k, uint32_t *out,
                   float *out_s)
{
    for (uint64_t i = 0; i < n_excl; i++) seen[excl[i]] = 1;
    int n = 0;
    for (uint32_t i = 1; i <= n_items; i++) {
        if (seen[i]) continue;
        const float *v = table + (size_t)i * C;
        float s = 0;
        for (int c = 0; c < C; c++) s += u[c] * v[c];
        if (n == k && s <= out_s[n - 1]) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && out_s[j - 1] < s) { /* insertion keeps equal scores in id order */
            out_s[j] = out_s[j - 1];
            out[j] = out[j - 1];
            j--;
        }
        out_s[j] = s;
        out[j] = i;
    }
    for (uint64_t i = 0; i < n_excl; i++) seen[excl[i]] = 0;
    return n;
}

struct rt_pair {
    uint32_t user_row; /* index into user vectors */
    uint32_t item;
    uint8_t masked;
    float label;
};

int ranker_train(const struct rec_dataset *d, struct encoder *enc,
                 const struct ranker_train_config *cfg, struct ranker **out,
                 struct ranker_items *items, struct err *err)
{
    int C = enc->cfg.dim, K = cfg->n_candidates;
    uint32_t n_users = 0, NI = d->n_items;
    struct pool *pool = pool_new(cfg->threads);
    uint32_t *users = rt_eval_users(d, cfg->max_users, &n_users);
    float *uv = NULL, *table = NULL, *cand_s = NULL, *bu = NULL, *bv = NULL, *bl = NULL;
    uint32_t *cand = NULL, *bi = NULL;
    uint8_t *seen = NULL, *bm = NULL;
    struct rt_pair *pairs = NULL;
    struct ranker *r = NULL;
    int rc = ERR_NOMEM;
    memset(items, 0, sizeof *items);
    int per_user = 1 + cfg->hard_negatives + cfg->random_negatives;
    size_t n_pairs = (size_t)n_users * per_user;
    if (!users) goto nomem;
    if (n_users < 2) {
        rc = err_set(err, ERR_INVALID, "ranker: the dataset has fewer than 2 users with a "
                                       "validation item");
        goto done;
    }
    if (K <= cfg->hard_skip + cfg->hard_negatives) {
        rc = err_set(err, ERR_INVALID, "ranker: --candidates must exceed --hard-skip + --hard");
        goto done;
    }
    uv = malloc((size_t)n_users * C * sizeof *uv);
    table = malloc(((size_t)NI + 1) * C * sizeof *table);
    cand = malloc((size_t)K * sizeof *cand);
    cand_s = malloc((size_t)K * sizeof *cand_s);
    seen = calloc((size_t)NI + 1, 1);
    pairs = malloc(n_pairs * sizeof *pairs);
    if (!uv || !table || !cand || !cand_s || !seen || !pairs) goto nomem;
    encoder_item_table(enc, table);
    if ((rc = rt_user_vectors(enc, d, users, n_users, REC_SPLIT_VALID, pool, uv, err))) goto done;
    if ((rc = ranker_items_init(items, NI, d->item_year, d->item_genres, d->item_pop_train, err)))
        goto done;

    /* Mine the pairs once: the encoder is frozen, so its candidates do not change. */
    uint64_t rng = cfg->seed * 0x9E3779B97F4A7C15ull + 7;
    size_t np = 0;
    for (uint32_t i = 0; i < n_users; i++) {
        uint32_t u = users[i];
        uint64_t hl;
        const uint32_t *h = rec_split_history(d, u, REC_SPLIT_VALID, &hl);
        uint32_t pos = rec_split_target(d, u, REC_SPLIT_VALID);
        int nc = rt_topk(uv + (size_t)i * C, table, NI, C, h, hl, seen, K, cand, cand_s);
        pairs[np++] = (struct rt_pair){i, pos, 0, 1.0f};
        for (int k = 0; k < cfg->hard_negatives; k++) {
            uint32_t it = 0;
            for (int tries = 0; tries < 8 && (it == 0 || it == pos); tries++) {
                int lo = cfg->hard_skip < nc ? cfg->hard_skip : 0;
                it = nc > lo ? cand[lo + (int)(rt_rng(&rng) % (uint64_t)(nc - lo))] : 0;
            }
            if (it == 0 || it == pos) it = 1 + (uint32_t)(rt_rng(&rng) % NI);
            pairs[np++] = (struct rt_pair){i, it, 0, it == pos ? 1.0f : 0.0f};
        }
        for (int k = 0; k < cfg->random_negatives; k++) {
            uint32_t it = 1 + (uint32_t)(rt_rng(&rng) % NI);
            pairs[np++] = (struct rt_pair){i, it, 0, it == pos ? 1.0f : 0.0f};
        }
    }
    for (size_t p = 0; p < np; p++)
        pairs[p].masked = (rt_rng(&rng) >> 40) * (1.0 / 16777216.0) < cfg->mask_prob;

    struct ranker_config mc = cfg->model;
    mc.dim = C;
    r = ranker_new(&mc, cfg->seed, err);
    if (!r) {
        rc = ERR_INVALID;
        goto done;
    }
    int bs = cfg->users_per_batch * per_user;
    bu = malloc((size_t)bs * C * sizeof *bu);
    bv = malloc((size_t)bs * C * sizeof *bv);
    bl = malloc((size_t)bs * sizeof *bl);
    bi = malloc((size_t)bs * sizeof *bi);
    bm = malloc((size_t)bs);
    if (!bu || !bv || !bl || !bi || !bm) goto nomem;
    size_t steps_per_epoch = (np + (size_t)bs - 1) / (size_t)bs;
    struct progress prog;
    if (cfg->progress)
        progress_begin(&prog, "train ranker", "steps", steps_per_epoch * (size_t)cfg->epochs);
    uint64_t step = 0;
    r->training = true;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        for (size_t p = np - 1; p > 0; p--) { /* shuffle */
            size_t q = rt_rng(&rng) % (p + 1);
            struct rt_pair t = pairs[p];
            pairs[p] = pairs[q];
            pairs[q] = t;
        }
        double ep_loss = 0;
        for (size_t s = 0; s < np; s += (size_t)bs) {
            int nb = np - s < (size_t)bs ? (int)(np - s) : bs;
            if (nb < 2) break;
            for (int b = 0; b < nb; b++) {
                const struct rt_pair *pp = &pairs[s + b];
                memcpy(bu + (size_t)b * C, uv + (size_t)pp->user_row * C, (size_t)C * sizeof *bu);
                memcpy(bv + (size_t)b * C, table + (size_t)pp->item * C, (size_t)C * sizeof *bv);
                bi[b] = pp->item;
                bm[b] = pp->masked;
                bl[b] = pp->label;
            }
            struct ranker_batch batch = {nb, bu, bv, bi, bm, bl};
            float loss;
            ranker_zero_grad(r);
            if ((rc = ranker_forward(r, items, &batch, NULL, &loss, err)) ||
                (rc = ranker_backward(r, err)))
                goto done;
            ranker_adamw_step(r, cfg->lr, cfg->weight_decay, ++step);
            ep_loss += loss * nb;
            if (cfg->progress) {
                char extra[64];
                snprintf(extra, sizeof extra, "epoch %d, loss %.4f", ep + 1, loss);
                progress_update(&prog, step, extra);
            }
        }
        log_debug("ranker", "epoch %d: mean loss %.4f", ep + 1, ep_loss / (double)np);
    }
    if (cfg->progress) progress_end(&prog);
    r->training = false;
    *out = r;
    r = NULL;
    rc = 0;
    goto done;
nomem:
    rc = err_set(err, ERR_NOMEM, "ranker: out of memory");
done:
    if (rc != 0) ranker_items_free(items);
    ranker_free(r);
    free(users);
    free(uv);
    free(table);
    free(cand);
    free(cand_s);
    free(seen);
    free(pairs);
    free(bu);
    free(bv);
    free(bl);
    free(bi);
    free(bm);
    pool_free(pool);
    return rc;
}

/* 0-based position of target in list[0..n) or n when absent. */
static int rt_pos(const uint32_t *list, int n, uint32_t target)
{
    for (int i = 0; i < n; i++)
        if (list[i] == target) return i;
    return n;
}

static void rt_sort_by_score(uint32_t *ids, float *s, int n)
{
    for (int i = 1; i < n; i++) { /* stable insertion sort, highest first (n <= a few 100) */
        float ks = s[i];
        uint32_t ki = ids[i];
        int j = i;
        while (j > 0 && s[j - 1] < ks) {
            s[j] = s[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        s[j] = ks;
        ids[j] = ki;
    }
}

int ranker_evaluate(const struct rec_dataset *d, struct encoder *enc, struct ranker *r,
                    const struct ranker_items *items, enum rec_split split, int n_candidates,
                    uint32_t max_users, int threads, struct ranker_eval *out, struct err *err)
{
    memset(out, 0, sizeof *out);
    int C = enc->cfg.dim, K = n_candidates;
    uint32_t n_users = 0, NI = d->n_items;
    struct pool *pool = pool_new(threads);
    uint32_t *users = rt_eval_users(d, max_users, &n_users);
    float *uv = NULL, *table = NULL, *cs = NULL, *rs = NULL;
    uint32_t *cand = NULL, *rr = NULL;
    uint8_t *seen = NULL;
    int rc = ERR_NOMEM;
    if (!users) goto nomem;
    uv = malloc((size_t)(n_users ? n_users : 1) * C * sizeof *uv);
    table = malloc(((size_t)NI + 1) * C * sizeof *table);
    cand = malloc((size_t)K * sizeof *cand);
    rr = malloc((size_t)K * sizeof *rr);
    cs = malloc((size_t)K * sizeof *cs);
    rs = malloc((size_t)K * sizeof *rs);
    seen = calloc((size_t)NI + 1, 1);
    if (!uv || !table || !cand || !rr || !cs || !rs || !seen) goto nomem;
    encoder_item_table(enc, table);
    if ((rc = rt_user_vectors(enc, d, users, n_users, split, pool, uv, err))) goto done;
    double in_cand = 0;
    for (uint32_t i = 0; i < n_users; i++) {
        uint64_t hl;
        const uint32_t *h = rec_split_history(d, users[i], split, &hl);
        uint32_t t = rec_split_target(d, users[i], split);
        const float *u = uv + (size_t)i * C;
        int nc = rt_topk(u, table, NI, C, h, hl, seen, K, cand, cs);
        int p0 = rt_pos(cand, nc, t);
        in_cand += p0 < nc;
        for (int m = 0; m < 3; m++) {
            int p = p0;
            if (m > 0 && p0 < nc) {
                memcpy(rr, cand, (size_t)nc * sizeof *rr);
                if ((rc = ranker_score(r, items, u, table, rr, nc, m == 2, rs, err))) goto done;
                rt_sort_by_score(rr, rs, nc);
                p = rt_pos(rr, nc, t);
            }
            if (p < 10) {
                out->hr10[m] += 1;
                out->ndcg10[m] += 1.0 / log2(p + 2.0);
            }
        }
    }
    out->n_users = n_users;
    if (n_users) {
        out->retrieval_recall = in_cand / n_users;
        for (int m = 0; m < 3; m++) {
            out->hr10[m] /= n_users;
            out->ndcg10[m] /= n_users;
        }
    }
    rc = 0;
    goto done;
nomem:
    rc = err_set(err, ERR_NOMEM, "ranker: out of memory");
done:
    free(users);
    free(uv);
    free(table);
    free(cand);
    free(rr);
    free(cs);
    free(rs);
    free(seen);
    pool_free(pool);
    return rc;
}

const char ranker_train_usage[] =
    "usage: nanorec train ranker --data DIR|FILE --encoder ENCODER.gguf --out DIR [options]\n"
    "  Trains the feature MLP ranker on the encoder's retrieval candidates, then reports\n"
    "  HR@10 / NDCG@10 on the test item for retrieval alone, re-ranked, and re-ranked with\n"
    "  item ids masked (cold-start items). Writes DIR/ranker.gguf.\n"
    "options:\n"
    "  --epochs N          passes over the users (default 8)\n"
    "  --batch N           users per step (default 32)\n"
    "  --candidates K      retrieval depth to re-rank (default 100)\n"
    "  --hard N            hard negatives per positive (default 4)\n"
    "  --hard-skip N       top candidates never used as negatives (default 3)\n"
    "  --random N          random negatives per positive (default 4)\n"
    "  --mask-prob P       share of pairs with the item id masked (default 0.2)\n"
    "  --hidden A,B,C      hidden sizes (default 512,256,128)\n"
    "  --dropout P         (default 0.1)\n"
    "  --lr X              (default 0.001)\n"
    "  --max-users N       use at most N users (default all)\n"
    "  --seed S  --threads N\n";

int ranker_train_cli(int argc, char **argv)
{
    struct ranker_train_config cfg;
    ranker_train_config_default(&cfg);
    cfg.progress = 1;
    const char *data = NULL, *enc_path = NULL, *out_dir = NULL, *hidden = NULL;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        long v;
        double x;
        if (cli_opt_str(argc, argv, &i, "--data", &data, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--encoder", &enc_path, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--out", &out_dir, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--hidden", &hidden, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--epochs", 1, 1000, &v, &bad)) { cfg.epochs = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--batch", 1, 4096, &v, &bad)) { cfg.users_per_batch = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--candidates", 2, 1000, &v, &bad)) { cfg.n_candidates = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--hard", 0, 100, &v, &bad)) { cfg.hard_negatives = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--hard-skip", 0, 100, &v, &bad)) { cfg.hard_skip = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--random", 0, 100, &v, &bad)) { cfg.random_negatives = (int)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--max-users", 0, 100000000, &v, &bad)) { cfg.max_users = (uint32_t)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--seed", 0, 1L << 62, &v, &bad)) { cfg.seed = (uint64_t)v; continue; }
        if (cli_opt_int(argc, argv, &i, "--threads", 1, 256, &v, &bad)) { cfg.threads = (int)v; continue; }
        if (cli_opt_double(argc, argv, &i, "--mask-prob", 0, 1, &x, &bad)) { cfg.mask_prob = (float)x; continue; }
        if (cli_opt_double(argc, argv, &i, "--dropout", 0, 0.99, &x, &bad)) { cfg.model.dropout = (float)x; continue; }
        if (cli_opt_double(argc, argv, &i, "--lr", 1e-7, 1, &x, &bad)) { cfg.lr = (float)x; continue; }
        if (!bad) {
            fprintf(stderr, "train ranker: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (bad) return 2;
    if (hidden && sscanf(hidden, "%d,%d,%d", &cfg.model.hidden[0], &cfg.model.hidden[1],
                         &cfg.model.hidden[2]) != 3) {
        fprintf(stderr, "train ranker: --hidden must be three sizes like 512,256,128\n");
        return 2;
    }
    if (!data || !enc_path || !out_dir) {
        fprintf(stderr, "train ranker: --data, --encoder and --out are required (see --help)\n");
        return 2;
    }
    struct err e = {0};
    struct rec_dataset *d = rec_dataset_load(data, &e);
    if (!d) {
        fprintf(stderr, "train ranker: %s\n", e.msg);
        return 1;
    }
    struct encoder *enc = encoder_load(enc_path, NULL, &e);
    if (!enc) {
        fprintf(stderr, "train ranker: %s\n", e.msg);
        rec_dataset_free(d);
        return 1;
    }
    int rc = 1;
    struct ranker *r = NULL;
    struct ranker_items items = {0};
    if ((uint32_t)enc->cfg.n_items != d->n_items) {
        fprintf(stderr, "train ranker: the encoder has %d items but the dataset %u: "
                        "they come from different data\n", enc->cfg.n_items, d->n_items);
        goto done;
    }
    mkdir(out_dir, 0755);
    if (ranker_train(d, enc, &cfg, &r, &items, &e) != 0) {
        fprintf(stderr, "train ranker: %s\n", e.msg);
        goto done;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ranker.gguf", out_dir);
    if (ranker_save(r, &items, path, &e) != 0) {
        fprintf(stderr, "train ranker: %s\n", e.msg);
        goto done;
    }
    struct ranker_eval ev;
    if (ranker_evaluate(d, enc, r, &items, REC_SPLIT_TEST, cfg.n_candidates, cfg.max_users,
                        cfg.threads, &ev, &e) != 0) {
        fprintf(stderr, "train ranker: evaluation: %s\n", e.msg);
        goto done;
    }
    printf("ranker written to %s\n", path);
    printf("test split, %u users, top-%d candidates (recall %.4f):\n", ev.n_users,
           cfg.n_candidates, ev.retrieval_recall);
    printf("  %-28s HR@10 %.4f  NDCG@10 %.4f\n", "retrieval only", ev.hr10[0], ev.ndcg10[0]);
    printf("  %-28s HR@10 %.4f  NDCG@10 %.4f\n", "re-ranked", ev.hr10[1], ev.ndcg10[1]);
    printf("  %-28s HR@10 %.4f  NDCG@10 %.4f\n", "re-ranked, item ids masked", ev.hr10[2],
           ev.ndcg10[2]);
    rc = 0;
done:
    ranker_free(r);
    ranker_items_free(&items);
    encoder_free(enc);
    rec_dataset_free(d);
    return rc;
}
