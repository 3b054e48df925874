/* Tests for serve/http: an in-process server on an ephemeral loopback port driven by the raw
 * socket client in tests/http_client.c. */
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "prom_parse.h"
#include "serve/http.h"
#include "serve/json.h"

#define HOST "127.0.0.1"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- handlers ---- */

static void h_hello(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    const char *name = http_req_query(req, "name");
    const char *ua = http_req_header(req, "x-test");
    char body[256];
    int n = snprintf(body, sizeof body, "hello %s %s", name ? name : "-", ua ? ua : "-");
    http_resp_set(resp, 200, "text/plain", body, (size_t)n);
    http_resp_header(resp, "X-Extra", "yes");
}

static void h_post(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    char body[64];
    int n = snprintf(body, sizeof body, "got %zu bytes", req->body_len);
    http_resp_set(resp, 201, "text/plain", body, (size_t)n);
}

static void h_json(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    struct err e;
    struct jv *v = jv_parse(req->body, req->body_len, NULL, &e);
    if (!v) {
        http_resp_error(resp, 400, "invalid_json", "%s", e.msg);
        return;
    }
    jv_free(v);
    http_resp_set(resp, 200, "application/json", "{\"ok\":true}", 11);
}

static void h_prefix(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    http_resp_set(resp, 200, "text/plain", req->path, strlen(req->path));
}

/* ?big=1 makes the writer overflow its 64-byte bound: the answer must be a 500, not a cut. */
static void h_jw(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    struct jw w;
    jw_init(&w, 64);
    jw_obj_begin(&w);
    jw_key(&w, "msg");
    jw_str(&w, http_req_query(req, "big")
                   ? "0123456789012345678901234567890123456789012345678901234567890123456789"
                   : "hi");
    jw_obj_end(&w);
    http_resp_json(resp, 200, &w);
    assert_null(w.buf); /* taken or freed */
}

static void h_silent(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    (void)resp;
    (void)ctx;
}

/* A gate that deferred jobs wait on, so a test controls when they finish. */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int started, finished;
    int delay_ms;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true, 0, 0, 0};

static void gate_reset(bool open, int delay_ms)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = open;
    gate.started = gate.finished = 0;
    gate.delay_ms = delay_ms;
    pthread_mutex_unlock(&gate.mu);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mu);
    gate.open = true;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

static int gate_started(void)
{
    pthread_mutex_lock(&gate.mu);
    int n = gate.started;
    pthread_mutex_unlock(&gate.mu);
    return n;
}

static void slow_job(const struct http_req *req, struct http_resp *resp, void *arg, int worker)
{
    (void)arg;
    pthread_mutex_lock(&gate.mu);
    gate.started++;
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    int d = gate.delay_ms;
    pthread_mutex_unlock(&gate.mu);
    if (d) sleep_ms(d);
    char body[128];
    int n =
        snprintf(body, sizeof body, "job done on worker %d for %zu bytes", worker, req->body_len);
    http_resp_set(resp, 200, "text/plain", body, (size_t)n);
    pthread_mutex_lock(&gate.mu);
    gate.finished++;
    pthread_mutex_unlock(&gate.mu);
}

static void h_slow(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)resp;
    (void)ctx;
    http_defer(req, slow_job, NULL); /* on failure resp already holds the 503 */
}

/* SSE: a producer thread pushes `count` events every `every_ms`, until the client leaves. */
struct stream_ctx {
    struct http_sse *s;
    int count, every_ms;
    _Atomic int sent;
    _Atomic bool on_close_called;
    _Atomic bool saw_error;
    _Atomic bool done;
};

static struct stream_ctx g_stream;

static void stream_closed(void *ctx)
{
    struct stream_ctx *sc = ctx;
    atomic_store(&sc->on_close_called, true);
}

static void *producer(void *arg)
{
    struct stream_ctx *sc = arg;
    for (int i = 0; i < sc->count; i++) {
        char data[64];
        int n = snprintf(data, sizeof data, "n=%d\nsecond line", i);
        if (http_sse_send(sc->s, "tick", data, (size_t)n) != 0) {
            atomic_store(&sc->saw_error, true);
            break;
        }
        atomic_fetch_add(&sc->sent, 1);
        if (sc->every_ms) sleep_ms(sc->every_ms);
    }
    http_sse_end(sc->s);
    atomic_store(&sc->done, true);
    return NULL;
}

static void h_events(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct stream_ctx *sc = ctx;
    sc->s = http_sse_start(req, resp, 0, stream_closed, sc);
    if (!sc->s) return;
    pthread_t t;
    pthread_create(&t, NULL, producer, sc);
    pthread_detach(t);
}

/* Many streams at once: each request gets its own context, freed by its producer after
 * http_sse_end (on_close cannot run after that). */
struct many_ctx {
    struct http_sse *s;
    int count;
};

static void *many_producer(void *arg)
{
    struct many_ctx *mc = arg;
    for (int i = 0; i < mc->count; i++) {
        char data[64];
        int n = snprintf(data, sizeof data, "n=%d\nsecond line", i);
        if (http_sse_send(mc->s, "tick", data, (size_t)n) != 0) break;
        if (i % 4 == 0) sleep_ms(1);
    }
    http_sse_end(mc->s);
    free(mc);
    return NULL;
}

static void many_closed(void *ctx)
{
    (void)ctx; /* the producer notices through http_sse_send */
}

static void h_events_many(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)ctx;
    struct many_ctx *mc = calloc(1, sizeof *mc);
    const char *n = http_req_query(req, "n");
    mc->count = n ? atoi(n) : 10;
    mc->s = http_sse_start(req, resp, 0, many_closed, mc);
    if (!mc->s) {
        free(mc);
        return;
    }
    pthread_t t;
    pthread_create(&t, NULL, many_producer, mc);
    pthread_detach(t);
}

/* ---- server fixture ---- */

struct fixture {
    struct http_server *srv;
    int port;
};

static struct http_server *start_server(int workers, int queue, size_t max_body, int *port)
{
    struct err e;
    struct http_cfg cfg = {.host = HOST,
                           .port = 0,
                           .io_threads = 2,
                           .workers = workers,
                           .queue_capacity = queue,
                           .max_body = max_body};
    struct http_server *srv = http_server_new(&cfg, &e);
    assert_non_null(srv);
    assert_int_equal(http_route(srv, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(http_route(srv, "POST", "/hello", h_post, NULL), 0);
    assert_int_equal(http_route(srv, "POST", "/json", h_json, NULL), 0);
    assert_int_equal(http_route(srv, "POST", "/slow", h_slow, NULL), 0);
    assert_int_equal(http_route(srv, "GET", "/files/*", h_prefix, NULL), 0);
    assert_int_equal(http_route(srv, "GET", "/silent", h_silent, NULL), 0);
    assert_int_equal(http_route(srv, "GET", "/jw", h_jw, NULL), 0);
    assert_int_equal(http_route(srv, "GET", "/many", h_events_many, NULL), 0);
    assert_int_equal(http_route(srv, "GET", "/events", h_events, &g_stream), 0);
    assert_int_equal(
        http_route(srv, "GET", "/metrics", http_handle_metrics, http_server_metrics(srv)), 0);
    assert_int_equal(http_server_port(srv), -1);
    int rc = http_server_start(srv, &e);
    if (rc) print_message("start failed: %s\n", e.msg);
    assert_int_equal(rc, 0);
    *port = http_server_port(srv);
    assert_true(*port > 0 && *port < 65536);
    return srv;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->srv = start_server(2, 8, 1024, &f->port);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    http_server_free(f->srv);
    free(f);
    return 0;
}

/* ---- tests ---- */

static void test_routes(void **state)
{
    struct fixture *f = *state;
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    assert_non_null(c);
    struct hc_resp r;
    char v[128];
    assert_int_equal(hc_request(c, "GET", "/hello?name=ann%20b", "X-Test: t1\r\n", NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "hello ann b t1");
    assert_string_equal(hc_header(&r, "X-Extra", v, sizeof v), "yes");
    assert_string_equal(hc_header(&r, "Content-Type", v, sizeof v), "text/plain");
    hc_resp_free(&r);

    assert_int_equal(hc_request(c, "POST", "/hello", NULL, "abc", 3, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "got 3 bytes");
    hc_resp_free(&r);

    /* HEAD is routed as GET, without a body */
    assert_int_equal(hc_request(c, "HEAD", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    hc_resp_free(&r);

    assert_int_equal(hc_request(c, "GET", "/nope", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    assert_non_null(strstr(r.body, "\"error\":\"not_found\""));
    assert_non_null(strstr(r.body, "/nope"));
    hc_resp_free(&r);

    assert_int_equal(hc_request(c, "DELETE", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(hc_header(&r, "Allow", v, sizeof v));
    assert_non_null(strstr(v, "GET"));
    assert_non_null(strstr(v, "POST"));
    hc_resp_free(&r);

    assert_int_equal(hc_request(c, "GET", "/files/a/b.txt", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "/files/a/b.txt");
    hc_resp_free(&r);

    /* a handler that forgets to answer gives a 500 naming the route, not a hang */
    assert_int_equal(hc_request(c, "GET", "/silent", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "/silent"));
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "GET", "/jw", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"msg\":\"hi\"}");
    assert_string_equal(hc_header(&r, "Content-Type", v, sizeof v), "application/json");
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "GET", "/jw?big=1", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 500);
    hc_resp_free(&r);
    /* all of that on one keep-alive connection */
    assert_false(hc_peer_closed(c, 50));
    hc_close(c);
}

static void test_body_limit(void **state)
{
    struct fixture *f = *state;
    /* declared length over the limit: 413 at once, then the server closes */
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    char *big = malloc(2000);
    memset(big, 'x', 2000);
    hc_send_request(c, "POST", "/hello", NULL, big, 2000);
    struct hc_resp r;
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_int_equal(hc_read_body(c, &r, false), 0);
    assert_non_null(strstr(r.body, "\"error\":\"body_too_large\""));
    assert_non_null(strstr(r.body, "1024"));
    hc_resp_free(&r);
    hc_close(c);

    /* chunked upload over the limit: read to the end, 413, and keep-alive survives */
    c = hc_connect(HOST, f->port, 5000);
    const char *head = "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    hc_send(c, head, strlen(head));
    for (int i = 0; i < 3; i++) {
        hc_send(c, "258\r\n", 5); /* 600 bytes */
        hc_send(c, big, 600);
        hc_send(c, "\r\n", 2);
    }
    hc_send(c, "0\r\n\r\n", 5);
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_int_equal(hc_read_body(c, &r, false), 0);
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    /* exactly at the limit is fine */
    assert_int_equal(hc_request(c, "POST", "/hello", NULL, big, 1024, &r), 0);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "got 1024 bytes");
    hc_resp_free(&r);
    hc_close(c);
    free(big);
}

static void test_malformed_json(void **state)
{
    struct fixture *f = *state;
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    struct hc_resp r;
    const char *bad = "{\"k\": 10,\n \"x\": [1, 2,}";
    assert_int_equal(hc_request(c, "POST", "/json", NULL, bad, strlen(bad), &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"error\":\"invalid_json\""));
    assert_non_null(strstr(r.body, "line 2"));
    assert_non_null(strstr(r.body, "column"));
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "POST", "/json", NULL, "{\"k\":1}", 7, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    hc_close(c);
}

static void test_keepalive_100(void **state)
{
    struct fixture *f = *state;
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    for (int i = 0; i < 100; i++) {
        struct hc_resp r;
        char path[64];
        snprintf(path, sizeof path, "/hello?name=%d", i);
        assert_int_equal(hc_request(c, "GET", path, NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        char want[64];
        snprintf(want, sizeof want, "hello %d -", i);
        assert_string_equal(r.body, want);
        hc_resp_free(&r);
    }
    assert_false(hc_peer_closed(c, 50));
    /* the same connection then serves /metrics, which counted all of them */
    struct hc_resp r;
    assert_int_equal(hc_request(c, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    struct prom_doc *doc = malloc(sizeof *doc);
    char err[256];
    bool ok = prom_parse(r.body, doc, err, sizeof err);
    if (!ok) print_message("%s\n", err);
    assert_true(ok);
    const struct prom_sample *s =
        prom_find(doc, "http_requests_total", "route=\"/hello\",code=\"2xx\"");
    assert_non_null(s);
    assert_true(s->value >= 100);
    s = prom_find(doc, "http_request_duration_seconds_count", "route=\"/hello\"");
    assert_non_null(s);
    assert_true(s->value >= 100);
    s = prom_find(doc, "http_connections_open", NULL); /* this connection at least */
    assert_true(s && s->value >= 1);
    s = prom_find(doc, "http_requests_in_flight", NULL); /* the /metrics request itself */
    assert_true(s && s->value >= 1);
    free(doc);
    hc_resp_free(&r);
    hc_close(c);
}

static void test_defer(void **state)
{
    struct fixture *f = *state;
    gate_reset(true, 20);
    struct hc_conn *c[4];
    for (int i = 0; i < 4; i++) {
        c[i] = hc_connect(HOST, f->port, 5000);
        assert_int_equal(hc_send_request(c[i], "POST", "/slow", NULL, "12345", 5), 0);
    }
    for (int i = 0; i < 4; i++) {
        struct hc_resp r;
        assert_int_equal(hc_read_head(c[i], &r), 0);
        assert_int_equal(hc_read_body(c[i], &r, false), 0);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "job done on worker "));
        assert_non_null(strstr(r.body, "for 5 bytes"));
        hc_resp_free(&r);
        /* the connection is still usable after a suspended request */
        assert_int_equal(hc_request(c[i], "GET", "/hello", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        hc_resp_free(&r);
        hc_close(c[i]);
    }
    /* many quick deferred requests on one connection (resume racing suspend) */
    gate_reset(true, 0);
    struct hc_conn *k = hc_connect(HOST, f->port, 5000);
    for (int i = 0; i < 200; i++) {
        struct hc_resp r;
        assert_int_equal(hc_request(k, "POST", "/slow", NULL, "", 0, &r), 0);
        assert_int_equal(r.status, 200);
        hc_resp_free(&r);
    }
    hc_close(k);
}

static void test_queue_full(void **state)
{
    (void)state;
    int port;
    struct http_server *srv = start_server(1, 1, 1024, &port);
    gate_reset(false, 0);
    struct hc_conn *a = hc_connect(HOST, port, 5000), *b = hc_connect(HOST, port, 5000),
                   *c = hc_connect(HOST, port, 5000);
    hc_send_request(a, "POST", "/slow", NULL, "", 0);
    for (int i = 0; i < 500 && gate_started() < 1; i++)
        sleep_ms(5);
    assert_int_equal(gate_started(), 1); /* A runs on the only worker */
    hc_send_request(b, "POST", "/slow", NULL, "", 0);
    sleep_ms(100); /* B waits in the queue (capacity 1) */
    struct hc_resp r;
    assert_int_equal(hc_request(c, "POST", "/slow", NULL, "", 0, &r), 0);
    assert_int_equal(r.status, 503);
    char v[32];
    assert_non_null(hc_header(&r, "Retry-After", v, sizeof v));
    assert_string_equal(v, "1");
    assert_non_null(strstr(r.body, "\"error\":\"overloaded\""));
    hc_resp_free(&r);
    /* C's connection stays usable */
    assert_int_equal(hc_request(c, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    gate_open();
    assert_int_equal(hc_read_head(a, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    assert_int_equal(hc_read_head(b, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    hc_close(a);
    hc_close(b);
    hc_close(c);
    /* the refusal was counted */
    char *text = metrics_render(http_server_metrics(srv), NULL);
    assert_non_null(strstr(text, "http_rejected_total{reason=\"queue_full\"} 1\n"));
    free(text);
    http_server_free(srv);
}

/* Reads SSE events from a chunked stream until the last chunk; returns the count and checks
 * that event i carries n=i. */
static int read_events(struct hc_conn *c, int stop_after)
{
    char *acc = calloc(1, 1);
    size_t alen = 0;
    int n_events = 0;
    for (;;) {
        char *d;
        size_t n;
        if (hc_read_chunk(c, &d, &n)) {
            free(acc);
            return -1;
        }
        if (n == 0) break;
        acc = realloc(acc, alen + n + 1);
        memcpy(acc + alen, d, n);
        alen += n;
        acc[alen] = '\0';
        free(d);
        char *e;
        while ((e = strstr(acc, "\n\n"))) {
            *e = '\0';
            char want[96];
            snprintf(want, sizeof want, "event: tick\ndata: n=%d\ndata: second line", n_events);
            assert_string_equal(acc, want);
            n_events++;
            size_t used = (size_t)(e + 2 - acc);
            memmove(acc, e + 2, alen - used + 1);
            alen -= used;
        }
        if (stop_after && n_events >= stop_after) break;
    }
    free(acc);
    return n_events;
}

static void test_sse(void **state)
{
    struct fixture *f = *state;
    memset(&g_stream, 0, sizeof g_stream);
    g_stream.count = 50;
    g_stream.every_ms = 1;
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    struct hc_resp r;
    assert_int_equal(hc_send_request(c, "GET", "/events", NULL, NULL, 0), 0);
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    char v[64];
    assert_non_null(hc_header(&r, "Content-Type", v, sizeof v));
    assert_non_null(strstr(v, "text/event-stream"));
    assert_true(r.chunked);
    hc_resp_free(&r);
    assert_int_equal(read_events(c, 0), 50);
    /* the stream ended cleanly: the connection serves the next request */
    assert_int_equal(hc_request(c, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    hc_close(c);
    for (int i = 0; i < 200 && !atomic_load(&g_stream.done); i++)
        sleep_ms(5);
    assert_true(atomic_load(&g_stream.done));
    assert_false(atomic_load(&g_stream.on_close_called));
    assert_false(atomic_load(&g_stream.saw_error));
}

static void test_sse_disconnect(void **state)
{
    struct fixture *f = *state;
    memset(&g_stream, 0, sizeof g_stream);
    g_stream.count = 100000;
    g_stream.every_ms = 5;
    struct hc_conn *c = hc_connect(HOST, f->port, 5000);
    struct hc_resp r;
    assert_int_equal(hc_send_request(c, "GET", "/events", NULL, NULL, 0), 0);
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    assert_true(read_events(c, 3) >= 3);
    hc_close(c); /* the client goes away mid-stream */
    for (int i = 0; i < 600 && !atomic_load(&g_stream.done); i++)
        sleep_ms(5);
    assert_true(atomic_load(&g_stream.done));
    assert_true(atomic_load(&g_stream.saw_error));
    assert_true(atomic_load(&g_stream.on_close_called));
    assert_true(atomic_load(&g_stream.sent) < 1000);
}

static void test_sse_many(void **state)
{
    struct fixture *f = *state;
    enum { N = 32 };
    struct hc_conn *c[N];
    for (int i = 0; i < N; i++) {
        c[i] = hc_connect(HOST, f->port, 10000);
        assert_non_null(c[i]);
        assert_int_equal(hc_send_request(c[i], "GET", "/many?n=40", NULL, NULL, 0), 0);
    }
    for (int i = 0; i < N; i++) {
        struct hc_resp r;
        assert_int_equal(hc_read_head(c[i], &r), 0);
        assert_int_equal(r.status, 200);
        hc_resp_free(&r);
        assert_int_equal(read_events(c[i], 0), 40); /* all, in order */
        hc_close(c[i]);
    }
}

/* Client threads hammer a deferred route over keep-alive connections while the queue is
 * small: every request gets either its answer or a clean 503, never a hang or a crash. */
struct hammer_arg {
    int port, n, ok, busy;
};

static void *hammer(void *p)
{
    struct hammer_arg *h = p;
    struct hc_conn *c = hc_connect(HOST, h->port, 10000);
    if (!c) return NULL;
    for (int i = 0; i < h->n; i++) {
        struct hc_resp r;
        if (hc_request(c, "POST", "/slow", NULL, "x", 1, &r)) break;
        if (r.status == 200) h->ok++;
        if (r.status == 503) h->busy++;
        hc_resp_free(&r);
    }
    hc_close(c);
    return NULL;
}

static void test_defer_stress(void **state)
{
    (void)state;
    int port;
    struct http_server *srv = start_server(2, 2, 1024, &port);
    gate_reset(true, 0);
    enum { T = 8 };
    pthread_t t[T];
    struct hammer_arg a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (struct hammer_arg){port, 150, 0, 0};
        pthread_create(&t[i], NULL, hammer, &a[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
        busy += a[i].busy;
    }
    assert_int_equal(ok + busy, T * 150);
    assert_true(ok > 0);
    char *text = metrics_render(http_server_metrics(srv), NULL);
    char want[96];
    snprintf(want, sizeof want, "http_rejected_total{reason=\"queue_full\"} %d\n", busy);
    assert_non_null(strstr(text, want));
    free(text);
    http_server_free(srv);
}

/* Stop while a deferred job runs and an event stream is open: the job's client still gets
 * its answer, the stream ends, the producer is told. */
static void *stop_thread(void *srv)
{
    http_server_stop(srv);
    return NULL;
}

static void test_graceful_stop(void **state)
{
    (void)state;
    int port;
    struct http_server *srv = start_server(1, 4, 1024, &port);
    gate_reset(true, 500);
    memset(&g_stream, 0, sizeof g_stream);
    g_stream.count = 100000;
    g_stream.every_ms = 20;
    struct hc_conn *a = hc_connect(HOST, port, 5000), *s = hc_connect(HOST, port, 5000);
    struct hc_resp r;
    hc_send_request(s, "GET", "/events", NULL, NULL, 0);
    assert_int_equal(hc_read_head(s, &r), 0);
    hc_resp_free(&r);
    hc_send_request(a, "POST", "/slow", NULL, "", 0);
    for (int i = 0; i < 500 && gate_started() < 1; i++)
        sleep_ms(5);
    assert_int_equal(gate_started(), 1);
    struct hc_conn *k = hc_connect(HOST, port, 5000); /* an open keep-alive connection */
    assert_int_equal(hc_request(k, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    pthread_t stopper; /* the stop blocks until the job is done: run it beside the test */
    pthread_create(&stopper, NULL, stop_thread, srv);
    sleep_ms(60);
    /* a new request during the stop is refused, and the connection is closed */
    assert_int_equal(hc_request(k, "GET", "/hello", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "shutting_down"));
    assert_true(hc_peer_closed(k, 2000));
    hc_resp_free(&r);
    hc_close(k);
    pthread_join(stopper, NULL);
    assert_int_equal(hc_read_head(a, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(hc_read_body(a, &r, false), 0);
    assert_non_null(strstr(r.body, "job done"));
    hc_resp_free(&r);
    assert_true(read_events(s, 0) >= 1); /* the stream ended with its last chunk */
    for (int i = 0; i < 400 && !atomic_load(&g_stream.done); i++)
        sleep_ms(5);
    assert_true(atomic_load(&g_stream.done));
    assert_true(atomic_load(&g_stream.on_close_called));
    /* nothing listens any more */
    assert_null(hc_connect(HOST, port, 500));
    hc_close(a);
    hc_close(s);
    http_server_stop(srv); /* twice is fine */
    http_server_free(srv);
}

static void test_bind_errors(void **state)
{
    struct fixture *f = *state;
    struct err e;
    struct http_cfg cfg = {.host = HOST, .port = f->port, .workers = -1};
    struct http_server *srv = http_server_new(&cfg, &e);
    assert_non_null(srv);
    assert_int_not_equal(http_server_start(srv, &e), 0);
    assert_non_null(strstr(e.msg, "in use"));
    http_server_free(srv);
    cfg.port = 70000;
    assert_null(http_server_new(&cfg, &e));
    assert_non_null(strstr(e.msg, "70000"));
    cfg.port = 0;
    cfg.host = "no.such.host.invalid";
    srv = http_server_new(&cfg, &e);
    assert_non_null(srv);
    assert_int_not_equal(http_server_start(srv, &e), 0);
    assert_non_null(strstr(e.msg, "no.such.host.invalid"));
    http_server_free(srv);
    /* a server without workers refuses to defer with a 503 */
    int port;
    cfg.host = HOST;
    srv = http_server_new(&cfg, &e);
    assert_int_equal(http_route(srv, "POST", "/slow", h_slow, NULL), 0);
    assert_int_equal(http_server_start(srv, &e), 0);
    port = http_server_port(srv);
    struct hc_resp r;
    assert_int_equal(hc_fetch(HOST, port, "POST", "/slow", "", &r), 0);
    assert_int_equal(r.status, 503);
    hc_resp_free(&r);
    http_server_free(srv);
}

static bool readable(struct hc_conn *c, int ms)
{
    struct pollfd p = {c->fd, POLLIN, 0};
    return poll(&p, 1, ms) > 0;
}

/* At max_connections MHD stops accepting (a new client waits in the backlog); idle
 * connections are closed after conn_timeout_s, which frees the slots. */
static void test_conn_limits(void **state)
{
    (void)state;
    struct err e;
    struct http_cfg cfg = {
        .host = HOST, .workers = -1, .io_threads = 1, .max_connections = 2, .conn_timeout_s = 1};
    struct http_server *srv = http_server_new(&cfg, &e);
    assert_non_null(srv);
    assert_int_equal(http_route(srv, "GET", "/hello", h_hello, NULL), 0);
    assert_int_equal(http_server_start(srv, &e), 0);
    int port = http_server_port(srv);
    struct hc_conn *a = hc_connect(HOST, port, 5000), *b = hc_connect(HOST, port, 5000);
    struct hc_resp r;
    assert_int_equal(hc_request(a, "GET", "/hello", NULL, NULL, 0, &r), 0);
    hc_resp_free(&r);
    assert_int_equal(hc_request(b, "GET", "/hello", NULL, NULL, 0, &r), 0);
    hc_resp_free(&r);
    double t0 = now_ms();
    struct hc_conn *c = hc_connect(HOST, port, 5000); /* the kernel queues it */
    assert_non_null(c);
    assert_int_equal(hc_send_request(c, "GET", "/hello", NULL, NULL, 0), 0);
    assert_false(readable(c, 300)); /* not served while both slots are taken */
    /* a and b idle out after about a second; then c is served */
    assert_true(hc_peer_closed(a, 3000));
    assert_true(hc_peer_closed(b, 3000));
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(now_ms() - t0 >= 500);
    hc_resp_free(&r);
    hc_close(a);
    hc_close(b);
    hc_close(c);
    http_server_free(srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_100, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defer, setup, teardown),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test_setup_teardown(test_sse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sse_many, setup, teardown),
        cmocka_unit_test(test_defer_stress),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test_setup_teardown(test_bind_errors, setup, teardown),
        cmocka_unit_test(test_conn_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
