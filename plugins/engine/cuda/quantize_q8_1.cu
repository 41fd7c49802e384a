/*
 * quantize_q8_1.cu - activations to 8-bit blocks of 32 for the integer GEMV: d = max|x| / 127,
 * q = round-to-nearest-even(x / d), then d rounded to f16 where that is a normal f16 (as
 * llama.cpp stores it and the cpu flavour does: tb_quant_act_scale_f16), and the block's
 * d * sum(q), which the Q4_0 dot product needs for the weights' -8 offset.  Values and scales go to separate arrays so the GEMV reads
 * both with wide loads.
 */
#include "common.cuh"

/* One warp per block of 32 values, one lane per value. */
__global__ void tb_quantize_q8_1_kernel(const float *__restrict__ x, size_t ldx, int64_t cols,
                                        int64_t n_total, int8_t *__restrict__ qs,
                                        float *__restrict__ ds)
{
    const int lane = threadIdx.x % 32;
    const int64_t g = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (g >= n_total) {
        return; /* the whole warp */
    }
    const int64_t nb = cols / 32, t = g / nb, j = g % nb;
    const float v = x[t * ldx + j * 32 + lane];
    const float amax = tb_warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const int q = d > 0.0f ? (int)rintf(v / d) : 0;
    qs[t * cols + j * 32 + lane] = (int8_t)q;
    const int sum = tb_warp_sum_int(q);
    if (lane == 0) {
        const float h = tb_f16_to_f32(tb_f32_to_f16(d));
        const float ds16 = h >= 6.103515625e-05f && h < 65504.0f ? h : d; /* 2^-14: normal */
        ds[2 * g] = ds16;
        ds[2 * g + 1] = ds16 * (float)sum;
    }
}

extern "C" int tb_cuda_quantize_q8_1(const float *x, size_t ldx, int n_tok,
                                     const struct tb_cuda_q8_act *act, void *stream)
{
    if (!x || !act || !act->qs || !act->ds || n_tok < 0 || n_tok > act->n_tok ||
        act->cols < TB_CUDA_QBLOCK || act->cols % TB_CUDA_QBLOCK || ldx < (size_t)act->cols) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    const int64_t n_total = (int64_t)n_tok * (act->cols / TB_CUDA_QBLOCK);
    return tb_cuda_status(tb_launch(tb_quantize_q8_1_kernel, dim3((unsigned)((n_total + 3) / 4)),
                                    dim3(128), 0, (tb_stream_t)stream, x, ldx, act->cols, n_total,
                                    act->qs, act->ds));
}
