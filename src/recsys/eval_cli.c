/* `nanorec eval`: baselines (popularity, random) and optionally a model, on the validation or
 * test split, printed as one table. */
#include "recsys/eval_cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/pool.h"

static int run_one(const struct rec_dataset *d, const struct rec_scorer *sc,
                   const struct rec_eval_cfg *cfg, int *header)
{
    struct err err = {0};
    struct rec_eval_result r;
    if (rec_eval_run(d, sc, cfg, &r, &err) < 0) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    rec_eval_print(stdout, sc->name, &r, *header);
    *header = 0;
    fflush(stdout);
    return 0;
}

int eval_cli_main(int argc, char **argv, const struct rec_model_loader *loader)
{
    const char *data = NULL, *split_s = "test", *model = NULL;
    long threads = 0, seed = 42, max_users = 0;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (cli_opt_str(argc, argv, &i, "--data", &data, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--split", &split_s, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--model", &model, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--threads", 1, 256, &threads, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--seed", 0, 0x7fffffffL, &seed, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--max-users", 0, 0x7fffffffL, &max_users, &bad)) continue;
        if (bad) return 2;
        fprintf(stderr, "eval: unknown argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    if (bad) return 2;
    if (!data) {
        fprintf(stderr, "eval: --data DIR is required (see --help)\n");
        return 2;
    }
    struct rec_eval_cfg cfg = {.max_users = (uint32_t)max_users};
    if (strcmp(split_s, "test") == 0) {
        cfg.split = REC_SPLIT_TEST;
    } else if (strcmp(split_s, "valid") == 0) {
        cfg.split = REC_SPLIT_VALID;
    } else {
        fprintf(stderr, "eval: --split must be valid or test, not '%s'\n", split_s);
        return 2;
    }
    if (model && !loader) {
        fprintf(stderr, "eval: --model: this build has no model loader for %s\n", model);
        return 2;
    }
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (n > 256 ? 256 : n) : 1;
    }
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_load(data, &err);
    if (!d) {
        fprintf(stderr, "eval: %s\n", err.msg);
        return 1;
    }
    struct pool *pool = pool_new((int)threads);
    if (!pool) {
        fprintf(stderr, "eval: cannot start %ld threads\n", threads);
        rec_dataset_free(d);
        return 1;
    }
    cfg.pool = pool;
    /* a bar only where it helps: above ~2e8 item scores (ML-1M is 2e7 and takes < 1 s) */
    cfg.progress = (double)rec_split_n_eval_users(d) * d->n_items > 2e8;
    printf("dataset %s: %u users, %u items, %llu interactions; split %s, %u users evaluated%s\n",
           data, d->n_users, d->n_items, (unsigned long long)d->n_interactions, split_s,
           max_users && (uint32_t)max_users < rec_split_n_eval_users(d) ? (uint32_t)max_users
                                                                        : rec_split_n_eval_users(d),
           max_users ? " (--max-users)" : "");
    int header = 1, rc = 0;
    struct rec_scorer pop = rec_eval_popularity_scorer();
    uint64_t seed_v = (uint64_t)seed;
    struct rec_scorer rnd = rec_eval_random_scorer(&seed_v);
    rc = run_one(d, &pop, &cfg, &header);
    if (rc == 0) rc = run_one(d, &rnd, &cfg, &header);
    if (rc == 0 && model) {
        struct rec_scorer ms = {0};
        if (loader->open(model, d, (int)threads, &ms, &err) < 0) {
            fprintf(stderr, "eval: %s\n", err.msg);
            rc = 1;
        } else {
            rc = run_one(d, &ms, &cfg, &header);
            if (loader->close) loader->close(&ms);
        }
    }
    pool_free(pool);
    rec_dataset_free(d);
    return rc;
}

int eval_cli(int argc, char **argv)
{
    return eval_cli_main(argc, argv, NULL);
}
