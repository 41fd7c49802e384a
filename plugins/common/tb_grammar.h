/*
 * tb_grammar.h - a context-free grammar over bytes, for constrained decoding: parsed from GBNF
 * text (llama.cpp's grammar dialect, docs/tools-and-structured-output.md) or produced from a JSON
 * schema (tb_json_schema.h).
 *
 * The grammar is compiled to flat rules whose elements are byte classes, rule references and
 * alternative ends; Unicode character classes become alternatives of UTF-8 byte sequences, and
 * repetitions become fresh helper rules (each copy of a repeated group is its own rule, so that
 * a rule's continuation is known statically wherever possible: tb_grammar_cache.h relies on it).
 * Left-recursive grammars are refused.
 *
 * Thread-safety: immutable once built; any number of threads may read it.
 */
#ifndef TB_GRAMMAR_H
#define TB_GRAMMAR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tb_grammar tb_grammar_t;

/* Parses GBNF text[0..len) whose start rule is `root`.  Caller owns *out; destroy with
 * tb_grammar_destroy.  Errors: TB_EINVAL with "LINE:COL: what" in err (syntax, undefined or twice
 * defined rule, no root, left recursion, a code point outside Unicode), TB_E2BIG (the compiled
 * grammar would exceed 4M elements: a repetition count too large), TB_ENOMEM. */
int tb_grammar_parse_gbnf(const char *text, size_t len, tb_grammar_t **out, char *err,
                          size_t err_len);

/* Frees; sets *g_p to NULL; accepts NULL. */
void tb_grammar_destroy(tb_grammar_t **g_p);

/* Sizes, for logs and benchmarks: rules (helper rules included) and elements. */
size_t tb_grammar_n_rules(const tb_grammar_t *g);
size_t tb_grammar_n_elements(const tb_grammar_t *g);

#ifdef __cplusplus
}
#endif

#endif /* TB_GRAMMAR_H */
