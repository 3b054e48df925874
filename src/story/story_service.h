/** The trendstory HTTP service: `trendstory serve`. POST /v1/stories (and POST /generate, the
 *  path of the reference TrendStory service, same handler) plus the standard routes of
 *  serve/service.h (healthz, readyz, metrics, the page under web/trendstory). */
#ifndef STORY_STORY_SERVICE_H
#define STORY_STORY_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "serve/json.h"

#define STORY_SERVICE_DEFAULT_PORT 8001
#define STORY_SERVICE_MAX_LIMIT 20
#define STORY_SERVICE_MAX_TOKENS 1024
#define STORY_SERVICE_MAX_GEO 8
#define STORY_SERVICE_MAX_URL 2048
#define STORY_SERVICE_MAX_TOPIC 200 /* bytes of a caller-given topic after cleaning */

#define STORY_SERVICE_USAGE                                                                      \
    "usage: trendstory serve [options]\n"                                                        \
    "  Serves POST /v1/stories (also as POST /generate, the reference's path), GET /v1/trends,\n" \
    "  GET /v1/themes, GET /healthz, GET /readyz, GET /metrics and the page at /. Prints one line, \"trendstory listening on\n"           \
    "  http://HOST:PORT/\", once it accepts connections; stops cleanly on SIGINT or SIGTERM.\n" \
    "  Without --model it serves, but answers stories with 503 until started with one.\n"      \
    "options:\n"                                                                               \
    "  --model FILE       llama-architecture GGUF (or llama2.c .bin) to write stories with\n"  \
    "  --threads N        compute threads for the model (default 1)\n"                         \
    "  --max-batch N      generation slots decoded together (default 8)\n"                     \
    "  --queue N          stories that may wait for a slot before 503 (default 64)\n"          \
    "  --max-tokens N     cap on max_tokens per story (default 512, at most 1024)\n"          \
    "  --default-tokens N max_tokens when a request gives none (default 256)\n"               \
    "  --ctx N            positions per slot (default: the model's, at most 2048)\n"           \
    "  --prefill-chunk N  prompt tokens prefilled per step (default 128)\n"                    \
    "  --prompt-cache N   whole prompts (theme + topics) whose KV is kept, so a repeated\n"   \
    "                     prompt skips its prefill (default 8; 0 = off)\n"                   \
    "  --kv-f32           keep the KV cache in f32 (default f16: half the memory and\n"      \
    "                     memory traffic, as llama.cpp)\n"                                     \
    "  --lazy-prefixes    compute a theme's shared prompt KV on its first request (default:\n"  \
    "                     all themes at start, in the background)\n"                        \
    "  --themes FILE      themes and prompts (default config/themes.json)\n"                   \
    "  --template NAME    chat template: zephyr, llama2, chatml, none (default: the model's)\n" \
    "  --prefetch LIST    sources fetched in the background at start (default\n"              \
    "                     google,hackernews,wikipedia; none = no prefetch)\n"                 \
    "  --ttl S            topic cache TTL in seconds (default 900)\n"                          \
    "  --trend-wait-ms MS how long a request with nothing cached waits for its source\n"      \
    "                     (default 10000; then 504)\n"                                         \
    "  --host H           address to bind (default 127.0.0.1)\n"                               \
    "  --port P           port to bind, 0 = any free port (default 8001)\n"                    \
    "  --web DIR          folder with index.html and static files (default web/trendstory)\n" \
    "  --io-threads N     HTTP I/O threads (default 2)\n"                                      \
    "  --workers N        request workers (default max-batch + queue + 4)\n"                   \
    "  --max-body BYTES   largest request body accepted (default 1048576)\n"                   \
    "Trend sources: TRENDSTORY_GOOGLE_TRENDS_URL, TRENDSTORY_HN_URL, TRENDSTORY_WIKIMEDIA_URL,\n" \
    "TRENDSTORY_YOUTUBE_URL, TRENDSTORY_NEWSAPI_URL (base URLs), TRENDSTORY_YOUTUBE_API_KEY,\n" \
    "TRENDSTORY_NEWSAPI_KEY (see docs/story-sources.md).\n"

/** Names accepted in "source" and "theme", in enum order, NULL-terminated. */
extern const char *const story_service_sources[];
extern const char *const story_service_themes[];

enum story_service_source {
    STORY_SERVICE_SRC_GOOGLE = 0,
    STORY_SERVICE_SRC_HACKERNEWS,
    STORY_SERVICE_SRC_WIKIPEDIA,
    STORY_SERVICE_SRC_RSS,
    STORY_SERVICE_SRC_YOUTUBE,
    STORY_SERVICE_SRC_NEWSAPI,
    /* The reference's "all": YouTube (when TRENDSTORY_YOUTUBE_API_KEY is set) and Google
     * Trends, interleaved and deduplicated. Not a single source: no enum source_id. */
    STORY_SERVICE_SRC_ALL,
};

enum story_service_theme {
    STORY_SERVICE_THEME_COMEDY = 0,
    STORY_SERVICE_THEME_TRAGEDY,
    STORY_SERVICE_THEME_SARCASM,
    STORY_SERVICE_THEME_MYSTERY,
    STORY_SERVICE_THEME_ROMANCE,
    STORY_SERVICE_THEME_SCIFI,
    STORY_SERVICE_THEME_DEFAULT,
};

/** A validated POST /v1/stories body. Optional sampling fields carry has_* flags so that the
 *  generator can apply its own defaults. */
struct story_service_req {
    enum story_service_source source;    /* default google */
    enum story_service_theme theme;      /* default "default" */
    int limit;                           /* 1..20, default 5 */
    char geo[STORY_SERVICE_MAX_GEO + 1]; /* "" when not given */
    char url[STORY_SERVICE_MAX_URL + 1]; /* required for rss: http:// or https:// */
    bool has_max_tokens, has_temperature, has_top_p, has_seed;
    int max_tokens;     /* 1..1024 */
    double temperature; /* 0..2 */
    double top_p;       /* 0..1 */
    int64_t seed;
    bool stream; /* default false */
    /* The reference's optional "topics": the caller's own topics (1..20 strings, each
     * cleaned like a fetched title and non-empty); when given, nothing is fetched. */
    int n_topics;
    char topics[STORY_SERVICE_MAX_LIMIT][STORY_SERVICE_MAX_TOPIC + 1];
};

/** Validates a parsed body (see the struct for fields and ranges; unknown fields are
 *  ignored). 0, or -1 with inv filled. */
int story_service_req_parse(const struct jv *root, struct story_service_req *out,
                            struct jv_invalid *inv);

/** `trendstory serve [options]`: runs until SIGINT/SIGTERM. Returns the exit status. */
int story_service_cmd(int argc, char **argv);

#endif
