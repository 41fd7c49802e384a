/*
 * tb_tok_buf.h - a growable byte buffer and a growable int32 vector, the scratch storage of the
 * tokenizer classes.  Growth failures return TB_ENOMEM and leave the contents unchanged.
 *
 * Embedded structs: zero-initialise (or tb_tok_buf_init) and release with tb_tok_buf_release.
 * Not thread-safe; each user owns its own.
 */
#ifndef TB_TOK_BUF_H
#define TB_TOK_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tb_tok_buf {
    char *ptr; /* NUL-terminated when cap > 0 (the terminator is not counted in len) */
    size_t len;
    size_t cap;
};

struct tb_tok_ids {
    int32_t *ptr;
    size_t len;
    size_t cap;
};

void tb_tok_buf_init(struct tb_tok_buf *b);
/* Frees the storage; the struct is left empty and reusable. */
void tb_tok_buf_release(struct tb_tok_buf *b);
/* Ensures room for `extra` more bytes (plus the terminator).  0 or TB_ENOMEM. */
int tb_tok_buf_reserve(struct tb_tok_buf *b, size_t extra);
/* Appends `n` bytes of `src`.  0 or TB_ENOMEM. */
int tb_tok_buf_append(struct tb_tok_buf *b, const void *src, size_t n);
/* Appends the UTF-8 encoding of code point `cp` (must be a valid scalar value). */
int tb_tok_buf_append_cp(struct tb_tok_buf *b, uint32_t cp);
/* Empties the buffer, keeping its storage. */
void tb_tok_buf_clear(struct tb_tok_buf *b);
/* Hands the storage to the caller (who frees it with free()) and empties the buffer.  Never
 * NULL: an empty buffer yields an allocated "" (or NULL only when that allocation fails). */
char *tb_tok_buf_steal(struct tb_tok_buf *b, size_t *len);

void tb_tok_ids_init(struct tb_tok_ids *v);
void tb_tok_ids_release(struct tb_tok_ids *v);
int tb_tok_ids_push(struct tb_tok_ids *v, int32_t id);
int tb_tok_ids_append(struct tb_tok_ids *v, const int32_t *ids, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_BUF_H */
