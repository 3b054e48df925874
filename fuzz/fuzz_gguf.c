/* libFuzzer harness for the GGUF reader: open a buffer, then touch every key, array element
 * and tensor the way a consumer would, and print the gguf-info view to /dev/null. Besides the
 * sanitizers, it checks the reader's promises: NULL comes with a message, every pointer it
 * hands out lies inside the buffer, lookups find what iteration found. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t *g_lo, *g_hi;

static void check_in(const void *p, uint64_t n)
{
    const uint8_t *q = p;
    if (q < g_lo || q > g_hi || n > (uint64_t)(g_hi - q)) abort();
}

static void walk_array(const struct gguf_kv *kv, int depth)
{
    if (depth > 16) abort(); /* the reader bounds nesting well below this */
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        if (kv->arr_type == GGUF_TYPE_STRING) {
            struct gguf_str s = gguf_arr_str(kv, i);
            check_in(s.ptr, s.len);
        } else if (kv->arr_type == GGUF_TYPE_ARRAY) {
            const struct gguf_kv *sub = gguf_arr_arr(kv, i);
            if (!sub || sub->type != GGUF_TYPE_ARRAY) abort();
            walk_array(sub, depth + 1);
        } else {
            double d;
            int64_t v;
            if (!gguf_arr_f64(kv, i, &d) && kv->arr_type != GGUF_TYPE_BOOL) abort();
            (void)gguf_arr_i64(kv, i, &v);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(data, size, &e);
    if (!f) {
        if (e.msg[0] == '\0' || e.code == ERR_OK) abort();
        return 0;
    }
    g_lo = data;
    g_hi = data + size;
    char key[256];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const struct gguf_kv *kv = gguf_kv_at(f, i);
        check_in(kv->key.ptr, kv->key.len);
        if (kv->type == GGUF_TYPE_ARRAY) walk_array(kv, 0);
        if (kv->type == GGUF_TYPE_STRING) {
            const struct gguf_str *s = kv->data;
            check_in(s->ptr, s->len);
        }
        if (kv->key.len < sizeof key && !memchr(kv->key.ptr, '\0', kv->key.len)) {
            memcpy(key, kv->key.ptr, kv->key.len);
            key[kv->key.len] = '\0';
            if (gguf_find(f, key) != kv) abort();
            uint32_t u32;
            uint64_t u64;
            int64_t i64;
            float f32;
            bool b;
            struct gguf_str s;
            (void)gguf_get_u32(f, key, &u32, &e);
            (void)gguf_get_u64(f, key, &u64, &e);
            (void)gguf_get_i64(f, key, &i64, &e);
            (void)gguf_get_f32(f, key, &f32, &e);
            (void)gguf_get_bool(f, key, &b, &e);
            if (gguf_get_str(f, key, &s, &e) == 0) check_in(s.ptr, s.len);
        }
    }
    char name[128];
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(f, i);
        check_in(t->name.ptr, t->name.len);
        check_in(t->data, t->nbytes);
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS || !ggml_type_name(t->type)) abort();
        if (t->offset % gguf_alignment(f) != 0) abort();
        volatile uint8_t sink = 0;
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        (void)sink;
        if (t->name.len < sizeof name && !memchr(t->name.ptr, '\0', t->name.len)) {
            memcpy(name, t->name.ptr, t->name.len);
            name[t->name.len] = '\0';
            if (gguf_find_tensor(f, name) != t) abort();
        }
    }
    static FILE *null;
    if (!null) null = fopen("/dev/null", "w");
    if (null) {
        struct gguf_info_opts o = {.all_array_items = (size & 1) != 0};
        gguf_print_info(f, "fuzz", &o, null);
    }
    gguf_close(f);
    return 0;
}
