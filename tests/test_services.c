/* Integration tests for the two services: spawn `$BUILD/nanorec serve --port 0` and
 * `$BUILD/trendstory serve --port 0`, learn the port from the listening line, drive them
 * with the raw-socket client, stop them with SIGTERM and check the exit status. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "prom_parse.h"
#include "recsys/rec_service.h"
#include "serve/json.h"
#include "story/story_service.h"

#define HOST "127.0.0.1"

struct svc_case {
    const char *name;    /* binary */
    const char *post;    /* the main POST route */
    const char *valid;   /* a valid body */
    const char *invalid; /* an out-of-range body */
    const char *bad_field;
};

static const struct svc_case nanorec = {"nanorec", "/recommend", "{\"user_id\":1,\"k\":5}",
                                        "{\"user_id\":1,\"k\":0}", "k"};
static const struct svc_case trendstory = {"trendstory", "/v1/stories",
                                           "{\"source\":\"hackernews\",\"theme\":\"comedy\"}",
                                           "{\"theme\":\"western\"}", "theme"};

struct child {
    pid_t pid;
    int port;
    char errlog[64];
};

/* The child under test, killed by the teardown if a failed assertion skipped the stop. */
static pid_t g_child;

static int kill_child(void **state)
{
    (void)state;
    if (g_child > 0) {
        kill(g_child, SIGKILL);
        waitpid(g_child, NULL, 0);
        g_child = 0;
    }
    return 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void dump_stderr(const struct child *c)
{
    FILE *f = fopen(c->errlog, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        print_message("  [%s] %s", "stderr", line);
    fclose(f);
}

/* Starts `<bin> serve --port 0 <extra...>` and reads its listening line (10 s at most).
 * Returns 0 with c filled, or -1 (the child is reaped). */
static int spawn(const char *name, const char *extra, struct child *c, char *line, size_t n)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/%s", test_build_dir(), name);
    snprintf(c->errlog, sizeof c->errlog, "/tmp/nrsvc.XXXXXX");
    int efd = mkstemp(c->errlog);
    int pfd[2];
    if (efd < 0 || pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(efd, 2);
        close(pfd[0]);
        close(pfd[1]);
        char web[64];
        snprintf(web, sizeof web, "web/%s", name);
        setenv("NR_LOG", "warn", 1);
        if (extra)
            execl(bin, bin, "serve", "--port", "0", "--web", web, "--workers", "1", extra,
                  (char *)NULL);
        else
            execl(bin, bin, "serve", "--port", "0", "--web", web, "--workers", "1", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    close(efd);
    c->pid = pid;
    g_child = pid;
    c->port = -1;
    size_t len = 0;
    line[0] = '\0';
    for (int waited = 0; waited < 10000 && !strchr(line, '\n');) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        ssize_t r = read(pfd[0], line + len, n - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        line[len] = '\0';
    }
    close(pfd[0]);
    char want[64];
    snprintf(want, sizeof want, "%s listening on http://127.0.0.1:", name);
    if (strncmp(line, want, strlen(want)) != 0) {
        print_message("no listening line from %s (got '%s')\n", name, line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        g_child = 0;
        dump_stderr(c);
        unlink(c->errlog);
        return -1;
    }
    c->port = atoi(line + strlen(want));
    return 0;
}

/* SIGTERM, then wait up to 10 s (SIGKILL after that). Returns the exit status, or -1 if it
 * had to be killed or died of a signal. */
static int stop(struct child *c)
{
    kill(c->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        pid_t r = waitpid(c->pid, &st, WNOHANG);
        if (r == c->pid) {
            g_child = 0;
            unlink(c->errlog);
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        sleep_ms(10);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    g_child = 0;
    dump_stderr(c);
    unlink(c->errlog);
    return -1;
}

static void check_service(const struct svc_case *sc)
{
    char bin[512], line[256];
    snprintf(bin, sizeof bin, "%s/%s", test_build_dir(), sc->name);
    TEST_REQUIRE_PATH(bin);
    struct child ch;
    assert_int_equal(spawn(sc->name, NULL, &ch, line, sizeof line), 0);
    char url_end[32];
    snprintf(url_end, sizeof url_end, ":%d/\n", ch.port);
    assert_true(ch.port > 0);
    assert_non_null(strstr(line, url_end)); /* exactly "... http://127.0.0.1:PORT/" */

    struct hc_conn *c = hc_connect(HOST, ch.port, 5000);
    assert_non_null(c);
    struct hc_resp r;
    char v[256];

    /* health */
    assert_int_equal(hc_request(c, "GET", "/healthz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    hc_resp_free(&r);

    /* readiness: not ready, and says what is missing */
    assert_int_equal(hc_request(c, "GET", "/readyz", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"ready\":false"));
    assert_non_null(strstr(r.body, "\"missing\":[\"model: "));
    hc_resp_free(&r);

    /* unknown route, wrong method */
    assert_int_equal(hc_request(c, "GET", "/no/such/route", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 404);
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "GET", sc->post, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(hc_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "POST");
    hc_resp_free(&r);

    /* malformed JSON: 400 naming where */
    const char *bad = "{\"k\": 3,,}";
    assert_int_equal(hc_request(c, "POST", sc->post, NULL, bad, strlen(bad), &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"error\":\"invalid_json\""));
    assert_non_null(strstr(r.body, "line 1, column"));
    hc_resp_free(&r);
    /* a JSON value that is not an object */
    assert_int_equal(hc_request(c, "POST", sc->post, NULL, "[1,2]", 5, &r), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "must be a JSON object"));
    hc_resp_free(&r);
    /* out of range: 400 naming the field */
    assert_int_equal(hc_request(c, "POST", sc->post, NULL, sc->invalid, strlen(sc->invalid), &r),
                     0);
    assert_int_equal(r.status, 400);
    char want[64];
    snprintf(want, sizeof want, "\"field\":\"%s\"", sc->bad_field);
    assert_non_null(strstr(r.body, want));
    hc_resp_free(&r);
    /* valid but no model: 503 not_ready with the reason, Retry-After */
    assert_int_equal(hc_request(c, "POST", sc->post, NULL, sc->valid, strlen(sc->valid), &r), 0);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"error\":\"not_ready\""));
    assert_non_null(strstr(r.body, "model: "));
    assert_non_null(hc_header(&r, "Retry-After", v, sizeof v));
    hc_resp_free(&r);

    /* 100 keep-alive requests over this one connection */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(hc_request(c, "GET", "/healthz", NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 200);
        hc_resp_free(&r);
    }
    assert_false(hc_peer_closed(c, 20));

    /* the page */
    assert_int_equal(hc_request(c, "GET", "/", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(hc_header(&r, "Content-Type", v, sizeof v));
    assert_non_null(strstr(v, "text/html"));
    assert_true(strncmp(r.body, "<!doctype html>", 15) == 0);
    snprintf(want, sizeof want, "<title>%s</title>", sc->name);
    assert_non_null(strstr(r.body, want));
    assert_non_null(strstr(r.body, "/readyz"));
    assert_non_null(strstr(r.body, sc->post));
    size_t page_len = r.body_len;
    hc_resp_free(&r);
    assert_int_equal(hc_request(c, "GET", "/static/index.html", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, page_len);
    hc_resp_free(&r);
    /* traversal is refused, raw or percent-encoded */
    const char *evil[] = {"/static/../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                          "/static/%2e%2e/%2e%2e/etc/passwd", "/static//etc/passwd",
                          "/static/.hidden"};
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        assert_int_equal(hc_request(c, "GET", evil[i], NULL, NULL, 0, &r), 0);
        assert_int_equal(r.status, 404);
        assert_null(strstr(r.body, "root:"));
        hc_resp_free(&r);
    }

    /* metrics: valid Prometheus text that counted the requests above */
    assert_int_equal(hc_request(c, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    struct prom_doc *doc = malloc(sizeof *doc);
    char err[256];
    bool ok = prom_parse(r.body, doc, err, sizeof err);
    if (!ok) print_message("metrics do not parse: %s\n", err);
    assert_true(ok);
    const struct prom_sample *s =
        prom_find(doc, "http_requests_total", "route=\"/healthz\",code=\"2xx\"");
    assert_true(s && s->value >= 101);
    snprintf(want, sizeof want, "route=\"%s\",code=\"4xx\"", sc->post);
    s = prom_find(doc, "http_requests_total", want);
    assert_true(s && s->value >= 3);
    s = prom_find(doc, "http_request_duration_seconds_count", "route=\"/healthz\"");
    assert_true(s && s->value >= 101);
    free(doc);
    hc_resp_free(&r);
    hc_close(c);

    /* oversized body (default limit 1 MiB): 413 with a JSON error */
    c = hc_connect(HOST, ch.port, 5000);
    const char *head = "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: 2000000\r\n\r\n{\"k\":";
    char req[512];
    snprintf(req, sizeof req, head, sc->post);
    hc_send(c, req, strlen(req));
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 413);
    assert_int_equal(hc_read_body(c, &r, false), 0);
    assert_non_null(strstr(r.body, "\"error\":\"body_too_large\""));
    hc_resp_free(&r);
    hc_close(c);

    /* a second instance on the same port fails with a clear message and status 1 */
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", ch.port);
    pid_t pid = fork();
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);
        dup2(dn, 1);
        dup2(dn, 2);
        execl(bin, bin, "serve", "--port", port_s, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 1);

    /* SIGTERM stops it cleanly */
    assert_int_equal(stop(&ch), 0);
    assert_null(hc_connect(HOST, ch.port, 500));
}

static void test_nanorec(void **state)
{
    (void)state;
    check_service(&nanorec);
}

static void test_trendstory(void **state)
{
    (void)state;
    check_service(&trendstory);
}

/* Bad command lines exit with status 2 and say why, without starting anything. */
static void test_bad_options(void **state)
{
    (void)state;
    const char *names[] = {"nanorec", "trendstory"};
    for (int i = 0; i < 2; i++) {
        char bin[512];
        snprintf(bin, sizeof bin, "%s/%s", test_build_dir(), names[i]);
        TEST_REQUIRE_PATH(bin);
        const char *argsets[][3] = {
            {"--port", "70000", NULL}, {"--bogus", NULL, NULL}, {"--port", NULL, NULL}};
        for (int a = 0; a < 3; a++) {
            pid_t pid = fork();
            if (pid == 0) {
                int dn = open("/dev/null", O_WRONLY);
                dup2(dn, 1);
                dup2(dn, 2);
                execl(bin, bin, "serve", argsets[a][0], argsets[a][1], (char *)NULL);
                _exit(127);
            }
            int st;
            waitpid(pid, &st, 0);
            assert_true(WIFEXITED(st));
            assert_int_equal(WEXITSTATUS(st), 2);
        }
    }
}

/* ---- request validation (no process needed) ---- */

static struct jv *parse(const char *s)
{
    struct err e;
    struct jv *v = jv_parse(s, strlen(s), NULL, &e);
    assert_non_null(v);
    return v;
}

static int rec(const char *body, struct rec_service_req *rq, struct jv_invalid *inv)
{
    struct jv *v = parse(body);
    int rc = rec_service_req_parse(v, rq, inv);
    jv_free(v);
    return rc;
}

static int story(const char *body, struct story_service_req *rq, struct jv_invalid *inv)
{
    struct jv *v = parse(body);
    int rc = story_service_req_parse(v, rq, inv);
    jv_free(v);
    return rc;
}

static void test_recommend_fields(void **state)
{
    (void)state;
    struct rec_service_req *rq = malloc(sizeof *rq);
    struct jv_invalid inv;
    assert_int_equal(rec("{\"user_id\": 5}", rq, &inv), 0);
    assert_int_equal(rq->user_id, 5);
    assert_int_equal(rq->k, 10); /* default */
    assert_false(rq->explain);
    assert_int_equal(
        rec("{\"user_id\": 0, \"k\": 100, \"explain\": true, \"include_history\": true, "
            "\"exclude\": [3, 4], \"other\": {\"x\": 1}}",
            rq, &inv),
        0);
    assert_int_equal(rq->k, 100);
    assert_true(rq->explain && rq->include_history);
    assert_int_equal(rq->n_exclude, 2);
    assert_int_equal(rq->exclude[1], 4);
    /* history alone is enough; user_id is then -1 */
    assert_int_equal(rec("{\"history\": [1, 2, 3]}", rq, &inv), 0);
    assert_int_equal(rq->user_id, -1);
    assert_int_equal(rq->n_history, 3);
    /* failures name the field */
    assert_int_equal(rec("{\"k\": 5}", rq, &inv), -1);
    assert_string_equal(inv.field, "user_id");
    assert_int_equal(rec("{\"history\": []}", rq, &inv), -1);
    assert_string_equal(inv.field, "user_id");
    assert_int_equal(rec("{\"user_id\": -3}", rq, &inv), -1);
    assert_string_equal(inv.field, "user_id");
    assert_int_equal(rec("{\"user_id\": 1, \"k\": 101}", rq, &inv), -1);
    assert_string_equal(inv.message, "k must be an integer between 1 and 100");
    assert_int_equal(rec("{\"user_id\": 1, \"explain\": 1}", rq, &inv), -1);
    assert_string_equal(inv.field, "explain");
    assert_int_equal(rec("{\"user_id\": 1, \"exclude\": [1, -1]}", rq, &inv), -1);
    assert_string_equal(inv.field, "exclude");
    /* 1000 ids are fine, 1001 are not */
    char *big = malloc(16 * 1024);
    strcpy(big, "{\"user_id\": 1, \"exclude\": [0");
    for (int i = 1; i < 1000; i++)
        strcat(big, ",7");
    strcat(big, "]}");
    assert_int_equal(rec(big, rq, &inv), 0);
    assert_int_equal(rq->n_exclude, 1000);
    big[strlen(big) - 2] = '\0';
    strcat(big, ",8]}");
    assert_int_equal(rec(big, rq, &inv), -1);
    assert_string_equal(inv.message, "exclude must be an array of at most 1000 integers");
    free(big);
    free(rq);
}

static void test_stories_fields(void **state)
{
    (void)state;
    struct story_service_req rq;
    struct jv_invalid inv;
    assert_int_equal(story("{}", &rq, &inv), 0);
    assert_int_equal(rq.source, STORY_SERVICE_SRC_GOOGLE);
    assert_int_equal(rq.theme, STORY_SERVICE_THEME_DEFAULT);
    assert_int_equal(rq.limit, 5);
    assert_false(rq.stream || rq.has_seed || rq.has_max_tokens || rq.has_temperature ||
                 rq.has_top_p);
    assert_int_equal(story("{\"source\": \"rss\", \"url\": \"https://example.org/f.xml\", "
                           "\"theme\": \"sci-fi\", \"limit\": 20, \"geo\": \"GB\", "
                           "\"max_tokens\": 1024, \"temperature\": 0, \"top_p\": 1, "
                           "\"seed\": -42, \"stream\": true}",
                           &rq, &inv),
                     0);
    assert_int_equal(rq.source, STORY_SERVICE_SRC_RSS);
    assert_int_equal(rq.theme, STORY_SERVICE_THEME_SCIFI);
    assert_string_equal(rq.url, "https://example.org/f.xml");
    assert_string_equal(rq.geo, "GB");
    assert_true(rq.has_max_tokens && rq.max_tokens == 1024);
    assert_true(rq.has_temperature && rq.temperature == 0);
    assert_true(rq.has_seed && rq.seed == -42);
    assert_true(rq.stream);
    struct {
        const char *body, *field;
    } bad[] = {
        {"{\"source\": \"bing\"}", "source"},
        {"{\"theme\": \"Comedy\"}", "theme"},
        {"{\"limit\": 0}", "limit"},
        {"{\"limit\": 21}", "limit"},
        {"{\"geo\": \"ABCDEFGHI\"}", "geo"},
        {"{\"geo\": \"U S\"}", "geo"},
        {"{\"source\": \"rss\"}", "url"},
        {"{\"source\": \"rss\", \"url\": \"ftp://x\"}", "url"},
        {"{\"max_tokens\": 1025}", "max_tokens"},
        {"{\"temperature\": 2.01}", "temperature"},
        {"{\"top_p\": -0.1}", "top_p"},
        {"{\"seed\": 1.5}", "seed"},
        {"{\"stream\": \"yes\"}", "stream"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&inv, 0, sizeof inv);
        assert_int_equal(story(bad[i].body, &rq, &inv), -1);
        assert_string_equal(inv.field, bad[i].field);
        assert_non_null(strstr(inv.message, bad[i].field));
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_nanorec, kill_child),
        cmocka_unit_test_teardown(test_trendstory, kill_child),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_recommend_fields),
        cmocka_unit_test(test_stories_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
