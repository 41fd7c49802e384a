/* tb_u64map: linear probing over a power-of-two table, tombstones on delete. */
#include "tb_u64map.h"

#include <stdlib.h>

#include "tb_errors.h"

#define EMPTY 0
#define GONE UINT64_MAX

static size_t s_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return (size_t)k;
}

void tb_u64map_init(struct tb_u64map *m)
{
    m->keys = NULL;
    m->vals = NULL;
    m->cap = m->count = m->used = 0;
}

void tb_u64map_release(struct tb_u64map *m)
{
    free(m->keys);
    free(m->vals);
    tb_u64map_init(m);
}

static int s_grow(struct tb_u64map *m)
{
    size_t cap = m->cap ? m->cap : 16;
    while (m->count * 2 + 2 > cap) {
        cap *= 2;
    }
    if (cap == m->cap && m->used * 4 < cap * 3) {
        return 0;
    }
    uint64_t *keys = calloc(cap, sizeof(*keys));
    void **vals = calloc(cap, sizeof(*vals));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return TB_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] != EMPTY && m->keys[i] != GONE) {
            size_t j = s_hash(m->keys[i]) & (cap - 1);
            while (keys[j] != EMPTY) {
                j = (j + 1) & (cap - 1);
            }
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    m->used = m->count;
    return 0;
}

int tb_u64map_put(struct tb_u64map *m, uint64_t key, void *val)
{
    if (key == EMPTY || key == GONE) {
        return TB_EINVAL;
    }
    if ((m->used + 1) * 4 >= m->cap * 3) {
        int rc = s_grow(m);
        if (rc != 0) {
            return rc;
        }
    }
    size_t j = s_hash(key) & (m->cap - 1);
    size_t tomb = (size_t)-1;
    while (m->keys[j] != EMPTY) {
        if (m->keys[j] == key) {
            m->vals[j] = val;
            return 0;
        }
        if (m->keys[j] == GONE && tomb == (size_t)-1) {
            tomb = j;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (tomb != (size_t)-1) {
        j = tomb;
    } else {
        m->used++;
    }
    m->keys[j] = key;
    m->vals[j] = val;
    m->count++;
    return 0;
}

static size_t s_find(const struct tb_u64map *m, uint64_t key)
{
    if (m->cap == 0 || key == EMPTY || key == GONE) {
        return (size_t)-1;
    }
    size_t j = s_hash(key) & (m->cap - 1);
    while (m->keys[j] != EMPTY) {
        if (m->keys[j] == key) {
            return j;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return (size_t)-1;
}

void *tb_u64map_get(const struct tb_u64map *m, uint64_t key)
{
    size_t j = s_find(m, key);
    return j == (size_t)-1 ? NULL : m->vals[j];
}

void *tb_u64map_del(struct tb_u64map *m, uint64_t key)
{
    size_t j = s_find(m, key);
    if (j == (size_t)-1) {
        return NULL;
    }
    void *v = m->vals[j];
    m->keys[j] = GONE;
    m->vals[j] = NULL;
    m->count--;
    return v;
}

bool tb_u64map_next(const struct tb_u64map *m, size_t *it, uint64_t *key, void **val)
{
    for (size_t i = *it; i < m->cap; i++) {
        if (m->keys[i] != EMPTY && m->keys[i] != GONE) {
            *it = i + 1;
            if (key) {
                *key = m->keys[i];
            }
            if (val) {
                *val = m->vals[i];
            }
            return true;
        }
    }
    *it = m->cap;
    return false;
}
