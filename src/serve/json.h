/** JSON for the whole project, the only module that includes jansson.
 *
 *  1. A read-only DOM for parsing documents from outside (feeds, API payloads, request
 *     bodies): jv_parse strips a UTF-8 BOM, bounds size and nesting depth, rejects invalid
 *     UTF-8, and returns a message naming the problem with line and column.
 *  2. Request-field validation helpers that produce 400 messages naming the field.
 *  3. A small fast writer for hot responses (struct jw). */
#ifndef SERVE_JSON_H
#define SERVE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

enum jv_kind {
    JV_NULL = 0,
    JV_BOOL,
    JV_NUMBER, /* integer or real */
    JV_STRING,
    JV_ARRAY,
    JV_OBJECT,
};

struct jv; /* opaque; values belong to the root returned by jv_parse */

#define JV_MAX_DEPTH_DEFAULT 64

struct jv_limits {
    size_t max_bytes;  /* 0 = no bound beyond the buffer */
    int max_depth;     /* 0 = JV_MAX_DEPTH_DEFAULT */
};

/** Parses buf[0..len). Accepts any value at the root (bare null too). NULL + err on error. */
struct jv *jv_parse(const char *buf, size_t len, const struct jv_limits *lim, struct err *err);
/** Frees a root from jv_parse; NULL is fine. */
void jv_free(struct jv *root);

enum jv_kind jv_kind(const struct jv *v);
/** Object member, or NULL if v is not an object or has no such key. */
const struct jv *jv_get(const struct jv *obj, const char *key);
/** Object iteration in document order:
 *    for (void *it = jv_obj_iter(o); it; it = jv_obj_next(o, it))
 *        use(jv_obj_iter_key(it), jv_obj_iter_val(it));
 *  jv_obj_len counts members (0 if not an object). */
size_t jv_obj_len(const struct jv *obj);
void *jv_obj_iter(const struct jv *obj);
void *jv_obj_next(const struct jv *obj, void *it);
const char *jv_obj_iter_key(void *it);
const struct jv *jv_obj_iter_val(void *it);
/** Array length (0 if not an array) and element i (NULL if out of range). */
size_t jv_len(const struct jv *arr);
const struct jv *jv_at(const struct jv *arr, size_t i);
/** Scalars: NULL / false when the kind differs. Strings are NUL-terminated UTF-8; `len` (may
 *  be NULL) receives the byte length (strings may contain U+0000). */
const char *jv_str(const struct jv *v, size_t *len);
bool jv_num(const struct jv *v, double *out);
/** Integer value; false if not a number or not integral or out of int64 range. */
bool jv_int(const struct jv *v, int64_t *out);
bool jv_bool(const struct jv *v, bool *out);

/* ---- a small fast writer ---- */

/** Growable output buffer with a hard cap; once the cap is hit, `overflow` is set and
 *  further writes are dropped (check it before sending). */
struct jw {
    char *buf;
    size_t len, cap, max;
    bool overflow;
    int depth;           /* nesting depth; beyond 32 levels the writer sets overflow */
    bool need_comma[33];
    bool after_key;
};

void jw_init(struct jw *w, size_t max_bytes);
void jw_free(struct jw *w);
void jw_obj_begin(struct jw *w);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w);
void jw_arr_end(struct jw *w);
/** Writes "key": inside an object; the next value call writes the value. */
void jw_key(struct jw *w, const char *key);
/** Strings are escaped (quotes, backslash, control characters; invalid UTF-8 replaced). */
void jw_str(struct jw *w, const char *s);
void jw_strn(struct jw *w, const char *s, size_t n);
void jw_int(struct jw *w, int64_t v);
/** Finite numbers with up to `prec` significant digits (6 is fine for scores); NaN/inf as null. */
void jw_num(struct jw *w, double v, int prec);
void jw_bool(struct jw *w, bool v);
void jw_null(struct jw *w);
/** Appends raw, already-valid JSON (e.g. a cached fragment). */
void jw_raw(struct jw *w, const char *s, size_t n);

/* ---- request-field validation ---- */

/** A validation failure: which field, and a sentence a client can act on
 *  ("k must be an integer between 1 and 100"). `field` is "" when the whole body is wrong. */
struct jv_invalid {
    char field[64];
    char message[256];
};

/** 0 if root is an object; -1 and inv ("request body must be a JSON object") if not. */
int jv_require_object(const struct jv *root, struct jv_invalid *inv);

/* The field helpers below share one contract. A field that is absent or null takes `def`
 * (and *present = false), unless `required`, which fails with "<key> is required". A present
 * field of the wrong type or out of range fails with a message naming the key and the rule.
 * Return 0 or -1 (inv filled). `present` may be NULL. Unknown fields are never looked at. */

/** An integer (a JSON number with no fractional part) in [lo, hi]. */
int jv_field_int(const struct jv *obj, const char *key, bool required, int64_t lo, int64_t hi,
                 int64_t def, int64_t *out, bool *present, struct jv_invalid *inv);
/** A finite number in [lo, hi]. */
int jv_field_num(const struct jv *obj, const char *key, bool required, double lo, double hi,
                 double def, double *out, bool *present, struct jv_invalid *inv);
/** true or false. */
int jv_field_bool(const struct jv *obj, const char *key, bool required, bool def, bool *out,
                  bool *present, struct jv_invalid *inv);
/** A string equal to one of `choices` (NULL-terminated); *out is its index. */
int jv_field_enum(const struct jv *obj, const char *key, bool required,
                  const char *const *choices, int def, int *out, bool *present,
                  struct jv_invalid *inv);
/** A string of at most max_len bytes without NUL characters; *out points into the document
 *  (valid until jv_free), or is `def`. `len` may be NULL. */
int jv_field_str(const struct jv *obj, const char *key, bool required, size_t max_len,
                 const char *def, const char **out, size_t *len, bool *present,
                 struct jv_invalid *inv);
/** An array of at most max_items integers, each in [lo, hi], copied to out[] (room for
 *  max_items); *n is the count (0 when absent). */
int jv_field_int_array(const struct jv *obj, const char *key, bool required, size_t max_items,
                       int64_t lo, int64_t hi, int64_t *out, size_t *n, bool *present,
                       struct jv_invalid *inv);

/** Writes the 400 body {"error":"invalid_field","field":"k","message":"..."} (the field key
 *  is left out when inv->field is empty). */
void jv_invalid_write(const struct jv_invalid *inv, struct jw *w);

#endif
