/*
 * tb_cpu_quant.c - matmul of the GGUF block dtypes the CPU engine has no packed layout for
 * (Q4_1, Q5_0, Q5_1, IQ4_NL, the K-quants, IQ4_XS): activations quantized once per matmul into
 * the blocks each type is designed for (tb_quant.h), then one integer dot per (weight row,
 * token) through the instruction-set table of tb_quant_kernels.h that the kernel context
 * chose.  The rows are read as the file stores them.
 */
#include "tb_cpu_internal.h"
#include "tb_quant.h"

#define ROW_TILE 16 /* weight rows kept hot in L1/L2 while every token of the batch passes */

size_t tb_cpu_quant_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols)
{
    tb_dtype_t t;
    if (!tb_cpu_dtype_gguf(wdt, &t) || cols < 1) {
        return 0;
    }
    tb_quant_act_t at = tb_quant_act_for(t);
    size_t nb = (size_t)cols / tb_quant_act_block_elems(at);
    size_t split = at == TB_QUANT_ACT_Q8_K ? nb * TB_CPU_Q8K_SPLIT_BYTES : 0;
    return (nb * tb_quant_act_block_bytes(at) + split + 63) / 64 * 64;
}

void tb_cpu_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    tb_dtype_t t;
    if (tb_cpu_dtype_gguf(wdt, &t)) {
        /* cols is whole blocks of the weight type, so of its activation type: cannot fail */
        (void)tb_quant_act_quantize(tb_quant_act_for(t), x, dst, (uint64_t)cols);
        if (tb_quant_act_for(t) == TB_QUANT_ACT_Q8_K) {
            tb_cpu_q8k_split_write(dst, cols / TB_QK_K);
        }
    }
}

void tb_cpu_quant_act_with(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst,
                           void (*q8k_block)(const float *x, struct tb_block_q8_k *y))
{
    tb_dtype_t t;
    if (!tb_cpu_dtype_gguf(wdt, &t) || tb_quant_act_for(t) != TB_QUANT_ACT_Q8_K) {
        tb_cpu_quant_act(wdt, x, cols, dst);
        return;
    }
    struct tb_block_q8_k *y = (struct tb_block_q8_k *)dst;
    for (int64_t b = 0; b < cols / TB_QK_K; b++) {
        q8k_block(x + b * TB_QK_K, y + b);
    }
    tb_cpu_q8k_split_write(dst, cols / TB_QK_K);
}

void tb_cpu_quant_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    tb_dtype_t t;
    if (!tb_cpu_dtype_gguf(a->dtype, &t)) {
        return;
    }
    for (int64_t rt = r0; rt < r1; rt += ROW_TILE) {
        const int64_t re = rt + ROW_TILE < r1 ? rt + ROW_TILE : r1;
        for (int tok = 0; tok < a->n_tok; tok++) {
            const uint8_t *act = a->qx + (size_t)tok * a->qx_stride;
            float *y = a->y + (size_t)tok * a->ldy;
            for (int64_t r = rt; r < re; r++) {
                float v = 0.0f;
                (void)a->qk->dot(t, a->w + (size_t)r * a->w_row_bytes, act, (uint64_t)a->cols,
                                 &v);
                y[r] = v + (a->bias ? a->bias[r] : 0.0f);
            }
        }
    }
}
