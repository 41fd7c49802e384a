/*
 * attn_prefill.cu - prefill attention: a chunk of each sequence's queries against its whole
 * cached context (earlier chunks and reused prefix blocks included), causal, GQA.
 *
 * One block per (tile of TB_PF_BQ queries, query head, sequence).  It walks the context in
 * tiles of TB_PF_BK keys: K and V rows are copied from the paged cache into shared memory with
 * 128-bit loads, then scores, an online-softmax update (running max and sum per query, one
 * warp per query row) and the P.V accumulation follow, each separated by a barrier.  The
 * output accumulator stays in shared memory, so any head_dim up to 128 uses the same code.
 */
#include "common.cuh"

#define TB_PF_THREADS 128
#define TB_PF_BQ 16
#define TB_PF_BK 32

/* Shared memory of one block: q and o as floats, the K and V tiles as f16. */
static size_t tb_pf_shmem(int hd)
{
    return sizeof(float) * (2 * TB_PF_BQ * hd + TB_PF_BQ * TB_PF_BK + 3 * TB_PF_BQ + TB_PF_BK) +
           sizeof(uint16_t) * 2 * TB_PF_BK * hd;
}

/* Copies key/value rows k0..k0+TB_PF_BK-1 of kv head kvh into k_s / v_s (zeros past `kend` or
 * for blocks outside the cache); ok_s[j] says whether row j may be attended to. */
TB_DEV void tb_pf_load_tile(const uint16_t *kc, const uint16_t *vc, const int32_t *table,
                            int max_blocks, int64_t n_blocks, int n_kv_heads, int bs, int hd,
                            int kvh, int k0, int kend, uint16_t *k_s, uint16_t *v_s, float *ok_s)
{
    const int L = hd / 8;
    for (int i = threadIdx.x; i < TB_PF_BK * L; i += blockDim.x) {
        const int j = i / L, c = i % L, pos = k0 + j;
        const int64_t blk = pos < kend && pos / bs < max_blocks ? table[pos / bs] : -1;
        const bool ok = blk >= 0 && blk < n_blocks;
        uint4 kv = uint4{0, 0, 0, 0}, vv = uint4{0, 0, 0, 0};
        if (ok) {
            const size_t off = ((size_t)(blk * n_kv_heads + kvh) * bs + pos % bs) * hd + c * 8;
            kv = tb_ld128(kc + off);
            vv = tb_ld128(vc + off);
        }
        *reinterpret_cast<uint4 *>(k_s + j * hd + c * 8) = kv;
        *reinterpret_cast<uint4 *>(v_s + j * hd + c * 8) = vv;
        if (c == 0) {
            ok_s[j] = ok ? 1.0f : 0.0f;
        }
    }
}

__global__ void __launch_bounds__(TB_PF_THREADS) tb_attn_prefill_kernel(
    int bs, int n_kv_heads, int hd, int64_t n_blocks, const uint16_t *__restrict__ kc,
    const uint16_t *__restrict__ vc, const int32_t *__restrict__ tables, int max_blocks,
    const int32_t *__restrict__ ctx_lens, const int32_t *__restrict__ q_start,
    const int32_t *__restrict__ q_lens, const float *__restrict__ q, size_t ldq, int n_heads,
    float scale, float *__restrict__ out, size_t ldo)
{
    const int tile = blockIdx.x, h = blockIdx.y, s = blockIdx.z;
    const int q_len = q_lens[s];
    if (tile * TB_PF_BQ >= q_len) {
        return; /* the whole block */
    }
    const int kvh = h / (n_heads / n_kv_heads);
    const int nq = q_len - tile * TB_PF_BQ < TB_PF_BQ ? q_len - tile * TB_PF_BQ : TB_PF_BQ;
    const int pos0 = ctx_lens[s] - q_len + tile * TB_PF_BQ; /* position of the tile's query 0 */
    const size_t row0 = (size_t)q_start[s] + (size_t)tile * TB_PF_BQ;
    const int32_t *table = tables + (size_t)s * max_blocks;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    TB_DYNAMIC_SHARED(float, smem);
    float *q_s = smem, *o_s = q_s + TB_PF_BQ * hd, *s_s = o_s + TB_PF_BQ * hd;
    float *m_s = s_s + TB_PF_BQ * TB_PF_BK, *l_s = m_s + TB_PF_BQ, *c_s = l_s + TB_PF_BQ;
    float *ok_s = c_s + TB_PF_BQ;
    uint16_t *k_s = reinterpret_cast<uint16_t *>(ok_s + TB_PF_BK), *v_s = k_s + TB_PF_BK * hd;

    for (int i = tid; i < TB_PF_BQ * hd; i += TB_PF_THREADS) {
        const int r = i / hd;
        q_s[i] = r < nq ? q[(row0 + r) * ldq + (size_t)h * hd + i % hd] * scale : 0.0f;
        o_s[i] = 0.0f;
    }
    for (int r = tid; r < TB_PF_BQ; r += TB_PF_THREADS) {
        m_s[r] = -INFINITY;
        l_s[r] = 0.0f;
    }
    const int kend = pos0 + nq; /* keys past the tile's last query are never attended */
    for (int k0 = 0; k0 < kend; k0 += TB_PF_BK) {
        tb_pf_load_tile(kc, vc, table, max_blocks, n_blocks, n_kv_heads, bs, hd, kvh, k0, kend,
                        k_s, v_s, ok_s);
        __syncthreads();
        for (int i = tid; i < TB_PF_BQ * TB_PF_BK; i += TB_PF_THREADS) {
            const int r = i / TB_PF_BK, j = i % TB_PF_BK;
            float sc = -INFINITY;
            if (r < nq && k0 + j <= pos0 + r && ok_s[j] != 0.0f) {
                sc = 0.0f;
                for (int d = 0; d < hd; d++) {
                    sc += q_s[r * hd + d] * tb_f16_to_f32(k_s[j * hd + d]);
                }
            }
            s_s[i] = sc;
        }
        __syncthreads();
        /* online softmax: one warp per query row, one lane per key of the tile */
        for (int r = warp; r < TB_PF_BQ; r += TB_PF_THREADS / 32) {
            const float sc = s_s[r * TB_PF_BK + lane];
            const float m_old = m_s[r];
            const float m_new = fmaxf(m_old, tb_warp_max(sc));
            const float p = m_new == -INFINITY ? 0.0f : expf(sc - m_new);
            const float sum = tb_warp_sum(p);
            s_s[r * TB_PF_BK + lane] = p;
            __syncwarp();
            if (lane == 0) {
                const float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
                c_s[r] = corr;
                l_s[r] = l_s[r] * corr + sum;
                m_s[r] = m_new;
            }
        }
        __syncthreads();
        for (int i = tid; i < TB_PF_BQ * hd; i += TB_PF_THREADS) {
            const int r = i / hd, d = i % hd;
            float acc = o_s[i] * c_s[r];
            for (int j = 0; j < TB_PF_BK; j++) {
                acc += s_s[r * TB_PF_BK + j] * tb_f16_to_f32(v_s[j * hd + d]);
            }
            o_s[i] = acc;
        }
        __syncthreads(); /* the next tile overwrites k_s, v_s and s_s */
    }
    for (int i = tid; i < nq * hd; i += TB_PF_THREADS) {
        const int r = i / hd;
        out[(row0 + r) * ldo + (size_t)h * hd + i % hd] = l_s[r] > 0.0f ? o_s[i] / l_s[r] : 0.0f;
    }
}

extern "C" int tb_cuda_attn_prefill(const struct tb_cuda_kv_layout *L, const uint16_t *k_cache,
                                    const uint16_t *v_cache, const struct tb_cuda_attn_batch *b,
                                    const float *q, size_t ldq, int n_heads, float scale,
                                    float *out, size_t ldo, void *stream)
{
    int rc = tb_cuda_kv_layout_check(L);
    if (rc) {
        return rc;
    }
    const int hd = L->head_dim;
    if (!k_cache || !v_cache || !b || !q || !out || b->n_seqs < 0 || !b->block_tables ||
        b->max_blocks < 1 || !b->ctx_lens || !b->q_start || !b->q_lens || b->max_q_len < 0 ||
        n_heads < L->n_kv_heads || n_heads % L->n_kv_heads || ldq < (size_t)n_heads * hd ||
        ldo < (size_t)n_heads * hd || !tb_is_aligned16(k_cache) || !tb_is_aligned16(v_cache) ||
        !(scale >= 0.0f)) {
        return TB_EINVAL;
    }
    if (hd > 128) {
        return TB_ENOTSUP;
    }
    if (b->n_seqs == 0 || b->max_q_len == 0) {
        return 0;
    }
    if (scale == 0.0f) {
        scale = 1.0f / sqrtf((float)hd);
    }
    const dim3 grid((unsigned)((b->max_q_len + TB_PF_BQ - 1) / TB_PF_BQ), (unsigned)n_heads,
                    (unsigned)b->n_seqs);
    rc = tb_launch(tb_attn_prefill_kernel, grid, dim3(TB_PF_THREADS), tb_pf_shmem(hd),
                   (tb_stream_t)stream, L->block_size, L->n_kv_heads, hd, L->n_blocks, k_cache,
                   v_cache, b->block_tables, b->max_blocks, b->ctx_lens, b->q_start, b->q_lens, q,
                   ldq, n_heads, scale, out, ldo);
    return tb_cuda_status(rc);
}
