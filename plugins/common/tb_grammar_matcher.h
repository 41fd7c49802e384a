/*
 * tb_grammar_matcher.h - the per-request state of grammar-constrained decoding: which tokens the
 * grammar allows next (a bit mask over the vocabulary), and advancing by the sampled token.
 *
 * Mask layout: bit (id & 31) of word id / 32 is set when token id is allowed; the mask has
 * (vocab_size + 31) / 32 words.  Tokens outside the trie (special tokens) are never allowed;
 * the EOS ids only once the grammar is complete.
 *
 * A matcher belongs to one thread; its cache (and the cache's grammar and trie) must outlive it.
 */
#ifndef TB_GRAMMAR_MATCHER_H
#define TB_GRAMMAR_MATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_grammar_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_grammar_matcher tb_grammar_matcher_t;

/* A matcher at the start of the grammar.  Caller owns *out; destroy with
 * tb_grammar_matcher_destroy.  TB_ENOMEM, TB_E2BIG. */
int tb_grammar_matcher_new(const tb_grammar_cache_t *c, tb_grammar_matcher_t **out);

void tb_grammar_matcher_destroy(tb_grammar_matcher_t **m_p);

/* Number of 32-bit words of a mask. */
size_t tb_grammar_matcher_mask_words(const tb_grammar_matcher_t *m);

/* Writes the allowed tokens of the next step into mask (every word written).  0, TB_ENOMEM. */
int tb_grammar_matcher_fill_mask(tb_grammar_matcher_t *m, uint32_t *mask);

/* Turns the memo of recent masks off or on (on by default): a step whose live stacks equal
 * those of one of the last 4 computed steps (as inside a string) copies that step's mask.
 * Benchmarks turn it off to measure the computed mask. */
void tb_grammar_matcher_set_memo(tb_grammar_matcher_t *m, bool on);

/* The same mask by trying every token against the full stacks: the slow reference the tests
 * compare fill_mask with. */
int tb_grammar_matcher_fill_mask_slow(tb_grammar_matcher_t *m, uint32_t *mask);

/* Advances by token id.  An EOS id is accepted only when the grammar is complete, and ends the
 * match.  Errors: TB_EINVAL (the grammar does not allow id here, or the match has ended; the
 * state is unchanged), TB_ENOMEM. */
int tb_grammar_matcher_accept(tb_grammar_matcher_t *m, int32_t id);

/* True once an EOS was accepted. */
bool tb_grammar_matcher_is_done(const tb_grammar_matcher_t *m);

/* True when the text so far is a complete sentence of the grammar (EOS would be allowed). */
bool tb_grammar_matcher_can_end(const tb_grammar_matcher_t *m);

#ifdef __cplusplus
}
#endif

#endif /* TB_GRAMMAR_MATCHER_H */
