/*
 * repack_q.cu - splits GGML Q8_0 / Q4_0 blocks (a 2-byte f16 scale then the values, 34 or 18
 * bytes, so no block is 16-byte aligned) into an array of values and an array of scales, so
 * that the GEMV reads the values with 128-bit loads; K-quant super-blocks likewise into quants,
 * 16-byte scale records and (Q6_K) super-block scales (gemv_k.cu).  Runs once per matrix, at
 * load.
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

/* K-quants: one thread per super-block; `qb` quant bytes from src offset `qo`, `rb` record
 * bytes from `ro` (zeros up to 16), and n_sd f16 values from `dof`. */
__global__ void tb_repack_k_kernel(const uint8_t *__restrict__ src, int64_t n_blocks,
                                   int src_bytes, int qo, int qb, int ro, int rb, int dof,
                                   int n_sd, uint8_t *__restrict__ qs, uint8_t *__restrict__ rec,
                                   uint16_t *__restrict__ sd)
{
    const int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks) {
        return; /* no barriers in this kernel */
    }
    const uint8_t *s = src + b * src_bytes;
    for (int i = 0; i < qb; i++) {
        qs[b * qb + i] = s[qo + i];
    }
    for (int i = 0; i < 16; i++) {
        rec[b * 16 + i] = i < rb ? s[ro + i] : 0;
    }
    for (int i = 0; i < n_sd; i++) {
        sd[b * n_sd + i] = (uint16_t)(s[dof + 2 * i] | (s[dof + 2 * i + 1] << 8));
    }
}

extern "C" int tb_cuda_repack_k(tb_cuda_dtype_t dtype, const void *blocks, int64_t rows,
                                int64_t cols, void *qs, void *scales, uint16_t *super_d,
                                void *stream)
{
    if (!tb_cuda_dtype_is_k(dtype) || !blocks || !qs || !scales || rows < 1 ||
        cols < TB_CUDA_KBLOCK || cols % TB_CUDA_KBLOCK ||
        (tb_cuda_k_super_d(dtype) && !super_d)) {
        return TB_EINVAL;
    }
    /* GGUF layouts (bytes): Q2_K scales[16], qs[64], d, dmin (84); Q3_K hmask[32], qs[64],
     * scales[12], d (110); Q4_K d, dmin, scales[12], qs[128] (144); Q5_K d, dmin, scales[12],
     * qh[32], qs[128] (176); Q6_K ql[128], qh[64], scales[16], d (210); IQ4_XS d, scales_h[2],
     * scales_l[4], qs[128] (136) */
    static const struct {
        int src_bytes, qo, ro, rb, dof;
    } L[] = {{84, 16, 0, 16, 80}, {110, 0, 96, 12, 108},  {144, 16, 0, 16, 0},
             {176, 16, 0, 16, 0}, {210, 0, 192, 16, 208}, {136, 8, 0, 8, 0}};
    const int k = (int)dtype - (int)TB_CUDA_Q2_K;
    const int qb = tb_cuda_k_quant_bytes(dtype), n_sd = tb_cuda_k_super_d(dtype);
    const int64_t n = rows * (cols / TB_CUDA_KBLOCK);
    const unsigned grid = (unsigned)((n + 127) / 128);
    return tb_cuda_status(tb_launch(tb_repack_k_kernel, dim3(grid), dim3(128), 0,
                                    (tb_stream_t)stream, (const uint8_t *)blocks, n,
                                    L[k].src_bytes, L[k].qo, qb, L[k].ro, L[k].rb, L[k].dof, n_sd,
                                    (uint8_t *)qs, (uint8_t *)scales, super_d));
}
