/** A git-style subcommand table: `prog CMD [args]`, `prog help`, `prog CMD --help`. */
#ifndef BASE_CLI_H
#define BASE_CLI_H

#include <stdbool.h>

struct cli_cmd {
    const char *name;    /* "gguf-info"; a space makes a two-word command: "train encoder" */
    const char *summary; /* one line for the command list */
    const char *usage;   /* full help text printed by `prog CMD --help` */
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns exit code */
};

/** Dispatches argv against `cmds` (terminated by an entry with name NULL). `--help`, `-h` or
 *  `help` with no command prints the list; `CMD --help` prints its usage. An unknown command
 *  prints the list to stderr and returns 2. */
int cli_dispatch(const char *prog, const char *about, const struct cli_cmd *cmds, int argc,
                 char **argv);

/** True if any of argv[1..] is --help or -h. */
bool cli_wants_help(int argc, char **argv);

/** Option helpers for `--name value` and `--name=value`, for loops of the form
 *  `for (int i = 1; i < argc; i++)`. Each returns true if argv[*i] is this option, and then
 *  leaves *i on the last argument it consumed (the value). A missing or out-of-range value
 *  prints a message naming the option to stderr and sets *bad = true (the caller returns 2). */
bool cli_opt_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad);
bool cli_opt_int(int argc, char **argv, int *i, const char *name, long lo, long hi, long *out,
                 bool *bad);
bool cli_opt_double(int argc, char **argv, int *i, const char *name, double lo, double hi,
                    double *out, bool *bad);

#endif
