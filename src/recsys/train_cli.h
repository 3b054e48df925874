/** The `train encoder` subcommand of nanorec, and the encoder's model loader for `eval`. */
#ifndef RECSYS_TRAIN_CLI_H
#define RECSYS_TRAIN_CLI_H

#include "recsys/eval_cli.h"

#define TRAIN_ENCODER_USAGE                                                                      \
    "usage: nanorec train encoder --data DATASET --out DIR [options]\n"                         \
    "  Trains the SASRec-style user encoder (docs/encoder.md) on the leave-one-out split of\n"  \
    "  DATASET (a `data prepare` folder or its dataset.gguf). Writes DIR/checkpoint.gguf after\n" \
    "  every epoch (weights, Adam state, step, RNG), DIR/encoder.gguf at the end, the curves\n"  \
    "  DIR/loss.tsv and DIR/valid.tsv and their plots DIR/loss.png and DIR/valid.png.\n"        \
    "  Prints validation HR@10/NDCG@10 per epoch, then test HR@10/NDCG@10 and throughput.\n"    \
    "  model:    --dim N (64)  --layers N (2)  --heads N (2)  --ffn N (256)  --max-len N (200)\n" \
    "            --dropout P (0.2)  --rope-theta X (500)\n"                                      \
    "  loss:     --loss softmax|infonce (softmax)  --temperature T (0.05)  --no-logq\n"         \
    "            --raw-items (score against raw, not L2-normalised, item embeddings)\n"        \
    "  training: --epochs N (200)  --batch N (128)  --lr X (1e-3)  --warmup N (100 steps)\n"    \
    "            --min-lr-ratio R (0.1: cosine ends at R x lr)  --constant-lr  --beta2 X (0.98)\n" \
    "            --weight-decay X (0.01)  --clip X (1.0)  --seed N (42)  --threads N (1)\n"    \
    "            --resume  --time-budget S (seconds of training: no epoch is started that\n"   \
    "            would end past S, and the cosine decay runs over S, or over the epochs if\n"  \
    "            they end first)  --eval-every N (1)  --eval-users N (all)  --quiet\n"        \
    "            --no-bucket (pad every batch to max-len, not to its longest user)\n"          \
    "  Set OPENBLAS_CORETYPE=SkylakeX on AVX-512 machines OpenBLAS does not recognise.\n"       \
    "  Exit status: 0 done, 1 failed, 2 bad arguments.\n"

/** Runs `train encoder`; argv[0] is the command name. Returns the exit status. */
int train_cli_encoder(int argc, char **argv);

/** `eval` with --model ENCODER.gguf scored by the user encoder. */
int train_cli_eval(int argc, char **argv);

/** Opens an encoder GGUF as a scorer for the evaluator (one model copy per thread). */
extern const struct rec_model_loader train_encoder_loader;

/** sgemm GFLOP/s of OpenBLAS on this machine with n threads (a 1024^3 product, best of 3). */
double train_sgemm_gflops(int threads);

#endif
