/** The `eval` subcommand of nanorec: HR@K / NDCG@K of baselines and models. */
#ifndef RECSYS_EVAL_CLI_H
#define RECSYS_EVAL_CLI_H

#include "base/err.h"
#include "recsys/dataset.h"
#include "recsys/eval.h"

#define EVAL_USAGE                                                                                 \
    "usage: nanorec eval --data DIR [--split valid|test] [--model ENCODER.gguf]\n"                 \
    "                    [--threads N] [--seed N] [--max-users N]\n"                               \
    "  Full-ranking leave-one-out evaluation on the dataset in DIR (written by `data\n"            \
    "  prepare`; DIR may also name the .gguf file): HR@K and NDCG@K for K = 10, 20, 50, 100,\n"    \
    "  every item ranked, the user's earlier items excluded, ties broken by item id.\n"            \
    "  Prints the popularity and random baselines, and the model's row with --model.\n"            \
    "  --split S      valid or test (default test)\n"                                              \
    "  --threads N    worker threads (default: the number of CPUs)\n"                              \
    "  --seed N       seed of the random baseline (default 42)\n"                                  \
    "  --max-users N  only the first N eligible users (default all)\n"                             \
    "  Exit status: 0 done, 1 failed, 2 bad arguments.\n"

/** How `eval --model` turns a file into a scorer (supplied by the model code). */
struct rec_model_loader {
    /** Opens `path` for scoring `d` with up to n_threads concurrent callers; fills *sc. */
    int (*open)(const char *path, const struct rec_dataset *d, int n_threads, struct rec_scorer *sc,
                struct err *err);
    /** Releases what open made; gets the same *sc. */
    void (*close)(struct rec_scorer *sc);
};

/** Runs `eval` with `loader` for --model (NULL: --model is refused with a message). */
int eval_cli_main(int argc, char **argv, const struct rec_model_loader *loader);

/** Runs `eval` with no model loader (baselines only). */
int eval_cli(int argc, char **argv);

#endif
