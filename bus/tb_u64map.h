/*
 * tb_u64map.h - an open-addressing hash map from uint64_t keys to pointers, for the bus's tables
 * (calls by id, connections by instance, requests by caller and id).  Key 0 is reserved.
 * Not thread-safe.  Embedded: tb_u64map_init / tb_u64map_release.
 */
#ifndef TB_U64MAP_H
#define TB_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

struct tb_u64map {
    uint64_t *keys; /* 0 = empty, UINT64_MAX = deleted */
    void **vals;
    size_t cap; /* power of two */
    size_t count;
    size_t used; /* count + tombstones */
};

void tb_u64map_init(struct tb_u64map *m);
void tb_u64map_release(struct tb_u64map *m);

/* Inserts or replaces.  0 or TB_ENOMEM.  `key` must not be 0 or UINT64_MAX. */
int tb_u64map_put(struct tb_u64map *m, uint64_t key, void *val);
/* The value, or NULL. */
void *tb_u64map_get(const struct tb_u64map *m, uint64_t key);
/* Removes and returns the value, or NULL. */
void *tb_u64map_del(struct tb_u64map *m, uint64_t key);

/* Iteration: for (size_t i = 0; tb_u64map_next(m, &i, &k, &v);) { ... }  Deleting the current
 * entry while iterating is allowed; inserting is not. */
bool tb_u64map_next(const struct tb_u64map *m, size_t *it, uint64_t *key, void **val);

#pragma GCC visibility pop

#endif /* TB_U64MAP_H */
