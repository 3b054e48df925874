/* Times the cold path in-process, one request at a time (no HTTP, no cache): for N random
 * users of an artifact set, the encoder, the vector search and the ranker, as the service's
 * workers run them. Prints medians and p95 per stage, and the thread's CPU time per request
 * (less sensitive than wall time to other processes on a shared machine).
 *
 *   rec_coldpath ARTIFACTS_DIR [N (500)] [seed] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "recsys/rec_model.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void report(const char *name, double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    printf("%-10s median %7.3f ms  p95 %7.3f ms  min %7.3f ms\n", name, v[n / 2],
           v[(int)(n * 0.95)], v[0]);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: rec_coldpath ARTIFACTS_DIR [N] [seed]\n");
        return 2;
    }
    int n = argc > 2 ? atoi(argv[2]) : 500;
    uint64_t s = argc > 3 ? (uint64_t)atoll(argv[3]) : 1;
    if (n < 1) n = 1;
    struct err err = {0};
    struct rec_model *m = rec_model_load(argv[1], 1, &err);
    if (!m) {
        fprintf(stderr, "rec_coldpath: %s\n", err.msg);
        return 1;
    }
    const struct rec_dataset *d = rec_model_dataset(m);
    double *e = malloc(sizeof(double) * (size_t)n * 5), *r = e + n, *k = r + n, *t = k + n;
    double *cpu = t + n;
    struct rec_result res;
    double hist_len = 0;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t u = (uint32_t)((s >> 33) % d->n_users);
        struct rec_query q = {.history = d->seq + d->user_off[u],
                              .n_history = (int)rec_user_len(d, u), .k = 10};
        hist_len += q.n_history;
        double c0 = cpu_ms();
        int rc = rec_model_recommend(m, 0, &q, &res, &err);
        cpu[i] = cpu_ms() - c0;
        if (rc) {
            fprintf(stderr, "rec_coldpath: %s\n", err.msg);
            return 1;
        }
        e[i] = res.embedding_ms;
        r[i] = res.retrieval_ms;
        k[i] = res.ranking_ms;
        t[i] = e[i] + r[i] + k[i];
    }
    printf("%d users, mean history %.1f items\n", n, hist_len / n);
    report("embedding", e, n);
    report("retrieval", r, n);
    report("ranking", k, n);
    report("total", t, n);
    report("cpu", cpu, n);
    free(e);
    rec_model_unref(m);
    return 0;
}
