/*
 * gemv.cu - y = x . W^T (+ bias) for F32, F16 and BF16 weights and a few tokens (decode).
 *
 * One warp per output row.  Lane l reads the row's 16-byte chunks l, l + 32, ... (128-bit
 * loads) and keeps one partial sum per token; the warp then adds the lanes in a fixed
 * butterfly.  Each block serves up to TB_GEMV_TOK tokens, so a weight chunk read once feeds
 * them all, and token t's sum is formed by the same instructions whichever tokens share the
 * block: batch invariant.
 */
#include "common.cuh"

#define TB_GEMV_WARPS 4
#define TB_GEMV_TOK 8

/* Decodes one 16-byte chunk of weights into EPC floats. */
template <int DT> TB_DEV void tb_gemv_decode(uint4 u, float *w)
{
    if (DT == TB_CUDA_F16) {
        tb_f16x8(u, w);
    } else if (DT == TB_CUDA_BF16) {
        tb_bf16x8(u, w);
    } else {
        w[0] = __uint_as_float(u.x);
        w[1] = __uint_as_float(u.y);
        w[2] = __uint_as_float(u.z);
        w[3] = __uint_as_float(u.w);
    }
}

template <int DT>
__global__ void __launch_bounds__(TB_GEMV_WARPS * 32)
    tb_gemv_kernel(const uint8_t *__restrict__ w, int64_t rows, int64_t cols,
                   const float *__restrict__ x, size_t ldx, int n_tok,
                   const float *__restrict__ bias, float *__restrict__ y, size_t ldy)
{
    constexpr int EPC = DT == TB_CUDA_F32 ? 4 : 8; /* elements per 16-byte chunk */
    const int lane = threadIdx.x % 32;
    const int64_t row = (int64_t)blockIdx.x * TB_GEMV_WARPS + threadIdx.x / 32;
    const int t0 = blockIdx.y * TB_GEMV_TOK;
    const int nt = n_tok - t0 < TB_GEMV_TOK ? n_tok - t0 : TB_GEMV_TOK;
    if (row >= rows) {
        return; /* the whole warp; the kernel has no block barrier */
    }
    const uint8_t *wr = w + row * cols * (EPC == 4 ? 4 : 2);
    const int64_t n_chunks = cols / EPC;
    float acc[TB_GEMV_TOK];
    TB_UNROLL
    for (int t = 0; t < TB_GEMV_TOK; t++) {
        acc[t] = 0.0f;
    }
    for (int64_t c = lane; c < n_chunks; c += 32) {
        float wf[EPC];
        tb_gemv_decode<DT>(tb_ld128(wr + c * 16), wf);
        TB_UNROLL
        for (int t = 0; t < TB_GEMV_TOK; t++) {
            if (t < nt) {
                const float4 *xp = reinterpret_cast<const float4 *>(x + (t0 + t) * ldx + c * EPC);
                float s = acc[t];
                TB_UNROLL
                for (int j = 0; j < EPC / 4; j++) {
                    const float4 xv = xp[j];
                    s += wf[4 * j] * xv.x + wf[4 * j + 1] * xv.y + wf[4 * j + 2] * xv.z +
                         wf[4 * j + 3] * xv.w;
                }
                acc[t] = s;
            }
        }
    }
    TB_UNROLL
    for (int t = 0; t < TB_GEMV_TOK; t++) {
        if (t < nt) {
            const float s = tb_warp_sum(acc[t]);
            if (lane == 0) {
                y[(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
            }
        }
    }
}

extern "C" int tb_cuda_gemv(const struct tb_cuda_weight *w, const float *x, size_t ldx, int n_tok,
                            const float *bias, float *y, size_t ldy, void *stream)
{
    if (!w || !w->data || !x || !y || n_tok < 0 || w->rows < 1 || w->cols < 1 ||
        ldx < (size_t)w->cols || ldy < (size_t)w->rows || ldx % 4 || !tb_is_aligned16(x) ||
        !tb_is_aligned16(w->data)) {
        return TB_EINVAL;
    }
    if (w->dtype != TB_CUDA_F32 && w->dtype != TB_CUDA_F16 && w->dtype != TB_CUDA_BF16) {
        return TB_EINVAL;
    }
    if (w->cols % (w->dtype == TB_CUDA_F32 ? 4 : 8)) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    const dim3 grid((unsigned)((w->rows + TB_GEMV_WARPS - 1) / TB_GEMV_WARPS),
                    (unsigned)((n_tok + TB_GEMV_TOK - 1) / TB_GEMV_TOK));
    const dim3 block(TB_GEMV_WARPS * 32);
    const tb_stream_t s = (tb_stream_t)stream;
    const uint8_t *d = (const uint8_t *)w->data;
    int rc;
    if (w->dtype == TB_CUDA_F32) {
        rc = tb_launch(tb_gemv_kernel<TB_CUDA_F32>, grid, block, 0, s, d, w->rows, w->cols, x,
                       ldx, n_tok, bias, y, ldy);
    } else if (w->dtype == TB_CUDA_F16) {
        rc = tb_launch(tb_gemv_kernel<TB_CUDA_F16>, grid, block, 0, s, d, w->rows, w->cols, x,
                       ldx, n_tok, bias, y, ldy);
    } else {
        rc = tb_launch(tb_gemv_kernel<TB_CUDA_BF16>, grid, block, 0, s, d, w->rows, w->cols, x,
                       ldx, n_tok, bias, y, ldy);
    }
    return tb_cuda_status(rc);
}
