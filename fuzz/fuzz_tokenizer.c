/* libFuzzer harness for the llama2.c tokenizer.bin reader and the encoder / decoder.
 * Input: u16 n_vocab, u16 text_len, text_len bytes of text, then the tokenizer.bin bytes.
 * Checks: encoded ids are in range, the streaming decoder never writes past its bound, and
 * every id decodes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint16_t nv, tl;
    memcpy(&nv, data, 2);
    memcpy(&tl, data + 2, 2);
    if (tl > size - 4) tl = (uint16_t)(size - 4);
    const char *text = (const char *)data + 4;
    struct err e = {0};
    struct tok *t = tok_load_llama2c_mem(data + 4 + tl, size - 4 - tl, nv, &e);
    if (!t) {
        if (e.msg[0] == 0) abort();
        return 0;
    }
    int cap = 4 * tl + 8;
    int *ids = malloc((size_t)cap * sizeof *ids);
    for (int special = 0; special < 2 && ids; special++) {
        int n = tok_encode(t, text, tl, true, special, ids, cap, &e);
        if (n < 0) abort(); /* room for every byte as a token plus BOS */
        struct tok_stream s;
        tok_stream_init(&s, t);
        char out[TOK_STREAM_OUT_MAX];
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= nv) abort();
            if (tok_stream_push(&s, ids[i], out) > TOK_STREAM_OUT_MAX) abort();
        }
        tok_stream_flush(&s, out);
    }
    for (int i = 0; i < nv; i++) {
        char piece[8];
        tok_token_bytes(t, i, piece, sizeof piece);
    }
    free(ids);
    tok_free(t);
    return 0;
}
