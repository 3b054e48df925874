/* One prompt -> streamed text (see engine/generate.h). */
#include "engine/generate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/cli.h"
#include "engine/chat.h"
#include "engine/tokenizer.h"

#define GEN_MAX_PROMPT_BYTES (1 << 20)
#define GEN_MAX_CTX 4096

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Picks the chat family: the override, else the file's template, else none. */
static int chat_family_for(const struct llm *m, const char *name, struct err *err)
{
    if (name) {
        int f = chat_family_parse(name);
        if (f < 0)
            return err_set(err, ERR_INVALID,
                           "unknown template '%s' (zephyr, llama2, chatml, "
                           "none)",
                           name);
        return f;
    }
    const struct gguf_file *g = llm_gguf(m);
    struct gguf_str t;
    if (g && gguf_get_str(g, "tokenizer.chat_template", &t, NULL) == 0)
        return chat_detect(t.ptr, t.len);
    return CHAT_NONE;
}

int generate_tokenize_prompt(const struct llm *m, const struct generate_opts *o, int *ids, int cap,
                             int *family, struct err *err)
{
    const struct tok *t = llm_tokenizer(m);
    const char *p = o->prompt ? o->prompt : "";
    if (!t) return err_set(err, ERR_INVALID, "the model has no tokenizer");
    *family = CHAT_NONE;
    if (strlen(p) > GEN_MAX_PROMPT_BYTES)
        return err_set(err, ERR_INVALID, "prompt longer than %d bytes", GEN_MAX_PROMPT_BYTES);
    if (!o->chat) return tok_encode(t, p, strlen(p), true, false, ids, cap, err);
    int f = chat_family_for(m, o->template_name, err);
    if (f < 0) return f;
    *family = f;
    struct chat_msg msgs[2];
    int n = 0;
    if (o->system && *o->system) msgs[n++] = (struct chat_msg){"system", o->system};
    msgs[n++] = (struct chat_msg){"user", p};
    size_t need = chat_apply(f, msgs, n, true, NULL, 0);
    char *text = malloc(need + 1);
    if (!text) return err_set(err, ERR_NOMEM, "out of memory");
    chat_apply(f, msgs, n, true, text, need + 1);
    int rc = tok_encode(t, text, need, true, true, ids, cap, err);
    free(text);
    return rc;
}

static void emit(FILE *out, struct sampler_stop *stop, const char *s, size_t n)
{
    char buf[SAMPLER_STOP_LEN_MAX + TOK_STREAM_OUT_MAX];
    size_t k = sampler_stop_feed(stop, s, n, buf);
    if (k) {
        fwrite(buf, 1, k, out);
        fflush(out);
    }
}

int generate_run(const struct llm *m, const struct generate_opts *o, FILE *out,
                 struct generate_stats *st, struct err *err)
{
    memset(st, 0, sizeof *st);
    const struct tok *t = llm_tokenizer(m);
    if (!t) return err_set(err, ERR_INVALID, "the model has no tokenizer (give --tokenizer)");
    int n_ctx = llm_n_ctx_train(m) < GEN_MAX_CTX ? llm_n_ctx_train(m) : GEN_MAX_CTX;
    if (o->n_ctx > 0) n_ctx = o->n_ctx;
    int rc = 0, family = CHAT_NONE;
    struct llm_ctx *c = NULL;
    struct sampler *smp = NULL;
    int *ids = malloc((size_t)n_ctx * sizeof *ids);
    float *logits = malloc((size_t)llm_n_vocab(m) * sizeof *logits);
    int *pos = malloc((size_t)n_ctx * sizeof *pos), *seq = calloc((size_t)n_ctx, sizeof *seq);
    if (!ids || !logits || !pos || !seq) {
        rc = err_set(err, ERR_NOMEM, "out of memory");
        goto done;
    }
    int n = generate_tokenize_prompt(m, o, ids, n_ctx, &family, err);
    if (n < 0) {
        rc = n;
        if (rc == ERR_NOMEM) err_prefix(err, "prompt does not fit the context of %d", n_ctx);
        goto done;
    }
    if (n == 0) ids[n++] = llm_bos(m); /* a vocabulary without BOS still needs a first token */
    c = llm_ctx_new(m, 1, n_ctx, 0, err);
    if (!c) {
        rc = err->code;
        goto done;
    }
    smp = sampler_new(&o->sampling, llm_n_vocab(m), err);
    if (!smp) {
        rc = err->code;
        goto done;
    }
    struct sampler_stop stop;
    const char *stops[SAMPLER_STOP_MAX];
    int ns = 0;
    for (int i = 0; i < o->n_stop && ns < SAMPLER_STOP_MAX - 1; i++)
        stops[ns++] = o->stop[i];
    if (family != CHAT_NONE) stops[ns++] = chat_stop_string(family);
    if ((rc = sampler_stop_init(&stop, stops, ns, err))) goto done;

    struct tok_stream ts;
    tok_stream_init(&ts, t);
    char piece[TOK_STREAM_OUT_MAX];
    for (int i = 0; i < n; i++) {
        sampler_accept(smp, ids[i]);
        pos[i] = i;
        size_t k = tok_stream_push(&ts, ids[i], piece);
        if (o->echo_prompt && !o->chat && k > 0) { /* the prompt is not checked for stops */
            fwrite(piece, 1, k, out);
            fflush(out);
        }
    }
    if (!o->echo_prompt || o->chat) { /* start clean after the prompt */
        tok_stream_init(&ts, t);
        ts.prev = ids[n - 1];
    }
    st->n_prompt = n;
    double t0 = now_s();
    struct llm_batch b = {n, ids, pos, seq, NULL};
    if ((rc = llm_decode(c, &b, logits, err))) goto done;
    st->prompt_s = now_s() - t0;
    t0 = now_s();
    int cur = n;
    while (st->n_gen < o->n_predict && !stop.stopped) {
        int next = sampler_sample(smp, logits);
        if (next == llm_eos(m)) {
            st->hit_eos = true;
            break;
        }
        st->n_gen++;
        size_t k = tok_stream_push(&ts, next, piece);
        emit(out, &stop, piece, k);
        if (stop.stopped || st->n_gen >= o->n_predict) break;
        if (cur >= n_ctx) {
            st->hit_ctx = true;
            break;
        }
        b = (struct llm_batch){1, &next, &cur, seq, NULL};
        if ((rc = llm_decode(c, &b, logits, err))) goto done;
        cur++;
    }
    st->hit_stop = stop.stopped;
    size_t k = tok_stream_flush(&ts, piece);
    emit(out, &stop, piece, k);
    char tail[SAMPLER_STOP_LEN_MAX + SAMPLER_STOP_CHUNK_MAX];
    k = sampler_stop_flush(&stop, tail);
    fwrite(tail, 1, k, out);
    fflush(out);
    st->gen_s = now_s() - t0;
done:
    sampler_free(smp);
    llm_ctx_free(c);
    free(ids);
    free(logits);
    free(pos);
    free(seq);
    return rc;
}

int generate_cli(int argc, char **argv)
{
    const char *model = NULL, *tokp = NULL;
    struct generate_opts o = {
        .n_predict = 256, .echo_prompt = true, .sampling = sampler_default_params()};
    o.sampling.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    long n_threads = sysconf(_SC_NPROCESSORS_ONLN), lv;
    double dv;
    const char *stops[SAMPLER_STOP_MAX];
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(GENERATE_USAGE, stdout);
            return 0;
        } else if (cli_opt_str(argc, argv, &i, "-m", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--model", &model, &bad) ||
                   cli_opt_str(argc, argv, &i, "--tokenizer", &tokp, &bad) ||
                   cli_opt_str(argc, argv, &i, "-p", &o.prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "--prompt", &o.prompt, &bad) ||
                   cli_opt_str(argc, argv, &i, "--system", &o.system, &bad) ||
                   cli_opt_str(argc, argv, &i, "--template", &o.template_name, &bad)) {
        } else if (cli_opt_int(argc, argv, &i, "-n", 1, 1 << 20, &lv, &bad)) {
            o.n_predict = (int)lv;
        } else if (cli_opt_int(argc, argv, &i, "--ctx", 8, 1 << 20, &lv, &bad)) {
            o.n_ctx = (int)lv;
        } else if (cli_opt_int(argc, argv, &i, "--top-k", 0, 1 << 22, &lv, &bad)) {
            o.sampling.top_k = (int)lv;
        } else if (cli_opt_int(argc, argv, &i, "--seed", 0, LONG_MAX, &lv, &bad)) {
            o.sampling.seed = (uint64_t)lv;
        } else if (cli_opt_int(argc, argv, &i, "--threads", 1, 1024, &lv, &bad)) {
            n_threads = lv;
        } else if (cli_opt_int(argc, argv, &i, "--repeat-last-n", 0, 1 << 16, &lv, &bad)) {
            o.sampling.repeat_last_n = (int)lv;
        } else if (cli_opt_double(argc, argv, &i, "--temp", 0, 100, &dv, &bad)) {
            o.sampling.temp = (float)dv;
        } else if (cli_opt_double(argc, argv, &i, "--top-p", 1e-6, 1, &dv, &bad)) {
            o.sampling.top_p = (float)dv;
        } else if (cli_opt_double(argc, argv, &i, "--min-p", 0, 0.999, &dv, &bad)) {
            o.sampling.min_p = (float)dv;
        } else if (cli_opt_double(argc, argv, &i, "--repeat-penalty", 0.01, 100, &dv, &bad)) {
            o.sampling.repeat_penalty = (float)dv;
        } else if (!strcmp(a, "--chat")) {
            o.chat = true;
        } else if (!strcmp(a, "--stop")) {
            if (i + 1 >= argc || o.n_stop == SAMPLER_STOP_MAX - 1) {
                fprintf(stderr, "generate: --stop needs a value (at most %d)\n",
                        SAMPLER_STOP_MAX - 1);
                return 2;
            }
            stops[o.n_stop++] = argv[++i];
        } else {
            fprintf(stderr, "generate: unknown argument '%s'\n%s", a, GENERATE_USAGE);
            return 2;
        }
    }
    if (bad) return 2;
    if (!model) {
        fprintf(stderr, "generate: -m MODEL is required\n%s", GENERATE_USAGE);
        return 2;
    }
    o.stop = stops;
    struct err err = {0};
    struct llm_opts lo = {.n_threads = (int)n_threads, .tokenizer_path = tokp};
    struct llm *m = llm_load(model, &lo, &err);
    if (!m) {
        fprintf(stderr, "generate: %s\n", err.msg);
        return 1;
    }
    if (!llm_tokenizer(m)) {
        fprintf(stderr, "generate: %s has no tokenizer: give --tokenizer tokenizer.bin\n", model);
        llm_free(m);
        return 1;
    }
    struct generate_stats st;
    int rc = generate_run(m, &o, stdout, &st, &err);
    fputc('\n', stdout);
    fflush(stdout);
    if (rc) {
        fprintf(stderr, "generate: %s\n", err.msg);
    } else {
        fprintf(stderr,
                "prompt: %d tokens in %.3f s (%.1f tok/s); generation: %d tokens in "
                "%.3f s (%.1f tok/s)%s\n",
                st.n_prompt, st.prompt_s, st.prompt_s > 0 ? st.n_prompt / st.prompt_s : 0.0,
                st.n_gen, st.gen_s, st.gen_s > 0 ? st.n_gen / st.gen_s : 0.0,
                st.hit_eos    ? " [eos]"
                : st.hit_stop ? " [stop]"
                : st.hit_ctx  ? " [context full]"
                              : "");
    }
    llm_free(m);
    return rc ? 1 : 0;
}
