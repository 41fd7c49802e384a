/*
 * convert.cu - f32 activation rows to f16 or bf16 rows (round to nearest even), the inputs of
 * the tensor-core GEMMs of prefill (cuBLASLt takes both operands in the weight's type).
 */
#include "common.cuh"

template <int DT>
__global__ void tb_convert_kernel(const float *x, size_t ldx, int n_tok, int64_t cols,
                                  uint16_t *y, size_t ldy)
{
    const int64_t n = (int64_t)n_tok * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / cols, c = i % cols;
        const float v = x[t * (int64_t)ldx + c];
        y[t * (int64_t)ldy + c] = DT == TB_CUDA_F16 ? tb_f32_to_f16(v) : tb_f32_to_bf16(v);
    }
}

extern "C" int tb_cuda_convert(const float *x, size_t ldx, int n_tok, int64_t cols,
                               tb_cuda_dtype_t dtype, void *y, size_t ldy, void *stream)
{
    if (!x || !y || n_tok < 0 || cols < 1 || ldx < (size_t)cols || ldy < (size_t)cols ||
        (dtype != TB_CUDA_F16 && dtype != TB_CUDA_BF16)) {
        return TB_EINVAL;
    }
    const int64_t n = (int64_t)n_tok * cols;
    if (n == 0) {
        return 0;
    }
    const int64_t blocks = (n + 255) / 256;
    const dim3 grid((unsigned)(blocks < 1024 ? blocks : 1024));
    const tb_stream_t s = (tb_stream_t)stream;
    uint16_t *out = (uint16_t *)y;
    const int rc = dtype == TB_CUDA_F16
                       ? tb_launch(tb_convert_kernel<TB_CUDA_F16>, grid, dim3(256), 0, s, x, ldx,
                                   n_tok, cols, out, ldy)
                       : tb_launch(tb_convert_kernel<TB_CUDA_BF16>, grid, dim3(256), 0, s, x, ldx,
                                   n_tok, cols, out, ldy);
    return tb_cuda_status(rc);
}
