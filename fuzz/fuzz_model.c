/* libFuzzer harness for the model loader: a GGUF buffer goes through gguf_open_mem and
 * llm_load_gguf (hyper-parameters, tensor checks, tokenizer metadata). When it loads and is
 * small, a few tokens are decoded and a text is encoded and decoded, so whatever the loader
 * accepts must also be safe to run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    struct gguf_file *f = gguf_open_mem(data, size, &e);
    if (!f) return 0;
    struct llm *m = llm_load_gguf(f, NULL, "fuzz", &e);
    if (!m) {
        if (e.msg[0] == 0) abort(); /* a failure must say why */
        return 0;
    }
    const struct llm_hparams *hp = llm_hparams(m);
    if ((size_t)hp->n_embd * (hp->n_ff + hp->n_embd) * hp->n_layer < (1u << 22) &&
        (size_t)hp->n_vocab * hp->n_embd < (1u << 22)) {
        struct llm_ctx *c = llm_ctx_new(m, 2, 8, 4, &e);
        if (c) {
            int tok[5] = {0, 1 % hp->n_vocab, 2 % hp->n_vocab, 3 % hp->n_vocab, 0};
            int pos[5] = {0, 1, 2, 0, 3}, seq[5] = {0, 0, 0, 1, 0};
            unsigned char want[5] = {1, 0, 1, 1, 1};
            float *logits = malloc((size_t)5 * hp->n_vocab * sizeof *logits);
            if (logits && llm_decode(c, &(struct llm_batch){5, tok, pos, seq, want}, logits, &e))
                abort(); /* a valid batch on a loaded model must run */
            free(logits);
            llm_ctx_free(c);
        }
    }
    const struct tok *t = llm_tokenizer(m);
    if (t) {
        static const char text[] = "Hello world!\n caf\xc3\xa9 </s> \xf0\x9f\xa6\x99 <0x41>";
        int ids[256];
        int n = tok_encode(t, text, sizeof text - 1, true, true, ids, 256, &e);
        struct tok_stream s;
        tok_stream_init(&s, t);
        char out[TOK_STREAM_OUT_MAX];
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= tok_n_vocab(t)) abort();
            if (tok_stream_push(&s, ids[i], out) > TOK_STREAM_OUT_MAX) abort();
        }
        tok_stream_flush(&s, out);
    }
    llm_free(m);
    return 0;
}
