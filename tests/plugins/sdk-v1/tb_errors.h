/*
 * tb_errors.h - Turbine's error codes, shared by the plugin SDK and the libraries plugins link.
 *
 * Functions that can fail return 0 or a negative TB_E* code, equal to -errno on Linux where one
 * fits.  Positive values are documented non-error states (TB_AGAIN).  The host's strerror (and
 * tb_strerror in the core) names them.
 */
#ifndef TB_ERRORS_H
#define TB_ERRORS_H

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
    TB_ENOROUTE = -1001,   /* no live instance serves the endpoint */
    TB_EGONE = -1002,      /* the serving instance died or left mid-call */
    TB_EABI = -1003,       /* plugin ABI mismatch */
    TB_ECONFIG = -1004,    /* invalid configuration */
    TB_EOVERLOAD = -1005,  /* too much work queued: try later */
    TB_EDRAINING = -1006,  /* the process is shutting down */
    TB_EMODEL = -1007,     /* bad or unsupported model file */
    TB_ECONTEXT = -1008,   /* prompt longer than the model's context */
    TB_EINTERNAL = -1009,  /* a bug: reported, never silent */
};

#endif /* TB_ERRORS_H */
