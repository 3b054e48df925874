/* nanorec: the sequential movie recommender (offline tools and the /recommend service). */
#include <stddef.h>

#include "base/cli.h"
#include "engine/gguf_cli.h"
#include "recsys/rec_service.h"

static const struct cli_cmd cmds[] = {
    {"gguf-info", "print a GGUF file's metadata and tensor table", GGUF_INFO_USAGE,
     gguf_cli_info},
    {"serve",
     "serve POST /recommend, health, readiness, metrics and the page over HTTP",
     REC_SERVICE_USAGE, rec_service_cmd},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    return cli_dispatch("nanorec", "nanorec: a sequential movie recommender", cmds, argc, argv);
}
