/* Replays a fuzzing corpus through LLVMFuzzerTestOneInput without libFuzzer, so `make check`
 * runs every harness over its corpus with the normal compiler (and sanitizers when built with
 * SANITIZE=...).
 *
 *   fuzz_NAME [FILE|DIR]...   with no arguments: fuzz/corpus/NAME/
 *
 * Each input runs in a forked child (bounded by a 10 s alarm), so one crashing or hanging
 * input is reported as a failure and the rest still run. Prints one line per failure and ends
 * with exactly "N passed, N failed"; exits 1 if anything failed. A directory that is missing
 * or holds no inputs is a failure, never a silent pass. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPLAY_MAX_INPUT (64u << 20) /* larger inputs are a corpus mistake */
#define REPLAY_ALARM_S 10

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static unsigned n_pass, n_fail;

static void failed(const char *path, const char *why)
{
    printf("FAIL %s: %s\n", path, why);
    fflush(stdout);
    n_fail++;
}

/* Reads the whole file into an exact-size heap buffer (so a sanitizer sees over-reads). */
static uint8_t *read_input(const char *path, size_t *len, char *why, size_t cap)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(why, cap, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > REPLAY_MAX_INPUT) {
        snprintf(why, cap, "cannot size the file or it is over %u bytes", REPLAY_MAX_INPUT);
        fclose(fp);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf || fread(buf, 1, n, fp) != n) {
        snprintf(why, cap, "cannot read %zu bytes", n);
        free(buf);
        fclose(fp);
        return NULL;
    }
    fclose(fp);
    *len = n;
    return buf;
}

static void run_one(const char *path)
{
    char why[300];
    size_t len = 0;
    uint8_t *buf = read_input(path, &len, why, sizeof why);
    if (!buf) {
        failed(path, why);
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        free(buf);
        failed(path, "fork failed");
        return;
    }
    if (pid == 0) {
        alarm(REPLAY_ALARM_S);
        LLVMFuzzerTestOneInput(buf, len);
        free(buf);
        _exit(0);
    }
    free(buf);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            failed(path, "waitpid failed");
            return;
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        n_pass++;
    } else if (WIFSIGNALED(st)) {
        snprintf(why, sizeof why, "killed by signal %d (%s)%s", WTERMSIG(st),
                 strsignal(WTERMSIG(st)), WTERMSIG(st) == SIGALRM ? ": over the time limit" : "");
        failed(path, why);
    } else {
        snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(st));
        failed(path, why);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of a directory (not recursive, dot files skipped), in name order. */
static void run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        char why[300];
        snprintf(why, sizeof why, "corpus directory cannot be opened: %s", strerror(errno));
        failed(dir, why);
        return;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        names[n] = malloc(l);
        if (!names[n]) break;
        snprintf(names[n], l, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    size_t ran = 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            run_one(names[i]);
            ran++;
        }
        free(names[i]);
    }
    free(names);
    if (ran == 0) failed(dir, "corpus directory holds no inputs");
}

static void run_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        char why[300];
        snprintf(why, sizeof why, "%s", strerror(errno));
        failed(path, why);
    } else if (S_ISDIR(st.st_mode)) {
        run_dir(path);
    } else {
        run_one(path);
    }
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    if (argc > 1) {
        for (int i = 1; i < argc; i++) run_path(argv[i]);
    } else {
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        if (strncmp(base, "fuzz_", 5) == 0) base += 5;
        char dir[1024];
        snprintf(dir, sizeof dir, "fuzz/corpus/%s", base);
        run_dir(dir);
    }
    printf("%u passed, %u failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
