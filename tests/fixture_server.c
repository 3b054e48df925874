/* The test fixture HTTP server. See fixture_server.h. Plain sockets, no libraries beyond
 * serve/json for reading MANIFEST.json. Bounded: request heads up to 16 KiB, 64 routes
 * from tests plus the manifest, connections close after 5 s idle. */
#include "fixture_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "serve/json.h"

#define MAX_ROUTES 128
#define MAX_HEAD 16384
#define MAX_HIT_PATHS 128

struct route {
    char *method, *path, *query;
    int status;
    char *body;
    size_t body_len;
    char *content_type, *headers;
    enum fixture_behavior behavior;
    int delay_ms;
    size_t huge_bytes;
    char *etag; /* the route's ETag header value, for FX_ETAG */
};

struct hit {
    char *path;
    long count;
    char *last_head; /* the raw request head of the last hit */
};

struct fixture_server {
    int fd, port;
    char url[64];
    char *dir;
    pthread_t accept_thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool stop;
    bool started;
    int active; /* connection threads alive, under mu */
    struct route routes[MAX_ROUTES];
    int n_routes;
    struct hit hits[MAX_HIT_PATHS];
    int n_hits;
};

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    return strdup(s ? s : "");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return NULL;
    }
    long n = ftell(f);
    rewind(f);
    if (n < 0) {
        fclose(f);
        return NULL;
    }
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = 0;
        *len = (size_t)n;
    }
    return b;
}

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static atomic_bool ready;
    if (!atomic_load(&ready)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        atomic_store(&ready, true);
    }
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

static const uint8_t gzip_head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};

/* gzip with stored deflate blocks: valid gzip that any inflater accepts. */
static uint8_t *gzip_stored(const char *data, size_t n, size_t *out_len)
{
    size_t blocks = n / 65535 + 1;
    uint8_t *o = malloc(10 + n + blocks * 5 + 8);
    if (!o) return NULL;
    memcpy(o, gzip_head, 10);
    size_t w = 10, r = 0;
    do {
        size_t k = n - r > 65535 ? 65535 : n - r;
        bool last = r + k == n;
        o[w++] = last ? 1 : 0;
        o[w++] = (uint8_t)k, o[w++] = (uint8_t)(k >> 8);
        o[w++] = (uint8_t)~k, o[w++] = (uint8_t)(~k >> 8);
        memcpy(o + w, data + r, k);
        w += k, r += k;
    } while (r < n);
    put_le32(o + w, crc32_update(0, (const uint8_t *)data, n));
    put_le32(o + w + 4, (uint32_t)n);
    *out_len = w + 8;
    return o;
}

struct bitw {
    uint8_t *p;
    size_t n;
    uint32_t acc;
    int bits;
};

static void bw_put(struct bitw *b, uint32_t v, int n) /* LSB first */
{
    for (int i = 0; i < n; i++) {
        b->acc |= ((v >> i) & 1u) << b->bits;
        if (++b->bits == 8) {
            b->p[b->n++] = (uint8_t)b->acc;
            b->acc = 0;
            b->bits = 0;
        }
    }
}

static void bw_code(struct bitw *b, uint32_t code, int n) /* Huffman codes: MSB first */
{
    for (int i = n - 1; i >= 0; i--) bw_put(b, (code >> i) & 1u, 1);
}

static void bw_literal(struct bitw *b, uint8_t c)
{
    if (c < 144) bw_code(b, 0x30 + c, 8);
    else bw_code(b, 0x190 + (c - 144u), 9);
}

/* A gzip body that inflates to `total` bytes: an RSS head, then spaces made of fixed-Huffman
 * (length 258, distance 1) matches at 13 bits each: about 160x expansion. */
static uint8_t *gzip_bomb(size_t total, size_t *out_len)
{
    static const char head[] = "<?xml version=\"1.0\"?><rss version=\"2.0\"><channel><title>bomb</title> ";
    size_t hl = sizeof head - 1;
    size_t runs = total > hl ? (total - hl) / 258 : 0;
    uint8_t *p = malloc(64 + hl * 2 + runs * 2 + 16);
    if (!p) return NULL;
    memcpy(p, gzip_head, 10);
    struct bitw b = {.p = p, .n = 10};
    bw_put(&b, 1, 1); /* BFINAL */
    bw_put(&b, 1, 2); /* BTYPE = fixed Huffman */
    for (size_t i = 0; i < hl; i++) bw_literal(&b, (uint8_t)head[i]);
    for (size_t i = 0; i < runs; i++) {
        bw_code(&b, 0xC0 + 5, 8); /* length code 285 = 258 */
        bw_code(&b, 0, 5);        /* distance code 0 = 1 */
    }
    bw_code(&b, 0, 7); /* end of block */
    if (b.bits) bw_put(&b, 0, 8 - b.bits);
    size_t expanded = hl + runs * 258;
    uint32_t crc = crc32_update(0, (const uint8_t *)head, hl);
    uint8_t spaces[258];
    memset(spaces, ' ', sizeof spaces);
    for (size_t i = 0; i < runs; i++) crc = crc32_update(crc, spaces, 258);
    put_le32(p + b.n, crc);
    put_le32(p + b.n + 4, (uint32_t)expanded);
    *out_len = b.n + 8;
    return p;
}

/* ---- routes ---- */

static int add_route(struct fixture_server *s, const struct fixture_route *r, const char *dir)
{
    pthread_mutex_lock(&s->mu);
    if (s->n_routes >= MAX_ROUTES) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    struct route *t = &s->routes[s->n_routes];
    memset(t, 0, sizeof *t);
    t->method = xstrdup(r->method ? r->method : "GET");
    t->path = xstrdup(r->path);
    t->query = xstrdup(r->query);
    t->status = r->status ? r->status : 200;
    t->content_type = r->content_type ? strdup(r->content_type) : NULL;
    t->headers = xstrdup(r->headers);
    t->behavior = r->behavior;
    t->delay_ms = r->delay_ms;
    t->huge_bytes = r->huge_bytes ? r->huge_bytes : (64u << 20);
    if (r->file && r->file[0]) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir ? dir : ".", r->file);
        t->body = read_file(p, &t->body_len);
        if (!t->body) {
            fprintf(stderr, "fixture_server: cannot read %s\n", p);
            t->body = xstrdup("");
            t->body_len = 0;
        }
    } else if (r->body) {
        t->body = malloc(r->body_len + 1);
        if (t->body) {
            memcpy(t->body, r->body, r->body_len);
            t->body[r->body_len] = 0;
        }
        t->body_len = r->body_len;
    } else {
        t->body = xstrdup("");
    }
    if (t->behavior == FX_GZIP_BOMB) {
        /* Built once here, so serving it costs no time inside a client's timeout. */
        size_t bl = 0;
        uint8_t *bomb = gzip_bomb(t->huge_bytes, &bl);
        free(t->body);
        t->body = (char *)bomb;
        t->body_len = bomb ? bl : 0;
        if (!bomb) t->body = xstrdup("");
    }
    /* FX_ETAG compares against the route's own ETag header. */
    const char *e = strcasestr(t->headers, "ETag:");
    if (e) {
        e += 5;
        while (*e == ' ') e++;
        const char *end = strstr(e, "\r\n");
        t->etag = strndup(e, end ? (size_t)(end - e) : strlen(e));
    }
    s->n_routes++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int fixture_server_add(struct fixture_server *s, const struct fixture_route *r)
{
    return add_route(s, r, s->dir);
}

static int load_manifest(struct fixture_server *s, const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/MANIFEST.json", dir);
    size_t n;
    char *buf = read_file(p, &n);
    if (!buf) {
        fprintf(stderr, "fixture_server: cannot read %s\n", p);
        return -1;
    }
    struct err e = {0};
    struct jv *root = jv_parse(buf, n, NULL, &e);
    free(buf);
    if (!root) {
        fprintf(stderr, "fixture_server: %s: %s\n", p, e.msg);
        return -1;
    }
    const struct jv *routes = jv_get(root, "routes");
    for (size_t i = 0; i < jv_len(routes); i++) {
        const struct jv *r = jv_at(routes, i);
        struct fixture_route fr = {0};
        fr.method = jv_str(jv_get(r, "method"), NULL);
        fr.path = jv_str(jv_get(r, "path"), NULL);
        fr.query = jv_str(jv_get(r, "query"), NULL);
        int64_t st = 200;
        jv_int(jv_get(r, "status"), &st);
        fr.status = (int)st;
        fr.file = jv_str(jv_get(r, "fixture"), NULL);
        fr.content_type = jv_str(jv_get(r, "content_type"), NULL);
        char hdrs[2048] = "";
        const struct jv *h = jv_get(r, "headers");
        for (void *it = jv_obj_iter(h); it; it = jv_obj_next(h, it)) {
            const char *v = jv_str(jv_obj_iter_val(it), NULL);
            size_t used = strlen(hdrs);
            snprintf(hdrs + used, sizeof hdrs - used, "%s: %s\r\n", jv_obj_iter_key(it),
                     v ? v : "");
        }
        fr.headers = hdrs;
        if (!fr.path) continue;
        if (strcmp(fr.path, "/feeds/slow") == 0) fr.behavior = FX_DELAY, fr.delay_ms = 3000;
        else if (strcmp(fr.path, "/feeds/gzip") == 0) fr.behavior = FX_GZIP;
        else if (strcmp(fr.path, "/feeds/etag") == 0) fr.behavior = FX_ETAG;
        else if (strcmp(fr.path, "/feeds/huge") == 0) fr.behavior = FX_HUGE;
        else if (fr.query && strstr(fr.query, "case=truncated")) fr.behavior = FX_TRUNCATE;
        if (fr.behavior == FX_GZIP) {
            /* The manifest lists Content-Encoding itself; FX_GZIP adds it. */
            hdrs[0] = 0;
        }
        add_route(s, &fr, dir);
    }
    jv_free(root);
    return 0;
}

/* Counts the route's query pairs present in the request query; -1 if one is missing. */
static int query_score(const char *want, const char *have)
{
    if (!want || !*want) return 0;
    int score = 0;
    const char *p = want;
    while (*p) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        bool found = false;
        const char *h = have;
        while (h && *h) {
            const char *ha = strchr(h, '&');
            size_t hn = ha ? (size_t)(ha - h) : strlen(h);
            if (hn == n && strncmp(h, p, n) == 0) {
                found = true;
                break;
            }
            h = ha ? ha + 1 : NULL;
        }
        if (!found) return -1;
        score++;
        p = amp ? amp + 1 : p + n;
    }
    return score;
}

static struct route *find_route(struct fixture_server *s, const char *method, const char *path,
                                const char *query)
{
    struct route *best = NULL;
    int best_score = -1;
    for (int i = 0; i < s->n_routes; i++) {
        struct route *r = &s->routes[i];
        if (strcmp(r->method, method) != 0 || strcmp(r->path, path) != 0) continue;
        int sc = query_score(r->query, query);
        if (sc >= best_score && sc >= 0) best = r, best_score = sc;
    }
    return best;
}

/* ---- connections ---- */

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Sleeps ms in small steps; false if the server is stopping. */
static bool nap(struct fixture_server *s, int ms)
{
    while (ms > 0 && !atomic_load(&s->stop)) {
        int k = ms > 20 ? 20 : ms;
        struct timespec ts = {0, k * 1000000L};
        nanosleep(&ts, NULL);
        ms -= k;
    }
    return !atomic_load(&s->stop);
}

static void header_value(const char *head, const char *name, char *out, size_t n)
{
    out[0] = 0;
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ') h++;
            const char *e = strstr(h, "\r\n");
            size_t k = e ? (size_t)(e - h) : strlen(h);
            if (k >= n) k = n - 1;
            memcpy(out, h, k);
            out[k] = 0;
            return;
        }
    }
}

static void record_hit(struct fixture_server *s, const char *path, const char *head)
{
    pthread_mutex_lock(&s->mu);
    struct hit *h = NULL;
    for (int i = 0; i < s->n_hits; i++)
        if (strcmp(s->hits[i].path, path) == 0) h = &s->hits[i];
    if (!h && s->n_hits < MAX_HIT_PATHS) {
        h = &s->hits[s->n_hits++];
        h->path = strdup(path);
        h->count = 0;
        h->last_head = NULL;
    }
    if (h) {
        h->count++;
        free(h->last_head);
        h->last_head = strdup(head);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Answers one request. Returns false when the connection must close. */
static bool respond(struct fixture_server *s, int fd, const char *head)
{
    char method[16], target[4096];
    if (sscanf(head, "%15s %4095s", method, target) != 2) return false;
    char *q = strchr(target, '?');
    const char *query = "";
    if (q) {
        *q = 0;
        query = q + 1;
    }
    record_hit(s, target, head);
    char conn[64];
    header_value(head, "Connection", conn, sizeof conn);
    bool keep = strcasecmp(conn, "close") != 0 && strstr(head, "HTTP/1.0") == NULL;

    pthread_mutex_lock(&s->mu);
    struct route *r = find_route(s, method, target, query);
    pthread_mutex_unlock(&s->mu);
    char hdr[4096];
    if (!r) {
        static const char nf[] = "no fixture route\n";
        snprintf(hdr, sizeof hdr,
                 "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n",
                 sizeof nf - 1);
        return send_all(fd, hdr, strlen(hdr)) == 0 && send_all(fd, nf, sizeof nf - 1) == 0 &&
               keep;
    }
    int status = r->status;
    const char *body = r->body;
    size_t blen = r->body_len;
    uint8_t *owned = NULL;
    char extra[256] = "";
    if (r->behavior == FX_ETAG && r->etag) {
        char inm[256];
        header_value(head, "If-None-Match", inm, sizeof inm);
        if (strcmp(inm, r->etag) == 0) {
            snprintf(hdr, sizeof hdr, "HTTP/1.1 304 Not Modified\r\nETag: %s\r\n\r\n", r->etag);
            return send_all(fd, hdr, strlen(hdr)) == 0 && keep;
        }
    }
    if (r->behavior == FX_GZIP || r->behavior == FX_GZIP_BOMB) {
        if (r->behavior == FX_GZIP) {
            owned = gzip_stored(body, blen, &blen);
            if (!owned) return false;
            body = (const char *)owned;
        }
        snprintf(extra, sizeof extra, "Content-Encoding: gzip\r\n");
    }
    int n;
    if (r->behavior == FX_HUGE) {
        n = snprintf(hdr, sizeof hdr, "HTTP/1.1 %d %s\r\n%s%s%s%sConnection: close\r\n\r\n",
                     status, reason(status), r->content_type ? "Content-Type: " : "",
                     r->content_type ? r->content_type : "", r->content_type ? "\r\n" : "",
                     r->headers);
    } else {
        size_t advertised = blen + (r->behavior == FX_TRUNCATE ? 4096 : 0);
        n = snprintf(hdr, sizeof hdr,
                     "HTTP/1.1 %d %s\r\n%s%s%s%s%sContent-Length: %zu\r\n%s\r\n", status,
                     reason(status), r->content_type ? "Content-Type: " : "",
                     r->content_type ? r->content_type : "", r->content_type ? "\r\n" : "",
                     r->headers, extra, advertised, keep ? "" : "Connection: close\r\n");
    }
    bool ok = n > 0 && (size_t)n < sizeof hdr && send_all(fd, hdr, (size_t)n) == 0;
    if (ok && r->behavior == FX_HUGE) {
        static const char h0[] = "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>huge</title>\n";
        ok = send_all(fd, h0, sizeof h0 - 1) == 0;
        size_t sent = sizeof h0 - 1;
        char item[256];
        for (size_t i = 0; ok && sent < r->huge_bytes && !atomic_load(&s->stop); i++) {
            int k = snprintf(item, sizeof item,
                             "<item><title>item %zu</title><link>http://127.0.0.1/%zu</link></item>\n",
                             i, i);
            ok = send_all(fd, item, (size_t)k) == 0;
            sent += (size_t)k;
        }
        free(owned);
        return false;
    }
    if (ok && r->behavior == FX_DELAY) {
        ok = send_all(fd, body, blen / 2) == 0 && nap(s, r->delay_ms) &&
             send_all(fd, body + blen / 2, blen - blen / 2) == 0;
    } else if (ok && blen > 0) {
        ok = send_all(fd, body, blen) == 0;
    }
    free(owned);
    if (r->behavior == FX_TRUNCATE) return false;
    return ok && keep;
}

struct conn {
    struct fixture_server *s;
    int fd;
};

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    struct fixture_server *s = c->s;
    int fd = c->fd;
    free(c);
    char *buf = malloc(MAX_HEAD + 1);
    size_t have = 0;
    int idle_ms = 0;
    while (buf && !atomic_load(&s->stop) && idle_ms < 5000) {
        char *end = NULL;
        buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            char saved = buf[hl];
            buf[hl] = 0;
            bool keep = respond(s, fd, buf);
            buf[hl] = saved;
            memmove(buf, buf + hl, have - hl);
            have -= hl;
            idle_ms = 0;
            if (!keep) break;
            continue;
        }
        if (have >= MAX_HEAD) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, 50);
        if (pr == 0) {
            idle_ms += 50;
            continue;
        }
        if (pr < 0 && errno == EINTR) continue;
        ssize_t r = recv(fd, buf + have, MAX_HEAD - have, 0);
        if (r <= 0) break;
        have += (size_t)r;
    }
    free(buf);
    close(fd);
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void *accept_thread(void *arg)
{
    struct fixture_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0) continue;
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->s = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        s->active++;
        pthread_mutex_unlock(&s->mu);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, conn_thread, c) != 0) {
            close(fd);
            free(c);
            pthread_mutex_lock(&s->mu);
            s->active--;
            pthread_mutex_unlock(&s->mu);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

struct fixture_server *fixture_server_start(const char *dir)
{
    struct fixture_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->dir = xstrdup(dir ? dir : ".");
    s->fd = -1;
    if (dir && load_manifest(s, dir) < 0) {
        fixture_server_stop(s);
        return NULL;
    }
    s->fd = -1;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 64) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        perror("fixture_server: socket");
        fixture_server_stop(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    if (pthread_create(&s->accept_thread, NULL, accept_thread, s) != 0) {
        fixture_server_stop(s);
        return NULL;
    }
    s->started = true;
    return s;
}

void fixture_server_stop(struct fixture_server *s)
{
    if (!s) return;
    atomic_store(&s->stop, true);
    if (s->started) pthread_join(s->accept_thread, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->active > 0) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->fd >= 0) close(s->fd);
    for (int i = 0; i < s->n_routes; i++) {
        struct route *r = &s->routes[i];
        free(r->method), free(r->path), free(r->query), free(r->body);
        free(r->content_type), free(r->headers), free(r->etag);
    }
    for (int i = 0; i < s->n_hits; i++) free(s->hits[i].path), free(s->hits[i].last_head);
    free(s->dir);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const char *fixture_server_url(const struct fixture_server *s)
{
    return s->url;
}

int fixture_server_port(const struct fixture_server *s)
{
    return s->port;
}

long fixture_server_hits(struct fixture_server *s, const char *path)
{
    long n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_hits; i++)
        if (!path || strcmp(s->hits[i].path, path) == 0) n += s->hits[i].count;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fixture_server_reset_hits(struct fixture_server *s)
{
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_hits; i++) s->hits[i].count = 0;
    pthread_mutex_unlock(&s->mu);
}

int fixture_server_last_header(struct fixture_server *s, const char *path, const char *name,
                               char *out, size_t n)
{
    out[0] = 0;
    int found = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_hits; i++)
        if (strcmp(s->hits[i].path, path) == 0 && s->hits[i].last_head) {
            header_value(s->hits[i].last_head, name, out, n);
            found = out[0] != 0;
        }
    pthread_mutex_unlock(&s->mu);
    return found;
}
