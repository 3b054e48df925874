/** The nanorec HTTP service: `nanorec serve`. POST /recommend plus the standard routes of
 *  serve/service.h (healthz, readyz, metrics, the page under web/nanorec). */
#ifndef RECSYS_REC_SERVICE_H
#define RECSYS_REC_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "serve/json.h"

#define REC_SERVICE_DEFAULT_PORT 8000
/** Most item ids in `exclude` or `history`. */
#define REC_SERVICE_MAX_IDS 1000
#define REC_SERVICE_MAX_K 100
#define REC_SERVICE_MAX_ID 2147483647

#define REC_SERVICE_USAGE                                                                          \
    "usage: nanorec serve --artifacts DIR [options]\n"                                            \
    "  Serves POST /recommend, POST /events, POST /admin/reload, GET /healthz, GET /readyz,\n"    \
    "  GET /metrics and the page at /. Prints one line, \"nanorec listening on\n"                 \
    "  http://HOST:PORT/\", once it accepts connections; SIGHUP reloads the artifacts; stops\n"   \
    "  cleanly on SIGINT or SIGTERM.\n"                                                            \
    "options:\n"                                                                                   \
    "  --artifacts DIR  artifact set written by `nanorec export` (without it: 503 until one\n"     \
    "                   loads)\n"                                                                  \
    "  --redis URL      cache in Redis (redis://host:port[/db]) instead of in-process\n"           \
    "  --redis-timeout-ms N  Redis connect/command timeout (default 5)\n"                          \
    "  --worker-nice N       raise the compute workers' nice value by N, 0-19 (default 0), so\n"   \
    "                        the I/O threads (cache hits) run first when the cores are busy\n"    \
    "  --cache-ttl S    seconds a cached answer lives (default 300)\n"                             \
    "  --events FILE    append-only event log (default DIR/events.log)\n"                          \
    "  --history-max N  events kept in memory per user (default 200)\n"                            \
    "  --host H         address to bind (default 127.0.0.1)\n"                                     \
    "  --port P         port to bind, 0 = any free port (default 8000)\n"                          \
    "  --web DIR        folder with index.html and static files (default web/nanorec)\n"           \
    "  --threads N      HTTP I/O threads (default 2)\n"                                            \
    "  --workers N      compute workers (default: one per core)\n"                                 \
    "  --queue N        requests that may wait for a worker before 503 (default 64)\n"             \
    "  --max-body BYTES largest request body accepted (default 1048576)\n"

/** A validated POST /recommend body. */
struct rec_service_req {
    int64_t user_id;      /* -1 when not given */
    int k;                /* 1..100, default 10 */
    bool explain;         /* default false */
    bool include_history; /* default false */
    size_t n_exclude, n_history;
    int64_t exclude[REC_SERVICE_MAX_IDS]; /* item ids, 0..REC_SERVICE_MAX_ID */
    int64_t history[REC_SERVICE_MAX_IDS]; /* oldest first */
};

/** Validates a parsed body: user_id (integer >= 0, required unless history is given),
 *  k (1..100, default 10), explain, include_history (booleans), exclude and history (arrays
 *  of at most 1000 item ids). Unknown fields are ignored. 0, or -1 with inv filled. */
int rec_service_req_parse(const struct jv *root, struct rec_service_req *out,
                          struct jv_invalid *inv);

/** `nanorec serve [options]`: runs until SIGINT/SIGTERM. Returns the exit status. */
int rec_service_cmd(int argc, char **argv);

#endif
