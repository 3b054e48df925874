/** Trend sources behind one interface: request building from parameters and environment
 *  base URLs, and payload -> topics.
 *
 *  Source ids and parameters:
 *    google      Google Trends trending RSS           geo (default US)
 *    hackernews  Hacker News front page               mode algolia (default) | firebase
 *    wikipedia   Wikimedia pageviews top              project (en.wikipedia), date
 *                                                     (YYYY-MM-DD, default yesterday UTC;
 *                                                     a day not yet published falls back
 *                                                     one day)
 *    rss         any RSS 2.0 / RSS 1.0 / Atom URL     url (required, http/https)
 *    youtube     YouTube Data API mostPopular         geo = regionCode (US); needs
 *                                                     TRENDSTORY_YOUTUBE_API_KEY
 *    newsapi     NewsAPI top-headlines                geo = country (us), category;
 *                                                     needs TRENDSTORY_NEWSAPI_KEY
 *  Base URLs (scheme, host, port) come from TRENDSTORY_GOOGLE_TRENDS_URL,
 *  TRENDSTORY_HN_URL (both HN APIs), TRENDSTORY_WIKIMEDIA_URL, TRENDSTORY_YOUTUBE_URL,
 *  TRENDSTORY_NEWSAPI_URL; defaults are the real services. API keys are never logged and
 *  never appear in error messages.
 *
 *  Every topic title is cleaned by text_clean (entities, tags, controls, whitespace, UTF-8,
 *  capped at SOURCE_TITLE_MAX bytes) and deduplicated case-insensitively; a topic list never
 *  contains an invented entry: a source that yields nothing usable is an error. */
#ifndef STORY_SOURCES_H
#define STORY_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct fetcher;

#define SOURCE_TITLE_MAX 200
#define SOURCE_URL_MAX 2048
#define SOURCE_LIMIT_DEFAULT 20
#define SOURCE_LIMIT_MAX 100

enum source_id {
    SOURCE_GOOGLE = 0,
    SOURCE_HACKERNEWS,
    SOURCE_WIKIPEDIA,
    SOURCE_RSS,
    SOURCE_YOUTUBE,
    SOURCE_NEWSAPI,
    SOURCE_COUNT
};

struct topic {
    char *title;       /* cleaned, non-empty */
    char *url;         /* http(s) URL or "" */
    int64_t traffic;   /* searches / points / views; -1 if the source gives none */
    int64_t published; /* Unix seconds; 0 if unknown */
    const char *source; /* static source id ("google", ...) */
};

struct topic_list {
    struct topic *v;
    size_t n;
};

/** Parameters; fixed-size so they copy by value into cache keys. Empty = default. */
struct source_params {
    char geo[16];      /* google geo, youtube regionCode, newsapi country */
    char url[1024];    /* rss */
    char project[64];  /* wikipedia */
    char date[16];     /* wikipedia YYYY-MM-DD */
    char category[32]; /* newsapi */
    char mode[16];     /* hackernews */
    int limit;         /* topics wanted; 0 = SOURCE_LIMIT_DEFAULT; at most SOURCE_LIMIT_MAX */
};

/** Conditional-request validators in, response facts out. */
struct source_meta {
    char etag[256];          /* in: sent as If-None-Match when set; out: the new one */
    char last_modified[64];  /* in/out, If-Modified-Since */
    long http_status;        /* out: the last HTTP status (0 if none) */
    long retry_after_s;      /* out: the server's Retry-After, or a quota reset; -1 if none */
    bool not_modified;       /* out: 304, the caller's previous list is still current */
};

/** "google", ... for an id; NULL if out of range. */
const char *source_name(enum source_id id);
/** The id for a name, or -1. */
int source_lookup(const char *name);

/** Checks and normalizes parameters for a source (defaults filled, geo upper-cased, ...).
 *  ERR_INVALID naming the parameter on a bad value. */
int source_params_check(enum source_id id, struct source_params *p, struct err *err);

/** A stable cache key for (source, normalized parameters), e.g. "google?geo=GB&limit=20". */
void source_key(enum source_id id, const struct source_params *p, char *out, size_t n);

/** Fetches and parses one source through the fetcher (blocking; never call it from a fetch
 *  callback). Returns 0 with topics in *out (caller clears), or 0 with meta->not_modified
 *  and an empty list on 304; else a negative code + err ("google: HTTP 429 ...").
 *  meta may not be NULL; initialise it with source_meta_init. */
int source_fetch(struct fetcher *f, enum source_id id, const struct source_params *p,
                 struct source_meta *meta, struct topic_list *out, struct err *err);

/** Parses one payload of a single-document source (all but hackernews mode=firebase, whose
 *  item documents go through source_parse_hn_item). Used by source_fetch, tests and fuzzing.
 *  Returns 0 with at least one topic, else ERR_INVALID / ERR_UPSTREAM + err. */
int source_parse(enum source_id id, const char *body, size_t len, const char *content_type,
                 const struct source_params *p, struct topic_list *out, struct err *err);

/** Parses one Hacker News Firebase item; appends a topic for a live story, job or poll with
 *  a title (1), skips others (0: null, deleted, dead, comment, pollopt), or fails (< 0). */
int source_parse_hn_item(const char *body, size_t len, struct topic_list *out, size_t limit,
                         struct err *err);

void source_meta_init(struct source_meta *m);

/** Frees the topics and empties the list. */
void source_topics_clear(struct topic_list *l);
/** Deep copy; 0 or ERR_NOMEM. dst is overwritten (not cleared first). */
int source_topics_copy(struct topic_list *dst, const struct topic_list *src);

#endif
