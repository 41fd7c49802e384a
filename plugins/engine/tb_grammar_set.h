/*
 * tb_grammar_set.h - the grammars one runner has compiled, by text: a request's `grammar` (GBNF,
 * root rule `root`) is compiled and its token mask cache built once per distinct text, over the
 * model's vocabulary as a token trie built once, on first use.
 *
 * Two classes:
 *   tb_grammar_set_t  per runner: the token trie (built from the model's tokenizer the first
 *                     time a grammar is asked for) and at most `capacity` compiled grammars,
 *                     keyed by a hash of their text (the text compared too), least recently
 *                     used dropped first;
 *   tb_grammar_ref_t  one compiled grammar: its text, grammar and mask cache, reference
 *                     counted.  The set holds one reference while the entry is cached, and every
 *                     sequence that follows it one more (tb_sampler.h), so an entry dropped from
 *                     the set lives on until its last sequence ends.
 *
 * Cost: compiling is the expensive part (the mask cache walks the trie once per grammar
 * position: milliseconds for a small vocabulary, up to seconds for a 150k one and a large
 * schema, docs/tools-and-structured-output.md); it runs in the caller's thread.
 *
 * Not thread-safe: one thread (the runner's) uses the set and its references.
 */
#ifndef TB_GRAMMAR_SET_H
#define TB_GRAMMAR_SET_H

#include <stddef.h>
#include <stdint.h>

#include "tb_grammar_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_grammar_set tb_grammar_set_t;
typedef struct tb_grammar_ref tb_grammar_ref_t;

#define TB_GRAMMAR_SET_DEFAULT_CAPACITY 32

/* A set over the tokenizer at `tokenizer_path` (copied; NULL: the model has none, and every
 * grammar is refused) whose end-of-sequence ids are the tokenizer's and eos[0..n_eos) (copied).
 * Caller owns *out; destroy with tb_grammar_set_destroy.  TB_ENOMEM. */
int tb_grammar_set_new(const char *tokenizer_path, const int32_t *eos, size_t n_eos,
                       size_t capacity, tb_grammar_set_t **out);

/* A set over an existing trie (borrowed: it must outlive the set and every reference taken
 * from it), for tests and tools.  Same ownership and errors. */
int tb_grammar_set_new_trie(const tb_token_trie_t *trie, size_t capacity, tb_grammar_set_t **out);

/* Drops the set's references and the trie; sets *set_p to NULL; NULL-safe.  Every reference
 * taken from it must have been released first (they borrow its trie). */
void tb_grammar_set_destroy(tb_grammar_set_t **set_p);

/* The compiled grammar of text[0..len): from the set, or compiled now.  On success *out is a new
 * reference (release it).  Errors, with the reason in err: TB_EINVAL ("grammar: LINE:COL: what"
 * for GBNF that does not compile), TB_ENOTSUP (the model has no tokenizer to build the trie
 * from), TB_E2BIG, TB_ENOMEM. */
int tb_grammar_set_get(tb_grammar_set_t *set, const char *text, size_t len,
                       tb_grammar_ref_t **out, char *err, size_t err_len);

/* Entries cached now (for tests). */
size_t tb_grammar_set_size(const tb_grammar_set_t *set);

/* One more reference to `ref`; returns it. */
tb_grammar_ref_t *tb_grammar_ref_acquire(tb_grammar_ref_t *ref);

/* Drops a reference; the last one frees the entry.  Sets *ref_p to NULL; NULL-safe. */
void tb_grammar_ref_release(tb_grammar_ref_t **ref_p);

/* The entry's mask cache and GBNF text (NUL-terminated), borrowed while a reference is held. */
const tb_grammar_cache_t *tb_grammar_ref_cache(const tb_grammar_ref_t *ref);
const char *tb_grammar_ref_text(const tb_grammar_ref_t *ref);

#ifdef __cplusplus
}
#endif

#endif /* TB_GRAMMAR_SET_H */
