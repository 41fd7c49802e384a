/*
 * tb_grammar_impl.h - the compiled grammar and its pushdown stacks, shared by tb_grammar.c,
 * tb_grammar_cache.c and tb_grammar_matcher.c (not a public interface).
 *
 * A stack is a chain of nodes (position, parent) in a node pool; its top is always a byte class
 * element.  A stack set is an array of top-node indices, deduplicated by content.  Two special
 * set members: TB_GS_DONE (the start rule is complete: nothing more may follow) and, in static
 * mode only, TB_GS_UNKNOWN (a rule ended where its continuation is not known).
 *
 * Static mode (tb_grammar_cache.c) runs stacks whose bottom is unknown: where a rule ends over
 * the bottom, it continues at the rule's statically known continuation; where the rule has
 * several, at all of them, over TB_GS_BOTTOM_APPROX: such "approximate" stacks over-approximate
 * what may follow, so a token they alone accept is uncertain, and one they reject is rejected.
 */
#ifndef TB_GRAMMAR_IMPL_H
#define TB_GRAMMAR_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tb_grammar.h"

enum { TB_GE_END = 0, TB_GE_RULE_END = 1, TB_GE_CHAR = 2, TB_GE_REF = 3 };

struct tb_gelem {
    uint32_t type; /* TB_GE_* */
    uint32_t val;  /* CHAR: class index; REF: rule index */
};

#define TB_GCONT_NONE UINT32_MAX       /* rule never referenced */
#define TB_GCONT_MANY (UINT32_MAX - 1) /* several continuations */
#define TB_GCONT_END (UINT32_MAX - 2)  /* continues to the grammar's end */

struct tb_grammar {
    struct tb_gelem *elems; /* per rule: alternatives each closed by END, then RULE_END */
    size_t n_elems;
    uint32_t *rule_start;
    uint32_t *rule_of;  /* rule of each element */
    uint32_t *cont;     /* per rule: the element after its only call site, or TB_GCONT_* */
    uint32_t *conts_at; /* per rule with TB_GCONT_MANY: its continuations are */
    uint32_t *conts_n;  /* conts[conts_at[r] .. + conts_n[r]] (0: too many to list) */
    uint32_t *conts;    /* elements, or TB_GCONT_END */
    char **rule_names;
    size_t n_rules;
    uint8_t (*classes)[32]; /* 256-bit byte sets */
    size_t n_classes;
    uint32_t root;
};

#define TB_GS_BOTTOM UINT32_MAX
#define TB_GS_DONE (UINT32_MAX - 1)
#define TB_GS_UNKNOWN (UINT32_MAX - 2)
#define TB_GS_BOTTOM_APPROX (UINT32_MAX - 3)
#define TB_GS_DONE_APPROX (UINT32_MAX - 4) /* complete, along an approximate continuation */
#define TB_GS_SPECIAL TB_GS_DONE_APPROX    /* set members >= this are not nodes */

struct tb_gnode {
    uint32_t pos;
    uint32_t parent; /* node index, TB_GS_BOTTOM or TB_GS_BOTTOM_APPROX */
    uint32_t approx; /* the chain ends at TB_GS_BOTTOM_APPROX */
};

/* Growable node pool and stack-set buffer; a walk marks and truncates them. */
struct tb_gstacks {
    struct tb_gnode *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *set;
    size_t n_set, cap_set;
    bool static_mode; /* rule ends at the bottom follow tb_grammar.cont */
    size_t work;      /* expansion steps of the current call, bounded (ambiguous grammars) */
};

void tb_gstacks_release(struct tb_gstacks *s);

static inline bool tb_gclass_has(const tb_grammar_t *g, uint32_t pos, uint8_t b)
{
    return (g->classes[g->elems[pos].val][b >> 3] >> (b & 7)) & 1;
}

/* Appends to s->set every stack reached from `pos` over `parent` by expanding references and
 * popping finished rules, until byte classes are on top.  0, TB_ENOMEM, or TB_E2BIG (runaway
 * expansion: nesting past 2048 or 2^18 steps in one call; in static mode the outcome becomes
 * TB_GS_UNKNOWN instead). */
int tb_gstacks_expand(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t pos, uint32_t parent);

/* Appends the stacks that start `rule` (over an empty stack).  Same codes. */
int tb_gstacks_expand_rule(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t rule);

/* Advances the set s->set[lo, hi) by byte b; the new set is appended after hi (s->n_set is its
 * end).  0 or a negative code. */
int tb_gstacks_advance(const tb_grammar_t *g, struct tb_gstacks *s, size_t lo, size_t hi,
                       uint8_t b);

/* Copies the stacks s->set[lo, hi) of `from` into `to` (cleared first), compacting their nodes.
 * 0 or TB_ENOMEM. */
int tb_gstacks_copy(const struct tb_gstacks *from, size_t lo, size_t hi, struct tb_gstacks *to);

/* The cache entry of a byte-class position: accepted tokens as a bitset (acc_bits) or an id
 * list, and the uncertain ids. */
struct tb_gcache_entry {
    size_t acc_off; /* into bits (words) or ids */
    uint32_t acc_n;
    bool acc_bits;
    size_t unc_off; /* into ids */
    uint32_t unc_n;
};

struct tb_token_trie;

struct tb_grammar_cache {
    const tb_grammar_t *g;
    const struct tb_token_trie *trie;
    size_t words;       /* mask words */
    size_t max_len;     /* bytes of the longest token */
    uint32_t *entry_of; /* per element: entry index (byte-class elements only) */
    struct tb_gcache_entry *entries;
    size_t n_entries;
    uint32_t *bits;
    size_t n_bits, cap_bits;
    int32_t *ids;
    size_t n_ids, cap_ids;
};

#endif /* TB_GRAMMAR_IMPL_H */
