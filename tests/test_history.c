/* Tests for src/recsys/history.c: the append-only event log. */
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "recsys/history.h"

static void test_append_get_bounded(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/events.log", dir);
    struct err e;
    struct hist_store *h = hist_open(path, 4, false, NULL, &e);
    assert_non_null(h);
    assert_int_equal(hist_version(h, 7), 0);
    for (uint32_t i = 1; i <= 6; i++) assert_int_equal(hist_append(h, 7, 100 + i, 1000 + i, &e), 0);
    assert_int_equal(hist_append(h, 8, 55, 1, &e), 0);
    uint32_t out[10];
    int n = hist_get(h, 7, out, 10);
    assert_int_equal(n, 4); /* bounded to the 4 most recent, oldest first */
    assert_int_equal(out[0], 103);
    assert_int_equal(out[3], 106);
    n = hist_get(h, 7, out, 2);
    assert_int_equal(n, 2);
    assert_int_equal(out[0], 105);
    assert_int_equal(out[1], 106);
    assert_int_equal(hist_get(h, 9, out, 10), 0);
    assert_int_equal(hist_version(h, 7), 6);
    assert_int_equal(hist_total_events(h), 7);
    hist_close(h);

    /* Reopen: everything replayed. */
    struct hist_open_stats st;
    h = hist_open(path, 4, false, &st, &e);
    assert_non_null(h);
    assert_int_equal(st.records, 7);
    assert_int_equal(st.skipped, 0);
    assert_int_equal(st.torn_bytes, 0);
    assert_int_equal(hist_get(h, 7, out, 10), 4);
    assert_int_equal(out[3], 106);
    assert_int_equal(hist_version(h, 7), 6);
    hist_close(h);
    test_rmtree(dir);
}

static void test_torn_tail_and_corruption(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/events.log", dir);
    struct err e;
    struct hist_store *h = hist_open(path, 100, true, NULL, &e);
    assert_non_null(h);
    for (uint32_t i = 0; i < 10; i++) assert_int_equal(hist_append(h, 1, i + 1, i, &e), 0);
    hist_close(h);
    /* A crash mid-write: the last record is cut short. */
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size - 7), 0);
    struct hist_open_stats st;
    h = hist_open(path, 100, false, &st, &e);
    assert_non_null(h);
    assert_int_equal(st.records, 9);
    assert_int_equal(st.torn_bytes, 24 - 7);
    uint32_t out[20];
    assert_int_equal(hist_get(h, 1, out, 20), 9);
    assert_int_equal(out[8], 9);
    /* New events follow the last good one. */
    assert_int_equal(hist_append(h, 1, 77, 0, &e), 0);
    hist_close(h);
    h = hist_open(path, 100, false, &st, &e);
    assert_int_equal(st.records, 10);
    assert_int_equal(st.torn_bytes, 0);
    assert_int_equal(hist_get(h, 1, out, 20), 10);
    assert_int_equal(out[9], 77);
    hist_close(h);

    /* A corrupt record in the middle is skipped; the rest is kept. */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, 16 + 24 * 3 + 4), 1);
    b ^= 0xFF;
    assert_int_equal(pwrite(fd, &b, 1, 16 + 24 * 3 + 4), 1);
    close(fd);
    h = hist_open(path, 100, false, &st, &e);
    assert_non_null(h);
    assert_int_equal(st.records, 9);
    assert_int_equal(st.skipped, 1);
    assert_int_equal(hist_get(h, 1, out, 20), 9);
    assert_int_equal(out[2], 3);
    assert_int_equal(out[3], 5); /* item 4 was the corrupt one */
    hist_close(h);

    /* Not our file: a clear error, and the file is left alone. */
    char other[160];
    snprintf(other, sizeof other, "%s/other.log", dir);
    FILE *f = fopen(other, "w");
    fputs("this is somebody else's file, keep it", f);
    fclose(f);
    assert_null(hist_open(other, 100, false, NULL, &e));
    assert_non_null(strstr(e.msg, "not a nanorec event log"));
    assert_int_equal(stat(other, &sb), 0);
    assert_int_equal(sb.st_size, 37);
    assert_null(hist_open(path, 0, false, NULL, &e));
    test_rmtree(dir);
}

struct writer_arg {
    struct hist_store *h;
    uint32_t user;
};

static void *writer(void *p)
{
    struct writer_arg *a = p;
    struct err e;
    for (uint32_t i = 0; i < 500; i++) hist_append(a->h, a->user, i, 0, &e);
    return NULL;
}

static void test_concurrent_appends(void **state)
{
    (void)state;
    char dir[64], path[128];
    test_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/events.log", dir);
    struct err e;
    struct hist_store *h = hist_open(path, 1000, false, NULL, &e);
    pthread_t t[4];
    struct writer_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct writer_arg){h, (uint32_t)i};
        pthread_create(&t[i], NULL, writer, &a[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    assert_int_equal(hist_total_events(h), 2000);
    hist_close(h);
    struct hist_open_stats st;
    h = hist_open(path, 1000, false, &st, &e);
    assert_int_equal(st.records, 2000);
    uint32_t out[600];
    for (uint32_t u = 0; u < 4; u++) {
        assert_int_equal(hist_get(h, u, out, 600), 500);
        for (uint32_t i = 0; i < 500; i++) assert_int_equal(out[i], i); /* per-user order kept */
    }
    /* Many users: the table grows and every user is still found. */
    for (uint32_t u = 100; u < 20100; u++) hist_append(h, u, u, 0, &e);
    for (uint32_t u = 100; u < 20100; u += 997) {
        assert_int_equal(hist_get(h, u, out, 1), 1);
        assert_int_equal(out[0], u);
    }
    hist_close(h);
    test_rmtree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_get_bounded),
        cmocka_unit_test(test_torn_tail_and_corruption),
        cmocka_unit_test(test_concurrent_appends),
    };
    return cmocka_run_group_tests_name("history", tests, NULL, NULL);
}
