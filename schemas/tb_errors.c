/* tb_errors: names for the TB_E* codes and the error-message formatter (see tb_errors.h). */
#include "tb_errors.h"

#include <stdarg.h>
#include <stdio.h>

const char *tb_strerror(int code)
{
    switch (code) {
    case TB_OK:
        return "ok";
    case TB_AGAIN:
        return "try again";
    case TB_ENOENT:
        return "not found";
    case TB_EIO:
        return "input/output error";
    case TB_E2BIG:
        return "too big";
    case TB_ENOMEM:
        return "out of memory";
    case TB_EBUSY:
        return "busy";
    case TB_EEXIST:
        return "already exists";
    case TB_EINVAL:
        return "invalid argument";
    case TB_ERANGE:
        return "out of range";
    case TB_EPROTO:
        return "protocol error";
    case TB_EMSGSIZE:
        return "message too large";
    case TB_ENOTSUP:
        return "not supported";
    case TB_ETIMEDOUT:
        return "timed out";
    case TB_ECANCELED:
        return "cancelled";
    case TB_ENOROUTE:
        return "no route";
    case TB_EGONE:
        return "instance gone";
    case TB_EABI:
        return "ABI mismatch";
    case TB_ECONFIG:
        return "invalid configuration";
    case TB_EOVERLOAD:
        return "overloaded";
    case TB_EDRAINING:
        return "shutting down";
    case TB_EMODEL:
        return "bad model";
    case TB_ECONTEXT:
        return "context length exceeded";
    case TB_EINTERNAL:
        return "internal error";
    default:
        return "unknown error";
    }
}

void tb_err_vset(char *err, size_t err_len, const char *fmt, va_list ap)
{
    if (err && err_len > 0) {
        vsnprintf(err, err_len, fmt, ap);
    }
}

void tb_err_set(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(err, err_len, fmt, ap);
    va_end(ap);
}

int tb_err_fail(char *err, size_t err_len, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tb_err_vset(err, err_len, fmt, ap);
    va_end(ap);
    return code;
}
