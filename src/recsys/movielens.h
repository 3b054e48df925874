/** MovieLens ingest: every layout a user downloads from GroupLens, read into a rec_dataset.
 *
 *  Layouts (detected from the files in the folder):
 *    MOVIELENS_CSV     ml-20m, ml-25m, ml-latest, ml-latest-small: ratings.csv
 *                      (userId,movieId,rating,timestamp) and movies.csv (movieId,title,genres;
 *                      RFC 4180 quoting, CRLF and a UTF-8 BOM accepted)
 *    MOVIELENS_DAT     ml-1m, ml-10m: ratings.dat (UserID::MovieID::Rating::Timestamp) and
 *                      movies.dat (MovieID::Title::Genres); ml-1m text is ISO-8859-1
 *    MOVIELENS_100K    ml-100k: u.data (user item rating timestamp, tab-separated) and u.item
 *                      (24 '|'-separated fields, the last 19 a binary genre matrix)
 *    MOVIELENS_SASREC  the SASRec sequential benchmark: "user item" lines, 1-based ids,
 *                      chronological per user, with sas_to_original_{items,users}.txt maps and
 *                      movies.dat; dense ids are the file's ids
 *  Every file may also be gzip-compressed (name + ".gz"); the ratings file may be any
 *  ratings*.dat[.gz] (ml-1m-partial's ratings_users1-2999.dat.gz).
 *
 *  Text that is not valid UTF-8 is read as ISO-8859-1 and converted, line by line.
 *  A malformed row is reported with its file and line number; it is skipped (and counted) by
 *  default, and fatal with cfg.strict. Loading never crashes on any input. */
#ifndef RECSYS_MOVIELENS_H
#define RECSYS_MOVIELENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "recsys/dataset.h"

enum movielens_layout {
    MOVIELENS_UNKNOWN = 0,
    MOVIELENS_CSV,
    MOVIELENS_DAT,
    MOVIELENS_100K,
    MOVIELENS_SASREC,
};

/** Longest line accepted (bytes); a longer one is a malformed row. */
#define MOVIELENS_MAX_LINE 65536
/** Longest title kept (bytes of UTF-8); a longer one makes its row malformed. */
#define MOVIELENS_MAX_TITLE 1024
/** How many row reports a load keeps (the rest are only counted). */
#define MOVIELENS_MAX_REPORTS 32
/** Largest id accepted in a SASRec sequence file that comes without id maps. */
#define MOVIELENS_MAX_SASREC_ID (1u << 24)
#define MOVIELENS_REPORT_LEN 200

struct movielens_cfg {
    bool strict;       /* the first malformed row fails the load */
    bool progress;     /* draw a progress bar on stderr while reading ratings */
    bool log_reports;  /* log each malformed row (the first MOVIELENS_MAX_REPORTS) */
    uint32_t min_user; /* keep users with >= min_user ratings (0 = all); see below */
    uint32_t min_item; /* keep items with >= min_item ratings (0 = all) */
};
/* The min_user / min_item filter is one pass over the raw counts, as the SASRec preprocessing
 * does (a row is kept if its user has >= min_user and its item >= min_item ratings in the
 * file); it is not applied to the SASRec layout, which is already filtered. */

struct movielens_report {
    enum movielens_layout layout;
    char ratings_path[512];
    char movies_path[512];
    uint64_t rows_read;          /* interaction rows seen (header excluded) */
    uint64_t rows_rejected;      /* malformed rows in any file (skipped) */
    uint64_t rows_filtered;      /* well-formed rows dropped by min_user / min_item */
    uint64_t movies_read;        /* rows of the movies file accepted */
    uint32_t items_without_meta; /* kept items absent from the movies file */
    uint32_t unknown_genres;     /* genre names not in the MovieLens list (ignored) */
    uint32_t n_reports;          /* min(number of problems, MOVIELENS_MAX_REPORTS) */
    char reports[MOVIELENS_MAX_REPORTS][MOVIELENS_REPORT_LEN]; /* "ratings.csv:17: ..." */
};

/** Which layout the folder holds, and the ratings / movies file paths it would read
 *  (movies may be "" when absent). ERR_NOTFOUND naming what was looked for if none. */
int movielens_detect(const char *dir, enum movielens_layout *layout, char *ratings_path,
                     size_t ratings_n, char *movies_path, size_t movies_n, struct err *err);

/** Layout name: "csv", "ml-1m", "ml-100k", "sasrec", "unknown". */
const char *movielens_layout_name(enum movielens_layout l);

/** Reads the folder into a dataset: dense users 0.. in ascending source id, dense items 1.. in
 *  ascending source movie id (the SASRec layout keeps its own ids), per-user sequences sorted
 *  by timestamp with ties in file order, titles, genres, years and popularity. `report` (may
 *  be NULL) receives the counts and the first row reports. NULL + err on failure, or on the
 *  first malformed row with cfg->strict. */
struct rec_dataset *movielens_load(const char *dir, const struct movielens_cfg *cfg,
                                   struct movielens_report *report, struct err *err);

/* ---- line-level parsers (exposed for tests and fuzzing) ---- */

/** A field of a split line: `len` bytes at `ptr` (NUL-terminated for CSV fields only). */
struct movielens_field {
    const char *ptr;
    size_t len;
};

/** Splits one CSV record (no line terminator) into at most `max` fields. Quoted fields are
 *  unescaped ("" -> ") into `buf`, which must hold 2 * len + 2 bytes; every field is copied
 *  there and NUL-terminated. Returns the number of fields, or -1 with `why` filled
 *  (unterminated quote, text after a closing quote, too many fields). */
int movielens_csv_split(const char *line, size_t len, char *buf, size_t cap,
                        struct movielens_field *fields, int max, char *why, size_t why_n);

/** Splits on the separator string `sep` (e.g. "::", "|", "\t") into at most `max` fields
 *  (views into `line`). Returns the number of fields, or -1 when there are more than `max`. */
int movielens_sep_split(const char *line, size_t len, const char *sep,
                        struct movielens_field *fields, int max);

/** One interaction row. */
struct movielens_rating {
    uint32_t user;
    uint32_t item;
    int64_t ts;
};

/** Parses a ratings row of `layout` (CSV, DAT, 100K or SASREC; for SASREC ts is 0). Returns 0
 *  or -1 with `why` naming the problem ("bad timestamp 'x'"). */
int movielens_parse_rating(enum movielens_layout layout, const char *line, size_t len,
                           struct movielens_rating *out, char *why, size_t why_n);

/** One movie row; `title` points into the caller's buffer, UTF-8, NUL-terminated. */
struct movielens_movie {
    uint32_t id;
    const char *title;
    uint32_t genres;
    uint16_t year;
    uint32_t unknown_genres; /* genre names that were not recognised */
};

/** Parses a movies row (movies.csv, movies.dat or u.item by `layout`; SASREC reads
 *  movies.dat). `buf` must hold 4 * len + 8 bytes (CSV unescaping and Latin-1 conversion).
 *  Returns 0 or -1 with `why`. */
int movielens_parse_movie(enum movielens_layout layout, const char *line, size_t len, char *buf,
                          size_t cap, struct movielens_movie *out, char *why, size_t why_n);

/** Year from a title's trailing "(1995)", "(1995-2000)", "(2007-)" or "(2006–2007)" (trailing
 *  spaces and a doubled ')' tolerated); 0 when absent or outside 1870..2100. */
uint16_t movielens_parse_year(const char *title, size_t len);

/** Genre bitmask from a '|'-separated list; unrecognised names are counted in *unknown
 *  (may be NULL). "(no genres listed)" gives 0. */
uint32_t movielens_parse_genres(const char *s, size_t len, uint32_t *unknown);

/** Copies s to out as UTF-8: unchanged if valid UTF-8, else read as ISO-8859-1. `cap` must be
 *  at least 2 * len + 1. Returns the output length (NUL-terminated). */
size_t movielens_to_utf8(const char *s, size_t len, char *out, size_t cap);

#endif
