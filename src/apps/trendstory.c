/* trendstory: trending topics -> themed stories from a local LLaMA-architecture model. */
#include <stddef.h>

#include "base/cli.h"
#include "engine/generate.h"
#include "engine/gguf_cli.h"
#include "engine/make_model.h"
#include "engine/quantize.h"
#include "story/story_service.h"
#include "story/trends_cli.h"

static const struct cli_cmd cmds[] = {
    {"serve", "serve POST /v1/stories, health, readiness, metrics and the page over HTTP",
     STORY_SERVICE_USAGE, story_service_cmd},
    {"trends", "fetch one trend source once and print its topics", TRENDS_USAGE,
     trends_cli_main},
    {"generate", "generate text from a GGUF or llama2.c model, streamed to stdout",
     GENERATE_USAGE, generate_cli},
    {"gguf-info", "print a GGUF file's metadata and tensor table", GGUF_INFO_USAGE, gguf_cli_info},
    {"quantize", "convert a GGUF model's weight matrices to q8_0, q4_0, q4_k_m, f16 or bf16",
     QUANTIZE_USAGE, quantize_cli},
    {"make-model", "write a random-weight llama GGUF of a given shape (benchmarks, tests)",
     MAKE_MODEL_USAGE, make_model_cli},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    return cli_dispatch("trendstory", "trendstory: trending topics -> themed stories", cmds, argc,
                        argv);
}
