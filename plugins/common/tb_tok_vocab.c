/*
 * tb_tok_vocab.c - id <-> piece tables: pieces live in one arena; the index is an open-addressing
 * hash table of ids keyed by the piece's hash.
 */
#include "tb_tok_vocab.h"

#include <stdlib.h>
#include <string.h>

#include "tb_buf.h"
#include "tb_errors.h"
#include "tb_tok_buf.h"
#include "tb_tok_utf8.h"

#define UNSET UINT32_MAX

struct entry {
    uint32_t off; /* into the arena; UNSET when the id has no piece */
    uint32_t len;
    bool indexed;
};

struct tb_tok_vocab {
    size_t n;
    struct entry *e;
    struct tb_buf arena;
    int32_t *slots; /* ids, -1 empty */
    uint32_t *slot_hash;
    size_t mask;
};

int tb_tok_vocab_new(size_t n, tb_tok_vocab_t **out)
{
    *out = NULL;
    if (n > (size_t)INT32_MAX) {
        return TB_E2BIG;
    }
    struct tb_tok_vocab *v = calloc(1, sizeof(*v));
    if (!v) {
        return TB_ENOMEM;
    }
    v->n = n;
    v->e = malloc((n ? n : 1) * sizeof(*v->e));
    if (!v->e) {
        free(v);
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v->e[i].off = UNSET;
        v->e[i].len = 0;
        v->e[i].indexed = false;
    }
    tb_buf_init(&v->arena);
    *out = v;
    return 0;
}

void tb_tok_vocab_destroy(tb_tok_vocab_t **v_p)
{
    if (!v_p || !*v_p) {
        return;
    }
    struct tb_tok_vocab *v = *v_p;
    free(v->e);
    tb_buf_free(&v->arena);
    free(v->slots);
    free(v->slot_hash);
    free(v);
    *v_p = NULL;
}

int tb_tok_vocab_set(tb_tok_vocab_t *v, int32_t id, const char *s, size_t len, bool indexed)
{
    if (id < 0 || (size_t)id >= v->n) {
        return TB_ERANGE;
    }
    if (v->e[id].off != UNSET) {
        return TB_EEXIST;
    }
    if (len > UINT32_MAX / 2 || v->arena.len + len + 1 > UINT32_MAX - 1) {
        return TB_E2BIG;
    }
    uint32_t off = (uint32_t)v->arena.len;
    if (tb_buf_append(&v->arena, s, len) < 0 || tb_buf_append(&v->arena, "", 1) < 0) {
        return TB_ENOMEM;
    }
    v->e[id].off = off;
    v->e[id].len = (uint32_t)len;
    v->e[id].indexed = indexed;
    return 0;
}

static bool s_eq(const struct tb_tok_vocab *v, int32_t id, const char *s, size_t len)
{
    const struct entry *e = &v->e[id];
    return e->len == len && memcmp((char *)v->arena.data + e->off, s, len) == 0;
}

int tb_tok_vocab_build_index(tb_tok_vocab_t *v)
{
    size_t sz = 16;
    while (sz < v->n * 2) {
        sz <<= 1;
    }
    free(v->slots);
    free(v->slot_hash);
    v->slots = malloc(sz * sizeof(*v->slots));
    v->slot_hash = malloc(sz * sizeof(*v->slot_hash));
    if (!v->slots || !v->slot_hash) {
        free(v->slots);
        free(v->slot_hash);
        v->slots = NULL;
        v->slot_hash = NULL;
        return TB_ENOMEM;
    }
    memset(v->slots, 0xFF, sz * sizeof(*v->slots));
    v->mask = sz - 1;
    for (size_t i = 0; i < v->n; i++) {
        struct entry *e = &v->e[i];
        if (e->off == UNSET || !e->indexed) {
            continue;
        }
        const char *s = (char *)v->arena.data + e->off;
        uint64_t h = tb_tok_hash(s, e->len);
        size_t pos = (size_t)h & v->mask;
        while (v->slots[pos] >= 0) {
            if (v->slot_hash[pos] == (uint32_t)(h >> 32) && s_eq(v, v->slots[pos], s, e->len)) {
                break; /* a duplicate piece: the later id replaces the earlier */
            }
            pos = (pos + 1) & v->mask;
        }
        v->slots[pos] = (int32_t)i;
        v->slot_hash[pos] = (uint32_t)(h >> 32);
    }
    return 0;
}

size_t tb_tok_vocab_size(const tb_tok_vocab_t *v)
{
    return v ? v->n : 0;
}

int32_t tb_tok_vocab_find(const tb_tok_vocab_t *v, const char *s, size_t len)
{
    if (!v || !v->slots) {
        return -1;
    }
    uint64_t h = tb_tok_hash(s, len);
    size_t pos = (size_t)h & v->mask;
    uint32_t tag = (uint32_t)(h >> 32);
    while (v->slots[pos] >= 0) {
        if (v->slot_hash[pos] == tag && s_eq(v, v->slots[pos], s, len)) {
            return v->slots[pos];
        }
        pos = (pos + 1) & v->mask;
    }
    return -1;
}

const char *tb_tok_vocab_piece(const tb_tok_vocab_t *v, int32_t id, size_t *len)
{
    if (!v || id < 0 || (size_t)id >= v->n || v->e[id].off == UNSET) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = v->e[id].len;
    }
    return (char *)v->arena.data + v->e[id].off;
}
