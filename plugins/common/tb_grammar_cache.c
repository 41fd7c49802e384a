/*
 * tb_grammar_cache.c - per-position token classification: a pruned pre-order walk of the token
 * trie with the position's stack set in static mode (tb_grammar_impl.h), sorting each token into
 * accepted, rejected or uncertain.
 */
#include "tb_grammar_cache.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar_impl.h"

struct level {
    size_t lo, hi, nodes;
    bool unknown; /* a rule with an unknown continuation ended above */
};

struct walk {
    struct tb_gstacks st;
    struct level *lv;
    int32_t *acc, *unc;
    size_t n_acc, n_unc;
};

static void s_take(int32_t *dst, size_t *n, const int32_t *ids, size_t lo, size_t hi)
{
    if (hi > lo) {
        memcpy(dst + *n, ids + lo, (hi - lo) * sizeof(*ids));
        *n += hi - lo;
    }
}

/* Classifies every token for the byte-class position pos. */
static int s_walk(const tb_grammar_t *g, const struct tb_token_trie_nodes *t, struct walk *w,
                  uint32_t pos)
{
    struct tb_gstacks *s = &w->st;
    s->n_nodes = 0;
    s->n_set = 0;
    w->n_acc = w->n_unc = 0;
    int rc = tb_gstacks_expand(g, s, pos, TB_GS_BOTTOM);
    if (rc != 0) {
        return rc;
    }
    w->lv[0] = (struct level){0, s->n_set, s->n_nodes, false};
    for (size_t i = 0; i < t->n;) {
        struct level *up = &w->lv[t->depth[i] - 1];
        s->n_nodes = up->nodes;
        s->n_set = up->hi;
        rc = tb_gstacks_advance(g, s, up->lo, up->hi, t->byte[i]);
        if (rc != 0) {
            return rc;
        }
        bool live = false, unknown = false, exact = false, approx = false;
        for (size_t k = up->hi; k < s->n_set; k++) {
            uint32_t m = s->set[k];
            unknown |= m == TB_GS_UNKNOWN;
            live |= m < TB_GS_SPECIAL;
            exact |= m == TB_GS_DONE || (m < TB_GS_SPECIAL && !s->nodes[m].approx);
            approx |= m == TB_GS_DONE_APPROX || (m < TB_GS_SPECIAL && s->nodes[m].approx);
        }
        if (exact) {
            s_take(w->acc, &w->n_acc, t->tokens, t->tok_at[i], t->tok_at[i + 1]);
        } else if (approx || unknown || up->unknown) {
            s_take(w->unc, &w->n_unc, t->tokens, t->tok_at[i], t->tok_at[i + 1]);
        }
        bool below_unknown = up->unknown || unknown;
        if (!live) {
            if (below_unknown) {
                s_take(w->unc, &w->n_unc, t->tokens, t->tok_at[i + 1], t->tok_at[t->end[i]]);
            }
            i = t->end[i];
            continue;
        }
        w->lv[t->depth[i]] = (struct level){up->hi, s->n_set, s->n_nodes, below_unknown};
        i++;
    }
    return 0;
}

static int s_reserve(void **v, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return 0;
    }
    size_t c = *cap ? *cap : 1024;
    while (c < need) {
        c *= 2;
    }
    void *n = realloc(*v, c * elem);
    if (!n) {
        return TB_ENOMEM;
    }
    *v = n;
    *cap = c;
    return 0;
}

/* Stores the walk's result as entry e: a bitset when the id list would be larger. */
static int s_store(struct tb_grammar_cache *c, struct walk *w, struct tb_gcache_entry *e)
{
    size_t vocab = tb_token_trie_vocab_size(c->trie);
    e->acc_n = (uint32_t)w->n_acc;
    e->acc_bits = w->n_acc > vocab / 32;
    int rc = 0;
    if (e->acc_bits) {
        rc = s_reserve((void **)&c->bits, &c->cap_bits, c->n_bits + c->words, sizeof(uint32_t));
        if (rc != 0) {
            return rc;
        }
        e->acc_off = c->n_bits;
        uint32_t *b = c->bits + c->n_bits;
        memset(b, 0, c->words * sizeof(*b));
        for (size_t k = 0; k < w->n_acc; k++) {
            b[w->acc[k] >> 5] |= 1u << (w->acc[k] & 31);
        }
        c->n_bits += c->words;
    }
    size_t need = c->n_ids + w->n_unc + (e->acc_bits ? 0 : w->n_acc);
    rc = s_reserve((void **)&c->ids, &c->cap_ids, need, sizeof(int32_t));
    if (rc != 0) {
        return rc;
    }
    if (!e->acc_bits) {
        e->acc_off = c->n_ids;
        s_take(c->ids, &c->n_ids, w->acc, 0, w->n_acc);
    }
    e->unc_off = c->n_ids;
    e->unc_n = (uint32_t)w->n_unc;
    s_take(c->ids, &c->n_ids, w->unc, 0, w->n_unc);
    return 0;
}

static int s_build(struct tb_grammar_cache *c, struct walk *w)
{
    const tb_grammar_t *g = c->g;
    struct tb_token_trie_nodes t;
    tb_token_trie_nodes(c->trie, &t);
    size_t max_depth = 0;
    for (size_t i = 0; i < t.n; i++) {
        max_depth = t.depth[i] > max_depth ? t.depth[i] : max_depth;
    }
    c->max_len = max_depth;
    w->st.static_mode = true;
    w->lv = malloc((max_depth + 1) * sizeof(*w->lv));
    w->acc = malloc((t.n_tokens + 1) * sizeof(*w->acc));
    w->unc = malloc((t.n_tokens + 1) * sizeof(*w->unc));
    c->entry_of = malloc((g->n_elems + 1) * sizeof(*c->entry_of));
    c->entries = calloc(g->n_elems + 1, sizeof(*c->entries));
    if (!w->lv || !w->acc || !w->unc || !c->entry_of || !c->entries ||
        s_reserve((void **)&c->ids, &c->cap_ids, 1, sizeof(int32_t)) != 0) {
        return TB_ENOMEM; /* (ids is never NULL: entries point into it even when empty) */
    }
    for (size_t p = 0; p < g->n_elems; p++) {
        c->entry_of[p] = UINT32_MAX;
        if (g->elems[p].type != TB_GE_CHAR) {
            continue;
        }
        int rc = s_walk(g, &t, w, (uint32_t)p);
        rc = rc != 0 ? rc : s_store(c, w, &c->entries[c->n_entries]);
        if (rc != 0) {
            return rc;
        }
        c->entry_of[p] = (uint32_t)c->n_entries++;
    }
    return 0;
}

int tb_grammar_cache_new(const tb_grammar_t *g, const tb_token_trie_t *trie,
                         tb_grammar_cache_t **out)
{
    *out = NULL;
    struct tb_grammar_cache *c = calloc(1, sizeof(*c));
    if (!c) {
        return TB_ENOMEM;
    }
    c->g = g;
    c->trie = trie;
    c->words = (tb_token_trie_vocab_size(trie) + 31) / 32;
    struct walk w = {0};
    int rc = s_build(c, &w);
    tb_gstacks_release(&w.st);
    free(w.lv);
    free(w.acc);
    free(w.unc);
    if (rc != 0) {
        tb_grammar_cache_destroy(&c);
        return rc;
    }
    *out = c;
    return 0;
}

void tb_grammar_cache_destroy(tb_grammar_cache_t **c_p)
{
    if (!c_p || !*c_p) {
        return;
    }
    struct tb_grammar_cache *c = *c_p;
    free(c->entry_of);
    free(c->entries);
    free(c->bits);
    free(c->ids);
    free(c);
    *c_p = NULL;
}

void tb_grammar_cache_stats(const tb_grammar_cache_t *c, struct tb_grammar_cache_stats *out)
{
    out->positions = c->n_entries;
    out->uncertain = 0;
    for (size_t i = 0; i < c->n_entries; i++) {
        out->uncertain += c->entries[i].unc_n;
    }
    out->bytes = c->n_bits * sizeof(uint32_t) + c->n_ids * sizeof(int32_t) +
                 c->n_entries * sizeof(*c->entries);
}
