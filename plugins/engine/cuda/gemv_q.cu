/*
 * gemv_q.cu - y = x . W^T (+ bias) for Q8_0 and Q4_0 weights (split by repack_q.cu) against
 * q8_1 activations (quantize_q8_1.cu): integer dot products with dp4a, one float multiply-add
 * per block.
 *
 * One warp per output row, as in gemv.cu.  Each lane loads 16 bytes of weights at a time with
 * one 128-bit load: half a Q8_0 block (16 values) or a whole Q4_0 block (32 nibbles), and the
 * matching activation bytes with 128-bit loads too.  Per token, a lane's partial sum runs over
 * its chunks in order and the warp adds lanes in a fixed butterfly: batch invariant.
 */
#include "common.cuh"

#define TB_GEMVQ_WARPS 4
#define TB_GEMVQ_TOK 8

/* sum of the 16 products of int8 vectors a and b */
TB_DEV int tb_dot16(uint4 a, uint4 b)
{
    int s = __dp4a((int)a.x, (int)b.x, 0);
    s = __dp4a((int)a.y, (int)b.y, s);
    s = __dp4a((int)a.z, (int)b.z, s);
    return __dp4a((int)a.w, (int)b.w, s);
}

/* Low and high nibbles of a 128-bit word of Q4_0 values, as two vectors of 16 bytes. */
TB_DEV uint4 tb_lo_nibbles(uint4 u)
{
    return uint4{u.x & 0x0f0f0f0fu, u.y & 0x0f0f0f0fu, u.z & 0x0f0f0f0fu, u.w & 0x0f0f0f0fu};
}
TB_DEV uint4 tb_hi_nibbles(uint4 u)
{
    return uint4{(u.x >> 4) & 0x0f0f0f0fu, (u.y >> 4) & 0x0f0f0f0fu, (u.z >> 4) & 0x0f0f0f0fu,
                 (u.w >> 4) & 0x0f0f0f0fu};
}

template <int DT>
__global__ void __launch_bounds__(TB_GEMVQ_WARPS * 32)
    tb_gemv_q_kernel(const uint8_t *__restrict__ wq, const uint16_t *__restrict__ wd,
                     int64_t rows, int64_t cols, const int8_t *__restrict__ xq,
                     const float2 *__restrict__ xd, int n_tok, const float *__restrict__ bias,
                     float *__restrict__ y, size_t ldy)
{
    constexpr int VPC = DT == TB_CUDA_Q8_0 ? 16 : 32; /* values per 16-byte chunk */
    const int lane = threadIdx.x % 32;
    const int64_t row = (int64_t)blockIdx.x * TB_GEMVQ_WARPS + threadIdx.x / 32;
    const int t0 = blockIdx.y * TB_GEMVQ_TOK;
    const int nt = n_tok - t0 < TB_GEMVQ_TOK ? n_tok - t0 : TB_GEMVQ_TOK;
    if (row >= rows) {
        return; /* the whole warp; no block barrier */
    }
    const int64_t nb = cols / 32, n_chunks = cols / VPC;
    const uint8_t *wr = wq + row * (cols / 32) * (DT == TB_CUDA_Q8_0 ? 32 : 16);
    float acc[TB_GEMVQ_TOK];
    TB_UNROLL
    for (int t = 0; t < TB_GEMVQ_TOK; t++) {
        acc[t] = 0.0f;
    }
    for (int64_t c = lane; c < n_chunks; c += 32) {
        const uint4 w = tb_ld128(wr + c * 16);
        const int64_t blk = c * VPC / 32;
        const float dw = tb_f16_to_f32(wd[row * nb + blk]);
        TB_UNROLL
        for (int t = 0; t < TB_GEMVQ_TOK; t++) {
            if (t < nt) {
                const int8_t *xr = xq + (int64_t)(t0 + t) * cols + c * VPC;
                const float2 d = xd[(int64_t)(t0 + t) * nb + blk];
                if (DT == TB_CUDA_Q8_0) {
                    acc[t] += dw * (d.x * (float)tb_dot16(w, tb_ld128(xr)));
                } else {
                    const int s = tb_dot16(tb_lo_nibbles(w), tb_ld128(xr)) +
                                  tb_dot16(tb_hi_nibbles(w), tb_ld128(xr + 16));
                    acc[t] += dw * (d.x * (float)s - 8.0f * d.y);
                }
            }
        }
    }
    TB_UNROLL
    for (int t = 0; t < TB_GEMVQ_TOK; t++) {
        if (t < nt) {
            const float s = tb_warp_sum(acc[t]);
            if (lane == 0) {
                y[(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
            }
        }
    }
}

extern "C" int tb_cuda_gemv_q(const struct tb_cuda_weight *w, const struct tb_cuda_q8_act *act,
                              int n_tok, const float *bias, float *y, size_t ldy, void *stream)
{
    if (!w || !w->data || !w->scales || !act || !act->qs || !act->ds || !y || n_tok < 0 ||
        n_tok > act->n_tok || w->rows < 1 || w->cols < 32 || w->cols % 32 ||
        act->cols != w->cols || ldy < (size_t)w->rows || !tb_is_aligned16(w->data) ||
        !tb_is_aligned16(act->qs) || ((uintptr_t)act->ds & 7)) {
        return TB_EINVAL;
    }
    if (w->dtype != TB_CUDA_Q8_0 && w->dtype != TB_CUDA_Q4_0) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    const dim3 grid((unsigned)((w->rows + TB_GEMVQ_WARPS - 1) / TB_GEMVQ_WARPS),
                    (unsigned)((n_tok + TB_GEMVQ_TOK - 1) / TB_GEMVQ_TOK));
    const dim3 block(TB_GEMVQ_WARPS * 32);
    const uint8_t *d = (const uint8_t *)w->data;
    const float2 *xd = (const float2 *)act->ds;
    int rc;
    if (w->dtype == TB_CUDA_Q8_0) {
        rc = tb_launch(tb_gemv_q_kernel<TB_CUDA_Q8_0>, grid, block, 0, (tb_stream_t)stream, d,
                       w->scales, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else {
        rc = tb_launch(tb_gemv_q_kernel<TB_CUDA_Q4_0>, grid, block, 0, (tb_stream_t)stream, d,
                       w->scales, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    }
    return tb_cuda_status(rc);
}
