/*
 * tb_buf.h - helpers for struct tb_buf (tb_plugin.h), the growable byte buffer the host fills.
 */
#ifndef TB_BUF_H
#define TB_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "tb_plugin.h"

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

/* Appends `len` bytes; grows as needed.  0 or TB_ENOMEM (the buffer is then unchanged). */
int tb_buf_append(struct tb_buf *buf, const void *data, size_t len);

/* Appends printf-formatted text (no NUL counted in len, but one kept after the data). */
int tb_buf_printf(struct tb_buf *buf, const char *fmt, ...) TB_PRINTF(2, 3);
int tb_buf_vprintf(struct tb_buf *buf, const char *fmt, va_list ap);

/* Makes room for `extra` more bytes. */
int tb_buf_reserve(struct tb_buf *buf, size_t extra);

/* Frees the data and zeroes the struct; accepts a zeroed struct. */
void tb_buf_free(struct tb_buf *buf);

#pragma GCC visibility pop

#endif /* TB_BUF_H */
