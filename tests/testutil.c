#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *test_data_dir(void)
{
    const char *d = getenv("DATA");
    return d && *d ? d : "../shared/data";
}

const char *test_data_path(char *buf, size_t n, const char *rel)
{
    snprintf(buf, n, "%s/%s", test_data_dir(), rel);
    return buf;
}

bool test_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

const char *test_build_dir(void)
{
    const char *d = getenv("BUILD");
    return d && *d ? d : "build";
}

const char *test_tmpdir(char *buf, size_t n)
{
    snprintf(buf, n, "/tmp/nrtest.XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
    return buf;
}

void test_rmtree(const char *path)
{
    char cmd[4200];
    if (!path || strncmp(path, "/tmp/", 5) != 0) return; /* never outside /tmp */
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    int rc = system(cmd);
    (void)rc;
}
