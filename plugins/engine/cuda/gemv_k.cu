/*
 * gemv_k.cu - y = x . W^T (+ bias) for the K-quant weights Q2_K .. Q6_K (repacked by repack_q.cu)
 * against the q8_1 activations of quantize_q8_1.cu: integer dot products with
 * dp4a, the weights never dequantized to a float copy.
 *
 * A super-block of 256 values is cut into four "units" of 64 values; one warp serves one output
 * row and lane l takes units l, l + 32, ... of it.  Per unit a lane reads its quants with one
 * (Q2_K), two (Q3_K, Q4_K), three (Q6_K) or four (Q5_K) 128-bit loads, the super-block's 16-byte
 * scale record with one, and the 64 matching activation bytes with four.
 *  - Q4_K / Q5_K: unit k of a super-block is sub-blocks 2k and 2k + 1 (32 values each, one
 *    q8_1 block each): value = d * sc * q - dmin * m, so per sub-block
 *    d * sc * d_x * dot(q, q_x) - dmin * m * (d_x * sum(q_x)), the second factor being the
 *    activation block's stored scaled sum.
 *  - Q6_K: unit (n, h) is four groups of 16 values (128 n + 16 h + 32 i, i = 0..3), each with
 *    its own int8 scale: value = d * sc * (q - 32), so per group
 *    d * sc * d_x * (dot(q, q_x) - 32 * sum16(q_x)), the 16-wide sum a dp4a against ones.
 *  - Q3_K / Q2_K: unit (n, h) as Q6_K's, 2-bit quants (+ Q3_K's high bit):
 *    Q3_K d * sc * d_x * (dot(q, q_x) - 4 * sum16(q_x)) (q = low bits | high bit << 2),
 *    Q2_K d * sc * d_x * dot(q, q_x) - dmin * m * d_x * sum16(q_x).
 * Per token, a lane's partial sum runs over its units in order and the warp adds lanes in a
 * fixed butterfly: batch invariant, like gemv_q.cu.
 */
#include "common.cuh"

#define TB_GEMVK_WARPS 4
#define TB_GEMVK_TOK 8

/* sum of the 16 products of int8 vectors a and b */
TB_DEV int tb_k_dot16(uint4 a, uint4 b)
{
    int s = __dp4a((int)a.x, (int)b.x, 0);
    s = __dp4a((int)a.y, (int)b.y, s);
    s = __dp4a((int)a.z, (int)b.z, s);
    return __dp4a((int)a.w, (int)b.w, s);
}

/* (u >> sh) & mask on every 32-bit word, then shifted left by `up`, or-ed into `base` */
TB_DEV uint4 tb_k_bits(uint4 base, uint4 u, int sh, uint32_t mask, int up)
{
    return uint4{base.x | (((u.x >> sh) & mask) << up), base.y | (((u.y >> sh) & mask) << up),
                 base.z | (((u.z >> sh) & mask) << up), base.w | (((u.w >> sh) & mask) << up)};
}

/* Byte i (0..15) of a 128-bit word, without indexing a local array (which would live in local
 * memory: the static gate). */
TB_DEV uint32_t tb_k_byte(uint4 u, int i)
{
    const uint32_t w = i < 4 ? u.x : i < 8 ? u.y : i < 12 ? u.z : u.w;
    return (w >> (8 * (i % 4))) & 0xffu;
}

/* Scale and min of sub-block s (0..7) from a Q4_K / Q5_K record (bytes 4..15 are the packed
 * six-bit scales and mins; GGML's get_scale_min_k4). */
TB_DEV void tb_k_scale_min(uint4 rec, int s, int *sc, int *m)
{
    if (s < 4) {
        *sc = (int)(tb_k_byte(rec, 4 + s) & 63);
        *m = (int)(tb_k_byte(rec, 8 + s) & 63);
    } else {
        *sc = (int)((tb_k_byte(rec, 8 + s) & 15) | ((tb_k_byte(rec, s) >> 6) << 4));
        *m = (int)((tb_k_byte(rec, 8 + s) >> 4) | ((tb_k_byte(rec, 4 + s) >> 6) << 4));
    }
}

/* What both kernels start with: the warp's row, its token block [t0, t0 + nt), the row's
 * super-blocks and activation blocks; a warp past the last row leaves (warp-uniform). */
#define TB_GEMVK_PROLOGUE                                                                        \
    const int lane = threadIdx.x % 32;                                                           \
    const int64_t row = (int64_t)blockIdx.x * TB_GEMVK_WARPS + threadIdx.x / 32;                 \
    const int t0 = blockIdx.y * TB_GEMVK_TOK;                                                    \
    const int nt = n_tok - t0 < TB_GEMVK_TOK ? n_tok - t0 : TB_GEMVK_TOK;                        \
    if (row >= rows) {                                                                           \
        return; /* the whole warp; no block barrier */                                           \
    }                                                                                            \
    const int64_t nsb = cols / 256, nb = cols / 32;

/* The warp's sums of its nt tokens (lanes added in a fixed butterfly), + bias, to y. */
TB_DEV void tb_k_store(const float *acc, int nt, int t0, int lane, int64_t row, const float *bias,
                       float *y, size_t ldy)
{
    TB_UNROLL
    for (int t = 0; t < TB_GEMVK_TOK; t++) {
        if (t < nt) {
            const float s = tb_warp_sum(acc[t]);
            if (lane == 0) {
                y[(t0 + t) * ldy + row] = s + (bias ? bias[row] : 0.0f);
            }
        }
    }
}

/* The four words of IQ4_XS values of the 16 codes in u's low (hi false) or high nibbles. */
TB_DEV uint4 tb_iq4_lookup(uint4 u, bool hi)
{
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
    TB_UNROLL
    for (int i = 0; i < 4; i++) {
        uint32_t r = 0;
        TB_UNROLL
        for (int b = 0; b < 4; b++) {
            r |= tb_iq4_byte((w[i] >> (8 * b + (hi ? 4 : 0))) & 15) << (8 * b);
        }
        w[i] = r;
    }
    return uint4{w[0], w[1], w[2], w[3]};
}

/* Q4_K, Q5_K and IQ4_XS: a unit is sub-blocks 2k and 2k + 1 of 32 values.  IQ4_XS keeps each
 * sub-block's 32 codes in 16 bytes (low nibbles the first 16 values, high the next), a signed
 * six-bit scale and no min. */
template <int DT>
__global__ void __launch_bounds__(TB_GEMVK_WARPS * 32)
    tb_gemv_k45_kernel(const uint8_t *__restrict__ wq, const uint4 *__restrict__ rec,
                       int64_t rows, int64_t cols, const int8_t *__restrict__ xq,
                       const float2 *__restrict__ xd, int n_tok, const float *__restrict__ bias,
                       float *__restrict__ y, size_t ldy)
{
    constexpr bool Q5 = DT == TB_CUDA_Q5_K, IQ4 = DT == TB_CUDA_IQ4_XS;
    constexpr int QB = Q5 ? 160 : 128; /* quant bytes per super-block: (qh 32,) qs 128 */
    TB_GEMVK_PROLOGUE
    float acc[TB_GEMVK_TOK] = {};
    for (int64_t u = lane; u < nsb * 4; u += 32) {
        const int64_t sb = u / 4;
        const int k = (int)(u % 4);
        const uint8_t *q = wq + (row * nsb + sb) * QB;
        const uint8_t *qs = q + (Q5 ? 32 : 0) + 32 * k;
        const uint4 w0 = tb_ld128(qs), w1 = tb_ld128(qs + 16);
        /* a0, a1: sub-block 2k's values 0..15, 16..31; b0, b1: sub-block 2k + 1's */
        uint4 a0 = tb_k_bits(uint4{0, 0, 0, 0}, w0, 0, 0x0f0f0f0fu, 0);
        uint4 a1 = tb_k_bits(uint4{0, 0, 0, 0}, w1, 0, 0x0f0f0f0fu, 0);
        uint4 b0 = tb_k_bits(uint4{0, 0, 0, 0}, w0, 4, 0x0f0f0f0fu, 0);
        uint4 b1 = tb_k_bits(uint4{0, 0, 0, 0}, w1, 4, 0x0f0f0f0fu, 0);
        if (IQ4) {
            a0 = tb_iq4_lookup(w0, false), a1 = tb_iq4_lookup(w0, true);
            b0 = tb_iq4_lookup(w1, false), b1 = tb_iq4_lookup(w1, true);
        }
        if (Q5) {
            const uint4 h0 = tb_ld128(q), h1 = tb_ld128(q + 16);
            a0 = tb_k_bits(a0, h0, 2 * k, 0x01010101u, 4);
            a1 = tb_k_bits(a1, h1, 2 * k, 0x01010101u, 4);
            b0 = tb_k_bits(b0, h0, 2 * k + 1, 0x01010101u, 4);
            b1 = tb_k_bits(b1, h1, 2 * k + 1, 0x01010101u, 4);
        }
        const uint4 r = rec[row * nsb + sb];
        const float d = tb_f16_to_f32((uint16_t)(r.x & 0xffff));
        const float dmin = IQ4 ? 0.0f : tb_f16_to_f32((uint16_t)(r.x >> 16));
        int sca, ma, scb, mb;
        if (IQ4) {
            const uint32_t sh = r.x >> 16;
            sca = (int)(((tb_k_byte(r, 4 + k) & 15) | (((sh >> (4 * k)) & 3) << 4))) - 32;
            scb = (int)(((tb_k_byte(r, 4 + k) >> 4) | (((sh >> (4 * k + 2)) & 3) << 4))) - 32;
            ma = mb = 0;
        } else {
            tb_k_scale_min(r, 2 * k, &sca, &ma);
            tb_k_scale_min(r, 2 * k + 1, &scb, &mb);
        }
        const int64_t blk = sb * 8 + 2 * k; /* activation block of sub-block 2k */
        TB_UNROLL
        for (int t = 0; t < TB_GEMVK_TOK; t++) {
            if (t < nt) {
                const int8_t *xr = xq + (int64_t)(t0 + t) * cols + blk * 32;
                const float2 da = xd[(int64_t)(t0 + t) * nb + blk];
                const float2 db = xd[(int64_t)(t0 + t) * nb + blk + 1];
                const int sa = tb_k_dot16(a0, tb_ld128(xr)) + tb_k_dot16(a1, tb_ld128(xr + 16));
                const int sbv = tb_k_dot16(b0, tb_ld128(xr + 32)) +
                                tb_k_dot16(b1, tb_ld128(xr + 48));
                acc[t] += d * ((float)sca * da.x * (float)sa + (float)scb * db.x * (float)sbv) -
                          dmin * ((float)ma * da.y + (float)mb * db.y);
            }
        }
    }
    tb_k_store(acc, nt, t0, lane, row, bias, y, ldy);
}

/* One unit (n, h) of a super-block of the types with groups of 16 (Q6_K, Q3_K, Q2_K), decoded:
 * the four groups' codes (group j: values 128 n + 32 j + 16 h .. + 15, scale index
 * 8 n + 2 j + h) as unsigned bytes v[j] with the type's offset `off` to subtract, their scales
 * sc[j] and mins mn[j], and the super-block's d and dmin.
 *  - Q6_K: quants ql[128], qh[64]; rec = 16 int8 scales; sd = d.  code = 6 bits - 32.
 *  - Q3_K: quants hmask[32], qs[64]; rec = 12 packed six-bit scales (- 32); sd = d.
 *    code = 2 low bits | high bit << 2, - 4.
 *  - Q2_K: quants qs[64]; rec = 16 bytes of scale (low nibble) and min (high); sd = {d, dmin}. */
template <int DT>
TB_DEV void tb_k16_unit(const uint8_t *q, uint4 r, const uint16_t *sd, int n, int h, uint4 *v,
                        float *sc, float *mn, float *d, float *dmin)
{
    const uint4 zero = {0, 0, 0, 0};
    if (DT == TB_CUDA_Q6_K) {
        const uint4 l0 = tb_ld128(q + 64 * n + 16 * h), l1 = tb_ld128(q + 64 * n + 32 + 16 * h);
        const uint4 hh = tb_ld128(q + 128 + 32 * n + 16 * h);
        TB_UNROLL
        for (int j = 0; j < 4; j++) {
            v[j] = tb_k_bits(tb_k_bits(zero, j % 2 ? l1 : l0, 4 * (j / 2), 0x0f0f0f0fu, 0), hh,
                             2 * j, 0x03030303u, 4);
        }
    } else {
        const uint4 qv = tb_ld128(q + (DT == TB_CUDA_Q3_K ? 32 : 0) + 32 * n + 16 * h);
        TB_UNROLL
        for (int j = 0; j < 4; j++) {
            v[j] = tb_k_bits(zero, qv, 2 * j, 0x03030303u, 0);
        }
        if (DT == TB_CUDA_Q3_K) {
            const uint4 hm = tb_ld128(q + 16 * h);
            TB_UNROLL
            for (int j = 0; j < 4; j++) {
                v[j] = tb_k_bits(v[j], hm, 4 * n + j, 0x01010101u, 2);
            }
        }
    }
    TB_UNROLL
    for (int j = 0; j < 4; j++) {
        const int g = 8 * n + 2 * j + h;
        if (DT == TB_CUDA_Q6_K) {
            sc[j] = (float)(int8_t)tb_k_byte(r, g);
            mn[j] = 0.0f;
        } else if (DT == TB_CUDA_Q3_K) {
            const int lo = (int)(tb_k_byte(r, g % 8) >> (g < 8 ? 0 : 4)) & 15;
            const int hi = (int)(tb_k_byte(r, 8 + g % 4) >> (2 * (g / 4))) & 3;
            sc[j] = (float)((lo | (hi << 4)) - 32);
            mn[j] = 0.0f;
        } else {
            sc[j] = (float)(tb_k_byte(r, g) & 15);
            mn[j] = (float)(tb_k_byte(r, g) >> 4);
        }
    }
    *d = tb_f16_to_f32(sd[0]);
    *dmin = DT == TB_CUDA_Q2_K ? tb_f16_to_f32(sd[1]) : 0.0f;
}

/* Q6_K, Q3_K and Q2_K: per group d * sc * d_x * (dot(v, q_x) - off * sum16(q_x)), minus (Q2_K)
 * dmin * m * d_x * sum16(q_x); the 16-wide sums a dp4a against ones. */
template <int DT>
__global__ void __launch_bounds__(TB_GEMVK_WARPS * 32)
    tb_gemv_k16_kernel(const uint8_t *__restrict__ wq, const uint4 *__restrict__ rec,
                       const uint16_t *__restrict__ sd, int64_t rows, int64_t cols,
                       const int8_t *__restrict__ xq, const float2 *__restrict__ xd, int n_tok,
                       const float *__restrict__ bias, float *__restrict__ y, size_t ldy)
{
    constexpr int QB = DT == TB_CUDA_Q6_K ? 192 : DT == TB_CUDA_Q3_K ? 96 : 64;
    constexpr int OFF = DT == TB_CUDA_Q6_K ? 32 : DT == TB_CUDA_Q3_K ? 4 : 0;
    constexpr int NSD = DT == TB_CUDA_Q2_K ? 2 : 1;
    TB_GEMVK_PROLOGUE
    const uint4 ones = {0x01010101u, 0x01010101u, 0x01010101u, 0x01010101u};
    float acc[TB_GEMVK_TOK] = {};
    for (int64_t u = lane; u < nsb * 4; u += 32) {
        const int64_t sb = u / 4, b = row * nsb + sb;
        const int n = (int)(u % 4) / 2, h = (int)(u % 2);
        uint4 v[4];
        float sc[4], mn[4], d, dmin;
        tb_k16_unit<DT>(wq + b * QB, rec[b], sd + b * NSD, n, h, v, sc, mn, &d, &dmin);
        const int64_t blk = sb * 8 + 4 * n; /* activation block of group 0 */
        TB_UNROLL
        for (int t = 0; t < TB_GEMVK_TOK; t++) {
            if (t < nt) {
                const int8_t *xr = xq + (int64_t)(t0 + t) * cols + blk * 32 + 16 * h;
                const float2 *dx = xd + (int64_t)(t0 + t) * nb + blk;
                float a = 0.0f, m = 0.0f;
                TB_UNROLL
                for (int j = 0; j < 4; j++) {
                    const uint4 x = tb_ld128(xr + 32 * j);
                    const int s16 = tb_k_dot16(ones, x);
                    a += sc[j] * dx[j].x * (float)(tb_k_dot16(v[j], x) - OFF * s16);
                    if (DT == TB_CUDA_Q2_K) {
                        m += mn[j] * dx[j].x * (float)s16;
                    }
                }
                acc[t] += DT == TB_CUDA_Q2_K ? d * a - dmin * m : d * a;
            }
        }
    }
    tb_k_store(acc, nt, t0, lane, row, bias, y, ldy);
}

extern "C" int tb_cuda_gemv_k(const struct tb_cuda_weight *w, const struct tb_cuda_q8_act *act,
                              int n_tok, const float *bias, float *y, size_t ldy, void *stream)
{
    if (!w || !w->data || !w->scales || !act || !act->qs || !act->ds || !y || n_tok < 0 ||
        n_tok > act->n_tok || w->rows < 1 || w->cols < TB_CUDA_KBLOCK ||
        w->cols % TB_CUDA_KBLOCK || act->cols != w->cols || ldy < (size_t)w->rows ||
        !tb_is_aligned16(w->data) || !tb_is_aligned16(w->scales) || !tb_is_aligned16(act->qs) ||
        ((uintptr_t)act->ds & 7)) {
        return TB_EINVAL;
    }
    if (!tb_cuda_dtype_is_k(w->dtype) || (tb_cuda_k_super_d(w->dtype) && !w->super_d)) {
        return TB_EINVAL;
    }
    if (n_tok == 0) {
        return 0;
    }
    const dim3 grid((unsigned)((w->rows + TB_GEMVK_WARPS - 1) / TB_GEMVK_WARPS),
                    (unsigned)((n_tok + TB_GEMVK_TOK - 1) / TB_GEMVK_TOK));
    const dim3 block(TB_GEMVK_WARPS * 32);
    const uint8_t *d = (const uint8_t *)w->data;
    const uint4 *rec = (const uint4 *)w->scales;
    const float2 *xd = (const float2 *)act->ds;
    int rc;
    if (w->dtype == TB_CUDA_Q4_K) {
        rc = tb_launch(tb_gemv_k45_kernel<TB_CUDA_Q4_K>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else if (w->dtype == TB_CUDA_Q5_K) {
        rc = tb_launch(tb_gemv_k45_kernel<TB_CUDA_Q5_K>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else if (w->dtype == TB_CUDA_IQ4_XS) {
        rc = tb_launch(tb_gemv_k45_kernel<TB_CUDA_IQ4_XS>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else if (w->dtype == TB_CUDA_Q6_K) {
        rc = tb_launch(tb_gemv_k16_kernel<TB_CUDA_Q6_K>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->super_d, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else if (w->dtype == TB_CUDA_Q3_K) {
        rc = tb_launch(tb_gemv_k16_kernel<TB_CUDA_Q3_K>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->super_d, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    } else {
        rc = tb_launch(tb_gemv_k16_kernel<TB_CUDA_Q2_K>, grid, block, 0, (tb_stream_t)stream, d,
                       rec, w->super_d, w->rows, w->cols, act->qs, xd, n_tok, bias, y, ldy);
    }
    return tb_cuda_status(rc);
}
