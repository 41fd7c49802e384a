/*
 * tb_cpu_kpack23_avx512.c - the Kx16 matmul of Q2_K and Q3_K (kinds 2 and 3,
 * tb_cpu_internal.h) with AVX-512 VNNI (compiled with the AVX-512 F/BW/VL/DQ/VNNI flags; called
 * only after runtime detection).
 *
 * Lane i of every vector is weight row i of the group.  Each 2-bit vector is loaded once and
 * gives the codes of its four bit slots (Q3_K: with the hmask bit as 4), each a vpdpbusd with 4
 * broadcast activation bytes into its 16-element group's int32 sum (Q3_K: started at -4 times
 * the activations' group sum), which a vpmulld scales by the row's group scale into the
 * block's int32 sum.  Q2_K's mins: vpdpwssd of the rows' mins of two groups (int16 pairs) with
 * the Q8_K block sums of those groups.  The f32 step per block is tb_quant_dot's, in lanes:
 * bit-equal to the reference and the same for any token tile.
 */
#include <immintrin.h>
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_quant.h"

#define AINLINE static inline __attribute__((always_inline))

#define KT 4 /* tokens per tile */

AINLINE __m512i s_bcast4(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The int32 block sums isum of T tokens over one record. */
AINLINE void s_isum(const uint8_t *rec, const struct tb_block_q8_k *const *x, int64_t b,
                    const int T, const int kind, __m512i *isum)
{
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(kind);
    const __m512i m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(4);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        isum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
#pragma GCC unroll 2
        for (int q = 0; q < 2; q++) {
            __m512i dot[4][KT];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    dot[j][t] = kind == 3
                                    ? _mm512_set1_epi32(-4 * x[t][b].bsums[8 * n + 2 * j + q])
                                    : _mm512_setzero_si512();
                }
            }
#pragma GCC unroll 4
            for (int kk = 4 * q; kk < 4 * q + 4; kk++) {
                const __m512i raw = _mm512_load_si512(
                    (const void *)(rec + tb_cpu_kp_vec_off(kind, 8 * n + kk)));
                __m512i hv = _mm512_setzero_si512();
                if (kind == 3) {
                    hv = _mm512_load_si512((const void *)(rec + tb_cpu_kp_hvec_off(3, kk)));
                    hv = n ? _mm512_srli_epi16(hv, 2) : _mm512_slli_epi16(hv, 2);
                }
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    __m512i v = _mm512_and_si512(_mm512_srli_epi16(raw, 2 * j), m3);
                    if (kind == 3) { /* bit 4n + j of hv at bit 2 */
                        v = _mm512_or_si512(v, _mm512_and_si512(_mm512_srli_epi16(hv, j), m4));
                    }
#pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        dot[j][t] = _mm512_dpbusd_epi32(dot[j][t], v,
                                                        s_bcast4(x[t][b].qs + 128 * n + 32 * j +
                                                                 4 * kk));
                    }
                }
            }
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const __m128i s8 = _mm_load_si128(
                    (const __m128i *)(sc + 16 * (8 * n + 2 * j + q)));
                const __m512i scv = kind == 3 ? _mm512_cvtepi8_epi32(s8)
                                              : _mm512_and_si512(_mm512_cvtepu8_epi32(s8),
                                                                 _mm512_set1_epi32(15));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dot[j][t], scv));
                }
            }
        }
    }
}

/* Q2_K: the int32 min sums msum of T tokens over one record. */
AINLINE void s_msum(const uint8_t *rec, const struct tb_block_q8_k *const *x, int64_t b,
                    const int T, __m512i *msum)
{
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(2);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        msum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 8
    for (int g = 0; g < 16; g += 2) {
        const __m128i s0 = _mm_load_si128((const __m128i *)(sc + 16 * g));
        const __m128i s1 = _mm_load_si128((const __m128i *)(sc + 16 * (g + 1)));
        const __m256i pairs = _mm256_set_m128i(_mm_unpackhi_epi8(s0, s1),
                                               _mm_unpacklo_epi8(s0, s1));
        const __m512i mn = _mm512_srli_epi16(_mm512_cvtepu8_epi16(pairs), 4);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            msum[t] = _mm512_dpwssd_epi32(msum[t], mn, s_bcast4(x[t][b].bsums + g));
        }
    }
}

/* Group `g` (16 rows) x T tokens from t0. */
AINLINE void s_tile(const struct tb_mm_args *a, int64_t g, int t0, const int T, const int kind,
                    const uint8_t *pf, size_t pf_step)
{
    const int64_t nb = a->cols / TB_QK_K;
    const size_t rec_bytes = tb_cpu_kp_block_bytes(kind);
    const uint8_t *gp = a->w + (size_t)g * a->w_row_bytes;
    const struct tb_block_q8_k *x[KT];
    __m512 acc[KT];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        x[t] = (const struct tb_block_q8_k *)(a->qx + (size_t)(t0 + t) * a->qx_stride);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *rec = gp + (size_t)b * rec_bytes;
        tb_cpu_pf_rec(pf, pf_step, b);
        __m512i isum[KT], msum[KT];
        s_isum(rec, x, b, T, kind, isum);
        if (kind == 2) {
            s_msum(rec, x, b, T, msum);
        }
        const __m512 dv = _mm512_load_ps((const float *)rec);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m512 da = _mm512_set1_ps(x[t][b].d);
            __m512 s = _mm512_mul_ps(_mm512_mul_ps(dv, da), _mm512_cvtepi32_ps(isum[t]));
            if (kind == 2) {
                const __m512 dmv = _mm512_load_ps((const float *)(rec + 64));
                s = _mm512_sub_ps(s, _mm512_mul_ps(_mm512_mul_ps(dmv, da),
                                                   _mm512_cvtepi32_ps(msum[t])));
            }
            acc[t] = _mm512_add_ps(acc[t], s);
        }
    }
    const int64_t r = g * TB_CPU_PACK_ROWS;
    const int nr = a->rows - r < TB_CPU_PACK_ROWS ? (int)(a->rows - r) : TB_CPU_PACK_ROWS;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        float v[TB_CPU_PACK_ROWS];
        _mm512_storeu_ps(v, acc[t]);
        float *y = a->y + (size_t)(t0 + t) * a->ldy + r;
        for (int i = 0; i < nr; i++) {
            y[i] = v[i] + (a->bias ? a->bias[r + i] : 0.0f);
        }
    }
}

/* Group by group, the 4-token tiles (each fetching its share of the next group,
 * tb_cpu_pf_tile), then the rest. */
AINLINE void s_rows(const struct tb_mm_args *a, int64_t r0, int64_t r1, const int kind)
{
    const int64_t nb = a->cols / TB_QK_K;
    for (int64_t g = r0 / TB_CPU_PACK_ROWS; g * TB_CPU_PACK_ROWS < r1; g++) {
        int t = 0;
        for (; t + KT <= a->n_tok; t += KT) {
            const struct tb_cpu_pf pf = tb_cpu_pf_tile(a, g, r1, t / KT, a->n_tok / KT, nb);
            s_tile(a, g, t, KT, kind, pf.p, pf.step);
        }
        switch (a->n_tok - t) {
        case 1:
            s_tile(a, g, t, 1, kind, NULL, 0);
            break;
        case 2:
            s_tile(a, g, t, 2, kind, NULL, 0);
            break;
        case 3:
            s_tile(a, g, t, 3, kind, NULL, 0);
            break;
        default:
            break;
        }
    }
}

void tb_cpu_kpack23_rows_avx512(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    if (tb_cpu_kp_kind(a->dtype) == 2) {
        s_rows(a, r0, r1, 2);
    } else {
        s_rows(a, r0, r1, 3);
    }
}
