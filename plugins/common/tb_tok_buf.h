/*
 * tb_tok_buf.h - a growable int32 vector (token ids), scratch storage of the tokenizer classes.
 * (Their byte buffers are the SDK's struct tb_buf, tb_buf.h.)  Growth failures return
 * TB_ENOMEM and leave the contents unchanged.
 *
 * Embedded structs: zero-initialise (or tb_tok_ids_init) and release with tb_tok_ids_release.
 * Not thread-safe; each user owns its own.
 */
#ifndef TB_TOK_BUF_H
#define TB_TOK_BUF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct tb_tok_ids {
    int32_t *ptr;
    size_t len;
    size_t cap;
};

void tb_tok_ids_init(struct tb_tok_ids *v);
void tb_tok_ids_release(struct tb_tok_ids *v);
int tb_tok_ids_push(struct tb_tok_ids *v, int32_t id);
int tb_tok_ids_append(struct tb_tok_ids *v, const int32_t *ids, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_BUF_H */
