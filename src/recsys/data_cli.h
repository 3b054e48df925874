/** The `data prepare` subcommand of nanorec: MovieLens folder -> dataset artifact. */
#ifndef RECSYS_DATA_CLI_H
#define RECSYS_DATA_CLI_H

#define DATA_PREPARE_USAGE                                                                         \
    "usage: nanorec data prepare --movielens DIR --out DIR [--strict] [--min-user N]\n"            \
    "                            [--min-item N] [--quiet]\n"                                       \
    "  Reads the MovieLens release in DIR, detecting its layout: ratings.csv + movies.csv\n"       \
    "  (ml-20m, ml-25m, ml-latest, ml-latest-small), ratings.dat + movies.dat (ml-1m, ml-10m;\n"   \
    "  ISO-8859-1 titles become UTF-8), u.data + u.item (ml-100k), or the SASRec sequence\n"       \
    "  file with its id maps (ml-1m-sasrec); any file may be gzip-compressed (.gz).\n"             \
    "  Writes OUT/dataset.gguf: id maps, per-user chronological sequences (timestamp ties in\n"    \
    "  file order), titles, genres, years and popularity (see docs/recsys-data.md).\n"             \
    "  Prints the users, items and interactions kept and the rows rejected.\n"                     \
    "  --strict       a malformed row is fatal (default: reported with its line, skipped)\n"       \
    "  --min-user N   keep users with at least N ratings (default 0: all)\n"                       \
    "  --min-item N   keep movies with at least N ratings (default 0: all; SASRec used 5)\n"       \
    "  --quiet        no progress bar and no per-row warnings\n"                                   \
    "  Exit status: 0 done, 1 failed (the message says why), 2 bad arguments.\n"

/** Runs `data prepare`; argv[0] is the command name. Returns the exit status. */
int data_cli_prepare(int argc, char **argv);

#endif
