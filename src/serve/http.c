/* HTTP server on libmicrohttpd: routes, two-phase bodies, limits, job deferral with
 * suspend/resume, server-sent events, per-route metrics. See http.h and docs/serve.md.
 *
 * Life of a request (struct http_conn, MHD's per-request context):
 *   1st access call (headers complete): look the route up; a Content-Length over the limit
 *      answers 413 at once (MHD then closes the connection).
 *   body calls: append to a bounded buffer.
 *   last call (body complete): run the handler and send its answer -- unless it deferred:
 *      then the connection is suspended, a worker runs the job, resumes the connection, and
 *      the next access call sends the answer.
 *   completed callback: free everything.
 *
 * Suspended connections are counted (n_suspended) from the suspend until MHD hands control
 * back to us (the next access call, the next content-reader call, or the completion), so a
 * graceful stop can wait until no connection is suspended before MHD_stop_daemon, which MHD
 * requires. */
#include "serve/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/jobq.h"
#include "base/log.h"
#include "serve/json.h"

#define N_CLASSES 5 /* 1xx .. 5xx */

struct route {
    char *method;
    char *path;
    size_t path_len;
    bool prefix;
    http_handler_fn fn;
    void *ctx;
    int stat;
};

/* Metrics of one route label ("/healthz", a prefix route, or "other" for unknown paths). */
struct route_stat {
    char *label;
    _Atomic(struct metrics_counter *) by_class[N_CLASSES];
    struct metrics_hist *latency;
};

struct http_server {
    struct http_cfg cfg;
    char host[256];
    struct route *routes;
    int n_routes, cap_routes;
    struct route_stat *stats;
    int n_stats, cap_stats;

    struct metrics *metrics;
    bool own_metrics;
    struct metrics_gauge *g_in_flight, *g_conns;
    struct metrics_counter *c_queue_full, *c_too_large, *c_shutting_down;

    pthread_mutex_t defer_mu; /* guards jobq against a concurrent stop */
    struct jobq *jobq;

    struct MHD_Daemon *d;
    int listen_fd;
    int port;
    bool started, stopped;
    _Atomic bool stopping;
    _Atomic int n_suspended;

    pthread_mutex_t sse_mu; /* guards the list of live event streams */
    struct http_sse *sse_head;
};

enum conn_state { CS_BODY, CS_WAIT, CS_ANSWER, CS_SENT };

struct http_conn {
    struct http_server *srv;
    struct MHD_Connection *mc;
    const struct route *route;
    int stat;
    int early_status; /* 404 or 405 decided from the headers; 0 = routed */
    char allow[64];
    double t0;
    char *body;
    size_t len, cap;
    bool too_large;
    enum conn_state state;
    bool in_handler;
    _Atomic bool suspended;
    http_job_fn job;
    void *job_arg;
    struct http_req req;
    struct http_resp resp;
};

struct http_sse {
    pthread_mutex_t mu;
    struct http_server *srv;
    struct MHD_Connection *mc;
    char *buf;
    size_t off, len, cap, max;
    bool suspended; /* we suspended the connection from the reader; resume on news */
    bool counted;   /* counted in srv->n_suspended until MHD calls us again */
    bool ended;     /* the producer called http_sse_end */
    bool stop;      /* the server is stopping: end after what is queued */
    bool mhd_done;  /* MHD released the response */
    http_sse_close_fn on_close;
    void *ctx;
    struct http_sse *prev, *next;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- responses ---- */

static void resp_clear_body(struct http_resp *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

static void set_ctype(struct http_resp *r, const char *ct)
{
    snprintf(r->content_type, sizeof r->content_type, "%s", ct ? ct : "text/plain; charset=utf-8");
}

void http_resp_take(struct http_resp *resp, int status, const char *content_type, char *body,
                    size_t len)
{
    resp_clear_body(resp);
    resp->status = status;
    set_ctype(resp, content_type);
    resp->body = body;
    resp->body_len = body ? len : 0;
}

void http_resp_set(struct http_resp *resp, int status, const char *content_type, const char *body,
                   size_t len)
{
    char *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy) {
            http_resp_take(resp, 500, "text/plain; charset=utf-8", NULL, 0);
            return;
        }
        memcpy(copy, body, len);
    }
    http_resp_take(resp, status, content_type, copy, len);
}

void http_resp_error(struct http_resp *resp, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct jw w;
    jw_init(&w, 8192);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_str(&w, code);
    jw_key(&w, "message");
    jw_str(&w, msg);
    jw_obj_end(&w);
    if (w.overflow || !w.buf) {
        jw_free(&w);
        static const char fallback[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        http_resp_set(resp, status, "application/json", fallback, sizeof fallback - 1);
        return;
    }
    http_resp_take(resp, status, "application/json", w.buf, w.len); /* takes w.buf */
}

void http_resp_json(struct http_resp *resp, int status, struct jw *w)
{
    if (w->overflow || !w->buf) {
        jw_free(w);
        http_resp_error(resp, 500, "internal", "the response did not fit its bound");
        return;
    }
    http_resp_take(resp, status, "application/json", w->buf, w->len);
    memset(w, 0, sizeof *w); /* the response owns the buffer now */
}

int http_resp_header(struct http_resp *resp, const char *name, const char *value)
{
    if (resp->n_headers >= HTTP_MAX_EXTRA_HEADERS) return ERR_NOMEM;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return ERR_NOMEM;
    }
    resp->header_name[resp->n_headers] = n;
    resp->header_value[resp->n_headers] = v;
    resp->n_headers++;
    return 0;
}

static bool resp_has_header(const struct http_resp *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->header_name[i], name) == 0) return true;
    return false;
}

static void sse_mhd_release(void *cls);

static void resp_free(struct http_resp *r)
{
    resp_clear_body(r);
    for (int i = 0; i < r->n_headers; i++) {
        free(r->header_name[i]);
        free(r->header_value[i]);
    }
    r->n_headers = 0;
    if (r->sse) { /* started but never handed to MHD */
        sse_mhd_release(r->sse);
        r->sse = NULL;
    }
}

void http_handle_metrics(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    size_t len = 0;
    char *text = metrics_render(ctx, &len);
    if (!text) {
        http_resp_error(resp, 500, "internal", "out of memory rendering metrics");
        return;
    }
    http_resp_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/* ---- request accessors ---- */

const char *http_req_query(const struct http_req *req, const char *key)
{
    if (!req || !req->conn || !key) return NULL;
    return MHD_lookup_connection_value(req->conn->mc, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_req_header(const struct http_req *req, const char *name)
{
    if (!req || !req->conn || !name) return NULL;
    return MHD_lookup_connection_value(req->conn->mc, MHD_HEADER_KIND, name);
}

/* ---- server setup ---- */

static int stat_for(struct http_server *srv, const char *label)
{
    for (int i = 0; i < srv->n_stats; i++)
        if (strcmp(srv->stats[i].label, label) == 0) return i;
    if (srv->n_stats == srv->cap_stats) {
        int cap = srv->cap_stats ? srv->cap_stats * 2 : 16;
        struct route_stat *st = realloc(srv->stats, sizeof *st * (size_t)cap);
        if (!st) return ERR_NOMEM;
        srv->stats = st;
        srv->cap_stats = cap;
    }
    struct route_stat *st = &srv->stats[srv->n_stats];
    memset(st, 0, sizeof *st);
    st->label = strdup(label);
    if (!st->label) return ERR_NOMEM;
    st->latency = metrics_hist(srv->metrics, "http_request_duration_seconds",
                               "Time from request headers to the response being queued.",
                               (const char *[]){"route", label, NULL}, METRICS_LATENCY_BUCKETS,
                               METRICS_LATENCY_NBUCKETS);
    return srv->n_stats++;
}

static double queue_depth(void *ctx)
{
    struct http_server *srv = ctx;
    /* called under the registry lock; jobq_depth takes only the queue's own lock */
    pthread_mutex_lock(&srv->defer_mu);
    int d = srv->jobq ? jobq_depth(srv->jobq) : 0;
    pthread_mutex_unlock(&srv->defer_mu);
    return d;
}

static double zero_gauge(void *ctx)
{
    (void)ctx;
    return 0;
}

struct http_server *http_server_new(const struct http_cfg *cfg, struct err *err)
{
    struct http_cfg c = cfg ? *cfg : (struct http_cfg){0};
    if (!c.host) c.host = "127.0.0.1";
    if (c.port < 0 || c.port > 65535)
        return err_set(err, ERR_INVALID, "port %d is not in 0..65535", c.port), NULL;
    if (c.io_threads == 0) c.io_threads = 2;
    if (c.io_threads < 1 || c.io_threads > 256)
        return err_set(err, ERR_INVALID, "io_threads %d is not in 1..256", c.io_threads), NULL;
    if (c.workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.workers = n > 0 ? (int)(n > 256 ? 256 : n) : 1;
    }
    if (c.queue_capacity == 0) c.queue_capacity = 64;
    if (c.max_body == 0) c.max_body = (size_t)1 << 20;
    if (c.max_connections == 0) c.max_connections = 1024;
    if (c.conn_timeout_s == 0) c.conn_timeout_s = 30;
    if (c.retry_after_s <= 0) c.retry_after_s = 1;
    if (strlen(c.host) >= 256) return err_set(err, ERR_INVALID, "host name too long"), NULL;

    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return err_set(err, ERR_NOMEM, "out of memory"), NULL;
    srv->cfg = c;
    snprintf(srv->host, sizeof srv->host, "%s", c.host);
    srv->cfg.host = srv->host;
    srv->listen_fd = -1;
    srv->port = -1;
    pthread_mutex_init(&srv->defer_mu, NULL);
    pthread_mutex_init(&srv->sse_mu, NULL);
    srv->metrics = c.metrics;
    if (!srv->metrics) {
        srv->metrics = metrics_new();
        srv->own_metrics = true;
        if (!srv->metrics) goto nomem;
    }
    if (stat_for(srv, "other") != 0) goto nomem;
    srv->g_in_flight = metrics_gauge(srv->metrics, "http_requests_in_flight",
                                     "Requests received and not yet completed.", NULL);
    srv->g_conns =
        metrics_gauge(srv->metrics, "http_connections_open", "Open client connections.", NULL);
    const char *help = "Requests refused before reaching a handler, by reason.";
    srv->c_queue_full = metrics_counter(srv->metrics, "http_rejected_total", help,
                                        (const char *[]){"reason", "queue_full", NULL});
    srv->c_too_large = metrics_counter(srv->metrics, "http_rejected_total", help,
                                       (const char *[]){"reason", "body_too_large", NULL});
    srv->c_shutting_down = metrics_counter(srv->metrics, "http_rejected_total", help,
                                           (const char *[]){"reason", "shutting_down", NULL});
    if (c.workers > 0) {
        srv->jobq = jobq_new(c.workers, c.queue_capacity, err);
        if (!srv->jobq) goto fail;
        metrics_gauge_fn(srv->metrics, "http_job_queue_depth", "Jobs waiting for a worker.", NULL,
                         queue_depth, srv);
    }
    return srv;
nomem:
    err_set(err, ERR_NOMEM, "out of memory");
fail:
    http_server_free(srv);
    return NULL;
}

int http_route(struct http_server *srv, const char *method, const char *path, http_handler_fn fn,
               void *ctx)
{
    if (!srv || !method || !path || path[0] != '/' || !fn || srv->started) return ERR_INVALID;
    if (srv->n_routes == srv->cap_routes) {
        int cap = srv->cap_routes ? srv->cap_routes * 2 : 16;
        struct route *r = realloc(srv->routes, sizeof *r * (size_t)cap);
        if (!r) return ERR_NOMEM;
        srv->routes = r;
        srv->cap_routes = cap;
    }
    int st = stat_for(srv, path);
    if (st < 0) return st;
    struct route *r = &srv->routes[srv->n_routes];
    memset(r, 0, sizeof *r);
    r->method = strdup(method);
    r->path = strdup(path);
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        return ERR_NOMEM;
    }
    r->path_len = strlen(path);
    if (r->path[r->path_len - 1] == '*') {
        r->prefix = true;
        r->path_len--;
    }
    r->fn = fn;
    r->ctx = ctx;
    r->stat = st;
    srv->n_routes++;
    return 0;
}

/* Binds the listening socket ourselves (rather than letting MHD do it) so that a failure
 * says why: "127.0.0.1:8000: Address already in use". */
static int bind_listen(struct http_server *srv, struct err *err)
{
    char port[16];
    snprintf(port, sizeof port, "%d", srv->cfg.port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(srv->host, port, &hints, &ai);
    if (rc != 0)
        return err_set(err, ERR_INVALID, "cannot resolve host '%s': %s", srv->host,
                       gai_strerror(rc));
    int fd = -1, e = 0;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 511) == 0) break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        return err_set(err, ERR_IO, "cannot listen on %s:%d: %s", srv->host, srv->cfg.port,
                       strerror(e));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    srv->listen_fd = fd;
    return 0;
}

/* ---- the request path ---- */

static void route_lookup(struct http_server *srv, struct http_conn *c, const char *method,
                         const char *path)
{
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    bool known = false;
    c->stat = 0;
    for (int i = 0; i < srv->n_routes; i++) {
        const struct route *r = &srv->routes[i];
        bool match =
            r->prefix ? strncmp(path, r->path, r->path_len) == 0 : strcmp(path, r->path) == 0;
        if (!match) continue;
        if (!known) c->stat = r->stat;
        known = true;
        if (strcmp(r->method, m) == 0) {
            c->route = r;
            c->stat = r->stat;
            return;
        }
        if (!strstr(c->allow, r->method)) {
            size_t l = strlen(c->allow);
            snprintf(c->allow + l, sizeof c->allow - l, "%s%s%s", l ? ", " : "", r->method,
                     strcmp(r->method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    c->early_status = known ? 405 : 404;
}

static void count_status(struct http_server *srv, struct http_conn *c, int status)
{
    struct route_stat *st = &srv->stats[c->stat];
    int cls = status / 100 - 1;
    if (cls < 0 || cls >= N_CLASSES) cls = N_CLASSES - 1;
    struct metrics_counter *ctr = atomic_load_explicit(&st->by_class[cls], memory_order_acquire);
    if (!ctr) { /* first request of this class on this route: look it up once */
        static const char *names[N_CLASSES] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
        ctr = metrics_counter(srv->metrics, "http_requests_total",
                              "Requests answered, by route and status class.",
                              (const char *[]){"route", st->label, "code", names[cls], NULL});
        atomic_store_explicit(&st->by_class[cls], ctr, memory_order_release);
    }
    metrics_counter_inc(ctr);
    metrics_hist_observe(st->latency, now_s() - c->t0);
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max);

/* Hands c->resp to MHD. Called only from the access handler. */
static enum MHD_Result send_response(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct http_resp *r = &c->resp;
    if (r->status < 100 || r->status > 599) {
        log_error("http", "%s %s: the handler gave no answer", c->req.method, c->req.path);
        http_resp_error(r, 500, "internal", "the handler for %s %s gave no answer", c->req.method,
                        c->req.path);
    }
    struct MHD_Response *mr;
    if (r->sse) {
        mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, r->sse,
                                               sse_mhd_release);
        if (mr) r->sse = NULL; /* MHD now owns its side; it calls sse_mhd_release */
    } else if (r->body) {
        mr = MHD_create_response_from_buffer(r->body_len, r->body, MHD_RESPMEM_MUST_FREE);
        if (mr) {
            r->body = NULL;
            r->body_len = 0;
        }
    } else {
        mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!mr) return MHD_NO;
    MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE,
                            r->content_type[0] ? r->content_type : "text/plain; charset=utf-8");
    for (int i = 0; i < r->n_headers; i++)
        MHD_add_response_header(mr, r->header_name[i], r->header_value[i]);
    if (r->status == 503 && !resp_has_header(r, "Retry-After")) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", srv->cfg.retry_after_s);
        MHD_add_response_header(mr, "Retry-After", ra);
    }
    if (r->status == 405 && c->allow[0] && !resp_has_header(r, "Allow"))
        MHD_add_response_header(mr, "Allow", c->allow);
    if (atomic_load(&srv->stopping)) MHD_add_response_header(mr, "Connection", "close");
    enum MHD_Result ok = MHD_queue_response(c->mc, (unsigned)r->status, mr);
    MHD_destroy_response(mr);
    count_status(srv, c, r->status);
    c->state = CS_SENT;
    log_debug("http", "%s %s -> %d", c->req.method, c->req.path, r->status);
    return ok;
}

static void unmark_suspended(struct http_conn *c)
{
    if (atomic_exchange(&c->suspended, false)) atomic_fetch_sub(&c->srv->n_suspended, 1);
}

/* Appends one piece of body, or remembers that the body went over the limit (the answer is
 * then 413 once the upload is done; the rest is read and dropped). */
static void append_body(struct http_conn *c, const char *data, size_t n)
{
    size_t max = c->srv->cfg.max_body;
    if (c->too_large) return;
    if (n > max - c->len) {
        c->too_large = true;
        free(c->body);
        c->body = NULL;
        c->len = c->cap = 0;
        return;
    }
    if (c->len + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 1024;
        while (cap < c->len + n + 1)
            cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *b = realloc(c->body, cap);
        if (!b) { /* treat as too large: we cannot hold it */
            c->too_large = true;
            free(c->body);
            c->body = NULL;
            c->len = c->cap = 0;
            return;
        }
        c->body = b;
        c->cap = cap;
    }
    memcpy(c->body + c->len, data, n);
    c->len += n;
    c->body[c->len] = '\0';
}

static void too_large(struct http_conn *c)
{
    metrics_counter_inc(c->srv->c_too_large);
    http_resp_error(&c->resp, 413, "body_too_large", "request body is over the limit of %zu bytes",
                    c->srv->cfg.max_body);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *mc, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct http_conn *c = *con_cls;
    (void)version;
    if (!c) { /* headers are in */
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        *con_cls = c;
        c->srv = srv;
        c->mc = mc;
        c->t0 = now_s();
        c->state = CS_BODY;
        c->req.method = method;
        c->req.path = url;
        c->req.body = "";
        c->req.conn = c;
        metrics_gauge_add(srv->g_in_flight, 1);
        route_lookup(srv, c, method, url);
        const char *cl =
            MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > srv->cfg.max_body) {
                too_large(c); /* answer now; MHD closes the connection after it */
                return send_response(c);
            }
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (c->state == CS_BODY) append_body(c, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->state == CS_WAIT) { /* resumed after a deferred job */
        unmark_suspended(c);
        c->state = CS_ANSWER;
    }
    if (c->state == CS_BODY) {
        if (c->too_large) {
            too_large(c);
        } else if (atomic_load(&srv->stopping)) {
            metrics_counter_inc(srv->c_shutting_down);
            http_resp_error(&c->resp, 503, "shutting_down", "the server is shutting down");
        } else if (c->early_status == 404) {
            http_resp_error(&c->resp, 404, "not_found", "no route for %s", url);
        } else if (c->early_status == 405) {
            http_resp_error(&c->resp, 405, "method_not_allowed",
                            "%s is not allowed on %s (allowed: %s)", method, url, c->allow);
        } else {
            c->req.body = c->body ? c->body : "";
            c->req.body_len = c->len;
            c->in_handler = true;
            c->route->fn(&c->req, &c->resp, c->route->ctx);
            c->in_handler = false;
            if (c->state == CS_WAIT) return MHD_YES; /* deferred; a worker resumes us */
        }
        c->state = CS_ANSWER;
    }
    if (c->state == CS_ANSWER) return send_response(c);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_conn *c = *con_cls;
    (void)mc;
    (void)toe;
    if (!c) return;
    unmark_suspended(c);
    metrics_gauge_add(srv->g_in_flight, -1);
    resp_free(&c->resp);
    free(c->body);
    free(c);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    struct http_server *srv = cls;
    (void)mc;
    (void)socket_context;
    metrics_gauge_add(srv->g_conns, toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http", "libmicrohttpd: %s", msg);
}

int http_server_start(struct http_server *srv, struct err *err)
{
    if (!srv || srv->started) return err_set(err, ERR_INVALID, "server already started");
    int rc = bind_listen(srv, err);
    if (rc) return rc;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_AUTO;
    struct MHD_OptionItem pool[] = {
        {MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)srv->cfg.io_threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    srv->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)srv->listen_fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)srv->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)srv->cfg.conn_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_ARRAY, srv->cfg.io_threads > 1 ? pool : pool + 1, MHD_OPTION_END);
    if (!srv->d) {
        close(srv->listen_fd);
        srv->listen_fd = -1;
        srv->port = -1;
        return err_set(err, ERR_IO, "libmicrohttpd could not start on %s:%d (see the log above)",
                       srv->host, srv->cfg.port);
    }
    srv->started = true;
    log_info("http", "serving on %s:%d (%d I/O threads, %d workers, queue %d, body limit %zu)",
             srv->host, srv->port, srv->cfg.io_threads, srv->cfg.workers > 0 ? srv->cfg.workers : 0,
             srv->cfg.queue_capacity, srv->cfg.max_body);
    return 0;
}

int http_server_port(const struct http_server *srv)
{
    return srv && srv->started ? srv->port : -1;
}

struct metrics *http_server_metrics(struct http_server *srv)
{
    return srv ? srv->metrics : NULL;
}

/* ---- deferred jobs ---- */

static void run_job(void *arg, int worker)
{
    struct http_conn *c = arg;
    c->job(&c->req, &c->resp, c->job_arg, worker);
    /* the last touch of c: once resumed, an I/O thread sends the answer and may free c */
    MHD_resume_connection(c->mc);
}

int http_defer(const struct http_req *req, http_job_fn fn, void *arg)
{
    if (!req || !req->conn || !fn) return ERR_INVALID;
    struct http_conn *c = req->conn;
    struct http_server *srv = c->srv;
    if (!c->in_handler || c->state != CS_BODY) return ERR_INVALID;
    c->job = fn;
    c->job_arg = arg;
    c->state = CS_WAIT;
    atomic_store(&c->suspended, true);
    atomic_fetch_add(&srv->n_suspended, 1);
    /* Suspend before submitting: a fast job must not resume a connection that is not yet
     * suspended. */
    MHD_suspend_connection(c->mc);
    pthread_mutex_lock(&srv->defer_mu);
    int rc = srv->jobq ? jobq_submit(srv->jobq, run_job, c) : ERR_UNSUPPORTED;
    pthread_mutex_unlock(&srv->defer_mu);
    if (rc == 0) return 0;
    c->job = NULL;
    c->job_arg = NULL;
    if (rc == ERR_BUSY) {
        metrics_counter_inc(srv->c_queue_full);
        http_resp_error(&c->resp, 503, "overloaded",
                        "all %d workers are busy and %d requests are waiting; retry in %d s",
                        srv->cfg.workers, srv->cfg.queue_capacity, srv->cfg.retry_after_s);
    } else {
        rc = ERR_UNSUPPORTED;
        http_resp_error(&c->resp, 503, "unavailable", "the server is not accepting work now");
    }
    /* The next access call (after the resume) sends the 503. */
    MHD_resume_connection(c->mc);
    return rc;
}

/* ---- server-sent events ---- */

static void sse_destroy(struct http_sse *s)
{
    pthread_mutex_destroy(&s->mu);
    free(s->buf);
    free(s);
}

struct http_sse *http_sse_start(const struct http_req *req, struct http_resp *resp,
                                size_t max_pending, http_sse_close_fn on_close, void *ctx)
{
    if (!req || !req->conn || !resp || resp->sse) return NULL;
    struct http_conn *c = req->conn;
    struct http_server *srv = c->srv;
    struct http_sse *s = calloc(1, sizeof *s);
    if (!s || http_resp_header(resp, "Cache-Control", "no-cache") ||
        http_resp_header(resp, "X-Accel-Buffering", "no")) {
        free(s);
        http_resp_error(resp, 500, "internal", "out of memory starting an event stream");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->srv = srv;
    s->mc = c->mc;
    s->max = max_pending ? max_pending : (size_t)1 << 20;
    s->on_close = on_close;
    s->ctx = ctx;
    pthread_mutex_lock(&srv->sse_mu);
    s->next = srv->sse_head;
    if (srv->sse_head) srv->sse_head->prev = s;
    srv->sse_head = s;
    s->stop = atomic_load(&srv->stopping);
    pthread_mutex_unlock(&srv->sse_mu);
    resp_clear_body(resp);
    resp->status = 200;
    set_ctype(resp, "text/event-stream; charset=utf-8");
    resp->sse = s;
    return s;
}

/* MHD's content reader: hands out what the producer queued; with nothing queued, suspends
 * the connection (returning 0 without suspending would make MHD spin) until the producer's
 * next event or end resumes it. */
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct http_sse *s = cls;
    (void)pos;
    pthread_mutex_lock(&s->mu);
    if (s->counted) {
        s->counted = false;
        atomic_fetch_sub(&s->srv->n_suspended, 1);
    }
    if (s->len > s->off) {
        size_t n = s->len - s->off;
        if (n > max) n = max;
        memcpy(buf, s->buf + s->off, n);
        s->off += n;
        if (s->off == s->len) s->off = s->len = 0;
        pthread_mutex_unlock(&s->mu);
        return (ssize_t)n;
    }
    if (s->ended || s->stop) {
        pthread_mutex_unlock(&s->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    s->suspended = true;
    s->counted = true;
    atomic_fetch_add(&s->srv->n_suspended, 1);
    pthread_mutex_unlock(&s->mu);
    /* Outside our lock (no MHD call is made under it). A producer that resumes between the
     * unlock and this call is fine: MHD then cancels this suspension and calls us again. */
    MHD_suspend_connection(s->mc);
    return 0;
}

/* MHD dropped the response (stream finished, client gone, or server stopped), or the
 * response was never handed to MHD. Tells the producer if it has not ended, and frees the
 * stream when the producer has already let go. */
static void sse_mhd_release(void *cls)
{
    struct http_sse *s = cls;
    struct http_server *srv = s->srv;
    pthread_mutex_lock(&srv->sse_mu);
    if (s->prev)
        s->prev->next = s->next;
    else if (srv->sse_head == s)
        srv->sse_head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    pthread_mutex_unlock(&srv->sse_mu);

    pthread_mutex_lock(&s->mu);
    if (s->counted) {
        s->counted = false;
        atomic_fetch_sub(&srv->n_suspended, 1);
    }
    s->mhd_done = true;
    s->suspended = false;
    bool free_now = s->ended;
    if (!s->ended && s->on_close) s->on_close(s->ctx); /* under the lock: see http.h */
    pthread_mutex_unlock(&s->mu);
    if (free_now) sse_destroy(s);
}

static int sse_append(struct http_sse *s, const char *p, size_t n)
{
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->len + n)
            cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) return ERR_NOMEM;
        s->buf = b;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
    return 0;
}

int http_sse_send(struct http_sse *s, const char *event, const char *data, size_t len)
{
    if (!s) return ERR_INVALID;
    if (!data) len = 0;
    /* size of the framed event: "event: E\n", one "data: L\n" per line, blank line */
    size_t need = 1 + (event ? strlen(event) + 8 : 0);
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        if (data[i] == '\n') lines++;
    need += len + lines * 7;
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    struct MHD_Connection *to_resume = NULL;
    if (s->mhd_done || s->stop) {
        rc = ERR_IO;
        goto out;
    }
    if (s->ended) {
        rc = ERR_INVALID;
        goto out;
    }
    if (s->len - s->off + need > s->max) {
        rc = ERR_NOMEM;
        goto out;
    }
    if (s->off) { /* compact before growing */
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    size_t before = s->len;
    if (event) {
        rc |= sse_append(s, "event: ", 7);
        rc |= sse_append(s, event, strlen(event));
        rc |= sse_append(s, "\n", 1);
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || data[i] == '\n') {
            size_t l = i - start;
            if (l && data[start + l - 1] == '\r') l--;
            rc |= sse_append(s, "data: ", 6);
            rc |= sse_append(s, data + start, l);
            rc |= sse_append(s, "\n", 1);
            start = i + 1;
        }
    }
    rc |= sse_append(s, "\n", 1);
    if (rc) {
        s->len = before;
        rc = ERR_NOMEM;
        goto out;
    }
    if (s->suspended) {
        s->suspended = false;
        to_resume = s->mc;
    }
out:
    pthread_mutex_unlock(&s->mu);
    /* Safe outside the lock: only the thread that cleared `suspended` resumes, and a
     * suspended connection cannot be closed under us. */
    if (to_resume) MHD_resume_connection(to_resume);
    return rc;
}

bool http_sse_gone(struct http_sse *s)
{
    if (!s) return true;
    pthread_mutex_lock(&s->mu);
    bool gone = s->mhd_done || s->stop;
    pthread_mutex_unlock(&s->mu);
    return gone;
}

void http_sse_end(struct http_sse *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->ended = true;
    struct MHD_Connection *to_resume = NULL;
    if (s->suspended) {
        s->suspended = false;
        to_resume = s->mc;
    }
    bool free_now = s->mhd_done;
    pthread_mutex_unlock(&s->mu);
    if (free_now) {
        sse_destroy(s);
        return;
    }
    if (to_resume) MHD_resume_connection(to_resume);
}

/* ---- stop ---- */

/* Marks every live stream as stopping and resumes the suspended ones (one at a time, so no
 * MHD call is made under our locks). */
static void stop_streams(struct http_server *srv)
{
    for (;;) {
        struct MHD_Connection *to_resume = NULL;
        pthread_mutex_lock(&srv->sse_mu);
        for (struct http_sse *s = srv->sse_head; s && !to_resume; s = s->next) {
            pthread_mutex_lock(&s->mu);
            s->stop = true;
            if (s->suspended) {
                s->suspended = false;
                to_resume = s->mc;
            }
            pthread_mutex_unlock(&s->mu);
        }
        pthread_mutex_unlock(&srv->sse_mu);
        if (!to_resume) return;
        MHD_resume_connection(to_resume);
    }
}

void http_server_stop(struct http_server *srv)
{
    if (!srv || !srv->started || srv->stopped) return;
    srv->stopped = true;
    atomic_store(&srv->stopping, true);
    /* MHD gives the listening socket back, but its threads may still be taking it out of
     * their epoll sets: close it only after MHD_stop_daemon. */
    MHD_socket lfd = MHD_quiesce_daemon(srv->d);
    srv->listen_fd = lfd != MHD_INVALID_SOCKET ? (int)lfd : -1;
    stop_streams(srv);
    /* Finish what is queued: every job resumes its connection. */
    pthread_mutex_lock(&srv->defer_mu);
    struct jobq *q = srv->jobq;
    srv->jobq = NULL;
    pthread_mutex_unlock(&srv->defer_mu);
    jobq_free(q);
    /* MHD must not be stopped with suspended connections: wait until every resumed one has
     * been picked up by its I/O thread (bounded: 10 s). */
    for (int i = 0; i < 2000 && atomic_load(&srv->n_suspended) > 0; i++) {
        stop_streams(srv); /* a stream may have suspended again meanwhile */
        struct timespec ts = {0, 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int left = atomic_load(&srv->n_suspended);
    if (left > 0)
        log_error("http", "%d connections still suspended after 10 s; stopping anyway", left);
    MHD_stop_daemon(srv->d);
    srv->d = NULL;
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    srv->listen_fd = -1;
    log_info("http", "stopped %s:%d", srv->host, srv->port);
}

void http_server_free(struct http_server *srv)
{
    if (!srv) return;
    http_server_stop(srv);
    if (srv->listen_fd >= 0) close(srv->listen_fd);
    pthread_mutex_lock(&srv->defer_mu);
    struct jobq *q = srv->jobq;
    srv->jobq = NULL;
    pthread_mutex_unlock(&srv->defer_mu);
    jobq_free(q);
    for (int i = 0; i < srv->n_routes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].path);
    }
    free(srv->routes);
    for (int i = 0; i < srv->n_stats; i++)
        free(srv->stats[i].label);
    free(srv->stats);
    if (srv->own_metrics)
        metrics_free(srv->metrics);
    else if (srv->cfg.workers > 0) /* the registry outlives us: detach the depth sampler */
        metrics_gauge_fn(srv->metrics, "http_job_queue_depth", "Jobs waiting for a worker.", NULL,
                         zero_gauge, NULL);
    pthread_mutex_destroy(&srv->defer_mu);
    pthread_mutex_destroy(&srv->sse_mu);
    free(srv);
}
