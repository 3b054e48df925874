/** Leveled logging to stderr with timestamps. Thread-safe (one write(2) per line). */
#ifndef BASE_LOG_H
#define BASE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

/** Lines below `level` are dropped. Default LOG_INFO, or $NR_LOG (debug|info|warn|error|off). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/** Parses "debug", "info", "warn", "error", "off"; returns -1 if unknown. */
int log_parse_level(const char *s);

/** Writes "2026-11-23T08:46:01.123Z INFO  module: message\n" to stderr. */
void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(mod, ...) log_write(LOG_DEBUG, mod, __VA_ARGS__)
#define log_info(mod, ...) log_write(LOG_INFO, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)

#endif
