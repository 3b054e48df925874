/** SentencePiece (BPE by piece scores, byte fallback) tokenizer, as LLaMA models use it: loaded
 *  from GGUF metadata (tokenizer.ggml.model "llama") or from a llama2.c `tokenizer.bin`.
 *
 *  Pieces are stored in SentencePiece form (a space is U+2581 "▁"); encoding escapes spaces,
 *  optionally prefixes one, and merges the highest-scoring adjacent pair whose concatenation
 *  is a piece until none is left (ties: leftmost first), as sentencepiece and llama.cpp do.
 *  Characters with no piece become their UTF-8 bytes as <0xXX> tokens. */
#ifndef ENGINE_TOKENIZER_H
#define ENGINE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"
#include "engine/gguf.h"

/** Token types as in GGUF's tokenizer.ggml.token_type. */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

/** The longest piece, in bytes, that a tokenizer accepts (longer pieces are an error). */
#define TOK_MAX_PIECE 256

struct tok; /* opaque, immutable after load: safe to share between threads */

/** Reads the vocabulary from GGUF metadata. Only tokenizer.ggml.model "llama" is supported;
 *  another model name gives ERR_UNSUPPORTED naming it. The file may be closed afterwards. */
struct tok *tok_load_gguf(const struct gguf_file *f, struct err *err);

/** Reads a llama2.c tokenizer.bin: int32 max_token_length, then per token float32 score,
 *  int32 length, bytes. `n_vocab` comes from the model header (the file does not say).
 *  BOS = 1, EOS = 2, unknown = 0; a BOS is added and a space prefixed, as llama2.c does. */
struct tok *tok_load_llama2c(const char *path, int n_vocab, struct err *err);

/** Same over a buffer (fuzzing, tests); the buffer is not kept. */
struct tok *tok_load_llama2c_mem(const void *buf, size_t len, int n_vocab, struct err *err);

void tok_free(struct tok *t);

int tok_n_vocab(const struct tok *t);
int tok_bos(const struct tok *t);
int tok_eos(const struct tok *t);
/** Whether the vocabulary asks for a BOS at the start of a prompt (tokenizer.ggml.add_bos_token).
 */
bool tok_add_bos(const struct tok *t);
enum tok_type tok_token_type(const struct tok *t, int id);
/** The raw piece (SentencePiece form, not NUL-terminated); NULL for an id out of range. */
const char *tok_piece(const struct tok *t, int id, size_t *len);
/** Id of a piece given in SentencePiece form, or -1. */
int tok_find(const struct tok *t, const char *piece, size_t len);

/** Encodes `len` bytes of text into at most `cap` ids. `add_bos` puts BOS first.
 *  `parse_special` turns the text of control / user-defined tokens ("</s>", "<|im_end|>") into
 *  those tokens instead of encoding their characters. A space is prefixed to the first text
 *  fragment and to each fragment after a special token when the vocabulary says so
 *  (tokenizer.ggml.add_space_prefix), as llama.cpp does. Returns the number of ids, or
 *  ERR_NOMEM (message says how many were needed) when `cap` is too small. */
int tok_encode(const struct tok *t, const char *text, size_t len, bool add_bos, bool parse_special,
               int *out, int cap, struct err *err);

/** Bytes of one token as text: "▁" becomes ' ', <0xXX> becomes that byte, control and unknown
 *  tokens give nothing. Writes at most `cap` bytes; returns the full length. */
size_t tok_token_bytes(const struct tok *t, int id, char *buf, size_t cap);

/** A streaming decoder: feeds token ids, emits only complete UTF-8 sequences (a character
 *  split over byte tokens is held until complete; an invalid sequence becomes U+FFFD). The
 *  first piece after BOS loses its leading space, as llama2.c prints. Plain struct: no free. */
struct tok_stream {
    const struct tok *t;
    int prev;
    int npend;
    unsigned char pend[8];
};

/** Output buffer size that always suffices for one tok_stream_push or flush. */
#define TOK_STREAM_OUT_MAX (3 * TOK_MAX_PIECE + 16)

void tok_stream_init(struct tok_stream *s, const struct tok *t);
/** Appends token `id`; writes the complete characters now available to `out` (at least
 *  TOK_STREAM_OUT_MAX bytes) and returns their length. */
size_t tok_stream_push(struct tok_stream *s, int id, char *out);
/** Ends the stream: pending incomplete bytes become U+FFFD. Returns the bytes written. */
size_t tok_stream_flush(struct tok_stream *s, char *out);

#endif
