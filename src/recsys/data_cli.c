/* `nanorec data prepare`: MovieLens folder -> OUT/dataset.gguf, with a summary of what was kept
 * and rejected. */
#include "recsys/data_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/cli.h"
#include "base/err.h"
#include "recsys/dataset.h"
#include "recsys/movielens.h"

/* mkdir -p for the output folder (one level of missing parents is the common case, but any
 * depth works). */
static int make_dirs(const char *path, struct err *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return err_set(err, ERR_INVALID, "bad output folder '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return err_set(err, ERR_IO, "cannot create %s: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(err, ERR_IO, "%s is not a folder", path);
    return 0;
}

int data_cli_prepare(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    struct movielens_cfg cfg = {.progress = true, .log_reports = true};
    bool bad = false, quiet = false;
    long v;
    for (int i = 1; i < argc; i++) {
        if (cli_opt_str(argc, argv, &i, "--movielens", &in, &bad)) continue;
        if (cli_opt_str(argc, argv, &i, "--out", &out, &bad)) continue;
        if (cli_opt_int(argc, argv, &i, "--min-user", 0, 1000000, &v, &bad)) {
            cfg.min_user = (uint32_t)v;
            continue;
        }
        if (cli_opt_int(argc, argv, &i, "--min-item", 0, 1000000, &v, &bad)) {
            cfg.min_item = (uint32_t)v;
            continue;
        }
        if (bad) return 2;
        if (strcmp(argv[i], "--strict") == 0) {
            cfg.strict = true;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else {
            fprintf(stderr, "data prepare: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (bad) return 2;
    if (!in || !out) {
        fprintf(stderr, "data prepare: --movielens DIR and --out DIR are required (see --help)\n");
        return 2;
    }
    if (quiet) cfg.progress = cfg.log_reports = false;

    struct err err = {0};
    struct movielens_report rep;
    struct rec_dataset *d = movielens_load(in, &cfg, &rep, &err);
    if (!d) {
        fprintf(stderr, "data prepare: %s\n", err.msg);
        return 1;
    }
    char path[4200];
    int rc = make_dirs(out, &err);
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/%s", out, REC_DATASET_FILE);
        rc = rec_dataset_save(d, path, &err);
    }
    if (rc < 0) {
        fprintf(stderr, "data prepare: %s\n", err.msg);
        rec_dataset_free(d);
        return 1;
    }
    printf("layout       %s\n", movielens_layout_name(rep.layout));
    printf("ratings      %s\n", rep.ratings_path);
    printf("movies       %s\n",
           rep.movies_path[0] ? rep.movies_path : "(none: no titles, genres or years)");
    printf("rows read    %llu\n", (unsigned long long)rep.rows_read);
    printf("rejected     %llu malformed rows%s\n", (unsigned long long)rep.rows_rejected,
           rep.rows_rejected && !quiet ? " (the first ones are logged above)" : "");
    if (quiet)
        for (uint32_t k = 0; k < rep.n_reports; k++)
            printf("  %s\n", rep.reports[k]);
    if (cfg.min_user > 1 || cfg.min_item > 1)
        printf("filtered     %llu rows (--min-user %u, --min-item %u)\n",
               (unsigned long long)rep.rows_filtered, cfg.min_user, cfg.min_item);
    printf("users        %u\n", d->n_users);
    printf("items        %u\n", d->n_items);
    printf("interactions %llu\n", (unsigned long long)d->n_interactions);
    printf("eval users   %u (with >= 3 interactions)\n", rec_split_n_eval_users(d));
    if (rep.items_without_meta)
        printf("no metadata  %u items not in the movies file\n", rep.items_without_meta);
    if (rep.unknown_genres)
        printf("genres       %u unknown genre names ignored\n", rep.unknown_genres);
    printf("wrote        %s\n", path);
    rec_dataset_free(d);
    return 0;
}
