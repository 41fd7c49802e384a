/*
 * rmsnorm.cu - RMSNorm, fused with the residual add that precedes it in a transformer layer
 * (x += residual; y = norm(x) * weight): one pass over x instead of two.
 */
#include "common.cuh"

#define TB_RMS_THREADS 256

/* One block per row.  Each thread handles the same elements in both passes, so reading back
 * the x it wrote needs no barrier. */
__global__ void __launch_bounds__(TB_RMS_THREADS)
    tb_rmsnorm_kernel(float *__restrict__ y, float *x, const float *__restrict__ residual,
                      const float *__restrict__ weight, int64_t n, float eps)
{
    TB_SHARED(float, red, 32);
    float *xr = x + blockIdx.x * n;
    float *yr = y + blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (residual) {
            v += residual[blockIdx.x * n + i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = tb_block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        yr[i] = xr[i] * scale * (weight ? weight[i] : 1.0f);
    }
}

extern "C" int tb_cuda_rmsnorm(float *y, float *x, const float *residual, const float *weight,
                               int64_t n, int n_rows, float eps, void *stream)
{
    if (!y || !x || n < 1 || n_rows < 0 || !(eps >= 0.0f)) {
        return TB_EINVAL;
    }
    if (n_rows == 0) {
        return 0;
    }
    return tb_cuda_status(tb_launch(tb_rmsnorm_kernel, dim3((unsigned)n_rows),
                                    dim3(TB_RMS_THREADS), 0, (tb_stream_t)stream, y, x, residual,
                                    weight, n, eps));
}
