/*
 * tb_block_hash.c - MurmurHash64A over token ids, written from the algorithm's description:
 * 8-byte words (two token ids, the first in the low half) are multiplied, shifted and folded
 * into the state; a trailing odd token is xored in as a 4-byte tail; a final avalanche mixes.
 */
#include "tb_block_hash.h"

#include <stddef.h>

#define MUL 0xc6a4a7935bd1e995ULL
#define SHIFT 47

uint64_t tb_block_hash(uint64_t parent, const int32_t *tokens, uint32_t n)
{
    uint64_t len = (uint64_t)n * 4u;
    uint64_t h = parent ^ (len * MUL);
    uint32_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t k = (uint64_t)(uint32_t)tokens[i] | ((uint64_t)(uint32_t)tokens[i + 1] << 32);
        k *= MUL;
        k ^= k >> SHIFT;
        k *= MUL;
        h ^= k;
        h *= MUL;
    }
    if (i < n) {
        h ^= (uint64_t)(uint32_t)tokens[i];
        h *= MUL;
    }
    h ^= h >> SHIFT;
    h *= MUL;
    h ^= h >> SHIFT;
    return h;
}

uint32_t tb_block_hash_chain(uint64_t root, const int32_t *tokens, uint32_t n,
                             uint32_t block_size, uint64_t *out, uint32_t max_out)
{
    if (block_size == 0) {
        return 0;
    }
    uint32_t nb = n / block_size;
    if (nb > max_out) {
        nb = max_out;
    }
    uint64_t h = root;
    for (uint32_t b = 0; b < nb; b++) {
        h = tb_block_hash(h, tokens + (size_t)b * block_size, block_size);
        out[b] = h;
    }
    return nb;
}
