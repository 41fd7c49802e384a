/*
 * tb_cpu_kpack_avx2.c - the Kx16 matmul (Q4_K, Q5_K, Q6_K packed 16 rows at a time,
 * tb_cpu_internal.h) with AVX2 (compiled with -mavx2 -mfma -mf16c; called only after runtime
 * detection): tb_cpu_kpack_avx512.c's method on each 8-row half of a group, vpdpbusd replaced
 * by vpmaddubsw + vpmaddwd (codes <= 63 and |activation| <= 127: no int16 saturation; IQ4_XS's
 * signed values as |value| times the activation with the value's sign, no + 128).  The
 * integer sums are exact and the f32 step per block is the reference's, in lanes: bit-equal to
 * tb_quant_dot and batch invariant.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_quant.h"

#define AINLINE static inline __attribute__((always_inline))

#define KT 4 /* tokens per tile */

AINLINE __m256i s_bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* acc + the sum of each lane's 4 products of unsigned w and signed x bytes. */
AINLINE __m256i s_dp(__m256i acc, __m256i w, __m256i x)
{
    return _mm256_add_epi32(acc,
                            _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}

/* acc + the sum of each lane's 4 products of signed w (|w| <= 127) and signed x bytes. */
AINLINE __m256i s_dp_signed(__m256i acc, __m256i w, __m256i x)
{
    return s_dp(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

/* The unsigned codes (IQ4_XS: signed values) of rows 8 * half .. + 7, slot h of nibble vector k of chunk c. */
AINLINE __m256i s_codes(const uint8_t *rec, const int kind, int half, int c, int h, int k)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t off = kind == 6 ? tb_cpu_kp6_nib_off(c, k) : tb_cpu_kp_vec_off(kind, 8 * c + k);
    const __m256i raw = _mm256_load_si256((const __m256i *)(rec + off + 32 * half));
    __m256i v = _mm256_and_si256(h ? _mm256_srli_epi16(raw, 4) : raw, m4);
    if (kind == 7) { /* IQ4_XS: the signed table value (s_dp_signed) */
        const __m256i table = _mm256_broadcastsi128_si256(
            _mm_loadu_si128((const __m128i *)tb_quant_iq4_values));
        return _mm256_shuffle_epi8(table, v);
    }
    if (kind == 5) {
        const __m256i hv = _mm256_load_si256(
            (const __m256i *)(rec + tb_cpu_kp_hvec_off(5, k) + 32 * half));
        const __m256i b = _mm256_and_si256(_mm256_srl_epi16(hv, _mm_cvtsi32_si128(2 * c + h)),
                                           _mm256_set1_epi8(1));
        v = _mm256_or_si256(v, _mm256_slli_epi16(b, 4));
    } else if (kind == 6) {
        const __m256i hv = _mm256_load_si256(
            (const __m256i *)(rec + tb_cpu_kp6_hi_off(c >> 1, k) + 32 * half));
        const __m256i b = _mm256_and_si256(
            _mm256_srl_epi16(hv, _mm_cvtsi32_si128(4 * (c & 1) + 2 * h)), _mm256_set1_epi8(3));
        v = _mm256_or_si256(v, _mm256_slli_epi16(b, 4));
    }
    return v;
}

/* The int32 block sums of rows 8 * half .. + 7 for T tokens (isum; Q4_K/Q5_K also msum). */
AINLINE void s_block_sums(const uint8_t *rec, const struct tb_block_q8_k *const *x, int64_t b,
                          int half, const int T, const int kind, __m256i *isum)
{
    const int kg = kind == 6 ? 4 : 8; /* nibble vectors per scale group */
    const int8_t *sc = (const int8_t *)(rec + tb_cpu_kp_sc_off(kind)) + 8 * half;
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) {
        isum[j] = _mm256_setzero_si256();
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            for (int q = 0; q < 8 / kg; q++) {
                const int gi = kind == 6 ? 4 * c + 2 * h + q : 2 * c + h;
                const __m128i s8 = _mm_loadl_epi64((const __m128i *)(sc + 16 * gi));
                const __m256i scv = kind >= 6 ? _mm256_cvtepi8_epi32(s8)
                                              : _mm256_cvtepu8_epi32(s8);
                __m256i dot[KT];
#pragma GCC unroll 4
                for (int j = 0; j < T; j++) {
                    dot[j] = kind == 6 ? _mm256_set1_epi32(-32 * x[j][b].bsums[gi])
                                       : _mm256_setzero_si256();
                }
#pragma GCC unroll 8
                for (int k = q * kg; k < (q + 1) * kg; k++) {
                    const __m256i w = s_codes(rec, kind, half, c, h, k);
#pragma GCC unroll 4
                    for (int j = 0; j < T; j++) {
                        const __m256i xb = s_bcast4(x[j][b].qs + 64 * c + 32 * h + 4 * k);
                        dot[j] = kind == 7 ? s_dp_signed(dot[j], w, xb) : s_dp(dot[j], w, xb);
                    }
                }
#pragma GCC unroll 4
                for (int j = 0; j < T; j++) {
                    isum[j] = _mm256_add_epi32(isum[j], _mm256_mullo_epi32(dot[j], scv));
                }
            }
        }
    }
}

/* Rows 8 * half .. + 7 of group `g` x T tokens from t0. */
AINLINE void s_tile(const struct tb_mm_args *a, int64_t g, int half, int t0, const int T,
                    const int kind, const uint8_t *pf, size_t pf_step)
{
    const int64_t nb = a->cols / TB_QK_K;
    const size_t rec_bytes = tb_cpu_kp_block_bytes(kind);
    const uint8_t *gp = a->w + (size_t)g * a->w_row_bytes;
    const struct tb_block_q8_k *x[KT];
    __m256 acc[KT];
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) {
        x[j] = (const struct tb_block_q8_k *)(a->qx + (size_t)(t0 + j) * a->qx_stride);
        acc[j] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        tb_cpu_pf_rec(pf, pf_step, b);
        const uint8_t *rec = gp + (size_t)b * rec_bytes;
        __m256i isum[KT];
        s_block_sums(rec, x, b, half, T, kind, isum);
        const __m256 dv = _mm256_load_ps((const float *)rec + 8 * half);
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const __m256 da = _mm256_set1_ps(x[j][b].d);
            __m256 t = _mm256_mul_ps(_mm256_mul_ps(dv, da), _mm256_cvtepi32_ps(isum[j]));
            if (tb_cpu_kp_has_min(kind)) {
                /* msum = sum_s mn_s * (128 * hi_s + lo_s) (tb_cpu_q8k_split): per half of the
                 * sub-blocks one vpmaddubsw of 4 mins per row with 4 lo (or hi) bytes */
                const int8_t *sp = tb_cpu_q8k_split((const uint8_t *)x[j], nb, b);
                __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
#pragma GCC unroll 2
                for (int q = 0; q < 2; q++) {
                    const __m256i mn = _mm256_load_si256(
                        (const __m256i *)(rec + TB_CPU_KP_MN_OFF + 64 * q + 32 * half));
                    lo = s_dp(lo, mn, s_bcast4(sp + 4 * q));
                    hi = s_dp(hi, mn, s_bcast4(sp + 8 + 4 * q));
                }
                const __m256i ms = _mm256_add_epi32(_mm256_slli_epi32(hi, 7), lo);
                const __m256 dmv = _mm256_load_ps((const float *)(rec + 64) + 8 * half);
                t = _mm256_sub_ps(t,
                                  _mm256_mul_ps(_mm256_mul_ps(dmv, da), _mm256_cvtepi32_ps(ms)));
            }
            acc[j] = _mm256_add_ps(acc[j], t);
        }
    }
    const int64_t r = g * TB_CPU_PACK_ROWS + 8 * half;
    const int nr = a->rows - r < 8 ? (int)(a->rows - r) : 8;
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) {
        float v[8];
        _mm256_storeu_ps(v, acc[j]);
        float *y = a->y + (size_t)(t0 + j) * a->ldy + r;
        for (int i = 0; i < nr; i++) {
            y[i] = v[i] + (a->bias ? a->bias[r + i] : 0.0f);
        }
    }
}

/* Group by group and half by half (8 rows), the 4-token tiles (each fetching its share of the
 * next group, tb_cpu_pf_tile: both halves' tiles count), then the rest. */
AINLINE void s_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int kind)
{
    const int64_t nb = a->cols / TB_QK_K;
    const int nt = a->n_tok / KT;
    for (int64_t g = r0 / TB_CPU_PACK_ROWS; g * TB_CPU_PACK_ROWS < r1; g++) {
        for (int half = 0; half < 2 && g * TB_CPU_PACK_ROWS + 8 * half < a->rows; half++) {
            int t = 0;
            for (; t + KT <= a->n_tok; t += KT) {
                const struct tb_cpu_pf pf = tb_cpu_pf_tile(a, g, r1, half * nt + t / KT, 2 * nt,
                                                           nb);
                s_tile(a, g, half, t, KT, kind, pf.p, pf.step);
            }
            switch (a->n_tok - t) {
            case 1:
                s_tile(a, g, half, t, 1, kind, NULL, 0);
                break;
            case 2:
                s_tile(a, g, half, t, 2, kind, NULL, 0);
                break;
            case 3:
                s_tile(a, g, half, t, 3, kind, NULL, 0);
                break;
            default:
                break;
            }
        }
    }
}

void tb_cpu_kpack_rows_avx2(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    switch (tb_cpu_kp_kind(a->dtype)) {
    case 2:
    case 3:
        tb_cpu_kpack23_rows_avx2(a, r0, r1);
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

/* One Q8_K block of 256 activations as tb_quant_act_quantize makes it (tb_cpu_kpack_avx512.c's
 * s_q8k_block, 8 lanes: the max ignores NaNs, vcvtps2dq rounds to nearest even, a NaN product
 * gives 0). */
static void s_q8k_block(const float *x, struct tb_block_q8_k *y)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 32; i++) { /* maxps gives its second operand when one is NaN */
        m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * i)), m);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const float amax = _mm_cvtss_f32(m4);
    if (!(amax > 0.0f) || !isfinite(amax)) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float id = 127.0f / amax;
    const __m256 vid = _mm256_set1_ps(id);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int g = 0; g < 16; g++) {
        __m256i q2[2];
        for (int h = 0; h < 2; h++) {
            const __m256 p = _mm256_mul_ps(_mm256_loadu_ps(x + 16 * g + 8 * h), vid);
            const __m256i q = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(p), hi), lo);
            q2[h] = _mm256_and_si256(q, _mm256_castps_si256(_mm256_cmp_ps(p, p, _CMP_ORD_Q)));
        }
        /* 16 int32 -> 16 int8 in order (packs work within 128-bit lanes) */
        const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q2[0], q2[1]), 0xd8);
        const __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w),
                                          _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)(y->qs + 16 * g), b);
        __m256i s = _mm256_add_epi32(q2[0], q2[1]);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        y->bsums[g] = (int16_t)_mm_cvtsi128_si32(s4);
    }
    y->d = 1.0f / id;
}

void tb_cpu_quant_act_avx2(tb_cpu_dtype_t wdt, const float *x, int64_t cols, uint8_t *dst)
{
    tb_cpu_quant_act_with(wdt, x, cols, dst, s_q8k_block);
}
