/*
 * tb_quant_dot.h - reference dot and matrix products of quantized weight rows with activations
 * quantized the way each format is designed for (tb_quant.h): integer products of the codes with
 * 8-bit activations, summed per scale group in int32, scaled once per group, mins applied
 * through the activation block sums.  Portable C, one element at a time: the definition the
 * SIMD and GPU kernels are tested against, not a fast path.
 *
 * Accuracy (tested in tests/unit/common/test_quant_dot.c): against the exact product of the
 * dequantized weights with the *dequantized activations* the result differs only by f32
 * rounding (relative 1e-5 of the sum of the magnitudes of the two terms of each weight value);
 * against the original f32 activations it differs by at most
 * sum_i |w_i| * |x_i - dequant(quant(x))_i| <= sum_i |w_i| * d_block(i) / 2 more.
 *
 * Thread-safety: pure functions.
 */
#ifndef TB_QUANT_DOT_H
#define TB_QUANT_DOT_H

#include <stdint.h>

#include "tb_quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Dot product of the `n` weights of quantized type `t` at `w` (any alignment) with the `n`
 * activations at `act`, quantized by tb_quant_act_quantize(tb_quant_act_for(t), ...).  Writes
 * *out and returns 0; TB_EINVAL when `t` is not quantized or `n` is not whole blocks. */
int tb_quant_dot(tb_dtype_t t, const void *w, const void *act, uint64_t n, float *out);

/* y[k * rows + r] = dot(row r of the [rows, cols] matrix `w` of type `t`, row k of the
 * [n_tok, cols] f32 matrix `x`): quantizes each row of `x` once, then tb_quant_dot.  The caller
 * owns `y` (n_tok * rows floats).  TB_EINVAL as tb_quant_dot; TB_ENOMEM when the quantized
 * activations (allocated here, freed before returning) do not fit. */
int tb_quant_matmul(tb_dtype_t t, const void *w, uint64_t rows, uint64_t cols, const float *x,
                    uint64_t n_tok, float *y);

#ifdef __cplusplus
}
#endif

#endif /* TB_QUANT_DOT_H */
