/** Shared helpers for the cmocka test binaries. */
#ifndef TESTS_TESTUTIL_H
#define TESTS_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>

/** The shared data folder: $DATA, else ../shared/data. */
const char *test_data_dir(void);
/** "<data dir>/<rel>" in a static buffer of the caller's (n bytes). */
const char *test_data_path(char *buf, size_t n, const char *rel);
/** True if the file or folder exists. */
bool test_path_exists(const char *path);
/** The build folder: $BUILD, else build. */
const char *test_build_dir(void);
/** A fresh temporary folder (removed by the caller with test_rmtree, or left in /tmp). */
const char *test_tmpdir(char *buf, size_t n);
void test_rmtree(const char *path);

/** Skips the current test, saying which data file is missing, when `path` does not exist.
 *  The skip is counted in the closing "N passed, N failed, N skipped" line. */
#define TEST_REQUIRE_PATH(path)                                                                  \
    do {                                                                                         \
        if (!test_path_exists(path)) {                                                           \
            print_message("[ SKIPPING ] %s: missing %s (set DATA=...)\n", __func__, path);     \
            skip();                                                                              \
        }                                                                                        \
    } while (0)

#endif
