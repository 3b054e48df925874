/* Text normalization for trend topics. See text.h for the contracts.
 *
 * Every pass works on bytes that are already valid UTF-8 (text_clean repairs first), and
 * every pass only shrinks the text, so buffers are sized by the input once. */
#include "story/text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- UTF-8 ---- */

char *text_utf8_repair(const char *s, size_t len, size_t *out_len)
{
    /* Each invalid byte becomes 3 bytes (U+FFFD) at worst. */
    if (len > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = p[i] < 0x80 ? 1 : utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
            /* One U+FFFD per byte that starts no valid sequence (the WHATWG count differs;
             * either is safe). */
            continue;
        }
        memcpy(out + o, p + i, n);
        o += n;
        i += n;
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

/* ---- entities ---- */

struct named_entity {
    const char *name;
    uint32_t cp;
};

/* The entities that real feeds use, sorted by name (strcmp order) for bsearch. */
static const struct named_entity named_entities[] = {
    {"AElig", 0xC6},  {"Aacute", 0xC1}, {"Acirc", 0xC2},  {"Agrave", 0xC0}, {"Aring", 0xC5},
    {"Atilde", 0xC3}, {"Auml", 0xC4},   {"Ccedil", 0xC7}, {"Eacute", 0xC9}, {"Ecirc", 0xCA},
    {"Egrave", 0xC8}, {"Euml", 0xCB},   {"Iacute", 0xCD}, {"Icirc", 0xCE},  {"Igrave", 0xCC},
    {"Iuml", 0xCF},   {"Ntilde", 0xD1}, {"Oacute", 0xD3}, {"Ocirc", 0xD4},  {"Ograve", 0xD2},
    {"Oslash", 0xD8}, {"Otilde", 0xD5}, {"Ouml", 0xD6},   {"Uacute", 0xDA}, {"Ucirc", 0xDB},
    {"Ugrave", 0xD9}, {"Uuml", 0xDC},   {"Yacute", 0xDD}, {"aacute", 0xE1}, {"acirc", 0xE2},
    {"acute", 0xB4},  {"aelig", 0xE6},  {"agrave", 0xE0}, {"amp", 0x26},    {"apos", 0x27},
    {"aring", 0xE5},  {"atilde", 0xE3}, {"auml", 0xE4},   {"bdquo", 0x201E}, {"brvbar", 0xA6},
    {"bull", 0x2022}, {"ccedil", 0xE7}, {"cent", 0xA2},   {"copy", 0xA9},   {"curren", 0xA4},
    {"dagger", 0x2020}, {"deg", 0xB0},  {"divide", 0xF7}, {"eacute", 0xE9}, {"ecirc", 0xEA},
    {"egrave", 0xE8}, {"emsp", 0x2003}, {"ensp", 0x2002}, {"euml", 0xEB},   {"euro", 0x20AC},
    {"frac12", 0xBD}, {"frac14", 0xBC}, {"frac34", 0xBE}, {"gt", 0x3E},     {"hellip", 0x2026},
    {"iacute", 0xED}, {"icirc", 0xEE},  {"iexcl", 0xA1},  {"igrave", 0xEC}, {"iquest", 0xBF},
    {"iuml", 0xEF},   {"laquo", 0xAB},  {"ldquo", 0x201C}, {"lrm", 0x200E}, {"lsaquo", 0x2039},
    {"lsquo", 0x2018}, {"lt", 0x3C},    {"mdash", 0x2014}, {"micro", 0xB5}, {"middot", 0xB7},
    {"nbsp", 0xA0},   {"ndash", 0x2013}, {"not", 0xAC},   {"ntilde", 0xF1}, {"oacute", 0xF3},
    {"ocirc", 0xF4},  {"ograve", 0xF2}, {"ordf", 0xAA},   {"ordm", 0xBA},   {"oslash", 0xF8},
    {"otilde", 0xF5}, {"ouml", 0xF6},   {"para", 0xB6},   {"permil", 0x2030}, {"plusmn", 0xB1},
    {"pound", 0xA3},  {"prime", 0x2032}, {"quot", 0x22},  {"raquo", 0xBB},  {"rdquo", 0x201D},
    {"reg", 0xAE},    {"rlm", 0x200F},  {"rsaquo", 0x203A}, {"rsquo", 0x2019}, {"sbquo", 0x201A},
    {"sect", 0xA7},   {"shy", 0xAD},    {"sup1", 0xB9},   {"sup2", 0xB2},   {"sup3", 0xB3},
    {"szlig", 0xDF},  {"thinsp", 0x2009}, {"times", 0xD7}, {"trade", 0x2122}, {"uacute", 0xFA},
    {"ucirc", 0xFB},  {"ugrave", 0xF9}, {"uml", 0xA8},    {"uuml", 0xFC},   {"yacute", 0xFD},
    {"yen", 0xA5},    {"yuml", 0xFF},   {"zwj", 0x200D},  {"zwnj", 0x200C},
};

static int entity_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct named_entity *)elem)->name);
}

/* HTML5: numeric references 0x80..0x9F mean windows-1252 characters. */
static const uint16_t cp1252_c1[32] = {
    0x20AC, 0xFFFD, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0xFFFD, 0x017D, 0xFFFD, 0xFFFD, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0xFFFD, 0x017E, 0x0178,
};

/* Parses one reference starting at s[0] == '&'. On success stores the code point and
 * returns the reference's length including ';'; 0 if it is not a reference we decode. */
static size_t parse_entity(const char *s, uint32_t *cp)
{
    if (s[1] == '#') {
        size_t i = 2;
        int base = 10;
        if (s[i] == 'x' || s[i] == 'X') base = 16, i++;
        uint32_t v = 0;
        size_t digits = 0;
        for (;; i++) {
            int d;
            char c = s[i];
            if (c >= '0' && c <= '9') d = c - '0';
            else if (base == 16 && c >= 'a' && c <= 'f') d = c - 'a' + 10;
            else if (base == 16 && c >= 'A' && c <= 'F') d = c - 'A' + 10;
            else break;
            if (v <= 0x10FFFF) v = v * (uint32_t)base + (uint32_t)d;
            digits++;
            if (digits > 12) return 0;
        }
        if (digits == 0 || s[i] != ';') return 0;
        if (v >= 0x80 && v <= 0x9F) v = cp1252_c1[v - 0x80];
        if (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) v = 0xFFFD;
        *cp = v;
        return i + 1;
    }
    char name[12];
    size_t i = 1, n = 0;
    while (isalnum((unsigned char)s[i]) && n < sizeof name - 1) name[n++] = s[i++];
    if (n == 0 || s[i] != ';') return 0;
    name[n] = 0;
    const struct named_entity *e =
        bsearch(name, named_entities, sizeof named_entities / sizeof named_entities[0],
                sizeof named_entities[0], entity_cmp);
    if (!e) return 0;
    *cp = e->cp;
    return i + 1;
}

size_t text_decode_entities(char *s)
{
    char *r = s, *w = s;
    while (*r) {
        uint32_t cp;
        size_t n;
        if (*r == '&' && (n = parse_entity(r, &cp)) > 0) {
            char buf[4];
            size_t m = utf8_encode(cp, buf);
            /* m <= n always: the shortest reference (&lt;) is 4 bytes for 1 byte out. */
            memcpy(w, buf, m);
            w += m;
            r += n;
        } else {
            *w++ = *r++;
        }
    }
    *w = 0;
    return (size_t)(w - s);
}

/* ---- tags ---- */

static bool tag_is_inline(const char *name, size_t n)
{
    static const char *const inl[] = {"a",    "abbr", "b",    "bdi",  "big",  "cite",
                                      "code", "em",   "font", "i",    "kbd",  "mark",
                                      "q",    "s",    "small", "span", "strike", "strong",
                                      "sub",  "sup",  "tt",   "u",    "wbr"};
    for (size_t i = 0; i < sizeof inl / sizeof inl[0]; i++)
        if (strlen(inl[i]) == n && strncasecmp(inl[i], name, n) == 0) return true;
    return false;
}

/* Returns a pointer just past the '>' closing the tag that starts at p ('<'), honouring
 * quoted attribute values; NULL if the tag never closes. */
static const char *tag_end(const char *p)
{
    char quote = 0;
    for (p++; *p; p++) {
        if (quote) {
            if (*p == quote) quote = 0;
        } else if (*p == '"' || *p == '\'') {
            /* Quotes only count inside attribute values (after '='), so "it's" in a
             * stray '<...>' does not swallow the rest of the text. */
            if (p[-1] == '=') quote = *p;
        } else if (*p == '>') {
            return p + 1;
        }
    }
    return NULL;
}

size_t text_strip_tags(char *s)
{
    const char *r = s;
    char *w = s;
    while (*r) {
        if (*r != '<') {
            *w++ = *r++;
            continue;
        }
        const char *q = r + 1;
        if (strncmp(q, "!--", 3) == 0) {
            const char *e = strstr(q + 3, "-->");
            r = e ? e + 3 : r + strlen(r);
            *w++ = ' ';
            continue;
        }
        bool closing = *q == '/';
        if (closing) q++;
        if (!(isalpha((unsigned char)*q) || (!closing && (*q == '!' || *q == '?')))) {
            *w++ = *r++; /* a plain '<' */
            continue;
        }
        const char *name = q;
        while (isalnum((unsigned char)*q)) q++;
        size_t nlen = (size_t)(q - name);
        const char *e = tag_end(r);
        if (!e) {
            *w++ = *r++; /* never closes: keep as text */
            continue;
        }
        r = e;
        if (!closing && nlen > 0 &&
            ((nlen == 6 && strncasecmp(name, "script", 6) == 0) ||
             (nlen == 5 && strncasecmp(name, "style", 5) == 0))) {
            /* Drop the body up to the matching close tag. */
            const char *c = r;
            while ((c = strchr(c, '<')) != NULL) {
                if (c[1] == '/' && strncasecmp(c + 2, name, nlen) == 0) break;
                c++;
            }
            if (!c) {
                r += strlen(r);
            } else {
                const char *ce = tag_end(c);
                r = ce ? ce : c + strlen(c);
            }
        }
        if (!(nlen > 0 && tag_is_inline(name, nlen))) *w++ = ' ';
    }
    *w = 0;
    return (size_t)(w - s);
}

/* ---- normalization ---- */

/* Characters removed outright: controls, zero-width and bidi formatting, BOM, soft hyphen,
 * variation selectors are kept (emoji need them). */
static bool cp_is_dropped(uint32_t cp)
{
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return true;
    if (cp == 0xAD) return true;
    if (cp >= 0x200B && cp <= 0x200F) return true; /* ZWSP ZWNJ ZWJ LRM RLM */
    if (cp >= 0x202A && cp <= 0x202E) return true; /* bidi embeddings/overrides */
    if (cp >= 0x2060 && cp <= 0x206F) return true; /* word joiner, invisible ops, bidi isolates */
    if (cp == 0xFEFF) return true;
    if (cp >= 0xFFF9 && cp <= 0xFFFB) return true; /* interlinear annotations */
    return false;
}

static bool cp_is_space(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C ||
           cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* In place: drops controls/invisibles, maps spaces to ' ', collapses runs, trims. The ZWJ
 * (U+200D) is kept between two non-space characters, where emoji sequences need it. */
static size_t normalize_ws(char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    bool pending_space = false;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) { /* cannot happen on repaired input; drop the byte */
            i++;
            continue;
        }
        if (cp_is_space(cp)) {
            pending_space = o > 0;
        } else if (cp == 0x200D) {
            /* Kept only inside a sequence: after a kept character, before a visible
             * non-ASCII one (emoji ZWJ sequences, Indic conjuncts). */
            uint32_t nx;
            size_t m = i + n < len ? utf8_decode(p + i + n, len - i - n, &nx) : 0;
            if (o > 0 && !pending_space && m > 0 && nx >= 0x80 && !cp_is_space(nx) &&
                !cp_is_dropped(nx) && nx != 0x200D) {
                memmove(s + o, s + i, n);
                o += n;
            }
        } else if (!cp_is_dropped(cp)) {
            if (pending_space) s[o++] = ' ';
            pending_space = false;
            memmove(s + o, s + i, n);
            o += n;
        }
        i += n;
    }
    s[o] = 0;
    return o;
}

char *text_clean(const char *s, size_t len, unsigned flags, size_t max_bytes)
{
    size_t n;
    char *t = text_utf8_repair(s ? s : "", s ? len : 0, &n);
    if (!t) return NULL;
    /* NULs inside the text end it for the string passes: turn them into spaces first. */
    for (size_t i = 0; i < n; i++)
        if (t[i] == 0) t[i] = ' ';
    if (flags & (TEXT_ENTITIES | TEXT_ENTITIES_TWICE)) {
        n = text_decode_entities(t);
        if ((flags & TEXT_ENTITIES_TWICE) && strchr(t, '&')) n = text_decode_entities(t);
    }
    if (flags & TEXT_TAGS) n = text_strip_tags(t);
    n = normalize_ws(t, n);
    if (max_bytes > 0 && n > max_bytes) {
        n = utf8_cap(t, n, max_bytes);
        for (;;) { /* no trailing space or dangling joiner after the cut */
            if (n > 0 && t[n - 1] == ' ') n--;
            else if (n >= 3 && memcmp(t + n - 3, "\xE2\x80\x8D", 3) == 0) n -= 3;
            else break;
        }
        t[n] = 0;
    }
    return t;
}

/* ---- dedupe key ---- */

static uint32_t fold_cp(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
    if (c >= 0x100 && c <= 0x137) return c | 1;
    if (c >= 0x139 && c <= 0x148) return (c & 1) ? c + 1 : c;
    if (c >= 0x14A && c <= 0x177) return c | 1;
    if (c == 0x178) return 0xFF;
    if (c >= 0x179 && c <= 0x17E) return (c & 1) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

static bool cp_is_edge_punct(uint32_t c)
{
    return (c < 0x80 && ispunct((int)c) && c != '#' && c != '$' && c != '@') || c == 0x2018 ||
           c == 0x2019 || c == 0x201C || c == 0x201D || c == 0x2026 || c == 0xAB || c == 0xBB;
}

char *text_fold_key(const char *s)
{
    size_t len = strlen(s);
    char *out = malloc(len * 2 + 1); /* folding can grow a character by one byte at most */
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0;
    bool pending_space = false;
    while (i < len) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) {
            i++;
            continue;
        }
        i += n;
        if (cp_is_space(cp)) {
            pending_space = o > 0;
            continue;
        }
        if (pending_space) out[o++] = ' ';
        pending_space = false;
        o += utf8_encode(fold_cp(cp), out + o);
    }
    out[o] = 0;
    /* Trim punctuation and spaces at both ends so "Nvidia!" and "nvidia" collide. */
    size_t b = 0, e = o;
    while (b < e) {
        uint32_t cp;
        size_t n = utf8_decode((const unsigned char *)out + b, e - b, &cp);
        if (n == 0 || !(cp == ' ' || cp_is_edge_punct(cp))) break;
        b += n;
    }
    while (e > b) {
        size_t k = e - 1;
        while (k > b && ((unsigned char)out[k] & 0xC0) == 0x80) k--;
        uint32_t cp;
        size_t n = utf8_decode((const unsigned char *)out + k, e - k, &cp);
        if (n == 0 || !(cp == ' ' || cp_is_edge_punct(cp))) break;
        e = k;
    }
    if (e == b) { /* all punctuation: keep the folded text rather than an empty key */
        return out;
    }
    memmove(out, out + b, e - b);
    out[e - b] = 0;
    return out;
}

/* ---- dates ---- */

static int month_index(const char *m)
{
    static const char *const months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                         "jul", "aug", "sep", "oct", "nov", "dec"};
    for (int i = 0; i < 12; i++)
        if (strncasecmp(m, months[i], 3) == 0) return i;
    return -1;
}

static bool valid_tm(const struct tm *t)
{
    return t->tm_year >= 70 && t->tm_year <= 1100 && t->tm_mon >= 0 && t->tm_mon < 12 &&
           t->tm_mday >= 1 && t->tm_mday <= 31 && t->tm_hour >= 0 && t->tm_hour <= 24 &&
           t->tm_min >= 0 && t->tm_min < 60 && t->tm_sec >= 0 && t->tm_sec <= 60;
}

/* Zone: "+hhmm", "-hh:mm", "Z", "GMT", "UT", "UTC", US zones. Returns the offset in seconds
 * east of UTC, or false if unrecognised (an unknown zone name counts as UTC per RFC 5322). */
static bool parse_zone(const char *z, long *off)
{
    while (*z == ' ') z++;
    *off = 0;
    if (*z == 0) return true;
    if (*z == '+' || *z == '-') {
        int sign = *z == '-' ? -1 : 1;
        z++;
        if (!isdigit((unsigned char)z[0]) || !isdigit((unsigned char)z[1])) return false;
        long h = (z[0] - '0') * 10 + (z[1] - '0');
        z += 2;
        if (*z == ':') z++;
        long m = 0;
        if (isdigit((unsigned char)z[0]) && isdigit((unsigned char)z[1]))
            m = (z[0] - '0') * 10 + (z[1] - '0');
        if (h > 23 || m > 59) return false;
        *off = sign * (h * 3600 + m * 60);
        return true;
    }
    static const struct {
        const char *name;
        int hours;
    } zones[] = {{"EST", -5}, {"EDT", -4}, {"CST", -6}, {"CDT", -5},
                 {"MST", -7}, {"MDT", -6}, {"PST", -8}, {"PDT", -7}};
    for (size_t i = 0; i < sizeof zones / sizeof zones[0]; i++)
        if (strncasecmp(z, zones[i].name, 3) == 0) {
            *off = zones[i].hours * 3600L;
            return true;
        }
    return true;
}

int64_t text_parse_date(const char *s)
{
    if (!s) return 0;
    while (isspace((unsigned char)*s)) s++;
    struct tm t;
    memset(&t, 0, sizeof t);
    long off = 0;
    int consumed = 0;
    if (isdigit((unsigned char)s[0]) && isdigit((unsigned char)s[1]) &&
        isdigit((unsigned char)s[2]) && isdigit((unsigned char)s[3]) && s[4] == '-') {
        /* ISO 8601 */
        int y, mo, d;
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3) return 0;
        t.tm_year = y - 1900, t.tm_mon = mo - 1, t.tm_mday = d;
        const char *p = s + consumed;
        if (*p == 'T' || *p == 't' || *p == ' ') {
            int h, mi, se = 0, c2 = 0;
            if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &c2) != 2) return 0;
            p += 1 + c2;
            if (*p == ':') {
                int c3 = 0;
                if (sscanf(p + 1, "%2d%n", &se, &c3) != 1) return 0;
                p += 1 + c3;
            }
            if (*p == '.' || *p == ',') {
                p++;
                while (isdigit((unsigned char)*p)) p++;
            }
            t.tm_hour = h, t.tm_min = mi, t.tm_sec = se;
            if (*p == 'Z' || *p == 'z') off = 0;
            else if (!parse_zone(p, &off)) return 0;
        }
    } else {
        /* RFC 822: [Day, ] d Mon yyyy hh:mm[:ss] zone */
        const char *p = s;
        const char *comma = strchr(p, ',');
        if (comma && comma - p < 12) p = comma + 1;
        int d, y, h = 0, mi = 0, se = 0;
        char mon[16];
        int n = 0;
        if (sscanf(p, " %d %15s %d%n", &d, mon, &y, &n) != 3) return 0;
        p += n;
        int c2 = 0;
        if (sscanf(p, " %d:%d%n", &h, &mi, &c2) == 2) {
            p += c2;
            if (*p == ':') {
                int c3 = 0;
                if (sscanf(p + 1, "%d%n", &se, &c3) == 1) p += 1 + c3;
            }
        }
        int m = month_index(mon);
        if (m < 0) return 0;
        if (y < 100) y += y < 50 ? 2000 : 1900;
        t.tm_year = y - 1900, t.tm_mon = m, t.tm_mday = d;
        t.tm_hour = h, t.tm_min = mi, t.tm_sec = se;
        if (!parse_zone(p, &off)) return 0;
    }
    if (!valid_tm(&t)) return 0;
    time_t v = timegm(&t);
    if (v == (time_t)-1) return 0;
    return (int64_t)v - off;
}
