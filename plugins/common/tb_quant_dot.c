/*
 * tb_quant_dot.c - reference integer dot products: each weight block unpacked into codes and
 * per-group integer scales and mins (tb_quant_unpack), multiplied with 8-bit activation blocks.
 */
#include "tb_quant_dot.h"

#include <stdlib.h>

#include "tb_errors.h"
#include "tb_quant_kernels_impl.h"

/* Sum of the activation codes of group `g` (`group` elements) of a Q8_K block. */
static int32_t s_k_group_sum(const struct tb_block_q8_k *a, int group, int g)
{
    return group == 16 ? a->bsums[g] : a->bsums[2 * g] + a->bsums[2 * g + 1];
}

int tb_quant_dot(tb_dtype_t t, const void *w, const void *act, uint64_t n, float *out)
{
    tb_quant_act_t at = tb_quant_act_for(t);
    if (at == TB_QUANT_ACT_NONE || n % tb_dtype_block_elems(t) != 0) {
        return TB_EINVAL;
    }
    size_t be = tb_dtype_block_elems(t), bb = tb_dtype_block_bytes(t);
    const uint8_t *wp = w;
    struct tb_quant_unpacked u;
    float acc = 0.0f;
    for (uint64_t b = 0; b < n / be; b++) {
        tb_quant_unpack(t, wp + b * bb, &u);
        const int8_t *qa;
        float da;
        const struct tb_block_q8_k *ak = NULL;
        const struct tb_block_q8_32 *a32 = NULL;
        if (at == TB_QUANT_ACT_Q8_K) {
            ak = (const struct tb_block_q8_k *)act + b;
            qa = ak->qs;
            da = ak->d;
        } else {
            a32 = (const struct tb_block_q8_32 *)act + b;
            qa = a32->qs;
            da = a32->d;
        }
        int32_t isum = 0, msum = 0;
        for (int g = 0; g < u.n / u.group; g++) {
            int32_t s = 0;
            for (int i = g * u.group; i < (g + 1) * u.group; i++) {
                s += (int32_t)u.code[i] * qa[i];
            }
            isum += u.sc[g] * s;
            if (u.mn[g] && ak) {
                msum += u.mn[g] * s_k_group_sum(ak, u.group, g);
            }
        }
        if (a32 && u.mn[0]) { /* Q4_1, Q5_1: one group, min -dmin, times the block's s */
            acc += tb_quant_min_block_sum(u.d, -u.dmin, da, isum, a32->s);
        } else {
            acc += tb_quant_block_sum(u.d, u.dmin, da, isum, msum);
        }
    }
    *out = acc;
    return 0;
}

int tb_quant_matmul(tb_dtype_t t, const void *w, uint64_t rows, uint64_t cols, const float *x,
                    uint64_t n_tok, float *y)
{
    tb_quant_act_t at = tb_quant_act_for(t);
    uint64_t row_bytes;
    if (at == TB_QUANT_ACT_NONE || tb_dtype_bytes(t, cols, &row_bytes) != 0) {
        return TB_EINVAL;
    }
    size_t act_row = cols / tb_quant_act_block_elems(at) * tb_quant_act_block_bytes(at);
    void *qa = malloc(act_row ? act_row : 1);
    if (!qa) {
        return TB_ENOMEM;
    }
    const uint8_t *wp = w;
    for (uint64_t k = 0; k < n_tok; k++) {
        tb_quant_act_quantize(at, x + k * cols, qa, cols);
        for (uint64_t r = 0; r < rows; r++) {
            tb_quant_dot(t, wp + r * row_bytes, qa, cols, &y[k * rows + r]);
        }
    }
    free(qa);
    return 0;
}
