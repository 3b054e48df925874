/* nanorec export (see rec_export.h). */
#include "recsys/rec_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ann/ann.h"
#include "base/cli.h"
#include "base/pool.h"
#include "engine/gguf.h"
#include "engine/quantize.h"
#include "recsys/dataset.h"
#include "recsys/encoder.h"
#include "recsys/ranker.h"

static int copy_file(const char *from, const char *to, struct err *err)
{
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", to);
    FILE *in = fopen(from, "rb");
    if (!in)
        return err_set(err, ERR_IO, "cannot read %s", from);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return err_set(err, ERR_IO, "cannot write %s", tmp);
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) {
            rc = err_set(err, ERR_IO, "short write to %s", tmp);
            break;
        }
    if (ferror(in))
        rc = err_set(err, ERR_IO, "read error on %s", from);
    fclose(in);
    if (fclose(out) != 0 && !rc)
        rc = err_set(err, ERR_IO, "cannot finish %s", tmp);
    if (!rc && rename(tmp, to) != 0)
        rc = err_set(err, ERR_IO, "cannot rename %s to %s", tmp, to);
    if (rc)
        remove(tmp);
    return rc;
}

int rec_export(const struct rec_export_cfg *cfg, struct err *err)
{
    char path[1200];
    int rc = 0;
    struct rec_dataset *d = NULL;
    struct encoder *enc = NULL;
    struct ranker *rk = NULL;
    struct ranker_items rit = {0};
    struct ann_index *idx = NULL;
    struct pool *pool = NULL;
    float *table = NULL;
    struct gguf_writer *w = NULL;
    const char *kind_name = cfg->index_kind ? cfg->index_kind : "hnsw";
    int kind = ann_kind_parse(kind_name);
    if (kind < 0)
        return err_set(err, ERR_INVALID, "unknown index kind '%s'", kind_name);
    mkdir(cfg->out, 0755);
    d = rec_dataset_load(cfg->data, err);
    if (!d)
        goto fail;
    enc = encoder_load(cfg->encoder, NULL, err);
    if (!enc)
        goto fail;
    if ((uint32_t)enc->cfg.n_items != d->n_items) {
        rc = err_set(err, ERR_INVALID, "the encoder has %d items but the dataset %u: they come "
                                       "from different data", enc->cfg.n_items, d->n_items);
        goto done;
    }
    rk = ranker_load(cfg->ranker, &rit, err);
    if (!rk)
        goto fail;
    if (rk->cfg.dim != enc->cfg.dim || rit.n_items != d->n_items) {
        rc = err_set(err, ERR_INVALID, "the ranker (dim %d, %u items) does not match the encoder "
                                       "(dim %d, %u items)", rk->cfg.dim, rit.n_items,
                     enc->cfg.dim, d->n_items);
        goto done;
    }
    const int C = enc->cfg.dim;
    const size_t N = d->n_items;
    if (!cfg->quiet)
        printf("export: dataset %u users, %zu items; encoder dim %d, %d layers\n", d->n_users, N, C,
               enc->cfg.n_layers);
    snprintf(path, sizeof path, "%s/dataset.gguf", cfg->out);
    if ((rc = rec_dataset_save(d, path, err)))
        goto done;
    snprintf(path, sizeof path, "%s/encoder.gguf", cfg->out);
    if ((rc = copy_file(cfg->encoder, path, err)))
        goto done;
    snprintf(path, sizeof path, "%s/ranker.gguf", cfg->out);
    if ((rc = copy_file(cfg->ranker, path, err)))
        goto done;
    snprintf(path, sizeof path, "%s/encoder_q8.gguf", cfg->out);
    if ((rc = quant_file(cfg->encoder, path, QUANT_FTYPE_Q8_0, cfg->threads > 0 ? cfg->threads : 1,
                         err)))
        goto done;
    table = malloc((N + 1) * (size_t)C * sizeof(float));
    w = gguf_writer_new();
    if (!table || !w) {
        rc = err_set(err, ERR_NOMEM, "out of memory for the item table");
        goto done;
    }
    encoder_item_table(enc, table);
    uint64_t ne[2] = {(uint64_t)C, N + 1};
    snprintf(path, sizeof path, "%s/items.gguf", cfg->out);
    if ((rc = gguf_writer_set_str(w, "general.architecture", "nanorec.items")) ||
        (rc = gguf_writer_add_tensor(w, "item_table", GGML_TYPE_F32, 2, ne, table, true, err)) ||
        (rc = gguf_writer_write(w, path, err)))
        goto done;
    pool = pool_new(cfg->threads > 0 ? cfg->threads : 1);
    struct ann_cfg ac = {.kind = (enum ann_kind)kind, .metric = ANN_METRIC_IP, .seed = 42};
    if (kind == ANN_KIND_IVF_FLAT || kind == ANN_KIND_IVF_SQ8 || kind == ANN_KIND_IVF_PQ) {
        int nl = 1;
        while ((size_t)nl * nl * 4 < N && nl < 1024) /* about sqrt(N)/2 lists */
            nl *= 2;
        ac.nlist = nl;
    }
    idx = ann_build(&ac, table + C, N, C, pool, err);
    if (!idx)
        goto fail;
    snprintf(path, sizeof path, "%s/index.gguf", cfg->out);
    if ((rc = ann_save(idx, path, err)))
        goto done;
    if (!cfg->quiet)
        printf("export: wrote %s/{dataset,encoder,encoder_q8,items,index,ranker}.gguf "
               "(index %s)\n", cfg->out, kind_name);
    goto done;
fail:
    rc = err->code ? err->code : ERR_INVALID;
done:
    gguf_writer_free(w);
    free(table);
    ann_free(idx);
    pool_free(pool);
    ranker_free(rk);
    ranker_items_free(&rit);
    encoder_free(enc);
    rec_dataset_free(d);
    return rc;
}

int rec_export_cli(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(REC_EXPORT_USAGE, stdout);
        return 0;
    }
    struct rec_export_cfg cfg = {0};
    bool bad = false;
    long v;
    for (int i = 1; i < argc && !bad; i++) {
        if (cli_opt_str(argc, argv, &i, "--data", &cfg.data, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--encoder", &cfg.encoder, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--ranker", &cfg.ranker, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--out", &cfg.out, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--index", &cfg.index_kind, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--threads", 1, 256, &v, &bad)) {
            cfg.threads = (int)v;
            continue;
        }
        fprintf(stderr, "export: unknown argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    if (bad)
        return 2;
    if (!cfg.data || !cfg.encoder || !cfg.ranker || !cfg.out) {
        fprintf(stderr, "export: --data, --encoder, --ranker and --out are required\n");
        return 2;
    }
    struct err err = {0};
    if (rec_export(&cfg, &err)) {
        fprintf(stderr, "export: %s\n", err.msg);
        return 1;
    }
    return 0;
}
