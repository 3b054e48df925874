/** RSS 2.0 / RSS 1.0 (RDF) / Atom parsing, the only module that includes expat.
 *
 *  Feeds are hostile input. The parser:
 *   - refuses documents that declare entities (billion laughs, XXE) and never loads an
 *     external DTD or entity; a DOCTYPE without an internal subset is tolerated;
 *   - bounds the input size, the element depth, the number of items and each field;
 *   - transcodes declared non-UTF-8 encodings with iconv; repairs invalid UTF-8 (a document
 *     with no valid multi-byte sequence at all is read as windows-1252, the usual mislabel;
 *     otherwise bad bytes become U+FFFD);
 *   - repairs the common real-world breakage before parsing: a BOM or blank lines before the
 *     XML declaration, bare '&', HTML named entities (&nbsp; &eacute;), control characters;
 *   - answers an HTML page, a JSON body or an empty body with an error that says so.
 *  Fields are returned raw (entities decoded by XML only); callers run text_clean. */
#ifndef STORY_FEEDS_H
#define STORY_FEEDS_H

#include <stdbool.h>
#include <stddef.h>

#include "base/err.h"

#define FEEDS_MAX_BYTES_DEFAULT (8u << 20)
#define FEEDS_MAX_DEPTH_DEFAULT 32
#define FEEDS_MAX_ITEMS_DEFAULT 500
#define FEEDS_MAX_FIELD_DEFAULT (64u << 10)

struct feeds_limits {
    size_t max_bytes;  /* input size; 0 = FEEDS_MAX_BYTES_DEFAULT */
    int max_depth;     /* element nesting; 0 = FEEDS_MAX_DEPTH_DEFAULT */
    size_t max_items;  /* items kept (later ones are ignored); 0 = FEEDS_MAX_ITEMS_DEFAULT */
    size_t max_field;  /* bytes kept per text field; 0 = FEEDS_MAX_FIELD_DEFAULT */
};

enum feeds_kind { FEEDS_RSS = 1, FEEDS_RDF, FEEDS_ATOM };

/** One <item> or <entry>. Strings are NUL-terminated UTF-8, never NULL ("" if absent). */
struct feeds_item {
    char *title;
    char *link;      /* <link> text (RSS) or the alternate <link href> (Atom); else guid/id */
    char *published; /* pubDate / dc:date / published / updated, as written */
    char *summary;   /* description / summary / content */
    char *traffic;   /* Google Trends <ht:approx_traffic>, e.g. "100+" */
    char *news_url;  /* Google Trends: first <ht:news_item_url> */
};

struct feeds_doc {
    enum feeds_kind kind;
    char *title; /* channel or feed title */
    struct feeds_item *items;
    size_t n_items;
    bool repaired; /* the bytes needed one of the repairs above (for logs and tests) */
};

/** Parses a feed from buf[0..len). `content_type` (may be NULL) is the HTTP header; its
 *  charset is used when the document declares none. NULL + err (ERR_INVALID with a message
 *  naming the problem and, for XML errors, the line and column; ERR_NOMEM at a bound). */
struct feeds_doc *feeds_parse(const char *buf, size_t len, const char *content_type,
                              const struct feeds_limits *lim, struct err *err);

/** Frees a document; NULL is fine. */
void feeds_doc_free(struct feeds_doc *doc);

#endif
