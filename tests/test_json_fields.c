/* Tests for the request-field validators in serve/json (jv_field_* and jv_invalid_write). */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "serve/json.h"

static struct jv *parse(const char *s)
{
    struct err e;
    struct jv *v = jv_parse(s, strlen(s), NULL, &e);
    if (!v) print_message("parse failed: %s\n", e.msg);
    assert_non_null(v);
    return v;
}

static void test_int(void **state)
{
    (void)state;
    struct jv *o =
        parse("{\"k\": 7, \"big\": 101, \"s\": \"7\", \"f\": 2.5, \"w\": 3.0, \"n\": null}");
    struct jv_invalid inv;
    int64_t x;
    bool present;
    assert_int_equal(jv_field_int(o, "k", true, 1, 100, 10, &x, &present, &inv), 0);
    assert_int_equal(x, 7);
    assert_true(present);
    assert_int_equal(jv_field_int(o, "absent", false, 1, 100, 10, &x, &present, &inv), 0);
    assert_int_equal(x, 10);
    assert_false(present);
    assert_int_equal(jv_field_int(o, "n", false, 1, 100, 10, &x, &present, &inv), 0); /* null */
    assert_int_equal(x, 10);
    assert_false(present);
    assert_int_equal(jv_field_int(o, "w", false, 1, 100, 10, &x, NULL, &inv), 0); /* 3.0 */
    assert_int_equal(x, 3);
    assert_int_equal(jv_field_int(o, "big", false, 1, 100, 10, &x, NULL, &inv), -1);
    assert_string_equal(inv.field, "big");
    assert_string_equal(inv.message, "big must be an integer between 1 and 100");
    assert_int_equal(jv_field_int(o, "s", false, 1, 100, 10, &x, NULL, &inv), -1);
    assert_string_equal(inv.field, "s");
    assert_int_equal(jv_field_int(o, "f", false, 1, 100, 10, &x, NULL, &inv), -1);
    assert_int_equal(jv_field_int(o, "absent", true, 1, 100, 10, &x, NULL, &inv), -1);
    assert_string_equal(inv.message, "absent is required");
    assert_int_equal(jv_field_int(o, "n", true, 1, 100, 10, &x, NULL, &inv), -1);
    jv_free(o);
}

static void test_num_bool_enum_str(void **state)
{
    (void)state;
    struct jv *o = parse("{\"t\": 0.7, \"hot\": 2.5, \"b\": true, \"bs\": \"true\", "
                         "\"theme\": \"sci-fi\", \"bad\": \"western\", \"num\": 3, "
                         "\"geo\": \"GB\", \"long\": \"ABCDEFGHI\", \"nul\": \"a\\u0000b\"}");
    struct jv_invalid inv;
    double d;
    assert_int_equal(jv_field_num(o, "t", false, 0, 2, 1, &d, NULL, &inv), 0);
    assert_true(d == 0.7);
    assert_int_equal(jv_field_num(o, "hot", false, 0, 2, 1, &d, NULL, &inv), -1);
    assert_string_equal(inv.message, "hot must be a number between 0 and 2");
    assert_int_equal(jv_field_num(o, "none", false, 0, 2, 1, &d, NULL, &inv), 0);
    assert_true(d == 1);

    bool b = false;
    assert_int_equal(jv_field_bool(o, "b", false, false, &b, NULL, &inv), 0);
    assert_true(b);
    assert_int_equal(jv_field_bool(o, "bs", false, false, &b, NULL, &inv), -1);
    assert_string_equal(inv.message, "bs must be true or false");

    static const char *const themes[] = {"comedy", "sci-fi", "default", NULL};
    int t;
    assert_int_equal(jv_field_enum(o, "theme", false, themes, 2, &t, NULL, &inv), 0);
    assert_int_equal(t, 1);
    assert_int_equal(jv_field_enum(o, "none", false, themes, 2, &t, NULL, &inv), 0);
    assert_int_equal(t, 2);
    assert_int_equal(jv_field_enum(o, "bad", false, themes, 2, &t, NULL, &inv), -1);
    assert_string_equal(inv.message, "bad must be one of comedy, sci-fi, default");
    assert_int_equal(jv_field_enum(o, "num", false, themes, 2, &t, NULL, &inv), -1);
    assert_string_equal(inv.field, "num");

    const char *s;
    size_t len;
    assert_int_equal(jv_field_str(o, "geo", false, 8, "", &s, &len, NULL, &inv), 0);
    assert_string_equal(s, "GB");
    assert_int_equal(len, 2);
    assert_int_equal(jv_field_str(o, "none", false, 8, "dflt", &s, &len, NULL, &inv), 0);
    assert_string_equal(s, "dflt");
    assert_int_equal(len, 4);
    assert_int_equal(jv_field_str(o, "long", false, 8, "", &s, &len, NULL, &inv), -1);
    assert_string_equal(inv.message, "long must be a string of at most 8 bytes");
    assert_int_equal(jv_field_str(o, "nul", false, 8, "", &s, &len, NULL, &inv), -1);
    assert_non_null(strstr(inv.message, "NUL"));
    assert_int_equal(jv_field_str(o, "num", false, 8, "", &s, &len, NULL, &inv), -1);
    jv_free(o);
}

static void test_int_array(void **state)
{
    (void)state;
    struct jv *o = parse("{\"ok\": [1, 2, 3], \"empty\": [], \"mixed\": [1, \"x\"], "
                         "\"neg\": [1, -5], \"obj\": {\"a\": 1}, \"long\": [1, 2, 3, 4, 5]}");
    struct jv_invalid inv;
    int64_t out[4];
    size_t n = 99;
    assert_int_equal(jv_field_int_array(o, "ok", false, 4, 0, 1000, out, &n, NULL, &inv), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[2], 3);
    assert_int_equal(jv_field_int_array(o, "empty", false, 4, 0, 1000, out, &n, NULL, &inv), 0);
    assert_int_equal(n, 0);
    assert_int_equal(jv_field_int_array(o, "none", false, 4, 0, 1000, out, &n, NULL, &inv), 0);
    assert_int_equal(n, 0);
    assert_int_equal(jv_field_int_array(o, "mixed", false, 4, 0, 1000, out, &n, NULL, &inv), -1);
    assert_string_equal(inv.field, "mixed");
    assert_string_equal(inv.message, "mixed[1] must be an integer between 0 and 1000");
    assert_int_equal(jv_field_int_array(o, "neg", false, 4, 0, 1000, out, &n, NULL, &inv), -1);
    assert_non_null(strstr(inv.message, "neg[1]"));
    assert_int_equal(jv_field_int_array(o, "obj", false, 4, 0, 1000, out, &n, NULL, &inv), -1);
    assert_string_equal(inv.message, "obj must be an array of at most 4 integers");
    /* one item over the bound is refused before anything is copied (out has room for 4) */
    assert_int_equal(jv_field_int_array(o, "long", false, 4, 0, 1000, out, &n, NULL, &inv), -1);
    assert_int_equal(n, 0);
    jv_free(o);
}

static void test_invalid_body(void **state)
{
    (void)state;
    struct jv_invalid inv;
    struct jv *arr = parse("[1]");
    assert_int_equal(jv_require_object(arr, &inv), -1);
    assert_string_equal(inv.field, "");
    jv_free(arr);
    struct jw w;
    jw_init(&w, 4096);
    jv_invalid_write(&inv, &w);
    assert_string_equal(w.buf, "{\"error\":\"invalid_field\",\"message\":\"request body must be a "
                               "JSON object\"}");
    jw_free(&w);
    strcpy(inv.field, "k");
    strcpy(inv.message, "k must be an integer between 1 and 100");
    jw_init(&w, 4096);
    jv_invalid_write(&inv, &w);
    assert_string_equal(w.buf, "{\"error\":\"invalid_field\",\"field\":\"k\",\"message\":\"k must "
                               "be an integer between 1 and 100\"}");
    jw_free(&w);
    /* a field name with quotes is escaped in the body */
    struct jv *o = parse("{\"a\\\"b\": 500}");
    int64_t x;
    assert_int_equal(jv_field_int(o, "a\"b", false, 0, 10, 0, &x, NULL, &inv), -1);
    jw_init(&w, 4096);
    jv_invalid_write(&inv, &w);
    struct err e;
    struct jv *back = jv_parse(w.buf, w.len, NULL, &e);
    assert_non_null(back);
    assert_string_equal(jv_str(jv_get(back, "field"), NULL), "a\"b");
    jv_free(back);
    jw_free(&w);
    jv_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int),
        cmocka_unit_test(test_num_bool_enum_str),
        cmocka_unit_test(test_int_array),
        cmocka_unit_test(test_invalid_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
