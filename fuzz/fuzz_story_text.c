/* libFuzzer harness for topic text normalization. The first two bytes choose the flags and
 * the cap; the rest is the text. Checks the promises of text.h: valid UTF-8 out, no control
 * characters, no leading/trailing or doubled spaces, within the cap, decoding never grows,
 * fold keys of valid UTF-8 are valid UTF-8, and cleaning is idempotent on its own output
 * when no decoding is asked for. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "story/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_clean(const char *t, size_t cap)
{
    size_t n = strlen(t);
    if (!utf8_valid(t, n)) abort();
    if (cap && n > cap) abort();
    if (n && (t[0] == ' ' || t[n - 1] == ' ')) abort();
    if (strstr(t, "  ")) abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x20 || t[i] == 0x7F) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    unsigned flags = data[0] & 7u;
    size_t cap = data[1];
    const char *s = (const char *)data + 2;
    size_t n = size - 2;

    char *t = text_clean(s, n, flags, cap);
    if (!t) abort();
    check_clean(t, cap);
    char *again = text_clean(t, strlen(t), 0, cap);
    if (!again || strcmp(again, t) != 0) abort();
    free(again);
    char *k = text_fold_key(t);
    if (!k || !utf8_valid(k, strlen(k))) abort();
    free(k);
    free(t);

    /* The in-place passes on a NUL-terminated copy. */
    char *c = malloc(n + 1);
    if (!c) abort();
    memcpy(c, s, n);
    c[n] = 0;
    size_t before = strlen(c);
    if (text_decode_entities(c) > before) abort();
    before = strlen(c);
    if (text_strip_tags(c) > before) abort();
    (void)text_parse_date(c);
    free(c);

    size_t rl;
    char *r = text_utf8_repair(s, n, &rl);
    if (!r || !utf8_valid(r, rl)) abort();
    if (utf8_valid(s, n) && (rl != n || memcmp(r, s, n) != 0)) abort();
    size_t capn = utf8_cap(r, rl, cap);
    if (capn > cap || capn > rl || !utf8_valid(r, capn)) abort();
    free(r);
    return 0;
}
