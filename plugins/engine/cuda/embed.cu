/*
 * embed.cu - the embedding lookup: token ids to rows of floats, decoded from the table's
 * stored format (the same layout the output GEMV reads, so a tied embedding is stored once).
 */
#include "common.cuh"

/* Value i of row `row` of a repacked K-quant table (tb_cuda_kernels.h's layout), decoded as
 * GGUF's dequantizers do: (d * sc) * q - (dmin * m) in f32. */
TB_DEV float tb_embed_k(tb_cuda_dtype_t dt, const uint8_t *data, const uint8_t *rec,
                        const uint16_t *super_d, int64_t row, int64_t cols, int64_t i)
{
    const int64_t sb = row * (cols / 256) + i / 256;
    const int j = (int)(i % 256);
    const int qb = dt == TB_CUDA_Q2_K   ? 64
                   : dt == TB_CUDA_Q3_K ? 96
                   : dt == TB_CUDA_Q5_K ? 160
                   : dt == TB_CUDA_Q6_K ? 192
                                        : 128;
    const uint8_t *q = data + sb * qb;
    const uint8_t *r = rec + sb * 16;
    if (dt == TB_CUDA_Q2_K || dt == TB_CUDA_Q3_K) {
        const int n = j / 128, l = j % 32, g = j / 16;
        const int q2 = (q[(dt == TB_CUDA_Q3_K ? 32 : 0) + 32 * n + l] >> (2 * ((j / 32) % 4))) &
                       3;
        if (dt == TB_CUDA_Q2_K) {
            const float d = tb_f16_to_f32(super_d[2 * sb]),
                        dmin = tb_f16_to_f32(super_d[2 * sb + 1]);
            return (d * (float)(r[g] & 15)) * (float)q2 - dmin * (float)(r[g] >> 4);
        }
        const int code = (q[l] >> (j / 32)) & 1 ? q2 : q2 - 4;
        const int lo = (r[g % 8] >> (g < 8 ? 0 : 4)) & 15,
                  hi = (r[8 + g % 4] >> (2 * (g / 4))) & 3;
        return (tb_f16_to_f32(super_d[sb]) * (float)((lo | (hi << 4)) - 32)) * (float)code;
    }
    if (dt == TB_CUDA_Q6_K) {
        const int n = j / 128, l = j % 32, g = (j % 128) / 32; /* g: which of the four 32s */
        const int lo = (q[64 * n + l + 32 * (g % 2)] >> (4 * (g / 2))) & 15;
        const int hi = (q[128 + 32 * n + l] >> (2 * g)) & 3;
        const float dl = tb_f16_to_f32(super_d[sb]) * (float)(int8_t)r[j / 16];
        return dl * (float)((lo | hi << 4) - 32);
    }
    const int s = j / 32, l = j % 32; /* sub-block s */
    if (dt == TB_CUDA_IQ4_XS) {
        const int code = (int)(int8_t)tb_iq4_byte((q[16 * s + l % 16] >> (l < 16 ? 0 : 4)) & 15);
        const int sh = r[2] | (r[3] << 8);
        const int sc = (((r[4 + s / 2] >> (4 * (s % 2))) & 15) | (((sh >> (2 * s)) & 3) << 4)) -
                       32;
        return (tb_f16_to_f32((uint16_t)(r[0] | (r[1] << 8))) * (float)sc) * (float)code;
    }
    const uint8_t *qs = q + (dt == TB_CUDA_Q5_K ? 32 : 0);
    int v = (qs[32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
    if (dt == TB_CUDA_Q5_K) {
        v |= ((q[l] >> s) & 1) << 4;
    }
    const uint8_t *sc = r + 4;
    const int scv = s < 4 ? sc[s] & 63 : (sc[s + 4] & 15) | ((sc[s - 4] >> 6) << 4);
    const int mv = s < 4 ? sc[s + 4] & 63 : (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
    const float d = tb_f16_to_f32((uint16_t)(r[0] | (r[1] << 8)));
    const float dmin = tb_f16_to_f32((uint16_t)(r[2] | (r[3] << 8)));
    return (d * (float)scv) * (float)v - dmin * (float)mv;
}

TB_DEV float tb_embed_value(tb_cuda_dtype_t dt, const uint8_t *data, const uint16_t *scales,
                            const uint16_t *super_d, int64_t row, int64_t cols, int64_t i)
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
    case TB_CUDA_Q2_K:
    case TB_CUDA_Q3_K:
    case TB_CUDA_Q4_K:
    case TB_CUDA_Q5_K:
    case TB_CUDA_Q6_K:
    case TB_CUDA_IQ4_XS:
        return tb_embed_k(dt, data, reinterpret_cast<const uint8_t *>(scales), super_d, row, cols,
                          i);
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
                                const uint16_t *__restrict__ scales,
                                const uint16_t *__restrict__ super_d, int64_t rows, int64_t cols,
                                const int32_t *__restrict__ tokens, float *__restrict__ out,
                                size_t ldo)
{
    const int32_t id = tokens[blockIdx.x];
    float *o = out + blockIdx.x * ldo;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
        o[i] = id >= 0 && id < rows ? tb_embed_value(dt, data, scales, super_d, id, cols, i)
                                    : 0.0f;
    }
}

extern "C" int tb_cuda_embed(const struct tb_cuda_weight *t, const int32_t *tokens, int n_tok,
                             float *out, size_t ldo, void *stream)
{
    if (!t || !t->data || !tokens || !out || n_tok < 0 || t->rows < 1 || t->cols < 1 ||
        ldo < (size_t)t->cols ||
        ((unsigned)t->dtype > TB_CUDA_Q4_0 && !tb_cuda_dtype_is_k(t->dtype)) ||
        ((t->dtype == TB_CUDA_Q8_0 || t->dtype == TB_CUDA_Q4_0) &&
         (!t->scales || t->cols % TB_CUDA_QBLOCK)) ||
        (tb_cuda_dtype_is_k(t->dtype) && (!t->scales || t->cols % TB_CUDA_KBLOCK ||
                                          (tb_cuda_k_super_d(t->dtype) && !t->super_d)))) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    return tb_cuda_status(tb_launch(tb_embed_kernel, dim3((unsigned)n_tok), dim3(128), 0,
                                    (tb_stream_t)stream, t->dtype, (const uint8_t *)t->data,
                                    t->scales, t->super_d, t->rows, t->cols, tokens, out, ldo));
}
