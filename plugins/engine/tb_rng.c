/*
 * tb_rng.c - xoshiro256** seeded with splitmix64 (both public-domain designs by Vigna et al.),
 * written from their published descriptions.
 */
#include "tb_rng.h"

uint64_t tb_rng_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void tb_rng_seed(struct tb_rng *rng, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++) {
        rng->s[i] = tb_rng_splitmix64(&st);
    }
}

static inline uint64_t s_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t tb_rng_next(struct tb_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = s_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = s_rotl(s[3], 45);
    return result;
}

double tb_rng_uniform(struct tb_rng *rng)
{
    return (double)(tb_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}
