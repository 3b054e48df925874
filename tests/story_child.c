/* See story_child.h. */
#include "story_child.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static const char *const url_vars[] = {"TRENDSTORY_GOOGLE_TRENDS_URL", "TRENDSTORY_HN_URL",
                                       "TRENDSTORY_WIKIMEDIA_URL", "TRENDSTORY_YOUTUBE_URL",
                                       "TRENDSTORY_NEWSAPI_URL"};

void story_child_dump(const struct story_child *c)
{
    FILE *f = fopen(c->errlog, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) print_message("  [trendstory] %s", line);
    fclose(f);
}

int story_child_start(struct story_child *c, const char *fixture_url, const char *const *args)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/trendstory", test_build_dir());
    memset(c, 0, sizeof *c);
    snprintf(c->errlog, sizeof c->errlog, "/tmp/storychild.XXXXXX");
    int efd = mkstemp(c->errlog);
    int pfd[2];
    if (efd < 0 || pipe(pfd) != 0) return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "serve";
    argv[n++] = "--port";
    argv[n++] = "0";
    for (int i = 0; args && args[i] && n < 62; i++) argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(efd, 2);
        close(pfd[0]);
        close(pfd[1]);
        for (size_t i = 0; i < sizeof url_vars / sizeof url_vars[0]; i++)
            setenv(url_vars[i], fixture_url, 1);
        setenv("TRENDSTORY_YOUTUBE_API_KEY", "TESTKEY", 1);
        setenv("TRENDSTORY_NEWSAPI_KEY", "TESTKEY", 1);
        if (!getenv("NR_LOG")) setenv("NR_LOG", "warn", 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    close(efd);
    c->pid = pid;
    c->port = -1;
    char line[256] = "";
    size_t len = 0;
    for (int waited = 0; waited < 30000 && !strchr(line, '\n');) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) {
            waited += 100;
            continue;
        }
        ssize_t r = read(pfd[0], line + len, sizeof line - 1 - len);
        if (r <= 0) break;
        len += (size_t)r;
        line[len] = '\0';
    }
    close(pfd[0]);
    const char *want = "trendstory listening on http://127.0.0.1:";
    if (strncmp(line, want, strlen(want)) != 0) {
        print_message("no listening line from trendstory (got '%s')\n", line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        story_child_dump(c);
        unlink(c->errlog);
        c->pid = 0;
        return -1;
    }
    c->port = atoi(line + strlen(want));
    return 0;
}

int story_child_stop(struct story_child *c)
{
    if (c->pid <= 0) return -1;
    kill(c->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(c->pid, &st, WNOHANG) == c->pid) {
            c->pid = 0;
            unlink(c->errlog);
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, &st, 0);
    story_child_dump(c);
    unlink(c->errlog);
    c->pid = 0;
    return -1;
}
