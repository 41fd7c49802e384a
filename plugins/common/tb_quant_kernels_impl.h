/*
 * tb_quant_kernels_impl.h - private to tb_quant_kernels.c and the ISA files: what each
 * instruction set specialises, and the one
 * f32 step per super-block that every path shares with the reference (tb_quant_dot.c), so that
 * all of them round the same way.
 */
#ifndef TB_QUANT_KERNELS_IMPL_H
#define TB_QUANT_KERNELS_IMPL_H

#include <stdint.h>

#include "tb_quant.h"
#include "tb_quant_kernels.h"

/* What an instruction set specialises, each over `nb` blocks: the 32-element types of
 * type `t` with Q8_32 activations; and Q2_K / Q3_K (`q3`), Q4_K / Q5_K (`q5`), Q6_K, IQ4_XS
 * with Q8_K activations. */
struct tb_quant_k_ops {
    float (*q32)(tb_dtype_t t, const uint8_t *w, const struct tb_block_q8_32 *a, uint64_t nb);
    float (*q23_k)(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q3);
    float (*q45_k)(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q5);
    float (*q6_k)(const struct tb_block_q6_k *w, const struct tb_block_q8_k *a, uint64_t nb);
    float (*iq4_xs)(const struct tb_block_iq4_xs *w, const struct tb_block_q8_k *a, uint64_t nb);
};

extern const struct tb_quant_k_ops tb_quant_k_ops_avx2;   /* tb_quant_avx2.c */
extern const struct tb_quant_k_ops tb_quant_k_ops_avx512; /* tb_quant_avx512.c */

/* The AVX2 32-element kernel, which the AVX-512 table shares (one block is one 256-bit row). */
float tb_quant_q32_avx2(tb_dtype_t t, const uint8_t *w, const struct tb_block_q8_32 *a,
                        uint64_t nb);

/* The scales of a Q2_K (`q3` false: sc & 15, and the mins into `mn`) or Q3_K block (the 6-bit
 * scales - 32), one per 16 elements. */
static inline void tb_quant_q23_k_scales(const uint8_t *blk, int q3, int8_t sc[16], int8_t mn[16])
{
    for (int g = 0; g < 16; g++) {
        if (q3) {
            sc[g] = (int8_t)tb_quant_q3_k_scale(((const struct tb_block_q3_k *)blk)->scales, g);
            mn[g] = 0;
        } else {
            uint8_t v = ((const struct tb_block_q2_k *)blk)->scales[g];
            sc[g] = (int8_t)(v & 15);
            mn[g] = (int8_t)(v >> 4);
        }
    }
}

/* Sum over the 16 groups of w[g] * bsums[g]. */
static inline int32_t tb_quant_group_dot(const int8_t w[16], const struct tb_block_q8_k *y)
{
    int32_t s = 0;
    for (int g = 0; g < TB_QK_K / 16; g++) {
        s += w[g] * y->bsums[g];
    }
    return s;
}

/* A block's contribution: (d * da) * isum - (dmin * da) * msum, in this order. */
static inline float tb_quant_block_sum(float d, float dmin, float da, int32_t isum, int32_t msum)
{
    return d * da * (float)isum - dmin * da * (float)msum;
}

/* A Q4_1 / Q5_1 block's contribution: weight scale d and min m, activation scale da and s (the
 * min's factor, tb_block_q8_32), the order ggml's Q4_1 / Q5_1 dots take. */
static inline float tb_quant_min_block_sum(float d, float m, float da, int32_t isum, float s)
{
    return d * da * (float)isum + m * s;
}

/* A Q2_K / Q3_K block's contribution from the unsigned-code products `usum` (Q3_K's codes are
 * taken + 4; the scales and mins as tb_quant_q23_k_scales gave them). */
static inline float tb_quant_q23_k_block_sum(const uint8_t *blk, int q3, const int8_t sc[16],
                                             const int8_t mn[16], const struct tb_block_q8_k *y,
                                             int32_t usum)
{
    if (q3) {
        const struct tb_block_q3_k *x = (const struct tb_block_q3_k *)blk;
        return tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d,
                                  usum - 4 * tb_quant_group_dot(sc, y), 0);
    }
    const struct tb_block_q2_k *x = (const struct tb_block_q2_k *)blk;
    return tb_quant_block_sum(tb_quant_f16(x->d), tb_quant_f16(x->dmin), y->d, usum,
                              tb_quant_group_dot(mn, y));
}

#endif /* TB_QUANT_KERNELS_IMPL_H */
