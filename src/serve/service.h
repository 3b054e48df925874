/** What both services share: the `serve` command's options, an HTTP server with the standard
 *  routes, readiness checks, static pages, the "listening" line, and a clean stop on
 *  SIGINT/SIGTERM.
 *
 *  Standard routes registered by service_new:
 *    GET /healthz   200 {"status":"ok"} while the process serves
 *    GET /readyz    200 {"ready":true} when every readiness check passes, else
 *                   503 {"ready":false,"missing":["model: no model loaded (...)", ...]}
 *    GET /metrics   Prometheus text
 *    GET /          <web_dir>/index.html
 *    GET /static/…  files under <web_dir> (no "..", no hidden files, no symlinks out)
 *
 *  Typical use (see recsys/rec_service.c):
 *      service_block_signals();
 *      svc = service_new(&cfg, &err);   // then service_route(...) and service_add_check(...)
 *      service_start(svc, &err);        // prints "<name> listening on http://HOST:PORT/"
 *      service_wait(svc);               // until SIGINT or SIGTERM
 *      service_free(svc); */
#ifndef SERVE_SERVICE_H
#define SERVE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "serve/http.h"
#include "serve/json.h"
#include "serve/metrics.h"

struct service_cfg {
    const char *name;    /* "nanorec": used in the listening line and logs */
    const char *host;    /* NULL = 127.0.0.1 */
    int port;            /* 0 = ephemeral */
    const char *web_dir; /* NULL = "web/<name>" relative to the working directory */
    int io_threads;      /* 0 = 2 */
    int workers;         /* 0 = online CPUs */
    int queue_capacity;  /* 0 = 64 */
    size_t max_body;     /* 0 = 1 MiB */
};

/** If argv[*i] is one of the common options (--host, --port, --web, --threads, --workers,
 *  --queue, --max-body), stores it in cfg, advances *i and returns
 *  true (a bad value prints a message and sets *bad). */
bool service_parse_opt(struct service_cfg *cfg, int argc, char **argv, int *i, bool *bad);

/** Blocks SIGINT and SIGTERM in the calling thread so that every thread started afterwards
 *  inherits the mask, and routes them through a handler and a self-pipe to service_wait, so a
 *  stop is graceful even when the kernel delivers the signal to a thread that a library
 *  started before main (OpenBLAS). Call before service_new. */
void service_block_signals(void);

/** A readiness check: returns true if ready; else writes what is missing and how to fix it
 *  into why ("model: no model loaded (use --model FILE)"). Runs on an I/O thread. */
typedef bool (*service_ready_fn)(void *ctx, char *why, size_t n);

struct service; /* opaque */

struct service *service_new(const struct service_cfg *cfg, struct err *err);
void service_free(struct service *svc);
/** Adds a route (before service_start); see http_route. */
int service_route(struct service *svc, const char *method, const char *path, http_handler_fn fn,
                  void *ctx);
int service_add_check(struct service *svc, service_ready_fn fn, void *ctx);
/** Writes extra members (jw_key + value pairs) into /readyz's object, after "ready" and
 *  "missing": what is loaded, the cache backend's state. Runs on an I/O thread. */
typedef void (*service_info_fn)(void *ctx, struct jw *w);
/** Sets the /readyz info writer (before service_start); NULL removes it. */
void service_set_ready_info(struct service *svc, service_info_fn fn, void *ctx);
struct metrics *service_metrics(struct service *svc);
/** Writes the readiness checks that fail as a JSON array of strings; returns their count. */
int service_write_missing(struct service *svc, struct jw *w);
/** True when every check passes. */
bool service_ready(struct service *svc);

/** Binds and starts serving, then prints exactly one line to stdout,
 *  "<name> listening on http://HOST:PORT/", and flushes it. */
int service_start(struct service *svc, struct err *err);
int service_port(const struct service *svc);
/** Waits for SIGINT or SIGTERM (see service_block_signals), then stops gracefully. Returns
 *  the signal number. */
int service_wait(struct service *svc);

/** Parses a request body that must be a JSON object. On failure answers 400 in resp
 *  ({"error":"invalid_json","message":"malformed JSON at line 1, column 9: ..."} or
 *  invalid_field for a body that is not an object) and returns NULL. */
struct jv *service_parse_body(const struct http_req *req, struct http_resp *resp);
/** Answers 400 with jv_invalid_write's body. */
void service_invalid(struct http_resp *resp, const struct jv_invalid *inv);
/** Answers 503 {"error":"not_ready","message":"...","missing":[...]} (Retry-After set). */
void service_not_ready(struct service *svc, struct http_resp *resp);

#endif
