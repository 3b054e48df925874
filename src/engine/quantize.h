/** Model quantization: `trendstory quantize IN.gguf OUT.gguf TYPE`, and the per-tensor type
 *  rule it shares with make-model.
 *
 *  Rule (a simplified form of llama.cpp's mixes, so our files look like the ones people use):
 *   - only 2-D tensors whose name ends in ".weight" are converted; 1-D tensors (norms) and
 *     anything else are copied unchanged, as is a tensor whose row length is not a multiple of
 *     the target type's block size, or whose source type has no dequantizer here;
 *   - f16 / bf16 / q8_0: every such matrix gets that type;
 *   - q4_0: Q4_0, except output.weight which gets Q6_K (as llama.cpp does);
 *   - q4_k_m: Q4_K, except output.weight -> Q6_K, and attn_v.weight / ffn_down.weight -> Q6_K
 *     on "more bits" layers: i < n/8, i >= 7n/8, or (i - n/8) % 3 == 2 (llama.cpp's rule). */
#ifndef ENGINE_QUANTIZE_H
#define ENGINE_QUANTIZE_H

#include <stdint.h>

#include "base/err.h"
#include "base/pool.h"
#include "engine/gguf.h"

/** A target file type, numbered as llama.cpp's general.file_type (llama_ftype). */
enum quant_ftype {
    QUANT_FTYPE_F32 = 0,
    QUANT_FTYPE_F16 = 1,
    QUANT_FTYPE_Q4_0 = 2,
    QUANT_FTYPE_Q8_0 = 7,
    QUANT_FTYPE_Q4_K_M = 15,
    QUANT_FTYPE_BF16 = 32,
};

/** Parses "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m" (case-insensitive); -1 if unknown. */
int quant_ftype_parse(const char *s);
const char *quant_ftype_name(enum quant_ftype ft);

/** The type tensor `name` (ne[0] = row length, n_dims dimensions) gets in a file of type
 *  `ft` with n_layer blocks, or `src_type` when it stays as is. */
enum ggml_type quant_tensor_type(enum quant_ftype ft, const char *name, uint32_t n_dims,
                                 uint64_t row_len, int n_layer, enum ggml_type src_type);

/** Converts `nrows` rows of `row_len` values from `src` (type src_type) to `dst` (type
 *  dst_type), rows spread over the pool. 0, or ERR_UNSUPPORTED when either type has no
 *  converter or row_len is not a block multiple. */
int quant_convert(enum ggml_type dst_type, void *dst, enum ggml_type src_type, const void *src,
                  uint64_t row_len, uint64_t nrows, struct pool *pool, struct err *err);

/** Quantizes file `in` into `out` (written atomically). Copies all metadata, sets
 *  general.file_type, converts tensors by quant_tensor_type. */
int quant_file(const char *in, const char *out, enum quant_ftype ft, int n_threads,
               struct err *err);

#define QUANTIZE_USAGE                                                                           \
    "usage: quantize [--threads N] IN.gguf OUT.gguf TYPE\n"                                      \
    "  TYPE: q8_0, q4_0, q4_k_m, f16, bf16 (or f32).\n"                                          \
    "  Copies metadata (general.file_type updated) and converts 2-D weight matrices; 1-D\n"      \
    "  tensors (norms) stay f32. q4_0 and q4_k_m put output.weight in q6_K; q4_k_m also uses\n"  \
    "  q6_K for attn_v / ffn_down on the first and last eighth of the layers and every third\n"  \
    "  in between (llama.cpp's Q4_K_M mix). A matrix whose row length is not a multiple of\n"    \
    "  the block size (32, or 256 for the K types) is copied unchanged.\n"

int quantize_cli(int argc, char **argv);

#endif
