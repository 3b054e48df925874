/* The trendstory page in headless Chromium: `trendstory serve --model stories260K.gguf` against
 * the fixture server, driven by tests/page/page_check.mjs (playwright-core + Debian's
 * chromium), scenario trendstory-story: a failing source and a bad field are shown to the
 * user, then a story streams in with its topics. Screenshots go to $BUILD/screens/. Skipped
 * (and counted) without chromium, node or tests/page/node_modules. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "fixture_server.h"
#include "story_child.h"

#define GGUF_REL "models/gguf/stories260K.gguf"

static void test_page_story(void **state)
{
    (void)state;
    char model[512], trends[512];
    TEST_REQUIRE_PATH(test_data_path(model, sizeof model, GGUF_REL));
    TEST_REQUIRE_PATH(test_data_path(trends, sizeof trends, "trends"));
    const char *chromium = getenv("CHROMIUM") ? getenv("CHROMIUM") : "/usr/bin/chromium";
    TEST_REQUIRE_PATH(chromium);
    TEST_REQUIRE_PATH("tests/page/node_modules/playwright-core");
    if (system("node --version > /dev/null 2>&1") != 0) {
        print_message("[ SKIPPING ] node is not installed\n");
        skip();
    }
    struct fixture_server *fx = fixture_server_start(trends);
    assert_non_null(fx);
    const char *args[] = {"--model", model, "--web", "web/trendstory", "--threads", "1",
                          "--max-batch", "2", "--prefetch", "hackernews", NULL};
    struct story_child c;
    assert_int_equal(story_child_start(&c, fixture_server_url(fx), args), 0);
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/screens", test_build_dir());
    mkdir(dir, 0755);
    snprintf(cmd, sizeof cmd,
             "timeout 120 node tests/page/page_check.mjs http://127.0.0.1:%d/ trendstory-story "
             "%s/trendstory-story.png 2>&1",
             c.port, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[1024];
    while (fgets(line, sizeof line, p)) print_message("  %s", line);
    int st = pclose(p);
    int stop = story_child_stop(&c);
    fixture_server_stop(fx);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(stop, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_page_story),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
