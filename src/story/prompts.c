#include "story/prompts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/json.h"

#define PROMPTS_FILE_MAX (256 * 1024)

struct prompts *prompts_parse(const char *json, size_t len, struct err *err)
{
    struct jv_limits lim = {.max_bytes = PROMPTS_FILE_MAX, .max_depth = 8};
    struct jv *root = jv_parse(json, len, &lim, err);
    if (!root) {
        err_prefix(err, "themes file");
        return NULL;
    }
    struct prompts *p = calloc(1, sizeof *p);
    if (!p) {
        err_set(err, ERR_NOMEM, "themes file: out of memory");
        goto fail;
    }
    size_t sys_len;
    const char *sys = jv_str(jv_get(root, "system"), &sys_len);
    if (!sys || sys_len == 0 || sys_len > 8192) {
        err_set(err, ERR_INVALID, "themes file: \"system\" must be a string of 1..8192 bytes");
        goto fail;
    }
    const struct jv *themes = jv_get(root, "themes");
    if (jv_kind(themes) != JV_OBJECT || jv_obj_len(themes) == 0) {
        err_set(err, ERR_INVALID, "themes file: \"themes\" must be a non-empty object");
        goto fail;
    }
    for (void *it = jv_obj_iter(themes); it; it = jv_obj_next(themes, it)) {
        const char *name = jv_obj_iter_key(it);
        const struct jv *t = jv_obj_iter_val(it);
        if (p->n_themes == PROMPTS_MAX_THEMES) {
            err_set(err, ERR_INVALID, "themes file: more than %d themes", PROMPTS_MAX_THEMES);
            goto fail;
        }
        size_t nl = strlen(name);
        if (nl == 0 || nl >= sizeof p->themes[0].name) {
            err_set(err, ERR_INVALID, "themes file: theme name '%.40s' must be 1..31 bytes", name);
            goto fail;
        }
        size_t il;
        const char *instr = jv_str(jv_get(t, "instruction"), &il);
        const char *desc = jv_str(jv_get(t, "description"), NULL);
        if (!instr || il == 0 || il > 4096) {
            err_set(err, ERR_INVALID,
                    "themes file: themes.%s.instruction must be a string of 1..4096 bytes", name);
            goto fail;
        }
        struct prompt_theme *th = &p->themes[p->n_themes++];
        snprintf(th->name, sizeof th->name, "%s", name);
        snprintf(th->description, sizeof th->description, "%s", desc ? desc : "");
        th->system = malloc(sys_len + 1 + il + 1);
        if (!th->system) {
            err_set(err, ERR_NOMEM, "themes file: out of memory");
            goto fail;
        }
        memcpy(th->system, sys, sys_len);
        th->system[sys_len] = ' ';
        memcpy(th->system + sys_len + 1, instr, il + 1);
    }
    if (!prompts_find(p, "default")) {
        err_set(err, ERR_INVALID, "themes file: a theme named \"default\" is required");
        goto fail;
    }
    jv_free(root);
    return p;
fail:
    jv_free(root);
    prompts_free(p);
    return NULL;
}

struct prompts *prompts_load(const char *path, struct err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set(err, ERR_IO, "themes file %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PROMPTS_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, PROMPTS_FILE_MAX + 1, f) : 0;
    fclose(f);
    if (!buf) {
        err_set(err, ERR_NOMEM, "themes file %s: out of memory", path);
        return NULL;
    }
    if (n > PROMPTS_FILE_MAX) {
        free(buf);
        err_set(err, ERR_INVALID, "themes file %s is over %d bytes", path, PROMPTS_FILE_MAX);
        return NULL;
    }
    struct prompts *p = prompts_parse(buf, n, err);
    free(buf);
    if (!p) err_prefix(err, "%s", path);
    return p;
}

void prompts_free(struct prompts *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_themes; i++) free(p->themes[i].system);
    free(p);
}

const struct prompt_theme *prompts_find(const struct prompts *p, const char *name)
{
    for (int i = 0; i < p->n_themes; i++)
        if (strcmp(p->themes[i].name, name) == 0) return &p->themes[i];
    return NULL;
}

/* Appends s[0..n) to out at *pos, keeping room for the NUL; stops at a UTF-8 boundary. */
static void put(char *out, size_t cap, size_t *pos, const char *s, size_t n)
{
    if (*pos + 1 >= cap) return;
    size_t room = cap - 1 - *pos;
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    memcpy(out + *pos, s, n);
    *pos += n;
    out[*pos] = '\0';
}

size_t prompts_user_message(const char *const *titles, int n_titles, char *out, size_t n)
{
    size_t pos = 0;
    if (n == 0) return 0;
    out[0] = '\0';
    if (n_titles > PROMPTS_MAX_TOPICS) n_titles = PROMPTS_MAX_TOPICS;
    put(out, n, &pos, "<topics>\n", 9);
    for (int i = 0; i < n_titles; i++) {
        char num[16];
        int k = snprintf(num, sizeof num, "%d. ", i + 1);
        put(out, n, &pos, num, (size_t)k);
        const char *t = titles[i] ? titles[i] : "";
        size_t tl = strlen(t);
        if (tl > PROMPTS_TOPIC_MAX_BYTES) {
            tl = PROMPTS_TOPIC_MAX_BYTES;
            while (tl > 0 && ((unsigned char)t[tl] & 0xC0) == 0x80) tl--;
        }
        char clean[PROMPTS_TOPIC_MAX_BYTES + 2];
        for (size_t j = 0; j < tl; j++) {
            char c = t[j];
            clean[j] = c == '<' ? '(' : c == '>' ? ')' : (c == '\n' || c == '\r') ? ' ' : c;
        }
        clean[tl] = '\n';
        clean[tl + 1] = '\0'; /* so put() can look one byte past a cut */
        put(out, n, &pos, clean, tl + 1);
    }
    put(out, n, &pos, "</topics>\nWrite the story now.", 30);
    return pos;
}
