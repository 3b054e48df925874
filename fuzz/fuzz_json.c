/* libFuzzer harness for JSON request parsing: jv_parse, a bounded walk of the DOM, and the
 * POST /recommend and POST /v1/stories validators. Besides the sanitizers it checks their
 * promises: a failure always names the problem; an accepted request is within every
 * documented range; a 400 body written for a failure is itself valid JSON. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "recsys/rec_service.h"
#include "serve/json.h"
#include "story/story_service.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const struct jv *v, int depth)
{
    if (!v || depth > 40) abort(); /* jv_parse bounds depth at 32 here */
    size_t len;
    double d;
    int64_t i;
    bool b;
    switch (jv_kind(v)) {
    case JV_STRING:
        if (!jv_str(v, &len)) abort();
        break;
    case JV_NUMBER:
        if (!jv_num(v, &d)) abort();
        (void)jv_int(v, &i);
        break;
    case JV_BOOL:
        if (!jv_bool(v, &b)) abort();
        break;
    case JV_ARRAY:
        for (size_t k = 0; k < jv_len(v); k++)
            walk(jv_at(v, k), depth + 1);
        if (jv_at(v, jv_len(v))) abort();
        break;
    case JV_OBJECT: {
        size_t n = 0;
        for (void *it = jv_obj_iter(v); it; it = jv_obj_next(v, it)) {
            const char *key = jv_obj_iter_key(it);
            if (!key || jv_get(v, key) == NULL) abort();
            walk(jv_obj_iter_val(it), depth + 1);
            n++;
        }
        if (n != jv_obj_len(v)) abort();
        break;
    }
    case JV_NULL:
        break;
    }
}

/* A 400 body must be valid JSON whatever the field name or message holds. */
static void check_invalid(const struct jv_invalid *inv)
{
    if (!inv->message[0]) abort();
    struct jw w;
    jw_init(&w, 4096);
    jv_invalid_write(inv, &w);
    if (w.overflow) abort();
    struct err e;
    struct jv *back = jv_parse(w.buf, w.len, NULL, &e);
    if (!back || jv_kind(back) != JV_OBJECT || !jv_get(back, "message")) abort();
    jv_free(back);
    jw_free(&w);
}

static void check_rec(const struct jv *root)
{
    static struct rec_service_req rq;
    struct jv_invalid inv = {{0}, {0}};
    if (rec_service_req_parse(root, &rq, &inv)) {
        check_invalid(&inv);
        return;
    }
    if (rq.k < 1 || rq.k > REC_SERVICE_MAX_K) abort();
    if (rq.user_id < -1 || rq.user_id > REC_SERVICE_MAX_ID) abort();
    if (rq.user_id < 0 && rq.n_history == 0) abort();
    if (rq.n_exclude > REC_SERVICE_MAX_IDS || rq.n_history > REC_SERVICE_MAX_IDS) abort();
    for (size_t i = 0; i < rq.n_exclude; i++)
        if (rq.exclude[i] < 0 || rq.exclude[i] > REC_SERVICE_MAX_ID) abort();
    for (size_t i = 0; i < rq.n_history; i++)
        if (rq.history[i] < 0 || rq.history[i] > REC_SERVICE_MAX_ID) abort();
}

static void check_story(const struct jv *root)
{
    static struct story_service_req rq;
    struct jv_invalid inv = {{0}, {0}};
    if (story_service_req_parse(root, &rq, &inv)) {
        check_invalid(&inv);
        return;
    }
    if ((int)rq.source < 0 || rq.source > STORY_SERVICE_SRC_NEWSAPI) abort();
    if ((int)rq.theme < 0 || rq.theme > STORY_SERVICE_THEME_DEFAULT) abort();
    if (rq.limit < 1 || rq.limit > STORY_SERVICE_MAX_LIMIT) abort();
    if (strlen(rq.geo) > STORY_SERVICE_MAX_GEO || strlen(rq.url) > STORY_SERVICE_MAX_URL) abort();
    if (rq.source == STORY_SERVICE_SRC_RSS && !rq.url[0]) abort();
    if (rq.has_max_tokens && (rq.max_tokens < 1 || rq.max_tokens > STORY_SERVICE_MAX_TOKENS))
        abort();
    if (rq.has_temperature && !(rq.temperature >= 0 && rq.temperature <= 2)) abort();
    if (rq.has_top_p && !(rq.top_p >= 0 && rq.top_p <= 1)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct err e = {0};
    struct jv_limits lim = {.max_bytes = 1 << 20, .max_depth = 32};
    struct jv *root = jv_parse((const char *)data, size, &lim, &e);
    if (!root) {
        if (!e.msg[0] || e.code == ERR_OK) abort(); /* a refusal always says why */
        return 0;
    }
    walk(root, 0);
    check_rec(root);
    check_story(root);
    jv_free(root);
    return 0;
}
