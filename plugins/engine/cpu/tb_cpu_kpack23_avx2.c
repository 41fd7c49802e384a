/*
 * tb_cpu_kpack23_avx2.c - the Kx16 matmul of Q2_K and Q3_K (kinds 2 and 3,
 * tb_cpu_internal.h) with AVX2 (compiled with -mavx2 -mfma -mf16c; called only after runtime
 * detection): tb_cpu_kpack23_avx512.c's method on each 8-row half of a group, vpdpbusd
 * replaced by vpmaddubsw + vpmaddwd (codes <= 7 and |activation| <= 128: no int16
 * saturation), vpdpwssd by vpmaddwd + vpaddd.  The integer sums are exact and the f32 step per
 * block is the reference's, in lanes: bit-equal to tb_quant_dot and batch invariant.
 */
#include <immintrin.h>
#include <string.h>

#include "tb_cpu_internal.h"
#include "tb_quant.h"

#define AINLINE static inline __attribute__((always_inline))

#define KT 4 /* tokens per tile */

AINLINE __m256i s_bcast4(const void *p)
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

/* The int32 block sums isum of rows 8 * half .. + 7 for T tokens over one record. */
AINLINE void s_isum(const uint8_t *rec, const struct tb_block_q8_k *const *x, int64_t b, int half,
                    const int T, const int kind, __m256i *isum)
{
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(kind) + 8 * half;
    const uint8_t *hrec = rec + 32 * half;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        isum[t] = _mm256_setzero_si256();
    }
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
#pragma GCC unroll 2
            for (int q = 0; q < 2; q++) {
                const int gi = 8 * n + 2 * j + q;
                __m256i dot[KT];
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    dot[t] = kind == 3 ? _mm256_set1_epi32(-4 * x[t][b].bsums[gi])
                                       : _mm256_setzero_si256();
                }
#pragma GCC unroll 4
                for (int kk = 4 * q; kk < 4 * q + 4; kk++) {
                    const __m256i raw = _mm256_load_si256(
                        (const __m256i *)(hrec + tb_cpu_kp_vec_off(kind, 8 * n + kk)));
                    __m256i v = _mm256_and_si256(_mm256_srli_epi16(raw, 2 * j), m3);
                    if (kind == 3) { /* bit 4n + j of the hmask byte at bit 2 */
                        __m256i hv = _mm256_load_si256(
                            (const __m256i *)(hrec + tb_cpu_kp_hvec_off(3, kk)));
                        hv = n ? _mm256_srli_epi16(hv, 2) : _mm256_slli_epi16(hv, 2);
                        v = _mm256_or_si256(v, _mm256_and_si256(_mm256_srli_epi16(hv, j), m4));
                    }
#pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        dot[t] = s_dp(dot[t], v,
                                      s_bcast4(x[t][b].qs + 128 * n + 32 * j + 4 * kk));
                    }
                }
                const __m128i s8 = _mm_loadl_epi64((const __m128i *)(sc + 16 * gi));
                const __m256i scv = kind == 3 ? _mm256_cvtepi8_epi32(s8)
                                              : _mm256_and_si256(_mm256_cvtepu8_epi32(s8),
                                                                 _mm256_set1_epi32(15));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(dot[t], scv));
                }
            }
        }
    }
}

/* Q2_K: the int32 min sums of rows 8 * half .. + 7 for T tokens over one record. */
AINLINE void s_msum(const uint8_t *rec, const struct tb_block_q8_k *const *x, int64_t b, int half,
                    const int T, __m256i *msum)
{
    const uint8_t *sc = rec + tb_cpu_kp_sc_off(2) + 8 * half;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        msum[t] = _mm256_setzero_si256();
    }
#pragma GCC unroll 8
    for (int g = 0; g < 16; g += 2) {
        const __m128i s0 = _mm_loadl_epi64((const __m128i *)(sc + 16 * g));
        const __m128i s1 = _mm_loadl_epi64((const __m128i *)(sc + 16 * (g + 1)));
        const __m256i mn = _mm256_srli_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s0, s1)), 4);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            msum[t] = _mm256_add_epi32(msum[t],
                                       _mm256_madd_epi16(mn, s_bcast4(x[t][b].bsums + g)));
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
    for (int t = 0; t < T; t++) {
        x[t] = (const struct tb_block_q8_k *)(a->qx + (size_t)(t0 + t) * a->qx_stride);
        acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        tb_cpu_pf_rec(pf, pf_step, b);
        const uint8_t *rec = gp + (size_t)b * rec_bytes;
        __m256i isum[KT], msum[KT];
        s_isum(rec, x, b, half, T, kind, isum);
        if (kind == 2) {
            s_msum(rec, x, b, half, T, msum);
        }
        const __m256 dv = _mm256_load_ps((const float *)rec + 8 * half);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m256 da = _mm256_set1_ps(x[t][b].d);
            __m256 s = _mm256_mul_ps(_mm256_mul_ps(dv, da), _mm256_cvtepi32_ps(isum[t]));
            if (kind == 2) {
                const __m256 dmv = _mm256_load_ps((const float *)(rec + 64) + 8 * half);
                s = _mm256_sub_ps(s, _mm256_mul_ps(_mm256_mul_ps(dmv, da),
                                                   _mm256_cvtepi32_ps(msum[t])));
            }
            acc[t] = _mm256_add_ps(acc[t], s);
        }
    }
    const int64_t r = g * TB_CPU_PACK_ROWS + 8 * half;
    const int nr = a->rows - r < 8 ? (int)(a->rows - r) : 8;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) {
        float v[8];
        _mm256_storeu_ps(v, acc[t]);
        float *y = a->y + (size_t)(t0 + t) * a->ldy + r;
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

void tb_cpu_kpack23_rows_avx2(const struct tb_mm_args *a, int64_t r0, int64_t r1)
{
    if (tb_cpu_kp_kind(a->dtype) == 2) {
        s_rows(a, r0, r1, 2);
    } else {
        s_rows(a, r0, r1, 3);
    }
}
