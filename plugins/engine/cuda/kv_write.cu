/*
 * kv_write.cu - stores a batch's new keys and values into the paged f16 cache at the flat
 * slots the KV manager assigned (block * block_size + row).
 */
#include "common.cuh"

/* One block per token. */
__global__ void tb_kv_write_kernel(int block_size, int n_kv_heads, int head_dim, int64_t n_blocks,
                                   uint16_t *__restrict__ kc, uint16_t *__restrict__ vc,
                                   const int32_t *__restrict__ slots, const float *__restrict__ k,
                                   size_t ldk, const float *__restrict__ v, size_t ldv)
{
    const int32_t slot = slots[blockIdx.x];
    if (slot < 0 || slot / block_size >= n_blocks) {
        return; /* the whole block: padding or out of range */
    }
    const int64_t blk = slot / block_size, row = slot % block_size;
    const int n = n_kv_heads * head_dim;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int h = i / head_dim, d = i % head_dim;
        const size_t dst = ((size_t)(blk * n_kv_heads + h) * block_size + row) * head_dim + d;
        kc[dst] = tb_f32_to_f16(k[blockIdx.x * ldk + i]);
        vc[dst] = tb_f32_to_f16(v[blockIdx.x * ldv + i]);
    }
}

/* The shape checks every attention entry point shares. */
int tb_cuda_kv_layout_check(const struct tb_cuda_kv_layout *L)
{
    if (!L || L->block_size < 1 || L->block_size > 256 || L->n_kv_heads < 1 || L->n_blocks < 1) {
        return TB_EINVAL;
    }
    const int hd = L->head_dim;
    if (hd != 8 && hd != 16 && hd != 32 && hd != 64 && hd != 128 && hd != 256) {
        return TB_ENOTSUP;
    }
    return 0;
}

extern "C" int tb_cuda_kv_write(const struct tb_cuda_kv_layout *L, uint16_t *k_cache,
                                uint16_t *v_cache, int n_tok, const int32_t *slots,
                                const float *k, size_t ldk, const float *v, size_t ldv,
                                void *stream)
{
    int rc = tb_cuda_kv_layout_check(L);
    if (rc) {
        return rc;
    }
    const size_t row = (size_t)L->n_kv_heads * L->head_dim;
    if (!k_cache || !v_cache || n_tok < 0 || !slots || !k || !v || ldk < row || ldv < row) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    return tb_cuda_status(tb_launch(tb_kv_write_kernel, dim3((unsigned)n_tok), dim3(128), 0,
                                    (tb_stream_t)stream, L->block_size, L->n_kv_heads,
                                    L->head_dim, L->n_blocks, k_cache, v_cache, slots, k, ldk, v,
                                    ldv));
}
