/* RSS / Atom parsing: formats, encodings, repairs and refusals, then every recorded feed
 * and every hazard file from ../shared/data/trends parsed directly. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "story/feeds.h"
#include "story/text.h"
#include "testutil.h"

static struct feeds_doc *parse(const char *s, struct err *e)
{
    memset(e, 0, sizeof *e);
    return feeds_parse(s, strlen(s), NULL, NULL, e);
}

static void expect_error(const char *doc, const char *fragment)
{
    struct err e;
    struct feeds_doc *d = parse(doc, &e);
    if (d || !strstr(e.msg, fragment)) print_message("doc: %.80s\nmsg: %s\n", doc, e.msg);
    assert_null(d);
    assert_non_null(strstr(e.msg, fragment));
}

static void test_rss2(void **state)
{
    (void)state;
    static const char doc[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<rss version=\"2.0\" xmlns:ht=\"https://trends.google.com/trending/rss\" "
        "xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:media=\"http://search.yahoo.com/mrss/\">"
        "<channel><title>Chan &amp; nel</title><link>http://x.test/</link>"
        "<item><title> First </title><link>http://x.test/1</link>"
        "<pubDate>Mon, 2 Feb 2026 19:00:00 -0800</pubDate><ht:approx_traffic>20K+</ht:approx_traffic>"
        "<media:title>not the title</media:title>"
        "<ht:news_item><ht:news_item_title>n</ht:news_item_title>"
        "<ht:news_item_url>https://news.test/a</ht:news_item_url></ht:news_item>"
        "<ht:news_item><ht:news_item_url>https://news.test/b</ht:news_item_url></ht:news_item>"
        "<description><![CDATA[<p>Hello & <b>bye</b></p>]]></description></item>"
        "<item><title>Second</title><guid>https://x.test/guid2</guid><dc:date>2020-01-02</dc:date></item>"
        "<item><description>only a description</description><guid isPermaLink=\"false\">abc</guid></item>"
        "</channel></rss>";
    struct err e;
    struct feeds_doc *d = parse(doc, &e);
    assert_non_null(d);
    assert_int_equal(d->kind, FEEDS_RSS);
    assert_string_equal(d->title, "Chan & nel");
    assert_int_equal(d->n_items, 3);
    assert_false(d->repaired);
    assert_string_equal(d->items[0].title, "First");
    assert_string_equal(d->items[0].link, "http://x.test/1");
    assert_string_equal(d->items[0].published, "Mon, 2 Feb 2026 19:00:00 -0800");
    assert_string_equal(d->items[0].traffic, "20K+");
    assert_string_equal(d->items[0].news_url, "https://news.test/a");
    assert_string_equal(d->items[0].summary, "<p>Hello & <b>bye</b></p>");
    assert_string_equal(d->items[1].link, "https://x.test/guid2"); /* guid stands in */
    assert_string_equal(d->items[1].published, "2020-01-02");
    assert_string_equal(d->items[2].title, "");
    assert_string_equal(d->items[2].link, ""); /* a non-URL guid does not */
    assert_string_equal(d->items[2].summary, "only a description");
    feeds_doc_free(d);
}

static void test_atom_and_rdf(void **state)
{
    (void)state;
    static const char atom[] =
        "<feed xmlns=\"http://www.w3.org/2005/Atom\"><title type=\"text\">A feed</title>"
        "<entry><title type=\"html\">&lt;b&gt;Bold&lt;/b&gt; entry</title>"
        "<link rel=\"replies\" href=\"http://x.test/comments\"/>"
        "<link rel=\"alternate\" type=\"text/html\" href=\"http://x.test/post\"/>"
        "<published>2014-10-05T01:28:05.849-07:00</published><updated>2015-01-01T00:00:00Z</updated>"
        "<content type=\"xhtml\"><div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Body <i>text</i></p></div></content>"
        "</entry></feed>";
    struct err e;
    struct feeds_doc *d = parse(atom, &e);
    assert_non_null(d);
    assert_int_equal(d->kind, FEEDS_ATOM);
    assert_string_equal(d->title, "A feed");
    assert_int_equal(d->n_items, 1);
    assert_string_equal(d->items[0].title, "<b>Bold</b> entry");
    assert_string_equal(d->items[0].link, "http://x.test/post");
    assert_string_equal(d->items[0].published, "2014-10-05T01:28:05.849-07:00");
    assert_string_equal(d->items[0].summary, "Body text");
    feeds_doc_free(d);

    static const char rdf[] =
        "<?xml version=\"1.0\"?><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\" "
        "xmlns=\"http://purl.org/rss/1.0/\"><channel><title>RDF chan</title></channel>"
        "<item><title>R1</title><link>http://r.test/1</link></item>"
        "<item><title>R2</title><link>http://r.test/2</link></item></rdf:RDF>";
    d = parse(rdf, &e);
    assert_non_null(d);
    assert_int_equal(d->kind, FEEDS_RDF);
    assert_string_equal(d->title, "RDF chan");
    assert_int_equal(d->n_items, 2);
    assert_string_equal(d->items[1].link, "http://r.test/2");
    feeds_doc_free(d);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_error("", "empty body");
    expect_error(" \n\t ", "empty body");
    expect_error("{\"rss\":1}", "JSON");
    expect_error("<!doctype html><html><head><title>Oops &amp; co</title></head></html>",
                 "HTML page ('Oops & co')");
    expect_error("<HTML><body>x</body></HTML>", "HTML page");
    expect_error("plain text", "not XML");
    expect_error("<html-ish/>", "not an RSS or Atom feed");
    expect_error("<opml><body/></opml>", "root element is <opml>");
    /* Entity declarations in any form. */
    expect_error("<!DOCTYPE rss [<!ENTITY a \"aaaa\">]><rss><channel><title>&a;</title></channel></rss>",
                 "refused");
    expect_error("<!DOCTYPE rss [<!ENTITY % p SYSTEM \"file:///etc/passwd\"> %p;]><rss/>", "refused");
    /* A DOCTYPE naming an external DTD parses, and the DTD is never read. */
    struct err e;
    struct feeds_doc *d = parse("<!DOCTYPE rss SYSTEM \"file:///etc/passwd\">"
                                "<rss><channel><title>t</title><item><title>x &amp; y</title></item>"
                                "</channel></rss>",
                                &e);
    assert_non_null(d);
    assert_int_equal(d->n_items, 1);
    assert_string_equal(d->items[0].title, "x & y");
    feeds_doc_free(d);
    d = parse("<!DOCTYPE rss SYSTEM \"file:///etc/passwd\"><rss><channel><item><title>&pwd;</title>"
              "</item></channel></rss>",
              &e);
    if (d) {
        assert_null(strstr(d->items[0].title, "root"));
        feeds_doc_free(d);
    } else {
        assert_true(e.msg[0] != 0);
    }
    /* Well-formedness errors carry line and column. */
    expect_error("<rss>\n<channel><title>a</channel></rss>", "line 2, column");
}

static void test_limits(void **state)
{
    (void)state;
    /* Depth. */
    char deep[4096] = "<rss><channel>";
    for (int i = 0; i < 40; i++) strcat(deep, "<x>");
    strcat(deep, "</rss>");
    expect_error(deep, "deeper than 32");
    struct feeds_limits lim = {.max_depth = 4};
    struct err e = {0};
    const char *four = "<rss><channel><item><title><b>t</b></title></item></channel></rss>";
    assert_null(feeds_parse(four, strlen(four), NULL, &lim, &e));
    assert_non_null(strstr(e.msg, "deeper than 4"));
    lim.max_depth = 5;
    struct feeds_doc *d = feeds_parse(four, strlen(four), NULL, &lim, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "t");
    feeds_doc_free(d);

    /* Items and fields are capped; bytes over the limit are refused up front. */
    char *many = malloc(200000);
    strcpy(many, "<rss><channel>");
    for (int i = 0; i < 1000; i++) {
        char it[64];
        snprintf(it, sizeof it, "<item><title>t%d</title></item>", i);
        strcat(many, it);
    }
    strcat(many, "<item><title>");
    for (int i = 0; i < 5000; i++) strcat(many, "long ");
    strcat(many, "</title></item></channel></rss>");
    struct feeds_limits l2 = {.max_items = 10, .max_field = 100};
    d = feeds_parse(many, strlen(many), NULL, &l2, &e);
    assert_non_null(d);
    assert_int_equal(d->n_items, 10);
    assert_string_equal(d->items[9].title, "t9");
    feeds_doc_free(d);
    struct feeds_limits l3 = {.max_field = 100};
    d = feeds_parse(many, strlen(many), NULL, &l3, &e);
    assert_non_null(d);
    assert_int_equal(d->n_items, FEEDS_MAX_ITEMS_DEFAULT);
    feeds_doc_free(d);
    struct feeds_limits l4 = {.max_bytes = 1000};
    assert_null(feeds_parse(many, strlen(many), NULL, &l4, &e));
    assert_non_null(strstr(e.msg, "over the 1000-byte limit"));
    free(many);
}

static void test_encodings(void **state)
{
    (void)state;
    struct err e;
    /* ISO-8859-1, windows-1252, GB2312 declared: transcoded with iconv. */
    static const char latin1[] = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"
                                 "<rss><channel><item><title>J\xFCrgen caf\xE9</title></item></channel></rss>";
    struct feeds_doc *d = parse(latin1, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "J\xC3\xBCrgen caf\xC3\xA9");
    feeds_doc_free(d);
    static const char cp1252[] = "<?xml version='1.0' encoding='windows-1252'?>"
                                 "<rss><channel><item><title>\x93quoted\x94 \x80</title></item></channel></rss>";
    d = parse(cp1252, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "\xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC");
    feeds_doc_free(d);
    static const char gb[] = "<?xml version=\"1.0\" encoding=\"gb2312\"?>"
                             "<rss><channel><item><title>\xD6\xD0\xCE\xC4 news</title></item></channel></rss>";
    d = parse(gb, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "\xE4\xB8\xAD\xE6\x96\x87 news");
    feeds_doc_free(d);
    /* UTF-16LE with a BOM. */
    static const char u16[] = "\xFF\xFE<\0r\0s\0s\0>\0<\0i\0t\0e\0m\0>\0<\0t\0i\0t\0l\0e\0>\0"
                              "\xE9\0t\0\xE9\0<\0/\0t\0i\0t\0l\0e\0>\0<\0/\0i\0t\0e\0m\0>\0<\0/\0r\0s\0s\0>\0";
    d = feeds_parse(u16, sizeof u16 - 1, NULL, NULL, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "\xC3\xA9t\xC3\xA9");
    feeds_doc_free(d);
    /* No declaration: the Content-Type charset decides. */
    static const char nodecl[] = "<rss><channel><item><title>na\xEFve</title></item></channel></rss>";
    d = feeds_parse(nodecl, strlen(nodecl), "application/rss+xml; charset=ISO-8859-1", NULL, &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "na\xC3\xAFve");
    feeds_doc_free(d);
    /* Unknown encodings are refused by name. */
    expect_error("<?xml version=\"1.0\" encoding=\"x-klingon\"?><rss/>", "x-klingon");
    /* Mislabeled: UTF-8 declared, valid UTF-8 elsewhere, one bad byte -> U+FFFD. */
    d = parse("<rss><channel><item><title>\xC3\xA9 and \xE9</title></item></channel></rss>", &e);
    assert_non_null(d);
    assert_true(d->repaired);
    assert_string_equal(d->items[0].title, "\xC3\xA9 and \xEF\xBF\xBD");
    feeds_doc_free(d);
}

static void test_repairs(void **state)
{
    (void)state;
    struct err e;
    struct feeds_doc *d = parse("\xEF\xBB\xBF\n\n  <?xml version=\"1.0\"?><rss><channel><item>"
                                "<title>Caf&eacute;&nbsp;&amp; AT&T &#169; &unknownent;x</title>"
                                "<link>http://a.test/?a=1&b=2</link></item></channel></rss>",
                                &e);
    /* &unknownent; is neither XML nor HTML: expat refuses it. */
    assert_null(d);
    assert_non_null(strstr(e.msg, "undefined entity"));
    d = parse("\xEF\xBB\xBF\n\n  <?xml version=\"1.0\"?><rss><channel><item>"
              "<title>Caf&eacute;&nbsp;&amp; AT&T &#169;\x01</title>"
              "<link>http://a.test/?a=1&b=2</link>"
              "<description><![CDATA[a & b &eacute;]]></description></item></channel></rss>",
              &e);
    assert_non_null(d);
    assert_true(d->repaired);
    assert_string_equal(d->items[0].title, "Caf\xC3\xA9\xC2\xA0& AT&T \xC2\xA9");
    assert_string_equal(d->items[0].link, "http://a.test/?a=1&b=2");
    assert_string_equal(d->items[0].summary, "a & b &eacute;"); /* CDATA is left as it is */
    feeds_doc_free(d);
    /* References to characters XML forbids become U+FFFD; a broken one is escaped. */
    d = parse("<rss><channel><item><title>a&#1;b&#xFFFE;c&#65;&#12ab;</title></item></channel></rss>",
              &e);
    assert_non_null(d);
    assert_string_equal(d->items[0].title, "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "cA&#12ab;");
    feeds_doc_free(d);
}

/* Every recorded feed parses with items; every hazard gives a document or a message. */
static void test_all_fixture_files(void **state)
{
    (void)state;
    char dir[1024];
    test_data_path(dir, sizeof dir, "trends");
    TEST_REQUIRE_PATH(dir);
    static const char *const subdirs[] = {"", "hazards/"};
    int parsed = 0, refused = 0;
    for (size_t s = 0; s < 2; s++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, subdirs[s]);
        DIR *dp = opendir(path);
        assert_non_null(dp);
        struct dirent *de;
        while ((de = readdir(dp)) != NULL) {
            const char *n = de->d_name;
            size_t l = strlen(n);
            bool xmlish = (l > 4 && (strcmp(n + l - 4, ".xml") == 0 || strcmp(n + l - 4, ".rss") == 0)) ||
                          (l > 5 && (strcmp(n + l - 5, ".atom") == 0 || strcmp(n + l - 5, ".html") == 0));
            bool json = l > 5 && strcmp(n + l - 5, ".json") == 0;
            if (!xmlish && !json) continue;
            char fp[1400];
            snprintf(fp, sizeof fp, "%s%s", path, n);
            FILE *f = fopen(fp, "rb");
            assert_non_null(f);
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            rewind(f);
            char *buf = malloc((size_t)sz + 1);
            assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
            fclose(f);
            struct err e = {0};
            struct feeds_doc *d = feeds_parse(buf, (size_t)sz, NULL, NULL, &e);
            if (d) {
                parsed++;
                for (size_t i = 0; i < d->n_items; i++) {
                    assert_true(utf8_valid(d->items[i].title, strlen(d->items[i].title)));
                    assert_null(strstr(d->items[i].title, "root:x:0"));
                }
                if (s == 0 && xmlish) assert_true(d->n_items > 0);
                feeds_doc_free(d);
            } else {
                refused++;
                assert_true(e.msg[0] != 0);
                /* Real feeds must parse; JSON is never a feed. */
                if (s == 0 && xmlish) print_message("%s: %s\n", n, e.msg);
                assert_false(s == 0 && xmlish);
                if (json) assert_non_null(strstr(e.msg, "JSON") ? e.msg : strstr(e.msg, "XML"));
            }
            free(buf);
        }
        closedir(dp);
    }
    assert_true(parsed >= 11);
    assert_true(refused >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss2),
        cmocka_unit_test(test_atom_and_rdf),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_encodings),
        cmocka_unit_test(test_repairs),
        cmocka_unit_test(test_all_fixture_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
