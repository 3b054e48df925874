/* Tests for src/serve/json.c: the DOM over jansson and the bounded writer. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "serve/json.h"

static struct jv *parse(const char *s, struct err *e)
{
    return jv_parse(s, strlen(s), NULL, e);
}

static void test_parse_and_access(void **state)
{
    (void)state;
    struct err e;
    struct jv *r = parse("\xEF\xBB\xBF{\"a\": 1, \"b\": [true, null, \"x\\u00e9\"], \"c\": 2.5,"
                         " \"d\": {\"e\": -3}}",
                         &e);
    assert_non_null(r);
    assert_int_equal(jv_kind(r), JV_OBJECT);
    assert_int_equal(jv_obj_len(r), 4);
    int64_t i;
    assert_true(jv_int(jv_get(r, "a"), &i));
    assert_int_equal(i, 1);
    const struct jv *b = jv_get(r, "b");
    assert_int_equal(jv_len(b), 3);
    bool t;
    assert_true(jv_bool(jv_at(b, 0), &t));
    assert_true(t);
    assert_int_equal(jv_kind(jv_at(b, 1)), JV_NULL);
    size_t len;
    assert_string_equal(jv_str(jv_at(b, 2), &len), "x\xC3\xA9");
    assert_int_equal(len, 3);
    assert_null(jv_at(b, 3));
    double d;
    assert_true(jv_num(jv_get(r, "c"), &d));
    assert_true(d == 2.5);
    assert_false(jv_int(jv_get(r, "c"), &i)); /* not integral */
    assert_true(jv_int(jv_get(jv_get(r, "d"), "e"), &i));
    assert_int_equal(i, -3);
    assert_null(jv_get(r, "missing"));
    assert_null(jv_get(b, "a")); /* not an object */
    assert_null(jv_str(jv_get(r, "a"), NULL));
    const char *keys[4];
    int k = 0;
    for (void *it = jv_obj_iter(r); it; it = jv_obj_next(r, it)) {
        assert_non_null(jv_obj_iter_val(it));
        keys[k++] = jv_obj_iter_key(it);
    }
    assert_int_equal(k, 4);
    assert_string_equal(keys[0], "a"); /* document order */
    assert_string_equal(keys[3], "d");
    jv_free(r);

    r = parse("null", &e); /* bare values at the root */
    assert_non_null(r);
    assert_int_equal(jv_kind(r), JV_NULL);
    jv_free(r);
}

static void test_parse_errors_name_the_problem(void **state)
{
    (void)state;
    struct err e;
    assert_null(parse("{\"a\": 1,,}", &e));
    assert_non_null(strstr(e.msg, "line 1"));
    assert_null(parse("", &e));
    assert_non_null(strstr(e.msg, "empty"));
    assert_null(parse("{\"a\": NaN}", &e));
    assert_null(parse("\"\xC3\x28\"", &e)); /* invalid UTF-8 */
    char deep[300];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 99);
    deep[299] = '\0';
    assert_null(parse(deep, &e));
    assert_non_null(strstr(e.msg, "deeper than 64"));
    /* Brackets inside strings do not count as depth. */
    char s[210] = "\"";
    memset(s + 1, '[', 200);
    s[201] = '"';
    s[202] = '\0';
    struct jv *r = parse(s, &e);
    assert_non_null(r);
    jv_free(r);
    struct jv_limits lim = {.max_bytes = 4};
    assert_null(jv_parse("[1,2,3]", 7, &lim, &e));
    assert_non_null(strstr(e.msg, "over the limit"));
}

static void test_writer(void **state)
{
    (void)state;
    struct jw w;
    jw_init(&w, 0);
    jw_obj_begin(&w);
    jw_key(&w, "ids");
    jw_arr_begin(&w);
    jw_int(&w, 1);
    jw_int(&w, -2);
    jw_arr_end(&w);
    jw_key(&w, "s");
    jw_str(&w, "a\"b\\c\n\x01\xC3\xA9\xFF");
    jw_key(&w, "x");
    jw_num(&w, 0.125, 6);
    jw_key(&w, "nan");
    jw_num(&w, NAN, 6);
    jw_key(&w, "ok");
    jw_bool(&w, true);
    jw_key(&w, "o");
    jw_obj_begin(&w);
    jw_obj_end(&w);
    jw_key(&w, "raw");
    jw_raw(&w, "[1]", 3);
    jw_obj_end(&w);
    assert_false(w.overflow);
    assert_string_equal(w.buf, "{\"ids\":[1,-2],\"s\":\"a\\\"b\\\\c\\n\\u0001\xC3\xA9\xEF\xBF\xBD\","
                               "\"x\":0.125,\"nan\":null,\"ok\":true,\"o\":{},\"raw\":[1]}");
    /* What the writer writes, the parser reads back. */
    struct err e;
    struct jv *r = jv_parse(w.buf, w.len, NULL, &e);
    assert_non_null(r);
    jv_free(r);
    jw_free(&w);

    jw_init(&w, 16);
    jw_arr_begin(&w);
    for (int i = 0; i < 100; i++) jw_int(&w, 12345);
    jw_arr_end(&w);
    assert_true(w.overflow);
    assert_true(w.len < 16);
    jw_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_access),
        cmocka_unit_test(test_parse_errors_name_the_problem),
        cmocka_unit_test(test_writer),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
