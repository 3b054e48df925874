/** `trendstory make-model`: writes a LLaMA-architecture GGUF of a given shape with random
 *  weights and a real tokenizer's metadata, for benchmarks (performance does not depend on
 *  weight values) and tests. Tensor names and metadata keys are llama.cpp's, so llama.cpp
 *  loads the same file. */
#ifndef ENGINE_MAKE_MODEL_H
#define ENGINE_MAKE_MODEL_H

#include <stdint.h>

#include "base/err.h"
#include "engine/quantize.h"

struct make_model_shape {
    const char *name;
    int n_embd, n_layer, n_head, n_head_kv, n_ff, n_ctx;
    float rope_theta, rms_eps;
};

/** "tinyllama" (TinyLlama-1.1B: 2048, 22 layers, 32 heads, 4 KV heads, ff 5632, ctx 2048) or
 *  "test" (256, 2 layers, 4 heads, 2 KV heads, ff 512, ctx 256); NULL if unknown. The vocab
 *  size comes from the tokenizer file. */
const struct make_model_shape *make_model_shape_find(const char *name);

struct make_model_opts {
    const struct make_model_shape *shape;
    enum quant_ftype ftype;
    uint64_t seed;
    const char *vocab_path; /* GGUF whose tokenizer.* keys are copied */
    const char *out_path;
    int n_threads;
};

/** Writes the model. Weights are N(0, 0.5/sqrt(fan_in)) so a forward pass keeps activations of
 *  order one; norms are 1; the same seed gives the same file for any thread count. */
int make_model_write(const struct make_model_opts *o, struct err *err);

#define MAKE_MODEL_USAGE                                                                         \
    "usage: make-model [--shape tinyllama|test] [--type TYPE] -o FILE [--seed S]\n"              \
    "                  [--vocab VOCAB.gguf] [--threads N]\n"                                     \
    "  Writes a llama-architecture GGUF with random weights (deterministic for a seed) and the\n" \
    "  tokenizer metadata copied from VOCAB (default $DATA/models/gguf-vocab/\n"                 \
    "  ggml-vocab-llama-spm.gguf, DATA defaulting to ../shared/data). TYPE as for quantize:\n"   \
    "  f32, f16, bf16, q8_0, q4_0 (default), q4_k_m. Shape tinyllama is TinyLlama-1.1B's.\n"

int make_model_cli(int argc, char **argv);

#endif
