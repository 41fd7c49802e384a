/* Helpers the emulated CUDA kernel tests share: a seeded generator, aligned buffers and the
 * float64 reference values of stored formats. */
#ifndef TB_CUDA_TEST_UTIL_H
#define TB_CUDA_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/tb_cpu_kernels.h"

static uint64_t s_rng = 0x2545f4914f6cdd1dull;

/* Uniform in [-1, 1). */
static inline float s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (float)((s_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static inline uint32_t s_randu(uint32_t n)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return (uint32_t)((s_rng >> 33) % n);
}

/* A 64-byte aligned, zeroed buffer of `bytes` (the kernels need 16-byte alignment); free(). */
static inline void *s_alloc(size_t bytes)
{
    size_t n = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) {
        memset(p, 0, n ? n : 64);
    }
    return p;
}

static inline float *s_rand_floats(size_t n, float scale)
{
    float *p = (float *)s_alloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) {
        p[i] = s_rand() * scale;
    }
    return p;
}

/* |got - want| <= atol + rtol * |want| */
static inline int s_close(double got, double want, double atol, double rtol)
{
    double d = got - want;
    if (d < 0) {
        d = -d;
    }
    return d <= atol + rtol * (want < 0 ? -want : want);
}

#endif /* TB_CUDA_TEST_UTIL_H */
