/* Topic text normalization: entities, tags, invisible characters, whitespace, UTF-8
 * validity and capping, fold keys, dates. */
#include <stdlib.h>
#include <string.h>

#include "story/text.h"
#include "testutil.h"

static void check_clean(const char *in, unsigned flags, size_t cap, const char *want)
{
    char *got = text_clean(in, strlen(in), flags, cap);
    assert_non_null(got);
    if (strcmp(got, want) != 0) print_message("in  '%s'\ngot '%s'\nwant '%s'\n", in, got, want);
    assert_string_equal(got, want);
    assert_true(utf8_valid(got, strlen(got)));
    free(got);
}

#define ALL (TEXT_ENTITIES | TEXT_TAGS)

static void test_entities(void **state)
{
    (void)state;
    check_clean("Tom &amp; Jerry", TEXT_ENTITIES, 0, "Tom & Jerry");
    check_clean("&lt;b&gt;bold&lt;/b&gt;", TEXT_ENTITIES, 0, "<b>bold</b>");
    check_clean("it&#39;s &#x27;quoted&#X27;", TEXT_ENTITIES, 0, "it's 'quoted'");
    check_clean("Caf&eacute; &mdash; na&iuml;ve &hellip;", TEXT_ENTITIES, 0,
                "Caf\xC3\xA9 \xE2\x80\x94 na\xC3\xAFve \xE2\x80\xA6");
    check_clean("&#128512;", TEXT_ENTITIES, 0, "\xF0\x9F\x98\x80");
    /* HTML5: &#146; is windows-1252's right quote; invalid code points become U+FFFD. */
    check_clean("don&#146;t", TEXT_ENTITIES, 0, "don\xE2\x80\x99t");
    check_clean("a&#0;b &#xD800; &#1114112;", TEXT_ENTITIES, 0,
                "a\xEF\xBF\xBD" "b \xEF\xBF\xBD \xEF\xBF\xBD");
    /* Unknown names, no ';', stray '&' stay as written. */
    check_clean("AT&T &bogus; &amp &#12 x & y", TEXT_ENTITIES, 0, "AT&T &bogus; &amp &#12 x & y");
    /* Double escaping: once leaves one level, TWICE removes both. */
    check_clean("Women&amp;#39;s &amp;quot;Cup&amp;quot;", TEXT_ENTITIES, 0,
                "Women&#39;s &quot;Cup&quot;");
    check_clean("Women&amp;#39;s &amp;quot;Cup&amp;quot;", TEXT_ENTITIES | TEXT_ENTITIES_TWICE, 0,
                "Women's \"Cup\"");
    check_clean("Caf&eacute;", 0, 0, "Caf&eacute;"); /* no flag: untouched */
    /* Never longer than the input, in place. */
    char buf[] = "&lt;&gt;&amp;&#65;&#x10FFFF;";
    size_t n = text_decode_entities(buf);
    assert_int_equal(n, strlen(buf));
    assert_string_equal(buf, "<>&A\xF4\x8F\xBF\xBF");
}

static void test_tags(void **state)
{
    (void)state;
    check_clean("<b>2019 Women's World Cup</b> scores", ALL, 0, "2019 Women's World Cup scores");
    check_clean("<p>one</p><p>two</p>", ALL, 0, "one two");
    check_clean("fo<b>o</b>bar", ALL, 0, "foobar");
    check_clean("a <a href=\"x>y\">link</a> b", ALL, 0, "a link b");
    check_clean("x<script>alert('<b>')</script>y<style>p{}</style>z", ALL, 0, "x y z");
    check_clean("keep 1 < 2 and 3 > 2", ALL, 0, "keep 1 < 2 and 3 > 2");
    check_clean("before<!-- hidden <b> -->after", ALL, 0, "before after");
    check_clean("unclosed <b tag", ALL, 0, "unclosed <b tag");
    /* Escaped markup becomes markup after decoding, then is stripped. */
    check_clean("&lt;b&gt;Bold&lt;/b&gt; news", ALL, 0, "Bold news");
    check_clean("<br/>line<br />two", ALL, 0, "line two");
}

static void test_invisible_and_whitespace(void **state)
{
    (void)state;
    check_clean("  lots \t of\r\n\n space  ", 0, 0, "lots of space");
    check_clean("bell\x07 esc\x1b del\x7f", 0, 0, "bell esc del");
    check_clean("zero\xE2\x80\x8Bwidth\xEF\xBB\xBF joiner\xE2\x81\xA0", 0, 0, "zerowidth joiner");
    check_clean("bidi \xE2\x80\xAEreversed\xE2\x80\xAC", 0, 0, "bidi reversed");
    check_clean("soft\xC2\xADhyphen", 0, 0, "softhyphen");
    check_clean("nb\xC2\xA0sp\xE3\x80\x80ideo\xE2\x80\xA8line", 0, 0, "nb sp ideo line");
    check_clean("c1\xC2\x85next\xC2\x9B" "csi", 0, 0, "c1 nextcsi");
    check_clean("&nbsp;&nbsp;padded&#8203;&nbsp;", TEXT_ENTITIES, 0, "padded");
    /* Emoji sequences keep their ZWJ and variation selector. */
    check_clean("family \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 ok \xE2\x8C\x9A\xEF\xB8\x8F", 0,
                0, "family \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9 ok \xE2\x8C\x9A\xEF\xB8\x8F");
    /* NUL bytes inside the input are spaces, not terminators. */
    char *t = text_clean("a\0b", 3, 0, 0);
    assert_string_equal(t, "a b");
    free(t);
    check_clean("", ALL, 0, "");
    check_clean("<b></b> &nbsp; ", ALL, 0, "");
    t = text_clean(NULL, 5, ALL, 10);
    assert_string_equal(t, "");
    free(t);
}

static void test_utf8(void **state)
{
    (void)state;
    static const char good[] = "J\xC3\xBCrgen \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80";
    assert_true(utf8_valid(good, sizeof good - 1));
    assert_false(utf8_valid("\xC3(", 2));          /* bad continuation */
    assert_false(utf8_valid("\xC0\xAF", 2));       /* overlong '/' */
    assert_false(utf8_valid("\xE0\x80\xAF", 3));   /* overlong, 3 bytes */
    assert_false(utf8_valid("\xED\xA0\x80", 3));   /* surrogate */
    assert_false(utf8_valid("\xF4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(utf8_valid("caf\xC3", 4));        /* truncated */
    assert_false(utf8_valid("\xFF", 1));
    size_t n;
    char *r = text_utf8_repair("a\xC3(b\xC0\xAF" "c\xE2\x82", 9, &n);
    assert_string_equal(r, "a\xEF\xBF\xBD(b\xEF\xBF\xBD\xEF\xBF\xBD" "c\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_int_equal(n, strlen(r));
    assert_true(utf8_valid(r, n));
    free(r);
    check_clean("J\xFCrgen", 0, 0, "J\xEF\xBF\xBDrgen");

    /* Capping never splits a character and trims a trailing space. */
    check_clean("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 0, 7, "\xE6\x97\xA5\xE6\x9C\xAC");
    check_clean("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 0, 6, "\xE6\x97\xA5\xE6\x9C\xAC");
    check_clean("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", 0, 5, "\xE6\x97\xA5");
    check_clean("ab cd", 0, 3, "ab");
    check_clean("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 0, 7, "\xF0\x9F\x98\x80");
    assert_int_equal(utf8_cap("ab\xC3\xA9", 4, 3), 2);
    assert_int_equal(utf8_cap("ab\xC3\xA9", 4, 10), 4);

    char out[4];
    uint32_t cp;
    for (uint32_t c = 1; c < 0x110000; c += 97) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        size_t k = utf8_encode(c, out);
        assert_int_equal(utf8_decode((const unsigned char *)out, k, &cp), k);
        assert_int_equal(cp, c);
    }
}

static void test_fold_key(void **state)
{
    (void)state;
    static const char *const same[][2] = {
        {"Nvidia", "NVIDIA"},
        {"  Frankie   Dettori ", "frankie dettori"},
        {"\"Nvidia!\"", "nvidia"},
        {"J\xC3\x9CRGEN KLOPP", "j\xC3\xBCrgen klopp"},
        {"\xCE\x91\xCE\xB8\xCE\xAE\xCE\xBD\xCE\xB1", "\xCE\xB1\xCE\xB8\xCE\xAE\xCE\xBD\xCE\xB1"},
        {"\xD0\x9C\xD0\x9E\xD0\xA1\xD0\x9A\xD0\x92\xD0\x90", "\xD0\xBC\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0"},
        {"\xC5\x81\xC3\xB3" "d\xC5\xBA", "\xC5\x82\xC3\xB3" "d\xC5\xBA"},
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        char *a = text_fold_key(same[i][0]), *b = text_fold_key(same[i][1]);
        if (strcmp(a, b) != 0) print_message("'%s' vs '%s'\n", a, b);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
    char *a = text_fold_key("C#"), *b = text_fold_key("C");
    assert_string_not_equal(a, b); /* '#' is kept */
    free(a);
    free(b);
    a = text_fold_key("!!!");
    assert_string_equal(a, "!!!");
    free(a);
    a = text_fold_key("\xE6\x97\xA5\xE6\x9C\xAC");
    assert_string_equal(a, "\xE6\x97\xA5\xE6\x9C\xAC");
    free(a);
}

static void test_dates(void **state)
{
    (void)state;
    assert_int_equal(text_parse_date("Mon, 2 Feb 2026 19:00:00 -0800"), 1770087600);
    assert_int_equal(text_parse_date("Sat, 26 Sep 2020 05:04:18 GMT"), 1601096658);
    assert_int_equal(text_parse_date("Mon, 10 Jun 2019 22:00:00 -0700"), 1560229200);
    assert_int_equal(text_parse_date("10 Jun 2019 22:00 PDT"), 1560229200);
    assert_int_equal(text_parse_date("Tue, 07 Sep 2021 02:47:57 +0200"), 1630975677);
    assert_int_equal(text_parse_date("2019-11-29T20:00:11.000Z"), 1575057611);
    assert_int_equal(text_parse_date("2014-10-05T01:28:05.849-07:00"), 1412497685);
    assert_int_equal(text_parse_date("2017-04-07T12:20:50+10:30"), 1491529850);
    assert_int_equal(text_parse_date("2015-10-10"), 1444435200);
    assert_int_equal(text_parse_date("  2020-11-15T07:05:00Z"), 1605423900);
    assert_int_equal(text_parse_date("yesterday"), 0);
    assert_int_equal(text_parse_date(""), 0);
    assert_int_equal(text_parse_date(NULL), 0);
    assert_int_equal(text_parse_date("32 Foo 2020 10:00:00 GMT"), 0);
    assert_int_equal(text_parse_date("2020-13-45T99:99:99Z"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_tags),
        cmocka_unit_test(test_invisible_and_whitespace),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_fold_key),
        cmocka_unit_test(test_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
