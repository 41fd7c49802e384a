/*
 * tb_grammar_stack.c - the pushdown stacks of a compiled grammar (tb_grammar_impl.h): expanding
 * rule references until byte classes are on top, advancing a set of stacks by one byte, and
 * compacting a set into a fresh pool.  Stacks are parent-linked node chains; a set is
 * deduplicated by content as it is built.
 */
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar_impl.h"

#define MAX_EXPAND_DEPTH 2048
#define MAX_WORK (1u << 18) /* expansion steps per public call */

void tb_gstacks_release(struct tb_gstacks *s)
{
    free(s->nodes);
    free(s->set);
    memset(s, 0, sizeof(*s));
}

static int s_node(struct tb_gstacks *s, uint32_t pos, uint32_t parent, uint32_t *idx)
{
    if (s->n_nodes == s->cap_nodes) {
        size_t cap = s->cap_nodes ? s->cap_nodes * 2 : 256;
        if (cap >= TB_GS_SPECIAL) {
            return TB_E2BIG;
        }
        struct tb_gnode *n = realloc(s->nodes, cap * sizeof(*n));
        if (!n) {
            return TB_ENOMEM;
        }
        s->nodes = n;
        s->cap_nodes = cap;
    }
    uint32_t approx = parent == TB_GS_BOTTOM_APPROX ||
                      (parent < TB_GS_SPECIAL && s->nodes[parent].approx);
    s->nodes[s->n_nodes] = (struct tb_gnode){pos, parent, approx};
    *idx = (uint32_t)s->n_nodes++;
    return 0;
}

static bool s_same(const struct tb_gstacks *s, uint32_t a, uint32_t b)
{
    while (a != b) {
        if (a >= TB_GS_SPECIAL || b >= TB_GS_SPECIAL || s->nodes[a].pos != s->nodes[b].pos) {
            return false;
        }
        a = s->nodes[a].parent;
        b = s->nodes[b].parent;
    }
    return true;
}

static int s_set_add(struct tb_gstacks *s, uint32_t top, size_t lo)
{
    s->work += s->n_set - lo; /* the scan below: large sets come from ambiguous grammars */
    for (size_t i = lo; i < s->n_set; i++) {
        if (s_same(s, s->set[i], top)) {
            return 0;
        }
    }
    if (s->n_set == s->cap_set) {
        size_t cap = s->cap_set ? s->cap_set * 2 : 64;
        uint32_t *v = realloc(s->set, cap * sizeof(*v));
        if (!v) {
            return TB_ENOMEM;
        }
        s->set = v;
        s->cap_set = cap;
    }
    s->set[s->n_set++] = top;
    return 0;
}

static int s_expand(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t pos, uint32_t parent,
                    size_t lo, int depth);

static int s_expand_rule(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t rule, uint32_t ret,
                         size_t lo, int depth)
{
    uint32_t a = g->rule_start[rule];
    for (;;) {
        int rc = s_expand(g, s, a, ret, lo, depth + 1);
        if (rc != 0) {
            return rc;
        }
        while (g->elems[a].type != TB_GE_END) {
            a++;
        }
        if (g->elems[++a].type == TB_GE_RULE_END) {
            return 0;
        }
    }
}

/* The end of an alternative: pop to the parent, or at the bottom, finish the grammar (runtime)
 * or follow the rule's static continuation (static mode). */
static int s_pop(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t pos, uint32_t parent,
                 size_t lo, int depth)
{
    if (parent < TB_GS_SPECIAL) {
        struct tb_gnode n = s->nodes[parent];
        return s_expand(g, s, n.pos, n.parent, lo, depth + 1);
    }
    if (!s->static_mode) {
        return s_set_add(s, TB_GS_DONE, lo);
    }
    bool approx = parent == TB_GS_BOTTOM_APPROX;
    uint32_t r = g->rule_of[pos], c = g->cont[r];
    if (c == TB_GCONT_END) {
        return s_set_add(s, approx ? TB_GS_DONE_APPROX : TB_GS_DONE, lo);
    }
    if (c == TB_GCONT_NONE || (c == TB_GCONT_MANY && g->conts_n[r] == 0)) {
        return s_set_add(s, TB_GS_UNKNOWN, lo);
    }
    if (c != TB_GCONT_MANY) {
        return s_expand(g, s, c, approx ? TB_GS_BOTTOM_APPROX : TB_GS_BOTTOM, lo, depth + 1);
    }
    for (uint32_t i = 0; i < g->conts_n[r]; i++) {
        uint32_t k = g->conts[g->conts_at[r] + i];
        int rc = k == TB_GCONT_END ? s_set_add(s, TB_GS_DONE_APPROX, lo)
                                   : s_expand(g, s, k, TB_GS_BOTTOM_APPROX, lo, depth + 1);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int s_expand(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t pos, uint32_t parent,
                    size_t lo, int depth)
{
    int rc = 0;
    /* static mode: continuations may cycle, and an unknown outcome is always safe there */
    if (depth > MAX_EXPAND_DEPTH || ++s->work > MAX_WORK) {
        return s->static_mode ? s_set_add(s, TB_GS_UNKNOWN, lo) : TB_E2BIG;
    }
    const struct tb_gelem e = g->elems[pos];
    if (e.type == TB_GE_CHAR) {
        uint32_t n = 0;
        rc = s_node(s, pos, parent, &n);
        return rc != 0 ? rc : s_set_add(s, n, lo);
    }
    if (e.type == TB_GE_REF) {
        uint32_t ret = parent;
        uint32_t next_type = g->elems[pos + 1].type;
        if (next_type == TB_GE_CHAR || next_type == TB_GE_REF) {
            rc = s_node(s, pos + 1, parent, &ret);
        }
        return rc != 0 ? rc : s_expand_rule(g, s, e.val, ret, lo, depth);
    }
    return s_pop(g, s, pos, parent, lo, depth);
}

int tb_gstacks_expand(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t pos, uint32_t parent)
{
    s->work = 0;
    return s_expand(g, s, pos, parent, s->n_set, 0);
}

int tb_gstacks_expand_rule(const tb_grammar_t *g, struct tb_gstacks *s, uint32_t rule)
{
    s->work = 0;
    return s_expand_rule(g, s, rule, TB_GS_BOTTOM, s->n_set, 0);
}

int tb_gstacks_advance(const tb_grammar_t *g, struct tb_gstacks *s, size_t lo, size_t hi,
                       uint8_t b)
{
    size_t out_lo = s->n_set;
    s->work = 0;
    for (size_t i = lo; i < hi; i++) {
        uint32_t top = s->set[i];
        if (top >= TB_GS_SPECIAL) {
            continue;
        }
        struct tb_gnode n = s->nodes[top];
        if (tb_gclass_has(g, n.pos, b)) {
            int rc = s_expand(g, s, n.pos + 1, n.parent, out_lo, 0);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

static int s_copy_chain(const struct tb_gstacks *from, uint32_t top, struct tb_gstacks *to,
                        uint32_t *out)
{
    if (top >= TB_GS_SPECIAL) {
        *out = top;
        return 0;
    }
    uint32_t parent = TB_GS_BOTTOM;
    int rc = s_copy_chain(from, from->nodes[top].parent, to, &parent);
    return rc != 0 ? rc : s_node(to, from->nodes[top].pos, parent, out);
}

int tb_gstacks_copy(const struct tb_gstacks *from, size_t lo, size_t hi, struct tb_gstacks *to)
{
    to->n_nodes = 0;
    to->n_set = 0;
    for (size_t i = lo; i < hi; i++) {
        uint32_t top = 0;
        int rc = s_copy_chain(from, from->set[i], to, &top);
        if (rc == 0) {
            rc = s_set_add(to, top, 0);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}
