/* libFuzzer harness for the RSS/Atom parser and the feed -> topics path. Besides the
 * sanitizers it checks the parser's promises: NULL comes with a message, every field is
 * NUL-terminated UTF-8 within the field cap, the item count stays within its cap, and the
 * topics built from the feed are clean (valid UTF-8, no controls, within the title cap). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "story/feeds.h"
#include "story/sources.h"
#include "story/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s, size_t cap)
{
    if (!s) abort();
    size_t n = strlen(s);
    if (n > cap || !utf8_valid(s, n)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct feeds_limits lim = {.max_bytes = 1u << 20, .max_depth = 16, .max_items = 64,
                               .max_field = 4096};
    struct err e = {0};
    /* The Content-Type charset matters only without a declaration: alternate it. */
    const char *ct = (size & 1) ? "application/rss+xml; charset=ISO-8859-1" : NULL;
    struct feeds_doc *d = feeds_parse((const char *)data, size, ct, &lim, &e);
    if (!d) {
        if (e.msg[0] == 0 || e.code == 0) abort();
        return 0;
    }
    if (d->n_items > lim.max_items) abort();
    check_field(d->title, lim.max_field);
    for (size_t i = 0; i < d->n_items; i++) {
        const struct feeds_item *it = &d->items[i];
        check_field(it->title, lim.max_field);
        check_field(it->link, lim.max_field);
        check_field(it->published, lim.max_field);
        check_field(it->summary, lim.max_field);
        check_field(it->traffic, lim.max_field);
        check_field(it->news_url, lim.max_field);
        (void)text_parse_date(it->published);
    }
    feeds_doc_free(d);

    struct source_params p = {.limit = 50};
    struct topic_list l;
    if (source_parse(SOURCE_GOOGLE, (const char *)data, size, ct, &p, &l, &e) == 0) {
        if (l.n == 0 || l.n > 50) abort();
        for (size_t i = 0; i < l.n; i++) {
            const char *t = l.v[i].title;
            size_t n = strlen(t);
            if (n == 0 || n > SOURCE_TITLE_MAX || !utf8_valid(t, n)) abort();
            for (size_t k = 0; k < n; k++)
                if ((unsigned char)t[k] < 0x20) abort();
        }
        source_topics_clear(&l);
    }
    return 0;
}
