/*
 * tb_token_trie.h - the byte strings of a vocabulary arranged as a trie, for grammar-constrained
 * decoding (tb_grammar_cache.h walks it once per grammar position).
 *
 * A token's bytes are what it adds to the decoded text in the middle of a stream (SentencePiece
 * "▁" is a space, "<0x0A>" the byte 0x0A, byte-level "Ġ" a space).  Special tokens, and tokens
 * that decode to nothing, are not in the trie: a grammar never allows them.  The end-of-sequence
 * ids are kept aside: a grammar allows them only where it is complete.
 *
 * Nodes are stored in pre-order: node i's subtree is nodes [i, end(i)), and the tokens of that
 * subtree are tokens [tok_at(i), tok_at(end(i))) of the pre-order token list.
 *
 * Thread-safety: immutable once built; any number of threads may read it.
 */
#ifndef TB_TOKEN_TRIE_H
#define TB_TOKEN_TRIE_H

#include <stddef.h>
#include <stdint.h>

#include "tb_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_token_trie tb_token_trie_t;

/* Builds the trie of vocab_size ids: bytes[id] (lens[id] bytes) is the text of id, NULL or a
 * zero length to leave id out.  eos[0..n_eos) are the end-of-sequence ids.  Everything is
 * copied.  Caller owns *out; destroy with tb_token_trie_destroy.  Errors: TB_EINVAL (a vocabulary
 * of 2^31 ids or more, an EOS id outside it), TB_ENOMEM. */
int tb_token_trie_new(size_t vocab_size, const char *const *bytes, const size_t *lens,
                      const int32_t *eos, size_t n_eos, tb_token_trie_t **out);

/* Builds the trie of a tokenizer's vocabulary (borrowed during the call): each id's decoded
 * bytes as they appear after the first token; special tokens and empty pieces left out; the
 * tokenizer's end-of-generation ids as EOS.  Same ownership and errors. */
int tb_token_trie_from_tokenizer(const tb_tokenizer_t *tok, tb_token_trie_t **out);

/* The same with extra end-of-sequence ids (a model's own, from its config) added to the
 * tokenizer's: ids outside the vocabulary are skipped, each EOS id is left out of the trie. */
int tb_token_trie_from_tokenizer_eos(const tb_tokenizer_t *tok, const int32_t *extra_eos,
                                     size_t n_extra, tb_token_trie_t **out);

void tb_token_trie_destroy(tb_token_trie_t **trie_p);

/* Number of ids (the mask width). */
size_t tb_token_trie_vocab_size(const tb_token_trie_t *t);

/* The bytes of id (borrowed, valid for the trie's life), NULL when id is not in the trie. */
const uint8_t *tb_token_trie_bytes(const tb_token_trie_t *t, int32_t id, size_t *len);

/* The EOS ids (borrowed); returns their count. */
size_t tb_token_trie_eos(const tb_token_trie_t *t, const int32_t **ids);

/* Pre-order node arrays (borrowed): n nodes; byte[i] is the edge into node i, depth[i] >= 1 its
 * depth, end[i] one past its subtree, tok_at[0..n] the token list offsets; tokens[] the ids in
 * pre-order (an id whose bytes end at node i lies in [tok_at[i], tok_at[i + 1])). */
struct tb_token_trie_nodes {
    size_t n;
    const uint8_t *byte;
    const uint16_t *depth;
    const uint32_t *end;
    const uint32_t *tok_at;
    const int32_t *tokens;
    size_t n_tokens;
};
void tb_token_trie_nodes(const tb_token_trie_t *t, struct tb_token_trie_nodes *out);

#ifdef __cplusplus
}
#endif

#endif /* TB_TOKEN_TRIE_H */
