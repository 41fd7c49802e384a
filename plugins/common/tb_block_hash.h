/*
 * tb_block_hash.h - the chained 64-bit hash that names a full KV block for prefix reuse.
 *
 * A block's hash covers its own token ids and, through its parent's hash, every token before
 * it: hash(block i) = tb_block_hash(hash(block i-1), tokens of block i).  The first block of a
 * sequence uses the configured root (TB_BLOCK_HASH_ROOT by default) as its parent.  Two
 * sequences share block i's hash only if they share all (i+1)*block_size leading tokens (up to
 * 64-bit collisions, which the KV manager guards against by comparing the tokens too).
 *
 * The function is MurmurHash64A (Austin Appleby's public-domain design) over the little-endian
 * bytes of the int32 token ids, with the parent hash as its seed.  It is specified to the byte
 * so that the router, which indexes the hashes the engines publish, can compute the same values
 * from a request's token ids (in C by calling this function, elsewhere from this description).
 *
 * Pure function: no state, thread-safe.
 */
#ifndef TB_BLOCK_HASH_H
#define TB_BLOCK_HASH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The parent hash of a sequence's first block unless the KV manager is configured otherwise. */
#define TB_BLOCK_HASH_ROOT 0x7462626c6b726f6fULL /* "tbblkroo" */

/* Returns the hash of a block holding `tokens[0..n)` whose predecessor's hash is `parent`
 * (TB_BLOCK_HASH_ROOT, or the configured root, for the first block).  `tokens` is borrowed for
 * the call and may be NULL when n is 0. */
uint64_t tb_block_hash(uint64_t parent, const int32_t *tokens, uint32_t n);

/* Hashes the full blocks of `tokens[0..n)` in order: writes hash(block i) to `out[i]` for
 * i < n / block_size and returns how many it wrote (at most `max_out`).  Convenience for the
 * router and for tests.  block_size 0 writes nothing and returns 0. */
uint32_t tb_block_hash_chain(uint64_t root, const int32_t *tokens, uint32_t n,
                             uint32_t block_size, uint64_t *out, uint32_t max_out);

#ifdef __cplusplus
}
#endif

#endif /* TB_BLOCK_HASH_H */
