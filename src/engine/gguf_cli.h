/** The `gguf-info FILE` subcommand, shared by both binaries. */
#ifndef ENGINE_GGUF_CLI_H
#define ENGINE_GGUF_CLI_H

#define GGUF_INFO_USAGE                                                                          \
    "usage: gguf-info [--all] FILE\n"                                                            \
    "  Prints the GGUF header, every metadata key with its type and value (long arrays\n"       \
    "  abbreviated unless --all), and the tensor table (name, type, shape, offset, bytes).\n"   \
    "  A malformed file prints an error naming the problem and exits with status 1.\n"

int gguf_cli_info(int argc, char **argv);

#endif
