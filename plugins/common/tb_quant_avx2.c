/*
 * tb_quant_avx2.c - AVX2 dot products of K-quant rows with Q8_K activations (built with -mavx2
 * -mfma -mf16c; called only when the CPU has them).  Codes are unsigned bytes times signed
 * activation bytes (vpmaddubsw, no saturation possible: |code| <= 63, |a| <= 127), widened and
 * scaled per group with vpmaddwd; offsets (Q6_K's 32, the K-quant mins) come from the Q8_K
 * block sums.  The integer sums are exact, the f32 step is the reference's: bit-equal results.
 */
#include <immintrin.h>

#include "tb_quant.h"
#include "tb_quant_kernels_impl.h"

static int32_t s_hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Bit `bit` of every byte of `v`, moved to bit 4. */
static __m256i s_bit4(__m256i v, int bit)
{
    __m256i b = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(bit)), _mm256_set1_epi8(1));
    return _mm256_slli_epi16(b, 4);
}

/* Q4_K (`q5` false) and Q5_K super-blocks. */
static float s_q45_k(const uint8_t *w, const struct tb_block_q8_k *a, uint64_t nb, int q5)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t bb = q5 ? sizeof(struct tb_block_q5_k) : sizeof(struct tb_block_q4_k);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const uint8_t *blk = w + b * bb;
        const uint8_t *scales = blk + 4;
        const uint8_t *qs = blk + (q5 ? 48 : 16);
        const struct tb_block_q8_k *y = a + b;
        const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16))
                              : _mm256_setzero_si256();
        __m256i vacc = _mm256_setzero_si256();
        int32_t msum = 0;
        for (int n = 0; n < 4; n++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * n));
            __m256i lo = _mm256_and_si256(q, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (q5) {
                lo = _mm256_or_si256(lo, s_bit4(hb, 2 * n));
                hi = _mm256_or_si256(hi, s_bit4(hb, 2 * n + 1));
            }
            uint8_t sc0, m0, sc1, m1;
            tb_quant_k_scale_min(scales, 2 * n, &sc0, &m0);
            tb_quant_k_scale_min(scales, 2 * n + 1, &sc1, &m1);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * n));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(y->qs + 64 * n + 32));
            const __m256i p0 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc0));
            const __m256i p1 =
                _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc1));
            vacc = _mm256_add_epi32(vacc, _mm256_add_epi32(p0, p1));
            msum += m0 * (y->bsums[4 * n] + y->bsums[4 * n + 1]) +
                    m1 * (y->bsums[4 * n + 2] + y->bsums[4 * n + 3]);
        }
        acc += tb_quant_block_sum(tb_quant_f16(blk), tb_quant_f16(blk + 2), y->d, s_hsum(vacc),
                                  msum);
    }
    return acc;
}

static float s_q6_k(const struct tb_block_q6_k *w, const struct tb_block_q8_k *a, uint64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f), m2 = _mm256_set1_epi8(3);
    float acc = 0.0f;
    for (uint64_t b = 0; b < nb; b++) {
        const struct tb_block_q6_k *x = w + b;
        const struct tb_block_q8_k *y = a + b;
        __m256i vacc = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * n + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * n));
            const __m256i low[4] = {
                _mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4)};
            for (int j = 0; j < 4; j++) {
                __m256i hi = _mm256_and_si256(_mm256_srl_epi16(h, _mm_cvtsi32_si128(2 * j)), m2);
                __m256i q = _mm256_or_si256(low[j], _mm256_slli_epi16(hi, 4));
                __m256i av = _mm256_loadu_si256((const __m256i *)(y->qs + 128 * n + 32 * j));
                int g = 8 * n + 2 * j;
                __m256i sc = _mm256_set_m128i(_mm_set1_epi16(x->scales[g + 1]),
                                              _mm_set1_epi16(x->scales[g]));
                vacc = _mm256_add_epi32(vacc, _mm256_madd_epi16(_mm256_maddubs_epi16(q, av), sc));
            }
        }
        const int32_t offset = tb_quant_q6_k_offset(x, y);
        acc += tb_quant_block_sum(tb_quant_f16(x->d), 0.0f, y->d, s_hsum(vacc) - 32 * offset, 0);
    }
    return acc;
}

const struct tb_quant_k_ops tb_quant_k_ops_avx2 = {.q45_k = s_q45_k, .q6_k = s_q6_k};
