/*
 * tb_grammar_cache.h - what a grammar allows at each of its positions over one vocabulary,
 * computed once and shared by every request that uses the pair (the adaptive token mask cache
 * idea of XGrammar, our own code).
 *
 * For every byte-class position of the grammar the cache holds the tokens accepted whatever
 * stack lies below the position, and the "uncertain" tokens: those that run past the end of a
 * rule whose continuation depends on the caller.  A matcher (tb_grammar_matcher.h) then builds
 * a step's mask from the accepted sets of its stack tops and checks only the uncertain tokens
 * against its full stacks.  Rule continuations known statically (a rule with one call site,
 * tail calls followed) are walked through at build time, so few tokens stay uncertain.
 *
 * Thread-safety: immutable once built; any number of matchers in any threads may share it.
 */
#ifndef TB_GRAMMAR_CACHE_H
#define TB_GRAMMAR_CACHE_H

#include <stddef.h>

#include "tb_grammar.h"
#include "tb_token_trie.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_grammar_cache tb_grammar_cache_t;

/* Builds the cache of grammar g over trie (both borrowed: they must outlive the cache).  Costs
 * one trie walk per grammar position, pruned where the position rejects a prefix.  Caller owns
 * *out; destroy with tb_grammar_cache_destroy.  Errors: TB_ENOMEM, TB_E2BIG (runaway grammar
 * expansion). */
int tb_grammar_cache_new(const tb_grammar_t *g, const tb_token_trie_t *trie,
                         tb_grammar_cache_t **out);

void tb_grammar_cache_destroy(tb_grammar_cache_t **c_p);

/* Figures for benchmarks: positions cached, uncertain tokens over all positions, bytes held. */
struct tb_grammar_cache_stats {
    size_t positions;
    size_t uncertain;
    size_t bytes;
};
void tb_grammar_cache_stats(const tb_grammar_cache_t *c, struct tb_grammar_cache_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TB_GRAMMAR_CACHE_H */
