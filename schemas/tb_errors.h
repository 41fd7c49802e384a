/*
 * tb_errors.h - Turbine's error codes, shared by the plugin SDK and the libraries plugins link.
 *
 * Functions that can fail return 0 or a negative TB_E* code, equal to -errno on Linux where one
 * fits.  Positive values are documented non-error states (TB_AGAIN).  tb_strerror names them
 * (the host table's strerror is the same function).
 *
 * The two functions live in the SDK helper library (libtb_sdk.a, `pkg-config --libs
 * turbine-plugin`); the enum alone needs nothing linked.
 */
#ifndef TB_ERRORS_H
#define TB_ERRORS_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define TB_ERR_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define TB_ERR_PRINTF(fmt_idx, arg_idx)
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
    TB_OK = 0,
    TB_AGAIN = 1, /* not an error: nothing available now, try again */
    TB_ENOENT = -2,
    TB_EIO = -5,
    TB_E2BIG = -7,
    TB_ENOMEM = -12,
    TB_EBUSY = -16,
    TB_EEXIST = -17,
    TB_EINVAL = -22,
    TB_ERANGE = -34,
    TB_EPROTO = -71,
    TB_EMSGSIZE = -90,
    TB_ENOTSUP = -95,
    TB_ETIMEDOUT = -110,
    TB_ECANCELED = -125,
    TB_ENOROUTE = -1001,  /* no live instance serves the endpoint */
    TB_EGONE = -1002,     /* the serving instance died or left mid-call */
    TB_EABI = -1003,      /* plugin ABI mismatch */
    TB_ECONFIG = -1004,   /* invalid configuration */
    TB_EOVERLOAD = -1005, /* too much work queued: try later */
    TB_EDRAINING = -1006, /* the process is shutting down */
    TB_EMODEL = -1007,    /* bad or unsupported model file */
    TB_ECONTEXT = -1008,  /* prompt longer than the model's context */
    TB_EINTERNAL = -1009, /* a bug: reported, never silent */
};

/* A static, lowercase description of a TB_E* code ("no route", "timed out"); "unknown error"
 * for a code it does not know.  Never NULL; thread-safe. */
const char *tb_strerror(int code);

/* Formats an error message into err[0..err_len) (always NUL-terminated, truncated to fit).  Does
 * nothing when err is NULL or err_len is 0, so callers may pass an optional buffer through.
 * This is the caller-supplied-buffer convention of the libraries plugins link (`char *err,
 * size_t err_len` parameters).  Thread-safe (writes only err). */
void tb_err_set(char *err, size_t err_len, const char *fmt, ...) TB_ERR_PRINTF(3, 4);
void tb_err_vset(char *err, size_t err_len, const char *fmt, va_list ap);

/* tb_err_set, then returns `code` (a TB_E* code): `return tb_err_fail(err, n, TB_EMODEL, ...)`. */
int tb_err_fail(char *err, size_t err_len, int code, const char *fmt, ...) TB_ERR_PRINTF(4, 5);

#ifdef __cplusplus
}
#endif

#endif /* TB_ERRORS_H */
