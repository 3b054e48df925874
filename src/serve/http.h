/** An HTTP/1.1 server on libmicrohttpd (the only module that includes microhttpd.h).
 *
 *  - Routes: method + exact path (or a prefix: a path ending in '*'). Unknown path: 404;
 *    known path, other method: 405 with an Allow header. HEAD is routed as GET.
 *  - Bodies are collected across calls and handlers run only once the body is complete
 *    (MHD's two-phase access handler), so keep-alive connections survive. A body over
 *    cfg.max_body answers 413 with a JSON error.
 *  - I/O threads: MHD's internal epoll thread pool (cfg.io_threads). Handlers run on them and
 *    must be quick (parse, validate, health, metrics, cache hits). Model work is handed to a
 *    bounded job queue with http_defer(): the connection is suspended, a compute worker runs
 *    the job and fills the response, and the connection is resumed to send it. A full queue
 *    answers 503 with Retry-After.
 *  - Server-sent events: http_sse_start() turns a response into an event stream that any
 *    thread can push to; a client that goes away is reported to the producer.
 *  - Every request is counted in the metrics registry (http_requests_total{route,code}, with
 *    code the status class "2xx", and the http_request_duration_seconds{route} histogram).
 *
 *  Handlers answer by filling a struct http_resp (status, content type, body, extra headers).
 */
#ifndef SERVE_HTTP_H
#define SERVE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "serve/metrics.h"

struct http_server; /* opaque */
struct http_sse;    /* opaque event stream */
struct http_conn;   /* opaque per-request state */

/** A request as handlers see it. Valid until the response has been sent. */
struct http_req {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* decoded path, without the query string */
    const char *body;   /* the complete body, NUL-terminated (the NUL is not counted); "" if none */
    size_t body_len;
    struct http_conn *conn; /* internal */
};

/** Query parameter `key` (decoded), or NULL. */
const char *http_req_query(const struct http_req *req, const char *key);
/** Request header `name` (case-insensitive), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);

#define HTTP_MAX_EXTRA_HEADERS 8

/** A response being built. Use the http_resp_* functions; the server frees what they hold. */
struct http_resp {
    int status; /* 0 until a handler answers */
    char content_type[96];
    char *body; /* malloc'd, owned by the response */
    size_t body_len;
    int n_headers;
    char *header_name[HTTP_MAX_EXTRA_HEADERS];
    char *header_value[HTTP_MAX_EXTRA_HEADERS];
    struct http_sse *sse; /* set by http_sse_start */
};

/** Answers with a copy of body[0..len). Replaces any earlier body. Out of memory: 500. */
void http_resp_set(struct http_resp *resp, int status, const char *content_type, const char *body,
                   size_t len);
/** Same, taking ownership of a malloc'd body. */
void http_resp_take(struct http_resp *resp, int status, const char *content_type, char *body,
                    size_t len);
/** A JSON error body {"error":"<code>","message":"<printf text>"}. */
void http_resp_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Answers with the JSON in `w` (application/json), taking its buffer (w is left empty).
 *  A writer that overflowed answers 500 instead. */
struct jw;
void http_resp_json(struct http_resp *resp, int status, struct jw *w);
/** Adds an extra header (copied). ERR_NOMEM past HTTP_MAX_EXTRA_HEADERS or out of memory. */
int http_resp_header(struct http_resp *resp, const char *name, const char *value);

/** A route handler. It runs on an I/O thread: answer quickly, or http_defer the work. */
typedef void (*http_handler_fn)(const struct http_req *req, struct http_resp *resp, void *ctx);
/** A deferred job: runs on compute worker `worker` (0..workers-1) and fills resp. */
typedef void (*http_job_fn)(const struct http_req *req, struct http_resp *resp, void *arg,
                            int worker);

struct http_cfg {
    const char *host;         /* address to bind; NULL = "127.0.0.1" */
    int port;                 /* 0 = an ephemeral port (see http_server_port) */
    int io_threads;           /* MHD thread pool size; 0 = 2 */
    int workers;              /* compute workers for http_defer; 0 = online CPUs, -1 = none */
    int queue_capacity;       /* jobs that may wait; 0 = 64 */
    size_t max_body;          /* bytes; 0 = 1 MiB */
    unsigned max_connections; /* 0 = 1024; beyond it new clients wait in the listen backlog */
    unsigned conn_timeout_s;  /* idle connection timeout; 0 = 30 */
    int retry_after_s;        /* Retry-After on 503; 0 = 1 */
    struct metrics *metrics;  /* registry to count in; NULL = the server makes its own */
};

/** Makes a server (not yet listening). NULL + err on a bad config. */
struct http_server *http_server_new(const struct http_cfg *cfg, struct err *err);
/** Adds a route before http_server_start. `path` is exact, or a prefix when it ends in '*'
 *  (e.g. /static/ followed by a star). Returns 0 or a negative err_code. */
int http_route(struct http_server *srv, const char *method, const char *path, http_handler_fn fn,
               void *ctx);
/** Binds and starts the I/O threads. Returns 0, or a negative err_code with err filled
 *  (e.g. the port is taken). */
int http_server_start(struct http_server *srv, struct err *err);
/** The port actually bound (useful with port 0), or -1 before start. */
int http_server_port(const struct http_server *srv);
/** The registry requests are counted in. */
struct metrics *http_server_metrics(struct http_server *srv);
/** Graceful stop: stops accepting, ends event streams, finishes queued jobs, answers them,
 *  then closes every connection. Safe to call twice. */
void http_server_stop(struct http_server *srv);
/** Stops if running and frees. NULL is fine. */
void http_server_free(struct http_server *srv);

/** A handler for GET /metrics: ctx is the struct metrics * to render. */
void http_handle_metrics(const struct http_req *req, struct http_resp *resp, void *ctx);

/** From inside a handler: run fn(req, resp, arg, worker) on the job queue and answer when it
 *  returns. Returns 0, or ERR_BUSY when the queue is full (resp is then already a 503 with
 *  Retry-After), or ERR_UNSUPPORTED when the server has no workers / is stopping (resp is a
 *  503), or ERR_INVALID outside a handler. On failure `arg` stays the caller's to free.
 *  After a 0 return the handler must not
 *  touch resp again (the job owns it) and should return at once. */
int http_defer(const struct http_req *req, http_job_fn fn, void *arg);

/** Called at most once, when the stream is dropped before the producer called http_sse_end:
 *  the client disconnected, or the server is stopping. It runs on an I/O thread under the
 *  stream's lock: set a flag or cancel a job, and do not call http_sse_* from it. (While the
 *  producer is idle the connection is parked, so a disconnect is noticed at the next send;
 *  http_sse_send then also returns ERR_IO.) */
typedef void (*http_sse_close_fn)(void *ctx);

/** From a handler or a deferred job: answer 200 text/event-stream and return a stream that
 *  any thread may push to with http_sse_send until it calls http_sse_end. `max_pending`
 *  bounds bytes buffered for a slow client (0 = 1 MiB). NULL if out of memory (resp is then
 *  a 500). */
struct http_sse *http_sse_start(const struct http_req *req, struct http_resp *resp,
                                size_t max_pending, http_sse_close_fn on_close, void *ctx);
/** Queues one event (`event` may be NULL; data may hold newlines: each line becomes a
 *  data: field). Thread-safe. Returns 0, ERR_IO when the client is gone or the server is
 *  stopping (stop producing), or ERR_NOMEM when the client is too slow (pending bytes over
 *  the bound). */
int http_sse_send(struct http_sse *s, const char *event, const char *data, size_t len);
/** True once the client went away or the server began stopping. */
bool http_sse_gone(struct http_sse *s);
/** Ends the stream after what is queued has been sent, and gives up the producer's handle
 *  (do not use `s` afterwards). */
void http_sse_end(struct http_sse *s);

#endif
