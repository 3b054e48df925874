/* Chat prompt formats (see engine/chat.h). */
#include "engine/chat.h"

#include <string.h>

static bool contains(const char *s, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(s + i, needle, n) == 0) return true;
    return false;
}

enum chat_family chat_detect(const char *tmpl, size_t len)
{
    if (!tmpl) return CHAT_NONE;
    if (contains(tmpl, len, "<|im_start|>")) return CHAT_CHATML;
    if (contains(tmpl, len, "<|user|>") && contains(tmpl, len, "<|assistant|>")) return CHAT_ZEPHYR;
    if (contains(tmpl, len, "[INST]")) return CHAT_LLAMA2;
    return CHAT_NONE;
}

int chat_family_parse(const char *name)
{
    if (!strcmp(name, "zephyr") || !strcmp(name, "tinyllama")) return CHAT_ZEPHYR;
    if (!strcmp(name, "llama2") || !strcmp(name, "llama-2")) return CHAT_LLAMA2;
    if (!strcmp(name, "chatml")) return CHAT_CHATML;
    if (!strcmp(name, "none") || !strcmp(name, "plain")) return CHAT_NONE;
    return -1;
}

const char *chat_family_name(enum chat_family f)
{
    switch (f) {
    case CHAT_ZEPHYR:
        return "zephyr";
    case CHAT_LLAMA2:
        return "llama2";
    case CHAT_CHATML:
        return "chatml";
    default:
        return "none";
    }
}

const char *chat_stop_string(enum chat_family f)
{
    switch (f) {
    case CHAT_ZEPHYR:
        return "</s>";
    case CHAT_LLAMA2:
        return "[INST]";
    case CHAT_CHATML:
        return "<|im_end|>";
    default:
        return NULL;
    }
}

/* A bounded appender: counts everything, writes what fits. */
struct sbuf {
    char *out;
    size_t cap, len;
};

static void put(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->len < b->cap) {
        size_t room = b->cap - b->len;
        memcpy(b->out + b->len, s, n < room ? n : room);
    }
    b->len += n;
}

static const char *role_of(const struct chat_msg *m)
{
    if (m->role && (!strcmp(m->role, "system") || !strcmp(m->role, "assistant"))) return m->role;
    return "user";
}

size_t chat_apply(enum chat_family f, const struct chat_msg *msgs, int n, bool add_assistant,
                  char *out, size_t cap)
{
    struct sbuf b = {out, cap ? cap - 1 : 0, 0};
    switch (f) {
    case CHAT_ZEPHYR:
        for (int i = 0; i < n; i++) {
            put(&b, "<|");
            put(&b, role_of(&msgs[i]));
            put(&b, "|>\n");
            put(&b, msgs[i].content ? msgs[i].content : "");
            put(&b, "</s>\n");
        }
        if (add_assistant) put(&b, "<|assistant|>\n");
        break;
    case CHAT_CHATML:
        for (int i = 0; i < n; i++) {
            put(&b, "<|im_start|>");
            put(&b, role_of(&msgs[i]));
            put(&b, "\n");
            put(&b, msgs[i].content ? msgs[i].content : "");
            put(&b, "<|im_end|>\n");
        }
        if (add_assistant) put(&b, "<|im_start|>assistant\n");
        break;
    case CHAT_LLAMA2: {
        /* [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST] */
        bool open = false; /* inside an [INST] ... waiting for the user's text */
        for (int i = 0; i < n; i++) {
            const char *r = role_of(&msgs[i]), *c = msgs[i].content ? msgs[i].content : "";
            if (!strcmp(r, "system")) {
                if (!open) put(&b, "[INST] ");
                open = true;
                put(&b, "<<SYS>>\n");
                put(&b, c);
                put(&b, "\n<</SYS>>\n\n");
            } else if (!strcmp(r, "user")) {
                if (!open) put(&b, "[INST] ");
                open = false;
                put(&b, c);
                put(&b, " [/INST]");
            } else {
                put(&b, " ");
                put(&b, c);
                put(&b, " </s><s>");
            }
        }
        (void)add_assistant; /* the model answers right after [/INST] */
        break;
    }
    default:
        for (int i = 0; i < n; i++) {
            if (i) put(&b, "\n\n");
            put(&b, msgs[i].content ? msgs[i].content : "");
        }
        break;
    }
    if (cap) out[b.len < cap ? b.len : cap - 1] = 0;
    return b.len;
}
