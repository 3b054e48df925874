/** GGUF files: read v2/v3 by mmap with every count, offset, size and type validated against
 *  the file length; write v3 (metadata + aligned tensors).
 *
 *  Reading never trusts the file: a malformed file gives NULL and an err naming the problem
 *  ("tensor 'blk.0.attn_q.weight': data [offset 123, 456 bytes] runs past end of file (789)").
 *  Strings in a file are not NUL-terminated: they are (len, ptr) views into the mapping. */
#ifndef ENGINE_GGUF_H
#define ENGINE_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/** Metadata value types, numbered as in the GGUF spec. */
enum gguf_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/** Tensor element types, numbered as in ggml. Only some have kernels (see engine/kernels.h);
 *  the reader knows the block size of all listed here so it can validate any file. */
enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE_COUNT = 40
};

/** A string view into the file (not NUL-terminated). */
struct gguf_str {
    uint64_t len;
    const char *ptr;
};

/** One metadata entry. `data` depends on the type:
 *  - fixed-size scalars: the value's bytes in the file (may be unaligned: use memcpy or the
 *    typed getters);
 *  - GGUF_TYPE_STRING: a `struct gguf_str` owned by the handle (use gguf_get_str);
 *  - GGUF_TYPE_ARRAY: `arr_type` and `arr_n` describe the elements. Fixed-size elements: the
 *    first element's bytes in the file (unaligned; use gguf_arr_i64/gguf_arr_f64 or memcpy);
 *    strings: an array of `arr_n` `struct gguf_str` owned by the handle (gguf_arr_str);
 *    arrays: an array of `arr_n` `struct gguf_kv` with empty keys (gguf_arr_arr).
 *  Everything stays valid until gguf_close. */
struct gguf_kv {
    struct gguf_str key;
    enum gguf_type type;
    enum gguf_type arr_type; /* valid when type == GGUF_TYPE_ARRAY */
    uint64_t arr_n;          /* valid when type == GGUF_TYPE_ARRAY */
    const void *data;        /* scalar value, string header, or first array element */
};

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (contiguous) dimension; unused = 1 */
    enum ggml_type type;
    uint64_t offset;  /* relative to the start of the data section */
    uint64_t nbytes;
    const void *data; /* into the mapping; from gguf_open aligned to the file's alignment (up
                         to the page size), from gguf_open_mem relative to the buffer */
};

struct gguf_file; /* opaque */

/** Maps and validates `path`. NULL + err on any problem; the message starts with the path.
 *  A handle is never modified after opening: share it between threads freely. */
struct gguf_file *gguf_open(const char *path, struct err *err);
/** Same, over a caller-owned buffer that must outlive the handle (fuzzing, tests). */
struct gguf_file *gguf_open_mem(const void *buf, size_t len, struct err *err);
void gguf_close(struct gguf_file *f);

uint32_t gguf_version(const struct gguf_file *f);
uint64_t gguf_alignment(const struct gguf_file *f);
uint64_t gguf_n_kv(const struct gguf_file *f);
const struct gguf_kv *gguf_kv_at(const struct gguf_file *f, uint64_t i);
uint64_t gguf_n_tensors(const struct gguf_file *f);
const struct gguf_tensor *gguf_tensor_at(const struct gguf_file *f, uint64_t i);
/** Size of the whole mapping in bytes. */
uint64_t gguf_file_size(const struct gguf_file *f);
/** True when the handle maps a file read-only (gguf_open), false over a caller's buffer
 *  (gguf_open_mem). Pages of a file mapping may be dropped (madvise) and read back. */
bool gguf_is_mapped(const struct gguf_file *f);
/** Byte offset of the data section (tensor offsets are relative to it). */
uint64_t gguf_data_offset(const struct gguf_file *f);

/** Lookups by NUL-terminated key; NULL if absent. */
const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/** Typed getters. Integers convert between widths when the value fits; floats accept f32/f64.
 *  Return 0, or ERR_NOTFOUND if the key is absent, ERR_INVALID (with a message naming the key
 *  and both types) if it has another type or does not fit. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out, struct err *err);
int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out, struct err *err);
int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out, struct err *err);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out, struct err *err);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out, struct err *err);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out,
                 struct err *err);
/** Element i of a string array; an empty view if kv is not a string array or i >= arr_n. */
struct gguf_str gguf_arr_str(const struct gguf_kv *kv, uint64_t i);
/** Element i of an array of arrays (itself a kv with an empty key); NULL if none. */
const struct gguf_kv *gguf_arr_arr(const struct gguf_kv *kv, uint64_t i);
/** Element i of a numeric array. gguf_arr_i64: integer element types (false for floats, bool,
 *  out of range). gguf_arr_f64: any integer or float element type. False if kv is not such an
 *  array or i >= arr_n. */
bool gguf_arr_i64(const struct gguf_kv *kv, uint64_t i, int64_t *out);
bool gguf_arr_f64(const struct gguf_kv *kv, uint64_t i, double *out);

/** Compares a view with a NUL-terminated string. */
bool gguf_str_eq(struct gguf_str s, const char *z);

/** Type facts. Block size in elements and bytes per block; 0 for unknown types. */
const char *gguf_type_name(enum gguf_type t);
const char *ggml_type_name(enum ggml_type t); /* "f32", "q4_0", "q4_K", ... or NULL */
uint32_t ggml_blck_size(enum ggml_type t);
uint32_t ggml_type_size(enum ggml_type t);
/** Bytes for a row of n elements, or 0 if n is not a multiple of the block size. */
uint64_t ggml_row_size(enum ggml_type t, uint64_t n);

/* ---- writing (v3) ---- */

struct gguf_writer; /* opaque; copies everything it is given */

struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);
/** Alignment of the data section and of each tensor (power of two; default 32). Also written
 *  as general.alignment when not 32. */
void gguf_writer_set_alignment(struct gguf_writer *w, uint32_t align);
/** Setting an existing key replaces its value (keys keep their first position). Return 0,
 *  ERR_NOMEM, or ERR_INVALID for an empty key, a key over 65535 bytes or a NULL value. */
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_i64(struct gguf_writer *w, const char *key, int64_t v);
int gguf_writer_set_f64(struct gguf_writer *w, const char *key, double v);
/** Any fixed-size scalar type (u8 ... f64, bool), `v` pointing at a value of that type. */
int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_type type,
                           const void *v);
/** Array of fixed-size elements (any scalar type), or of strings (`vals` is const char **). */
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_type elem_type,
                        const void *vals, uint64_t n);
/** Copies a key (any type, arrays of arrays included) from an open file. */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv);
/** Adds a tensor; `data` must hold ggml_row_size(type, ne[0]) * ne[1] * ... bytes and is
 *  copied unless `borrow` is true (then it must stay valid until gguf_writer_write). The name
 *  must be 1..63 bytes and new; n_dims 1..4; ne[0] a multiple of the type's block size. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type,
                           uint32_t n_dims, const uint64_t *ne, const void *data, bool borrow,
                           struct err *err);
/** Writes to `path` atomically (a temporary file beside it, synced, renamed into place).
 *  Tensor data is placed in add order at aligned offsets; reading the file back gives exactly
 *  the keys (in set order) and tensors given. An invalid alignment given earlier fails here. */
int gguf_writer_write(struct gguf_writer *w, const char *path, struct err *err);

/** Prints metadata (arrays abbreviated) and the tensor table, as `gguf-info` shows them. */
struct gguf_info_opts { bool all_array_items; };
void gguf_print_info(const struct gguf_file *f, const char *path, const struct gguf_info_opts *o,
                     void *stdio_file);

#endif
