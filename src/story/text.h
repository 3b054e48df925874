/** Text normalization for trend topics: everything a title from a feed or an API goes
 *  through before it is shown or put into a prompt.
 *
 *  Input is arbitrary bytes from outside. Output is always valid UTF-8 with HTML entities
 *  decoded, tags stripped, control and zero-width characters removed, whitespace collapsed
 *  and the length capped at a character boundary. Nothing here allocates more than a small
 *  constant multiple of the input. */
#ifndef STORY_TEXT_H
#define STORY_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/utf8.h"

/** Flags for text_clean. */
enum text_flags {
    TEXT_ENTITIES = 1u << 0,       /* decode HTML entities once (&amp; &#39; &eacute; ...) */
    TEXT_ENTITIES_TWICE = 1u << 1, /* decode a second time, for double-escaped sources */
    TEXT_TAGS = 1u << 2,           /* strip HTML tags, comments, script/style bodies */
};

/** Cleans s[0..len) into a new NUL-terminated string (caller frees): invalid UTF-8 repaired
 *  to U+FFFD, entities decoded and tags stripped as `flags` say, C0/C1 controls and
 *  zero-width/bidi characters removed, Unicode spaces turned into ' ', runs collapsed, ends
 *  trimmed, then cut to at most `max_bytes` bytes (0 = no cap) without splitting a
 *  character. NULL only when out of memory. */
char *text_clean(const char *s, size_t len, unsigned flags, size_t max_bytes);

/** Decodes HTML character references in place in the NUL-terminated s: numeric (&#233;
 *  &#xE9;, with the HTML5 windows-1252 remap for 128..159; invalid code points become
 *  U+FFFD) and the common named ones. Unknown names and references without ';' are left as
 *  they are. The result is never longer than the input. Returns the new length. */
size_t text_decode_entities(char *s);

/** Removes HTML tags in place (NUL-terminated). Block-level tags become one space, inline
 *  ones vanish; comments and the bodies of script/style are dropped. A '<' that does not
 *  start a tag (e.g. "a < b") is kept. Returns the new length. */
size_t text_strip_tags(char *s);

/** Copies s[0..len) to a new NUL-terminated string with each invalid byte sequence replaced
 *  by U+FFFD. `*out_len` (may be NULL) gets the length. NULL only when out of memory. */
char *text_utf8_repair(const char *s, size_t len, size_t *out_len);

/** A case-insensitive comparison key for deduplication (caller frees): simple lowercase
 *  mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic; whitespace collapsed;
 *  leading/trailing punctuation dropped. s must be valid UTF-8. NULL only on OOM. */
char *text_fold_key(const char *s);

/** Parses an RFC 822/1123 date ("Mon, 2 Feb 2026 19:00:00 -0800", zone names GMT/UT/EST..)
 *  or an ISO 8601 / RFC 3339 timestamp ("2019-11-29T20:00:11.000Z", "+02:00" offsets, a
 *  bare date). Returns Unix seconds, or 0 if s is not such a date. */
int64_t text_parse_date(const char *s);

#endif
