/** Chat prompt formats for the common template families, detected from a GGUF's
 *  tokenizer.chat_template by the markers it contains (no Jinja interpreter):
 *
 *    zephyr  (TinyLlama-Chat)  <|system|>\nS</s>\n<|user|>\nU</s>\n<|assistant|>\n
 *    llama2                    [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]
 *    chatml                    <|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n
 *                              <|im_start|>assistant\n
 *
 *  The formatted text is meant to be tokenized with special-token parsing on and a BOS
 *  added by the tokenizer (the templates' own leading "<s>" is left out). */
#ifndef ENGINE_CHAT_H
#define ENGINE_CHAT_H

#include <stdbool.h>
#include <stddef.h>

enum chat_family { CHAT_NONE = 0, CHAT_ZEPHYR, CHAT_LLAMA2, CHAT_CHATML };

/** One message; role is "system", "user" or "assistant" (others are treated as "user"). */
struct chat_msg {
    const char *role;
    const char *content;
};

/** The family whose markers appear in a template string; CHAT_NONE if none matches. */
enum chat_family chat_detect(const char *tmpl, size_t len);
/** "zephyr" (or "tinyllama"), "llama2", "chatml", "none" -> family; -1 if unknown. */
int chat_family_parse(const char *name);
const char *chat_family_name(enum chat_family f);

/** Formats `n` messages, then the assistant's opening when `add_assistant`. Like snprintf:
 *  writes at most cap - 1 bytes plus a NUL and returns the length the whole text needs.
 *  CHAT_NONE concatenates the contents in order, separated by blank lines. */
size_t chat_apply(enum chat_family f, const struct chat_msg *msgs, int n, bool add_assistant,
                  char *out, size_t cap);

/** A string that ends the assistant's turn in this family ("</s>", "<|im_end|>", "[INST]"),
 *  to use as a stop string besides EOS; NULL for CHAT_NONE. */
const char *chat_stop_string(enum chat_family f);

#endif
