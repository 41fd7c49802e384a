/*
 * tb_diag.h - diagnostics collected while validating a deployment: every error names the file,
 * line and column, the key, the offending value, why it is wrong and how to fix it.
 */
#ifndef TB_DIAG_H
#define TB_DIAG_H

#include <stddef.h>
#include <stdio.h>

#include "tb_plugin.h"

struct tb_diag_entry {
    char *file;
    int line;    /* 1-based, 0 when unknown */
    int column;  /* 1-based */
    char *key;   /* e.g. "components[1].config.served_model_name" */
    char *value; /* the offending value as written, or NULL */
    char *why;
    char *fix; /* NULL when there is nothing to suggest */
};

struct tb_diag {
    struct tb_diag_entry *v;
    size_t n, cap;
};

void tb_diag_init(struct tb_diag *d);
void tb_diag_release(struct tb_diag *d);

/* Adds an error.  `fix` may be NULL.  Strings are copied; `why` and `fix` are printf formats
 * sharing the trailing arguments (why's conversions first). */
void tb_diag_add(struct tb_diag *d, const char *file, int line, int column, const char *key,
                 const char *value, const char *why, const char *fix);
void tb_diag_addf(struct tb_diag *d, const char *file, int line, int column, const char *key,
                  const char *value, const char *fix, const char *why_fmt, ...) TB_PRINTF(8, 9);

/* Writes every entry, one block each:
 *   FILE:LINE:COL: error: KEY: 'VALUE': WHY
 *     fix: FIX                                                                               */
void tb_diag_print(const struct tb_diag *d, FILE *out);

#endif /* TB_DIAG_H */
