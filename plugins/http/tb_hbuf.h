/*
 * tb_hbuf.h - a growable byte buffer for the http plugin: response bodies, server-sent event
 * frames, request bodies.  Plain data (embedded, tb_hbuf_init / tb_hbuf_release); not
 * thread-safe.  Growth failures return TB_ENOMEM and leave the contents as they were, so a
 * failed append never corrupts what is already there.
 */
#ifndef TB_HBUF_H
#define TB_HBUF_H

#include <stdarg.h>
#include <stddef.h>

#include "tb_plugin.h"

struct tb_hbuf {
    char *data;  /* NUL-terminated when len > 0 or after any append; owned */
    size_t len;  /* bytes in use */
    size_t cap;  /* bytes allocated */
    size_t off;  /* consumer's read offset (used by streaming readers) */
};

void tb_hbuf_init(struct tb_hbuf *b);
/* Frees the storage and re-initialises the buffer. */
void tb_hbuf_release(struct tb_hbuf *b);
/* Empties the buffer, keeping its storage. */
void tb_hbuf_reset(struct tb_hbuf *b);
/* Makes room for `n` more bytes (plus a NUL).  0 or TB_ENOMEM. */
int tb_hbuf_reserve(struct tb_hbuf *b, size_t n);
/* Appends bytes / a C string / formatted text.  0 or TB_ENOMEM. */
int tb_hbuf_append(struct tb_hbuf *b, const void *p, size_t n);
int tb_hbuf_puts(struct tb_hbuf *b, const char *s);
int tb_hbuf_printf(struct tb_hbuf *b, const char *fmt, ...) TB_PRINTF(2, 3);
/* Hands the storage to the caller (free() it) and re-initialises the buffer; *len_out receives
 * the length.  Returns an empty malloc'ed string when the buffer is empty, NULL when out of
 * memory. */
char *tb_hbuf_detach(struct tb_hbuf *b, size_t *len_out);
/* Bytes not yet consumed (len - off). */
static inline size_t tb_hbuf_pending(const struct tb_hbuf *b)
{
    return b->len - b->off;
}

#endif /* TB_HBUF_H */
