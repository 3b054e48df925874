#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

struct hc_conn *hc_connect(const char *host, int port, int timeout_ms)
{
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return NULL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return NULL;
    }
    struct hc_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->fd = fd;
    return c;
}

void hc_close(struct hc_conn *c)
{
    if (!c) return;
    close(c->fd);
    free(c);
}

int hc_send(struct hc_conn *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int hc_send_request(struct hc_conn *c, const char *method, const char *path, const char *headers,
                    const char *body, size_t body_len)
{
    char head[4096];
    int n;
    if (body)
        n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n", method,
                     path, headers ? headers : "", body_len);
    else
        n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, path,
                     headers ? headers : "");
    if (n < 0 || (size_t)n >= sizeof head) return -1;
    if (hc_send(c, head, (size_t)n)) return -1;
    if (body && body_len && hc_send(c, body, body_len)) return -1;
    return 0;
}

/* Refills the buffer; returns bytes read, 0 at EOF, -1 on error/timeout. */
static ssize_t fill(struct hc_conn *c)
{
    if (c->off == c->len) c->off = c->len = 0;
    if (c->off > 0 && c->len == sizeof c->buf) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof c->buf) return -1;
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) c->len += (size_t)n;
        return n;
    }
}

/* Reads one line ending in \n (CR stripped) into out. Returns its length or -1. */
static long read_line(struct hc_conn *c, char *out, size_t n)
{
    for (;;) {
        char *nl = memchr(c->buf + c->off, '\n', c->len - c->off);
        if (nl) {
            size_t l = (size_t)(nl - (c->buf + c->off));
            size_t keep = l && nl[-1] == '\r' ? l - 1 : l;
            if (keep >= n) return -1;
            memcpy(out, c->buf + c->off, keep);
            out[keep] = '\0';
            c->off += l + 1;
            return (long)keep;
        }
        if (fill(c) <= 0) return -1;
    }
}

static int read_exact(struct hc_conn *c, char *out, size_t n)
{
    while (n) {
        if (c->off == c->len && fill(c) <= 0) return -1;
        size_t k = c->len - c->off;
        if (k > n) k = n;
        memcpy(out, c->buf + c->off, k);
        c->off += k;
        out += k;
        n -= k;
    }
    return 0;
}

int hc_read_head(struct hc_conn *c, struct hc_resp *r)
{
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    char line[8192];
    if (read_line(c, line, sizeof line) < 0) return -1;
    int major, minor;
    if (sscanf(line, "HTTP/%d.%d %d", &major, &minor, &r->status) != 3) return -1;
    size_t cap = 4096, len = 0;
    r->head = malloc(cap);
    if (!r->head) return -1;
    r->head[0] = '\0';
    for (;;) {
        long l = read_line(c, line, sizeof line);
        if (l < 0) return -1;
        if (l == 0) break;
        if (!strchr(line, ':')) return -1;
        while (len + (size_t)l + 2 > cap) {
            cap *= 2;
            char *h = realloc(r->head, cap);
            if (!h) return -1;
            r->head = h;
        }
        memcpy(r->head + len, line, (size_t)l);
        len += (size_t)l;
        r->head[len++] = '\n';
        r->head[len] = '\0';
    }
    char v[64];
    if (hc_header(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0)
        r->chunked = true;
    if (hc_header(r, "Content-Length", v, sizeof v)) r->content_length = atoll(v);
    return 0;
}

int hc_read_chunk(struct hc_conn *c, char **data, size_t *len)
{
    char line[256];
    *data = NULL;
    *len = 0;
    if (read_line(c, line, sizeof line) < 0) return -1;
    char *end;
    unsigned long long n = strtoull(line, &end, 16);
    if (end == line || n > (1ull << 30)) return -1;
    if (n == 0) { /* trailer lines until blank */
        for (;;) {
            long l = read_line(c, line, sizeof line);
            if (l < 0) return -1;
            if (l == 0) return 0;
        }
    }
    char *b = malloc((size_t)n + 1);
    if (!b) return -1;
    if (read_exact(c, b, (size_t)n) || read_line(c, line, sizeof line) != 0) {
        free(b);
        return -1;
    }
    b[n] = '\0';
    *data = b;
    *len = (size_t)n;
    return 0;
}

int hc_read_body(struct hc_conn *c, struct hc_resp *r, bool head_request)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    if (head_request || r->status == 204 || r->status == 304 || r->status / 100 == 1) {
        r->body = calloc(1, 1);
        return r->body ? 0 : -1;
    }
    if (r->chunked) {
        size_t cap = 1024, len = 0;
        char *b = malloc(cap);
        if (!b) return -1;
        for (;;) {
            char *d;
            size_t n;
            if (hc_read_chunk(c, &d, &n)) {
                free(b);
                return -1;
            }
            if (n == 0) break;
            while (len + n + 1 > cap)
                cap *= 2;
            char *nb = realloc(b, cap);
            if (!nb) {
                free(d);
                free(b);
                return -1;
            }
            b = nb;
            memcpy(b + len, d, n);
            len += n;
            free(d);
        }
        b[len] = '\0';
        r->body = b;
        r->body_len = len;
        return 0;
    }
    if (r->content_length >= 0) {
        r->body = malloc((size_t)r->content_length + 1);
        if (!r->body || read_exact(c, r->body, (size_t)r->content_length)) return -1;
        r->body[r->content_length] = '\0';
        r->body_len = (size_t)r->content_length;
        return 0;
    }
    /* until close */
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    if (!b) return -1;
    for (;;) {
        if (c->off == c->len) {
            ssize_t n = fill(c);
            if (n == 0) break;
            if (n < 0) {
                free(b);
                return -1;
            }
        }
        size_t k = c->len - c->off;
        while (len + k + 1 > cap)
            cap *= 2;
        char *nb = realloc(b, cap);
        if (!nb) {
            free(b);
            return -1;
        }
        b = nb;
        memcpy(b + len, c->buf + c->off, k);
        len += k;
        c->off += k;
    }
    b[len] = '\0';
    r->body = b;
    r->body_len = len;
    return 0;
}

int hc_request(struct hc_conn *c, const char *method, const char *path, const char *headers,
               const char *body, size_t body_len, struct hc_resp *r)
{
    memset(r, 0, sizeof *r);
    if (hc_send_request(c, method, path, headers, body, body_len)) return -1;
    if (hc_read_head(c, r)) return -1;
    return hc_read_body(c, r, strcmp(method, "HEAD") == 0);
}

const char *hc_header(const struct hc_resp *r, const char *name, char *buf, size_t n)
{
    if (!r->head) return NULL;
    size_t nl = strlen(name);
    const char *p = r->head;
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) e = p + strlen(p);
        if ((size_t)(e - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            size_t l = (size_t)(e - v);
            while (l && (v[l - 1] == ' ' || v[l - 1] == '\r'))
                l--;
            if (l >= n) l = n - 1;
            memcpy(buf, v, l);
            buf[l] = '\0';
            return buf;
        }
        p = *e ? e + 1 : e;
    }
    return NULL;
}

bool hc_peer_closed(struct hc_conn *c, int timeout_ms)
{
    if (c->off < c->len) return false;
    struct pollfd pfd = {c->fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) return false;
    char b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

void hc_resp_free(struct hc_resp *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

int hc_fetch(const char *host, int port, const char *method, const char *path, const char *body,
             struct hc_resp *r)
{
    memset(r, 0, sizeof *r);
    struct hc_conn *c = hc_connect(host, port, 10000);
    if (!c) return -1;
    int rc = hc_request(c, method, path, "Connection: close\r\n", body, body ? strlen(body) : 0, r);
    hc_close(c);
    return rc;
}
