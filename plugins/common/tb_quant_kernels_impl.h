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

/* What an instruction set specialises: `nb` super-blocks of Q4_K / Q5_K (`q5`) or Q6_K. */
struct tb_quant_k_ops {
    float (*q45_k)(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q5);
    float (*q6_k)(const struct tb_block_q6_k *w, const struct tb_block_q8_k *a, uint64_t nb);
};

extern const struct tb_quant_k_ops tb_quant_k_ops_avx2;   /* tb_quant_avx2.c */
extern const struct tb_quant_k_ops tb_quant_k_ops_avx512; /* tb_quant_avx512.c */

/* Q6_K stores its codes + 32: sum over groups of scale * 32 * (the group's activation sum) is
 * what the unsigned products overcount, divided by 32. */
static inline int32_t tb_quant_q6_k_offset(const struct tb_block_q6_k *x,
                                           const struct tb_block_q8_k *y)
{
    int32_t offset = 0;
    for (int g = 0; g < TB_QK_K / 16; g++) {
        offset += x->scales[g] * y->bsums[g];
    }
    return offset;
}

/* A block's contribution: (d * da) * isum - (dmin * da) * msum, in this order. */
static inline float tb_quant_block_sum(float d, float dmin, float da, int32_t isum,
                                       int32_t msum)
{
    return d * da * (float)isum - dmin * da * (float)msum;
}

#endif /* TB_QUANT_KERNELS_IMPL_H */
