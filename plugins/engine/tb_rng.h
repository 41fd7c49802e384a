/*
 * tb_rng.h - a small, fast, seedable pseudo-random generator for sampling.
 *
 * xoshiro256** (Blackman and Vigna's public-domain design), seeded by expanding a 64-bit seed
 * with splitmix64 as its authors recommend.  Each sequence owns one, so the tokens a request
 * samples depend on its seed and its logits only, never on what else is in the batch.
 *
 * Plain data, embedded by value: no allocation, no destroy.  Not thread-safe (one owner).
 */
#ifndef TB_RNG_H
#define TB_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The generator's whole state.  Treat as opaque; copying it forks the stream. */
struct tb_rng {
    uint64_t s[4];
};

/* Seeds `rng` from `seed`; every seed (0 included) gives a distinct, well-mixed state. */
void tb_rng_seed(struct tb_rng *rng, uint64_t seed);

/* Returns the next 64 uniformly distributed bits and advances the state. */
uint64_t tb_rng_next(struct tb_rng *rng);

/* Returns a double uniformly distributed in [0, 1) (53 random bits); advances the state once. */
double tb_rng_uniform(struct tb_rng *rng);

/* One splitmix64 step: returns a well-mixed 64-bit value from `*state` and advances it.  Useful
 * to derive independent seeds from one base seed. */
uint64_t tb_rng_splitmix64(uint64_t *state);

#ifdef __cplusplus
}
#endif

#endif /* TB_RNG_H */
