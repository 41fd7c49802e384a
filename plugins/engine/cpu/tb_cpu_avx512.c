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

/* Multi-row tiles read R weight rows side by side, which the hardware prefetchers follow poorly
 * from DRAM (several interleaved streams).  So while the first token tile of a row tile runs,
 * it prefetches the next row tile (R contiguous rows: one sequential stream) at the same pace,
 * and the next tile then finds its rows in cache. */
AINLINE const uint8_t *s_next_tile(const struct tb_mm_args *a, int64_t r, int t0, const int R)
{
    if (R == 1 || t0 != 0 || r + 2 * R > a->rows) {
        return NULL;
    }
    return a->w + (size_t)(r + R) * a->w_row_bytes;
}

/* ------------------------------------------------------------------------------------------ */
/* Activation quantization                                                                     */
/* ------------------------------------------------------------------------------------------ */

static size_t s_pair_bytes(tb_cpu_dtype_t wdt)
{
    return wdt == TB_CPU_Q4_0 ? 192 : 128;
}

static size_t s_act_row_bytes(tb_cpu_dtype_t wdt, int64_t cols)
{
    if (wdt == TB_CPU_Q4_0_PACKED || wdt == TB_CPU_Q8_0_PACKED) {
        return tb_cpu_simple_act_row_bytes(wdt, cols);
    }
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
    return tb_cpu_act_scale(amax);
}

/* The portable layout (q in order, d, then c = cmul * sum(q)) for packed weights. */
static void s_quant_act_pk(const float *x, int64_t cols, uint8_t *dst, int32_t cmul)
{
    const int64_t nb = cols / TB_CPU_QBLOCK;
    int8_t *q = (int8_t *)dst;
    float *d = (float *)(dst + cols);
    int32_t *c = (int32_t *)(dst + cols + nb * 4);
    for (int64_t b = 0; b < nb; b++) {
        __m512i lo, hi;
        int32_t s;
        d[b] = s_quant_block(x + b * TB_CPU_QBLOCK, &lo, &hi, &s);
        _mm_storeu_si128((__m128i *)(q + b * TB_CPU_QBLOCK), _mm512_cvtsepi32_epi8(lo));
        _mm_storeu_si128((__m128i *)(q + b * TB_CPU_QBLOCK + 16), _mm512_cvtsepi32_epi8(hi));
        c[b] = cmul * s;
    }
}

static void s_quant_act(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    if (wdt == TB_CPU_Q4_0_PACKED || wdt == TB_CPU_Q8_0_PACKED) {
        s_quant_act_pk(x, cols, dst, tb_cpu_pk_cmul(wdt));
        return;
    }
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
/* Float rows are long (an FFN down row of 5632 f16 is 11 KB): R of them overflow L1, so the
 * next tile is prefetched into L2 only (still one sequential DRAM stream), and each row of the
 * current tile is pulled into L1 FNEAR bytes ahead of its loads.  Without the second part the
 * 5632-column matrices read at half the bandwidth of the 2048-column ones. */
#define FNEAR 1024

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
    const uint8_t *pf = s_next_tile(a, r, t0, R);
    const int pf_lines = (R * 16 * es + 63) / 64; /* next-tile bytes per step, in lines */
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 wv[FR];
        if (pf) {
#pragma GCC unroll 8
            for (int l = 0; l < pf_lines; l++) {
                _mm_prefetch((const char *)(pf + (size_t)k * es * R + 64 * l), _MM_HINT_T1);
            }
#pragma GCC unroll 8
            for (int i = 0; i < R; i++) {
                _mm_prefetch((const char *)(w[i] + k * es + FNEAR), _MM_HINT_T0);
            }
        }
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

/* Batch 1: the tile kernel at FR rows x 1 token.  Every (row, token) output has its own
 * accumulator summed in k order whatever the tile's shape, so a token's outputs are bitwise the
 * same whatever n_tok is and wherever its row sits in the batch (the engine's batch invariance:
 * a request alone and among others must get the same tokens); the FR rows give the FMA unit FR
 * independent chains, and the next tile is prefetched as one stream (s_next_tile). */
AINLINE void s_mv_float(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    int64_t r = r0;
    for (; r + FR <= r1; r += FR) {
        s_mk_float(a, r, 0, FR, 1, dt);
    }
    for (; r < r1; r++) {
        s_mk_float(a, r, 0, 1, 1, dt);
    }
}

#define FLOAT_TILE_CASES(R, dt)                                                                  \
    switch (nt) {                                                                                \
    case 1:                                                                                      \
        s_mk_float(a, r, t, R, 1, dt);                                                           \
        break;                                                                                   \
    case 2:                                                                                      \
        s_mk_float(a, r, t, R, 2, dt);                                                           \
        break;                                                                                   \
    case 3:                                                                                      \
        s_mk_float(a, r, t, R, 3, dt);                                                           \
        break;                                                                                   \
    case 4:                                                                                      \
        s_mk_float(a, r, t, R, 4, dt);                                                           \
        break;                                                                                   \
    case 5:                                                                                      \
        s_mk_float(a, r, t, R, 5, dt);                                                           \
        break;                                                                                   \
    default:                                                                                     \
        s_mk_float(a, r, t, R, 6, dt);                                                           \
        break;                                                                                   \
    }

AINLINE void s_rows_float(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int dt)
{
    if (a->n_tok == 1) {
        s_mv_float(a, r0, r1, dt);
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
AINLINE void s_q8_decode(const uint8_t *b0, const int half, __m512i *q, __m512 *dw, __m512i *init)
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
                             const int half, const int R, const int T, const int dt,
                             const uint8_t *pf)
{
    const size_t pb = dt == TB_CPU_Q4_0 ? 192 : 128;
    const size_t wb = dt == TB_CPU_Q4_0 ? 36 : 68; /* bytes per block pair */
    (void)a;
    __m512i q[QR];
    __m512 dw[QR];
    __m512i init[QR];
    if (pf) {
#pragma GCC unroll 8
        for (int l = 0; l < (R * (int)wb + 63) / 64; l++) {
            _mm_prefetch((const char *)(pf + (size_t)p * wb * R + 64 * l), _MM_HINT_T0);
        }
    }
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
    const uint8_t *pf = s_next_tile(a, r, t0, R);
    int64_t p = 0;
    for (; 2 * p + 2 <= nb; p++) {
        s_mk_quant_step(a, w, xr, acc, p, 0, R, T, dt, pf);
    }
    if (2 * p < nb) {
        s_mk_quant_step(a, w, xr, acc, p, 1, R, T, dt, pf);
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

#define QUANT_TILE_CASES(R, dt)                                                                  \
    switch (nt) {                                                                                \
    case 1:                                                                                      \
        s_mk_quant(a, r, t, R, 1, dt);                                                           \
        break;                                                                                   \
    case 2:                                                                                      \
        s_mk_quant(a, r, t, R, 2, dt);                                                           \
        break;                                                                                   \
    case 3:                                                                                      \
        s_mk_quant(a, r, t, R, 3, dt);                                                           \
        break;                                                                                   \
    default:                                                                                     \
        s_mk_quant(a, r, t, R, 4, dt);                                                           \
        break;                                                                                   \
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

/* ------------------------------------------------------------------------------------------ */
/* Packed Q4_0 / Q8_0 microkernel                                                              */
/* ------------------------------------------------------------------------------------------ */

#define PT 4 /* token rows per packed tile */
#define PG 2 /* groups of 16 rows per packed tile */

AINLINE __m512i s_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* G groups of 16 rows from group g (the last one's `nlast` rows real) x T tokens from t0, over
 * packed Q4_0 (q8 = 0) or Q8_0 (q8 = 1) weights.  Lane i of a group's vectors is row 16g + i:
 * per block, eight vpdpbusd add 4 unsigned weight bytes (nibbles; Q8_0 values + 128) x 4
 * activations each into the block's int32 sum, started at c (which removes the offset): exact,
 * whatever the order.  The sum is scaled by d_w * d_x and added to the row's float sum, block
 * after block: the same operations in the same order for any G, T and tile position, so a
 * token's outputs do not depend on the batch.  Each broadcast activation feeds G groups; each
 * weight vector T tokens.  `pf`: the next tile's groups, prefetched at this tile's pace. */
AINLINE void s_mk_pk(const struct tb_mm_args *a, int64_t g, const int G, int nlast, int t0,
                     const int T, const uint8_t *pf, const int q8)
{
    const int64_t n = a->cols, nb = n / TB_CPU_QBLOCK;
    const size_t pf_step = (size_t)G *
                           (32 + tb_cpu_pk_vbytes(q8)); /* the tile's bytes per block */
    const int pf_lines = (int)(pf_step + 63) / 64;
    const uint8_t *gw[PG];
    const int8_t *xq[PT];
    const float *xd[PT];
    const int32_t *xc[PT];
    __m512 acc[PG][PT];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        gw[h] = a->w + (size_t)(g + h) * a->w_row_bytes;
    }
#pragma GCC unroll 16
    for (int j = 0; j < T; j++) {
        const uint8_t *row = a->qx + (size_t)(t0 + j) * a->qx_stride;
        xq[j] = (const int8_t *)row;
        xd[j] = (const float *)(row + n);
        xc[j] = (const int32_t *)(row + n + nb * 4);
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            acc[h][j] = _mm512_setzero_ps();
        }
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        __m512i s0[PG][PT];
        if (pf) {
#pragma GCC unroll 32
            for (int l = 0; l < pf_lines; l++) {
                _mm_prefetch((const char *)(pf + (size_t)b * pf_step + 64 * l), _MM_HINT_T0);
            }
        }
        /* values 0..15 of the block (Q4_0: low nibbles), then 16..31 (high nibbles) */
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++) {
            __m512i wv[PG][4];
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                const uint8_t *v = tb_cpu_pk_values(gw[h], b, q8);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    if (q8) {
                        wv[h][k] = _mm512_load_si512((const __m512i *)(v + 64 * (4 * half + k)));
                    } else {
                        __m512i raw = _mm512_load_si512((const __m512i *)(v + 64 * k));
                        wv[h][k] = _mm512_and_si512(half ? _mm512_srli_epi16(raw, 4) : raw, m4);
                    }
                }
            }
#pragma GCC unroll 16
            for (int j = 0; j < T; j++) {
                const int8_t *x = xq[j] + b * TB_CPU_QBLOCK + 16 * half;
#pragma GCC unroll 4
                for (int h = 0; h < G; h++) {
                    if (half == 0) {
                        s0[h][j] = _mm512_set1_epi32(xc[j][b]);
                    }
                }
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    __m512i xb = s_bcast4(x + 4 * k);
#pragma GCC unroll 4
                    for (int h = 0; h < G; h++) {
                        s0[h][j] = _mm512_dpbusd_epi32(s0[h][j], wv[h][k], xb);
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            __m512 dw = _mm512_cvtph_ps(
                _mm256_load_si256((const __m256i *)tb_cpu_pk_scales(gw[h], b, q8)));
#pragma GCC unroll 16
            for (int j = 0; j < T; j++) {
                __m512 sf = _mm512_cvtepi32_ps(s0[h][j]);
                acc[h][j] = _mm512_fmadd_ps(sf, _mm512_mul_ps(dw, _mm512_set1_ps(xd[j][b])),
                                            acc[h][j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        const int nr = h == G - 1 ? nlast : TB_CPU_PACK_ROWS;
        const __mmask16 m = (__mmask16)((1u << nr) - 1);
        const int64_t r = (g + h) * TB_CPU_PACK_ROWS;
        __m512 bias = a->bias ? _mm512_maskz_loadu_ps(m, a->bias + r) : _mm512_setzero_ps();
#pragma GCC unroll 16
        for (int j = 0; j < T; j++) {
            _mm512_mask_storeu_ps(a->y + (size_t)(t0 + j) * a->ldy + r, m,
                                  _mm512_add_ps(acc[h][j], bias));
        }
    }
}

#define PK_TILE_CASES(G, q8)                                                                     \
    switch (nt) {                                                                                \
    case 1:                                                                                      \
        s_mk_pk(a, g, G, nl, t, 1, tpf, q8);                                                     \
        break;                                                                                   \
    case 2:                                                                                      \
        s_mk_pk(a, g, G, nl, t, 2, tpf, q8);                                                     \
        break;                                                                                   \
    case 3:                                                                                      \
        s_mk_pk(a, g, G, nl, t, 3, tpf, q8);                                                     \
        break;                                                                                   \
    default:                                                                                     \
        s_mk_pk(a, g, G, nl, t, 4, tpf, q8);                                                     \
        break;                                                                                   \
    }

AINLINE void s_rows_pk(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int q8)
{
    const int64_t g0 = r0 / TB_CPU_PACK_ROWS, g1 = (r1 + TB_CPU_PACK_ROWS - 1) / TB_CPU_PACK_ROWS;
    for (int tb = 0; tb < a->n_tok; tb += TOK_BLOCK) {
        int te = tb + TOK_BLOCK < a->n_tok ? tb + TOK_BLOCK : a->n_tok;
        for (int64_t g = g0; g < g1;) {
            const int G = g + PG <= g1 ? PG : 1;
            int64_t left = r1 - (g + G - 1) * TB_CPU_PACK_ROWS;
            int nl = left < TB_CPU_PACK_ROWS ? (int)left : TB_CPU_PACK_ROWS;
            const uint8_t *pf = g + 2 * G <= g1 ? a->w + (size_t)(g + G) * a->w_row_bytes : NULL;
            for (int t = tb; t < te; t += PT) {
                int nt = te - t < PT ? te - t : PT;
                const uint8_t *tpf = t == tb ? pf : NULL; /* the first token tile fetches */
                if (G == PG) {
                    PK_TILE_CASES(PG, q8)
                } else {
                    PK_TILE_CASES(1, q8)
                }
            }
            g += G;
        }
    }
}

static void s_matmul_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    if (a->dtype == TB_CPU_Q4_0_PACKED) {
        s_rows_pk(a, r0, r1, 0);
        return;
    }
    if (a->dtype == TB_CPU_Q8_0_PACKED) {
        s_rows_pk(a, r0, r1, 1);
        return;
    }
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

AINLINE __m512 s_kv_load(const uint8_t *base, size_t i, __mmask16 m, int f16)
{
    if (f16) {
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, base + 2 * i));
    }
    return _mm512_maskz_loadu_ps(m, base + 4 * i);
}

/* Scores of up to 16 slots per step: hd multiply-adds of a broadcast query value with one K row
 * (8 independent accumulators over d to cover the FMA latency). */
static inline float s_att_scores(float *s, const float *q, const uint8_t *kt, int hd, int n,
                                 int bs, int f16)
{
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    for (int j0 = 0; j0 < n; j0 += 16) {
        __mmask16 m = s_tail_mask(n - j0);
        __m512 acc[8];
        for (int i = 0; i < 8; i++) {
            acc[i] = _mm512_setzero_ps();
        }
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                __m512 k = s_kv_load(kt, (size_t)(d + i) * bs + j0, m, f16);
                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[d + i]), k, acc[i]);
            }
        }
        for (; d < hd; d++) {
            __m512 k = s_kv_load(kt, (size_t)d * bs + j0, m, f16);
            acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(q[d]), k, acc[0]);
        }
        __m512 t0 = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        __m512 t1 = _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]), _mm512_add_ps(acc[6], acc[7]));
        __m512 sc = _mm512_add_ps(t0, t1);
        _mm512_mask_storeu_ps(s + j0, m, sc);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, sc);
    }
    return _mm512_reduce_max_ps(vmax);
}

/* acc += p . V over n slots; up to 128 dims of acc stay in registers across the slots. */
static inline void s_att_pv(float *acc, const float *p, const uint8_t *v, int hd, int n, int f16)
{
    for (int d0 = 0; d0 < hd; d0 += 128) {
        int nc = (hd - d0 + 15) / 16;
        nc = nc < 8 ? nc : 8;
        __m512 r[8];
        __mmask16 mk[8];
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            mk[c] = c < nc ? s_tail_mask(hd - d0 - 16 * c) : 0;
            r[c] = _mm512_maskz_loadu_ps(mk[c], acc + d0 + 16 * c);
        }
        for (int j = 0; j < n; j++) {
            __m512 pj = _mm512_set1_ps(p[j]);
            size_t row = (size_t)j * hd + d0;
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                if (c < nc) {
                    r[c] = _mm512_fmadd_ps(pj, s_kv_load(v, row + 16 * c, mk[c], f16), r[c]);
                }
            }
        }
#pragma GCC unroll 8
        for (int c = 0; c < 8; c++) {
            _mm512_mask_storeu_ps(acc + d0 + 16 * c, mk[c], r[c]);
        }
    }
}

/* Scores of G >= 4 heads over up to 16 slots per step: each K row widened once and multiplied
 * into every head's accumulator (the heads are the independent FMA chains; 8 at a time). */
static inline void s_att_scores_g(float *s, float *mx, const float *q, int G, const uint8_t *kt,
                                  int hd, int n, int bs, int f16)
{
    for (int h0 = 0; h0 < G; h0 += 8) {
        const int nh = G - h0 < 8 ? G - h0 : 8;
        __m512 vmax[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            vmax[i] = _mm512_set1_ps(-INFINITY);
        }
        for (int j0 = 0; j0 < n; j0 += 16) {
            const __mmask16 m = s_tail_mask(n - j0);
            __m512 acc[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                acc[i] = _mm512_setzero_ps();
            }
            for (int d = 0; d < hd; d++) {
                const __m512 k = s_kv_load(kt, (size_t)d * bs + j0, m, f16);
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    if (i < nh) {
                        acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[(size_t)(h0 + i) * hd + d]), k,
                                                 acc[i]);
                    }
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                if (i < nh) {
                    _mm512_mask_storeu_ps(s + (size_t)(h0 + i) * bs + j0, m, acc[i]);
                    vmax[i] = _mm512_mask_max_ps(vmax[i], m, vmax[i], acc[i]);
                }
            }
        }
        for (int i = 0; i < nh; i++) {
            mx[h0 + i] = _mm512_reduce_max_ps(vmax[i]);
        }
    }
}

/* acc[h] += p[h] . V for G >= 4 heads: per slot, 64 dims of V widened once and multiplied into
 * 4 heads' numerators held in registers. */
static inline void s_att_pv_g(float *acc, const float *p, int G, const uint8_t *v, int hd, int n,
                              int bs, int f16)
{
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int nc = (hd - d0 + 15) / 16 < 4 ? (hd - d0 + 15) / 16 : 4;
        __mmask16 mk[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            mk[c] = c < nc ? s_tail_mask(hd - d0 - 16 * c) : 0;
        }
        for (int h0 = 0; h0 < G; h0 += 4) {
            const int nh = G - h0 < 4 ? G - h0 : 4;
            __m512 r[4][4];
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    r[i][c] = i < nh ? _mm512_maskz_loadu_ps(mk[c], acc + (size_t)(h0 + i) * hd +
                                                                        d0 + 16 * c)
                                     : _mm512_setzero_ps();
                }
            }
            for (int j = 0; j < n; j++) {
                const size_t row = (size_t)j * hd + d0;
                __m512 vv[4];
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    vv[c] = s_kv_load(v, row + 16 * c, mk[c], f16);
                }
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    if (i < nh) {
                        const __m512 pj = _mm512_set1_ps(p[(size_t)(h0 + i) * bs + j]);
#pragma GCC unroll 4
                        for (int c = 0; c < 4; c++) {
                            r[i][c] = _mm512_fmadd_ps(pj, vv[c], r[i][c]);
                        }
                    }
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    if (i < nh) {
                        _mm512_mask_storeu_ps(acc + (size_t)(h0 + i) * hd + d0 + 16 * c, mk[c],
                                              r[i][c]);
                    }
                }
            }
        }
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

#define ATT_SCORES s_att_scores
#define ATT_PV s_att_pv
#define ATT_SCALE s_att_scale
#define ATT_EXP_BLOCK s_att_exp_block
#define ATT_SCORES_G s_att_scores_g
#define ATT_PV_G s_att_pv_g
#define TB_ATTN_TASK s_attn_task
#include "tb_cpu_attn_impl.h"

const struct tb_cpu_isa_impl tb_cpu_impl_avx512 = {
    .isa = TB_CPU_ISA_AVX512,
    .act_row_bytes = s_act_row_bytes,
    .quant_act = s_quant_act,
    .matmul_rows = s_matmul_rows,
    .kpack_rows = tb_cpu_kpack_rows_avx512,
    .quant_act_gguf = tb_cpu_quant_act_avx512,
    .attn_task = s_attn_task,
};

/* tb_cpu_silu_exp's operations on 16 lanes (vmaxps / vminps with the bound first: a NaN lane
 * passes through, as the scalar compare leaves it). */
void tb_cpu_silu_mul_avx512(float *out, const float *gate, const float *up, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f), magic = _mm512_set1_ps(TB_SILU_ROUND);
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        __m512 x = _mm512_xor_ps(g, _mm512_set1_ps(-0.0f)); /* -g */
        x = _mm512_min_ps(_mm512_set1_ps(TB_SILU_HI),
                          _mm512_max_ps(_mm512_set1_ps(TB_SILU_LO), x));
        const __m512 nn = _mm512_sub_ps(
            _mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(TB_SILU_LOG2E)), magic), magic);
        __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(nn, _mm512_set1_ps(TB_SILU_LN2_HI)));
        r = _mm512_sub_ps(r, _mm512_mul_ps(nn, _mm512_set1_ps(TB_SILU_LN2_LO)));
        __m512 p = _mm512_set1_ps(TB_SILU_P0);
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TB_SILU_P1));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TB_SILU_P2));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TB_SILU_P3));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TB_SILU_P4));
        p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(TB_SILU_P5));
        const __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(p, r), r), r),
                                       one);
        const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(nn),
                                                                _mm512_set1_epi32(127)),
                                               23);
        const __m512 ex = _mm512_mul_ps(e, _mm512_castsi512_ps(bits));
        const __m512 y = _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, ex)),
                                       _mm512_loadu_ps(up + i));
        _mm512_storeu_ps(out + i, y);
    }
}
