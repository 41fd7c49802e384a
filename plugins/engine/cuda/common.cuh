/*
 * common.cuh - what every kernel file of the CUDA flavour shares: the portability header, the
 * public launch API, warp and block reductions in a fixed order, and 128-bit load helpers.
 * Not a public header.
 */
#ifndef TB_CUDA_COMMON_CUH
#define TB_CUDA_COMMON_CUH

#include <math.h>
#include <stdint.h>

#include "tb_cuda_compat.h"
#include "tb_cuda_kernels.h"
#include "tb_errors.h"

#define TB_FULL_MASK 0xffffffffu

/* Launch status as a TB_E* code. */
static inline int tb_cuda_status(int launch_rc)
{
    return launch_rc ? TB_EIO : 0;
}

static inline bool tb_is_aligned16(const void *p)
{
    return ((uintptr_t)p & 15) == 0;
}

/* Sum over groups of `width` lanes (a power of two <= 32); every lane of a group gets the same
 * value, reduced in the same butterfly order whatever the data: the fixed order that batch
 * invariance needs.  All 32 lanes must call. */
TB_DEV float tb_group_sum(float v, int width)
{
    for (int o = width / 2; o > 0; o >>= 1) {
        v += __shfl_xor_sync(TB_FULL_MASK, v, o);
    }
    return v;
}

TB_DEV float tb_warp_sum(float v)
{
    return tb_group_sum(v, 32);
}

TB_DEV int tb_warp_sum_int(int v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(TB_FULL_MASK, v, o);
    }
    return v;
}

TB_DEV float tb_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(TB_FULL_MASK, v, o));
    }
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024): warp sums, then every thread
 * adds the warp sums in warp order.  `red` is 32 floats of shared memory.  Every thread of the
 * block must call; all get the result. */
TB_DEV float tb_block_sum(float v, float *red)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    v = tb_warp_sum(v);
    if (lane == 0) {
        red[warp] = v;
    }
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < n_warps; i++) {
        t += red[i];
    }
    __syncthreads(); /* red may be reused */
    return t;
}

/* One 128-bit load (LDG.E.128 on the GPU); p must be 16-byte aligned. */
TB_DEV uint4 tb_ld128(const void *p)
{
    return *reinterpret_cast<const uint4 *>(p);
}

/* The eight f16 values of a 128-bit word, as floats. */
TB_DEV void tb_f16x8(uint4 u, float *f)
{
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    TB_UNROLL
    for (int i = 0; i < 4; i++) {
        f[2 * i] = tb_f16_to_f32((uint16_t)(w[i] & 0xffff));
        f[2 * i + 1] = tb_f16_to_f32((uint16_t)(w[i] >> 16));
    }
}

/* The eight bf16 values of a 128-bit word, as floats. */
TB_DEV void tb_bf16x8(uint4 u, float *f)
{
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    TB_UNROLL
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}

/* IQ4_NL / IQ4_XS's non-linear code: the int8 value of 4-bit code c (0..15) as a byte, from the
 * table packed in four words (GGUF's kvalues_iq4nl: -127 -104 -83 -65 -49 -35 -22 -10 1 13 25
 * 38 53 69 89 113), without indexing a local array (local memory: the static gate). */
TB_DEV uint32_t tb_iq4_byte(uint32_t c)
{
    const uint32_t t = c < 4    ? 0xbfad9881u
                       : c < 8  ? 0xf6eaddcfu
                       : c < 12 ? 0x26190d01u
                                : 0x71594535u;
    return (t >> (8 * (c % 4))) & 0xffu;
}

/* Checks an attention or KV layout (kv_write.cu): 0, TB_EINVAL, or TB_ENOTSUP for a head_dim
 * the kernels do not cover. */
int tb_cuda_kv_layout_check(const struct tb_cuda_kv_layout *layout);

#endif /* TB_CUDA_COMMON_CUH */
