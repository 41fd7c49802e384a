/*
 * attn_decode.cu - decode attention over the paged KV cache: one query per sequence, GQA-aware,
 * split along the sequence (flash-decoding) with a split size fixed by the caller.
 *
 * Kernel 1: one block per (split, kv head, sequence) serves every query head of the group, so
 * each K and V row is read from memory once per group, with 128-bit loads (a row of head_dim
 * f16 is head_dim / 8 chunks, one per lane of a lane group).  It writes the split's softmax
 * partials: the running max m, the sum l and the unnormalised output, per query head.
 * Kernel 2: one block per (query head, sequence) combines the splits in split order.
 *
 * Batch invariance: how a sequence is split depends only on its own length and the fixed split
 * size, and every sum runs in an order that depends only on the sequence, so its output does
 * not change with the other sequences of the batch.
 */
#include "common.cuh"

#define TB_ATT_THREADS 128
#define TB_ATT_HB 4 /* query heads whose outputs a thread accumulates at once */
#define TB_ATT_RED (TB_ATT_THREADS * 8 * TB_ATT_HB) /* floats of the PV reduction buffer */

/* Address of the f16 row of (block, kv head, row). */
TB_DEV const uint16_t *tb_kv_row(const uint16_t *cache, int64_t blk, int kvh, int row,
                                 int n_kv_heads, int bs, int hd)
{
    return cache + ((size_t)(blk * n_kv_heads + kvh) * bs + row) * hd;
}

__global__ void __launch_bounds__(TB_ATT_THREADS)
    tb_attn_split_kernel(int bs, int n_kv_heads, int hd, int64_t n_blocks,
                         const uint16_t *__restrict__ kc, const uint16_t *__restrict__ vc,
                         const int32_t *__restrict__ tables, int max_blocks,
                         const int32_t *__restrict__ ctx_lens, const float *__restrict__ q,
                         size_t ldq, int n_heads, float scale, int split, int n_splits,
                         float *__restrict__ part_o, float *__restrict__ part_ml)
{
    const int sp = blockIdx.x, kvh = blockIdx.y, s = blockIdx.z;
    const int ctx = ctx_lens[s];
    const int t_begin = sp * split;
    if (t_begin >= ctx) {
        return; /* the whole block: the combine reads only splits < ceil(ctx / split) */
    }
    const int n = ctx - t_begin < split ? ctx - t_begin : split;
    const int G = n_heads / n_kv_heads;
    const int L = hd / 8; /* lanes per K/V row (one 16-byte chunk each) */
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int32_t *table = tables + (size_t)s * max_blocks;
    TB_DYNAMIC_SHARED(float, smem);
    float *q_s = smem;            /* G * hd scaled queries */
    float *p_s = q_s + G * hd;    /* G * split scores, then probabilities */
    float *red = p_s + G * split; /* TB_ATT_RED partial outputs */
    float *m_s = red + TB_ATT_RED, *l_s = m_s + G;

    const float *q0 = q + (size_t)s * ldq + (size_t)kvh * G * hd;
    for (int i = tid; i < G * hd; i += TB_ATT_THREADS) {
        q_s[i] = q0[i] * scale;
    }
    __syncthreads();

    /* Scores: each lane group of L lanes takes one token per step. */
    const int per_warp = 32 / L, c = lane % L;
    for (int j0 = 0; j0 < n; j0 += per_warp * (TB_ATT_THREADS / 32)) {
        const int j = j0 + warp * per_warp + lane / L;
        const int pos = t_begin + j;
        const int64_t blk = j < n && pos / bs < max_blocks ? table[pos / bs] : -1;
        const bool ok = j < n && blk >= 0 && blk < n_blocks;
        float kf[8];
        if (ok) {
            tb_f16x8(tb_ld128(tb_kv_row(kc, blk, kvh, pos % bs, n_kv_heads, bs, hd) + c * 8), kf);
        } else {
            TB_UNROLL
            for (int e = 0; e < 8; e++) {
                kf[e] = 0.0f;
            }
        }
        for (int h = 0; h < G; h++) {
            const float *qh = q_s + h * hd + c * 8;
            float part = 0.0f;
            TB_UNROLL
            for (int e = 0; e < 8; e++) {
                part += kf[e] * qh[e];
            }
            part = tb_group_sum(part, L);
            if (j < n && c == 0) {
                p_s[h * split + j] = ok ? part : -INFINITY;
            }
        }
    }
    __syncthreads();

    /* Softmax of the split, per query head: one warp per head. */
    for (int h = warp; h < G; h += TB_ATT_THREADS / 32) {
        float *ph = p_s + h * split;
        float m = -INFINITY;
        for (int j = lane; j < n; j += 32) {
            m = fmaxf(m, ph[j]);
        }
        m = tb_warp_max(m);
        float l = 0.0f;
        for (int j = lane; j < n; j += 32) {
            const float e = m == -INFINITY ? 0.0f : expf(ph[j] - m);
            ph[j] = e;
            l += e;
        }
        l = tb_warp_sum(l);
        if (lane == 0) {
            m_s[h] = m;
            l_s[h] = l;
        }
    }
    __syncthreads();

    /* P.V: thread (g, c) sums tokens g, g + n_grp, ... of chunk c for TB_ATT_HB heads at a time;
     * the groups' sums are then added in group order. */
    const int n_grp = TB_ATT_THREADS / L, g = tid / L;
    const size_t base = ((size_t)s * n_heads + (size_t)kvh * G) * n_splits + sp;
    for (int hb = 0; hb < G; hb += TB_ATT_HB) {
        float acc[TB_ATT_HB][8];
        TB_UNROLL
        for (int u = 0; u < TB_ATT_HB; u++) {
            TB_UNROLL
            for (int e = 0; e < 8; e++) {
                acc[u][e] = 0.0f;
            }
        }
        for (int j = g; j < n; j += n_grp) {
            const int pos = t_begin + j;
            const int64_t blk = pos / bs < max_blocks ? table[pos / bs] : -1;
            if (blk < 0 || blk >= n_blocks) {
                continue;
            }
            float vf[8];
            tb_f16x8(tb_ld128(tb_kv_row(vc, blk, kvh, pos % bs, n_kv_heads, bs, hd) + c * 8), vf);
            TB_UNROLL
            for (int u = 0; u < TB_ATT_HB; u++) {
                const float p = hb + u < G ? p_s[(hb + u) * split + j] : 0.0f;
                TB_UNROLL
                for (int e = 0; e < 8; e++) {
                    acc[u][e] += p * vf[e];
                }
            }
        }
        TB_UNROLL
        for (int u = 0; u < TB_ATT_HB; u++) {
            TB_UNROLL
            for (int e = 0; e < 8; e++) {
                red[(g * TB_ATT_HB + u) * hd + c * 8 + e] = acc[u][e];
            }
        }
        __syncthreads();
        for (int i = tid; i < TB_ATT_HB * hd; i += TB_ATT_THREADS) {
            const int u = i / hd, d = i % hd;
            if (hb + u < G) {
                float sum = 0.0f;
                for (int gg = 0; gg < n_grp; gg++) {
                    sum += red[(gg * TB_ATT_HB + u) * hd + d];
                }
                part_o[(base + (size_t)(hb + u) * n_splits) * hd + d] = sum;
            }
        }
        __syncthreads(); /* red is rewritten by the next head batch */
    }
    for (int h = tid; h < G; h += TB_ATT_THREADS) {
        part_ml[2 * (base + (size_t)h * n_splits)] = m_s[h];
        part_ml[2 * (base + (size_t)h * n_splits) + 1] = l_s[h];
    }
}

/* One block per (query head, sequence): out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s. */
__global__ void tb_attn_combine_kernel(const int32_t *__restrict__ ctx_lens, int n_heads, int hd,
                                       int split, int n_splits, const float *__restrict__ part_o,
                                       const float *__restrict__ part_ml, float *__restrict__ out,
                                       size_t ldo)
{
    const int h = blockIdx.x, s = blockIdx.y;
    const int ns = (ctx_lens[s] + split - 1) / split;
    const size_t base = ((size_t)s * n_heads + h) * n_splits;
    float M = -INFINITY;
    for (int i = 0; i < ns; i++) {
        M = fmaxf(M, part_ml[2 * (base + i)]);
    }
    float den = 0.0f;
    for (int i = 0; i < ns; i++) {
        den += M == -INFINITY ? 0.0f
                              : expf(part_ml[2 * (base + i)] - M) * part_ml[2 * (base + i) + 1];
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float num = 0.0f;
        for (int i = 0; i < ns; i++) {
            const float w = M == -INFINITY ? 0.0f : expf(part_ml[2 * (base + i)] - M);
            num += w * part_o[(base + i) * hd + d];
        }
        out[(size_t)s * ldo + (size_t)h * hd + d] = den > 0.0f ? num / den : 0.0f;
    }
}

static int tb_attn_splits(int max_ctx, int split)
{
    return (max_ctx + split - 1) / split;
}

extern "C" size_t tb_cuda_attn_decode_scratch_floats(int n_seqs, int n_heads, int head_dim,
                                                     int max_ctx, int split)
{
    if (n_seqs < 1 || n_heads < 1 || head_dim < 1 || max_ctx < 1 || split < 1) {
        return 0;
    }
    const size_t parts = (size_t)n_seqs * n_heads * tb_attn_splits(max_ctx, split);
    return parts * ((size_t)head_dim + 2);
}

extern "C" int tb_cuda_attn_decode(const struct tb_cuda_kv_layout *L, const uint16_t *k_cache,
                                   const uint16_t *v_cache, const struct tb_cuda_attn_batch *b,
                                   const float *q, size_t ldq, int n_heads, float scale,
                                   int split, float *scratch, float *out, size_t ldo,
                                   void *stream)
{
    int rc = tb_cuda_kv_layout_check(L);
    if (rc) {
        return rc;
    }
    const int hd = L->head_dim;
    if (!k_cache || !v_cache || !b || !q || !out || !scratch || b->n_seqs < 0 ||
        !b->block_tables || b->max_blocks < 1 || !b->ctx_lens || b->max_ctx < 1 ||
        n_heads < L->n_kv_heads || n_heads % L->n_kv_heads || ldq < (size_t)n_heads * hd ||
        ldo < (size_t)n_heads * hd || split < 32 || split > 256 || split % 32 ||
        !tb_is_aligned16(k_cache) || !tb_is_aligned16(v_cache) || !(scale >= 0.0f)) {
        return TB_EINVAL;
    }
    if (b->n_seqs == 0) {
        return 0;
    }
    const int G = n_heads / L->n_kv_heads;
    const size_t shmem = sizeof(float) *
                         ((size_t)G * hd + (size_t)G * split + TB_ATT_RED + 2 * G);
    if (shmem > 48 * 1024) {
        return TB_ENOTSUP;
    }
    if (scale == 0.0f) {
        scale = 1.0f / sqrtf((float)hd);
    }
    const int ns = tb_attn_splits(b->max_ctx, split);
    float *part_o = scratch;
    float *part_ml = scratch + (size_t)b->n_seqs * n_heads * ns * hd;
    const tb_stream_t st = (tb_stream_t)stream;
    rc = tb_launch(tb_attn_split_kernel,
                   dim3((unsigned)ns, (unsigned)L->n_kv_heads, (unsigned)b->n_seqs),
                   dim3(TB_ATT_THREADS), shmem, st, L->block_size, L->n_kv_heads, hd, L->n_blocks,
                   k_cache, v_cache, b->block_tables, b->max_blocks, b->ctx_lens, q, ldq, n_heads,
                   scale, split, ns, part_o, part_ml);
    if (rc == 0) {
        rc = tb_launch(tb_attn_combine_kernel, dim3((unsigned)n_heads, (unsigned)b->n_seqs),
                       dim3(128), 0, st, b->ctx_lens, n_heads, hd, split, ns,
                       (const float *)part_o, (const float *)part_ml, out, ldo);
    }
    return tb_cuda_status(rc);
}
