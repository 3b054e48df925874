#include "prom_parse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAM 256

struct fam {
    char name[128];
    char type[16];
    bool has_help;
};

static bool is_name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
    if (colon && c == ':') return true;
    return !first && c >= '0' && c <= '9';
}

/* Reads a name at *p into out; advances *p. */
static bool read_name(const char **p, char *out, size_t n, bool colon)
{
    size_t i = 0;
    const char *s = *p;
    while (is_name_char(s[i], i == 0, colon)) {
        if (i + 1 >= n) return false;
        out[i] = s[i];
        i++;
    }
    out[i] = '\0';
    *p = s + i;
    return i > 0;
}

static bool parse_value(const char *s, double *v)
{
    if (strcmp(s, "+Inf") == 0) {
        *v = INFINITY;
        return true;
    }
    if (strcmp(s, "-Inf") == 0) {
        *v = -INFINITY;
        return true;
    }
    if (strcmp(s, "NaN") == 0) {
        *v = NAN;
        return true;
    }
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0';
}

static const struct fam *family_of(const struct fam *f, int nf, const char *name,
                                   const char **suffix)
{
    for (int i = 0; i < nf; i++) {
        size_t l = strlen(f[i].name);
        if (strncmp(name, f[i].name, l) != 0) continue;
        const char *rest = name + l;
        if (*rest == '\0' && strcmp(f[i].type, "histogram") != 0) {
            *suffix = rest;
            return &f[i];
        }
        if (strcmp(f[i].type, "histogram") == 0 &&
            (strcmp(rest, "_bucket") == 0 || strcmp(rest, "_sum") == 0 ||
             strcmp(rest, "_count") == 0)) {
            *suffix = rest;
            return &f[i];
        }
    }
    return NULL;
}

/* Checks histogram invariants over consecutive _bucket lines of one series: le increases,
 * counts never decrease, the last is +Inf and equals the following _count. */
static bool check_histograms(const struct prom_doc *d, char *err, size_t n)
{
    for (int i = 0; i < d->n; i++) {
        const char *nm = d->s[i].name;
        size_t l = strlen(nm);
        if (l < 7 || strcmp(nm + l - 7, "_bucket") != 0) continue;
        if (i > 0 && strcmp(d->s[i - 1].name, nm) == 0) continue; /* not the first bucket */
        double prev_le = -INFINITY, prev_c = 0;
        int j = i;
        for (; j < d->n && strcmp(d->s[j].name, nm) == 0; j++) {
            const char *le = strstr(d->s[j].labels, "le=\"");
            if (!le) {
                snprintf(err, n, "%s: bucket without le", nm);
                return false;
            }
            char buf[64];
            snprintf(buf, sizeof buf, "%s", le + 4);
            char *q = strchr(buf, '"');
            if (q) *q = '\0';
            double lv;
            if (!parse_value(buf, &lv) || !(lv > prev_le)) {
                snprintf(err, n, "%s: le=\"%s\" not increasing", nm, buf);
                return false;
            }
            if (d->s[j].value < prev_c) {
                snprintf(err, n, "%s: bucket counts decrease at le=%s", nm, buf);
                return false;
            }
            prev_le = lv;
            prev_c = d->s[j].value;
        }
        if (!isinf(prev_le)) {
            snprintf(err, n, "%s: last bucket is not le=\"+Inf\"", nm);
            return false;
        }
        char cname[160];
        snprintf(cname, sizeof cname, "%.*s_count", (int)(l - 7), nm);
        bool found = false;
        for (int k = j; k < d->n && k < j + 3; k++)
            if (strcmp(d->s[k].name, cname) == 0) {
                found = true;
                if (d->s[k].value != prev_c) {
                    snprintf(err, n, "%s (%g) differs from the +Inf bucket (%g)", cname,
                             d->s[k].value, prev_c);
                    return false;
                }
            }
        if (!found) {
            snprintf(err, n, "%s: no _count after the buckets", nm);
            return false;
        }
    }
    return true;
}

bool prom_parse(const char *text, struct prom_doc *doc, char *err, size_t n)
{
    static struct fam fams[MAX_FAM];
    int nf = 0;
    doc->n = 0;
    doc->n_families = 0;
    int lineno = 0;
    const char *p = text;
    char line[2048];
    while (*p) {
        const char *e = strchr(p, '\n');
        if (!e) {
            snprintf(err, n, "line %d: text does not end with a newline", lineno + 1);
            return false;
        }
        lineno++;
        size_t l = (size_t)(e - p);
        if (l >= sizeof line) {
            snprintf(err, n, "line %d: too long", lineno);
            return false;
        }
        memcpy(line, p, l);
        line[l] = '\0';
        p = e + 1;
        if (l == 0) continue;
        if (line[0] == '#') {
            const char *q = line + 1;
            bool help = strncmp(q, " HELP ", 6) == 0, type = strncmp(q, " TYPE ", 6) == 0;
            if (!help && !type) continue; /* plain comment */
            q += 6;
            char name[128];
            if (!read_name(&q, name, sizeof name, true) || (*q != ' ' && *q != '\0')) {
                snprintf(err, n, "line %d: bad metric name in '%s'", lineno, line);
                return false;
            }
            int fi = 0;
            while (fi < nf && strcmp(fams[fi].name, name) != 0)
                fi++;
            if (fi == nf) {
                if (nf == MAX_FAM) {
                    snprintf(err, n, "too many families");
                    return false;
                }
                memset(&fams[nf], 0, sizeof fams[nf]);
                snprintf(fams[nf].name, sizeof fams[nf].name, "%s", name);
                nf++;
            }
            if (type) {
                const char *t = q + 1;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                    strcmp(t, "summary") && strcmp(t, "untyped")) {
                    snprintf(err, n, "line %d: unknown type '%s'", lineno, t);
                    return false;
                }
                if (fams[fi].type[0]) {
                    snprintf(err, n, "line %d: second TYPE for %s", lineno, name);
                    return false;
                }
                snprintf(fams[fi].type, sizeof fams[fi].type, "%s", t);
            } else {
                fams[fi].has_help = true;
            }
            continue;
        }
        /* a sample */
        if (doc->n == PROM_MAX_SAMPLES) {
            snprintf(err, n, "too many samples");
            return false;
        }
        struct prom_sample *s = &doc->s[doc->n];
        const char *q = line;
        if (!read_name(&q, s->name, sizeof s->name, true)) {
            snprintf(err, n, "line %d: bad sample name in '%s'", lineno, line);
            return false;
        }
        s->labels[0] = '\0';
        if (*q == '{') {
            const char *ls = ++q;
            for (;;) {
                char lname[128];
                if (*q == '}') break;
                if (!read_name(&q, lname, sizeof lname, false) || *q != '=' || q[1] != '"') {
                    snprintf(err, n, "line %d: bad label in '%s'", lineno, line);
                    return false;
                }
                q += 2;
                while (*q && *q != '"') {
                    if (*q == '\\') {
                        if (q[1] != '\\' && q[1] != '"' && q[1] != 'n') {
                            snprintf(err, n, "line %d: bad escape in a label value", lineno);
                            return false;
                        }
                        q++;
                    }
                    q++;
                }
                if (*q != '"') {
                    snprintf(err, n, "line %d: unterminated label value", lineno);
                    return false;
                }
                q++;
                if (*q == ',') {
                    q++;
                    continue;
                }
                if (*q != '}') {
                    snprintf(err, n, "line %d: expected , or } after a label", lineno);
                    return false;
                }
            }
            size_t ll = (size_t)(q - ls);
            if (ll >= sizeof s->labels) {
                snprintf(err, n, "line %d: labels too long", lineno);
                return false;
            }
            memcpy(s->labels, ls, ll);
            s->labels[ll] = '\0';
            q++;
        }
        if (*q != ' ') {
            snprintf(err, n, "line %d: expected a space before the value", lineno);
            return false;
        }
        q++;
        char val[64];
        snprintf(val, sizeof val, "%s", q);
        char *sp = strchr(val, ' '); /* optional timestamp */
        if (sp) *sp = '\0';
        if (!parse_value(val, &s->value)) {
            snprintf(err, n, "line %d: bad value '%s'", lineno, val);
            return false;
        }
        const char *suffix = "";
        const struct fam *f = family_of(fams, nf, s->name, &suffix);
        if (!f || !f->type[0]) {
            snprintf(err, n, "line %d: sample %s has no # TYPE before it", lineno, s->name);
            return false;
        }
        if (strcmp(f->type, "counter") == 0 && !(s->value >= 0)) {
            snprintf(err, n, "line %d: counter %s is negative", lineno, s->name);
            return false;
        }
        doc->n++;
    }
    doc->n_families = nf;
    return check_histograms(doc, err, n);
}

const struct prom_sample *prom_find(const struct prom_doc *doc, const char *name,
                                    const char *label_sub)
{
    for (int i = 0; i < doc->n; i++)
        if (strcmp(doc->s[i].name, name) == 0 &&
            (!label_sub || strstr(doc->s[i].labels, label_sub)))
            return &doc->s[i];
    return NULL;
}
