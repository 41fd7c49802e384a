/* tb_arena: chunked bump allocation freed all at once (nginx pools, msgpack zones).  The first
 * chunk shares the arena's allocation: a small arena (a decoded bus message) costs one malloc and
 * one free, which matters at several decodes per request. */
#include "tb_arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, 16-aligned */
};

struct tb_arena {
    struct chunk *head;
    size_t chunk_size;
    size_t total;
    size_t limit;
    struct chunk *first; /* inside this allocation, after the struct; not freed on its own */
};

#define HDR ((sizeof(struct chunk) + 15) & ~(size_t)15)
#define ARENA_HDR ((sizeof(struct tb_arena) + 15) & ~(size_t)15)

tb_arena_t *tb_arena_new(size_t chunk_size)
{
    chunk_size = chunk_size ? (chunk_size + 15) & ~(size_t)15 : 4096;
    if (chunk_size > SIZE_MAX / 2) {
        return NULL;
    }
    tb_arena_t *a = malloc(ARENA_HDR + HDR + chunk_size);
    if (a) {
        struct chunk *c = (struct chunk *)((uint8_t *)a + ARENA_HDR);
        c->next = NULL;
        c->size = chunk_size;
        c->used = 0;
        a->head = a->first = c;
        a->chunk_size = chunk_size;
        a->total = HDR + chunk_size;
        a->limit = 0;
    }
    return a;
}

void tb_arena_destroy(tb_arena_t **arena_p)
{
    if (!arena_p || !*arena_p) {
        return;
    }
    struct chunk *c = (*arena_p)->head;
    while (c) {
        struct chunk *next = c->next;
        if (c != (*arena_p)->first) {
            free(c);
        }
        c = next;
    }
    free(*arena_p);
    *arena_p = NULL;
}

void *tb_arena_alloc(tb_arena_t *a, size_t size)
{
    if (size > SIZE_MAX / 2) {
        return NULL;
    }
    size = (size + 15) & ~(size_t)15;
    if (size == 0) {
        size = 16;
    }
    struct chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t want = size > a->chunk_size ? size : a->chunk_size;
        if (a->limit && a->total + want + HDR > a->limit) {
            return NULL;
        }
        c = malloc(HDR + want);
        if (!c) {
            return NULL;
        }
        c->size = want;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += HDR + want;
    }
    void *p = (uint8_t *)c + HDR + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *tb_arena_strndup(tb_arena_t *a, const char *s, size_t len)
{
    char *p = tb_arena_alloc(a, len + 1);
    if (p && len) {
        memcpy(p, s, len);
    }
    return p;
}

void tb_arena_set_limit(tb_arena_t *a, size_t max_bytes)
{
    a->limit = max_bytes;
}

size_t tb_arena_size(const tb_arena_t *a)
{
    return a->total;
}
