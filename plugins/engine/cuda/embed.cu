/*
 * embed.cu - the embedding lookup: token ids to rows of floats, decoded from the table's
 * stored format (the same layout the output GEMV reads, so a tied embedding is stored once).
 */
#include "common.cuh"

TB_DEV float tb_embed_value(tb_cuda_dtype_t dt, const uint8_t *data, const uint16_t *scales,
                            int64_t row, int64_t cols, int64_t i)
{
    switch (dt) {
    case TB_CUDA_F32:
        return reinterpret_cast<const float *>(data)[row * cols + i];
    case TB_CUDA_F16:
        return tb_f16_to_f32(reinterpret_cast<const uint16_t *>(data)[row * cols + i]);
    case TB_CUDA_BF16:
        return tb_bf16_to_f32(reinterpret_cast<const uint16_t *>(data)[row * cols + i]);
    case TB_CUDA_Q8_0:
        return tb_f16_to_f32(scales[(row * cols + i) / 32]) *
               (float)reinterpret_cast<const int8_t *>(data)[row * cols + i];
    default: { /* Q4_0 */
        const int64_t blk = (row * cols + i) / 32;
        const int j = (int)(i % 32);
        const uint8_t byte = data[blk * 16 + j % 16];
        const int nib = j < 16 ? (byte & 15) : (byte >> 4);
        return tb_f16_to_f32(scales[blk]) * (float)(nib - 8);
    }
    }
}

/* One block per token. */
__global__ void tb_embed_kernel(tb_cuda_dtype_t dt, const uint8_t *__restrict__ data,
                                const uint16_t *__restrict__ scales, int64_t rows, int64_t cols,
                                const int32_t *__restrict__ tokens, float *__restrict__ out,
                                size_t ldo)
{
    const int32_t id = tokens[blockIdx.x];
    float *o = out + blockIdx.x * ldo;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        o[i] = id >= 0 && id < rows ? tb_embed_value(dt, data, scales, id, cols, i) : 0.0f;
    }
}

extern "C" int tb_cuda_embed(const struct tb_cuda_weight *t, const int32_t *tokens, int n_tok,
                             float *out, size_t ldo, void *stream)
{
    if (!t || !t->data || !tokens || !out || n_tok < 0 || t->rows < 1 || t->cols < 1 ||
        ldo < (size_t)t->cols || (unsigned)t->dtype > TB_CUDA_Q4_0 ||
        ((t->dtype == TB_CUDA_Q8_0 || t->dtype == TB_CUDA_Q4_0) &&
         (!t->scales || t->cols % TB_CUDA_QBLOCK))) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    return tb_cuda_status(tb_launch(tb_embed_kernel, dim3((unsigned)n_tok), dim3(128), 0,
                                    (tb_stream_t)stream, t->dtype, (const uint8_t *)t->data,
                                    t->scales, t->rows, t->cols, tokens, out, ldo));
}
