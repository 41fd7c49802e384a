/*
 * tb_arena.h - a bump allocator whose memory is freed in one call (request-scoped memory, decoded
 * messages).  Not thread-safe: one owner at a time.
 */
#ifndef TB_ARENA_H
#define TB_ARENA_H

#include <stddef.h>

/* The bus library exports its API; everything else in it stays hidden. */
#pragma GCC visibility push(default)

typedef struct tb_arena tb_arena_t;

/* A new arena whose chunks are at least `chunk_size` bytes (0: 4 KiB).  Caller owns it; destroy
 * with tb_arena_destroy.  NULL when out of memory. */
tb_arena_t *tb_arena_new(size_t chunk_size);

/* Frees every allocation and the arena; sets *arena_p to NULL; accepts NULL. */
void tb_arena_destroy(tb_arena_t **arena_p);

/* `size` zeroed bytes aligned to 16, valid until the arena is destroyed.  NULL when out of
 * memory or when the arena's total would pass the limit set by tb_arena_set_limit. */
void *tb_arena_alloc(tb_arena_t *arena, size_t size);

/* A NUL-terminated copy of `len` bytes of `s`, owned by the arena. */
char *tb_arena_strndup(tb_arena_t *arena, const char *s, size_t len);

/* Caps the bytes the arena may hold (0: no cap); allocations past it fail softly. */
void tb_arena_set_limit(tb_arena_t *arena, size_t max_bytes);

/* Bytes currently held (chunks included). */
size_t tb_arena_size(const tb_arena_t *arena);

#pragma GCC visibility pop

#endif /* TB_ARENA_H */
