/** Errors as values: a code plus a message a person can act on. */
#ifndef BASE_ERR_H
#define BASE_ERR_H

#include <stdarg.h>

enum err_code {
    ERR_OK = 0,
    ERR_INVALID = -1,   /* bad input: a file, a request, an argument */
    ERR_IO = -2,        /* the operating system said no (open, read, mmap, socket) */
    ERR_NOMEM = -3,     /* an allocation failed or a bound was reached */
    ERR_UNSUPPORTED = -4, /* well-formed but not something we handle (a tensor type, a layout) */
    ERR_NOTFOUND = -5,  /* a key, a tensor, a user that does not exist */
    ERR_TIMEOUT = -6,
    ERR_BUSY = -7,      /* a queue or pool is full: try again later */
    ERR_UPSTREAM = -8,  /* a remote service failed */
};

#define ERR_MSG_MAX 512

/** Filled by a failing function; callers pass it up or print it. */
struct err {
    enum err_code code;
    char msg[ERR_MSG_MAX];
};

/** Sets code and a printf-style message; returns code, so `return err_set(e, ...)` works.
 *  `e` may be NULL (the error is then dropped). */
int err_set(struct err *e, enum err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int err_setv(struct err *e, enum err_code code, const char *fmt, va_list ap);

/** Prepends context: "loading model: <old message>". Keeps the code. Returns the code. */
int err_prefix(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** Clears to ERR_OK and an empty message. */
void err_clear(struct err *e);

/** A short name for a code ("invalid input", "I/O error", ...). */
const char *err_code_name(enum err_code code);

#endif
