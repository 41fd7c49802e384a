/*
 * repack_q.cu - splits GGML Q8_0 / Q4_0 blocks (a 2-byte f16 scale then the values, 34 or 18
 * bytes, so no block is 16-byte aligned) into an array of values and an array of scales, so
 * that the GEMV reads the values with 128-bit loads.  Runs once per matrix, at load.
 */
#include "common.cuh"

/* One thread per GGML block; blocks of the matrix in order (row by row). */
__global__ void tb_repack_q_kernel(const uint8_t *__restrict__ src, int64_t n_blocks,
                                   int src_bytes, int vals_bytes, uint8_t *__restrict__ qs,
                                   uint16_t *__restrict__ scales)
{
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks) {
        return; /* no barriers in this kernel */
    }
    const uint8_t *s = src + b * src_bytes;
    scales[b] = (uint16_t)(s[0] | (s[1] << 8));
    for (int i = 0; i < vals_bytes; i++) {
        qs[b * vals_bytes + i] = s[2 + i];
    }
}

extern "C" int tb_cuda_repack_q(tb_cuda_dtype_t dtype, const void *blocks, int64_t rows,
                                int64_t cols, void *qs, uint16_t *scales, void *stream)
{
    if ((dtype != TB_CUDA_Q8_0 && dtype != TB_CUDA_Q4_0) || !blocks || !qs || !scales ||
        rows < 1 || cols < TB_CUDA_QBLOCK || cols % TB_CUDA_QBLOCK) {
        return TB_EINVAL;
    }
    const int64_t n = rows * (cols / TB_CUDA_QBLOCK);
    const int vals = dtype == TB_CUDA_Q8_0 ? 32 : 16;
    const unsigned grid = (unsigned)((n + 127) / 128);
    return tb_cuda_status(tb_launch(tb_repack_q_kernel, dim3(grid), dim3(128), 0,
                                    (tb_stream_t)stream, (const uint8_t *)blocks, n, vals + 2,
                                    vals, (uint8_t *)qs, scales));
}
