/* trendstory: trending topics -> themed stories from a local LLaMA-architecture model. */
#include <stddef.h>

#include "base/cli.h"
#include "engine/generate.h"
#include "engine/gguf_cli.h"
#include "story/story_service.h"
#include "story/trends_cli.h"

static const struct cli_cmd cmds[] = {
    {"generate", "generate text from a GGUF or llama2.c model, streamed to stdout",
     GENERATE_USAGE, generate_cli},
    {"gguf-info", "print a GGUF file's metadata and tensor table", GGUF_INFO_USAGE,
     gguf_cli_info},
    {"serve", "serve POST /v1/stories, health, readiness, metrics and the page over HTTP",
     STORY_SERVICE_USAGE, story_service_cmd},
    {"trends", "fetch one trend source once and print its topics", TRENDS_USAGE,
     trends_cli_main},
    {NULL, NULL, NULL, NULL},
};

int main(int argc, char **argv)
{
    return cli_dispatch("trendstory", "trendstory: trending topics -> themed stories", cmds, argc,
                        argv);
}
