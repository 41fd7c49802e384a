/*
 * tb_bpe.c - BPE merging over a doubly linked list of symbols with a binary min-heap of
 * candidate pairs.  Stale heap entries are detected when popped (the pair no longer exists or
 * no longer produces the same token) and skipped, so each merge costs O(log n).
 */
#include "tb_bpe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_tok_utf8.h"

#define EMPTY_KEY UINT64_MAX

struct merge_slot {
    uint64_t key; /* left << 32 | right; EMPTY_KEY when free */
    uint32_t rank;
    int32_t merged;
};

struct tb_bpe {
    struct tb_bpe_config cfg;
    struct merge_slot *slots;
    size_t mask;
    size_t n_merges;
    int32_t byte_ids[256]; /* "<0xXX>" tokens */
    int32_t raw_ids[256];  /* single-byte tokens */
};

struct sym {
    int32_t id;
    uint32_t start;
    uint32_t len;
    int32_t prev;
    int32_t next;
};

struct cand {
    double prio; /* lower merges first */
    int32_t pos; /* left symbol */
    int32_t right;
    int32_t merged;
    uint32_t size; /* SCORES: byte length of the merged symbol */
};

int tb_bpe_new(const struct tb_bpe_config *cfg, tb_bpe_t **out)
{
    *out = NULL;
    struct tb_bpe *b = calloc(1, sizeof(*b));
    if (!b) {
        return TB_ENOMEM;
    }
    b->cfg = *cfg;
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof(name), "<0x%02X>", i);
        b->byte_ids[i] = tb_tok_vocab_find(cfg->vocab, name, 6);
        char c = (char)i;
        b->raw_ids[i] = tb_tok_vocab_find(cfg->vocab, &c, 1);
    }
    b->mask = 1023;
    b->slots = malloc((b->mask + 1) * sizeof(*b->slots));
    if (!b->slots) {
        free(b);
        return TB_ENOMEM;
    }
    for (size_t i = 0; i <= b->mask; i++) {
        b->slots[i].key = EMPTY_KEY;
    }
    *out = b;
    return 0;
}

void tb_bpe_destroy(tb_bpe_t **b_p)
{
    if (!b_p || !*b_p) {
        return;
    }
    free((*b_p)->slots);
    free(*b_p);
    *b_p = NULL;
}

static size_t s_key_hash(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xFF51AFD7ED558CCDULL;
    key ^= key >> 33;
    return (size_t)key;
}

static int s_grow(struct tb_bpe *b)
{
    size_t n = (b->mask + 1) * 2;
    struct merge_slot *s = malloc(n * sizeof(*s));
    if (!s) {
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        s[i].key = EMPTY_KEY;
    }
    for (size_t i = 0; i <= b->mask; i++) {
        if (b->slots[i].key == EMPTY_KEY) {
            continue;
        }
        size_t pos = s_key_hash(b->slots[i].key) & (n - 1);
        while (s[pos].key != EMPTY_KEY) {
            pos = (pos + 1) & (n - 1);
        }
        s[pos] = b->slots[i];
    }
    free(b->slots);
    b->slots = s;
    b->mask = n - 1;
    return 0;
}

int tb_bpe_add_merge(tb_bpe_t *b, int32_t left, int32_t right, int32_t merged, uint32_t rank)
{
    if (left < 0 || right < 0 || merged < 0) {
        return TB_EINVAL;
    }
    if ((b->n_merges + 1) * 2 > b->mask + 1 && s_grow(b) < 0) {
        return TB_ENOMEM;
    }
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t pos = s_key_hash(key) & b->mask;
    while (b->slots[pos].key != EMPTY_KEY) {
        if (b->slots[pos].key == key) {
            if (b->cfg.last_merge_wins) {
                b->slots[pos].rank = rank;
                b->slots[pos].merged = merged;
            }
            return 0;
        }
        pos = (pos + 1) & b->mask;
    }
    b->slots[pos].key = key;
    b->slots[pos].rank = rank;
    b->slots[pos].merged = merged;
    b->n_merges++;
    return 0;
}

size_t tb_bpe_merge_count(const tb_bpe_t *b)
{
    return b ? b->n_merges : 0;
}

static const struct merge_slot *s_find_merge(const struct tb_bpe *b, int32_t left, int32_t right)
{
    if (left < 0 || right < 0 || b->n_merges == 0) {
        return NULL;
    }
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t pos = s_key_hash(key) & b->mask;
    while (b->slots[pos].key != EMPTY_KEY) {
        if (b->slots[pos].key == key) {
            return &b->slots[pos];
        }
        pos = (pos + 1) & b->mask;
    }
    return NULL;
}

void tb_bpe_work_release(struct tb_bpe_work *w)
{
    free(w->sym);
    free(w->heap);
    memset(w, 0, sizeof(*w));
}

/* ---- heap of candidates ---------------------------------------------------------------- */

struct heap {
    struct cand *a;
    size_t n;
    size_t cap;
};

static bool s_less(const struct cand *x, const struct cand *y)
{
    return x->prio < y->prio || (x->prio == y->prio && x->pos < y->pos);
}

static int s_heap_push(struct heap *h, struct cand c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct cand *a = realloc(h->a, cap * sizeof(*a));
        if (!a) {
            return TB_ENOMEM;
        }
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!s_less(&c, &h->a[p])) {
            break;
        }
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = c;
    return 0;
}

static struct cand s_heap_pop(struct heap *h)
{
    struct cand top = h->a[0];
    struct cand last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= h->n) {
            break;
        }
        size_t m = (l + 1 < h->n && s_less(&h->a[l + 1], &h->a[l])) ? l + 1 : l;
        if (!s_less(&h->a[m], &last)) {
            break;
        }
        h->a[i] = h->a[m];
        i = m;
    }
    if (h->n > 0) {
        h->a[i] = last;
    }
    return top;
}

/* ---- symbols -------------------------------------------------------------------------- */

struct syms {
    struct sym *a;
    size_t n;
    size_t cap;
};

static int s_sym_push(struct syms *s, int32_t id, size_t start, size_t len)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct sym *a = realloc(s->a, cap * sizeof(*a));
        if (!a) {
            return TB_ENOMEM;
        }
        s->a = a;
        s->cap = cap;
    }
    struct sym *y = &s->a[s->n];
    y->id = id;
    y->start = (uint32_t)start;
    y->len = (uint32_t)len;
    y->prev = (int32_t)s->n - 1;
    y->next = -1;
    if (s->n > 0) {
        s->a[s->n - 1].next = (int32_t)s->n;
    }
    s->n++;
    return 0;
}

/* Pushes the candidate pair (left, right) when it can merge. */
static int s_try_pair(const struct tb_bpe *b, const char *word, const struct syms *s,
                      struct heap *h, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) {
        return 0;
    }
    const struct sym *l = &s->a[left];
    const struct sym *r = &s->a[right];
    struct cand c = {0};
    c.pos = left;
    c.right = right;
    if (b->cfg.mode == TB_BPE_RANKS) {
        const struct merge_slot *m = s_find_merge(b, l->id, r->id);
        if (!m) {
            return 0;
        }
        c.prio = m->rank;
        c.merged = m->merged;
    } else {
        uint32_t size = l->len + r->len;
        int32_t id = tb_tok_vocab_find(b->cfg.vocab, word + l->start, size);
        if (id < 0) {
            return 0;
        }
        c.prio = -(double)b->cfg.scores[id];
        c.merged = id;
        c.size = size;
    }
    return s_heap_push(h, c);
}

/* Appends the ids for a run of bytes that is not a token. */
static int s_missing(const struct tb_bpe *b, const char *p, size_t n, struct tb_tok_ids *out)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)p[i];
        int32_t id = -1;
        if (b->cfg.missing == TB_BPE_MISSING_RAW_BYTE) {
            id = b->raw_ids[byte];
        } else {
            id = b->byte_ids[byte] >= 0 ? b->byte_ids[byte] : b->cfg.unk_id;
        }
        if (id >= 0 && tb_tok_ids_push(out, id) < 0) {
            return TB_ENOMEM;
        }
    }
    return 0;
}

/* Builds the initial symbols, Hugging Face style: each character is a token, or its byte
 * tokens, or (fused) unknown tokens, or nothing. */
static int s_initial_hf(const struct tb_bpe *b, const char *word, size_t len, struct syms *s)
{
    int32_t unk_id = -1;
    size_t unk_start = 0, unk_len = 0;
    size_t i = 0;
    while (i < len) {
        size_t cl = tb_utf8_lead_len((uint8_t)word[i]);
        if (cl > len - i) {
            cl = len - i;
        }
        int32_t id = tb_tok_vocab_find(b->cfg.vocab, word + i, cl);
        if (id >= 0) {
            if (unk_id >= 0) {
                if (s_sym_push(s, unk_id, unk_start, unk_len) < 0) {
                    return TB_ENOMEM;
                }
                unk_id = -1;
            }
            if (s_sym_push(s, id, i, cl) < 0) {
                return TB_ENOMEM;
            }
            i += cl;
            continue;
        }
        bool bytes_ok = b->cfg.byte_fallback;
        for (size_t k = 0; bytes_ok && k < cl; k++) {
            bytes_ok = b->byte_ids[(uint8_t)word[i + k]] >= 0;
        }
        if (bytes_ok) {
            /* The reference leaves a pending unknown token pending here, so it lands after
             * these bytes; kept for identical output. */
            for (size_t k = 0; k < cl; k++) {
                if (s_sym_push(s, b->byte_ids[(uint8_t)word[i + k]], i + k, 1) < 0) {
                    return TB_ENOMEM;
                }
            }
        } else if (b->cfg.unk_id >= 0) {
            if (unk_id >= 0 && b->cfg.fuse_unk) {
                unk_len += cl;
            } else {
                if (unk_id >= 0 && s_sym_push(s, unk_id, unk_start, unk_len) < 0) {
                    return TB_ENOMEM;
                }
                unk_id = b->cfg.unk_id;
                unk_start = i;
                unk_len = cl;
            }
        }
        i += cl;
    }
    if (unk_id >= 0 && s_sym_push(s, unk_id, unk_start, unk_len) < 0) {
        return TB_ENOMEM;
    }
    return 0;
}

/* One symbol per character, id -1 where the character is not a token. */
static int s_initial_chars(const struct tb_bpe *b, const char *word, size_t len, struct syms *s)
{
    size_t i = 0;
    while (i < len) {
        size_t cl = tb_utf8_lead_len((uint8_t)word[i]);
        if (cl > len - i) {
            cl = len - i;
        }
        if (s_sym_push(s, tb_tok_vocab_find(b->cfg.vocab, word + i, cl), i, cl) < 0) {
            return TB_ENOMEM;
        }
        i += cl;
    }
    return 0;
}

int tb_bpe_encode(const tb_bpe_t *b, const char *word, size_t len, struct tb_bpe_work *w,
                  struct tb_tok_ids *out)
{
    int rc = 0;
    struct syms s = {w->sym, 0, w->sym_cap};
    struct heap h = {w->heap, 0, w->heap_cap};

    if (len == 0) {
        return 0;
    }
    if (len >= INT32_MAX) {
        return TB_E2BIG;
    }
    if (b->cfg.ignore_merges) {
        int32_t id = tb_tok_vocab_find(b->cfg.vocab, word, len);
        if (id >= 0) {
            return tb_tok_ids_push(out, id);
        }
    }
    if (b->cfg.missing == TB_BPE_MISSING_HF) {
        rc = s_initial_hf(b, word, len, &s);
    } else {
        rc = s_initial_chars(b, word, len, &s);
    }
    if (rc < 0) {
        goto done;
    }
    for (size_t i = 1; i < s.n; i++) {
        rc = s_try_pair(b, word, &s, &h, (int32_t)i - 1, (int32_t)i);
        if (rc < 0) {
            goto done;
        }
    }
    while (h.n > 0) {
        struct cand c = s_heap_pop(&h);
        struct sym *l = &s.a[c.pos];
        int32_t ri;
        if (b->cfg.mode == TB_BPE_RANKS) {
            /* Valid while the pair still produces the same token. */
            if (l->len == 0 || l->next < 0) {
                continue;
            }
            ri = l->next;
            const struct merge_slot *m = s_find_merge(b, l->id, s.a[ri].id);
            if (!m || m->merged != c.merged) {
                continue;
            }
        } else {
            /* Valid while both symbols are alive and unchanged. */
            ri = c.right;
            if (l->len == 0 || s.a[ri].len == 0 || l->len + s.a[ri].len != c.size) {
                continue;
            }
        }
        struct sym *r = &s.a[ri];
        l->len += r->len;
        l->id = c.merged;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) {
            s.a[r->next].prev = c.pos;
        }
        rc = s_try_pair(b, word, &s, &h, l->prev, c.pos);
        if (rc == 0) {
            rc = s_try_pair(b, word, &s, &h, c.pos, l->next);
        }
        if (rc < 0) {
            goto done;
        }
    }
    for (int32_t i = s.n > 0 ? 0 : -1; i >= 0; i = s.a[i].next) {
        const struct sym *y = &s.a[i];
        if (y->id >= 0) {
            rc = tb_tok_ids_push(out, y->id);
        } else {
            rc = s_missing(b, word + y->start, y->len, out);
        }
        if (rc < 0) {
            goto done;
        }
    }
done:
    w->sym = s.a;
    w->sym_cap = s.cap;
    w->heap = h.a;
    w->heap_cap = h.cap;
    return rc;
}
