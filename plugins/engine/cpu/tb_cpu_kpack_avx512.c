/*
 * tb_cpu_kpack_avx512.c - the Kx16 matmul (Q4_K, Q5_K, Q6_K packed 16 rows at a time,
 * tb_cpu_internal.h) with AVX-512 VNNI (compiled with the AVX-512 F/BW/VL/DQ/VNNI flags; called
 * only after runtime detection).
 *
 * Lane i of every vector is weight row i of the group, so nothing is summed across lanes: per
 * 4 elements one vpdpbusd adds (unsigned codes) x (4 broadcast activation bytes) into each row's
 * int32 group sum (started at -32 * the activations' group sum for Q6_K's stored + 32, -128 *
 * it for IQ4_XS, whose table values are looked up with vpshufb and taken + 128), which a
 * vpmulld scales by the row's group scale into the block's int32 sum.  The mins come from the
 * Q8_K block sums (a vpdpwssd per sub-block), and the f32 step per block is tb_quant_dot's, in lanes: bit-equal to the
 * reference, the same for any token tile, so a token's outputs do not depend on the batch.
 * Each weight vector is decoded once per block and used for every token of the tile.  Q6_K's
 * 1- and 2-token tiles (s_tile6) take four scale groups side by side to read each record in
 * its memory order (tb_cpu_internal.h).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_quant.h"

#define AINLINE static inline __attribute__((always_inline))

#define KT                                                                                       \
    8 /* tokens per tile at most: Q6_K's s_tile (its decode shared by 8 tokens: 16-token
                * tile 466 -> 414 ns per record); the other kinds 4 (8 spills their sums) */

AINLINE __m512i s_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Q6_K's stored codes (+ 32) of slot s = 2 * (c & 1) + h from its high-bit vector and chunk
 * c's nibble vector: the 2 high bits at bit 2s of each byte, moved to bits 4-5 and merged
 * with the nibble in one vpternlogd, (nibble & 0x0f) | hb. */
AINLINE __m512i s_codes6(__m512i hv, __m512i raw, const int s)
{
    const __m512i hs = s == 0   ? _mm512_slli_epi16(hv, 4)
                       : s == 1 ? _mm512_slli_epi16(hv, 2)
                       : s == 2 ? hv
                                : _mm512_srli_epi16(hv, 2);
    const __m512i hb = _mm512_and_si512(hs, _mm512_set1_epi8(0x30));
    return _mm512_ternarylogic_epi32((s & 1) ? _mm512_srli_epi16(raw, 4) : raw, hb,
                                     _mm512_set1_epi8(0x0f), 0xEC);
}

/* The unsigned codes of slot h (0: low nibbles, 1: high) of nibble vector k of chunk c. */
AINLINE __m512i s_codes(const uint8_t *rec, const int kind, int c, int h, int k)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    if (kind == 6) {
        return s_codes6(_mm512_load_si512((const void *)(rec + tb_cpu_kp6_hi_off(c >> 1, k))),
                        _mm512_load_si512((const void *)(rec + tb_cpu_kp6_nib_off(c, k))),
                        2 * (c & 1) + h);
    }
    const __m512i raw = _mm512_load_si512(
        (const void *)(rec + tb_cpu_kp_vec_off(kind, 8 * c + k)));
    __m512i v = _mm512_and_si512(h ? _mm512_srli_epi16(raw, 4) : raw, m4);
    if (kind == 7) { /* IQ4_XS: the table value + 128, unsigned */
        const __m512i table = _mm512_broadcast_i32x4(
            _mm_loadu_si128((const __m128i *)tb_quant_iq4_values));
        return _mm512_xor_si512(_mm512_shuffle_epi8(table, v), _mm512_set1_epi8((char)0x80));
    }
    if (kind == 5) {
        const __m512i hv = _mm512_load_si512((const void *)(rec + tb_cpu_kp_hvec_off(5, k)));
        const __m512i b = _mm512_and_si512(_mm512_srl_epi16(hv, _mm_cvtsi32_si128(2 * c + h)),
                                           _mm512_set1_epi8(1));
        v = _mm512_or_si512(v, _mm512_slli_epi16(b, 4));
    }
    return v;
}

/* Writes the tile's sums (+ bias) to the outputs of group g's rows for T tokens from t0. */
AINLINE void s_store(const struct tb_mm_args *a, int64_t g, int t0, const int T,
                     const __m512 *acc)
{
    const int64_t r = g * TB_CPU_PACK_ROWS;
    const int nr = a->rows - r < TB_CPU_PACK_ROWS ? (int)(a->rows - r) : TB_CPU_PACK_ROWS;
    const __m512 bias = a->bias && nr == TB_CPU_PACK_ROWS ? _mm512_loadu_ps(a->bias + r)
                                                          : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        float *y = a->y + (size_t)(t0 + j) * a->ldy + r;
        if (nr == TB_CPU_PACK_ROWS) {
            _mm512_storeu_ps(y, _mm512_add_ps(acc[j], bias));
        } else {
            float v[TB_CPU_PACK_ROWS];
            _mm512_storeu_ps(v, acc[j]);
            for (int i = 0; i < nr; i++) {
                y[i] = v[i] + (a->bias ? a->bias[r + i] : 0.0f);
            }
        }
    }
}

/* Group `g` (16 rows) x T tokens from t0. */
AINLINE void s_tile(const struct tb_mm_args *a, int64_t g, int t0, const int T, const int kind,
                    const uint8_t *pf, size_t pf_step)
{
    const int64_t nb = a->cols / TB_QK_K;
    const size_t rec_bytes = tb_cpu_kp_block_bytes(kind);
    const int kg = kind == 6 ? 4 : 8; /* nibble vectors per scale group */
    const uint8_t *gp = a->w + (size_t)g * a->w_row_bytes;
    const struct tb_block_q8_k *x[KT];
    __m512 acc[KT];
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        x[j] = (const struct tb_block_q8_k *)(a->qx + (size_t)(t0 + j) * a->qx_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *rec = gp + (size_t)b * rec_bytes;
        const int8_t *sc = (const int8_t *)(rec + tb_cpu_kp_sc_off(kind));
        tb_cpu_pf_rec(pf, pf_step, b);
        __m512i isum[KT];
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            isum[j] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                for (int q = 0; q < 8 / kg; q++) {
                    const int gi = kind == 6 ? 4 * c + 2 * h + q : 2 * c + h;
                    const __m128i s8 = _mm_loadu_si128((const __m128i *)(sc + 16 * gi));
                    const __m512i scv = kind >= 6 ? _mm512_cvtepi8_epi32(s8)
                                                  : _mm512_cvtepu8_epi32(s8);
                    __m512i dot[KT];
#pragma GCC unroll 8
                    for (int j = 0; j < T; j++) {
                        const int16_t *bs = x[j][b].bsums;
                        dot[j] = kind == 6 ? _mm512_set1_epi32(-32 * bs[gi])
                                 : kind == 7
                                     ? _mm512_set1_epi32(-128 * (bs[2 * gi] + bs[2 * gi + 1]))
                                     : _mm512_setzero_si512();
                    }
#pragma GCC unroll 8
                    for (int k = q * kg; k < (q + 1) * kg; k++) {
                        const __m512i w = s_codes(rec, kind, c, h, k);
#pragma GCC unroll 8
                        for (int j = 0; j < T; j++) {
                            dot[j] = _mm512_dpbusd_epi32(dot[j], w,
                                                         s_bcast4(x[j][b].qs + 64 * c + 32 * h +
                                                                  4 * k));
                        }
                    }
#pragma GCC unroll 8
                    for (int j = 0; j < T; j++) {
                        isum[j] = _mm512_add_epi32(isum[j], _mm512_mullo_epi32(dot[j], scv));
                    }
                }
            }
        }
        const __m512 dv = _mm512_load_ps((const float *)rec);
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            const __m512 da = _mm512_set1_ps(x[j][b].d);
            __m512 t = _mm512_mul_ps(_mm512_mul_ps(dv, da), _mm512_cvtepi32_ps(isum[j]));
            if (tb_cpu_kp_has_min(kind)) {
                /* msum = sum_s mn_s * (128 * hi_s + lo_s) (tb_cpu_q8k_split): per half of the
                 * sub-blocks one vpdpbusd of 4 mins per row with 4 lo (or hi) bytes */
                const int8_t *sp = tb_cpu_q8k_split((const uint8_t *)x[j], nb, b);
                __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
#pragma GCC unroll 2
                for (int q = 0; q < 2; q++) {
                    const __m512i mn = _mm512_load_si512(
                        (const void *)(rec + TB_CPU_KP_MN_OFF + 64 * q));
                    lo = _mm512_dpbusd_epi32(lo, mn, s_bcast4(sp + 4 * q));
                    hi = _mm512_dpbusd_epi32(hi, mn, s_bcast4(sp + 8 + 4 * q));
                }
                const __m512i ms = _mm512_add_epi32(_mm512_slli_epi32(hi, 7), lo);
                const __m512 dmv = _mm512_load_ps((const float *)(rec + 64));
                t = _mm512_sub_ps(t,
                                  _mm512_mul_ps(_mm512_mul_ps(dmv, da), _mm512_cvtepi32_ps(ms)));
            }
            acc[j] = _mm512_add_ps(acc[j], t);
        }
    }
    s_store(a, g, t0, T, acc);
}

/* Q6_K, group `g` (16 rows) x T tokens from t0, reading each record front to back: per chunk
 * pair p and scale-group half q, the 4 groups 4c + 2h + q (c = 2p, 2p + 1; h = 0, 1) side by
 * side, every k's high-bit vector and two nibble vectors loaded once, in memory order.  The
 * sums are s_tile's, added in the same integer order per group (exact), and the f32 step is
 * the same: bit-equal to it. */
AINLINE void s_tile6(const struct tb_mm_args *a, int64_t g, int t0, const int T)
{
    const int64_t nb = a->cols / TB_QK_K;
    const size_t rec_bytes = tb_cpu_kp_block_bytes(6);
    const uint8_t *gp = a->w + (size_t)g * a->w_row_bytes;
    const struct tb_block_q8_k *x[KT];
    __m512 acc[KT];
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) {
        x[j] = (const struct tb_block_q8_k *)(a->qx + (size_t)(t0 + j) * a->qx_stride);
        acc[j] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *rec = gp + (size_t)b * rec_bytes;
        const int8_t *sc = (const int8_t *)(rec + tb_cpu_kp_sc_off(6));
        __m512i isum[KT];
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            isum[j] = _mm512_setzero_si512();
        }
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
#pragma GCC unroll 2
            for (int q = 0; q < 2; q++) {
                __m512i dot[4][KT]; /* slot s = 2 * (c & 1) + h: group 4c + 2h + q */
#pragma GCC unroll 4
                for (int s = 0; s < 4; s++) {
#pragma GCC unroll 8
                    for (int j = 0; j < T; j++) {
                        const int gi = 4 * (2 * p + (s >> 1)) + 2 * (s & 1) + q;
                        dot[s][j] = _mm512_set1_epi32(-32 * x[j][b].bsums[gi]);
                    }
                }
#pragma GCC unroll 4
                for (int k = 4 * q; k < 4 * q + 4; k++) {
                    const __m512i hv = _mm512_load_si512(
                        (const void *)(rec + tb_cpu_kp6_hi_off(p, k)));
                    const __m512i raw[2] = {
                        _mm512_load_si512((const void *)(rec + tb_cpu_kp6_nib_off(2 * p, k))),
                        _mm512_load_si512(
                            (const void *)(rec + tb_cpu_kp6_nib_off(2 * p + 1, k)))};
#pragma GCC unroll 4
                    for (int s = 0; s < 4; s++) {
                        const __m512i w = s_codes6(hv, raw[s >> 1], s);
                        const int c = 2 * p + (s >> 1), h = s & 1;
#pragma GCC unroll 8
                        for (int j = 0; j < T; j++) {
                            dot[s][j] = _mm512_dpbusd_epi32(dot[s][j], w,
                                                            s_bcast4(x[j][b].qs + 64 * c +
                                                                     32 * h + 4 * k));
                        }
                    }
                }
#pragma GCC unroll 4
                for (int s = 0; s < 4; s++) {
                    const int gi = 4 * (2 * p + (s >> 1)) + 2 * (s & 1) + q;
                    const __m512i scv = _mm512_cvtepi8_epi32(
                        _mm_loadu_si128((const __m128i *)(sc + 16 * gi)));
#pragma GCC unroll 8
                    for (int j = 0; j < T; j++) {
                        isum[j] = _mm512_add_epi32(isum[j], _mm512_mullo_epi32(dot[s][j], scv));
                    }
                }
            }
        }
        const __m512 dv = _mm512_load_ps((const float *)rec);
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) {
            const __m512 da = _mm512_set1_ps(x[j][b].d);
            acc[j] = _mm512_add_ps(acc[j], _mm512_mul_ps(_mm512_mul_ps(dv, da),
                                                         _mm512_cvtepi32_ps(isum[j])));
        }
    }
    s_store(a, g, t0, T, acc);
}

/* Tile T x group g of `kind`: Q6_K tiles of 1 or 2 tokens read their records front to back
 * (s_tile6: the decode steps, bound by memory); 3 or 4 tokens keep 4 int32 sums per token
 * instead of 16 (s_tile: prefill, whose records come from L2 for every tile: 1.1B Q6_K prefill
 * 180-188 tokens/s with s_tile6 for every tile, 205-211 so). */
AINLINE void s_any(const struct tb_mm_args *a, int64_t g, int t, const int T, const int kind,
                   const uint8_t *pf, size_t pf_step)
{
    if (kind == 6 && T <= 2) {
        s_tile6(a, g, t, T);
    } else {
        s_tile(a, g, t, T, kind, pf, pf_step);
    }
}

/* Group by group, the token tiles (Q6_K: 8 tokens, else 4; the rest 1-3); each full tile
 * fetches its share of the next group (tb_cpu_pf_tile). */
AINLINE void s_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int kind)
{
    const int64_t nb = a->cols / TB_QK_K;
    const int tw = kind == 6 ? 8 : 4;
    const int ntile = a->n_tok / tw;
    for (int64_t g = r0 / TB_CPU_PACK_ROWS; g * TB_CPU_PACK_ROWS < r1; g++) {
        int t = 0, ti = 0;
        for (; t + tw <= a->n_tok; t += tw, ti++) {
            const struct tb_cpu_pf pf = tb_cpu_pf_tile(a, g, r1, ti, ntile, nb);
            s_any(a, g, t, tw, kind, pf.p, pf.step);
        }
        if (kind == 6 && t + 4 <= a->n_tok) {
            s_any(a, g, t, 4, kind, NULL, 0);
            t += 4;
        }
        switch (a->n_tok - t) {
        case 1:
            s_any(a, g, t, 1, kind, NULL, 0);
            break;
        case 2:
            s_any(a, g, t, 2, kind, NULL, 0);
            break;
        case 3:
            s_any(a, g, t, 3, kind, NULL, 0);
            break;
        default:
            break;
        }
    }
}

void tb_cpu_kpack_rows_avx512(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    switch (tb_cpu_kp_kind(a->dtype)) {
    case 2:
    case 3:
        tb_cpu_kpack23_rows_avx512(a, r0, r1);
        break;
    case 4:
        s_rows(a, r0, r1, 4);
        break;
    case 5:
        s_rows(a, r0, r1, 5);
        break;
    case 6:
        s_rows(a, r0, r1, 6);
        break;
    case 7:
        s_rows(a, r0, r1, 7);
        break;
    default:
        break;
    }
}

/* One Q8_K block of 256 activations as tb_quant_act_quantize makes it: id = 127 / max|x|
 * (NaNs left out of the max, as the scalar compare leaves them), q = x * id rounded to nearest
 * even (the default rounding of vcvtps2dq, rintf's), a NaN product 0, d = 1 / id, bsums per 16;
 * a block whose max is 0 or not finite all zero. */
static void s_q8k_block(const float *x, struct tb_block_q8_k *y)
{
    __m512 v[16], m = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        v[i] = _mm512_loadu_ps(x + 16 * i);
        m = _mm512_max_ps(_mm512_abs_ps(v[i]), m); /* a NaN in the first operand gives m */
    }
    const float amax = _mm512_reduce_max_ps(m);
    if (!(amax > 0.0f) || !isfinite(amax)) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float id = 127.0f / amax;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        const __m512 p = _mm512_mul_ps(v[i], vid);
        __m512i q = _mm512_cvtps_epi32(p);
        q = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(p, p, _CMP_ORD_Q),
                                   _mm512_max_epi32(_mm512_min_epi32(q, hi), lo));
        _mm_storeu_si128((__m128i *)(y->qs + 16 * i), _mm512_cvtepi32_epi8(q));
        y->bsums[i] = (int16_t)_mm512_reduce_add_epi32(q);
    }
    y->d = 1.0f / id;
}

void tb_cpu_quant_act_avx512(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    tb_cpu_quant_act_with(wdt, x, cols, dst, s_q8k_block);
}
