/** A small, strict parser for the Prometheus text exposition format (0.0.4), used by tests
 *  to check what GET /metrics serves: every line is a # HELP, a # TYPE, a comment, blank, or
 *  a sample `name{label="value",...} value`; samples belong to a family declared by # TYPE
 *  before them (histogram samples as name_bucket / name_sum / name_count); histogram buckets
 *  are cumulative, end with le="+Inf", and +Inf equals _count. */
#ifndef TESTS_PROM_PARSE_H
#define TESTS_PROM_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#define PROM_MAX_SAMPLES 4096

struct prom_sample {
    char name[128];
    char labels[512]; /* as written between the braces (escapes kept), "" if none */
    double value;
};

struct prom_doc {
    int n;
    struct prom_sample s[PROM_MAX_SAMPLES];
    int n_families;
};

/** Parses `text`; returns true, or false with a message naming the line in err. `doc` is
 *  large: allocate it on the heap. */
bool prom_parse(const char *text, struct prom_doc *doc, char *err, size_t n);

/** The first sample with this name whose label text contains `label_sub` (NULL = any);
 *  NULL if none. */
const struct prom_sample *prom_find(const struct prom_doc *doc, const char *name,
                                    const char *label_sub);

#endif
