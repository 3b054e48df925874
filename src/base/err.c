#include "base/err.h"

#include <stdio.h>
#include <string.h>

int err_setv(struct err *e, enum err_code code, const char *fmt, va_list ap)
{
    if (!e) return code;
    e->code = code;
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    return code;
}

int err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_setv(e, code, fmt, ap);
    va_end(ap);
    return code;
}

int err_prefix(struct err *e, const char *fmt, ...)
{
    if (!e) return ERR_INVALID;
    char head[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(head, sizeof head - 2, fmt, ap);
    va_end(ap);
    if (n < 0) return e->code;
    size_t hl = strlen(head);
    memcpy(head + hl, ": ", 3);
    hl += 2;
    /* Shift the old message right by hl bytes (truncating its end), then put the head in. */
    size_t ol = strnlen(e->msg, sizeof e->msg - 1);
    if (hl >= sizeof e->msg) hl = sizeof e->msg - 1;
    if (ol + hl > sizeof e->msg - 1) ol = sizeof e->msg - 1 - hl;
    memmove(e->msg + hl, e->msg, ol);
    memcpy(e->msg, head, hl);
    e->msg[hl + ol] = '\0';
    return e->code;
}

void err_clear(struct err *e)
{
    if (!e) return;
    e->code = ERR_OK;
    e->msg[0] = '\0';
}

const char *err_code_name(enum err_code code)
{
    switch (code) {
    case ERR_OK: return "ok";
    case ERR_INVALID: return "invalid input";
    case ERR_IO: return "I/O error";
    case ERR_NOMEM: return "out of memory or over a limit";
    case ERR_UNSUPPORTED: return "unsupported";
    case ERR_NOTFOUND: return "not found";
    case ERR_TIMEOUT: return "timed out";
    case ERR_BUSY: return "busy";
    case ERR_UPSTREAM: return "upstream failure";
    }
    return "unknown error";
}
