/*
 * tb_token_trie.c - the vocabulary's byte strings sorted, then laid out as a pre-order trie in a
 * single pass over the sorted list (a prefix sorts before its extensions, so pre-order token
 * order is the sorted order).
 */
#include "tb_token_trie.h"

#include <stdbool.h>

#include <stdlib.h>
#include <string.h>

#include "tb_errors.h"
#include "tb_tokenizer_impl.h"

#define MAX_TOKEN_BYTES 65000

struct tb_token_trie {
    size_t vocab_size;
    uint8_t *blob;    /* every token's bytes */
    uint32_t *off;    /* vocab_size + 1 offsets into blob */
    uint8_t *present; /* 1 when the id is in the trie */
    int32_t *eos;
    size_t n_eos;
    size_t n_nodes;
    uint8_t *byte;
    uint16_t *depth;
    uint32_t *end;
    uint32_t *tok_at;
    int32_t *tokens;
    size_t n_tokens;
};

struct entry {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
};

static int s_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c != 0) {
        return c;
    }
    if (x->len != y->len) {
        return x->len < y->len ? -1 : 1;
    }
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Lays out the sorted entries as pre-order nodes. */
static int s_build_nodes(struct tb_token_trie *t, const struct entry *e, size_t n)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        cap += e[i].len;
    }
    t->byte = malloc(cap + 1);
    t->depth = malloc((cap + 1) * sizeof(*t->depth));
    t->end = malloc((cap + 1) * sizeof(*t->end));
    t->tok_at = malloc((cap + 2) * sizeof(*t->tok_at));
    t->tokens = malloc((n + 1) * sizeof(*t->tokens));
    uint32_t *open = malloc((MAX_TOKEN_BYTES + 1) * sizeof(*open)); /* node at each depth */
    if (!t->byte || !t->depth || !t->end || !t->tok_at || !t->tokens || !open) {
        free(open);
        return TB_ENOMEM;
    }
    size_t nn = 0, depth = 0;
    for (size_t i = 0; i < n; i++) {
        size_t lcp = 0;
        if (i > 0) {
            size_t m = e[i - 1].len < e[i].len ? e[i - 1].len : e[i].len;
            while (lcp < m && e[i - 1].p[lcp] == e[i].p[lcp]) {
                lcp++;
            }
        }
        for (; depth > lcp; depth--) {
            t->end[open[depth]] = (uint32_t)nn;
        }
        for (; depth < e[i].len; depth++) {
            t->byte[nn] = e[i].p[depth];
            t->depth[nn] = (uint16_t)(depth + 1);
            t->tok_at[nn] = (uint32_t)i;
            open[depth + 1] = (uint32_t)nn++;
        }
        t->tokens[i] = e[i].id;
    }
    for (; depth > 0; depth--) {
        t->end[open[depth]] = (uint32_t)nn;
    }
    /* A node's tok_at is the first entry that reached it: the first token of its subtree. */
    t->tok_at[nn] = (uint32_t)n;
    free(open);
    t->n_nodes = nn;
    t->n_tokens = n;
    return 0;
}

int tb_token_trie_new(size_t vocab_size, const char *const *bytes, const size_t *lens,
                      const int32_t *eos, size_t n_eos, tb_token_trie_t **out)
{
    int rc = 0;
    *out = NULL;
    struct entry *e = NULL;
    if (vocab_size >= (1u << 31)) {
        return TB_EINVAL;
    }
    for (size_t i = 0; i < n_eos; i++) {
        if (eos[i] < 0 || (size_t)eos[i] >= vocab_size) {
            return TB_EINVAL;
        }
    }
    struct tb_token_trie *t = calloc(1, sizeof(*t));
    if (!t) {
        return TB_ENOMEM;
    }
    t->vocab_size = vocab_size;
    size_t total = 0;
    for (size_t i = 0; i < vocab_size; i++) {
        if (bytes[i] && lens[i] > 0 && lens[i] <= MAX_TOKEN_BYTES) {
            total += lens[i];
        }
    }
    t->blob = malloc(total + 1);
    t->off = malloc((vocab_size + 1) * sizeof(*t->off));
    t->present = calloc(vocab_size + 1, 1);
    t->eos = malloc((n_eos + 1) * sizeof(*t->eos));
    e = malloc((vocab_size + 1) * sizeof(*e));
    if (!t->blob || !t->off || !t->present || !t->eos || !e || total >= UINT32_MAX) {
        rc = total >= UINT32_MAX ? TB_E2BIG : TB_ENOMEM;
        goto fail;
    }
    memcpy(t->eos, eos, n_eos * sizeof(*eos));
    t->n_eos = n_eos;
    size_t k = 0, n = 0;
    for (size_t i = 0; i < vocab_size; i++) {
        t->off[i] = (uint32_t)k;
        if (bytes[i] && lens[i] > 0 && lens[i] <= MAX_TOKEN_BYTES) {
            memcpy(t->blob + k, bytes[i], lens[i]);
            e[n++] = (struct entry){t->blob + k, (uint32_t)lens[i], (int32_t)i};
            t->present[i] = 1;
            k += lens[i];
        }
    }
    t->off[vocab_size] = (uint32_t)k;
    qsort(e, n, sizeof(*e), s_cmp);
    rc = s_build_nodes(t, e, n);
    if (rc != 0) {
        goto fail;
    }
    free(e);
    *out = t;
    return 0;
fail:
    free(e);
    tb_token_trie_destroy(&t);
    return rc;
}

int tb_token_trie_from_tokenizer(const tb_tokenizer_t *tok, tb_token_trie_t **out)
{
    return tb_token_trie_from_tokenizer_eos(tok, NULL, 0, out);
}

/* True when id is one of eos[0..n). */
static bool s_in(const int32_t *eos, size_t n, int32_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (eos[i] == id) {
            return true;
        }
    }
    return false;
}

int tb_token_trie_from_tokenizer_eos(const tb_tokenizer_t *tok, const int32_t *extra_eos,
                                     size_t n_extra, tb_token_trie_t **out)
{
    size_t n = tb_tokenizer_vocab_size(tok);
    const int32_t *teos = NULL;
    size_t n_teos = tb_tokenizer_eos_ids(tok, &teos);
    const char **bytes = calloc(n + 1, sizeof(*bytes));
    size_t *lens = calloc(n + 1, sizeof(*lens));
    int32_t *eos = malloc((n_teos + n_extra + 1) * sizeof(*eos));
    int rc = TB_ENOMEM;
    *out = NULL;
    if (!bytes || !lens || !eos) {
        goto done;
    }
    size_t n_eos = 0;
    for (size_t i = 0; i < n_teos + n_extra; i++) {
        int32_t id = i < n_teos ? teos[i] : extra_eos[i - n_teos];
        if (id >= 0 && (size_t)id < n && !s_in(eos, n_eos, id)) {
            eos[n_eos++] = id;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int32_t id = (int32_t)i;
        if (!tb_tokenizer_piece(tok, id, NULL) || tb_tokenizer_is_special(tok, id) ||
            tb_tokenizer_is_eos(tok, id) || s_in(eos, n_eos, id)) {
            continue;
        }
        bytes[i] = tb_tok_dec_bytes(tok, id, false, &lens[i]);
    }
    rc = tb_token_trie_new(n, bytes, lens, eos, n_eos, out);
done:
    free(bytes);
    free(lens);
    free(eos);
    return rc;
}

void tb_token_trie_destroy(tb_token_trie_t **trie_p)
{
    if (!trie_p || !*trie_p) {
        return;
    }
    struct tb_token_trie *t = *trie_p;
    free(t->blob);
    free(t->off);
    free(t->present);
    free(t->eos);
    free(t->byte);
    free(t->depth);
    free(t->end);
    free(t->tok_at);
    free(t->tokens);
    free(t);
    *trie_p = NULL;
}

size_t tb_token_trie_vocab_size(const tb_token_trie_t *t)
{
    return t->vocab_size;
}

const uint8_t *tb_token_trie_bytes(const tb_token_trie_t *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->vocab_size || !t->present[id]) {
        return NULL;
    }
    if (len) {
        *len = t->off[id + 1] - t->off[id];
    }
    return t->blob + t->off[id];
}

size_t tb_token_trie_eos(const tb_token_trie_t *t, const int32_t **ids)
{
    *ids = t->eos;
    return t->n_eos;
}

void tb_token_trie_nodes(const tb_token_trie_t *t, struct tb_token_trie_nodes *out)
{
    out->n = t->n_nodes;
    out->byte = t->byte;
    out->depth = t->depth;
    out->end = t->end;
    out->tok_at = t->tok_at;
    out->tokens = t->tokens;
    out->n_tokens = t->n_tokens;
}
