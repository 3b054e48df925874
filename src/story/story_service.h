/** The trendstory HTTP service: `trendstory serve`. POST /v1/stories plus the standard routes
 *  of serve/service.h (healthz, readyz, metrics, the page under web/trendstory). */
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

#define STORY_SERVICE_USAGE                                                                        \
    "usage: trendstory serve [options]\n"                                                          \
    "  Serves POST /v1/stories, GET /healthz, GET /readyz, GET /metrics and the page at /.\n"      \
    "  Prints one line, \"trendstory listening on http://HOST:PORT/\", once it accepts\n"          \
    "  connections; stops cleanly on SIGINT or SIGTERM.\n"                                         \
    "options:\n"                                                                                   \
    "  --host H         address to bind (default 127.0.0.1)\n"                                     \
    "  --port P         port to bind, 0 = any free port (default 8001)\n"                          \
    "  --web DIR        folder with index.html and static files (default web/trendstory)\n"        \
    "  --threads N      HTTP I/O threads (default 2)\n"                                            \
    "  --workers N      compute workers (default: one per core)\n"                                 \
    "  --queue N        requests that may wait for a worker before 503 (default 64)\n"             \
    "  --max-body BYTES largest request body accepted (default 1048576)\n"

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
};

/** Validates a parsed body (see the struct for fields and ranges; unknown fields are
 *  ignored). 0, or -1 with inv filled. */
int story_service_req_parse(const struct jv *root, struct story_service_req *out,
                            struct jv_invalid *inv);

/** `trendstory serve [options]`: runs until SIGINT/SIGTERM. Returns the exit status. */
int story_service_cmd(int argc, char **argv);

#endif
