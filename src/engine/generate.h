/** Single-prompt text generation on one model (the `generate` subcommand): prompt (plain or
 *  through a chat template) -> one prefill call -> sample, stream text, stop on EOS, a stop
 *  string or the token limit. The TrendStory scheduler batches many of these; this is the
 *  simple path and the reference for it. */
#ifndef ENGINE_GENERATE_H
#define ENGINE_GENERATE_H

#include <stdbool.h>
#include <stdio.h>

#include "base/err.h"
#include "engine/model.h"
#include "engine/sampler.h"

struct generate_opts {
    const char *prompt;        /* NULL or "": start from BOS alone */
    const char *system;        /* system message (chat mode) */
    bool chat;                 /* format through the chat template */
    const char *template_name; /* override: zephyr, llama2, chatml, none (NULL: from the file) */
    int n_predict;             /* tokens to generate at most */
    int n_ctx;                 /* context positions (0: the model's, at most 4096) */
    bool echo_prompt;          /* plain mode: print the prompt text first, as llama2.c does */
    struct sampler_params sampling;
    const char *const *stop; /* extra stop strings */
    int n_stop;
};

struct generate_stats {
    int n_prompt, n_gen;
    double prompt_s, gen_s;
    bool hit_eos, hit_stop, hit_ctx;
};

/** The prompt's ids: BOS + o->prompt, or (o->chat) BOS + the system and user messages
 *  formatted by the chat family (o->template_name, else detected from the model's
 *  tokenizer.chat_template), special tokens parsed. `*family` receives the family used (its
 *  chat_stop_string ends a turn). Returns the count or a negative err_code (ERR_NOMEM when
 *  more than `cap` ids are needed). */
int generate_tokenize_prompt(const struct llm *m, const struct generate_opts *o, int *ids, int cap,
                             int *family, struct err *err);

/** Runs one generation on a fresh single-sequence context, writing text to `out` (flushed
 *  after each piece). Returns 0 or a negative err_code. */
int generate_run(const struct llm *m, const struct generate_opts *o, FILE *out,
                 struct generate_stats *st, struct err *err);

/** `trendstory generate` entry point. */
int generate_cli(int argc, char **argv);

#define GENERATE_USAGE                                                                             \
    "usage: generate -m MODEL [options]\n"                                                         \
    "  -m, --model PATH      GGUF (llama) or llama2.c .bin checkpoint\n"                           \
    "  --tokenizer PATH      llama2.c tokenizer.bin (needed with a .bin model)\n"                  \
    "  -p, --prompt TEXT     prompt (default: start from BOS)\n"                                   \
    "  -n N                  tokens to generate (default 256)\n"                                   \
    "  --temp T              temperature, 0 = greedy (default 0.8)\n"                              \
    "  --top-k K             (default 40, 0 = off)\n"                                              \
    "  --top-p P             (default 0.95, 1 = off)\n"                                            \
    "  --min-p P             (default 0.05, 0 = off)\n"                                            \
    "  --repeat-penalty R    (default 1.0 = off), over the last --repeat-last-n tokens (64)\n"     \
    "  --seed S              RNG seed (default: from the clock)\n"                                 \
    "  --threads N           compute threads (default: all cores)\n"                               \
    "  --ctx N               context length (default: the model's, at most 4096)\n"                \
    "  --chat                format the prompt with the model's chat template\n"                   \
    "  --system TEXT         system message (chat mode)\n"                                         \
    "  --template NAME       zephyr | llama2 | chatml | none (overrides the file's)\n"             \
    "  --stop TEXT           stop when TEXT is generated (repeatable, up to 8)\n"                  \
    "Text goes to stdout as it is produced; timings to stderr.\n"

#endif
