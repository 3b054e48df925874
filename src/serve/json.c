/* JSON: the only user of jansson. A struct jv is a jansson json_t seen through an opaque
 * type, so the rest of the project never includes jansson.h. */
#include "serve/json.h"

#include "base/utf8.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JV(v) ((json_t *)(v))
#define CJV(v) ((const json_t *)(v))

/* Scans for the maximum nesting depth outside strings, so a hostile document is refused
 * before the parser recurses into it. Returns the depth, or stops early past `limit`. */
static int jv_scan_depth(const char *buf, size_t len, int limit)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            continue;
        }
        if (c == '"') in_str = true;
        else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
            if (max > limit) return max;
        } else if (c == ']' || c == '}') depth--;
    }
    return max;
}

struct jv *jv_parse(const char *buf, size_t len, const struct jv_limits *lim, struct err *err)
{
    size_t max_bytes = lim && lim->max_bytes ? lim->max_bytes : 0;
    int max_depth = lim && lim->max_depth > 0 ? lim->max_depth : JV_MAX_DEPTH_DEFAULT;
    if (!buf) len = 0;
    if (len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB &&
        (unsigned char)buf[2] == 0xBF) {
        buf += 3;
        len -= 3;
    }
    if (max_bytes && len > max_bytes) {
        err_set(err, ERR_INVALID, "JSON document of %zu bytes is over the limit of %zu bytes",
                len, max_bytes);
        return NULL;
    }
    if (len == 0) {
        err_set(err, ERR_INVALID, "empty JSON document");
        return NULL;
    }
    int d = jv_scan_depth(buf, len, max_depth);
    if (d > max_depth) {
        err_set(err, ERR_INVALID, "JSON nested deeper than %d levels", max_depth);
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!root) {
        err_set(err, ERR_INVALID, "malformed JSON at line %d, column %d: %s", je.line, je.column,
                je.text);
        return NULL;
    }
    return (struct jv *)root;
}

void jv_free(struct jv *root)
{
    if (root) json_decref(JV(root));
}

enum jv_kind jv_kind(const struct jv *v)
{
    if (!v) return JV_NULL;
    switch (json_typeof(CJV(v))) {
    case JSON_OBJECT: return JV_OBJECT;
    case JSON_ARRAY: return JV_ARRAY;
    case JSON_STRING: return JV_STRING;
    case JSON_INTEGER:
    case JSON_REAL: return JV_NUMBER;
    case JSON_TRUE:
    case JSON_FALSE: return JV_BOOL;
    case JSON_NULL: return JV_NULL;
    }
    return JV_NULL;
}

const struct jv *jv_get(const struct jv *obj, const char *key)
{
    if (!obj || !json_is_object(CJV(obj))) return NULL;
    return (const struct jv *)json_object_get(CJV(obj), key);
}

size_t jv_obj_len(const struct jv *obj)
{
    return obj && json_is_object(CJV(obj)) ? json_object_size(CJV(obj)) : 0;
}

void *jv_obj_iter(const struct jv *obj)
{
    return obj && json_is_object(CJV(obj)) ? json_object_iter(JV(obj)) : NULL;
}

void *jv_obj_next(const struct jv *obj, void *it)
{
    return json_object_iter_next(JV(obj), it);
}

const char *jv_obj_iter_key(void *it)
{
    return json_object_iter_key(it);
}

const struct jv *jv_obj_iter_val(void *it)
{
    return (const struct jv *)json_object_iter_value(it);
}

size_t jv_len(const struct jv *arr)
{
    return arr && json_is_array(CJV(arr)) ? json_array_size(CJV(arr)) : 0;
}

const struct jv *jv_at(const struct jv *arr, size_t i)
{
    if (!arr || !json_is_array(CJV(arr))) return NULL;
    return (const struct jv *)json_array_get(CJV(arr), i);
}

const char *jv_str(const struct jv *v, size_t *len)
{
    if (!v || !json_is_string(CJV(v))) return NULL;
    if (len) *len = json_string_length(CJV(v));
    return json_string_value(CJV(v));
}

bool jv_num(const struct jv *v, double *out)
{
    if (!v || !json_is_number(CJV(v))) return false;
    *out = json_number_value(CJV(v));
    return true;
}

bool jv_int(const struct jv *v, int64_t *out)
{
    if (!v) return false;
    if (json_is_integer(CJV(v))) {
        *out = (int64_t)json_integer_value(CJV(v));
        return true;
    }
    if (json_is_real(CJV(v))) {
        double d = json_real_value(CJV(v));
        if (d != floor(d) || d < -9.2e18 || d > 9.2e18) return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

bool jv_bool(const struct jv *v, bool *out)
{
    if (!v || !json_is_boolean(CJV(v))) return false;
    *out = json_is_true(CJV(v));
    return true;
}

/* ---- writer ---- */

void jw_init(struct jw *w, size_t max_bytes)
{
    memset(w, 0, sizeof *w);
    w->max = max_bytes ? max_bytes : (size_t)16 << 20;
}

void jw_free(struct jw *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static void jw_put(struct jw *w, const char *s, size_t n)
{
    if (w->overflow) return;
    if (w->len + n + 1 > w->max) {
        w->overflow = true;
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) cap *= 2;
        if (cap > w->max) cap = w->max;
        char *nb = realloc(w->buf, cap);
        if (!nb) {
            w->overflow = true;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void jw_putc(struct jw *w, char c)
{
    jw_put(w, &c, 1);
}

/* Comma handling before any value (or key) at the current depth. */
static void jw_sep(struct jw *w)
{
    if (w->after_key) {
        w->after_key = false;
        return;
    }
    if (w->need_comma[w->depth]) jw_putc(w, ',');
    w->need_comma[w->depth] = true;
}

static void jw_open(struct jw *w, char c)
{
    jw_sep(w);
    jw_putc(w, c);
    if (w->depth >= 32) {
        w->overflow = true;
        return;
    }
    w->depth++;
    w->need_comma[w->depth] = false;
}

static void jw_close(struct jw *w, char c)
{
    if (w->depth > 0) w->depth--;
    jw_putc(w, c);
}

void jw_obj_begin(struct jw *w) { jw_open(w, '{'); }
void jw_obj_end(struct jw *w) { jw_close(w, '}'); }
void jw_arr_begin(struct jw *w) { jw_open(w, '['); }
void jw_arr_end(struct jw *w) { jw_close(w, ']'); }

static void jw_escaped(struct jw *w, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    jw_putc(w, '"');
    size_t run = 0; /* bytes of p[i - run .. i) that need no escaping */
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        uint32_t cp;
        size_t ul = c >= 0x80 ? utf8_decode(p + i, n - i, &cp) : 0;
        if (ul > 1) {
            run += ul;
            i += ul;
            continue;
        }
        jw_put(w, (const char *)p + i - run, run);
        run = 0;
        char esc[8];
        switch (c) {
        case '"': jw_put(w, "\\\"", 2); break;
        case '\\': jw_put(w, "\\\\", 2); break;
        case '\n': jw_put(w, "\\n", 2); break;
        case '\r': jw_put(w, "\\r", 2); break;
        case '\t': jw_put(w, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                jw_put(w, esc, 6);
            } else {
                jw_put(w, "\xEF\xBF\xBD", 3); /* invalid UTF-8 byte -> U+FFFD */
            }
        }
        i++;
    }
    jw_put(w, (const char *)p + n - run, run);
    jw_putc(w, '"');
}

void jw_key(struct jw *w, const char *key)
{
    jw_sep(w);
    jw_escaped(w, key, strlen(key));
    jw_putc(w, ':');
    w->after_key = true;
}

void jw_strn(struct jw *w, const char *s, size_t n)
{
    jw_sep(w);
    jw_escaped(w, s, n);
}

void jw_str(struct jw *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_strn(w, s, strlen(s));
}

void jw_int(struct jw *w, int64_t v)
{
    char b[32];
    int n = snprintf(b, sizeof b, "%lld", (long long)v);
    jw_sep(w);
    jw_put(w, b, (size_t)n);
}

void jw_num(struct jw *w, double v, int prec)
{
    if (!isfinite(v)) {
        jw_null(w);
        return;
    }
    if (prec < 1 || prec > 17) prec = 17;
    char b[40];
    int n = snprintf(b, sizeof b, "%.*g", prec, v);
    jw_sep(w);
    jw_put(w, b, (size_t)n);
}

void jw_bool(struct jw *w, bool v)
{
    jw_sep(w);
    jw_put(w, v ? "true" : "false", v ? 4 : 5);
}

void jw_null(struct jw *w)
{
    jw_sep(w);
    jw_put(w, "null", 4);
}

void jw_raw(struct jw *w, const char *s, size_t n)
{
    jw_sep(w);
    jw_put(w, s, n);
}

/* ---- request-field validation ---- */

__attribute__((format(printf, 3, 4))) static int jv_fail(struct jv_invalid *inv,
                                                          const char *field, const char *fmt,
                                                          ...)
{
    if (inv) {
        snprintf(inv->field, sizeof inv->field, "%s", field);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(inv->message, sizeof inv->message, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int jv_require_object(const struct jv *root, struct jv_invalid *inv)
{
    if (root && json_is_object(CJV(root))) return 0;
    return jv_fail(inv, "", "request body must be a JSON object");
}

/* Looks the field up: 1 = present (value in *v), 0 = absent or null (default applies),
 * -1 = absent but required (inv filled). */
static int jv_lookup(const struct jv *obj, const char *key, bool required, const struct jv **v,
                     bool *present, struct jv_invalid *inv)
{
    const struct jv *f = jv_get(obj, key);
    bool given = f && !json_is_null(CJV(f));
    if (present) *present = given;
    *v = f;
    if (given) return 1;
    if (required) return jv_fail(inv, key, "%s is required", key);
    return 0;
}

int jv_field_int(const struct jv *obj, const char *key, bool required, int64_t lo, int64_t hi,
                 int64_t def, int64_t *out, bool *present, struct jv_invalid *inv)
{
    const struct jv *v;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) {
        if (r == 0) *out = def;
        return r;
    }
    int64_t x;
    if (!jv_int(v, &x) || x < lo || x > hi)
        return jv_fail(inv, key, "%s must be an integer between %lld and %lld", key,
                       (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

int jv_field_num(const struct jv *obj, const char *key, bool required, double lo, double hi,
                 double def, double *out, bool *present, struct jv_invalid *inv)
{
    const struct jv *v;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) {
        if (r == 0) *out = def;
        return r;
    }
    double x;
    if (!jv_num(v, &x) || !isfinite(x) || x < lo || x > hi)
        return jv_fail(inv, key, "%s must be a number between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

int jv_field_bool(const struct jv *obj, const char *key, bool required, bool def, bool *out,
                  bool *present, struct jv_invalid *inv)
{
    const struct jv *v;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) {
        if (r == 0) *out = def;
        return r;
    }
    if (!jv_bool(v, out)) return jv_fail(inv, key, "%s must be true or false", key);
    return 0;
}

int jv_field_enum(const struct jv *obj, const char *key, bool required,
                  const char *const *choices, int def, int *out, bool *present,
                  struct jv_invalid *inv)
{
    const struct jv *v;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) {
        if (r == 0) *out = def;
        return r;
    }
    size_t len = 0;
    const char *s = jv_str(v, &len);
    for (int i = 0; s && choices[i]; i++)
        if (strlen(choices[i]) == len && memcmp(choices[i], s, len) == 0) {
            *out = i;
            return 0;
        }
    char list[200] = "";
    size_t used = 0;
    for (int i = 0; choices[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                                 choices[i]);
    return jv_fail(inv, key, "%s must be one of %s", key, list);
}

int jv_field_str(const struct jv *obj, const char *key, bool required, size_t max_len,
                 const char *def, const char **out, size_t *len, bool *present,
                 struct jv_invalid *inv)
{
    const struct jv *v;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) {
        if (r == 0) {
            *out = def;
            if (len) *len = def ? strlen(def) : 0;
        }
        return r;
    }
    size_t l = 0;
    const char *s = jv_str(v, &l);
    if (!s || l > max_len)
        return jv_fail(inv, key, "%s must be a string of at most %zu bytes", key, max_len);
    if (memchr(s, '\0', l)) return jv_fail(inv, key, "%s must not contain NUL characters", key);
    *out = s;
    if (len) *len = l;
    return 0;
}

int jv_field_int_array(const struct jv *obj, const char *key, bool required, size_t max_items,
                       int64_t lo, int64_t hi, int64_t *out, size_t *n, bool *present,
                       struct jv_invalid *inv)
{
    const struct jv *v;
    *n = 0;
    int r = jv_lookup(obj, key, required, &v, present, inv);
    if (r <= 0) return r;
    if (jv_kind(v) != JV_ARRAY || jv_len(v) > max_items)
        return jv_fail(inv, key, "%s must be an array of at most %zu integers", key, max_items);
    size_t len = jv_len(v);
    for (size_t i = 0; i < len; i++) {
        int64_t x;
        if (!jv_int(jv_at(v, i), &x) || x < lo || x > hi)
            return jv_fail(inv, key, "%s[%zu] must be an integer between %lld and %lld", key, i,
                           (long long)lo, (long long)hi);
        out[i] = x;
    }
    *n = len;
    return 0;
}

void jv_invalid_write(const struct jv_invalid *inv, struct jw *w)
{
    jw_obj_begin(w);
    jw_key(w, "error");
    jw_str(w, "invalid_field");
    if (inv->field[0]) {
        jw_key(w, "field");
        jw_str(w, inv->field);
    }
    jw_key(w, "message");
    jw_str(w, inv->message);
    jw_obj_end(w);
}
