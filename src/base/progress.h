/** A progress bar for long jobs. On a terminal it redraws at most 10 times a second with
 *  count, rate and ETA; otherwise (logs, CI) it prints one line every 10 %. */
#ifndef BASE_PROGRESS_H
#define BASE_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

struct progress {
    const char *label;
    const char *unit; /* "steps", "items", ... */
    uint64_t total;
    uint64_t done;
    FILE *out;        /* stderr by default */
    int is_tty;
    double t_start, t_last_draw;
    int last_decile;
    char extra[128];  /* caller text shown after the bar, e.g. "loss 3.21" */
};

void progress_begin(struct progress *p, const char *label, const char *unit, uint64_t total);
/** Sets done and redraws if due. `extra` may be NULL (keeps the previous text). */
void progress_update(struct progress *p, uint64_t done, const char *extra);
/** Draws the final state and a newline. */
void progress_end(struct progress *p);
/** Formats the current line into buf (used by progress_update; exposed for tests). */
void progress_format(const struct progress *p, double now, char *buf, size_t n);

#endif
