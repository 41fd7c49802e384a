/*
 * tb_buf.h - helpers for struct tb_buf (tb_plugin.h), the growable byte buffer: codec output,
 * metrics text, log lines, response bodies.  Part of the SDK helper library (libtb_sdk.a).
 *
 * An embedded struct: zero it (or tb_buf_init), release with tb_buf_free.  The data is always
 * NUL-terminated after any successful append (the NUL is not counted in len).  Growth failures
 * return TB_ENOMEM and leave the contents as they were.  Not thread-safe; each user owns its own.
 */
#ifndef TB_BUF_H
#define TB_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tb_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Zeroes the struct (an empty buffer with no storage). */
void tb_buf_init(struct tb_buf *buf);

/* Appends `len` bytes; grows as needed.  0 or TB_ENOMEM (the buffer is then unchanged). */
int tb_buf_append(struct tb_buf *buf, const void *data, size_t len);

/* Appends a NUL-terminated string.  0 or TB_ENOMEM. */
int tb_buf_puts(struct tb_buf *buf, const char *s);

/* Appends the UTF-8 encoding of code point `cp` (a Unicode scalar value).  0, TB_EINVAL for a
 * surrogate or a value past U+10FFFF, or TB_ENOMEM. */
int tb_buf_append_cp(struct tb_buf *buf, uint32_t cp);

/* Appends the decimal text of `v` (what printf's %" PRId64 " / %" PRIu64 " writes), without the
 * cost of a format string: for hot paths that write numbers into JSON.  0 or TB_ENOMEM. */
int tb_buf_put_i64(struct tb_buf *buf, int64_t v);
int tb_buf_put_u64(struct tb_buf *buf, uint64_t v);

/* Appends printf-formatted text.  0, TB_EINVAL (bad format) or TB_ENOMEM. */
int tb_buf_printf(struct tb_buf *buf, const char *fmt, ...) TB_PRINTF(2, 3);
int tb_buf_vprintf(struct tb_buf *buf, const char *fmt, va_list ap);

/* Appends everything left to read from `f` (a file, a pipe, stdin).  0, TB_EIO (a read error;
 * what was read stays appended) or TB_ENOMEM. */
int tb_buf_read_file(struct tb_buf *buf, FILE *f);

/* Makes room for `extra` more bytes (plus the NUL).  0 or TB_ENOMEM. */
int tb_buf_reserve(struct tb_buf *buf, size_t extra);

/* Empties the buffer, keeping its storage. */
void tb_buf_clear(struct tb_buf *buf);

/* Hands the storage to the caller (free() it) and empties the buffer; *len (optional) receives
 * the length.  An empty buffer yields an allocated "" ; NULL only when that allocation fails. */
char *tb_buf_steal(struct tb_buf *buf, size_t *len);

/* Frees the data and zeroes the struct; accepts a zeroed struct. */
void tb_buf_free(struct tb_buf *buf);

#ifdef __cplusplus
}
#endif

#endif /* TB_BUF_H */
