/* Tests for src/base: errors, arena, job queue, pool, cli, progress. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/cli.h"
#include "base/err.h"
#include "base/jobq.h"
#include "base/log.h"
#include "base/pool.h"
#include "base/progress.h"

static void test_err_set_and_prefix(void **state)
{
    (void)state;
    struct err e;
    err_clear(&e);
    assert_int_equal(e.code, ERR_OK);
    assert_int_equal(err_set(&e, ERR_INVALID, "field '%s' is %d", "k", 7), ERR_INVALID);
    assert_string_equal(e.msg, "field 'k' is 7");
    err_prefix(&e, "request %d", 3);
    assert_string_equal(e.msg, "request 3: field 'k' is 7");
    assert_int_equal(e.code, ERR_INVALID);
    assert_int_equal(err_set(NULL, ERR_IO, "dropped"), ERR_IO);
    /* A long prefix truncates, never overflows. */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    err_prefix(&e, "%s", big);
    assert_true(strlen(e.msg) < ERR_MSG_MAX);
    assert_string_equal(err_code_name(ERR_NOTFOUND), "not found");
}

static void test_log_levels(void **state)
{
    (void)state;
    assert_int_equal(log_parse_level("warn"), LOG_WARN);
    assert_int_equal(log_parse_level("nonsense"), -1);
    log_set_level(LOG_ERROR);
    assert_int_equal(log_get_level(), LOG_ERROR);
    log_info("test", "not shown %d", 1);
    log_set_level(LOG_INFO);
}

static void test_arena(void **state)
{
    (void)state;
    struct arena *a = arena_new(64, 0);
    assert_non_null(a);
    char *p = arena_alloc(a, 10);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    for (int i = 0; i < 10; i++) assert_int_equal(p[i], 0);
    void *big = arena_alloc(a, 1000); /* larger than a block */
    assert_non_null(big);
    memset(big, 1, 1000);
    char *s = arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    assert_true(arena_used(a) >= 1000 + 16 + 16);
    arena_reset(a);
    assert_int_equal(arena_used(a), 0);
    assert_non_null(arena_alloc(a, 32));
    arena_free(a);
    arena_free(NULL);

    struct arena *lim = arena_new(128, 100);
    assert_non_null(arena_alloc(lim, 64));
    assert_null(arena_alloc(lim, 64)); /* over the limit */
    assert_null(arena_alloc(lim, SIZE_MAX));
    arena_free(lim);
}

struct jobq_probe {
    _Atomic int done;
    _Atomic int seen_worker[8];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int gate_open;
};

static void jobq_count(void *arg, int worker)
{
    struct jobq_probe *p = arg;
    atomic_fetch_add(&p->seen_worker[worker], 1);
    atomic_fetch_add(&p->done, 1);
}

static void jobq_blocker(void *arg, int worker)
{
    (void)worker;
    struct jobq_probe *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->gate_open) pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    atomic_fetch_add(&p->done, 1);
}

static void test_jobq_runs_all_jobs(void **state)
{
    (void)state;
    struct err e;
    struct jobq *q = jobq_new(3, 1000, &e);
    assert_non_null(q);
    assert_int_equal(jobq_workers(q), 3);
    static struct jobq_probe p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < 500; i++) assert_int_equal(jobq_submit(q, jobq_count, &p), 0);
    jobq_free(q); /* drains */
    assert_int_equal(atomic_load(&p.done), 500);
    int sum = 0;
    for (int i = 0; i < 3; i++) sum += atomic_load(&p.seen_worker[i]);
    assert_int_equal(sum, 500);
}

static void test_jobq_full_is_busy(void **state)
{
    (void)state;
    struct err e;
    struct jobq *q = jobq_new(1, 2, &e);
    assert_non_null(q);
    static struct jobq_probe p;
    memset(&p, 0, sizeof p);
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    assert_int_equal(jobq_submit(q, jobq_blocker, &p), 0);
    /* Wait until the worker took the first job, so exactly `capacity` more fit. */
    for (int i = 0; i < 2000 && jobq_depth(q) > 0; i++) usleep(1000);
    assert_int_equal(jobq_depth(q), 0);
    assert_int_equal(jobq_submit(q, jobq_blocker, &p), 0);
    assert_int_equal(jobq_submit(q, jobq_blocker, &p), 0);
    assert_int_equal(jobq_submit(q, jobq_blocker, &p), ERR_BUSY);
    assert_int_equal(jobq_depth(q), 2);
    pthread_mutex_lock(&p.mu);
    p.gate_open = 1;
    pthread_cond_broadcast(&p.cv);
    pthread_mutex_unlock(&p.mu);
    jobq_free(q);
    assert_int_equal(atomic_load(&p.done), 3);
    assert_null(jobq_new(0, 10, &e));
    assert_non_null(strstr(e.msg, "workers"));
}

struct pool_probe {
    _Atomic unsigned char *hits;
    _Atomic long sum;
};

static void pool_body(void *ctx, size_t b, size_t e, int tid)
{
    struct pool_probe *p = ctx;
    (void)tid;
    long s = 0;
    for (size_t i = b; i < e; i++) {
        atomic_fetch_add(&p->hits[i], 1);
        s += (long)i;
    }
    atomic_fetch_add(&p->sum, s);
}

static void test_pool_covers_every_index_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads++) {
        struct pool *pl = pool_new(threads);
        assert_non_null(pl);
        assert_int_equal(pool_threads(pl), threads);
        size_t sizes[] = {1, 2, 7, 100, 4097};
        for (size_t si = 0; si < 5; si++) {
            size_t n = sizes[si];
            for (int rep = 0; rep < 50; rep++) {
                struct pool_probe p = {calloc(n, 1), 0};
                pool_for(pl, n, rep % 3 == 0 ? 0 : (size_t)(rep % 5 + 1), pool_body, &p);
                long want = (long)(n * (n - 1) / 2);
                assert_int_equal(atomic_load(&p.sum), want);
                for (size_t i = 0; i < n; i++) assert_int_equal(p.hits[i], 1);
                free((void *)p.hits);
            }
        }
        pool_free(pl);
    }
    struct pool_probe p = {calloc(10, 1), 0};
    pool_for(NULL, 10, 0, pool_body, &p); /* no pool: inline */
    assert_int_equal(atomic_load(&p.sum), 45);
    free((void *)p.hits);
    pool_free(NULL);
}

static int cli_last_argc;
static char cli_last_arg0[64];
static int cli_cmd_a(int argc, char **argv)
{
    cli_last_argc = argc;
    snprintf(cli_last_arg0, sizeof cli_last_arg0, "%s", argv[0]);
    return 7;
}

static void test_cli_dispatch(void **state)
{
    (void)state;
    static const struct cli_cmd cmds[] = {
        {"info", "show info", "usage: info\n", cli_cmd_a},
        {"train encoder", "train", "usage: train encoder\n", cli_cmd_a},
        {NULL, NULL, NULL, NULL},
    };
    char *a1[] = {"prog", "info", "x", "y"};
    assert_int_equal(cli_dispatch("prog", "about", cmds, 4, a1), 7);
    assert_int_equal(cli_last_argc, 3);
    assert_string_equal(cli_last_arg0, "info");
    char *a2[] = {"prog", "train", "encoder", "--epochs", "3"};
    assert_int_equal(cli_dispatch("prog", "about", cmds, 5, a2), 7);
    assert_int_equal(cli_last_argc, 3);
    assert_string_equal(cli_last_arg0, "encoder");
    char *a3[] = {"prog", "nope"};
    assert_int_equal(cli_dispatch("prog", "about", cmds, 2, a3), 2);
    char *a4[] = {"prog", "info", "--help"};
    cli_last_argc = -1;
    assert_int_equal(cli_dispatch("prog", "about", cmds, 3, a4), 0);
    assert_int_equal(cli_last_argc, -1); /* help printed, command not run */
    char *a5[] = {"prog"};
    assert_int_equal(cli_dispatch("prog", "about", cmds, 1, a5), 2);
    char *a6[] = {"prog", "train"};
    assert_int_equal(cli_dispatch("prog", "about", cmds, 2, a6), 2);
}

static void test_cli_options(void **state)
{
    (void)state;
    char *argv[] = {"cmd", "--port", "8000", "--host=0.0.0.0", "--temp", "3.5", "--n", "x"};
    int argc = 8;
    long port = 0, n = 0;
    double temp = 0;
    const char *host = NULL;
    bool bad = false;
    int i = 1;
    assert_true(cli_opt_int(argc, argv, &i, "--port", 0, 65535, &port, &bad));
    assert_int_equal(port, 8000);
    assert_int_equal(i, 2);
    i = 3;
    assert_false(cli_opt_int(argc, argv, &i, "--port", 0, 65535, &port, &bad));
    assert_true(cli_opt_str(argc, argv, &i, "--host", &host, &bad));
    assert_string_equal(host, "0.0.0.0");
    i = 4;
    assert_true(cli_opt_double(argc, argv, &i, "--temp", 0, 2, &temp, &bad));
    assert_true(bad); /* 3.5 is out of range */
    bad = false;
    i = 6;
    assert_true(cli_opt_int(argc, argv, &i, "--n", 0, 10, &n, &bad));
    assert_true(bad); /* not a number */
    bad = false;
    char *argv2[] = {"cmd", "--port"};
    i = 1;
    assert_true(cli_opt_int(2, argv2, &i, "--port", 0, 65535, &port, &bad));
    assert_true(bad); /* missing value */
    char *argv3[] = {"cmd", "--portable"};
    i = 1;
    bad = false;
    assert_false(cli_opt_int(2, argv3, &i, "--port", 0, 65535, &port, &bad));
    assert_false(bad);
}

static void test_progress_format(void **state)
{
    (void)state;
    struct progress p;
    progress_begin(&p, "train", "steps", 200);
    FILE *f = tmpfile();
    assert_non_null(f);
    p.out = f;
    p.is_tty = 0;
    for (uint64_t i = 1; i <= 200; i++) progress_update(&p, i, "loss 1.5");
    progress_end(&p);
    rewind(f);
    char line[512];
    int lines = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        assert_non_null(strstr(line, "train ["));
        assert_non_null(strstr(line, "loss 1.5"));
    }
    fclose(f);
    assert_int_equal(lines, 10); /* 10 %, ..., 90 %, then the final line */
    char buf[256];
    p.done = 50;
    p.t_start = 100.0;
    progress_format(&p, 110.0, buf, sizeof buf);
    assert_non_null(strstr(buf, " 25.0%"));
    assert_non_null(strstr(buf, "50/200"));
    assert_non_null(strstr(buf, "5.0 steps/s"));
    assert_non_null(strstr(buf, "ETA 00:30"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_set_and_prefix),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_jobq_runs_all_jobs),
        cmocka_unit_test(test_jobq_full_is_busy),
        cmocka_unit_test(test_pool_covers_every_index_once),
        cmocka_unit_test(test_cli_dispatch),
        cmocka_unit_test(test_cli_options),
        cmocka_unit_test(test_progress_format),
    };
    return cmocka_run_group_tests_name("base", tests, NULL, NULL);
}
