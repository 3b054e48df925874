/* The scaffold both services share: options, standard routes, static pages, readiness,
 * the listening line, signals. */
#include "serve/service.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/log.h"

#define MAX_CHECKS 16
#define MAX_STATIC_BYTES ((size_t)8 << 20)

struct check {
    service_ready_fn fn;
    void *ctx;
};

struct service {
    struct service_cfg cfg;
    char name[64];
    char host[256];
    char web_dir[PATH_MAX];
    struct metrics *metrics;
    struct http_server *http;
    struct check checks[MAX_CHECKS];
    int n_checks;
    service_info_fn info_fn; /* extra members of /readyz's object, or NULL */
    void *info_ctx;
};

void service_set_ready_info(struct service *svc, service_info_fn fn, void *ctx)
{
    svc->info_fn = fn;
    svc->info_ctx = ctx;
}

bool service_parse_opt(struct service_cfg *cfg, int argc, char **argv, int *i, bool *bad)
{
    long v;
    if (cli_opt_str(argc, argv, i, "--host", &cfg->host, bad)) return true;
    if (cli_opt_str(argc, argv, i, "--web", &cfg->web_dir, bad)) return true;
    if (cli_opt_int(argc, argv, i, "--port", 0, 65535, &v, bad)) {
        cfg->port = (int)v;
        return true;
    }
    if (cli_opt_int(argc, argv, i, "--threads", 1, 64, &v, bad)) {
        cfg->io_threads = (int)v;
        return true;
    }
    if (cli_opt_int(argc, argv, i, "--workers", 1, 256, &v, bad)) {
        cfg->workers = (int)v;
        return true;
    }
    if (cli_opt_int(argc, argv, i, "--queue", 1, 1 << 20, &v, bad)) {
        cfg->queue_capacity = (int)v;
        return true;
    }
    if (cli_opt_int(argc, argv, i, "--max-body", 1, 1L << 30, &v, bad)) {
        cfg->max_body = (size_t)v;
        return true;
    }
    return false;
}

/* SIGINT/SIGTERM also reach a self-pipe through a handler: threads that libraries start
 * before main (OpenBLAS's pool) do not have them blocked, so the kernel may deliver the
 * signal there; with only sigwait in the main thread, the default action would then end the
 * process without a graceful stop. The handler writes the signal number; service_wait reads
 * it. Our own threads inherit the blocked mask and never run the handler. */
static int stop_pipe[2] = {-1, -1};

static void on_stop(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(stop_pipe[1], &b, 1);
    (void)r;
    errno = saved;
}

void service_block_signals(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (stop_pipe[0] < 0 && pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
    }
}

/* ---- standard routes ---- */

static void h_healthz(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    static const char body[] = "{\"status\":\"ok\"}";
    http_resp_set(resp, 200, "application/json", body, sizeof body - 1);
}

int service_write_missing(struct service *svc, struct jw *w)
{
    int n = 0;
    jw_arr_begin(w);
    for (int i = 0; i < svc->n_checks; i++) {
        char why[512] = "";
        if (svc->checks[i].fn(svc->checks[i].ctx, why, sizeof why)) continue;
        jw_str(w, why[0] ? why : "a readiness check failed without saying why");
        n++;
    }
    jw_arr_end(w);
    return n;
}

bool service_ready(struct service *svc)
{
    for (int i = 0; i < svc->n_checks; i++) {
        char why[512];
        if (!svc->checks[i].fn(svc->checks[i].ctx, why, sizeof why)) return false;
    }
    return true;
}

static void h_readyz(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct service *svc = ctx;
    (void)req;
    struct jw missing, w;
    jw_init(&missing, 32 * 1024);
    int n = service_write_missing(svc, &missing);
    jw_init(&w, 64 * 1024);
    jw_obj_begin(&w);
    jw_key(&w, "ready");
    jw_bool(&w, n == 0);
    jw_key(&w, "missing");
    if (missing.overflow || !missing.buf)
        jw_str(&w, "(too long to list)");
    else
        jw_raw(&w, missing.buf, missing.len);
    if (svc->info_fn)
        svc->info_fn(svc->info_ctx, &w);
    jw_obj_end(&w);
    jw_free(&missing);
    http_resp_json(resp, n == 0 ? 200 : 503, &w);
}

void service_not_ready(struct service *svc, struct http_resp *resp)
{
    struct jw w;
    jw_init(&w, 64 * 1024);
    jw_obj_begin(&w);
    jw_key(&w, "error");
    jw_str(&w, "not_ready");
    jw_key(&w, "message");
    jw_str(&w, "the service is not ready to answer this request; see missing (and GET /readyz)");
    jw_key(&w, "missing");
    service_write_missing(svc, &w);
    jw_obj_end(&w);
    http_resp_json(resp, 503, &w);
}

static const char *content_type_of(const char *path)
{
    static const char *map[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".map", "application/json"},
    };
    const char *dot = strrchr(path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (strcmp(dot, map[i][0]) == 0) return map[i][1];
    return "application/octet-stream";
}

/* A relative path is accepted only if every segment is a plain name: letters, digits, '-',
 * '_', '.', not starting with '.' (so no "..", no hidden files), no empty segments. */
static bool safe_rel_path(const char *rel)
{
    if (!*rel || strlen(rel) > 512) return false;
    bool seg_start = true;
    for (const char *p = rel; *p; p++) {
        char c = *p;
        if (c == '/') {
            if (seg_start) return false; /* empty segment or leading slash */
            seg_start = true;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && !seg_start);
        if (!ok) return false;
        seg_start = false;
    }
    return !seg_start;
}

/* Serves web_dir/rel after checking that the resolved file is still inside web_dir (a
 * symlink must not lead out) and is a regular file of bounded size. */
static void serve_file(struct service *svc, const char *rel, struct http_resp *resp)
{
    if (!safe_rel_path(rel)) {
        http_resp_error(resp, 404, "not_found", "no such file");
        return;
    }
    char path[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", svc->web_dir, rel) >= (int)sizeof path) {
        http_resp_error(resp, 404, "not_found", "no such file");
        return;
    }
    if (!realpath(svc->web_dir, root)) {
        http_resp_error(resp, 404, "not_found",
                        "the page folder %s does not exist (start with --web DIR)", svc->web_dir);
        return;
    }
    size_t rl = strlen(root);
    if (!realpath(path, real) || strncmp(real, root, rl) != 0 || real[rl] != '/') {
        http_resp_error(resp, 404, "not_found", "no such file: %s", rel);
        return;
    }
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        (size_t)st.st_size > MAX_STATIC_BYTES) {
        if (fd >= 0) close(fd);
        http_resp_error(resp, 404, "not_found", "no such file: %s", rel);
        return;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    size_t got = 0;
    while (buf && got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got != n) {
        free(buf);
        http_resp_error(resp, 500, "internal", "could not read %s", rel);
        return;
    }
    http_resp_take(resp, 200, content_type_of(real), buf, n);
    http_resp_header(resp, "X-Content-Type-Options", "nosniff");
    http_resp_header(resp, "Cache-Control", "no-cache");
}

static void h_index(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    (void)req;
    serve_file(ctx, "index.html", resp);
}

static void h_static(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    serve_file(ctx, req->path + strlen("/static/"), resp);
}

/* ---- lifecycle ---- */

struct service *service_new(const struct service_cfg *cfg, struct err *err)
{
    struct service *svc = calloc(1, sizeof *svc);
    if (!svc) return err_set(err, ERR_NOMEM, "out of memory"), NULL;
    svc->cfg = *cfg;
    snprintf(svc->name, sizeof svc->name, "%s", cfg->name ? cfg->name : "service");
    snprintf(svc->host, sizeof svc->host, "%s", cfg->host ? cfg->host : "127.0.0.1");
    if (cfg->web_dir)
        snprintf(svc->web_dir, sizeof svc->web_dir, "%s", cfg->web_dir);
    else
        snprintf(svc->web_dir, sizeof svc->web_dir, "web/%s", svc->name);
    svc->metrics = metrics_new();
    if (!svc->metrics) {
        free(svc);
        return err_set(err, ERR_NOMEM, "out of memory"), NULL;
    }
    struct http_cfg hc = {
        .host = svc->host,
        .port = cfg->port,
        .io_threads = cfg->io_threads,
        .workers = cfg->workers,
        .queue_capacity = cfg->queue_capacity,
        .max_body = cfg->max_body,
        .metrics = svc->metrics,
    };
    svc->http = http_server_new(&hc, err);
    if (!svc->http) {
        metrics_free(svc->metrics);
        free(svc);
        return NULL;
    }
    int rc = 0;
    rc |= http_route(svc->http, "GET", "/healthz", h_healthz, svc);
    rc |= http_route(svc->http, "GET", "/readyz", h_readyz, svc);
    rc |= http_route(svc->http, "GET", "/metrics", http_handle_metrics, svc->metrics);
    rc |= http_route(svc->http, "GET", "/", h_index, svc);
    rc |= http_route(svc->http, "GET", "/static/*", h_static, svc);
    if (rc) {
        service_free(svc);
        return err_set(err, ERR_NOMEM, "out of memory adding routes"), NULL;
    }
    return svc;
}

void service_free(struct service *svc)
{
    if (!svc) return;
    http_server_free(svc->http);
    metrics_free(svc->metrics);
    free(svc);
}

int service_route(struct service *svc, const char *method, const char *path, http_handler_fn fn,
                  void *ctx)
{
    return http_route(svc->http, method, path, fn, ctx);
}

int service_add_check(struct service *svc, service_ready_fn fn, void *ctx)
{
    if (!fn || svc->n_checks == MAX_CHECKS) return ERR_INVALID;
    svc->checks[svc->n_checks++] = (struct check){fn, ctx};
    return 0;
}

struct metrics *service_metrics(struct service *svc)
{
    return svc->metrics;
}

int service_start(struct service *svc, struct err *err)
{
    int rc = http_server_start(svc->http, err);
    if (rc) return rc;
    struct stat st;
    char index[PATH_MAX + 16];
    snprintf(index, sizeof index, "%s/index.html", svc->web_dir);
    if (stat(index, &st) != 0)
        log_warn(svc->name, "no page at %s: GET / will answer 404 (use --web DIR)", index);
    bool v6 = strchr(svc->host, ':') != NULL;
    printf("%s listening on http://%s%s%s:%d/\n", svc->name, v6 ? "[" : "", svc->host,
           v6 ? "]" : "", http_server_port(svc->http));
    fflush(stdout);
    return 0;
}

int service_port(const struct service *svc)
{
    return http_server_port(svc->http);
}

/* Waits on the stop pipe with the signals unblocked in this thread only (a signal that was
 * already pending runs the handler as soon as they are). */
static int wait_stop_pipe(const sigset_t *set)
{
    pthread_sigmask(SIG_UNBLOCK, set, NULL);
    int sig = 0;
    for (;;) {
        struct pollfd p = {.fd = stop_pipe[0], .events = POLLIN};
        int n = poll(&p, 1, -1);
        if (n < 0 && errno != EINTR)
            break;
        unsigned char b;
        if (n != 0 && read(stop_pipe[0], &b, 1) == 1) {
            sig = b;
            break;
        }
    }
    pthread_sigmask(SIG_BLOCK, set, NULL);
    return sig ? sig : SIGTERM;
}

int service_wait(struct service *svc)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    if (stop_pipe[0] >= 0)
        sig = wait_stop_pipe(&set);
    else
        while (sigwait(&set, &sig) != 0) {
        }
    log_info(svc->name, "%s received, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    http_server_stop(svc->http);
    return sig;
}

/* ---- request bodies ---- */

struct jv *service_parse_body(const struct http_req *req, struct http_resp *resp)
{
    struct err e;
    struct jv_limits lim = {.max_bytes = 0, .max_depth = 32};
    if (req->body_len == 0) {
        http_resp_error(resp, 400, "invalid_json", "request body is empty: expected a JSON object");
        return NULL;
    }
    struct jv *root = jv_parse(req->body, req->body_len, &lim, &e);
    if (!root) {
        http_resp_error(resp, 400, "invalid_json", "%s", e.msg);
        return NULL;
    }
    struct jv_invalid inv;
    if (jv_require_object(root, &inv)) {
        jv_free(root);
        service_invalid(resp, &inv);
        return NULL;
    }
    return root;
}

void service_invalid(struct http_resp *resp, const struct jv_invalid *inv)
{
    struct jw w;
    jw_init(&w, 4096);
    jv_invalid_write(inv, &w);
    http_resp_json(resp, 400, &w);
}
