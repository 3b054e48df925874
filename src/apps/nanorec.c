/* nanorec: the sequential movie recommender (offline tools and the /recommend service). */
#include <stddef.h>

#include "base/cli.h"
#include "engine/gguf_cli.h"
#include "recsys/data_cli.h"
#include "recsys/eval_cli.h"
#include "recsys/rec_service.h"
#include "recsys/train_cli.h"

static const struct cli_cmd cmds[] = {
    {"gguf-info", "print a GGUF file's metadata and tensor table", GGUF_INFO_USAGE,
     gguf_cli_info},
    {"data prepare", "MovieLens folder -> dataset artifact (id maps, sequences, metadata)",
     DATA_PREPARE_USAGE, data_cli_prepare},
    {"eval", "HR@K / NDCG@K of the baselines (and a model) on the leave-one-out split",
     EVAL_USAGE, train_cli_eval},
    {"train encoder", "train the SASRec-style user encoder (checkpoints, curves, export)",
     TRAIN_ENCODER_USAGE, train_cli_encoder},
    {"serve", "serve POST /recommend, health, readiness, metrics and the page over HTTP",
     REC_SERVICE_USAGE, rec_service_cmd},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    return cli_dispatch("nanorec", "nanorec: a sequential movie recommender", cmds, argc, argv);
}
