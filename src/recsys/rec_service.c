/* nanorec serve: request validation now; the model path (encoder, index, ranker) plugs into
 * `struct rec_service` and the readiness check when it exists. Until then /recommend
 * validates its body and answers 503 not_ready, and /readyz says what is missing. */
#include "recsys/rec_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cli.h"
#include "base/log.h"
#include "serve/service.h"

struct rec_service {
    struct service *svc;
    const void *model; /* NULL until a model can be loaded */
};

int rec_service_req_parse(const struct jv *root, struct rec_service_req *out,
                          struct jv_invalid *inv)
{
    memset(out, 0, sizeof *out);
    if (jv_require_object(root, inv)) return -1;
    int64_t k;
    bool has_user;
    if (jv_field_int_array(root, "history", false, REC_SERVICE_MAX_IDS, 0, REC_SERVICE_MAX_ID,
                           out->history, &out->n_history, NULL, inv) ||
        jv_field_int(root, "user_id", false, 0, REC_SERVICE_MAX_ID, -1, &out->user_id, &has_user,
                     inv) ||
        jv_field_int(root, "k", false, 1, REC_SERVICE_MAX_K, 10, &k, NULL, inv) ||
        jv_field_bool(root, "explain", false, false, &out->explain, NULL, inv) ||
        jv_field_bool(root, "include_history", false, false, &out->include_history, NULL, inv) ||
        jv_field_int_array(root, "exclude", false, REC_SERVICE_MAX_IDS, 0, REC_SERVICE_MAX_ID,
                           out->exclude, &out->n_exclude, NULL, inv))
        return -1;
    out->k = (int)k;
    if (!has_user && out->n_history == 0) {
        snprintf(inv->field, sizeof inv->field, "user_id");
        snprintf(inv->message, sizeof inv->message,
                 "user_id is required unless a non-empty history is given");
        return -1;
    }
    return 0;
}

static bool model_ready(void *ctx, char *why, size_t n)
{
    struct rec_service *rs = ctx;
    if (rs->model) return true;
    snprintf(why, n, "model: no recommender model loaded (nanorec serve cannot load one yet)");
    return false;
}

static void h_recommend(const struct http_req *req, struct http_resp *resp, void *ctx)
{
    struct rec_service *rs = ctx;
    struct jv *root = service_parse_body(req, resp);
    if (!root) return;
    struct rec_service_req *rq = malloc(sizeof *rq);
    if (!rq) {
        jv_free(root);
        http_resp_error(resp, 500, "internal", "out of memory");
        return;
    }
    struct jv_invalid inv;
    if (rec_service_req_parse(root, rq, &inv)) {
        service_invalid(resp, &inv);
    } else if (!rs->model) {
        service_not_ready(rs->svc, resp);
    } else { /* unreachable until models load */
        http_resp_error(resp, 500, "internal", "recommendation is not implemented");
    }
    free(rq);
    jv_free(root);
}

int rec_service_cmd(int argc, char **argv)
{
    struct service_cfg cfg = {.name = "nanorec", .port = REC_SERVICE_DEFAULT_PORT};
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (service_parse_opt(&cfg, argc, argv, &i, &bad)) {
            if (bad) return 2;
            continue;
        }
        fprintf(stderr, "nanorec serve: unknown option '%s' (see nanorec serve --help)\n", argv[i]);
        return 2;
    }
    service_block_signals();
    struct err err = {0};
    struct rec_service rs = {0};
    rs.svc = service_new(&cfg, &err);
    if (!rs.svc) {
        fprintf(stderr, "nanorec serve: %s\n", err.msg);
        return 1;
    }
    if (service_route(rs.svc, "POST", "/recommend", h_recommend, &rs) ||
        service_add_check(rs.svc, model_ready, &rs)) {
        fprintf(stderr, "nanorec serve: out of memory\n");
        service_free(rs.svc);
        return 1;
    }
    if (service_start(rs.svc, &err)) {
        fprintf(stderr, "nanorec serve: %s\n", err.msg);
        service_free(rs.svc);
        return 1;
    }
    service_wait(rs.svc);
    service_free(rs.svc);
    return 0;
}
