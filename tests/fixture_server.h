/** A small HTTP/1.1 fixture server for tests: one accept thread on 127.0.0.1 with an
 *  ephemeral port, one short-lived thread per connection, keep-alive.
 *
 *  Routes come from a MANIFEST.json route table (../shared/data/trends/MANIFEST.json:
 *  method, path, query, status, fixture, content_type, headers) and from
 *  fixture_server_add. A request matches a route when method and path are equal and every
 *  name=value pair of the route's query is present in the request's query; the route with
 *  the most pairs wins, then the latest added. No match answers 404.
 *
 *  Synthetic behaviours for transport tests (chosen per route):
 *    FX_DELAY     sends half the body, sleeps delay_ms, then the rest
 *    FX_TRUNCATE  advertises a Content-Length 4096 bytes too long, sends the body, closes
 *    FX_GZIP      gzip-encodes the body (stored deflate blocks)
 *    FX_GZIP_BOMB a small gzip body that inflates to `huge_bytes` (an RSS head + spaces)
 *    FX_HUGE      a valid, endless-looking RSS stream of `huge_bytes`, close-delimited
 *    FX_ETAG      answers 304 when If-None-Match equals the route's ETag header
 *  The manifest's /feeds/slow, /feeds/gzip, /feeds/etag, /feeds/huge and case=truncated
 *  routes get the matching behaviour automatically. */
#ifndef TESTS_FIXTURE_SERVER_H
#define TESTS_FIXTURE_SERVER_H

#include <stddef.h>

enum fixture_behavior { FX_NORMAL = 0, FX_DELAY, FX_TRUNCATE, FX_GZIP, FX_GZIP_BOMB, FX_HUGE, FX_ETAG };

struct fixture_route {
    const char *method;       /* NULL = "GET" */
    const char *path;         /* "/feeds/x" */
    const char *query;        /* "a=1&b=2" pairs that must be present; NULL/"" = any */
    int status;               /* 0 = 200 */
    const char *file;         /* body from this file (relative to the data dir); or */
    const char *body;         /* an inline body of body_len bytes */
    size_t body_len;
    const char *content_type; /* NULL = none */
    const char *headers;      /* extra header lines, each ending in "\r\n"; NULL = none */
    enum fixture_behavior behavior;
    int delay_ms;             /* FX_DELAY */
    size_t huge_bytes;        /* FX_HUGE, FX_GZIP_BOMB; 0 = 64 MiB */
};

struct fixture_server;

/** Starts a server. `dir` is the folder with MANIFEST.json and the fixtures (NULL = no
 *  manifest, only added routes). Returns NULL (and prints why) on failure. */
struct fixture_server *fixture_server_start(const char *dir);
/** Stops the server, waits for its connection threads, frees it. NULL is fine. */
void fixture_server_stop(struct fixture_server *s);

/** "http://127.0.0.1:PORT" (no trailing slash). */
const char *fixture_server_url(const struct fixture_server *s);
int fixture_server_port(const struct fixture_server *s);

/** Adds a route (strings and the inline body are copied). Returns 0 or -1. */
int fixture_server_add(struct fixture_server *s, const struct fixture_route *r);

/** Requests seen for `path` (any query) since start or the last reset; NULL = all paths. */
long fixture_server_hits(struct fixture_server *s, const char *path);
void fixture_server_reset_hits(struct fixture_server *s);

/** Copies the value of header `name` in the last request for `path` into out[n] ("" if
 *  absent). Returns 1 if present, 0 if not. */
int fixture_server_last_header(struct fixture_server *s, const char *path, const char *name,
                               char *out, size_t n);

#endif
