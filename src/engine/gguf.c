/* GGUF v2/v3 reader (mmap, fully validated) and v3 writer. See engine/gguf.h and docs/gguf.md.
 *
 * The reader never trusts a byte of the file: every count is bounded by the bytes that remain
 * (so a huge count cannot make us allocate or loop beyond the file's size), every length and
 * offset is checked with overflow-safe arithmetic before it is used, and every problem is
 * reported with the key or tensor it concerns and the byte offset where it was found. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_KEY_LEN 65535u   /* spec: keys are at most 2^16 - 1 bytes */
#define GGUF_MAX_NAME_LEN 64u     /* spec: tensor names are at most 64 bytes */
#define GGUF_MAX_ARRAY_DEPTH 8    /* arrays of arrays nest at most this deep */
#define GGUF_KV_MIN_BYTES 13u     /* key length (8) + type (4) + smallest value (1) */
#define GGUF_TENSOR_MIN_BYTES 32u /* name length (8) + n_dims (4) + ne (8) + type (4) + offset (8) */
#define GGUF_ARRAY_MIN_BYTES 12u  /* element type (4) + count (8) */

/* ---- type facts ---- */

struct type_info {
    const char *name;
    uint32_t blck;  /* elements per block */
    uint32_t bytes; /* bytes per block */
};

/* Block layouts as in ggml-common.h (block_q4_0 = f16 d + 16 nibble bytes = 18, ...). Types
 * that exist in ggml but are not listed in gguf.h (the IQ family, ...) carry only a name, so
 * the reader can say which unsupported type a tensor has. */
static const struct type_info ggml_types[GGML_TYPE_COUNT] = {
    [GGML_TYPE_F32] = {"f32", 1, 4},       [GGML_TYPE_F16] = {"f16", 1, 2},
    [GGML_TYPE_Q4_0] = {"q4_0", 32, 18},   [GGML_TYPE_Q4_1] = {"q4_1", 32, 20},
    [4] = {"q4_2 (removed)", 0, 0},        [5] = {"q4_3 (removed)", 0, 0},
    [GGML_TYPE_Q5_0] = {"q5_0", 32, 22},   [GGML_TYPE_Q5_1] = {"q5_1", 32, 24},
    [GGML_TYPE_Q8_0] = {"q8_0", 32, 34},   [GGML_TYPE_Q8_1] = {"q8_1", 32, 36},
    [GGML_TYPE_Q2_K] = {"q2_K", 256, 84},  [GGML_TYPE_Q3_K] = {"q3_K", 256, 110},
    [GGML_TYPE_Q4_K] = {"q4_K", 256, 144}, [GGML_TYPE_Q5_K] = {"q5_K", 256, 176},
    [GGML_TYPE_Q6_K] = {"q6_K", 256, 210}, [GGML_TYPE_Q8_K] = {"q8_K", 256, 292},
    [16] = {"iq2_xxs", 0, 0},              [17] = {"iq2_xs", 0, 0},
    [18] = {"iq3_xxs", 0, 0},              [19] = {"iq1_s", 0, 0},
    [20] = {"iq4_nl", 0, 0},               [21] = {"iq3_s", 0, 0},
    [22] = {"iq2_s", 0, 0},                [23] = {"iq4_xs", 0, 0},
    [GGML_TYPE_I8] = {"i8", 1, 1},         [GGML_TYPE_I16] = {"i16", 1, 2},
    [GGML_TYPE_I32] = {"i32", 1, 4},       [GGML_TYPE_I64] = {"i64", 1, 8},
    [GGML_TYPE_F64] = {"f64", 1, 8},       [29] = {"iq1_m", 0, 0},
    [GGML_TYPE_BF16] = {"bf16", 1, 2},
};

static const char *const gguf_type_names[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_UINT8] = "u8",   [GGUF_TYPE_INT8] = "i8",       [GGUF_TYPE_UINT16] = "u16",
    [GGUF_TYPE_INT16] = "i16",  [GGUF_TYPE_UINT32] = "u32",    [GGUF_TYPE_INT32] = "i32",
    [GGUF_TYPE_FLOAT32] = "f32", [GGUF_TYPE_BOOL] = "bool",    [GGUF_TYPE_STRING] = "string",
    [GGUF_TYPE_ARRAY] = "array", [GGUF_TYPE_UINT64] = "u64",   [GGUF_TYPE_INT64] = "i64",
    [GGUF_TYPE_FLOAT64] = "f64",
};

/* Size in bytes of a fixed-size value type; 0 for string, array and unknown types. */
static uint32_t gguf_scalar_size(enum gguf_type t)
{
    switch (t) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(enum gguf_type t)
{
    if ((unsigned)t >= GGUF_TYPE_COUNT) return NULL;
    return gguf_type_names[t];
}

const char *ggml_type_name(enum ggml_type t)
{
    if ((unsigned)t >= GGML_TYPE_COUNT || ggml_types[t].blck == 0) return NULL;
    return ggml_types[t].name;
}

uint32_t ggml_blck_size(enum ggml_type t)
{
    if ((unsigned)t >= GGML_TYPE_COUNT) return 0;
    return ggml_types[t].blck;
}

uint32_t ggml_type_size(enum ggml_type t)
{
    if ((unsigned)t >= GGML_TYPE_COUNT) return 0;
    return ggml_types[t].bytes;
}

uint64_t ggml_row_size(enum ggml_type t, uint64_t n)
{
    uint32_t blck = ggml_blck_size(t);
    if (blck == 0 || n % blck != 0) return 0;
    uint64_t blocks = n / blck;
    uint64_t size = ggml_type_size(t);
    if (blocks > UINT64_MAX / size) return 0;
    return blocks * size;
}

bool gguf_str_eq(struct gguf_str s, const char *z)
{
    size_t n = strlen(z);
    return s.len == n && (n == 0 || memcmp(s.ptr, z, n) == 0);
}

/* ---- the handle ---- */

/* Name index: open addressing over indices + 1 (0 = empty slot). */
struct name_index {
    uint64_t *slots;
    uint64_t mask;
};

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_start;
    uint64_t n_kv;
    struct gguf_kv *kvs;
    struct gguf_str *kv_strs; /* the views that string kvs' data point at */
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    struct name_index kv_index, tensor_index;
    void **allocs; /* string views and nested arrays of array-valued kvs */
    size_t n_allocs, cap_allocs;
};

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (uint8_t)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static int index_init(struct name_index *ix, uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2; /* n is bounded by the file size, so this terminates */
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return ERR_NOMEM;
    ix->mask = cap - 1;
    return 0;
}

static const struct gguf_str *kv_name(const struct gguf_file *f, uint64_t i)
{
    return &f->kvs[i].key;
}

static const struct gguf_str *tensor_name(const struct gguf_file *f, uint64_t i)
{
    return &f->tensors[i].name;
}

typedef const struct gguf_str *(*name_fn)(const struct gguf_file *, uint64_t);

/* Returns the index of `name` or UINT64_MAX; with `insert_idx` != UINT64_MAX, inserts it when
 * absent (and still returns UINT64_MAX, so a non-MAX answer means "duplicate"). */
static uint64_t index_lookup(const struct gguf_file *f, const struct name_index *ix, name_fn get,
                             const char *p, uint64_t n, uint64_t insert_idx)
{
    if (!ix->slots) return UINT64_MAX;
    uint64_t h = hash_bytes(p, n) & ix->mask;
    for (;;) {
        uint64_t s = ix->slots[h];
        if (s == 0) {
            if (insert_idx != UINT64_MAX) ix->slots[h] = insert_idx + 1;
            return UINT64_MAX;
        }
        const struct gguf_str *k = get(f, s - 1);
        if (k->len == n && (n == 0 || memcmp(k->ptr, p, n) == 0)) return s - 1;
        h = (h + 1) & ix->mask;
    }
}

static int track_alloc(struct gguf_file *f, void *p)
{
    if (f->n_allocs == f->cap_allocs) {
        size_t cap = f->cap_allocs ? 2 * f->cap_allocs : 16;
        void **a = realloc(f->allocs, cap * sizeof *a);
        if (!a) return ERR_NOMEM;
        f->allocs = a;
        f->cap_allocs = cap;
    }
    f->allocs[f->n_allocs++] = p;
    return 0;
}

void gguf_close(struct gguf_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_allocs; i++) free(f->allocs[i]);
    free(f->allocs);
    free(f->kvs);
    free(f->kv_strs);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    if (f->mapped && f->size) munmap((void *)f->base, f->size);
    free(f);
}

/* ---- parsing ---- */

struct rd {
    struct gguf_file *f;
    const uint8_t *p;
    uint64_t len, pos;
    struct err *err;
};

/* Writes a printable rendering of a name from the file, at most cap - 1 bytes ("..." marks a
 * cut), for error messages: the file may hold control bytes or megabytes in a name. */
static const char *esc_name(const char *p, uint64_t n, char *buf, size_t cap)
{
    size_t o = 0;
    uint64_t i = 0;
    for (; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
            buf[o++] = (char)c;
        } else {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        }
    }
    if (i < n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

static uint64_t rd_left(const struct rd *r)
{
    return r->len - r->pos;
}

/* Fails unless n more bytes are available; `what` (printf-ready, already formatted) names the
 * thing being read. */
static int rd_need(struct rd *r, uint64_t n, const char *what)
{
    if (n <= rd_left(r)) return 0;
    return err_set(r->err, ERR_INVALID,
                   "truncated file: %s at offset %" PRIu64 " needs %" PRIu64
                   " bytes, only %" PRIu64 " left (file size %" PRIu64 ")",
                   what, r->pos, n, rd_left(r), r->len);
}

static int rd_u32(struct rd *r, uint32_t *out, const char *what)
{
    int rc = rd_need(r, 4, what);
    if (rc) return rc;
    memcpy(out, r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *out, const char *what)
{
    int rc = rd_need(r, 8, what);
    if (rc) return rc;
    memcpy(out, r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* Reads a length-prefixed string of at most `max` bytes into a view. */
static int rd_str(struct rd *r, uint64_t max, struct gguf_str *out, const char *what)
{
    uint64_t at = r->pos, n;
    int rc = rd_u64(r, &n, what);
    if (rc) return rc;
    if (n > rd_left(r))
        return err_set(r->err, ERR_INVALID,
                       "%s at offset %" PRIu64 ": length %" PRIu64 " exceeds the %" PRIu64
                       " bytes left in the file",
                       what, at, n, rd_left(r));
    if (n > max)
        return err_set(r->err, ERR_INVALID,
                       "%s at offset %" PRIu64 ": length %" PRIu64 " is over the limit of %" PRIu64,
                       what, at, n, max);
    out->len = n;
    out->ptr = (const char *)(r->p + r->pos);
    r->pos += n;
    return 0;
}

/* Reads an array body (element type, count, elements) into `out`, whose key is already set.
 * String elements become an owned array of views; array elements an owned array of gguf_kv
 * (with empty keys), validated recursively up to GGUF_MAX_ARRAY_DEPTH. Every count is
 * bounded by the bytes left before anything is allocated. */
static int rd_array(struct rd *r, struct gguf_kv *out, int depth, const char *ctx)
{
    char what[400];
    uint64_t at = r->pos;
    uint32_t et;
    uint64_t n;
    snprintf(what, sizeof what, "%s: array element type", ctx);
    int rc = rd_u32(r, &et, what);
    if (rc) return rc;
    snprintf(what, sizeof what, "%s: array length", ctx);
    rc = rd_u64(r, &n, what);
    if (rc) return rc;
    if (et >= GGUF_TYPE_COUNT)
        return err_set(r->err, ERR_INVALID,
                       "%s: unknown array element type %" PRIu32 " at offset %" PRIu64, ctx, et,
                       at);
    out->type = GGUF_TYPE_ARRAY;
    out->arr_type = (enum gguf_type)et;
    out->arr_n = n;
    out->data = r->p + r->pos;
    uint32_t sz = gguf_scalar_size((enum gguf_type)et);
    if (sz) {
        if (n > rd_left(r) / sz)
            return err_set(r->err, ERR_INVALID,
                           "%s: array of %" PRIu64 " %s at offset %" PRIu64
                           " needs more than the %" PRIu64 " bytes left in the file",
                           ctx, n, gguf_type_names[et], at, rd_left(r));
        if (et == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < n; i++) {
                uint8_t b = r->p[r->pos + i];
                if (b > 1)
                    return err_set(r->err, ERR_INVALID,
                                   "%s: array element %" PRIu64 " at offset %" PRIu64
                                   ": bool value %u is not 0 or 1",
                                   ctx, i, r->pos + i, b);
            }
        }
        r->pos += n * sz;
        return 0;
    }
    if (et == GGUF_TYPE_STRING) {
        if (n > rd_left(r) / 8)
            return err_set(r->err, ERR_INVALID,
                           "%s: array of %" PRIu64 " strings at offset %" PRIu64
                           " cannot fit in the %" PRIu64 " bytes left in the file",
                           ctx, n, at, rd_left(r));
        if (n == 0) return 0;
        struct gguf_str *strs = malloc(n * sizeof *strs);
        if (!strs || track_alloc(r->f, strs)) {
            free(strs);
            return err_set(r->err, ERR_NOMEM, "%s: out of memory for %" PRIu64 " strings", ctx, n);
        }
        out->data = strs;
        for (uint64_t i = 0; i < n; i++) {
            snprintf(what, sizeof what, "%s: string %" PRIu64 " of %" PRIu64, ctx, i, n);
            rc = rd_str(r, UINT64_MAX, &strs[i], what);
            if (rc) return rc;
        }
        return 0;
    }
    /* arrays of arrays */
    if (depth >= GGUF_MAX_ARRAY_DEPTH)
        return err_set(r->err, ERR_INVALID,
                       "%s: arrays nested deeper than %d levels at offset %" PRIu64, ctx,
                       GGUF_MAX_ARRAY_DEPTH, at);
    if (n > rd_left(r) / GGUF_ARRAY_MIN_BYTES)
        return err_set(r->err, ERR_INVALID,
                       "%s: array of %" PRIu64 " arrays at offset %" PRIu64
                       " cannot fit in the %" PRIu64 " bytes left in the file",
                       ctx, n, at, rd_left(r));
    if (n == 0) return 0;
    struct gguf_kv *elems = calloc(n, sizeof *elems);
    if (!elems || track_alloc(r->f, elems)) {
        free(elems);
        return err_set(r->err, ERR_NOMEM, "%s: out of memory for %" PRIu64 " arrays", ctx, n);
    }
    out->data = elems;
    for (uint64_t i = 0; i < n; i++) {
        char sub[400];
        snprintf(sub, sizeof sub, "%.300s[%" PRIu64 "]", ctx, i);
        rc = rd_array(r, &elems[i], depth + 1, sub);
        if (rc) return rc;
    }
    return 0;
}

/* Reads one metadata entry into f->kvs[i]. */
static int rd_kv(struct rd *r, uint64_t i)
{
    struct gguf_file *f = r->f;
    struct gguf_kv *kv = &f->kvs[i];
    char what[200], name[100], ctx[160];
    uint64_t at = r->pos;
    snprintf(what, sizeof what, "key of metadata entry %" PRIu64, i);
    int rc = rd_str(r, GGUF_MAX_KEY_LEN, &kv->key, what);
    if (rc) return rc;
    esc_name(kv->key.ptr, kv->key.len, name, 80);
    if (kv->key.len == 0)
        return err_set(r->err, ERR_INVALID, "metadata entry %" PRIu64 " at offset %" PRIu64
                       " has an empty key", i, at);
    snprintf(ctx, sizeof ctx, "key '%s'", name);
    uint64_t dup = index_lookup(f, &f->kv_index, kv_name, kv->key.ptr, kv->key.len, i);
    if (dup != UINT64_MAX)
        return err_set(r->err, ERR_INVALID,
                       "duplicate metadata key '%s' (entries %" PRIu64 " and %" PRIu64
                       ", offset %" PRIu64 ")", name, dup, i, at);
    uint32_t t;
    uint64_t tat = r->pos;
    snprintf(what, sizeof what, "%s: value type", ctx);
    rc = rd_u32(r, &t, what);
    if (rc) return rc;
    if (t >= GGUF_TYPE_COUNT)
        return err_set(r->err, ERR_INVALID,
                       "%s: unknown value type %" PRIu32 " at offset %" PRIu64, ctx, t, tat);
    kv->type = (enum gguf_type)t;
    kv->arr_type = GGUF_TYPE_COUNT;
    kv->arr_n = 0;
    uint32_t sz = gguf_scalar_size(kv->type);
    if (sz) {
        snprintf(what, sizeof what, "%s: %s value", ctx, gguf_type_names[t]);
        rc = rd_need(r, sz, what);
        if (rc) return rc;
        kv->data = r->p + r->pos;
        if (kv->type == GGUF_TYPE_BOOL && r->p[r->pos] > 1)
            return err_set(r->err, ERR_INVALID,
                           "%s: bool value %u at offset %" PRIu64 " is not 0 or 1", ctx,
                           r->p[r->pos], r->pos);
        r->pos += sz;
        return 0;
    }
    if (kv->type == GGUF_TYPE_STRING) {
        snprintf(what, sizeof what, "%s: string value", ctx);
        rc = rd_str(r, UINT64_MAX, &f->kv_strs[i], what);
        kv->data = &f->kv_strs[i];
        return rc;
    }
    return rd_array(r, kv, 0, ctx);
}

/* Reads tensor info i (name, dims, type, offset) and checks everything that does not depend
 * on the data section's position. */
static int rd_tensor_info(struct rd *r, uint64_t i)
{
    struct gguf_file *f = r->f;
    struct gguf_tensor *t = &f->tensors[i];
    char what[200], name[100];
    uint64_t at = r->pos;
    snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
    int rc = rd_str(r, GGUF_MAX_NAME_LEN, &t->name, what);
    if (rc) return rc;
    esc_name(t->name.ptr, t->name.len, name, 80);
    if (t->name.len == 0)
        return err_set(r->err, ERR_INVALID,
                       "tensor %" PRIu64 " at offset %" PRIu64 " has an empty name", i, at);
    uint64_t dup = index_lookup(f, &f->tensor_index, tensor_name, t->name.ptr, t->name.len, i);
    if (dup != UINT64_MAX)
        return err_set(r->err, ERR_INVALID,
                       "duplicate tensor name '%s' (tensors %" PRIu64 " and %" PRIu64
                       ", offset %" PRIu64 ")", name, dup, i, at);
    snprintf(what, sizeof what, "tensor '%s': n_dims", name);
    uint64_t dat = r->pos;
    rc = rd_u32(r, &t->n_dims, what);
    if (rc) return rc;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return err_set(r->err, ERR_INVALID,
                       "tensor '%s': n_dims %" PRIu32 " at offset %" PRIu64
                       " is not between 1 and %d", name, t->n_dims, dat, GGUF_MAX_DIMS);
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        snprintf(what, sizeof what, "tensor '%s': dimension %" PRIu32, name, d);
        uint64_t nat = r->pos;
        rc = rd_u64(r, &t->ne[d], what);
        if (rc) return rc;
        if (t->ne[d] > (uint64_t)INT64_MAX || (t->ne[d] && nel > (uint64_t)INT64_MAX / t->ne[d]))
            return err_set(r->err, ERR_INVALID,
                           "tensor '%s': dimension %" PRIu32 " = %" PRIu64 " at offset %" PRIu64
                           " makes the element count overflow", name, d, t->ne[d], nat);
        nel *= t->ne[d];
    }
    uint32_t ty;
    uint64_t tat = r->pos;
    snprintf(what, sizeof what, "tensor '%s': type", name);
    rc = rd_u32(r, &ty, what);
    if (rc) return rc;
    if (ty >= GGML_TYPE_COUNT || ggml_types[ty].blck == 0) {
        const char *tn = ty < GGML_TYPE_COUNT ? ggml_types[ty].name : NULL;
        if (tn)
            return err_set(r->err, ERR_UNSUPPORTED,
                           "tensor '%s': unsupported tensor type %" PRIu32 " (%s) at offset %" PRIu64,
                           name, ty, tn, tat);
        return err_set(r->err, ERR_INVALID,
                       "tensor '%s': unknown tensor type %" PRIu32 " at offset %" PRIu64, name, ty,
                       tat);
    }
    t->type = (enum ggml_type)ty;
    uint64_t row = ggml_row_size(t->type, t->ne[0]);
    if (row == 0 && t->ne[0] != 0)
        return err_set(r->err, ERR_INVALID,
                       "tensor '%s': row length %" PRIu64 " is not a multiple of the %s block "
                       "size %" PRIu32, name, t->ne[0], ggml_types[ty].name, ggml_types[ty].blck);
    uint64_t rows = t->ne[0] ? nel / t->ne[0] : 0;
    if (row && rows > UINT64_MAX / row)
        return err_set(r->err, ERR_INVALID, "tensor '%s': byte size overflows", name);
    t->nbytes = row * rows;
    snprintf(what, sizeof what, "tensor '%s': data offset", name);
    uint64_t oat = r->pos;
    rc = rd_u64(r, &t->offset, what);
    if (rc) return rc;
    if (t->offset % f->alignment != 0)
        return err_set(r->err, ERR_INVALID,
                       "tensor '%s': data offset %" PRIu64 " (at offset %" PRIu64
                       ") is not a multiple of the alignment %" PRIu64,
                       name, t->offset, oat, f->alignment);
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places every tensor in the data section and checks that none runs past the end of the file
 * and that no two overlap. */
static int place_tensors(struct rd *r)
{
    struct gguf_file *f = r->f;
    if (f->n_tensors == 0) return 0;
    if (f->data_start > f->size)
        return err_set(r->err, ERR_INVALID,
                       "truncated file: data section would start at offset %" PRIu64
                       " (tensor infos end at %" PRIu64 ", alignment %" PRIu64
                       ") but the file has %" PRIu64 " bytes",
                       f->data_start, r->pos, f->alignment, f->size);
    uint64_t room = f->size - f->data_start;
    char name[100];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        if (t->offset > room || t->nbytes > room - t->offset) {
            esc_name(t->name.ptr, t->name.len, name, 80);
            return err_set(r->err, ERR_INVALID,
                           "tensor '%s': data [offset %" PRIu64 ", %" PRIu64
                           " bytes] runs past end of file (data section starts at %" PRIu64
                           ", file size %" PRIu64 ")",
                           name, t->offset, t->nbytes, f->data_start, f->size);
        }
        t->data = f->base + f->data_start + t->offset;
    }
    const struct gguf_tensor **order = malloc(f->n_tensors * sizeof *order);
    if (!order) return err_set(r->err, ERR_NOMEM, "out of memory sorting tensors");
    for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, cmp_by_offset);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        const struct gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->nbytes && b->nbytes && a->offset + a->nbytes > b->offset) {
            char other[100];
            esc_name(a->name.ptr, a->name.len, name, 80);
            esc_name(b->name.ptr, b->name.len, other, 80);
            rc = err_set(r->err, ERR_INVALID,
                         "tensors '%s' [offset %" PRIu64 ", %" PRIu64 " bytes] and '%s' [offset %"
                         PRIu64 "] overlap", name, a->offset, a->nbytes, other, b->offset);
            break;
        }
    }
    free(order);
    return rc;
}

/* Reads general.alignment if present: it must be a nonzero power-of-two u32. */
static int read_alignment(struct rd *r)
{
    struct gguf_file *f = r->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv) return 0;
    if (kv->type != GGUF_TYPE_UINT32)
        return err_set(r->err, ERR_INVALID, "key 'general.alignment' has type %s, expected u32",
                       gguf_type_names[kv->type]);
    uint32_t a;
    memcpy(&a, kv->data, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return err_set(r->err, ERR_INVALID,
                       "key 'general.alignment' = %" PRIu32 " is not a nonzero power of two", a);
    f->alignment = a;
    return 0;
}

/* Parses and validates the whole file; fills f. */
static int parse(struct gguf_file *f, struct err *err)
{
    struct rd r = {.f = f, .p = f->base, .len = f->size, .pos = 0, .err = err};
    uint32_t magic;
    if (f->size < 4)
        return err_set(err, ERR_INVALID, "not a GGUF file: only %" PRIu64 " bytes", f->size);
    memcpy(&magic, f->base, 4);
    if (magic != GGUF_MAGIC)
        return err_set(err, ERR_INVALID,
                       "not a GGUF file: magic at offset 0 is %02x %02x %02x %02x, expected "
                       "\"GGUF\"", f->base[0], f->base[1], f->base[2], f->base[3]);
    r.pos = 4;
    int rc = rd_u32(&r, &f->version, "version");
    if (rc) return rc;
    if (f->version == 1)
        return err_set(err, ERR_UNSUPPORTED,
                       "GGUF version 1 is not supported (only versions 2 and 3); convert the "
                       "file with a current llama.cpp");
    if (f->version != 2 && f->version != 3) {
        if (f->version == 0x02000000u || f->version == 0x03000000u)
            return err_set(err, ERR_UNSUPPORTED,
                           "big-endian GGUF files are not supported (version field %08" PRIx32 ")",
                           f->version);
        return err_set(err, ERR_UNSUPPORTED,
                       "unsupported GGUF version %" PRIu32 " (expected 2 or 3)", f->version);
    }
    rc = rd_u64(&r, &f->n_tensors, "tensor count");
    if (rc) return rc;
    rc = rd_u64(&r, &f->n_kv, "metadata key count");
    if (rc) return rc;
    uint64_t left = rd_left(&r);
    if (f->n_kv > left / GGUF_KV_MIN_BYTES)
        return err_set(err, ERR_INVALID,
                       "truncated or corrupt file: metadata key count %" PRIu64
                       " (offset 16) cannot fit in the %" PRIu64 " bytes after the header", f->n_kv, left);
    if (f->n_tensors > left / GGUF_TENSOR_MIN_BYTES ||
        f->n_kv * GGUF_KV_MIN_BYTES > left - f->n_tensors * GGUF_TENSOR_MIN_BYTES)
        return err_set(err, ERR_INVALID,
                       "truncated or corrupt file: tensor count %" PRIu64 " (offset 8) with %" PRIu64
                       " metadata keys cannot fit in the %" PRIu64 " bytes after the header",
                       f->n_tensors, f->n_kv, left);
    if (f->n_kv) {
        f->kvs = calloc(f->n_kv, sizeof *f->kvs);
        f->kv_strs = calloc(f->n_kv, sizeof *f->kv_strs);
        if (!f->kvs || !f->kv_strs || index_init(&f->kv_index, f->n_kv))
            return err_set(err, ERR_NOMEM, "out of memory for %" PRIu64 " metadata keys",
                           f->n_kv);
    }
    for (uint64_t i = 0; i < f->n_kv; i++) {
        rc = rd_kv(&r, i);
        if (rc) return rc;
    }
    rc = read_alignment(&r);
    if (rc) return rc;
    if (f->n_tensors) {
        f->tensors = calloc(f->n_tensors, sizeof *f->tensors);
        if (!f->tensors || index_init(&f->tensor_index, f->n_tensors))
            return err_set(err, ERR_NOMEM, "out of memory for %" PRIu64 " tensors",
                           f->n_tensors);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        rc = rd_tensor_info(&r, i);
        if (rc) return rc;
    }
    /* r.pos <= size, alignment <= 2^31: no overflow */
    f->data_start = (r.pos + f->alignment - 1) / f->alignment * f->alignment;
    return place_tensors(&r);
}

struct gguf_file *gguf_open_mem(const void *buf, size_t len, struct err *err)
{
    struct gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        err_set(err, ERR_NOMEM, "out of memory");
        return NULL;
    }
    static const uint8_t empty[1];
    f->base = buf ? buf : empty;
    f->size = buf ? len : 0;
    if (parse(f, err)) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

struct gguf_file *gguf_open(const char *path, struct err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(err, ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, ERR_INVALID, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size == 0) {
        err_set(err, ERR_INVALID, "%s: empty file, not GGUF", path);
        close(fd);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd);
    if (m == MAP_FAILED) {
        err_set(err, ERR_IO, "%s: cannot mmap %lld bytes: %s", path, (long long)st.st_size,
                strerror(mmap_errno));
        return NULL;
    }
    struct gguf_file *f = calloc(1, sizeof *f);
    if (!f) {
        munmap(m, (size_t)st.st_size);
        err_set(err, ERR_NOMEM, "%s: out of memory", path);
        return NULL;
    }
    f->base = m;
    f->size = (uint64_t)st.st_size;
    f->mapped = true;
    if (parse(f, err)) {
        err_prefix(err, "%s", path);
        gguf_close(f);
        return NULL;
    }
    return f;
}

/* ---- accessors ---- */

uint32_t gguf_version(const struct gguf_file *f) { return f->version; }
uint64_t gguf_alignment(const struct gguf_file *f) { return f->alignment; }
uint64_t gguf_n_kv(const struct gguf_file *f) { return f->n_kv; }
uint64_t gguf_n_tensors(const struct gguf_file *f) { return f->n_tensors; }
uint64_t gguf_file_size(const struct gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const struct gguf_file *f) { return f->data_start; }
bool gguf_is_mapped(const struct gguf_file *f) { return f->mapped; }

const struct gguf_kv *gguf_kv_at(const struct gguf_file *f, uint64_t i)
{
    return i < f->n_kv ? &f->kvs[i] : NULL;
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, uint64_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key)
{
    uint64_t i = index_lookup(f, &f->kv_index, kv_name, key, strlen(key), UINT64_MAX);
    return i == UINT64_MAX ? NULL : &f->kvs[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    uint64_t i = index_lookup(f, &f->tensor_index, tensor_name, name, strlen(name), UINT64_MAX);
    return i == UINT64_MAX ? NULL : &f->tensors[i];
}

/* Reads an integer scalar of any width. Returns false for non-integer types. */
static bool load_int(enum gguf_type t, const void *p, bool *neg, uint64_t *mag)
{
    *neg = false;
    switch (t) {
    case GGUF_TYPE_UINT8: { uint8_t v; memcpy(&v, p, 1); *mag = v; return true; }
    case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, p, 2); *mag = v; return true; }
    case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, p, 4); *mag = v; return true; }
    case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, p, 8); *mag = v; return true; }
    case GGUF_TYPE_INT8: { int8_t v; memcpy(&v, p, 1); *neg = v < 0; *mag = (uint64_t)(v < 0 ? -(int64_t)v : v); return true; }
    case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, p, 2); *neg = v < 0; *mag = (uint64_t)(v < 0 ? -(int64_t)v : v); return true; }
    case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, p, 4); *neg = v < 0; *mag = (uint64_t)(v < 0 ? -(int64_t)v : v); return true; }
    case GGUF_TYPE_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        *neg = v < 0;
        *mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        return true;
    }
    default: return false;
    }
}

static const struct gguf_kv *find_for_get(const struct gguf_file *f, const char *key,
                                          struct err *err)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) err_set(err, ERR_NOTFOUND, "metadata key '%s' not found", key);
    return kv;
}

/* Fetches an integer key as sign + magnitude, with messages naming the key and types. */
static int get_int(const struct gguf_file *f, const char *key, const char *want, bool *neg,
                   uint64_t *mag, struct err *err)
{
    const struct gguf_kv *kv = find_for_get(f, key, err);
    if (!kv) return ERR_NOTFOUND;
    if (!load_int(kv->type, kv->data, neg, mag))
        return err_set(err, ERR_INVALID, "metadata key '%s' has type %s, expected an integer (%s)",
                       key, gguf_type_names[kv->type], want);
    return 0;
}

static int not_fit(struct err *err, const char *key, bool neg, uint64_t mag, const char *want)
{
    return err_set(err, ERR_INVALID, "metadata key '%s' = %s%" PRIu64 " does not fit in %s", key,
                   neg ? "-" : "", mag, want);
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, struct err *err)
{
    bool neg;
    uint64_t mag;
    int rc = get_int(f, key, "u32", &neg, &mag, err);
    if (rc) return rc;
    if ((neg && mag) || mag > UINT32_MAX) return not_fit(err, key, neg, mag, "u32");
    *out = (uint32_t)mag;
    return 0;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out, struct err *err)
{
    bool neg;
    uint64_t mag;
    int rc = get_int(f, key, "u64", &neg, &mag, err);
    if (rc) return rc;
    if (neg && mag) return not_fit(err, key, neg, mag, "u64");
    *out = mag;
    return 0;
}

int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out, struct err *err)
{
    bool neg;
    uint64_t mag;
    int rc = get_int(f, key, "i64", &neg, &mag, err);
    if (rc) return rc;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return not_fit(err, key, neg, mag, "i64");
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    } else {
        if (mag > (uint64_t)INT64_MAX) return not_fit(err, key, neg, mag, "i64");
        *out = (int64_t)mag;
    }
    return 0;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out, struct err *err)
{
    const struct gguf_kv *kv = find_for_get(f, key, err);
    if (!kv) return ERR_NOTFOUND;
    if (kv->type == GGUF_TYPE_FLOAT32) {
        memcpy(out, kv->data, 4);
        return 0;
    }
    if (kv->type == GGUF_TYPE_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
        return 0;
    }
    return err_set(err, ERR_INVALID, "metadata key '%s' has type %s, expected a float (f32)", key,
                   gguf_type_names[kv->type]);
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, struct err *err)
{
    const struct gguf_kv *kv = find_for_get(f, key, err);
    if (!kv) return ERR_NOTFOUND;
    if (kv->type != GGUF_TYPE_BOOL)
        return err_set(err, ERR_INVALID, "metadata key '%s' has type %s, expected bool", key,
                       gguf_type_names[kv->type]);
    *out = *(const uint8_t *)kv->data != 0;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                 struct err *err)
{
    const struct gguf_kv *kv = find_for_get(f, key, err);
    if (!kv) return ERR_NOTFOUND;
    if (kv->type != GGUF_TYPE_STRING)
        return err_set(err, ERR_INVALID, "metadata key '%s' has type %s, expected string", key,
                       gguf_type_names[kv->type]);
    *out = *(const struct gguf_str *)kv->data;
    return 0;
}

struct gguf_str gguf_arr_str(const struct gguf_kv *kv, uint64_t i)
{
    struct gguf_str none = {0, ""};
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_n)
        return none;
    return ((const struct gguf_str *)kv->data)[i];
}

const struct gguf_kv *gguf_arr_arr(const struct gguf_kv *kv, uint64_t i)
{
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_ARRAY || i >= kv->arr_n)
        return NULL;
    return &((const struct gguf_kv *)kv->data)[i];
}

bool gguf_arr_f64(const struct gguf_kv *kv, uint64_t i, double *out)
{
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return false;
    uint32_t sz = gguf_scalar_size(kv->arr_type);
    if (!sz) return false;
    const uint8_t *p = (const uint8_t *)kv->data + i * sz;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        memcpy(out, p, 8);
        return true;
    }
    bool neg;
    uint64_t mag;
    if (!load_int(kv->arr_type, p, &neg, &mag)) return false;
    *out = neg ? -(double)mag : (double)mag;
    return true;
}

bool gguf_arr_i64(const struct gguf_kv *kv, uint64_t i, int64_t *out)
{
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return false;
    uint32_t sz = gguf_scalar_size(kv->arr_type);
    if (!sz) return false;
    bool neg;
    uint64_t mag;
    if (!load_int(kv->arr_type, (const uint8_t *)kv->data + i * sz, &neg, &mag)) return false;
    if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX) return false;
    *out = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    return true;
}

/* ---- printing (gguf-info) ---- */

#define INFO_ARRAY_HEAD 3      /* elements shown of an abbreviated array */
#define INFO_ARRAY_FULL 8      /* arrays up to this length are shown whole */
#define INFO_STRING_MAX 160    /* bytes of a string value shown unless --all */

/* Prints a string with C-style escapes for quotes, backslashes and control bytes; bytes from
 * 0x80 up pass through (UTF-8). Cut at `max` bytes with "..." when max is not 0. */
static void print_escaped(FILE *out, struct gguf_str s, uint64_t max)
{
    uint64_t n = (max && s.len > max) ? max : s.len;
    fputc('"', out);
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\t': fputs("\\t", out); break;
        case '\r': fputs("\\r", out); break;
        default:
            if (c < 0x20 || c == 0x7f)
                fprintf(out, "\\x%02x", c);
            else
                fputc(c, out);
        }
    }
    fputc('"', out);
    if (n < s.len) fprintf(out, "... (%" PRIu64 " bytes)", s.len);
}

/* Shortest %g rendering that reads back to the same value. */
static void print_real(FILE *out, double v, bool is_f32)
{
    char buf[64];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v) break;
    }
    fputs(buf, out);
}

/* Prints one fixed-size value stored at p. */
static void print_scalar(FILE *out, enum gguf_type t, const void *p)
{
    bool neg;
    uint64_t mag;
    if (t == GGUF_TYPE_FLOAT32) {
        float v;
        memcpy(&v, p, 4);
        print_real(out, v, true);
    } else if (t == GGUF_TYPE_FLOAT64) {
        double v;
        memcpy(&v, p, 8);
        print_real(out, v, false);
    } else if (t == GGUF_TYPE_BOOL) {
        fputs(*(const uint8_t *)p ? "true" : "false", out);
    } else if (load_int(t, p, &neg, &mag)) {
        fprintf(out, "%s%" PRIu64, neg ? "-" : "", mag);
    }
}

static void print_array(FILE *out, const struct gguf_kv *kv, bool all)
{
    const char *tn = kv->arr_type == GGUF_TYPE_STRING  ? "strings"
                     : kv->arr_type == GGUF_TYPE_ARRAY ? "arrays"
                     : kv->arr_type == GGUF_TYPE_BOOL  ? "bools"
                                                       : gguf_type_names[kv->arr_type];
    fprintf(out, "[%" PRIu64 " %s", kv->arr_n, tn);
    uint64_t show = (all || kv->arr_n <= INFO_ARRAY_FULL) ? kv->arr_n : INFO_ARRAY_HEAD;
    uint32_t sz = gguf_scalar_size(kv->arr_type);
    for (uint64_t i = 0; i < show; i++) {
        fputs(i ? ", " : ": ", out);
        if (kv->arr_type == GGUF_TYPE_STRING)
            print_escaped(out, gguf_arr_str(kv, i), all ? 0 : INFO_STRING_MAX);
        else if (kv->arr_type == GGUF_TYPE_ARRAY)
            print_array(out, gguf_arr_arr(kv, i), all);
        else
            print_scalar(out, kv->arr_type, (const uint8_t *)kv->data + i * sz);
    }
    if (show < kv->arr_n) fputs(", ...", out);
    fputc(']', out);
}

static void print_value(FILE *out, const struct gguf_kv *kv, bool all)
{
    if (kv->type == GGUF_TYPE_STRING)
        print_escaped(out, *(const struct gguf_str *)kv->data, all ? 0 : INFO_STRING_MAX);
    else if (kv->type == GGUF_TYPE_ARRAY)
        print_array(out, kv, all);
    else
        print_scalar(out, kv->type, kv->data);
}

void gguf_print_info(const struct gguf_file *f, const char *path, const struct gguf_info_opts *o,
                     void *stdio_file)
{
    FILE *out = stdio_file ? stdio_file : stdout;
    bool all = o && o->all_array_items;
    char name[200], type[40];
    fprintf(out, "GGUF file: %s\n", path ? path : "(memory)");
    fprintf(out, "  version:       %" PRIu32 "\n", f->version);
    fprintf(out, "  alignment:     %" PRIu64 "\n", f->alignment);
    fprintf(out, "  file size:     %" PRIu64 " bytes\n", f->size);
    fprintf(out, "  metadata keys: %" PRIu64 "\n", f->n_kv);
    fprintf(out, "  tensors:       %" PRIu64 "\n", f->n_tensors);
    fprintf(out, "  data offset:   %" PRIu64 "\n", f->data_start);

    int kw = 3;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        int l = (int)strlen(esc_name(f->kvs[i].key.ptr, f->kvs[i].key.len, name, 60));
        if (l > kw) kw = l;
    }
    fprintf(out, "\nmetadata:\n  %-*s  %-14s %s\n", kw, "key", "type", "value");
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const struct gguf_kv *kv = &f->kvs[i];
        if (kv->type == GGUF_TYPE_ARRAY)
            snprintf(type, sizeof type, "arr[%s]", gguf_type_names[kv->arr_type]);
        else
            snprintf(type, sizeof type, "%s", gguf_type_names[kv->type]);
        fprintf(out, "  %-*s  %-14s ", kw, esc_name(kv->key.ptr, kv->key.len, name, 60), type);
        print_value(out, kv, all);
        fputc('\n', out);
    }

    int nw = 4;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        int l = (int)strlen(esc_name(f->tensors[i].name.ptr, f->tensors[i].name.len, name, 100));
        if (l > nw) nw = l;
    }
    uint64_t tot_bytes = 0, tot_el = 0;
    fprintf(out, "\ntensors:\n  %5s  %-*s  %-5s  %-22s %12s %12s\n", "#", nw, "name", "type",
            "shape", "offset", "bytes");
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        char shape[100];
        size_t sl = 0;
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            sl += (size_t)snprintf(shape + sl, sizeof shape - sl, "%s%" PRIu64, d ? " x " : "",
                                   t->ne[d]);
            nel *= t->ne[d];
        }
        fprintf(out, "  %5" PRIu64 "  %-*s  %-5s  %-22s %12" PRIu64 " %12" PRIu64 "\n", i, nw,
                esc_name(t->name.ptr, t->name.len, name, 100), ggml_type_name(t->type), shape,
                t->offset, t->nbytes);
        tot_bytes += t->nbytes;
        tot_el += nel;
    }
    fprintf(out, "total: %" PRIu64 " tensors, %" PRIu64 " elements, %" PRIu64 " bytes (%.2f MiB)\n",
            f->n_tensors, tot_el, tot_bytes, (double)tot_bytes / (1024.0 * 1024.0));
}

/* ---- writing ---- */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads and writes little-endian GGUF with plain memcpy: little-endian hosts only"
#endif

#define GGUF_WRITER_MAX_NAME 63u /* ggml keeps names in char[64] with the NUL */

/* A growable byte buffer; `oom` sticks once an allocation fails. */
struct bytes {
    uint8_t *p;
    size_t n, cap;
    bool oom;
};

static void bytes_put(struct bytes *b, const void *src, size_t n)
{
    if (b->oom || n == 0) return;
    if (n > SIZE_MAX - b->n) {
        b->oom = true;
        return;
    }
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) cap = cap > SIZE_MAX / 2 ? b->n + n : cap * 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void bytes_u32(struct bytes *b, uint32_t v) { bytes_put(b, &v, 4); }
static void bytes_u64(struct bytes *b, uint64_t v) { bytes_put(b, &v, 8); }

static void bytes_str(struct bytes *b, const char *s, uint64_t n)
{
    bytes_u64(b, n);
    bytes_put(b, s, (size_t)n);
}

struct wkv {
    char *key;
    enum gguf_type type;
    struct bytes val; /* the value exactly as it goes to the file */
};

struct wtensor {
    char *name;
    enum ggml_type type;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
    const void *data;
    void *owned;
};

struct gguf_writer {
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_t, cap_t;
    uint32_t alignment;
    uint32_t bad_alignment; /* a rejected set_alignment value, reported by write */
};

struct gguf_writer *gguf_writer_new(void)
{
    struct gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->ts[i].name);
        free(w->ts[i].owned);
    }
    free(w->kvs);
    free(w->ts);
    free(w);
}

void gguf_writer_set_alignment(struct gguf_writer *w, uint32_t align)
{
    if (align == 0 || (align & (align - 1)) != 0) {
        w->bad_alignment = align ? align : UINT32_MAX;
        return;
    }
    w->bad_alignment = 0;
    w->alignment = align;
}

/* Stores `val` (taken over) under `key`, replacing an existing value. */
static int writer_put(struct gguf_writer *w, const char *key, enum gguf_type type,
                      struct bytes *val)
{
    size_t klen = key ? strlen(key) : 0;
    if (val->oom) {
        free(val->p);
        return ERR_NOMEM;
    }
    if (klen == 0 || klen > GGUF_MAX_KEY_LEN) {
        free(val->p);
        return ERR_INVALID;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            free(w->kvs[i].val.p);
            w->kvs[i].type = type;
            w->kvs[i].val = *val;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            free(val->p);
            return ERR_NOMEM;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *kc = strdup(key);
    if (!kc) {
        free(val->p);
        return ERR_NOMEM;
    }
    w->kvs[w->n_kv++] = (struct wkv){.key = kc, .type = type, .val = *val};
    return 0;
}

static int writer_put_scalar(struct gguf_writer *w, const char *key, enum gguf_type type,
                             const void *v)
{
    struct bytes b = {0};
    bytes_put(&b, v, gguf_scalar_size(type));
    return writer_put(w, key, type, &b);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_UINT64, &v);
}

int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_INT64, &v);
}

int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_FLOAT64, &v);
}

int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type type,
                           const void *v)
{
    if ((unsigned)type >= GGUF_TYPE_COUNT || gguf_scalar_size(type) == 0 || !v) return ERR_INVALID;
    if (type == GGUF_TYPE_BOOL) return gguf_writer_set_bool(w, key, *(const uint8_t *)v != 0);
    return writer_put_scalar(w, key, type, v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return writer_put_scalar(w, key, GGUF_TYPE_FLOAT32, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return writer_put_scalar(w, key, GGUF_TYPE_BOOL, &b);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    if (!v) return ERR_INVALID;
    struct bytes b = {0};
    bytes_str(&b, v, strlen(v));
    return writer_put(w, key, GGUF_TYPE_STRING, &b);
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                        const void *vals, uint64_t n)
{
    if ((unsigned)elem_type >= GGUF_TYPE_COUNT || elem_type == GGUF_TYPE_ARRAY) return ERR_INVALID;
    if (n && !vals) return ERR_INVALID;
    struct bytes b = {0};
    bytes_u32(&b, (uint32_t)elem_type);
    bytes_u64(&b, n);
    if (elem_type == GGUF_TYPE_STRING) {
        const char *const *s = vals;
        for (uint64_t i = 0; i < n; i++) {
            if (!s[i]) {
                free(b.p);
                return ERR_INVALID;
            }
            bytes_str(&b, s[i], strlen(s[i]));
        }
    } else {
        uint32_t sz = gguf_scalar_size(elem_type);
        if (n > SIZE_MAX / sz) {
            free(b.p);
            return ERR_NOMEM;
        }
        if (elem_type == GGUF_TYPE_BOOL) { /* normalise: the reader accepts only 0 and 1 */
            const uint8_t *v = vals;
            for (uint64_t i = 0; i < n; i++) {
                uint8_t one = v[i] ? 1 : 0;
                bytes_put(&b, &one, 1);
            }
        } else {
            bytes_put(&b, vals, (size_t)(n * sz));
        }
    }
    return writer_put(w, key, GGUF_TYPE_ARRAY, &b);
}

/* Appends the array body of kv (element type, count, elements) as the file holds it. */
static void encode_array(struct bytes *b, const struct gguf_kv *kv)
{
    bytes_u32(b, (uint32_t)kv->arr_type);
    bytes_u64(b, kv->arr_n);
    uint32_t sz = gguf_scalar_size(kv->arr_type);
    if (sz) {
        if (kv->arr_n > SIZE_MAX / sz)
            b->oom = true;
        else
            bytes_put(b, kv->data, (size_t)(kv->arr_n * sz));
    } else if (kv->arr_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            struct gguf_str s = gguf_arr_str(kv, i);
            bytes_str(b, s.ptr, s.len);
        }
    } else {
        for (uint64_t i = 0; i < kv->arr_n; i++) encode_array(b, gguf_arr_arr(kv, i));
    }
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
    if ((unsigned)kv->type >= GGUF_TYPE_COUNT || kv->key.len == 0 ||
        kv->key.len > GGUF_MAX_KEY_LEN || memchr(kv->key.ptr, '\0', kv->key.len))
        return ERR_INVALID;
    char *key = malloc((size_t)kv->key.len + 1);
    if (!key) return ERR_NOMEM;
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = '\0';
    struct bytes b = {0};
    if (kv->type == GGUF_TYPE_STRING) {
        const struct gguf_str *s = kv->data;
        bytes_str(&b, s->ptr, s->len);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        encode_array(&b, kv);
    } else {
        bytes_put(&b, kv->data, gguf_scalar_size(kv->type));
    }
    int rc = writer_put(w, key, kv->type, &b);
    free(key);
    return rc;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const uint64_t *ne, const void *data, bool borrow,
                           struct err *err)
{
    size_t nlen = name ? strlen(name) : 0;
    if (nlen == 0 || nlen > GGUF_WRITER_MAX_NAME)
        return err_set(err, ERR_INVALID, "tensor name '%s' must be 1 to %u bytes",
                       name ? name : "(null)", GGUF_WRITER_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return err_set(err, ERR_INVALID, "tensor '%s' added twice", name);
    if (!ggml_type_name(type))
        return err_set(err, ERR_UNSUPPORTED, "tensor '%s': unknown tensor type %d", name,
                       (int)type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return err_set(err, ERR_INVALID, "tensor '%s': n_dims %" PRIu32 " is not 1 to %d", name,
                       n_dims, GGUF_MAX_DIMS);
    struct wtensor t = {.type = type, .n_dims = n_dims};
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] > (uint64_t)INT64_MAX || (t.ne[d] && nel > (uint64_t)INT64_MAX / t.ne[d]))
            return err_set(err, ERR_INVALID, "tensor '%s': element count overflows", name);
        nel *= t.ne[d];
    }
    uint64_t row = ggml_row_size(type, t.ne[0]);
    if (row == 0 && t.ne[0] != 0)
        return err_set(err, ERR_INVALID,
                       "tensor '%s': row length %" PRIu64 " is not a multiple of the %s block "
                       "size %" PRIu32, name, t.ne[0], ggml_type_name(type), ggml_blck_size(type));
    uint64_t rows = t.ne[0] ? nel / t.ne[0] : 0;
    if (row && rows > (uint64_t)(SIZE_MAX / 2) / row)
        return err_set(err, ERR_INVALID, "tensor '%s': byte size overflows", name);
    t.nbytes = row * rows;
    if (t.nbytes && !data)
        return err_set(err, ERR_INVALID, "tensor '%s': no data", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        struct wtensor *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts) return err_set(err, ERR_NOMEM, "out of memory adding tensor '%s'", name);
        w->ts = ts;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name) return err_set(err, ERR_NOMEM, "out of memory adding tensor '%s'", name);
    if (borrow || t.nbytes == 0) {
        t.data = data;
    } else {
        t.owned = malloc((size_t)t.nbytes);
        if (!t.owned) {
            free(t.name);
            return err_set(err, ERR_NOMEM, "out of memory copying tensor '%s' (%" PRIu64
                           " bytes)", name, t.nbytes);
        }
        memcpy(t.owned, data, (size_t)t.nbytes);
        t.data = t.owned;
    }
    w->ts[w->n_t++] = t;
    return 0;
}

/* Writes n bytes, counting them; remembers the first failure. */
struct wout {
    FILE *fp;
    uint64_t pos;
    bool failed;
};

static void wout_put(struct wout *o, const void *p, size_t n)
{
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->fp) != n) o->failed = true;
    o->pos += n;
}

static void wout_pad(struct wout *o, uint64_t align)
{
    static const uint8_t zeros[256];
    uint64_t pad = (align - o->pos % align) % align;
    while (pad) {
        size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
        wout_put(o, zeros, k);
        pad -= k;
    }
}

/* Layout (v3): header, metadata, tensor infos, zero padding to the alignment, then each
 * tensor's data at an aligned offset (each padded to the alignment). Written to a temporary
 * file in the same directory and renamed over `path` only once complete and synced, so a
 * reader never sees a half-written file. */
int gguf_writer_write(struct gguf_writer *w, const char *path, struct err *err)
{
    if (w->bad_alignment)
        return err_set(err, ERR_INVALID, "%s: alignment %" PRIu32 " is not a power of two", path,
                       w->bad_alignment);
    uint64_t align = w->alignment;
    bool has_key = false;
    for (size_t i = 0; i < w->n_kv; i++) has_key |= strcmp(w->kvs[i].key, "general.alignment") == 0;
    if (align != GGUF_DEFAULT_ALIGNMENT || has_key) {
        if (gguf_writer_set_u32(w, "general.alignment", w->alignment))
            return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        w->ts[i].offset = off;
        off += (w->ts[i].nbytes + align - 1) / align * align;
    }

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return err_set(err, ERR_NOMEM, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = err_set(err, ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                         strerror(errno));
        free(tmp);
        return rc;
    }
    (void)fchmod(fd, 0644);
    struct wout o = {.fp = fdopen(fd, "wb")};
    if (!o.fp) {
        int rc = err_set(err, ERR_IO, "%s: fdopen: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return rc;
    }
    uint32_t u32;
    uint64_t u64;
    u32 = GGUF_MAGIC;
    wout_put(&o, &u32, 4);
    u32 = 3;
    wout_put(&o, &u32, 4);
    u64 = w->n_t;
    wout_put(&o, &u64, 8);
    u64 = w->n_kv;
    wout_put(&o, &u64, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        u64 = strlen(w->kvs[i].key);
        wout_put(&o, &u64, 8);
        wout_put(&o, w->kvs[i].key, (size_t)u64);
        u32 = (uint32_t)w->kvs[i].type;
        wout_put(&o, &u32, 4);
        wout_put(&o, w->kvs[i].val.p, w->kvs[i].val.n);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->ts[i];
        u64 = strlen(t->name);
        wout_put(&o, &u64, 8);
        wout_put(&o, t->name, (size_t)u64);
        wout_put(&o, &t->n_dims, 4);
        wout_put(&o, t->ne, 8 * (size_t)t->n_dims);
        u32 = (uint32_t)t->type;
        wout_put(&o, &u32, 4);
        wout_put(&o, &t->offset, 8);
    }
    wout_pad(&o, align);
    for (size_t i = 0; i < w->n_t; i++) {
        wout_put(&o, w->ts[i].data, (size_t)w->ts[i].nbytes);
        wout_pad(&o, align);
    }
    int werrno = errno;
    bool ok = !o.failed && fflush(o.fp) == 0;
    if (ok && fsync(fileno(o.fp)) != 0) ok = false;
    if (!ok) werrno = errno;
    if (fclose(o.fp) != 0 && ok) {
        ok = false;
        werrno = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        werrno = errno;
    }
    int rc = 0;
    if (!ok) {
        rc = err_set(err, ERR_IO, "%s: writing failed: %s", path, strerror(werrno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}
