/* MovieLens ingest, the dataset split and the dataset artifact. Small crafted files of every
 * layout are written into a temporary folder; the real releases in ../shared/data are read when
 * present. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "engine/gguf.h"
#include "recsys/data_cli.h"
#include "recsys/dataset.h"
#include "base/utf8.h"
#include "recsys/movielens.h"
#include "testutil.h"

/* ---- helpers ---- */

static void write_file(const char *dir, const char *name, const char *text, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    write_file(dir, name, text, strlen(text));
}

static void write_gz(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, text, (unsigned)strlen(text)), (int)strlen(text));
    gzclose(g);
}

static const struct movielens_cfg quiet_cfg = {0};

/* Dense id of a source movie id, or 0. */
static uint32_t item_of(const struct rec_dataset *d, uint32_t orig)
{
    for (uint32_t i = 1; i <= d->n_items; i++)
        if (d->item_orig[i] == orig) return i;
    return 0;
}

static uint32_t user_of(const struct rec_dataset *d, uint32_t orig)
{
    for (uint32_t u = 0; u < d->n_users; u++)
        if (d->user_orig[u] == orig) return u;
    return UINT32_MAX;
}

/* Source movie ids of user u's sequence, for comparisons. */
static void seq_orig(const struct rec_dataset *d, uint32_t u, uint32_t *out, size_t max, size_t *n)
{
    *n = 0;
    for (uint64_t k = d->user_off[u]; k < d->user_off[u + 1] && *n < max; k++)
        out[(*n)++] = d->item_orig[d->seq[k]];
}

static bool any_report(const struct movielens_report *r, const char *needle)
{
    for (uint32_t k = 0; k < r->n_reports; k++)
        if (strstr(r->reports[k], needle)) return true;
    return false;
}

/* ---- line parsers ---- */

static void test_csv_split(void **state)
{
    (void)state;
    char buf[256], why[128];
    struct movielens_field f[8];
    const char *l1 = "11,\"American President, The (1995)\",Comedy|Drama";
    int n = movielens_csv_split(l1, strlen(l1), buf, sizeof buf, f, 8, why, sizeof why);
    assert_int_equal(n, 3);
    assert_string_equal(f[0].ptr, "11");
    assert_string_equal(f[1].ptr, "American President, The (1995)");
    assert_int_equal(f[1].len, strlen("American President, The (1995)"));
    assert_string_equal(f[2].ptr, "Comedy|Drama");

    const char *l2 = "5,\"He said \"\"hi\"\", twice\",";
    n = movielens_csv_split(l2, strlen(l2), buf, sizeof buf, f, 8, why, sizeof why);
    assert_int_equal(n, 3);
    assert_string_equal(f[1].ptr, "He said \"hi\", twice");
    assert_int_equal(f[2].len, 0);

    const char *l3 = ",,";
    n = movielens_csv_split(l3, strlen(l3), buf, sizeof buf, f, 8, why, sizeof why);
    assert_int_equal(n, 3);

    const char *bad1 = "1,\"never closed,Drama";
    assert_int_equal(
        movielens_csv_split(bad1, strlen(bad1), buf, sizeof buf, f, 8, why, sizeof why), -1);
    assert_non_null(strstr(why, "unterminated quote"));
    const char *bad2 = "1,\"closed\"junk,Drama";
    assert_int_equal(
        movielens_csv_split(bad2, strlen(bad2), buf, sizeof buf, f, 8, why, sizeof why), -1);
    assert_non_null(strstr(why, "after the closing quote"));
    const char *bad3 = "1,2,3,4,5";
    assert_int_equal(
        movielens_csv_split(bad3, strlen(bad3), buf, sizeof buf, f, 4, why, sizeof why), -1);
    /* a buffer below 2 * len + 2 is refused, not overrun */
    assert_int_equal(movielens_csv_split(l1, strlen(l1), buf, strlen(l1), f, 8, why, sizeof why),
                     -1);
}

static void test_sep_split(void **state)
{
    (void)state;
    struct movielens_field f[4];
    const char *l = "1::Toy Story (1995)::Animation";
    assert_int_equal(movielens_sep_split(l, strlen(l), "::", f, 4), 3);
    assert_int_equal(f[1].len, strlen("Toy Story (1995)"));
    assert_memory_equal(f[1].ptr, "Toy Story (1995)", f[1].len);
    assert_int_equal(movielens_sep_split("a::b::c::d::e", 13, "::", f, 4), -1);
    assert_int_equal(movielens_sep_split("", 0, "::", f, 4), 1);
    assert_int_equal(f[0].len, 0);
}

static void test_parse_year(void **state)
{
    (void)state;
    struct {
        const char *t;
        unsigned y;
    } cases[] = {
        {"Toy Story (1995)", 1995},
        {"Babe Ruth Story, The (1948) ", 1948},
        {"Fawlty Towers (1975-1979)", 1975},
        {"Big Bang Theory, The (2007-)", 2007},
        {"Death Note: Desu n\xc3\xb4to (2006\xe2\x80\x93\x32\x30\x30\x37)", 2006},
        {"Diplomatic Immunity (2009\xe2\x80\x93 )", 2009},
        {"Mona and the Time of Burning Love (Mona ja palavan rakkauden aika) (1983))", 1983},
        {"City of Lost Children, The (Cit\xc3\xa9 des enfants perdus, La) (1995)", 1995},
        {"Babylon 5", 0},
        {"Millions Game, The (Das Millionenspiel)", 0},
        {"Short (95)", 0},
        {"Ancient (1500)", 0},
        {"Far future (2500)", 0},
        {"Middle (1995) then text", 0},
        {"(1995)", 1995},
        {"", 0},
        {")", 0},
        {"(19x5)", 0},
        {"Range junk (1995x)", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned y = movielens_parse_year(cases[k].t, strlen(cases[k].t));
        if (y != cases[k].y) fail_msg("'%s': year %u, expected %u", cases[k].t, y, cases[k].y);
    }
}

static void test_parse_genres(void **state)
{
    (void)state;
    uint32_t unk = 0;
    const char *g1 = "Adventure|Animation|Children|Comedy|Fantasy";
    assert_int_equal(movielens_parse_genres(g1, strlen(g1), &unk),
                     (1u << REC_GENRE_ADVENTURE) | (1u << REC_GENRE_ANIMATION) |
                         (1u << REC_GENRE_CHILDREN) | (1u << REC_GENRE_COMEDY) |
                         (1u << REC_GENRE_FANTASY));
    assert_int_equal(unk, 0);
    const char *g2 = "Children's|Film-Noir|Sci-Fi|IMAX";
    assert_int_equal(movielens_parse_genres(g2, strlen(g2), &unk),
                     (1u << REC_GENRE_CHILDREN) | (1u << REC_GENRE_FILM_NOIR) |
                         (1u << REC_GENRE_SCI_FI) | (1u << REC_GENRE_IMAX));
    const char *g3 = "(no genres listed)";
    assert_int_equal(movielens_parse_genres(g3, strlen(g3), &unk), 0);
    assert_int_equal(unk, 0);
    const char *g4 = "Drama|Telenovela||War";
    assert_int_equal(movielens_parse_genres(g4, strlen(g4), &unk),
                     (1u << REC_GENRE_DRAMA) | (1u << REC_GENRE_WAR));
    assert_int_equal(unk, 1);
    assert_string_equal(rec_genre_name(REC_GENRE_FILM_NOIR), "Film-Noir");
    assert_null(rec_genre_name(REC_GENRE_COUNT));
}

static void test_utf8(void **state)
{
    (void)state;
    char out[64];
    assert_true(utf8_valid("Cit\xc3\xa9", 5));
    assert_false(utf8_valid("Cit\xe9", 4));          /* Latin-1 */
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(utf8_valid("\xe2\x80", 2));         /* truncated */
    assert_int_equal(movielens_to_utf8("Cit\xe9", 4, out, sizeof out), 5);
    assert_string_equal(out, "Cit\xc3\xa9");
    assert_int_equal(movielens_to_utf8("Cit\xc3\xa9", 5, out, sizeof out), 5);
    assert_string_equal(out, "Cit\xc3\xa9");
    /* bounded by cap */
    assert_int_equal(movielens_to_utf8("\xe9\xe9\xe9", 3, out, 4), 2);
}

static void test_parse_rows(void **state)
{
    (void)state;
    struct movielens_rating r;
    char why[160];
    assert_int_equal(
        movielens_parse_rating(MOVIELENS_CSV, "1,31,2.5,1260759144", 19, &r, why, sizeof why), 0);
    assert_int_equal(r.user, 1);
    assert_int_equal(r.item, 31);
    assert_int_equal(r.ts, 1260759144);
    assert_int_equal(
        movielens_parse_rating(MOVIELENS_DAT, "1::1193::5::978300760", 21, &r, why, sizeof why), 0);
    assert_int_equal(r.item, 1193);
    assert_int_equal(
        movielens_parse_rating(MOVIELENS_100K, "196\t242\t3\t881250949", 19, &r, why, sizeof why),
        0);
    assert_int_equal(r.user, 196);
    assert_int_equal(movielens_parse_rating(MOVIELENS_SASREC, "12 7", 4, &r, why, sizeof why), 0);
    assert_int_equal(r.user, 12);
    assert_int_equal(r.item, 7);

    const char *bad[] = {"1,31,2.5",     "1,31,2.5,12,9",       "x,31,2.5,1", "1,31,abc,1",
                         "1,31,2.5,12x", "1,99999999999,2.5,1", "1,31,-1,1",  "1,31,11,1"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        if (movielens_parse_rating(MOVIELENS_CSV, bad[k], strlen(bad[k]), &r, why, sizeof why) == 0)
            fail_msg("'%s' parsed", bad[k]);
    assert_int_equal(
        movielens_parse_rating(MOVIELENS_CSV, "1,31,2.5,soon", 13, &r, why, sizeof why), -1);
    assert_string_equal(why, "bad timestamp 'soon'");
    assert_int_equal(movielens_parse_rating(MOVIELENS_SASREC, "0 7", 3, &r, why, sizeof why), -1);
    assert_int_equal(movielens_parse_rating(MOVIELENS_SASREC, "1 2 3", 5, &r, why, sizeof why), -1);

    char buf[4 * 128 + 8];
    struct movielens_movie m;
    const char *mv = "3::Grumpier Old Men (1995)::Comedy|Romance";
    assert_int_equal(
        movielens_parse_movie(MOVIELENS_DAT, mv, strlen(mv), buf, sizeof buf, &m, why, sizeof why),
        0);
    assert_int_equal(m.id, 3);
    assert_string_equal(m.title, "Grumpier Old Men (1995)");
    assert_int_equal(m.year, 1995);
    assert_int_equal(m.genres, (1u << REC_GENRE_COMEDY) | (1u << REC_GENRE_ROMANCE));
    assert_int_equal(movielens_parse_movie(MOVIELENS_DAT, "3::only two", 11, buf, sizeof buf, &m,
                                           why, sizeof why),
                     -1);
    assert_non_null(strstr(why, "expected 3 fields"));
}

/* ---- whole layouts ---- */

static void test_csv_layout(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    /* BOM + CRLF; user 7 has two ratings at the same time (ties keep file order: 30 then 10);
     * line 5 has a bad timestamp, line 8 too few fields, line 9 a bad rating */
    write_text(dir, "ratings.csv",
               "\xef\xbb\xbfuserId,movieId,rating,timestamp\r\n"
               "7,30,4.0,200\r\n"
               "7,10,3.5,200\r\n"
               "3,20,5.0,100\r\n"
               "3,30,1.0,later\r\n"
               "7,20,2.0,50\r\n"
               "3,10,4.0,150\r\n"
               "3,10\r\n"
               "3,20,x,160\r\n"
               "3,30,3.0,300\r\n");
    write_text(dir, "movies.csv",
               "\xef\xbb\xbfmovieId,title,genres\r\n"
               "10,\"American President, The (1995)\",Comedy|Drama|Romance\r\n"
               "20,\"Say \"\"Cheese\"\" (2001-2003)\",(no genres listed)\r\n"
               "30,Cit\xc3\xa9 (1999) ,Children|IMAX\r\n"
               "40,\"broken,Drama\r\n");
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    assert_non_null(d);
    assert_int_equal(rep.layout, MOVIELENS_CSV);
    assert_string_equal(d->source, "csv");
    assert_int_equal(rep.rows_read, 9);
    assert_int_equal(rep.rows_rejected, 4); /* 3 rating rows + 1 movie row */
    assert_true(any_report(&rep, "ratings.csv:5: bad timestamp 'later'"));
    assert_true(any_report(&rep, "ratings.csv:8: expected 4 fields"));
    assert_true(any_report(&rep, "ratings.csv:9: bad rating 'x'"));
    assert_true(any_report(&rep, "movies.csv:5: unterminated quote"));
    assert_int_equal(d->n_users, 2);
    assert_int_equal(d->n_items, 3);
    assert_int_equal(d->n_interactions, 6);
    /* dense ids follow ascending source ids */
    assert_int_equal(d->user_orig[0], 3);
    assert_int_equal(d->user_orig[1], 7);
    assert_int_equal(d->item_orig[1], 10);
    assert_int_equal(d->item_orig[3], 30);
    uint32_t s[8];
    size_t n;
    seq_orig(d, 0, s, 8, &n); /* user 3: 20@100, 10@150, 30@300 */
    assert_int_equal(n, 3);
    assert_int_equal(s[0], 20);
    assert_int_equal(s[1], 10);
    assert_int_equal(s[2], 30);
    seq_orig(d, 1, s, 8, &n); /* user 7: 20@50, then the tie at 200 in file order: 30, 10 */
    assert_int_equal(n, 3);
    assert_int_equal(s[0], 20);
    assert_int_equal(s[1], 30);
    assert_int_equal(s[2], 10);
    assert_int_equal(d->ts[d->user_off[1]], 50);
    assert_string_equal(d->item_title[1], "American President, The (1995)");
    assert_string_equal(d->item_title[2], "Say \"Cheese\" (2001-2003)");
    assert_string_equal(d->item_title[3], "Cit\xc3\xa9 (1999)");
    assert_int_equal(d->item_year[1], 1995);
    assert_int_equal(d->item_year[2], 2001);
    assert_int_equal(d->item_year[3], 1999);
    assert_int_equal(d->item_genres[2], 0);
    assert_int_equal(d->item_genres[3], (1u << REC_GENRE_CHILDREN) | (1u << REC_GENRE_IMAX));
    /* popularity: 10 twice, 20 twice, 30 twice; train = first of each user's three */
    assert_int_equal(d->item_pop[1], 2);
    assert_int_equal(d->item_pop_train[item_of(d, 20)], 2);
    assert_int_equal(d->item_pop_train[item_of(d, 10)], 0);
    assert_int_equal(d->item_title[0][0], '\0');
    rec_dataset_free(d);

    /* strict: the first bad row is fatal and named */
    struct movielens_cfg strict = {.strict = true};
    d = movielens_load(dir, &strict, &rep, &err);
    assert_null(d);
    assert_int_equal(err.code, ERR_INVALID);
    assert_non_null(strstr(err.msg, "ratings.csv:5: bad timestamp"));
    assert_non_null(strstr(err.msg, "--strict"));
    test_rmtree(dir);
}

static void test_csv_bad_header_and_missing_movies(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    write_text(dir, "ratings.csv", "user,movie,rating,time\n1,2,3,4\n");
    struct err err = {0};
    struct movielens_report rep;
    assert_null(movielens_load(dir, &quiet_cfg, &rep, &err));
    assert_non_null(strstr(err.msg, "ratings.csv:1: unexpected header"));
    /* no header at all is fine; no movies file gives empty metadata, counted */
    write_text(dir, "ratings.csv", "1,2,3,4\n1,5,3,5\n1,2,3,6");
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    assert_non_null(d);
    assert_int_equal(d->n_interactions, 3);
    assert_int_equal(rep.items_without_meta, 2);
    assert_string_equal(rep.movies_path, "");
    /* repeated items stay in the sequence */
    assert_int_equal(d->seq[0], d->seq[2]);
    rec_dataset_free(d);
    test_rmtree(dir);
}

static void test_dat_layout_latin1_and_gz(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    write_gz(dir, "ratings.dat.gz",
             "1::1193::5::978300760\n"
             "1::661::3::978302109\n"
             "2::1193::5::978298413\n"
             "2::661::5::not-a-time\n"
             "1::914::3::978301968\n"
             "2::914::4::978299000\n"
             "2::3408::4::978300000\n"
             "2::3408\n");
    /* ISO-8859-1: 0xE9 = e acute, 0xF4 = o circumflex; one line has a fourth field */
    write_text(dir, "movies.dat",
               "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
               "914::My Fair Lady (1964)::Musical|Romance\n"
               "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
               "3408::Erin Brockovich (2000)::Drama\n"
               "3409::Cit\xe9 des enfants perdus, La (1995)::Adventure|Sci-Fi\n"
               "3410::Extra::Drama::oops\n"
               "1193::Duplicate (1975)::Drama\n");
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_DAT);
    assert_string_equal(d->source, "ml-1m");
    assert_int_equal(rep.rows_read, 8);
    assert_true(any_report(&rep, "ratings.dat.gz:4: bad timestamp 'not-a-time'"));
    assert_true(any_report(&rep, "ratings.dat.gz:8: expected 4 fields"));
    assert_true(any_report(&rep, "movies.dat:6: expected 3 fields"));
    assert_true(any_report(&rep, "movies.dat:7: duplicate movie id 1193 (first at line 3)"));
    assert_int_equal(rep.rows_rejected, 4);
    assert_int_equal(d->n_users, 2);
    assert_int_equal(d->n_items, 4); /* 3409 is never rated */
    assert_int_equal(d->n_interactions, 6);
    uint32_t s[8];
    size_t n;
    seq_orig(d, 0, s, 8, &n);
    assert_int_equal(n, 3);
    assert_int_equal(s[0], 1193);
    assert_int_equal(s[1], 914);
    assert_int_equal(s[2], 661);
    uint32_t it = item_of(d, 1193);
    assert_string_equal(d->item_title[it], "One Flew Over the Cuckoo's Nest (1975)");
    assert_int_equal(d->item_pop[it], 2);
    rec_dataset_free(d);

    /* the Latin-1 title, read through movies.dat when that movie is rated */
    write_text(dir, "ratings_users1-2.dat", "5::3409::4::1\n");
    char path[256];
    snprintf(path, sizeof path, "%s/ratings.dat.gz", dir);
    remove(path);
    d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_non_null(strstr(rep.ratings_path, "ratings_users1-2.dat"));
    assert_int_equal(d->n_items, 1);
    assert_string_equal(d->item_title[1], "Cit\xc3\xa9 des enfants perdus, La (1995)");
    assert_int_equal(d->item_year[1], 1995);
    assert_int_equal(d->item_genres[1], (1u << REC_GENRE_ADVENTURE) | (1u << REC_GENRE_SCI_FI));
    rec_dataset_free(d);
    test_rmtree(dir);
}

static void test_100k_layout(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    write_text(dir, "u.data",
               "196\t242\t3\t881250949\n"
               "186\t302\t3\t891717742\n"
               "196\t302\t4\t881250000\n"
               "196 242 3 881250949\n" /* spaces, not tabs: malformed */
               "186\t242\t5\t891717742\n");
    write_text(
        dir, "u.item",
        "242|Kolya (1996)|24-Jan-1997||http://x|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
        "302|L.A. Confidential|01-Jan-1997||http://x|0|0|0|0|0|0|1|0|0|0|1|0|0|1|0|0|1|0|0\n"
        "303|Bad flags (1997)|01-Jan-1997||http://x|0|0|0|0|0|0|1|0|0|0|1|0|0|1|0|0|1|0|2\n"
        "304|Short row|01-Jan-1997\n"
        "305|Fran\xe7ois (1997)|01-Jan-1997||http://x|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n");
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_100K);
    assert_string_equal(d->source, "ml-100k");
    assert_true(any_report(&rep, "u.data:4: expected 4 fields"));
    assert_true(any_report(&rep, "u.item:3: genre flag 19 is '2'"));
    assert_true(any_report(&rep, "u.item:4: expected 24"));
    assert_int_equal(rep.rows_rejected, 3);
    assert_int_equal(d->n_users, 2);
    assert_int_equal(d->n_items, 2);
    assert_int_equal(d->n_interactions, 4);
    uint32_t u196 = user_of(d, 196);
    uint32_t s[4];
    size_t n;
    seq_orig(d, u196, s, 4, &n);
    assert_int_equal(n, 2);
    assert_int_equal(s[0], 302); /* earlier timestamp */
    assert_int_equal(s[1], 242);
    uint32_t kolya = item_of(d, 242), la = item_of(d, 302);
    assert_int_equal(d->item_genres[kolya], 1u << REC_GENRE_COMEDY);
    assert_int_equal(d->item_year[kolya], 1996);
    /* no year in the title: the release date's year */
    assert_int_equal(d->item_year[la], 1997);
    assert_int_equal(d->item_genres[la], (1u << REC_GENRE_CRIME) | (1u << REC_GENRE_FILM_NOIR) |
                                             (1u << REC_GENRE_MYSTERY) |
                                             (1u << REC_GENRE_THRILLER));
    rec_dataset_free(d);
    test_rmtree(dir);
}

static void test_sasrec_layout(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    write_gz(dir, "tiny_sasrec.txt.gz", "1 1\n1 2\n1 3\n2 3\n2 9\n2 1\n2 2\n3 1\n1 1\n");
    write_text(dir, "sas_to_original_items.txt", "1 1198\n2 3552\n3 356\n");
    write_text(dir, "sas_to_original_users.txt", "1 5988\n2 5989\n3 5982\n");
    write_text(dir, "movies.dat",
               "356::Forrest Gump (1994)::Comedy|Romance|War\n"
               "1198::Raiders of the Lost Ark (1981)::Action|Adventure\n");
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_SASREC);
    assert_string_equal(d->source, "sasrec");
    assert_true(
        any_report(&rep, "tiny_sasrec.txt.gz:5: id out of range (user 2 of 3, item 9 of 3)"));
    assert_int_equal(rep.rows_rejected, 1);
    assert_int_equal(d->n_users, 3);
    assert_int_equal(d->n_items, 3);
    assert_int_equal(d->n_interactions, 8);
    /* ids are the file's; order is file order (user 1's lines are not contiguous) */
    assert_int_equal(rec_user_len(d, 0), 4);
    assert_int_equal(d->seq[0], 1);
    assert_int_equal(d->seq[1], 2);
    assert_int_equal(d->seq[2], 3);
    assert_int_equal(d->seq[3], 1);
    assert_int_equal(d->user_orig[1], 5989);
    assert_int_equal(d->item_orig[3], 356);
    assert_string_equal(d->item_title[3], "Forrest Gump (1994)");
    assert_string_equal(d->item_title[2], ""); /* 3552 not in movies.dat */
    assert_int_equal(rep.items_without_meta, 1);
    assert_int_equal(d->item_year[1], 1981);
    /* user 3 has one interaction: all train, not evaluated */
    assert_false(rec_user_in_eval(d, 2));
    assert_int_equal(rec_split_n_eval_users(d), 2);
    rec_dataset_free(d);

    /* without maps, ids must be dense */
    char mp[128];
    snprintf(mp, sizeof mp, "%s/sas_to_original_users.txt", dir);
    remove(mp);
    snprintf(mp, sizeof mp, "%s/sas_to_original_items.txt", dir);
    remove(mp);
    write_gz(dir, "tiny_sasrec.txt.gz", "1 1\n1 2\n2 1\n");
    d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(d->n_users, 2);
    assert_int_equal(d->n_items, 2);
    assert_int_equal(d->item_orig[2], 2);
    rec_dataset_free(d);
    write_gz(dir, "tiny_sasrec.txt.gz", "1 1\n5000 2\n");
    assert_null(movielens_load(dir, &quiet_cfg, &rep, &err));
    assert_non_null(strstr(err.msg, "not dense"));
    write_text(dir, "sas_to_original_users.txt", "1 5988\n2 5989\n3 5982\n");

    /* a broken map is an error naming the line */
    write_text(dir, "sas_to_original_items.txt", "1 1198\n3 356\n");
    assert_null(movielens_load(dir, &quiet_cfg, &rep, &err));
    assert_non_null(strstr(err.msg, "sas_to_original_items.txt:2"));
    test_rmtree(dir);
}

static void test_detect_and_hostile_input(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    struct err err = {0};
    struct movielens_report rep;
    assert_null(movielens_load(dir, &quiet_cfg, &rep, &err));
    assert_int_equal(err.code, ERR_NOTFOUND);
    assert_non_null(strstr(err.msg, "no MovieLens ratings found"));
    char missing[128];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    assert_null(movielens_load(missing, &quiet_cfg, &rep, &err));

    /* a line over the bound, a NUL byte, binary junk: reported rows, never a crash */
    size_t big = MOVIELENS_MAX_LINE + 100;
    char *text = malloc(big + 64);
    assert_non_null(text);
    size_t o = 0;
    o += (size_t)sprintf(text + o, "1,1,4,1\n");
    memset(text + o, '9', big);
    o += big;
    text[o++] = '\n';
    static const char tail[] = "1,2,4,\0002\n\x01\xff\xfe,,\n2,1,4,3\n";
    memcpy(text + o, tail, sizeof tail - 1);
    o += sizeof tail - 1;
    write_file(dir, "ratings.csv", text, o);
    free(text);
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_true(any_report(&rep, "ratings.csv:2: line longer than"));
    assert_true(any_report(&rep, "ratings.csv:3: NUL byte"));
    assert_true(any_report(&rep, "ratings.csv:4:"));
    assert_int_equal(rep.rows_rejected, 3);
    assert_int_equal(d->n_interactions, 2);
    rec_dataset_free(d);

    /* a truncated gzip file is an error, not a silent short read */
    char gzpath[128];
    char many[8192];
    size_t m = 0;
    for (int k = 0; k < 400; k++)
        m += (size_t)snprintf(many + m, sizeof many - m, "%d,%d,4,%d\n", k % 7 + 1,
                              k * 13 % 101 + 1, k * 37);
    write_gz(dir, "ratings.csv.gz", many);
    snprintf(gzpath, sizeof gzpath, "%s/ratings.csv", dir);
    remove(gzpath);
    snprintf(gzpath, sizeof gzpath, "%s/ratings.csv.gz", dir);
    struct stat st;
    assert_int_equal(stat(gzpath, &st), 0);
    assert_true(st.st_size > 200);
    assert_int_equal(truncate(gzpath, st.st_size / 2), 0);
    assert_null(movielens_load(dir, &quiet_cfg, &rep, &err));
    assert_non_null(strstr(err.msg, "ratings.csv.gz"));
    test_rmtree(dir);
}

static void test_min_counts_filter(void **state)
{
    (void)state;
    char dir[64];
    test_tmpdir(dir, sizeof dir);
    /* item 9 has one rating, user 4 has one rating */
    write_text(dir, "ratings.dat",
               "1::5::4::1\n1::6::4::2\n1::9::4::3\n2::5::4::1\n2::6::4::2\n4::5::4::1\n");
    struct movielens_cfg cfg = {.min_user = 2, .min_item = 2};
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.rows_filtered, 2);
    assert_int_equal(d->n_users, 2);
    assert_int_equal(d->n_items, 2);
    assert_int_equal(d->n_interactions, 4);
    rec_dataset_free(d);
    test_rmtree(dir);
}

/* ---- split ---- */

static void test_split(void **state)
{
    (void)state;
    /* user 0: 5 items, user 1: 3, user 2: 2, user 3: 0 */
    uint64_t off[] = {0, 5, 8, 10, 10};
    uint32_t seq[] = {1, 2, 3, 4, 5, 5, 4, 3, 2, 1};
    struct err err = {0};
    struct rec_dataset *d = rec_dataset_from_sequences(4, 5, off, seq, &err);
    assert_non_null(d);
    uint64_t n;
    const uint32_t *t = rec_split_train(d, 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(t[2], 3);
    assert_int_equal(rec_split_target(d, 0, REC_SPLIT_VALID), 4);
    assert_int_equal(rec_split_target(d, 0, REC_SPLIT_TEST), 5);
    rec_split_history(d, 0, REC_SPLIT_TEST, &n);
    assert_int_equal(n, 4);
    rec_split_history(d, 0, REC_SPLIT_VALID, &n);
    assert_int_equal(n, 3);
    rec_split_train(d, 1, &n);
    assert_int_equal(n, 1);
    assert_int_equal(rec_split_target(d, 1, REC_SPLIT_TEST), 3);
    /* fewer than 3: all train, no targets */
    rec_split_train(d, 2, &n);
    assert_int_equal(n, 2);
    assert_int_equal(rec_split_target(d, 2, REC_SPLIT_VALID), 0);
    assert_false(rec_user_in_eval(d, 3));
    assert_int_equal(rec_split_n_eval_users(d), 2);
    /* train popularity: user 0 {1,2,3}, user 1 {5}, user 2 {2,1} */
    uint32_t want_train[6] = {0, 2, 2, 1, 0, 1};
    uint32_t want_all[6] = {0, 2, 2, 2, 2, 2};
    assert_memory_equal(d->item_pop_train, want_train, sizeof want_train);
    assert_memory_equal(d->item_pop, want_all, sizeof want_all);
    rec_dataset_free(d);

    /* invariants are enforced */
    uint32_t bad_seq[] = {1, 2, 3, 4, 6, 5, 4, 3, 2, 1};
    assert_null(rec_dataset_from_sequences(4, 5, off, bad_seq, &err));
    assert_non_null(strstr(err.msg, "item id 6 outside 1..5"));
    uint64_t bad_off[] = {0, 5, 4, 10, 10};
    assert_null(rec_dataset_from_sequences(4, 5, bad_off, seq, &err));
    assert_non_null(strstr(err.msg, "decrease"));
    rec_dataset_free(NULL);
}

/* ---- artifact ---- */

static struct rec_dataset *crafted_dataset(const char *dir)
{
    write_text(dir, "ratings.csv",
               "userId,movieId,rating,timestamp\n"
               "1,10,4,100\n1,20,4,101\n1,30,4,102\n1,40,4,103\n"
               "2,20,4,100\n2,30,4,99\n2,10,4,98\n"
               "3,40,4,5\n");
    write_text(dir, "movies.csv",
               "movieId,title,genres\n"
               "10,\"Cit\xc3\xa9, La (1995)\",Drama|War\n"
               "20,Heat (1995),Action|Crime|Thriller\n"
               "30,Solo (2018),(no genres listed)\n"
               "40,No year,IMAX\n");
    struct err err = {0};
    struct rec_dataset *d = movielens_load(dir, &quiet_cfg, NULL, &err);
    if (!d) fail_msg("%s", err.msg);
    return d;
}

static void assert_same_dataset(const struct rec_dataset *a, const struct rec_dataset *b)
{
    assert_int_equal(a->n_users, b->n_users);
    assert_int_equal(a->n_items, b->n_items);
    assert_int_equal(a->n_interactions, b->n_interactions);
    size_t ni = (size_t)a->n_items + 1, n = (size_t)a->n_interactions;
    assert_memory_equal(a->user_off, b->user_off, ((size_t)a->n_users + 1) * 8);
    assert_memory_equal(a->seq, b->seq, n * 4);
    assert_memory_equal(a->ts, b->ts, n * 8);
    assert_memory_equal(a->user_orig, b->user_orig, (size_t)a->n_users * 4);
    assert_memory_equal(a->item_orig, b->item_orig, ni * 4);
    assert_memory_equal(a->item_genres, b->item_genres, ni * 4);
    assert_memory_equal(a->item_year, b->item_year, ni * 2);
    assert_memory_equal(a->item_pop, b->item_pop, ni * 4);
    assert_memory_equal(a->item_pop_train, b->item_pop_train, ni * 4);
    for (size_t i = 0; i < ni; i++)
        assert_string_equal(a->item_title[i], b->item_title[i]);
    assert_string_equal(a->source, b->source);
}

static void test_artifact_round_trip(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    struct rec_dataset *d = crafted_dataset(dir);
    struct err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, REC_DATASET_FILE);
    assert_int_equal(rec_dataset_save(d, path, &err), 0);
    /* by file and by folder */
    struct rec_dataset *b = rec_dataset_load(path, &err);
    if (!b) fail_msg("%s", err.msg);
    assert_same_dataset(d, b);
    rec_dataset_free(b);
    b = rec_dataset_load(dir, &err);
    assert_non_null(b);
    assert_same_dataset(d, b);
    rec_dataset_free(b);
    /* any GGUF tool sees our architecture and counts */
    struct gguf_file *g = gguf_open(path, &err);
    assert_non_null(g);
    struct gguf_str arch;
    assert_int_equal(gguf_get_str(g, "general.architecture", &arch, &err), 0);
    assert_true(gguf_str_eq(arch, "nanorec.dataset"));
    uint32_t nu = 0;
    assert_int_equal(gguf_get_u32(g, "nanorec.dataset.n_users", &nu, &err), 0);
    assert_int_equal(nu, d->n_users);
    gguf_close(g);
    rec_dataset_free(d);
    test_rmtree(dir);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Writes a copy of the artifact with tensor `name`'s element `idx` (of `elem` bytes) set to v. */
static void corrupt_tensor(const char *src, const char *dst, const char *name, size_t idx,
                           size_t elem, int64_t v)
{
    size_t n;
    unsigned char *b = slurp(src, &n);
    struct err err = {0};
    struct gguf_file *g = gguf_open_mem(b, n, &err);
    assert_non_null(g);
    const struct gguf_tensor *t = gguf_find_tensor(g, name);
    assert_non_null(t);
    size_t at = (size_t)((const unsigned char *)t->data - b) + idx * elem;
    gguf_close(g);
    memcpy(b + at, &v, elem); /* little-endian host */
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

static void test_artifact_corrupt(void **state)
{
    (void)state;
    char dir[64], path[128], bad[128];
    test_tmpdir(dir, sizeof dir);
    struct rec_dataset *d = crafted_dataset(dir);
    struct err err = {0};
    snprintf(path, sizeof path, "%s/%s", dir, REC_DATASET_FILE);
    snprintf(bad, sizeof bad, "%s/bad.gguf", dir);
    assert_int_equal(rec_dataset_save(d, path, &err), 0);

    struct {
        const char *tensor;
        size_t idx, elem;
        int64_t v;
        const char *msg;
    } cases[] = {
        {"user_off", 1, 8, 8, "decrease"}, /* 0, 8, 7, 8 */
        {"user_off", 3, 8, 1000, "past the 8 interactions"},
        {"user_off", 3, 8, 7, "offsets end at 7"},
        {"user_off", 1, 8, 3, "popularity disagrees"}, /* valid offsets, another split */
        {"user_off", 0, 8, 1, "start at 0"},
        {"seq", 2, 4, 0, "outside 1.."},
        {"seq", 0, 4, 99, "outside 1.."},
        {"item_genres", 1, 4, 1 << 30, "unknown genre bits"},
        {"item_pop", 1, 4, 12345, "popularity disagrees"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        corrupt_tensor(path, bad, cases[k].tensor, cases[k].idx, cases[k].elem, cases[k].v);
        struct rec_dataset *x = rec_dataset_load(bad, &err);
        if (x) fail_msg("corrupt %s[%zu] loaded", cases[k].tensor, cases[k].idx);
        if (!strstr(err.msg, cases[k].msg))
            fail_msg("corrupt %s[%zu]: message '%s' lacks '%s'", cases[k].tensor, cases[k].idx,
                     err.msg, cases[k].msg);
        assert_non_null(strstr(err.msg, "bad.gguf"));
    }

    /* truncated file, empty file, another architecture */
    size_t n;
    unsigned char *b = slurp(path, &n);
    write_file(dir, "bad.gguf", (const char *)b, n / 2);
    assert_null(rec_dataset_load(bad, &err));
    write_file(dir, "bad.gguf", "", 0);
    assert_null(rec_dataset_load(bad, &err));
    free(b);
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(gguf_writer_write(w, bad, &err), 0);
    gguf_writer_free(w);
    assert_null(rec_dataset_load(bad, &err));
    assert_non_null(strstr(err.msg, "expected 'nanorec.dataset'"));

    /* our architecture but no tensors */
    w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "nanorec.dataset"), 0);
    assert_int_equal(gguf_writer_set_u32(w, "nanorec.dataset.version", 1), 0);
    assert_int_equal(gguf_writer_set_u32(w, "nanorec.dataset.n_users", 1), 0);
    assert_int_equal(gguf_writer_set_u32(w, "nanorec.dataset.n_items", 1), 0);
    assert_int_equal(gguf_writer_set_u64(w, "nanorec.dataset.n_interactions", 1), 0);
    assert_int_equal(gguf_writer_write(w, bad, &err), 0);
    gguf_writer_free(w);
    assert_null(rec_dataset_load(bad, &err));
    assert_non_null(strstr(err.msg, "tensor 'user_off' is missing"));

    /* an empty dataset is not saved */
    uint64_t off[] = {0};
    struct rec_dataset *e = rec_dataset_from_sequences(0, 3, off, NULL, &err);
    assert_non_null(e);
    assert_true(rec_dataset_save(e, bad, &err) < 0);
    rec_dataset_free(e);
    rec_dataset_free(d);
    test_rmtree(dir);
}

static void test_cli_prepare(void **state)
{
    (void)state;
    char dir[64], out[128];
    test_tmpdir(dir, sizeof dir);
    struct rec_dataset *d = crafted_dataset(dir); /* writes ratings.csv and movies.csv */
    snprintf(out, sizeof out, "%s/out/nested", dir);
    char *ok[] = {"data prepare", "--movielens", dir, "--out", out, "--quiet", NULL};
    assert_int_equal(data_cli_prepare(6, ok), 0);
    struct err err = {0};
    struct rec_dataset *b = rec_dataset_load(out, &err);
    if (!b) fail_msg("%s", err.msg);
    assert_same_dataset(d, b);
    rec_dataset_free(b);
    rec_dataset_free(d);
    /* bad arguments: 2; a folder without ratings: 1; a bad row with --strict: 1 */
    char *no_out[] = {"data prepare", "--movielens", dir, NULL};
    assert_int_equal(data_cli_prepare(3, no_out), 2);
    char *unknown[] = {"data prepare", "--movielens", dir, "--out", out, "--bogus", NULL};
    assert_int_equal(data_cli_prepare(6, unknown), 2);
    char *bad_min[] = {"data prepare", "--movielens", dir, "--out", out, "--min-item", "-3", NULL};
    assert_int_equal(data_cli_prepare(7, bad_min), 2);
    char *empty[] = {"data prepare", "--movielens", out, "--out", out, "--quiet", NULL};
    assert_int_equal(data_cli_prepare(6, empty), 1);
    write_text(dir, "ratings.csv", "1,2,3,4\n1,2,x,5\n");
    char *strict[] = {"data prepare", "--movielens", dir, "--out", out,
                      "--quiet",      "--strict",    NULL};
    assert_int_equal(data_cli_prepare(7, strict), 1);
    assert_int_equal(data_cli_prepare(6, ok), 0); /* the same data without --strict */
    test_rmtree(dir);
}

/* ---- real releases ---- */

static void test_real_ml_latest_small(void **state)
{
    (void)state;
    char path[512];
    test_data_path(path, sizeof path, "movielens/ml-latest-small");
    TEST_REQUIRE_PATH(path);
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(path, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_CSV);
    assert_int_equal(d->n_users, 610);
    assert_int_equal(d->n_interactions, 100836);
    assert_int_equal(d->n_items, 9724);
    assert_int_equal(rep.rows_rejected, 0);
    assert_int_equal(rep.movies_read, 9742);
    assert_int_equal(rep.items_without_meta, 0);
    uint32_t toy = item_of(d, 1);
    assert_string_equal(d->item_title[toy], "Toy Story (1995)");
    assert_int_equal(d->item_year[toy], 1995);
    /* sequences are chronological */
    for (uint32_t u = 0; u < d->n_users; u++)
        for (uint64_t k = d->user_off[u] + 1; k < d->user_off[u + 1]; k++)
            assert_true(d->ts[k - 1] <= d->ts[k]);
    rec_dataset_free(d);
}

static void test_real_ml_1m_sasrec(void **state)
{
    (void)state;
    char path[512];
    test_data_path(path, sizeof path, "movielens/ml-1m-sasrec");
    TEST_REQUIRE_PATH(path);
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(path, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_SASREC);
    assert_int_equal(d->n_users, 6040);
    assert_int_equal(d->n_items, 3416);
    assert_int_equal(d->n_interactions, 999090);
    assert_int_equal(rep.rows_rejected, 0);
    assert_int_equal(rep.items_without_meta, 0);
    assert_int_equal(d->item_orig[1], 1198);
    assert_string_equal(d->item_title[1], "Raiders of the Lost Ark (1981)");
    assert_int_equal(d->user_orig[0], 5988);
    assert_int_equal(rec_split_n_eval_users(d), 6040);
    /* a load is deterministic */
    struct rec_dataset *d2 = movielens_load(path, &quiet_cfg, &rep, &err);
    assert_non_null(d2);
    assert_same_dataset(d, d2);
    rec_dataset_free(d2);
    rec_dataset_free(d);
}

static void test_real_ml_1m_partial(void **state)
{
    (void)state;
    char path[512];
    test_data_path(path, sizeof path, "movielens/ml-1m-partial");
    TEST_REQUIRE_PATH(path);
    struct movielens_report rep;
    struct err err = {0};
    struct rec_dataset *d = movielens_load(path, &quiet_cfg, &rep, &err);
    if (!d) fail_msg("%s", err.msg);
    assert_int_equal(rep.layout, MOVIELENS_DAT);
    assert_int_equal(d->n_users, 2999);
    assert_int_equal(d->n_interactions, 487650);
    assert_int_equal(rep.movies_read, 3883);
    assert_int_equal(rep.rows_rejected, 0);
    /* every title is UTF-8 after the ISO-8859-1 conversion (validate checked it); one known */
    uint32_t it = item_of(d, 73);
    assert_true(it > 0);
    assert_string_equal(d->item_title[it], "Mis\xc3\xa9rables, Les (1995)");
    assert_int_equal(d->item_genres[it], (1u << REC_GENRE_DRAMA) | (1u << REC_GENRE_MUSICAL));
    rec_dataset_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_split),
        cmocka_unit_test(test_sep_split),
        cmocka_unit_test(test_parse_year),
        cmocka_unit_test(test_parse_genres),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_parse_rows),
        cmocka_unit_test(test_csv_layout),
        cmocka_unit_test(test_csv_bad_header_and_missing_movies),
        cmocka_unit_test(test_dat_layout_latin1_and_gz),
        cmocka_unit_test(test_100k_layout),
        cmocka_unit_test(test_sasrec_layout),
        cmocka_unit_test(test_detect_and_hostile_input),
        cmocka_unit_test(test_min_counts_filter),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_artifact_round_trip),
        cmocka_unit_test(test_artifact_corrupt),
        cmocka_unit_test(test_cli_prepare),
        cmocka_unit_test(test_real_ml_latest_small),
        cmocka_unit_test(test_real_ml_1m_sasrec),
        cmocka_unit_test(test_real_ml_1m_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
