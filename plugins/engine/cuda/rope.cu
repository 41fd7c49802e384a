/*
 * rope.cu - rotary position embedding of the queries and keys of a batch, one launch for both.
 *
 * The angle pos * inv_freq is needed to far better than float precision at long positions
 * (at pos 100000 a float angle is off by up to 0.004 rad), and the GPU build must not use
 * doubles (CUDA's sincosf falls back to a double-precision reduction for large arguments, which
 * the static gate refuses).  So the product is split exactly (hi + lo, with fmaf), hi is
 * reduced modulo 2 pi in three exact-or-once-rounded steps (Cody-Waite), lo is added back and
 * the small remainder goes to the fast __sincosf.
 */
#include "common.cuh"

/* sin and cos of p * f, to about 1e-6 absolute for |p * f| up to 2^20. */
TB_DEV void tb_rope_sincos(float p, float f, float *s, float *c)
{
    const float hi = p * f;
    const float lo = fmaf(p, f, -hi); /* p * f == hi + lo exactly */
    const float k = rintf(hi * 0.15915493667125702f);
    float r = fmaf(-k, 6.28125f, hi); /* 2 pi = 6.28125 + 0.00193595886... - 6.5168e-7 + ... */
    r = fmaf(-k, 0.0019359588623046875f, r);
    r = fmaf(-k, -6.516827397717861e-07f, r);
    __sincosf(r + lo, s, c);
}

/* One block per token; each thread turns whole pairs, so no two threads touch one value. */
__global__ void tb_rope_kernel(float *q, size_t ldq, int n_q_heads, float *k, size_t ldk,
                               int n_k_heads, const int32_t *__restrict__ pos, int head_dim,
                               int rot_dim, const float *__restrict__ inv_freq, int mode)
{
    const int half = rot_dim / 2;
    const float p = (float)pos[blockIdx.x];
    const int n_pairs = (n_q_heads + n_k_heads) * half;
    for (int w = threadIdx.x; w < n_pairs; w += blockDim.x) {
        const int head = w / half, i = w % half;
        float *x = head < n_q_heads
                       ? q + blockIdx.x * ldq + (size_t)head * head_dim
                       : k + blockIdx.x * ldk + (size_t)(head - n_q_heads) * head_dim;
        float sn, cs;
        tb_rope_sincos(p, inv_freq[i], &sn, &cs);
        const int a = mode ? 2 * i : i, b = mode ? 2 * i + 1 : i + half;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * cs - x1 * sn;
        x[b] = x0 * sn + x1 * cs;
    }
}

extern "C" int tb_cuda_rope(float *q, size_t ldq, int n_q_heads, float *k, size_t ldk,
                            int n_k_heads, int n_tok, const int32_t *pos, int head_dim,
                            int rot_dim, const float *inv_freq, int mode, void *stream)
{
    if (!q || !pos || !inv_freq || n_tok < 0 || n_q_heads < 1 || head_dim < 2 || rot_dim < 2 ||
        rot_dim % 2 || rot_dim > head_dim || (mode != 0 && mode != 1) ||
        ldq < (size_t)n_q_heads * head_dim ||
        (k && (n_k_heads < 1 || ldk < (size_t)n_k_heads * head_dim))) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    return tb_cuda_status(tb_launch(tb_rope_kernel, dim3((unsigned)n_tok), dim3(128), 0,
                                    (tb_stream_t)stream, q, ldq, n_q_heads, k, ldk,
                                    k ? n_k_heads : 0, pos, head_dim, rot_dim, inv_freq, mode));
}
