/** `nanorec export`: turns training outputs into a served artifact set (rec_model.h): copies
 *  the dataset, the f32 encoder and the ranker, writes the Q8_0 serving copy of the encoder,
 *  the item table and the vector index over it. */
#ifndef RECSYS_REC_EXPORT_H
#define RECSYS_REC_EXPORT_H

#include "base/err.h"

#define REC_EXPORT_USAGE                                                                         \
    "usage: nanorec export --data DATASET --encoder ENCODER.gguf --ranker RANKER.gguf\n"         \
    "                      --out DIR [--index KIND] [--threads N]\n"                             \
    "  Writes the artifact set `nanorec serve --artifacts DIR` loads: DIR/dataset.gguf,\n"       \
    "  DIR/encoder.gguf (f32), DIR/encoder_q8.gguf (Q8_0 matrices for serving),\n"               \
    "  DIR/items.gguf (item table), DIR/index.gguf (vector index over the items) and\n"          \
    "  DIR/ranker.gguf. KIND: hnsw (default), flat, flat_sq8, ivf_flat, ivf_sq8, ivf_pq.\n"      \
    "  Each file is written atomically. Exit status: 0 done, 1 failed, 2 bad arguments.\n"

struct rec_export_cfg {
    const char *data, *encoder, *ranker, *out;
    const char *index_kind; /* NULL = "hnsw" */
    int threads;            /* 0 = 1 */
    int quiet;
};

/** Runs the export. 0 or a negative err_code with err filled. */
int rec_export(const struct rec_export_cfg *cfg, struct err *err);

/** The command; argv[0] is "export". Returns the exit status. */
int rec_export_cli(int argc, char **argv);

#endif
