#include "base/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool cli_is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) return true;
    return false;
}

/* Number of words in a command name ("train encoder" has 2). */
static int cli_words(const char *name)
{
    int n = 1;
    for (const char *p = name; *p; p++)
        if (*p == ' ') n++;
    return n;
}

/* Does argv[0..argc) start with the words of `name`? */
static bool cli_matches(const char *name, int argc, char **argv)
{
    int words = cli_words(name);
    if (argc < words) return false;
    const char *p = name;
    for (int w = 0; w < words; w++) {
        const char *sp = strchr(p, ' ');
        size_t len = sp ? (size_t)(sp - p) : strlen(p);
        if (strlen(argv[w]) != len || strncmp(argv[w], p, len) != 0) return false;
        p = sp ? sp + 1 : p + len;
    }
    return true;
}

static void cli_list(FILE *out, const char *prog, const char *about, const struct cli_cmd *cmds,
                     const char *prefix)
{
    fprintf(out, "%s\n\nusage: %s <command> [options]\n\ncommands:\n", about, prog);
    for (const struct cli_cmd *c = cmds; c->name; c++) {
        if (prefix && strncmp(c->name, prefix, strlen(prefix)) != 0) continue;
        fprintf(out, "  %-18s %s\n", c->name, c->summary);
    }
    fprintf(out, "\nRun '%s <command> --help' for a command's options.\n", prog);
}

int cli_dispatch(const char *prog, const char *about, const struct cli_cmd *cmds, int argc,
                 char **argv)
{
    if (argc < 2) {
        cli_list(stderr, prog, about, cmds, NULL);
        return 2;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc >= 3 && strcmp(argv[1], "help") == 0) {
            for (const struct cli_cmd *c = cmds; c->name; c++) {
                if (cli_matches(c->name, argc - 2, argv + 2)) {
                    fputs(c->usage, stdout);
                    return 0;
                }
            }
            fprintf(stderr, "%s: no command '%s'\n", prog, argv[2]);
            return 2;
        }
        cli_list(stdout, prog, about, cmds, NULL);
        return 0;
    }
    /* Longest match first, so "data prepare" wins over a hypothetical "data". */
    const struct cli_cmd *best = NULL;
    int best_words = 0;
    for (const struct cli_cmd *c = cmds; c->name; c++) {
        int w = cli_words(c->name);
        if (w > best_words && cli_matches(c->name, argc - 1, argv + 1)) {
            best = c;
            best_words = w;
        }
    }
    if (!best) {
        /* "prog data" alone: list the "data ..." commands. */
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s ", argv[1]);
        for (const struct cli_cmd *c = cmds; c->name; c++) {
            if (strncmp(c->name, prefix, strlen(prefix)) == 0) {
                cli_list(argc > 2 && cli_is_help(argv[2]) ? stdout : stderr, prog, about, cmds,
                         prefix);
                return argc > 2 && cli_is_help(argv[2]) ? 0 : 2;
            }
        }
        fprintf(stderr, "%s: unknown command '%s'\n\n", prog, argv[1]);
        cli_list(stderr, prog, about, cmds, NULL);
        return 2;
    }
    int sub_argc = argc - best_words;
    char **sub_argv = argv + best_words;
    if (cli_wants_help(sub_argc, sub_argv)) {
        fputs(best->usage, stdout);
        return 0;
    }
    return best->run(sub_argc, sub_argv);
}

/* Finds the value of option `name` at argv[*i]; NULL if argv[*i] is another argument. */
static const char *cli_value(int argc, char **argv, int *i, const char *name, bool *bad,
                             bool *matched)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    *matched = false;
    if (strncmp(a, name, n) != 0) return NULL;
    if (a[n] == '=') {
        *matched = true;
        return a + n + 1;
    }
    if (a[n] != '\0') return NULL;
    *matched = true;
    if (*i + 1 >= argc) {
        fprintf(stderr, "option %s needs a value\n", name);
        *bad = true;
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

bool cli_opt_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad)
{
    bool matched;
    const char *v = cli_value(argc, argv, i, name, bad, &matched);
    if (matched && v) *out = v;
    return matched;
}

bool cli_opt_int(int argc, char **argv, int *i, const char *name, long lo, long hi, long *out,
                 bool *bad)
{
    bool matched;
    const char *v = cli_value(argc, argv, i, name, bad, &matched);
    if (!matched || !v) return matched;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "option %s must be an integer between %ld and %ld (got '%s')\n", name, lo,
                hi, v);
        *bad = true;
        return true;
    }
    *out = x;
    return true;
}

bool cli_opt_double(int argc, char **argv, int *i, const char *name, double lo, double hi,
                    double *out, bool *bad)
{
    bool matched;
    const char *v = cli_value(argc, argv, i, name, bad, &matched);
    if (!matched || !v) return matched;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "option %s must be a number between %g and %g (got '%s')\n", name, lo, hi,
                v);
        *bad = true;
        return true;
    }
    *out = x;
    return true;
}
