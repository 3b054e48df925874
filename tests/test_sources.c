/* Trend sources end to end: the real fetcher against the fixture server serving
 * ../shared/data/trends per its MANIFEST.json, plus payload-level checks of every hazard. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_server.h"
#include "story/fetch.h"
#include "story/sources.h"
#include "story/text.h"
#include "story/trends_cli.h"
#include "testutil.h"

#include <fcntl.h>
#include <unistd.h>

static struct fixture_server *srv;
static struct fetcher *fetcher;
static char trends_dir[1024];

static int group_setup(void **state)
{
    (void)state;
    test_data_path(trends_dir, sizeof trends_dir, "trends");
    if (!test_path_exists(trends_dir)) return 0; /* each test skips */
    srv = fixture_server_start(trends_dir);
    if (!srv) return -1;
    const char *u = fixture_server_url(srv);
    setenv("TRENDSTORY_GOOGLE_TRENDS_URL", u, 1);
    setenv("TRENDSTORY_HN_URL", u, 1);
    setenv("TRENDSTORY_WIKIMEDIA_URL", u, 1);
    setenv("TRENDSTORY_YOUTUBE_URL", u, 1);
    setenv("TRENDSTORY_NEWSAPI_URL", u, 1);
    struct fetch_cfg cfg = {.connect_timeout_ms = 1000, .timeout_ms = 1000,
                            .max_bytes = 1u << 20};
    struct err e = {0};
    fetcher = fetch_new(&cfg, &e);
    return fetcher ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    fetch_free(fetcher);
    fixture_server_stop(srv);
    return 0;
}

#define NEED_DATA() TEST_REQUIRE_PATH(trends_dir)

static const struct topic *find(const struct topic_list *l, const char *title)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].title, title) == 0) return &l->v[i];
    return NULL;
}

/* Invariants every topic list must meet, whatever the source. */
static void check_list(const struct topic_list *l, const char *source)
{
    for (size_t i = 0; i < l->n; i++) {
        const struct topic *t = &l->v[i];
        assert_non_null(t->title);
        assert_true(t->title[0] != 0);
        assert_true(strlen(t->title) <= SOURCE_TITLE_MAX);
        assert_true(utf8_valid(t->title, strlen(t->title)));
        assert_null(strchr(t->title, '<'));
        assert_true(t->title[0] != ' ' && t->title[strlen(t->title) - 1] != ' ');
        assert_null(strstr(t->title, "  "));
        for (const char *c = t->title; *c; c++) assert_true((unsigned char)*c >= 0x20);
        assert_true(t->url[0] == 0 || strncmp(t->url, "http", 4) == 0);
        assert_string_equal(t->source, source);
        char *ki = text_fold_key(t->title);
        for (size_t j = 0; j < i; j++) {
            char *kj = text_fold_key(l->v[j].title);
            assert_string_not_equal(ki, kj);
            free(kj);
        }
        free(ki);
    }
}

static int fetch_src(const char *name, struct source_params *p, struct source_meta *m,
                     struct topic_list *out, struct err *e)
{
    int id = source_lookup(name);
    assert_true(id >= 0);
    memset(e, 0, sizeof *e);
    return source_fetch(fetcher, (enum source_id)id, p, m, out, e);
}

static void rss_url(struct source_params *p, const char *path_query)
{
    memset(p, 0, sizeof *p);
    snprintf(p->url, sizeof p->url, "%s%s", fixture_server_url(srv), path_query);
}

/* ---- the real payloads ---- */

static void test_google_gb(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.geo = "gb"};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("google", &p, &m, &l, &e), 0);
    check_list(&l, "google");
    assert_int_equal(l.n, 10);
    assert_string_equal(l.v[0].title, "Nvidia");
    assert_int_equal(l.v[0].traffic, 100);
    assert_string_equal(l.v[0].url,
                        "https://www.cnbc.com/2026/02/02/nvidia-stock-price-openai-funding.html");
    assert_int_equal(l.v[0].published, 1770087600); /* Mon, 2 Feb 2026 19:00:00 -0800 */
    const struct topic *t = find(&l, "nipah virus outbreak latest news");
    assert_non_null(t);
    assert_int_equal(t->traffic, 500);
    assert_non_null(find(&l, "frankie dettori"));
    assert_int_equal(m.http_status, 200);
    char ua[256];
    assert_true(fixture_server_last_header(srv, "/trending/rss", "User-Agent", ua, sizeof ua));
    assert_non_null(strstr(ua, "trendstory/"));
    source_topics_clear(&l);
}

static void test_google_legacy_double_escaped(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p;
    rss_url(&p, "/trends/trendingsearches/daily/rss?geo=US");
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].title, "Women's World Cup 2019");
    assert_int_equal(l.v[0].traffic, 1000000);
    source_topics_clear(&l);
}

static void test_google_errors(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.geo = "ZZ"};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_true(fetch_src("google", &p, &m, &l, &e) < 0);
    assert_int_equal(l.n, 0);
    assert_non_null(strstr(e.msg, "HTTP 404"));
    assert_non_null(strstr(e.msg, "Error 404 (Not Found)"));

    rss_url(&p, "/trending/rss?geo=US&case=429");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_BUSY);
    assert_int_equal(m.http_status, 429);
    assert_int_equal(m.retry_after_s, 120);
    assert_non_null(strstr(e.msg, "retry after 120 s"));

    rss_url(&p, "/trending/rss?geo=US&case=truncated");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "closed before"));

    struct source_params bad = {.geo = "G B<"};
    assert_int_equal(fetch_src("google", &bad, &m, &l, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "geo"));
}

static void test_hackernews_algolia(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.limit = 50};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("hackernews", &p, &m, &l, &e), 0);
    check_list(&l, "hackernews");
    assert_int_equal(l.n, 30);
    assert_string_equal(l.v[0].title, "Photos capture life inside a drop of seawater");
    assert_int_equal(l.v[0].traffic, 816);
    assert_int_equal(l.v[0].published, 1674130654);
    const struct topic *t =
        find(&l, "Launch HN: Odigos (YC W23) \xE2\x80\x93 Instant distributed tracing for "
                 "Kubernetes clusters");
    assert_non_null(t);
    assert_non_null(find(&l, "A treasure hunt for microbes in Chile\xE2\x80\x99s Atacama desert"));
    /* Ask HN has no url: the discussion page stands in. */
    t = find(&l, "Ask HN: Where Are All the Parties?");
    assert_non_null(t);
    assert_non_null(strstr(t->url, "news.ycombinator.com/item?id="));
    source_topics_clear(&l);

    p.limit = 5;
    assert_int_equal(fetch_src("hackernews", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 5);
    source_topics_clear(&l);
}

static void test_hackernews_firebase(void **state)
{
    (void)state;
    NEED_DATA();
    /* The README's ids have no item fixtures: every item is a 404, a clear error. */
    struct source_params p = {.mode = "firebase", .limit = 5};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("hackernews", &p, &m, &l, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "none of the"));
    assert_int_equal(l.n, 0);

    /* Top stories that point at the recorded items (story, comment, ask, job, poll,
     * pollopt, missing). Comments, poll options and null items are skipped. */
    static const char ids[] = "[8863, 2921983, 121003, 192327, 126809, 160705, 99999999999]";
    struct fixture_route r = {.path = "/v0/topstories.json", .body = ids,
                              .body_len = sizeof ids - 1, .content_type = "application/json"};
    assert_int_equal(fixture_server_add(srv, &r), 0);
    p.limit = 10;
    assert_int_equal(fetch_src("hackernews", &p, &m, &l, &e), 0);
    check_list(&l, "hackernews");
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].title, "My YC app: Dropbox - Throw away your USB drive");
    assert_string_equal(l.v[0].url, "http://www.getdropbox.com/u/2/screencast.html");
    assert_int_equal(l.v[0].traffic, 111);
    assert_string_equal(l.v[1].title, "Ask HN: The Arc Effect");
    assert_string_equal(l.v[2].title, "Justin.tv is looking for a Lead Flash Engineer!");
    assert_string_equal(l.v[2].url, "https://news.ycombinator.com/item?id=192327");
    assert_non_null(strstr(l.v[3].title, "Poll"));
    source_topics_clear(&l);
}

static void test_wikipedia(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.date = "2015-10-10", .limit = 100};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("wikipedia", &p, &m, &l, &e), 0);
    check_list(&l, "wikipedia");
    /* Main_Page, Special:Search, Template:GeoTemplate, Special:Book are not topics. */
    assert_string_equal(l.v[0].title, "Carlos Hathcock");
    assert_int_equal(l.v[0].traffic, 291358);
    assert_string_equal(l.v[0].url, "https://en.wikipedia.org/wiki/Carlos_Hathcock");
    assert_int_equal(l.v[0].published, 1444435200);
    assert_string_equal(l.v[1].title, "UEFA Euro 2016 qualifying");
    for (size_t i = 0; i < l.n; i++) {
        assert_null(strstr(l.v[i].title, "Special:"));
        assert_null(strstr(l.v[i].title, "File:"));
        assert_null(strstr(l.v[i].title, "User:"));
    }
    const struct topic *t = find(&l, "Dulce Mar\xC3\xAD" "a");
    assert_non_null(t);
    assert_string_equal(t->url, "https://en.wikipedia.org/wiki/Dulce_Mar\xC3\xAD" "a");
    source_topics_clear(&l);

    /* 2015-10-11 is not published: one day back. */
    fixture_server_reset_hits(srv);
    snprintf(p.date, sizeof p.date, "2015-10-11");
    p.limit = 3;
    assert_int_equal(fetch_src("wikipedia", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].title, "Carlos Hathcock");
    assert_int_equal(
        fixture_server_hits(srv, "/api/rest_v1/metrics/pageviews/top/en.wikipedia/all-access/2015/10/11"),
        1);
    source_topics_clear(&l);

    /* Neither day exists: the 404 is reported, nothing invented, no third try. */
    fixture_server_reset_hits(srv);
    snprintf(p.date, sizeof p.date, "2099-01-01");
    assert_true(fetch_src("wikipedia", &p, &m, &l, &e) < 0);
    assert_int_equal(l.n, 0);
    assert_non_null(strstr(e.msg, "HTTP 404"));
    assert_int_equal(fixture_server_hits(srv, NULL), 2);

    snprintf(p.date, sizeof p.date, "yesterday");
    assert_int_equal(fetch_src("wikipedia", &p, &m, &l, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "date"));
}

static void test_youtube(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.geo = "US", .limit = 5};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    unsetenv("TRENDSTORY_YOUTUBE_API_KEY");
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "TRENDSTORY_YOUTUBE_API_KEY"));

    setenv("TRENDSTORY_YOUTUBE_API_KEY", "TESTKEY", 1);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    check_list(&l, "youtube");
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[0].title, "GIDDY UP ( OFFICIAL MUSIC VIDEO )");
    assert_string_equal(l.v[0].url, "https://www.youtube.com/watch?v=hDeuSfo_Ys0");
    assert_non_null(find(&l, "A Holiday Reunion \xE2\x80\x93 Xfinity 2019"));
    source_topics_clear(&l);

    setenv("TRENDSTORY_YOUTUBE_API_KEY", "BADKEY", 1);
    assert_true(fetch_src("youtube", &p, &m, &l, &e) < 0);
    assert_non_null(strstr(e.msg, "HTTP 400"));
    assert_null(strstr(e.msg, "BADKEY"));

    setenv("TRENDSTORY_YOUTUBE_API_KEY", "QUOTA", 1);
    assert_true(fetch_src("youtube", &p, &m, &l, &e) < 0);
    assert_non_null(strstr(e.msg, "quotaExceeded"));
    assert_null(strstr(e.msg, "QUOTA"));
    assert_null(strstr(e.msg, "<a"));
    assert_true(m.retry_after_s > 0 && m.retry_after_s <= 86400);

    /* A provider that echoes the key in its error text: the key is scrubbed. */
    static const char echo[] = "{\"error\":{\"code\":400,\"message\":\"API key ECHOKEY1 not valid\","
                               "\"errors\":[{\"reason\":\"badRequest\"}]}}";
    struct fixture_route r = {.path = "/youtube/v3/videos", .query = "key=ECHOKEY1", .status = 400,
                              .body = echo, .body_len = sizeof echo - 1};
    assert_int_equal(fixture_server_add(srv, &r), 0);
    setenv("TRENDSTORY_YOUTUBE_API_KEY", "ECHOKEY1", 1);
    assert_true(fetch_src("youtube", &p, &m, &l, &e) < 0);
    assert_non_null(strstr(e.msg, "API key *** not valid"));
    assert_null(strstr(e.msg, "ECHOKEY1"));
    unsetenv("TRENDSTORY_YOUTUBE_API_KEY");
}

static void test_newsapi(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p = {.geo = "us"};
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    unsetenv("TRENDSTORY_NEWSAPI_KEY");
    assert_int_equal(fetch_src("newsapi", &p, &m, &l, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "TRENDSTORY_NEWSAPI_KEY"));

    setenv("TRENDSTORY_NEWSAPI_KEY", "TESTKEY", 1);
    assert_int_equal(fetch_src("newsapi", &p, &m, &l, &e), 0);
    check_list(&l, "newsapi");
    assert_int_equal(l.n, 20);
    assert_string_equal(l.v[1].title, "China Signs Asia Trade Deal. Will Biden Follow?");
    assert_string_equal(l.v[1].url,
                        "https://www.nytimes.com/2020/11/15/business/china-trade-rcep.html");
    assert_non_null(find(&l, "SpaceX\xE2\x80\x99s Next NASA Launch: When to Watch"));
    source_topics_clear(&l);

    setenv("TRENDSTORY_NEWSAPI_KEY", "BADKEY", 1);
    assert_true(fetch_src("newsapi", &p, &m, &l, &e) < 0);
    assert_non_null(strstr(e.msg, "apiKeyInvalid"));
    assert_null(strstr(e.msg, "BADKEY"));
    unsetenv("TRENDSTORY_NEWSAPI_KEY");
}

static void test_generic_feeds(void **state)
{
    (void)state;
    NEED_DATA();
    static const struct {
        const char *path, *first, *other;
        size_t n;
    } cases[] = {
        {"/feeds/generic_rss2_emarley.rss", "UI Automation & screenshots",
         "They didn\xE2\x80\x99t.", 10},
        {"/feeds/generic_rss2_utf8_bom_donthitsave.xml", "Skipping Around", "Budgets", 10},
        {"/feeds/generic_rss2_bogus_pi_phpxml.rss",
         "Serdar G\xC3\xB6z\xC3\xBC" "b\xC3\xBCy\xC3\xBCk scheidsrechter bij FC Twente - FC Utrecht",
         "Quinten Timber traint mee met het Nederlands Elftal", 20},
        {"/feeds/generic_rss2_double_escaped_monkeydom.rss", "TCMPortMapper 2018 Edition",
         "Swift Library naming warts", 13},
        {"/feeds/generic_rss2_no_xmldecl_macworld.rss", "Best smart lock",
         "iOS 11.2: Beta 5 is now available", 30},
        {"/feeds/generic_atom_blogger_4fsodonline.atom", "4FSOD Documentary: Bloopers and Stuff",
         "Special Feature: Jamie's Present", 25},
        {"/feeds/generic_atom_expertopinionent.atom",
         "Advances and Testing in Vestibular Pathology", "Middle Ear Mechanics", 43},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct source_params p;
        rss_url(&p, cases[i].path);
        p.limit = 100;
        struct source_meta m;
        source_meta_init(&m);
        struct topic_list l;
        struct err e;
        int rc = fetch_src("rss", &p, &m, &l, &e);
        if (rc != 0) print_message("%s: %s\n", cases[i].path, e.msg);
        assert_int_equal(rc, 0);
        check_list(&l, "rss");
        assert_string_equal(l.v[0].title, cases[i].first);
        assert_non_null(find(&l, cases[i].other));
        assert_true(l.n <= cases[i].n && l.n + 2 >= cases[i].n);
        source_topics_clear(&l);
    }
    /* Scripting News items have no <title>: the description text stands in, tags stripped. */
    struct source_params p;
    rss_url(&p, "/feeds/generic_rss2_scriptingnews.rss");
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    check_list(&l, "rss");
    assert_int_equal(l.n, SOURCE_LIMIT_DEFAULT);
    source_topics_clear(&l);
}

/* ---- transport behaviour ---- */

static void test_redirects_and_statuses(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p;
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    rss_url(&p, "/feeds/redirect-301");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    assert_string_equal(l.v[0].title, "UI Automation & screenshots");
    source_topics_clear(&l);

    fixture_server_reset_hits(srv);
    rss_url(&p, "/feeds/redirect-loop");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "redirects"));
    assert_int_equal(fixture_server_hits(srv, "/feeds/redirect-loop"), 6); /* 1 + 5 */

    rss_url(&p, "/feeds/redirect-to-file");
    assert_true(fetch_src("rss", &p, &m, &l, &e) < 0);
    assert_int_equal(l.n, 0);
    assert_null(strstr(e.msg, "root:"));

    rss_url(&p, "/feeds/500");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_UPSTREAM);
    assert_non_null(strstr(e.msg, "HTTP 500"));

    rss_url(&p, "/feeds/503");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_UPSTREAM);
    assert_int_equal(m.http_status, 503);
    assert_int_equal(m.retry_after_s, 0); /* an HTTP date in the past */

    struct source_params bad;
    memset(&bad, 0, sizeof bad);
    snprintf(bad.url, sizeof bad.url, "file:///etc/passwd");
    assert_int_equal(fetch_src("rss", &bad, &m, &l, &e), ERR_INVALID);
}

static void test_timeout(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p;
    rss_url(&p, "/feeds/slow");
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_TIMEOUT);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(s >= 0.9 && s < 2.9); /* timeout 1 s, the delay is 3 s */
    assert_non_null(strstr(e.msg, "timed out"));
}

static void test_gzip_etag_and_caps(void **state)
{
    (void)state;
    NEED_DATA();
    struct source_params p;
    struct source_meta m;
    source_meta_init(&m);
    struct topic_list l;
    struct err e;
    rss_url(&p, "/feeds/gzip");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    assert_string_equal(l.v[0].title, "UI Automation & screenshots");
    source_topics_clear(&l);
    char ae[128];
    assert_true(fixture_server_last_header(srv, "/feeds/gzip", "Accept-Encoding", ae, sizeof ae));
    assert_non_null(strstr(ae, "gzip"));

    /* Conditional GET: the second fetch sends the validators and gets 304. */
    rss_url(&p, "/feeds/etag");
    source_meta_init(&m);
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    assert_false(m.not_modified);
    assert_string_equal(m.etag, "\"v1\"");
    assert_string_equal(m.last_modified, "Mon, 26 Jun 2017 19:41:48 GMT");
    source_topics_clear(&l);
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), 0);
    assert_true(m.not_modified);
    assert_int_equal(l.n, 0);
    char inm[64];
    assert_true(fixture_server_last_header(srv, "/feeds/etag", "If-None-Match", inm, sizeof inm));
    assert_string_equal(inm, "\"v1\"");
    assert_true(fixture_server_last_header(srv, "/feeds/etag", "If-Modified-Since", inm,
                                           sizeof inm));

    /* An endless body stops at the 1 MiB cap. */
    rss_url(&p, "/feeds/huge");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_NOMEM);
    assert_non_null(strstr(e.msg, "limit"));

    /* A gzip bomb (100 KB inflating to 16 MiB) stops at the decompressed cap. */
    struct fixture_route r = {.path = "/feeds/bomb", .content_type = "application/rss+xml",
                              .behavior = FX_GZIP_BOMB, .huge_bytes = 16u << 20};
    assert_int_equal(fixture_server_add(srv, &r), 0);
    rss_url(&p, "/feeds/bomb");
    assert_int_equal(fetch_src("rss", &p, &m, &l, &e), ERR_NOMEM);
    assert_non_null(strstr(e.msg, "decompressed"));
}

/* ---- hazards ---- */

/* Every XML hazard served as a feed: an error with a message, or topics that pass the
 * invariants. Never a crash, never the content of a local file. */
static void test_xml_hazards_served(void **state)
{
    (void)state;
    NEED_DATA();
    static const char *const files[] = {
        "billion_laughs.xml", "deep_nesting_10000.xml", "empty_body.xml",
        "google_trends_GB_crlf.xml", "invalid_utf8_bad_continuation.xml",
        "invalid_utf8_latin1_mislabeled.xml", "invalid_utf8_overlong.xml",
        "invalid_utf8_truncated_seq.xml", "invalid_xml_control_char.xml",
        "malformed_cdata_unterminated.xml", "malformed_html_entity_nbsp.xml",
        "malformed_mismatched_tags.xml", "malformed_two_roots.xml",
        "malformed_unescaped_ampersand.xml", "malformed_whitespace_before_xmldecl.xml",
        "not_xml_json_body.xml", "truncated_google_trends_GB.xml", "xxe_local_file.xml",
        "xxe_network_dtd.xml", "html_error_page_instead_of_feed.html",
        "html_rate_limited_page.html",
    };
    static const struct {
        const char *file, *expect; /* expect: a topic title, or "!" + an error fragment */
    } want[] = {
        {"billion_laughs.xml", "!refused"},
        {"deep_nesting_10000.xml", "!deeper than"},
        {"empty_body.xml", "!empty body"},
        {"google_trends_GB_crlf.xml", "Nvidia"},
        {"invalid_utf8_latin1_mislabeled.xml", "J\xC3\xBCrgen M\xC3\xBCller caf\xC3\xA9"},
        {"invalid_xml_control_char.xml", "bell and nul-free control char"},
        {"malformed_cdata_unterminated.xml", "!unclosed CDATA"},
        {"malformed_html_entity_nbsp.xml", "Caf\xC3\xA9 news \xE2\x80\x94 today"},
        {"malformed_mismatched_tags.xml", "!mismatched tag"},
        {"malformed_two_roots.xml", "!junk after document element"},
        {"malformed_unescaped_ampersand.xml", "AT&T"},
        {"malformed_whitespace_before_xmldecl.xml", "!none with a title"},
        {"not_xml_json_body.xml", "!JSON"},
        {"truncated_google_trends_GB.xml", "!not well-formed"},
        {"xxe_local_file.xml", "!refused"},
        {"xxe_network_dtd.xml", "!none with a title"},
        {"html_error_page_instead_of_feed.html", "!HTML page"},
        {"html_rate_limited_page.html", "!Too Many Requests"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256], rel[256];
        snprintf(path, sizeof path, "/hazard/%s", files[i]);
        snprintf(rel, sizeof rel, "hazards/%s", files[i]);
        struct fixture_route r = {.path = path, .file = rel, .content_type = "application/xml"};
        assert_int_equal(fixture_server_add(srv, &r), 0);
        struct source_params p;
        rss_url(&p, path);
        struct source_meta m;
        source_meta_init(&m);
        struct topic_list l;
        struct err e;
        int rc = fetch_src("rss", &p, &m, &l, &e);
        if (rc == 0) {
            check_list(&l, "rss");
            for (size_t k = 0; k < l.n; k++) assert_null(strstr(l.v[k].title, "root:"));
        } else {
            assert_true(e.msg[0] != 0);
            assert_int_equal(l.n, 0);
        }
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
            if (strcmp(want[k].file, files[i]) != 0) continue;
            if (want[k].expect[0] == '!') {
                if (rc == 0) print_message("%s: expected an error\n", files[i]);
                assert_int_not_equal(rc, 0);
                if (!strstr(e.msg, want[k].expect + 1))
                    print_message("%s: message '%s'\n", files[i], e.msg);
                assert_non_null(strstr(e.msg, want[k].expect + 1));
            } else {
                if (rc != 0) print_message("%s: %s\n", files[i], e.msg);
                assert_int_equal(rc, 0);
                assert_non_null(find(&l, want[k].expect));
            }
        }
        source_topics_clear(&l);
    }
}

static char *slurp(const char *rel, size_t *len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", trends_dir, rel);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = 0;
    *len = (size_t)n;
    return b;
}

/* The parsed topics of one recorded payload (source_parse at a generous limit). */
static void parse_file(const char *rel, enum source_id id, struct topic_list *out)
{
    size_t len;
    char *b = slurp(rel, &len);
    struct source_params p = {.limit = 50};
    struct err e = {0};
    assert_int_equal(source_parse(id, b, len, "application/json", &p, out, &e), 0);
    free(b);
}

/* A crafted mostPopular page: one video titled `title`, then `next` as nextPageToken (none
 * when NULL). */
static void yt_route(const char *query, const char *title, const char *next)
{
    char body[256];
    snprintf(body, sizeof body,
             "{\"items\":[{\"id\":\"vid_%s\",\"snippet\":{\"title\":\"%s\"}}]%s%s%s}", title, title,
             next ? ",\"nextPageToken\":\"" : "", next ? next : "", next ? "\"" : "");
    struct fixture_route r = {.path = "/youtube/v3/videos", .query = query,
                              .body = body, .body_len = strlen(body),
                              .content_type = "application/json"};
    assert_int_equal(fixture_server_add(srv, &r), 0);
}

/* YouTube mostPopular pages: nextPageToken is followed, with the same maxResults, until the
 * limit is met (the recorded page 1 + page 2), and no further: not without a token, not when
 * the token repeats, not when it is not a plain token, never past 4 pages; a failing later
 * page keeps the earlier topics. */
static void test_youtube_pages(void **state)
{
    (void)state;
    NEED_DATA();
    setenv("TRENDSTORY_YOUTUBE_API_KEY", "TESTKEY", 1);
    struct topic_list p1, p2, l;
    parse_file("youtube_mostpopular_page1.json", SOURCE_YOUTUBE, &p1);
    parse_file("youtube_mostpopular_page2.json", SOURCE_YOUTUBE, &p2);
    assert_int_equal(p1.n, 5);
    assert_int_equal(p2.n, 3);
    struct source_meta m;
    struct err e;
    const char *vids = "/youtube/v3/videos";

    /* limit 5: the manifest's page 1 is enough, one request */
    struct source_params p = {.geo = "US", .limit = 5};
    source_meta_init(&m);
    fixture_server_reset_hits(srv);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 5);
    assert_int_equal(fixture_server_hits(srv, vids), 1);
    source_topics_clear(&l);

    /* limit 8 and 20: page 1, then page 2 by its token; page 2 has no token, so two requests */
    const int limits[] = {8, 20};
    for (size_t k = 0; k < 2; k++) {
        char q1[96], q2[128];
        snprintf(q1, sizeof q1, "regionCode=US&maxResults=%d", limits[k]);
        snprintf(q2, sizeof q2, "regionCode=US&maxResults=%d&pageToken=CAUQAA", limits[k]);
        struct fixture_route r1 = {.path = vids, .query = q1,
                                   .file = "youtube_mostpopular_page1.json"};
        struct fixture_route r2 = {.path = vids, .query = q2,
                                   .file = "youtube_mostpopular_page2.json"};
        assert_int_equal(fixture_server_add(srv, &r1), 0);
        assert_int_equal(fixture_server_add(srv, &r2), 0);
        p.limit = limits[k];
        fixture_server_reset_hits(srv);
        assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
        check_list(&l, "youtube");
        assert_int_equal(l.n, 8);
        for (size_t i = 0; i < 5; i++) assert_string_equal(l.v[i].title, p1.v[i].title);
        for (size_t i = 0; i < 3; i++) assert_string_equal(l.v[5 + i].title, p2.v[i].title);
        assert_int_equal(fixture_server_hits(srv, vids), 2);
        source_topics_clear(&l);
    }

    /* a chain of tokens: never more than 4 pages */
    yt_route("regionCode=CA", "Chain 0", "P1");
    yt_route("regionCode=CA&pageToken=P1", "Chain 1", "P2");
    yt_route("regionCode=CA&pageToken=P2", "Chain 2", "P3");
    yt_route("regionCode=CA&pageToken=P3", "Chain 3", "P4");
    yt_route("regionCode=CA&pageToken=P4", "Chain 4", "P5");
    snprintf(p.geo, sizeof p.geo, "CA");
    p.limit = 20;
    fixture_server_reset_hits(srv);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[3].title, "Chain 3");
    assert_int_equal(fixture_server_hits(srv, vids), 4);
    source_topics_clear(&l);

    /* a token that repeats: two pages, then stop */
    yt_route("regionCode=DE", "Repeat 0", "R");
    yt_route("regionCode=DE&pageToken=R", "Repeat 1", "R");
    snprintf(p.geo, sizeof p.geo, "DE");
    fixture_server_reset_hits(srv);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(fixture_server_hits(srv, vids), 2);
    source_topics_clear(&l);

    /* a token that is not a plain token is not followed (nor put in a URL) */
    yt_route("regionCode=FR", "Odd token", "a&key=STOLEN");
    snprintf(p.geo, sizeof p.geo, "FR");
    fixture_server_reset_hits(srv);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(fixture_server_hits(srv, vids), 1);
    source_topics_clear(&l);

    /* page 2 over quota: page 1's topics are kept */
    struct fixture_route jp1 = {.path = vids, .query = "regionCode=JP",
                                .file = "youtube_mostpopular_page1.json"};
    struct fixture_route jp2 = {.path = vids, .query = "regionCode=JP&pageToken=CAUQAA",
                                .status = 403, .file = "hazards/youtube_error_quota_exceeded_403.json"};
    assert_int_equal(fixture_server_add(srv, &jp1), 0);
    assert_int_equal(fixture_server_add(srv, &jp2), 0);
    snprintf(p.geo, sizeof p.geo, "JP");
    fixture_server_reset_hits(srv);
    assert_int_equal(fetch_src("youtube", &p, &m, &l, &e), 0);
    assert_int_equal(l.n, 5);
    assert_string_equal(l.v[0].title, p1.v[0].title);
    assert_int_equal(fixture_server_hits(srv, vids), 2);
    source_topics_clear(&l);
    /* but a failing first page is still an error */
    struct fixture_route it = {.path = vids, .query = "regionCode=IT", .status = 403,
                               .file = "hazards/youtube_error_quota_exceeded_403.json"};
    assert_int_equal(fixture_server_add(srv, &it), 0);
    snprintf(p.geo, sizeof p.geo, "IT");
    assert_true(fetch_src("youtube", &p, &m, &l, &e) < 0);
    assert_non_null(strstr(e.msg, "quotaExceeded"));
    assert_int_equal(l.n, 0);

    source_topics_clear(&p1);
    source_topics_clear(&p2);
    unsetenv("TRENDSTORY_YOUTUBE_API_KEY");
}

static void test_json_hazards(void **state)
{
    (void)state;
    NEED_DATA();
    static const struct {
        const char *file;
        enum source_id id;
        const char *expect; /* "!" + error fragment, or a title */
    } cases[] = {
        {"hazards/json_big_numbers.json", SOURCE_WIKIPEDIA, "!"},
        {"hazards/json_bom_prefixed_newsapi.json", SOURCE_NEWSAPI,
         "China Signs Asia Trade Deal. Will Biden Follow?"},
        {"hazards/json_deep_nesting_100000.json", SOURCE_NEWSAPI, "!deeper"},
        {"hazards/json_duplicate_keys.json", SOURCE_NEWSAPI, "!newsapi"},
        {"hazards/json_empty_results.json", SOURCE_NEWSAPI, "!none usable"},
        {"hazards/json_invalid_utf8_in_string.json", SOURCE_NEWSAPI, "!"},
        {"hazards/json_missing_fields_youtube.json", SOURCE_YOUTUBE, "!none usable"},
        {"hazards/json_nan_literal.json", SOURCE_WIKIPEDIA, "!"},
        {"hazards/json_truncated_youtube.json", SOURCE_YOUTUBE, "!"},
        {"hazards/json_wrong_types_reddit.json", SOURCE_HACKERNEWS, "!hits"},
        {"hazards/newsapi_error_apikeyinvalid_401.json", SOURCE_NEWSAPI, "!apiKeyInvalid"},
        {"hazards/newsapi_error_ratelimited_429.json", SOURCE_NEWSAPI, "!rateLimited"},
        {"hazards/reddit_error_429.json", SOURCE_HACKERNEWS, "!hits"},
        {"hazards/wikimedia_error_404_no_data.json", SOURCE_WIKIPEDIA, "!articles"},
        {"hazards/youtube_error_quota_exceeded_403.json", SOURCE_YOUTUBE, "!items"},
        {"hazards/hn_item_null.json", SOURCE_HACKERNEWS, "!"},
        {"youtube_error_keyinvalid_400.json", SOURCE_YOUTUBE, "!items"},
        {"youtube_mostpopular_page2.json", SOURCE_YOUTUBE,
         "Customizing 8 Apple Watches\xE2\x8C\x9A\xEF\xB8\x8F\xF0\x9F\x92\xA6Then Giving Them Away!!"},
        {"google_news_rss_topstories_US_2020-09-26_1item.xml", SOURCE_RSS,
         "Maher rips Barrett, Trump's expected Supreme Court pick: 'She's a f---ing nut' - Fox News"},
    };
    struct source_params p = {.limit = 20, .project = "en.wikipedia"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *b = slurp(cases[i].file, &len);
        struct topic_list l;
        struct err e = {0};
        int rc = source_parse(cases[i].id, b, len, NULL, &p, &l, &e);
        if (cases[i].expect[0] == '!') {
            if (rc == 0 || !strstr(e.msg, cases[i].expect + 1))
                print_message("%s: rc %d '%s'\n", cases[i].file, rc, e.msg);
            assert_true(rc < 0);
            assert_int_equal(l.n, 0);
            assert_true(e.msg[0] != 0);
            assert_non_null(strstr(e.msg, cases[i].expect + 1));
        } else {
            if (rc != 0) print_message("%s: %s\n", cases[i].file, e.msg);
            assert_int_equal(rc, 0);
            check_list(&l, source_name(cases[i].id));
            assert_non_null(find(&l, cases[i].expect));
        }
        source_topics_clear(&l);
        free(b);
    }
    /* Firebase items that are not topics are skipped, not errors. */
    static const char *const skip[] = {"hazards/hn_item_dead_no_title.json",
                                       "hazards/hn_item_deleted.json", "hazards/hn_item_null.json",
                                       "hn_item_comment_2921983.json",
                                       "hn_item_pollopt_160705.json"};
    for (size_t i = 0; i < sizeof skip / sizeof skip[0]; i++) {
        size_t len;
        char *b = slurp(skip[i], &len);
        struct topic_list l = {0};
        struct err e = {0};
        assert_int_equal(source_parse_hn_item(b, len, &l, 10, &e), 0);
        assert_int_equal(l.n, 0);
        free(b);
    }
}

static void test_params_and_keys(void **state)
{
    (void)state;
    assert_int_equal(source_lookup("google"), SOURCE_GOOGLE);
    assert_int_equal(source_lookup("newsapi"), SOURCE_NEWSAPI);
    assert_int_equal(source_lookup("reddit"), -1);
    struct err e = {0};
    struct source_params a = {.geo = "gb", .url = "ignored"}, b = {.geo = "GB"};
    assert_int_equal(source_params_check(SOURCE_GOOGLE, &a, &e), 0);
    assert_int_equal(source_params_check(SOURCE_GOOGLE, &b, &e), 0);
    char ka[2048], kb[2048];
    source_key(SOURCE_GOOGLE, &a, ka, sizeof ka);
    source_key(SOURCE_GOOGLE, &b, kb, sizeof kb);
    assert_string_equal(ka, kb);
    b.limit = 5;
    source_key(SOURCE_GOOGLE, &b, kb, sizeof kb);
    assert_string_not_equal(ka, kb);
    struct source_params c = {.limit = 1000};
    assert_int_equal(source_params_check(SOURCE_HACKERNEWS, &c, &e), ERR_INVALID);
    struct source_params d = {.mode = "scrape"};
    assert_int_equal(source_params_check(SOURCE_HACKERNEWS, &d, &e), ERR_INVALID);
    struct source_params r = {0};
    assert_int_equal(source_params_check(SOURCE_RSS, &r, &e), ERR_INVALID);
    assert_non_null(strstr(e.msg, "url"));
    struct source_params n = {.category = "gossip"};
    assert_int_equal(source_params_check(SOURCE_NEWSAPI, &n, &e), ERR_INVALID);

    char red[256];
    fetch_redact_url("https://x.test/v?part=a&key=SECRET&apiKey=S2&q=1", red, sizeof red);
    assert_string_equal(red, "https://x.test/v?part=a&key=***&apiKey=***&q=1");
    assert_int_equal(fetch_parse_retry_after("120", 0), 120);
    assert_int_equal(fetch_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412000), 480);
    assert_int_equal(fetch_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1700000000), 0);
    assert_int_equal(fetch_parse_retry_after("soon", 0), -1);
    assert_int_equal(fetch_parse_retry_after("99999999", 0), 86400);
}

/* Runs the `trends` subcommand with stdout captured into out[n]; returns its status. */
static int run_cli(char **argv, int argc, char *out, size_t n)
{
    char path[] = "/tmp/trends_cli_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(fd, 1);
    int rc = trends_cli_main(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    ssize_t k = read(fd, out, n - 1);
    out[k > 0 ? k : 0] = 0;
    close(fd);
    unlink(path);
    return rc;
}

static void test_trends_cli(void **state)
{
    (void)state;
    NEED_DATA();
    static char out[65536];
    char *a1[] = {"trends", "--source", "google", "--geo", "GB", "--limit", "3"};
    assert_int_equal(run_cli(a1, 7, out, sizeof out), 0);
    assert_non_null(strstr(out, " 1.        100  Nvidia  https://www.cnbc.com/"));
    assert_non_null(strstr(out, " 3.        500  nipah virus outbreak latest news"));
    assert_null(strstr(out, " 4. "));

    char url[512];
    snprintf(url, sizeof url, "%s/feeds/generic_rss2_emarley.rss", fixture_server_url(srv));
    char *a2[] = {"trends", "--source", "rss", "--url", url, "--limit", "2", "--json"};
    assert_int_equal(run_cli(a2, 8, out, sizeof out), 0);
    assert_non_null(strstr(out, "[{\"title\":\"UI Automation & screenshots\""));
    assert_non_null(strstr(out, "\"traffic\":null"));
    assert_non_null(strstr(out, "\"source\":\"rss\""));

    char *a3[] = {"trends", "--source", "reddit"};
    assert_int_equal(run_cli(a3, 3, out, sizeof out), 2);
    char *a4[] = {"trends", "--source", "rss"};
    assert_int_equal(run_cli(a4, 3, out, sizeof out), 2);
    char *a5[] = {"trends", "--source", "google", "--limit", "0"};
    assert_int_equal(run_cli(a5, 5, out, sizeof out), 2);
    char *a6[] = {"trends", "--source", "google", "--geo", "ZZ"};
    assert_int_equal(run_cli(a6, 5, out, sizeof out), 1);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_and_keys),
        cmocka_unit_test(test_google_gb),
        cmocka_unit_test(test_google_legacy_double_escaped),
        cmocka_unit_test(test_google_errors),
        cmocka_unit_test(test_hackernews_algolia),
        cmocka_unit_test(test_hackernews_firebase),
        cmocka_unit_test(test_wikipedia),
        cmocka_unit_test(test_youtube),
        cmocka_unit_test(test_youtube_pages),
        cmocka_unit_test(test_newsapi),
        cmocka_unit_test(test_generic_feeds),
        cmocka_unit_test(test_redirects_and_statuses),
        cmocka_unit_test(test_timeout),
        cmocka_unit_test(test_gzip_etag_and_caps),
        cmocka_unit_test(test_xml_hazards_served),
        cmocka_unit_test(test_json_hazards),
        cmocka_unit_test(test_trends_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
