/*
 * tb_quant_avx512.c - AVX-512 (F, BW, VL, DQ) dot products of K-quant and IQ4_XS rows with
 * Q8_K activations: tb_quant_avx2.c's method on 64 bytes at a time (two 32-element sub-blocks
 * per instruction, per-lane scales and shift counts).  Exact integer sums, the reference's f32 step:
 * bit-equal results.
 */
#include <immintrin.h>

#include "tb_quant.h"
#include "tb_quant_kernels_impl.h"

/* Two 32-byte loads as one register (`lo` in the low half). */
static __m512i s_load2(const void *lo, const void *hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* int16 lanes: the first 16 hold `a`, the last 16 hold `b`. */
static __m512i s_halves16(int a, int b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16((short)a)),
                              _mm256_set1_epi16((short)b), 1);
}

/* int16 lanes: eight each of s[0], s[1], s[2], s[3] (four 16-element groups after vpmaddubsw). */
static __m512i s_quarters16(const int8_t *s)
{
    const __m128i v = _mm_setr_epi16(s[0], s[0], s[1], s[1], s[2], s[2], s[3], s[3]);
    /* each pair of int16 above becomes 4 x (2 lanes): broadcast pairs to 8 lanes per group */
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_epi32(idx, _mm512_castsi128_si512(v));
}

/* Q2_K (`q3` false) and Q3_K super-blocks (tb_quant_avx2.c's method), 64 elements at a time:
 * element 128n + 32j + l has its code in bits 2j of qs[32n + l] and its Q3_K high bit in bit
 * 4n + j of hmask[l]; j = 2k, 2k + 1 share one register. */
static float s_q23_k(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q3)
{
    const __m512i m2 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    const size_t bb = q3 ? sizeof(struct tb_block_q3_k) : sizeof(struct tb_block_q2_k);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8_t *qs = q3 ? ((const struct tb_block_q3_k *)blk)->qs
                               : ((const struct tb_block_q2_k *)blk)->qs;
        const struct tb_block_q8_k *y = a + b;
        int8_t sc[16], mn[16];
        tb_quant_q23_k_scales(blk, q3, sc, mn);
        const __m512i hm = q3 ? s_load2(blk, blk) : _mm512_setzero_si512();
        __m512i vacc = _mm512_setzero_si512();
        for (int n = 0; n < 2; n++) {
            const __m512i q = s_load2(qs + 32 * n, qs + 32 * n);
            for (int k = 0; k < 2; k++) {
                __m512i u = _mm512_and_si512(_mm512_srlv_epi16(q, s_halves16(4 * k, 4 * k + 2)),
                                             m2);
                if (q3) {
                    const __m512i c = s_halves16(4 * n + 2 * k, 4 * n + 2 * k + 1);
                    const __m512i h = _mm512_and_si512(_mm512_srlv_epi16(hm, c), one);
                    u = _mm512_or_si512(u, _mm512_slli_epi16(h, 2));
                }
                const __m512i av = _mm512_loadu_si512((const void *)(y->qs + 128 * n + 64 * k));
                vacc = _mm512_add_epi32(vacc,
                                        _mm512_madd_epi16(_mm512_maddubs_epi16(u, av),
                                                          s_quarters16(sc + 8 * n + 4 * k)));
            }
        }
        acc += tb_quant_q23_k_block_sum(blk, q3, sc, mn, y, _mm512_reduce_add_epi32(vacc));
    }
    return acc;
}

/* IQ4_XS, two sub-blocks per register: table values through vpshufb, |value| times the
 * activation negated where the value is negative. */
static float s_iq4_xs(const struct tb_block_iq4_xs *w, const struct tb_block_q8_k *a, uint64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_loadu_si128((const __m128i *)tb_quant_iq4_values));
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const struct tb_block_iq4_xs *x = w + b;
        const struct tb_block_q8_k *y = a + b;
        __m512i vacc = _mm512_setzero_si512();
        for (int m = 0; m < 4; m++) { /* sub-blocks 2m, 2m + 1 */
            const __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * m));
            const __m256i lo = _mm256_and_si256(q, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            const __m512i idx = _mm512_inserti64x4(_mm512_castsi256_si512(
                                                       _mm256_permute2x128_si256(lo, hi, 0x20)),
                                                   _mm256_permute2x128_si256(lo, hi, 0x31), 1);
            const __m512i v = _mm512_shuffle_epi8(table, idx);
            const __m512i av = _mm512_loadu_si512((const void *)(y->qs + 64 * m));
            const __m512i sa = _mm512_mask_sub_epi8(av, _mm512_movepi8_mask(v),
                                                    _mm512_setzero_si512(), av);
            const __m512i p = _mm512_maddubs_epi16(_mm512_abs_epi8(v), sa);
            vacc = _mm512_add_epi32(
                vacc, _mm512_madd_epi16(p, s_halves16(tb_quant_iq4_xs_scale(x, 2 * m),
                                                      tb_quant_iq4_xs_scale(x, 2 * m + 1))));
        }
        acc += tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d, _mm512_reduce_add_epi32(vacc),
                                  0);
    }
    return acc;
}

/* Q4_K (`q5` false) and Q5_K super-blocks. */
static float s_q45_k(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q5)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), one = _mm512_set1_epi8(1);
    const size_t bb = q5 ? sizeof(struct tb_block_q5_k) : sizeof(struct tb_block_q4_k);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8_t *scales = blk + 4;
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        const struct tb_block_q8_k *y = a + b;
        const __m512i hb = q5 ? s_load2(blk + 16, blk + 16) : _mm512_setzero_si512();
        uint8_t sc[8], mn[8];
        int32_t msum = 0;
        for (int s = 0; s < 8; s++) {
            tb_quant_k_scale_min(scales, s, &sc[s], &mn[s]);
            msum += mn[s] * (y->bsums[2 * s] + y->bsums[2 * s + 1]);
        }
        __m512i vacc = _mm512_setzero_si512();
        for (int k = 0; k < 2; k++) { /* sub-blocks 4k .. 4k + 3 */
            const __m512i q = _mm512_loadu_si512((const void *)(qs + 64 * k));
            __m512i lo = _mm512_and_si512(q, m4); /* sub-blocks 4k, 4k + 2 */
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4); /* 4k + 1, 4k + 3 */
            if (q5) {
                const __m512i c_lo = s_halves16(4 * k, 4 * k + 2);
                const __m512i c_hi = s_halves16(4 * k + 1, 4 * k + 3);
                lo = _mm512_or_si512(
                    lo, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, c_lo), one), 4));
                hi = _mm512_or_si512(
                    hi, _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(hb, c_hi), one), 4));
            }
            const uint8_t *ya = (const uint8_t *)y->qs + 128 * k;
            const __m512i a_lo = s_load2(ya, ya + 64), a_hi = s_load2(ya + 32, ya + 96);
            const __m512i p_lo = _mm512_madd_epi16(_mm512_maddubs_epi16(lo, a_lo),
                                                   s_halves16(sc[4 * k], sc[4 * k + 2]));
            const __m512i p_hi = _mm512_madd_epi16(_mm512_maddubs_epi16(hi, a_hi),
                                                   s_halves16(sc[4 * k + 1], sc[4 * k + 3]));
            vacc = _mm512_add_epi32(vacc, _mm512_add_epi32(p_lo, p_hi));
        }
        acc += tb_quant_block_sum(tb_quant_f16(blk), tb_quant_f16(blk + 2), y->d,
                                  _mm512_reduce_add_epi32(vacc), msum);
    }
    return acc;
}

static float s_q6_k(const struct tb_block_q6_k *w, const struct tb_block_q8_k *a, uint64_t nb)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f), m2 = _mm512_set1_epi8(3);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const struct tb_block_q6_k *x = w + b;
        const struct tb_block_q8_k *y = a + b;
        __m512i vacc = _mm512_setzero_si512();
        for (int n = 0; n < 2; n++) {
            /* elements 128n + 0..63 (low nibbles of ql) and 128n + 64..127 (high nibbles) */
            const __m512i l = _mm512_loadu_si512((const void *)(x->ql + 64 * n));
            const __m512i h = s_load2(x->qh + 32 * n, x->qh + 32 * n);
            const __m512i low[2] = {_mm512_and_si512(l, m4),
                                    _mm512_and_si512(_mm512_srli_epi16(l, 4), m4)};
            for (int k = 0; k < 2; k++) {
                const __m512i cnt = s_halves16(4 * k, 4 * k + 2); /* 2j for j = 2k, 2k + 1 */
                const __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(h, cnt), m2);
                const __m512i q = _mm512_or_si512(low[k], _mm512_slli_epi16(hi, 4));
                const __m512i av = _mm512_loadu_si512((const void *)(y->qs + 128 * n + 64 * k));
                const __m512i sc = s_quarters16(x->scales + 8 * n + 4 * k);
                vacc = _mm512_add_epi32(vacc, _mm512_madd_epi16(_mm512_maddubs_epi16(q, av), sc));
            }
        }
        /* codes stored + 32: take 32 * sum(scale[g] * bsums[g]) back in the same lanes */
        const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums),
                                              _mm256_cvtepi8_epi16(
                                                  _mm_loadu_si128((const __m128i *)x->scales)));
        vacc = _mm512_sub_epi32(vacc, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
        acc += tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d, _mm512_reduce_add_epi32(vacc),
                                  0);
    }
    return acc;
}

const struct tb_quant_k_ops tb_quant_k_ops_avx512 = {.q32 = tb_quant_q32_avx2,
                                                     .q23_k = s_q23_k,
                                                     .q45_k = s_q45_k,
                                                     .q6_k = s_q6_k,
                                                     .iq4_xs = s_iq4_xs};
