/* trendstory end to end: `trendstory serve --model stories260K.gguf` as a child process, every
 * trend source pointed at the fixture server. A story comes back with its topics, streamed
 * (SSE) and not; a warm cache means no network on the request path (even past the TTL); a
 * client that disconnects frees its slot (streamed and buffered); a full queue answers 503
 * with Retry-After; errors name the field (400) or the failing source (502, 504);
 * /v1/trends and /metrics; a client of the reference service (POST /generate, "source":
 * "all", its "topics") works unchanged. */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fixture_server.h"
#include "http_client.h"
#include "serve/json.h"
#include "story_child.h"

#define HOST "127.0.0.1"
#define GGUF_REL "models/gguf/stories260K.gguf"
#define HN_FIRST_TITLE "Photos capture life inside a drop of seawater"

static struct fixture_server *g_fx;
static struct story_child g_child;
static bool g_ready;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One slot and one queue place make disconnects and overload observable; a 2 s TTL lets a
 * test go past it; a 1.5 s wait bound makes a slow source answer 504. */
static int setup(void **state)
{
    (void)state;
    char model[512], trends[512];
    test_data_path(model, sizeof model, GGUF_REL);
    test_data_path(trends, sizeof trends, "trends");
    if (!test_path_exists(model) || !test_path_exists(trends)) return 0; /* tests skip */
    g_fx = fixture_server_start(trends);
    if (!g_fx) return -1;
    /* a feed that takes 4 s: longer than the service's wait bound */
    struct fixture_route slow = {.path = "/feeds/very-slow", .file = "generic_rss2_emarley.rss",
                                 .content_type = "application/rss+xml",
                                 .behavior = FX_DELAY, .delay_ms = 4000};
    if (fixture_server_add(g_fx, &slow)) return -1;
    const char *args[] = {"--model", model, "--web", "web/trendstory", "--threads", "1",
                          "--max-batch", "1", "--queue", "1", "--ttl", "2",
                          "--trend-wait-ms", "1500", "--max-tokens", "1024",
                          "--prefetch", "hackernews", NULL};
    if (story_child_start(&g_child, fixture_server_url(g_fx), args)) return -1;
    g_ready = true;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (g_child.pid > 0 && story_child_stop(&g_child) != 0) rc = -1; /* clean exit on SIGTERM */
    fixture_server_stop(g_fx);
    return rc;
}

#define NEED_SERVICE()                                                                             \
    do {                                                                                           \
        char need_[512];                                                                           \
        TEST_REQUIRE_PATH(test_data_path(need_, sizeof need_, GGUF_REL));                          \
        assert_true(g_ready);                                                                      \
    } while (0)

static struct jv *post_json(const char *body, int *status, struct hc_resp *keep)
{
    struct hc_resp r;
    assert_int_equal(hc_fetch(HOST, g_child.port, "POST", "/v1/stories", body, &r), 0);
    *status = r.status;
    struct err err = {0};
    struct jv *v = jv_parse(r.body, r.body_len, NULL, &err);
    if (!v) print_message("not JSON (%s): %s\n", err.msg, r.body);
    if (keep)
        *keep = r;
    else
        hc_resp_free(&r);
    return v;
}

static const char *str_at(const struct jv *o, const char *k)
{
    const char *s = jv_str(jv_get(o, k), NULL);
    if (!s) print_message("missing string field %s\n", k);
    return s;
}

static double num_at(const struct jv *o, const char *k)
{
    double d = -1;
    if (!jv_num(jv_get(o, k), &d)) print_message("missing number field %s\n", k);
    return d;
}

/* The checks both forms of the answer share. */
static void check_story_object(const struct jv *v, int limit, int max_tokens, const char *source,
                               const char *theme)
{
    const char *story = str_at(v, "story");
    assert_non_null(story);
    assert_true(strlen(story) > 10);
    const struct jv *topics = jv_get(v, "topics_used");
    assert_int_equal(jv_len(topics), limit);
    if (strcmp(source, "hackernews") == 0)
        assert_string_equal(jv_str(jv_at(topics, 0), NULL), HN_FIRST_TITLE);
    const struct jv *md = jv_get(v, "metadata");
    assert_non_null(md);
    assert_true(num_at(md, "generation_time") > 0);
    assert_string_equal(str_at(md, "model_name"), "stories260K.gguf");
    assert_string_equal(str_at(md, "source"), source);
    assert_string_equal(str_at(md, "theme"), theme);
    bool stale = true;
    assert_true(jv_bool(jv_get(md, "stale"), &stale));
    const struct jv *t = jv_get(v, "timings");
    assert_non_null(t);
    const char *keys[] = {"trend_ms", "queue_ms", "prefill_ms", "decode_ms", "prompt_tokens",
                          "completion_tokens"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_true(num_at(t, keys[i]) >= 0);
    double ct = num_at(t, "completion_tokens");
    assert_true(ct >= 1 && ct <= max_tokens);
    /* the theme's system prompt came from the shared prefix, or the whole prompt from the
     * prompt cache (a repeat of an earlier story's theme and topics) */
    bool cached = false;
    assert_true(jv_bool(jv_get(t, "prompt_cached"), &cached));
    assert_true(num_at(t, "prefix_tokens_reused") > 10);
    if (cached)
        assert_true(num_at(t, "prompt_tokens") == num_at(t, "prefix_tokens_reused"));
    else
        assert_true(num_at(t, "prompt_tokens") > num_at(t, "prefix_tokens_reused"));
    assert_int_equal((int)num_at(v, "status_code"), 200);
    assert_int_equal(jv_kind(jv_get(v, "error_message")), JV_NULL);
}

static void test_story_json(void **state)
{
    (void)state;
    NEED_SERVICE();
    int status;
    struct jv *v = post_json("{\"source\":\"hackernews\",\"theme\":\"comedy\",\"limit\":3,"
                             "\"max_tokens\":40,\"seed\":7}",
                             &status, NULL);
    assert_non_null(v);
    assert_int_equal(status, 200);
    check_story_object(v, 3, 40, "hackernews", "comedy");
    assert_int_equal((int)num_at(jv_get(v, "timings"), "completion_tokens"), 40);
    assert_string_equal(str_at(jv_get(v, "metadata"), "finish_reason"), "length");
    jv_free(v);
    /* the same seed gives the same story */
    struct jv *a = post_json("{\"source\":\"hackernews\",\"limit\":2,\"max_tokens\":30,\"seed\":11,"
                             "\"theme\":\"sci-fi\"}", &status, NULL);
    struct jv *b = post_json("{\"source\":\"hackernews\",\"limit\":2,\"max_tokens\":30,\"seed\":11,"
                             "\"theme\":\"sci-fi\"}", &status, NULL);
    assert_string_equal(str_at(a, "story"), str_at(b, "story"));
    /* the second asked for the same theme and topics: its prompt came from the prompt cache,
     * and the story is still the one the seed gives */
    bool cached = false;
    assert_true(jv_bool(jv_get(jv_get(b, "timings"), "prompt_cached"), &cached));
    assert_true(cached);
    jv_free(a);
    jv_free(b);
}

/* Item 3: once an entry exists, the request path never touches the network: not while it is
 * fresh, and not after its TTL either (the stale list is served while a refresh runs). */
static void test_warm_cache_no_network(void **state)
{
    (void)state;
    NEED_SERVICE();
    int status;
    const char *body = "{\"source\":\"google\",\"geo\":\"GB\",\"limit\":2,\"max_tokens\":5}";
    struct jv *v = post_json(body, &status, NULL); /* cold: fetched on the request path */
    assert_int_equal(status, 200);
    jv_free(v);
    long hits = fixture_server_hits(g_fx, "/trending/rss");
    assert_true(hits >= 1);
    v = post_json(body, &status, NULL);
    assert_int_equal(status, 200);
    assert_true(num_at(jv_get(v, "timings"), "trend_ms") < 50);
    jv_free(v);
    assert_int_equal(fixture_server_hits(g_fx, "/trending/rss"), hits);
    /* past the TTL, with the source now slow: the answer is immediate and says stale */
    struct fixture_route slow = {.path = "/trending/rss", .query = "geo=GB",
                                 .file = "google_trends_trending_rss_GB.xml",
                                 .content_type = "application/rss+xml", .behavior = FX_DELAY,
                                 .delay_ms = 3000};
    assert_int_equal(fixture_server_add(g_fx, &slow), 0);
    sleep_ms(2300);
    double t0 = now_ms();
    v = post_json(body, &status, NULL);
    assert_int_equal(status, 200);
    assert_true(num_at(jv_get(v, "timings"), "trend_ms") < 50);
    assert_true(now_ms() - t0 < 2500); /* not held by the 3 s refresh */
    bool stale = false;
    assert_true(jv_bool(jv_get(jv_get(v, "metadata"), "stale"), &stale));
    assert_true(stale);
    jv_free(v);
}

struct sse_event {
    char name[32];
    char data[65536];
};

/* Splits the stream text into events; returns how many (at most max). */
static int parse_events(const char *s, struct sse_event *ev, int max)
{
    int n = 0;
    while (*s && n < max) {
        const char *end = strstr(s, "\n\n");
        if (!end) break;
        struct sse_event *e = &ev[n];
        snprintf(e->name, sizeof e->name, "message");
        e->data[0] = 0;
        size_t dl = 0;
        for (const char *l = s; l < end;) {
            const char *nl = memchr(l, '\n', (size_t)(end - l));
            if (!nl) nl = end;
            size_t ll = (size_t)(nl - l);
            if (ll > 7 && strncmp(l, "event: ", 7) == 0)
                snprintf(e->name, sizeof e->name, "%.*s", (int)(ll - 7), l + 7);
            else if (ll >= 6 && strncmp(l, "data: ", 6) == 0 && dl + ll < sizeof e->data) {
                if (dl) e->data[dl++] = '\n';
                memcpy(e->data + dl, l + 6, ll - 6);
                dl += ll - 6;
                e->data[dl] = 0;
            }
            l = nl + 1;
        }
        n++;
        s = end + 2;
    }
    return n;
}

static void test_story_stream(void **state)
{
    (void)state;
    NEED_SERVICE();
    struct hc_conn *c = hc_connect(HOST, g_child.port, 20000);
    assert_non_null(c);
    const char *body = "{\"source\":\"hackernews\",\"theme\":\"mystery\",\"limit\":4,"
                       "\"max_tokens\":30,\"stream\":true}";
    assert_int_equal(hc_send_request(c, "POST", "/v1/stories", NULL, body, strlen(body)), 0);
    struct hc_resp r = {0};
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    char ct[128];
    assert_non_null(hc_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/event-stream"));
    size_t cap = 1 << 20, len = 0;
    char *all = calloc(1, cap);
    for (;;) {
        char *d;
        size_t n;
        assert_int_equal(hc_read_chunk(c, &d, &n), 0);
        if (n == 0) {
            free(d);
            break;
        }
        assert_true(len + n < cap);
        memcpy(all + len, d, n);
        len += n;
        free(d);
    }
    hc_resp_free(&r);
    hc_close(c);
    static struct sse_event ev[200];
    int n = parse_events(all, ev, 200);
    free(all);
    assert_true(n >= 3);
    assert_string_equal(ev[0].name, "topics");
    assert_non_null(strstr(ev[0].data, HN_FIRST_TITLE));
    char joined[8192] = "";
    int tokens = 0;
    for (int i = 1; i < n - 1; i++) {
        assert_string_equal(ev[i].name, "token");
        struct jv *t = jv_parse(ev[i].data, strlen(ev[i].data), NULL, NULL);
        assert_non_null(t);
        strncat(joined, jv_str(jv_get(t, "text"), NULL), sizeof joined - strlen(joined) - 1);
        jv_free(t);
        tokens++;
    }
    assert_true(tokens >= 1);
    assert_string_equal(ev[n - 1].name, "done");
    struct jv *v = jv_parse(ev[n - 1].data, strlen(ev[n - 1].data), NULL, NULL);
    assert_non_null(v);
    check_story_object(v, 4, 30, "hackernews", "mystery");
    assert_string_equal(str_at(v, "story"), joined); /* the events add up to the story */
    jv_free(v);
}

/* Reads one series' value from /metrics ("name{labels} value" or "name value"); -1 if absent. */
static double metric(const char *series)
{
    struct hc_resp r;
    if (hc_fetch(HOST, g_child.port, "GET", "/metrics", NULL, &r)) return -1;
    double v = -1;
    size_t sl = strlen(series);
    for (const char *l = r.body; l && *l;) {
        if (strncmp(l, series, sl) == 0 && l[sl] == ' ') {
            v = atof(l + sl + 1);
            break;
        }
        l = strchr(l, '\n');
        if (l) l++;
    }
    hc_resp_free(&r);
    return v;
}

/* Waits up to 10 s for a series to reach `want`. */
static bool metric_reaches(const char *series, double want)
{
    for (int i = 0; i < 200; i++) {
        if (metric(series) >= want) return true;
        sleep_ms(50);
    }
    print_message("%s stayed at %g (want %g)\n", series, metric(series), want);
    return false;
}

/* Waits up to 10 s for a series to fall to `want` or below. */
static bool metric_falls_to(const char *series, double want)
{
    for (int i = 0; i < 200; i++) {
        double v = metric(series);
        if (v >= 0 && v <= want) return true;
        sleep_ms(50);
    }
    print_message("%s stayed at %g (want <= %g)\n", series, metric(series), want);
    return false;
}

#define CANCELLED "story_generations_total{finish=\"cancelled\"}"

/* With one slot: a client that leaves (streamed, then buffered) is cancelled, and the next
 * request is served at once instead of waiting out 1000 tokens. */
static void test_disconnect_frees_slot(void **state)
{
    (void)state;
    NEED_SERVICE();
    double before = metric(CANCELLED);
    if (before < 0) before = 0;
    /* streamed: read the head and the first event, then hang up */
    struct hc_conn *c = hc_connect(HOST, g_child.port, 20000);
    assert_non_null(c);
    const char *body = "{\"source\":\"hackernews\",\"limit\":3,\"max_tokens\":1000,\"stream\":true}";
    assert_int_equal(hc_send_request(c, "POST", "/v1/stories", NULL, body, strlen(body)), 0);
    struct hc_resp r = {0};
    assert_int_equal(hc_read_head(c, &r), 0);
    assert_int_equal(r.status, 200);
    char *d;
    size_t n;
    assert_int_equal(hc_read_chunk(c, &d, &n), 0);
    free(d);
    hc_resp_free(&r);
    hc_close(c);
    assert_true(metric_reaches(CANCELLED, before + 1));
    assert_true(metric_falls_to("story_running", 0));

    /* buffered: send, wait a moment, hang up */
    c = hc_connect(HOST, g_child.port, 20000);
    assert_non_null(c);
    body = "{\"source\":\"hackernews\",\"limit\":3,\"max_tokens\":1000}";
    assert_int_equal(hc_send_request(c, "POST", "/v1/stories", NULL, body, strlen(body)), 0);
    sleep_ms(300);
    hc_close(c);
    assert_true(metric_reaches(CANCELLED, before + 2));

    /* the single slot is free: a short story is admitted without waiting */
    int status;
    struct jv *v = post_json("{\"source\":\"hackernews\",\"limit\":1,\"max_tokens\":5}", &status, NULL);
    assert_int_equal(status, 200);
    assert_true(num_at(jv_get(v, "timings"), "queue_ms") < 1000);
    jv_free(v);
}

/* One slot, one queue place: the third concurrent story gets 503 with Retry-After. */
static void test_queue_full_503(void **state)
{
    (void)state;
    NEED_SERVICE();
    const char *body = "{\"source\":\"hackernews\",\"limit\":3,\"max_tokens\":1000,\"stream\":true}";
    struct hc_conn *c1 = hc_connect(HOST, g_child.port, 20000);
    struct hc_conn *c2 = hc_connect(HOST, g_child.port, 20000);
    assert_non_null(c1);
    assert_non_null(c2);
    struct hc_resp r1 = {0}, r2 = {0}, r3;
    assert_int_equal(hc_send_request(c1, "POST", "/v1/stories", NULL, body, strlen(body)), 0);
    assert_int_equal(hc_read_head(c1, &r1), 0);
    assert_int_equal(hc_send_request(c2, "POST", "/v1/stories", NULL, body, strlen(body)), 0);
    assert_int_equal(hc_read_head(c2, &r2), 0);
    assert_int_equal(r1.status, 200);
    assert_int_equal(r2.status, 200); /* waiting for the slot, stream open */
    assert_int_equal(hc_fetch(HOST, g_child.port, "POST", "/v1/stories", body, &r3), 0);
    assert_int_equal(r3.status, 503);
    char ra[16];
    assert_non_null(hc_header(&r3, "Retry-After", ra, sizeof ra));
    assert_true(atoi(ra) >= 1);
    assert_non_null(strstr(r3.body, "\"status_code\":503"));
    hc_resp_free(&r1);
    hc_resp_free(&r2);
    hc_resp_free(&r3);
    hc_close(c1);
    hc_close(c2);
    assert_true(metric_falls_to("story_running", 0));
    assert_true(metric_falls_to("story_waiting", 0));
}

static void expect_error(const char *method, const char *path, const char *body, int status,
                         const char *field)
{
    struct hc_resp r;
    assert_int_equal(hc_fetch(HOST, g_child.port, method, path, body, &r), 0);
    if (r.status != status) print_message("%s %s %s -> %d %s\n", method, path, body ? body : "",
                                          r.status, r.body);
    assert_int_equal(r.status, status);
    if (field) {
        char want[96];
        snprintf(want, sizeof want, "\"field\":\"%s\"", field);
        assert_non_null(strstr(r.body, want));
    }
    char sc[32];
    snprintf(sc, sizeof sc, "\"status_code\":%d", status);
    if (status != 503) assert_non_null(strstr(r.body, sc));
    assert_non_null(strstr(r.body, "\"error_message\":\"") ? r.body : NULL);
    if (status != 503) assert_non_null(strstr(r.body, "\"detail\":\"")); /* FastAPI's field */
    hc_resp_free(&r);
}

static void test_errors(void **state)
{
    (void)state;
    NEED_SERVICE();
    expect_error("POST", "/v1/stories", "{\"theme\":\"western\"}", 400, "theme");
    expect_error("POST", "/v1/stories", "{\"source\":\"myspace\"}", 400, "source");
    expect_error("POST", "/v1/stories", "{\"limit\":0}", 400, "limit");
    expect_error("POST", "/v1/stories", "{\"limit\":21}", 400, "limit");
    expect_error("POST", "/v1/stories", "{\"max_tokens\":100000}", 400, "max_tokens");
    expect_error("POST", "/v1/stories", "{\"source\":\"rss\"}", 400, "url");
    expect_error("GET", "/v1/trends?source=myspace", NULL, 400, "source");
    expect_error("GET", "/v1/trends?source=hackernews&limit=99", NULL, 400, "limit");
    char body[512];
    /* a source that fails with nothing cached: 502 naming the source */
    snprintf(body, sizeof body, "{\"source\":\"rss\",\"url\":\"%s/feeds/500\"}",
             fixture_server_url(g_fx));
    expect_error("POST", "/v1/stories", body, 502, "source");
    /* one slower than the wait bound: 504 */
    snprintf(body, sizeof body, "{\"source\":\"rss\",\"url\":\"%s/feeds/very-slow\"}",
             fixture_server_url(g_fx));
    expect_error("POST", "/v1/stories", body, 504, "source");
}

/* Titles of GET /v1/trends?QUERY, in order (at most max); returns how many. */
static int trend_titles(const char *query, char titles[][256], int max)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/trends?%s", query);
    struct hc_resp r;
    for (int tries = 0;; tries++) { /* a cold fetch on a busy machine may outlast the wait */
        assert_int_equal(hc_fetch(HOST, g_child.port, "GET", path, NULL, &r), 0);
        if (r.status != 504 || tries == 10) break;
        hc_resp_free(&r);
        sleep_ms(500);
    }
    if (r.status != 200) print_message("GET %s -> %d %s\n", path, r.status, r.body);
    assert_int_equal(r.status, 200);
    struct jv *v = jv_parse(r.body, r.body_len, NULL, NULL);
    assert_non_null(v);
    const struct jv *t = jv_get(v, "topics");
    int n = 0;
    for (size_t i = 0; i < jv_len(t) && n < max; i++)
        snprintf(titles[n++], 256, "%s", jv_str(jv_get(jv_at(t, i), "title"), NULL));
    jv_free(v);
    hc_resp_free(&r);
    return n;
}

/* A client of the reference TrendStory service works unchanged (docs/story.md, "Clients of
 * the reference"): its load test's exact request, POST /generate {"theme":"comedy",
 * "source":"all"}, gets a story whose topics alternate between YouTube and Google Trends;
 * "all" survives one source failing and fails (502) only when both do; the reference's own
 * "topics" list is used as given (cleaned, nothing fetched) and validated; every error
 * carries the reference's status_code, error_message and detail. */
static void test_reference_client(void **state)
{
    (void)state;
    NEED_SERVICE();
    /* US stand-ins: the manifest has Google's GB feed and YouTube pages for maxResults=5 */
    struct fixture_route routes[] = {
        {.path = "/trending/rss", .query = "geo=US", .file = "google_trends_trending_rss_GB.xml",
         .content_type = "application/rss+xml"},
        {.path = "/youtube/v3/videos", .query = "regionCode=US&maxResults=20",
         .file = "youtube_mostpopular_page1.json", .content_type = "application/json"},
        {.path = "/youtube/v3/videos", .query = "regionCode=US&maxResults=20&pageToken=CAUQAA",
         .file = "youtube_mostpopular_page2.json", .content_type = "application/json"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        assert_int_equal(fixture_server_add(g_fx, &routes[i]), 0);

    /* both lists as the service has them (this also warms the cache, so that the answer
     * below does not depend on how fast a cold fetch is on a busy machine) */
    char g[20][256], y[20][256];
    int ng = trend_titles("source=google&geo=US", g, 20);
    int ny = trend_titles("source=youtube", y, 20);
    assert_true(ng >= 3);
    assert_int_equal(ny, 8); /* both YouTube pages: 5 + 3 */
    struct hc_resp r;
    assert_int_equal(hc_fetch(HOST, g_child.port, "POST", "/generate",
                              "{\"theme\": \"comedy\", \"source\": \"all\"}", &r), 0);
    if (r.status != 200) print_message("POST /generate -> %d %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    struct jv *v = jv_parse(r.body, r.body_len, NULL, NULL);
    assert_non_null(v);
    assert_true(strlen(str_at(v, "story")) > 10);
    const struct jv *md = jv_get(v, "metadata");
    assert_string_equal(str_at(md, "source"), "all");
    assert_string_equal(str_at(md, "theme"), "comedy");
    assert_string_equal(str_at(md, "model_name"), "stories260K.gguf");
    assert_true(num_at(md, "generation_time") > 0);
    assert_int_equal((int)num_at(v, "status_code"), 200);
    /* default limit 5: YouTube, Google, YouTube, Google, YouTube (the reference's order) */
    const struct jv *tu = jv_get(v, "topics_used");
    assert_int_equal(jv_len(tu), 5);
    assert_string_equal(jv_str(jv_at(tu, 0), NULL), y[0]);
    assert_string_equal(jv_str(jv_at(tu, 1), NULL), g[0]);
    assert_string_equal(jv_str(jv_at(tu, 2), NULL), y[1]);
    assert_string_equal(jv_str(jv_at(tu, 3), NULL), g[1]);
    assert_string_equal(jv_str(jv_at(tu, 4), NULL), y[2]);
    jv_free(v);
    hc_resp_free(&r);

    /* /generate without a source: the reference's default, "all"; /v1/stories: google */
    int status;
    v = post_json("{\"theme\":\"romance\",\"max_tokens\":4}", &status, NULL);
    assert_int_equal(status, 200);
    assert_string_equal(str_at(jv_get(v, "metadata"), "source"), "google");
    jv_free(v);
    assert_int_equal(hc_fetch(HOST, g_child.port, "POST", "/generate",
                              "{\"theme\":\"romance\",\"max_tokens\":4}", &r), 0);
    assert_int_equal(r.status, 200);
    v = jv_parse(r.body, r.body_len, NULL, NULL);
    assert_non_null(v);
    assert_string_equal(str_at(jv_get(v, "metadata"), "source"), "all");
    assert_string_equal(jv_str(jv_at(jv_get(v, "topics_used"), 0), NULL), y[0]);
    jv_free(v);
    hc_resp_free(&r);

    /* "all" where YouTube has no answer (no GB route): Google's topics alone */
    assert_int_equal(hc_fetch(HOST, g_child.port, "POST", "/generate",
                              "{\"theme\":\"tragedy\",\"source\":\"all\",\"geo\":\"GB\","
                              "\"limit\":3,\"max_tokens\":8}", &r), 0);
    assert_int_equal(r.status, 200);
    v = jv_parse(r.body, r.body_len, NULL, NULL);
    assert_non_null(v);
    ng = trend_titles("source=google&geo=GB", g, 20);
    tu = jv_get(v, "topics_used");
    assert_int_equal(jv_len(tu), 3);
    for (int i = 0; i < 3; i++) assert_string_equal(jv_str(jv_at(tu, (size_t)i), NULL), g[i]);
    jv_free(v);
    hc_resp_free(&r);
    /* both failing (Google answers 404 for ZZ, YouTube has no route): 502 */
    expect_error("POST", "/generate", "{\"theme\":\"comedy\",\"source\":\"all\",\"geo\":\"ZZ\"}",
                 502, "source");

    /* the caller's own topics: cleaned, used as given, the topic cache not asked (the
     * request path's trend histogram does not move; fixture hits would not tell, since the
     * 2 s TTL makes background refreshes run at any time) */
    double looked_up = metric("story_trend_seconds_count");
    v = post_json("{\"theme\":\"mystery\",\"topics\":[\"A cat &amp; a <b>dog</b>\","
                  "\"  Rain   at noon \"],\"max_tokens\":8}",
                  &status, NULL);
    assert_int_equal(status, 200);
    tu = jv_get(v, "topics_used");
    assert_int_equal(jv_len(tu), 2);
    assert_string_equal(jv_str(jv_at(tu, 0), NULL), "A cat & a dog");
    assert_string_equal(jv_str(jv_at(tu, 1), NULL), "Rain at noon");
    assert_string_equal(str_at(jv_get(v, "metadata"), "source"), "request");
    assert_true(num_at(jv_get(v, "timings"), "trend_ms") == 0);
    jv_free(v);
    assert_true(metric("story_trend_seconds_count") == looked_up);
    expect_error("POST", "/generate", "{\"topics\":[]}", 400, "topics");
    expect_error("POST", "/generate", "{\"topics\":\"news\"}", 400, "topics");
    expect_error("POST", "/generate", "{\"topics\":[\"ok\",7]}", 400, "topics");
    expect_error("POST", "/generate", "{\"topics\":[\"ok\",\" <i></i> \"]}", 400, "topics");
    char many[512] = "{\"topics\":[";
    for (int i = 0; i < 21; i++) strcat(many, i ? ",\"t\"" : "\"t\"");
    strcat(many, "]}");
    expect_error("POST", "/generate", many, 400, "topics");
}

static void test_trends_and_metrics(void **state)
{
    (void)state;
    NEED_SERVICE();
    struct hc_resp r;
    assert_int_equal(hc_fetch(HOST, g_child.port, "GET", "/v1/trends?source=hackernews&limit=2",
                              NULL, &r), 0);
    assert_int_equal(r.status, 200);
    struct jv *v = jv_parse(r.body, r.body_len, NULL, NULL);
    assert_non_null(v);
    assert_int_equal(jv_len(jv_get(v, "topics")), 2);
    assert_string_equal(jv_str(jv_get(jv_at(jv_get(v, "topics"), 0), "title"), NULL),
                        HN_FIRST_TITLE);
    assert_true(num_at(v, "age_s") >= 0);
    jv_free(v);
    hc_resp_free(&r);
    assert_int_equal(hc_fetch(HOST, g_child.port, "GET", "/v1/themes", NULL, &r), 0);
    assert_non_null(strstr(r.body, "\"sci-fi\""));
    hc_resp_free(&r);
    assert_int_equal(hc_fetch(HOST, g_child.port, "GET", "/readyz", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    hc_resp_free(&r);
    /* per-request time to first token and tokens/s, from the stories above */
    assert_true(metric("story_time_to_first_token_seconds_count") >= 3);
    assert_true(metric("story_decode_tokens_per_second_count") >= 3);
    assert_true(metric("story_prefix_tokens_reused_total") > 0);
    assert_true(metric("story_prompt_cache_lookups_total{result=\"hit\"}") >= 1);
    assert_true(metric("story_prompt_cache_lookups_total{result=\"miss\"}") >= 1);
    assert_true(metric("story_trend_seconds_count") >= 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_story_json),
        cmocka_unit_test(test_warm_cache_no_network),
        cmocka_unit_test(test_story_stream),
        cmocka_unit_test(test_disconnect_frees_slot),
        cmocka_unit_test(test_queue_full_503),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_reference_client),
        cmocka_unit_test(test_trends_and_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
