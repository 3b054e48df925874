/* MovieLens ingest: layout detection, line parsers, and the load into a rec_dataset.
 *
 * Reading goes through zlib's gz* functions for every file, which read plain files as they
 * are, so "ratings.dat" and "ratings.dat.gz" take the same path. Lines are read into a bounded
 * buffer (MOVIELENS_MAX_LINE); a longer line, a NUL byte or a field that does not parse is a
 * malformed row: reported with file:line, skipped, or fatal in strict mode. */
#include "recsys/movielens.h"

#include "base/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "base/log.h"
#include "base/progress.h"

/* ------------------------------------------------------------------------------------------ */
/* text helpers                                                                                */

size_t movielens_to_utf8(const char *s, size_t len, char *out, size_t cap)
{
    if (cap == 0) return 0;
    size_t o = 0;
    if (utf8_valid(s, len)) {
        o = len < cap - 1 ? len : cap - 1;
        if (o) memcpy(out, s, o);
    } else {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80) {
                if (o + 1 >= cap) break;
                out[o++] = (char)c;
            } else {
                if (o + 2 >= cap) break;
                out[o++] = (char)(0xC0 | (c >> 6));
                out[o++] = (char)(0x80 | (c & 0x3F));
            }
        }
    }
    out[o] = '\0';
    return o;
}

/* Prints at most `max` bytes of s into a short printable excerpt for error messages. */
static const char *excerpt(const char *s, size_t len, char *buf, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 4 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
        if (i == 23 && len > 24) {
            buf[o++] = '.';
            buf[o++] = '.';
            buf[o++] = '.';
            break;
        }
    }
    buf[o] = '\0';
    return buf;
}

static void set_why(char *why, size_t why_n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t why_n, const char *fmt, ...)
{
    if (!why || why_n == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_n, fmt, ap);
    va_end(ap);
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

/* Unsigned decimal id: digits only (surrounding blanks trimmed), value <= UINT32_MAX. */
static bool parse_u32(const char *s, size_t len, uint32_t *out)
{
    trim(&s, &len);
    if (len == 0 || len > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

/* Signed decimal integer within int64 (at most 18 digits, which covers any real timestamp). */
static bool parse_i64(const char *s, size_t len, int64_t *out)
{
    trim(&s, &len);
    bool neg = false;
    if (len > 0 && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
        len--;
    }
    if (len == 0 || len > 18) return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* A rating: a decimal number in [0, 10] (MovieLens uses 0.5..5). Not stored; only checked so
 * that a shifted or garbled row is caught. */
static bool parse_rating_value(const char *s, size_t len)
{
    trim(&s, &len);
    if (len == 0 || len > 32) return false;
    char tmp[40];
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if (!((tmp[i] >= '0' && tmp[i] <= '9') || tmp[i] == '.')) return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (errno != 0 || end != tmp + len || !isfinite(v)) return false;
    return v >= 0.0 && v <= 10.0;
}

/* ------------------------------------------------------------------------------------------ */
/* splitting                                                                                   */

/* RFC 4180 record splitting without line breaks inside quotes (MovieLens titles have none; a
 * quote left open at the end of the line is reported as malformed). An unquoted field is taken
 * literally, stray quotes included. */
int movielens_csv_split(const char *line, size_t len, char *buf, size_t cap,
                        struct movielens_field *fields, int max, char *why, size_t why_n)
{
    if (cap < 2 * len + 2 || max <= 0) {
        set_why(why, why_n, "internal: CSV buffer too small");
        return -1;
    }
    size_t i = 0, o = 0;
    int nf = 0;
    for (;;) {
        if (nf == max) {
            set_why(why, why_n, "more than %d fields", max);
            return -1;
        }
        char *start = buf + o;
        if (i < len && line[i] == '"') {
            i++;
            for (;;) {
                if (i >= len) {
                    set_why(why, why_n, "unterminated quote in field %d", nf + 1);
                    return -1;
                }
                if (line[i] == '"') {
                    if (i + 1 < len && line[i + 1] == '"') {
                        buf[o++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                buf[o++] = line[i++];
            }
            if (i < len && line[i] != ',') {
                set_why(why, why_n, "text after the closing quote of field %d", nf + 1);
                return -1;
            }
        } else {
            while (i < len && line[i] != ',')
                buf[o++] = line[i++];
        }
        fields[nf].ptr = start;
        fields[nf].len = (size_t)(buf + o - start);
        buf[o++] = '\0';
        nf++;
        if (i >= len) break;
        i++; /* the comma */
        if (i == len) {
            /* a trailing comma: one more empty field */
            if (nf == max) {
                set_why(why, why_n, "more than %d fields", max);
                return -1;
            }
            fields[nf].ptr = buf + o;
            fields[nf].len = 0;
            buf[o++] = '\0';
            nf++;
            break;
        }
    }
    return nf;
}

int movielens_sep_split(const char *line, size_t len, const char *sep,
                        struct movielens_field *fields, int max)
{
    size_t sl = strlen(sep);
    int nf = 0;
    size_t start = 0, i = 0;
    if (max <= 0 || sl == 0) return -1;
    while (i + sl <= len) {
        if (memcmp(line + i, sep, sl) == 0) {
            if (nf == max) return -1;
            fields[nf].ptr = line + start;
            fields[nf].len = i - start;
            nf++;
            i += sl;
            start = i;
        } else {
            i++;
        }
    }
    if (nf == max) return -1;
    fields[nf].ptr = line + start;
    fields[nf].len = len - start;
    return nf + 1;
}

/* Splits on runs of blanks (the SASRec "user item" lines). */
static int ws_split(const char *line, size_t len, struct movielens_field *fields, int max)
{
    int nf = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i >= len) break;
        size_t s = i;
        while (i < len && line[i] != ' ' && line[i] != '\t')
            i++;
        if (nf == max) return -1;
        fields[nf].ptr = line + s;
        fields[nf].len = i - s;
        nf++;
    }
    return nf;
}

/* ------------------------------------------------------------------------------------------ */
/* years and genres                                                                            */

uint16_t movielens_parse_year(const char *title, size_t len)
{
    /* trailing blanks, then one or two ')' */
    while (len > 0 && (title[len - 1] == ' ' || title[len - 1] == '\t'))
        len--;
    if (len == 0 || title[len - 1] != ')') return 0;
    len--;
    if (len > 0 && title[len - 1] == ')') len--;
    /* the last '(' before it */
    size_t open = len;
    while (open > 0 && title[open - 1] != '(')
        open--;
    if (open == 0) return 0;
    const char *p = title + open;
    size_t n = len - open;
    if (n < 4) return 0;
    unsigned y = 0;
    for (int k = 0; k < 4; k++) {
        if (p[k] < '0' || p[k] > '9') return 0;
        y = y * 10 + (unsigned)(p[k] - '0');
    }
    size_t i = 4;
    if (i < n) {
        /* a range: '-' or an en dash (UTF-8 E2 80 93), then digits and blanks */
        if (p[i] == '-') {
            i++;
        } else if (n - i >= 3 && (unsigned char)p[i] == 0xE2 && (unsigned char)p[i + 1] == 0x80 &&
                   (unsigned char)p[i + 2] == 0x93) {
            i += 3;
        } else {
            return 0;
        }
        while (i < n && ((p[i] >= '0' && p[i] <= '9') || p[i] == ' '))
            i++;
        if (i != n) return 0;
    }
    if (y < 1870 || y > 2100) return 0;
    return (uint16_t)y;
}

struct genre_name {
    const char *name;
    int genre;
};

static const struct genre_name genre_names[] = {
    {"Action", REC_GENRE_ACTION},
    {"Adventure", REC_GENRE_ADVENTURE},
    {"Animation", REC_GENRE_ANIMATION},
    {"Children", REC_GENRE_CHILDREN},
    {"Children's", REC_GENRE_CHILDREN},
    {"Comedy", REC_GENRE_COMEDY},
    {"Crime", REC_GENRE_CRIME},
    {"Documentary", REC_GENRE_DOCUMENTARY},
    {"Drama", REC_GENRE_DRAMA},
    {"Fantasy", REC_GENRE_FANTASY},
    {"Film-Noir", REC_GENRE_FILM_NOIR},
    {"Horror", REC_GENRE_HORROR},
    {"IMAX", REC_GENRE_IMAX},
    {"Musical", REC_GENRE_MUSICAL},
    {"Mystery", REC_GENRE_MYSTERY},
    {"Romance", REC_GENRE_ROMANCE},
    {"Sci-Fi", REC_GENRE_SCI_FI},
    {"Thriller", REC_GENRE_THRILLER},
    {"War", REC_GENRE_WAR},
    {"Western", REC_GENRE_WESTERN},
    {"(no genres listed)", -1},
    {"unknown", -1},
};

static int genre_lookup(const char *s, size_t len)
{
    for (size_t k = 0; k < sizeof genre_names / sizeof genre_names[0]; k++) {
        const char *nm = genre_names[k].name;
        if (strlen(nm) == len && memcmp(nm, s, len) == 0) return genre_names[k].genre;
    }
    return -2;
}

uint32_t movielens_parse_genres(const char *s, size_t len, uint32_t *unknown)
{
    uint32_t mask = 0;
    size_t i = 0;
    while (i <= len) {
        size_t st = i;
        while (i < len && s[i] != '|')
            i++;
        const char *tok = s + st;
        size_t tl = i - st;
        trim(&tok, &tl);
        if (tl > 0) {
            int g = genre_lookup(tok, tl);
            if (g >= 0) {
                mask |= 1u << g;
            } else if (g == -2 && unknown) {
                (*unknown)++;
            }
        }
        i++;
    }
    return mask;
}

/* ------------------------------------------------------------------------------------------ */
/* row parsers                                                                                 */

/* A field count for messages: the number, or "more" when the split stopped at its maximum. */
static const char *nf_str(int nf, char *buf, size_t n)
{
    if (nf < 0) return "more";
    snprintf(buf, n, "%d", nf);
    return buf;
}

int movielens_parse_rating(enum movielens_layout layout, const char *line, size_t len,
                           struct movielens_rating *out, char *why, size_t why_n)
{
    struct movielens_field f[5];
    char tmp[64];
    int nf;
    switch (layout) {
    case MOVIELENS_CSV:
        /* numeric fields: no quoting expected, so a plain split suffices */
        nf = movielens_sep_split(line, len, ",", f, 5);
        break;
    case MOVIELENS_DAT:
        nf = movielens_sep_split(line, len, "::", f, 5);
        break;
    case MOVIELENS_100K:
        nf = movielens_sep_split(line, len, "\t", f, 5);
        break;
    case MOVIELENS_SASREC:
        nf = ws_split(line, len, f, 3);
        if (nf != 2) {
            set_why(why, why_n, "expected 2 fields \"user item\", found %s",
                    nf < 0 ? "more" : (nf == 0 ? "none" : "1"));
            return -1;
        }
        if (!parse_u32(f[0].ptr, f[0].len, &out->user) || out->user == 0) {
            set_why(why, why_n, "bad user id '%s'", excerpt(f[0].ptr, f[0].len, tmp, sizeof tmp));
            return -1;
        }
        if (!parse_u32(f[1].ptr, f[1].len, &out->item) || out->item == 0) {
            set_why(why, why_n, "bad item id '%s'", excerpt(f[1].ptr, f[1].len, tmp, sizeof tmp));
            return -1;
        }
        out->ts = 0;
        return 0;
    default:
        set_why(why, why_n, "unknown layout");
        return -1;
    }
    if (nf != 4) {
        set_why(why, why_n, "expected 4 fields (user, movie, rating, timestamp), found %s",
                nf_str(nf, tmp, sizeof tmp));
        return -1;
    }
    if (!parse_u32(f[0].ptr, f[0].len, &out->user)) {
        set_why(why, why_n, "bad user id '%s'", excerpt(f[0].ptr, f[0].len, tmp, sizeof tmp));
        return -1;
    }
    if (!parse_u32(f[1].ptr, f[1].len, &out->item)) {
        set_why(why, why_n, "bad movie id '%s'", excerpt(f[1].ptr, f[1].len, tmp, sizeof tmp));
        return -1;
    }
    if (!parse_rating_value(f[2].ptr, f[2].len)) {
        set_why(why, why_n, "bad rating '%s'", excerpt(f[2].ptr, f[2].len, tmp, sizeof tmp));
        return -1;
    }
    if (!parse_i64(f[3].ptr, f[3].len, &out->ts)) {
        set_why(why, why_n, "bad timestamp '%s'", excerpt(f[3].ptr, f[3].len, tmp, sizeof tmp));
        return -1;
    }
    return 0;
}

/* ml-100k u.item: id|title|release date|video release date|IMDb URL|19 genre flags, in the
 * order of u.genre: unknown, Action, Adventure, Animation, Children's, Comedy, Crime,
 * Documentary, Drama, Fantasy, Film-Noir, Horror, Musical, Mystery, Romance, Sci-Fi, Thriller,
 * War, Western. */
static const int u100k_genres[19] = {
    -1,
    REC_GENRE_ACTION,
    REC_GENRE_ADVENTURE,
    REC_GENRE_ANIMATION,
    REC_GENRE_CHILDREN,
    REC_GENRE_COMEDY,
    REC_GENRE_CRIME,
    REC_GENRE_DOCUMENTARY,
    REC_GENRE_DRAMA,
    REC_GENRE_FANTASY,
    REC_GENRE_FILM_NOIR,
    REC_GENRE_HORROR,
    REC_GENRE_MUSICAL,
    REC_GENRE_MYSTERY,
    REC_GENRE_ROMANCE,
    REC_GENRE_SCI_FI,
    REC_GENRE_THRILLER,
    REC_GENRE_WAR,
    REC_GENRE_WESTERN,
};

/* Year of a u.item release date "01-Jan-1995", or 0. */
static uint16_t year_of_date(const char *s, size_t len)
{
    trim(&s, &len);
    if (len < 4) return 0;
    unsigned y = 0;
    for (size_t k = len - 4; k < len; k++) {
        if (s[k] < '0' || s[k] > '9') return 0;
        y = y * 10 + (unsigned)(s[k] - '0');
    }
    if (len > 4 && s[len - 5] != '-') return 0;
    return (y >= 1870 && y <= 2100) ? (uint16_t)y : 0;
}

int movielens_parse_movie(enum movielens_layout layout, const char *line, size_t len, char *buf,
                          size_t cap, struct movielens_movie *out, char *why, size_t why_n)
{
    struct movielens_field f[25];
    char tmp[64];
    int nf;
    if (cap < 4 * len + 8) {
        set_why(why, why_n, "internal: movie buffer too small");
        return -1;
    }
    /* CSV unescaping uses the first 2*len+2 bytes of buf, the UTF-8 title the rest */
    char *title_out = buf + 2 * len + 2;
    size_t title_cap = cap - (2 * len + 2);
    memset(out, 0, sizeof *out);
    switch (layout) {
    case MOVIELENS_CSV:
        nf = movielens_csv_split(line, len, buf, 2 * len + 2, f, 4, why, why_n);
        if (nf < 0) return -1;
        if (nf != 3) {
            set_why(why, why_n, "expected 3 fields (movieId, title, genres), found %d", nf);
            return -1;
        }
        break;
    case MOVIELENS_DAT:
    case MOVIELENS_SASREC:
        nf = movielens_sep_split(line, len, "::", f, 4);
        if (nf != 3) {
            set_why(why, why_n, "expected 3 fields (MovieID::Title::Genres), found %s",
                    nf_str(nf, tmp, sizeof tmp));
            return -1;
        }
        break;
    case MOVIELENS_100K:
        nf = movielens_sep_split(line, len, "|", f, 25);
        if (nf != 24) {
            set_why(why, why_n, "expected 24 '|'-separated fields, found %s",
                    nf_str(nf, tmp, sizeof tmp));
            return -1;
        }
        break;
    default:
        set_why(why, why_n, "unknown layout");
        return -1;
    }
    if (!parse_u32(f[0].ptr, f[0].len, &out->id)) {
        set_why(why, why_n, "bad movie id '%s'", excerpt(f[0].ptr, f[0].len, tmp, sizeof tmp));
        return -1;
    }
    const char *t = f[1].ptr;
    size_t tl = f[1].len;
    trim(&t, &tl);
    if (memchr(t, '\0', tl)) {
        set_why(why, why_n, "NUL byte in title");
        return -1;
    }
    size_t ul = movielens_to_utf8(t, tl, title_out, title_cap);
    if (ul > MOVIELENS_MAX_TITLE) {
        set_why(why, why_n, "title longer than %d bytes", MOVIELENS_MAX_TITLE);
        return -1;
    }
    out->title = title_out;
    out->year = movielens_parse_year(title_out, ul);
    if (layout == MOVIELENS_100K) {
        if (out->year == 0) out->year = year_of_date(f[2].ptr, f[2].len);
        for (int k = 0; k < 19; k++) {
            const struct movielens_field *g = &f[5 + k];
            const char *gp = g->ptr;
            size_t gl = g->len;
            trim(&gp, &gl);
            if (gl != 1 || (gp[0] != '0' && gp[0] != '1')) {
                set_why(why, why_n, "genre flag %d is '%s', expected 0 or 1", k + 1,
                        excerpt(g->ptr, g->len, tmp, sizeof tmp));
                return -1;
            }
            if (gp[0] == '1' && u100k_genres[k] >= 0) out->genres |= 1u << u100k_genres[k];
        }
    } else {
        out->genres = movielens_parse_genres(f[2].ptr, f[2].len, &out->unknown_genres);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* line reader                                                                                 */

struct line_reader {
    gzFile gz;
    const char *path;
    const char *name; /* base name for reports */
    char *buf;
    size_t cap, len, pos;
    bool eof;
    uint64_t lineno;
    uint64_t file_size;
};

static int lr_open(struct line_reader *r, const char *path, struct err *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    const char *slash = strrchr(path, '/');
    r->name = slash ? slash + 1 : path;
    struct stat st;
    if (stat(path, &st) != 0) return err_set(err, ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return err_set(err, ERR_INVALID, "%s: not a regular file", path);
    r->file_size = (uint64_t)st.st_size;
    r->gz = gzopen(path, "rb");
    if (!r->gz) return err_set(err, ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    gzbuffer(r->gz, 1 << 17);
    r->cap = 2 * MOVIELENS_MAX_LINE + 2;
    r->buf = malloc(r->cap);
    if (!r->buf) {
        gzclose(r->gz);
        r->gz = NULL;
        return err_set(err, ERR_NOMEM, "%s: out of memory for the line buffer", path);
    }
    return 0;
}

static void lr_close(struct line_reader *r)
{
    if (r->gz) gzclose(r->gz);
    free(r->buf);
    r->gz = NULL;
    r->buf = NULL;
}

static int lr_fill(struct line_reader *r, struct err *err)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->eof || r->len == r->cap) return 0;
    int n = gzread(r->gz, r->buf + r->len, (unsigned)(r->cap - r->len));
    if (n < 0) {
        int zerr = 0;
        const char *m = gzerror(r->gz, &zerr);
        return err_set(err, ERR_IO, "%s: read failed near line %llu: %s", r->path,
                       (unsigned long long)r->lineno + 1, m ? m : "?");
    }
    if (n == 0) {
        int zerr = 0;
        const char *m = gzerror(r->gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END)
            return err_set(err, ERR_INVALID,
                           "%s: corrupt or truncated gzip data near line %llu: %s", r->path,
                           (unsigned long long)r->lineno + 1, m ? m : "?");
        r->eof = true;
    }
    r->len += (size_t)n;
    return 0;
}

/* Next line without its terminator (LF or CRLF). Returns 1 with *line and *len set, 0 at the end,
 * or a negative err_code. *too_long is set for a line over MOVIELENS_MAX_LINE (its text is
 * dropped and *len is 0); the caller reports it as a malformed row. */
static int lr_next(struct line_reader *r, const char **line, size_t *len, bool *too_long,
                   struct err *err)
{
    *too_long = false;
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl || r->eof) {
            size_t end = nl ? (size_t)(nl - r->buf) : r->len;
            if (!nl && r->pos == r->len && !*too_long) return 0;
            r->lineno++;
            *line = r->buf + r->pos;
            size_t l = end - r->pos;
            r->pos = nl ? end + 1 : end;
            if (l > 0 && (*line)[l - 1] == '\r') l--;
            if (*too_long || l > MOVIELENS_MAX_LINE) {
                *too_long = true;
                *len = 0;
                return 1;
            }
            *len = l;
            return 1;
        }
        if (r->len - r->pos > MOVIELENS_MAX_LINE + 1) {
            /* no newline within the bound: drop what we have and look for the line's end */
            *too_long = true;
            r->pos = r->len;
        }
        int rc = lr_fill(r, err);
        if (rc < 0) return rc;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* load state                                                                                  */

struct movie_rec {
    uint32_t id;
    uint32_t genres;
    uint16_t year;
    uint64_t line;
    char *title;
};

struct loader {
    const struct movielens_cfg *cfg;
    struct movielens_report *rep;
    struct err *err;
    /* raw interactions in file order */
    uint32_t *u, *i;
    int64_t *ts;
    size_t n, cap;
    /* SASRec: ids above these are malformed rows */
    uint32_t lim_user, lim_item;
    /* movies */
    struct movie_rec *mv;
    size_t n_mv, cap_mv;
};

/* Records a problem at file:line. Returns ERR_INVALID (with err filled) in strict mode when
 * `fatal_in_strict`, else 0. */
static int report_row(struct loader *L, const char *file, uint64_t line, bool counts,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int report_row(struct loader *L, const char *file, uint64_t line, bool counts,
                      const char *fmt, ...)
{
    char msg[MOVIELENS_REPORT_LEN];
    char body[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s:%llu: %s", file, (unsigned long long)line, body);
    if (counts) L->rep->rows_rejected++;
    if (L->rep->n_reports < MOVIELENS_MAX_REPORTS) {
        memcpy(L->rep->reports[L->rep->n_reports], msg, sizeof msg);
        L->rep->n_reports++;
        if (L->cfg->log_reports) log_warn("movielens", "%s", msg);
    }
    if (counts && L->cfg->strict)
        return err_set(L->err, ERR_INVALID, "%s (malformed row; --strict makes it fatal)", msg);
    return 0;
}

static int push_row(struct loader *L, uint32_t u, uint32_t i, int64_t ts)
{
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 1 << 16;
        uint32_t *nu = realloc(L->u, nc * sizeof *nu);
        if (!nu) goto oom;
        L->u = nu;
        uint32_t *ni = realloc(L->i, nc * sizeof *ni);
        if (!ni) goto oom;
        L->i = ni;
        int64_t *nt = realloc(L->ts, nc * sizeof *nt);
        if (!nt) goto oom;
        L->ts = nt;
        L->cap = nc;
    }
    L->u[L->n] = u;
    L->i[L->n] = i;
    L->ts[L->n] = ts;
    L->n++;
    return 0;
oom:
    return err_set(L->err, ERR_NOMEM, "out of memory after %zu ratings", L->n);
}

static void loader_free(struct loader *L)
{
    free(L->u);
    free(L->i);
    free(L->ts);
    for (size_t k = 0; k < L->n_mv; k++)
        free(L->mv[k].title);
    free(L->mv);
}

/* Strips a UTF-8 BOM at the start of the first line. */
static void strip_bom(uint64_t lineno, const char **line, size_t *len)
{
    if (lineno == 1 && *len >= 3 && (unsigned char)(*line)[0] == 0xEF &&
        (unsigned char)(*line)[1] == 0xBB && (unsigned char)(*line)[2] == 0xBF) {
        *line += 3;
        *len -= 3;
    }
}

/* A CSV header line: its first field starts with a letter. */
static bool is_header(const char *line, size_t len)
{
    return len > 0 && ((line[0] >= 'a' && line[0] <= 'z') || (line[0] >= 'A' && line[0] <= 'Z'));
}

static bool header_matches(const char *line, size_t len, const char *want)
{
    size_t wl = strlen(want);
    if (len != wl) return false;
    for (size_t k = 0; k < wl; k++) {
        char a = line[k], b = want[k];
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z') b = (char)(b - 'A' + 'a');
        if (a != b) return false;
    }
    return true;
}

static int read_ratings(struct loader *L, enum movielens_layout layout, const char *path)
{
    struct line_reader r;
    int rc = lr_open(&r, path, L->err);
    if (rc < 0) return rc;
    struct progress pg;
    if (L->cfg->progress) progress_begin(&pg, "reading ratings", "bytes", r.file_size);
    const char *line;
    size_t len;
    bool too_long;
    char why[160];
    for (;;) {
        rc = lr_next(&r, &line, &len, &too_long, L->err);
        if (rc <= 0) break;
        if (L->cfg->progress && (r.lineno & 0xFFFF) == 0)
            progress_update(&pg, (uint64_t)gzoffset(r.gz), NULL);
        if (too_long) {
            L->rep->rows_read++;
            rc = report_row(L, r.name, r.lineno, true, "line longer than %d bytes",
                            MOVIELENS_MAX_LINE);
            if (rc < 0) break;
            continue;
        }
        strip_bom(r.lineno, &line, &len);
        if (layout == MOVIELENS_CSV && r.lineno == 1 && is_header(line, len)) {
            if (!header_matches(line, len, "userId,movieId,rating,timestamp")) {
                rc = err_set(L->err, ERR_INVALID,
                             "%s:1: unexpected header (want userId,movieId,rating,timestamp)",
                             r.name);
                break;
            }
            continue;
        }
        if (len == 0) continue; /* blank lines (a trailing newline pair) are not rows */
        L->rep->rows_read++;
        if (memchr(line, '\0', len)) {
            rc = report_row(L, r.name, r.lineno, true, "NUL byte in line");
            if (rc < 0) break;
            continue;
        }
        struct movielens_rating row;
        if (movielens_parse_rating(layout, line, len, &row, why, sizeof why) != 0) {
            rc = report_row(L, r.name, r.lineno, true, "%s", why);
            if (rc < 0) break;
            continue;
        }
        if (layout == MOVIELENS_SASREC && (row.user > L->lim_user || row.item > L->lim_item)) {
            rc = report_row(L, r.name, r.lineno, true,
                            "id out of range (user %u of %u, item %u of %u)", row.user, L->lim_user,
                            row.item, L->lim_item);
            if (rc < 0) break;
            continue;
        }
        rc = push_row(L, row.user, row.item, row.ts);
        if (rc < 0) break;
    }
    if (L->cfg->progress) {
        progress_update(&pg, r.file_size, NULL);
        progress_end(&pg);
    }
    lr_close(&r);
    return rc < 0 ? rc : 0;
}

static int read_movies(struct loader *L, enum movielens_layout layout, const char *path)
{
    struct line_reader r;
    int rc = lr_open(&r, path, L->err);
    if (rc < 0) return rc;
    const char *line;
    size_t len;
    bool too_long;
    char why[160];
    size_t bcap = 4 * (size_t)MOVIELENS_MAX_LINE + 8;
    char *buf = malloc(bcap);
    if (!buf) {
        lr_close(&r);
        return err_set(L->err, ERR_NOMEM, "out of memory reading %s", path);
    }
    for (;;) {
        rc = lr_next(&r, &line, &len, &too_long, L->err);
        if (rc <= 0) break;
        if (too_long) {
            rc = report_row(L, r.name, r.lineno, true, "line longer than %d bytes",
                            MOVIELENS_MAX_LINE);
            if (rc < 0) break;
            continue;
        }
        strip_bom(r.lineno, &line, &len);
        if (layout == MOVIELENS_CSV && r.lineno == 1 && is_header(line, len)) {
            if (!header_matches(line, len, "movieId,title,genres")) {
                rc = err_set(L->err, ERR_INVALID,
                             "%s:1: unexpected header (want movieId,title,genres)", r.name);
                break;
            }
            continue;
        }
        if (len == 0) continue;
        if (memchr(line, '\0', len)) {
            rc = report_row(L, r.name, r.lineno, true, "NUL byte in line");
            if (rc < 0) break;
            continue;
        }
        struct movielens_movie m;
        if (movielens_parse_movie(layout, line, len, buf, bcap, &m, why, sizeof why) != 0) {
            rc = report_row(L, r.name, r.lineno, true, "%s", why);
            if (rc < 0) break;
            continue;
        }
        if (m.unknown_genres) {
            L->rep->unknown_genres += m.unknown_genres;
            report_row(L, r.name, r.lineno, false, "%u unknown genre name(s) ignored",
                       m.unknown_genres);
        }
        if (L->n_mv == L->cap_mv) {
            size_t nc = L->cap_mv ? L->cap_mv * 2 : 4096;
            struct movie_rec *nm = realloc(L->mv, nc * sizeof *nm);
            if (!nm) {
                rc = err_set(L->err, ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            L->mv = nm;
            L->cap_mv = nc;
        }
        char *t = strdup(m.title);
        if (!t) {
            rc = err_set(L->err, ERR_NOMEM, "out of memory reading %s", path);
            break;
        }
        L->mv[L->n_mv++] = (struct movie_rec){m.id, m.genres, m.year, r.lineno, t};
        L->rep->movies_read++;
    }
    free(buf);
    lr_close(&r);
    return rc < 0 ? rc : 0;
}

static int cmp_movie(const void *a, const void *b)
{
    const struct movie_rec *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->line < y->line ? -1 : (x->line > y->line);
}

/* Sorts the movies by id; a repeated id keeps its first row and reports the others. */
static int dedup_movies(struct loader *L, const char *movies_name)
{
    if (L->n_mv == 0) return 0;
    qsort(L->mv, L->n_mv, sizeof *L->mv, cmp_movie);
    size_t o = 1;
    for (size_t k = 1; k < L->n_mv; k++) {
        if (L->mv[k].id == L->mv[o - 1].id) {
            int rc = report_row(L, movies_name, L->mv[k].line, true,
                                "duplicate movie id %u (first at line %llu)", L->mv[k].id,
                                (unsigned long long)L->mv[o - 1].line);
            L->rep->movies_read--;
            free(L->mv[k].title);
            L->mv[k].title = NULL;
            if (rc < 0) {
                /* free the rest not yet compacted */
                for (size_t j = k + 1; j < L->n_mv; j++)
                    free(L->mv[j].title);
                L->n_mv = o;
                return rc;
            }
            continue;
        }
        L->mv[o++] = L->mv[k];
    }
    L->n_mv = o;
    return 0;
}

static const struct movie_rec *find_movie(const struct loader *L, uint32_t id)
{
    size_t lo = 0, hi = L->n_mv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (L->mv[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < L->n_mv && L->mv[lo].id == id) ? &L->mv[lo] : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* layout detection                                                                            */

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Sets out to dir/name or dir/name.gz, whichever exists. */
static bool find_file(const char *dir, const char *name, char *out, size_t n)
{
    if (!out || n == 0) return false; /* also quiets GCC's -Wformat-truncation under ASan */
    snprintf(out, n, "%s/%s", dir, name);
    if (file_exists(out)) return true;
    snprintf(out, n, "%s/%s.gz", dir, name);
    if (file_exists(out)) return true;
    out[0] = '\0';
    return false;
}

/* The first file name (in sorted order) of dir matching one of the fnmatch patterns, skipping
 * names that match `exclude` (may be NULL). */
static bool find_glob(const char *dir, const char *const *pats, const char *exclude, char *out,
                      size_t n)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    char best[256] = "";
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) >= sizeof best) continue;
        if (exclude && fnmatch(exclude, e->d_name, 0) == 0) continue;
        for (const char *const *p = pats; *p; p++) {
            if (fnmatch(*p, e->d_name, 0) == 0) {
                if (!best[0] || strcmp(e->d_name, best) < 0)
                    snprintf(best, sizeof best, "%s", e->d_name);
                break;
            }
        }
    }
    closedir(d);
    if (!best[0]) return false;
    snprintf(out, n, "%s/%s", dir, best);
    return file_exists(out);
}

int movielens_detect(const char *dir, enum movielens_layout *layout, char *ratings_path,
                     size_t ratings_n, char *movies_path, size_t movies_n, struct err *err)
{
    struct stat st;
    *layout = MOVIELENS_UNKNOWN;
    ratings_path[0] = movies_path[0] = '\0';
    if (stat(dir, &st) != 0) return err_set(err, ERR_NOTFOUND, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return err_set(err, ERR_INVALID, "%s: not a folder", dir);
    if (find_file(dir, "ratings.csv", ratings_path, ratings_n)) {
        *layout = MOVIELENS_CSV;
        find_file(dir, "movies.csv", movies_path, movies_n);
        return 0;
    }
    static const char *const dat_pats[] = {"ratings*.dat", "ratings*.dat.gz", NULL};
    if (find_file(dir, "ratings.dat", ratings_path, ratings_n) ||
        find_glob(dir, dat_pats, NULL, ratings_path, ratings_n)) {
        *layout = MOVIELENS_DAT;
        find_file(dir, "movies.dat", movies_path, movies_n);
        return 0;
    }
    if (find_file(dir, "u.data", ratings_path, ratings_n)) {
        *layout = MOVIELENS_100K;
        find_file(dir, "u.item", movies_path, movies_n);
        return 0;
    }
    static const char *const sas_pats[] = {"*sasrec*.txt", "*sasrec*.txt.gz", "ml-1m.txt",
                                           "ml-1m.txt.gz", NULL};
    if (find_glob(dir, sas_pats, "sas_to_original_*", ratings_path, ratings_n)) {
        *layout = MOVIELENS_SASREC;
        find_file(dir, "movies.dat", movies_path, movies_n);
        return 0;
    }
    return err_set(err, ERR_NOTFOUND,
                   "%s: no MovieLens ratings found (looked for ratings.csv, ratings*.dat, u.data "
                   "and *sasrec*.txt / ml-1m.txt, each optionally .gz)",
                   dir);
}

const char *movielens_layout_name(enum movielens_layout l)
{
    switch (l) {
    case MOVIELENS_CSV:
        return "csv";
    case MOVIELENS_DAT:
        return "ml-1m";
    case MOVIELENS_100K:
        return "ml-100k";
    case MOVIELENS_SASREC:
        return "sasrec";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------------------------ */
/* SASRec id maps                                                                              */

/* Reads "sas_id orig_id" lines into map[1..n]: the sas ids must be exactly 1..n, each once.
 * *map is allocated with n + 1 entries. A malformed map is an error (not a skippable row):
 * every id of the sequence file depends on it. */
static int read_sas_map(struct loader *L, const char *path, uint32_t **map, uint32_t *n_out)
{
    struct line_reader r;
    int rc = lr_open(&r, path, L->err);
    if (rc < 0) return rc;
    uint32_t *m = NULL;
    size_t cap = 0;
    uint32_t n = 0;
    const char *line;
    size_t len;
    bool too_long;
    for (;;) {
        rc = lr_next(&r, &line, &len, &too_long, L->err);
        if (rc <= 0) break;
        strip_bom(r.lineno, &line, &len);
        if (len == 0 && !too_long) continue;
        struct movielens_field f[3];
        uint32_t a = 0, b = 0;
        if (too_long || ws_split(line, len, f, 3) != 2 || !parse_u32(f[0].ptr, f[0].len, &a) ||
            !parse_u32(f[1].ptr, f[1].len, &b)) {
            rc = err_set(L->err, ERR_INVALID, "%s:%llu: expected \"sas_id original_id\"", r.name,
                         (unsigned long long)r.lineno);
            break;
        }
        if (a != n + 1) {
            rc = err_set(L->err, ERR_INVALID,
                         "%s:%llu: ids must run 1, 2, 3, ... in order; found %u after %u", r.name,
                         (unsigned long long)r.lineno, a, n);
            break;
        }
        if ((size_t)n + 2 > cap) {
            size_t nc = cap ? cap * 2 : 8192;
            uint32_t *nm = realloc(m, nc * sizeof *nm);
            if (!nm) {
                rc = err_set(L->err, ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            m = nm;
            cap = nc;
        }
        m[0] = 0;
        m[++n] = b;
    }
    lr_close(&r);
    if (rc < 0) {
        free(m);
        return rc;
    }
    if (n == 0) {
        free(m);
        return err_set(L->err, ERR_INVALID, "%s: empty id map", path);
    }
    *map = m;
    *n_out = n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* building the dataset                                                                        */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : (x > y);
}

/* Sorted distinct values of v[0..n) (allocated; *nu set). */
static uint32_t *distinct(const uint32_t *v, size_t n, size_t *nu)
{
    uint32_t *s = malloc((n ? n : 1) * sizeof *s);
    if (!s) return NULL;
    if (n) memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_u32);
    size_t o = 0;
    for (size_t k = 0; k < n; k++)
        if (o == 0 || s[k] != s[o - 1]) s[o++] = s[k];
    *nu = o;
    return s;
}

static size_t index_of(const uint32_t *sorted, size_t n, uint32_t v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Applies the one-pass min_user / min_item filter to the raw rows in place. */
static int filter_rows(struct loader *L)
{
    uint32_t mu = L->cfg->min_user, mi = L->cfg->min_item;
    if (mu <= 1 && mi <= 1) return 0;
    size_t nuu = 0, nui = 0;
    uint32_t *uu = distinct(L->u, L->n, &nuu);
    uint32_t *ui = distinct(L->i, L->n, &nui);
    uint32_t *cu = calloc(nuu + 1, sizeof *cu);
    uint32_t *ci = calloc(nui + 1, sizeof *ci);
    int rc = 0;
    if (!uu || !ui || !cu || !ci) {
        rc = err_set(L->err, ERR_NOMEM, "out of memory filtering %zu ratings", L->n);
        goto out;
    }
    for (size_t k = 0; k < L->n; k++) {
        cu[index_of(uu, nuu, L->u[k])]++;
        ci[index_of(ui, nui, L->i[k])]++;
    }
    size_t o = 0;
    for (size_t k = 0; k < L->n; k++) {
        if (cu[index_of(uu, nuu, L->u[k])] >= mu && ci[index_of(ui, nui, L->i[k])] >= mi) {
            L->u[o] = L->u[k];
            L->i[o] = L->i[k];
            L->ts[o] = L->ts[k];
            o++;
        }
    }
    L->rep->rows_filtered = L->n - o;
    L->n = o;
out:
    free(uu);
    free(ui);
    free(cu);
    free(ci);
    return rc;
}

struct ts_key {
    int64_t ts;
    uint64_t pos;
};

static int cmp_ts_key(const void *a, const void *b)
{
    const struct ts_key *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->pos < y->pos ? -1 : (x->pos > y->pos);
}

/* Turns dense rows (du[k] in 0..n_users-1, di[k] in 1..n_items, file order) into the dataset's
 * offsets and sequences: a stable counting sort by user, then per user a sort by timestamp
 * whose ties keep file order (the key includes the position). */
static int build_sequences(struct rec_dataset *d, const uint32_t *du, const uint32_t *di,
                           const int64_t *ts, size_t n, struct err *err)
{
    d->n_interactions = n;
    d->user_off = calloc((size_t)d->n_users + 1, sizeof *d->user_off);
    d->seq = malloc((n ? n : 1) * sizeof *d->seq);
    d->ts = malloc((n ? n : 1) * sizeof *d->ts);
    uint64_t *fill = calloc((size_t)d->n_users + 1, sizeof *fill);
    struct ts_key *keys = NULL;
    uint64_t *pos = malloc((n ? n : 1) * sizeof *pos);
    int rc = 0;
    if (!d->user_off || !d->seq || !d->ts || !fill || !pos) {
        rc = err_set(err, ERR_NOMEM, "out of memory building %zu-interaction sequences", n);
        goto out;
    }
    for (size_t k = 0; k < n; k++)
        d->user_off[du[k] + 1]++;
    uint64_t maxlen = 0;
    for (uint32_t u = 0; u < d->n_users; u++) {
        if (d->user_off[u + 1] > maxlen) maxlen = d->user_off[u + 1];
        d->user_off[u + 1] += d->user_off[u];
    }
    for (size_t k = 0; k < n; k++)
        pos[d->user_off[du[k]] + fill[du[k]]++] = k;
    keys = malloc((maxlen ? maxlen : 1) * sizeof *keys);
    if (!keys) {
        rc = err_set(err, ERR_NOMEM, "out of memory sorting sequences");
        goto out;
    }
    for (uint32_t u = 0; u < d->n_users; u++) {
        uint64_t a = d->user_off[u], b = d->user_off[u + 1];
        for (uint64_t k = a; k < b; k++)
            keys[k - a] = (struct ts_key){ts[pos[k]], pos[k]};
        qsort(keys, (size_t)(b - a), sizeof *keys, cmp_ts_key);
        for (uint64_t k = a; k < b; k++) {
            d->seq[k] = di[keys[k - a].pos];
            d->ts[k] = keys[k - a].ts;
        }
    }
out:
    free(fill);
    free(pos);
    free(keys);
    return rc;
}

/* Allocates and fills the per-item metadata from the movies table (items absent from it get an
 * empty title, no genres and year 0, and are counted). */
static int attach_metadata(struct loader *L, struct rec_dataset *d)
{
    size_t ni = (size_t)d->n_items + 1;
    d->item_genres = calloc(ni, sizeof *d->item_genres);
    d->item_year = calloc(ni, sizeof *d->item_year);
    d->item_title = calloc(ni, sizeof *d->item_title);
    if (!d->item_genres || !d->item_year || !d->item_title)
        return err_set(L->err, ERR_NOMEM, "out of memory for %u items' metadata", d->n_items);
    for (size_t k = 0; k < ni; k++) {
        const struct movie_rec *m = k > 0 ? find_movie(L, d->item_orig[k]) : NULL;
        if (m) {
            d->item_genres[k] = m->genres;
            d->item_year[k] = m->year;
        } else if (k > 0) {
            L->rep->items_without_meta++;
        }
        d->item_title[k] = strdup(m ? m->title : "");
        if (!d->item_title[k])
            return err_set(L->err, ERR_NOMEM, "out of memory for %u items' titles", d->n_items);
    }
    return 0;
}

/* Raw layouts: dense ids from the sorted distinct source ids of the kept rows. */
static struct rec_dataset *build_raw(struct loader *L)
{
    struct rec_dataset *d = calloc(1, sizeof *d);
    uint32_t *uu = NULL, *ui = NULL;
    size_t nuu = 0, nui = 0;
    if (!d) goto oom;
    uu = distinct(L->u, L->n, &nuu);
    ui = distinct(L->i, L->n, &nui);
    if (!uu || !ui) goto oom;
    if (nui >= UINT32_MAX) {
        err_set(L->err, ERR_UNSUPPORTED, "too many distinct movies (%zu)", nui);
        goto fail;
    }
    d->n_users = (uint32_t)nuu;
    d->n_items = (uint32_t)nui;
    d->user_orig = uu;
    uu = NULL;
    d->item_orig = malloc(((size_t)nui + 1) * sizeof *d->item_orig);
    if (!d->item_orig) goto oom;
    d->item_orig[0] = 0;
    memcpy(d->item_orig + 1, ui, nui * sizeof *ui);
    /* rewrite the raw rows to dense ids in place */
    for (size_t k = 0; k < L->n; k++) {
        L->u[k] = (uint32_t)index_of(d->user_orig, nuu, L->u[k]);
        L->i[k] = (uint32_t)index_of(ui, nui, L->i[k]) + 1;
    }
    free(ui);
    ui = NULL;
    if (build_sequences(d, L->u, L->i, L->ts, L->n, L->err) < 0) goto fail;
    if (attach_metadata(L, d) < 0) goto fail;
    return d;
oom:
    err_set(L->err, ERR_NOMEM, "out of memory building the dataset (%zu ratings)", L->n);
fail:
    free(uu);
    free(ui);
    rec_dataset_free(d);
    return NULL;
}

static struct rec_dataset *load_sasrec(struct loader *L, const char *dir, const char *seq_path,
                                       const char *movies_path)
{
    char path[1024];
    uint32_t *imap = NULL, *umap = NULL;
    uint32_t n_imap = 0, n_umap = 0;
    struct rec_dataset *d = NULL;
    if (L->cfg->min_user > 1 || L->cfg->min_item > 1)
        log_warn("movielens",
                 "the SASRec layout is already filtered: --min-user/--min-item ignored");
    if (find_file(dir, "sas_to_original_items.txt", path, sizeof path) &&
        read_sas_map(L, path, &imap, &n_imap) < 0)
        goto fail;
    if (find_file(dir, "sas_to_original_users.txt", path, sizeof path) &&
        read_sas_map(L, path, &umap, &n_umap) < 0)
        goto fail;
    /* without a map, ids are taken as dense and bounded, so that one huge id cannot make the
     * offsets array enormous */
    L->lim_user = umap ? n_umap : MOVIELENS_MAX_SASREC_ID;
    L->lim_item = imap ? n_imap : MOVIELENS_MAX_SASREC_ID;
    if (read_ratings(L, MOVIELENS_SASREC, seq_path) < 0) goto fail;
    /* without maps, ids are the file's own and the counts its largest ids */
    uint32_t max_u = 0, max_i = 0;
    for (size_t k = 0; k < L->n; k++) {
        if (L->u[k] > max_u) max_u = L->u[k];
        if (L->i[k] > max_i) max_i = L->i[k];
        L->u[k] -= 1; /* dense users are 0-based */
    }
    /* dense ids cannot exceed the number of rows; a sparse id would make huge empty arrays */
    if ((!umap && max_u > L->n) || (!imap && max_i > L->n)) {
        err_set(L->err, ERR_INVALID,
                "%s: ids up to %u (users) and %u (items) in %zu rows are not dense 1..n; give "
                "sas_to_original_users.txt / sas_to_original_items.txt",
                seq_path, max_u, max_i, L->n);
        goto fail;
    }
    uint32_t n_users = umap ? n_umap : max_u;
    uint32_t n_items = imap ? n_imap : max_i;
    d = calloc(1, sizeof *d);
    if (!d) goto oom;
    d->n_users = n_users;
    d->n_items = n_items;
    d->user_orig = malloc(((size_t)n_users + 1) * sizeof *d->user_orig);
    d->item_orig = malloc(((size_t)n_items + 1) * sizeof *d->item_orig);
    if (!d->user_orig || !d->item_orig) goto oom;
    for (uint32_t u = 0; u < n_users; u++)
        d->user_orig[u] = umap ? umap[u + 1] : u + 1;
    d->item_orig[0] = 0;
    for (uint32_t i = 1; i <= n_items; i++)
        d->item_orig[i] = imap ? imap[i] : i;
    if (build_sequences(d, L->u, L->i, L->ts, L->n, L->err) < 0) goto fail;
    if (movies_path[0]) {
        if (read_movies(L, MOVIELENS_SASREC, movies_path) < 0) goto fail;
        const char *slash = strrchr(movies_path, '/');
        if (dedup_movies(L, slash ? slash + 1 : movies_path) < 0) goto fail;
    }
    if (attach_metadata(L, d) < 0) goto fail;
    free(imap);
    free(umap);
    return d;
oom:
    err_set(L->err, ERR_NOMEM, "out of memory building the SASRec dataset");
fail:
    free(imap);
    free(umap);
    rec_dataset_free(d);
    return NULL;
}

struct rec_dataset *movielens_load(const char *dir, const struct movielens_cfg *cfg,
                                   struct movielens_report *report, struct err *err)
{
    struct movielens_cfg defcfg = {0};
    struct movielens_report local;
    if (!cfg) cfg = &defcfg;
    if (!report) report = &local;
    memset(report, 0, sizeof *report);
    enum movielens_layout layout;
    if (movielens_detect(dir, &layout, report->ratings_path, sizeof report->ratings_path,
                         report->movies_path, sizeof report->movies_path, err) < 0)
        return NULL;
    report->layout = layout;
    struct loader L = {.cfg = cfg, .rep = report, .err = err};
    struct rec_dataset *d = NULL;
    if (layout == MOVIELENS_SASREC) {
        d = load_sasrec(&L, dir, report->ratings_path, report->movies_path);
    } else {
        if (read_ratings(&L, layout, report->ratings_path) < 0) goto out;
        if (report->movies_path[0]) {
            if (read_movies(&L, layout, report->movies_path) < 0) goto out;
            const char *slash = strrchr(report->movies_path, '/');
            if (dedup_movies(&L, slash ? slash + 1 : report->movies_path) < 0) goto out;
        }
        if (filter_rows(&L) < 0) goto out;
        d = build_raw(&L);
    }
    if (!d) goto out;
    if (d->n_interactions == 0) {
        err_set(err, ERR_INVALID, "%s: no valid ratings (%llu rows read, %llu malformed%s)",
                report->ratings_path, (unsigned long long)report->rows_read,
                (unsigned long long)report->rows_rejected,
                report->rows_filtered ? ", the rest filtered out" : "");
        rec_dataset_free(d);
        d = NULL;
        goto out;
    }
    snprintf(d->source, sizeof d->source, "%s", movielens_layout_name(layout));
    if (rec_dataset_count_popularity(d, err) < 0 || rec_dataset_validate(d, err) < 0) {
        rec_dataset_free(d);
        d = NULL;
    }
out:
    loader_free(&L);
    if (!d) err_prefix(err, "loading MovieLens from %s", dir);
    return d;
}
