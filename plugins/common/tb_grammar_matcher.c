/*
 * tb_grammar_matcher.c - a request's stack set over a shared grammar cache: masks from the
 * cached accepted sets plus a check of each uncertain token against the full stacks; accept
 * advances the set byte by byte and compacts it into a second pool.
 */
#include "tb_grammar_matcher.h"

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_grammar_impl.h"

struct level {
    size_t lo, hi, nodes; /* a stack set and the node count after it */
};

#define MEMO_SLOTS 4
#define MEMO_KEY 128

/* A recent step's mask, keyed by the live stack set: inside a string or a number the same
 * stacks come back step after step. */
struct memo {
    uint32_t n; /* 0: unused */
    uint32_t key[MEMO_KEY];
    uint32_t *bits;
};

struct tb_grammar_matcher {
    const struct tb_grammar_cache *c;
    struct tb_gstacks cur;  /* the live set is cur.set[0, n_live) */
    struct tb_gstacks next; /* compaction target */
    size_t n_live;
    bool done;
    struct level *levels; /* one per byte of the longest token, and one */
    struct memo memo[MEMO_SLOTS];
    size_t memo_next;
    bool no_memo;
};

int tb_grammar_matcher_new(const tb_grammar_cache_t *c, tb_grammar_matcher_t **out)
{
    *out = NULL;
    struct tb_grammar_matcher *m = calloc(1, sizeof(*m));
    if (!m) {
        return TB_ENOMEM;
    }
    m->c = c;
    m->levels = malloc((c->max_len + 1) * sizeof(*m->levels));
    int rc = m->levels ? 0 : TB_ENOMEM;
    rc = rc != 0 ? rc : tb_gstacks_expand_rule(c->g, &m->cur, c->g->root);
    if (rc != 0) {
        tb_grammar_matcher_destroy(&m);
        return rc;
    }
    m->n_live = m->cur.n_set;
    *out = m;
    return 0;
}

void tb_grammar_matcher_destroy(tb_grammar_matcher_t **m_p)
{
    if (!m_p || !*m_p) {
        return;
    }
    tb_gstacks_release(&(*m_p)->cur);
    tb_gstacks_release(&(*m_p)->next);
    free((*m_p)->levels);
    for (size_t i = 0; i < MEMO_SLOTS; i++) {
        free((*m_p)->memo[i].bits);
    }
    free(*m_p);
    *m_p = NULL;
}

void tb_grammar_matcher_set_memo(tb_grammar_matcher_t *m, bool on)
{
    m->no_memo = !on;
}

size_t tb_grammar_matcher_mask_words(const tb_grammar_matcher_t *m)
{
    return m->c->words;
}

bool tb_grammar_matcher_is_done(const tb_grammar_matcher_t *m)
{
    return m->done;
}

bool tb_grammar_matcher_can_end(const tb_grammar_matcher_t *m)
{
    for (size_t i = 0; i < m->n_live; i++) {
        if (m->cur.set[i] == TB_GS_DONE) {
            return !m->done;
        }
    }
    return false;
}

/* Advances the stacks cur.set[lo, hi) over bytes; on success [*lo_out, *hi_out) delimits the result
 * (possibly empty).  Scratch nodes and sets are appended after the live ones. */
static int s_run(struct tb_grammar_matcher *m, size_t lo, size_t hi, const uint8_t *b, size_t n,
                 size_t *lo_out, size_t *hi_out)
{
    struct tb_gstacks *s = &m->cur;
    for (size_t k = 0; k < n && lo < hi; k++) {
        size_t start = s->n_set;
        int rc = tb_gstacks_advance(m->c->g, s, lo, hi, b[k]);
        if (rc != 0) {
            return rc;
        }
        lo = start;
        hi = s->n_set;
    }
    *lo_out = lo;
    *hi_out = hi;
    return 0;
}

/* Sets the mask bit of each uncertain token ids[0..n) (in trie pre-order) that the single stack
 * `top` accepts.  Consecutive tokens share their common prefix's stack sets (levels), and a
 * rejected prefix rejects the tokens after it that extend it. */
static int s_check_uncertain(struct tb_grammar_matcher *m, uint32_t top, const int32_t *ids,
                             size_t n, uint32_t *mask)
{
    struct tb_gstacks *s = &m->cur;
    const struct tb_grammar_cache *c = m->c;
    size_t nodes = s->n_nodes, sets = s->n_set;
    /* a copy of the top node over the same parent: the single-stack set to advance */
    int rc = tb_gstacks_expand(c->g, s, s->nodes[top].pos, s->nodes[top].parent);
    struct level *lv = m->levels;
    lv[0] = (struct level){sets, s->n_set, s->n_nodes};
    const uint8_t *prev = NULL;
    size_t prev_len = 0, valid = 0, dead = SIZE_MAX;
    for (size_t j = 0; j < n && rc == 0; j++) {
        int32_t id = ids[j];
        if ((mask[id >> 5] >> (id & 31)) & 1) {
            continue;
        }
        size_t len = 0, lcp = 0;
        const uint8_t *b = tb_token_trie_bytes(c->trie, id, &len);
        while (prev && lcp < len && lcp < prev_len && prev[lcp] == b[lcp]) {
            lcp++;
        }
        prev = b;
        prev_len = len;
        if (dead != SIZE_MAX && lcp >= dead) {
            continue;
        }
        dead = SIZE_MAX;
        for (size_t k = lcp < valid ? lcp : valid; k < len && rc == 0; k++) {
            s->n_nodes = lv[k].nodes;
            s->n_set = lv[k].hi;
            rc = tb_gstacks_advance(c->g, s, lv[k].lo, lv[k].hi, b[k]);
            if (s->n_set == lv[k].hi) {
                dead = k + 1;
                break;
            }
            lv[k + 1] = (struct level){lv[k].hi, s->n_set, s->n_nodes};
        }
        valid = dead == SIZE_MAX ? len : dead - 1;
        if (rc == 0 && dead == SIZE_MAX) {
            mask[id >> 5] |= 1u << (id & 31);
        }
    }
    s->n_nodes = nodes;
    s->n_set = sets;
    return rc;
}

static void s_allow_eos(const struct tb_grammar_matcher *m, uint32_t *mask)
{
    if (!tb_grammar_matcher_can_end(m)) {
        return;
    }
    const int32_t *eos = NULL;
    size_t n = tb_token_trie_eos(m->c->trie, &eos);
    for (size_t i = 0; i < n; i++) {
        mask[eos[i] >> 5] |= 1u << (eos[i] & 31);
    }
}

/* The live set written out (each stack's positions from the top, then a separator; the
 * special members as they are); false when longer than MEMO_KEY. */
static bool s_memo_key(const struct tb_grammar_matcher *m, uint32_t *key, uint32_t *n)
{
    *n = 0;
    for (size_t i = 0; i < m->n_live; i++) {
        for (uint32_t k = m->cur.set[i];; k = m->cur.nodes[k].parent) {
            if (*n == MEMO_KEY) {
                return false;
            }
            key[(*n)++] = k < TB_GS_SPECIAL ? m->cur.nodes[k].pos : k;
            if (k >= TB_GS_SPECIAL) {
                break;
            }
        }
    }
    return true;
}

typedef uint32_t s_vec __attribute__((vector_size(32)));

/* dst |= src over n words, 8 at a time (the masks are 4,750 words over 152k tokens). */
static void s_or(uint32_t *restrict dst, const uint32_t *restrict src, size_t n)
{
    size_t w = 0;
    for (; w + 8 <= n; w += 8) {
        s_vec a, b;
        memcpy(&a, dst + w, sizeof(a));
        memcpy(&b, src + w, sizeof(b));
        a |= b;
        memcpy(dst + w, &a, sizeof(a));
    }
    for (; w < n; w++) {
        dst[w] |= src[w];
    }
}

/* ORs the accepted sets of the stack tops into mask (cleared first). */
static void s_accepted(struct tb_grammar_matcher *m, uint32_t *mask)
{
    const struct tb_grammar_cache *c = m->c;
    memset(mask, 0, c->words * sizeof(*mask));
    for (size_t i = 0; i < m->n_live; i++) {
        uint32_t top = m->cur.set[i];
        if (top >= TB_GS_SPECIAL) {
            continue;
        }
        const struct tb_gcache_entry *e = &c->entries[c->entry_of[m->cur.nodes[top].pos]];
        if (e->acc_bits) {
            s_or(mask, c->bits + e->acc_off, c->words);
        } else {
            for (const int32_t *id = c->ids + e->acc_off, *end = id + e->acc_n; id < end; id++) {
                mask[*id >> 5] |= 1u << (*id & 31);
            }
        }
    }
}

/* The memo entry for the live set (key[0..*n)), or NULL. */
static const struct memo *s_memo_find(const struct tb_grammar_matcher *m, uint32_t *key,
                                      uint32_t *n)
{
    if (m->no_memo || !s_memo_key(m, key, n)) {
        *n = 0;
        return NULL;
    }
    for (size_t i = 0; i < MEMO_SLOTS; i++) {
        const struct memo *e = &m->memo[i];
        if (e->n == *n && memcmp(e->key, key, *n * sizeof(*key)) == 0) {
            return e;
        }
    }
    return NULL;
}

static void s_memo_store(struct tb_grammar_matcher *m, const uint32_t *key, uint32_t n,
                         const uint32_t *mask)
{
    size_t words = m->c->words;
    struct memo *e = &m->memo[m->memo_next];
    if (n == 0) {
        return;
    }
    if (!e->bits) {
        e->bits = malloc(words * sizeof(*e->bits)); /* no memo when this fails */
    }
    if (e->bits) {
        memcpy(e->bits, mask, words * sizeof(*mask));
        memcpy(e->key, key, n * sizeof(*key));
        e->n = n;
        m->memo_next = (m->memo_next + 1) % MEMO_SLOTS;
    }
}

int tb_grammar_matcher_fill_mask(tb_grammar_matcher_t *m, uint32_t *mask)
{
    const struct tb_grammar_cache *c = m->c;
    if (m->done) {
        memset(mask, 0, c->words * sizeof(*mask));
        return 0;
    }
    uint32_t key[MEMO_KEY], n = 0;
    const struct memo *hit = s_memo_find(m, key, &n);
    if (hit) {
        memcpy(mask, hit->bits, c->words * sizeof(*mask));
        return 0;
    }
    s_accepted(m, mask);
    for (size_t i = 0; i < m->n_live; i++) {
        uint32_t top = m->cur.set[i];
        if (top >= TB_GS_SPECIAL) {
            continue;
        }
        const struct tb_gcache_entry *e = &c->entries[c->entry_of[m->cur.nodes[top].pos]];
        int rc = s_check_uncertain(m, top, c->ids + e->unc_off, e->unc_n, mask);
        if (rc != 0) {
            return rc;
        }
    }
    s_allow_eos(m, mask);
    s_memo_store(m, key, n, mask);
    return 0;
}

int tb_grammar_matcher_fill_mask_slow(tb_grammar_matcher_t *m, uint32_t *mask)
{
    const struct tb_grammar_cache *c = m->c;
    memset(mask, 0, c->words * sizeof(*mask));
    if (m->done) {
        return 0;
    }
    size_t vocab = tb_token_trie_vocab_size(c->trie);
    struct tb_gstacks *s = &m->cur;
    for (size_t id = 0; id < vocab; id++) {
        size_t n = 0, lo = 0, hi = 0, nodes = s->n_nodes, sets = s->n_set;
        const uint8_t *b = tb_token_trie_bytes(c->trie, (int32_t)id, &n);
        if (!b) {
            continue;
        }
        int rc = s_run(m, 0, m->n_live, b, n, &lo, &hi);
        s->n_nodes = nodes;
        s->n_set = sets;
        if (rc != 0) {
            return rc;
        }
        if (hi > lo) {
            mask[id >> 5] |= 1u << (id & 31);
        }
    }
    s_allow_eos(m, mask);
    return 0;
}

int tb_grammar_matcher_accept(tb_grammar_matcher_t *m, int32_t id)
{
    const struct tb_grammar_cache *c = m->c;
    if (m->done) {
        return TB_EINVAL;
    }
    const int32_t *eos = NULL;
    size_t n_eos = tb_token_trie_eos(c->trie, &eos);
    for (size_t i = 0; i < n_eos; i++) {
        if (eos[i] == id) {
            if (!tb_grammar_matcher_can_end(m)) {
                return TB_EINVAL;
            }
            m->done = true;
            return 0;
        }
    }
    size_t n = 0, lo = 0, hi = 0;
    const uint8_t *b = tb_token_trie_bytes(c->trie, id, &n);
    struct tb_gstacks *s = &m->cur;
    size_t nodes = s->n_nodes, sets = s->n_set;
    int rc = b ? s_run(m, 0, m->n_live, b, n, &lo, &hi) : TB_EINVAL;
    if (rc == 0 && hi == lo) {
        rc = TB_EINVAL;
    }
    if (rc == 0) {
        rc = tb_gstacks_copy(s, lo, hi, &m->next);
    }
    if (rc != 0) {
        s->n_nodes = nodes;
        s->n_set = sets;
        return rc;
    }
    struct tb_gstacks t = m->cur;
    m->cur = m->next;
    m->next = t;
    m->n_live = m->cur.n_set;
    return 0;
}
