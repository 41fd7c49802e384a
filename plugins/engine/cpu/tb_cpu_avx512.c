/*
 * tb_cpu_avx512.c - kernels for CPUs with AVX-512 F/BW/VL/DQ and VNNI (compiled with those -m
 * flags; called only after runtime detection).
 *
 * Matmul is register-blocked: a microkernel computes an R x T tile (R weight rows, T token rows)
 * over the whole input dimension, decoding each weight vector once per step and using it for all
 * T tokens.  Float weights (F32/F16/BF16) are widened to f32 in registers and FMA'd with f32
 * activations.  Q8_0/Q4_0 weights are multiplied with 8-bit quantized activations by vpdpbusd,
 * two 32-value blocks per 512-bit register:
 *  - Q4_0: nibbles (0..15, unsigned) x activations (signed); the -8 offset is folded in by
 *    starting the int32 accumulator at -8 * sum(activations of the block).
 *  - Q8_0: activations + 128 (unsigned) x weights (signed); the +128 bias is folded in by starting
 *    the accumulator at -128 * sum(weights), computed once per weight tile.
 * Each block's int32 dot is converted to float and scaled by d_w * d_x (per 4-lane group).
 *
 * Quantized-activation layout (this file only): per pair of blocks, a 64-byte record of int8
 * values, a 64-byte record of 16 float scales (d per lane), and for Q4_0 a 64-byte record of 16
 * int32 accumulator starts.  Q4_0 orders the 64 values [x0 0..15 | x1 0..15 | x0 16..31 |
 * x1 16..31] to match the nibble unpacking; Q8_0 keeps them in order, biased by 128.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"

#define AINLINE static inline __attribute__((always_inline))

#define TOK_BLOCK 64 /* token rows kept hot (L2) while a task walks its weight rows */

/* ------------------------------------------------------------------------------------------ */
/* Activation quantization                                                                     */
/* ------------------------------------------------------------------------------------------ */

static size_t s_pair_bytes(tb_cpu_dtype_t wdt)
{
    return wdt == TB_CPU_Q4_0 ? 192 : 128;
}

static size_t s_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols)
{
    if (wdt != TB_CPU_Q8_0 && wdt != TB_CPU_Q4_0) {
        return 0;
    }
    size_t pairs = ((size_t)cols / TB_CPU_QBLOCK + 1) / 2;
    return pairs * s_pair_bytes(wdt);
}

/* Quantizes one block of 32: q (16 int32 per half) and returns d; *sum gets sum(q). */
AINLINE float s_quant_block(const float *x, __m512i *q_lo, __m512i *q_hi, int32_t *sum)
{
    __m512 a = _mm512_loadu_ps(x);
    __m512 b = _mm512_loadu_ps(x + 16);
    __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b));
    float amax = _mm512_reduce_max_ps(m);
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    *q_lo = _mm512_cvtps_epi32(_mm512_mul_ps(a, vid));
    *q_hi = _mm512_cvtps_epi32(_mm512_mul_ps(b, vid));
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(*q_lo, *q_hi));
    return amax / 127.0f;
}

static void s_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    const int64_t nb = cols / TB_CPU_QBLOCK;
    const size_t pb = s_pair_bytes(wdt);
    for (int64_t p = 0; p * 2 < nb; p++) {
        uint8_t *rec = dst + (size_t)p * pb;
        float d[2] = {0.0f, 0.0f};
        int32_t s[2] = {0, 0};
        __m128i q[2][2];
        for (int h = 0; h < 2; h++) {
            if (2 * p + h < nb) {
                __m512i lo, hi;
                d[h] = s_quant_block(x + (2 * p + h) * TB_CPU_QBLOCK, &lo, &hi, &s[h]);
                q[h][0] = _mm512_cvtsepi32_epi8(lo);
                q[h][1] = _mm512_cvtsepi32_epi8(hi);
            } else {
                q[h][0] = q[h][1] = _mm_setzero_si128();
            }
        }
        if (wdt == TB_CPU_Q4_0) {
            _mm_store_si128((__m128i *)(rec + 0), q[0][0]);
            _mm_store_si128((__m128i *)(rec + 16), q[1][0]);
            _mm_store_si128((__m128i *)(rec + 32), q[0][1]);
            _mm_store_si128((__m128i *)(rec + 48), q[1][1]);
            __m512 dv = _mm512_setr_ps(d[0], d[0], d[0], d[0], d[1], d[1], d[1], d[1], d[0], d[0],
                                       d[0], d[0], d[1], d[1], d[1], d[1]);
            _mm512_store_ps((float *)(rec + 64), dv);
            __m512i init = _mm512_setr_epi32(-8 * s[0], 0, 0, 0, -8 * s[1], 0, 0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0);
            _mm512_store_si512((__m512i *)(rec + 128), init);
        } else {
            const __m128i bias = _mm_set1_epi8((char)0x80);
            _mm_store_si128((__m128i *)(rec + 0), _mm_xor_si128(q[0][0], bias));
            _mm_store_si128((__m128i *)(rec + 16), _mm_xor_si128(q[0][1], bias));
            _mm_store_si128((__m128i *)(rec + 32), _mm_xor_si128(q[1][0], bias));
            _mm_store_si128((__m128i *)(rec + 48), _mm_xor_si128(q[1][1], bias));
            __m512 dv = _mm512_castps256_ps512(_mm256_set1_ps(d[0]));
            dv = _mm512_insertf32x8(dv, _mm256_set1_ps(d[1]), 1);
            _mm512_store_ps((float *)(rec + 64), dv);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Float-weight microkernel                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define FR 4 /* weight rows per tile */
#define FT 6 /* token rows per tile */

AINLINE __m512 s_load_w(const uint8_t *p, int dt, __mmask16 m, int masked)
{
    if (dt == TB_CPU_F32) {
        return masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
    }
    __m256i h = masked ? _mm256_maskz_loadu_epi16(m, p) : _mm256_loadu_si256((const __m256i *)p);
    if (dt == TB_CPU_F16) {
        return _mm512_cvtph_ps(h);
    }
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

AINLINE void s_mk_float(const struct tb_mm_args *a, int64_t r, int t0, const int R, const int T,
                        const int dt)
{
    const int64_t n = a->cols;
    const int es = dt == TB_CPU_F32 ? 4 : 2;
    const uint8_t *w[FR];
    const float *x[FT];
    __m512 acc[FR][FT];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        w[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            acc[i][j] = _mm512_setzero_ps();
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        x[j] = a->x + (size_t)(t0 + j) * a->ldx;
    }
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 wv[FR];
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            wv[i] = s_load_w(w[i] + k * es, dt, 0, 0);
        }
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_loadu_ps(x[j] + k);
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
    }
    if (k < n) {
        __mmask16 m = (__mmask16)((1u << (n - k)) - 1);
        __m512 wv[FR];
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            wv[i] = s_load_w(w[i] + k * es, dt, m, 1);
        }
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[j] + k);
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
            }
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        float b = a->bias ? a->bias[r + i] : 0.0f;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            a->y[(size_t)(t0 + j) * a->ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]) + b;
        }
    }
}

/* Batch-1 row: one weight stream at a time (the prefetchers follow it best).  It is the tile
 * kernel at R = T = 1, so a token's outputs are bitwise the same whatever n_tok is and wherever
 * its row sits in the batch (the engine's batch invariance: a request alone and among others
 * must get the same tokens); several accumulators would change the summation order. */
AINLINE void s_mv_float(const struct tb_mm_args *a, int64_t r, const int dt)
{
    s_mk_float(a, r, 0, 1, 1, dt);
}

#define FLOAT_TILE_CASES(R, dt)                                                                    \
    switch (nt) {                                                                                  \
    case 1: s_mk_float(a, r, t, R, 1, dt); break;                                                  \
    case 2: s_mk_float(a, r, t, R, 2, dt); break;                                                  \
    case 3: s_mk_float(a, r, t, R, 3, dt); break;                                                  \
    case 4: s_mk_float(a, r, t, R, 4, dt); break;                                                  \
    case 5: s_mk_float(a, r, t, R, 5, dt); break;                                                  \
    default: s_mk_float(a, r, t, R, 6, dt); break;                                                 \
    }

AINLINE void s_rows_float(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    if (a->n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) {
            s_mv_float(a, r, dt);
        }
        return;
    }
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        int64_t r = r0;
        for (; r + FR <= r1; r += FR) {
            for (int t = tb; t < te; t += FT) {
                int nt = te - t < FT ? te - t : FT;
                FLOAT_TILE_CASES(FR, dt)
            }
        }
        for (; r < r1; r++) {
            for (int t = tb; t < te; t += FT) {
                int nt = te - t < FT ? te - t : FT;
                FLOAT_TILE_CASES(1, dt)
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Quantized-weight microkernels                                                               */
/* ------------------------------------------------------------------------------------------ */

#define QR 4 /* weight rows per tile */
#define QT 4 /* token rows per tile */

/* Decodes blocks 2p and 2p+1 of a Q4_0 row (block 2p+1 absent when `half`): nibbles in
 * [lo0 | lo1 | hi0 | hi1] order, scales as [d0 x4, d1 x4, d0 x4, d1 x4]. */
AINLINE void s_q4_decode(const uint8_t *b0, const int half, __m512i *q, __m512 *dw)
{
    const uint8_t *b1 = b0 + 18;
    __m128i q0 = _mm_loadu_si128((const __m128i *)(b0 + 2));
    __m128i q1 = half ? _mm_setzero_si128() : _mm_loadu_si128((const __m128i *)(b1 + 2));
    __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
    *q = _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
    short h0 = (short)tb_cpu_load_u16(b0);
    short h1 = half ? 0 : (short)tb_cpu_load_u16(b1);
    __m128i hv = _mm_unpacklo_epi64(_mm_set1_epi16(h0), _mm_set1_epi16(h1));
    *dw = _mm512_cvtph_ps(_mm256_broadcastsi128_si256(hv));
}

/* Decodes blocks 2p and 2p+1 of a Q8_0 row: values in order, scales as [d0 x8, d1 x8], and the
 * accumulator start -128 * sum(weights) per lane. */
AINLINE void s_q8_decode(const uint8_t *b0, const int half, __m512i *q, __m512 *dw,
                         __m512i *init)
{
    const uint8_t *b1 = b0 + 34;
    __m256i w0 = _mm256_loadu_si256((const __m256i *)(b0 + 2));
    __m256i w1 = half ? _mm256_setzero_si256() : _mm256_loadu_si256((const __m256i *)(b1 + 2));
    *q = _mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1);
    __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), *q);
    *init = _mm512_sub_epi32(_mm512_setzero_si512(), c);
    short h0 = (short)tb_cpu_load_u16(b0);
    short h1 = half ? 0 : (short)tb_cpu_load_u16(b1);
    __m256i hv = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(h0)),
                                         _mm_set1_epi16(h1), 1);
    *dw = _mm512_cvtph_ps(hv);
}

AINLINE void s_mk_quant_step(const struct tb_mm_args *a, const uint8_t *const *w,
                             const uint8_t *const *xr, __m512 acc[QR][QT], int64_t p,
                             const int half, const int R, const int T, const int dt)
{
    const size_t pb = dt == TB_CPU_Q4_0 ? 192 : 128;
    const size_t wb = dt == TB_CPU_Q4_0 ? 36 : 68; /* bytes per block pair */
    (void)a;
    __m512i q[QR];
    __m512 dw[QR];
    __m512i init[QR];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        if (dt == TB_CPU_Q4_0) {
            s_q4_decode(w[i] + (size_t)p * wb, half, &q[i], &dw[i]);
        } else {
            s_q8_decode(w[i] + (size_t)p * wb, half, &q[i], &dw[i], &init[i]);
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        const uint8_t *rec = xr[j] + (size_t)p * pb;
        __m512i xv = _mm512_load_si512((const __m512i *)rec);
        __m512 dx = _mm512_load_ps((const float *)(rec + 64));
#pragma GCC unroll 8
        for (int i = 0; i < R; i++) {
            __m512i s;
            if (dt == TB_CPU_Q4_0) {
                s = _mm512_dpbusd_epi32(_mm512_load_si512((const __m512i *)(rec + 128)), q[i],
                                        xv);
            } else {
                s = _mm512_dpbusd_epi32(init[i], xv, q[i]);
            }
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx),
                                        acc[i][j]);
        }
    }
}

AINLINE void s_mk_quant(const struct tb_mm_args *a, int64_t r, int t0, const int R, const int T,
                        const int dt)
{
    const int64_t nb = a->cols / TB_CPU_QBLOCK;
    const uint8_t *w[QR];
    const uint8_t *xr[QT];
    __m512 acc[QR][QT];
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        w[i] = a->w + (size_t)(r + i) * a->w_row_bytes;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            acc[i][j] = _mm512_setzero_ps();
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        xr[j] = a->qx + (size_t)(t0 + j) * a->qx_stride;
    }
    int64_t p = 0;
    for (; 2 * p + 2 <= nb; p++) {
        s_mk_quant_step(a, w, xr, acc, p, 0, R, T, dt);
    }
    if (2 * p < nb) {
        s_mk_quant_step(a, w, xr, acc, p, 1, R, T, dt);
    }
#pragma GCC unroll 8
    for (int i = 0; i < R; i++) {
        float b = a->bias ? a->bias[r + i] : 0.0f;
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            a->y[(size_t)(t0 + j) * a->ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]) + b;
        }
    }
}

/* Batch-1 row: one weight stream, the tile kernel at R = T = 1 (see s_mv_float: batch
 * invariance). */
AINLINE void s_mv_quant(const struct tb_mm_args *a, int64_t r, const int dt)
{
    s_mk_quant(a, r, 0, 1, 1, dt);
}

#define QUANT_TILE_CASES(R, dt)                                                                    \
    switch (nt) {                                                                                  \
    case 1: s_mk_quant(a, r, t, R, 1, dt); break;                                                  \
    case 2: s_mk_quant(a, r, t, R, 2, dt); break;                                                  \
    case 3: s_mk_quant(a, r, t, R, 3, dt); break;                                                  \
    default: s_mk_quant(a, r, t, R, 4, dt); break;                                                 \
    }

AINLINE void s_rows_quant(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    if (a->n_tok == 1) {
        for (int64_t r = r0; r < r1; r++) {
            s_mv_quant(a, r, dt);
        }
        return;
    }
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        int64_t r = r0;
        for (; r + QR <= r1; r += QR) {
            for (int t = tb; t < te; t += QT) {
                int nt = te - t < QT ? te - t : QT;
                QUANT_TILE_CASES(QR, dt)
            }
        }
        for (; r < r1; r++) {
            for (int t = tb; t < te; t += QT) {
                int nt = te - t < QT ? te - t : QT;
                QUANT_TILE_CASES(1, dt)
            }
        }
    }
}

static void s_matmul_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    switch (a->dtype) {
    case TB_CPU_F32:
        s_rows_float(a, r0, r1, TB_CPU_F32);
        break;
    case TB_CPU_F16:
        s_rows_float(a, r0, r1, TB_CPU_F16);
        break;
    case TB_CPU_BF16:
        s_rows_float(a, r0, r1, TB_CPU_BF16);
        break;
    case TB_CPU_Q8_0:
        s_rows_quant(a, r0, r1, TB_CPU_Q8_0);
        break;
    case TB_CPU_Q4_0:
        s_rows_quant(a, r0, r1, TB_CPU_Q4_0);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Attention helpers                                                                           */
/* ------------------------------------------------------------------------------------------ */

AINLINE __mmask16 s_tail_mask(int left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

static inline float s_att_dot_f32(const float *q, const float *k, int n)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), _mm512_maskz_loadu_ps(m, k + i),
                              acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static inline float s_att_dot_f16(const float *q, const uint16_t *k, int n)
{
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        __m512 kv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, k + i));
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), kv, acc);
    }
    return _mm512_reduce_add_ps(acc);
}

static inline void s_att_axpy_f32(float *y, float a, const float *x, int n)
{
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        __m512 r = _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
                                   _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

static inline void s_att_axpy_f16(float *y, float a, const uint16_t *x, int n)
{
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        __m512 r = _mm512_fmadd_ps(va, xv, _mm512_maskz_loadu_ps(m, y + i));
        _mm512_mask_storeu_ps(y + i, m, r);
    }
}

static inline void s_att_scale(float *y, float a, int n)
{
    __m512 va = _mm512_set1_ps(a);
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* exp(x) for x <= 0 (clamped at -87): 2^n * p(r), |r| <= ln2/2, degree-6 polynomial;
 * relative error about 2e-7. */
AINLINE __m512 s_exp(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline float s_att_exp_block(float *s, int n, float mx)
{
    __m512 vm = _mm512_set1_ps(mx);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < n; i += 16) {
        __mmask16 m = s_tail_mask(n - i);
        __m512 e = s_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + i), vm));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(s + i, m, e);
        sum = _mm512_add_ps(sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

#define ATT_DOT_F32 s_att_dot_f32
#define ATT_DOT_F16 s_att_dot_f16
#define ATT_AXPY_F32 s_att_axpy_f32
#define ATT_AXPY_F16 s_att_axpy_f16
#define ATT_SCALE s_att_scale
#define ATT_EXP_BLOCK s_att_exp_block
#define TB_ATTN_TASK s_attn_task
#include "tb_cpu_attn_impl.h"

const struct tb_cpu_isa_impl tb_cpu_impl_avx512 = {
    .isa = TB_CPU_ISA_AVX512,
    .act_row_bytes = s_act_row_bytes,
    .quant_act = s_quant_act,
    .matmul_rows = s_matmul_rows,
    .attn_task = s_attn_task,
};
