/*
 * swiglu.cu - the SwiGLU gate of the MLP: out = silu(gate) * up = gate / (1 + e^-gate) * up.
 */
#include "common.cuh"

__global__ void tb_swiglu_kernel(float *out, const float *gate, const float *up, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

extern "C" int tb_cuda_swiglu(float *out, const float *gate, const float *up, int64_t n,
                              void *stream)
{
    if (!out || !gate || !up || n < 0) {
        return TB_EINVAL;
    }
    if (n == 0) {
        return 0;
    }
    const int64_t blocks = (n + 255) / 256;
    return tb_cuda_status(tb_launch(tb_swiglu_kernel,
                                    dim3((unsigned)(blocks < 1024 ? blocks : 1024)), dim3(256), 0,
                                    (tb_stream_t)stream, out, gate, up, n));
}
