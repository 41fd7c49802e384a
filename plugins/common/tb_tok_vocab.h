/*
 * tb_tok_vocab.h - a tokenizer vocabulary: id -> piece (the token's string as the model stores
 * it: "▁the", "Ġthe", "<0x0A>") and piece -> id through a hash table.
 *
 * Build it with tb_tok_vocab_new, tb_tok_vocab_set for each id, then tb_tok_vocab_build_index.
 * Afterwards it is immutable and may be read from any number of threads.
 */
#ifndef TB_TOK_VOCAB_H
#define TB_TOK_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_tok_vocab tb_tok_vocab_t;

/* A vocabulary of `n` ids, all unset.  Caller owns *out; destroy with tb_tok_vocab_destroy.
 * 0 or TB_ENOMEM / TB_E2BIG (more than 2^31 - 1 ids). */
int tb_tok_vocab_new(size_t n, tb_tok_vocab_t **out);
void tb_tok_vocab_destroy(tb_tok_vocab_t **v_p);

/* Sets the piece of `id` (copied).  `indexed`: whether tb_tok_vocab_find may return this id.
 * 0, TB_ERANGE (id outside the vocabulary), TB_EEXIST (id already set) or TB_ENOMEM. */
int tb_tok_vocab_set(tb_tok_vocab_t *v, int32_t id, const char *s, size_t len, bool indexed);

/* Builds the piece -> id index.  When two indexed ids share a piece the larger id wins. */
int tb_tok_vocab_build_index(tb_tok_vocab_t *v);

size_t tb_tok_vocab_size(const tb_tok_vocab_t *v);
/* The id of an indexed piece, or -1. */
int32_t tb_tok_vocab_find(const tb_tok_vocab_t *v, const char *s, size_t len);
/* The piece of `id` (borrowed, valid for the vocabulary's life; NUL-terminated), or NULL when
 * the id is outside the vocabulary or unset. */
const char *tb_tok_vocab_piece(const tb_tok_vocab_t *v, int32_t id, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOK_VOCAB_H */
