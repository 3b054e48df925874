/* trendstory serve: request validation now; trend sources, the model and the generation
 * scheduler plug into `struct story_service` and its readiness check when they exist. Until
 * then /v1/stories validates its body and answers 503 not_ready, and /readyz says what is
 * missing. */
#include "story/story_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "serve/service.h"

const char *const story_service_sources[] = {"google",  "hackernews", "wikipedia", "rss",
                                             "youtube", "newsapi",    NULL};
const char *const story_service_themes[] = {"comedy",  "tragedy", "sarcasm", "mystery",
                                            "romance", "sci-fi",  "default", NULL};

struct story_service {
    struct service *svc;
    const void *model; /* NULL until a model can be loaded */
};

static int fail(struct jv_invalid *inv, const char *field, const char *msg)
{
    snprintf(inv->field, sizeof inv->field, "%s", field);
    snprintf(inv->message, sizeof inv->message, "%s", msg);
    return -1;
}

int story_service_req_parse(const struct jv *root, struct story_service_req *out,
                            struct jv_invalid *inv)
{
    memset(out, 0, sizeof *out);
    if (jv_require_object(root, inv)) return -1;
    int source, theme;
    int64_t limit, max_tokens;
    const char *geo, *url;
    size_t geo_len, url_len;
    if (jv_field_enum(root, "source", false, story_service_sources, STORY_SERVICE_SRC_GOOGLE,
                      &source, NULL, inv) ||
        jv_field_enum(root, "theme", false, story_service_themes, STORY_SERVICE_THEME_DEFAULT,
                      &theme, NULL, inv) ||
        jv_field_int(root, "limit", false, 1, STORY_SERVICE_MAX_LIMIT, 5, &limit, NULL, inv) ||
        jv_field_str(root, "geo", false, STORY_SERVICE_MAX_GEO, "", &geo, &geo_len, NULL, inv) ||
        jv_field_str(root, "url", false, STORY_SERVICE_MAX_URL, "", &url, &url_len, NULL, inv) ||
        jv_field_int(root, "max_tokens", false, 1, STORY_SERVICE_MAX_TOKENS, 0, &max_tokens,
                     &out->has_max_tokens, inv) ||
        jv_field_num(root, "temperature", false, 0, 2, 0, &out->temperature, &out->has_temperature,
                     inv) ||
        jv_field_num(root, "top_p", false, 0, 1, 0, &out->top_p, &out->has_top_p, inv) ||
        jv_field_int(root, "seed", false, INT64_MIN, INT64_MAX, 0, &out->seed, &out->has_seed,
                     inv) ||
        jv_field_bool(root, "stream", false, false, &out->stream, NULL, inv))
        return -1;
    out->source = (enum story_service_source)source;
    out->theme = (enum story_service_theme)theme;
    out->limit = (int)limit;
    out->max_tokens = (int)max_tokens;
    memcpy(out->geo, geo, geo_len);
    out->geo[geo_len] = '\0';
    memcpy(out->url, url, url_len);
    out->url[url_len] = '\0';
    for (size_t i = 0; i < geo_len; i++) {
        char c = geo[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-'))
            return fail(inv, "geo",
                        "geo must be a region code such as US or GB (letters and "
                        "'-', at most 8)");
    }
    if (url_len && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return fail(inv, "url", "url must start with http:// or https://");
    if (out->source == STORY_SERVICE_SRC_RSS && url_len == 0)
        return fail(inv, "url", "url is required when source is rss");
    return 0;
}

static bool model_ready(void *ctx, char *why, size_t n)
{
    struct story_service *ss = ctx;
    if (ss->model) return true;
    snprintf(why, n, "model: no language model loaded (trendstory serve cannot load one yet)");
    return false;
}

static void h_stories(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct story_service *ss = ctx;
    struct jv *root = service_parse_body(req, resp);
    if (!root) return;
    struct story_service_req *rq = malloc(sizeof *rq);
    if (!rq) {
        jv_free(root);
        http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    struct jv_invalid inv;
    if (story_service_req_parse(root, rq, &inv)) {
        service_invalid(resp, &inv);
    } else if (!ss->model) {
        service_not_ready(ss->svc, resp);
    } else { /* unreachable until models load */
        http_resp_error(resp, 500, "internal", "story generation is not implemented");
    }
    free(rq);
    jv_free(root);
}

int story_service_cmd(int argc, char **argv)
{
    struct service_cfg cfg = {.name = "trendstory", .port = STORY_SERVICE_DEFAULT_PORT};
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (service_parse_opt(&cfg, argc, argv, &i, &bad)) {
            if (bad) return 2;
            continue;
        }
        fprintf(stderr, "trendstory serve: unknown option '%s' (see trendstory serve --help)\n",
                argv[i]);
        return 2;
    }
    service_block_signals();
    struct err err = {0};
    struct story_service ss = {0};
    ss.svc = service_new(&cfg, &err);
    if (!ss.svc) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        return 1;
    }
    if (service_route(ss.svc, "POST", "/v1/stories", h_stories, &ss) ||
        service_add_check(ss.svc, model_ready, &ss)) {
        fprintf(stderr, "trendstory serve: out of memory\n");
        service_free(ss.svc);
        return 1;
    }
    if (service_start(ss.svc, &err)) {
        fprintf(stderr, "trendstory serve: %s\n", err.msg);
        service_free(ss.svc);
        return 1;
    }
    service_wait(ss.svc);
    service_free(ss.svc);
    return 0;
}
