/** HTTP fetching for trend sources, the only module that includes curl.
 *
 *  One fetcher owns one thread that drives a curl multi handle, so any number of transfers
 *  run concurrently without a thread each. Requests are queued from any thread and complete
 *  through a callback run on the fetcher thread (keep it short: copy, signal, return), or
 *  through the blocking fetch_sync.
 *
 *  Every transfer: http/https only (redirects too), at most `max_redirects` redirects,
 *  connect and total timeouts, a cap on the decompressed body, gzip/deflate accepted, a
 *  descriptive User-Agent, conditional requests (If-None-Match / If-Modified-Since), and
 *  Retry-After parsed in both forms (seconds or HTTP date). HTTP error statuses are not
 *  transport errors: the response carries `status` and the body for the caller to judge. */
#ifndef STORY_FETCH_H
#define STORY_FETCH_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define FETCH_USER_AGENT                                                                         \
    "trendstory/0.1 (trend fetcher; polite: honours Retry-After, conditional GET; "         \
    "+https://github.com/nanorec/trendstory)"
#define FETCH_MAX_BYTES_DEFAULT (8u << 20)

struct fetch_cfg {
    long connect_timeout_ms; /* 0 = 5000 */
    long timeout_ms;         /* whole transfer; 0 = 15000 */
    size_t max_bytes;        /* decompressed body cap; 0 = FETCH_MAX_BYTES_DEFAULT */
    int max_redirects;       /* 0 = 5; negative = follow none */
    const char *user_agent;  /* NULL = FETCH_USER_AGENT */
    int max_connections;     /* total parallel connections; 0 = 16 */
};

struct fetch_req {
    const char *url;           /* http:// or https:// only */
    const char *etag;          /* sent as If-None-Match when set */
    const char *last_modified; /* sent as If-Modified-Since when set */
    const char *accept;        /* Accept header; NULL = none */
    long timeout_ms;           /* 0 = the fetcher's */
};

struct fetch_resp {
    int code;       /* 0, or a negative enum err_code for a transport failure */
    char msg[256];  /* what went wrong when code != 0 */
    long status;    /* final HTTP status; 0 if no response */
    char *body;     /* NUL-terminated (NUL bytes may occur inside); never NULL */
    size_t len;
    char *content_type, *etag, *last_modified; /* of the final response; NULL if absent */
    long retry_after_s; /* Retry-After of the final response in seconds from now; -1 if none */
    long redirects;
    double total_s;
};

/** Called once per request on the fetcher thread; takes ownership of resp
 *  (release it with fetch_resp_free). */
typedef void (*fetch_done_fn)(void *ud, struct fetch_resp *resp);

struct fetcher;

/** Starts the fetcher thread. NULL + err on failure. */
struct fetcher *fetch_new(const struct fetch_cfg *cfg, struct err *err);
/** Stops the thread; requests still running complete with ERR_UPSTREAM "fetcher stopped".
 *  NULL is fine. */
void fetch_free(struct fetcher *f);

/** Queues a request; `done` is called exactly once (also on failure) unless this returns an
 *  error (a bad URL, or the fetcher is stopping), in which case it is never called. */
int fetch_start(struct fetcher *f, const struct fetch_req *req, fetch_done_fn done, void *ud,
                struct err *err);

/** Runs one request and waits for it. Returns 0 and fills *out (release with
 *  fetch_resp_clear) when a response arrived, whatever its status; else a negative code + err
 *  (and *out is empty). */
int fetch_sync(struct fetcher *f, const struct fetch_req *req, struct fetch_resp *out,
               struct err *err);

/** Frees a heap response from a callback; NULL is fine. */
void fetch_resp_free(struct fetch_resp *r);
/** Frees the members of a response and zeroes it. */
void fetch_resp_clear(struct fetch_resp *r);

/** Copies url to out[n] with the values of secret-looking query parameters (key, apiKey,
 *  api_key, token, access_token, ...) replaced by "***", for logs and error messages. */
void fetch_redact_url(const char *url, char *out, size_t n);

/** Parses a Retry-After value: delta seconds, or an HTTP date (relative to now_s, the
 *  current Unix time). Returns seconds (>= 0, capped at one day) or -1 if unparsable. */
long fetch_parse_retry_after(const char *v, long now_s);

#endif
