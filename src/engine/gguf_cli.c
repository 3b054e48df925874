/* The `gguf-info` subcommand: open, validate and describe a GGUF file. */
#include "engine/gguf_cli.h"

#include <stdio.h>
#include <string.h>

#include "base/err.h"
#include "engine/gguf.h"

int gguf_cli_info(int argc, char **argv)
{
    struct gguf_info_opts opts = {.all_array_items = false};
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(GGUF_INFO_USAGE, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--all") == 0) {
            opts.all_array_items = true;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "gguf-info: unknown option '%s'\n%s", argv[i], GGUF_INFO_USAGE);
            return 2;
        } else if (path) {
            fprintf(stderr, "gguf-info: one FILE expected, got '%s' and '%s'\n%s", path, argv[i],
                    GGUF_INFO_USAGE);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "gguf-info: missing FILE\n%s", GGUF_INFO_USAGE);
        return 2;
    }
    struct err err = {0};
    struct gguf_file *f = gguf_open(path, &err);
    if (!f) {
        /* gguf_open's message starts with the path: "gguf-info: FILE: problem" */
        fprintf(stderr, "gguf-info: %s\n", err.msg);
        return 1;
    }
    gguf_print_info(f, path, &opts, stdout);
    gguf_close(f);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "gguf-info: writing output failed\n");
        return 1;
    }
    return 0;
}
