/** Starts a real redis-server on a free loopback port for a test, and stops it. */
#ifndef TESTS_REDIS_FIXTURE_H
#define TESTS_REDIS_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

struct redis_fixture {
    pid_t pid;
    int port;
    char url[64];
};

/** True if a redis-server binary is on PATH. */
bool redis_fixture_available(void);
/** Starts redis-server (no persistence) on `port` (0 = pick a free one) and waits until it
 *  answers PING (at most 5 s). Returns 0 or -1. */
int redis_fixture_start(struct redis_fixture *r, int port);
/** Kills it (SIGKILL, like a crash) and reaps it. */
void redis_fixture_kill(struct redis_fixture *r);

#endif
