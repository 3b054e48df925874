/** Story prompts: the themes and their templates, loaded from a config file shipped with the
 *  project (config/themes.json), and the construction of a prompt from a theme and topics.
 *
 *  A prompt is two chat messages. The system message (shared text + the theme's instruction)
 *  is the same for every request of a theme, so its KV cache can be computed once and reused;
 *  the user message holds the topics as delimited data, with anything that could close the
 *  delimiter neutralised, so a hostile headline cannot pose as instructions. */
#ifndef STORY_PROMPTS_H
#define STORY_PROMPTS_H

#include <stddef.h>

#include "base/err.h"

#define PROMPTS_MAX_THEMES 16
#define PROMPTS_MAX_TOPICS 20
#define PROMPTS_TOPIC_MAX_BYTES 300

struct prompt_theme {
    char name[32];
    char description[160];
    char *system;       /* full system message: shared text + instruction */
};

struct prompts {
    int n_themes;
    struct prompt_theme themes[PROMPTS_MAX_THEMES];
};

/** Loads and validates a themes file: an object with "system" (string) and "themes" (object
 *  of name -> {"description", "instruction"}); must contain "default". Errors name the field. */
struct prompts *prompts_load(const char *path, struct err *err);
struct prompts *prompts_parse(const char *json, size_t len, struct err *err);
void prompts_free(struct prompts *p);

/** The theme called `name`, or NULL. */
const struct prompt_theme *prompts_find(const struct prompts *p, const char *name);

/** Writes the user message for these topic titles into out (n bytes, NUL-terminated, cut at a
 *  UTF-8 boundary if needed). Each title is capped at PROMPTS_TOPIC_MAX_BYTES and '<', '>'
 *  are replaced so the data cannot close its delimiter. Returns the length written. */
size_t prompts_user_message(const char *const *titles, int n_titles, char *out, size_t n);

#endif
