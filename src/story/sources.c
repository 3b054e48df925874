/* Trend sources. See sources.h.
 *
 * Each source is two halves: a request (URL from the environment's base URL and the
 * parameters) and a parser (payload -> topics through one builder that cleans, validates
 * and deduplicates). Sources that need several requests (Hacker News Firebase, the
 * Wikipedia day fallback) are small loops around the same pieces. */
#include "story/sources.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "serve/json.h"
#include "story/feeds.h"
#include "story/fetch.h"
#include "story/text.h"

static const char *const source_names[SOURCE_COUNT] = {
    "google", "hackernews", "wikipedia", "rss", "youtube", "newsapi",
};

const char *source_name(enum source_id id)
{
    return (unsigned)id < SOURCE_COUNT ? source_names[id] : NULL;
}

int source_lookup(const char *name)
{
    for (int i = 0; name && i < SOURCE_COUNT; i++)
        if (strcmp(name, source_names[i]) == 0) return i;
    return -1;
}

void source_meta_init(struct source_meta *m)
{
    memset(m, 0, sizeof *m);
    m->retry_after_s = -1;
}

/* ---- topic lists ---- */

void source_topics_clear(struct topic_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].title);
        free(l->v[i].url);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int source_topics_copy(struct topic_list *dst, const struct topic_list *src)
{
    dst->v = NULL;
    dst->n = 0;
    if (src->n == 0) return 0;
    dst->v = calloc(src->n, sizeof *dst->v);
    if (!dst->v) return ERR_NOMEM;
    for (size_t i = 0; i < src->n; i++) {
        dst->v[i] = src->v[i];
        dst->v[i].title = strdup(src->v[i].title);
        dst->v[i].url = strdup(src->v[i].url);
        dst->n = i + 1;
        if (!dst->v[i].title || !dst->v[i].url) {
            source_topics_clear(dst);
            return ERR_NOMEM;
        }
    }
    return 0;
}

/* Collects topics for one source: cleans, validates and deduplicates, up to `limit`. */
/* YouTube mostPopular: at most 50 videos a page; pages followed by nextPageToken until the
 * limit is met, at most this many (4 x 50 = the chart's 200). */
#define YOUTUBE_PAGE_MAX 50
#define YOUTUBE_MAX_PAGES 4
#define YOUTUBE_TOKEN_MAX 128

struct builder {
    struct topic_list *l;
    char **keys;
    size_t limit;
    const char *source;
    bool oom;
};

static void builder_init(struct builder *b, struct topic_list *l, size_t limit,
                         enum source_id id)
{
    memset(b, 0, sizeof *b);
    b->l = l;
    b->limit = limit ? limit : SOURCE_LIMIT_DEFAULT;
    b->source = source_name(id);
    l->v = NULL;
    l->n = 0;
}

static void builder_done(struct builder *b)
{
    for (size_t i = 0; i < b->l->n; i++) free(b->keys[i]);
    free(b->keys);
    b->keys = NULL;
}

/* A URL we hand on: http(s), printable ASCII or UTF-8 without spaces, bounded. */
static char *clean_url(const char *u)
{
    if (!u) return strdup("");
    while (isspace((unsigned char)*u)) u++;
    size_t n = strlen(u);
    while (n > 0 && isspace((unsigned char)u[n - 1])) n--;
    bool ok = n > 0 && n <= SOURCE_URL_MAX &&
              (strncasecmp(u, "http://", 7) == 0 || strncasecmp(u, "https://", 8) == 0) &&
              utf8_valid(u, n);
    for (size_t i = 0; ok && i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7F || u[i] == '"' || u[i] == '<' ||
            u[i] == '>')
            ok = false;
    return ok ? strndup(u, n) : strdup("");
}

/* Returns 1 if added, 0 if skipped (empty, duplicate, full), -1 when out of memory. */
static int builder_add(struct builder *b, const char *raw, size_t len, unsigned flags,
                       const char *url, int64_t traffic, int64_t published)
{
    if (b->l->n >= b->limit || !raw) return 0;
    char *title = text_clean(raw, len, flags, SOURCE_TITLE_MAX);
    if (!title) goto oom;
    if (!title[0]) {
        free(title);
        return 0;
    }
    char *key = text_fold_key(title);
    if (!key) {
        free(title);
        goto oom;
    }
    for (size_t i = 0; i < b->l->n; i++)
        if (strcmp(b->keys[i], key) == 0) {
            free(key);
            free(title);
            return 0;
        }
    size_t n = b->l->n;
    if ((n & (n - 1)) == 0) { /* grow at powers of two */
        size_t nc = n ? n * 2 : 8;
        struct topic *nv = realloc(b->l->v, nc * sizeof *nv);
        if (nv) b->l->v = nv;
        char **nk = nv ? realloc(b->keys, nc * sizeof *nk) : NULL;
        if (nk) b->keys = nk;
        if (!nv || !nk) {
            free(key);
            free(title);
            goto oom;
        }
    }
    char *u = clean_url(url);
    if (!u) {
        free(key);
        free(title);
        goto oom;
    }
    b->l->v[n] = (struct topic){.title = title,
                                .url = u,
                                .traffic = traffic,
                                .published = published > 0 ? published : 0,
                                .source = b->source};
    b->keys[n] = key;
    b->l->n = n + 1;
    return 1;
oom:
    b->oom = true;
    return -1;
}

/* ---- parameters ---- */

static bool all_chars(const char *s, const char *extra, bool alpha, bool digit)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((alpha && isalpha(c)) || (digit && isdigit(c)) || strchr(extra, c)) continue;
        return false;
    }
    return true;
}

int source_params_check(enum source_id id, struct source_params *p, struct err *err)
{
    if ((unsigned)id >= SOURCE_COUNT) return err_set(err, ERR_INVALID, "unknown source");
    const char *name = source_name(id);
    if (p->limit < 0 || p->limit > SOURCE_LIMIT_MAX)
        return err_set(err, ERR_INVALID, "%s: limit must be 1..%d", name, SOURCE_LIMIT_MAX);
    if (p->limit == 0) p->limit = SOURCE_LIMIT_DEFAULT;
    /* Drop parameters the source does not use, so they do not split the cache key. */
    if (id != SOURCE_GOOGLE && id != SOURCE_YOUTUBE && id != SOURCE_NEWSAPI) p->geo[0] = 0;
    if (id != SOURCE_RSS) p->url[0] = 0;
    if (id != SOURCE_WIKIPEDIA) p->project[0] = p->date[0] = 0;
    if (id != SOURCE_NEWSAPI) p->category[0] = 0;
    if (id != SOURCE_HACKERNEWS) p->mode[0] = 0;
    if (id == SOURCE_GOOGLE || id == SOURCE_YOUTUBE || id == SOURCE_NEWSAPI) {
        if (!p->geo[0]) snprintf(p->geo, sizeof p->geo, "US");
        size_t gl = strlen(p->geo);
        if (gl < 2 || gl > 8 || !all_chars(p->geo, "-", true, false))
            return err_set(err, ERR_INVALID, "%s: geo must be a country code like GB or US",
                           name);
        for (char *c = p->geo; *c; c++) *c = (char)toupper((unsigned char)*c);
    }
    if (id == SOURCE_NEWSAPI && p->category[0]) {
        static const char *const cats[] = {"business", "entertainment", "general", "health",
                                           "science",  "sports",        "technology"};
        bool ok = false;
        for (size_t i = 0; i < sizeof cats / sizeof cats[0]; i++)
            if (strcmp(p->category, cats[i]) == 0) ok = true;
        if (!ok)
            return err_set(err, ERR_INVALID,
                           "newsapi: category must be one of business, entertainment, general, "
                           "health, science, sports, technology");
    }
    if (id == SOURCE_HACKERNEWS) {
        if (!p->mode[0]) snprintf(p->mode, sizeof p->mode, "algolia");
        if (strcmp(p->mode, "algolia") != 0 && strcmp(p->mode, "firebase") != 0)
            return err_set(err, ERR_INVALID, "hackernews: mode must be algolia or firebase");
    }
    if (id == SOURCE_WIKIPEDIA) {
        if (!p->project[0]) snprintf(p->project, sizeof p->project, "en.wikipedia");
        if (!all_chars(p->project, ".-", true, true) || !strchr(p->project, '.'))
            return err_set(err, ERR_INVALID,
                           "wikipedia: project must look like en.wikipedia or de.wiktionary");
        if (p->date[0]) {
            int y, m, d;
            char tail;
            if (strlen(p->date) != 10 || sscanf(p->date, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 ||
                y < 2015 || m < 1 || m > 12 || d < 1 || d > 31)
                return err_set(err, ERR_INVALID, "wikipedia: date must be YYYY-MM-DD (2015 on)");
        }
    }
    if (id == SOURCE_RSS) {
        if (!p->url[0]) return err_set(err, ERR_INVALID, "rss: the url parameter is required");
        if (strncasecmp(p->url, "http://", 7) != 0 && strncasecmp(p->url, "https://", 8) != 0)
            return err_set(err, ERR_INVALID, "rss: url must start with http:// or https://");
        for (const char *c = p->url; *c; c++)
            if ((unsigned char)*c <= 0x20 || *c == 0x7F)
                return err_set(err, ERR_INVALID, "rss: url contains spaces or control characters");
    }
    return 0;
}

void source_key(enum source_id id, const struct source_params *p, char *out, size_t n)
{
    snprintf(out, n, "%s?geo=%s&url=%s&project=%s&date=%s&category=%s&mode=%s&limit=%d",
             source_name(id) ? source_name(id) : "?", p->geo, p->url, p->project, p->date,
             p->category, p->mode, p->limit);
}

/* ---- parsers ---- */

static int64_t parse_traffic(const char *s)
{
    /* "100+", "1,000,000+", "20K+", "2M+" */
    int64_t v = 0;
    bool any = false;
    for (; *s; s++) {
        if (isdigit((unsigned char)*s)) {
            if (v > INT64_MAX / 10 - 10) return -1;
            v = v * 10 + (*s - '0');
            any = true;
        } else if (*s == ',' || *s == ' ' || *s == '+') {
            continue;
        } else if ((*s == 'K' || *s == 'k') && any) {
            v *= 1000;
        } else if ((*s == 'M' || *s == 'm') && any) {
            v *= 1000000;
        } else {
            break;
        }
    }
    return any ? v : -1;
}

static int parse_feed(enum source_id id, const char *body, size_t len, const char *ct,
                      const struct source_params *p, struct topic_list *out, struct err *err)
{
    struct feeds_doc *doc = feeds_parse(body, len, ct, NULL, err);
    if (!doc) return err->code ? err->code : ERR_INVALID;
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, id);
    for (size_t i = 0; i < doc->n_items && !b.oom; i++) {
        const struct feeds_item *it = &doc->items[i];
        const char *title = it->title;
        unsigned flags = TEXT_ENTITIES | TEXT_ENTITIES_TWICE | TEXT_TAGS;
        if (!title[0]) title = it->summary; /* title-less items (e.g. Scripting News) */
        const char *url = it->link;
        if (id == SOURCE_GOOGLE && it->news_url[0]) url = it->news_url;
        int64_t traffic = it->traffic[0] ? parse_traffic(it->traffic) : -1;
        builder_add(&b, title, strlen(title), flags, url, traffic,
                    text_parse_date(it->published));
    }
    size_t n_items = doc->n_items;
    feeds_doc_free(doc);
    builder_done(&b);
    if (b.oom) {
        source_topics_clear(out);
        return err_set(err, ERR_NOMEM, "%s: out of memory building topics", source_name(id));
    }
    if (out->n == 0)
        return err_set(err, ERR_INVALID, "%s: the feed has %zu items and none with a title",
                       source_name(id), n_items);
    return 0;
}

static const char *jstr(const struct jv *v, const char *key)
{
    const char *s = jv_str(jv_get(v, key), NULL);
    return s ? s : "";
}

static int64_t jint(const struct jv *v, const char *key)
{
    int64_t x;
    double d;
    const struct jv *f = jv_get(v, key);
    if (jv_int(f, &x)) return x;
    if (jv_num(f, &d) && d >= 0 && d < 9e18) return (int64_t)d;
    return -1;
}

static struct jv *parse_json(enum source_id id, const char *body, size_t len, struct err *err)
{
    struct jv_limits lim = {.max_bytes = 16u << 20, .max_depth = 32};
    struct jv *root = jv_parse(body, len, &lim, err);
    if (!root) err_prefix(err, "%s", source_name(id));
    return root;
}

static int finish_json(struct builder *b, struct jv *root, enum source_id id, size_t n_in,
                       struct err *err)
{
    builder_done(b);
    jv_free(root);
    if (b->oom) {
        source_topics_clear(b->l);
        return err_set(err, ERR_NOMEM, "%s: out of memory building topics", source_name(id));
    }
    if (b->l->n == 0)
        return err_set(err, ERR_INVALID, "%s: the response has %zu entries and none usable",
                       source_name(id), n_in);
    return 0;
}

static int parse_hn_algolia(const char *body, size_t len, const struct source_params *p,
                            struct topic_list *out, struct err *err)
{
    struct jv *root = parse_json(SOURCE_HACKERNEWS, body, len, err);
    if (!root) return ERR_INVALID;
    const struct jv *hits = jv_get(root, "hits");
    if (jv_kind(hits) != JV_ARRAY) {
        jv_free(root);
        return err_set(err, ERR_INVALID, "hackernews: no 'hits' array in the Algolia response");
    }
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, SOURCE_HACKERNEWS);
    for (size_t i = 0; i < jv_len(hits) && !b.oom; i++) {
        const struct jv *h = jv_at(hits, i);
        size_t tl = 0;
        const char *t = jv_str(jv_get(h, "title"), &tl);
        if (!t) continue;
        const char *url = jstr(h, "url");
        char item[128];
        if (!url[0]) {
            snprintf(item, sizeof item, "https://news.ycombinator.com/item?id=%.40s",
                     jstr(h, "objectID"));
            url = all_chars(jstr(h, "objectID"), "", false, true) ? item : "";
        }
        int64_t pub = jint(h, "created_at_i");
        if (pub <= 0) pub = text_parse_date(jstr(h, "created_at"));
        builder_add(&b, t, tl, TEXT_ENTITIES, url, jint(h, "points"), pub);
    }
    return finish_json(&b, root, SOURCE_HACKERNEWS, jv_len(hits), err);
}

int source_parse_hn_item(const char *body, size_t len, struct topic_list *out, size_t limit,
                         struct err *err)
{
    struct jv *root = parse_json(SOURCE_HACKERNEWS, body, len, err);
    if (!root) return ERR_INVALID;
    int rc = 0;
    bool flag;
    const char *type = jstr(root, "type");
    size_t tl = 0;
    const char *title = jv_str(jv_get(root, "title"), &tl);
    if (jv_kind(root) != JV_OBJECT || (jv_bool(jv_get(root, "deleted"), &flag) && flag) ||
        (jv_bool(jv_get(root, "dead"), &flag) && flag) || !title ||
        !(strcmp(type, "story") == 0 || strcmp(type, "job") == 0 || strcmp(type, "poll") == 0)) {
        jv_free(root);
        return 0;
    }
    struct builder b;
    /* Append to an existing list: rebuild the dedupe keys of what is there. */
    struct topic_list tmp = {0};
    builder_init(&b, &tmp, limit, SOURCE_HACKERNEWS);
    const char *url = jstr(root, "url");
    char item[64];
    int64_t id = jint(root, "id");
    if (!url[0] && id > 0) {
        snprintf(item, sizeof item, "https://news.ycombinator.com/item?id=%lld", (long long)id);
        url = item;
    }
    int added = builder_add(&b, title, tl, TEXT_ENTITIES, url, jint(root, "score"),
                            jint(root, "time"));
    builder_done(&b);
    jv_free(root);
    if (added < 0) {
        source_topics_clear(&tmp);
        return err_set(err, ERR_NOMEM, "hackernews: out of memory");
    }
    if (added == 0) return 0;
    for (size_t i = 0; i < out->n; i++) {
        char *k1 = text_fold_key(out->v[i].title), *k2 = text_fold_key(tmp.v[0].title);
        bool same = k1 && k2 && strcmp(k1, k2) == 0;
        free(k1), free(k2);
        if (same) {
            source_topics_clear(&tmp);
            return 0;
        }
    }
    if (out->n >= limit) {
        source_topics_clear(&tmp);
        return 0;
    }
    struct topic *nv = realloc(out->v, (out->n + 1) * sizeof *nv);
    if (!nv) {
        source_topics_clear(&tmp);
        return err_set(err, ERR_NOMEM, "hackernews: out of memory");
    }
    out->v = nv;
    out->v[out->n++] = tmp.v[0];
    free(tmp.v);
    rc = 1;
    return rc;
}

static bool wiki_skip(const char *a)
{
    static const char *const ns[] = {
        "Special:", "File:",  "User:",   "User_talk:", "Template:", "Wikipedia:", "Portal:",
        "Help:",    "Category:", "Talk:", "Draft:",   "Module:",   "MediaWiki:", "Book:",
        "Spécial:", "Spezial:", "Datei:", "Benutzer:", "Vorlage:", "Fichier:", "Utilisateur:",
    };
    if (strcmp(a, "Main_Page") == 0 || strcmp(a, "-") == 0 || strcmp(a, "Hauptseite") == 0 ||
        strcmp(a, "Wikipedia:Hauptseite") == 0)
        return true;
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++)
        if (strncmp(a, ns[i], strlen(ns[i])) == 0) return true;
    return false;
}

static int parse_wikipedia(const char *body, size_t len, const struct source_params *p,
                           struct topic_list *out, struct err *err)
{
    struct jv *root = parse_json(SOURCE_WIKIPEDIA, body, len, err);
    if (!root) return ERR_INVALID;
    const struct jv *items = jv_get(root, "items");
    const struct jv *arts = jv_get(jv_at(items, 0), "articles");
    if (jv_kind(arts) != JV_ARRAY) {
        jv_free(root);
        return err_set(err, ERR_INVALID, "wikipedia: no items[0].articles array in the response");
    }
    const struct jv *it0 = jv_at(items, 0);
    char date[32];
    snprintf(date, sizeof date, "%.4s-%.2s-%.2s", jstr(it0, "year"), jstr(it0, "month"),
             jstr(it0, "day"));
    int64_t pub = text_parse_date(date);
    const char *project = jstr(it0, "project");
    if (!project[0] || !all_chars(project, ".-", true, true)) project = p->project;
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, SOURCE_WIKIPEDIA);
    for (size_t i = 0; i < jv_len(arts) && !b.oom; i++) {
        const struct jv *a = jv_at(arts, i);
        size_t al = 0;
        const char *art = jv_str(jv_get(a, "article"), &al);
        if (!art || al == 0 || al > 512 || wiki_skip(art)) continue;
        char title[600];
        snprintf(title, sizeof title, "%s", art);
        for (char *c = title; *c; c++)
            if (*c == '_') *c = ' ';
        char url[1200] = "";
        /* The article name is UTF-8 with '_' for spaces, as Wikipedia's own URLs. */
        bool url_ok = strchr(art, '?') == NULL && strchr(art, '#') == NULL;
        if (url_ok) snprintf(url, sizeof url, "https://%s.org/wiki/%s", project, art);
        builder_add(&b, title, strlen(title), 0, url, jint(a, "views"), pub);
    }
    return finish_json(&b, root, SOURCE_WIKIPEDIA, jv_len(arts), err);
}

/* Adds one YouTube mostPopular page's videos to b and copies the page's nextPageToken into
 * next ("" when there is none or it is not a plain token: letters, digits, '-', '_', under
 * `nn` bytes). *n_items gets the page's item count. ERR_INVALID without an items array. */
static int youtube_page(struct builder *b, const char *body, size_t len, char *next, size_t nn,
                        size_t *n_items, struct err *err)
{
    next[0] = 0;
    *n_items = 0;
    struct jv *root = parse_json(SOURCE_YOUTUBE, body, len, err);
    if (!root) return ERR_INVALID;
    const struct jv *items = jv_get(root, "items");
    if (jv_kind(items) != JV_ARRAY) {
        jv_free(root);
        return err_set(err, ERR_INVALID, "youtube: no 'items' array in the response");
    }
    *n_items = jv_len(items);
    for (size_t i = 0; i < jv_len(items) && !b->oom; i++) {
        const struct jv *v = jv_at(items, i);
        const struct jv *sn = jv_get(v, "snippet");
        size_t tl = 0;
        const char *t = jv_str(jv_get(sn, "title"), &tl);
        if (!t) continue;
        const char *id = jstr(v, "id");
        char url[128] = "";
        if (id[0] && strlen(id) < 64 && all_chars(id, "-_", true, true))
            snprintf(url, sizeof url, "https://www.youtube.com/watch?v=%s", id);
        int64_t views = -1;
        const char *vc = jstr(jv_get(v, "statistics"), "viewCount");
        if (vc[0] && all_chars(vc, "", false, true) && strlen(vc) < 18) views = atoll(vc);
        builder_add(b, t, tl, TEXT_ENTITIES, url, views, text_parse_date(jstr(sn, "publishedAt")));
    }
    const char *tok = jstr(root, "nextPageToken");
    if (tok[0] && strlen(tok) < nn && all_chars(tok, "-_", true, true))
        snprintf(next, nn, "%s", tok);
    jv_free(root);
    return 0;
}

static int parse_youtube(const char *body, size_t len, const struct source_params *p,
                         struct topic_list *out, struct err *err)
{
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, SOURCE_YOUTUBE);
    char next[YOUTUBE_TOKEN_MAX];
    size_t n_in = 0;
    int rc = youtube_page(&b, body, len, next, sizeof next, &n_in, err);
    if (rc < 0) {
        builder_done(&b);
        source_topics_clear(out);
        return rc;
    }
    return finish_json(&b, NULL, SOURCE_YOUTUBE, n_in, err);
}

static int parse_newsapi(const char *body, size_t len, const struct source_params *p,
                         struct topic_list *out, struct err *err)
{
    struct jv *root = parse_json(SOURCE_NEWSAPI, body, len, err);
    if (!root) return ERR_INVALID;
    const char *status = jstr(root, "status");
    if (strcmp(status, "ok") != 0) {
        char *m = text_clean(jstr(root, "message"), strlen(jstr(root, "message")), TEXT_TAGS, 200);
        err_set(err, ERR_UPSTREAM, "newsapi: error %.60s: %s", jstr(root, "code"), m ? m : "");
        free(m);
        jv_free(root);
        return ERR_UPSTREAM;
    }
    const struct jv *arts = jv_get(root, "articles");
    if (jv_kind(arts) != JV_ARRAY) {
        jv_free(root);
        return err_set(err, ERR_INVALID, "newsapi: no 'articles' array in the response");
    }
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, SOURCE_NEWSAPI);
    for (size_t i = 0; i < jv_len(arts) && !b.oom; i++) {
        const struct jv *a = jv_at(arts, i);
        size_t tl = 0;
        const char *t = jv_str(jv_get(a, "title"), &tl);
        if (!t || strcmp(t, "[Removed]") == 0) continue;
        /* NewsAPI titles end in " - <source name>": drop it, the topic is the headline. */
        const char *src = jstr(jv_get(a, "source"), "name");
        const char *dash = NULL;
        for (const char *d = strstr(t, " - "); d; d = strstr(d + 1, " - ")) dash = d;
        if (dash && src[0] && dash > t) {
            const char *suffix = dash + 3;
            /* "... - The New York Times" for source "New York Times": either contains the
             * other, compared case-insensitively. */
            if (strlen(suffix) <= 80 && (strcasestr(suffix, src) || strcasestr(src, suffix)))
                tl = (size_t)(dash - t);
        }
        builder_add(&b, t, tl, TEXT_ENTITIES, jstr(a, "url"), -1,
                    text_parse_date(jstr(a, "publishedAt")));
    }
    return finish_json(&b, root, SOURCE_NEWSAPI, jv_len(arts), err);
}

int source_parse(enum source_id id, const char *body, size_t len, const char *content_type,
                 const struct source_params *p_in, struct topic_list *out, struct err *err)
{
    out->v = NULL;
    out->n = 0;
    struct source_params p = *p_in;
    if (p.limit <= 0 || p.limit > SOURCE_LIMIT_MAX) p.limit = SOURCE_LIMIT_DEFAULT;
    switch (id) {
    case SOURCE_GOOGLE:
    case SOURCE_RSS: return parse_feed(id, body, len, content_type, &p, out, err);
    case SOURCE_HACKERNEWS: return parse_hn_algolia(body, len, &p, out, err);
    case SOURCE_WIKIPEDIA: return parse_wikipedia(body, len, &p, out, err);
    case SOURCE_YOUTUBE: return parse_youtube(body, len, &p, out, err);
    case SOURCE_NEWSAPI: return parse_newsapi(body, len, &p, out, err);
    default: return err_set(err, ERR_INVALID, "unknown source id %d", (int)id);
    }
}

/* ---- fetching ---- */

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* Base URL without a trailing '/'. */
static void base_url(const char *env, const char *def, char *out, size_t n)
{
    snprintf(out, n, "%s", env_or(env, def));
    size_t l = strlen(out);
    while (l > 0 && out[l - 1] == '/') out[--l] = 0;
}

/* Percent-encodes a query value. */
static void qenc(const char *s, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = 0;
}

/* A short, safe description of an error body: a JSON message, an HTML title, or nothing. */
static void error_detail(const char *body, size_t len, char *out, size_t n)
{
    out[0] = 0;
    if (!body || len == 0) return;
    struct err e = {0};
    struct jv_limits lim = {.max_bytes = 1u << 20, .max_depth = 16};
    struct jv *root = jv_parse(body, len, &lim, &e);
    if (root) {
        const struct jv *ej = jv_get(root, "error");
        const char *reason = jstr(jv_at(jv_get(ej, "errors"), 0), "reason");
        const char *msg = jstr(ej, "message");
        if (!msg[0]) msg = jstr(root, "message");
        if (!msg[0]) msg = jstr(root, "detail");
        if (!msg[0]) msg = jstr(root, "title");
        const char *code = reason[0] ? reason : jstr(root, "code");
        char *m = text_clean(msg, strlen(msg), TEXT_ENTITIES | TEXT_TAGS, 160);
        char *c = text_clean(code, strlen(code), 0, 40);
        snprintf(out, n, "%s%s%s", c && c[0] ? c : "", c && c[0] && m && m[0] ? ": " : "",
                 m ? m : "");
        free(m);
        free(c);
        jv_free(root);
        return;
    }
    const char *t = memmem(body, len, "<title>", 7);
    if (t) {
        t += 7;
        const char *e2 = memmem(t, len - (size_t)(t - body), "</title>", 8);
        if (e2) {
            char *m = text_clean(t, (size_t)(e2 - t), TEXT_ENTITIES, 120);
            snprintf(out, n, "%s", m ? m : "");
            free(m);
        }
    }
}

/* Seconds until the next midnight in US Pacific time (YouTube quota reset), taken as UTC-8. */
static long seconds_to_pacific_midnight(void)
{
    time_t now = time(NULL);
    long pst = (long)((now - 8 * 3600) % 86400);
    return 86400 - pst;
}

/* One GET; maps transport failures and HTTP errors to err. Returns 0 on 2xx or 304. */
static int get(struct fetcher *f, enum source_id id, const char *url, struct source_meta *meta,
               bool conditional, const char *accept, struct fetch_resp *resp, struct err *err)
{
    struct fetch_req req = {.url = url, .accept = accept};
    if (conditional && meta->etag[0]) req.etag = meta->etag;
    if (conditional && meta->last_modified[0]) req.last_modified = meta->last_modified;
    int rc = fetch_sync(f, &req, resp, err);
    if (rc < 0) {
        char red[300];
        fetch_redact_url(url, red, sizeof red);
        /* Keep the host only: the path is noise, the query may hold a key. */
        char *q = strchr(red, '?');
        if (q) *q = 0;
        return err_prefix(err, "%s: %s", source_name(id), red);
    }
    meta->http_status = resp->status;
    meta->retry_after_s = resp->retry_after_s;
    if (resp->status == 304) {
        meta->not_modified = true;
        return 0;
    }
    if (resp->status >= 200 && resp->status < 300) {
        if (conditional) {
            snprintf(meta->etag, sizeof meta->etag, "%s", resp->etag ? resp->etag : "");
            snprintf(meta->last_modified, sizeof meta->last_modified, "%s",
                     resp->last_modified ? resp->last_modified : "");
        }
        return 0;
    }
    char detail[240];
    error_detail(resp->body, resp->len, detail, sizeof detail);
    if (id == SOURCE_YOUTUBE && strstr(detail, "quotaExceeded")) {
        long s = seconds_to_pacific_midnight();
        if (meta->retry_after_s < s) meta->retry_after_s = s;
    }
    char ra[48] = "";
    if (meta->retry_after_s >= 0)
        snprintf(ra, sizeof ra, " (retry after %ld s)", meta->retry_after_s);
    long st = resp->status;
    fetch_resp_clear(resp);
    return err_set(err, st == 429 ? ERR_BUSY : ERR_UPSTREAM, "%s: HTTP %ld%s%s%s",
                   source_name(id), st, detail[0] ? " " : "", detail, ra);
}

static int fetch_single(struct fetcher *f, enum source_id id, const char *url,
                        const struct source_params *p, struct source_meta *meta, bool conditional,
                        const char *accept, struct topic_list *out, struct err *err)
{
    struct fetch_resp resp;
    int rc = get(f, id, url, meta, conditional, accept, &resp, err);
    if (rc < 0) return rc;
    if (meta->not_modified) {
        fetch_resp_clear(&resp);
        return 0;
    }
    rc = source_parse(id, resp.body, resp.len, resp.content_type, p, out, err);
    fetch_resp_clear(&resp);
    return rc;
}

/* Providers sometimes echo the request in their error text: never let the key through. */
static int scrub_key(int rc, const char *key, struct err *err)
{
    if (rc >= 0 || !err || !key || strlen(key) < 4) return rc;
    char *hit;
    while ((hit = strstr(err->msg, key)) != NULL) {
        size_t kl = strlen(key);
        memmove(hit + 3, hit + kl, strlen(hit + kl) + 1);
        memcpy(hit, "***", 3);
    }
    return rc;
}

/* YouTube mostPopular, following nextPageToken (same maxResults on every page) until the
 * limit is met, a page adds nothing, the token is missing or repeats, or YOUTUBE_MAX_PAGES.
 * A failing later page keeps the earlier pages' topics (the key scrubbed from the log). */
static int fetch_youtube(struct fetcher *f, const char *base, const char *region_enc,
                         const char *key, const char *key_enc, const struct source_params *p,
                         struct source_meta *meta, struct topic_list *out, struct err *err)
{
    int per_page = p->limit > YOUTUBE_PAGE_MAX ? YOUTUBE_PAGE_MAX : p->limit;
    struct builder b;
    builder_init(&b, out, (size_t)p->limit, SOURCE_YOUTUBE);
    char token[YOUTUBE_TOKEN_MAX] = "", url[2048];
    size_t n_in = 0;
    int rc = 0, pages = 0;
    while (pages < YOUTUBE_MAX_PAGES) {
        char tq[YOUTUBE_TOKEN_MAX + 16] = "";
        if (token[0]) snprintf(tq, sizeof tq, "&pageToken=%s", token);
        snprintf(url, sizeof url,
                 "%s/youtube/v3/videos?part=snippet,player&chart=mostPopular&regionCode=%s"
                 "&maxResults=%d%s&key=%s",
                 base, region_enc, per_page, tq, key_enc);
        struct fetch_resp resp;
        rc = get(f, SOURCE_YOUTUBE, url, meta, false, "application/json", &resp, err);
        if (rc < 0) break;
        char next[YOUTUBE_TOKEN_MAX];
        size_t n_page = 0, before = b.l->n;
        rc = youtube_page(&b, resp.body, resp.len, next, sizeof next, &n_page, err);
        fetch_resp_clear(&resp);
        if (rc < 0) break;
        pages++;
        n_in += n_page;
        if (b.oom || b.l->n >= b.limit || !next[0] || strcmp(next, token) == 0 ||
            b.l->n == before)
            break;
        snprintf(token, sizeof token, "%s", next);
    }
    if (rc < 0 && pages > 0 && b.l->n > 0 && !b.oom) {
        scrub_key(rc, key, err);
        log_warn("sources", "youtube: page %d failed, keeping the %zu topics of the pages before: %s",
                 pages + 1, b.l->n, err->msg);
        meta->http_status = 200;
        meta->retry_after_s = -1;
        rc = 0;
    }
    if (rc < 0) {
        builder_done(&b);
        source_topics_clear(out);
        return rc;
    }
    log_debug("sources", "youtube: %zu topics from %d page(s)", b.l->n, pages);
    return finish_json(&b, NULL, SOURCE_YOUTUBE, n_in, err);
}

/* ---- Hacker News Firebase: top ids, then the items in parallel ---- */

struct hn_batch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    struct fetch_resp **resps; /* by rank */
};

struct hn_slot {
    struct hn_batch *b;
    size_t i;
};

static void hn_done(void *ud, struct fetch_resp *r)
{
    struct hn_slot *s = ud;
    struct hn_batch *b = s->b;
    pthread_mutex_lock(&b->mu);
    b->resps[s->i] = r;
    b->pending--;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

static int fetch_hn_firebase(struct fetcher *f, const char *base, const struct source_params *p,
                             struct source_meta *meta, struct topic_list *out, struct err *err)
{
    char url[1200];
    snprintf(url, sizeof url, "%s/v0/topstories.json", base);
    struct fetch_resp resp;
    int rc = get(f, SOURCE_HACKERNEWS, url, meta, false, "application/json", &resp, err);
    if (rc < 0) return rc;
    struct jv *ids = parse_json(SOURCE_HACKERNEWS, resp.body, resp.len, err);
    fetch_resp_clear(&resp);
    if (!ids) return ERR_INVALID;
    if (jv_kind(ids) != JV_ARRAY) {
        jv_free(ids);
        return err_set(err, ERR_INVALID, "hackernews: topstories is not an array of ids");
    }
    /* Ask for a few more than wanted: some items are dead, deleted or comments. */
    size_t want = (size_t)p->limit + (size_t)p->limit / 2 + 2;
    size_t n = jv_len(ids) < want ? jv_len(ids) : want;
    struct hn_batch b = {.pending = 0};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.resps = calloc(n ? n : 1, sizeof *b.resps);
    struct hn_slot *slots = calloc(n ? n : 1, sizeof *slots);
    if (!b.resps || !slots) {
        free(b.resps), free(slots), jv_free(ids);
        return err_set(err, ERR_NOMEM, "hackernews: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        int64_t id;
        if (!jv_int(jv_at(ids, i), &id) || id <= 0) continue;
        snprintf(url, sizeof url, "%s/v0/item/%lld.json", base, (long long)id);
        slots[i] = (struct hn_slot){.b = &b, .i = i};
        struct fetch_req req = {.url = url, .accept = "application/json"};
        pthread_mutex_lock(&b.mu);
        b.pending++;
        pthread_mutex_unlock(&b.mu);
        if (fetch_start(f, &req, hn_done, &slots[i], NULL) < 0) {
            pthread_mutex_lock(&b.mu);
            b.pending--;
            pthread_mutex_unlock(&b.mu);
        }
    }
    jv_free(ids);
    pthread_mutex_lock(&b.mu);
    while (b.pending > 0) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    out->v = NULL;
    out->n = 0;
    size_t failed = 0;
    char first_err[200] = "";
    for (size_t i = 0; i < n; i++) {
        struct fetch_resp *r = b.resps[i];
        if (!r) continue;
        if (r->code == 0 && r->status == 200) {
            struct err e = {0};
            if (source_parse_hn_item(r->body, r->len, out, (size_t)p->limit, &e) < 0) {
                failed++;
                if (!first_err[0]) snprintf(first_err, sizeof first_err, "%.190s", e.msg);
            }
        } else {
            failed++;
            if (!first_err[0]) {
                if (r->code) snprintf(first_err, sizeof first_err, "%.190s", r->msg);
                else snprintf(first_err, sizeof first_err, "HTTP %ld", r->status);
            }
        }
        fetch_resp_free(r);
    }
    free(b.resps);
    free(slots);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    if (out->n == 0)
        return err_set(err, ERR_UPSTREAM,
                       "hackernews: none of the %zu top items could be used (%zu failed%s%s)", n,
                       failed, first_err[0] ? "; first: " : "", first_err);
    return 0;
}

/* ---- entry point ---- */

static void yesterday(char *out, size_t n, int days_back)
{
    time_t t = time(NULL) - (time_t)86400 * days_back;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

static void day_before(const char *date, char *out, size_t n)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int y = 0, m = 0, d = 0;
    sscanf(date, "%d-%d-%d", &y, &m, &d);
    tm.tm_year = y - 1900, tm.tm_mon = m - 1, tm.tm_mday = d, tm.tm_hour = 12;
    time_t t = timegm(&tm) - 86400;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d", &tm);
}

int source_fetch(struct fetcher *f, enum source_id id, const struct source_params *p_in,
                 struct source_meta *meta, struct topic_list *out, struct err *err)
{
    out->v = NULL;
    out->n = 0;
    struct source_params p = *p_in;
    int rc = source_params_check(id, &p, err);
    if (rc < 0) return rc;
    meta->not_modified = false;
    meta->http_status = 0;
    meta->retry_after_s = -1;
    char base[512], url[2048], a[256], b2[256];
    switch (id) {
    case SOURCE_GOOGLE:
        base_url("TRENDSTORY_GOOGLE_TRENDS_URL", "https://trends.google.com", base, sizeof base);
        qenc(p.geo, a, sizeof a);
        snprintf(url, sizeof url, "%s/trending/rss?geo=%s", base, a);
        return fetch_single(f, id, url, &p, meta, true,
                            "application/rss+xml, application/xml;q=0.9", out, err);
    case SOURCE_RSS:
        return fetch_single(f, id, p.url, &p, meta, true,
                            "application/rss+xml, application/atom+xml, application/xml;q=0.9, "
                            "text/xml;q=0.8",
                            out, err);
    case SOURCE_HACKERNEWS:
        if (strcmp(p.mode, "firebase") == 0) {
            base_url("TRENDSTORY_HN_URL", "https://hacker-news.firebaseio.com", base, sizeof base);
            return fetch_hn_firebase(f, base, &p, meta, out, err);
        }
        base_url("TRENDSTORY_HN_URL", "https://hn.algolia.com", base, sizeof base);
        snprintf(url, sizeof url, "%s/api/v1/search?tags=front_page&hitsPerPage=%d", base,
                 p.limit < 30 ? 30 : p.limit);
        return fetch_single(f, id, url, &p, meta, false, "application/json", out, err);
    case SOURCE_WIKIPEDIA: {
        base_url("TRENDSTORY_WIKIMEDIA_URL", "https://wikimedia.org", base, sizeof base);
        char day[16];
        if (p.date[0]) snprintf(day, sizeof day, "%s", p.date);
        else yesterday(day, sizeof day, 1);
        /* The day's ranking is published some hours after it ends: on 404, one day back. */
        for (int attempt = 0; attempt < 2; attempt++) {
            snprintf(url, sizeof url,
                     "%s/api/rest_v1/metrics/pageviews/top/%s/all-access/%.4s/%.2s/%.2s", base,
                     p.project, day, day + 5, day + 8);
            rc = fetch_single(f, id, url, &p, meta, false, "application/json", out, err);
            if (rc == 0 || meta->http_status != 404 || attempt == 1) return rc;
            log_debug("sources", "wikipedia: no ranking for %s yet, trying the day before", day);
            char prev[16];
            day_before(day, prev, sizeof prev);
            snprintf(day, sizeof day, "%s", prev);
        }
        return rc;
    }
    case SOURCE_YOUTUBE: {
        const char *key = getenv("TRENDSTORY_YOUTUBE_API_KEY");
        if (!key || !*key)
            return err_set(err, ERR_INVALID,
                           "youtube: no API key; set TRENDSTORY_YOUTUBE_API_KEY to use this "
                           "source");
        base_url("TRENDSTORY_YOUTUBE_URL", "https://www.googleapis.com", base, sizeof base);
        qenc(p.geo, a, sizeof a);
        qenc(key, b2, sizeof b2);
        return scrub_key(fetch_youtube(f, base, a, key, b2, &p, meta, out, err), key, err);
    }
    case SOURCE_NEWSAPI: {
        const char *key = getenv("TRENDSTORY_NEWSAPI_KEY");
        if (!key || !*key)
            return err_set(err, ERR_INVALID,
                           "newsapi: no API key; set TRENDSTORY_NEWSAPI_KEY to use this source");
        base_url("TRENDSTORY_NEWSAPI_URL", "https://newsapi.org", base, sizeof base);
        char country[16];
        snprintf(country, sizeof country, "%s", p.geo);
        for (char *c = country; *c; c++) *c = (char)tolower((unsigned char)*c);
        qenc(key, b2, sizeof b2);
        char cat[64] = "";
        if (p.category[0]) snprintf(cat, sizeof cat, "&category=%s", p.category);
        snprintf(url, sizeof url, "%s/v2/top-headlines?country=%s%s&pageSize=%d&apiKey=%s", base,
                 country, cat, p.limit, b2);
        return scrub_key(fetch_single(f, id, url, &p, meta, false, "application/json", out, err), key, err);
    }
    default: return err_set(err, ERR_INVALID, "unknown source id %d", (int)id);
    }
}
