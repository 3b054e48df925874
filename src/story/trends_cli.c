/* `trendstory trends`: one fetch of one source, printed. Handy for users checking a feed and
 * for debugging a source against the real service or a fixture server. */
#include "story/trends_cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/cli.h"
#include "serve/json.h"
#include "story/fetch.h"
#include "story/sources.h"

static void print_json(const struct topic_list *l)
{
    struct jw w;
    jw_init(&w, 4u << 20);
    jw_arr_begin(&w);
    for (size_t i = 0; i < l->n; i++) {
        const struct topic *t = &l->v[i];
        jw_obj_begin(&w);
        jw_key(&w, "title");
        jw_str(&w, t->title);
        jw_key(&w, "url");
        jw_str(&w, t->url);
        jw_key(&w, "traffic");
        if (t->traffic >= 0) jw_int(&w, t->traffic);
        else jw_null(&w);
        jw_key(&w, "published");
        if (t->published > 0) jw_int(&w, t->published);
        else jw_null(&w);
        jw_key(&w, "source");
        jw_str(&w, t->source);
        jw_obj_end(&w);
    }
    jw_arr_end(&w);
    if (!w.overflow) printf("%.*s\n", (int)w.len, w.buf);
    jw_free(&w);
}

static bool copy_opt(const char *v, char *dst, size_t n, const char *name)
{
    if (strlen(v) >= n) {
        fprintf(stderr, "trends: %s is longer than %zu characters\n", name, n - 1);
        return false;
    }
    snprintf(dst, n, "%s", v);
    return true;
}

int trends_cli_main(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(TRENDS_USAGE, stdout);
        return 0;
    }
    struct source_params p;
    memset(&p, 0, sizeof p);
    const char *source = NULL, *s = NULL;
    long limit = 0, timeout_ms = 15000;
    bool bad = false, json = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_opt_str(argc, argv, &i, "--source", &source, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--limit", 1, SOURCE_LIMIT_MAX, &limit, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--timeout-ms", 100, 600000, &timeout_ms, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--geo", &s, &bad)) {
            bad = bad || !copy_opt(s, p.geo, sizeof p.geo, "--geo");
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--url", &s, &bad)) {
            bad = bad || !copy_opt(s, p.url, sizeof p.url, "--url");
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--mode", &s, &bad)) {
            bad = bad || !copy_opt(s, p.mode, sizeof p.mode, "--mode");
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--project", &s, &bad)) {
            bad = bad || !copy_opt(s, p.project, sizeof p.project, "--project");
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--date", &s, &bad)) {
            bad = bad || !copy_opt(s, p.date, sizeof p.date, "--date");
            continue;
        }
        if (cli_opt_str(argc, argv, &i, "--category", &s, &bad)) {
            bad = bad || !copy_opt(s, p.category, sizeof p.category, "--category");
            continue;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
            continue;
        }
        fprintf(stderr, "trends: unknown argument '%s' (see trends --help)\n", argv[i]);
        bad = true;
    }
    if (bad) return 2;
    int id = source_lookup(source);
    if (id < 0) {
        fprintf(stderr, "trends: --source must be one of google, hackernews, wikipedia, rss, "
                        "youtube, newsapi\n");
        return 2;
    }
    p.limit = (int)limit;
    struct err e = {0};
    if (source_params_check((enum source_id)id, &p, &e) < 0) {
        fprintf(stderr, "trends: %s\n", e.msg);
        return 2;
    }
    struct fetch_cfg fc = {.timeout_ms = timeout_ms};
    struct fetcher *f = fetch_new(&fc, &e);
    if (!f) {
        fprintf(stderr, "trends: %s\n", e.msg);
        return 1;
    }
    struct source_meta meta;
    source_meta_init(&meta);
    struct topic_list l;
    int rc = source_fetch(f, (enum source_id)id, &p, &meta, &l, &e);
    fetch_free(f);
    if (rc < 0) {
        fprintf(stderr, "trends: %s\n", e.msg);
        return 1;
    }
    if (json) {
        print_json(&l);
    } else {
        for (size_t i = 0; i < l.n; i++) {
            const struct topic *t = &l.v[i];
            char tr[32] = "-";
            if (t->traffic >= 0) snprintf(tr, sizeof tr, "%" PRId64, t->traffic);
            printf("%2zu. %10s  %s%s%s\n", i + 1, tr, t->title, t->url[0] ? "  " : "", t->url);
        }
    }
    source_topics_clear(&l);
    return 0;
}
