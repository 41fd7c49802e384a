/*
 * add.cu - the residual add, out = a + b (the one not fused into an RMSNorm: the last layer's).
 */
#include "common.cuh"

__global__ void tb_add_kernel(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        out[i] = a[i] + b[i];
    }
}

extern "C" int tb_cuda_add(float *out, const float *a, const float *b, int64_t n, void *stream)
{
    if (!out || !a || !b || n < 0) {
        return TB_EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    const int64_t blocks = (n + 255) / 256;
    return tb_cuda_status(tb_launch(tb_add_kernel,
                                    dim3((unsigned)(blocks < 1024 ? blocks : 1024)), dim3(256), 0,
                                    (tb_stream_t)stream, out, a, b, n));
}
