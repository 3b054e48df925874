/* RSS / Atom parsing with expat. See feeds.h for the contract.
 *
 * Design: the bytes go through a small pre-pass (sniff, transcode, repair) that produces
 * well-formed-enough UTF-8, then one expat parse with element callbacks that fill a flat
 * list of items. Namespaces are not processed: elements are matched by their local name
 * (the part after ':'), which is how feeds are written in practice and keeps both Google
 * Trends namespaces (old and new) working. */
#include "story/feeds.h"

#include <ctype.h>
#include <errno.h>
#include <expat.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "story/text.h"

/* ---- small growable buffer with a hard cap ---- */

struct sbuf {
    char *p;
    size_t len, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n, size_t max)
{
    if (b->len + n > max) return -1;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->len + n + 1) nc *= 2;
        if (nc > max + 1) nc = max + 1;
        char *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* ---- pre-pass ---- */

static bool ascii_prefix_ci(const char *s, size_t len, const char *pfx)
{
    size_t n = strlen(pfx);
    return len >= n && strncasecmp(s, pfx, n) == 0;
}

/* Finds encoding="..." inside a leading XML declaration; writes a lowercase name. */
static bool declared_encoding(const char *s, size_t len, char *out, size_t n)
{
    if (!ascii_prefix_ci(s, len, "<?xml")) return false;
    size_t end = 0;
    while (end + 1 < len && end < 512 && !(s[end] == '?' && s[end + 1] == '>')) end++;
    const char *e = NULL;
    for (size_t i = 5; i + 8 < end; i++)
        if (strncmp(s + i, "encoding", 8) == 0) {
            e = s + i + 8;
            break;
        }
    if (!e) return false;
    while (e < s + end && (*e == ' ' || *e == '=')) e++;
    if (e >= s + end || (*e != '"' && *e != '\'')) return false;
    char q = *e++;
    size_t k = 0;
    while (e < s + end && *e != q && k + 1 < n) out[k++] = (char)tolower((unsigned char)*e++);
    out[k] = 0;
    return k > 0;
}

static bool charset_from_content_type(const char *ct, char *out, size_t n)
{
    if (!ct) return false;
    const char *c = strcasestr(ct, "charset=");
    if (!c) return false;
    c += 8;
    if (*c == '"') c++;
    size_t k = 0;
    while (*c && *c != ';' && *c != '"' && *c != ' ' && k + 1 < n)
        out[k++] = (char)tolower((unsigned char)*c++);
    out[k] = 0;
    return k > 0;
}

static bool is_utf8_name(const char *enc)
{
    return strcmp(enc, "utf-8") == 0 || strcmp(enc, "utf8") == 0 ||
           strcmp(enc, "us-ascii") == 0 || strcmp(enc, "ascii") == 0;
}

/* Converts s[0..len) from `enc` to UTF-8 with iconv. Bytes that are invalid in `enc`
 * become U+FFFD. NULL + err for an unknown encoding or past `max` bytes of output. */
static char *transcode(const char *s, size_t len, const char *enc, size_t max, size_t *out_len,
                       struct err *err)
{
    iconv_t cd = iconv_open("UTF-8", enc);
    if (cd == (iconv_t)-1) {
        err_set(err, ERR_UNSUPPORTED, "feed declares encoding '%s', which iconv does not know",
                enc);
        return NULL;
    }
    size_t cap = len * 2 + 64;
    if (cap > max) cap = max;
    char *out = malloc(cap + 1);
    if (!out) {
        iconv_close(cd);
        err_set(err, ERR_NOMEM, "out of memory transcoding the feed");
        return NULL;
    }
    char *in = (char *)s;
    size_t inleft = len, o = 0;
    while (inleft > 0) {
        char *op = out + o;
        size_t oleft = cap - o;
        size_t r = iconv(cd, &in, &inleft, &op, &oleft);
        o = (size_t)(op - out);
        if (r != (size_t)-1) break;
        if (errno == E2BIG || (errno == EILSEQ && cap - o < 3)) {
            if (cap >= max) {
                free(out);
                iconv_close(cd);
                err_set(err, ERR_NOMEM, "feed grows past %zu bytes when converted from %s", max,
                        enc);
                return NULL;
            }
            size_t nc = cap * 2 > max ? max : cap * 2;
            char *np = realloc(out, nc + 1);
            if (!np) {
                free(out);
                iconv_close(cd);
                err_set(err, ERR_NOMEM, "out of memory transcoding the feed");
                return NULL;
            }
            out = np;
            cap = nc;
        } else if (errno == EILSEQ || errno == EINVAL) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            in++;
            inleft--;
            iconv(cd, NULL, NULL, NULL, NULL);
        } else {
            break;
        }
    }
    iconv_close(cd);
    out[o] = 0;
    *out_len = o;
    return out;
}

/* True if s has at least one valid multi-byte UTF-8 sequence. */
static bool has_utf8_multibyte(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < 0x80) continue;
        uint32_t cp;
        if (utf8_decode(p + i, len - i, &cp) > 1) return true;
    }
    return false;
}

static bool xml_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.' || c == ':';
}

/* Lenient repair on UTF-8 text: control characters become spaces, a bare '&' becomes
 * "&amp;", HTML named entities become numeric references. CDATA sections, comments and
 * processing instructions are copied unchanged. The output is at most 5x the input. */
static char *repair_markup(const char *s, size_t len, size_t *out_len, bool *changed)
{
    if (len > (SIZE_MAX - 1) / 5) return NULL;
    char *out = malloc(len * 5 + 1);
    if (!out) return NULL;
    size_t i = 0, o = 0;
    while (i < len) {
        char c = s[i];
        const char *skip_end = NULL;
        size_t skip_len = 0;
        if (c == '<' && i + 9 <= len && memcmp(s + i, "<![CDATA[", 9) == 0) {
            skip_end = memmem(s + i + 9, len - i - 9, "]]>", 3);
            skip_len = 3;
        } else if (c == '<' && i + 4 <= len && memcmp(s + i, "<!--", 4) == 0) {
            skip_end = memmem(s + i + 4, len - i - 4, "-->", 3);
            skip_len = 3;
        } else if (c == '<' && i + 2 <= len && s[i + 1] == '?') {
            skip_end = memmem(s + i + 2, len - i - 2, "?>", 2);
            skip_len = 2;
        }
        if (c == '<' && (skip_end || skip_len)) {
            /* Copy the whole construct; an unterminated one runs to the end (expat will
             * report it). Control characters inside still become spaces. */
            size_t end = skip_end ? (size_t)(skip_end - s) + skip_len : len;
            for (; i < end; i++) {
                unsigned char b = (unsigned char)s[i];
                if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') {
                    out[o++] = ' ';
                    *changed = true;
                } else {
                    out[o++] = (char)b;
                }
            }
            continue;
        }
        unsigned char b = (unsigned char)c;
        if (b < 0x20 && b != '\t' && b != '\n' && b != '\r') {
            out[o++] = ' ';
            *changed = true;
            i++;
            continue;
        }
        if (c != '&') {
            out[o++] = c;
            i++;
            continue;
        }
        /* '&': a well-formed reference stays; an HTML name becomes numeric; else escape. */
        size_t j = i + 1;
        if (j < len && s[j] == '#') {
            j++;
            bool hex = j < len && (s[j] == 'x' || s[j] == 'X');
            if (hex) j++;
            size_t d = j;
            uint32_t v = 0;
            while (j < len && j - d < 10 &&
                   (hex ? isxdigit((unsigned char)s[j]) : isdigit((unsigned char)s[j]))) {
                int dv = isdigit((unsigned char)s[j]) ? s[j] - '0'
                                                      : (tolower((unsigned char)s[j]) - 'a' + 10);
                if (v <= 0x10FFFF) v = v * (hex ? 16u : 10u) + (uint32_t)dv;
                j++;
            }
            if (j > d && j < len && s[j] == ';') {
                /* A reference to a character XML forbids (&#1;, &#xFFFE;) becomes U+FFFD
                 * instead of failing the whole feed. */
                bool ok = v == 0x9 || v == 0xA || v == 0xD || (v >= 0x20 && v <= 0xD7FF) ||
                          (v >= 0xE000 && v <= 0xFFFD) || (v >= 0x10000 && v <= 0x10FFFF);
                if (ok) {
                    memcpy(out + o, s + i, j + 1 - i);
                    o += j + 1 - i;
                } else {
                    memcpy(out + o, "&#xFFFD;", 8);
                    o += 8;
                    *changed = true;
                }
                i = j + 1;
                continue;
            }
        } else {
            while (j < len && j - i < 40 && xml_name_char(s[j])) j++;
            if (j > i + 1 && j < len && s[j] == ';') {
                char name[48];
                size_t nl = j - i - 1;
                memcpy(name, s + i + 1, nl);
                name[nl] = 0;
                bool xml5 = strcmp(name, "amp") == 0 || strcmp(name, "lt") == 0 ||
                            strcmp(name, "gt") == 0 || strcmp(name, "quot") == 0 ||
                            strcmp(name, "apos") == 0;
                if (!xml5) {
                    /* Decode with the HTML table: a known name becomes &#N;. Unknown names
                     * are left for expat (it rejects undeclared entities). */
                    char tmp[48 + 2];
                    snprintf(tmp, sizeof tmp, "&%s;", name);
                    size_t tl = text_decode_entities(tmp);
                    uint32_t cp;
                    if (tl > 0 && tmp[0] != '&' &&
                        utf8_decode((const unsigned char *)tmp, tl, &cp) == tl) {
                        o += (size_t)sprintf(out + o, "&#%u;", (unsigned)cp);
                        i = j + 1;
                        *changed = true;
                        continue;
                    }
                }
                memcpy(out + o, s + i, j + 1 - i);
                o += j + 1 - i;
                i = j + 1;
                continue;
            }
        }
        memcpy(out + o, "&amp;", 5);
        o += 5;
        i++;
        *changed = true;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

/* Copies the <title> of an HTML page (cleaned, short) for the error message. */
static void html_title(const char *s, size_t len, char *out, size_t n)
{
    out[0] = 0;
    const char *t = memmem(s, len, "<title>", 7);
    if (!t) return;
    t += 7;
    const char *e = memmem(t, len - (size_t)(t - s), "</title>", 8);
    if (!e) return;
    char *c = text_clean(t, (size_t)(e - t), TEXT_ENTITIES, n - 1);
    if (!c) return;
    snprintf(out, n, "%s", c);
    free(c);
}

/* ---- expat callbacks ---- */

enum field {
    F_NONE = -1,
    F_TITLE = 0,
    F_LINK,
    F_PUBLISHED,
    F_SUMMARY,
    F_TRAFFIC,
    F_NEWS_URL,
    F_GUID,
    F_COUNT
};

struct pstate {
    XML_Parser xp;
    const struct feeds_limits *lim;
    struct feeds_doc *doc;
    struct err *err;
    bool failed;
    int depth;
    int item_depth; /* depth of the open item/entry, 0 if none */
    struct sbuf f[F_COUNT];
    struct sbuf chan_title;
    enum field cur;
    int cur_depth;
    bool cur_chan_title;
    size_t cap_items;
};

static void fail(struct pstate *st, enum err_code code, const char *fmt, const char *arg)
{
    if (st->failed) return;
    st->failed = true;
    err_set(st->err, code, fmt, arg);
    XML_StopParser(st->xp, XML_FALSE);
}

static const char *local_name(const char *n)
{
    const char *c = strrchr(n, ':');
    return c ? c + 1 : n;
}

static bool has_prefix(const char *n)
{
    return strchr(n, ':') != NULL;
}

static const char *attr(const XML_Char **atts, const char *name)
{
    for (size_t i = 0; atts[i]; i += 2)
        if (strcmp(local_name(atts[i]), name) == 0) return atts[i + 1];
    return NULL;
}

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
    struct pstate *st = ud;
    if (st->failed) return;
    st->depth++;
    if (st->depth > st->lim->max_depth) {
        char d[16];
        snprintf(d, sizeof d, "%d", st->lim->max_depth);
        fail(st, ERR_INVALID, "feed nests elements deeper than %s levels; refused", d);
        return;
    }
    const char *ln = local_name(name);
    if (st->depth == 1) {
        if (strcmp(ln, "rss") == 0) st->doc->kind = FEEDS_RSS;
        else if (strcmp(ln, "RDF") == 0) st->doc->kind = FEEDS_RDF;
        else if (strcmp(ln, "feed") == 0) st->doc->kind = FEEDS_ATOM;
        else fail(st, ERR_INVALID, "not an RSS or Atom feed: the root element is <%s>", name);
        return;
    }
    if (st->cur != F_NONE || st->cur_chan_title) return; /* markup inside a field: keep text */
    bool atom = st->doc->kind == FEEDS_ATOM;
    if (!st->item_depth) {
        if (strcmp(ln, atom ? "entry" : "item") == 0) {
            st->item_depth = st->depth;
            for (int i = 0; i < F_COUNT; i++) st->f[i].len = 0;
            return;
        }
        /* Channel/feed title: rss/channel/title, rdf:RDF/channel/title, feed/title. */
        if (strcmp(ln, "title") == 0 && !has_prefix(name) && st->chan_title.len == 0 &&
            st->depth == (atom ? 2 : 3)) {
            st->cur_chan_title = true;
            st->cur_depth = st->depth;
        }
        return;
    }
    enum field f = F_NONE;
    bool direct = st->depth == st->item_depth + 1;
    bool plain = !has_prefix(name) || strncmp(name, "atom:", 5) == 0;
    if (direct && plain && strcmp(ln, "title") == 0) f = F_TITLE;
    else if (direct && plain && strcmp(ln, "link") == 0) {
        const char *href = attr(atts, "href");
        if (href) {
            const char *rel = attr(atts, "rel");
            if ((!rel || strcmp(rel, "alternate") == 0) && st->f[F_LINK].len == 0)
                sbuf_add(&st->f[F_LINK], href, strlen(href), st->lim->max_field);
            return;
        }
        f = F_LINK;
    } else if (direct && (strcmp(ln, "guid") == 0 || (plain && strcmp(ln, "id") == 0)))
        f = F_GUID;
    else if (direct && (strcmp(ln, "pubDate") == 0 || strcmp(ln, "date") == 0 ||
                        strcmp(ln, "published") == 0 || strcmp(ln, "updated") == 0))
        f = F_PUBLISHED;
    else if (direct && (strcmp(ln, "description") == 0 || strcmp(ln, "summary") == 0 ||
                        strcmp(ln, "content") == 0 || strcmp(ln, "encoded") == 0))
        f = F_SUMMARY;
    else if (strcmp(ln, "approx_traffic") == 0) f = F_TRAFFIC;
    else if (strcmp(ln, "news_item_url") == 0) f = F_NEWS_URL;
    if (f != F_NONE && st->f[f].len == 0) {
        st->cur = f;
        st->cur_depth = st->depth;
    }
}

static char *trimmed_copy(const struct sbuf *b)
{
    const char *s = b->p ? b->p : "";
    size_t n = b->len;
    while (n > 0 && isspace((unsigned char)*s)) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

static void finish_item(struct pstate *st)
{
    struct feeds_doc *doc = st->doc;
    if (doc->n_items >= st->lim->max_items) return;
    if (doc->n_items == st->cap_items) {
        size_t nc = st->cap_items ? st->cap_items * 2 : 16;
        if (nc > st->lim->max_items) nc = st->lim->max_items;
        struct feeds_item *ni = realloc(doc->items, nc * sizeof *ni);
        if (!ni) {
            fail(st, ERR_NOMEM, "out of memory reading feed items%s", "");
            return;
        }
        doc->items = ni;
        st->cap_items = nc;
    }
    struct feeds_item *it = &doc->items[doc->n_items];
    /* A guid/id that is a URL stands in for a missing link. */
    if (st->f[F_LINK].len == 0 && st->f[F_GUID].len > 0) {
        char *g = trimmed_copy(&st->f[F_GUID]);
        if (g && (strncmp(g, "http://", 7) == 0 || strncmp(g, "https://", 8) == 0))
            sbuf_add(&st->f[F_LINK], g, strlen(g), st->lim->max_field);
        free(g);
    }
    it->title = trimmed_copy(&st->f[F_TITLE]);
    it->link = trimmed_copy(&st->f[F_LINK]);
    it->published = trimmed_copy(&st->f[F_PUBLISHED]);
    it->summary = trimmed_copy(&st->f[F_SUMMARY]);
    it->traffic = trimmed_copy(&st->f[F_TRAFFIC]);
    it->news_url = trimmed_copy(&st->f[F_NEWS_URL]);
    doc->n_items++;
    if (!it->title || !it->link || !it->published || !it->summary || !it->traffic ||
        !it->news_url)
        fail(st, ERR_NOMEM, "out of memory reading feed items%s", "");
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
    struct pstate *st = ud;
    (void)name;
    if (st->failed) return;
    if (st->cur != F_NONE && st->depth == st->cur_depth) st->cur = F_NONE;
    if (st->cur_chan_title && st->depth == st->cur_depth) st->cur_chan_title = false;
    if (st->item_depth && st->depth == st->item_depth) {
        finish_item(st);
        st->item_depth = 0;
    }
    st->depth--;
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
    struct pstate *st = ud;
    if (st->failed || len <= 0) return;
    struct sbuf *b = st->cur != F_NONE ? &st->f[st->cur] : st->cur_chan_title ? &st->chan_title
                                                                              : NULL;
    if (!b) return;
    size_t room = st->lim->max_field > b->len ? st->lim->max_field - b->len : 0;
    size_t n = (size_t)len < room ? (size_t)len : room;
    /* Past the field cap the rest is dropped (a title does not need 64 KiB). */
    if (n > 0 && sbuf_add(b, s, n, st->lim->max_field) < 0)
        fail(st, ERR_NOMEM, "out of memory reading a feed field%s", "");
}

static void XMLCALL on_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *system_id, const XML_Char *public_id,
                                   const XML_Char *notation)
{
    (void)is_param, (void)value, (void)value_len, (void)base, (void)system_id;
    (void)public_id, (void)notation;
    fail(ud, ERR_INVALID,
         "feed declares an entity ('%s'); entity declarations are refused (XXE / expansion)",
         name);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset)
{
    (void)sysid, (void)pubid;
    struct pstate *st = ud;
    if (name && strcasecmp(name, "html") == 0)
        fail(st, ERR_INVALID, "got an HTML page (<!DOCTYPE %s>), not a feed", name);
    else if (has_internal_subset)
        fail(st, ERR_INVALID,
             "feed has a DOCTYPE <%s> with an internal subset; refused (entity declarations)",
             name ? name : "?");
    /* A DOCTYPE that only names an external DTD is tolerated: the DTD is never loaded. */
}

/* ---- entry point ---- */

static void limits_fill(struct feeds_limits *l, const struct feeds_limits *in)
{
    memset(l, 0, sizeof *l);
    if (in) *l = *in;
    if (!l->max_bytes) l->max_bytes = FEEDS_MAX_BYTES_DEFAULT;
    if (l->max_depth <= 0) l->max_depth = FEEDS_MAX_DEPTH_DEFAULT;
    if (!l->max_items) l->max_items = FEEDS_MAX_ITEMS_DEFAULT;
    if (!l->max_field) l->max_field = FEEDS_MAX_FIELD_DEFAULT;
}

/* Runs the pre-pass: returns a malloc'd UTF-8 buffer ready for expat, or NULL + err. */
static char *prepare(const char *buf, size_t len, const char *content_type,
                     const struct feeds_limits *lim, size_t *out_len, bool *repaired,
                     struct err *err)
{
    const char *s = buf;
    size_t n = len;
    char *owned = NULL;
    /* UTF-16 by BOM: transcode first, everything else works on UTF-8. */
    if (n >= 2 && (((unsigned char)s[0] == 0xFE && (unsigned char)s[1] == 0xFF) ||
                   ((unsigned char)s[0] == 0xFF && (unsigned char)s[1] == 0xFE))) {
        owned = transcode(s, n, "UTF-16", lim->max_bytes * 2, &n, err);
        if (!owned) return NULL;
        s = owned;
    }
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3, n -= 3;
    size_t lead = 0;
    while (lead < n && isspace((unsigned char)s[lead])) lead++;
    if (lead == n) {
        free(owned);
        err_set(err, ERR_INVALID, "empty body: no feed to parse");
        return NULL;
    }
    if (lead > 0) *repaired = true;
    s += lead, n -= lead;
    if (s[0] == '{' || s[0] == '[') {
        free(owned);
        err_set(err, ERR_INVALID, "body is JSON, not an RSS or Atom feed");
        return NULL;
    }
    if (ascii_prefix_ci(s, n, "<!doctype html") ||
        (ascii_prefix_ci(s, n, "<html") && n > 5 && (isspace((unsigned char)s[5]) || s[5] == '>'))) {
        char t[96];
        html_title(s, n, t, sizeof t);
        free(owned);
        err_set(err, ERR_INVALID, "got an HTML page%s%s%s, not a feed", t[0] ? " ('" : "", t,
                t[0] ? "')" : "");
        return NULL;
    }
    if (s[0] != '<') {
        free(owned);
        err_set(err, ERR_INVALID, "body is not XML (it does not start with '<')");
        return NULL;
    }
    char enc[48] = "";
    if (!owned && !declared_encoding(s, n, enc, sizeof enc))
        charset_from_content_type(content_type, enc, sizeof enc);
    char *u = NULL;
    size_t un = 0;
    if (enc[0] && !is_utf8_name(enc)) {
        u = transcode(s, n, enc, lim->max_bytes * 4, &un, err);
        if (!u) {
            free(owned);
            return NULL;
        }
    } else if (!utf8_valid(s, n)) {
        *repaired = true;
        if (!has_utf8_multibyte(s, n)) {
            u = transcode(s, n, "WINDOWS-1252", lim->max_bytes * 4, &un, err);
        } else {
            u = text_utf8_repair(s, n, &un);
            if (!u) err_set(err, ERR_NOMEM, "out of memory repairing the feed's UTF-8");
        }
        if (!u) {
            free(owned);
            return NULL;
        }
    }
    const char *src = u ? u : s;
    size_t sn = u ? un : n;
    char *r = repair_markup(src, sn, out_len, repaired);
    free(u);
    free(owned);
    if (!r) err_set(err, ERR_NOMEM, "out of memory preparing the feed");
    return r;
}

struct feeds_doc *feeds_parse(const char *buf, size_t len, const char *content_type,
                              const struct feeds_limits *lim_in, struct err *err)
{
    struct feeds_limits lim;
    limits_fill(&lim, lim_in);
    if (!buf) len = 0;
    if (len > lim.max_bytes) {
        err_set(err, ERR_NOMEM, "feed is %zu bytes, over the %zu-byte limit", len,
                lim.max_bytes);
        return NULL;
    }
    bool repaired = false;
    size_t n = 0;
    char *text = prepare(buf ? buf : "", len, content_type, &lim, &n, &repaired, err);
    if (!text) return NULL;
    if (n > INT32_MAX) {
        free(text);
        err_set(err, ERR_NOMEM, "feed too large after repair");
        return NULL;
    }

    struct feeds_doc *doc = calloc(1, sizeof *doc);
    XML_Parser xp = XML_ParserCreate("UTF-8"); /* overrides the declared encoding */
    if (!doc || !xp) {
        free(doc);
        if (xp) XML_ParserFree(xp);
        free(text);
        err_set(err, ERR_NOMEM, "out of memory creating the XML parser");
        return NULL;
    }
    doc->repaired = repaired;
    struct pstate st = {.xp = xp, .lim = &lim, .doc = doc, .err = err, .cur = F_NONE};
    XML_SetUserData(xp, &st);
    XML_SetElementHandler(xp, on_start, on_end);
    XML_SetCharacterDataHandler(xp, on_text);
    XML_SetEntityDeclHandler(xp, on_entity_decl);
    XML_SetStartDoctypeDeclHandler(xp, on_doctype);
    XML_SetParamEntityParsing(xp, XML_PARAM_ENTITY_PARSING_NEVER);
    /* No external entity handler is ever set: external entities and DTDs are not loaded. */

    enum XML_Status rc = XML_Parse(xp, text, (int)n, XML_TRUE);
    if (!st.failed && rc != XML_STATUS_OK) {
        st.failed = true;
        err_set(err, ERR_INVALID, "feed is not well-formed XML: line %lu, column %lu: %s",
                (unsigned long)XML_GetCurrentLineNumber(xp),
                (unsigned long)XML_GetCurrentColumnNumber(xp),
                XML_ErrorString(XML_GetErrorCode(xp)));
    }
    if (!st.failed && doc->kind == 0) {
        st.failed = true;
        err_set(err, ERR_INVALID, "no root element in the feed");
    }
    if (!st.failed) {
        char *t = trimmed_copy(&st.chan_title);
        if (!t) {
            st.failed = true;
            err_set(err, ERR_NOMEM, "out of memory");
        }
        doc->title = t;
    }
    for (int i = 0; i < F_COUNT; i++) free(st.f[i].p);
    free(st.chan_title.p);
    XML_ParserFree(xp);
    free(text);
    if (st.failed) {
        feeds_doc_free(doc);
        return NULL;
    }
    return doc;
}

void feeds_doc_free(struct feeds_doc *doc)
{
    if (!doc) return;
    for (size_t i = 0; i < doc->n_items; i++) {
        struct feeds_item *it = &doc->items[i];
        free(it->title);
        free(it->link);
        free(it->published);
        free(it->summary);
        free(it->traffic);
        free(it->news_url);
    }
    free(doc->items);
    free(doc->title);
    free(doc);
}
