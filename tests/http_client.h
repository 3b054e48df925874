/** A raw-socket HTTP/1.1 client for tests: one connection, explicit requests, strict parsing
 *  of the status line, headers and bodies (Content-Length, chunked, or until close). No
 *  hidden retries or reconnects, so a test sees exactly what the server did (keep-alive,
 *  closes, chunk framing). Every read is bounded by a timeout. */
#ifndef TESTS_HTTP_CLIENT_H
#define TESTS_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

struct hc_conn {
    int fd;
    char buf[65536];
    size_t off, len;
};

struct hc_resp {
    int status;
    char *head; /* the header lines as received, NUL-terminated */
    char *body; /* NUL-terminated (not counted in body_len); NULL before the body is read */
    size_t body_len;
    bool chunked;
    long long content_length; /* -1 if absent */
};

/** Connects to host:port (numeric) with a read/write timeout; NULL on failure. */
struct hc_conn *hc_connect(const char *host, int port, int timeout_ms);
void hc_close(struct hc_conn *c);

/** Writes all bytes (MSG_NOSIGNAL). Returns 0, or -1 if the peer stopped reading. */
int hc_send(struct hc_conn *c, const void *data, size_t len);
/** Sends a request: `headers` is extra header lines, each ending in \r\n (may be NULL);
 *  Content-Length is added when body is not NULL. */
int hc_send_request(struct hc_conn *c, const char *method, const char *path, const char *headers,
                    const char *body, size_t body_len);
/** Reads the status line and headers. Returns 0 or -1. */
int hc_read_head(struct hc_conn *c, struct hc_resp *r);
/** Reads one chunk of a chunked body into a malloc'd buffer (*len 0: the last chunk, with
 *  the trailer consumed). Returns 0 or -1. */
int hc_read_chunk(struct hc_conn *c, char **data, size_t *len);
/** Reads the whole body as the head says (HEAD responses and 204/304 have none). */
int hc_read_body(struct hc_conn *c, struct hc_resp *r, bool head_request);
/** hc_send_request + hc_read_head + hc_read_body. Returns 0 or -1. */
int hc_request(struct hc_conn *c, const char *method, const char *path, const char *headers,
               const char *body, size_t body_len, struct hc_resp *r);
/** A header's value (first match, case-insensitive name), copied into buf; NULL if absent. */
const char *hc_header(const struct hc_resp *r, const char *name, char *buf, size_t n);
/** True once the server has closed the connection (reads give EOF). Waits up to timeout. */
bool hc_peer_closed(struct hc_conn *c, int timeout_ms);
void hc_resp_free(struct hc_resp *r);

/** One request on a fresh connection that is closed afterwards. */
int hc_fetch(const char *host, int port, const char *method, const char *path, const char *body,
             struct hc_resp *r);

#endif
