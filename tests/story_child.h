/** Starts `$BUILD/trendstory serve --port 0 ...` as a child process for integration tests,
 *  with every trend source pointed at a local fixture URL (never the internet), reads its
 *  listening line for the port, and stops it with SIGTERM. */
#ifndef TESTS_STORY_CHILD_H
#define TESTS_STORY_CHILD_H

#include <sys/types.h>

struct story_child {
    pid_t pid;
    int port;
    char errlog[64]; /* the child's stderr, kept in a temporary file */
};

/** `fixture_url` becomes every TRENDSTORY_*_URL; `args` (NULL-terminated) are appended to
 *  "serve --port 0". Returns 0 with c filled, or -1 (the child's stderr is printed). */
int story_child_start(struct story_child *c, const char *fixture_url, const char *const *args);
/** SIGTERM, then waits up to 10 s (SIGKILL after). Returns the exit status, -1 if killed. */
int story_child_stop(struct story_child *c);
/** Prints the child's stderr through cmocka's print_message. */
void story_child_dump(const struct story_child *c);

#endif
