/*
 * bias.cu - y[t][o] += bias[o]: the Q/K/V bias after a GEMM (the GEMV kernels fuse it).
 */
#include "common.cuh"

__global__ void tb_bias_kernel(float *y, size_t ldy, int n_tok, int64_t rows, const float *bias)
{
    const int64_t n = (int64_t)n_tok * rows;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / rows, o = i % rows;
        y[t * (int64_t)ldy + o] += bias[o];
    }
}

extern "C" int tb_cuda_bias_add(float *y, size_t ldy, int n_tok, int64_t rows, const float *bias,
                                void *stream)
{
    if (!y || !bias || n_tok < 0 || rows < 1 || ldy < (size_t)rows) {
        return TB_EINVAL;
    }
    const int64_t n = (int64_t)n_tok * rows;
    if (n == 0) {
        return 0;
    }
    const int64_t blocks = (n + 255) / 256;
    return tb_cuda_status(tb_launch(tb_bias_kernel,
                                    dim3((unsigned)(blocks < 1024 ? blocks : 1024)), dim3(256), 0,
                                    (tb_stream_t)stream, y, ldy, n_tok, rows, bias));
}
