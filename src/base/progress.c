#include "base/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

static double progress_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress_hms(char *buf, size_t n, double s)
{
    if (s < 0 || s > 359999) {
        snprintf(buf, n, "--:--");
        return;
    }
    int t = (int)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%02d:%02d", t / 60, t % 60);
}

void progress_begin(struct progress *p, const char *label, const char *unit, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->label = label ? label : "";
    p->unit = unit ? unit : "";
    p->total = total;
    p->out = stderr;
    p->is_tty = isatty(fileno(stderr));
    p->t_start = progress_now();
    p->t_last_draw = 0;
    p->last_decile = 0; /* the first line comes at 10 % */
}

void progress_format(const struct progress *p, double now, char *buf, size_t n)
{
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32];
    progress_hms(elapsed, sizeof elapsed, el);
    if (p->total && rate > 0 && p->done <= p->total)
        progress_hms(eta, sizeof eta, (double)(p->total - p->done) / rate);
    else snprintf(eta, sizeof eta, "--:--");
    if (p->total) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1) frac = 1;
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        snprintf(buf, n, "%s [%s] %5.1f%% %llu/%llu %s, %.1f %s/s, elapsed %s, ETA %s%s%s",
                 p->label, bar, frac * 100, (unsigned long long)p->done,
                 (unsigned long long)p->total, p->unit, rate, p->unit, elapsed, eta,
                 p->extra[0] ? ", " : "", p->extra);
    } else {
        snprintf(buf, n, "%s %llu %s, %.1f %s/s, elapsed %s%s%s", p->label,
                 (unsigned long long)p->done, p->unit, rate, p->unit, elapsed,
                 p->extra[0] ? ", " : "", p->extra);
    }
}

void progress_update(struct progress *p, uint64_t done, const char *extra)
{
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    double now = progress_now();
    char line[512];
    if (p->is_tty) {
        if (now - p->t_last_draw < 0.1) return; /* at most 10 redraws a second */
        p->t_last_draw = now;
        progress_format(p, now, line, sizeof line);
        fprintf(p->out, "\r%s\033[K", line);
        fflush(p->out);
        return;
    }
    if (!p->total) return;
    int decile = (int)(done * 10 / p->total);
    if (decile > 10) decile = 10;
    if (decile <= p->last_decile || decile == 10) return; /* 100 % is printed by progress_end */
    p->last_decile = decile;
    progress_format(p, now, line, sizeof line);
    fprintf(p->out, "%s\n", line);
    fflush(p->out);
}

void progress_end(struct progress *p)
{
    char line[512];
    progress_format(p, progress_now(), line, sizeof line);
    fprintf(p->out, p->is_tty ? "\r%s\033[K\n" : "%s\n", line);
    fflush(p->out);
}
